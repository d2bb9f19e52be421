//! The writer thread's loop: drains the worker channels, appends each batch
//! as one frame and decides when a sync starts (leader/follower group commit,
//! see the module above), and what happens when the disk fails it.
//!
//! Storage faults (a failed write, segment creation or fdatasync; ENOSPC
//! among them): the writer stops acknowledging at once (submits are refused,
//! the HTTP application answers 507 for a full disk, 503 otherwise),
//! publishes every batch it holds that is not yet durable as lost (a client
//! waiting for one gets the same answer), and every `FAULT_RETRY` tries to
//! cut the active segment back to its last durable point and start a new
//! segment ([`SegmentWriter::abandon`]); once that works it writes again.
//! A failed fdatasync is never retried on the same file.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Select, Sender, TryRecvError};

use super::super::codec::Batch;
use super::super::config::WriterConfig;
use super::super::segment::{SegmentError, SegmentWriter};
use super::super::stats::CommitReport;
use super::handle::Submitted;
use super::sync::{DurablePublisher, SyncDone, SyncJob};
use super::{StorageFault, WriterError, WriterSummary};

pub(super) struct WriterLoop {
    pub(super) seg: SegmentWriter,
    pub(super) config: WriterConfig,
    pub(super) commit_delay: Duration,
    pub(super) sync_interval: Duration,
    pub(super) full_rxs: Vec<Receiver<Submitted>>,
    pub(super) empty_txs: Vec<Sender<Batch>>,
    /// Per worker: highest seq appended (published after the next fsync).
    pub(super) pending: Vec<u64>,
    /// Since the last sync started: the first append, the first awaited
    /// append, and when each awaited batch was handed over.
    pub(super) dirty_since: Option<Instant>,
    pub(super) awaited_since: Option<Instant>,
    pub(super) handed_over: Vec<Instant>,
    /// `seg.appended_bytes()` when the last sync started.
    pub(super) sync_started_at_bytes: u64,
    pub(super) publisher: DurablePublisher,
    pub(super) sync_tx: Option<Sender<SyncJob>>,
    pub(super) done_rx: Receiver<SyncDone>,
    /// `None` while a sync is in flight.
    pub(super) spare_job: Option<SyncJob>,
    pub(super) syncer: Option<JoinHandle<CommitReport>>,
    pub(super) stop: Arc<AtomicBool>,
    /// While stopped on a storage fault: when to try abandoning the segment
    /// (and so resume) next.
    pub(super) fault_retry_at: Option<Instant>,
}

/// How often a writer stopped on a storage fault tries to start again (a
/// freed disk is noticed within this; a still-full one costs one attempt).
const FAULT_RETRY: Duration = Duration::from_millis(200);

/// How long the writer waits for still-connected handles after a stop request.
const STOP_GRACE: Duration = Duration::from_millis(200);
/// Idle wake-up to notice a stop request and age-based retention.
const IDLE_TICK: Duration = Duration::from_millis(50);
const RETENTION_CHECK: Duration = Duration::from_secs(60);

impl WriterLoop {
    pub(super) fn run(mut self) -> Result<WriterSummary, WriterError> {
        let result = self.run_inner();
        if let Err(e) = &result {
            // Nothing acknowledged after this point: durable sequence numbers
            // stop advancing and handles see `WriterStopped` once the
            // receivers are gone (when this thread returns).
            log::error!("writer stopped: {e}");
            self.full_rxs.clear();
        }
        self.sync_tx = None;
        let commit = self.syncer.take().map(JoinHandle::join);
        let mut summary = result?;
        summary.commit = commit.and_then(Result::ok).ok_or(WriterError::Panicked)?;
        Ok(summary)
    }

