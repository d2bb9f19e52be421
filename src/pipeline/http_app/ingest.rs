//! The write routes (`/write`, `/api/v2/write`, `/api/v1/metrics`): query
//! parameters and credentials, validation of the whole body, the client's
//! rate limit, and the records into the open group-commit batch (a body
//! larger than what is left of it spills into the next ones). What happens
//! to the answer afterwards (held until handed over / durable) is
//! [`held`](super::held)'s.
//!
//! A line-protocol body is scanned once: the indexer validates each line and
//! it goes into the open batch at once, tentatively (a [`BatchMark`] taken
//! before); a bad line or the limiter's refusal rolls the batch back to the
//! mark. Only the part of a body that does not fit the open batch is scanned
//! twice: counted (and validated) before the limiter decides, written into
//! the next batches after, so that nothing of a refused body is handed to the
//! writer. JSON is validated whole first (serde), then parsed into the batch.

use super::held::{storage_refusal, Held};
use super::{Ctx, Outcome, ReplyKind};
use crate::http::auth::{self, AuthDecision};
use crate::http::routes::{self, Route};
use crate::http::RequestRef;
use crate::ingest::line_index::{BadLines, BodySummary};
use crate::ingest::line_protocol::{BatchError, BodyPosition, Precision};
use crate::limit::{address_id, Decision, RateLimitHeaders, ADDRESS_ID_BYTES};
use crate::time::Nanos;
use crate::writer::{AckMode, Batch, BatchMark, TenantIndex};
use std::net::SocketAddrV4;
use std::sync::Arc;

