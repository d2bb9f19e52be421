//! The request head: spans into the input buffer, the header limits, and what
//! a head asks for (Content-Length or chunked framing, gzip, keep-alive,
//! `Expect: 100-continue`).

use super::body::ChunkState;
use super::Connection;
use crate::http::HttpError;

/// More header fields than this is answered 431.
pub const MAX_HEADERS: usize = 64;
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Span {
    pub(super) start: u32,
    pub(super) end: u32,
}

impl Span {
    /// The span of `part`, a sub-slice of `buf`.
    fn of(buf: &[u8], part: &[u8]) -> Span {
        let start = (part.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
        debug_assert!(start <= buf.len() && part.len() <= buf.len() - start, "span outside the buffer");
        Span { start: start as u32, end: (start + part.len()) as u32 }
    }

    pub(super) fn get(self, buf: &[u8]) -> &[u8] {
        buf.get(self.start as usize..self.end as usize).unwrap_or(&[])
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Framing {
    Length(usize),
    Chunked,
}

/// The parsed request head, as spans into the input buffer.
#[derive(Clone, Copy, Debug)]
pub(super) struct Head {
    pub(super) len: usize,
    pub(super) method: Span,
    pub(super) path: Span,
    pub(super) query: Span,
    pub(super) minor: u8,
    pub(super) headers: [(Span, Span); MAX_HEADERS],
    pub(super) n_headers: usize,
    pub(super) keep_alive: bool,
    pub(super) expect_continue: bool,
    /// `Content-Encoding` of the body.
    pub(super) coding: Coding,
    pub(super) is_head: bool,
    pub(super) framing: Framing,
}

/// The body codings served (RFC 9110 §8.4.1): everything else is 415.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Coding {
    Identity,
    Gzip,
    /// HTTP's `deflate` is the zlib format (RFC 1950); raw deflate, which
    /// some clients send under that name, is accepted too.
    Deflate,
    Zstd,
}

impl Coding {
    fn of(value: &[u8]) -> Option<Coding> {
        let is = |name: &[u8]| value.eq_ignore_ascii_case(name);
        Some(match () {
            _ if is(b"identity") => Coding::Identity,
            _ if is(b"gzip") || is(b"x-gzip") => Coding::Gzip,
            _ if is(b"deflate") => Coding::Deflate,
            _ if is(b"zstd") => Coding::Zstd,
            _ => return None,
        })
    }

    /// Whether the body must be decoded.
    pub(super) fn compressed(self) -> bool {
        self != Coding::Identity
    }

    /// Decoded with a flate2 inflater (else zstd's decoder).
    pub(super) fn inflates(self) -> bool {
        matches!(self, Coding::Gzip | Coding::Deflate)
    }
}

impl Head {
    pub(super) const EMPTY: Head = Head {
        len: 0,
        method: Span { start: 0, end: 0 },
        path: Span { start: 0, end: 0 },
        query: Span { start: 0, end: 0 },
        minor: 1,
        headers: [(Span { start: 0, end: 0 }, Span { start: 0, end: 0 }); MAX_HEADERS],
        n_headers: 0,
        keep_alive: true,
        expect_continue: false,
        coding: Coding::Identity,
        is_head: false,
        framing: Framing::Length(0),
    };
}

impl Connection {
    /// Parses the head at `input[0..]`: `Ok(true)` when complete (and
    /// acceptable), `Ok(false)` when more bytes are needed.
    pub(super) fn parse_head(&mut self) -> Result<bool, HttpError> {
        let full = self.input.len() >= self.max_header;
        // Garbage (a port scanner, TLS to the HTTP port, random bytes) is
        // refused with 400 the moment it shows, instead of being buffered
        // until the header timeout answers 408. Checked incrementally, so a
        // request line trickling in costs linear time.
        self.line = self.line.advance(&self.input)?;
        if full && !self.line.done() {
            return Err(HttpError::NotHttp);
        }
        // Only run the parser once the blank line ending the head is there (or
        // the limit is reached), so a head trickling in byte by byte costs
        // linear, not quadratic, time.
        let end_seen = has_head_end(&self.input[self.scanned.saturating_sub(2)..]);
        self.scanned = self.input.len();
        if !full && !end_seen {
            return Ok(false);
        }
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut fields);
        let len = match req.parse(&self.input) {
            Ok(httparse::Status::Complete(len)) if len <= self.max_header => len,
            Ok(httparse::Status::Complete(_)) => return Err(HttpError::HeadersTooLarge),
            Ok(httparse::Status::Partial) if full => return Err(HttpError::HeadersTooLarge),
            Ok(httparse::Status::Partial) => return Ok(false),
            Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadersTooLarge),
            Err(_) => return Err(HttpError::BadRequestHead),
        };
        let buf = &self.input[..];
        let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
            return Err(HttpError::BadRequestHead);
        };
        let mut head = Head::EMPTY;
        head.len = len;
        head.method = Span::of(buf, method.as_bytes());
        let (path, query) = target.split_once('?').unwrap_or((target, &target[target.len()..]));
        head.path = Span::of(buf, path.as_bytes());
        head.query = Span::of(buf, query.as_bytes());
        head.minor = minor;
        head.is_head = method == "HEAD";
        let (mut length, mut chunked, mut other_te) = (None::<usize>, false, false);
        let (mut close, mut keep_alive, mut bad_encoding) = (false, false, false);
        for (i, h) in req.headers.iter().enumerate() {
            head.headers[i] = (Span::of(buf, h.name.as_bytes()), Span::of(buf, h.value));
            let value = trim(h.value);
            if h.name.eq_ignore_ascii_case("content-length") {
                let n = parse_length(value).ok_or(HttpError::BadContentLength)?;
                if length.is_some_and(|l| l != n) {
                    return Err(HttpError::BadContentLength);
                }
                length = Some(n);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                for coding in value.split(|&b| b == b',').map(trim) {
                    if coding.eq_ignore_ascii_case(b"chunked") && !chunked {
                        chunked = true;
                    } else {
                        other_te = true;
                    }
                }
            } else if h.name.eq_ignore_ascii_case("content-encoding") {
                // One coding at most: stacked codings (`gzip, zstd`) are refused.
                match Coding::of(value) {
                    Some(Coding::Identity) => {}
                    // snappy is left to the application: remote_write's body
                    // is one snappy block, which only that route decodes (the
                    // other routes refuse it with 415).
                    None if value.trim_ascii().eq_ignore_ascii_case(b"snappy") => {}
                    Some(coding) if head.coding == Coding::Identity => head.coding = coding,
                    _ => bad_encoding = true,
                }
            } else if h.name.eq_ignore_ascii_case("connection") {
                for token in value.split(|&b| b == b',').map(trim) {
                    close |= token.eq_ignore_ascii_case(b"close");
                    keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            } else if h.name.eq_ignore_ascii_case("expect") {
                head.expect_continue = minor == 1 && value.eq_ignore_ascii_case(b"100-continue");
            }
        }
        head.n_headers = req.headers.len();
        head.keep_alive = !close && (minor == 1 || keep_alive);
        if length.is_some() && (chunked || other_te) {
            return Err(HttpError::ConflictingFraming);
        }
        if other_te {
            return Err(HttpError::UnsupportedTransferEncoding);
        }
        if bad_encoding {
            return Err(HttpError::UnsupportedContentEncoding);
        }
        head.framing = match length {
            Some(n) if n > self.max_body => return Err(HttpError::BodyTooLarge),
            Some(n) => Framing::Length(n),
            None if chunked => Framing::Chunked,
            None => Framing::Length(0),
        };
        if let Framing::Length(n @ 1..) = head.framing {
            self.reserve_body(n)?;
        }
        // 100 Continue once, only if a body is expected and none of it has
        // arrived yet (a client that did not wait needs none). A refused
        // request returned above, so it gets its final status instead.
        if head.expect_continue && self.input.len() == len && head.framing != Framing::Length(0) {
            self.output.extend_from_slice(CONTINUE);
        }
        self.head = head;
        self.chunk = ChunkState::Size;
        self.chunk_pos = len;
        Ok(true)
    }
}

