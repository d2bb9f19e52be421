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
//! Decoding borrows from the decompressed body: [`protowire`] reads the
//! fields in place and the decoder keeps offsets (labels, sorted tags) and
//! samples in vectors reused across requests, so a request allocates nothing
//! once they have grown (`tests/alloc_steady.rs` sends remote_write requests). prost's derived decoder, the first version of this
//! module, allocated a `String` per label name and value and a `Vec` per
//! series (a fifth of the worker's cycles in malloc/free under load;
//! BENCHMARKS.md); the prost message types below stay as the encoder (tests,
//! fuzz seeds, `gen-body`) and as the reference the decoder is tested against.
//!
//! [`protowire`]: super::protowire

use super::protowire::{FieldReader, WireError};
use super::record::{Field, FieldValue, RecordRef, RecordSink, Tag};
use prost::Message;
use std::borrow::Cow;
use std::ops::Range;

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
    Protobuf(#[from] WireError),
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
    /// The decompressed body; every span below is an offset into it.
    raw: Vec<u8>,
    snappy: snap::raw::Decoder,
    series: Vec<SeriesEntry>,
    /// Every label of every series, in wire order.
    labels: Vec<LabelSpan>,
    /// Per representable series: its tags (labels but the name and the
    /// empty ones), sorted by key.
    tags: Vec<LabelSpan>,
    samples: Vec<Sample>,
    /// Scratch for one series' tags; empty between calls (kept for its capacity).
    tag_scratch: Vec<Tag<'static>>,
}

/// A byte range of `raw`.
#[derive(Clone, Copy, Debug, Default)]
struct Span {
    start: u32,
    len: u32,
}

impl Span {
    fn of(raw: &[u8], part: &[u8]) -> Span {
        // `part` is a subslice of `raw` (the wire reader borrows from it).
        Span { start: (part.as_ptr() as usize - raw.as_ptr() as usize) as u32, len: part.len() as u32 }
    }

    #[inline]
    fn bytes(self, raw: &[u8]) -> &[u8] {
        raw.get(self.start as usize..(self.start + self.len) as usize).unwrap_or_default()
    }

