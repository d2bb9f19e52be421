//! Request routing and write-API query parameters: pure functions of the
//! method, path and query string, allocation-free (percent-decoding goes into
//! a caller's scratch buffer, and only for values that need it).

/// What a request is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `POST /write`: InfluxDB v1 line protocol.
    WriteV1,
    /// `POST /api/v2/write`: InfluxDB v2 line protocol.
    WriteV2,
    /// `POST /api/v1/metrics`: the MetricsStream JSON API.
    JsonMetrics,
    /// `GET|HEAD /ping`: Influx clients' liveness probe (204).
    Ping,
    /// `GET /health`.
    Health,
    /// `GET /metrics`: Prometheus text.
    Metrics,
}

/// A request no route accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("not found")]
    NotFound,
    /// The path exists; `allow` is the `Allow` header value to send.
    #[error("method not allowed")]
    MethodNotAllowed { allow: &'static str },
}

impl RouteError {
    pub fn status(self) -> u16 {
        match self {
            RouteError::NotFound => 404,
            RouteError::MethodNotAllowed { .. } => 405,
        }
    }

    /// The `Allow` header to send with a 405.
    pub fn allow(self) -> Option<&'static str> {
        match self {
            RouteError::NotFound => None,
            RouteError::MethodNotAllowed { allow } => Some(allow),
        }
    }

    /// The complete answer: 404, or 405 with its `Allow` header.
    pub fn response(self) -> Response<'static> {
        const POST: &[(&str, &str)] = &[("Allow", "POST")];
        const GET: &[(&str, &str)] = &[("Allow", "GET")];
        const GET_HEAD: &[(&str, &str)] = &[("Allow", "GET, HEAD")];
        match self {
            RouteError::NotFound => Response::error(404, "not found", "no such path"),
            RouteError::MethodNotAllowed { allow } => {
                let headers = match allow {
                    "POST" => POST,
                    "GET" => GET,
                    _ => GET_HEAD,
                };
                Response::error(405, "method not allowed", "method not allowed for this path").with_headers(headers)
            }
        }
    }
}

/// Routes `method` + `path` (the path without its query). Paths match
/// exactly; methods are case-sensitive (RFC 9110 §9.1).
pub fn route(method: &str, path: &str) -> Result<Route, RouteError> {
    let (route, allow) = match path {
        "/write" => (Route::WriteV1, "POST"),
        "/api/v2/write" => (Route::WriteV2, "POST"),
        "/api/v1/metrics" => (Route::JsonMetrics, "POST"),
        "/ping" => (Route::Ping, "GET, HEAD"),
        "/health" => (Route::Health, "GET"),
        "/metrics" => (Route::Metrics, "GET"),
        _ => return Err(RouteError::NotFound),
    };
    let ok = match route {
        Route::WriteV1 | Route::WriteV2 | Route::JsonMetrics => method == "POST",
        Route::Ping => method == "GET" || method == "HEAD",
        Route::Health | Route::Metrics => method == "GET",
    };
    if ok {
        Ok(route)
    } else {
        Err(RouteError::MethodNotAllowed { allow })
    }
}

/// Timestamp precision of a write: the parser's own type; the two write APIs
/// accept different spellings of it.
pub use crate::ingest::line_protocol::Precision;

/// InfluxDB v1 `precision=`: ns (or n), u, ms, s, m, h.
pub fn precision_v1(s: &str) -> Option<Precision> {
    Some(match s {
        "ns" | "n" => Precision::Nanoseconds,
        "u" => Precision::Microseconds,
        "ms" => Precision::Milliseconds,
        "s" => Precision::Seconds,
        "m" => Precision::Minutes,
        "h" => Precision::Hours,
        _ => return None,
    })
}

/// InfluxDB v2 `precision=`: ns, us, ms, s.
pub fn precision_v2(s: &str) -> Option<Precision> {
    Some(match s {
        "ns" => Precision::Nanoseconds,
        "us" => Precision::Microseconds,
        "ms" => Precision::Milliseconds,
        "s" => Precision::Seconds,
        _ => return None,
    })
}

