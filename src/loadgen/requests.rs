//! The HTTP requests loadgen replays: one given body wrapped in a POST, or
//! the requests found in a pcap (the client → server TCP payloads of each
//! flow to the HTTP ports, reassembled in sequence order and split into
//! requests with httparse). Built once before the run; the worker only
//! borrows the bytes.

use crate::net::{classify, Frame};
use crate::pcap::{PcapError, PcapReader};
use std::collections::HashMap;
use std::path::Path;

/// The TCP ports whose client → server payloads are taken from a pcap by default
/// (the appliance's HTTP port and InfluxDB's).
pub const DEFAULT_HTTP_PORTS: [u16; 2] = [8080, 8086];
/// Headers httparse may see in one request head.
const MAX_HEADERS: usize = 64;

/// Why requests could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RequestsError {
    #[error(transparent)]
    Pcap(#[from] PcapError),
    #[error("no complete HTTP request found in the pcap (TCP payloads to ports {0:?})")]
    NoRequests(Vec<u16>),
    #[error("the request path {0:?} must start with '/' and hold no spaces or control characters")]
    BadPath(String),
}

/// One request, bytes as sent on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub bytes: Vec<u8>,
    /// Length of the body (after the head).
    pub body_len: usize,
    /// A HEAD request: its response has a Content-Length but no body.
    pub head_only: bool,
}

/// What the pcap held besides the requests taken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PcapExtract {
    pub frames: u64,
    /// Client → server flows to an HTTP port with payload.
    pub flows: u64,
    /// Flows whose stream has a hole (a lost segment): read up to it.
    pub flows_with_gaps: u64,
    /// Streams whose tail is not a complete request (cut off or not HTTP).
    pub incomplete_tails: u64,
    /// Requests with `Transfer-Encoding: chunked` (not replayed).
    pub chunked_skipped: u64,
}

/// The requests of a run, replayed round-robin.
#[derive(Clone, Debug, Default)]
pub struct Requests {
    pub items: Vec<Request>,
}

impl Requests {
    /// `POST path` with `body` (Content-Type text/plain, keep-alive).
    pub fn from_body(body: &[u8], path: &str, host: &str) -> Result<Requests, RequestsError> {
        if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(RequestsError::BadPath(path.into()));
        }
        let mut bytes = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: metricsstream-loadgen\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        bytes.extend_from_slice(body);
        Ok(Requests { items: vec![Request { bytes, body_len: body.len(), head_only: false }] })
    }

    /// The requests of every client → server flow to one of `ports`, flows in
    /// order of their first packet, requests in stream order.
    pub fn from_pcap(path: &Path, ports: &[u16]) -> Result<(Requests, PcapExtract), RequestsError> {
        let mut reader = PcapReader::open(path)?;
        let mut frame = Vec::new();
        let mut extract = PcapExtract::default();
        // Flow (src ip, src port, dst ip, dst port) → index into `flows`.
        let mut index: HashMap<(u32, u16, u32, u16), usize> = HashMap::new();
        let mut flows: Vec<Vec<(u32, Vec<u8>)>> = Vec::new();
        let mut syn_seq: Vec<Option<u32>> = Vec::new();
        while reader.next_into(&mut frame)?.is_some() {
            extract.frames += 1;
            let Frame::Ipv4Tcp(tcp) = classify(&frame).frame else { continue };
            let dst_port = tcp.dst_port();
            if !ports.contains(&dst_port) {
                continue;
            }
            let key = (tcp.ip().src().to_bits(), tcp.src_port(), tcp.ip().dst().to_bits(), dst_port);
            let seq = tcp.seq_number();
            let payload = tcp.payload();
            let i = *index.entry(key).or_insert_with(|| {
                flows.push(Vec::new());
                syn_seq.push(None);
                flows.len() - 1
            });
            if tcp.flags().syn() {
                syn_seq[i] = Some(seq.wrapping_add(1));
            }
            if !payload.is_empty() {
                flows[i].push((seq, payload.to_vec()));
            }
        }
        let mut requests = Requests::default();
        for (segments, isn) in flows.iter_mut().zip(syn_seq) {
            if segments.is_empty() {
                continue;
            }
            extract.flows += 1;
            let (stream, gap) = reassemble(segments, isn);
            extract.flows_with_gaps += u64::from(gap);
            split_requests(&stream, &mut requests.items, &mut extract);
        }
        if requests.items.is_empty() {
            return Err(RequestsError::NoRequests(ports.to_vec()));
        }
        Ok((requests, extract))
    }

    /// Bytes of the largest request (sizes the send buffers).
    pub fn max_len(&self) -> usize {
        self.items.iter().map(|r| r.bytes.len()).max().unwrap_or(0)
    }
}

/// Orders the segments by sequence number (relative to the first data byte:
/// after the SYN if it was captured, else the lowest sequence number) and
/// returns the contiguous stream, dropping retransmitted bytes; true if it
/// stopped at a hole.
fn reassemble(segments: &mut [(u32, Vec<u8>)], isn: Option<u32>) -> (Vec<u8>, bool) {
    let base = isn.unwrap_or_else(|| {
        // Without the SYN: the segment from which all others are a short way ahead.
        let first = segments[0].0;
        segments.iter().map(|s| s.0).min_by_key(|&s| s.wrapping_sub(first).wrapping_add(1 << 31)).unwrap_or(first)
    });
    segments.sort_by_key(|(seq, _)| seq.wrapping_sub(base));
    let mut stream = Vec::new();
    for (seq, data) in segments.iter() {
        let offset = seq.wrapping_sub(base) as usize;
        if offset > stream.len() {
            return (stream, true);
        }
        let skip = stream.len() - offset;
        if skip < data.len() {
            stream.extend_from_slice(&data[skip..]);
        }
    }
    (stream, false)
}

