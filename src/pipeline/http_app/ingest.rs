//! The write routes (`/write`, `/api/v2/write`, `/api/v3/write_lp`, `/api/v1/metrics`): query
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
//!
//! Bad lines: refused whole by default (400 naming the first bad lines);
//! with partial writes (`[http] partial_writes`, v3 `accept_partial`, on by
//! default there as in InfluxDB 3) the indexer skips them on the same pass
//! ([`BadLines::Skip`]), the valid lines are written as received, and the
//! answer, held like any write, is a 400 that names the bad lines and says
//! how many were written.

use super::held::{storage_refusal, Held};
use super::{Ctx, Outcome, ReplyKind};
use crate::http::auth::{self, AuthDecision};
use crate::http::routes::{self, Route};
use crate::http::RequestRef;
use crate::ingest::line_index::{BadLine, BadLines, BodySummary, REPORTED_BAD_LINES};
use crate::ingest::line_protocol::{BodyPosition, Precision};
use crate::ingest::remote_write::SamplePosition;
use crate::limit::{address_id, Decision, RateLimitHeaders, ADDRESS_ID_BYTES};
use crate::time::Nanos;
use crate::writer::{AckMode, Batch, BatchMark, TenantIndex};
use std::net::SocketAddrV4;
use std::sync::Arc;

/// Which write API a request came through: how its errors are shaped
/// (v1 and v3 `{"error"}`, v2 and JSON `{"code","message"}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Api {
    V1,
    V2,
    V3,
    Json,
    /// Prometheus remote_write: 204, errors as v2 (senders read only the status).
    RemoteWrite,
}

/// A body's bad lines: how many, and the first few located.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct BadReport {
    pub(super) lines: usize,
    pub(super) reported: [Option<BadLine>; REPORTED_BAD_LINES],
}

impl BadReport {
    /// Adds the bad lines of one indexing pass (passes come in body order).
    fn add(&mut self, s: &BodySummary) {
        let mut from = s.reported.iter().flatten();
        for slot in self.reported.iter_mut().filter(|slot| slot.is_none()) {
            *slot = from.next().copied();
        }
        self.lines += s.bad_lines;
    }
}

