//! Writer and shipper counters: one shared struct of atomics, updated by the
//! writer thread, the worker handles and the shipper; read by the stats line,
//! the JSON report and `/metrics` through [`WriterStats::snapshot`] and
//! [`WriterStats::expose`].
//!
//! The commit path is measured on the sync thread, once per sync
//! ([`CommitRecorder`]): ack latency (a durable batch handed over to the
//! writer until the sync covering it is published) and fdatasync latency,
//! each twice: in fixed buckets of atomics ([`LatencyBuckets`], for
//! `/metrics`: read without locking or allocating) and in HDR histograms for
//! the run's report ([`CommitReport`], in [`WriterSummary`](super::WriterSummary)).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::stats::Exposition;

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
    /// Frame bytes made durable by those fdatasyncs (bytes per sync =
    /// `synced_bytes / fsyncs`).
    pub synced_bytes: AtomicU64,
    /// Awaited batches (a client waits for each) those fdatasyncs covered
    /// (waiters per sync = `sync_waiters / fsyncs`).
    pub sync_waiters: AtomicU64,
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
    /// Appends (write(2) of frames, segment creation) that failed: the
    /// active segment was abandoned at its last durable point.
    pub write_errors: AtomicU64,
    /// fdatasyncs that failed: never retried on the same file (after a
    /// failed fsync the kernel may have dropped the dirty pages and a second
    /// fsync would report success for data that is not on disk); the segment
    /// was abandoned at its last durable point instead.
    pub fsync_errors: AtomicU64,
    /// Of those errors, the ones that were ENOSPC/EDQUOT (disk full).
    pub no_space_errors: AtomicU64,
    /// Segments abandoned after a write or fsync error (cut back to their
    /// last durable point; appending went on in a new segment).
    pub segments_abandoned: AtomicU64,
    /// Records handed to the writer that a fault kept from becoming durable
    /// (their durable requests got 507/503; enqueued acks were already sent).
    pub records_lost: AtomicU64,
    /// Gauge: 0 writing; 1 stopped on a full disk; 2 stopped on another I/O
    /// error (retried every `FAULT_RETRY`, writing resumes by itself).
    pub storage_fault: AtomicU64,
    /// Awaited batch handed over -> the sync covering it published.
    pub ack_latency: LatencyBuckets,
    /// One fdatasync.
    pub fsync_latency: LatencyBuckets,
}

/// A plain copy of [`WriterStats`] at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WriterStatsSnapshot {
    pub records_written: u64,
    pub bytes_written: u64,
    pub batches_written: u64,
    pub fsyncs: u64,
    pub fsync_ns: u64,
    pub synced_bytes: u64,
    pub sync_waiters: u64,
    pub writer_backpressure: u64,
    pub channel_occupancy: u64,
    pub durable_lag_records: u64,
    pub segments_deleted: u64,
    pub recovery_truncated_bytes: u64,
    pub shipper_shipped_records: u64,
    pub shipper_lag_records: u64,
    pub shipper_errors: u64,
    pub shipper_skipped_records: u64,
    pub write_errors: u64,
    pub fsync_errors: u64,
    pub no_space_errors: u64,
    pub segments_abandoned: u64,
    pub records_lost: u64,
    pub storage_fault: u64,
}

impl WriterStats {
    pub fn snapshot(&self) -> WriterStatsSnapshot {
        WriterStatsSnapshot {
            records_written: self.records_written.load(Relaxed),
            bytes_written: self.bytes_written.load(Relaxed),
            batches_written: self.batches_written.load(Relaxed),
            fsyncs: self.fsyncs.load(Relaxed),
            fsync_ns: self.fsync_ns.load(Relaxed),
            synced_bytes: self.synced_bytes.load(Relaxed),
            sync_waiters: self.sync_waiters.load(Relaxed),
            writer_backpressure: self.writer_backpressure.load(Relaxed),
            channel_occupancy: self.channel_occupancy.load(Relaxed),
            durable_lag_records: self.durable_lag_records.load(Relaxed),
            segments_deleted: self.segments_deleted.load(Relaxed),
            recovery_truncated_bytes: self.recovery_truncated_bytes.load(Relaxed),
            shipper_shipped_records: self.shipper_shipped_records.load(Relaxed),
            shipper_lag_records: self.shipper_lag_records.load(Relaxed),
            shipper_errors: self.shipper_errors.load(Relaxed),
            shipper_skipped_records: self.shipper_skipped_records.load(Relaxed),
            write_errors: self.write_errors.load(Relaxed),
            fsync_errors: self.fsync_errors.load(Relaxed),
            no_space_errors: self.no_space_errors.load(Relaxed),
            segments_abandoned: self.segments_abandoned.load(Relaxed),
            records_lost: self.records_lost.load(Relaxed),
            storage_fault: self.storage_fault.load(Relaxed),
        }
    }

