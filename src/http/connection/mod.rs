//! One HTTP/1.1 server connection as a sans-IO state machine.
//!
//! The TCP layer feeds received bytes ([`Connection::receive`]), drains output
//! ([`Connection::take_output`] / [`Connection::consume_output`]) and closes
//! when [`Connection::wants_close`]. The application polls
//! ([`Connection::poll_request`]) and answers each request with
//! [`Connection::respond`], possibly later (`ack = durable`): the next
//! pipelined request is not yielded before the current one is answered, so
//! responses leave in request order.
//!
//! Memory: the current request (head + body) lives contiguously in one input
//! `Vec`, plus at most `max_header_bytes` of look-ahead; `receive` accepts
//! only what fits and the TCP layer keeps the rest in its receive window
//! (backpressure). Chunked bodies are de-chunked into a body `Vec`, gzip,
//! deflate and zstd bodies decoded into it, all capped at `max_body_bytes` (checked on the
//! decompressed size too). All buffers are kept across keep-alive requests and
//! shrunk after the connection has been idle for a second, if they grew large.
//!
//! Pooled mode ([`Connection::pooled`], what the worker uses): the buffers
//! are lent by the worker's [`ConnectionPools`] ([`Connection::attach_buffers`]
//! before feeding or answering, [`Connection::return_buffers`] after), so an
//! idle keep-alive connection holds none. A body that needs a de-chunk or
//! inflate buffer the connection does not hold waits ([`Connection::needs_buffers`])
//! until the next `attach_buffers`. With a [`BodyBudget`]
//! ([`Connection::with_budget`]) body bytes are reserved from the global
//! budget and a body that does not fit is answered 503.
//!
//! Layout: this file holds [`Connection`], its input and timeout paths and
//! [`RequestRef`]; `head.rs` parses the request head (limits, framing);
//! `body.rs` reads Content-Length and chunked bodies, decodes gzip/deflate/zstd and
//! reserves the body budget; `buffers.rs` lends and returns pooled buffers
//! and shrinks idle ones; `output.rs` answers requests and errors and drains
//! the output.

use super::{BodyBudget, ConnectionPools, HttpConfig, HttpError, Response};
use crate::time::Nanos;
pub(crate) use body::zstd_decoder;
use std::sync::Arc;

mod body;
mod buffers;
mod head;
mod output;

use body::ChunkState;
use head::{trim, Framing, Head, Span};

/// How long a connection must be idle before its buffers are shrunk.
const IDLE_SHRINK_NS: u64 = 1_000_000_000;
/// A request is not yielded while more response bytes than this wait to be
/// sent: a pipelining client that does not read cannot grow the output.
const OUTPUT_HIGH_WATER: usize = 64 << 10;
const NS_PER_MS: u64 = 1_000_000;

/// What [`Connection::poll_request`] yields.
#[must_use]
#[derive(Debug)]
pub enum Event<'c> {
    /// A complete request (head and decoded body). Answer it with
    /// [`Connection::respond`], now or later; it stays readable through
    /// [`Connection::request`] until then.
    Request(RequestRef<'c>),
    /// A protocol error. The error response (with `Connection: close`) is
    /// already queued; the connection reads no more requests. Do not respond.
    Error(HttpError),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Reading a request head starting at `input[0]`.
    Head,
    /// Head parsed; reading the body.
    Body,
    /// A complete request waits to be yielded.
    Ready,
    /// Yielded; waiting for `respond`.
    Dispatched,
    /// An error was found and answered; it waits to be yielded.
    Failed(HttpError),
    /// No further requests: close once the output is flushed.
    Done,
}

/// Where the current request's body is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BodyAt {
    Input(Span),
    Decoded,
}