/// The write routes: credentials, parse, limit, batch.
pub(super) fn ingest(req: RequestRef<'_>, route: Route, peer: SocketAddrV4, ctx: &mut Ctx, now: Nanos) -> Outcome {
    // Wall time for records without a timestamp; the limiter keeps monotonic time.
    let wall_ns = now.to_unix_ns(ctx.shared.unix_offset_ns);
    let body = req.body();
    ctx.counters.body_bytes += body.len() as u64;
    let snappy = req.header("content-encoding").is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"snappy"));
    if route == Route::RemoteWrite {
        // remote_write 1.0: the body is one snappy block, and the sender says
        // which protocol version it speaks (the spec requires both headers).
        if !snappy {
            return ctx.error(
                415,
                "unsupported media type",
                format_args!("remote_write needs Content-Encoding: snappy"),
            );
        }
        match req.header("x-prometheus-remote-write-version").map(<[u8]>::trim_ascii) {
            Some(v) if v.starts_with(b"0.1.") => {}
            _ => {
                return ctx.error(
                    400,
                    "invalid",
                    format_args!(
                        "remote_write needs X-Prometheus-Remote-Write-Version: 0.1.0 (1.0; 2.0 is not served)"
                    ),
                )
            }
        }
    } else if snappy {
        return ctx.error(415, "unsupported media type", format_args!("snappy is accepted only on /api/v1/write"));
    }
    // Query parameters: precision, whether bad lines refuse the body, v1
    // credentials and the ack asked for.
    let partial_default = ctx.shared.http.partial_writes;
    let (api, precision, partial, user, password, no_sync) = match route {
        Route::WriteV1 => match routes::parse_v1(req.query(), &mut ctx.query_scratch) {
            Ok(p) => (Api::V1, p.precision, partial_default, p.user, p.password, p.no_sync),
            Err(e) => return ctx.fixed(e.response()),
        },
        Route::WriteV2 => match routes::parse_v2(req.query(), &mut ctx.query_scratch) {
            Ok(p) => (Api::V2, p.precision, partial_default, None, None, p.no_sync),
            Err(e) => return ctx.fixed(e.response()),
        },
        Route::WriteV3 => match routes::parse_v3(req.query(), &mut ctx.query_scratch) {
            // InfluxDB 3 accepts partial writes unless told not to.
            Ok(p) => (Api::V3, p.precision, p.accept_partial.unwrap_or(true), None, None, p.no_sync),
            Err(e) => return ctx.fixed(e.response()),
        },
        Route::RemoteWrite => (Api::RemoteWrite, Precision::Nanoseconds, false, None, None, None),
        _ => (Api::Json, Precision::Nanoseconds, false, None, None, None),
    };
    let mode = if partial { BadLines::Skip } else { BadLines::RejectBatch };
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

    // Validate the whole batch first: a batch with a bad line is refused
    // whole, unless partial writes skip bad lines. Line protocol goes into
    // the open batch on the way (`tentative`).
    let mut bad = BadReport::default();
    let (records, json_client, tentative) = if route == Route::RemoteWrite {
        ctx.counters.requests_remote_write += 1;
        match ctx.remote_write.decode(body) {
            Ok(s) => {
                let c = &mut ctx.counters;
                c.remote_write_dropped_histograms += s.dropped_histograms;
                c.remote_write_dropped_exemplars += s.dropped_exemplars;
                c.remote_write_dropped_non_finite += s.dropped_non_finite;
                c.remote_write_dropped_unrepresentable += s.dropped_unrepresentable;
                (s.samples, None, None)
            }
            Err(e) => return ctx.error(400, "invalid", format_args!("{e}")),
        }
    } else if route == Route::JsonMetrics {
        ctx.counters.requests_json += 1;
        match ctx.json.validate(body, wall_ns) {
            Ok(summary) => (summary.records as u64, summary.client_id, None),
            Err(e) => return ctx.error(400, "invalid", format_args!("{e}")),
        }
    } else {
        ctx.counters.requests_write += 1;
        let (records, tentative) = index_tentatively(body, precision, mode, wall_ns, &mut bad, ctx);
        ctx.counters.lines_invalid += bad.lines as u64;
        if bad.lines > 0 && (!partial || records == 0) {
            if !partial {
                // The valid lines of a body refused whole.
                ctx.counters.records_rejected += records;
            }
            return bad_lines_reply(ctx, api, body, &bad, records, partial);
        }
        (records, None, tentative)
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
                "too many requests",
                format_args!("{records} records exceed the client's rate limit; retry later"),
            );
        }
        let headers = RateLimitHeaders::from_verdict(&verdict);
        let _ = headers.write_to(&mut ctx.reply.raw_headers);
    }
    if records == 0 {
        return respond_ok(route, 0, ctx);
    }
    if bad.lines > 0 {
        ctx.counters.partial_writes += 1;
    }

    // Into the open (group-commit) batch; a body larger than what is left of
    // it spills into the next ones. The response waits for all of them.
    let mut first = ctx.commit.open_no;
    // Of this request's records, those in batches the writer already took.
    let mut handed_over = 0u64;
    if !ensure_open(ctx) {
        return writer_busy(ctx, records);
    }
    if route == Route::RemoteWrite {
        // As many samples as fit each batch; the rest spill into the next
        // ones (the same hand-over rules as a long line-protocol body).
        let mut position = SamplePosition::START;
        loop {
            let batch = ctx.commit.open.as_mut().expect("ensured");
            let (start, was_empty) = (batch.mark(), batch.is_empty());
            let pushed = ctx.remote_write.push_into(position, batch);
            let Some(next) = pushed.resume_at else { break };
            if was_empty && pushed.pushed == 0 {
                batch.rollback(start);
                ctx.counters.records_handed_over_then_refused += handed_over;
                return ctx.error(413, "request too large", format_args!("a sample does not fit one writer batch"));
            }
            let Some(next_batch) = take_batch(ctx) else {
                ctx.commit.open.as_mut().expect("ensured").rollback(start);
                ctx.counters.records_handed_over_then_refused += handed_over;
                return writer_busy(ctx, records);
            };
            let handed = ctx.flush_open();
            ctx.commit.open = Some(next_batch);
            if !handed {
                ctx.counters.records_handed_over_then_refused += handed_over;
                return writer_busy(ctx, records);
            }
            handed_over += pushed.pushed;
            position = next;
        }
        ctx.counters.remote_write_samples += records;
    } else if route == Route::JsonMetrics {
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
                    "request too large",
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
                let s = index_into(&mut ctx.indexer, batch, body, BodyPosition::START, precision, mode, wall_ns);
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
            let s = index_into(&mut ctx.indexer, batch, body, position, precision, mode, wall_ns);
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
    Outcome::Hold(Held { first, last: ctx.commit.open_no, records, handed_over, api, bad, ack })
}

