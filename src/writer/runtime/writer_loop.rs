//! The writer thread's loop: drains the worker channels, appends each batch
//! as one frame and decides when a sync starts (leader/follower group commit,
//! see the module above).

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
use super::sync::{DurablePublisher, SyncJob};
use super::{WriterError, WriterSummary};

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
    pub(super) done_rx: Receiver<Result<SyncJob, SegmentError>>,
    /// `None` while a sync is in flight.
    pub(super) spare_job: Option<SyncJob>,
    pub(super) syncer: Option<JoinHandle<CommitReport>>,
    pub(super) stop: Arc<AtomicBool>,
}

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
        self.spare_job = Some(r?);
        Ok(())
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

    /// Hands everything appended so far to the sync thread.
    fn start_sync(&mut self) -> Result<(), WriterError> {
        let Some(mut job) = self.spare_job.take() else {
            return Ok(());
        };
        job.file = Some(self.seg.prepare_sync()?);
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
        tx.send(job).map_err(|_| WriterError::Panicked)
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
            if self.spare_job.is_some() && self.sync_due(now) {
                self.start_sync()?;
                summary.fsyncs += 1;
            }

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
                if self.dirty_since.is_some() {
                    self.start_sync()?;
                    summary.fsyncs += 1;
                    self.reap_sync(true)?;
                }
                summary.next_record_id = self.seg.next_record_id();
                return Ok(summary);
            }
            // Idle: hand buffered frames to the kernel (a process crash then
            // loses nothing) and wait for work, a finished sync or the next
            // sync's deadline.
            self.seg.flush()?;
            let timeout = match self.sync_deadline() {
                Some(due) if self.spare_job.is_some() => due.saturating_duration_since(now).min(IDLE_TICK),
                _ if stop_seen.is_some() => Duration::from_millis(10),
                _ => IDLE_TICK,
            };
            let _ = sel.ready_timeout(timeout);
        }
    }

    fn append(&mut self, w: usize, submitted: Submitted, summary: &mut WriterSummary) -> Result<(), WriterError> {
        let Submitted { batch: mut b, handed_over } = submitted;
        if !b.is_empty() {
            let before = self.seg.appended_bytes();
            self.seg.append(&b)?;
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
