//! One-pass line-protocol validation and indexing on the structural scanner.
//!
//! This module owns the line-protocol grammar as the appliance will store it:
//! [`LineIndexer`] walks a body's structural bytes ([`super::structural`]) once,
//! validates every line and hands each valid one to the caller as an
//! [`IndexedLine`]: the line's bytes as received, where its series (measurement
//! and tags), field set and timestamp are, every element's span and whether it
//! holds escapes, each field's type (type-checked here; values are converted
//! only when asked), the timestamp in nanoseconds (scaled by the request's
//! [`Precision`]; a missing one becomes the caller's `now_ns`: no clock here) and
//! whether the line needs canonicalising before it is stored (tags not sorted
//! by key, a duplicate field key). Nothing is copied or unescaped unless an
//! accessor is asked to.
//!
//! Grammar (InfluxDB's line-protocol reference and its Go decoder,
//! `influxdata/line-protocol/v2`; `tests/lp_conformance.rs` holds it against
//! the `influxdb-line-protocol` crate and lists every intended difference):
//! - A backslash escapes only the characters listed for its element:
//!   measurement `,` and space; tag keys, tag values and field keys `,` `=` and
//!   space; string field values `"` and `\`. Any other backslash is an ordinary
//!   character, so `a\\,b` in a tag value is `a\` followed by an escaped comma.
//! - Control characters (0x00-0x1f, 0x7f; tab and a `\r` that does not end the
//!   line included) are refused in measurements, keys and tag values, and
//!   anywhere else outside a string field value. String values may hold any
//!   byte, raw newlines included (the record then spans physical lines).
//! - Tags sorted by key are stored as they are; unsorted ones set
//!   [`LineFlags::tags_unsorted`]. A duplicate tag key is an error. A duplicate
//!   field key sets [`LineFlags::duplicate_fields`] (the last value wins when
//!   the line is canonicalised).
//! - Floats `-?(digits[.digits]|.digits)([eE][+-]?digits)?` and finite; `i`
//!   integers in i64, `u` integers in u64; booleans `t T true True TRUE f F
//!   false False FALSE`; timestamps `-?digits` in i64 after scaling.
//! - `#` lines are comments, blank lines are skipped, leading spaces and tabs
//!   are skipped, `\r\n` ends a line like `\n`, spaces may follow the field set
//!   or the timestamp. Errors name the 1-based physical line where the record
//!   starts; after an error, indexing resumes on the next physical line.
//!
//! Memory: the tag, field and sort scratch live in the indexer and are reused;
//! [`LineProtocolLimits`] caps them on any input, so the steady state allocates
//! nothing.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::ops::Range;

use super::line_protocol::{BatchError, BodyPosition, LineError, LineErrorReason, LineProtocolLimits, Precision};
use super::record::FieldValue;
use super::structural::{Classifier, StructuralCursor};

/// The reason reported for a control character in a name or between elements.
///
/// `LineErrorReason` has no variant for it yet (its module is being split on
/// another branch); the integration should add `ControlCharacter` there and
/// use it here. Until then the closest existing reason: a byte the grammar
/// does not accept as text.
pub const CONTROL_CHARACTER: LineErrorReason = LineErrorReason::InvalidUtf8;

/// The element a span belongs to: decides which bytes a backslash escapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Element {
    Measurement,
    TagKey,
    TagValue,
    FieldKey,
    /// The text between the quotes of a string field value.
    StringValue,
}

impl Element {
    /// Whether a backslash before `b` is an escape in this element (else the
    /// backslash is an ordinary character).
    #[inline(always)]
    pub const fn escapes(self, b: u8) -> bool {
        match self {
            Element::Measurement => matches!(b, b',' | b' '),
            Element::TagKey | Element::TagValue | Element::FieldKey => matches!(b, b',' | b'=' | b' '),
            Element::StringValue => matches!(b, b'"' | b'\\'),
        }
    }
}

/// A field value's type (validated; the value itself is converted on demand).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FieldKind {
    Float = 0,
    Int = 1,
    UInt = 2,
    Bool = 3,
    Str = 4,
}

/// Which field types a line holds: one bit per [`FieldKind`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FieldKinds(u8);

impl FieldKinds {
    pub fn contains(self, kind: FieldKind) -> bool {
        self.0 & (1 << kind as u8) != 0
    }

    /// The raw bit set (bit `k` = a field of kind `k as u8`), for a record header.
    pub fn bits(self) -> u8 {
        self.0
    }

    fn insert(&mut self, kind: FieldKind) {
        self.0 |= 1 << kind as u8;
    }
}

/// Per-line facts a stored record or the canonicaliser needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LineFlags(u8);

impl LineFlags {
    const HAS_ESCAPES: u8 = 1;
    const TAGS_UNSORTED: u8 = 2;
    const DUPLICATE_FIELDS: u8 = 4;
    const HAD_TIMESTAMP: u8 = 8;

    /// Some element (name, key, tag value or string value) holds an escape.
    pub fn has_escapes(self) -> bool {
        self.0 & Self::HAS_ESCAPES != 0
    }

    /// Tag keys are not in increasing byte order (of their unescaped text).
    pub fn tags_unsorted(self) -> bool {
        self.0 & Self::TAGS_UNSORTED != 0
    }

    /// Some field key appears more than once.
    pub fn duplicate_fields(self) -> bool {
        self.0 & Self::DUPLICATE_FIELDS != 0
    }