/// A line-protocol body's records put into the open batch before the limiter
/// decided: they start at `start`; `in_batch` of them are there, and the rest
/// of the body (from `resume_at`) did not fit.
struct Tentative {
    start: BatchMark,
    in_batch: u64,
    resume_at: Option<BodyPosition>,
}

/// Validates a line-protocol body and counts its valid records, indexing
/// them into the open batch on the way (one pass); bad lines go to `bad`.
/// Refusing whole (`RejectBatch`), a bad line rolls the batch back. The part
/// that does not fit the open batch is only validated and counted here.
/// Without a free batch the whole body is only validated.
fn index_tentatively(
    body: &[u8],
    precision: Precision,
    mode: BadLines,
    wall_ns: i64,
    bad: &mut BadReport,
    ctx: &mut Ctx,
) -> (u64, Option<Tentative>) {
    let count_only = |indexer: &mut crate::ingest::line_index::LineIndexer, at: BodyPosition| {
        indexer.index_from(body, at, precision, wall_ns, mode, |_| true)
    };
    if !ensure_open(ctx) {
        let s = count_only(&mut ctx.indexer, BodyPosition::START);
        bad.add(&s);
        return ((s.lines + s.valid_not_handed) as u64, None);
    }
    let batch = ctx.commit.open.as_mut().expect("ensured");
    let start = batch.mark();
    let first = ctx.indexer.index_from(body, BodyPosition::START, precision, wall_ns, mode, |line| {
        batch.push_line(line, TenantIndex::DEFAULT).is_ok()
    });
    bad.add(&first);
    let mut records = (first.lines + first.valid_not_handed) as u64;
    if let Some(rest_at) = first.resume_at {
        let rest = count_only(&mut ctx.indexer, rest_at);
        bad.add(&rest);
        records += (rest.lines + rest.valid_not_handed) as u64;
    }
    if mode == BadLines::RejectBatch && bad.lines > 0 {
        batch.rollback(start);
        return (records, None);
    }
    (records, Some(Tentative { start, in_batch: first.lines as u64, resume_at: first.resume_at }))
}

/// Indexes `body` from `position` into `batch` (the body was validated): as
/// many lines as fit (bad lines skipped in partial mode, as when validated).
fn index_into(
    indexer: &mut crate::ingest::line_index::LineIndexer,
    batch: &mut Batch,
    body: &[u8],
    position: BodyPosition,
    precision: Precision,
    mode: BadLines,
    wall_ns: i64,
) -> BodySummary {
    indexer.index_from(body, position, precision, wall_ns, mode, |line| {
        batch.push_line(line, TenantIndex::DEFAULT).is_ok()
    })
}

/// Longest quote of a bad line in an error body.
const QUOTE_BYTES: usize = 200;