    /// Collects a finished sync, if any; `block` waits for it.
    fn reap_sync(&mut self, block: bool) -> Result<(), WriterError> {
        if self.spare_job.is_some() {
            return Ok(());
        }
        let r = if block {
            self.done_rx.recv().map_err(|_| WriterError::Panicked)?
        } else {
            match self.done_rx.try_recv() {
                Ok(r) => r,
                Err(TryRecvError::Empty) => return Ok(()),
                Err(TryRecvError::Disconnected) => return Err(WriterError::Panicked),
            }
        };
        let (job, result) = r;
        let point = job.point;
        self.spare_job = Some(job);
        match result {
            Ok(()) => {
                self.seg.synced(point);
                Ok(())
            }
            Err(source) => {
                self.publisher.stats.fsync_errors.fetch_add(1, Ordering::Relaxed);
                let path = self.seg.active_path().to_owned();
                self.fault(SegmentError::Io { path, source })
            }
        }
    }

    /// A write or fsync failed (`e`): stop acknowledging, give up what is
    /// not durable, and try to resume every `FAULT_RETRY`. Errors that are
    /// not I/O (a corrupt segment header, ...) stop the writer.
    fn fault(&mut self, e: SegmentError) -> Result<(), WriterError> {
        let SegmentError::Io { source, .. } = &e else { return Err(e.into()) };
        let kind = StorageFault::of(source);
        let stats = &self.publisher.stats;
        if kind == StorageFault::NoSpace {
            stats.no_space_errors.fetch_add(1, Ordering::Relaxed);
        }
        if self.fault_retry_at.is_none() {
            log::error!("writer: {e}; not acknowledging until a new segment can be written");
        }
        // Refuse submits first, so that fewer batches are accepted only to be lost.
        stats.storage_fault.store(kind as u64, Ordering::Release);
        // A sync in flight covers earlier appends: let it finish (it may
        // still succeed and publish).
        if self.spare_job.is_none() {
            let (job, result) = self.done_rx.recv().map_err(|_| WriterError::Panicked)?;
            if result.is_ok() {
                self.seg.synced(job.point);
            } else {
                stats.fsync_errors.fetch_add(1, Ordering::Relaxed);
            }
            self.spare_job = Some(job);
        }
        let lost = self.seg.next_record_id() - self.seg.durable_point().next_record_id();
        stats.records_lost.fetch_add(lost, Ordering::Relaxed);
        for (w, &seq) in self.pending.iter().enumerate() {
            self.publisher.publish_lost(w, seq);
        }
        self.dirty_since = None;
        self.awaited_since = None;
        self.handed_over.clear();
        self.sync_started_at_bytes = self.seg.appended_bytes();
        self.fault_retry_at = Some(Instant::now() + FAULT_RETRY);
        Ok(())
    }

