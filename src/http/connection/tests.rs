//! Connection tests: byte-array request vectors (a comment per case), a
//! virtual clock, and property tests for splits and arbitrary input.

use super::buffers::SHRINK_ABOVE;
use super::*;
use crate::http::{Event, HttpConfig, HttpError, Response};
use crate::time::Nanos;
use proptest::prelude::*;
use std::io::Write as _;

const MS: u64 = 1_000_000;

fn config() -> HttpConfig {
    HttpConfig { max_body_bytes: 1024, max_header_bytes: 512, ..HttpConfig::default() }
}

fn conn() -> Connection {
    Connection::new(&config(), Nanos::ZERO)
}

/// Feeds all of `bytes` (asserting it is all taken).
fn feed(c: &mut Connection, bytes: &[u8], now: u64) {
    assert_eq!(c.receive(bytes, Nanos::from_ns(now)), bytes.len(), "input refused");
}

/// A request as the test sees it.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    method: String,
    path: String,
    query: String,
    body: Vec<u8>,
}

fn next(c: &mut Connection, now: u64) -> Option<Result<Seen, HttpError>> {
    match c.poll_request(Nanos::from_ns(now))? {
        Event::Request(r) => Some(Ok(Seen {
            method: r.method().into(),
            path: r.path().into(),
            query: r.query().into(),
            body: r.body().to_vec(),
        })),
        Event::Error(e) => Some(Err(e)),
    }
}

fn request(c: &mut Connection) -> Seen {
    next(c, 0).expect("no event").expect("error event")
}

fn error(c: &mut Connection, now: u64) -> HttpError {
    next(c, now).expect("no event").expect_err("request event")
}

