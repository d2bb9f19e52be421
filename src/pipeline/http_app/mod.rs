//! The HTTP application of a worker: what each request means. It sits on the
//! TCP stack as its [`TcpApp`], keeps one [`Connection`] per open TCP
//! connection in a slab indexed by [`ConnId`], and for every request runs
//! route → credentials → parse (line protocol: validated and indexed into the
//! open batch in one pass) → limit → writer batch, then
//! answers, or holds the answer until the fsync that covers the batch
//! (`ack = "durable"`).
//!
//! - this file: the connection slab, the request loop of a connection,
//!   routing (`/ping`, `/health`, `/metrics`), shutdown, timeouts and the
//!   one queue of wake-ups ([`Wakeups`]) the serve step hands to the stack;
//! - `ingest.rs`: the write routes (credentials, validate/index, limit, batch);
//! - `influx.rs`: the InfluxDB compatibility endpoints (`/ping`, `/health`,
//!   `/ready`, `/query`) and the names `CREATE DATABASE` registered;
//! - `held.rs`: held responses and group commit;
//! - `counters.rs`: the per-worker [`HttpCounters`].
//!
//! Sans-IO: no DPDK, no clock (every call has `now`).

mod counters;
mod held;
mod influx;
mod ingest;

pub use counters::HttpCounters;
pub use influx::{DatabaseRegistry, INFLUX_BUILD, INFLUX_VERSION};

use crate::http::auth::{self, AuthConfig};
use crate::http::routes::{self, Route};
use crate::http::{BodyBudget, Connection, ConnectionPools, Event, HttpConfig, HttpError, RequestRef, Response};
use crate::ingest::json::JsonBatchParser;
use crate::ingest::line_index::LineIndexer;
use crate::ingest::remote_write::RemoteWriteDecoder;
use crate::limit::{HeaderTrust, KeyedLimiter};
use crate::net::{ConnId, TcpApp};
use crate::time::Nanos;
use crate::writer::{AckMode, WriterHandle};
use held::{GroupCommit, Held};
use std::fmt::Write as _;
use std::net::SocketAddrV4;
use std::sync::Arc;

/// Renders `/metrics` (Prometheus text) from whatever the serve command can see.
pub type MetricsRenderer = Arc<dyn Fn(&mut String) + Send + Sync>;

/// What the application shares with the other workers.
#[derive(Clone)]
pub struct AppShared {
    pub http: HttpConfig,
    pub auth: Arc<AuthConfig>,
    pub limiter: Arc<KeyedLimiter>,
    /// With auth off, whose `X-Client-Id` / JSON `client_id` names the
    /// limiter's client (`[limits] trust_client_header`, `trusted_header_sources`).
    pub header_trust: HeaderTrust,
    pub metrics: MetricsRenderer,
    /// Added to the monotonic `now` to stamp records that carry no timestamp.
    pub unix_offset_ns: u64,
    /// The body-memory budget all workers share (`http.body_memory_budget_bytes`).
    pub body_budget: Arc<BodyBudget>,
    /// Database names `CREATE DATABASE` registered (what `SHOW DATABASES` lists).
    pub databases: Arc<DatabaseRegistry>,
}

struct ConnState {
    id: ConnId,
    peer: SocketAddrV4,
    http: Connection,
    /// The batches the current response waits for.
    held: Option<Held>,
}

/// A response being built, in buffers reused across requests.
struct Reply {
    status: u16,
    kind: ReplyKind,
    code: &'static str,
    message: String,
    raw_headers: Vec<u8>,
    body: Vec<u8>,
    content_type: &'static str,
    accepted: u64,
    /// Errors in InfluxDB 1's `{"error"}` shape (v1 and v3 routes).
    v1_errors: bool,
    /// Extra static headers (the Influx version headers).
    headers: &'static [(&'static str, &'static str)],
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ReplyKind {
    NoContent,
    Accepted,
    Error,
    Body,
    /// Ready-made (routing / query / auth errors).
    Fixed,
}

/// Everything a request handler needs besides the connection itself.
struct Ctx {
    shared: AppShared,
    writer: WriterHandle,
    ack: AckMode,
    /// Line-protocol bodies: validated and indexed in one pass, straight into the open batch.
    indexer: LineIndexer,
    json: JsonBatchParser,
    /// Prometheus remote_write bodies: decompression buffer and decoded request, reused.
    remote_write: RemoteWriteDecoder,
    query_scratch: [u8; routes::QUERY_SCRATCH_BYTES],
    basic_scratch: [u8; auth::BASIC_SCRATCH_BYTES],
    reply: Reply,
    fixed: Option<Response<'static>>,
    /// `/metrics` text, reused across scrapes.
    metrics_text: String,
    /// Buffers lent to the connections.
    pools: ConnectionPools,
    counters: HttpCounters,
    /// The open batch and the submitted ones held responses wait for.
    commit: GroupCommit,
}

/// What to do with a request once it is handled.
enum Outcome {
    Respond,
    Hold(Held),
}

/// Connections with new output that the TCP stack must service
/// (`NetStack::wake`): the application's one queue of wake-ups, filled by
/// [`HttpApp::shut_down`], [`HttpApp::release_held`] and
/// [`HttpApp::handle_timeouts`] and drained by the serve step right after
/// each. Allocated once: each of those wakes a connection at most once.
pub struct Wakeups {
    conns: Vec<ConnId>,
}

impl Wakeups {
    fn with_capacity(n: usize) -> Wakeups {
        Wakeups { conns: Vec::with_capacity(n) }
    }