/// One HTTP/1.1 server connection. See the module documentation.
pub struct Connection {
    max_body: usize,
    max_header: usize,
    idle_timeout_ns: u64,
    header_timeout_ns: u64,
    phase: Phase,
    head: Head,
    body_at: BodyAt,
    /// End of the current request in `input` (start of the next one).
    req_end: usize,
    chunk: ChunkState,
    /// Decode position in `input` while de-chunking.
    chunk_pos: usize,
    /// Trailer bytes seen so far (bounded by `max_header`).
    trailer_bytes: usize,
    /// How far `input` was searched for the end of the head.
    scanned: usize,
    /// How far the request line was checked for bytes that cannot be HTTP.
    line: head::LineCheck,
    peer_closed: bool,
    input: Vec<u8>,
    /// De-chunked and/or inflated body.
    decoded: Vec<u8>,
    /// De-chunked compressed bytes (chunked + a Content-Encoding only).
    compressed: Vec<u8>,
    output: Vec<u8>,
    out_pos: usize,
    /// Formatting space for response bodies.
    scratch: Vec<u8>,
    inflater: Option<flate2::Decompress>,
    /// zstd decoder (`Content-Encoding: zstd`), window bounded ([`ZstdPool`](crate::http::ZstdPool)).
    zstd: Option<zstd::zstd_safe::DCtx<'static>>,
    /// Start of the current request head (header timeout).
    head_started: Nanos,
    /// Last input or last response (idle timeout).
    last_activity: Nanos,
    /// Restart both clocks at the next call that knows the time.
    restart_clock: bool,
    /// Graceful shutdown: the next response closes the connection.
    closing: bool,
    /// Buffers come from the worker's pools (see the module documentation).
    pooled: bool,
    /// Which buffers (bits) are lent by the pools right now.
    lent: u8,
    budget: Option<Arc<BodyBudget>>,
    /// Bytes of the budget this connection holds for the current request.
    reserved: usize,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.release_body();
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("phase", &self.phase)
            .field("input", &self.input.len())
            .field("output", &(self.output.len() - self.out_pos))
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// A new connection accepted at `now`. Allocates nothing until bytes arrive.
    pub fn new(config: &HttpConfig, now: Nanos) -> Connection {
        Connection {
            // Clamped to what HttpConfig::validate allows, so spans fit u32
            // even for an unvalidated config.
            max_body: config.max_body_bytes.clamp(1, 1 << 30),
            max_header: config.max_header_bytes.clamp(256, 1 << 20),
            idle_timeout_ns: config.idle_timeout_ms.saturating_mul(NS_PER_MS),
            header_timeout_ns: config.header_timeout_ms.saturating_mul(NS_PER_MS),
            phase: Phase::Head,
            head: Head::EMPTY,
            body_at: BodyAt::Decoded,
            req_end: 0,
            chunk: ChunkState::Size,
            chunk_pos: 0,
            trailer_bytes: 0,
            scanned: 0,
            line: head::LineCheck::START,
            peer_closed: false,
            input: Vec::new(),
            decoded: Vec::new(),
            compressed: Vec::new(),
            output: Vec::new(),
            out_pos: 0,
            scratch: Vec::new(),
            inflater: None,
            zstd: None,
            head_started: now,
            last_activity: now,
            restart_clock: false,
            closing: false,
            pooled: false,
            lent: 0,
            budget: None,
            reserved: 0,
        }
    }

    /// Buffers come from the worker's pools: see [`Connection::attach_buffers`].
    pub fn pooled(mut self) -> Connection {
        self.pooled = true;
        self
    }

    /// Request bodies reserve their bytes from `budget` (503 when it is full).
    pub fn with_budget(mut self, budget: Arc<BodyBudget>) -> Connection {
        self.budget = Some(budget);
        self
    }

    /// Bytes of the body budget this connection holds now.
    pub fn reserved_body_bytes(&self) -> usize {
        self.reserved
    }

    /// Most bytes the input buffer ever holds: one maximal request plus the
    /// look-ahead. Its capacity never exceeds this.
    pub fn input_limit(&self) -> usize {
        self.max_header * 2 + self.max_body
    }

    /// Capacity of the body buffers never exceeds this.
    pub fn body_limit(&self) -> usize {
        self.max_body + 1
    }

