//! The record model shared by the parsers (producers) and the writer (consumer).
//!
//! Parsers are zero-copy: text borrows from the input buffer (`Cow::Borrowed`)
//! and is only owned when the input had escapes that had to be undone. A parser
//! hands each record to a [`RecordSink`] as a [`RecordRef`] whose tag and field
//! slices live in the parser's reusable scratch space, so the steady state
//! allocates nothing per record. The writer encodes what it is handed into
//! recycled batch buffers; [`Record`] is the owned form for tests, `dump` and
//! decoding.

use std::borrow::Cow;

/// A typed field value, as in InfluxDB line protocol.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldValue<'a> {
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
    Str(Cow<'a, str>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tag<'a> {
    pub key: Cow<'a, str>,
    pub value: Cow<'a, str>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Field<'a> {
    pub key: Cow<'a, str>,
    pub value: FieldValue<'a>,
}

/// One record, borrowed. Invariants a producer guarantees: `tags` sorted by key
/// (byte order) with no duplicate keys, `fields` non-empty, measurement non-empty,
/// `timestamp_ns` resolved (the parser applies precision and the caller's `now`).
#[derive(Clone, Copy, Debug)]
pub struct RecordRef<'r, 'a> {
    pub measurement: &'r Cow<'a, str>,
    pub tags: &'r [Tag<'a>],
    pub fields: &'r [Field<'a>],
    pub timestamp_ns: i64,
}

/// One record, owned.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub measurement: Cow<'static, str>,
    pub tags: Vec<Tag<'static>>,
    pub fields: Vec<Field<'static>>,
    pub timestamp_ns: i64,
}

impl Record {
    pub fn as_ref(&self) -> RecordRef<'_, 'static> {
        RecordRef {
            measurement: &self.measurement,
            tags: &self.tags,
            fields: &self.fields,
            timestamp_ns: self.timestamp_ns,
        }
    }
}

impl RecordRef<'_, '_> {
    pub fn to_owned_record(&self) -> Record {
        fn own(c: &str) -> Cow<'static, str> {
            Cow::Owned(c.to_string())
        }
        Record {
            measurement: own(self.measurement),
            tags: self.tags.iter().map(|t| Tag { key: own(&t.key), value: own(&t.value) }).collect(),
            fields: self
                .fields
                .iter()
                .map(|f| Field {
                    key: own(&f.key),
                    value: match &f.value {
                        FieldValue::Int(v) => FieldValue::Int(*v),
                        FieldValue::UInt(v) => FieldValue::UInt(*v),
                        FieldValue::Float(v) => FieldValue::Float(*v),
                        FieldValue::Bool(v) => FieldValue::Bool(*v),
                        FieldValue::Str(s) => FieldValue::Str(own(s)),
                    },
                })
                .collect(),
            timestamp_ns: self.timestamp_ns,
        }
    }
}

/// Sorts tags by key (byte order, stable) and keeps the last value of each run
/// of equal keys: the tag rule of the JSON API and DogStatsD (as a JSON object
/// read into a map). Line protocol rejects duplicate tags instead.
#[inline]
pub(crate) fn sort_tags_last_wins(tags: &mut Vec<Tag<'_>>) {
    if tags.windows(2).any(|w| w[0].key.as_bytes() >= w[1].key.as_bytes()) {
        tags.sort_by(|a, b| a.key.as_bytes().cmp(b.key.as_bytes()));
        // `later` is removed; move its value into the kept earlier element.
        tags.dedup_by(|later, earlier| {
            let same = later.key == earlier.key;
            if same {
                std::mem::swap(&mut later.value, &mut earlier.value);
            }
            same
        });
    }
}

/// Owned tags and fields for the parsers' unit tests.
#[cfg(test)]
pub(crate) fn tag(key: &str, value: &str) -> Tag<'static> {
    Tag { key: Cow::Owned(key.into()), value: Cow::Owned(value.into()) }
}

#[cfg(test)]
pub(crate) fn field(key: &str, value: FieldValue<'static>) -> Field<'static> {
    Field { key: Cow::Owned(key.into()), value }
}

/// Where parsers put records. `Err` means the sink cannot take more (a full
/// batch/channel): the parser stops and reports how far it got.
pub trait RecordSink {
    fn push(&mut self, record: &RecordRef<'_, '_>) -> Result<(), SinkFull>;
}

/// The sink refused a record because it has no room (backpressure).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SinkFull;

/// A sink that takes every record and keeps nothing: validation passes and
/// counting what a refused datagram carried.
#[derive(Clone, Copy, Debug, Default)]
pub struct Discard;

impl RecordSink for Discard {
    fn push(&mut self, _record: &RecordRef<'_, '_>) -> Result<(), SinkFull> {
        Ok(())
    }
}

/// A sink that keeps owned copies; for tests and tools, not the datapath.
impl RecordSink for Vec<Record> {
    fn push(&mut self, record: &RecordRef<'_, '_>) -> Result<(), SinkFull> {
        Vec::push(self, record.to_owned_record());
        Ok(())
    }
}
