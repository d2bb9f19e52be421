//! The writer thread and the worker-side hand-off: [`Writer::start`] recovers
//! the log, spawns the writer loop and returns one [`WriterHandle`] per worker.
//!
//! Hand-off: each worker has a bounded channel of full batches to the writer
//! and a pool channel of empty batches back from it. Batches are allocated
//! once at start (`channel_batches + 2` per worker) and recycled forever, so a
//! worker does one channel operation per batch and no allocation. A full
//! channel or an empty pool is backpressure the worker sees immediately
//! (`submit` returns the batch, `take_batch` returns `None`); nothing is ever
//! dropped silently and no call blocks.
//!
//! Group commit (leader/follower, as PostgreSQL with `commit_delay = 0` and
//! RocksDB's write group): the writer drains every channel and appends each
//! batch as one frame. A sync starts as soon as an appended batch has a
//! durable waiter ([`Batch::is_awaited`]) and no sync is in flight; batches
//! appended while it runs ride the next one, which starts the moment the
//! first completes. So a durable ack costs one or two fdatasyncs, never a
//! timer, and the number of syncs adapts to the disk: the slower it is, the
//! more batches each sync covers. `commit_delay_us` (default 0) optionally
//! waits that long after the first awaited append to gather more.
//! Un-awaited batches (`ack = enqueued`, UDP) are synced at the latest
//! `sync_interval_ms` after the first of them was appended (the bound on what
//! a crash can lose of them), or once `fsync_bytes` are unsynced, or by a
//! sync some waiter started. The fdatasync runs on a second thread, so the
//! writer keeps appending meanwhile. After each sync the writer publishes,
//! per worker, the highest batch sequence number it covers; a client waiting
//! for a batch is answered once `durable_seq() >= ticket.seq`.

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Select, Sender, TryRecvError, TrySendError};
use thiserror::Error;

use super::codec::Batch;
use super::config::{AckMode, ConfigError, WriterConfig};
use super::segment::{Recovery, SegmentError, SegmentWriter};
use super::stats::{CommitRecorder, CommitReport, WriterStats};

#[derive(Debug, Error)]
pub enum WriterError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Segment(#[from] SegmentError),
    #[error("cannot spawn the writer thread: {0}")]
    Spawn(std::io::Error),
    #[error("the writer thread panicked")]
    Panicked,
}

/// An atomic on its own cache line: each worker polls only its own.
#[derive(Debug, Default)]
#[repr(align(64))]
struct PaddedU64(AtomicU64);

/// Proof of a successful submit; `seq` is this worker's batch sequence
/// number (1, 2, ...); `awaited`: whether the batch was submitted as one a
/// client waits for (then acked only once durable).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "an ack=durable response must wait until the ticket is durable"]
pub struct Ticket {
    pub seq: u64,
    pub records: u32,
    pub awaited: bool,
}

/// Why a submit was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackpressureReason {
    /// The worker's channel is full: the writer is behind.
    ChannelFull,
    /// The writer thread has stopped (shutdown or I/O error).
    WriterStopped,
}

/// A refused submit: the caller gets its batch back (answer 503 / count a
/// UDP drop, and `recycle` or retry it).
#[derive(Debug)]
pub struct Backpressure {
    pub batch: Batch,
    pub reason: BackpressureReason,
}

/// A handle's batch pool: `allocated == in_use + free` (batches are never
/// created or freed after start). `in_use` counts batches the worker holds
/// and batches on their way through the writer; it returns to 0 once the
/// worker holds none and the writer has caught up. A batch that never came
/// back would keep it above 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchPoolCounters {
    pub in_use: u64,
    pub allocated: u64,
    pub free: u64,
    /// Most batches out of the pool at once (seen at `take_batch`).
    pub high_water: u64,
}