    /// Offers received bytes; returns how many were taken. The rest must stay
    /// in the TCP receive buffer and be offered again later (after the
    /// application answered, or output drained): this is the backpressure
    /// that keeps the input buffer bounded. After an error or close decision
    /// input is discarded (all of it is "taken").
    #[must_use = "bytes not taken must be offered again"]
    pub fn receive(&mut self, mut bytes: &[u8], now: Nanos) -> usize {
        let total = bytes.len();
        self.restart_clock_at(now);
        if !bytes.is_empty() {
            self.last_activity = now;
        }
        loop {
            if matches!(self.phase, Phase::Failed(_) | Phase::Done) {
                return total;
            }
            let room = self.window().saturating_sub(self.input.len());
            let n = room.min(bytes.len());
            if n == 0 {
                return total - bytes.len();
            }
            if self.phase == Phase::Head && self.input.is_empty() {
                self.head_started = now;
            }
            let limit = self.input_limit();
            reserve_bounded(&mut self.input, n, limit);
            self.input.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            self.advance();
        }
    }

    /// The peer sent FIN (call it once all received bytes were taken): no
    /// more input. A partial request is abandoned; complete ones (the one
    /// being answered and pipelined ones) are still answered, then the
    /// connection closes.
    pub fn receive_eof(&mut self) {
        self.peer_closed = true;
        match self.phase {
            Phase::Head | Phase::Body => self.phase = Phase::Done,
            _ => {}
        }
    }

    /// Yields the next complete request or protocol error, after checking
    /// timeouts. Returns `None` while a yielded request is unanswered.
    #[must_use]
    pub fn poll_request(&mut self, now: Nanos) -> Option<Event<'_>> {
        self.handle_timeout(now);
        match self.phase {
            Phase::Failed(e) => {
                self.phase = Phase::Done;
                Some(Event::Error(e))
            }
            Phase::Ready if self.output.len() - self.out_pos <= OUTPUT_HIGH_WATER => {
                self.phase = Phase::Dispatched;
                Some(Event::Request(RequestRef { conn: self }))
            }
            _ => None,
        }
    }

    /// The request yielded and not yet answered, if any.
    pub fn request(&self) -> Option<RequestRef<'_>> {
        (self.phase == Phase::Dispatched).then_some(RequestRef { conn: self })
    }

    /// Whether a yielded request waits for [`Connection::respond`].
    pub fn awaiting_response(&self) -> bool {
        self.phase == Phase::Dispatched
    }

    /// Applies the header timeout (408), the stalled-body timeout (408) and the
    /// idle timeout (silent close: a 408 on an idle keep-alive connection
    /// would race the client's next request), and shrinks buffers of an idle
    /// connection. A request being answered by the application never times out.
    pub fn handle_timeout(&mut self, now: Nanos) {
        self.restart_clock_at(now);
        match self.poll_timeout() {
            Some(deadline) if now >= deadline => {}
            _ => return,
        }
        match self.phase {
            Phase::Head if !self.input.is_empty() => self.fail(HttpError::HeaderTimeout),
            Phase::Head => {
                if now.ns_since(self.last_activity) >= self.idle_timeout_ns {
                    self.phase = Phase::Done;
                }
                self.release_memory();
            }
            Phase::Body => self.fail(HttpError::BodyTimeout),
            _ => {}
        }
    }

    /// The next deadline: when [`Connection::handle_timeout`] next has
    /// something to do, if ever.
    pub fn poll_timeout(&self) -> Option<Nanos> {
        if self.restart_clock {
            return None;
        }
        match self.phase {
            Phase::Head if !self.input.is_empty() => Some(self.head_started.plus_ns(self.header_timeout_ns)),
            Phase::Head => {
                let shrink = self.last_activity.plus_ns(IDLE_SHRINK_NS);
                let idle = self.last_activity.plus_ns(self.idle_timeout_ns);
                Some(if self.holds_large_buffers() { shrink.min(idle) } else { idle })
            }
            Phase::Body => Some(self.last_activity.plus_ns(self.idle_timeout_ns)),
            _ => None,
        }
    }

    fn restart_clock_at(&mut self, now: Nanos) {
        if self.restart_clock {
            self.restart_clock = false;
            self.last_activity = now;
            self.head_started = now;
        }
    }

    /// How many bytes `input` may hold in the current phase.
    fn window(&self) -> usize {
        match self.phase {
            Phase::Head => self.max_header,
            Phase::Body => match self.head.framing {
                Framing::Length(n) => self.head.len + n,
                Framing::Chunked => self.chunk_pos + self.max_header,
            },
            Phase::Ready | Phase::Dispatched => self.req_end + self.max_header,
            Phase::Failed(_) | Phase::Done => 0,
        }
    }

    /// Drops the answered request's bytes and per-request state.
    fn finish_request(&mut self) {
        let end = self.req_end.min(self.input.len());
        self.input.drain(..end);
        self.req_end = 0;
        self.decoded.clear();
        self.compressed.clear();
        self.head = Head::EMPTY;
        self.chunk = ChunkState::Size;
        self.chunk_pos = 0;
        self.trailer_bytes = 0;
        self.scanned = 0;
        self.line = head::LineCheck::START;
        self.release_body();
    }

    /// Moves the state machine as far as the buffered input allows.
    fn advance(&mut self) {
        loop {
            match self.phase {
                Phase::Head => {
                    if self.input.is_empty() {
                        return;
                    }
                    match self.parse_head() {
                        Ok(false) => return,
                        Ok(true) => self.phase = Phase::Body,
                        Err(e) => return self.fail(e),
                    }
                }
                Phase::Body => {
                    if self.needs_buffers() {
                        return; // resumed by attach_buffers
                    }
                    let complete = match self.head.framing {
                        Framing::Length(n) => Ok(self.input.len() >= self.head.len + n),
                        Framing::Chunked => self.dechunk(),
                    };
                    match complete.and_then(|done| if done { self.finish_body().map(|()| true) } else { Ok(false) }) {
                        Ok(true) => self.phase = Phase::Ready,
                        Ok(false) => return,
                        Err(e) => return self.fail(e),
                    }
                }
                _ => return,
            }
        }
    }
}

