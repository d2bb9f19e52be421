//! The HTTP application of a worker: what each request means. It sits on the
//! TCP stack as its [`TcpApp`], keeps one [`Connection`] per open TCP
//! connection in a slab indexed by [`ConnId`], and for every request runs
//! route → credentials → parse (validate) → limit → writer batch, then
//! answers, or holds the answer until the fsync that covers the batch
//! (`ack = "durable"`).
//!
//! Sans-IO: no DPDK, no clock (every call has `now`).

use crate::http::auth::{self, AuthConfig, AuthDecision};
use crate::http::routes::{self, Route};
use crate::http::{BodyBudget, Connection, ConnectionPools, Event, HttpConfig, HttpError, RequestRef, Response};
use crate::ingest::json::JsonBatchParser;
use crate::ingest::line_protocol::{LineProtocolParser, Precision};
use crate::limit::{KeyedLimiter, RateLimitHeaders};
use crate::net::{ConnId, TcpApp};
use crate::writer::{AckMode, Backpressure, BackpressureReason, Batch, Ticket, WriterHandle};
use serde::Serialize;
use smoltcp::time::Instant;
use std::fmt::Write as _;
use std::net::SocketAddrV4;
use std::sync::Arc;

/// Per-worker HTTP counters (plain; the worker publishes them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct HttpCounters {
    pub connections_accepted: u64,
    pub connections_closed: u64,
    pub requests: u64,
    pub requests_write: u64,
    pub requests_json: u64,
    pub requests_other: u64,
    /// Protocol errors the connection answered itself (400/408/413/431/...).
    pub protocol_errors: u64,
    pub responses_2xx: u64,
    pub responses_400: u64,
    pub responses_401: u64,
    pub responses_404_405: u64,
    pub responses_413: u64,
    pub responses_429: u64,
    pub responses_503: u64,
    pub responses_other: u64,
    pub records_accepted: u64,
    pub records_limited: u64,
    /// Records in batches refused whole for an invalid line.
    pub records_rejected: u64,
    /// Records of requests answered 503 (writer behind) after earlier batches
    /// of their body had been handed to the writer: written, and a retry may
    /// duplicate them (at-least-once). Only bodies spanning batches.
    pub records_handed_over_then_refused: u64,
    pub body_bytes: u64,
    /// Responses held for durability right now.
    pub held: u64,
    // Buffer pools (gauges, except `*_allocations`; summed over workers,
    // `*_high_water` is the sum of the workers' highs). Each pool balances:
    // allocated == in_use + free; in_use returns to 0 when connections are
    // idle or closed (batches: once the writer caught up).
    /// Request buffers (head + body, de-chunked, inflated) lent to connections.
    pub body_buffers_in_use: u64,
    pub body_buffers_allocated: u64,
    pub body_buffers_free: u64,
    pub body_buffers_high_water: u64,
    /// Request buffers ever allocated (flat in steady state).
    pub body_buffer_allocations: u64,
    /// Response buffers (output, body formatting) lent to connections.
    pub response_buffers_in_use: u64,
    pub response_buffers_allocated: u64,
    pub response_buffers_free: u64,
    pub response_buffers_high_water: u64,
    pub response_buffer_allocations: u64,
    /// gzip inflaters lent to connections (a body being inflated).
    pub inflaters_in_use: u64,
    pub inflaters_allocated: u64,
    pub inflaters_free: u64,
    pub inflaters_high_water: u64,
    pub inflater_allocations: u64,
    /// Writer batches held by the application or in flight to the writer.
    pub batches_in_use: u64,
    pub batches_allocated: u64,
    pub batches_free: u64,
    pub batches_high_water: u64,
    /// Body-memory budget bytes this worker's connections hold (gauge).
    pub body_budget_reserved_bytes: u64,
    /// Requests answered 503 because the body-memory budget was full.
    pub body_budget_refused: u64,
}

impl HttpCounters {
    fn count_status(&mut self, status: u16) {
        match status {
            200..=299 => self.responses_2xx += 1,
            400 => self.responses_400 += 1,
            401 => self.responses_401 += 1,
            404 | 405 => self.responses_404_405 += 1,
            413 => self.responses_413 += 1,
            429 => self.responses_429 += 1,
            503 => self.responses_503 += 1,
            _ => self.responses_other += 1,
        }
    }
}