/// One worker's end of the hand-off. `Send`, not shared: one per worker.
#[derive(Debug)]
pub struct WriterHandle {
    worker: u32,
    ack: AckMode,
    full_tx: Sender<Submitted>,
    empty_rx: Receiver<Batch>,
    empty_tx: Sender<Batch>,
    /// Batches allocated for this handle at start.
    pool_size: u64,
    batches_high_water: u64,
    next_seq: u64,
    durable: Arc<[PaddedU64]>,
    stats: Arc<WriterStats>,
}

impl WriterHandle {
    /// An empty batch from this worker's pool, or `None` when all of them
    /// are in flight (backpressure).
    pub fn take_batch(&mut self) -> Option<Batch> {
        match self.empty_rx.try_recv() {
            Ok(b) => {
                let in_use = self.pool_size.saturating_sub(self.empty_rx.len() as u64);
                self.batches_high_water = self.batches_high_water.max(in_use);
                Some(b)
            }
            Err(_) => {
                self.stats.writer_backpressure.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Gives an unused batch back to the pool (e.g. after a refused submit
    /// whose records the client will resend).
    pub fn recycle(&mut self, mut batch: Batch) {
        batch.clear();
        // The pool holds every batch of this worker, so this cannot be full.
        let _ = self.empty_tx.try_send(batch);
    }

    /// Hands a filled batch to the writer. Never blocks. A batch whose
    /// caller did not [`set_awaited`](Batch::set_awaited) is awaited when the
    /// handle's ack mode is `durable`.
    pub fn submit(&mut self, mut batch: Batch) -> Result<Ticket, Backpressure> {
        batch.worker = self.worker;
        batch.seq = self.next_seq;
        let awaited = *batch.awaited.get_or_insert(self.ack == AckMode::Durable);
        let records = batch.records;
        // One clock read per awaited batch (not per request or record): the
        // start of its ack latency.
        let handed_over = awaited.then(Instant::now);
        match self.full_tx.try_send(Submitted { batch, handed_over }) {
            Ok(()) => {
                let t = Ticket { seq: self.next_seq, records, awaited };
                self.next_seq += 1;
                Ok(t)
            }
            Err(e) => {
                self.stats.writer_backpressure.fetch_add(1, Ordering::Relaxed);
                let reason = match e {
                    TrySendError::Full(_) => BackpressureReason::ChannelFull,
                    TrySendError::Disconnected(_) => BackpressureReason::WriterStopped,
                };
                Err(Backpressure { batch: e.into_inner().batch, reason })
            }
        }
    }

    /// The highest batch sequence number of this worker covered by an fsync.
    pub fn durable_seq(&self) -> u64 {
        self.durable[self.worker as usize].0.load(Ordering::Acquire)
    }

    /// Whether the client may be answered for `ticket`: at once unless it
    /// was submitted awaited (the handle's `ack = durable`, or the batch's own
    /// choice), then once it is durable.
    pub fn is_acked(&self, ticket: &Ticket) -> bool {
        !ticket.awaited || self.durable_seq() >= ticket.seq
    }

    /// This handle's batch pool right now.
    pub fn batch_pool(&self) -> BatchPoolCounters {
        let free = (self.empty_rx.len() as u64).min(self.pool_size);
        BatchPoolCounters {
            in_use: self.pool_size - free,
            allocated: self.pool_size,
            free,
            high_water: self.batches_high_water,
        }
    }

    pub fn ack_mode(&self) -> AckMode {
        self.ack
    }

    /// This handle with another ack mode, e.g. `enqueued` for a UDP
    /// ingest on an `ack = durable` server: nobody waits for a datagram's
    /// durability, so its batches need not start a sync of their own.
    pub fn with_ack(mut self, ack: AckMode) -> Self {
        self.ack = ack;
        self
    }

    pub fn worker(&self) -> u32 {
        self.worker
    }
}

/// What the writer did over its lifetime, returned by `shutdown`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriterSummary {
    pub records_written: u64,
    pub batches_written: u64,
    pub fsyncs: u64,
    /// The id the next record would get (all below it are durable).
    pub next_record_id: u64,
    /// Ack and fdatasync latency, bytes and waiters per sync.
    pub commit: CommitReport,
}

/// A batch on its way to the writer; `handed_over`: when an awaited batch
/// was submitted (for its ack latency).
#[derive(Debug)]
struct Submitted {
    batch: Batch,
    handed_over: Option<Instant>,
}

/// The running writer thread.
#[derive(Debug)]
pub struct WriterRuntime {
    thread: Option<JoinHandle<Result<WriterSummary, WriterError>>>,
    stop: Arc<AtomicBool>,
    stats: Arc<WriterStats>,
    recovery: Recovery,
    durable_record_id: Arc<AtomicU64>,
    data_dir: PathBuf,
}

impl WriterRuntime {
    pub fn stats(&self) -> &Arc<WriterStats> {
        &self.stats
    }

    /// What recovery found at start.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// One past the last durable record id (the shipper's upper bound).
    pub fn durable_record_id(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.durable_record_id)
    }

    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// Stops the writer: it drains every channel, fsyncs, publishes and
    /// exits. For a lossless stop, drop (or stop using) the handles first;
    /// the writer waits up to 200 ms after the stop request for handles
    /// still submitting, after which submits fail with `WriterStopped`.
    pub fn shutdown(mut self) -> Result<WriterSummary, WriterError> {
        self.stop.store(true, Ordering::Release);
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| WriterError::Panicked)?,
            None => Err(WriterError::Panicked),
        }
    }
}