    /// `/metrics`: every counter of [`snapshot`](Self::snapshot) under
    /// `section`, and the ack and fdatasync latency histograms
    /// (`<section>_ack_latency_seconds`, `<section>_fsync_latency_seconds`).
    /// Allocates nothing once `e`'s buffer has grown.
    pub fn expose(&self, section: &str, e: &mut Exposition<'_>) {
        e.section(section, &self.snapshot());
        self.ack_latency.expose(
            e,
            &[section, "_ack_latency_seconds"],
            "ack=durable batches: handed over to the writer until the fdatasync covering them is published",
        );
        self.fsync_latency.expose(e, &[section, "_fsync_latency_seconds"], "one fdatasync of the active segment");
    }
}

/// Upper bounds of [`LatencyBuckets`] in nanoseconds, with their Prometheus
/// `le` labels (seconds): fdatasync on SSDs and virtio disks is 0.1-5 ms,
/// so the buckets are dense there.
pub const LATENCY_BOUNDS: [(u64, &str); 14] = [
    (50_000, "0.00005"),
    (100_000, "0.0001"),
    (250_000, "0.00025"),
    (500_000, "0.0005"),
    (1_000_000, "0.001"),
    (2_500_000, "0.0025"),
    (5_000_000, "0.005"),
    (10_000_000, "0.01"),
    (25_000_000, "0.025"),
    (50_000_000, "0.05"),
    (100_000_000, "0.1"),
    (250_000_000, "0.25"),
    (1_000_000_000, "1"),
    (10_000_000_000, "10"),
];

/// A latency distribution in fixed buckets: recording is two relaxed atomic
/// adds, reading (`/metrics`) takes no lock and allocates nothing.
#[derive(Debug, Default)]
pub struct LatencyBuckets {
    /// `counts[i]`: samples in (`LATENCY_BOUNDS[i - 1]`, `LATENCY_BOUNDS[i]`];
    /// the last one: above every bound.
    counts: [AtomicU64; LATENCY_BOUNDS.len() + 1],
    sum_ns: AtomicU64,
}

impl LatencyBuckets {
    pub fn record(&self, latency: Duration) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        let i = LATENCY_BOUNDS.partition_point(|&(bound, _)| bound < ns);
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// As a Prometheus histogram (cumulative buckets, sum in seconds).
    pub fn expose(&self, e: &mut Exposition<'_>, name: &[&str], help: &str) {
        let mut counts = [0u64; LATENCY_BOUNDS.len() + 1];
        for (n, c) in counts.iter_mut().zip(&self.counts) {
            *n = c.load(Relaxed);
        }
        let mut cumulative = 0;
        let buckets = LATENCY_BOUNDS.iter().zip(counts).map(|(&(_, le), n)| {
            cumulative += n;
            (le, cumulative)
        });
        let count = counts.iter().sum();
        let sum = self.sum_ns.load(Relaxed) as f64 / 1e9;
        e.histogram(name, help, buckets, count, sum);
    }
}

/// Percentiles of one distribution over a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Self {
        Percentiles {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// The commit path over one writer run, for reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CommitReport {
    /// Awaited batch handed over -> durable published, µs.
    pub ack_latency_us: Percentiles,
    /// One fdatasync, µs.
    pub fsync_latency_us: Percentiles,
    /// Frame bytes each sync made durable.
    pub bytes_per_sync: Percentiles,
    /// Awaited batches each sync covered.
    pub waiters_per_sync: Percentiles,
}

/// Longest latency the report histograms resolve (larger ones count as this).
const MAX_LATENCY_US: u64 = 60_000_000;

/// Measures every completed sync into [`WriterStats`] and this run's HDR
/// histograms. Lives on the sync thread; its histograms are allocated once,
/// so recording allocates nothing.
#[derive(Debug)]
pub struct CommitRecorder {
    stats: Arc<WriterStats>,
    ack_latency_us: Histogram<u64>,
    fsync_latency_us: Histogram<u64>,
    bytes_per_sync: Histogram<u64>,
    waiters_per_sync: Histogram<u64>,
}

impl CommitRecorder {
    pub fn new(stats: Arc<WriterStats>) -> Self {
        let histogram = |max: u64| Histogram::new_with_bounds(1, max, 3).expect("static histogram bounds are valid");
        CommitRecorder {
            stats,
            ack_latency_us: histogram(MAX_LATENCY_US),
            fsync_latency_us: histogram(MAX_LATENCY_US),
            bytes_per_sync: histogram(1 << 40),
            waiters_per_sync: histogram(1 << 32),
        }
    }