    /// The line carried its own timestamp (else `timestamp_ns` is `now_ns`).
    pub fn had_timestamp(self) -> bool {
        self.0 & Self::HAD_TIMESTAMP != 0
    }

    /// The stored bytes differ from the canonical record's: tags to sort or
    /// fields to deduplicate (a missing timestamp is told by `had_timestamp`).
    pub fn needs_canonical(self) -> bool {
        self.0 & (Self::TAGS_UNSORTED | Self::DUPLICATE_FIELDS) != 0
    }

    /// The raw bit set, for a record header.
    pub fn bits(self) -> u8 {
        self.0
    }

    fn set(&mut self, bit: u8) {
        self.0 |= bit;
    }
}

/// Body offsets of one element and whether it holds an escape.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Span {
    start: usize,
    end: usize,
    escaped: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct TagSpan {
    key: Span,
    value: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FieldSpan {
    key: Span,
    /// The value token (for a string: the text between the quotes).
    value: Span,
    kind: FieldKind,
}

/// How a body with bad lines is handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadLines {
    /// HTTP: the first bad line ends the hand-over (the caller rolls back what
    /// it took); the rest is only validated, to count bad and valid lines.
    RejectBatch,
    /// UDP: bad lines are counted and skipped, valid ones handed over.
    Skip,
}

/// What [`LineIndexer::index_from`] did with a body.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct BodySummary {
    /// Lines handed to the callback and taken.
    pub lines: usize,
    /// Valid lines that were not handed over (after a bad line, in
    /// [`BadLines::RejectBatch`] mode).
    pub valid_not_handed: usize,
    /// Bad lines.
    pub bad_lines: usize,
    /// The first bad line.
    pub first_error: Option<LineError>,
    /// Lines taken that need canonicalising ([`LineFlags::needs_canonical`]).
    pub needs_canonical: usize,
    /// `Some` when the callback refused a line: nothing from there on was taken;
    /// index again from this position after making room.
    pub resume_at: Option<BodyPosition>,
}

impl BodySummary {
    /// The HTTP verdict: the batch error if any line was bad.
    pub fn batch_error(&self) -> Option<BatchError> {
        self.first_error.map(|first| BatchError {
            first_line: first.line,
            first_reason: first.reason,
            bad_lines: self.bad_lines,
            valid_lines: self.lines + self.valid_not_handed,
        })
    }
}

/// The reusable indexer: owns scratch space and the chosen kernel, holds no body.
#[derive(Debug, Default)]
pub struct LineIndexer {
    limits: LineProtocolLimits,
    classifier: Classifier,
    tags: Vec<TagSpan>,
    fields: Vec<FieldSpan>,
    /// Index scratch for duplicate checks of large tag and field sets.
    order: Vec<u32>,
}

impl LineIndexer {
    /// The default limits and the fastest kernel of this CPU.
    pub fn new() -> LineIndexer {
        LineIndexer::default()
    }

    pub fn with_limits(limits: LineProtocolLimits) -> LineIndexer {
        LineIndexer { limits, ..LineIndexer::default() }
    }

    /// A specific kernel (tests and benchmarks compare the levels).
    pub fn with_classifier(limits: LineProtocolLimits, classifier: Classifier) -> LineIndexer {
        LineIndexer { limits, classifier, ..LineIndexer::default() }
    }

    pub fn classifier(&self) -> Classifier {
        self.classifier
    }

    /// HTTP: every line of `body` handed to `on_line` while all are valid;
    /// `Err` names the first bad line, its reason and the counts (the caller
    /// rolls back the lines it took). `on_line` returns `false` to refuse a
    /// line (no room): indexing stops and `resume_at` says where to go on.
    pub fn index_batch<F>(
        &mut self,
        body: &[u8],
        precision: Precision,
        now_ns: i64,
        on_line: F,
    ) -> Result<BodySummary, BatchError>
    where
        F: FnMut(&IndexedLine<'_, '_>) -> bool,
    {
        let summary = self.index_from(body, BodyPosition::START, precision, now_ns, BadLines::RejectBatch, on_line);
        match summary.batch_error() {
            Some(error) => Err(error),
            None => Ok(summary),
        }
    }

    /// UDP: valid lines handed over, bad ones counted and skipped.
    pub fn index_lenient<F>(&mut self, body: &[u8], precision: Precision, now_ns: i64, on_line: F) -> BodySummary
    where
        F: FnMut(&IndexedLine<'_, '_>) -> bool,
    {
        self.index_from(body, BodyPosition::START, precision, now_ns, BadLines::Skip, on_line)
    }