    fn push(&mut self, conn: ConnId) {
        self.conns.push(conn);
    }

    /// Takes every queued wake-up, in the order they were queued.
    pub fn drain(&mut self) -> impl Iterator<Item = ConnId> + '_ {
        self.conns.drain(..)
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }
}

/// The HTTP application of one worker (see the module comment).
pub struct HttpApp {
    conns: Vec<Option<ConnState>>,
    /// Connections holding a response for durability.
    held: Vec<ConnId>,
    /// Connections with new output the stack must service.
    wakeups: Wakeups,
    /// (open batch number, durable and lost sequences) at the last `release_held` scan.
    last_progress: (u64, u64, u64),
    /// After `shut_down`: connections close after their current request.
    shutting_down: bool,
    ctx: Ctx,
}

impl HttpApp {
    /// `slots` is the TCP stack's slot count (connection ids are below it).
    pub fn new(shared: AppShared, writer: WriterHandle, slots: usize) -> HttpApp {
        let ack = writer.ack_mode();
        HttpApp {
            conns: (0..slots).map(|_| None).collect(),
            held: Vec::with_capacity(slots.min(65_536)),
            wakeups: Wakeups::with_capacity(slots.min(65_536)),
            last_progress: (0, 0, 0),
            shutting_down: false,
            ctx: Ctx {
                shared,
                writer,
                ack,
                indexer: LineIndexer::new(),
                json: JsonBatchParser::new(),
                remote_write: RemoteWriteDecoder::new(),
                query_scratch: [0; routes::QUERY_SCRATCH_BYTES],
                basic_scratch: [0; auth::BASIC_SCRATCH_BYTES],
                reply: Reply {
                    status: 204,
                    kind: ReplyKind::NoContent,
                    code: "",
                    message: String::with_capacity(256),
                    raw_headers: Vec::with_capacity(512),
                    body: Vec::with_capacity(4096),
                    content_type: "",
                    accepted: 0,
                    v1_errors: false,
                    headers: &[],
                },
                fixed: None,
                metrics_text: String::with_capacity(8192),
                pools: ConnectionPools::new(MAX_FREE_BUFFERS),
                counters: HttpCounters::default(),
                commit: GroupCommit::new(),
            },
        }
    }

    /// The counters, with the pool gauges read now.
    pub fn counters(&mut self) -> &HttpCounters {
        let c = &mut self.ctx.counters;
        let body = self.ctx.pools.body.counters();
        (c.body_buffers_in_use, c.body_buffers_allocated, c.body_buffers_free) =
            (body.in_use, body.allocated, body.free);
        (c.body_buffers_high_water, c.body_buffer_allocations) = (body.high_water, body.allocations);
        let resp = self.ctx.pools.response.counters();
        (c.response_buffers_in_use, c.response_buffers_allocated) = (resp.in_use, resp.allocated);
        (c.response_buffers_free, c.response_buffers_high_water) = (resp.free, resp.high_water);
        c.response_buffer_allocations = resp.allocations;
        let inflaters = self.ctx.pools.inflaters.counters();
        (c.inflaters_in_use, c.inflaters_allocated, c.inflaters_free) =
            (inflaters.in_use, inflaters.allocated, inflaters.free);
        (c.inflaters_high_water, c.inflater_allocations) = (inflaters.high_water, inflaters.allocations);
        let zstd = self.ctx.pools.zstd.counters();
        (c.zstd_decoders_in_use, c.zstd_decoders_allocated, c.zstd_decoders_free) =
            (zstd.in_use, zstd.allocated, zstd.free);
        (c.zstd_decoders_high_water, c.zstd_decoder_allocations) = (zstd.high_water, zstd.allocations);
        let batches = self.ctx.writer.batch_pool();
        (c.batches_in_use, c.batches_allocated, c.batches_free) = (batches.in_use, batches.allocated, batches.free);
        c.batches_high_water = batches.high_water;
        &self.ctx.counters
    }