use super::Response;
use crate::writer::AckMode;

/// A query string the write API refuses (answer 400 with the message).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("invalid precision: v1 accepts ns, u, ms, s, m, h")]
    PrecisionV1,
    #[error("invalid precision: v2 accepts ns, us, ms, s")]
    PrecisionV2,
    #[error("malformed percent-encoding in query string")]
    BadEncoding,
    #[error("query string values too long")]
    TooLong,
    #[error("invalid no_sync: accepts true or false")]
    NoSync,
    #[error("invalid X-Metricsstream-Ack: accepts durable or enqueued")]
    AckHeader,
    #[error("no_sync and X-Metricsstream-Ack ask for different acks")]
    AckConflict,
}

impl QueryError {
    /// The 400 answer, with this error's message.
    pub fn response(self) -> Response<'static> {
        let message = match self {
            QueryError::PrecisionV1 => "invalid precision: v1 accepts ns, u, ms, s, m, h",
            QueryError::PrecisionV2 => "invalid precision: v2 accepts ns, us, ms, s",
            QueryError::BadEncoding => "malformed percent-encoding in query string",
            QueryError::TooLong => "query string values too long",
            QueryError::NoSync => "invalid no_sync: accepts true or false",
            QueryError::AckHeader => "invalid X-Metricsstream-Ack: accepts durable or enqueued",
            QueryError::AckConflict => "no_sync and X-Metricsstream-Ack ask for different acks",
        };
        Response::error(400, "invalid", message)
    }
}

/// `POST /write` parameters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct V1Params<'a> {
    pub db: Option<&'a str>,
    pub precision: Precision,
    /// User (`u`), for credentials.
    pub user: Option<&'a str>,
    /// Password (`p`): the token, for credentials.
    pub password: Option<&'a str>,
    /// `no_sync` (InfluxDB 3): `Some(true)` asks for the enqueued ack,
    /// `Some(false)` for the durable one; `None`: the server's `ack`.
    pub no_sync: Option<bool>,
}

/// `POST /api/v2/write` parameters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct V2Params<'a> {
    pub org: Option<&'a str>,
    pub bucket: Option<&'a str>,
    pub precision: Precision,
    /// As [`V1Params::no_sync`].
    pub no_sync: Option<bool>,
}

/// Scratch space to percent-decode query values into; one per worker is
/// enough (values borrow it until the request is handled).
pub const QUERY_SCRATCH_BYTES: usize = 1024;

/// Parses the v1 write query (`db`, `precision`, `u`, `p`, `no_sync`; others ignored).
/// Values that need no decoding borrow `query`; others are decoded into `scratch`.
pub fn parse_v1<'a>(query: &'a str, scratch: &'a mut [u8]) -> Result<V1Params<'a>, QueryError> {
    let mut params = V1Params::default();
    let mut decoder = Decoder { rest: scratch };
    for (key, raw) in pairs(query) {
        match key {
            "db" => params.db = Some(decoder.decode(raw)?),
            "precision" => params.precision = precision_v1(decoder.decode(raw)?).ok_or(QueryError::PrecisionV1)?,
            "u" => params.user = Some(decoder.decode(raw)?),
            "p" => params.password = Some(decoder.decode(raw)?),
            "no_sync" => params.no_sync = Some(no_sync(decoder.decode(raw)?)?),
            _ => {}
        }
    }
    Ok(params)
}

