//! The sans-IO HTTP/1.1 server side of `serve`: one [`Connection`] per TCP
//! connection, fed bytes and a `now` ([`Nanos`](crate::time::Nanos)), polled for requests and output bytes;
//! [`Response`] serialisation; pure request routing ([`routes`]) and
//! credential parsing ([`auth`]); the `[http]` configuration ([`HttpConfig`]);
//! the per-worker buffer pools ([`ConnectionPools`]) and the global
//! body-memory budget ([`BodyBudget`]).
//!
//! No sockets, no clock, no DPDK: the TCP layer moves bytes in and out, the
//! application glue decides what each request means and answers it (possibly
//! later, for `ack = durable`). Buffers are reused across keep-alive requests
//! (owned by the connection, or in `serve` lent by the worker's
//! [`ConnectionPools`] while a request is in progress), so the steady state
//! allocates nothing (`tests/alloc_steady.rs` counts it through the whole
//! worker logic).
//!
//! The loop the TCP layer and the application run per connection:
//!
//! ```
//! use metricsstream::http::{routes, Connection, Event, HttpConfig, Response};
//! use metricsstream::time::Nanos;
//! let mut conn = Connection::new(&HttpConfig::default(), Nanos::ZERO);
//! let segment = b"POST /write?db=x HTTP/1.1\r\nContent-Length: 7\r\n\r\ncpu v=1GET /ping HTTP/1.1\r\n\r\n";
//! let taken = conn.receive(segment, Nanos::from_ns(1)); // TCP: dequeue `taken` bytes, keep the rest
//! let mut held = false;
//! while let Some(event) = conn.poll_request(Nanos::from_ns(1)) {
//!     match event {
//!         Event::Request(req) => match routes::route(req.method(), req.path()) {
//!             Ok(routes::Route::WriteV1) => held = !req.body().is_empty(), // parse; answer after fsync
//!             Ok(_) => conn.respond(&Response::no_content()),
//!             Err(e) => conn.respond(&Response::error(e.status(), "not found", "no such route")),
//!         },
//!         Event::Error(_) => {} // already answered; count it
//!     }
//! }
//! assert!(held && conn.awaiting_response()); // /ping waits behind the held write
//! conn.respond(&Response::no_content()); // the fsync completed
//! assert!(matches!(conn.poll_request(Nanos::from_ns(2)), Some(Event::Request(r)) if r.path() == "/ping"));
//! conn.respond(&Response::no_content());
//! let out = conn.take_output(); // TCP: send what fits, then:
//! let n = out.len();
//! conn.consume_output(n);
//! assert_eq!(taken, segment.len());
//! assert!(!conn.wants_close());
//! ```

pub mod auth;
mod budget;
mod config;
mod connection;
mod error;
pub mod influxql;
mod pool;
mod response;
pub mod routes;

pub use budget::BodyBudget;
pub use config::{HttpConfig, HttpConfigError};
pub use connection::{fuzz_connection, Connection, Event, RequestRef};
pub use error::HttpError;
pub use pool::{BufferPool, ConnectionPools, InflaterPool, PoolCounters, ZstdPool};
pub use response::{reason_phrase, Body, Response};

/// Fuzz entry for the pure helpers: routing, v1/v2 query parsing and
/// credential parsing on arbitrary input. Must never panic.
pub fn fuzz_helpers(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (method, rest) = text.split_once(' ').unwrap_or((&text, ""));
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let _ = routes::route(method, path);
    let mut scratch = [0u8; routes::QUERY_SCRATCH_BYTES];
    let v1 = routes::parse_v1(query, &mut scratch).ok();
    let mut scratch = [0u8; routes::QUERY_SCRATCH_BYTES];
    let _ = routes::parse_v2(query, &mut scratch);
    let mut scratch = [0u8; routes::QUERY_SCRATCH_BYTES];
    let _ = routes::parse_v3(query, &mut scratch);
    let mut scratch = [0u8; routes::QUERY_SCRATCH_BYTES];
    if let Ok(Some(q)) = routes::query_text(query, data, &mut scratch) {
        let _ = influxql::parse(q);
    }
    let (user, password) = v1.map_or((None, None), |p| (p.user, p.password));
    let mut scratch = [0u8; auth::BASIC_SCRATCH_BYTES];
    let _ = auth::credentials(Some(data), user, password, &mut scratch);
    let mut out = [0u8; 64];
    let _ = auth::base64_decode(data, &mut out);
}

#[cfg(test)]
mod tests {
    use super::auth::{self, AuthConfig, AuthDecision};
    use super::routes::{self, Precision, Route};
    use super::*;
    use crate::time::Nanos;

    proptest::proptest! {
        #[test]
        fn helpers_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            fuzz_helpers(&data);
        }

        #[test]
        fn helpers_never_panic_on_likely_text(s in "(POST|GET) /(write|ping)\\?((db|u|p|precision|org|bucket)=[a-z%0-9+]{0,6}&?){0,6}") {
            fuzz_helpers(s.as_bytes());
            let t = format!("Basic {s}");
            fuzz_helpers(t.as_bytes());
        }
    }

    /// The glue's path for a v1 write: route, query, credentials, decision,
    /// all borrowed from the connection and two stack scratch buffers.
    #[test]
    fn v1_write_glue_path() {
        let auth: AuthConfig = toml::from_str("tokens = [{ token = \"s3cret\", client = \"edge\" }]").unwrap();
        let mut conn = Connection::new(&HttpConfig::default(), Nanos::ZERO);
        // Basic base64("alice:s3cret") and u/p in the query: the header wins.
        let req = b"POST /write?db=m&precision=ms&u=bob&p=wrong HTTP/1.1\r\n\
Authorization: Basic YWxpY2U6czNjcmV0\r\nContent-Length: 7\r\n\r\ncpu v=1";
        assert_eq!(conn.receive(req, Nanos::ZERO), req.len());
        let Some(Event::Request(r)) = conn.poll_request(Nanos::ZERO) else { panic!("no request") };
        assert_eq!(routes::route(r.method(), r.path()), Ok(Route::WriteV1));
        let mut query_scratch = [0u8; routes::QUERY_SCRATCH_BYTES];
        let params = routes::parse_v1(r.query(), &mut query_scratch).unwrap();
        assert_eq!((params.db, params.precision), (Some("m"), Precision::Milliseconds));
        let mut basic_scratch = [0u8; auth::BASIC_SCRATCH_BYTES];
        let creds =
            auth::credentials(r.header("authorization"), params.user, params.password, &mut basic_scratch).unwrap();
        assert_eq!(auth.client_for(creds.as_ref()), AuthDecision::Client("edge"));
        assert_eq!(r.body(), b"cpu v=1");
        conn.respond(&Response::no_content());
        assert_eq!(conn.take_output(), b"HTTP/1.1 204 No Content\r\n\r\n");
    }
}