    /// The span as text; validated when the series was decoded.
    #[inline]
    fn str(self, raw: &[u8]) -> &str {
        std::str::from_utf8(self.bytes(raw)).unwrap_or_default()
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct LabelSpan {
    name: Span,
    value: Span,
}

impl LabelSpan {
    #[inline]
    fn tag(self, raw: &[u8]) -> Tag<'_> {
        Tag { key: Cow::Borrowed(self.name.str(raw)), value: Cow::Borrowed(self.value.str(raw)) }
    }
}

#[derive(Clone, Debug)]
struct SeriesEntry {
    labels: Range<u32>,
    samples: Range<u32>,
    /// The `__name__` label's value, `None` when line protocol cannot
    /// represent the series (the reasons in the module comment).
    measurement: Option<Span>,
    tags: Range<u32>,
    exemplars: u32,
    histograms: u32,
}

impl std::fmt::Debug for RemoteWriteDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteWriteDecoder").field("series", &self.series.len()).finish()
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
        self.clear();
        let len = snap::raw::decompress_len(body)?;
        if len > MAX_DECODED_BYTES {
            return Err(RemoteWriteError::TooLarge(len));
        }
        self.raw.resize(len, 0);
        let n = self.snappy.decompress(body, &mut self.raw)?;
        self.raw.truncate(n);
        let result = self.index();
        if result.is_err() {
            self.clear();
        }
        result
    }

    fn clear(&mut self) {
        self.raw.clear();
        self.series.clear();
        self.labels.clear();
        self.tags.clear();
        self.samples.clear();
    }

    /// Indexes `raw` (a `WriteRequest`) into the vectors and counts it.
    fn index(&mut self) -> Result<RemoteWriteSummary, RemoteWriteError> {
        let RemoteWriteDecoder { raw, series: entries, labels, tags, samples, tag_scratch, .. } = self;
        let raw = raw.as_slice();
        // A `Vec<Tag<'static>>` cannot hold tags borrowed from `raw`; an
        // empty one collected into a `Vec<Tag<'_>>` keeps its allocation
        // (in-place collect of a same-layout type), and back at the end.
        let mut scratch: Vec<Tag<'_>> = std::mem::take(tag_scratch).into_iter().collect();
        let mut s = RemoteWriteSummary::default();
        let mut request = FieldReader::new(raw);
        while let Some((field, value)) = request.next()? {
            if field != 1 {
                continue; // metadata (3) and anything newer: skipped
            }
            let mut entry = index_series(raw, value.bytes(field)?, labels, samples)?;
            sort_tags(raw, &mut entry, labels, tags, &mut scratch)?;
            s.series += 1;
            s.dropped_histograms += u64::from(entry.histograms);
            s.dropped_exemplars += u64::from(entry.exemplars);
            for sample in &samples[entry.samples.start as usize..entry.samples.end as usize] {
                match sample_kind(entry.measurement.is_some(), sample) {
                    SampleKind::Record(_) => s.samples += 1,
                    SampleKind::NonFinite => s.dropped_non_finite += 1,
                    SampleKind::Unrepresentable => s.dropped_unrepresentable += 1,
                }
            }
            entries.push(entry);
        }
        scratch.clear();
        *tag_scratch = scratch.into_iter().map(|_| unreachable!("cleared")).collect();
        Ok(s)
    }

    /// Pushes the decoded request's records from `from` into `sink`, until
    /// done or the sink is full.
    pub fn push_into<S: RecordSink + ?Sized>(&mut self, from: SamplePosition, sink: &mut S) -> PushOutcome {
        let raw = self.raw.as_slice();
        // One series' tags at a time, in the recycled scratch (see `index`).
        let mut tags: Vec<Tag<'_>> = std::mem::take(&mut self.tag_scratch).into_iter().collect();
        let mut pushed = 0;
        let mut resume_at = None;
        'series: for (i, series) in self.series.iter().enumerate().skip(from.series) {
            let Some(measurement) = series.measurement else { continue };
            tags.clear();
            tags.extend(self.tags[series.tags.start as usize..series.tags.end as usize].iter().map(|t| t.tag(raw)));
            let measurement = Cow::Borrowed(measurement.str(raw));
            let skip = if i == from.series { from.sample } else { 0 };
            let samples = &self.samples[series.samples.start as usize..series.samples.end as usize];
            for (j, sample) in samples.iter().enumerate().skip(skip) {
                let SampleKind::Record(ts) = sample_kind(true, sample) else { continue };
                let fields = [Field { key: Cow::Borrowed(VALUE_FIELD), value: FieldValue::Float(sample.value) }];
                let record = RecordRef { measurement: &measurement, tags: &tags, fields: &fields, timestamp_ns: ts };
                if sink.push(&record).is_err() {
                    resume_at = Some(SamplePosition { series: i, sample: j });
                    break 'series;
                }
                pushed += 1;
            }
        }
        tags.clear();
        self.tag_scratch = tags.into_iter().map(|_| unreachable!("cleared")).collect();
        PushOutcome { pushed, resume_at }
    }
}