/// Parses the v2 write query (`org`, `bucket`, `precision`, `no_sync`; others ignored).
pub fn parse_v2<'a>(query: &'a str, scratch: &'a mut [u8]) -> Result<V2Params<'a>, QueryError> {
    let mut params = V2Params::default();
    let mut decoder = Decoder { rest: scratch };
    for (key, raw) in pairs(query) {
        match key {
            "org" => params.org = Some(decoder.decode(raw)?),
            "bucket" => params.bucket = Some(decoder.decode(raw)?),
            "precision" => params.precision = precision_v2(decoder.decode(raw)?).ok_or(QueryError::PrecisionV2)?,
            "no_sync" => params.no_sync = Some(no_sync(decoder.decode(raw)?)?),
            _ => {}
        }
    }
    Ok(params)
}

/// `no_sync=true|false`, as InfluxDB 3 spells it.
fn no_sync(value: &str) -> Result<bool, QueryError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(QueryError::NoSync),
    }
}

/// The header a client names the ack it wants with, on any write route.
pub const ACK_HEADER: &str = "x-metricsstream-ack";

/// The ack one write request gets: `X-Metricsstream-Ack: durable|enqueued`
/// (case-insensitive) or the query's `no_sync`, else the server's `default`.
/// Both given and disagreeing is an error rather than a silent pick: the
/// client asked for two different promises.
pub fn request_ack(header: Option<&[u8]>, no_sync: Option<bool>, default: AckMode) -> Result<AckMode, QueryError> {
    let from_header = match header {
        None => None,
        Some(v) if v.eq_ignore_ascii_case(b"durable") => Some(AckMode::Durable),
        Some(v) if v.eq_ignore_ascii_case(b"enqueued") => Some(AckMode::Enqueued),
        Some(_) => return Err(QueryError::AckHeader),
    };
    let from_query = no_sync.map(|skip| if skip { AckMode::Enqueued } else { AckMode::Durable });
    match (from_header, from_query) {
        (Some(h), Some(q)) if h != q => Err(QueryError::AckConflict),
        (h, q) => Ok(h.or(q).unwrap_or(default)),
    }
}

/// `key=value` pairs of a query string, raw (keys are compared undecoded:
/// the parameter names used here never need escaping).
pub fn pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query.split('&').filter(|p| !p.is_empty()).map(|p| p.split_once('=').unwrap_or((p, "")))
}

/// Hands out successive pieces of a scratch buffer for decoded values.
struct Decoder<'a> {
    rest: &'a mut [u8],
}

