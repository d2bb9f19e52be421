//! The MetricsStream JSON batch API (`POST /api/v1/metrics`): a sans-IO,
//! zero-copy, streaming parser.
//!
//! ```text
//! {"client_id"?: str, "metrics": [{"name": str, "value": number, "timestamp"?: int ms, "tags"?: {str: str}}]}
//! ```
//!
//! Each metric becomes one record: measurement = `name`, one field `value`
//! (`Int` for integers that fit an `i64`, `UInt` for larger positive integers,
//! `Float` for anything written with a fraction or exponent), tags sorted by key,
//! timestamp milliseconds → nanoseconds (missing or `null` → `now_ns`).
//!
//! How it stays zero-copy and bounded: serde drives a hand-written visitor chain
//! (no intermediate `Vec` of metrics, no tag map) that borrows names, tag keys and
//! values from the body (`Cow::Borrowed` unless the JSON string had escapes) and
//! pushes each metric to the sink as soon as its object closes. Tags go into a
//! scratch vector owned by [`JsonBatchParser`] and reused across bodies.
//! [`JsonLimits`] caps metrics per body and tags per metric; serde_json's
//! recursion limit bounds nesting in ignored values.
//!
//! Semantics decided here:
//! - Unknown keys (top level and per metric) are ignored, for forward compatibility.
//! - A key repeated in the same object is an error, except inside `tags`,
//!   where (as in a JSON object read into a map) the last value wins.
//! - Tag values must be strings; a tag with an empty value is dropped (InfluxDB
//!   treats an empty tag value as an absent tag); an empty tag key is an error.
//! - `timestamp` must be an integer (ms); `1.5e12` is rejected, not rounded.
//! - A metric line protocol cannot carry (a control character in the name or a
//!   tag, a name or tag ending in a backslash, a name starting with `#`) is an
//!   error: the log stores every record as a line of line protocol
//!   ([`RecordRef::check_line`]), and InfluxDB refuses the same.
//!
//! The HTTP path calls [`JsonBatchParser::validate`] first (record count and
//! `client_id` for the rate limiter, errors for a whole-batch 400 without
//! touching a batch buffer), then [`JsonBatchParser::parse_into`].

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::line_protocol::recycle_vec;
use super::record::{sort_tags_last_wins, Discard, Field, FieldValue, RecordRef, RecordSink, Tag};

/// Caps that bound work and scratch memory per body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JsonLimits {
    pub max_metrics: usize,
    pub max_tags_per_metric: usize,
}

impl Default for JsonLimits {
    fn default() -> Self {
        JsonLimits { max_metrics: 100_000, max_tags_per_metric: 64 }
    }
}

/// What a successful pass found.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct JsonSummary<'a> {
    /// The batch's `client_id` (for the per-client limiter), borrowed from the body.
    pub client_id: Option<Cow<'a, str>>,
    /// Records counted (`validate`) or pushed (`parse_into`).
    pub records: usize,
}

/// An invalid body: where serde_json stopped, in which metric, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonSyntaxError {
    /// 1-based line and column of the error in the body (0 if unknown).
    pub line: usize,
    pub column: usize,
    /// Index in `metrics` of the metric being parsed, if any.
    pub metric_index: Option<usize>,
    pub message: String,
}

impl fmt::Display for JsonSyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.metric_index {
            Some(index) => write!(f, "metrics[{index}]: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for JsonSyntaxError {}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JsonBatchError {
    /// The body is not a valid batch (HTTP 400 with this message).
    #[error("{0}")]
    Invalid(JsonSyntaxError),
    /// The sink refused a record after `records` were pushed (backpressure).
    #[error("sink full after {records} records")]
    SinkFull { records: usize },
}

/// The reusable JSON batch parser: owns scratch space, holds no body.
#[derive(Debug, Default)]
pub struct JsonBatchParser {
    limits: JsonLimits,
    tags: Vec<Tag<'static>>,
}

impl JsonBatchParser {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_limits(limits: JsonLimits) -> Self {
        JsonBatchParser { limits, ..Self::default() }
    }