/// Checks the series' labels as text, finds its measurement and appends its
/// tags to `tags` sorted by key, or marks it unrepresentable.
fn sort_tags<'r>(
    raw: &'r [u8],
    series: &mut SeriesEntry,
    labels: &[LabelSpan],
    tags: &mut Vec<LabelSpan>,
    scratch: &mut Vec<Tag<'r>>,
) -> Result<(), WireError> {
    let text = |span: Span| std::str::from_utf8(span.bytes(raw)).map_err(|_| WireError::Utf8);
    scratch.clear();
    let mut measurement = None;
    let mut duplicate_name = false;
    for label in &labels[series.labels.start as usize..series.labels.end as usize] {
        let (name, value) = (text(label.name)?, text(label.value)?);
        if name == NAME_LABEL {
            duplicate_name |= measurement.replace(value).is_some();
        } else if !value.is_empty() {
            scratch.push(Tag { key: Cow::Borrowed(name), value: Cow::Borrowed(value) });
        }
    }
    // Senders sort labels (the spec says MUST); do not rely on it. Unstable
    // sort: no allocation; duplicate names are refused by the line check.
    scratch.sort_unstable_by(|a, b| a.key.as_bytes().cmp(b.key.as_bytes()));
    let first_tag = tags.len() as u32;
    series.measurement = measurement.filter(|_| !duplicate_name).and_then(|name| {
        let measurement = Cow::Borrowed(name);
        let fields = [Field { key: Cow::Borrowed(VALUE_FIELD), value: FieldValue::Float(0.0) }];
        let probe = RecordRef { measurement: &measurement, tags: scratch, fields: &fields, timestamp_ns: 0 };
        probe.check_line().ok().map(|_| Span::of(raw, name.as_bytes()))
    });
    if series.measurement.is_some() {
        tags.extend(
            scratch
                .iter()
                .map(|t| LabelSpan { name: Span::of(raw, t.key.as_bytes()), value: Span::of(raw, t.value.as_bytes()) }),
        );
    }
    scratch.clear();
    series.tags = first_tag..tags.len() as u32;
    Ok(())
}

#[cfg(test)]
impl RemoteWriteDecoder {
    /// The decoded request as prost's message types (exemplars and
    /// histograms as empty placeholders: only counted).
    fn decoded(&self) -> WriteRequest {
        let raw = self.raw.as_slice();
        let timeseries = self
            .series
            .iter()
            .map(|e| TimeSeries {
                labels: self.labels[e.labels.start as usize..e.labels.end as usize]
                    .iter()
                    .map(|l| Label { name: l.name.str(raw).into(), value: l.value.str(raw).into() })
                    .collect(),
                samples: self.samples[e.samples.start as usize..e.samples.end as usize].to_vec(),
                exemplars: vec![vec![]; e.exemplars as usize],
                histograms: vec![vec![]; e.histograms as usize],
            })
            .collect();
        WriteRequest { timeseries }
    }
}

/// Indexes one `TimeSeries` message: its labels and samples appended to
/// the decoder's vectors, exemplars and histograms counted.
fn index_series(
    raw: &[u8],
    message: &[u8],
    labels: &mut Vec<LabelSpan>,
    samples: &mut Vec<Sample>,
) -> Result<SeriesEntry, WireError> {
    let (first_label, first_sample) = (labels.len() as u32, samples.len() as u32);
    let (mut exemplars, mut histograms) = (0u32, 0u32);
    let mut fields = FieldReader::new(message);
    while let Some((field, value)) = fields.next()? {
        match field {
            1 => labels.push(label(raw, value.bytes(field)?)?),
            2 => samples.push(sample(value.bytes(field)?)?),
            3 => exemplars += value.bytes(field).map(|_| 1)?,
            4 => histograms += value.bytes(field).map(|_| 1)?,
            _ => {}
        }
    }
    Ok(SeriesEntry {
        labels: first_label..labels.len() as u32,
        samples: first_sample..samples.len() as u32,
        measurement: None,
        tags: 0..0,
        exemplars,
        histograms,
    })
}

/// A `Label` message (later fields of the same number win, as in protobuf).
fn label(raw: &[u8], message: &[u8]) -> Result<LabelSpan, WireError> {
    let empty = Span { start: 0, len: 0 };
    let mut out = LabelSpan { name: empty, value: empty };
    let mut fields = FieldReader::new(message);
    while let Some((field, value)) = fields.next()? {
        match field {
            1 => out.name = Span::of(raw, value.bytes(field)?),
            2 => out.value = Span::of(raw, value.bytes(field)?),
            _ => {}
        }
    }
    Ok(out)
}

