//! Prometheus remote_write 1.0 bodies (snappy block-compressed protobuf
//! `prometheus.WriteRequest`) → records, sans-IO.
//!
//! Mapping (docs/prometheus-otlp.md): `__name__` → measurement, every other
//! label → a tag (sorted, as the canonical line form requires), the sample
//! value → one float field `value`, the timestamp ms → ns. Each sample is one
//! record, pushed into a [`RecordSink`] (the writer's batch stores it as its
//! canonical line-protocol line, so dump/verify/shipper see ordinary records).
//!
//! What is dropped, counted by reason in [`RemoteWriteSummary`]: native
//! histograms and exemplars (not decoded: kept as raw bytes and counted),
//! non-finite samples (NaN is Prometheus' staleness marker; line protocol has
//! no non-finite floats), and series line protocol cannot represent (no or an
//! empty `__name__`, control characters, a trailing backslash, duplicate
//! label names, a timestamp beyond ±292 years in ns). Labels with an empty
//! value are omitted: Prometheus treats them as absent.
//!
//! Buffers reused across requests: the decompression buffer and the decoded
//! message's vectors. prost still allocates one `String` per label name and
//! value and one `Vec` per histogram/exemplar of every request (its derive
//! cannot borrow from the input); the tag vector is allocated once per request.

use super::record::{Field, FieldValue, RecordRef, RecordSink, Tag};
use prost::Message;
use std::borrow::Cow;

/// Largest decompressed body accepted: the snappy header states the length
/// up front, so a small body cannot make the decoder allocate more than this.
pub const MAX_DECODED_BYTES: usize = 32 << 20;

/// `prometheus.WriteRequest` (remote.proto); metadata (field 3) is skipped.
#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries` (types.proto).
#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    /// Exemplars, dropped: only counted, so kept undecoded.
    #[prost(bytes = "vec", repeated, tag = "3")]
    pub exemplars: Vec<Vec<u8>>,
    /// Native histograms, dropped: only counted, so kept undecoded.
    #[prost(bytes = "vec", repeated, tag = "4")]
    pub histograms: Vec<Vec<u8>>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, Copy, PartialEq, Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// A body that is not a remote_write 1.0 request (answer 400: senders do not retry it).
#[derive(Debug, thiserror::Error)]
pub enum RemoteWriteError {
    #[error("bad snappy block: {0}")]
    Snappy(#[from] snap::Error),
    #[error("decompressed body of {0} bytes exceeds the {MAX_DECODED_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("bad protobuf WriteRequest: {0}")]
    Protobuf(#[from] prost::DecodeError),
}

/// What a decoded request holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RemoteWriteSummary {
    pub series: u64,
    /// Samples that become records.
    pub samples: u64,
    pub dropped_histograms: u64,
    pub dropped_exemplars: u64,
    /// NaN/±Inf samples (staleness markers).
    pub dropped_non_finite: u64,
    /// Samples of series (or with timestamps) line protocol cannot represent.
    pub dropped_unrepresentable: u64,
}

/// Where pushing a request's samples stopped: the next (series, sample).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SamplePosition {
    series: usize,
    sample: usize,
}

impl SamplePosition {
    pub const START: SamplePosition = SamplePosition { series: 0, sample: 0 };
}

/// How far [`RemoteWriteDecoder::push_into`] got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PushOutcome {
    pub pushed: u64,
    /// `Some` when the sink was full: resume from here in another sink.
    pub resume_at: Option<SamplePosition>,
}

/// Decodes one request at a time, keeping its buffers (see the module comment).
#[derive(Default)]
pub struct RemoteWriteDecoder {
    raw: Vec<u8>,
    snappy: snap::raw::Decoder,
    request: WriteRequest,
}

impl std::fmt::Debug for RemoteWriteDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteWriteDecoder").field("series", &self.request.timeseries.len()).finish()
    }
}

const NAME_LABEL: &str = "__name__";
const VALUE_FIELD: &str = "value";

impl RemoteWriteDecoder {
    pub fn new() -> RemoteWriteDecoder {
        RemoteWriteDecoder::default()
    }