/// Renders `/metrics` (Prometheus text) from whatever the serve command can see.
pub type MetricsRenderer = Arc<dyn Fn(&mut String) + Send + Sync>;

/// What the application shares with the other workers.
#[derive(Clone)]
pub struct AppShared {
    pub http: HttpConfig,
    pub auth: Arc<AuthConfig>,
    pub limiter: Arc<KeyedLimiter>,
    pub metrics: MetricsRenderer,
    /// Added to the monotonic `now` to stamp records that carry no timestamp.
    pub unix_offset_ns: u64,
    /// The body-memory budget all workers share (`http.body_memory_budget_bytes`).
    pub body_budget: Arc<BodyBudget>,
}

struct ConnState {
    id: ConnId,
    peer: SocketAddrV4,
    http: Connection,
    /// The batches the current response waits for.
    held: Option<Held>,
}

/// A response waiting for its records to be handed over (and, with
/// `ack = "durable"`, made durable): they went into the app's batches
/// `first..=last`.
#[derive(Clone, Copy, Debug)]
struct Held {
    first: u64,
    last: u64,
    records: u64,
    /// Of `records`, those in batches `first..last`, already taken by the
    /// writer (a request stops with 503 when one of those is refused, so
    /// only batch `last` can still be refused).
    handed_over: u64,
    /// 202 `{"accepted":records}` (JSON API) rather than 204.
    json: bool,
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
    line: LineProtocolParser,
    json: JsonBatchParser,
    query_scratch: [u8; routes::QUERY_SCRATCH_BYTES],
    basic_scratch: [u8; auth::BASIC_SCRATCH_BYTES],
    reply: Reply,
    fixed: Option<Response<'static>>,
    /// `/metrics` text, reused across scrapes.
    metrics_text: String,
    /// Buffers lent to the connections.
    pools: ConnectionPools,
    counters: HttpCounters,
    /// Group commit: every request handled in one worker iteration goes into
    /// this batch, submitted by [`HttpApp::flush`] at the end of the iteration.
    open: Option<Batch>,
    /// Number of the batch being filled (app-local, from 1).
    open_no: u64,
    /// Submitted batches still referred to by a held response: the writer's
    /// ticket, or `None` if the writer refused the batch (backpressure).
    submitted: std::collections::VecDeque<(u64, Option<Ticket>)>,
}

/// What to do with a request once it is handled.
enum Outcome {
    Respond,
    Hold(Held),
}