/// A `Sample` message.
fn sample(message: &[u8]) -> Result<Sample, WireError> {
    let mut out = Sample { value: 0.0, timestamp: 0 };
    let mut fields = FieldReader::new(message);
    while let Some((field, value)) = fields.next()? {
        match field {
            1 => out.value = value.double(field)?,
            2 => out.timestamp = value.int64(field)?,
            _ => {}
        }
    }
    Ok(out)
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

    /// The in-place decoder against prost's derived one on the same bytes:
    /// valid requests and their truncations and byte flips. Both must agree
    /// on accept/reject and, when both accept, on every label and sample.
    mod against_prost {
        use super::*;
        use proptest::prelude::*;

        fn text() -> impl Strategy<Value = String> {
            prop_oneof![Just(String::new()), Just("__name__".to_string()), "[a-c]{1,3}", "\\PC{0,4}"]
        }

        fn request() -> impl Strategy<Value = WriteRequest> {
            let label = (text(), text()).prop_map(|(name, value)| Label { name, value });
            let sample = (any::<f64>(), any::<i64>()).prop_map(|(value, timestamp)| Sample { value, timestamp });
            let series = (
                prop::collection::vec(label, 0..5),
                prop::collection::vec(sample, 0..4),
                prop::collection::vec(prop::collection::vec(any::<u8>(), 0..3), 0..2),
                prop::collection::vec(prop::collection::vec(any::<u8>(), 0..3), 0..2),
            )
                .prop_map(|(labels, samples, exemplars, histograms)| TimeSeries {
                    labels,
                    samples,
                    exemplars,
                    histograms,
                });
            prop::collection::vec(series, 0..4).prop_map(|timeseries| WriteRequest { timeseries })
        }

        fn agree(raw: &[u8]) -> Result<(), TestCaseError> {
            let reference = WriteRequest::decode(raw);
            let mut d = RemoteWriteDecoder::new();
            let ours = d.decode(&snappy_block(raw));
            prop_assert_eq!(ours.is_ok(), reference.is_ok(), "ours {:?}, prost {:?}", ours, reference);
            if let Ok(reference) = reference {
                let mut want = reference;
                for ts in &mut want.timeseries {
                    ts.exemplars.iter_mut().for_each(Vec::clear);
                    ts.histograms.iter_mut().for_each(Vec::clear);
                }
                let got = d.decoded();
                // Compare samples by bits: NaN != NaN.
                let bits = |r: &WriteRequest| -> Vec<Vec<(u64, i64)>> {
                    r.timeseries
                        .iter()
                        .map(|t| t.samples.iter().map(|s| (s.value.to_bits(), s.timestamp)).collect())
                        .collect()
                };
                prop_assert_eq!(bits(&got), bits(&want));
                let labels = |r: &WriteRequest| -> Vec<(Vec<Label>, usize, usize)> {
                    r.timeseries.iter().map(|t| (t.labels.clone(), t.exemplars.len(), t.histograms.len())).collect()
                };
                prop_assert_eq!(labels(&got), labels(&want));
            }
            Ok(())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]
            #[test]
            fn valid_requests(req in request()) {
                agree(&req.encode_to_vec())?;
            }

            #[test]
            fn truncated_and_flipped_requests(req in request(), cut in any::<prop::sample::Index>(), at in any::<prop::sample::Index>(), bits in 1u8..=255) {
                let raw = req.encode_to_vec();
                if !raw.is_empty() {
                    agree(&raw[..cut.index(raw.len())])?;
                    let mut flipped = raw.clone();
                    flipped[at.index(raw.len())] ^= bits;
                    agree(&flipped)?;
                }
            }

            #[test]
            fn arbitrary_bytes(raw in prop::collection::vec(any::<u8>(), 0..64)) {
                agree(&raw)?;
            }
        }
    }
}
