//! StatsD and DogStatsD datagrams: a sans-IO, zero-copy parser.
//!
//! ```text
//! name:value[:value...]|type[|@sample_rate][|#tag1:v1,tag2][|T<unix_seconds>]
//! ```
//!
//! One datagram holds one metric per line (`\n`, `\r\n` accepted; empty lines
//! skipped). Types: `c` counter, `g` gauge, `ms` timer, `h` histogram, `s` set,
//! `d` distribution.
//!
//! Mapping to records (decided here, one record per value):
//! - measurement = `name`; field `value`: `Int` if the value is an integer that
//!   fits `i64`, else `Float`; for sets the member as a `Str`.
//! - tag `type` = `counter|gauge|timer|histogram|set|distribution`. It wins over
//!   a DogStatsD tag also called `type` (that one is dropped).
//! - Gauge deltas (`+5`, `-3`, as in Etsy StatsD) keep the signed value and add a
//!   field `delta=true`; absolute gauges have no `delta` field.
//! - `@rate` becomes a field `sample_rate` (Float, 0 < rate <= 1), only when
//!   present. A field, not a tag: it is a number and must not create series.
//! - DogStatsD tags become tags; `key:value` splits at the first `:`; a tag
//!   without a value (`#flag` or `#flag:`) gets the value `true` (as Telegraf's
//!   DogStatsD input does); empty entries (`#a:b,,c`) are skipped; a repeated
//!   key keeps its last value. Tags are sorted by key.
//! - `T<seconds>` sets the timestamp; otherwise `now_ns`.
//! - Multi-value (`name:1:2:3|ms`): one record per value, same tags/timestamp.
//! - Container-ID (`|c:...`) and external-data (`|e:...`) sections are ignored;
//!   any other section, events (`_e{`) and service checks (`_sc|`) make the
//!   line invalid.
//!
//! A malformed line is counted invalid and produces no record (all its values
//! are checked before any is pushed); the other lines are kept. So is a line
//! whose name or tags line protocol cannot carry (a control character such as
//! a tab, a trailing backslash, a name starting with `#`): the log stores
//! every record as a line of line protocol. No escapes exist
//! in StatsD, so all text is borrowed from the datagram.

use std::borrow::Cow;

use super::line_protocol::{is_float_literal, is_integer_literal, recycle_vec};
use super::record::{sort_tags_last_wins, Field, FieldValue, RecordRef, RecordSink, Tag};

/// Why one StatsD line was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StatsdErrorReason {
    #[error("invalid UTF-8")]
    InvalidUtf8,
    #[error("events and service checks are not metrics")]
    Unsupported,
    #[error("missing ':' and value")]
    MissingValue,
    #[error("empty metric name")]
    EmptyName,
    #[error("missing '|type'")]
    MissingType,
    #[error("unknown metric type")]
    UnknownType,
    #[error("invalid value")]
    InvalidValue,
    #[error("too many values")]
    TooManyValues,
    #[error("invalid sample rate")]
    InvalidSampleRate,
    #[error("invalid timestamp")]
    InvalidTimestamp,
    #[error("timestamp out of range")]
    TimestampOutOfRange,
    #[error("empty tag key")]
    EmptyTagKey,
    #[error("too many tags")]
    TooManyTags,
    #[error("unknown or repeated section")]
    BadSection,
    #[error("name or tag line protocol cannot carry (control character, trailing backslash or leading '#')")]
    NotLineProtocol,
}

/// One rejected line: its 1-based line number in the datagram, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct StatsdError {
    pub line: usize,
    pub reason: StatsdErrorReason,
}

/// What [`StatsdParser::parse_into`] did with a datagram.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct StatsdSummary {
    /// Records pushed into the sink.
    pub records: usize,
    /// Lines (metrics) rejected.
    pub invalid: usize,
    pub first_error: Option<StatsdError>,
    /// The sink refused a record: parsing stopped there. Records already pushed
    /// stay (possibly part of one multi-value line); the rest of the datagram is
    /// not parsed and the caller counts it as a backpressure drop.
    pub sink_full: bool,
}