pub struct HttpApp {
    conns: Vec<Option<ConnState>>,
    /// Connections holding a response for durability.
    held: Vec<ConnId>,
    /// Connections with new output the stack must service (after `poll_held`).
    to_wake: Vec<ConnId>,
    /// (open batch number, durable sequence) at the last `poll_held` scan.
    last_progress: (u64, u64),
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
            to_wake: Vec::with_capacity(slots.min(65_536)),
            last_progress: (0, 0),
            shutting_down: false,
            ctx: Ctx {
                shared,
                writer,
                ack,
                line: LineProtocolParser::new(),
                json: JsonBatchParser::new(),
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
                },
                fixed: None,
                metrics_text: String::with_capacity(8192),
                pools: ConnectionPools::new(MAX_FREE_BUFFERS),
                counters: HttpCounters::default(),
                open: None,
                open_no: 1,
                submitted: std::collections::VecDeque::with_capacity(256),
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
        let batches = self.ctx.writer.batch_pool();
        (c.batches_in_use, c.batches_allocated, c.batches_free) = (batches.in_use, batches.allocated, batches.free);
        c.batches_high_water = batches.high_water;
        &self.ctx.counters
    }

    /// Submits the batch filled during this iteration (group commit). When
    /// the writer's channel is full the batch stays open and goes on filling
    /// (its requests stay held) until a later flush finds room: a writer that
    /// fell behind gets fewer, larger batches instead of 503s. Only a full
    /// batch that finds no room is refused (503). Returns whether records
    /// still wait in the open batch.
    pub fn flush(&mut self) -> bool {
        let Some(batch) = self.ctx.open.take() else { return false };
        if batch.is_empty() {
            // Back to the pool: an idle worker holds no batch.
            self.ctx.writer.recycle(batch);
            return false;
        }
        let ticket = match self.ctx.writer.submit(batch) {
            Ok(ticket) => Some(ticket),
            Err(Backpressure { batch, reason: BackpressureReason::ChannelFull }) => {
                self.ctx.open = Some(batch);
                return true;
            }
            Err(refused) => {
                self.ctx.writer.recycle(refused.batch);
                None
            }
        };
        self.ctx.submitted.push_back((self.ctx.open_no, ticket));
        self.ctx.open_no += 1;
        false
    }

    /// Answers held requests whose batches are handed over (and durable, in
    /// `durable` mode), or refused (503); returns the connections the stack
    /// must service (`NetStack::wake`).
    pub fn poll_held(&mut self, now_ns: u64) -> &[ConnId] {
        self.to_wake.clear();
        // A held response can only be released by a submit (open_no moves) or
        // an fsync (durable_seq moves): skip the scan while neither changed.
        let progress = (self.ctx.open_no, self.ctx.writer.durable_seq());
        if progress == self.last_progress {
            return &self.to_wake;
        }
        self.last_progress = progress;
        let mut oldest_needed = self.ctx.open_no;
        let mut i = 0;
        while i < self.held.len() {
            let id = self.held[i];
            let Some(state) = self.conns.get_mut(id.index()).and_then(Option::as_mut).filter(|s| s.id == id) else {
                self.held.swap_remove(i);
                continue;
            };
            let Some(held) = state.held else {
                self.held.swap_remove(i);
                continue;
            };
            match held_status(&self.ctx, &held) {
                HeldStatus::Waiting => {
                    oldest_needed = oldest_needed.min(held.first);
                    i += 1;
                }
                done => {
                    state.held = None;
                    self.ctx.counters.held -= 1;
                    self.ctx.reset_reply();
                    let response = match (done, held.json) {
                        (HeldStatus::Refused, _) => {
                            self.ctx.counters.records_accepted -= held.records;
                            self.ctx.counters.records_handed_over_then_refused += held.handed_over;
                            Response::error(503, "backpressure", "the writer is behind; retry")
                                .with_raw_headers(b"Retry-After: 1\r\n")
                        }
                        (_, true) => Response::accepted(held.records),
                        (_, false) => Response::no_content(),
                    };
                    self.ctx.counters.count_status(response.status);
                    let held_list = &mut self.held;
                    with_buffers(state, &mut self.ctx, |state, ctx| {
                        state.http.respond(&response);
                        // Pipelined requests waited behind this one.
                        process(state, ctx, held_list, now_ns);
                    });
                    self.to_wake.push(id);
                    self.held.swap_remove(i);
                }
            }
        }
        // Batches no held response refers to any more are forgotten.
        while self.ctx.submitted.front().is_some_and(|(no, _)| *no < oldest_needed) {
            self.ctx.submitted.pop_front();
        }
        self.held.sort_unstable_by_key(|c| (c.index(), c.generation()));
        self.held.dedup();
        &self.to_wake
    }

    /// Graceful shutdown: every connection answers the request it is
    /// receiving or answering with `Connection: close` and closes; idle ones
    /// close when next serviced, once the bytes their socket already holds
    /// were offered (so do connections whose handshake completes later).
    /// Returns the connections the stack must service (`NetStack::wake`).
    pub fn shut_down(&mut self) -> &[ConnId] {
        self.shutting_down = true;
        self.to_wake.clear();
        for state in self.conns.iter_mut().flatten() {
            state.http.shut_down();
            self.to_wake.push(state.id);
        }
        &self.to_wake
    }

    /// Applies header/idle timeouts; returns connections with new output.
    pub fn poll_timeouts(&mut self, now_ns: u64) -> &[ConnId] {
        self.to_wake.clear();
        for state in self.conns.iter_mut().flatten() {
            if state.http.next_deadline_ns().is_some_and(|d| d <= now_ns) {
                with_buffers(state, &mut self.ctx, |state, _| state.http.poll_timeout(now_ns));
                self.to_wake.push(state.id);
            }
        }
        &self.to_wake
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum HeldStatus {
    Waiting,
    Done,
    Refused,
}

/// Whether every batch of a held response is handed over (and durable).
fn held_status(ctx: &Ctx, held: &Held) -> HeldStatus {
    if held.last >= ctx.open_no {
        return HeldStatus::Waiting; // still in the open batch
    }
    // `submitted` holds consecutive batch numbers from its front: index, don't search.
    let Some(&(front, _)) = ctx.submitted.front() else { return HeldStatus::Refused };
    let at = |no: u64| no.checked_sub(front).and_then(|i| ctx.submitted.get(i as usize)).map(|(_, t)| *t);
    if (held.first..held.last).any(|no| matches!(at(no), Some(None) | None)) {
        return HeldStatus::Refused;
    }
    let last_ticket = at(held.last).flatten();
    match (ctx.ack, last_ticket) {
        // Sequence numbers are per handle and monotonic: the last batch
        // durable means the earlier ones are too.
        (AckMode::Durable, Some(t)) if !ctx.writer.is_acked(&t) => HeldStatus::Waiting,
        (_, Some(_)) => HeldStatus::Done,
        (_, None) => HeldStatus::Refused,
    }
}

fn ns(now: Instant) -> u64 {
    now.total_micros().max(0) as u64 * 1_000
}

impl TcpApp for HttpApp {
    fn on_open(&mut self, conn: ConnId, peer: SocketAddrV4, now: Instant) {
        self.ctx.counters.connections_accepted += 1;
        if let Some(slot) = self.conns.get_mut(conn.index()) {
            let mut http = Connection::new(&self.ctx.shared.http, ns(now))
                .pooled()
                .with_budget(Arc::clone(&self.ctx.shared.body_budget));
            if self.shutting_down {
                http.shut_down();
            }
            *slot = Some(ConnState { id: conn, peer, http, held: None });
        }
    }

    fn on_data(&mut self, conn: ConnId, data: &[u8], now: Instant) -> usize {
        let Some(state) = self.conns.get_mut(conn.index()).and_then(Option::as_mut).filter(|s| s.id == conn) else {
            return data.len();
        };
        let now_ns = ns(now);
        let held = &mut self.held;
        with_buffers(state, &mut self.ctx, |state, ctx| {
            let mut taken = state.http.receive(data, now_ns);
            // A body that waits for a de-chunk/inflate buffer: lend it, offer the rest.
            while state.http.needs_buffers() {
                state.http.attach_buffers(&mut ctx.pools);
                taken += state.http.receive(&data[taken..], now_ns);
            }
            process(state, ctx, held, now_ns);
            taken
        })
    }

    fn on_peer_closed(&mut self, conn: ConnId, now: Instant) {
        if let Some(state) = self.conns.get_mut(conn.index()).and_then(Option::as_mut).filter(|s| s.id == conn) {
            let held = &mut self.held;
            with_buffers(state, &mut self.ctx, |state, ctx| {
                state.http.receive_eof();
                process(state, ctx, held, ns(now));
            });
        }
    }

    fn poll_send(&mut self, conn: ConnId, _now: Instant, out: &mut dyn FnMut(&[u8]) -> usize) {
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

    fn on_close(&mut self, conn: ConnId, _now: Instant) {
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
fn process(state: &mut ConnState, ctx: &mut Ctx, held: &mut Vec<ConnId>, now_ns: u64) {
    while state.held.is_none() {
        if state.http.needs_buffers() {
            // The next pipelined request's body waits for a de-chunk/inflate buffer.
            state.http.attach_buffers(&mut ctx.pools);
        }
        let outcome = match state.http.poll_request(now_ns) {
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
                handle(req, state.peer, ctx, now_ns)
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

fn handle(req: RequestRef<'_>, peer: SocketAddrV4, ctx: &mut Ctx, now_ns: u64) -> Outcome {
    ctx.reset_reply();
    let route = match routes::route(req.method(), req.path()) {
        Ok(route) => route,
        Err(e) => return ctx.fixed(e.response()),
    };
    match route {
        Route::Ping => ctx.fixed(Response::no_content()),
        Route::Health => {
            ctx.reply.kind = ReplyKind::Body;
            ctx.reply.status = 200;
            ctx.reply.content_type = "application/json";
            ctx.reply.body.extend_from_slice(br#"{"status":"pass","name":"metricsstream"}"#);
            ctx.counters.requests_other += 1;
            Outcome::Respond
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
        Route::WriteV1 | Route::WriteV2 | Route::JsonMetrics => ingest(req, route, peer, ctx, now_ns),
    }
}

/// The write routes: credentials, parse, limit, batch.
fn ingest(req: RequestRef<'_>, route: Route, peer: SocketAddrV4, ctx: &mut Ctx, now_ns: u64) -> Outcome {
    // Wall time for records without a timestamp; the limiter keeps monotonic time.
    let now = i64::try_from(now_ns.saturating_add(ctx.shared.unix_offset_ns)).unwrap_or(i64::MAX);
    let body = req.body();
    ctx.counters.body_bytes += body.len() as u64;
    // Query parameters: precision, and v1 credentials.
    let (precision, user, password) = match route {
        Route::WriteV1 => match routes::parse_v1(req.query(), &mut ctx.query_scratch) {
            Ok(p) => (p.precision, p.user, p.password),
            Err(e) => return ctx.fixed(e.response()),
        },
        Route::WriteV2 => match routes::parse_v2(req.query(), &mut ctx.query_scratch) {
            Ok(p) => (p.precision, None, None),
            Err(e) => return ctx.fixed(e.response()),
        },
        _ => (Precision::Nanoseconds, None, None),
    };
    let credentials = match auth::credentials(req.header("authorization"), user, password, &mut ctx.basic_scratch) {
        Ok(c) => c,
        Err(_) => return ctx.fixed(AuthDecision::unauthorized()),
    };
    // The token table outlives the request; holding it separately keeps `ctx` free.
    let auth = Arc::clone(&ctx.shared.auth);
    let auth_client = match auth.client_for(credentials.as_ref()) {
        AuthDecision::Off => None,
        AuthDecision::Client(c) => Some(c),
        AuthDecision::Missing | AuthDecision::Unknown => return ctx.fixed(AuthDecision::unauthorized()),
    };

    // Validate the whole batch first: a batch with a bad line is refused whole.
    let (records, json_client) = if route == Route::JsonMetrics {
        ctx.counters.requests_json += 1;
        match ctx.json.validate(body, now) {
            Ok(summary) => (summary.records as u64, summary.client_id),
            Err(e) => return ctx.error(400, "invalid", format_args!("{e}")),
        }
    } else {
        ctx.counters.requests_write += 1;
        match ctx.line.validate(body, precision, now) {
            Ok(n) => (n as u64, None),
            Err(e) => {
                ctx.counters.records_rejected += e.valid_lines as u64;
                return ctx.error(
                    400,
                    "invalid",
                    format_args!(
                        "line {}: {}; {} invalid line(s), batch refused whole",
                        e.first_line, e.first_reason, e.bad_lines
                    ),
                );
            }
        }
    };

    // The limiter key: token's client, else X-Client-Id, else JSON client_id, else the peer address.
    let mut addr_buf = [0u8; 15];
    let client: &[u8] = match (auth_client, req.header("x-client-id"), json_client.as_deref()) {
        (Some(c), _, _) => c.as_bytes(),
        (None, Some(h), _) => h,
        (None, None, Some(c)) => c.as_bytes(),
        _ => crate::udp::address_id(*peer.ip(), &mut addr_buf),
    };
    if records > 0 {
        let verdict = ctx.shared.limiter.try_acquire(ctx.shared.limiter.key_for(client), records, now_ns);
        if !verdict.decision.is_allowed() {
            let headers = RateLimitHeaders::from_verdict(&verdict);
            let _ = headers.write_to(&mut ctx.reply.raw_headers);
            ctx.counters.records_limited += records;
            let status = if matches!(verdict.decision, crate::limit::Decision::TooLarge { .. }) { 413 } else { 429 };
            return ctx.error(
                status,
                "rate_limited",
                format_args!("{records} records exceed the client's rate limit; retry later"),
            );
        }
        let headers = RateLimitHeaders::from_verdict(&verdict);
        let _ = headers.write_to(&mut ctx.reply.raw_headers);
    }
    if records == 0 {
        return respond_ok(route, 0, ctx);
    }

    // Into the open (group-commit) batch; a body larger than what is left of
    // it spills into the next ones. The response waits for all of them.
    let mut first = ctx.open_no;
    // Of this request's records, those in batches the writer already took.
    let mut handed_over = 0u64;
    if !ensure_open(ctx) {
        return writer_busy(ctx, records);
    }
    if route == Route::JsonMetrics {
        let batch = ctx.open.as_mut().expect("ensured");
        let mark = batch.mark();
        if ctx.json.parse_into(body, now, batch).is_err() {
            // Did not fit what is left: ship the open batch, retry in an empty one.
            batch.rollback(mark);
            let _ = ctx.flush_open();
            // Nothing of this request was in the batch handed over (or refused).
            first = ctx.open_no;
            if !ensure_open(ctx) {
                return writer_busy(ctx, records);
            }
            let batch = ctx.open.as_mut().expect("ensured");
            let empty = batch.mark();
            if ctx.json.parse_into(body, now, batch).is_err() {
                batch.rollback(empty);
                return ctx.error(
                    413,
                    "too_large",
                    format_args!("{records} metrics do not fit one writer batch; split the request"),
                );
            }
        }
    } else {
        let mut position = crate::ingest::line_protocol::BodyPosition::START;
        // Where this request's records start in the open batch.
        let mut start = ctx.open.as_ref().expect("ensured").mark();
        loop {
            let batch = ctx.open.as_mut().expect("ensured");
            let summary = ctx.line.parse_from(body, position, precision, now, batch);
            let Some(next) = summary.resume_at else { break };
            position = next;
            // The body goes on in another batch: take it before handing this
            // one over, so that without one this request's records leave the
            // open batch and nothing of a refused request is written (unless
            // an earlier batch of a very large body already was).
            let Some(next_batch) = take_batch(ctx) else {
                ctx.open.as_mut().expect("ensured").rollback(start);
                ctx.counters.records_handed_over_then_refused += handed_over;
                return writer_busy(ctx, records);
            };
            let handed = ctx.flush_open();
            start = ctx.open.insert(next_batch).mark();
            if !handed {
                // The writer refused the full batch (its held requests get
                // 503): stop, so that nothing of this one is written after it.
                ctx.counters.records_handed_over_then_refused += handed_over;
                return writer_busy(ctx, records);
            }
            handed_over += summary.records as u64;
        }
    }
    ctx.counters.records_accepted += records;
    Outcome::Hold(Held { first, last: ctx.open_no, records, handed_over, json: route == Route::JsonMetrics })
}

/// Makes sure there is an open batch; false when the writer has none free.
fn ensure_open(ctx: &mut Ctx) -> bool {
    if ctx.open.is_none() {
        ctx.open = take_batch(ctx);
    }
    ctx.open.is_some()
}

/// An empty batch for HTTP records, if the writer has one free.
fn take_batch(ctx: &mut Ctx) -> Option<Batch> {
    let mut batch = ctx.writer.take_batch()?;
    batch.set_client(HTTP_CLIENT);
    Some(batch)
}

/// Client id on HTTP batches: requests of many clients share a batch (group
/// commit); the limiter, not the log, keys on the client.
const HTTP_CLIENT: &str = "http";

impl Ctx {
    /// Submits the open batch now (it is full); whether the writer took it.
    fn flush_open(&mut self) -> bool {
        let Some(batch) = self.open.take() else { return false };
        let ticket = submit(self, batch);
        let taken = ticket.is_some();
        self.submitted.push_back((self.open_no, ticket));
        self.open_no += 1;
        taken
    }
}

fn respond_ok(route: Route, records: u64, ctx: &mut Ctx) -> Outcome {
    if route == Route::JsonMetrics {
        ctx.reply.kind = ReplyKind::Accepted;
        ctx.reply.accepted = records;
    } else {
        ctx.reply.kind = ReplyKind::NoContent;
    }
    Outcome::Respond
}

fn submit(ctx: &mut Ctx, batch: Batch) -> Option<Ticket> {
    match ctx.writer.submit(batch) {
        Ok(ticket) => Some(ticket),
        Err(refused) => {
            ctx.writer.recycle(refused.batch);
            None
        }
    }
}

fn writer_busy(ctx: &mut Ctx, records: u64) -> Outcome {
    ctx.reply.raw_headers.clear();
    ctx.reply.raw_headers.extend_from_slice(b"Retry-After: 1\r\n");
    ctx.error(503, "backpressure", format_args!("the writer is behind; {records} records not taken, retry"))
}
