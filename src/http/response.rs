//! Responses the application hands to a [`Connection`](super::Connection):
//! a borrowed description (status, extra headers, body) that the connection
//! serialises straight into its reusable output buffer, so answering a request
//! allocates nothing. There is no `Date` header: the connection has no clock
//! (RFC 9110 §6.6.1 lets an origin without a reliable clock omit it).

/// A response body. Bodies the appliance produces often (JSON errors, the
/// `202 {"accepted":N}` answer) are variants, formatted at serialisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body<'a> {
    /// No body; `Content-Length: 0` unless the status forbids it (1xx, 204, 304).
    Empty,
    /// Bytes sent as is, with `content_type`.
    Bytes { content_type: &'a str, bytes: &'a [u8] },
    /// `{"code":"...","message":"..."}`, JSON-escaped, `application/json`:
    /// InfluxDB 2's error shape.
    Error { code: &'a str, message: &'a str },
    /// `{"error":"..."}`, JSON-escaped: InfluxDB 1's (and 3's) error shape.
    ErrorV1 { message: &'a str },
    /// `{"accepted":N}`, `application/json`.
    Accepted(u64),
}

/// A response. Build with the constructors and `with_*` methods:
///
/// ```
/// use metricsstream::http::Response;
/// let limits = [("Retry-After", "2")];
/// let r = Response::error(429, "too many requests", "client over its rate").with_headers(&limits);
/// assert_eq!(r.status, 429);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response<'a> {
    pub status: u16,
    /// Reason phrase; `None` takes the standard one for `status`.
    pub reason: Option<&'a str>,
    /// Extra header fields. Names and values containing CR or LF are dropped
    /// (never written), so a value from a request cannot inject headers.
    pub headers: &'a [(&'a str, &'a str)],
    /// Pre-formatted header lines (`Name: value\r\n`...), appended verbatim:
    /// for helpers that render headers into their own stack buffer (rate-limit
    /// headers). Must end with CRLF if not empty.
    pub raw_headers: &'a [u8],
    pub body: Body<'a>,
    /// Close the connection after this response even if keep-alive was asked.
    pub close: bool,
}