/// Caps that bound scratch memory and work per line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatsdLimits {
    pub max_tags_per_metric: usize,
    pub max_values_per_metric: usize,
}

impl Default for StatsdLimits {
    fn default() -> Self {
        StatsdLimits { max_tags_per_metric: 64, max_values_per_metric: 1024 }
    }
}

/// The reusable StatsD parser: owns scratch space, holds no datagram.
#[derive(Debug, Default)]
pub struct StatsdParser {
    limits: StatsdLimits,
    tags: Vec<Tag<'static>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum MetricType {
    Counter,
    Gauge,
    Timer,
    Histogram,
    Set,
    Distribution,
}

impl MetricType {
    fn from_code(code: &str) -> Option<MetricType> {
        match code {
            "c" => Some(MetricType::Counter),
            "g" => Some(MetricType::Gauge),
            "ms" => Some(MetricType::Timer),
            "h" => Some(MetricType::Histogram),
            "s" => Some(MetricType::Set),
            "d" => Some(MetricType::Distribution),
            _ => None,
        }
    }

    fn tag_value(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Timer => "timer",
            MetricType::Histogram => "histogram",
            MetricType::Set => "set",
            MetricType::Distribution => "distribution",
        }
    }
}

/// A parsed line, values still as text (re-parsed when pushing, to avoid storage).
struct StatsdLine<'a> {
    name: &'a str,
    values: &'a str,
    metric_type: MetricType,
    sample_rate: Option<f64>,
    timestamp_ns: i64,
}

impl StatsdParser {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_limits(limits: StatsdLimits) -> Self {
        StatsdParser { limits, ..Self::default() }
    }

    /// Parses a datagram: valid lines go to `sink`, invalid ones are counted.
    pub fn parse_into<S: RecordSink + ?Sized>(&mut self, datagram: &[u8], now_ns: i64, sink: &mut S) -> StatsdSummary {
        let mut tags: Vec<Tag<'_>> = recycle_vec(std::mem::take(&mut self.tags));
        let mut summary = StatsdSummary::default();
        'lines: for (index, raw_line) in datagram.split(|&b| b == b'\n').enumerate() {
            let raw_line = raw_line.strip_suffix(b"\r").unwrap_or(raw_line);
            if raw_line.is_empty() {
                continue;
            }
            tags.clear();
            let line = match parse_line(raw_line, now_ns, &mut tags, self.limits) {
                Ok(line) => line,
                Err(reason) => {
                    summary.invalid += 1;
                    if summary.first_error.is_none() {
                        summary.first_error = Some(StatsdError { line: index + 1, reason });
                    }
                    continue;
                }
            };
            for (value_index, text) in line.values.split(':').enumerate() {
                // Checked in parse_line; a failure here would be a bug, so skip rather than panic.
                let Ok((value, is_delta)) = parse_value(text, line.metric_type) else {
                    continue;
                };
                let delta = || Field { key: Cow::Borrowed("delta"), value: FieldValue::Bool(true) };
                let rate = |r: f64| Field { key: Cow::Borrowed("sample_rate"), value: FieldValue::Float(r) };
                // Fields present, in order: value, delta (gauge deltas), sample_rate (if given).
                let (second, third, count) = match (is_delta, line.sample_rate) {
                    (false, None) => (delta(), rate(1.0), 1),
                    (true, None) => (delta(), rate(1.0), 2),
                    (false, Some(r)) => (rate(r), delta(), 2),
                    (true, Some(r)) => (delta(), rate(r), 3),
                };
                let fields = [Field { key: Cow::Borrowed("value"), value }, second, third];
                let record = RecordRef {
                    measurement: &Cow::Borrowed(line.name),
                    tags: &tags,
                    fields: fields.get(..count).unwrap_or(&[]),
                    timestamp_ns: line.timestamp_ns,
                };
                // The log stores records as lines of line protocol: a name or
                // tag it cannot carry makes the line invalid. Checked on the
                // first value, before anything of the line is pushed (the
                // values themselves, numbers and set members, always fit).
                if value_index == 0 && record.check_line().is_err() {
                    summary.invalid += 1;
                    if summary.first_error.is_none() {
                        summary.first_error =
                            Some(StatsdError { line: index + 1, reason: StatsdErrorReason::NotLineProtocol });
                    }
                    continue 'lines;
                }
                if sink.push(&record).is_err() {
                    summary.sink_full = true;
                    break 'lines;
                }
                summary.records += 1;
            }
        }
        tags.clear();
        self.tags = recycle_vec(tags);
        summary
    }
}