/// A request yielded by [`Connection::poll_request`], borrowed from the connection.
#[derive(Clone, Copy)]
pub struct RequestRef<'c> {
    conn: &'c Connection,
}

impl std::fmt::Debug for RequestRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestRef")
            .field("method", &self.method())
            .field("path", &self.path())
            .field("query", &self.query())
            .field("body_len", &self.body().len())
            .finish_non_exhaustive()
    }
}

impl<'c> RequestRef<'c> {
    fn text(&self, span: Span) -> &'c str {
        std::str::from_utf8(span.get(&self.conn.input)).unwrap_or("")
    }

    pub fn method(&self) -> &'c str {
        self.text(self.conn.head.method)
    }

    /// The path, without the query.
    pub fn path(&self) -> &'c str {
        self.text(self.conn.head.path)
    }

    /// The raw query string after `?` (empty if none), still percent-encoded.
    pub fn query(&self) -> &'c str {
        self.text(self.conn.head.query)
    }

    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub fn version_minor(&self) -> u8 {
        self.conn.head.minor
    }

    /// Whether the connection stays open after this request (unless the
    /// response says otherwise).
    pub fn keep_alive(&self) -> bool {
        self.conn.head.keep_alive
    }

    /// All header fields in order, names as sent.
    pub fn headers(&self) -> impl Iterator<Item = (&'c str, &'c [u8])> + 'c {
        let conn = self.conn;
        conn.head.headers[..conn.head.n_headers].iter().map(move |&(name, value)| {
            (std::str::from_utf8(name.get(&conn.input)).unwrap_or(""), trim(value.get(&conn.input)))
        })
    }

    /// The first field named `name` (ASCII case-insensitive), value trimmed.
    pub fn header(&self, name: &str) -> Option<&'c [u8]> {
        self.headers().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v)
    }

    /// [`RequestRef::header`] as UTF-8 text, `None` if absent or not UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&'c str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The body: de-chunked and decoded (`Content-Encoding: gzip|deflate|zstd`).
    pub fn body(&self) -> &'c [u8] {
        match self.conn.body_at {
            BodyAt::Input(span) => span.get(&self.conn.input),
            BodyAt::Decoded => &self.conn.decoded,
        }
    }
}

