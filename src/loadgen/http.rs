//! loadgen's HTTP/1.1 client on the client TCP stack, sans-IO and
//! clock-free: closed loop, one request in flight per connection; each
//! response's latency goes into an HDR histogram and its status into a
//! class counter. Connections are kept alive; a server that closes one gets
//! it reopened by the stack.
//!
//! Per connection the state is fixed-size and allocated up front (the
//! response head buffer included): nothing is allocated per request.

use super::requests::Requests;
use crate::net::client::{ClientApp, ClientConn, CloseKind};
use crate::time::Nanos;
use hdrhistogram::Histogram;
use std::sync::Arc;

/// Bytes of a response head we accept (ours are a few hundred).
pub const MAX_RESPONSE_HEAD: usize = 4096;
/// Headers httparse may see in one response.
const MAX_HEADERS: usize = 32;
/// Latencies are recorded in µs up to this (60 s); longer ones saturate.
const MAX_LATENCY_US: u64 = 60_000_000;

/// What the client counts; `socket_errors()` sums the error kinds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LoadCounters {
    pub requests_sent: u64,
    pub responses: u64,
    pub status_1xx: u64,
    pub status_2xx: u64,
    pub status_3xx: u64,
    pub status_4xx: u64,
    pub status_5xx: u64,
    /// Records carried by the bodies of 2xx-answered requests (non-empty lines of the body).
    pub records_2xx: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Connections that never got established.
    pub connect_errors: u64,
    /// Connections reset or closed by the server while a request was in flight.
    pub read_errors: u64,
    /// Requests without a response within the timeout (the connection is then aborted).
    pub timeouts: u64,
    /// Responses we could not parse (or bytes nobody asked for): the connection is aborted.
    pub protocol_errors: u64,
    /// Connections the server closed between requests (e.g. `Connection: close`).
    pub server_closes: u64,
}

impl LoadCounters {
    pub fn socket_errors(&self) -> u64 {
        self.connect_errors + self.read_errors + self.timeouts + self.protocol_errors
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Not connected.
    Closed,
    /// Connected, no request in flight.
    Ready,
    /// Sending request `req`, `sent` bytes so far.
    Sending,
    /// The request is out, reading the response head.
    Head,
    /// Head read, `body_left` body bytes to skip.
    Body,
    /// A protocol error or timeout: waiting for the stack to abort it.
    Broken,
}

struct Conn {
    /// The connection this state belongs to (None: not open).
    id: Option<ClientConn>,
    phase: Phase,
    /// Index of the current (or next) request.
    req: u32,
    sent: usize,
    started: Nanos,
    head: Box<[u8]>,
    head_len: usize,
    body_left: usize,
    status: u16,
}

/// The HTTP client of one loadgen worker.
pub struct HttpLoad {
    requests: Arc<Requests>,
    /// Records per request (non-empty body lines), parallel to `requests`.
    records: Vec<u64>,
    conns: Vec<Conn>,
    pub histogram: Histogram<u64>,
    counters: LoadCounters,
    /// No new requests; close connections as they go idle.
    stopping: bool,
    timeout_us: u64,
    /// Connections the stack must abort (protocol error or timeout).
    to_abort: Vec<ClientConn>,
    aborting: Vec<ClientConn>,
}

impl HttpLoad {
    /// A client for `slots` connections replaying `requests`; a request
    /// unanswered after `timeout_us` counts as a timeout.
    pub fn new(requests: Arc<Requests>, slots: usize, timeout_us: u64) -> HttpLoad {
        let records = requests
            .items
            .iter()
            .map(|r| {
                let body = &r.bytes[r.bytes.len() - r.body_len..];
                body.split(|&b| b == b'\n').filter(|l| !l.iter().all(u8::is_ascii_whitespace)).count() as u64
            })
            .collect();
        let n = requests.items.len().max(1);
        let conns = (0..slots)
            .map(|i| Conn {
                id: None,
                phase: Phase::Closed,
                // Spread the connections over the requests.
                req: (i % n) as u32,
                sent: 0,
                started: Nanos::ZERO,
                head: vec![0; MAX_RESPONSE_HEAD].into_boxed_slice(),
                head_len: 0,
                body_left: 0,
                status: 0,
            })
            .collect();
        HttpLoad {
            requests,
            records,
            conns,
            histogram: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("static histogram bounds are valid"),
            counters: LoadCounters::default(),
            stopping: false,
            timeout_us,
            to_abort: Vec::with_capacity(slots),
            aborting: Vec::with_capacity(slots),
        }
    }