fn parse_line<'a>(
    raw_line: &'a [u8],
    now_ns: i64,
    tags: &mut Vec<Tag<'a>>,
    limits: StatsdLimits,
) -> Result<StatsdLine<'a>, StatsdErrorReason> {
    let line = std::str::from_utf8(raw_line).map_err(|_| StatsdErrorReason::InvalidUtf8)?;
    if line.starts_with("_e{") || line.starts_with("_sc|") {
        return Err(StatsdErrorReason::Unsupported);
    }
    let (name, rest) = line.split_once(':').ok_or(StatsdErrorReason::MissingValue)?;
    if name.is_empty() {
        return Err(StatsdErrorReason::EmptyName);
    }
    let mut sections = rest.split('|');
    let values = sections.next().unwrap_or("");
    let metric_type = sections
        .next()
        .ok_or(StatsdErrorReason::MissingType)
        .and_then(|code| MetricType::from_code(code).ok_or(StatsdErrorReason::UnknownType))?;

    let mut sample_rate = None;
    let mut timestamp_ns = None;
    let mut seen_tags = false;
    for section in sections {
        if let Some(rate) = section.strip_prefix('@') {
            if sample_rate.is_some() {
                return Err(StatsdErrorReason::BadSection);
            }
            sample_rate = Some(parse_sample_rate(rate)?);
        } else if let Some(tag_list) = section.strip_prefix('#') {
            if std::mem::replace(&mut seen_tags, true) {
                return Err(StatsdErrorReason::BadSection);
            }
            parse_tags(tag_list, tags, limits)?;
        } else if let Some(seconds) = section.strip_prefix('T') {
            if timestamp_ns.is_some() {
                return Err(StatsdErrorReason::BadSection);
            }
            if !is_integer_literal(seconds.as_bytes()) {
                return Err(StatsdErrorReason::InvalidTimestamp);
            }
            let seconds: i64 = seconds.parse().map_err(|_| StatsdErrorReason::TimestampOutOfRange)?;
            timestamp_ns = Some(seconds.checked_mul(1_000_000_000).ok_or(StatsdErrorReason::TimestampOutOfRange)?);
        } else if section.starts_with("c:") || section.starts_with("e:") {
            // DogStatsD container ID / external data: not part of the record.
        } else {
            return Err(StatsdErrorReason::BadSection);
        }
    }

    // The protocol's type tag wins over a user tag of the same name.
    tags.retain(|t| t.key != "type");
    tags.push(Tag { key: Cow::Borrowed("type"), value: Cow::Borrowed(metric_type.tag_value()) });
    sort_tags_last_wins(tags);

    let mut count = 0;
    for text in values.split(':') {
        count += 1;
        if count > limits.max_values_per_metric {
            return Err(StatsdErrorReason::TooManyValues);
        }
        parse_value(text, metric_type)?;
    }
    Ok(StatsdLine { name, values, metric_type, sample_rate, timestamp_ns: timestamp_ns.unwrap_or(now_ns) })
}

fn parse_sample_rate(text: &str) -> Result<f64, StatsdErrorReason> {
    if !is_float_literal(text.as_bytes()) {
        return Err(StatsdErrorReason::InvalidSampleRate);
    }
    match text.parse::<f64>() {
        Ok(rate) if rate > 0.0 && rate <= 1.0 => Ok(rate),
        _ => Err(StatsdErrorReason::InvalidSampleRate),
    }
}