    /// Indexes `body` from `start` (a `resume_at` of an earlier call on the same body).
    pub fn index_from<F>(
        &mut self,
        body: &[u8],
        start: BodyPosition,
        precision: Precision,
        now_ns: i64,
        bad_lines: BadLines,
        mut on_line: F,
    ) -> BodySummary
    where
        F: FnMut(&IndexedLine<'_, '_>) -> bool,
    {
        let mut scan = Scan {
            body,
            cursor: StructuralCursor::new(body, self.classifier),
            line: start.line,
            limits: self.limits,
            tags: &mut self.tags,
            fields: &mut self.fields,
            order: &mut self.order,
        };
        let mut summary = BodySummary::default();
        let mut pos = start.offset.min(body.len());
        loop {
            pos = scan.skip_blank_and_comments(pos);
            if pos >= body.len() {
                break;
            }
            let line_number = scan.line;
            match scan.index_line(pos, precision, now_ns) {
                Ok(parsed) => {
                    if bad_lines == BadLines::RejectBatch && summary.bad_lines > 0 {
                        summary.valid_not_handed += 1;
                    } else {
                        let line = IndexedLine {
                            body,
                            line_number,
                            start: pos,
                            parsed,
                            tags: scan.tags.as_slice(),
                            fields: scan.fields.as_slice(),
                        };
                        if !on_line(&line) {
                            summary.resume_at = Some(BodyPosition { offset: pos, line: line_number });
                            break;
                        }
                        summary.lines += 1;
                        summary.needs_canonical += usize::from(parsed.flags.needs_canonical());
                    }
                    pos = scan.consume_line_end(parsed.line_end);
                }
                Err(fail) => {
                    summary.bad_lines += 1;
                    if summary.first_error.is_none() {
                        summary.first_error = Some(LineError { line: line_number, reason: fail.reason });
                    }
                    pos = scan.skip_past_newline(fail.at);
                }
            }
        }
        summary
    }
}

/// Where a line's parts are (body offsets), filled in by the scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ParsedLine {
    /// End of the line's content: after the timestamp or field set, before
    /// trailing spaces and the line terminator.
    end: usize,
    /// Where the line terminator (or the end of the body) is.
    line_end: usize,
    measurement: Span,
    series_end: usize,
    fields_start: usize,
    fields_end: usize,
    timestamp: Option<(usize, usize)>,
    timestamp_ns: i64,
    flags: LineFlags,
    kinds: FieldKinds,
}

/// One valid line, borrowed from the body (`'a`) and the indexer's scratch (`'s`).
#[derive(Clone, Copy)]
pub struct IndexedLine<'s, 'a> {
    body: &'a [u8],
    line_number: usize,
    start: usize,
    parsed: ParsedLine,
    tags: &'s [TagSpan],
    fields: &'s [FieldSpan],
}

impl<'s, 'a: 's> IndexedLine<'s, 'a> {
    /// The line as received, from the measurement to the end of its last
    /// element (no leading or trailing spaces, no `\r`/`\n`).
    pub fn bytes(&self) -> &'a [u8] {
        self.body.get(self.start..self.parsed.end).unwrap_or(&[])
    }

    /// Offset of [`bytes`](Self::bytes) in the body.
    pub fn offset(&self) -> usize {
        self.start
    }

    /// 1-based physical line number where the line starts.
    pub fn line_number(&self) -> usize {
        self.line_number
    }

    /// Measurement and tag set, within [`bytes`](Self::bytes).
    pub fn series_range(&self) -> Range<usize> {
        0..self.parsed.series_end - self.start
    }

    /// The field set (`k=v,...`), within [`bytes`](Self::bytes).
    pub fn field_set_range(&self) -> Range<usize> {
        self.parsed.fields_start - self.start..self.parsed.fields_end - self.start
    }

    /// The timestamp token as received, within [`bytes`](Self::bytes).
    pub fn timestamp_range(&self) -> Option<Range<usize>> {
        self.parsed.timestamp.map(|(from, to)| from - self.start..to - self.start)
    }

    pub fn series(&self) -> &'a [u8] {
        self.slice(self.start, self.parsed.series_end)
    }

    pub fn field_set(&self) -> &'a [u8] {
        self.slice(self.parsed.fields_start, self.parsed.fields_end)
    }

    pub fn timestamp_token(&self) -> Option<&'a [u8]> {
        self.parsed.timestamp.map(|(from, to)| self.slice(from, to))
    }

    /// The timestamp in nanoseconds (precision applied; `now_ns` if none).
    pub fn timestamp_ns(&self) -> i64 {
        self.parsed.timestamp_ns
    }

    pub fn flags(&self) -> LineFlags {
        self.parsed.flags
    }

    pub fn tag_count(&self) -> usize {
        self.tags.len()
    }

    /// Fields as received (duplicates included).
    pub fn field_count(&self) -> usize {
        self.fields.len()
    }

    pub fn field_kinds(&self) -> FieldKinds {
        self.parsed.kinds
    }

    pub fn measurement(&self) -> Text<'a> {
        self.text(self.parsed.measurement, Element::Measurement)
    }

    /// Tags in input order, as `(key, value)`.
    pub fn tags(&self) -> impl ExactSizeIterator<Item = (Text<'a>, Text<'a>)> + 's {
        let body = self.body;
        self.tags
            .iter()
            .map(move |t| (Text::new(body, t.key, Element::TagKey), Text::new(body, t.value, Element::TagValue)))
    }

    /// Tag `i` in input order, as `(key, value)`.
    pub fn tag(&self, i: usize) -> Option<(Text<'a>, Text<'a>)> {
        let t = self.tags.get(i)?;
        Some((Text::new(self.body, t.key, Element::TagKey), Text::new(self.body, t.value, Element::TagValue)))
    }

    /// Field `i` in input order (duplicates included).
    pub fn field(&self, i: usize) -> Option<IndexedField<'a>> {
        self.fields.get(i).map(|f| IndexedField::new(self.body, f))
    }

    /// Fields in input order (duplicates included).
    pub fn fields(&self) -> impl ExactSizeIterator<Item = IndexedField<'a>> + 's {
        let body = self.body;
        self.fields.iter().map(move |f| IndexedField::new(body, f))
    }

    fn slice(&self, from: usize, to: usize) -> &'a [u8] {
        self.body.get(from..to).unwrap_or(&[])
    }

    fn text(&self, span: Span, element: Element) -> Text<'a> {
        Text::new(self.body, span, element)
    }
}