impl Drop for WriterRuntime {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub struct Writer;

impl Writer {
    /// Recovers `config.data_dir`, starts the writer thread and returns one
    /// handle per worker.
    pub fn start(config: WriterConfig, n_workers: usize) -> Result<(WriterRuntime, Vec<WriterHandle>), WriterError> {
        Self::start_gated(config, n_workers, None)
    }

    /// [`start`](Self::start) whose sync thread, with a `gate`, stops before
    /// each fdatasync: a test's way to make a sync last as long as it wants.
    fn start_gated(
        config: WriterConfig,
        n_workers: usize,
        gate: Option<SyncGate>,
    ) -> Result<(WriterRuntime, Vec<WriterHandle>), WriterError> {
        config.validate()?;
        let (seg, recovery) = SegmentWriter::open(&config.data_dir, config.segment_bytes)?;
        let stats = Arc::new(WriterStats::default());
        stats.recovery_truncated_bytes.store(recovery.truncated_bytes, Ordering::Relaxed);
        let durable: Arc<[PaddedU64]> = (0..n_workers).map(|_| PaddedU64::default()).collect();
        let durable_record_id = Arc::new(AtomicU64::new(recovery.next_record_id));
        let stop = Arc::new(AtomicBool::new(false));

        let pool_size = config.channel_batches + 2;
        let mut handles = Vec::with_capacity(n_workers);
        let mut full_rxs = Vec::with_capacity(n_workers);
        let mut empty_txs = Vec::with_capacity(n_workers);
        for w in 0..n_workers {
            let (full_tx, full_rx) = bounded(config.channel_batches);
            let (empty_tx, empty_rx) = bounded(pool_size);
            for _ in 0..pool_size {
                let _ = empty_tx.try_send(Batch::with_budget(config.batch_bytes, config.batch_records));
            }
            handles.push(WriterHandle {
                worker: w as u32,
                ack: config.ack,
                full_tx,
                empty_rx,
                empty_tx: empty_tx.clone(),
                pool_size: pool_size as u64,
                batches_high_water: 0,
                next_seq: 1,
                durable: Arc::clone(&durable),
                stats: Arc::clone(&stats),
            });
            full_rxs.push(full_rx);
            empty_txs.push(empty_tx);
        }

        let publisher =
            DurablePublisher { durable, durable_record_id: Arc::clone(&durable_record_id), stats: Arc::clone(&stats) };
        let (sync_tx, sync_rx) = bounded::<SyncJob>(1);
        let (done_tx, done_rx) = bounded::<Result<SyncJob, SegmentError>>(1);
        let syncer_publisher = publisher.clone();
        let syncer = std::thread::Builder::new()
            .name("ms-writer-sync".into())
            .spawn(move || run_syncer(sync_rx, done_tx, syncer_publisher, gate))
            .map_err(WriterError::Spawn)?;
        // Every batch of every worker could be awaited by one sync: the
        // hand-over times then never reallocate in practice.
        let waiters = n_workers * pool_size;
        let lp = WriterLoop {
            seg,
            commit_delay: Duration::from_micros(config.commit_delay_us),
            sync_interval: Duration::from_millis(config.sync_interval_ms),
            config: config.clone(),
            full_rxs,
            empty_txs,
            pending: vec![0; n_workers],
            dirty_since: None,
            awaited_since: None,
            handed_over: Vec::with_capacity(waiters),
            sync_started_at_bytes: 0,
            publisher,
            sync_tx: Some(sync_tx),
            done_rx,
            spare_job: Some(SyncJob {
                file: None,
                pending: vec![0; n_workers],
                next_record_id: 0,
                bytes: 0,
                handed_over: Vec::with_capacity(waiters),
            }),
            syncer: Some(syncer),
            stop: Arc::clone(&stop),
        };
        let thread =
            std::thread::Builder::new().name("ms-writer".into()).spawn(move || lp.run()).map_err(WriterError::Spawn)?;
        let rt =
            WriterRuntime { thread: Some(thread), stop, stats, recovery, durable_record_id, data_dir: config.data_dir };
        Ok((rt, handles))
    }
}

/// Publishes what an fsync covered: per-worker durable batch sequence
/// numbers and the log-wide durable record id.
#[derive(Clone, Debug)]
struct DurablePublisher {
    durable: Arc<[PaddedU64]>,
    durable_record_id: Arc<AtomicU64>,
    stats: Arc<WriterStats>,
}

impl DurablePublisher {
    fn publish(&self, pending: &[u64], next_record_id: u64) {
        for (w, &seq) in pending.iter().enumerate() {
            // Monotone: syncs complete in order, one at a time.
            self.durable[w].0.store(seq, Ordering::Release);
        }
        self.durable_record_id.store(next_record_id, Ordering::Release);
    }
}

/// One fsync request: a dup of the active segment's descriptor, what it
/// covers (per-worker sequence numbers, the record id, the bytes appended
/// since the previous sync started) and when each awaited batch among them
/// was handed over. Recycled, with its vectors.
#[derive(Debug)]
struct SyncJob {
    file: Option<File>,
    pending: Vec<u64>,
    next_record_id: u64,
    bytes: u64,
    handed_over: Vec<Instant>,
}

/// A hold on the sync thread (tests): before each fdatasync it reports on
/// `arrived` and waits for a message on `proceed`; a dropped `proceed`
/// sender lets it run free.
#[derive(Debug)]
struct SyncGate {
    arrived: Sender<()>,
    proceed: Receiver<()>,
}

/// The sync thread: fdatasyncs while the writer keeps appending (pipelined
/// group commit: the writer never waits for the disk), publishes, and
/// measures; returns what it measured when the writer hangs up.
fn run_syncer(
    jobs: Receiver<SyncJob>,
    done: Sender<Result<SyncJob, SegmentError>>,
    publisher: DurablePublisher,
    gate: Option<SyncGate>,
) -> CommitReport {
    let mut recorder = CommitRecorder::new(Arc::clone(&publisher.stats));
    for mut job in jobs {
        if let Some(gate) = &gate {
            let _ = gate.arrived.try_send(());
            let _ = gate.proceed.recv();
        }
        let t = Instant::now();
        let result = match job.file.take() {
            Some(f) => f.sync_data(),
            None => Ok(()),
        };
        let reply = match result {
            Ok(()) => {
                publisher.publish(&job.pending, job.next_record_id);
                let published = Instant::now();
                recorder.synced(published - t, job.bytes, &job.handed_over, published);
                Ok(job)
            }
            Err(source) => Err(SegmentError::Io { path: PathBuf::from("<active segment>"), source }),
        };
        if done.send(reply).is_err() {
            break;
        }
    }
    recorder.report()
}

struct WriterLoop {
    seg: SegmentWriter,
    config: WriterConfig,
    commit_delay: Duration,
    sync_interval: Duration,
    full_rxs: Vec<Receiver<Submitted>>,
    empty_txs: Vec<Sender<Batch>>,
    /// Per worker: highest seq appended (published after the next fsync).
    pending: Vec<u64>,
    /// Since the last sync started: the first append, the first awaited
    /// append, and when each awaited batch was handed over.
    dirty_since: Option<Instant>,
    awaited_since: Option<Instant>,
    handed_over: Vec<Instant>,
    /// `seg.appended_bytes()` when the last sync started.
    sync_started_at_bytes: u64,
    publisher: DurablePublisher,
    sync_tx: Option<Sender<SyncJob>>,
    done_rx: Receiver<Result<SyncJob, SegmentError>>,
    /// `None` while a sync is in flight.
    spare_job: Option<SyncJob>,
    syncer: Option<JoinHandle<CommitReport>>,
    stop: Arc<AtomicBool>,
}

/// How long the writer waits for still-connected handles after a stop request.
const STOP_GRACE: Duration = Duration::from_millis(200);
/// Idle wake-up to notice a stop request and age-based retention.
const IDLE_TICK: Duration = Duration::from_millis(50);
const RETENTION_CHECK: Duration = Duration::from_secs(60);

impl WriterLoop {
    fn run(mut self) -> Result<WriterSummary, WriterError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::record::{Field, FieldValue, Record, RecordSink};
    use crate::writer::segment::{verify_log, LogTail};

