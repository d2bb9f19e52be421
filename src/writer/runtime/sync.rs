//! The sync thread: fdatasync of what the writer loop handed over, then
//! publishing the durable sequence numbers and measuring the commit.

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};

use super::super::segment::SegmentError;
use super::super::stats::{CommitRecorder, CommitReport, WriterStats};
use super::PaddedU64;

/// Publishes what an fsync covered: per-worker durable batch sequence
/// numbers and the log-wide durable record id.
#[derive(Clone, Debug)]
pub(super) struct DurablePublisher {
    pub(super) durable: Arc<[PaddedU64]>,
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
}

/// One fsync request: a dup of the active segment's descriptor, what it
/// covers (per-worker sequence numbers, the record id, the bytes appended
/// since the previous sync started) and when each awaited batch among them
/// was handed over. Recycled, with its vectors.
#[derive(Debug)]
pub(super) struct SyncJob {
    pub(super) file: Option<File>,
    pub(super) pending: Vec<u64>,
    pub(super) next_record_id: u64,
    pub(super) bytes: u64,
    pub(super) handed_over: Vec<Instant>,
}

/// A hold on the sync thread (tests): before each fdatasync it reports on
/// `arrived` and waits for a message on `proceed`; a dropped `proceed`
/// sender lets it run free.
#[derive(Debug)]
pub(super) struct SyncGate {
    pub(super) arrived: Sender<()>,
    pub(super) proceed: Receiver<()>,
}

/// The sync thread: fdatasyncs while the writer keeps appending (pipelined
/// group commit: the writer never waits for the disk), publishes, and
/// measures; returns what it measured when the writer hangs up.
pub(super) fn run_syncer(
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
