//! The InfluxDB compatibility endpoints: `/ping` (with the version headers
//! clients read to pick an API), `/health` and `/ready` in InfluxDB 2's
//! shapes, and `/query` answering the two InfluxQL statements writers send
//! before writing (`CREATE DATABASE`, `SHOW DATABASES`; anything else is a
//! 400 saying queries are not served). Bodies are static or formatted into
//! the reply's reused buffer: nothing allocates per request.

use super::{Ctx, Outcome, ReplyKind};
use crate::http::influxql::{self, QueryRefused, Statement};
use crate::http::routes::{self, Route};
use crate::http::{RequestRef, Response};
use std::sync::Mutex;

/// The InfluxDB version `/ping` and `/query` announce: 1.8, so that clients
/// that pick their API by version (the v1 protocol for 1.x) use `/write`
/// and `/query`, the endpoints served in full here.
pub const INFLUX_VERSION: &str = "1.8.10";
/// `X-Influxdb-Build`: InfluxDB 1.8 open source says `OSS`; clients treat
/// other values (`ENT`, `cloud`) as other products with other APIs.
pub const INFLUX_BUILD: &str = "OSS";

const VERSION_HEADERS: &[(&str, &str)] = &[("X-Influxdb-Build", INFLUX_BUILD), ("X-Influxdb-Version", INFLUX_VERSION)];

const JSON: &str = "application/json";

/// `/ping?verbose=true` (InfluxDB 1.8).
const PING_VERBOSE: &[u8] = b"{\"version\":\"1.8.10\"}";

/// InfluxDB 2's `/health`. "ready for queries and writes" is InfluxDB's fixed
/// text, which health checkers match; this appliance takes writes only.
const HEALTH: &[u8] = concat!(
    "{\"name\":\"influxdb\",\"message\":\"ready for queries and writes\",\"status\":\"pass\",\"checks\":[],",
    "\"version\":\"1.8.10\",\"commit\":\"metricsstream-",
    env!("CARGO_PKG_VERSION"),
    "\"}"
)
.as_bytes();

/// InfluxDB 2's `/ready` (without its `started`/`up` fields: the
/// application has no start time; clients read `status`).
const READY: &[u8] = b"{\"status\":\"ready\"}";

/// A statement answered with no result rows.
const NO_ROWS: &[u8] = b"{\"results\":[{\"statement_id\":0}]}";

/// Database names registered by `CREATE DATABASE`, shared by all workers.
/// A lock per `/query`, never on the write path; bounded, so a client
/// creating names in a loop cannot grow memory (beyond the cap, creating
/// still succeeds but the name is not listed).
#[derive(Debug, Default)]
pub struct DatabaseRegistry {
    names: Mutex<Vec<String>>,
}

/// Names the registry lists at most.
pub const MAX_LISTED_DATABASES: usize = 1024;

impl DatabaseRegistry {
    pub fn new() -> DatabaseRegistry {
        DatabaseRegistry::default()
    }

    /// Registers `name` (once); false when the registry is full.
    pub fn create(&self, name: &str) -> bool {
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        if names.iter().any(|n| n == name) {
            return true;
        }
        if names.len() >= MAX_LISTED_DATABASES {
            return false;
        }
        names.push(name.to_string());
        true
    }

    /// `SHOW DATABASES`' answer, in InfluxDB 1.8's series shape, into `out`.
    pub fn show(&self, out: &mut Vec<u8>) {
        let names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        out.extend_from_slice(
            b"{\"results\":[{\"statement_id\":0,\"series\":[{\"name\":\"databases\",\"columns\":[\"name\"]",
        );
        // InfluxDB omits `values` when there is no database.
        if !names.is_empty() {
            out.extend_from_slice(b",\"values\":[");
            for (i, name) in names.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.push(b'[');
                let _ = serde_json::to_writer(&mut *out, name.as_str());
                out.push(b']');
            }
            out.push(b']');
        }
        out.extend_from_slice(b"}]}]}");
    }
}

/// `/ping`, `/health`, `/ready`, `/query`.
pub(super) fn handle(req: RequestRef<'_>, route: Route, ctx: &mut Ctx) -> Outcome {
    ctx.reply.headers = VERSION_HEADERS;
    match route {
        Route::Ping if routes::ping_verbose(req.query()) => body(ctx, 200, PING_VERBOSE),
        Route::Ping => ctx.fixed(Response::no_content().with_headers(VERSION_HEADERS)),
        Route::Health => body(ctx, 200, HEALTH),
        Route::Ready => body(ctx, 200, READY),
        _ => query(req, ctx),
    }
}

fn body(ctx: &mut Ctx, status: u16, bytes: &[u8]) -> Outcome {
    ctx.reply.kind = ReplyKind::Body;
    ctx.reply.status = status;
    ctx.reply.content_type = JSON;
    ctx.reply.body.extend_from_slice(bytes);
    Outcome::Respond
}

fn query(req: RequestRef<'_>, ctx: &mut Ctx) -> Outcome {
    let q = match routes::query_text(req.query(), req.body(), &mut ctx.query_scratch) {
        Ok(Some(q)) => q,
        Ok(None) => return refuse(ctx, QueryRefused::Missing),
        Err(e) => return ctx.fixed(e.response().with_headers(VERSION_HEADERS)),
    };
    match influxql::parse(q) {
        Ok(Statement::CreateDatabase(name)) => {
            if !ctx.shared.databases.create(name) {
                ctx.counters.databases_not_listed += 1;
            }
            body(ctx, 200, NO_ROWS)
        }
        Ok(Statement::ShowDatabases) => {
            ctx.shared.databases.show(&mut ctx.reply.body);
            ctx.reply.kind = ReplyKind::Body;
            ctx.reply.status = 200;
            ctx.reply.content_type = JSON;
            Outcome::Respond
        }
        Err(e) => {
            ctx.counters.queries_refused += 1;
            refuse(ctx, e)
        }
    }
}

fn refuse(ctx: &mut Ctx, e: QueryRefused) -> Outcome {
    ctx.error(400, "invalid", format_args!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_databases_has_influxdbs_series_shape() {
        let r = DatabaseRegistry::new();
        let mut out = Vec::new();
        r.show(&mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["results"][0]["series"][0]["columns"], serde_json::json!(["name"]));
        assert!(v["results"][0]["series"][0].get("values").is_none());
        assert!(r.create("telegraf") && r.create("my \"db\"") && r.create("telegraf"));
        out.clear();
        r.show(&mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"results":[{"statement_id":0,"series":[{"name":"databases","columns":["name"],
                "values":[["telegraf"],["my \"db\""]]}]}]})
        );
    }

    #[test]
    fn the_registry_is_bounded() {
        let r = DatabaseRegistry::new();
        for i in 0..MAX_LISTED_DATABASES {
            assert!(r.create(&format!("db{i}")));
        }
        assert!(!r.create("one-too-many"));
        assert!(r.create("db0"), "an existing name is still fine");
    }

    #[test]
    fn static_bodies_are_json() {
        for b in [PING_VERBOSE, HEALTH, READY, NO_ROWS] {
            serde_json::from_slice::<serde_json::Value>(b).unwrap();
        }
        let v: serde_json::Value = serde_json::from_slice(PING_VERBOSE).unwrap();
        assert_eq!(v["version"], INFLUX_VERSION);
        let v: serde_json::Value = serde_json::from_slice(HEALTH).unwrap();
        assert_eq!((v["name"].as_str(), v["status"].as_str()), (Some("influxdb"), Some("pass")));
        assert_eq!(v["version"], INFLUX_VERSION);
    }
}
