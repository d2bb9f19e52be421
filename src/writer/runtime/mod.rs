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
//!
//! Files: `handle` the worker side (submit, tickets, backpressure);
//! `writer_loop` the writer thread (drain, append, decide when to sync);
//! `sync` the sync thread (fdatasync, publish durable sequence numbers,
//! measure).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::bounded;
use thiserror::Error;

use super::codec::Batch;
use super::config::{ConfigError, WriterConfig};
use super::segment::{Recovery, SegmentError, SegmentWriter};
use super::stats::{CommitReport, WriterStats};

mod handle;
mod sync;
#[cfg(test)]
mod tests;
mod writer_loop;

use handle::PaddedU64;
pub use handle::{Backpressure, BackpressureReason, BatchPoolCounters, Ticket, WriterHandle};
use sync::{run_syncer, DurablePublisher, SyncDone, SyncGate, SyncJob};
use writer_loop::WriterLoop;

/// Why the writer stopped acknowledging (`WriterStats::storage_fault`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum StorageFault {
    /// ENOSPC / EDQUOT: answer 507 until space is freed.
    NoSpace = 1,
    /// Any other write or fsync error: 503.
    Io = 2,
}

impl StorageFault {
    pub fn of(e: &std::io::Error) -> StorageFault {
        match e.raw_os_error() {
            Some(libc::ENOSPC | libc::EDQUOT) => StorageFault::NoSpace,
            _ => StorageFault::Io,
        }
    }

    /// The `storage_fault` gauge's value back (0: none).
    pub fn from_gauge(v: u64) -> Option<StorageFault> {
        match v {
            0 => None,
            1 => Some(StorageFault::NoSpace),
            _ => Some(StorageFault::Io),
        }
    }
}

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
        let lost: Arc<[PaddedU64]> = (0..n_workers).map(|_| PaddedU64::default()).collect();
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
                lost: Arc::clone(&lost),
                stats: Arc::clone(&stats),
            });
            full_rxs.push(full_rx);
            empty_txs.push(empty_tx);
        }

        let publisher = DurablePublisher {
            durable,
            lost,
            durable_record_id: Arc::clone(&durable_record_id),
            stats: Arc::clone(&stats),
        };
        let (sync_tx, sync_rx) = bounded::<SyncJob>(1);
        let (done_tx, done_rx) = bounded::<SyncDone>(1);
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
                point: Default::default(),
                pending: vec![0; n_workers],
                next_record_id: 0,
                bytes: 0,
                handed_over: Vec::with_capacity(waiters),
            }),
            syncer: Some(syncer),
            stop: Arc::clone(&stop),
            fault_retry_at: None,
        };
        let thread =
            std::thread::Builder::new().name("ms-writer".into()).spawn(move || lp.run()).map_err(WriterError::Spawn)?;
        let rt =
            WriterRuntime { thread: Some(thread), stop, stats, recovery, durable_record_id, data_dir: config.data_dir };
        Ok((rt, handles))
    }
}