impl fmt::Debug for IndexedLine<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IndexedLine")
            .field("line_number", &self.line_number)
            .field("bytes", &String::from_utf8_lossy(self.bytes()))
            .field("series", &self.series_range())
            .field("field_set", &self.field_set_range())
            .field("timestamp", &self.timestamp_range())
            .field("timestamp_ns", &self.timestamp_ns())
            .field("flags", &self.flags())
            .field("kinds", &self.field_kinds())
            .field("measurement", &self.measurement())
            .field("tags", &self.tags().collect::<Vec<_>>())
            .field("fields", &self.fields().collect::<Vec<_>>())
            .finish()
    }
}

/// One element's text as received, unescaped on demand.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Text<'a> {
    raw: &'a [u8],
    element: Element,
    escaped: bool,
}

impl<'a> Text<'a> {
    fn new(body: &'a [u8], span: Span, element: Element) -> Text<'a> {
        Text { raw: body.get(span.start..span.end).unwrap_or(&[]), element, escaped: span.escaped }
    }

    /// The bytes as received (escapes in place).
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    pub fn is_escaped(&self) -> bool {
        self.escaped
    }

    /// The unescaped bytes, without allocating.
    pub fn unescaped_bytes(&self) -> Unescaped<'a> {
        Unescaped { raw: self.raw, element: self.element, escaped: self.escaped }
    }

    /// The unescaped text: borrowed unless an escape had to be undone. The
    /// indexer validated the line's UTF-8, so this is exact.
    pub fn unescaped(&self) -> Cow<'a, str> {
        if !self.escaped {
            return String::from_utf8_lossy(self.raw);
        }
        let bytes: Vec<u8> = self.unescaped_bytes().collect();
        Cow::Owned(String::from_utf8_lossy(&bytes).into_owned())
    }
}

impl fmt::Debug for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.raw))?;
        if self.escaped {
            write!(f, "(escaped)")?;
        }
        Ok(())
    }
}

/// Iterator over an element's unescaped bytes.
#[derive(Clone, Debug)]
pub struct Unescaped<'a> {
    raw: &'a [u8],
    element: Element,
    escaped: bool,
}

impl Iterator for Unescaped<'_> {
    type Item = u8;

    #[inline]
    fn next(&mut self) -> Option<u8> {
        let (&b, rest) = self.raw.split_first()?;
        self.raw = rest;
        if b == b'\\' && self.escaped {
            if let Some((&next, rest)) = self.raw.split_first() {
                if self.element.escapes(next) {
                    self.raw = rest;
                    return Some(next);
                }
            }
        }
        Some(b)
    }
}

/// One field of an [`IndexedLine`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexedField<'a> {
    pub key: Text<'a>,
    pub kind: FieldKind,
    /// The value token as received (a string's text between its quotes).
    pub value: Text<'a>,
}

impl<'a> IndexedField<'a> {
    fn new(body: &'a [u8], f: &FieldSpan) -> IndexedField<'a> {
        IndexedField {
            key: Text::new(body, f.key, Element::FieldKey),
            kind: f.kind,
            value: Text::new(
                body,
                f.value,
                if f.kind == FieldKind::Str { Element::StringValue } else { Element::FieldKey },
            ),
        }
    }

    /// The converted value. The token was validated by the indexer, so the
    /// conversion cannot fail; a float is parsed here, not before.
    pub fn value(&self) -> FieldValue<'a> {
        let raw = self.value.raw;
        match self.kind {
            FieldKind::Float => {
                FieldValue::Float(std::str::from_utf8(raw).ok().and_then(|text| text.parse().ok()).unwrap_or(f64::NAN))
            }
            FieldKind::Int => {
                FieldValue::Int(match signed_value(raw.get(..raw.len().saturating_sub(1)).unwrap_or(&[])) {
                    Digits::Value(v) => v,
                    Digits::Invalid | Digits::OutOfRange => 0,
                })
            }
            FieldKind::UInt => {
                FieldValue::UInt(match digits_value(raw.get(..raw.len().saturating_sub(1)).unwrap_or(&[])) {
                    Digits::Value(v) => v,
                    Digits::Invalid | Digits::OutOfRange => 0,
                })
            }
            FieldKind::Bool => FieldValue::Bool(matches!(raw.first(), Some(b't' | b'T'))),
            FieldKind::Str => FieldValue::Str(self.value.unescaped()),
        }
    }
}

/// A line that failed: why, and where the scan stopped (recovery resumes at
/// the next newline from there).
#[derive(Clone, Copy, Debug)]
struct Fail {
    reason: LineErrorReason,
    at: usize,
}

fn fail<T>(reason: LineErrorReason, at: usize) -> Result<T, Fail> {
    Err(Fail { reason, at })
}

/// What a name scan stopped at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    Comma,
    Space,
    Equals,
    /// `\n`, `\r\n`, a final `\r`, or the end of the body.
    LineEnd,
    /// Anything else: a control byte, or a `"`/`\` where the element has none.
    Other,
}