    /// One sync that took `took`, made `bytes` durable and was published at
    /// `published`; `handed_over` holds when each awaited batch it covered
    /// was handed to the writer.
    pub fn synced(&mut self, took: Duration, bytes: u64, handed_over: &[Instant], published: Instant) {
        let s = &self.stats;
        s.fsyncs.fetch_add(1, Relaxed);
        s.fsync_ns.fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Relaxed);
        s.synced_bytes.fetch_add(bytes, Relaxed);
        s.sync_waiters.fetch_add(handed_over.len() as u64, Relaxed);
        s.fsync_latency.record(took);
        self.fsync_latency_us.saturating_record(micros(took));
        self.bytes_per_sync.saturating_record(bytes);
        self.waiters_per_sync.saturating_record(handed_over.len() as u64);
        for &t in handed_over {
            let latency = published.saturating_duration_since(t);
            s.ack_latency.record(latency);
            self.ack_latency_us.saturating_record(micros(latency));
        }
    }

    pub fn report(&self) -> CommitReport {
        CommitReport {
            ack_latency_us: Percentiles::of(&self.ack_latency_us),
            fsync_latency_us: Percentiles::of(&self.fsync_latency_us),
            bytes_per_sync: Percentiles::of(&self.bytes_per_sync),
            waiters_per_sync: Percentiles::of(&self.waiters_per_sync),
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_are_upper_bounds_and_cumulative_in_metrics() {
        let b = LatencyBuckets::default();
        for us in [10, 50, 51, 400, 700, 20_000_000] {
            b.record(Duration::from_micros(us));
        }
        assert_eq!(b.count(), 6);
        let mut out = String::new();
        b.expose(&mut Exposition::new(&mut out), &["w", "_ack_latency_seconds"], "ack");
        // 10 and 50 µs are <= 0.00005 s (an upper bound is inclusive); 51 µs is not.
        assert!(out.contains("metricsstream_w_ack_latency_seconds_bucket{le=\"0.00005\"} 2\n"), "{out}");
        assert!(out.contains("metricsstream_w_ack_latency_seconds_bucket{le=\"0.0001\"} 3\n"), "{out}");
        assert!(out.contains("metricsstream_w_ack_latency_seconds_bucket{le=\"0.001\"} 5\n"), "{out}");
        assert!(out.contains("metricsstream_w_ack_latency_seconds_bucket{le=\"10\"} 5\n"), "{out}");
        assert!(out.contains("metricsstream_w_ack_latency_seconds_bucket{le=\"+Inf\"} 6\n"), "{out}");
        assert!(out.contains("metricsstream_w_ack_latency_seconds_count 6\n"), "{out}");
        assert!(out.contains("metricsstream_w_ack_latency_seconds_sum 20.001211\n"), "{out}");
    }

    #[test]
    fn a_sync_counts_bytes_waiters_and_each_waiters_latency() {
        let stats = Arc::new(WriterStats::default());
        let mut r = CommitRecorder::new(Arc::clone(&stats));
        let t0 = Instant::now();
        let published = t0 + Duration::from_millis(3);
        r.synced(Duration::from_micros(400), 65_536, &[t0, t0 + Duration::from_millis(2)], published);
        r.synced(Duration::from_micros(500), 100, &[], published);
        let s = stats.snapshot();
        assert_eq!((s.fsyncs, s.synced_bytes, s.sync_waiters, s.fsync_ns), (2, 65_636, 2, 900_000));
        assert_eq!((stats.ack_latency.count(), stats.fsync_latency.count()), (2, 2));
        let rep = r.report();
        assert_eq!(rep.ack_latency_us.count, 2);
        assert_eq!(rep.ack_latency_us.max / 10, 300, "{rep:?}");
        assert_eq!(rep.ack_latency_us.p50 / 10, 100, "{rep:?}");
        assert_eq!((rep.waiters_per_sync.count, rep.waiters_per_sync.max), (2, 2));
        assert_eq!(rep.bytes_per_sync.max / 100, 655, "{rep:?}");
        let mut out = String::new();
        stats.expose("writer", &mut Exposition::new(&mut out));
        assert!(out.contains("metricsstream_writer_synced_bytes_total 65636\n"), "{out}");
        assert!(out.contains("metricsstream_writer_sync_waiters_total 2\n"), "{out}");
        assert!(out.contains("# TYPE metricsstream_writer_ack_latency_seconds histogram\n"), "{out}");
        assert!(out.contains("metricsstream_writer_fsync_latency_seconds_bucket{le=\"0.0005\"} 2\n"), "{out}");
    }
}
