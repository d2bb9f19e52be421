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
    /// `POST /api/v3/write_lp`: InfluxDB 3 line protocol.
    WriteV3,
    /// `POST /api/v1/write`: Prometheus remote_write 1.0 (snappy protobuf).
    RemoteWrite,
    /// `GET|POST /query`: InfluxQL, only `CREATE DATABASE` and `SHOW DATABASES`.
    Query,
    /// `GET|HEAD /ping`: Influx clients' liveness probe (204 with version headers).
    Ping,
    /// `GET|HEAD /health`: InfluxDB 2's health shape.
    Health,
    /// `GET|HEAD /ready`: InfluxDB 2's readiness shape.
    Ready,
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
        const GET_POST: &[(&str, &str)] = &[("Allow", "GET, POST")];
        match self {
            RouteError::NotFound => Response::error(404, "not found", "no such path"),
            RouteError::MethodNotAllowed { allow } => {
                let headers = match allow {
                    "POST" => POST,
                    "GET" => GET,
                    "GET, POST" => GET_POST,
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
        "/api/v3/write_lp" => (Route::WriteV3, "POST"),
        "/api/v1/metrics" => (Route::JsonMetrics, "POST"),
        "/api/v1/write" => (Route::RemoteWrite, "POST"),
        "/query" => (Route::Query, "GET, POST"),
        "/ping" => (Route::Ping, "GET, HEAD"),
        "/health" => (Route::Health, "GET, HEAD"),
        "/ready" => (Route::Ready, "GET, HEAD"),
        "/metrics" => (Route::Metrics, "GET"),
        _ => return Err(RouteError::NotFound),
    };
    let ok = match route {
        Route::WriteV1 | Route::WriteV2 | Route::WriteV3 | Route::JsonMetrics | Route::RemoteWrite => method == "POST",
        Route::Query => method == "GET" || method == "POST",
        Route::Ping | Route::Health | Route::Ready => method == "GET" || method == "HEAD",
        Route::Metrics => method == "GET",
    };
    if ok {
        Ok(route)
    } else {
        Err(RouteError::MethodNotAllowed { allow })
    }
}

/// Whether answers on `path` carry errors in InfluxDB 1's `{"error": ...}`
/// shape (InfluxDB 1.x's `/write` and `/query`, InfluxDB 3's write endpoint)
/// rather than InfluxDB 2's `{"code","message"}`.
pub fn v1_error_shape(path: &str) -> bool {
    matches!(path, "/write" | "/query" | "/api/v3/write_lp")
}

/// The path of the request line at the start of `head` (up to `?` or the
/// space before the version), if there is one.
pub fn request_line_path(head: &[u8]) -> Option<&str> {
    let line = &head[..head.iter().position(|&b| b == b'\r' || b == b'\n').unwrap_or(head.len())];
    let target = line.split(|&b| b == b' ').nth(1)?;
    let path = target.split(|&b| b == b'?').next()?;
    std::str::from_utf8(path).ok()
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

/// InfluxDB 3 `precision=`: `auto` (the default: guessed per timestamp),
/// `second|millisecond|microsecond|nanosecond`, and the short `s|ms|us|ns`
/// that later InfluxDB 3 releases accept too.
pub fn precision_v3(s: &str) -> Option<Precision> {
    Some(match s {
        "auto" => Precision::Auto,
        "nanosecond" | "ns" => Precision::Nanoseconds,
        "microsecond" | "us" => Precision::Microseconds,
        "millisecond" | "ms" => Precision::Milliseconds,
        "second" | "s" => Precision::Seconds,
        _ => return None,
    })
}

/// `true|false` query flags (InfluxDB 3 `accept_partial`, `no_sync`).
fn flag(s: &str) -> Option<bool> {
    match s {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
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
    #[error("invalid precision: v3 accepts auto, second, millisecond, microsecond, nanosecond (or s, ms, us, ns)")]
    PrecisionV3,
    #[error("invalid accept_partial or no_sync: true or false")]
    BadFlag,
    #[error("missing db: /api/v3/write_lp needs ?db=")]
    MissingDb,
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
            QueryError::PrecisionV3 => {
                "invalid precision: v3 accepts auto, second, millisecond, microsecond, nanosecond (or s, ms, us, ns)"
            }
            QueryError::BadFlag => "invalid accept_partial or no_sync: true or false",
            QueryError::MissingDb => "missing db: /api/v3/write_lp needs ?db=",
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

/// `POST /api/v3/write_lp` parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct V3Params<'a> {
    pub db: &'a str,
    /// Default `auto`, as InfluxDB 3.
    pub precision: Precision,
    /// `None`: not given (InfluxDB 3's default is `true`).
    pub accept_partial: Option<bool>,
    /// As [`V1Params::no_sync`].
    pub no_sync: Option<bool>,
}

/// Parses the v3 write query (`db` required, `precision`, `accept_partial`, `no_sync`).
pub fn parse_v3<'a>(query: &'a str, scratch: &'a mut [u8]) -> Result<V3Params<'a>, QueryError> {
    let (mut db, mut precision, mut accept_partial, mut no_sync) = (None, Precision::Auto, None, None);
    let mut decoder = Decoder { rest: scratch };
    for (key, raw) in pairs(query) {
        match key {
            "db" => db = Some(decoder.decode(raw)?),
            "precision" => precision = precision_v3(decoder.decode(raw)?).ok_or(QueryError::PrecisionV3)?,
            "accept_partial" => accept_partial = Some(flag(raw).ok_or(QueryError::BadFlag)?),
            "no_sync" => no_sync = Some(flag(raw).ok_or(QueryError::NoSync)?),
            _ => {}
        }
    }
    let db = db.filter(|d| !d.is_empty()).ok_or(QueryError::MissingDb)?;
    Ok(V3Params { db, precision, accept_partial, no_sync })
}

/// The InfluxQL text of a `/query` request: `q=` from the query string, or
/// (POST, as Telegraf sends it) from a form-encoded body. `None`: no `q`.
pub fn query_text<'a>(query: &'a str, body: &'a [u8], scratch: &'a mut [u8]) -> Result<Option<&'a str>, QueryError> {
    let mut decoder = Decoder { rest: scratch };
    let form = std::str::from_utf8(body).unwrap_or("");
    for (key, raw) in pairs(query).chain(pairs(form)) {
        if key == "q" {
            return decoder.decode(raw).map(Some);
        }
    }
    Ok(None)
}

/// `/ping?verbose=true`: answer 200 with a JSON body, as InfluxDB 1.8.
pub fn ping_verbose(query: &str) -> bool {
    pairs(query).any(|(k, v)| k == "verbose" && flag(v) == Some(true))
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
        assert_eq!(route("POST", "/api/v3/write_lp"), Ok(Route::WriteV3));
        assert_eq!(route("GET", "/query"), Ok(Route::Query));
        assert_eq!(route("POST", "/query"), Ok(Route::Query));
        assert_eq!(route("HEAD", "/health"), Ok(Route::Health));
        assert_eq!(route("GET", "/ready"), Ok(Route::Ready));
        assert_eq!(route("HEAD", "/ready"), Ok(Route::Ready));
    }

    #[test]
    fn error_shapes_by_path() {
        assert!(v1_error_shape("/write") && v1_error_shape("/query") && v1_error_shape("/api/v3/write_lp"));
        assert!(!v1_error_shape("/api/v2/write") && !v1_error_shape("/api/v1/metrics"));
        assert_eq!(request_line_path(b"POST /write?db=x HTTP/1.1\r\nHost: a"), Some("/write"));
        assert_eq!(request_line_path(b"GET /ping HTTP/1.1"), Some("/ping"));
        assert_eq!(request_line_path(b"garbage"), None);
        assert_eq!(request_line_path(b""), None);
    }

    #[test]
    fn v3_query() {
        let mut s = [0u8; QUERY_SCRATCH_BYTES];
        let p = parse_v3("db=my%20db&precision=millisecond&accept_partial=false&no_sync=true", &mut s).unwrap();
        assert_eq!(
            p,
            V3Params {
                db: "my db",
                precision: Precision::Milliseconds,
                accept_partial: Some(false),
                no_sync: Some(true)
            }
        );
        let mut s = [0u8; QUERY_SCRATCH_BYTES];
        let p = parse_v3("db=x", &mut s).unwrap();
        assert_eq!((p.precision, p.accept_partial, p.no_sync), (Precision::Auto, None, None));
        for (v, want) in [
            ("auto", Precision::Auto),
            ("second", Precision::Seconds),
            ("s", Precision::Seconds),
            ("microsecond", Precision::Microseconds),
            ("us", Precision::Microseconds),
            ("nanosecond", Precision::Nanoseconds),
        ] {
            let q = format!("db=x&precision={v}");
            let mut s = [0u8; 64];
            assert_eq!(parse_v3(&q, &mut s).unwrap().precision, want, "{v}");
        }
        let mut s = [0u8; 64];
        assert_eq!(parse_v3("precision=s", &mut s), Err(QueryError::MissingDb));
        let mut s = [0u8; 64];
        assert_eq!(parse_v3("db=x&precision=u", &mut s), Err(QueryError::PrecisionV3));
        let mut s = [0u8; 64];
        assert_eq!(parse_v3("db=x&accept_partial=yes", &mut s), Err(QueryError::BadFlag));
    }

    #[test]
    fn query_text_from_url_or_form_body() {
        let mut s = [0u8; QUERY_SCRATCH_BYTES];
        assert_eq!(query_text("q=SHOW+DATABASES&db=x", b"", &mut s), Ok(Some("SHOW DATABASES")));
        let mut s = [0u8; QUERY_SCRATCH_BYTES];
        // Telegraf: POST /query with `q=CREATE+DATABASE+%22telegraf%22` as the form body.
        assert_eq!(
            query_text("", b"q=CREATE+DATABASE+%22telegraf%22", &mut s),
            Ok(Some("CREATE DATABASE \"telegraf\""))
        );
        let mut s = [0u8; QUERY_SCRATCH_BYTES];
        assert_eq!(query_text("db=x", b"", &mut s), Ok(None));
        assert!(ping_verbose("verbose=true") && !ping_verbose("verbose=false") && !ping_verbose(""));
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
        assert_eq!(route("PUT", "/health").unwrap_err().allow(), Some("GET, HEAD"));
        assert_eq!(route("DELETE", "/query").unwrap_err().response().headers, &[("Allow", "GET, POST")]);
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
