//! The writer core: everything between a worker's accepted records and
//! durable storage (and onwards to VictoriaMetrics).
//!
//! - [`codec`]: the record encodings (version 2: lines as received; version 1
//!   read for older logs) and [`Batch`], the recycled buffer workers fill
//!   ([`Batch::push_line`], and a [`RecordSink`](crate::ingest::RecordSink)).
//! - [`runtime`]: [`Writer::start`], the writer thread (group commit, durable
//!   sequence publishing) and the per-worker [`WriterHandle`].
//! - [`segment`]: the segment log format, [`SegmentWriter`], recovery,
//!   verification and the [`LogTail`] reader.
//! - [`config`]: `[writer]` and `[sink.victoriametrics]`.
//! - [`shipper`]: tails the log and POSTs line protocol to VictoriaMetrics.
//! - [`format`]: line protocol / JSON rendering for `dump` and the shipper.
//! - [`stats`]: [`WriterStats`] counters.
//! - [`cli`]: the `dump`, `verify` and `write-load` subcommands.
//!
//! Worker usage:
//!
//! ```no_run
//! # use metricsstream::writer::*;
//! # use metricsstream::ingest::RecordSink;
//! let (runtime, mut handles) = Writer::start(WriterConfig::default(), 1).unwrap();
//! let h = &mut handles[0];
//! if let Some(mut batch) = h.take_batch() {        // None: backpressure → 503
//!     batch.set_client("client-42");
//!     // parser.parse(body, &mut batch) — stops at Err(SinkFull)
//!     match h.submit(batch) {
//!         Ok(ticket) => { /* ack=durable: answer once h.is_acked(&ticket) */ }
//!         Err(bp) => { h.recycle(bp.batch); /* 503 Retry-After */ }
//!     }
//! }
//! drop(handles);
//! runtime.shutdown().unwrap();
//! ```

pub mod cli;
pub mod codec;
pub mod config;
pub mod format;
pub mod runtime;
pub mod segment;
pub mod shipper;
pub mod stats;

pub use codec::{Batch, BatchMark, DecodeError, StoredLine, StoredRecord, TenantIndex};
pub use config::{AckMode, ConfigError, VictoriaMetricsConfig, WriterConfig};
pub use runtime::{
    Backpressure, BackpressureReason, BatchPoolCounters, StorageFault, Ticket, Writer, WriterError, WriterHandle,
    WriterRuntime, WriterSummary,
};
pub use segment::{verify_log, LogTail, Recovery, SegmentError, SegmentWriter, TailFrame, VerifyReport};
pub use shipper::{Shipper, ShipperError};
pub use stats::{CommitReport, LatencyBuckets, Percentiles, WriterStats, WriterStatsSnapshot};