    /// Decompresses and decodes `body`, keeping the request for
    /// [`push_into`](Self::push_into), and counts what it holds.
    pub fn decode(&mut self, body: &[u8]) -> Result<RemoteWriteSummary, RemoteWriteError> {
        self.request.timeseries.clear();
        let len = snap::raw::decompress_len(body)?;
        if len > MAX_DECODED_BYTES {
            return Err(RemoteWriteError::TooLarge(len));
        }
        self.raw.clear();
        self.raw.resize(len, 0);
        let n = self.snappy.decompress(body, &mut self.raw)?;
        self.raw.truncate(n);
        // `merge` into the cleared message reuses its outer vector.
        if let Err(e) = self.request.merge(self.raw.as_slice()) {
            self.request.timeseries.clear();
            return Err(e.into());
        }
        let mut s = RemoteWriteSummary { series: self.request.timeseries.len() as u64, ..Default::default() };
        let mut tags = Vec::new();
        for series in &self.request.timeseries {
            s.dropped_histograms += series.histograms.len() as u64;
            s.dropped_exemplars += series.exemplars.len() as u64;
            let representable = series_tags(series, &mut tags).is_some();
            for sample in &series.samples {
                match sample_kind(representable, sample) {
                    SampleKind::Record(_) => s.samples += 1,
                    SampleKind::NonFinite => s.dropped_non_finite += 1,
                    SampleKind::Unrepresentable => s.dropped_unrepresentable += 1,
                }
            }
        }
        Ok(s)
    }

    /// Pushes the decoded request's records from `from` into `sink`, until
    /// done or the sink is full.
    pub fn push_into<S: RecordSink + ?Sized>(&self, from: SamplePosition, sink: &mut S) -> PushOutcome {
        let mut pushed = 0;
        let mut tags = Vec::new();
        for (i, series) in self.request.timeseries.iter().enumerate().skip(from.series) {
            let name = series_tags(series, &mut tags);
            let skip = if i == from.series { from.sample } else { 0 };
            for (j, sample) in series.samples.iter().enumerate().skip(skip) {
                let (SampleKind::Record(ts), Some(name)) = (sample_kind(name.is_some(), sample), name) else {
                    continue;
                };
                let measurement = Cow::Borrowed(name);
                let fields = [Field { key: Cow::Borrowed(VALUE_FIELD), value: FieldValue::Float(sample.value) }];
                let record = RecordRef { measurement: &measurement, tags: &tags, fields: &fields, timestamp_ns: ts };
                if sink.push(&record).is_err() {
                    return PushOutcome { pushed, resume_at: Some(SamplePosition { series: i, sample: j }) };
                }
                pushed += 1;
            }
        }
        PushOutcome { pushed, resume_at: None }
    }
}

enum SampleKind {
    Record(i64),
    NonFinite,
    Unrepresentable,
}

fn sample_kind(representable: bool, sample: &Sample) -> SampleKind {
    if !representable {
        return SampleKind::Unrepresentable;
    }
    if !sample.value.is_finite() {
        return SampleKind::NonFinite;
    }
    match sample.timestamp.checked_mul(1_000_000) {
        Some(ns) => SampleKind::Record(ns),
        None => SampleKind::Unrepresentable,
    }
}

/// The series' measurement (its `__name__`) with its other labels as sorted
/// tags in `tags`, or `None` when line protocol cannot represent the series.
fn series_tags<'a>(series: &'a TimeSeries, tags: &mut Vec<Tag<'a>>) -> Option<&'a str> {
    tags.clear();
    let mut name = None;
    for label in &series.labels {
        if label.name == NAME_LABEL {
            if name.replace(label.value.as_str()).is_some() {
                return None;
            }
        } else if !label.value.is_empty() {
            tags.push(Tag { key: Cow::Borrowed(&label.name), value: Cow::Borrowed(&label.value) });
        }
    }
    // Senders sort labels (the spec says MUST); do not rely on it. Unstable
    // sort: no allocation; duplicate names are refused by `check_line` below.
    tags.sort_unstable_by(|a, b| a.key.as_bytes().cmp(b.key.as_bytes()));
    let name = name?;
    let measurement = Cow::Borrowed(name);
    let fields = [Field { key: Cow::Borrowed(VALUE_FIELD), value: FieldValue::Float(0.0) }];
    let probe = RecordRef { measurement: &measurement, tags, fields: &fields, timestamp_ns: 0 };
    probe.check_line().ok().map(|_| name)
}