    pub fn counters(&self) -> &LoadCounters {
        &self.counters
    }

    /// Stop sending new requests; idle connections close.
    pub fn stop(&mut self) {
        self.stopping = true;
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.conns.iter().filter(|c| matches!(c.phase, Phase::Sending | Phase::Head | Phase::Body)).count()
    }

    /// Marks requests in flight longer than the timeout as timed out; returns
    /// every connection to abort (timeouts and protocol errors since the last call).
    pub fn poll_aborts(&mut self, now: Nanos) -> &[ClientConn] {
        let now_us = now.as_micros();
        for c in self.conns.iter_mut() {
            if matches!(c.phase, Phase::Sending | Phase::Head | Phase::Body)
                && now_us.saturating_sub(c.started.as_micros()) > self.timeout_us
            {
                c.phase = Phase::Broken;
                self.counters.timeouts += 1;
                self.to_abort.extend(c.id);
            }
        }
        std::mem::swap(&mut self.to_abort, &mut self.aborting);
        self.to_abort.clear();
        &self.aborting
    }

    fn conn(&mut self, conn: ClientConn) -> Option<&mut Conn> {
        self.conns.get_mut(conn.index()).filter(|c| c.id == Some(conn))
    }

    fn broken(&mut self, conn: ClientConn) {
        if let Some(c) = self.conn(conn) {
            c.phase = Phase::Broken;
        }
        self.counters.protocol_errors += 1;
        self.to_abort.push(conn);
    }

    /// The head in `c.head[..end]` is complete: status and body length.
    fn parse_head(c: &mut Conn, end: usize, head_only: bool) -> Result<(), ()> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&c.head[..end]) {
            Ok(httparse::Status::Complete(_)) => {}
            _ => return Err(()),
        }
        let status = resp.code.ok_or(())?;
        let mut body = 0usize;
        for h in resp.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                body = std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse().ok()).ok_or(())?;
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                // Our server never chunks; a peer that does is not measured by this client.
                return Err(());
            }
        }
        if head_only || (100..200).contains(&status) || status == 204 || status == 304 {
            body = 0;
        }
        c.status = status;
        c.body_left = body;
        Ok(())
    }

    fn complete(&mut self, index: usize, now: Nanos) {
        let n = self.requests.items.len() as u32;
        let c = &mut self.conns[index];
        let latency = now.as_micros().saturating_sub(c.started.as_micros()).max(1);
        self.histogram.saturating_record(latency.min(MAX_LATENCY_US));
        self.counters.responses += 1;
        match c.status {
            100..=199 => self.counters.status_1xx += 1,
            200..=299 => {
                self.counters.status_2xx += 1;
                self.counters.records_2xx += self.records[c.req as usize];
            }
            300..=399 => self.counters.status_3xx += 1,
            400..=499 => self.counters.status_4xx += 1,
            _ => self.counters.status_5xx += 1,
        }
        c.phase = Phase::Ready;
        c.req = (c.req + 1) % n;
    }
}

impl ClientApp for HttpLoad {
    fn on_open(&mut self, conn: ClientConn, _now: Nanos) {
        let c = &mut self.conns[conn.index()];
        c.id = Some(conn);
        c.phase = Phase::Ready;
        c.head_len = 0;
    }

    fn on_data(&mut self, conn: ClientConn, data: &[u8], now: Nanos) -> usize {
        // Field by field (not through `self.conn`) so the request set is readable alongside.
        let Some(c) = self.conns.get_mut(conn.index()).filter(|c| c.id == Some(conn)) else { return data.len() };
        let mut used = 0;
        let mut completed = false;
        while used < data.len() && !completed {
            match c.phase {
                Phase::Body => {
                    let k = c.body_left.min(data.len() - used);
                    c.body_left -= k;
                    used += k;
                    completed = c.body_left == 0;
                }
                // A response may start before our request is fully sent (an early error).
                Phase::Head | Phase::Sending => {
                    let old = c.head_len;
                    let take = (MAX_RESPONSE_HEAD - old).min(data.len() - used);
                    if take == 0 {
                        self.counters.bytes_received += used as u64;
                        self.broken(conn);
                        return data.len();
                    }
                    c.head[old..old + take].copy_from_slice(&data[used..used + take]);
                    let search_from = old.saturating_sub(3);
                    match c.head[search_from..old + take].windows(4).position(|w| w == b"\r\n\r\n") {
                        Some(p) => {
                            let end = search_from + p + 4;
                            used += end - old;
                            c.head_len = 0;
                            let head_only = self.requests.items.get(c.req as usize).is_some_and(|r| r.head_only);
                            if Self::parse_head(c, end, head_only).is_err() {
                                self.counters.bytes_received += used as u64;
                                self.broken(conn);
                                return data.len();
                            }
                            c.phase = Phase::Body;
                            completed = c.body_left == 0;
                        }
                        None => {
                            c.head_len = old + take;
                            used += take;
                        }
                    }
                }
                Phase::Broken => {
                    used = data.len();
                }
                Phase::Ready | Phase::Closed => {
                    // Bytes nobody asked for.
                    self.counters.bytes_received += used as u64;
                    self.broken(conn);
                    return data.len();
                }
            }
        }
        self.counters.bytes_received += used as u64;
        if completed {
            // Any bytes after the response are offered again (and are an error there).
            self.complete(conn.index(), now);
        }
        used
    }