/// The write routes: credentials, parse, limit, batch.
pub(super) fn ingest(req: RequestRef<'_>, route: Route, peer: SocketAddrV4, ctx: &mut Ctx, now: Nanos) -> Outcome {
    // Wall time for records without a timestamp; the limiter keeps monotonic time.
    let wall_ns = now.to_unix_ns(ctx.shared.unix_offset_ns);
    let body = req.body();
    ctx.counters.body_bytes += body.len() as u64;
    // Query parameters: precision, and v1 credentials.
    let (precision, user, password, no_sync) = match route {
        Route::WriteV1 => match routes::parse_v1(req.query(), &mut ctx.query_scratch) {
            Ok(p) => (p.precision, p.user, p.password, p.no_sync),
            Err(e) => return ctx.fixed(e.response()),
        },
        Route::WriteV2 => match routes::parse_v2(req.query(), &mut ctx.query_scratch) {
            Ok(p) => (p.precision, None, None, p.no_sync),
            Err(e) => return ctx.fixed(e.response()),
        },
        _ => (Precision::Nanoseconds, None, None, None),
    };
    // The ack this request asked for (`X-Metricsstream-Ack`, `no_sync`), else the server's.
    let ack = match routes::request_ack(req.header(routes::ACK_HEADER), no_sync, ctx.ack) {
        Ok(ack) => ack,
        Err(e) => return ctx.fixed(e.response()),
    };
    // The writer stopped on a storage fault: nothing is taken until it
    // writes again (one atomic load per request).
    if let Some(fault) = ctx.writer.storage_fault() {
        return ctx.fixed(storage_refusal(Some(fault)));
    }
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
    // Line protocol goes into the open batch on the way (`tentative`).
    let (records, json_client, tentative) = if route == Route::JsonMetrics {
        ctx.counters.requests_json += 1;
        match ctx.json.validate(body, wall_ns) {
            Ok(summary) => (summary.records as u64, summary.client_id, None),
            Err(e) => return ctx.error(400, "invalid", format_args!("{e}")),
        }
    } else {
        ctx.counters.requests_write += 1;
        match index_tentatively(body, precision, wall_ns, ctx) {
            Ok((records, tentative)) => (records, None, tentative),
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

    // The limiter key: token's client, else (from a trusted source) X-Client-Id,
    // else JSON client_id, else the peer address. An untrusted peer's own name
    // is ignored, counted: it could otherwise pick a fresh bucket per request.
    let mut addr_buf = [0u8; ADDRESS_ID_BYTES];
    let (header, json_client) = (req.header("x-client-id"), json_client.as_deref());
    let named = auth_client.is_none() && (header.is_some() || json_client.is_some());
    let trusted = named && ctx.shared.header_trust.trusts(*peer.ip());
    if named && !trusted {
        ctx.counters.client_names_ignored += 1;
    }
    let client: &[u8] = match (auth_client, header.filter(|_| trusted), json_client.filter(|_| trusted)) {
        (Some(c), _, _) => c.as_bytes(),
        (None, Some(h), _) => h,
        (None, None, Some(c)) => c.as_bytes(),
        _ => address_id(*peer.ip(), &mut addr_buf),
    };
    if records > 0 {
        let verdict = ctx.shared.limiter.try_acquire(ctx.shared.limiter.key_for(client), records, now);
        if !verdict.decision.is_allowed() {
            if let (Some(t), Some(batch)) = (&tentative, ctx.commit.open.as_mut()) {
                batch.rollback(t.start);
            }
            let headers = RateLimitHeaders::from_verdict(&verdict);
            let _ = headers.write_to(&mut ctx.reply.raw_headers);
            ctx.counters.records_limited += records;
            let status = if matches!(verdict.decision, Decision::TooLarge { .. }) { 413 } else { 429 };
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
    let mut first = ctx.commit.open_no;
    // Of this request's records, those in batches the writer already took.
    let mut handed_over = 0u64;
    if !ensure_open(ctx) {
        return writer_busy(ctx, records);
    }
    if route == Route::JsonMetrics {
        let batch = ctx.commit.open.as_mut().expect("ensured");
        let mark = batch.mark();
        if ctx.json.parse_into(body, wall_ns, batch).is_err() {
            // Did not fit what is left: ship the open batch, retry in an empty one.
            batch.rollback(mark);
            let _ = ctx.flush_open();
            // Nothing of this request was in the batch handed over (or refused).
            first = ctx.commit.open_no;
            if !ensure_open(ctx) {
                return writer_busy(ctx, records);
            }
            let batch = ctx.commit.open.as_mut().expect("ensured");
            let empty = batch.mark();
            if ctx.json.parse_into(body, wall_ns, batch).is_err() {
                batch.rollback(empty);
                return ctx.error(
                    413,
                    "too_large",
                    format_args!("{records} metrics do not fit one writer batch; split the request"),
                );
            }
        }
    } else {
        // Without a tentative pass (no batch was free then) the body is
        // written from its start now.
        let Tentative { mut start, mut in_batch, mut resume_at } = match tentative {
            Some(t) => t,
            None => {
                let batch = ctx.commit.open.as_mut().expect("ensured");
                let start = batch.mark();
                let s = index_into(&mut ctx.indexer, batch, body, BodyPosition::START, precision, wall_ns);
                Tentative { start, in_batch: s.lines as u64, resume_at: s.resume_at }
            }
        };
        while let Some(position) = resume_at {
            // The body goes on in another batch: take it before handing this
            // one over, so that without one this request's records leave the
            // open batch and nothing of a refused request is written (unless
            // an earlier batch of a very large body already was).
            let Some(next_batch) = take_batch(ctx) else {
                ctx.commit.open.as_mut().expect("ensured").rollback(start);
                ctx.counters.records_handed_over_then_refused += handed_over;
                return writer_busy(ctx, records);
            };
            let handed = ctx.flush_open();
            let batch = ctx.commit.open.insert(next_batch);
            start = batch.mark();
            if !handed {
                // The writer refused the full batch (its held requests get
                // 503): stop, so that nothing of this one is written after it.
                ctx.counters.records_handed_over_then_refused += handed_over;
                return writer_busy(ctx, records);
            }
            handed_over += in_batch;
            let s = index_into(&mut ctx.indexer, batch, body, position, precision, wall_ns);
            (in_batch, resume_at) = (s.lines as u64, s.resume_at);
        }
    }
    ctx.counters.records_accepted += records;
    if ack == AckMode::Durable {
        // Its last batch (the open one) now has a client waiting for its
        // sync: the writer starts one as soon as it is appended. A batch of
        // `enqueued` requests only rides a sync (or the interval's).
        ctx.commit.open.as_mut().expect("ensured").set_awaited(true);
    }
    Outcome::Hold(Held {
        first,
        last: ctx.commit.open_no,
        records,
        handed_over,
        json: route == Route::JsonMetrics,
        ack,
    })
}

/// A line-protocol body's records put into the open batch before the limiter
/// decided: they start at `start`; `in_batch` of them are there, and the rest
/// of the body (from `resume_at`) did not fit.
struct Tentative {
    start: BatchMark,
    in_batch: u64,
    resume_at: Option<BodyPosition>,
}

/// Validates a line-protocol body and counts its records, indexing it into
/// the open batch on the way (one pass). A bad line rolls the batch back and
/// is the error (first bad line, bad and valid counts, as for the whole
/// body). The part that does not fit the open batch is only validated and
/// counted here. Without a free batch the whole body is only validated.
fn index_tentatively(
    body: &[u8],
    precision: Precision,
    wall_ns: i64,
    ctx: &mut Ctx,
) -> Result<(u64, Option<Tentative>), BatchError> {
    if !ensure_open(ctx) {
        let s = ctx.indexer.index_batch(body, precision, wall_ns, |_| true)?;
        return Ok((s.lines as u64, None));
    }
    let batch = ctx.commit.open.as_mut().expect("ensured");
    let start = batch.mark();
    let first =
        ctx.indexer.index_batch(body, precision, wall_ns, |line| batch.push_line(line, TenantIndex::DEFAULT).is_ok());
    let first = match first {
        Ok(s) => s,
        Err(e) => {
            batch.rollback(start);
            return Err(e);
        }
    };
    let mut records = first.lines as u64;
    if let Some(rest_at) = first.resume_at {
        let rest = ctx.indexer.index_from(body, rest_at, precision, wall_ns, BadLines::RejectBatch, |_| true);
        if let Some(e) = rest.batch_error() {
            batch.rollback(start);
            return Err(BatchError { valid_lines: e.valid_lines + first.lines, ..e });
        }
        records += rest.lines as u64;
    }
    Ok((records, Some(Tentative { start, in_batch: first.lines as u64, resume_at: first.resume_at })))
}

/// Indexes `body` from `position` into `batch` (the body was validated): as
/// many lines as fit.
fn index_into(
    indexer: &mut crate::ingest::line_index::LineIndexer,
    batch: &mut Batch,
    body: &[u8],
    position: BodyPosition,
    precision: Precision,
    wall_ns: i64,
) -> BodySummary {
    indexer.index_from(body, position, precision, wall_ns, BadLines::RejectBatch, |line| {
        batch.push_line(line, TenantIndex::DEFAULT).is_ok()
    })
}

/// Makes sure there is an open batch; false when the writer has none free.
fn ensure_open(ctx: &mut Ctx) -> bool {
    if ctx.commit.open.is_none() {
        ctx.commit.open = take_batch(ctx);
    }
    ctx.commit.open.is_some()
}

/// An empty batch for HTTP records, if the writer has one free.
fn take_batch(ctx: &mut Ctx) -> Option<Batch> {
    let mut batch = ctx.writer.take_batch()?;
    batch.set_client(HTTP_CLIENT);
    // Awaited only once a request that asked for the durable ack is in it
    // (whatever the server's mode), so an `enqueued` request never starts a sync.
    batch.set_awaited(false);
    Some(batch)
}

/// Client id on HTTP batches: requests of many clients share a batch (group
/// commit); the limiter, not the log, keys on the client.
const HTTP_CLIENT: &str = "http";

fn respond_ok(route: Route, records: u64, ctx: &mut Ctx) -> Outcome {
    if route == Route::JsonMetrics {
        ctx.reply.kind = ReplyKind::Accepted;
        ctx.reply.accepted = records;
    } else {
        ctx.reply.kind = ReplyKind::NoContent;
    }
    Outcome::Respond
}

fn writer_busy(ctx: &mut Ctx, records: u64) -> Outcome {
    if let Some(fault) = ctx.writer.storage_fault() {
        ctx.reply.raw_headers.clear();
        return ctx.fixed(storage_refusal(Some(fault)));
    }
    ctx.reply.raw_headers.clear();
    ctx.reply.raw_headers.extend_from_slice(b"Retry-After: 1\r\n");
    ctx.error(503, "backpressure", format_args!("the writer is behind; {records} records not taken, retry"))
}
