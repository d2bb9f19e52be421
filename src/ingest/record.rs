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
use std::fmt;

use super::line_index::{Element, FieldKind};

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

/// Why a record cannot be stored as a line of line protocol (the segment
/// log's record format, and what the shipper forwards): line protocol has no
/// escape for these, so the line would read back as something else.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unrepresentable {
    #[error("empty {0}")]
    Empty(LineElement),
    #[error("control character in {0} (line protocol refuses them there)")]
    ControlCharacter(LineElement),
    #[error("{0} ends in a backslash (line protocol would read it as an escape)")]
    TrailingBackslash(LineElement),
    #[error("measurement starts with '#' (line protocol would read a comment)")]
    CommentMeasurement,
    #[error("tags not sorted by key, or a duplicate tag key")]
    UnsortedTags,
    #[error("no fields")]
    NoFields,
    #[error("a field key occurs twice")]
    DuplicateFieldKey,
    #[error("non-finite float field value")]
    NonFiniteFloat,
}

/// The text elements of a line, for [`Unrepresentable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LineElement {
    Measurement,
    TagKey,
    TagValue,
    FieldKey,
}

impl fmt::Display for LineElement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LineElement::Measurement => "measurement",
            LineElement::TagKey => "tag key",
            LineElement::TagValue => "tag value",
            LineElement::FieldKey => "field key",
        })
    }
}

impl LineElement {
    /// The grammar's element (which bytes a backslash escapes there).
    fn grammar(self) -> Element {
        match self {
            LineElement::Measurement => Element::Measurement,
            LineElement::TagKey => Element::TagKey,
            LineElement::TagValue => Element::TagValue,
            LineElement::FieldKey => Element::FieldKey,
        }
    }
}

/// What writing a record as a line found out (for the stored record's header).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LineFacts {
    /// A backslash escape was written.
    pub escapes: bool,
    /// Which field types occur: bit `k as u8` per [`FieldKind`] `k`.
    pub field_kinds: u8,
}

/// Where [`RecordRef::write_line`] puts bytes: a buffer, or nowhere
/// ([`RecordRef::check_line`], which runs the same code so the check and the
/// writer cannot disagree).
trait LineOut {
    fn bytes(&mut self, bytes: &[u8]);
    fn byte(&mut self, b: u8);
    fn int(&mut self, v: i64);
    fn uint(&mut self, v: u64);
    fn float(&mut self, v: f64);
}

impl LineOut for Vec<u8> {
    #[inline]
    fn bytes(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
    #[inline]
    fn byte(&mut self, b: u8) {
        self.push(b);
    }
    fn int(&mut self, v: i64) {
        if v < 0 {
            self.push(b'-');
        }
        self.uint(v.unsigned_abs());
    }
    fn uint(&mut self, mut v: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.extend_from_slice(digits.get(i..).unwrap_or(&[]));
    }
    fn float(&mut self, v: f64) {
        use std::io::Write as _;
        // `{:?}` is the shortest text that reads back as the same f64, and is
        // always in the grammar's float form (`1.0`, `0.25`, `1e300`, `-5e-324`).
        let _ = write!(self, "{v:?}");
    }
}

/// Writes nothing: [`RecordRef::check_line`].
struct NoOutput;

impl LineOut for NoOutput {
    fn bytes(&mut self, _: &[u8]) {}
    fn byte(&mut self, _: u8) {}
    fn int(&mut self, _: i64) {}
    fn uint(&mut self, _: u64) {}
    fn float(&mut self, _: f64) {}
}

/// Writes `text` escaped for `element`, checking what the grammar refuses.
#[inline]
fn escaped_name(out: &mut impl LineOut, text: &str, element: LineElement) -> Result<bool, Unrepresentable> {
    let bytes = text.as_bytes();
    match bytes.last() {
        None => return Err(Unrepresentable::Empty(element)),
        Some(b'\\') => return Err(Unrepresentable::TrailingBackslash(element)),
        Some(_) => {}
    }
    let grammar = element.grammar();
    let mut escapes = false;
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b < 0x20 || b == 0x7f {
            return Err(Unrepresentable::ControlCharacter(element));
        }
        if grammar.escapes(b) {
            out.bytes(bytes.get(run..i).unwrap_or(&[]));
            out.byte(b'\\');
            run = i;
            escapes = true;
        }
    }
    out.bytes(bytes.get(run..).unwrap_or(&[]));
    Ok(escapes)
}