    fn poll_send(&mut self, conn: ClientConn, now: Nanos, out: &mut dyn FnMut(&[u8]) -> usize) {
        // Field by field (not through `self.conn`) so the request bytes are borrowed alongside.
        let Some(c) = self.conns.get_mut(conn.index()).filter(|c| c.id == Some(conn)) else { return };
        if c.phase == Phase::Ready && !self.stopping && !self.requests.items.is_empty() {
            c.phase = Phase::Sending;
            c.sent = 0;
            c.head_len = 0;
            c.started = now;
            self.counters.requests_sent += 1;
        }
        if c.phase != Phase::Sending {
            return;
        }
        let bytes = &self.requests.items[c.req as usize].bytes;
        let before = c.sent;
        while c.sent < bytes.len() {
            let n = out(&bytes[c.sent..]);
            if n == 0 {
                break;
            }
            c.sent += n;
        }
        if c.sent == bytes.len() {
            c.phase = Phase::Head;
        }
        self.counters.bytes_sent += (c.sent - before) as u64;
    }

    fn wants_close(&mut self, conn: ClientConn) -> bool {
        let stopping = self.stopping;
        self.conn(conn).is_some_and(|c| stopping && c.phase == Phase::Ready)
    }

    fn on_close(&mut self, conn: ClientConn, kind: CloseKind, _now: Nanos) {
        let c = &mut self.conns[conn.index()];
        let in_flight = c.id == Some(conn) && matches!(c.phase, Phase::Sending | Phase::Head | Phase::Body);
        match kind {
            CloseKind::ConnectFailed => self.counters.connect_errors += 1,
            // Timeouts and protocol errors were counted when they were found.
            CloseKind::Aborted | CloseKind::Closed => {}
            CloseKind::Reset => self.counters.read_errors += 1,
            CloseKind::PeerClosed if in_flight => self.counters.read_errors += 1,
            CloseKind::PeerClosed => self.counters.server_closes += 1,
        }
        // The request that was in flight is sent again on the next connection.
        c.id = None;
        c.phase = Phase::Closed;
        c.head_len = 0;
        c.body_left = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadgen::requests::Request;

    fn client(timeout_us: u64) -> (HttpLoad, ClientConn) {
        let requests = Requests::from_body(b"a v=1 1\nb v=2 2\n", "/write", "h").unwrap();
        let mut load = HttpLoad::new(Arc::new(requests), 4, timeout_us);
        let conn = ClientConn::for_tests(1, 7);
        load.on_open(conn, Nanos::ZERO);
        (load, conn)
    }

    /// Sends the next request whole; returns its bytes.
    fn send(load: &mut HttpLoad, conn: ClientConn, at_ms: u64) -> Vec<u8> {
        let mut wire = Vec::new();
        load.poll_send(conn, Nanos::from_millis(at_ms), &mut |b| {
            wire.extend_from_slice(b);
            b.len()
        });
        wire
    }

    #[test]
    fn responses_split_anywhere_are_timed_and_counted_and_the_next_request_follows() {
        let (mut load, conn) = client(1_000_000);
        let req = send(&mut load, conn, 0);
        assert!(req.starts_with(b"POST /write HTTP/1.1\r\n") && req.ends_with(b"b v=2 2\n"));
        assert!(send(&mut load, conn, 1).is_empty(), "one request in flight");
        for b in b"HTTP/1.1 204 No Content\r\nX-A: b\r\n\r\n" {
            assert_eq!(load.on_data(conn, &[*b], Nanos::from_millis(5)), 1);
        }
        let c = *load.counters();
        assert_eq!((c.requests_sent, c.responses, c.status_2xx, c.records_2xx), (1, 1, 1, 2));
        assert_eq!(load.histogram.len(), 1);
        assert_eq!(load.histogram.max(), load.histogram.highest_equivalent(5_000));
        // A 400 with a body arriving in two pieces, body split from its head.
        assert_eq!(send(&mut load, conn, 10), req);
        let resp = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 11\r\n\r\n{\"e\":\"bad\"}";
        assert_eq!(load.on_data(conn, &resp[..30], Nanos::from_millis(12)), 30);
        assert_eq!(load.on_data(conn, &resp[30..], Nanos::from_millis(12)), resp.len() - 30);
        let c = *load.counters();
        assert_eq!((c.responses, c.status_4xx, c.records_2xx, c.socket_errors()), (2, 1, 2, 0));
    }

    #[test]
    fn bytes_after_a_response_are_left_for_the_next_call_and_unasked_bytes_break_the_connection() {
        let (mut load, conn) = client(1_000_000);
        send(&mut load, conn, 0);
        let two = b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
        assert_eq!(load.on_data(conn, two, Nanos::from_millis(1)), two.len() / 2);
        assert_eq!(load.on_data(conn, &two[two.len() / 2..], Nanos::from_millis(1)), two.len() / 2);
        assert_eq!(load.counters().protocol_errors, 1);
        assert_eq!(load.poll_aborts(Nanos::from_millis(2)), &[conn]);
        assert!(load.poll_aborts(Nanos::from_millis(3)).is_empty());
        load.on_close(conn, CloseKind::Aborted, Nanos::from_millis(4));
        assert_eq!(load.counters().socket_errors(), 1, "the abort is not counted twice");
    }

    #[test]
    fn a_head_request_expects_no_body_despite_content_length() {
        let head = Request { bytes: b"HEAD /ping HTTP/1.1\r\n\r\n".to_vec(), body_len: 0, head_only: true };
        let mut load = HttpLoad::new(Arc::new(Requests { items: vec![head] }), 1, 1_000_000);
        let conn = ClientConn::for_tests(0, 0);
        load.on_open(conn, Nanos::ZERO);
        send(&mut load, conn, 0);
        let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n";
        assert_eq!(load.on_data(conn, resp, Nanos::from_millis(1)), resp.len());
        assert_eq!((load.counters().status_2xx, load.counters().records_2xx), (1, 0));
        assert!(!send(&mut load, conn, 2).is_empty(), "the next request goes out: the response was complete");
    }

    #[test]
    fn garbage_chunked_and_oversized_heads_are_protocol_errors() {
        for resp in [
            b"NOT HTTP\r\n\r\n".to_vec(),
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
            [b"HTTP/1.1 200 OK\r\nX: ".as_slice(), &[b'a'; MAX_RESPONSE_HEAD]].concat(),
        ] {
            let (mut load, conn) = client(1_000_000);
            send(&mut load, conn, 0);
            load.on_data(conn, &resp, Nanos::from_millis(1));
            assert_eq!(load.counters().protocol_errors, 1, "{:?}", String::from_utf8_lossy(&resp[..20]));
            assert_eq!(load.counters().responses, 0);
        }
    }

    #[test]
    fn unanswered_requests_time_out_once_and_closes_are_classified() {
        let (mut load, conn) = client(100_000);
        send(&mut load, conn, 0);
        assert!(load.poll_aborts(Nanos::from_millis(100)).is_empty());
        assert_eq!(load.poll_aborts(Nanos::from_millis(101)), &[conn]);
        assert!(load.poll_aborts(Nanos::from_millis(500)).is_empty());
        load.on_close(conn, CloseKind::Aborted, Nanos::from_millis(501));
        assert_eq!((load.counters().timeouts, load.counters().socket_errors()), (1, 1));
        // A server close between requests is not an error; during one it is.
        let c2 = ClientConn::for_tests(2, 0);
        load.on_open(c2, Nanos::from_millis(600));
        load.on_close(c2, CloseKind::PeerClosed, Nanos::from_millis(601));
        let c3 = ClientConn::for_tests(3, 0);
        load.on_open(c3, Nanos::from_millis(600));
        send(&mut load, c3, 600);
        load.on_close(c3, CloseKind::PeerClosed, Nanos::from_millis(601));
        load.on_close(ClientConn::for_tests(0, 0), CloseKind::ConnectFailed, Nanos::from_millis(601));
        let c = load.counters();
        assert_eq!((c.server_closes, c.read_errors, c.connect_errors, c.socket_errors()), (1, 1, 1, 3));
    }
}