fn parse_tags<'a>(list: &'a str, tags: &mut Vec<Tag<'a>>, limits: StatsdLimits) -> Result<(), StatsdErrorReason> {
    for entry in list.split(',') {
        if entry.is_empty() {
            continue;
        }
        let (key, value) = entry.split_once(':').unwrap_or((entry, ""));
        if key.is_empty() {
            return Err(StatsdErrorReason::EmptyTagKey);
        }
        let value = if value.is_empty() { "true" } else { value };
        // One slot stays free for the `type` tag.
        if tags.len() + 1 >= limits.max_tags_per_metric.max(1) {
            return Err(StatsdErrorReason::TooManyTags);
        }
        tags.push(Tag { key: Cow::Borrowed(key), value: Cow::Borrowed(value) });
    }
    Ok(())
}

/// One value of a line: `(value, is_gauge_delta)`.
fn parse_value(text: &str, metric_type: MetricType) -> Result<(FieldValue<'_>, bool), StatsdErrorReason> {
    if text.is_empty() {
        return Err(StatsdErrorReason::InvalidValue);
    }
    if metric_type == MetricType::Set {
        return Ok((FieldValue::Str(Cow::Borrowed(text)), false));
    }
    let is_delta = metric_type == MetricType::Gauge && (text.starts_with('+') || text.starts_with('-'));
    let number = if metric_type == MetricType::Gauge { text.strip_prefix('+').unwrap_or(text) } else { text };
    Ok((parse_number(number)?, is_delta))
}

