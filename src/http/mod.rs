//! The sans-IO HTTP/1.1 server side of `serve`: one [`Connection`] per TCP
//! connection, fed bytes and a `now_ns`, polled for requests and output bytes;
//! [`Response`] serialisation; pure request routing ([`routes`]) and
//! credential parsing ([`auth`]); the `[http]` configuration ([`HttpConfig`]).
//!
//! No sockets, no clock, no DPDK: the TCP layer moves bytes in and out, the
//! application glue decides what each request means and answers it (possibly
//! later, for `ack = durable`). Buffers are owned by the connection and reused
//! across keep-alive requests, so the steady state allocates nothing.

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