    /// Graceful shutdown: every connection answers the request it is
    /// receiving or answering with `Connection: close` and closes; idle ones
    /// close when next serviced, once the bytes their socket already holds
    /// were offered (so do connections whose handshake completes later).
    /// Every open connection goes on the wake-up queue.
    pub fn shut_down(&mut self) {
        self.shutting_down = true;
        for state in self.conns.iter_mut().flatten() {
            state.http.shut_down();
            self.wakeups.push(state.id);
        }
    }

    /// Applies header/idle timeouts that are due; the connections with new
    /// output go on the wake-up queue.
    pub fn handle_timeouts(&mut self, now: Nanos) {
        for state in self.conns.iter_mut().flatten() {
            if state.http.poll_timeout().is_some_and(|d| d <= now) {
                with_buffers(state, &mut self.ctx, |state, _| state.http.handle_timeout(now));
                self.wakeups.push(state.id);
            }
        }
    }

    /// The connections the stack must service now; the serve step drains it
    /// into `NetStack::wake` after every call that fills it.
    pub fn wakeups(&mut self) -> &mut Wakeups {
        &mut self.wakeups
    }
}

impl TcpApp for HttpApp {
    fn on_open(&mut self, conn: ConnId, peer: SocketAddrV4, now: Nanos) {
        self.ctx.counters.connections_accepted += 1;
        if let Some(slot) = self.conns.get_mut(conn.index()) {
            let mut http = Connection::new(&self.ctx.shared.http, now)
                .pooled()
                .with_budget(Arc::clone(&self.ctx.shared.body_budget));
            if self.shutting_down {
                http.shut_down();
            }
            *slot = Some(ConnState { id: conn, peer, http, held: None });
        }
    }

    fn on_data(&mut self, conn: ConnId, data: &[u8], now: Nanos) -> usize {
        let Some(state) = self.conns.get_mut(conn.index()).and_then(Option::as_mut).filter(|s| s.id == conn) else {
            return data.len();
        };
        let held = &mut self.held;
        with_buffers(state, &mut self.ctx, |state, ctx| {
            let mut taken = state.http.receive(data, now);
            // A body that waits for a de-chunk/inflate buffer: lend it, offer the rest.
            while state.http.needs_buffers() {
                state.http.attach_buffers(&mut ctx.pools);
                taken += state.http.receive(&data[taken..], now);
            }
            process(state, ctx, held, now);
            taken
        })
    }

    fn on_peer_closed(&mut self, conn: ConnId, now: Nanos) {
        if let Some(state) = self.conns.get_mut(conn.index()).and_then(Option::as_mut).filter(|s| s.id == conn) {
            let held = &mut self.held;
            with_buffers(state, &mut self.ctx, |state, ctx| {
                state.http.receive_eof();
                process(state, ctx, held, now);
            });
        }
    }

    fn poll_send(&mut self, conn: ConnId, _now: Nanos, out: &mut dyn FnMut(&[u8]) -> usize) {
        if let Some(state) = self.conns.get_mut(conn.index()).and_then(Option::as_mut).filter(|s| s.id == conn) {
            let pending = state.http.take_output();
            if !pending.is_empty() {
                let n = out(pending);
                state.http.consume_output(n);
                state.http.return_buffers(&mut self.ctx.pools);
            }
        }
    }

    fn wants_close(&mut self, conn: ConnId) -> bool {
        self.conns
            .get_mut(conn.index())
            .and_then(Option::as_mut)
            .filter(|s| s.id == conn)
            .is_some_and(|s| s.http.wants_close())
    }

    fn on_close(&mut self, conn: ConnId, _now: Nanos) {
        if let Some(slot) = self.conns.get_mut(conn.index()) {
            if slot.as_ref().is_some_and(|s| s.id == conn) {
                if let Some(state) = slot.as_mut() {
                    if state.held.is_some() {
                        self.ctx.counters.held -= 1;
                    }
                    let reserved = state.http.reserved_body_bytes() as u64;
                    let gauge = &mut self.ctx.counters.body_budget_reserved_bytes;
                    *gauge = gauge.saturating_sub(reserved);
                    state.http.release_buffers(&mut self.ctx.pools);
                }
                // Dropping the connection releases its budget reservation.
                *slot = None;
                self.ctx.counters.connections_closed += 1;
            }
        }
    }
}

/// Idle buffers a worker's pools keep (each pool); beyond, returned buffers are freed.
const MAX_FREE_BUFFERS: usize = 1024;