fn parse_number(text: &str) -> Result<FieldValue<'static>, StatsdErrorReason> {
    if is_integer_literal(text.as_bytes()) {
        if let Ok(v) = text.parse::<i64>() {
            return Ok(FieldValue::Int(v));
        }
    }
    if !is_float_literal(text.as_bytes()) {
        return Err(StatsdErrorReason::InvalidValue);
    }
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(FieldValue::Float(v)),
        _ => Err(StatsdErrorReason::InvalidValue),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::record::{field, tag, Record, SinkFull};

    const NOW: i64 = 1_700_000_000_000_000_000;

    fn parse(datagram: &[u8]) -> (Vec<Record>, StatsdSummary) {
        let mut records = Vec::new();
        let summary = StatsdParser::new().parse_into(datagram, NOW, &mut records);
        assert_eq!(summary.records, records.len());
        (records, summary)
    }

    fn parse_one(datagram: &[u8]) -> Record {
        let (records, summary) = parse(datagram);
        assert_eq!(summary.first_error, None, "{}", String::from_utf8_lossy(datagram));
        assert_eq!(records.len(), 1);
        records.into_iter().next().expect("one")
    }

    fn reason(datagram: &[u8]) -> StatsdErrorReason {
        let (records, summary) = parse(datagram);
        assert!(records.is_empty(), "{}", String::from_utf8_lossy(datagram));
        summary.first_error.expect("error").reason
    }

    #[test]
    fn plain_counter() {
        let record = parse_one(b"page.views:1|c");
        //                      ^ name   ^ value ^ type
        assert_eq!(record.measurement, "page.views");
        assert_eq!(record.tags, vec![tag("type", "counter")]);
        assert_eq!(record.fields, vec![field("value", FieldValue::Int(1))]);
        assert_eq!(record.timestamp_ns, NOW);
    }

    #[test]
    fn every_type() {
        for (datagram, type_tag, value) in [
            (&b"a:-2|c"[..], "counter", FieldValue::Int(-2)),
            (b"a:3.5|g", "gauge", FieldValue::Float(3.5)),
            (b"a:320|ms", "timer", FieldValue::Int(320)),
            (b"a:1e3|h", "histogram", FieldValue::Float(1000.0)),
            (b"a:user42|s", "set", FieldValue::Str("user42".into())),
            (b"a:0.25|d", "distribution", FieldValue::Float(0.25)),
        ] {
            let record = parse_one(datagram);
            assert_eq!(record.tags, vec![tag("type", type_tag)]);
            assert_eq!(record.fields[0].value, value);
        }
    }

    #[test]
    fn dogstatsd_sections() {
        let record = parse_one(b"req.latency:12.5|h|@0.5|#env:prod,flag,url:http://x,b:1,b:2|T1700000000|c:abc");
        //                      ^ name      ^ value ^ rate ^ tags: bare flag, ':' in value, dup b ^ ts ^ container id
        assert_eq!(
            record.tags,
            vec![
                tag("b", "2"),
                tag("env", "prod"),
                tag("flag", "true"),
                tag("type", "histogram"),
                tag("url", "http://x")
            ]
        );
        assert_eq!(
            record.fields,
            vec![field("value", FieldValue::Float(12.5)), field("sample_rate", FieldValue::Float(0.5))]
        );
        assert_eq!(record.timestamp_ns, 1_700_000_000_000_000_000);
    }

    #[test]
    fn gauge_deltas_are_flagged() {
        assert_eq!(
            parse_one(b"g:+4|g").fields,
            vec![field("value", FieldValue::Int(4)), field("delta", FieldValue::Bool(true))]
        );
        assert_eq!(
            parse_one(b"g:-4|g|@0.1").fields,
            vec![
                field("value", FieldValue::Int(-4)),
                field("delta", FieldValue::Bool(true)),
                field("sample_rate", FieldValue::Float(0.1))
            ]
        );
        assert_eq!(parse_one(b"g:4|g").fields, vec![field("value", FieldValue::Int(4))]);
        // '+' is only a gauge thing.
        assert_eq!(reason(b"c:+4|c"), StatsdErrorReason::InvalidValue);
    }

    #[test]
    fn multi_value_and_multi_line() {
        let (records, summary) = parse(b"t:1:2.5:3|ms|@0.5\r\n\nbad\nc:1|c|#type:mine\n");
        assert_eq!((summary.records, summary.invalid), (4, 1));
        assert_eq!(summary.first_error, Some(StatsdError { line: 3, reason: StatsdErrorReason::MissingValue }));
        let values: Vec<_> = records.iter().map(|r| r.fields[0].value.clone()).collect();
        assert_eq!(values[..3], [FieldValue::Int(1), FieldValue::Float(2.5), FieldValue::Int(3)]);
        assert!(records[..3].iter().all(|r| r.fields[1] == field("sample_rate", FieldValue::Float(0.5))));
        // The protocol's type tag beats a user tag called `type`.
        assert_eq!(records[3].tags, vec![tag("type", "counter")]);
    }

    #[test]
    fn a_bad_value_rejects_the_whole_line() {
        let (records, summary) = parse(b"t:1:x:3|ms\nok:1|c");
        assert_eq!(records.len(), 1);
        assert_eq!(summary.first_error, Some(StatsdError { line: 1, reason: StatsdErrorReason::InvalidValue }));
    }

    #[test]
    fn malformed_lines() {
        assert_eq!(reason(b"novalue"), StatsdErrorReason::MissingValue);
        assert_eq!(reason(b":1|c"), StatsdErrorReason::EmptyName);
        assert_eq!(reason(b"a:1"), StatsdErrorReason::MissingType);
        assert_eq!(reason(b"a:1|x"), StatsdErrorReason::UnknownType);
        assert_eq!(reason(b"a:|c"), StatsdErrorReason::InvalidValue);
        assert_eq!(reason(b"a:1::2|c"), StatsdErrorReason::InvalidValue);
        assert_eq!(reason(b"a:NaN|g"), StatsdErrorReason::InvalidValue);
        assert_eq!(reason(b"a:1e999|g"), StatsdErrorReason::InvalidValue);
        assert_eq!(reason(b"a:1|c|@0"), StatsdErrorReason::InvalidSampleRate);
        assert_eq!(reason(b"a:1|c|@1.5"), StatsdErrorReason::InvalidSampleRate);
        assert_eq!(reason(b"a:1|c|@x"), StatsdErrorReason::InvalidSampleRate);
        assert_eq!(reason(b"a:1|c|@0.5|@0.5"), StatsdErrorReason::BadSection);
        assert_eq!(reason(b"a:1|c|Tx"), StatsdErrorReason::InvalidTimestamp);
        assert_eq!(reason(b"a:1|c|T99999999999999999"), StatsdErrorReason::TimestampOutOfRange);
        assert_eq!(reason(b"a:1|c|#:v"), StatsdErrorReason::EmptyTagKey);
        assert_eq!(reason(b"a:1|c|zzz"), StatsdErrorReason::BadSection);
        assert_eq!(reason(b"a:1|c|"), StatsdErrorReason::BadSection);
        assert_eq!(reason(b"_e{5,4}:title|text"), StatsdErrorReason::Unsupported);
        assert_eq!(reason(b"_sc|svc|0"), StatsdErrorReason::Unsupported);
        assert_eq!(reason(b"a\xff:1|c"), StatsdErrorReason::InvalidUtf8);
        // Names and tags line protocol cannot carry (the log stores lines).
        assert_eq!(reason(b"a\tb:1|c"), StatsdErrorReason::NotLineProtocol);
        assert_eq!(reason(b"a:1:2|ms|#k:v\\"), StatsdErrorReason::NotLineProtocol);
        assert_eq!(reason(b"#a:1|c"), StatsdErrorReason::NotLineProtocol);
        // Spaces, commas and `=` are escaped, not refused.
        assert_eq!(parse(b"a b,c=d:1|c|#k:v w").1.invalid, 0);
    }

    #[test]
    fn limits() {
        let mut parser = StatsdParser::with_limits(StatsdLimits { max_tags_per_metric: 2, max_values_per_metric: 2 });
        let mut records = Vec::new();
        let s = parser.parse_into(b"a:1:2:3|ms\nb:1|c|#x:1,y:2\nc:1:2|ms|#x:1", NOW, &mut records);
        assert_eq!((s.records, s.invalid), (2, 2));
        assert_eq!(s.first_error, Some(StatsdError { line: 1, reason: StatsdErrorReason::TooManyValues }));
    }

    #[test]
    fn sink_full_stops() {
        struct Room(usize);
        impl RecordSink for Room {
            fn push(&mut self, _r: &RecordRef<'_, '_>) -> Result<(), SinkFull> {
                if self.0 == 0 {
                    return Err(SinkFull);
                }
                self.0 -= 1;
                Ok(())
            }
        }
        let s = StatsdParser::new().parse_into(b"a:1:2:3|ms\nb:1|c", NOW, &mut Room(2));
        assert_eq!((s.records, s.sink_full), (2, true));
    }

    #[test]
    fn text_is_borrowed() {
        struct Check;
        impl RecordSink for Check {
            fn push(&mut self, r: &RecordRef<'_, '_>) -> Result<(), SinkFull> {
                assert!(matches!(r.measurement, Cow::Borrowed(_)));
                assert!(r.tags.iter().all(|t| matches!(t.value, Cow::Borrowed(_))));
                Ok(())
            }
        }
        let s = StatsdParser::new().parse_into(b"a:1|c|#k:v", NOW, &mut Check);
        assert_eq!(s.records, 1);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn arbitrary_bytes_never_panic(datagram in proptest::collection::vec(any::<u8>(), 0..256)) {
                let (records, summary) = parse(&datagram);
                prop_assert!(summary.invalid <= datagram.len());
                prop_assert!(records.len() <= datagram.len());
            }

            #[test]
            fn statsd_shaped_text_never_panics(datagram in "([a-z.]{0,6}(:[-+0-9.e]{0,4}){0,3}(\\|(c|g|ms|h|s|d|@[0-9.]{0,4}|#[a-z:,]{0,8}|T[0-9-]{0,12}|x)){0,4}\r?\n){1,4}") {
                let (records, _) = parse(datagram.as_bytes());
                for record in records {
                    prop_assert!(!record.measurement.is_empty());
                    prop_assert!(record.tags.windows(2).all(|w| w[0].key < w[1].key));
                }
            }
        }
    }
}