/// One body being indexed: the structural cursor, the physical line counter and
/// the indexer's scratch.
struct Scan<'a, 'x> {
    body: &'a [u8],
    cursor: StructuralCursor<'a>,
    /// Physical line number at the scan position.
    line: usize,
    limits: LineProtocolLimits,
    tags: &'x mut Vec<TagSpan>,
    fields: &'x mut Vec<FieldSpan>,
    order: &'x mut Vec<u32>,
}

impl Scan<'_, '_> {
    #[inline(always)]
    fn at(&self, i: usize) -> Option<u8> {
        self.body.get(i).copied()
    }

    #[inline(always)]
    fn stop(&self, i: usize) -> Stop {
        match self.at(i) {
            Some(b',') => Stop::Comma,
            Some(b' ') => Stop::Space,
            Some(b'=') => Stop::Equals,
            None | Some(b'\n') => Stop::LineEnd,
            Some(b'\r') if matches!(self.at(i + 1), None | Some(b'\n')) => Stop::LineEnd,
            Some(_) => Stop::Other,
        }
    }

    #[inline(always)]
    fn skip_spaces(&self, mut i: usize) -> usize {
        while self.at(i) == Some(b' ') {
            i += 1;
        }
        i
    }

    /// Skips blank lines, `#` comment lines and leading spaces/tabs; returns
    /// where the next line's measurement starts (or the body's end).
    fn skip_blank_and_comments(&mut self, mut pos: usize) -> usize {
        loop {
            match self.at(pos) {
                Some(b' ' | b'\t') => pos += 1,
                Some(b'\n') => {
                    pos += 1;
                    self.line += 1;
                }
                Some(b'\r') if matches!(self.at(pos + 1), None | Some(b'\n')) => pos += 1,
                Some(b'#') => pos = self.skip_past_newline(pos),
                _ => return pos,
            }
        }
    }

    /// Moves past the first `\n` at or after `pos` (or to the end).
    fn skip_past_newline(&mut self, mut pos: usize) -> usize {
        loop {
            let e = self.cursor.next_from(pos);
            match self.at(e) {
                None => return self.body.len(),
                Some(b'\n') => {
                    self.line += 1;
                    return e + 1;
                }
                Some(_) => pos = e + 1,
            }
        }
    }

    /// Past the terminator at `line_end` (the caller's `Stop::LineEnd`).
    fn consume_line_end(&mut self, mut pos: usize) -> usize {
        if self.at(pos) == Some(b'\r') {
            pos += 1;
        }
        if self.at(pos) == Some(b'\n') {
            pos += 1;
            self.line += 1;
        }
        pos
    }

    /// Scans a name from `from` to its first unescaped terminator; returns
    /// where it stopped and whether an escape was seen. `"` (and `=` in a
    /// measurement) are ordinary characters here.
    #[inline(always)]
    fn name(&mut self, from: usize, element: Element) -> (usize, bool) {
        let mut pos = from;
        let mut escaped = false;
        loop {
            let e = self.cursor.next_from(pos);
            match self.at(e) {
                Some(b'\\') => {
                    if self.at(e + 1).is_some_and(|next| element.escapes(next)) {
                        escaped = true;
                        pos = e + 2;
                    } else {
                        pos = e + 1;
                    }
                }
                Some(b'"') => pos = e + 1,
                Some(b'=') if element == Element::Measurement => pos = e + 1,
                _ => return (e, escaped),
            }
        }
    }

    /// Scans a string value from just after its opening quote; returns the
    /// position of the closing quote and whether an escape was seen.
    fn string(&mut self, from: usize) -> Result<(usize, bool), Fail> {
        let mut pos = from;
        let mut escaped = false;
        loop {
            let e = self.cursor.next_from(pos);
            match self.at(e) {
                None => return fail(LineErrorReason::UnterminatedString, e),
                Some(b'"') => return Ok((e, escaped)),
                Some(b'\\') => {
                    if self.at(e + 1).is_some_and(|next| Element::StringValue.escapes(next)) {
                        escaped = true;
                        pos = e + 2;
                    } else {
                        pos = e + 1;
                    }
                }
                Some(b'\n') => {
                    self.line += 1;
                    pos = e + 1;
                }
                Some(_) => pos = e + 1,
            }
        }
    }