impl<'a> Response<'a> {
    pub const fn new(status: u16) -> Response<'a> {
        Response { status, reason: None, headers: &[], raw_headers: &[], body: Body::Empty, close: false }
    }

    /// `204 No Content` (successful write with nothing to say).
    pub const fn no_content() -> Response<'a> {
        Response::new(204)
    }

    /// `202 {"accepted":n}`.
    pub const fn accepted(n: u64) -> Response<'a> {
        Response { body: Body::Accepted(n), ..Response::new(202) }
    }

    /// `status {"code":code,"message":message}`.
    pub const fn error(status: u16, code: &'a str, message: &'a str) -> Response<'a> {
        Response { body: Body::Error { code, message }, ..Response::new(status) }
    }

    /// The same response with a v1 error body (`{"error":message}`) in place
    /// of a `{"code","message"}` one: the v1 and v3 endpoints answer so.
    pub const fn v1_error_shape(self) -> Response<'a> {
        match self.body {
            Body::Error { message, .. } => Response { body: Body::ErrorV1 { message }, ..self },
            _ => self,
        }
    }

    pub const fn bytes(status: u16, content_type: &'a str, bytes: &'a [u8]) -> Response<'a> {
        Response { body: Body::Bytes { content_type, bytes }, ..Response::new(status) }
    }

    pub const fn with_headers(self, headers: &'a [(&'a str, &'a str)]) -> Response<'a> {
        Response { headers, ..self }
    }

    pub const fn with_raw_headers(self, raw_headers: &'a [u8]) -> Response<'a> {
        Response { raw_headers, ..self }
    }

    pub const fn with_reason(self, reason: &'a str) -> Response<'a> {
        Response { reason: Some(reason), ..self }
    }

    pub const fn closing(self) -> Response<'a> {
        Response { close: true, ..self }
    }

    /// Serialises the response outside a [`Connection`](super::Connection),
    /// e.g. a `503` + close for a SYN beyond `max_connections_per_worker`.
    /// `scratch` is reusable space for formatted bodies.
    pub fn encode(&self, out: &mut Vec<u8>, scratch: &mut Vec<u8>, close: bool) {
        self.write_to(out, scratch, false, close.then_some("close"));
    }

    /// Appends the serialised response to `out`. `scratch` is a reusable
    /// buffer for formatted bodies; `head_only` omits the body (HEAD) but keeps
    /// its Content-Length; `connection` is the `Connection` header value to send.
    pub(crate) fn write_to(&self, out: &mut Vec<u8>, scratch: &mut Vec<u8>, head_only: bool, connection: Option<&str>) {
        use std::io::Write as _;
        scratch.clear();
        let (content_type, body): (Option<&str>, &[u8]) = match self.body {
            Body::Empty => (None, &[]),
            Body::Bytes { content_type, bytes } => (Some(content_type), bytes),
            Body::Error { code, message } => {
                scratch.extend_from_slice(b"{\"code\":");
                json_string(scratch, code);
                scratch.extend_from_slice(b",\"message\":");
                json_string(scratch, message);
                scratch.push(b'}');
                (Some("application/json; charset=utf-8"), &scratch[..])
            }
            Body::ErrorV1 { message } => {
                scratch.extend_from_slice(b"{\"error\":");
                json_string(scratch, message);
                scratch.push(b'}');
                (Some("application/json; charset=utf-8"), &scratch[..])
            }
            Body::Accepted(n) => {
                // Writing to a Vec cannot fail.
                let _ = write!(scratch, "{{\"accepted\":{n}}}");
                (Some("application/json; charset=utf-8"), &scratch[..])
            }
        };
        let reason = self.reason.filter(|r| clean(r)).unwrap_or_else(|| reason_phrase(self.status));
        let _ = write!(out, "HTTP/1.1 {} {}\r\n", self.status, reason);
        let bodiless = self.status < 200 || self.status == 204 || self.status == 304;
        if !bodiless {
            if let Some(ct) = content_type.filter(|ct| clean(ct)) {
                out.extend_from_slice(b"Content-Type: ");
                out.extend_from_slice(ct.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            let _ = write!(out, "Content-Length: {}\r\n", body.len());
        }
        if let Some(c) = connection {
            let _ = write!(out, "Connection: {c}\r\n");
        }
        for (name, value) in self.headers {
            if !name.is_empty() && clean(name) && clean(value) && !name.contains(':') {
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(value.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
        debug_assert!(self.raw_headers.is_empty() || self.raw_headers.ends_with(b"\r\n"));
        out.extend_from_slice(self.raw_headers);
        out.extend_from_slice(b"\r\n");
        if !bodiless && !head_only {
            out.extend_from_slice(body);
        }
    }
}

fn clean(s: &str) -> bool {
    !s.bytes().any(|b| b == b'\r' || b == b'\n')
}

/// Appends `s` as a JSON string literal (quotes and escapes included).
fn json_string(out: &mut Vec<u8>, s: &str) {
    // serde_json escapes exactly as JSON requires and writes into the Vec
    // without an intermediate String; writing a &str cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// The standard reason phrase for the statuses the appliance sends.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        507 => "Insufficient Storage",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(r: &Response, head_only: bool, conn: Option<&str>) -> String {
        let (mut out, mut scratch) = (Vec::new(), Vec::new());
        r.write_to(&mut out, &mut scratch, head_only, conn);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn encode_outside_a_connection() {
        let (mut out, mut scratch) = (Vec::new(), Vec::new());
        Response::error(503, "unavailable", "too many connections").encode(&mut out, &mut scratch, true);
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("HTTP/1.1 503 Service Unavailable\r\n") && s.contains("Connection: close\r\n"));
    }

    #[test]
    fn no_content_has_no_length_or_body() {
        assert_eq!(render(&Response::no_content(), false, None), "HTTP/1.1 204 No Content\r\n\r\n");
    }

    #[test]
    fn accepted_body() {
        let s = render(&Response::accepted(42), false, None);
        assert_eq!(
            s,
            "HTTP/1.1 202 Accepted\r\nContent-Type: application/json; charset=utf-8\r\n\
             Content-Length: 15\r\n\r\n{\"accepted\":42}"
        );
    }

    #[test]
    fn error_body_is_escaped_json_and_headers_follow() {
        let h = [("Retry-After", "1"), ("RateLimit-Policy", "\"default\";q=100;w=1")];
        let r = Response::error(429, "too many requests", "quote \" backslash \\ newline \n tab \t ctl \u{1}")
            .with_headers(&h)
            .with_raw_headers(b"X-RateLimit-Remaining: 0\r\n");
        let s = render(&r, false, Some("close"));
        let (head, body) = s.split_once("\r\n\r\n").unwrap();
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["code"], "too many requests");
        assert_eq!(v["message"], "quote \" backslash \\ newline \n tab \t ctl \u{1}");
        assert!(head.starts_with("HTTP/1.1 429 Too Many Requests\r\n"));
        assert!(head.contains(&format!("Content-Length: {}\r\n", body.len())));
        assert!(head.contains("\r\nConnection: close\r\nRetry-After: 1\r\nRateLimit-Policy: \"default\";q=100;w=1"));
        assert!(head.ends_with("\r\nX-RateLimit-Remaining: 0"));
    }

    #[test]
    fn v1_error_shape() {
        let r = Response::error(400, "invalid", "bad \"line\"").v1_error_shape();
        let s = render(&r, false, None);
        assert!(s.ends_with("\r\n\r\n{\"error\":\"bad \\\"line\\\"\"}"), "{s}");
        // Other bodies are left alone.
        assert_eq!(Response::accepted(1).v1_error_shape(), Response::accepted(1));
    }

    #[test]
    fn head_only_keeps_length_drops_body_and_injection_is_dropped() {
        let h = [("X-Evil", "a\r\nSet-Cookie: x"), ("X-Ok", "1")];
        let r = Response::bytes(200, "text/plain", b"hello").with_headers(&h).with_reason("Fine");
        assert_eq!(
            render(&r, true, Some("keep-alive")),
            "HTTP/1.1 200 Fine\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: keep-alive\r\nX-Ok: 1\r\n\r\n"
        );
    }
}