/// The 400 for a body with bad lines, in the API's shape, into the reply's
/// reused buffers: refused whole (`partial` false: nothing written) or
/// partially written (`written` valid lines in the log once answered).
pub(super) fn bad_lines_reply(
    ctx: &mut Ctx,
    api: Api,
    body: &[u8],
    bad: &BadReport,
    written: u64,
    partial: bool,
) -> Outcome {
    format_bad_lines(&mut ctx.reply.message, &mut ctx.reply.body, api, body, bad, written, partial);
    ctx.reply.kind = ReplyKind::Body;
    ctx.reply.status = 400;
    ctx.reply.content_type = "application/json; charset=utf-8";
    Outcome::Respond
}

/// Formats the bad-lines answer's JSON into `out` (`text` is scratch).
pub(super) fn format_bad_lines(
    text: &mut String,
    out: &mut Vec<u8>,
    api: Api,
    body: &[u8],
    bad: &BadReport,
    written: u64,
    partial: bool,
) {
    use std::fmt::Write as _;
    text.clear();
    out.clear();
    let lines = bad.reported.iter().flatten();
    if api == Api::V3 {
        // InfluxDB 3's shape, which its clients parse into per-line errors.
        let (error, open, close) = if partial {
            ("partial write of line protocol occurred", b"[".as_slice(), b"]".as_slice())
        } else {
            ("parsing failed for write_lp endpoint", b"".as_slice(), b"".as_slice())
        };
        out.extend_from_slice(b"{\"error\":");
        json_string(out, error);
        out.extend_from_slice(b",\"data\":");
        out.extend_from_slice(open);
        // Refused whole, InfluxDB 3 names the first bad line only.
        for (i, line) in lines.take(if partial { REPORTED_BAD_LINES } else { 1 }).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"original_line\":");
            json_string(out, quote(line.text(body)));
            let _ = write!(text, "{}", line.line);
            out.extend_from_slice(b",\"line_number\":");
            out.extend_from_slice(text.as_bytes());
            text.clear();
            let _ = write!(text, "{}", line.reason);
            out.extend_from_slice(b",\"error_message\":");
            json_string(out, text);
            text.clear();
            out.push(b'}');
        }
        out.extend_from_slice(close);
        out.push(b'}');
        return;
    }
    let _ = if partial {
        write!(text, "partial write: {} invalid line(s), {written} written", bad.lines)
    } else {
        write!(text, "{} invalid line(s), batch refused whole ({written} valid line(s) not written)", bad.lines)
    };
    let mut shown = 0;
    for line in lines {
        shown += 1;
        let _ = write!(text, "; line {}: {}: unable to parse '{}'", line.line, line.reason, Quoted(line.text(body)));
    }
    if bad.lines > shown {
        let _ = write!(text, "; {} more not shown", bad.lines - shown);
    }
    match api {
        Api::V1 => {
            out.extend_from_slice(b"{\"error\":");
            json_string(out, text);
        }
        _ => {
            out.extend_from_slice(b"{\"code\":\"invalid\",\"message\":");
            json_string(out, text);
        }
    }
    out.push(b'}');
}

/// At most [`QUOTE_BYTES`] of a line, cut at a character boundary (a line
/// may be bad for invalid UTF-8: the valid prefix is quoted).
fn quote(line: &[u8]) -> &str {
    let line = &line[..line.len().min(QUOTE_BYTES)];
    match std::str::from_utf8(line) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(&line[..e.valid_up_to()]).unwrap_or(""),
    }
}

struct Quoted<'a>(&'a [u8]);

impl std::fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(quote(self.0))?;
        if self.0.len() > QUOTE_BYTES {
            f.write_str("...")?;
        }
        Ok(())
    }
}