    /// Validates and indexes the line whose measurement starts at `start`.
    #[inline(always)]
    fn index_line(&mut self, start: usize, precision: Precision, now_ns: i64) -> Result<ParsedLine, Fail> {
        self.tags.clear();
        self.fields.clear();
        let mut flags = LineFlags::default();

        // Measurement.
        let (measurement_end, escaped) = self.name(start, Element::Measurement);
        let measurement = Span { start, end: measurement_end, escaped };
        let mut stop = self.stop(measurement_end);
        if stop == Stop::Other {
            return fail(CONTROL_CHARACTER, measurement_end);
        }
        if measurement_end == start {
            return fail(LineErrorReason::EmptyMeasurement, measurement_end);
        }
        let mut series_end = measurement_end;

        // Tag set.
        let mut tags_unsorted = false;
        let mut tag_signatures = 0u64;
        let mut tag_maybe_duplicate = false;
        let mut any_escape = escaped;
        while stop == Stop::Comma {
            let key_start = series_end + 1;
            let (key_end, key_escaped) = self.name(key_start, Element::TagKey);
            match self.stop(key_end) {
                Stop::Other => return fail(CONTROL_CHARACTER, key_end),
                _ if key_end == key_start => return fail(LineErrorReason::EmptyTagKey, key_end),
                Stop::Equals => {}
                _ => return fail(LineErrorReason::TagWithoutEquals, key_end),
            }
            let value_start = key_end + 1;
            let (value_end, value_escaped) = self.name(value_start, Element::TagValue);
            stop = self.stop(value_end);
            match stop {
                Stop::Equals => return fail(LineErrorReason::UnescapedEqualsInTagValue, value_end),
                Stop::Other => return fail(CONTROL_CHARACTER, value_end),
                _ if value_end == value_start => return fail(LineErrorReason::MissingTagValue, value_end),
                _ => {}
            }
            if self.tags.len() >= self.limits.max_tags_per_line {
                return fail(LineErrorReason::TooManyTags, value_end);
            }
            let tag = TagSpan {
                key: Span { start: key_start, end: key_end, escaped: key_escaped },
                value: Span { start: value_start, end: value_end, escaped: value_escaped },
            };
            any_escape |= key_escaped | value_escaped;
            if let Some(previous) = self.tags.last() {
                match compare_keys(self.body, previous.key, tag.key, Element::TagKey) {
                    Ordering::Less => {}
                    Ordering::Equal => return fail(LineErrorReason::DuplicateTagKey, value_end),
                    Ordering::Greater => tags_unsorted = true,
                }
            }
            let signature = key_signature(self.body, tag.key);
            tag_maybe_duplicate |= tag_signatures & signature != 0;
            tag_signatures |= signature;
            self.tags.push(tag);
            series_end = value_end;
        }
        if tags_unsorted {
            flags.set(LineFlags::TAGS_UNSORTED);
            // Sorted keys were checked pairwise above; unsorted ones only need
            // a full check when two share a signature.
            if tag_maybe_duplicate && self.has_duplicate_tag() {
                return fail(LineErrorReason::DuplicateTagKey, series_end);
            }
        }
        if stop != Stop::Space {
            return fail(LineErrorReason::MissingFields, series_end);
        }

        // Field set.
        let fields_start = self.skip_spaces(series_end + 1);
        if self.stop(fields_start) == Stop::LineEnd {
            return fail(LineErrorReason::MissingFields, fields_start);
        }
        let mut kinds = FieldKinds::default();
        let mut key_signatures = 0u64;
        let mut maybe_duplicate = false;
        let mut key_start = fields_start;
        let fields_end = loop {
            let (key_end, key_escaped) = self.name(key_start, Element::FieldKey);
            match self.stop(key_end) {
                Stop::Other => return fail(CONTROL_CHARACTER, key_end),
                _ if key_end == key_start => return fail(LineErrorReason::EmptyFieldKey, key_end),
                Stop::Equals => {}
                _ => return fail(LineErrorReason::FieldWithoutEquals, key_end),
            }
            let value_start = key_end + 1;
            let (value, kind, after) = if self.at(value_start) == Some(b'"') {
                let (close, escaped) = self.string(value_start + 1)?;
                let after = close + 1;
                if matches!(self.stop(after), Stop::Equals | Stop::Other) {
                    return fail(LineErrorReason::GarbageAfterString, after);
                }
                (Span { start: value_start + 1, end: close, escaped }, FieldKind::Str, after)
            } else {
                let value_end = self.cursor.next_from(value_start);
                if matches!(self.stop(value_end), Stop::Equals | Stop::Other) {
                    return fail(LineErrorReason::InvalidFieldValue, value_end);
                }
                let token = self.body.get(value_start..value_end).unwrap_or(&[]);
                let kind = field_kind(token).map_err(|reason| Fail { reason, at: value_end })?;
                (Span { start: value_start, end: value_end, escaped: false }, kind, value_end)
            };
            if self.fields.len() >= self.limits.max_fields_per_line {
                return fail(LineErrorReason::TooManyFields, after);
            }
            any_escape |= key_escaped | value.escaped;
            let key = Span { start: key_start, end: key_end, escaped: key_escaped };
            let signature = key_signature(self.body, key);
            maybe_duplicate |= key_signatures & signature != 0;
            key_signatures |= signature;
            kinds.insert(kind);
            self.fields.push(FieldSpan { key, value, kind });
            match self.stop(after) {
                Stop::Comma => key_start = after + 1,
                _ => break after,
            }
        };
        if maybe_duplicate && self.has_duplicate_field() {
            flags.set(LineFlags::DUPLICATE_FIELDS);
        }

        // Optional timestamp, then only spaces to the end of the line.
        let mut end = fields_end;
        let mut timestamp = None;
        let mut timestamp_ns = now_ns;
        let mut line_end = fields_end;
        if self.stop(fields_end) == Stop::Space {
            let token_start = self.skip_spaces(fields_end + 1);
            line_end = token_start;
            if self.stop(token_start) != Stop::LineEnd {
                let token_end = self.cursor.next_from(token_start);
                if !matches!(self.stop(token_end), Stop::Space | Stop::LineEnd) {
                    return fail(LineErrorReason::InvalidTimestamp, token_end);
                }
                let token = self.body.get(token_start..token_end).unwrap_or(&[]);
                let value = match signed_value(token) {
                    Digits::Value(v) => v,
                    Digits::OutOfRange => return fail(LineErrorReason::TimestampOutOfRange, token_end),
                    Digits::Invalid => return fail(LineErrorReason::InvalidTimestamp, token_end),
                };
                timestamp_ns = precision
                    .to_nanos(value)
                    .ok_or(Fail { reason: LineErrorReason::TimestampOutOfRange, at: token_end })?;
                timestamp = Some((token_start, token_end));
                flags.set(LineFlags::HAD_TIMESTAMP);
                end = token_end;
                line_end = self.skip_spaces(token_end);
                if self.stop(line_end) != Stop::LineEnd {
                    return fail(LineErrorReason::TrailingGarbage, line_end);
                }
            }
        }

        // Every byte before `end` has been classified: the mask proves most
        // lines ASCII; the others are checked here, once.
        if self.cursor.may_have_non_ascii_from(start)
            && std::str::from_utf8(self.body.get(start..end).unwrap_or(&[])).is_err()
        {
            return fail(LineErrorReason::InvalidUtf8, line_end);
        }
        if any_escape {
            flags.set(LineFlags::HAS_ESCAPES);
        }
        Ok(ParsedLine {
            end,
            line_end,
            measurement,
            series_end,
            fields_start,
            fields_end,
            timestamp,
            timestamp_ns,
            flags,
            kinds,
        })
    }

