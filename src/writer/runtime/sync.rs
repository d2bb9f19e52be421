//! The sync thread: fdatasync of what the writer loop handed over, then
//! publishing the durable sequence numbers and measuring the commit.

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};

use super::super::segment::SyncPoint;
use super::super::stats::{CommitRecorder, CommitReport, WriterStats};
use super::PaddedU64;

/// Publishes what an fsync covered: per-worker durable batch sequence
/// numbers and the log-wide durable record id; and (writer thread) the
/// per-worker highest sequence number a storage fault kept from becoming
/// durable.
#[derive(Clone, Debug)]
pub(super) struct DurablePublisher {
    pub(super) durable: Arc<[PaddedU64]>,
    pub(super) lost: Arc<[PaddedU64]>,
    pub(super) durable_record_id: Arc<AtomicU64>,
    pub(super) stats: Arc<WriterStats>,
}

impl DurablePublisher {
    fn publish(&self, pending: &[u64], next_record_id: u64) {
        for (w, &seq) in pending.iter().enumerate() {
            // Monotone: syncs complete in order, one at a time.
            self.durable[w].0.store(seq, Ordering::Release);
        }
        self.durable_record_id.store(next_record_id, Ordering::Release);
    }

    /// Batches of worker `w` up to `seq` will never be durable.
    pub(super) fn publish_lost(&self, w: usize, seq: u64) {
        self.lost[w].0.fetch_max(seq, Ordering::Release);
    }
}

/// One fsync request: a dup of the active segment's descriptor, what it
/// covers (per-worker sequence numbers, the record id, the bytes appended
/// since the previous sync started) and when each awaited batch among them
/// was handed over. Recycled, with its vectors.
#[derive(Debug)]
pub(super) struct SyncJob {
    pub(super) file: Option<File>,
    /// Where the segment ended when the sync was prepared.
    pub(super) point: SyncPoint,
    pub(super) pending: Vec<u64>,
    pub(super) next_record_id: u64,
    pub(super) bytes: u64,
    pub(super) handed_over: Vec<Instant>,
}

/// A hold on the sync thread (tests): before each fdatasync it reports on
/// `arrived` and waits for a message on `proceed`; a dropped `proceed`
/// sender lets it run free. An error waiting on `fail` is returned instead
/// of the next fdatasync's result (the fault-injection seam: real fsync
/// errors need a failing disk).
#[derive(Debug)]
pub(super) struct SyncGate {
    pub(super) arrived: Sender<()>,
    pub(super) proceed: Receiver<()>,
    pub(super) fail: Receiver<io::Error>,
}

/// A finished sync: the job back, and what fdatasync said. An error is
/// never retried on the same descriptor (after a failed fsync the kernel
/// may have dropped the dirty pages; a second one could "succeed" for data
/// that is not on disk): the writer abandons the segment.
pub(super) type SyncDone = (SyncJob, io::Result<()>);

/// The sync thread: fdatasyncs while the writer keeps appending (pipelined
/// group commit: the writer never waits for the disk), publishes, and
/// measures; returns what it measured when the writer hangs up.
pub(super) fn run_syncer(
    jobs: Receiver<SyncJob>,
    done: Sender<SyncDone>,
    publisher: DurablePublisher,
    gate: Option<SyncGate>,
) -> CommitReport {
    let mut recorder = CommitRecorder::new(Arc::clone(&publisher.stats));
    for mut job in jobs {
        if let Some(gate) = &gate {
            let _ = gate.arrived.try_send(());
            let _ = gate.proceed.recv();
        }
        let injected = gate.as_ref().and_then(|g| g.fail.try_recv().ok());
        let t = Instant::now();
        let result = match (job.file.take(), injected) {
            (_, Some(e)) => Err(e),
            (Some(f), None) => f.sync_data(),
            (None, None) => Ok(()),
        };
        if result.is_ok() {
            publisher.publish(&job.pending, job.next_record_id);
            let published = Instant::now();
            recorder.synced(published - t, job.bytes, &job.handed_over, published);
        }
        if done.send((job, result)).is_err() {
            break;
        }
    }
    recorder.report()
}