    /// Pass one for HTTP: checks the whole body, returns the record count and `client_id`.
    pub fn validate<'a>(&mut self, body: &'a [u8], now_ns: i64) -> Result<JsonSummary<'a>, JsonBatchError> {
        self.run(body, now_ns, &mut Discard)
    }

    /// Parses the body, pushing one record per metric. Records pushed before an
    /// error stay in the sink, so call [`validate`](Self::validate) first when a
    /// batch must be all-or-nothing.
    pub fn parse_into<'a, S: RecordSink + ?Sized>(
        &mut self,
        body: &'a [u8],
        now_ns: i64,
        sink: &mut S,
    ) -> Result<JsonSummary<'a>, JsonBatchError> {
        self.run(body, now_ns, sink)
    }

    fn run<'a, S: RecordSink + ?Sized>(
        &mut self,
        body: &'a [u8],
        now_ns: i64,
        sink: &mut S,
    ) -> Result<JsonSummary<'a>, JsonBatchError> {
        let mut tags: Vec<Tag<'a>> = recycle_vec(std::mem::take(&mut self.tags));
        let mut state = BatchState {
            tags: &mut tags,
            sink,
            now_ns,
            limits: self.limits,
            records: 0,
            metric_index: None,
            sink_full: false,
            client_id: None,
        };
        let mut deserializer = serde_json::Deserializer::from_slice(body);
        let result = BatchSeed(&mut state).deserialize(&mut deserializer).and_then(|()| deserializer.end());
        let outcome = match result {
            Ok(()) => Ok(JsonSummary { client_id: state.client_id.take(), records: state.records }),
            Err(_) if state.sink_full => Err(JsonBatchError::SinkFull { records: state.records }),
            Err(err) => Err(JsonBatchError::Invalid(JsonSyntaxError {
                line: err.line(),
                column: err.column(),
                metric_index: state.metric_index,
                message: err.to_string(),
            })),
        };
        tags.clear();
        self.tags = recycle_vec(tags);
        outcome
    }
}

struct BatchState<'s, 'a, S: ?Sized> {
    tags: &'s mut Vec<Tag<'a>>,
    sink: &'s mut S,
    now_ns: i64,
    limits: JsonLimits,
    records: usize,
    metric_index: Option<usize>,
    sink_full: bool,
    client_id: Option<Cow<'a, str>>,
}

/// A string borrowed from the body when it has no escapes. (serde's own
/// `Cow<str>` impl always allocates; `#[serde(borrow)]` only works in derives.)
struct BorrowedStr<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for BorrowedStr<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor;
        impl<'de> Visitor<'de> for StrVisitor {
            type Value = BorrowedStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(StrVisitor)
    }
}

/// A metric's `value`: any JSON number.
struct NumberValue(FieldValue<'static>);

impl<'de> de::Deserialize<'de> for NumberValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NumberVisitor;
        impl Visitor<'_> for NumberVisitor {
            type Value = NumberValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(NumberValue(FieldValue::Int(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(NumberValue(i64::try_from(v).map_or(FieldValue::UInt(v), FieldValue::Int)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                if !v.is_finite() {
                    return Err(E::custom("value is not a finite number"));
                }
                Ok(NumberValue(FieldValue::Float(v)))
            }
        }
        deserializer.deserialize_any(NumberVisitor)
    }
}

/// The top-level object.
struct BatchSeed<'p, 's, 'a, S: ?Sized>(&'p mut BatchState<'s, 'a, S>);

impl<'de, S: RecordSink + ?Sized> DeserializeSeed<'de> for BatchSeed<'_, '_, 'de, S> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, S: RecordSink + ?Sized> Visitor<'de> for BatchSeed<'_, '_, 'de, S> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a batch object {\"client_id\"?, \"metrics\": [...]}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let state = self.0;
        let (mut seen_client_id, mut seen_metrics) = (false, false);
        while let Some(key) = map.next_key::<BorrowedStr<'de>>()? {
            match key.0.as_ref() {
                "client_id" => {
                    if std::mem::replace(&mut seen_client_id, true) {
                        return Err(de::Error::duplicate_field("client_id"));
                    }
                    state.client_id = map.next_value::<Option<BorrowedStr<'de>>>()?.map(|s| s.0);
                }
                "metrics" => {
                    if std::mem::replace(&mut seen_metrics, true) {
                        return Err(de::Error::duplicate_field("metrics"));
                    }
                    map.next_value_seed(MetricsSeed(&mut *state))?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if !seen_metrics {
            return Err(de::Error::missing_field("metrics"));
        }
        Ok(())
    }
}

/// The `metrics` array.
struct MetricsSeed<'p, 's, 'a, S: ?Sized>(&'p mut BatchState<'s, 'a, S>);

