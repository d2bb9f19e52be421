//! Held responses and group commit. Every request handled in one serve
//! step puts its records into one open batch, which the step submits at its
//! end ([`HttpApp::flush`]); the request's answer is held until every batch
//! its records went into is handed over to the writer (and, with
//! `ack = "durable"`, made durable), or one was refused (503).
//!
//! The state machine of a held answer is [`held_status`]: a pure function of
//! the held record, the batch numbers submitted so far with their tickets,
//! the ack mode and the writer's durable sequence.

use super::ingest::{format_bad_lines, Api, BadReport};
use super::{process, with_buffers, Ctx, HttpApp};
use crate::http::Response;
use crate::time::Nanos;
use crate::writer::{AckMode, Backpressure, BackpressureReason, Batch, StorageFault, Ticket};
use std::collections::VecDeque;

/// A response waiting for its records to be handed over (and, with
/// `ack = "durable"`, made durable): they went into the app's batches
/// `first..=last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Held {
    pub(super) first: u64,
    pub(super) last: u64,
    pub(super) records: u64,
    /// Of `records`, those in batches `first..last`, already taken by the
    /// writer (a request stops with 503 when one of those is refused, so
    /// only batch `last` can still be refused).
    pub(super) handed_over: u64,
    /// The API asked: 202 `{"accepted":records}` (JSON) or 204, and the shape of errors.
    pub(super) api: Api,
    /// Bad lines skipped (partial write): the answer is a 400 naming them.
    pub(super) bad: BadReport,
    /// The ack this request gets (its own choice, else the server's).
    pub(super) ack: AckMode,
}

/// Where a held response stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum HeldStatus {
    /// A batch of it is still open, or (durable) not yet synced.
    Waiting,
    /// Every batch is handed over (and durable): answer 2xx.
    Done,
    /// The writer refused one of its batches: answer 503 (507 when it
    /// refused for a full disk).
    Refused,
    /// Durable: a storage fault kept its last batch from becoming durable
    /// (507 for a full disk, else 503).
    Lost,
}

/// The answer when the log's disk fails the writer: 507 for a full disk
/// (RFC 4918: the server cannot store what is needed), 503 for another write
/// or fsync error, or after the fault cleared; the client retries either.
pub(super) fn storage_refusal(fault: Option<StorageFault>) -> Response<'static> {
    let response = match fault {
        Some(StorageFault::NoSpace) => Response::error(
            507,
            "insufficient_storage",
            "the log's disk is full: records not written; retry once space is freed",
        ),
        Some(StorageFault::Io) | None => Response::error(
            503,
            "storage_error",
            "the log's disk failed a write or fsync: records not made durable; retry",
        ),
    };
    response.with_raw_headers(b"Retry-After: 1\r\n")
}

/// The group-commit batches of one worker's HTTP application.
pub(super) struct GroupCommit {
    /// Every request handled in one serve step goes into this batch,
    /// submitted by [`HttpApp::flush`] at the end of the step.
    pub(super) open: Option<Batch>,
    /// Number of the batch being filled (app-local, from 1).
    pub(super) open_no: u64,
    /// Submitted batches still referred to by a held response, by number
    /// (consecutive from the front): the writer's ticket, or `None` if the
    /// writer refused the batch (backpressure).
    pub(super) submitted: VecDeque<(u64, Option<Ticket>)>,
}

impl GroupCommit {
    pub(super) fn new() -> GroupCommit {
        GroupCommit { open: None, open_no: 1, submitted: VecDeque::with_capacity(256) }
    }

    /// The open batch went to the writer (`ticket`) or was refused (`None`):
    /// the next one gets the next number.
    fn advance(&mut self, ticket: Option<Ticket>) {
        self.submitted.push_back((self.open_no, ticket));
        self.open_no += 1;
    }
}