    fn rec(i: i64) -> Record {
        Record {
            measurement: "m".into(),
            tags: vec![],
            fields: vec![Field { key: "i".into(), value: FieldValue::Int(i) }],
            timestamp_ns: i,
        }
    }

    fn cfg(dir: &std::path::Path, ack: AckMode) -> WriterConfig {
        WriterConfig {
            data_dir: dir.to_owned(),
            ack,
            sync_interval_ms: 2,
            channel_batches: 4,
            segment_bytes: 8192,
            retention_bytes: 0,
            ..Default::default()
        }
    }

    #[test]
    fn two_workers_all_records_durable_in_order_per_worker() {
        let dir = tempfile::tempdir().unwrap();
        let (rt, handles) = Writer::start(cfg(dir.path(), AckMode::Durable), 2).unwrap();
        let threads: Vec<_> = handles
            .into_iter()
            .map(|mut h| {
                std::thread::spawn(move || {
                    let mut tickets = Vec::new();
                    let mut i = 0i64;
                    while i < 1000 {
                        let Some(mut b) = h.take_batch() else {
                            std::thread::yield_now();
                            continue;
                        };
                        b.set_client(if h.worker() == 0 { "a" } else { "b" });
                        for _ in 0..10 {
                            b.push(&rec(i).as_ref()).unwrap();
                            i += 1;
                        }
                        loop {
                            match h.submit(b) {
                                Ok(t) => {
                                    tickets.push(t);
                                    break;
                                }
                                Err(bp) => {
                                    assert_eq!(bp.reason, BackpressureReason::ChannelFull);
                                    b = bp.batch;
                                    std::thread::yield_now();
                                }
                            }
                        }
                    }
                    let last = *tickets.last().unwrap();
                    let t0 = Instant::now();
                    while !h.is_acked(&last) {
                        assert!(t0.elapsed() < Duration::from_secs(5), "never became durable");
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    assert_eq!(last.seq, 100);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let summary = rt.shutdown().unwrap();
        assert_eq!(summary.records_written, 2000);
        assert_eq!(summary.next_record_id, 2001);
        let v = verify_log(dir.path()).unwrap();
        assert_eq!((v.records, v.corrupt), (2000, 0));
        assert!(v.segments > 1, "rotation expected");
        let mut tail = LogTail::new(dir.path(), 1);
        let mut per_client: std::collections::HashMap<String, Vec<i64>> = Default::default();
        while let Ok(f) = tail.poll(u64::MAX).unwrap() {
            for r in f.records {
                per_client.entry(f.client.clone()).or_default().push(r.timestamp_ns);
            }
        }
        for c in ["a", "b"] {
            assert_eq!(per_client[c], (0..1000).collect::<Vec<_>>());
        }
    }

    /// Submits one batch of one record.
    fn one_batch(h: &mut WriterHandle, i: i64) -> Ticket {
        let mut b = h.take_batch().expect("a free batch");
        b.push(&rec(i).as_ref()).unwrap();
        h.submit(b).expect("room in the channel")
    }

    /// Waits until `t` may be acknowledged; returns how long that took.
    fn wait_acked(h: &WriterHandle, t: &Ticket) -> Duration {
        let t0 = Instant::now();
        while !h.is_acked(t) {
            assert!(t0.elapsed() < Duration::from_secs(10), "{t:?} never acknowledged");
            std::thread::sleep(Duration::from_micros(100));
        }
        t0.elapsed()
    }

    #[test]
    fn a_durable_batch_is_synced_at_once_not_on_a_timer() {
        let dir = tempfile::tempdir().unwrap();
        let config = WriterConfig { sync_interval_ms: 60_000, commit_delay_us: 0, ..cfg(dir.path(), AckMode::Durable) };
        let (rt, mut hs) = Writer::start(config, 1).unwrap();
        let stats = Arc::clone(rt.stats());
        let h = &mut hs[0];
        // One client, one request at a time: each ack waits for one
        // fdatasync (ms at worst), not for the 60 s interval.
        let t0 = Instant::now();
        for i in 0..20 {
            let t = one_batch(h, i);
            assert!(t.awaited);
            wait_acked(h, &t);
        }
        let took = t0.elapsed();
        assert!(took < Duration::from_secs(5), "20 sequential durable acks took {took:?}");
        let s = stats.snapshot();
        assert_eq!((s.fsyncs, s.sync_waiters), (20, 20), "one sync per request: nothing else waited");
        assert_eq!((stats.ack_latency.count(), stats.fsync_latency.count()), (20, 20));
        drop(hs);
        let summary = rt.shutdown().unwrap();
        // Nothing was left to sync at shutdown.
        assert_eq!(summary.fsyncs, 20);
        assert_eq!(summary.commit.ack_latency_us.count, 20);
        assert_eq!(summary.commit.waiters_per_sync.max, 1);
        assert!(summary.commit.ack_latency_us.max >= summary.commit.fsync_latency_us.max / 2, "{:?}", summary.commit);
    }

    #[test]
    fn batches_appended_during_a_sync_ride_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let config = WriterConfig { sync_interval_ms: 60_000, ..cfg(dir.path(), AckMode::Durable) };
        let (arrived_tx, arrived) = bounded(16);
        let (proceed, proceed_rx) = bounded(16);
        let gate = SyncGate { arrived: arrived_tx, proceed: proceed_rx };
        let (rt, mut hs) = Writer::start_gated(config, 1, Some(gate)).unwrap();
        let stats = Arc::clone(rt.stats());
        let h = &mut hs[0];
        let first = one_batch(h, 0);
        let at_gate = || arrived.recv_timeout(Duration::from_secs(10)).expect("a sync started");
        at_gate();
        // The first sync is in flight (held at the gate): these wait for it.
        let rest: Vec<Ticket> = (1..4).map(|i| one_batch(h, i)).collect();
        let t0 = Instant::now();
        while stats.batches_written.load(Ordering::Relaxed) < 4 {
            assert!(t0.elapsed() < Duration::from_secs(10), "writer stopped appending during a sync");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(h.durable_seq(), 0);
        proceed.send(()).unwrap();
        // The first sync published only its own batch; the next one, which
        // covers the other three, started the moment it completed.
        at_gate();
        assert_eq!(h.durable_seq(), first.seq);
        assert_eq!(stats.fsyncs.load(Ordering::Relaxed), 1);
        proceed.send(()).unwrap();
        wait_acked(h, rest.last().unwrap());
        assert_eq!(h.durable_seq(), 4);
        let s = stats.snapshot();
        assert_eq!((s.fsyncs, s.sync_waiters), (2, 4));
        drop((proceed, hs));
        let summary = rt.shutdown().unwrap();
        assert_eq!(summary.fsyncs, 2);
        assert_eq!((summary.commit.waiters_per_sync.count, summary.commit.waiters_per_sync.max), (2, 3));
        assert_eq!(verify_log(dir.path()).unwrap().records, 4);
    }

    #[test]
    fn enqueued_batches_wait_for_the_sync_interval_old_key_included() {
        let dir = tempfile::tempdir().unwrap();
        // The deprecated key still works: read as sync_interval_ms.
        let toml = format!("data_dir = {:?}\nack = \"enqueued\"\nfsync_interval_ms = 300\n", dir.path());
        let config: WriterConfig = toml::from_str(&toml).unwrap();
        assert_eq!(config.sync_interval_ms, 300);
        let (rt, mut hs) = Writer::start(config, 1).unwrap();
        let stats = Arc::clone(rt.stats());
        let h = &mut hs[0];
        let t0 = Instant::now();
        let t = one_batch(h, 0);
        assert!(!t.awaited && h.is_acked(&t), "enqueued: acknowledged at once");
        while h.durable_seq() < t.seq {
            assert!(t0.elapsed() < Duration::from_secs(10), "never synced");
            std::thread::sleep(Duration::from_millis(1));
        }
        let waited = t0.elapsed();
        assert!(waited >= Duration::from_millis(300), "nobody waited, yet it synced after {waited:?}");
        let s = stats.snapshot();
        assert_eq!((s.fsyncs, s.sync_waiters, stats.ack_latency.count()), (1, 0, 0));
        drop(hs);
        rt.shutdown().unwrap();
    }

    #[test]
    fn unsynced_bytes_start_a_sync_without_a_waiter() {
        let dir = tempfile::tempdir().unwrap();
        let config = WriterConfig { sync_interval_ms: 60_000, fsync_bytes: 1, ..cfg(dir.path(), AckMode::Enqueued) };
        let (rt, mut hs) = Writer::start(config, 1).unwrap();
        let h = &mut hs[0];
        let t = one_batch(h, 0);
        let t0 = Instant::now();
        while h.durable_seq() < t.seq {
            assert!(t0.elapsed() < Duration::from_secs(10), "fsync_bytes did not start a sync");
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(hs);
        rt.shutdown().unwrap();
    }

    #[test]
    fn commit_delay_holds_the_first_awaited_sync_to_gather_more() {
        let dir = tempfile::tempdir().unwrap();
        let config =
            WriterConfig { sync_interval_ms: 60_000, commit_delay_us: 100_000, ..cfg(dir.path(), AckMode::Durable) };
        let (rt, mut hs) = Writer::start(config, 1).unwrap();
        let stats = Arc::clone(rt.stats());
        let h = &mut hs[0];
        let t0 = Instant::now();
        let tickets: Vec<Ticket> = (0..3).map(|i| one_batch(h, i)).collect();
        wait_acked(h, &tickets[2]);
        let waited = t0.elapsed();
        assert!(waited >= Duration::from_millis(100), "synced after {waited:?}, before the delay");
        assert_eq!(stats.snapshot().fsyncs, 1, "one sync for the three batches of the delay");
        drop(hs);
        rt.shutdown().unwrap();
    }

    #[test]
    fn the_batch_and_the_handle_choose_whether_a_client_waits() {
        let dir = tempfile::tempdir().unwrap();
        let config = WriterConfig { sync_interval_ms: 60_000, ..cfg(dir.path(), AckMode::Durable) };
        let (rt, hs) = Writer::start(config, 2).unwrap();
        let stats = Arc::clone(rt.stats());
        let mut hs = hs.into_iter();
        let (mut http, mut udp) = (hs.next().unwrap(), hs.next().unwrap().with_ack(AckMode::Enqueued));
        // A UDP-style handle on a durable writer: nobody waits, no sync.
        let t = one_batch(&mut udp, 0);
        assert!(!t.awaited && udp.is_acked(&t));
        // A batch that opts out on a durable handle (item 3's `no_sync`).
        let mut b = http.take_batch().unwrap();
        b.push(&rec(1).as_ref()).unwrap();
        b.set_awaited(false);
        let t = http.submit(b).unwrap();
        assert!(!t.awaited && http.is_acked(&t));
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!((stats.snapshot().fsyncs, http.durable_seq(), udp.durable_seq()), (0, 0, 0));
        // An awaited batch syncs at once, and the earlier ones ride along.
        let mut b = udp.take_batch().unwrap();
        b.push(&rec(2).as_ref()).unwrap();
        b.set_awaited(true);
        assert!(b.is_awaited());
        let t = udp.submit(b).unwrap();
        assert!(t.awaited);
        wait_acked(&udp, &t);
        assert_eq!((http.durable_seq(), udp.durable_seq()), (1, 2));
        assert_eq!(stats.snapshot().sync_waiters, 1);
        // A cleared (recycled) batch forgets its choice.
        let mut b = http.take_batch().unwrap();
        b.set_awaited(true);
        b.clear();
        assert!(!b.is_awaited());
        http.recycle(b);
        drop((http, udp));
        rt.shutdown().unwrap();
    }

    #[test]
    fn log_tail_follows_a_growing_rotating_log_up_to_the_durable_bound() {
        let dir = tempfile::tempdir().unwrap();
        let (rt, mut hs) = Writer::start(cfg(dir.path(), AckMode::Durable), 1).unwrap();
        let durable = rt.durable_record_id();
        let mut h = hs.pop().unwrap();
        let producer = std::thread::spawn(move || {
            let mut i = 0i64;
            while i < 3000 {
                let Some(mut b) = h.take_batch() else {
                    std::thread::yield_now();
                    continue;
                };
                for _ in 0..30 {
                    b.push(&rec(i).as_ref()).unwrap();
                    i += 1;
                }
                while let Err(bp) = h.submit(b) {
                    b = bp.batch;
                    std::thread::yield_now();
                }
            }
        });
        let mut tail = LogTail::new(dir.path(), 1);
        let mut seen = Vec::new();
        let t0 = Instant::now();
        while seen.len() < 3000 {
            assert!(t0.elapsed() < Duration::from_secs(10), "tail stuck at {}", seen.len());
            let limit = durable.load(Ordering::Acquire);
            match tail.poll(limit).unwrap() {
                Ok(f) => {
                    assert!(f.first_record_id + f.records.len() as u64 <= limit, "read past the durable bound");
                    seen.extend(f.records.into_iter().map(|r| r.timestamp_ns));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        producer.join().unwrap();
        rt.shutdown().unwrap();
        assert_eq!(seen, (0..3000).collect::<Vec<_>>());
        assert!(crate::writer::segment::list_segments(dir.path()).unwrap().len() > 3);
    }

    #[test]
    fn full_channel_is_visible_backpressure_and_restart_continues_ids() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (rt, mut hs) = Writer::start(cfg(dir.path(), AckMode::Enqueued), 1).unwrap();
            let h = &mut hs[0];
            let mut b = h.take_batch().unwrap();
            b.push(&rec(1).as_ref()).unwrap();
            let t = h.submit(b).unwrap();
            assert!(h.is_acked(&t));
            drop(hs);
            assert_eq!(rt.shutdown().unwrap().next_record_id, 2);
        }
        let (rt, mut hs) = Writer::start(cfg(dir.path(), AckMode::Enqueued), 1).unwrap();
        assert_eq!(rt.recovery().next_record_id, 2);
        // After the writer stopped, submits fail visibly.
        let b = hs[0].take_batch().unwrap();
        let rt_summary = rt.shutdown().unwrap();
        assert_eq!(rt_summary.records_written, 0);
        let err = hs[0].submit(b).unwrap_err();
        assert_eq!(err.reason, BackpressureReason::WriterStopped);
    }
}