/// Lends `state` its buffers around `f`, then takes back what it does not
/// need any more and books the change of its body-budget reservation.
fn with_buffers<R>(state: &mut ConnState, ctx: &mut Ctx, f: impl FnOnce(&mut ConnState, &mut Ctx) -> R) -> R {
    let before = state.http.reserved_body_bytes() as u64;
    state.http.attach_buffers(&mut ctx.pools);
    let result = f(state, ctx);
    state.http.return_buffers(&mut ctx.pools);
    let after = state.http.reserved_body_bytes() as u64;
    let c = &mut ctx.counters;
    c.body_budget_reserved_bytes = (c.body_budget_reserved_bytes + after).saturating_sub(before);
    result
}

/// Handles every complete request of a connection, in order, until one is
/// held for durability or none is left.
fn process(state: &mut ConnState, ctx: &mut Ctx, held: &mut Vec<ConnId>, now: Nanos) {
    while state.held.is_none() {
        if state.http.needs_buffers() {
            // The next pipelined request's body waits for a de-chunk/inflate buffer.
            state.http.attach_buffers(&mut ctx.pools);
        }
        let outcome = match state.http.poll_request(now) {
            None => return,
            Some(Event::Error(e)) => {
                // The connection already answered (400/408/413/431/503...).
                ctx.counters.protocol_errors += 1;
                if e == HttpError::BodyBudgetExhausted {
                    ctx.counters.body_budget_refused += 1;
                }
                continue;
            }
            Some(Event::Request(req)) => {
                ctx.counters.requests += 1;
                handle(req, state.peer, ctx, now)
            }
        };
        match outcome {
            Outcome::Hold(h) => {
                state.held = Some(h);
                ctx.counters.held += 1;
                held.push(state.id);
            }
            Outcome::Respond => {
                let r = &ctx.reply;
                let response = match r.kind {
                    ReplyKind::NoContent => Response::no_content(),
                    ReplyKind::Accepted => Response::accepted(r.accepted),
                    ReplyKind::Error => Response::error(r.status, r.code, &r.message),
                    ReplyKind::Body => Response::bytes(r.status, r.content_type, &r.body),
                    ReplyKind::Fixed => ctx.fixed.take().unwrap_or_else(Response::no_content),
                };
                let response =
                    if r.raw_headers.is_empty() { response } else { response.with_raw_headers(&r.raw_headers) };
                // A ready-made response keeps its own headers (Allow, WWW-Authenticate).
                let response = if r.headers.is_empty() || !response.headers.is_empty() {
                    response
                } else {
                    response.with_headers(r.headers)
                };
                let response = if r.v1_errors { response.v1_error_shape() } else { response };
                ctx.counters.count_status(response.status);
                state.http.respond(&response);
            }
        }
    }
}

impl Ctx {
    fn reset_reply(&mut self) {
        self.reply.kind = ReplyKind::NoContent;
        self.reply.status = 204;
        self.reply.message.clear();
        self.reply.raw_headers.clear();
        self.reply.body.clear();
        self.reply.v1_errors = false;
        self.reply.headers = &[];
        self.fixed = None;
    }

    fn fixed(&mut self, response: Response<'static>) -> Outcome {
        self.reply.kind = ReplyKind::Fixed;
        self.fixed = Some(response);
        Outcome::Respond
    }

    fn error(&mut self, status: u16, code: &'static str, message: std::fmt::Arguments<'_>) -> Outcome {
        self.reply.kind = ReplyKind::Error;
        self.reply.status = status;
        self.reply.code = code;
        self.reply.message.clear();
        let _ = self.reply.message.write_fmt(message);
        Outcome::Respond
    }
}

fn handle(req: RequestRef<'_>, peer: SocketAddrV4, ctx: &mut Ctx, now: Nanos) -> Outcome {
    ctx.reset_reply();
    // InfluxDB 1 (and 3) clients read `{"error": ...}`.
    ctx.reply.v1_errors = routes::v1_error_shape(req.path());
    let route = match routes::route(req.method(), req.path()) {
        Ok(route) => route,
        Err(e) => return ctx.fixed(e.response()),
    };
    match route {
        Route::Ping | Route::Health | Route::Ready | Route::Query => {
            ctx.counters.requests_other += 1;
            influx::handle(req, route, ctx)
        }
        Route::Metrics => {
            // Rendered into a text buffer kept across scrapes (the renderer takes a String).
            ctx.metrics_text.clear();
            (ctx.shared.metrics)(&mut ctx.metrics_text);
            ctx.reply.kind = ReplyKind::Body;
            ctx.reply.status = 200;
            ctx.reply.content_type = "text/plain; version=0.0.4";
            ctx.reply.body.extend_from_slice(ctx.metrics_text.as_bytes());
            ctx.counters.requests_other += 1;
            Outcome::Respond
        }
        Route::WriteV1 | Route::WriteV2 | Route::WriteV3 | Route::JsonMetrics | Route::RemoteWrite => {
            ingest::ingest(req, route, peer, ctx, now)
        }
    }
}