/// Writes a string field value's text escaped (`"` and `\`); any byte may occur.
#[inline]
fn escaped_string(out: &mut impl LineOut, text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut escapes = false;
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if Element::StringValue.escapes(b) {
            out.bytes(bytes.get(run..i).unwrap_or(&[]));
            out.byte(b'\\');
            run = i;
            escapes = true;
        }
    }
    out.bytes(bytes.get(run..).unwrap_or(&[]));
    escapes
}

impl RecordRef<'_, '_> {
    /// Appends the record as one line of line protocol without its timestamp
    /// (`measurement[,tag=value...] field=value[,field=value...]`, escaped so
    /// that [`LineIndexer`](super::line_index::LineIndexer) reads back exactly
    /// this record), or says why it cannot. On error `out` may hold part of
    /// the line: the caller truncates it.
    pub fn write_line(&self, out: &mut Vec<u8>) -> Result<LineFacts, Unrepresentable> {
        self.line(out)
    }

    /// Whether [`write_line`](Self::write_line) would succeed (the same code,
    /// writing nothing): parsers of other protocols refuse such records
    /// up front, as line protocol itself would.
    pub fn check_line(&self) -> Result<LineFacts, Unrepresentable> {
        self.line(&mut NoOutput)
    }

    fn line(&self, out: &mut impl LineOut) -> Result<LineFacts, Unrepresentable> {
        if self.measurement.starts_with('#') {
            return Err(Unrepresentable::CommentMeasurement);
        }
        let mut facts = LineFacts::default();
        facts.escapes |= escaped_name(out, self.measurement, LineElement::Measurement)?;
        if !self.tags.windows(2).all(|w| w[0].key.as_bytes() < w[1].key.as_bytes()) {
            return Err(Unrepresentable::UnsortedTags);
        }
        for tag in self.tags {
            out.byte(b',');
            facts.escapes |= escaped_name(out, &tag.key, LineElement::TagKey)?;
            out.byte(b'=');
            facts.escapes |= escaped_name(out, &tag.value, LineElement::TagValue)?;
        }
        if self.fields.is_empty() {
            return Err(Unrepresentable::NoFields);
        }
        // Records of other protocols carry a handful of fields (JSON one,
        // StatsD up to three): pairs are cheaper than any index.
        if self
            .fields
            .iter()
            .enumerate()
            .any(|(i, f)| self.fields.get(i + 1..).unwrap_or(&[]).iter().any(|g| g.key == f.key))
        {
            return Err(Unrepresentable::DuplicateFieldKey);
        }
        for (i, field) in self.fields.iter().enumerate() {
            out.byte(if i == 0 { b' ' } else { b',' });
            facts.escapes |= escaped_name(out, &field.key, LineElement::FieldKey)?;
            out.byte(b'=');
            let kind = match &field.value {
                FieldValue::Float(v) if !v.is_finite() => return Err(Unrepresentable::NonFiniteFloat),
                FieldValue::Float(v) => {
                    out.float(*v);
                    FieldKind::Float
                }
                FieldValue::Int(v) => {
                    out.int(*v);
                    out.byte(b'i');
                    FieldKind::Int
                }
                FieldValue::UInt(v) => {
                    out.uint(*v);
                    out.byte(b'u');
                    FieldKind::UInt
                }
                FieldValue::Bool(v) => {
                    out.bytes(if *v { b"true" } else { b"false" });
                    FieldKind::Bool
                }
                FieldValue::Str(s) => {
                    out.byte(b'"');
                    facts.escapes |= escaped_string(out, s);
                    out.byte(b'"');
                    FieldKind::Str
                }
            };
            facts.field_kinds |= 1 << kind as u8;
        }
        Ok(facts)
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