fn json_string(out: &mut Vec<u8>, s: &str) {
    // serde_json escapes as JSON requires, straight into the reused Vec.
    let _ = serde_json::to_writer(&mut *out, s);
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
    ctx.error(503, "unavailable", format_args!("the writer is behind; {records} records not taken, retry"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::line_index::LineIndexer;

    /// The bad lines of `body` as the write path finds them (skipping mode).
    fn report(body: &[u8]) -> (BadReport, u64) {
        let s = LineIndexer::new().index_lenient(body, Precision::Nanoseconds, 0, |_| true);
        let mut bad = BadReport::default();
        bad.add(&s);
        (bad, s.lines as u64)
    }

    fn render(api: Api, body: &[u8], partial: bool) -> serde_json::Value {
        let (bad, written) = report(body);
        let (mut text, mut out) = (String::new(), Vec::new());
        format_bad_lines(&mut text, &mut out, api, body, &bad, written, partial);
        serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)))
    }

    const BODY: &[u8] = b"ok v=1 1\nbroken line\nok v=2 2\r\nalso \"bad\r\nok v=3 3\n";

    #[test]
    fn v1_and_v2_name_the_bad_lines_and_the_written_count() {
        let v = render(Api::V1, BODY, true);
        let e = v["error"].as_str().unwrap();
        assert!(e.starts_with("partial write: 2 invalid line(s), 3 written"), "{e}");
        assert!(e.contains("line 2: field without '=': unable to parse 'broken line'"), "{e}");
        assert!(e.contains("line 4: ") && e.contains("'also \"bad'"), "{e}");
        let v = render(Api::V2, BODY, false);
        assert_eq!(v["code"], "invalid");
        let m = v["message"].as_str().unwrap();
        assert!(m.starts_with("2 invalid line(s), batch refused whole (3 valid line(s) not written)"), "{m}");
    }

    #[test]
    fn v3_has_influxdb3s_shape() {
        let v = render(Api::V3, BODY, true);
        assert_eq!(v["error"], "partial write of line protocol occurred");
        assert_eq!(v["data"].as_array().unwrap().len(), 2);
        assert_eq!(v["data"][0]["line_number"], 2);
        assert_eq!(v["data"][0]["original_line"], "broken line");
        assert_eq!(v["data"][0]["error_message"], "field without '='");
        let v = render(Api::V3, BODY, false);
        assert_eq!(v["error"], "parsing failed for write_lp endpoint");
        assert_eq!(v["data"]["line_number"], 2);
    }

    #[test]
    fn reports_are_bounded_and_quotes_cut() {
        let mut body = Vec::new();
        for i in 0..50 {
            body.extend_from_slice(format!("bad{i}\n").as_bytes());
        }
        body.extend_from_slice(&[b'x'; 1000]);
        let v = render(Api::V1, &body, true);
        let e = v["error"].as_str().unwrap();
        assert!(e.contains("51 invalid line(s), 0 written"), "{e}");
        assert!(e.contains(&format!("; {} more not shown", 51 - REPORTED_BAD_LINES)), "{e}");
        assert!(!e.contains("bad9"), "{e}");
        let (bad, _) = report(&body);
        assert_eq!(bad.reported.iter().flatten().count(), REPORTED_BAD_LINES);
        // A long line is quoted up to QUOTE_BYTES.
        let long = [b'y'; 1000];
        let v = render(Api::V2, &long, true);
        let m = v["message"].as_str().unwrap();
        assert!(m.contains(&format!("'{}...'", "y".repeat(QUOTE_BYTES))), "{m}");
        // Invalid UTF-8 in a bad line quotes its valid prefix.
        assert_eq!(quote(b"ab\xffcd"), "ab");
    }

    #[test]
    fn passes_add_in_body_order() {
        let mut bad = BadReport::default();
        let mut s = BodySummary { bad_lines: 1, ..BodySummary::default() };
        let line = |n| BadLine {
            line: n,
            reason: crate::ingest::line_protocol::LineErrorReason::MissingFields,
            start: 0,
            end: 0,
        };
        s.reported[0] = Some(line(3));
        bad.add(&s);
        s.reported = [Some(line(7)), Some(line(8)), Some(line(9)), Some(line(10))];
        s.bad_lines = 6;
        bad.add(&s);
        let lines: Vec<usize> = bad.reported.iter().flatten().map(|b| b.line).collect();
        assert_eq!((bad.lines, lines), (7, vec![3, 7, 8, 9]));
    }
}