    /// Whether two tags share a key.
    #[inline(never)]
    fn has_duplicate_tag(&mut self) -> bool {
        let (body, tags) = (self.body, &*self.tags);
        has_equal_keys(body, self.order, tags.len(), |i| tags.get(i).map(|t| t.key).unwrap_or_default())
    }

    /// Whether two fields share a key.
    #[inline(never)]
    fn has_duplicate_field(&mut self) -> bool {
        let (body, fields) = (self.body, &*self.fields);
        has_equal_keys(body, self.order, fields.len(), |i| fields.get(i).map(|f| f.key).unwrap_or_default())
    }
}

/// Whether two of the `n` keys `key(0..n)` are equal. Raw bytes decide:
/// unescaping is injective (every escapable byte of a name must be escaped,
/// any other backslash stays), so equal text means equal raw bytes. Small
/// sets compare pairwise; large ones sort an index scratch (O(n log n) on
/// adversarial lines).
fn has_equal_keys(body: &[u8], order: &mut Vec<u32>, n: usize, key: impl Fn(usize) -> Span) -> bool {
    let raw = |i: usize| {
        let span = key(i);
        body.get(span.start..span.end).unwrap_or(&[])
    };
    if n <= 16 {
        return (0..n).any(|i| (i + 1..n).any(|j| raw(i) == raw(j)));
    }
    order.clear();
    order.extend((0..n).filter_map(|i| u32::try_from(i).ok()));
    order.sort_unstable_by(|&a, &b| raw(a as usize).cmp(raw(b as usize)));
    order.windows(2).any(|w| raw(w[0] as usize) == raw(w[1] as usize))
}

/// One bit of 64 chosen by a key's length, first and last byte: distinct
/// signatures prove keys distinct without comparing them.
#[inline(always)]
fn key_signature(body: &[u8], key: Span) -> u64 {
    let first = usize::from(body.get(key.start).copied().unwrap_or(0));
    let last = usize::from(body.get(key.end.wrapping_sub(1)).copied().unwrap_or(0));
    1u64 << ((key.end - key.start).wrapping_mul(31).wrapping_add(first * 7).wrapping_add(last) % 64)
}

/// Byte order of two keys' unescaped text (raw bytes when neither has an escape).
#[inline(always)]
fn compare_keys(body: &[u8], a: Span, b: Span, element: Element) -> Ordering {
    let raw = |s: Span| body.get(s.start..s.end).unwrap_or(&[]);
    if !a.escaped && !b.escaped {
        // Most neighbours differ in their first byte: no memcmp for those.
        return match body.get(a.start).cmp(&body.get(b.start)) {
            Ordering::Equal => raw(a).cmp(raw(b)),
            order => order,
        };
    }
    let text = |s: Span| Unescaped { raw: raw(s), element, escaped: s.escaped };
    text(a).cmp(text(b))
}

/// The type of an unquoted field value, or why it is invalid.
#[inline(always)]
fn field_kind(token: &[u8]) -> Result<FieldKind, LineErrorReason> {
    let Some((&last, init)) = token.split_last() else {
        return Err(LineErrorReason::MissingFieldValue);
    };
    match token.first() {
        Some(b'0'..=b'9' | b'-' | b'.') => {}
        _ => {
            return match token {
                b"t" | b"T" | b"true" | b"True" | b"TRUE" | b"f" | b"F" | b"false" | b"False" | b"FALSE" => {
                    Ok(FieldKind::Bool)
                }
                _ => Err(LineErrorReason::InvalidFieldValue),
            }
        }
    }
    match last {
        b'i' => match signed_value(init) {
            Digits::Value(_) => Ok(FieldKind::Int),
            Digits::OutOfRange => Err(LineErrorReason::IntegerOutOfRange),
            Digits::Invalid => Err(LineErrorReason::InvalidFieldValue),
        },
        b'u' => match digits_value(init) {
            Digits::Value(_) => Ok(FieldKind::UInt),
            Digits::OutOfRange => Err(LineErrorReason::IntegerOutOfRange),
            Digits::Invalid => Err(LineErrorReason::InvalidFieldValue),
        },
        _ => check_float(token).map(|()| FieldKind::Float),
    }
}