fn drain(c: &mut Connection) -> String {
    let out = String::from_utf8_lossy(c.take_output()).into_owned();
    let n = c.take_output().len();
    c.consume_output(n);
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

// A write with a Content-Length body.
const POST_CL: &[u8] = b"POST /write?db=x HTTP/1.1\r\n\
Host: a\r\n\
Content-Length: 11\r\n\
\r\n\
cpu v=1 100";

#[test]
fn post_with_content_length() {
    let mut c = conn();
    feed(&mut c, POST_CL, 0);
    let r = c.poll_request(Nanos::ZERO);
    let Some(Event::Request(r)) = r else { panic!("no request: {r:?}") };
    assert_eq!((r.method(), r.path(), r.query(), r.version_minor()), ("POST", "/write", "db=x", 1));
    assert_eq!(r.header("HOST"), Some(&b"a"[..]));
    assert_eq!(r.header_str("content-length"), Some("11"));
    assert_eq!(r.header("x-missing"), None);
    assert_eq!(r.headers().count(), 2);
    assert_eq!(r.body(), b"cpu v=1 100");
    assert!(r.keep_alive());
    // Nothing else until it is answered.
    assert!(c.poll_request(Nanos::ZERO).is_none());
    assert!(c.request().is_some());
    c.respond(&Response::no_content());
    assert_eq!(drain(&mut c), "HTTP/1.1 204 No Content\r\n\r\n");
    assert!(!c.wants_close());
    assert!(c.request().is_none());
}

#[test]
fn keep_alive_second_request() {
    let mut c = conn();
    for i in 0..3 {
        feed(&mut c, POST_CL, i);
        assert_eq!(request(&mut c).body, b"cpu v=1 100");
        c.respond(&Response::accepted(1));
        assert!(drain(&mut c).starts_with("HTTP/1.1 202 Accepted\r\n"));
        assert!(!c.wants_close());
    }
}

#[test]
fn pipelined_requests_with_held_responses_stay_in_order() {
    let mut c = conn();
    // Three requests in one segment: GET /ping, POST /write (body "a"), GET /health.
    let three = b"GET /ping HTTP/1.1\r\n\r\n\
POST /write HTTP/1.1\r\nContent-Length: 1\r\n\r\na\
GET /health HTTP/1.1\r\n\r\n";
    feed(&mut c, three, 0);
    assert_eq!(request(&mut c).path, "/ping");
    // The app holds the answer (ack = durable): nothing more is yielded.
    assert!(c.poll_request(Nanos::ZERO).is_none());
    assert!(c.poll_request(Nanos::ZERO).is_none());
    assert!(c.take_output().is_empty());
    // Answered later: the next request appears.
    c.respond(&Response::bytes(200, "text/plain", b"1"));
    let second = request(&mut c);
    assert_eq!((second.path.as_str(), second.body.as_slice()), ("/write", &b"a"[..]));
    c.respond(&Response::bytes(200, "text/plain", b"2"));
    assert_eq!(request(&mut c).path, "/health");
    c.respond(&Response::bytes(200, "text/plain", b"3"));
    let out = drain(&mut c);
    let bodies: Vec<&str> = out.split("HTTP/1.1 200 OK").skip(1).map(|r| &r[r.len() - 1..]).collect();
    assert_eq!(bodies, ["1", "2", "3"]);
    assert!(c.poll_request(Nanos::ZERO).is_none());
}

#[test]
fn body_split_byte_by_byte() {
    let mut c = conn();
    for (i, b) in POST_CL.iter().enumerate() {
        assert!(c.poll_request(Nanos::from_ns(i as u64)).is_none(), "early event at byte {i}");
        feed(&mut c, std::slice::from_ref(b), i as u64);
    }
    assert_eq!(request(&mut c).body, b"cpu v=1 100");
}

// Chunked: a chunk extension, two data chunks, a trailer field.
const CHUNKED: &[u8] = b"POST /api/v2/write?bucket=b HTTP/1.1\r\n\
Transfer-Encoding: chunked\r\n\
\r\n\
5;name=value\r\n\
hello\r\n\
7\r\n\
, world\r\n\
0\r\n\
X-Checksum: 1\r\n\
\r\n";

#[test]
fn chunked_with_extensions_and_trailers() {
    let mut c = conn();
    feed(&mut c, CHUNKED, 0);
    assert_eq!(request(&mut c).body, b"hello, world");
    c.respond(&Response::no_content());
    // The same split byte by byte, followed by a pipelined GET.
    for b in CHUNKED.iter().chain(b"GET /ping HTTP/1.1\r\n\r\n") {
        feed(&mut c, std::slice::from_ref(b), 0);
    }
    assert_eq!(request(&mut c).body, b"hello, world");
    c.respond(&Response::no_content());
    assert_eq!(request(&mut c).path, "/ping");
}

#[test]
fn gzip_bodies_content_length_and_chunked() {
    let body = b"cpu,host=a v=1 1\n".repeat(20);
    let gz = gzip(&body);
    let mut c = conn();
    let mut req =
        format!("POST /write HTTP/1.1\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n", gz.len()).into_bytes();
    req.extend_from_slice(&gz);
    feed(&mut c, &req, 0);
    assert_eq!(request(&mut c).body, body);
    c.respond(&Response::no_content());
    // Chunked + gzip, the gzip stream split in two chunks.
    let mut req = b"POST /write HTTP/1.1\r\nContent-Encoding: GZIP\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let (a, b) = gz.split_at(gz.len() / 2);
    for part in [a, b] {
        req.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        req.extend_from_slice(part);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    feed(&mut c, &req, 0);
    assert_eq!(request(&mut c).body, body);
}

#[test]
fn corrupt_gzip_is_400() {
    let mut gz = gzip(b"cpu v=1");
    let n = gz.len();
    gz[n - 5] ^= 1; // flip a bit of the CRC32 trailer
    let mut req = format!("POST /write HTTP/1.1\r\nContent-Encoding: gzip\r\nContent-Length: {n}\r\n\r\n").into_bytes();
    req.extend_from_slice(&gz);
    let mut c = conn();
    feed(&mut c, &req, 0);
    assert_eq!(error(&mut c, 0), HttpError::BadGzip);
    assert!(drain(&mut c).starts_with("HTTP/1.1 400 Bad Request\r\n"));
    assert!(c.wants_close());
}

#[test]
fn expect_100_continue_once_and_before_the_body() {
    let mut c = conn();
    // Head only: the client waits for 100 Continue.
    feed(&mut c, b"POST /write HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n", 0);
    assert_eq!(drain(&mut c), "HTTP/1.1 100 Continue\r\n\r\n");
    feed(&mut c, b"ab", 0);
    feed(&mut c, b"c", 0);
    assert!(c.take_output().is_empty(), "100 Continue sent twice");
    feed(&mut c, b"d", 0);
    assert_eq!(request(&mut c).body, b"abcd");
    c.respond(&Response::no_content());
    assert_eq!(drain(&mut c), "HTTP/1.1 204 No Content\r\n\r\n");
    // Body sent together with the head: no 100 Continue needed.
    feed(&mut c, b"POST /write HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx", 0);
    assert_eq!(request(&mut c).body, b"x");
    assert!(c.take_output().is_empty());
}

#[test]
fn too_large_from_content_length_without_reading_the_body() {
    let mut c = conn();
    // 2000 > max_body_bytes (1024); Expect must not produce a 100 Continue.
    feed(&mut c, b"POST /write HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2000\r\n\r\n", 0);
    assert_eq!(error(&mut c, 0), HttpError::BodyTooLarge);
    let out = drain(&mut c);
    assert!(out.starts_with("HTTP/1.1 413 Content Too Large\r\n"), "{out}");
    assert!(out.contains("Connection: close\r\n"));
    assert!(out.ends_with("\"}"));
    assert!(c.wants_close());
    // Body bytes that still arrive are discarded.
    assert_eq!(c.receive(&[b'x'; 3000], Nanos::ZERO), 3000);
}

#[test]
fn too_large_after_dechunking_or_inflating() {
    // Chunked: 3 × 400 bytes = 1200 > 1024.
    let mut c = conn();
    let mut req = b"POST /write HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        req.extend_from_slice(b"190\r\n");
        req.extend_from_slice(&[b'a'; 400]);
        req.extend_from_slice(b"\r\n");
    }
    let _ = c.receive(&req, Nanos::ZERO);
    assert_eq!(error(&mut c, 0), HttpError::BodyTooLarge);
    // One chunk announcing more than the limit is refused from its size line.
    let mut c = conn();
    feed(&mut c, b"POST /write HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nfffffff\r\n", 0);
    assert_eq!(error(&mut c, 0), HttpError::BodyTooLarge);
    // Gzip bomb: 256 KiB of zeros compresses to ~300 B; inflating stops at the limit.
    let bomb = gzip(&vec![0u8; 256 << 10]);
    assert!(bomb.len() < 1024);
    let mut req = format!("POST /write HTTP/1.1\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n", bomb.len())
        .into_bytes();
    req.extend_from_slice(&bomb);
    let mut c = conn();
    feed(&mut c, &req, 0);
    assert_eq!(error(&mut c, 0), HttpError::BodyTooLarge);
    assert!(c.decoded.capacity() <= c.body_limit());
}

#[test]
fn headers_too_large_is_431() {
    // A header value longer than max_header_bytes (512).
    let mut c = conn();
    let mut req = b"GET /ping HTTP/1.1\r\nX-Big: ".to_vec();
    req.extend_from_slice(&[b'a'; 600]);
    // Only 512 bytes are buffered; after the error the rest is discarded.
    assert_eq!(c.receive(&req, Nanos::ZERO), req.len());
    assert!(c.input.is_empty() && c.input.capacity() <= c.input_limit());
    assert_eq!(error(&mut c, 0), HttpError::HeadersTooLarge);
    assert!(drain(&mut c).starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
    // 65 header fields (> 64), small enough in bytes.
    let mut c = Connection::new(&HttpConfig { max_header_bytes: 4096, ..config() }, Nanos::ZERO);
    let mut req = b"GET /ping HTTP/1.1\r\n".to_vec();
    for i in 0..65 {
        req.extend_from_slice(format!("h{i}: v\r\n").as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    feed(&mut c, &req, 0);
    assert_eq!(error(&mut c, 0), HttpError::HeadersTooLarge);
}

#[test]
fn bad_requests_are_400() {
    let cases: &[(&[u8], HttpError)] = &[
        // Request line without a version (HTTP/0.9): refused at its line end.
        (b"GET /ping\r\n\r\n", HttpError::NotHttp),
        // Space inside a header name.
        (b"GET /ping HTTP/1.1\r\nBad Header: x\r\n\r\n", HttpError::BadRequestHead),
        // Unknown HTTP version.
        (b"GET /ping HTTP/2.0\r\n\r\n", HttpError::NotHttp),
        // Content-Length not a number.
        (b"POST /write HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", HttpError::BadContentLength),
        // Negative Content-Length.
        (b"POST /write HTTP/1.1\r\nContent-Length: -1\r\n\r\n", HttpError::BadContentLength),
        // Two different Content-Lengths.
        (b"POST /write HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", HttpError::BadContentLength),
        // Content-Length and Transfer-Encoding together (smuggling vector).
        (
            b"POST /write HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            HttpError::ConflictingFraming,
        ),
        // Chunk size not hex.
        (b"POST /write HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", HttpError::BadChunk),
        // Chunk data not followed by CRLF.
        (b"POST /write HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc\r\n", HttpError::BadChunk),
        // Chunk size line with a bare LF.
        (b"POST /write HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\nx\r\n", HttpError::BadChunk),
    ];
    for (i, (req, want)) in cases.iter().enumerate() {
        let mut c = conn();
        let _ = c.receive(req, Nanos::ZERO);
        assert_eq!(error(&mut c, 0), *want, "case {i}");
        let out = drain(&mut c);
        assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "case {i}: {out}");
        assert!(c.wants_close(), "case {i}");
    }
}

#[test]
fn garbage_before_a_head_is_400_at_once_not_408() {
    let cases: &[(&str, &[u8])] = &[
        // A TLS ClientHello to the HTTP port: 0x16 is no token byte.
        ("tls", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
        // NUL in the method.
        ("nul in method", b"PO\0ST /write HTTP/1.1\r\n"),
        // A "method" of 33 token bytes: longer than any method.
        ("long method", &[b'A'; 33]),
        // Control byte (TAB) in the target.
        ("control in target", b"GET /pi\tng HTTP/1.1\r\n"),
        // Version that is not HTTP/1.x, seen before the line ends.
        ("ftp version", b"GET / FTP/1.1"),
        // Two spaces between method and target.
        ("double space", b"GET  /ping"),
    ];
    for (name, bytes) in cases {
        let mut c = conn();
        // Taken whole (the rest is discarded after the error), answered
        // at time 0: no header timeout involved.
        assert_eq!(c.receive(bytes, Nanos::ZERO), bytes.len(), "{name}");
        assert_eq!(error(&mut c, 0), HttpError::NotHttp, "{name}");
        let out = drain(&mut c);
        assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{name}: {out}");
        assert!(out.contains("not an HTTP request line"), "{name}: {out}");
        assert!(c.wants_close(), "{name}");
    }
    // 4,000 random bytes (the issue's case), fed in 100-byte pieces: 400
    // before the header timeout, and the connection stops buffering them.
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let garbage: Vec<u8> = (0..4000)
        .map(|_| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng >> 24) as u8
        })
        .collect();
    let mut c = conn();
    for piece in garbage.chunks(100) {
        let _ = c.receive(piece, Nanos::from_ns(MS));
    }
    assert_eq!(error(&mut c, MS), HttpError::NotHttp);
    assert!(drain(&mut c).starts_with("HTTP/1.1 400 "));
    assert!(c.input.is_empty());
}

#[test]
fn no_request_line_end_within_the_header_limit_is_400() {
    // A valid-looking request line that never ends: 400 once the limit (512) is reached, not 408.
    let mut c = conn();
    let mut req = b"GET /".to_vec();
    req.extend_from_slice(&[b'a'; 600]);
    assert_eq!(c.receive(&req, Nanos::ZERO), req.len());
    assert_eq!(error(&mut c, 0), HttpError::NotHttp);
    assert!(drain(&mut c).starts_with("HTTP/1.1 400 "));
    // Empty lines only, likewise.
    let mut c = conn();
    let _ = c.receive(&[b'\n'; 600], Nanos::ZERO);
    assert_eq!(error(&mut c, 0), HttpError::NotHttp);
    // Below the limit a partial request line still waits (it may be a slow client).
    let mut c = conn();
    feed(&mut c, b"\r\nPOST /wri", 0);
    assert!(c.poll_request(Nanos::ZERO).is_none());
    feed(&mut c, b"te HTTP/1.", 0);
    feed(&mut c, b"1\r", 0);
    feed(&mut c, b"\nContent-Length: 0\r\n\r\n", 0);
    assert_eq!(request(&mut c).path, "/write");
}

#[test]
fn endless_chunk_size_line_is_400_not_a_stall() {
    // A chunk-size line (size 1 + an extension) that never ends.
    let mut c = conn();
    let mut req = b"POST /write HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;".to_vec();
    req.extend_from_slice(&[b'x'; 600]);
    assert_eq!(c.receive(&req, Nanos::ZERO), req.len());
    assert_eq!(error(&mut c, 0), HttpError::BadChunk);
    // Endless trailers likewise.
    let mut c = conn();
    let mut req = b"POST /write HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n".to_vec();
    for i in 0..100 {
        req.extend_from_slice(format!("t{i}: v\r\n").as_bytes());
    }
    let _ = c.receive(&req, Nanos::ZERO);
    assert_eq!(error(&mut c, 0), HttpError::BadChunk);
}

#[test]
fn unsupported_encodings() {
    // Content-Encoding br → 415.
    let mut c = conn();
    feed(&mut c, b"POST /write HTTP/1.1\r\nContent-Encoding: br\r\nContent-Length: 1\r\n\r\nx", 0);
    assert_eq!(error(&mut c, 0), HttpError::UnsupportedContentEncoding);
    assert!(drain(&mut c).starts_with("HTTP/1.1 415 "));
    // Transfer-Encoding gzip, chunked → 501.
    let mut c = conn();
    feed(&mut c, b"POST /write HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 0);
    assert_eq!(error(&mut c, 0), HttpError::UnsupportedTransferEncoding);
    assert!(drain(&mut c).starts_with("HTTP/1.1 501 "));
}

#[test]
fn header_timeout_is_408() {
    let mut c = conn();
    feed(&mut c, b"GET /ping HTTP/1.1\r\nHo", 5 * MS);
    assert!(c.poll_request(Nanos::from_ns(5 * MS + 9_999 * MS)).is_none());
    assert_eq!(c.poll_timeout(), Some(Nanos::from_ns(5 * MS + 10_000 * MS)));
    assert_eq!(error(&mut c, 5 * MS + 10_000 * MS), HttpError::HeaderTimeout);
    assert!(drain(&mut c).starts_with("HTTP/1.1 408 Request Timeout\r\n"));
    assert!(c.wants_close());
}

#[test]
fn stalled_body_is_408_and_idle_connection_closes_silently() {
    let mut c = conn();
    feed(&mut c, b"POST /write HTTP/1.1\r\nContent-Length: 10\r\n\r\nab", 0);
    feed(&mut c, b"c", 30_000 * MS);
    assert!(c.poll_request(Nanos::from_ns(89_999 * MS)).is_none());
    assert_eq!(error(&mut c, 90_000 * MS), HttpError::BodyTimeout);
    // Idle keep-alive connection: closes after idle_timeout, no response bytes.
    let mut c = conn();
    feed(&mut c, b"GET /ping HTTP/1.1\r\n\r\n", 0);
    let _ = request(&mut c);
    // A held response never times out.
    assert!(c.poll_request(Nanos::from_ns(1_000_000 * MS)).is_none());
    c.respond(&Response::no_content());
    // The idle clock restarts at the first call that knows the time after respond.
    c.handle_timeout(Nanos::from_ns(1_000_000 * MS));
    drain(&mut c);
    assert!(c.poll_request(Nanos::from_ns(1_000_000 * MS + 59_999 * MS)).is_none());
    assert!(!c.wants_close());
    assert!(c.poll_request(Nanos::from_ns(1_000_000 * MS + 60_000 * MS)).is_none());
    assert!(c.take_output().is_empty());
    assert!(c.wants_close());
}

#[test]
fn connection_close_and_http10() {
    // HTTP/1.1 with Connection: close.
    let mut c = conn();
    feed(&mut c, b"GET /ping HTTP/1.1\r\nConnection: close\r\n\r\nGET /ping HTTP/1.1\r\n\r\n", 0);
    let _ = request(&mut c);
    c.respond(&Response::no_content());
    assert!(!c.wants_close(), "before flush");
    let out = drain(&mut c);
    assert_eq!(out, "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
    assert!(c.wants_close());
    assert!(c.poll_request(Nanos::ZERO).is_none(), "pipelined request after close");
    // HTTP/1.0 without keep-alive closes.
    let mut c = conn();
    feed(&mut c, b"GET /health HTTP/1.0\r\n\r\n", 0);
    assert_eq!(request(&mut c).path, "/health");
    c.respond(&Response::bytes(200, "text/plain", b"ok"));
    assert!(drain(&mut c).contains("Connection: close\r\n"));
    assert!(c.wants_close());
    // HTTP/1.0 with keep-alive stays open and says so.
    let mut c = conn();
    feed(&mut c, b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 0);
    let _ = request(&mut c);
    c.respond(&Response::no_content());
    assert!(drain(&mut c).contains("Connection: keep-alive\r\n"));
    assert!(!c.wants_close());
    // The application can close after any response.
    feed(&mut c, b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 0);
    let _ = request(&mut c);
    c.respond(&Response::error(503, "unavailable", "shedding").closing());
    assert!(drain(&mut c).contains("Connection: close\r\n"));
    assert!(c.wants_close());
}

#[test]
fn head_request_gets_no_body() {
    let mut c = conn();
    feed(&mut c, b"HEAD /metrics HTTP/1.1\r\n\r\n", 0);
    let _ = request(&mut c);
    c.respond(&Response::bytes(200, "text/plain", b"12345"));
    assert_eq!(drain(&mut c), "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n");
}

#[test]
fn peer_eof() {
    // Two pipelined requests, then FIN (printf ... | nc): both answered, then close.
    let mut c = conn();
    feed(&mut c, b"GET /ping HTTP/1.1\r\n\r\nGET /health HTTP/1.1\r\n\r\nGET /par", 0);
    let _ = request(&mut c);
    c.receive_eof();
    c.respond(&Response::no_content());
    assert!(!c.wants_close());
    assert_eq!(request(&mut c).path, "/health");
    c.respond(&Response::no_content());
    assert_eq!(drain(&mut c).matches("204").count(), 2);
    assert!(c.poll_request(Nanos::ZERO).is_none(), "the partial third request is abandoned");
    assert!(c.wants_close());
    // FIN mid-head: close silently.
    let mut c = conn();
    feed(&mut c, b"GET /pi", 0);
    c.receive_eof();
    assert!(c.poll_request(Nanos::ZERO).is_none());
    assert!(c.wants_close());
}

#[test]
fn backpressure_and_idle_shrink() {
    let mut c = Connection::new(&HttpConfig { max_body_bytes: 256 << 10, ..config() }, Nanos::ZERO);
    // A request of 200 KiB body: taken in full (it fits the window).
    let mut req = format!("POST /write HTTP/1.1\r\nContent-Length: {}\r\n\r\n", 200 << 10).into_bytes();
    req.extend_from_slice(&vec![b'x'; 200 << 10]);
    // Followed by more requests than the look-ahead holds.
    let pipelined = b"GET /ping HTTP/1.1\r\n\r\n".repeat(100);
    req.extend_from_slice(&pipelined);
    let taken = c.receive(&req, Nanos::ZERO);
    assert!(taken < req.len() && taken >= req.len() - pipelined.len() + 512 - 22, "took {taken}");
    assert_eq!(request(&mut c).body.len(), 200 << 10);
    c.respond(&Response::no_content());
    let mut rest = &req[taken..];
    let mut seen = 0;
    while seen < 100 {
        let n = c.receive(rest, Nanos::ZERO);
        rest = &rest[n..];
        while let Some(Event::Request(_)) = c.poll_request(Nanos::ZERO) {
            c.respond(&Response::no_content());
            seen += 1;
        }
    }
    assert!(rest.is_empty());
    drain(&mut c);
    assert!(c.input.capacity() > SHRINK_ABOVE);
    c.handle_timeout(Nanos::from_ns(2_000 * MS));
    assert_eq!(c.input.capacity(), 0, "buffers shrunk when idle");
    assert!(!c.wants_close());
}

#[test]
fn steady_state_reuses_buffers() {
    let mut c = conn();
    feed(&mut c, POST_CL, 0);
    let _ = request(&mut c);
    c.respond(&Response::accepted(1));
    drain(&mut c);
    let caps = (c.input.capacity(), c.output.capacity(), c.scratch.capacity());
    for i in 0..100 {
        feed(&mut c, POST_CL, i);
        let _ = request(&mut c);
        c.respond(&Response::accepted(1));
        drain(&mut c);
    }
    assert_eq!((c.input.capacity(), c.output.capacity(), c.scratch.capacity()), caps);
}

/// Runs `pieces` through a connection, answering every request; returns
/// what was seen (requests and errors) and the output.
fn run(pieces: &[&[u8]]) -> (Vec<Result<Seen, HttpError>>, Vec<u8>) {
    let mut c = conn();
    let mut seen = Vec::new();
    let mut output = Vec::new();
    for piece in pieces {
        let mut rest = *piece;
        loop {
            let n = c.receive(rest, Nanos::ZERO);
            rest = &rest[n..];
            while let Some(e) = next(&mut c, 0) {
                if e.is_ok() {
                    c.respond(&Response::no_content());
                }
                seen.push(e);
            }
            output.extend_from_slice(c.take_output());
            let n = c.take_output().len();
            c.consume_output(n);
            assert!(c.input.capacity() <= c.input_limit());
            assert!(c.decoded.capacity() <= c.body_limit());
            assert!(c.compressed.capacity() <= c.body_limit());
            if n == 0 && rest.is_empty() || c.wants_close() {
                break;
            }
        }
    }
    (seen, output)
}

fn split_at_points(data: &[u8], points: &[usize]) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = points.iter().map(|p| p % (data.len() + 1)).collect();
    cuts.sort_unstable();
    let mut pieces = Vec::new();
    let mut start = 0;
    for cut in cuts.into_iter().chain([data.len()]) {
        pieces.push(data[start..cut].to_vec());
        start = cut;
    }
    pieces
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_and_stay_bounded(
        data in proptest::collection::vec(any::<u8>(), 0..2048),
        points in proptest::collection::vec(any::<usize>(), 0..16),
    ) {
        let pieces = split_at_points(&data, &points);
        let refs: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
        let _ = run(&refs);
        fuzz_connection(&data);
    }

    /// The early request-line check never refuses what httparse accepts.
    #[test]
    fn line_check_accepts_every_request_httparse_accepts(
        method in "[A-Za-z!#$%&'*+.^_`|~-]{1,32}",
        target in "[!-~\u{80}-\u{ff}]{1,40}",
        minor in 0..2u8,
        bare_lf in any::<bool>(),
        leading in 0..3usize,
        cut in any::<usize>(),
    ) {
        let eol = if bare_lf { "\n" } else { "\r\n" };
        let text = format!("{}{method} {target} HTTP/1.{minor}{eol}Host: a{eol}{eol}", eol.repeat(leading));
        let bytes = text.as_bytes();
        let mut fields = [httparse::EMPTY_HEADER; 4];
        if let Ok(httparse::Status::Complete(_)) = httparse::Request::new(&mut fields).parse(bytes) {
            // Checked in two pieces, as they may arrive.
            let cut = cut % (bytes.len() + 1);
            let first = head::LineCheck::START.advance(&bytes[..cut]);
            prop_assert!(first.is_ok(), "{:?}", text);
            let whole = first.unwrap().advance(bytes);
            prop_assert!(whole.is_ok_and(head::LineCheck::done), "{:?}", text);
        }
    }

    #[test]
    fn request_like_bytes_never_panic(
        parts in proptest::collection::vec(prop_oneof![
            Just(&b"POST /write HTTP/1.1\r\n"[..]),
            Just(&b"Content-Length: 5\r\n"[..]),
            Just(&b"Transfer-Encoding: chunked\r\n"[..]),
            Just(&b"Content-Encoding: gzip\r\n"[..]),
            Just(&b"Expect: 100-continue\r\n"[..]),
            Just(&b"\r\n"[..]),
            Just(&b"5\r\nhello\r\n0\r\n\r\n"[..]),
            Just(&b"hello"[..]),
            Just(&b"GET /ping HTTP/1.0\r\n"[..]),
            Just(&b"Connection: close\r\n"[..]),
            Just(&b"Content-Length: 0\r\n"[..]),
            Just(&b"fffffffffffffffff\r\n"[..]),
            Just(&b"0\r\nT: 1\r\n"[..]),
            Just(&b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xcb\x48\xcd\xc9\xc9\x07\x00\x86\xa6\x10\x36\x05\x00\x00\x00"[..]),
        ], 0..24),
        points in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let data = parts.concat();
        let pieces = split_at_points(&data, &points);
        let refs: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
        let _ = run(&refs);
    }

    #[test]
    fn any_valid_sequence_parses_the_same_at_any_split(
        picks in proptest::collection::vec(0..6usize, 1..8),
        points in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let gz = gzip(b"disk used=3 4\n");
        let mut gz_req = format!("POST /write HTTP/1.1\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n", gz.len())
            .into_bytes();
        gz_req.extend_from_slice(&gz);
        let templates: [&[u8]; 6] = [
            POST_CL,
            CHUNKED,
            &gz_req,
            b"GET /ping?a=%20 HTTP/1.1\r\n\r\n",
            b"POST /api/v1/metrics HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n{}",
            b"\r\nHEAD /ping HTTP/1.1\r\nX: y\r\n\r\n",
        ];
        let data: Vec<u8> = picks.iter().flat_map(|&i| templates[i].iter().copied()).collect();
        let whole = run(&[&data]);
        prop_assert_eq!(whole.0.len(), picks.len());
        prop_assert!(whole.0.iter().all(Result::is_ok));
        let pieces = split_at_points(&data, &points);
        let refs: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
        let split = run(&refs);
        prop_assert_eq!(&split.0, &whole.0);
        let out = String::from_utf8_lossy(&split.1).replace("HTTP/1.1 100 Continue\r\n\r\n", "");
        prop_assert_eq!(out, String::from_utf8_lossy(&whole.1).into_owned());
    }

    #[test]
    fn valid_requests_parse_the_same_at_any_split(points in proptest::collection::vec(any::<usize>(), 0..12)) {
        let gz = gzip(b"mem free=1 2\n");
        let mut data = POST_CL.to_vec();
        data.extend_from_slice(CHUNKED);
        data.extend_from_slice(b"POST /write HTTP/1.1\r\nExpect: 100-continue\r\nContent-Encoding: gzip\r\n");
        data.extend_from_slice(format!("Content-Length: {}\r\n\r\n", gz.len()).as_bytes());
        data.extend_from_slice(&gz);
        data.extend_from_slice(b"GET /ping?x=1 HTTP/1.1\r\n\r\n");
        let whole = run(&[&data]);
        prop_assert_eq!(whole.0.len(), 4);
        prop_assert!(whole.0.iter().all(Result::is_ok));
        let pieces = split_at_points(&data, &points);
        let refs: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
        let split = run(&refs);
        prop_assert_eq!(&split.0, &whole.0);
        // Output may differ only by a 100 Continue the unsplit run did not need.
        let out = String::from_utf8_lossy(&split.1).replace("HTTP/1.1 100 Continue\r\n\r\n", "");
        prop_assert_eq!(out, String::from_utf8_lossy(&whole.1).into_owned());
    }
}

// ---------------------------------------------------------------- pools and budget

use crate::http::{BodyBudget, ConnectionPools};
use std::sync::Arc;

fn budgeted(budget: &Arc<BodyBudget>) -> Connection {
    Connection::new(&config(), Nanos::ZERO).with_budget(Arc::clone(budget))
}

/// A Content-Length body reserves its bytes at the head and gives them back
/// when answered; a body that does not fit gets 503 + Retry-After + close.
#[test]
fn budget_reserves_content_length_and_refuses_beyond() {
    let budget = Arc::new(BodyBudget::new(100));
    let mut a = budgeted(&budget);
    feed(&mut a, b"POST /write HTTP/1.1\r\nContent-Length: 60\r\n\r\n", 0);
    assert_eq!((a.reserved_body_bytes(), budget.reserved()), (60, 60), "reserved at the head");
    let mut b = budgeted(&budget);
    feed(&mut b, b"POST /write HTTP/1.1\r\nContent-Length: 50\r\n\r\n0123456789", 0);
    assert_eq!(error(&mut b, 0), HttpError::BodyBudgetExhausted);
    let out = drain(&mut b);
    assert!(out.starts_with("HTTP/1.1 503 "), "{out}");
    assert!(out.contains("Retry-After: 1\r\n") && out.contains("Connection: close\r\n"), "{out}");
    // /write is a v1 endpoint: InfluxDB 1's error shape.
    assert!(out.contains(r#"{"error":""#) && !out.contains("\"code\""), "{out}");
    assert!(b.wants_close());
    assert_eq!((budget.reserved(), budget.refused()), (60, 1));
    // A body without Content-Length reserves nothing.
    let mut c = budgeted(&budget);
    feed(&mut c, b"GET /ping HTTP/1.1\r\n\r\n", 0);
    assert_eq!(request(&mut c).path, "/ping");
    feed(&mut a, &[b'x'; 60], 0);
    assert_eq!(request(&mut a).body.len(), 60);
    a.respond(&Response::no_content());
    assert_eq!((a.reserved_body_bytes(), budget.reserved()), (0, 0), "released when answered");
    // Closing mid-body releases too.
    let mut d = budgeted(&budget);
    feed(&mut d, b"POST /write HTTP/1.1\r\nContent-Length: 90\r\n\r\nxx", 0);
    assert_eq!(budget.reserved(), 90);
    drop(d);
    assert_eq!(budget.reserved(), 0);
}

/// Chunked bodies reserve per chunk; gzip bodies per inflate step (the
/// decoded buffer's capacity).
#[test]
fn budget_grows_with_chunks_and_inflation() {
    let budget = Arc::new(BodyBudget::new(100));
    let mut c = budgeted(&budget);
    feed(&mut c, b"POST /write HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n32\r\n", 0);
    assert_eq!(budget.reserved(), 50);
    feed(&mut c, &[b'a'; 50], 0);
    feed(&mut c, b"\r\n3c\r\n", 0);
    assert_eq!(error(&mut c, 0), HttpError::BodyBudgetExhausted);
    assert!(drain(&mut c).starts_with("HTTP/1.1 503 "));
    assert_eq!(budget.reserved(), 0, "released on failure");

    let config = HttpConfig { max_body_bytes: 1 << 20, ..config() };
    let budget = Arc::new(BodyBudget::new(16 << 10));
    let mut g = Connection::new(&config, Nanos::ZERO).with_budget(Arc::clone(&budget));
    let body = gzip(&[b'z'; 200 << 10]);
    let mut req = format!("POST /write HTTP/1.1\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n", body.len())
        .into_bytes();
    req.extend_from_slice(&body);
    feed(&mut g, &req, 0);
    assert_eq!(error(&mut g, 0), HttpError::BodyBudgetExhausted, "inflating beyond the budget");
    assert_eq!(budget.reserved(), 0);
}

/// A pooled connection borrows buffers only while it has something to hold,
/// and a chunked body waits for its de-chunk buffer until it is lent.
#[test]
fn pooled_connection_borrows_and_returns_buffers() {
    let mut pools = ConnectionPools::new(8);
    let mut c = Connection::new(&config(), Nanos::ZERO).pooled();
    let in_use = |p: &ConnectionPools| (p.body.counters().in_use, p.response.counters().in_use);
    c.attach_buffers(&mut pools);
    assert_eq!(in_use(&pools), (1, 2), "input, output and scratch");
    let req = b"POST /write HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    let taken = c.receive(req, Nanos::ZERO);
    assert!(c.needs_buffers(), "the body waits for a de-chunk buffer");
    assert!(c.poll_request(Nanos::ZERO).is_none());
    c.attach_buffers(&mut pools);
    assert!(!c.needs_buffers());
    feed(&mut c, &req[taken..], 0);
    assert_eq!(request(&mut c).body, b"hello");
    assert_eq!(in_use(&pools), (2, 2));
    c.return_buffers(&mut pools);
    assert_eq!(in_use(&pools), (2, 0), "the request is being answered: its buffers stay; empty output and scratch go");
    c.attach_buffers(&mut pools);
    c.respond(&Response::no_content());
    c.return_buffers(&mut pools);
    assert_eq!(in_use(&pools), (0, 1), "the output waits to be sent");
    assert_eq!(drain(&mut c), "HTTP/1.1 204 No Content\r\n\r\n");
    c.return_buffers(&mut pools);
    assert_eq!(in_use(&pools), (0, 0), "idle keep-alive: nothing held");
    for p in [pools.body.counters(), pools.response.counters()] {
        assert!(p.balanced(), "{p:?}");
    }
    // Recycled on the next request: no new buffer.
    let before = (pools.body.counters().allocations, pools.response.counters().allocations);
    c.attach_buffers(&mut pools);
    feed(&mut c, b"GET /ping HTTP/1.1\r\n\r\n", 0);
    assert_eq!(request(&mut c).path, "/ping");
    c.respond(&Response::no_content());
    c.release_buffers(&mut pools);
    assert_eq!(in_use(&pools), (0, 0));
    assert_eq!((pools.body.counters().allocations, pools.response.counters().allocations), before);
}

/// Shutdown of an idle connection whose request arrived with the signal:
/// the caller offers the received bytes before asking `wants_close`, so the
/// request is answered (with `Connection: close`), not cut off.
#[test]
fn shut_down_answers_a_request_received_before_the_close_decision() {
    let mut c = conn();
    c.shut_down();
    feed(&mut c, POST_CL, 0);
    assert!(!c.wants_close(), "a request arrived: answer it first");
    assert_eq!(request(&mut c).body, b"cpu v=1 100");
    c.respond(&Response::no_content());
    assert!(drain(&mut c).contains("Connection: close\r\n"));
    assert!(c.wants_close());
}

/// Shutdown of an idle connection: it closes at the first `wants_close`,
/// and what arrives after that decision is discarded, not answered.
#[test]
fn shut_down_closes_an_idle_connection_once_and_discards_later_input() {
    let mut c = conn();
    feed(&mut c, POST_CL, 0);
    assert_eq!(request(&mut c).body, b"cpu v=1 100");
    c.respond(&Response::no_content());
    drain(&mut c);
    assert!(!c.wants_close(), "keep-alive");
    c.shut_down();
    assert!(c.wants_close());
    feed(&mut c, POST_CL, 1);
    assert!(c.poll_request(Nanos::from_ns(1)).is_none());
    assert!(c.take_output().is_empty());
    assert!(c.wants_close());
}

// ---------------------------------------------------------------- deflate and zstd

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn raw_deflate(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zstd_frame(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 3).unwrap()
}

/// `POST /write` with `coding` and `body` (Content-Length framing, or chunked in two chunks).
fn encoded_request(coding: &str, body: &[u8], chunked: bool) -> Vec<u8> {
    if !chunked {
        let mut req =
            format!("POST /write HTTP/1.1\r\nContent-Encoding: {coding}\r\nContent-Length: {}\r\n\r\n", body.len())
                .into_bytes();
        req.extend_from_slice(body);
        return req;
    }
    let mut req = format!("POST /write HTTP/1.1\r\nContent-Encoding: {coding}\r\nTransfer-Encoding: chunked\r\n\r\n")
        .into_bytes();
    let (a, b) = body.split_at(body.len() / 2);
    for part in [a, b].into_iter().filter(|p| !p.is_empty()) {
        req.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        req.extend_from_slice(part);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    req
}

#[test]
fn deflate_and_zstd_bodies_are_decoded() {
    let body = b"cpu,host=a v=1 1\nmem,host=a used=2i 2\n".repeat(20);
    let two_frames = [zstd_frame(&body[..100]), zstd_frame(&body[100..])].concat();
    let cases: [(&str, Vec<u8>); 5] = [
        ("deflate", zlib(&body)),
        ("Deflate", raw_deflate(&body)), // what some clients send under that name
        ("zstd", zstd_frame(&body)),
        ("ZSTD", two_frames),
        ("gzip", gzip(&body)),
    ];
    for (coding, encoded) in &cases {
        for chunked in [false, true] {
            let mut c = conn();
            feed(&mut c, &encoded_request(coding, encoded, chunked), 0);
            assert_eq!(request(&mut c).body, body, "{coding} chunked={chunked}");
            c.respond(&Response::no_content());
        }
    }
}

#[test]
fn deflate_and_zstd_bombs_stop_at_the_body_limit() {
    // 256 KiB of zeros: a few hundred bytes compressed; the limit is 1 KiB.
    for (coding, bomb) in [("deflate", zlib(&vec![0u8; 256 << 10])), ("zstd", zstd_frame(&vec![0u8; 256 << 10]))] {
        assert!(bomb.len() < 1024, "{coding}: {}", bomb.len());
        let mut c = conn();
        feed(&mut c, &encoded_request(coding, &bomb, false), 0);
        assert_eq!(error(&mut c, 0), HttpError::BodyTooLarge, "{coding}");
        assert!(drain(&mut c).starts_with("HTTP/1.1 413 "), "{coding}");
        assert!(c.decoded.capacity() <= c.body_limit(), "{coding}: {}", c.decoded.capacity());
    }
}

#[test]
fn a_zstd_bomb_gets_413_within_the_budget() {
    // Within a budget: the decoded bytes are reserved as they are written,
    // and everything goes back once the connection answered.
    let budget = Arc::new(BodyBudget::new(1 << 20));
    let mut c = budgeted(&budget);
    let bomb = zstd_frame(&vec![0u8; 4 << 20]);
    feed(&mut c, &encoded_request("zstd", &bomb, false), 0);
    assert_eq!(error(&mut c, 0), HttpError::BodyTooLarge);
    assert!(budget.reserved() <= 2048 + bomb.len(), "{}", budget.reserved());
    drop(c);
    assert_eq!(budget.reserved(), 0);
}

#[test]
fn corrupt_deflate_and_zstd_are_400() {
    let body = b"cpu v=1 1\n".repeat(10);
    let mut bad_zlib = zlib(&body);
    let n = bad_zlib.len();
    bad_zlib[n - 1] ^= 1; // the Adler-32 trailer
    let truncated_zstd = zstd_frame(&body)[..10].to_vec();
    let mut trailing = zlib(&body);
    trailing.extend_from_slice(b"junk");
    let cases = [
        ("deflate", bad_zlib, HttpError::BadDeflate),
        ("deflate", trailing, HttpError::BadDeflate),
        ("deflate", b"not deflate at all".to_vec(), HttpError::BadDeflate),
        ("zstd", truncated_zstd, HttpError::BadZstd),
        ("zstd", b"not zstd".to_vec(), HttpError::BadZstd),
    ];
    for (coding, encoded, want) in cases {
        let mut c = conn();
        feed(&mut c, &encoded_request(coding, &encoded, false), 0);
        assert_eq!(error(&mut c, 0), want, "{coding} {encoded:?}");
        assert!(drain(&mut c).starts_with("HTTP/1.1 400 "));
    }
}

#[test]
fn a_zstd_window_beyond_the_bound_is_refused() {
    // A frame declaring a 2^27-byte window (long-distance mode, level 19):
    // decoding it would need 128 MiB; the decoder refuses it (400).
    let data = vec![7u8; 64];
    let mut enc = zstd::stream::Encoder::new(Vec::new(), 19).unwrap();
    enc.window_log(27).unwrap();
    enc.long_distance_matching(true).unwrap();
    // Without a known content size the frame keeps its declared window.
    enc.include_contentsize(false).unwrap();
    enc.write_all(&data).unwrap();
    let frame = enc.finish().unwrap();
    // The frame is valid: a decoder allowing 2^27 (zstd's default limit) reads it.
    let mut d = zstd::stream::Decoder::new(&frame[..]).unwrap();
    d.window_log_max(27).unwrap();
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut d, &mut out).unwrap();
    assert_eq!(out, data);
    let mut c = Connection::new(&HttpConfig { max_body_bytes: 1 << 20, ..config() }, Nanos::ZERO);
    feed(&mut c, &encoded_request("zstd", &frame, false), 0);
    assert_eq!(error(&mut c, 0), HttpError::BadZstd);
}

#[test]
fn stacked_codings_are_415() {
    let mut c = conn();
    feed(
        &mut c,
        b"POST /write HTTP/1.1\r\nContent-Encoding: gzip\r\nContent-Encoding: zstd\r\nContent-Length: 1\r\n\r\nx",
        0,
    );
    assert_eq!(error(&mut c, 0), HttpError::UnsupportedContentEncoding);
    let mut c = conn();
    feed(&mut c, b"POST /write HTTP/1.1\r\nContent-Encoding: identity\r\nContent-Length: 1\r\n\r\nx", 0);
    assert_eq!(request(&mut c).body, b"x");
}

#[test]
fn protocol_errors_have_the_endpoints_error_shape() {
    // 413 from Content-Length: v1 and v3 endpoints get `{"error"}`, v2 `{"code","message"}`.
    for (path, v1) in [("/write?db=x", true), ("/api/v3/write_lp?db=x", true), ("/api/v2/write", false)] {
        let mut c = conn();
        feed(&mut c, format!("POST {path} HTTP/1.1\r\nContent-Length: 5000\r\n\r\n").as_bytes(), 0);
        assert_eq!(error(&mut c, 0), HttpError::BodyTooLarge);
        let out = drain(&mut c);
        let body: serde_json::Value = serde_json::from_str(out.split_once("\r\n\r\n").unwrap().1).unwrap();
        if v1 {
            assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()) && body.get("code").is_none(), "{out}");
        } else {
            assert_eq!(body["code"], "request too large", "{out}");
        }
    }
    // A corrupt zstd body on /write (decoded after the head was read).
    let mut c = conn();
    feed(&mut c, &encoded_request("zstd", b"nope", false), 0);
    assert_eq!(error(&mut c, 0), HttpError::BadZstd);
    assert!(drain(&mut c).contains("{\"error\":\"malformed zstd body"));
}
