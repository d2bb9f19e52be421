//! The record model and the sans-IO, zero-copy metric parsers (InfluxDB line
//! protocol, the MetricsStream JSON API, StatsD). No DPDK, no clock: callers
//! pass byte slices and `now`.
pub mod record;

pub use record::{Field, FieldValue, Record, RecordRef, RecordSink, SinkFull, Tag};
