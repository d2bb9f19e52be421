//! The sans-IO HTTP/1.1 server side of `serve`: one [`Connection`] per TCP
//! connection, fed bytes and a `now_ns`, polled for requests and output bytes;
//! [`Response`] serialisation; pure request routing ([`routes`]) and
//! credential parsing ([`auth`]); the `[http]` configuration ([`HttpConfig`]).
//!
//! No sockets, no clock, no DPDK: the TCP layer moves bytes in and out, the
//! application glue decides what each request means and answers it (possibly
//! later, for `ack = durable`). Buffers are owned by the connection and reused
//! across keep-alive requests, so the steady state allocates nothing.
//!
//! The loop the TCP layer and the application run per connection:
//!
//! ```
//! use metricsstream::http::{routes, Connection, Event, HttpConfig, Response};
//! let mut conn = Connection::new(&HttpConfig::default(), 0);
//! let segment = b"POST /write?db=x HTTP/1.1\r\nContent-Length: 7\r\n\r\ncpu v=1GET /ping HTTP/1.1\r\n\r\n";
//! let taken = conn.receive(segment, 1); // TCP: dequeue `taken` bytes, keep the rest
//! let mut held = false;
//! while let Some(event) = conn.poll_request(1) {
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
//! assert!(matches!(conn.poll_request(2), Some(Event::Request(r)) if r.path() == "/ping"));
//! conn.respond(&Response::no_content());
//! let out = conn.take_output(); // TCP: send what fits, then:
//! let n = out.len();
//! conn.consume_output(n);
//! assert_eq!(taken, segment.len());
//! assert!(!conn.wants_close());
//! ```

pub mod auth;
mod config;
mod connection;
mod error;
mod response;
pub mod routes;

pub use config::{HttpConfig, HttpConfigError};
pub use connection::{fuzz_connection, Connection, Event, RequestRef};
pub use error::HttpError;
pub use response::{reason_phrase, Body, Response};