    /// While stopped on a fault, once `FAULT_RETRY` is up: abandon the
    /// segment at its durable point and, if that worked, write again.
    fn retry_after_fault(&mut self, now: Instant) -> Result<(), WriterError> {
        if !self.fault_retry_at.is_some_and(|t| now >= t) {
            return Ok(());
        }
        match self.seg.abandon() {
            Ok(_) => {
                let stats = &self.publisher.stats;
                stats.segments_abandoned.fetch_add(1, Ordering::Relaxed);
                stats.storage_fault.store(0, Ordering::Release);
                self.sync_started_at_bytes = self.seg.appended_bytes();
                self.fault_retry_at = None;
                log::warn!("writer: writing again in {}", self.seg.active_path().display());
                Ok(())
            }
            Err(SegmentError::Io { source, .. }) => {
                // Still failing (the disk still full): the gauge stays, try later.
                let kind = StorageFault::of(&source);
                self.publisher.stats.storage_fault.store(kind as u64, Ordering::Release);
                self.fault_retry_at = Some(now + FAULT_RETRY);
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// When what was appended since the last sync started needs a sync:
    /// `commit_delay` after the first awaited append (0: at once), at the
    /// latest `sync_interval` after the first append; `None`: nothing to sync.
    fn sync_deadline(&self) -> Option<Instant> {
        let latest = self.dirty_since? + self.sync_interval;
        Some(self.awaited_since.map_or(latest, |t| latest.min(t + self.commit_delay)))
    }

    /// Whether a sync should start now (if none is in flight).
    fn sync_due(&self, now: Instant) -> bool {
        self.sync_deadline().is_some_and(|d| now >= d || self.seg.unsynced_bytes() >= self.config.fsync_bytes)
    }

    /// Hands everything appended so far to the sync thread; whether a sync
    /// started (not when one is in flight, or the flush before it failed).
    fn start_sync(&mut self) -> Result<bool, WriterError> {
        let Some(mut job) = self.spare_job.take() else {
            return Ok(false);
        };
        match self.seg.prepare_sync() {
            Ok((file, point)) => (job.file, job.point) = (Some(file), point),
            Err(e) => {
                self.spare_job = Some(job);
                self.publisher.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                self.fault(e)?;
                return Ok(false);
            }
        }
        job.pending.copy_from_slice(&self.pending);
        job.next_record_id = self.seg.next_record_id();
        let appended = self.seg.appended_bytes();
        job.bytes = appended - self.sync_started_at_bytes;
        self.sync_started_at_bytes = appended;
        job.handed_over.clear();
        std::mem::swap(&mut job.handed_over, &mut self.handed_over);
        self.dirty_since = None;
        self.awaited_since = None;
        let tx = self.sync_tx.as_ref().ok_or(WriterError::Panicked)?;
        tx.send(job).map_err(|_| WriterError::Panicked)?;
        Ok(true)
    }

    fn run_inner(&mut self) -> Result<WriterSummary, WriterError> {
        let rxs = self.full_rxs.clone();
        let done_rx = self.done_rx.clone();
        let mut sel = Select::new();
        for rx in &rxs {
            sel.recv(rx);
        }
        // Wakes the loop when a sync completes: the next one may start.
        sel.recv(&done_rx);
        let mut connected = vec![true; rxs.len()];
        let mut n_connected = rxs.len();
        let mut stop_seen: Option<Instant> = None;
        let mut summary = WriterSummary::default();
        let mut active = self.seg.active_path().to_owned();
        let mut last_retention = Instant::now();
        let drain_cap = self.config.channel_batches.max(1);

        loop {
            let mut got = 0usize;
            let mut occupancy = 0u64;
            for (w, rx) in rxs.iter().enumerate() {
                if !connected[w] {
                    continue;
                }
                for _ in 0..drain_cap {
                    match rx.try_recv() {
                        Ok(b) => {
                            got += 1;
                            self.append(w, b, &mut summary)?;
                        }
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => {
                            connected[w] = false;
                            n_connected -= 1;
                            sel.remove(w);
                            break;
                        }
                    }
                }
                occupancy += rx.len() as u64;
            }
            let stats = &self.publisher.stats;
            stats.channel_occupancy.store(occupancy, Ordering::Relaxed);
            let durable_id = self.publisher.durable_record_id.load(Ordering::Relaxed);
            stats.durable_lag_records.store(self.seg.next_record_id().saturating_sub(durable_id), Ordering::Relaxed);

            // Leader/follower: one sync in flight; what was appended while it
            // ran goes into the next, started as soon as it is due.
            self.reap_sync(false)?;
            let now = Instant::now();
            if self.spare_job.is_some() && self.sync_due(now) && self.start_sync()? {
                summary.fsyncs += 1;
            }
            self.retry_after_fault(now)?;

            if self.seg.active_path() != active || now.duration_since(last_retention) >= RETENTION_CHECK {
                active = self.seg.active_path().to_owned();
                last_retention = now;
                let n = self.seg.enforce_retention(self.config.retention_bytes, self.config.retention_hours)?;
                self.publisher.stats.segments_deleted.fetch_add(n, Ordering::Relaxed);
            }

            if got > 0 {
                continue;
            }
            if self.stop.load(Ordering::Acquire) && stop_seen.is_none() {
                stop_seen = Some(now);
            }
            let stopping = stop_seen.is_some_and(|t| now.duration_since(t) >= STOP_GRACE);
            if n_connected == 0 || stopping {
                // Channels are empty (got == 0): wait for the sync in
                // flight, sync what came after it, and exit.
                self.reap_sync(true)?;
                if self.dirty_since.is_some() && self.start_sync()? {
                    summary.fsyncs += 1;
                    self.reap_sync(true)?;
                }
                if self.fault_retry_at.is_some() {
                    // Cut what is not durable off the log before exiting, so
                    // a restart does not take it for written; if that fails
                    // too, recovery cuts a torn tail (and unsynced frames
                    // that did reach the disk are kept: at-least-once).
                    self.fault_retry_at = Some(now);
                    self.retry_after_fault(now)?;
                }
                summary.next_record_id = self.seg.next_record_id();
                return Ok(summary);
            }
            // Idle: hand buffered frames to the kernel (a process crash then
            // loses nothing) and wait for work, a finished sync or the next
            // sync's deadline.
            if let Err(e) = self.seg.flush() {
                self.publisher.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                self.fault(e)?;
            }
            let timeout = match self.sync_deadline() {
                Some(due) if self.spare_job.is_some() => due.saturating_duration_since(now).min(IDLE_TICK),
                _ if self.fault_retry_at.is_some() => FAULT_RETRY.min(IDLE_TICK),
                _ if stop_seen.is_some() => Duration::from_millis(10),
                _ => IDLE_TICK,
            };
            let _ = sel.ready_timeout(timeout);
        }
    }

    fn append(&mut self, w: usize, submitted: Submitted, summary: &mut WriterSummary) -> Result<(), WriterError> {
        let Submitted { batch: mut b, handed_over } = submitted;
        if self.fault_retry_at.is_some() {
            // Submitted before the fault was published: lost with the rest.
            self.publisher.stats.records_lost.fetch_add(b.len() as u64, Ordering::Relaxed);
            self.pending[w] = b.seq;
            self.publisher.publish_lost(w, b.seq);
            b.clear();
            let _ = self.empty_txs[w].try_send(b);
            return Ok(());
        }
        if !b.is_empty() {
            let before = self.seg.appended_bytes();
            let next_id = self.seg.next_record_id();
            if let Err(e) = self.seg.append(&b) {
                let stats = &self.publisher.stats;
                stats.write_errors.fetch_add(1, Ordering::Relaxed);
                if self.seg.next_record_id() == next_id {
                    // Not counted among the appended records `fault` gives up.
                    stats.records_lost.fetch_add(b.len() as u64, Ordering::Relaxed);
                }
                self.pending[w] = b.seq;
                b.clear();
                let _ = self.empty_txs[w].try_send(b);
                return self.fault(e);
            }
            let bytes = self.seg.appended_bytes() - before;
            let recs = b.len() as u64;
            summary.records_written += recs;
            summary.batches_written += 1;
            let stats = &self.publisher.stats;
            stats.records_written.fetch_add(recs, Ordering::Relaxed);
            stats.bytes_written.fetch_add(bytes, Ordering::Relaxed);
            stats.batches_written.fetch_add(1, Ordering::Relaxed);
        }
        // Even an empty batch waits for the next sync: its seq being durable
        // implies every earlier batch of this worker is, and those may still
        // be in a sync in flight.
        self.pending[w] = b.seq;
        if let Some(t) = handed_over {
            self.handed_over.push(t);
        }
        let awaited = handed_over.is_some();
        if self.dirty_since.is_none() || (awaited && self.awaited_since.is_none()) {
            let now = Instant::now();
            self.dirty_since.get_or_insert(now);
            if awaited {
                self.awaited_since = Some(now);
            }
        }
        b.clear();
        let _ = self.empty_txs[w].try_send(b);
        Ok(())
    }
}