/// Whether every batch of `held` is handed over (and durable, if `held.ack`
/// is), given the number of the open batch, the submitted batches
/// (consecutive numbers from the front) and the writer's durable and lost
/// sequences (`WriterHandle::durable_seq`, `lost_seq`).
pub(super) fn held_status(
    held: &Held,
    open_no: u64,
    submitted: &VecDeque<(u64, Option<Ticket>)>,
    (durable_seq, lost_seq): (u64, u64),
) -> HeldStatus {
    if held.last >= open_no {
        return HeldStatus::Waiting; // still in the open batch
    }
    // `submitted` holds consecutive batch numbers from its front: index, don't search.
    let Some(&(front, _)) = submitted.front() else { return HeldStatus::Refused };
    let at = |no: u64| no.checked_sub(front).and_then(|i| submitted.get(i as usize)).map(|(_, t)| *t);
    if (held.first..held.last).any(|no| matches!(at(no), Some(None) | None)) {
        return HeldStatus::Refused;
    }
    match (held.ack, at(held.last).flatten()) {
        // Lost before durable: a later sync publishes a durable sequence
        // past batches a fault gave up (see `WriterHandle::lost_seq`).
        (AckMode::Durable, Some(t)) if t.seq <= lost_seq => HeldStatus::Lost,
        // Sequence numbers are per handle and monotonic: the last batch
        // durable means the earlier ones are too.
        (AckMode::Durable, Some(t)) if durable_seq < t.seq => HeldStatus::Waiting,
        (_, Some(_)) => HeldStatus::Done,
        (_, None) => HeldStatus::Refused,
    }
}

impl Ctx {
    /// Submits the open batch now (it is full); whether the writer took it.
    pub(super) fn flush_open(&mut self) -> bool {
        let Some(batch) = self.commit.open.take() else { return false };
        let ticket = match self.writer.submit(batch) {
            Ok(ticket) => Some(ticket),
            Err(refused) => {
                self.writer.recycle(refused.batch);
                None
            }
        };
        let taken = ticket.is_some();
        self.commit.advance(ticket);
        taken
    }
}

impl HttpApp {
    /// Submits the batch filled during this step (group commit). When
    /// the writer's channel is full the batch stays open and goes on filling
    /// (its requests stay held) until a later flush finds room: a writer that
    /// fell behind gets fewer, larger batches instead of 503s. Only a full
    /// batch that finds no room is refused (503). Returns whether records
    /// still wait in the open batch.
    pub fn flush(&mut self) -> bool {
        let Some(batch) = self.ctx.commit.open.take() else { return false };
        if batch.is_empty() {
            // Back to the pool: an idle worker holds no batch.
            self.ctx.writer.recycle(batch);
            return false;
        }
        let ticket = match self.ctx.writer.submit(batch) {
            Ok(ticket) => Some(ticket),
            Err(Backpressure { batch, reason: BackpressureReason::ChannelFull }) => {
                self.ctx.commit.open = Some(batch);
                return true;
            }
            Err(refused) => {
                self.ctx.writer.recycle(refused.batch);
                None
            }
        };
        self.ctx.commit.advance(ticket);
        false
    }