impl<'a> Decoder<'a> {
    /// `raw` percent-decoded (`+` is a space, as form encoding has it).
    fn decode(&mut self, raw: &'a str) -> Result<&'a str, QueryError> {
        if !raw.bytes().any(|b| b == b'%' || b == b'+') {
            return Ok(raw);
        }
        let rest = std::mem::take(&mut self.rest);
        if rest.len() < raw.len() {
            return Err(QueryError::TooLong);
        }
        let (out, tail) = rest.split_at_mut(raw.len());
        self.rest = tail;
        let bytes = raw.as_bytes();
        let (mut i, mut n) = (0, 0);
        while i < bytes.len() {
            out[n] = match bytes[i] {
                b'%' => {
                    let hex = bytes.get(i + 1..i + 3).ok_or(QueryError::BadEncoding)?;
                    let hi = (hex[0] as char).to_digit(16).ok_or(QueryError::BadEncoding)?;
                    let lo = (hex[1] as char).to_digit(16).ok_or(QueryError::BadEncoding)?;
                    i += 2;
                    (hi * 16 + lo) as u8
                }
                b'+' => b' ',
                b => b,
            };
            i += 1;
            n += 1;
        }
        let out: &'a [u8] = &out[..n];
        std::str::from_utf8(out).map_err(|_| QueryError::BadEncoding)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route() {
        assert_eq!(route("POST", "/write"), Ok(Route::WriteV1));
        assert_eq!(route("POST", "/api/v2/write"), Ok(Route::WriteV2));
        assert_eq!(route("POST", "/api/v1/metrics"), Ok(Route::JsonMetrics));
        assert_eq!(route("GET", "/ping"), Ok(Route::Ping));
        assert_eq!(route("HEAD", "/ping"), Ok(Route::Ping));
        assert_eq!(route("GET", "/health"), Ok(Route::Health));
        assert_eq!(route("GET", "/metrics"), Ok(Route::Metrics));
    }

    #[test]
    fn unknown_paths_are_404() {
        for path in ["/", "/write/", "/writes", "/api/v2/write/x", "/WRITE", ""] {
            assert_eq!(route("POST", path), Err(RouteError::NotFound), "{path}");
        }
        assert_eq!(RouteError::NotFound.status(), 404);
        assert_eq!(RouteError::NotFound.allow(), None);
    }

    #[test]
    fn wrong_methods_are_405_with_allow() {
        let e = route("GET", "/write").unwrap_err();
        assert_eq!((e.status(), e.allow()), (405, Some("POST")));
        assert_eq!(route("PUT", "/api/v2/write").unwrap_err().allow(), Some("POST"));
        assert_eq!(route("GET", "/api/v1/metrics").unwrap_err().allow(), Some("POST"));
        assert_eq!(route("POST", "/ping").unwrap_err().allow(), Some("GET, HEAD"));
        assert_eq!(route("HEAD", "/health").unwrap_err().allow(), Some("GET"));
        assert_eq!(route("DELETE", "/metrics").unwrap_err().allow(), Some("GET"));
        // Methods are case-sensitive.
        assert_eq!(route("post", "/write").unwrap_err().status(), 405);
        let r = route("POST", "/ping").unwrap_err().response();
        assert_eq!((r.status, r.headers), (405, &[("Allow", "GET, HEAD")][..]));
        assert_eq!(route("GET", "/write").unwrap_err().response().headers, &[("Allow", "POST")]);
        assert_eq!(route("GET", "/nope").unwrap_err().response().status, 404);
    }

    #[test]
    fn v1_query() {
        let mut scratch = [0u8; QUERY_SCRATCH_BYTES];
        let p = parse_v1("db=telegraf&precision=s&u=alice&p=s3cr%2Bt%20x&rp=autogen", &mut scratch).unwrap();
        assert_eq!(
            p,
            V1Params {
                db: Some("telegraf"),
                precision: Precision::Seconds,
                user: Some("alice"),
                password: Some("s3cr+t x"),
                no_sync: None,
            }
        );
        let mut scratch = [0u8; QUERY_SCRATCH_BYTES];
        assert_eq!(parse_v1("", &mut scratch).unwrap(), V1Params::default());
        for (s, want) in [
            ("ns", Precision::Nanoseconds),
            ("u", Precision::Microseconds),
            ("ms", Precision::Milliseconds),
            ("s", Precision::Seconds),
            ("m", Precision::Minutes),
            ("h", Precision::Hours),
        ] {
            let q = format!("precision={s}");
            let mut scratch = [0u8; 16];
            assert_eq!(parse_v1(&q, &mut scratch).unwrap().precision, want);
        }
        assert_eq!(Precision::Hours.nanos_per_unit(), 3_600_000_000_000);
    }

    #[test]
    fn v2_query() {
        let mut scratch = [0u8; QUERY_SCRATCH_BYTES];
        let p = parse_v2("org=my+org&bucket=b%2F1&precision=us", &mut scratch).unwrap();
        assert_eq!(
            p,
            V2Params { org: Some("my org"), bucket: Some("b/1"), precision: Precision::Microseconds, no_sync: None }
        );
        let mut scratch = [0u8; QUERY_SCRATCH_BYTES];
        assert_eq!(parse_v2("bucket=x", &mut scratch).unwrap().precision, Precision::Nanoseconds);
    }

    #[test]
    fn query_errors() {
        let mut s = [0u8; QUERY_SCRATCH_BYTES];
        // v2 spelling is not v1's and vice versa.
        assert_eq!(parse_v1("precision=us", &mut s), Err(QueryError::PrecisionV1));
        let mut s = [0u8; QUERY_SCRATCH_BYTES];
        assert_eq!(parse_v2("precision=u", &mut s), Err(QueryError::PrecisionV2));
        let mut s = [0u8; QUERY_SCRATCH_BYTES];
        assert_eq!(parse_v2("precision=h", &mut s), Err(QueryError::PrecisionV2));
        let mut s = [0u8; QUERY_SCRATCH_BYTES];
        assert_eq!(parse_v1("db=%zz", &mut s), Err(QueryError::BadEncoding));
        let mut s = [0u8; QUERY_SCRATCH_BYTES];
        assert_eq!(parse_v1("db=%4", &mut s), Err(QueryError::BadEncoding));
        let mut s = [0u8; QUERY_SCRATCH_BYTES];
        assert_eq!(parse_v1("db=%ff", &mut s), Err(QueryError::BadEncoding)); // not UTF-8
        let mut s = [0u8; 4];
        assert_eq!(parse_v1("db=%20%20%20%20%20", &mut s), Err(QueryError::TooLong));
        assert!(QueryError::PrecisionV1.to_string().contains("ns, u, ms, s, m, h"));
        for e in [
            QueryError::PrecisionV1,
            QueryError::PrecisionV2,
            QueryError::BadEncoding,
            QueryError::TooLong,
            QueryError::NoSync,
            QueryError::AckHeader,
            QueryError::AckConflict,
        ] {
            let r = e.response();
            assert_eq!(r.status, 400);
            assert_eq!(r.body, crate::http::Body::Error { code: "invalid", message: &e.to_string() });
        }
    }

    #[test]
    fn no_sync_in_both_write_queries() {
        let mut s = [0u8; QUERY_SCRATCH_BYTES];
        assert_eq!(parse_v1("db=x&no_sync=true", &mut s).unwrap().no_sync, Some(true));
        let mut s = [0u8; QUERY_SCRATCH_BYTES];
        assert_eq!(parse_v2("bucket=x&no_sync=false", &mut s).unwrap().no_sync, Some(false));
        let mut s = [0u8; QUERY_SCRATCH_BYTES];
        assert_eq!(parse_v2("bucket=x", &mut s).unwrap().no_sync, None);
        for bad in ["no_sync=1", "no_sync=", "no_sync", "no_sync=TRUE", "no_sync=yes"] {
            let mut s = [0u8; QUERY_SCRATCH_BYTES];
            assert_eq!(parse_v1(bad, &mut s), Err(QueryError::NoSync), "{bad}");
            let mut s = [0u8; QUERY_SCRATCH_BYTES];
            assert_eq!(parse_v2(bad, &mut s), Err(QueryError::NoSync), "{bad}");
        }
    }

    #[test]
    fn the_request_ack_comes_from_the_header_or_no_sync_else_the_server() {
        use AckMode::{Durable, Enqueued};
        // Neither: the server's mode.
        assert_eq!(request_ack(None, None, Durable), Ok(Durable));
        assert_eq!(request_ack(None, None, Enqueued), Ok(Enqueued));
        // no_sync either way, on either server.
        assert_eq!(request_ack(None, Some(true), Durable), Ok(Enqueued));
        assert_eq!(request_ack(None, Some(false), Enqueued), Ok(Durable));
        // The header, case-insensitive.
        assert_eq!(request_ack(Some(b"enqueued"), None, Durable), Ok(Enqueued));
        assert_eq!(request_ack(Some(b"Durable"), None, Enqueued), Ok(Durable));
        // Both, agreeing, is fine; disagreeing is refused.
        assert_eq!(request_ack(Some(b"enqueued"), Some(true), Durable), Ok(Enqueued));
        assert_eq!(request_ack(Some(b"durable"), Some(true), Durable), Err(QueryError::AckConflict));
        for bad in [&b""[..], b"sync", b"durable,enqueued", b"fsync"] {
            assert_eq!(request_ack(Some(bad), None, Durable), Err(QueryError::AckHeader));
        }
    }
}