/// Where the check of a request line stands: what was seen up to `pos`.
/// Accepts a superset of what httparse accepts (so it never refuses a head
/// the full parse would take) but refuses, as soon as the byte arrives,
/// what can never become a request line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct LineCheck {
    pos: u32,
    state: LineState,
    /// Bytes of the current state (method length, version prefix matched).
    n: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LineState {
    /// Empty lines before the request line (RFC 9112 §2.2 lets a server ignore them).
    Leading,
    Method,
    Target,
    Version,
    /// After the version: only CR LF or LF may follow.
    VersionEnd,
    /// The request line is complete; the rest is httparse's business.
    Done,
}

/// Longer than any registered method (the longest, UPDATEREDIRECTREF, has
/// 17 bytes): a longer "method" is garbage, not a request we could route.
const MAX_METHOD: u8 = 32;
const VERSION_PREFIX: &[u8] = b"HTTP/1.";

impl LineCheck {
    pub(super) const START: LineCheck = LineCheck { pos: 0, state: LineState::Leading, n: 0 };

    pub(super) fn done(self) -> bool {
        self.state == LineState::Done
    }

    /// Checks `input[self.pos..]`, returning the new position and state.
    pub(super) fn advance(mut self, input: &[u8]) -> Result<LineCheck, HttpError> {
        use LineState::*;
        let start = self.pos as usize;
        for &b in input.get(start..).unwrap_or(&[]) {
            if self.state == Done {
                break;
            }
            self.pos += 1;
            self.state = match (self.state, b) {
                (Leading, b'\r' | b'\n') => Leading,
                (Leading | Method, b) if is_token(b) => {
                    self.n += 1;
                    if self.n > MAX_METHOD {
                        return Err(HttpError::NotHttp);
                    }
                    Method
                }
                (Method, b' ') => Target,
                // Any visible byte (and obs-text); controls and DEL never.
                (Target, b' ') => {
                    self.n = 0;
                    Version
                }
                (Target, b) if b > b' ' && b != 0x7f => Target,
                (Version, b) if usize::from(self.n) < VERSION_PREFIX.len() => {
                    if b != VERSION_PREFIX[usize::from(self.n)] {
                        return Err(HttpError::NotHttp);
                    }
                    self.n += 1;
                    Version
                }
                (Version, b'0' | b'1') => VersionEnd,
                (VersionEnd, b'\r') if self.n == VERSION_PREFIX.len() as u8 => {
                    self.n += 1;
                    VersionEnd
                }
                (VersionEnd, b'\n') => Done,
                _ => return Err(HttpError::NotHttp),
            };
        }
        Ok(self)
    }
}

/// RFC 9110 tchar.
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether `buf` contains the empty line ending a head (CRLF CRLF or LF LF).
fn has_head_end(buf: &[u8]) -> bool {
    buf.windows(2).enumerate().any(|(i, w)| w == b"\n\n" || (w == b"\n\r" && buf.get(i + 2) == Some(&b'\n')))
}

pub(super) fn trim(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(start, |e| e + 1);
    &v[start..end]
}

/// A Content-Length value: 1 to 18 ASCII digits, nothing else.
fn parse_length(v: &[u8]) -> Option<usize> {
    if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0usize, |n, &d| n.checked_mul(10)?.checked_add(usize::from(d - b'0')))
}