    /// Answers held requests whose batches are handed over (and durable, in
    /// `durable` mode), or refused (503); the connections answered go on
    /// the wake-up queue ([`HttpApp::wakeups`]).
    pub fn release_held(&mut self, now: Nanos) {
        // A held response can only be released by a submit (open_no moves) or
        // an fsync (durable_seq moves): skip the scan while neither changed.
        let seqs = (self.ctx.writer.durable_seq(), self.ctx.writer.lost_seq());
        let progress = (self.ctx.commit.open_no, seqs.0, seqs.1);
        if progress == self.last_progress {
            return;
        }
        self.last_progress = progress;
        let mut oldest_needed = self.ctx.commit.open_no;
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
            let commit = &self.ctx.commit;
            match held_status(&held, commit.open_no, &commit.submitted, seqs) {
                HeldStatus::Waiting => {
                    oldest_needed = oldest_needed.min(held.first);
                    i += 1;
                }
                done => {
                    state.held = None;
                    self.ctx.counters.held -= 1;
                    self.ctx.reset_reply();
                    let fault = self.ctx.writer.storage_fault();
                    match done {
                        HeldStatus::Lost => {
                            self.ctx.counters.records_accepted -= held.records;
                            self.ctx.counters.records_lost_to_storage += held.records;
                        }
                        HeldStatus::Refused => {
                            self.ctx.counters.records_accepted -= held.records;
                            self.ctx.counters.records_handed_over_then_refused += held.handed_over;
                        }
                        _ => {
                            match held.ack {
                                AckMode::Durable => self.ctx.counters.requests_acked_durable += 1,
                                AckMode::Enqueued => self.ctx.counters.requests_acked_enqueued += 1,
                            }
                            if held.bad.lines > 0 {
                                // A partial write: its valid lines are in; name the bad ones,
                                // quoted from the body the connection still holds.
                                let body = state.http.request().map_or(&[][..], |r| r.body());
                                let reply = &mut self.ctx.reply;
                                format_bad_lines(
                                    &mut reply.message,
                                    &mut reply.body,
                                    held.api,
                                    body,
                                    &held.bad,
                                    held.records,
                                    true,
                                );
                            }
                        }
                    }
                    let held_list = &mut self.held;
                    with_buffers(state, &mut self.ctx, |state, ctx| {
                        let response = match (done, held.api) {
                            (HeldStatus::Lost, _) => storage_refusal(fault),
                            (HeldStatus::Refused, _) if fault.is_some() => storage_refusal(fault),
                            (HeldStatus::Refused, _) => {
                                Response::error(503, "unavailable", "the writer is behind; retry")
                                    .with_raw_headers(b"Retry-After: 1\r\n")
                            }
                            _ if held.bad.lines > 0 => {
                                Response::bytes(400, "application/json; charset=utf-8", &ctx.reply.body)
                            }
                            (_, Api::Json) => Response::accepted(held.records),
                            _ => Response::no_content(),
                        };
                        let response =
                            if matches!(held.api, Api::V1 | Api::V3) { response.v1_error_shape() } else { response };
                        ctx.counters.count_status(response.status);
                        state.http.respond(&response);
                        // Pipelined requests waited behind this one.
                        process(state, ctx, held_list, now);
                    });
                    self.wakeups.push(id);
                    self.held.swap_remove(i);
                }
            }
        }
        // Batches no held response refers to any more are forgotten.
        let submitted = &mut self.ctx.commit.submitted;
        while submitted.front().is_some_and(|(no, _)| *no < oldest_needed) {
            submitted.pop_front();
        }
        self.held.sort_unstable_by_key(|c| (c.index(), c.generation()));
        self.held.dedup();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(first: u64, last: u64, ack: AckMode) -> Held {
        Held { first, last, records: 3, handed_over: 0, api: Api::V1, bad: BadReport::default(), ack }
    }

    fn ticket(seq: u64) -> Option<Ticket> {
        Some(Ticket { seq, records: 1, awaited: true })
    }

    /// Submitted batches `front..`, each with its ticket (`None`: refused).
    fn submitted(front: u64, tickets: &[Option<Ticket>]) -> VecDeque<(u64, Option<Ticket>)> {
        tickets.iter().enumerate().map(|(i, t)| (front + i as u64, *t)).collect()
    }

    use AckMode::{Durable, Enqueued};
    use HeldStatus::{Done, Lost, Refused, Waiting};

    #[test]
    fn a_response_whose_last_batch_is_still_open_waits() {
        let none = VecDeque::new();
        // Batch 4 is the open one: nothing of it is submitted yet, whatever the mode.
        assert_eq!(held_status(&held(4, 4, Enqueued), 4, &none, (0, 0)), Waiting);
        assert_eq!(held_status(&held(3, 4, Durable), 4, &submitted(3, &[ticket(1)]), (9, 0)), Waiting);
    }

    #[test]
    fn enqueued_is_done_once_the_writer_took_every_batch() {
        let s = submitted(2, &[ticket(5), ticket(6), ticket(7)]);
        assert_eq!(held_status(&held(3, 3, Enqueued), 5, &s, (0, 0)), Done);
        assert_eq!(held_status(&held(2, 4, Enqueued), 5, &s, (0, 0)), Done);
    }

    #[test]
    fn durable_waits_for_the_sync_of_the_last_batch() {
        let s = submitted(2, &[ticket(5), ticket(6), ticket(7)]);
        // The last batch's sequence (7) decides: earlier ones are covered by it.
        assert_eq!(held_status(&held(2, 4, Durable), 5, &s, (6, 0)), Waiting);
        assert_eq!(held_status(&held(2, 4, Durable), 5, &s, (7, 0)), Done);
        assert_eq!(held_status(&held(2, 4, Durable), 5, &s, (100, 0)), Done);
        assert_eq!(held_status(&held(2, 2, Durable), 5, &s, (5, 0)), Done);
    }

