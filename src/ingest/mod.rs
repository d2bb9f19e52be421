//! The record model and the sans-IO, zero-copy metric parsers (InfluxDB line
//! protocol, the MetricsStream JSON API, StatsD, Prometheus remote_write). No DPDK, no clock: callers
//! pass byte slices and `now`.
pub mod json;
pub mod line_index;
pub mod line_protocol;
pub mod protowire;
pub mod record;
pub mod remote_write;
pub mod statsd;
pub mod structural;

pub use json::{JsonBatchError, JsonBatchParser, JsonLimits, JsonSummary, JsonSyntaxError};
pub use line_protocol::{
    write_line_protocol, BatchError, BodyPosition, LineError, LineErrorReason, LineProtocolLimits, LineProtocolParser,
    ParseSummary, Precision,
};
pub use record::{Field, FieldValue, Record, RecordRef, RecordSink, SinkFull, Tag};
pub use statsd::{StatsdError, StatsdErrorReason, StatsdLimits, StatsdParser, StatsdSummary};