impl<'de, S: RecordSink + ?Sized> DeserializeSeed<'de> for MetricsSeed<'_, '_, 'de, S> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, S: RecordSink + ?Sized> Visitor<'de> for MetricsSeed<'_, '_, 'de, S> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of metrics")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let state = self.0;
        let mut index = 0;
        loop {
            state.metric_index = Some(index);
            if index >= state.limits.max_metrics {
                // One more element would exceed the cap; an empty tail is fine.
                return match seq.next_element::<IgnoredAny>()? {
                    None => {
                        state.metric_index = None;
                        Ok(())
                    }
                    Some(_) => Err(de::Error::custom(format_args!(
                        "more than {} metrics in one batch",
                        state.limits.max_metrics
                    ))),
                };
            }
            if seq.next_element_seed(MetricSeed(&mut *state))?.is_none() {
                state.metric_index = None;
                return Ok(());
            }
            index += 1;
        }
    }
}

/// One metric object; pushes its record when the object closes.
struct MetricSeed<'p, 's, 'a, S: ?Sized>(&'p mut BatchState<'s, 'a, S>);

impl<'de, S: RecordSink + ?Sized> DeserializeSeed<'de> for MetricSeed<'_, '_, 'de, S> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, S: RecordSink + ?Sized> Visitor<'de> for MetricSeed<'_, '_, 'de, S> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a metric object {\"name\", \"value\", \"timestamp\"?, \"tags\"?}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let state = self.0;
        state.tags.clear();
        let mut name: Option<Cow<'de, str>> = None;
        let mut value: Option<FieldValue<'static>> = None;
        let mut timestamp_ms: Option<Option<i64>> = None;
        let mut seen_tags = false;
        while let Some(key) = map.next_key::<BorrowedStr<'de>>()? {
            match key.0.as_ref() {
                "name" => {
                    if name.is_some() {
                        return Err(de::Error::duplicate_field("name"));
                    }
                    name = Some(map.next_value::<BorrowedStr<'de>>()?.0);
                }
                "value" => {
                    if value.is_some() {
                        return Err(de::Error::duplicate_field("value"));
                    }
                    value = Some(map.next_value::<NumberValue>()?.0);
                }
                "timestamp" => {
                    if timestamp_ms.is_some() {
                        return Err(de::Error::duplicate_field("timestamp"));
                    }
                    timestamp_ms = Some(map.next_value::<Option<i64>>()?);
                }
                "tags" => {
                    if std::mem::replace(&mut seen_tags, true) {
                        return Err(de::Error::duplicate_field("tags"));
                    }
                    map.next_value_seed(TagsSeed { tags: &mut *state.tags, max: state.limits.max_tags_per_metric })?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let name = name.ok_or_else(|| de::Error::missing_field("name"))?;
        if name.is_empty() {
            return Err(de::Error::custom("empty metric name"));
        }
        let value = value.ok_or_else(|| de::Error::missing_field("value"))?;
        let timestamp_ns = match timestamp_ms.flatten() {
            Some(ms) => ms.checked_mul(1_000_000).ok_or_else(|| de::Error::custom("timestamp out of range"))?,
            None => state.now_ns,
        };
        sort_tags_last_wins(state.tags);
        let fields = [Field { key: Cow::Borrowed("value"), value }];
        let record = RecordRef { measurement: &name, tags: state.tags.as_slice(), fields: &fields, timestamp_ns };
        // The log stores every record as a line of line protocol: refuse
        // what it cannot carry here, in the validating pass, as a 400.
        if let Err(why) = record.check_line() {
            return Err(de::Error::custom(why));
        }
        if state.sink.push(&record).is_err() {
            state.sink_full = true;
            return Err(de::Error::custom("sink full"));
        }
        state.records += 1;
        Ok(())
    }
}

/// A metric's `tags` object (or `null`).
struct TagsSeed<'p, 'a> {
    tags: &'p mut Vec<Tag<'a>>,
    max: usize,
}

impl<'de> DeserializeSeed<'de> for TagsSeed<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for TagsSeed<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of string tags")
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<BorrowedStr<'de>>()? {
            let value = map.next_value::<BorrowedStr<'de>>()?;
            if key.0.is_empty() {
                return Err(de::Error::custom("empty tag key"));
            }
            if value.0.is_empty() {
                continue;
            }
            if self.tags.len() >= self.max {
                return Err(de::Error::custom(format_args!("more than {} tags", self.max)));
            }
            self.tags.push(Tag { key: key.0, value: value.0 });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::record::{tag, Record, SinkFull};

    const NOW: i64 = 1_700_000_000_000_000_000;

    fn parse(body: &str) -> Result<(Vec<Record>, Option<String>), JsonBatchError> {
        let mut parser = JsonBatchParser::new();
        let mut records = Vec::new();
        let summary = parser.parse_into(body.as_bytes(), NOW, &mut records)?;
        assert_eq!(summary.records, records.len());
        Ok((records, summary.client_id.map(|c| c.into_owned())))
    }

    fn invalid(body: &str) -> JsonSyntaxError {
        match JsonBatchParser::new().validate(body.as_bytes(), NOW) {
            Err(JsonBatchError::Invalid(e)) => e,
            other => panic!("expected invalid, got {other:?} for {body}"),
        }
    }

    #[test]
    fn full_batch() {
        let (records, client_id) = parse(
            r#"{"client_id": "c-1", "metrics": [
                {"name": "cpu", "value": 0.5, "timestamp": 1700000000123, "tags": {"host": "a", "dc": "x"}},
                {"name": "reqs", "value": 42},
                {"name": "big", "value": 18446744073709551615, "extra": [1, {"x": null}]}
            ]}"#,
        )
        .expect("valid");
        assert_eq!(client_id.as_deref(), Some("c-1"));
        assert_eq!(records.len(), 3);
        assert_eq!(records[0].measurement, "cpu");
        assert_eq!(records[0].tags, vec![tag("dc", "x"), tag("host", "a")]);
        assert_eq!(records[0].fields[0].key, "value");
        assert_eq!(records[0].fields[0].value, FieldValue::Float(0.5));
        assert_eq!(records[0].timestamp_ns, 1_700_000_000_123_000_000);
        assert_eq!(records[1].fields[0].value, FieldValue::Int(42));
        assert_eq!(records[1].timestamp_ns, NOW);
        assert_eq!(records[2].fields[0].value, FieldValue::UInt(u64::MAX));
    }

    #[test]
    fn client_id_optional_and_order_independent() {
        let (records, client_id) =
            parse(r#"{"metrics": [{"value": -1, "name": "m"}], "client_id": null}"#).expect("ok");
        assert_eq!(client_id, None);
        assert_eq!(records[0].fields[0].value, FieldValue::Int(-1));
        let (_, client_id) = parse(r#"{"metrics": [], "client_id": "late"}"#).expect("ok");
        assert_eq!(client_id.as_deref(), Some("late"));
    }

    #[test]
    fn text_is_borrowed_unless_escaped() {
        let body = br#"{"client_id":"c","metrics":[{"name":"cpu","value":1,"tags":{"h":"a","e":"x\"y"}}]}"#;
        struct Check;
        impl RecordSink for Check {
            fn push(&mut self, r: &RecordRef<'_, '_>) -> Result<(), SinkFull> {
                assert!(matches!(r.measurement, Cow::Borrowed(_)));
                assert_eq!(r.tags[0].value, "x\"y");
                assert!(matches!(r.tags[0].value, Cow::Owned(_)));
                assert!(matches!(r.tags[1].value, Cow::Borrowed(_)));
                Ok(())
            }
        }
        let summary = JsonBatchParser::new().parse_into(body, NOW, &mut Check).expect("ok");
        assert!(matches!(summary.client_id, Some(Cow::Borrowed("c"))));
    }

    #[test]
    fn duplicate_tags_last_wins_and_empty_values_dropped() {
        let (records, _) =
            parse(r#"{"metrics":[{"name":"m","value":1,"tags":{"b":"1","a":"x","b":"2","e":""}}]}"#).expect("ok");
        assert_eq!(records[0].tags, vec![tag("a", "x"), tag("b", "2")]);
    }

    #[test]
    fn errors_name_the_metric_and_position() {
        let e = invalid(r#"{"metrics":[{"name":"a","value":1},{"name":"b","value":"x"}]}"#);
        assert_eq!(e.metric_index, Some(1));
        assert_eq!(e.line, 1);
        assert!(e.to_string().starts_with("metrics[1]: invalid type: string \"x\", expected a number"), "{e}");
        assert!(invalid(r#"{"metrics":[{"value":1}]}"#).message.contains("missing field `name`"));
        assert!(invalid(r#"{"metrics":[{"name":"m"}]}"#).message.contains("missing field `value`"));
        assert!(invalid(r#"{"metrics":[{"name":"","value":1}]}"#).message.contains("empty metric name"));
        assert!(invalid(r#"{"metrics":[{"name":"m","value":1,"value":2}]}"#).message.contains("duplicate field"));
        assert!(invalid(r#"{"metrics":[{"name":"m","value":1,"timestamp":1.5}]}"#).message.contains("invalid type"));
        assert!(invalid(r#"{"metrics":[{"name":"m","value":1,"timestamp":9223372036854775807}]}"#)
            .message
            .contains("timestamp out of range"));
        assert!(invalid(r#"{"metrics":[{"name":"m","value":1,"tags":{"":"x"}}]}"#).message.contains("empty tag key"));
        assert!(invalid(r#"{"metrics":[{"name":"m","value":1,"tags":{"a":1}}]}"#).message.contains("invalid type"));
        assert!(invalid(r#"{"metrics":[{"name":"m","value":1e999}]}"#).message.contains("out of range"));
        // What line protocol cannot carry (the log stores lines).
        let e = invalid(r#"{"metrics":[{"name":"m","value":1},{"name":"m","value":1,"tags":{"e":"x\ty"}}]}"#);
        assert_eq!(e.metric_index, Some(1));
        assert!(e.message.contains("control character in tag value"), "{e}");
        assert!(invalid(r#"{"metrics":[{"name":"m\\","value":1}]}"#)
            .message
            .contains("measurement ends in a backslash"));
        assert!(invalid(r##"{"metrics":[{"name":"#m","value":1}]}"##).message.contains("starts with '#'"));
        assert!(invalid(r#"{"client_id":"x"}"#).message.contains("missing field `metrics`"));
        assert_eq!(invalid(r#"{"metrics":[]} x"#).metric_index, None);
        assert_eq!(invalid(r#"{"metrics":[{"name":"m","value":1},"#).metric_index, Some(1));
        assert!(invalid("[]").message.contains("expected a batch object"));
        assert_eq!(invalid("").line, 1);
    }

    #[test]
    fn limits_are_enforced() {
        let mut parser = JsonBatchParser::with_limits(JsonLimits { max_metrics: 2, max_tags_per_metric: 1 });
        let two = br#"{"metrics":[{"name":"a","value":1},{"name":"b","value":1}]}"#;
        assert_eq!(parser.validate(two, NOW).map(|s| s.records), Ok(2));
        let three = br#"{"metrics":[{"name":"a","value":1},{"name":"b","value":1},{"name":"c","value":1}]}"#;
        assert!(
            matches!(parser.validate(three, NOW), Err(JsonBatchError::Invalid(e)) if e.message.contains("more than 2 metrics"))
        );
        let tags = br#"{"metrics":[{"name":"a","value":1,"tags":{"x":"1","y":"2"}}]}"#;
        assert!(
            matches!(parser.validate(tags, NOW), Err(JsonBatchError::Invalid(e)) if e.message.contains("more than 1 tags"))
        );
    }

    #[test]
    fn sink_full_is_reported_as_backpressure() {
        struct Full;
        impl RecordSink for Full {
            fn push(&mut self, _r: &RecordRef<'_, '_>) -> Result<(), SinkFull> {
                Err(SinkFull)
            }
        }
        let body = br#"{"metrics":[{"name":"a","value":1}]}"#;
        assert_eq!(
            JsonBatchParser::new().parse_into(body, NOW, &mut Full),
            Err(JsonBatchError::SinkFull { records: 0 })
        );
    }

    #[test]
    fn scratch_is_reused() {
        let mut parser = JsonBatchParser::new();
        let body = br#"{"metrics":[{"name":"a","value":1,"tags":{"x":"1","y":"2"}}]}"#;
        let _ = parser.validate(body, NOW).expect("ok");
        let ptr = parser.tags.as_ptr();
        let _ = parser.validate(body.to_vec().as_slice(), NOW).expect("ok");
        assert_eq!(parser.tags.as_ptr(), ptr);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
                let mut records = Vec::new();
                let _ = JsonBatchParser::new().parse_into(&body, NOW, &mut records);
            }

            #[test]
            fn structured_batches_parse(metrics in proptest::collection::vec(
                // Names line protocol can carry: no trailing backslash.
                ("[a-z\"\\\\é]{0,7}[a-z\"é]", any::<i32>(), proptest::collection::btree_map("[a-z]{1,4}", "[a-z]{1,4}", 0..4)), 0..8)) {
                let batch = serde_json::json!({"metrics": metrics.iter().map(|(name, value, tags)| {
                    serde_json::json!({"name": name, "value": value, "tags": tags})
                }).collect::<Vec<_>>()});
                let body = serde_json::to_vec(&batch).expect("serializable");
                let (records, _) = parse(std::str::from_utf8(&body).expect("utf8")).expect("valid");
                prop_assert_eq!(records.len(), metrics.len());
                for (record, (name, value, tags)) in records.iter().zip(&metrics) {
                    prop_assert_eq!(record.measurement.as_ref(), name.as_str());
                    prop_assert_eq!(&record.fields[0].value, &FieldValue::Int(i64::from(*value)));
                    prop_assert_eq!(record.tags.len(), tags.len());
                }
            }
        }
    }
}