    #[test]
    fn each_request_of_a_shared_batch_gets_its_own_ack() {
        // Batch 2 (seq 5) holds a durable and an enqueued request (the
        // batch is awaited because of the first): the enqueued one is
        // answered once the writer took it, the durable one after the sync.
        let s = submitted(2, &[ticket(5)]);
        assert_eq!(held_status(&held(2, 2, Enqueued), 3, &s, (4, 0)), Done);
        assert_eq!(held_status(&held(2, 2, Durable), 3, &s, (4, 0)), Waiting);
        assert_eq!(held_status(&held(2, 2, Durable), 3, &s, (5, 0)), Done);
        // A durable request is never answered before the sync, even if its
        // batch went over un-awaited (it then rides a later sync).
        let s = submitted(2, &[Some(Ticket { seq: 5, records: 1, awaited: false })]);
        assert_eq!(held_status(&held(2, 2, Durable), 3, &s, (4, 0)), Waiting);
        assert_eq!(held_status(&held(2, 2, Durable), 3, &s, (5, 0)), Done);
    }

    #[test]
    fn a_durable_response_whose_batch_a_fault_gave_up_is_lost() {
        let s = submitted(2, &[ticket(5), ticket(6)]);
        // Seq 6 given up: lost, even once a later sync publishes past it.
        assert_eq!(held_status(&held(3, 3, Durable), 4, &s, (4, 6)), Lost);
        assert_eq!(held_status(&held(3, 3, Durable), 4, &s, (9, 6)), Lost);
        assert_eq!(held_status(&held(2, 3, Durable), 4, &s, (9, 6)), Lost);
        // Beyond the lost ones: durable as usual.
        assert_eq!(held_status(&held(3, 3, Durable), 4, &s, (9, 5)), Done);
        // An enqueued response was answered at hand-over: a fault does not change it.
        assert_eq!(held_status(&held(3, 3, Enqueued), 4, &s, (0, 6)), Done);
        let r = storage_refusal(Some(StorageFault::NoSpace));
        assert_eq!(r.status, 507);
        assert_eq!(storage_refusal(Some(StorageFault::Io)).status, 503);
        assert_eq!(storage_refusal(None).status, 503);
    }

    #[test]
    fn a_refused_last_batch_refuses_the_response() {
        let s = submitted(2, &[ticket(5), None]);
        assert_eq!(held_status(&held(3, 3, Enqueued), 4, &s, (0, 0)), Refused);
        assert_eq!(held_status(&held(2, 3, Durable), 4, &s, (100, 0)), Refused);
    }

    #[test]
    fn a_refused_earlier_batch_refuses_the_response() {
        let s = submitted(2, &[None, ticket(6)]);
        assert_eq!(held_status(&held(2, 3, Enqueued), 4, &s, (0, 0)), Refused);
        assert_eq!(held_status(&held(2, 3, Durable), 4, &s, (100, 0)), Refused);
        // A response of the later batch alone is not affected.
        assert_eq!(held_status(&held(3, 3, Enqueued), 4, &s, (0, 0)), Done);
    }

    #[test]
    fn batches_no_longer_remembered_count_as_refused() {
        // Nothing submitted remembered at all.
        assert_eq!(held_status(&held(2, 2, Enqueued), 4, &VecDeque::new(), (0, 0)), Refused);
        // An earlier batch already forgotten (before the front).
        let s = submitted(3, &[ticket(6)]);
        assert_eq!(held_status(&held(2, 3, Enqueued), 4, &s, (0, 0)), Refused);
        // The last batch beyond what is remembered.
        let s = submitted(1, &[ticket(4)]);
        assert_eq!(held_status(&held(1, 2, Enqueued), 3, &s, (0, 0)), Refused);
    }

    #[test]
    fn submitting_numbers_the_batches_consecutively() {
        let mut commit = GroupCommit::new();
        commit.advance(ticket(1));
        commit.advance(None);
        commit.advance(ticket(2));
        assert_eq!(commit.open_no, 4);
        assert_eq!(commit.submitted, submitted(1, &[ticket(1), None, ticket(2)]));
        assert_eq!(held_status(&held(3, 3, Enqueued), commit.open_no, &commit.submitted, (0, 0)), Done);
        assert_eq!(held_status(&held(2, 3, Enqueued), commit.open_no, &commit.submitted, (0, 0)), Refused);
    }
}
