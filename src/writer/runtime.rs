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
//! Group commit: the writer drains every channel, appends each batch as one
//! frame, and fdatasyncs when `fsync_bytes` are unsynced or `fsync_interval_ms`
//! has passed since the first unsynced append, whichever comes first. After
//! each fsync it publishes, per worker, the highest batch sequence number it
//! covers; an `ack = durable` worker holds its response until
//! `durable_seq() >= ticket.seq`.

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
use super::stats::WriterStats;

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
/// number (1, 2, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "an ack=durable response must wait until the ticket is durable"]
pub struct Ticket {
    pub seq: u64,
    pub records: u32,
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
    full_tx: Sender<Batch>,
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

    /// Hands a filled batch to the writer. Never blocks.
    pub fn submit(&mut self, mut batch: Batch) -> Result<Ticket, Backpressure> {
        batch.worker = self.worker;
        batch.seq = self.next_seq;
        let records = batch.records;
        match self.full_tx.try_send(batch) {
            Ok(()) => {
                let t = Ticket { seq: self.next_seq, records };
                self.next_seq += 1;
                Ok(t)
            }
            Err(e) => {
                self.stats.writer_backpressure.fetch_add(1, Ordering::Relaxed);
                let reason = match e {
                    TrySendError::Full(_) => BackpressureReason::ChannelFull,
                    TrySendError::Disconnected(_) => BackpressureReason::WriterStopped,
                };
                Err(Backpressure { batch: e.into_inner(), reason })
            }
        }
    }

    /// The highest batch sequence number of this worker covered by an fsync.
    pub fn durable_seq(&self) -> u64 {
        self.durable[self.worker as usize].0.load(Ordering::Acquire)
    }

    /// Whether the client may be answered for `ticket` under the configured
    /// ack mode (always true for `enqueued`).
    pub fn is_acked(&self, ticket: &Ticket) -> bool {
        self.ack == AckMode::Enqueued || self.durable_seq() >= ticket.seq
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
            .spawn(move || run_syncer(sync_rx, done_tx, syncer_publisher))
            .map_err(WriterError::Spawn)?;
        let lp = WriterLoop {
            seg,
            config: config.clone(),
            full_rxs,
            empty_txs,
            pending: vec![0; n_workers],
            publisher,
            sync_tx: Some(sync_tx),
            done_rx,
            spare_job: Some(SyncJob { file: None, pending: vec![0; n_workers], next_record_id: 0 }),
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
    fn publish(&self, pending: &[u64], next_record_id: u64, fsync_took: Duration) {
        self.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.stats.fsync_ns.fetch_add(fsync_took.as_nanos() as u64, Ordering::Relaxed);
        for (w, &seq) in pending.iter().enumerate() {
            // Monotone: syncs complete in order, one at a time.
            self.durable[w].0.store(seq, Ordering::Release);
        }
        self.durable_record_id.store(next_record_id, Ordering::Release);
    }
}

/// One fsync request: a dup of the active segment's descriptor, the
/// per-worker sequence numbers and the record id it covers. Recycled.
#[derive(Debug)]
struct SyncJob {
    file: Option<File>,
    pending: Vec<u64>,
    next_record_id: u64,
}

/// The sync thread: fdatasyncs while the writer keeps appending (pipelined
/// group commit: the writer never waits for the disk), then publishes.
fn run_syncer(jobs: Receiver<SyncJob>, done: Sender<Result<SyncJob, SegmentError>>, publisher: DurablePublisher) {
    for mut job in jobs {
        let t = Instant::now();
        let result = match job.file.take() {
            Some(f) => f.sync_data(),
            None => Ok(()),
        };
        let reply = match result {
            Ok(()) => {
                publisher.publish(&job.pending, job.next_record_id, t.elapsed());
                Ok(job)
            }
            Err(source) => Err(SegmentError::Io { path: PathBuf::from("<active segment>"), source }),
        };
        if done.send(reply).is_err() {
            return;
        }
    }
}

struct WriterLoop {
    seg: SegmentWriter,
    config: WriterConfig,
    full_rxs: Vec<Receiver<Batch>>,
    empty_txs: Vec<Sender<Batch>>,
    /// Per worker: highest seq appended (published after the next fsync).
    pending: Vec<u64>,
    publisher: DurablePublisher,
    sync_tx: Option<Sender<SyncJob>>,
    done_rx: Receiver<Result<SyncJob, SegmentError>>,
    /// `None` while a sync is in flight.
    spare_job: Option<SyncJob>,
    syncer: Option<JoinHandle<()>>,
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
        if let Some(t) = self.syncer.take() {
            let _ = t.join();
        }
        result
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

    /// Hands everything appended so far to the sync thread.
    fn start_sync(&mut self) -> Result<(), WriterError> {
        let Some(mut job) = self.spare_job.take() else {
            return Ok(());
        };
        job.file = Some(self.seg.prepare_sync()?);
        job.pending.copy_from_slice(&self.pending);
        job.next_record_id = self.seg.next_record_id();
        let tx = self.sync_tx.as_ref().ok_or(WriterError::Panicked)?;
        tx.send(job).map_err(|_| WriterError::Panicked)
    }

    fn run_inner(&mut self) -> Result<WriterSummary, WriterError> {
        let interval = Duration::from_millis(self.config.fsync_interval_ms);
        let rxs = self.full_rxs.clone();
        let done_rx = self.done_rx.clone();
        let mut sel = Select::new();
        for rx in &rxs {
            sel.recv(rx);
        }
        // Wakes the loop when a sync completes.
        sel.recv(&done_rx);
        let mut connected = vec![true; rxs.len()];
        let mut n_connected = rxs.len();
        let mut unsynced_since: Option<Instant> = None;
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
                            self.append(w, b, &mut unsynced_since, &mut summary)?;
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

            self.reap_sync(false)?;
            let now = Instant::now();
            if let Some(since) = unsynced_since {
                let due = self.seg.unsynced_bytes() >= self.config.fsync_bytes || now >= since + interval;
                if due && self.spare_job.is_some() {
                    self.start_sync()?;
                    summary.fsyncs += 1;
                    unsynced_since = None;
                }
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
                // flight, then a final synchronous sync, and exit.
                self.reap_sync(true)?;
                let t = Instant::now();
                self.seg.sync()?;
                summary.fsyncs += 1;
                self.publisher.publish(&self.pending, self.seg.next_record_id(), t.elapsed());
                summary.next_record_id = self.seg.next_record_id();
                return Ok(summary);
            }
            // Idle: hand buffered frames to the kernel (a process crash then
            // loses nothing) and wait for work, a finished sync or the
            // fsync deadline.
            self.seg.flush()?;
            let timeout = match unsynced_since {
                Some(since) if self.spare_job.is_some() => (since + interval).saturating_duration_since(now),
                _ if stop_seen.is_some() => Duration::from_millis(10),
                _ => IDLE_TICK,
            };
            let _ = sel.ready_timeout(timeout);
        }
    }

    fn append(
        &mut self,
        w: usize,
        mut b: Batch,
        unsynced_since: &mut Option<Instant>,
        summary: &mut WriterSummary,
    ) -> Result<(), WriterError> {
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
        unsynced_since.get_or_insert_with(Instant::now);
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
            fsync_interval_ms: 2,
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