/// Encodes `request` as a remote_write body (snappy block + protobuf): tests,
/// fuzz seeds and tools.
pub fn encode_body(request: &WriteRequest) -> Vec<u8> {
    snappy_block(&request.encode_to_vec())
}

/// `raw` as one snappy block (the fuzz target compresses arbitrary protobuf with it).
pub fn snappy_block(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(raw).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::Record;

    fn series(labels: &[(&str, &str)], samples: &[(f64, i64)]) -> TimeSeries {
        TimeSeries {
            labels: labels.iter().map(|(n, v)| Label { name: (*n).into(), value: (*v).into() }).collect(),
            samples: samples.iter().map(|&(value, timestamp)| Sample { value, timestamp }).collect(),
            exemplars: vec![],
            histograms: vec![],
        }
    }

    fn decode_all(body: &[u8]) -> Result<(RemoteWriteSummary, Vec<Record>), RemoteWriteError> {
        let mut d = RemoteWriteDecoder::new();
        let s = d.decode(body)?;
        let mut out = Vec::new();
        let p = d.push_into(SamplePosition::START, &mut out);
        assert_eq!((p.pushed, p.resume_at), (s.samples, None));
        Ok((s, out))
    }

    #[test]
    fn samples_map_to_records_name_labels_value_and_ns_timestamp() {
        let req = WriteRequest {
            timeseries: vec![
                series(
                    &[("__name__", "http_requests_total"), ("job", "api"), ("code", "200"), ("empty", "")],
                    &[(1.5, 1_700_000_000_123), (2.0, 1_700_000_001_000)],
                ),
                series(&[("instance", "a b,c=d"), ("__name__", "up")], &[(1.0, 5)]),
            ],
        };
        let (s, records) = decode_all(&encode_body(&req)).unwrap();
        assert_eq!((s.series, s.samples), (2, 3));
        assert_eq!(records.len(), 3);
        let r = &records[0];
        assert_eq!(r.measurement, "http_requests_total");
        let tags: Vec<_> = r.tags.iter().map(|t| (&*t.key, &*t.value)).collect();
        assert_eq!(tags, [("code", "200"), ("job", "api")], "sorted, empty value omitted");
        assert_eq!(r.fields.len(), 1);
        assert_eq!(r.fields[0].key, "value");
        assert_eq!(r.fields[0].value, FieldValue::Float(1.5));
        assert_eq!(r.timestamp_ns, 1_700_000_000_123_000_000);
        assert_eq!(records[1].timestamp_ns, 1_700_000_001_000_000_000);
        assert_eq!(records[2].measurement, "up");
        assert_eq!(&*records[2].tags[0].value, "a b,c=d");
        // The canonical line escapes what line protocol needs.
        let mut line = Vec::new();
        records[2].as_ref().write_line(&mut line).unwrap();
        assert_eq!(line, br"up,instance=a\ b\,c\=d value=1.0");
    }

    #[test]
    fn histograms_exemplars_stale_and_unrepresentable_are_counted_drops() {
        let mut with_extras = series(&[("__name__", "x")], &[(f64::NAN, 1), (3.0, 2), (f64::INFINITY, 3)]);
        with_extras.histograms = vec![vec![8, 1], vec![]];
        with_extras.exemplars = vec![vec![]];
        let req = WriteRequest {
            timeseries: vec![
                with_extras,
                series(&[("job", "no name")], &[(1.0, 1)]),
                series(&[("__name__", "a"), ("__name__", "b")], &[(1.0, 1)]),
                series(&[("__name__", "dup"), ("k", "1"), ("k", "2")], &[(1.0, 1)]),
                series(&[("__name__", "ctl\n")], &[(1.0, 1)]),
                series(&[("__name__", "late")], &[(1.0, i64::MAX / 1000)]),
            ],
        };
        let (s, records) = decode_all(&encode_body(&req)).unwrap();
        assert_eq!(s.samples, 1);
        assert_eq!((s.dropped_histograms, s.dropped_exemplars, s.dropped_non_finite), (2, 1, 2));
        assert_eq!(s.dropped_unrepresentable, 5);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].fields[0].value, FieldValue::Float(3.0));
    }

    #[test]
    fn malformed_bodies_are_errors_not_panics() {
        let mut d = RemoteWriteDecoder::new();
        // Not snappy: claims 10 bytes, holds a 1-byte literal.
        assert!(matches!(d.decode(b"\x0a\x00\x01"), Err(RemoteWriteError::Snappy(_))));
        // Empty body: snappy needs at least its length varint.
        assert!(matches!(d.decode(b""), Err(RemoteWriteError::Snappy(_))));
        // A length header claiming more than the limit: refused before allocating.
        let mut huge = Vec::new();
        let mut n = (MAX_DECODED_BYTES + 1) as u64;
        while n >= 0x80 {
            huge.push((n as u8) | 0x80);
            n >>= 7;
        }
        huge.push(n as u8);
        assert!(matches!(d.decode(&huge), Err(RemoteWriteError::TooLarge(_))));
        // Valid snappy of invalid protobuf: a truncated length-delimited field.
        let bad = snap::raw::Encoder::new().compress_vec(&[0x0a, 0x10, 0x01]).unwrap();
        assert!(matches!(d.decode(&bad), Err(RemoteWriteError::Protobuf(_))));
        // Label value not UTF-8.
        let bad_utf8 = [0x0a, 0x07, 0x0a, 0x05, 0x0a, 0x01, b'a', 0x12, 0x00];
        let ok = snap::raw::Encoder::new().compress_vec(&bad_utf8).unwrap();
        assert!(d.decode(&ok).is_ok(), "well-formed: name 'a', empty value");
        let bad_utf8 = [0x0a, 0x06, 0x0a, 0x04, 0x0a, 0x02, 0xc3, 0x28];
        let bad = snap::raw::Encoder::new().compress_vec(&bad_utf8).unwrap();
        assert!(matches!(d.decode(&bad), Err(RemoteWriteError::Protobuf(_))));
        // After errors the decoder holds nothing and decodes the next request.
        assert_eq!(d.push_into(SamplePosition::START, &mut Vec::new()).pushed, 0);
        let good = encode_body(&WriteRequest { timeseries: vec![series(&[("__name__", "m")], &[(1.0, 1)])] });
        assert_eq!(d.decode(&good).unwrap().samples, 1);
    }

    #[test]
    fn a_full_sink_stops_and_resumes_at_the_next_sample() {
        struct Room(usize, Vec<Record>);
        impl RecordSink for Room {
            fn push(&mut self, r: &RecordRef<'_, '_>) -> Result<(), crate::ingest::SinkFull> {
                if self.0 == 0 {
                    return Err(crate::ingest::SinkFull);
                }
                self.0 -= 1;
                self.1.push(r.to_owned_record());
                Ok(())
            }
        }
        let req = WriteRequest {
            timeseries: vec![
                series(&[("__name__", "a")], &[(1.0, 1), (f64::NAN, 2), (2.0, 3)]),
                series(&[("__name__", "b")], &[(3.0, 4), (4.0, 5)]),
            ],
        };
        let mut d = RemoteWriteDecoder::new();
        assert_eq!(d.decode(&encode_body(&req)).unwrap().samples, 4);
        let mut values = Vec::new();
        let mut pos = SamplePosition::START;
        loop {
            let mut room = Room(1, Vec::new());
            let p = d.push_into(pos, &mut room);
            values.extend(room.1.iter().map(|r| r.fields[0].value.clone()));
            match p.resume_at {
                Some(next) => pos = next,
                None => break,
            }
        }
        let want: Vec<_> = [1.0, 2.0, 3.0, 4.0].into_iter().map(FieldValue::Float).collect();
        assert_eq!(values, want);
    }
}