/// `-?(digits[.digits]|.digits)([eE][+-]?digits)?` with a finite value. Only
/// literals that could overflow (an exponent, or more than 308 integer
/// digits) are converted to find out.
#[inline]
fn check_float(token: &[u8]) -> Result<(), LineErrorReason> {
    let mut rest = match token.split_first() {
        Some((b'-', rest)) => rest,
        _ => token,
    };
    let mut integer_digits = 0;
    while let Some((b'0'..=b'9', tail)) = rest.split_first() {
        integer_digits += 1;
        rest = tail;
    }
    let mut fraction_digits = 0;
    if let Some((b'.', tail)) = rest.split_first() {
        rest = tail;
        while let Some((b'0'..=b'9', tail)) = rest.split_first() {
            fraction_digits += 1;
            rest = tail;
        }
    }
    if integer_digits + fraction_digits == 0 {
        return Err(LineErrorReason::InvalidFieldValue);
    }
    match rest.split_first() {
        None if integer_digits <= 308 => Ok(()),
        None => check_finite(token),
        Some((b'e' | b'E', exponent)) => {
            let exponent = match exponent.split_first() {
                Some((b'+' | b'-', digits)) => digits,
                _ => exponent,
            };
            if exponent.is_empty() || !exponent.iter().all(u8::is_ascii_digit) {
                return Err(LineErrorReason::InvalidFieldValue);
            }
            check_finite(token)
        }
        Some(_) => Err(LineErrorReason::InvalidFieldValue),
    }
}

/// A well-formed float literal that may overflow: converted to find out.
#[inline(never)]
fn check_finite(token: &[u8]) -> Result<(), LineErrorReason> {
    let value: f64 =
        std::str::from_utf8(token).ok().and_then(|text| text.parse().ok()).ok_or(LineErrorReason::InvalidFieldValue)?;
    if value.is_finite() {
        Ok(())
    } else {
        Err(LineErrorReason::FloatOutOfRange)
    }
}

/// A digit string's value, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Digits<T> {
    Value(T),
    /// Well-formed, but the value does not fit.
    OutOfRange,
    /// Empty, or not all ASCII digits.
    Invalid,
}

/// Eight ASCII digits (first in the lowest byte) as their value, or `None`.
/// A byte below `'0'` borrows into bit 7 of its lane, one above `'9'` carries
/// into it after adding 0x76: either sets a high bit.
#[inline(always)]
fn eight_digit_value(word: u64) -> Option<u64> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let digits = word.wrapping_sub(ONES * u64::from(b'0'));
    if (digits | digits.wrapping_add(ONES * 0x76)) & (ONES * 0x80) != 0 {
        return None;
    }
    // Adjacent digits into 2-digit lanes, then 4, then 8 (fixed-point multiplies).
    let pairs = (digits.wrapping_mul(10) + (digits >> 8)) & 0x00ff_00ff_00ff_00ff;
    let quads = (pairs.wrapping_mul(100) + (pairs >> 16)) & 0x0000_ffff_0000_ffff;
    Some((quads.wrapping_mul(10_000) + (quads >> 32)) & 0xffff_ffff)
}

/// `digits` (one or more ASCII digits) as a u64.
#[inline]
fn digits_value(digits: &[u8]) -> Digits<u64> {
    if digits.is_empty() {
        return Digits::Invalid;
    }
    if digits.len() > 19 {
        return long_digits_value(digits);
    }
    // Up to 19 digits cannot overflow (10^19 - 1 < 2^64): whole words first
    // (a nanosecond timestamp is two words and three digits), no checks.
    let mut value: u64 = 0;
    let mut rest = digits;
    while let Some((word, tail)) = rest.split_first_chunk::<8>() {
        match eight_digit_value(u64::from_le_bytes(*word)) {
            Some(v) => value = value * 100_000_000 + v,
            None => return Digits::Invalid,
        }
        rest = tail;
    }
    for &b in rest {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return Digits::Invalid;
        }
        value = value * 10 + u64::from(d);
    }
    Digits::Value(value)
}

/// [`digits_value`] of more than 19 digits: every byte checked before an
/// overflow is reported (malformed beats out of range).
#[inline(never)]
fn long_digits_value(digits: &[u8]) -> Digits<u64> {
    if !digits.iter().all(u8::is_ascii_digit) {
        return Digits::Invalid;
    }
    digits
        .iter()
        .try_fold(0u64, |value, &b| value.checked_mul(10)?.checked_add(u64::from(b - b'0')))
        .map_or(Digits::OutOfRange, Digits::Value)
}

/// `-?digits` as an i64.
#[inline]
fn signed_value(token: &[u8]) -> Digits<i64> {
    let (negative, digits) = match token.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, token),
    };
    match digits_value(digits) {
        Digits::Value(magnitude) if negative => {
            0i64.checked_sub_unsigned(magnitude).map_or(Digits::OutOfRange, Digits::Value)
        }
        Digits::Value(magnitude) => i64::try_from(magnitude).map_or(Digits::OutOfRange, Digits::Value),
        Digits::OutOfRange => Digits::OutOfRange,
        Digits::Invalid => Digits::Invalid,
    }
}

#[cfg(test)]
mod tests;
