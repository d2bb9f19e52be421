//! Writer and shipper counters: one shared struct of atomics, updated by the
//! writer thread, the worker handles and the shipper; read by the stats line,
//! the JSON report and `/metrics` through [`WriterStats::snapshot`].

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

/// Counters (monotonic) and gauges (last value) of the writer and shipper.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Records appended to the log.
    pub records_written: AtomicU64,
    /// Frame bytes appended to the log.
    pub bytes_written: AtomicU64,
    /// Batches (frames) appended.
    pub batches_written: AtomicU64,
    /// fdatasync calls.
    pub fsyncs: AtomicU64,
    /// Total time spent in fdatasync, nanoseconds.
    pub fsync_ns: AtomicU64,
    /// Submits refused because a channel was full or no empty batch was free.
    pub writer_backpressure: AtomicU64,
    /// Gauge: batches waiting in all worker channels.
    pub channel_occupancy: AtomicU64,
    /// Gauge: records written but not yet fsynced.
    pub durable_lag_records: AtomicU64,
    /// Segments deleted by retention.
    pub segments_deleted: AtomicU64,
    /// Records dropped by recovery at start are not counted here (see
    /// `Recovery`); bytes cut from the tail at start:
    pub recovery_truncated_bytes: AtomicU64,
    /// Records acknowledged with 2xx by VictoriaMetrics.
    pub shipper_shipped_records: AtomicU64,
    /// Gauge: durable records not yet shipped.
    pub shipper_lag_records: AtomicU64,
    /// Failed POSTs (each is retried with backoff).
    pub shipper_errors: AtomicU64,
    /// Records deleted by retention before they were shipped.
    pub shipper_skipped_records: AtomicU64,
}

/// A plain copy of [`WriterStats`] at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WriterStatsSnapshot {
    pub records_written: u64,
    pub bytes_written: u64,
    pub batches_written: u64,
    pub fsyncs: u64,
    pub fsync_ns: u64,
    pub writer_backpressure: u64,
    pub channel_occupancy: u64,
    pub durable_lag_records: u64,
    pub segments_deleted: u64,
    pub recovery_truncated_bytes: u64,
    pub shipper_shipped_records: u64,
    pub shipper_lag_records: u64,
    pub shipper_errors: u64,
    pub shipper_skipped_records: u64,
}

impl WriterStats {
    pub fn snapshot(&self) -> WriterStatsSnapshot {
        WriterStatsSnapshot {
            records_written: self.records_written.load(Relaxed),
            bytes_written: self.bytes_written.load(Relaxed),
            batches_written: self.batches_written.load(Relaxed),
            fsyncs: self.fsyncs.load(Relaxed),
            fsync_ns: self.fsync_ns.load(Relaxed),
            writer_backpressure: self.writer_backpressure.load(Relaxed),
            channel_occupancy: self.channel_occupancy.load(Relaxed),
            durable_lag_records: self.durable_lag_records.load(Relaxed),
            segments_deleted: self.segments_deleted.load(Relaxed),
            recovery_truncated_bytes: self.recovery_truncated_bytes.load(Relaxed),
            shipper_shipped_records: self.shipper_shipped_records.load(Relaxed),
            shipper_lag_records: self.shipper_lag_records.load(Relaxed),
            shipper_errors: self.shipper_errors.load(Relaxed),
            shipper_skipped_records: self.shipper_skipped_records.load(Relaxed),
        }
    }
}