/// Appends the complete requests at the start of `stream` to `out`.
fn split_requests(mut stream: &[u8], out: &mut Vec<Request>, extract: &mut PcapExtract) {
    while !stream.is_empty() {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        let head_len = match req.parse(stream) {
            Ok(httparse::Status::Complete(n)) => n,
            _ => {
                extract.incomplete_tails += 1;
                return;
            }
        };
        let mut body_len = 0usize;
        let mut chunked = false;
        for h in req.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                body_len = std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(0);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") && h.value.eq_ignore_ascii_case(b"chunked") {
                chunked = true;
            }
        }
        if chunked {
            // The body's end needs the chunk parser; the rest of the stream is not trusted.
            extract.chunked_skipped += 1;
            return;
        }
        let Some(bytes) = stream.get(..head_len + body_len) else {
            extract.incomplete_tails += 1;
            return;
        };
        out.push(Request { bytes: bytes.to_vec(), body_len, head_only: req.method == Some("HEAD") });
        stream = &stream[head_len + body_len..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pcap::synth::{generate, Kind, Params, TagOrder};
    use crate::pcap::PcapWriter;

    #[test]
    fn body_becomes_one_keep_alive_post() {
        let r = Requests::from_body(b"cpu v=1 1\n", "/write?db=x", "10.0.0.1:8080").unwrap();
        let text = String::from_utf8(r.items[0].bytes.clone()).unwrap();
        assert!(text.starts_with("POST /write?db=x HTTP/1.1\r\nHost: 10.0.0.1:8080\r\n"), "{text}");
        assert!(text.ends_with("Content-Length: 10\r\n\r\ncpu v=1 1\n"), "{text}");
        assert_eq!(r.items[0].body_len, 10);
        assert!(Requests::from_body(b"", "write", "h").is_err());
        assert!(Requests::from_body(b"", "/a b", "h").is_err());
    }

    #[test]
    fn pcap_http_conversations_give_back_their_requests() {
        let dir = std::env::temp_dir().join(format!("ms-loadgen-req-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("http.pcap");
        let params = Params {
            kind: Kind::Http,
            packets: 200,
            clients: 4,
            seed: 7,
            base_time_ns: 1_700_000_000_000_000_000,
            tag_order: TagOrder::Sorted,
        };
        let mut w = PcapWriter::create(&path).unwrap();
        generate(&params, |ts, f| w.write(ts, f)).unwrap();
        w.finish().unwrap();
        let (requests, extract) = Requests::from_pcap(&path, &DEFAULT_HTTP_PORTS).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(extract.flows as usize, requests.items.len(), "one request per synthetic conversation");
        assert_eq!((extract.flows_with_gaps, extract.incomplete_tails, extract.chunked_skipped), (0, 0, 0));
        for r in &requests.items {
            assert!(r.bytes.starts_with(b"POST /write?db=metrics&precision=ns HTTP/1.1\r\n"));
            let body = &r.bytes[r.bytes.len() - r.body_len..];
            assert!(body.ends_with(b"\n") && body.split(|&b| b == b'\n').count() > 10);
        }
        assert!(matches!(
            Requests::from_pcap(&path, &[9999]),
            Err(RequestsError::Pcap(_)) | Err(RequestsError::NoRequests(_))
        ));
    }

    #[test]
    fn reassembly_drops_retransmissions_reorders_and_stops_at_holes() {
        let mut segs = vec![(105u32, b"fgh".to_vec()), (100, b"abcde".to_vec()), (103, b"de".to_vec())];
        assert_eq!(reassemble(&mut segs, Some(100)), (b"abcdefgh".to_vec(), false));
        let mut segs = vec![(100u32, b"ab".to_vec()), (110, b"zz".to_vec())];
        assert_eq!(reassemble(&mut segs, None), (b"ab".to_vec(), true));
        // Sequence numbers that wrap.
        let mut segs = vec![(0u32, b"cd".to_vec()), (u32::MAX - 1, b"ab".to_vec())];
        assert_eq!(reassemble(&mut segs, Some(u32::MAX - 1)), (b"abcd".to_vec(), false));
    }

    #[test]
    fn stream_splits_into_requests_and_flags_a_cut_tail() {
        let one = b"POST /write HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
        let mut stream = one.to_vec();
        stream.extend_from_slice(one);
        stream.extend_from_slice(b"POST /write HTTP/1.1\r\nContent-Length: 9\r\n\r\nab");
        let (mut out, mut ex) = (Vec::new(), PcapExtract::default());
        split_requests(&stream, &mut out, &mut ex);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].bytes, one.to_vec());
        assert_eq!(ex.incomplete_tails, 1);
        let mut out = Vec::new();
        split_requests(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            &mut out,
            &mut ex,
        );
        assert!(out.is_empty());
        assert_eq!(ex.chunked_skipped, 1);
    }
}