/// Grows `v` so `additional` more bytes fit, never beyond `cap` capacity
/// (callers never push past `cap`), doubling otherwise.
fn reserve_bounded(v: &mut Vec<u8>, additional: usize, cap: usize) {
    let need = v.len() + additional;
    if need <= v.capacity() {
        return;
    }
    let want = need.max(v.capacity() * 2).max(4096).min(cap).max(need);
    v.reserve_exact(want - v.len());
}

/// Fuzz entry: the first bytes choose split points, the rest is fed as
/// received bytes in those pieces, with requests answered (some held) and
/// output drained. The first control byte's low bit chooses pooled mode with
/// a small body budget (buffers attached and returned around every call).
/// Panics only if an invariant breaks (buffers beyond their bounds, pool
/// counters out of balance, budget bytes not released).
pub fn fuzz_connection(data: &[u8]) {
    let config = HttpConfig { max_body_bytes: 4096, max_header_bytes: 512, ..HttpConfig::default() };
    let (control, mut bytes) = data.split_at(data.len().min(8));
    let pooled = control.first().is_some_and(|b| b & 1 == 1);
    let budget = Arc::new(BodyBudget::new(3000));
    let mut pools = ConnectionPools::new(4);
    let mut conn = Connection::new(&config, Nanos::ZERO);
    if pooled {
        conn = conn.pooled().with_budget(Arc::clone(&budget));
    }
    let mut now = Nanos::ZERO;
    let mut i = 0usize;
    while !bytes.is_empty() && !conn.wants_close() {
        let piece = usize::from(control.get(i % control.len().max(1)).copied().unwrap_or(7)) + 1;
        i += 1;
        if pooled {
            conn.attach_buffers(&mut pools);
        }
        let mut taken = conn.receive(&bytes[..piece.min(bytes.len())], now);
        while conn.needs_buffers() {
            conn.attach_buffers(&mut pools);
            taken += conn.receive(&bytes[taken..piece.min(bytes.len())], now);
        }
        bytes = &bytes[taken..];
        now = now.plus_ns(1_000_000);
        loop {
            if conn.needs_buffers() {
                conn.attach_buffers(&mut pools);
            }
            match conn.poll_request(now) {
                Some(Event::Request(req)) => {
                    let _ = (req.method(), req.path(), req.query(), req.header("host"), req.body().len());
                    conn.respond(&Response::no_content());
                }
                Some(Event::Error(_)) => {}
                None => break,
            }
        }
        assert!(conn.input.capacity() <= conn.input_limit());
        assert!(conn.decoded.capacity() <= conn.body_limit());
        assert!(conn.compressed.capacity() <= conn.body_limit());
        let n = conn.take_output().len();
        conn.consume_output(n);
        if pooled {
            conn.return_buffers(&mut pools);
            assert_eq!(budget.reserved(), conn.reserved_body_bytes(), "one connection holds all reservations");
            for p in [pools.body.counters(), pools.response.counters()] {
                assert!(p.balanced(), "{p:?}");
            }
            assert!(pools.body.counters().in_use + pools.response.counters().in_use <= 5);
        }
        if taken == 0 && conn.take_output().is_empty() && !conn.awaiting_response() {
            break;
        }
    }
    conn.release_buffers(&mut pools);
    drop(conn);
    assert_eq!(budget.reserved(), 0, "budget released on close");
    assert_eq!((pools.body.counters().in_use, pools.response.counters().in_use), (0, 0));
    assert_eq!(pools.inflaters.counters().in_use, 0);
    assert!(pools.inflaters.counters().balanced());
    assert_eq!(pools.zstd.counters().in_use, 0);
    assert!(pools.zstd.counters().balanced());
}

#[cfg(test)]
mod tests;
