//! InfluxDB line protocol: a sans-IO, zero-copy parser and an encoder.
//!
//! This module owns the line-protocol grammar. It never touches a socket or a
//! clock: callers pass a whole body (an HTTP `/write` body or a UDP datagram),
//! the [`Precision`] of its timestamps and `now_ns` for lines without one, and
//! the parser pushes one [`RecordRef`] per valid line into a [`RecordSink`].
//!
//! ```text
//! measurement[,tag_key=tag_value...] field_key=field_value[,field_key=field_value...] [timestamp]
//! ```
//!
//! Semantics (following the InfluxDB 2.x reference and its Go parser):
//! - Escapes. Measurement: `\,` `\ `. Tag keys, tag values, field keys: `\,`
//!   `\=` `\ `. String field values: `\"`. Everywhere `\\` is one backslash, and
//!   a backslash before any other character is a literal backslash (InfluxDB's
//!   "two contiguous backslashes, the first is an escape character" rule).
//! - String field values may contain raw newlines (InfluxDB's own scanner keeps a
//!   quoted newline inside the line). Errors are reported with the 1-based
//!   *physical* line number on which the record starts.
//! - Tags are sorted by key (byte order). A duplicate tag key is an error
//!   (InfluxDB: "duplicate tags"). A duplicate field key is accepted and the
//!   last value wins (InfluxDB overwrites earlier values of the same field).
//! - Empty measurement, tag key, tag value or field key are errors; so are
//!   missing fields, numbers out of range, `NaN`/`inf`, unterminated strings and
//!   anything after the timestamp other than spaces/tabs.
//! - `#` lines are comments; blank lines are skipped; `\r\n` line endings are
//!   accepted; leading spaces/tabs on a line are skipped.
//! - A missing timestamp becomes `now_ns`; a present one is scaled from the
//!   batch precision to nanoseconds with overflow checks.
//!
//! Two modes share one scanner:
//! - [`LineProtocolParser::validate`]: pass one of the HTTP path. Parses the
//!   whole body without a sink and returns the record count (for the rate
//!   limiter) or a [`BatchError`] naming the first bad line, its reason and the
//!   number of bad lines (HTTP rejects such a batch whole with 400).
//! - [`LineProtocolParser::parse_into`]: pushes every valid line into the sink
//!   and counts invalid ones ([`ParseSummary`]). The UDP path uses it directly
//!   (invalid lines counted, valid ones kept); the HTTP path calls it after a
//!   successful `validate`. If the sink fills up, parsing stops and the summary
//!   says where to resume ([`parse_from`](LineProtocolParser::parse_from)).
//!
//! Memory: text is borrowed from the body unless escapes had to be undone; tag,
//! field and index scratch vectors live in the parser and are reused across
//! bodies, and per-line caps ([`LineProtocolLimits`]) bound them on any input.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use super::record::{Discard, Field, FieldValue, RecordRef, RecordSink, Tag};

/// The unit of the timestamps in a body (`?precision=` on `/write`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Precision {
    #[default]
    Nanoseconds,
    Microseconds,
    Milliseconds,
    Seconds,
    Minutes,
    Hours,
}

impl Precision {
    /// Nanoseconds per unit.
    pub const fn nanos_per_unit(self) -> i64 {
        match self {
            Precision::Nanoseconds => 1,
            Precision::Microseconds => 1_000,
            Precision::Milliseconds => 1_000_000,
            Precision::Seconds => 1_000_000_000,
            Precision::Minutes => 60 * 1_000_000_000,
            Precision::Hours => 3_600 * 1_000_000_000,
        }
    }

    /// Parses a `precision` query-string value: `ns|n|us|u|ms|s|m|h` (v1 and v2 spellings).
    pub fn from_query_value(value: &str) -> Option<Precision> {
        match value {
            "ns" | "n" => Some(Precision::Nanoseconds),
            "us" | "u" | "µ" | "µs" => Some(Precision::Microseconds),
            "ms" => Some(Precision::Milliseconds),
            "s" => Some(Precision::Seconds),
            "m" => Some(Precision::Minutes),
            "h" => Some(Precision::Hours),
            _ => None,
        }
    }

    /// Scales a timestamp in this unit to nanoseconds; `None` on overflow.
    pub fn to_nanos(self, timestamp: i64) -> Option<i64> {
        timestamp.checked_mul(self.nanos_per_unit())
    }
}

/// An unknown `precision` value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown precision {0:?} (expected ns, us, ms, s, m or h)")]
pub struct UnknownPrecision(pub String);

impl FromStr for Precision {
    type Err = UnknownPrecision;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Precision::from_query_value(s).ok_or_else(|| UnknownPrecision(s.to_string()))
    }
}

/// Why one line was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LineErrorReason {
    #[error("empty measurement")]
    EmptyMeasurement,
    #[error("missing fields")]
    MissingFields,
    #[error("empty tag key")]
    EmptyTagKey,
    #[error("missing tag value")]
    MissingTagValue,
    #[error("tag without '='")]
    TagWithoutEquals,
    #[error("unescaped '=' in tag value")]
    UnescapedEqualsInTagValue,
    #[error("duplicate tag key")]
    DuplicateTagKey,
    #[error("too many tags")]
    TooManyTags,
    #[error("empty field key")]
    EmptyFieldKey,
    #[error("field without '='")]
    FieldWithoutEquals,
    #[error("missing field value")]
    MissingFieldValue,
    #[error("too many fields")]
    TooManyFields,
    #[error("invalid field value")]
    InvalidFieldValue,
    #[error("integer field value out of range")]
    IntegerOutOfRange,
    #[error("float field value out of range")]
    FloatOutOfRange,
    #[error("unterminated string field value")]
    UnterminatedString,
    #[error("unexpected character after string field value")]
    GarbageAfterString,
    #[error("invalid timestamp")]
    InvalidTimestamp,
    #[error("timestamp out of range")]
    TimestampOutOfRange,
    #[error("unexpected text after timestamp")]
    TrailingGarbage,
    #[error("invalid UTF-8")]
    InvalidUtf8,
}

/// One rejected line: 1-based physical line number where the record starts, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct LineError {
    pub line: usize,
    pub reason: LineErrorReason,
}

/// A body with at least one invalid line (HTTP: reject the batch whole, 400).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {first_line}: {first_reason} ({bad_lines} invalid line(s), {valid_lines} valid)")]
pub struct BatchError {
    pub first_line: usize,
    pub first_reason: LineErrorReason,
    pub bad_lines: usize,
    pub valid_lines: usize,
}

/// Where to start (or resume) parsing a body: byte offset and the line number there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyPosition {
    pub offset: usize,
    /// 1-based physical line number at `offset`.
    pub line: usize,
}

impl BodyPosition {
    pub const START: BodyPosition = BodyPosition { offset: 0, line: 1 };
}

/// What [`LineProtocolParser::parse_into`] did with a body.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct ParseSummary {
    /// Records pushed into the sink.
    pub records: usize,
    /// Lines rejected (not pushed).
    pub invalid: usize,
    /// The first rejected line, if any.
    pub first_error: Option<LineError>,
    /// `Some` when the sink refused a record: nothing from this position on was
    /// pushed; call [`LineProtocolParser::parse_from`] with it after draining.
    pub resume_at: Option<BodyPosition>,
}

/// Per-line caps that bound the parser's scratch memory on any input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineProtocolLimits {
    pub max_tags_per_line: usize,
    pub max_fields_per_line: usize,
}

impl Default for LineProtocolLimits {
    fn default() -> Self {
        LineProtocolLimits { max_tags_per_line: 256, max_fields_per_line: 1024 }
    }
}

/// The reusable line-protocol parser: owns scratch space, holds no body.
#[derive(Debug, Default)]
pub struct LineProtocolParser {
    limits: LineProtocolLimits,
    // Stored with a 'static lifetime while idle and re-typed per call (always
    // empty at the boundary), so the allocations are reused in safe code.
    tags: Vec<Tag<'static>>,
    fields: Vec<Field<'static>>,
    field_order: Vec<u32>,
    field_dead: Vec<bool>,
}

/// Re-types an emptied vector, keeping its allocation (in-place collect: the
/// element types have identical layout; `filter_map` never yields).
pub(crate) fn recycle_vec<T, U>(mut v: Vec<T>) -> Vec<U> {
    v.clear();
    v.into_iter().filter_map(|_| None).collect()
}

impl LineProtocolParser {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_limits(limits: LineProtocolLimits) -> Self {
        LineProtocolParser { limits, ..Self::default() }
    }

    /// Pass one for HTTP: parses every line without a sink. `Ok(records)` if all
    /// lines are valid, else the first bad line, its reason and the bad-line count.
    pub fn validate(&mut self, body: &[u8], precision: Precision, now_ns: i64) -> Result<usize, BatchError> {
        let summary = self.parse_from(body, BodyPosition::START, precision, now_ns, &mut Discard);
        match summary.first_error {
            None => Ok(summary.records),
            Some(first) => Err(BatchError {
                first_line: first.line,
                first_reason: first.reason,
                bad_lines: summary.invalid,
                valid_lines: summary.records,
            }),
        }
    }

    /// Parses a whole body, pushing each valid line into `sink` and counting
    /// invalid ones (the UDP mode; HTTP calls it after [`validate`](Self::validate)).
    pub fn parse_into<S: RecordSink + ?Sized>(
        &mut self,
        body: &[u8],
        precision: Precision,
        now_ns: i64,
        sink: &mut S,
    ) -> ParseSummary {
        self.parse_from(body, BodyPosition::START, precision, now_ns, sink)
    }

    /// Like [`parse_into`](Self::parse_into), starting at `start` (a
    /// [`ParseSummary::resume_at`] from an earlier call on the same body).
    pub fn parse_from<S: RecordSink + ?Sized>(
        &mut self,
        body: &[u8],
        start: BodyPosition,
        precision: Precision,
        now_ns: i64,
        sink: &mut S,
    ) -> ParseSummary {
        let mut tags: Vec<Tag<'_>> = recycle_vec(std::mem::take(&mut self.tags));
        let mut fields: Vec<Field<'_>> = recycle_vec(std::mem::take(&mut self.fields));
        let mut scratch = LineScratch {
            tags: &mut tags,
            fields: &mut fields,
            field_order: &mut self.field_order,
            field_dead: &mut self.field_dead,
            limits: self.limits,
        };
        let mut summary = ParseSummary::default();
        // One UTF-8 check for the whole body (the common case) instead of one per token.
        let text = std::str::from_utf8(body).ok();
        let mut cursor = Cursor { body, text, pos: start.offset.min(body.len()), line: start.line };
        loop {
            cursor.skip_blank_and_comments();
            if cursor.at_end() {
                break;
            }
            let line_start = BodyPosition { offset: cursor.pos, line: cursor.line };
            scratch.tags.clear();
            scratch.fields.clear();
            match parse_line(&mut cursor, &mut scratch, precision, now_ns) {
                Ok(parsed) => {
                    let record = RecordRef {
                        measurement: &parsed.measurement,
                        tags: scratch.tags.as_slice(),
                        fields: scratch.fields.as_slice(),
                        timestamp_ns: parsed.timestamp_ns,
                    };
                    if sink.push(&record).is_err() {
                        summary.resume_at = Some(line_start);
                        break;
                    }
                    summary.records += 1;
                }
                Err(reason) => {
                    summary.invalid += 1;
                    if summary.first_error.is_none() {
                        summary.first_error = Some(LineError { line: line_start.line, reason });
                    }
                    // Resume at the next physical line after the error.
                    cursor.skip_past_newline();
                }
            }
        }
        scratch.tags.clear();
        scratch.fields.clear();
        self.tags = recycle_vec(tags);
        self.fields = recycle_vec(fields);
        summary
    }
}

struct LineScratch<'s, 'a> {
    tags: &'s mut Vec<Tag<'a>>,
    fields: &'s mut Vec<Field<'a>>,
    field_order: &'s mut Vec<u32>,
    field_dead: &'s mut Vec<bool>,
    limits: LineProtocolLimits,
}

struct ParsedLine<'a> {
    measurement: Cow<'a, str>,
    timestamp_ns: i64,
}

/// A position in the body; never indexes out of bounds (all reads go through `peek`).
struct Cursor<'a> {
    body: &'a [u8],
    /// `body` as text when all of it is valid UTF-8; tokens are then sliced from
    /// it without re-validating (see [`Cursor::text`]).
    text: Option<&'a str>,
    pos: usize,
    line: usize,
}

impl<'a> Cursor<'a> {
    fn at_end(&self) -> bool {
        self.pos >= self.body.len()
    }

    fn peek(&self) -> Option<u8> {
        self.body.get(self.pos).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<u8> {
        self.body.get(self.pos.saturating_add(ahead)).copied()
    }

    fn skip_while(&mut self, pred: impl Fn(u8) -> bool) {
        while let Some(b) = self.peek() {
            if !pred(b) {
                break;
            }
            self.pos += 1;
        }
    }

    /// Skips blank lines and `#` comment lines (and leading spaces/tabs).
    fn skip_blank_and_comments(&mut self) {
        loop {
            self.skip_while(|b| b == b' ' || b == b'\t');
            match self.peek() {
                Some(b'\n') => {
                    self.pos += 1;
                    self.line += 1;
                }
                Some(b'\r') if matches!(self.peek_at(1), Some(b'\n') | None) => {
                    self.pos += 1;
                }
                Some(b'#') => self.skip_past_newline(),
                _ => return,
            }
        }
    }

    /// Moves past the next `\n` (or to the end of the body).
    fn skip_past_newline(&mut self) {
        let rest = self.body.get(self.pos..).unwrap_or(&[]);
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                self.pos += i + 1;
                self.line += 1;
            }
            None => self.pos = self.body.len(),
        }
    }

    /// True at `\n`, `\r\n`, a final `\r`, or the end of the body.
    fn at_line_end(&self) -> bool {
        match self.peek() {
            None | Some(b'\n') => true,
            Some(b'\r') => matches!(self.peek_at(1), None | Some(b'\n')),
            _ => false,
        }
    }

    /// Consumes the line terminator (the caller checked [`at_line_end`]).
    fn consume_line_end(&mut self) {
        if self.peek() == Some(b'\r') {
            self.pos += 1;
        }
        if self.peek() == Some(b'\n') {
            self.pos += 1;
            self.line += 1;
        }
    }

    fn slice(&self, from: usize, to: usize) -> &'a [u8] {
        self.body.get(from..to).unwrap_or(&[])
    }

    /// `body[from..to]` as text. Same result as `from_utf8` on the bytes: when
    /// the whole body is valid UTF-8, a sub-slice is valid exactly when both
    /// ends are char boundaries, which `str::get` checks in O(1).
    #[inline]
    fn text(&self, from: usize, to: usize) -> Result<&'a str, LineErrorReason> {
        match self.text {
            Some(text) => text.get(from..to).ok_or(LineErrorReason::InvalidUtf8),
            None => std::str::from_utf8(self.slice(from, to)).map_err(|_| LineErrorReason::InvalidUtf8),
        }
    }

    /// Advances to the first byte (at or after the cursor) in `stop`, or to the end.
    ///
    /// Eight bytes per step (SWAR): one well-predicted branch per word instead
    /// of an unpredictable one per byte, which was the parser's largest cost.
    #[inline(always)]
    fn skip_until(&mut self, stop: &StopSet) {
        let mut pos = self.pos;
        while let Some(word) = self.body.get(pos..pos + 8).and_then(|w| <[u8; 8]>::try_from(w).ok()) {
            let hits = stop.matches(u64::from_le_bytes(word));
            if hits != 0 {
                self.pos = pos + (hits.trailing_zeros() / 8) as usize;
                return;
            }
            pos += 8;
        }
        // The last 0-7 bytes, padded with zero bytes (never a stop byte).
        let rest = self.body.get(pos..).unwrap_or(&[]);
        let mut word = [0u8; 8];
        if let Some(head) = word.get_mut(..rest.len()) {
            head.copy_from_slice(rest);
        }
        let hits = stop.matches(u64::from_le_bytes(word));
        self.pos = if hits != 0 { pos + (hits.trailing_zeros() / 8) as usize } else { self.body.len() };
    }
}

/// A set of up to five (non-zero) bytes a scan stops at, tested a word at a time.
struct StopSet {
    /// Each byte of the set broadcast to all eight lanes (the last one repeated
    /// to fill five).
    lanes: [u64; 5],
}

const LOW_BITS: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

impl StopSet {
    const fn new(bytes: &[u8]) -> StopSet {
        assert!(!bytes.is_empty() && bytes.len() <= 5);
        let mut lanes = [0u64; 5];
        let mut i = 0;
        while i < 5 {
            let b = if i < bytes.len() { bytes[i] } else { bytes[bytes.len() - 1] };
            assert!(b != 0, "zero pads the tail word, so it cannot be a stop byte");
            lanes[i] = LOW_BITS * b as u64;
            i += 1;
        }
        StopSet { lanes }
    }

    /// The high bit of each byte lane of `word` that holds a byte of the set.
    /// Exact up to and including the lowest set bit (a borrow starts only at a
    /// matching lane and can only mark lanes above it), which is all a scan reads.
    #[inline(always)]
    fn matches(&self, word: u64) -> u64 {
        let mut hits = 0;
        for lane in self.lanes {
            let x = word ^ lane;
            hits |= x.wrapping_sub(LOW_BITS) & !x & HIGH_BITS;
        }
        hits
    }

    #[cfg(test)]
    fn contains(&self, b: u8) -> bool {
        self.matches(u64::from(b)) & 0x80 != 0
    }
}

/// Bytes that end (or may escape within) a measurement: its terminators and `\\`.
static MEASUREMENT_STOP: StopSet = StopSet::new(b", \n\\");
/// Bytes that end (or may escape within) a tag key, tag value or field key.
static KEY_STOP: StopSet = StopSet::new(b",= \n\\");
/// Bytes that end an unquoted field value.
static VALUE_STOP: StopSet = StopSet::new(b", \n\r");
/// Bytes that end a timestamp token.
static TIMESTAMP_STOP: StopSet = StopSet::new(b" \t\r\n");

/// Which element an identifier is: decides its terminators and escapes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Element {
    Measurement,
    TagKey,
    TagValue,
    FieldKey,
}

impl Element {
    fn is_escapable(self, b: u8) -> bool {
        match self {
            Element::Measurement => matches!(b, b',' | b' ' | b'\\'),
            Element::TagKey | Element::TagValue | Element::FieldKey => {
                matches!(b, b',' | b'=' | b' ' | b'\\')
            }
        }
    }

    /// Terminators plus the backslash: where [`scan_identifier`] must look.
    fn stop_bytes(self) -> &'static StopSet {
        match self {
            Element::Measurement => &MEASUREMENT_STOP,
            Element::TagKey | Element::TagValue | Element::FieldKey => &KEY_STOP,
        }
    }

    /// The grammar's terminators, spelled out; the stop tables are checked against it.
    #[cfg(test)]
    fn is_terminator(self, b: u8) -> bool {
        match self {
            Element::Measurement => matches!(b, b',' | b' ' | b'\n'),
            Element::TagKey | Element::TagValue | Element::FieldKey => {
                matches!(b, b',' | b'=' | b' ' | b'\n')
            }
        }
    }
}

/// Scans an identifier up to its first unescaped terminator and unescapes it
/// (borrowed unless an escape was present).
///
/// The common case (no backslash before the terminator) is inlined into
/// `parse_line` so the borrowed `Cow` is built in registers and written
/// straight into the scratch vector; anything with a backslash goes to
/// [`scan_identifier_escaped`].
#[inline(always)]
fn scan_identifier<'a>(cursor: &mut Cursor<'a>, element: Element) -> Result<Cow<'a, str>, LineErrorReason> {
    let start = cursor.pos;
    cursor.skip_until(element.stop_bytes());
    if cursor.peek() == Some(b'\\') {
        return scan_identifier_escaped(cursor, element, start);
    }
    cursor.text(start, cursor.pos).map(Cow::Borrowed)
}

/// [`scan_identifier`] from the first backslash (the cursor is on it) of an
/// identifier that began at `start`.
#[inline(never)]
fn scan_identifier_escaped<'a>(
    cursor: &mut Cursor<'a>,
    element: Element,
    start: usize,
) -> Result<Cow<'a, str>, LineErrorReason> {
    let stop = element.stop_bytes();
    let mut escaped = false;
    loop {
        cursor.skip_until(stop);
        match cursor.peek() {
            Some(b'\\') => {
                if cursor.peek_at(1).is_some_and(|next| element.is_escapable(next)) {
                    escaped = true;
                    cursor.pos += 2;
                } else {
                    cursor.pos += 1;
                }
            }
            // A terminator or the end of the body.
            _ => break,
        }
    }
    if !escaped {
        return cursor.text(start, cursor.pos).map(Cow::Borrowed);
    }
    unescape(cursor.slice(start, cursor.pos), |next| element.is_escapable(next))
}

/// `raw` with every backslash that precedes an `is_escapable` byte removed (the
/// byte after it is kept as is); any other backslash stays a literal one.
fn unescape(raw: &[u8], is_escapable: impl Fn(u8) -> bool) -> Result<Cow<'_, str>, LineErrorReason> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        if b == b'\\' {
            if let Some(&next) = raw.get(i + 1) {
                if is_escapable(next) {
                    out.push(next);
                    i += 2;
                    continue;
                }
            }
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8(out).map(Cow::Owned).map_err(|_| LineErrorReason::InvalidUtf8)
}

/// A non-empty tag or field key and the `=` after it (consumed); `empty` and
/// `no_equals` name the element in the error.
#[inline(always)]
fn scan_key<'a>(
    cursor: &mut Cursor<'a>,
    element: Element,
    empty: LineErrorReason,
    no_equals: LineErrorReason,
) -> Result<Cow<'a, str>, LineErrorReason> {
    let key = scan_identifier(cursor, element)?;
    if key.is_empty() {
        return Err(empty);
    }
    if cursor.peek() != Some(b'=') {
        return Err(no_equals);
    }
    cursor.pos += 1;
    Ok(key)
}

fn parse_line<'a>(
    cursor: &mut Cursor<'a>,
    scratch: &mut LineScratch<'_, 'a>,
    precision: Precision,
    now_ns: i64,
) -> Result<ParsedLine<'a>, LineErrorReason> {
    let measurement = scan_identifier(cursor, Element::Measurement)?;
    if measurement.is_empty() {
        return Err(LineErrorReason::EmptyMeasurement);
    }

    // Tag set.
    while cursor.peek() == Some(b',') {
        cursor.pos += 1;
        let key = scan_key(cursor, Element::TagKey, LineErrorReason::EmptyTagKey, LineErrorReason::TagWithoutEquals)?;
        let value = scan_identifier(cursor, Element::TagValue)?;
        if cursor.peek() == Some(b'=') {
            return Err(LineErrorReason::UnescapedEqualsInTagValue);
        }
        if value.is_empty() {
            return Err(LineErrorReason::MissingTagValue);
        }
        if scratch.tags.len() >= scratch.limits.max_tags_per_line {
            return Err(LineErrorReason::TooManyTags);
        }
        scratch.tags.push(Tag { key, value });
    }
    sort_tags(scratch.tags)?;

    // Separator before the field set.
    if cursor.peek() != Some(b' ') {
        return Err(LineErrorReason::MissingFields);
    }
    cursor.skip_while(|b| b == b' ');
    if cursor.at_line_end() {
        return Err(LineErrorReason::MissingFields);
    }

    // Field set.
    loop {
        let key =
            scan_key(cursor, Element::FieldKey, LineErrorReason::EmptyFieldKey, LineErrorReason::FieldWithoutEquals)?;
        let value = parse_field_value(cursor)?;
        if scratch.fields.len() >= scratch.limits.max_fields_per_line {
            return Err(LineErrorReason::TooManyFields);
        }
        scratch.fields.push(Field { key, value });
        if cursor.peek() == Some(b',') {
            cursor.pos += 1;
            continue;
        }
        break;
    }
    dedup_fields_last_wins(scratch);

    // Optional timestamp, then only whitespace to the end of the line.
    let mut timestamp_ns = now_ns;
    if cursor.peek() == Some(b' ') {
        cursor.skip_while(|b| b == b' ' || b == b'\t');
        if !cursor.at_line_end() {
            let start = cursor.pos;
            cursor.skip_until(&TIMESTAMP_STOP);
            let timestamp = parse_timestamp(cursor.slice(start, cursor.pos))?;
            timestamp_ns = precision.to_nanos(timestamp).ok_or(LineErrorReason::TimestampOutOfRange)?;
            cursor.skip_while(|b| b == b' ' || b == b'\t');
        }
    }
    if !cursor.at_line_end() {
        return Err(LineErrorReason::TrailingGarbage);
    }
    cursor.consume_line_end();
    Ok(ParsedLine { measurement, timestamp_ns })
}

/// Sorts tags by key (byte order); telegraf already sends them sorted, so check first.
fn sort_tags(tags: &mut [Tag<'_>]) -> Result<(), LineErrorReason> {
    // Most neighbours differ in the first byte: settle those without memcmp.
    fn key_cmp(a: &[u8], b: &[u8]) -> Ordering {
        match a.first().cmp(&b.first()) {
            Ordering::Equal => a.cmp(b),
            order => order,
        }
    }
    // Common case in one pass: strictly increasing keys are sorted and distinct.
    if tags.windows(2).all(|w| key_cmp(w[0].key.as_bytes(), w[1].key.as_bytes()) == Ordering::Less) {
        return Ok(());
    }
    if tags.len() <= 16 {
        // Insertion sort: a handful of tags, often nearly sorted; a duplicate
        // key shows up as an equal neighbour on the way (the sorted prefix
        // puts an equal key right where the new one stops).
        for i in 1..tags.len() {
            let mut j = i;
            while j > 0 {
                match key_cmp(tags[j - 1].key.as_bytes(), tags[j].key.as_bytes()) {
                    Ordering::Greater => tags.swap(j - 1, j),
                    Ordering::Equal => return Err(LineErrorReason::DuplicateTagKey),
                    Ordering::Less => break,
                }
                j -= 1;
            }
        }
        return Ok(());
    }
    let by_key = |a: &Tag<'_>, b: &Tag<'_>| a.key.as_bytes().cmp(b.key.as_bytes());
    if !tags.windows(2).all(|w| by_key(&w[0], &w[1]) != Ordering::Greater) {
        tags.sort_unstable_by(by_key);
    }
    if tags.windows(2).any(|w| w[0].key == w[1].key) {
        return Err(LineErrorReason::DuplicateTagKey);
    }
    Ok(())
}

/// Removes earlier duplicates of a field key, keeping the last value and the
/// input order of the survivors. Small sets compare pairwise; large ones sort
/// an index scratch so adversarial lines stay O(n log n).
fn dedup_fields_last_wins(scratch: &mut LineScratch<'_, '_>) {
    let fields = &mut *scratch.fields;
    let n = fields.len();
    if n < 2 {
        return;
    }
    // Small sets with distinct keys (the common case): nothing to mark. A
    // 64-bit signature set of (length, last byte) proves most sets distinct
    // with one well-predicted branch per key; a shared signature falls back
    // to comparing pairs.
    if n <= 16 {
        let mut seen = 0u64;
        let mut maybe_duplicate = false;
        for f in fields.iter() {
            let key = f.key.as_bytes();
            let signature = (key.len() as u64).wrapping_mul(7) ^ u64::from(key.last().copied().unwrap_or(0));
            let bit = 1u64 << (signature & 63);
            maybe_duplicate |= seen & bit != 0;
            seen |= bit;
        }
        if !maybe_duplicate
            || !fields
                .iter()
                .enumerate()
                .any(|(i, g)| fields.get(i + 1..).unwrap_or(&[]).iter().any(|f| same_key(&g.key, &f.key)))
        {
            return;
        }
    }
    let dead = &mut *scratch.field_dead;
    dead.clear();
    dead.resize(n, false);
    let mut any_dead = false;
    if n <= 16 {
        for i in 0..n {
            let later_same = fields
                .get(i + 1..)
                .unwrap_or(&[])
                .iter()
                .any(|f| fields.get(i).is_some_and(|g| same_key(&g.key, &f.key)));
            if later_same {
                if let Some(d) = dead.get_mut(i) {
                    *d = true;
                    any_dead = true;
                }
            }
        }
    } else {
        let order = &mut *scratch.field_order;
        order.clear();
        order.extend((0..n).filter_map(|i| u32::try_from(i).ok()));
        let key_of = |i: u32| fields.get(i as usize).map(|f| f.key.as_bytes()).unwrap_or(&[]);
        // Stable: equal keys keep input order, so the last of a run is the survivor.
        order.sort_by(|&a, &b| key_of(a).cmp(key_of(b)));
        for w in order.windows(2) {
            if key_of(w[0]) == key_of(w[1]) {
                if let Some(d) = dead.get_mut(w[0] as usize) {
                    *d = true;
                    any_dead = true;
                }
            }
        }
    }
    if any_dead {
        let mut index = 0;
        fields.retain(|_| {
            let keep = !dead.get(index).copied().unwrap_or(false);
            index += 1;
            keep
        });
    }
}

/// `a == b`, rejecting most distinct keys (same length, shared prefix such as
/// `usage_`) on the last byte before calling memcmp.
fn same_key(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.last() == b.last() && a == b
}

/// Parses a field value at the cursor: a quoted string or an unquoted token.
fn parse_field_value<'a>(cursor: &mut Cursor<'a>) -> Result<FieldValue<'a>, LineErrorReason> {
    if cursor.peek() == Some(b'"') {
        let value = scan_string(cursor)?;
        return match cursor.peek() {
            None | Some(b',' | b' ' | b'\n') => Ok(FieldValue::Str(value)),
            Some(b'\r') if cursor.at_line_end() => Ok(FieldValue::Str(value)),
            Some(_) => Err(LineErrorReason::GarbageAfterString),
        };
    }
    let start = cursor.pos;
    cursor.skip_until(&VALUE_STOP);
    let token = cursor.slice(start, cursor.pos);
    parse_unquoted_value(token)
}

/// Scans `"..."` (the cursor is on the opening quote); `\"` and `\\` are
/// unescaped, raw newlines are kept (and counted for line numbers).
fn scan_string<'a>(cursor: &mut Cursor<'a>) -> Result<Cow<'a, str>, LineErrorReason> {
    cursor.pos += 1;
    let start = cursor.pos;
    let mut escaped = false;
    let mut newlines = 0;
    loop {
        match cursor.peek() {
            None => return Err(LineErrorReason::UnterminatedString),
            Some(b'\\') if cursor.peek_at(1).is_some_and(is_string_escapable) => {
                escaped = true;
                cursor.pos += 2;
            }
            Some(b'"') => break,
            Some(b) => {
                if b == b'\n' {
                    newlines += 1;
                }
                cursor.pos += 1;
            }
        }
    }
    let end = cursor.pos;
    let raw = cursor.slice(start, end);
    cursor.pos += 1; // closing quote
    cursor.line += newlines;
    if !escaped {
        return cursor.text(start, end).map(Cow::Borrowed);
    }
    unescape(raw, is_string_escapable)
}

/// The bytes a backslash escapes inside a quoted string field value.
fn is_string_escapable(b: u8) -> bool {
    matches!(b, b'"' | b'\\')
}

/// `-?digits`, nothing else (no `+`, no spaces).
pub(crate) fn is_integer_literal(digits: &[u8]) -> bool {
    let digits = digits.strip_prefix(b"-").unwrap_or(digits);
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
}

/// InfluxDB float syntax: `-?(digits[.digits*]|.digits)([eE][+-]?digits)?`.
pub(crate) fn is_float_literal(token: &[u8]) -> bool {
    let rest = token.strip_prefix(b"-").unwrap_or(token);
    let int_len = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let rest = rest.get(int_len..).unwrap_or(&[]);
    let (frac_len, rest) = match rest.strip_prefix(b".") {
        Some(after_dot) => {
            let n = after_dot.iter().take_while(|b| b.is_ascii_digit()).count();
            (n, after_dot.get(n..).unwrap_or(&[]))
        }
        None => (0, rest),
    };
    if int_len + frac_len == 0 {
        return false;
    }
    match rest.first() {
        None => true,
        Some(b'e' | b'E') => {
            let exp = rest.get(1..).unwrap_or(&[]);
            let exp = exp.strip_prefix(b"+").or_else(|| exp.strip_prefix(b"-")).unwrap_or(exp);
            !exp.is_empty() && exp.iter().all(u8::is_ascii_digit)
        }
        Some(_) => false,
    }
}

fn parse_unquoted_value<'a>(token: &[u8]) -> Result<FieldValue<'a>, LineErrorReason> {
    if token.is_empty() {
        return Err(LineErrorReason::MissingFieldValue);
    }
    match token {
        b"t" | b"T" | b"true" | b"True" | b"TRUE" => return Ok(FieldValue::Bool(true)),
        b"f" | b"F" | b"false" | b"False" | b"FALSE" => return Ok(FieldValue::Bool(false)),
        _ => {}
    }
    if let Some(digits) = token.strip_suffix(b"i") {
        return parse_signed(digits)
            .value_or(LineErrorReason::IntegerOutOfRange, LineErrorReason::InvalidFieldValue)
            .map(FieldValue::Int);
    }
    if let Some(digits) = token.strip_suffix(b"u") {
        return parse_digits(digits)
            .value_or(LineErrorReason::IntegerOutOfRange, LineErrorReason::InvalidFieldValue)
            .map(FieldValue::UInt);
    }
    if let Some(value) = parse_short_decimal(token) {
        return Ok(FieldValue::Float(value));
    }
    if !is_float_literal(token) {
        return Err(LineErrorReason::InvalidFieldValue);
    }
    // Every accepted float literal is ASCII, so from_utf8 cannot fail on it.
    fn as_str(digits: &[u8]) -> Result<&str, LineErrorReason> {
        std::str::from_utf8(digits).map_err(|_| LineErrorReason::InvalidFieldValue)
    }
    let value: f64 = as_str(token)?.parse().map_err(|_| LineErrorReason::InvalidFieldValue)?;
    if !value.is_finite() {
        return Err(LineErrorReason::FloatOutOfRange);
    }
    Ok(FieldValue::Float(value))
}

fn parse_timestamp(token: &[u8]) -> Result<i64, LineErrorReason> {
    parse_signed(token).value_or(LineErrorReason::TimestampOutOfRange, LineErrorReason::InvalidTimestamp)
}

/// An integer token, classified like `is_integer_literal` then `str::parse`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IntLiteral<T> {
    Value(T),
    /// Well-formed digits whose value does not fit.
    OutOfRange,
    /// Not `-?digits` (for unsigned: not `digits`).
    Invalid,
}

impl<T> IntLiteral<T> {
    /// The value, or the caller's reason for each way the token can fail.
    #[inline]
    fn value_or(self, out_of_range: LineErrorReason, invalid: LineErrorReason) -> Result<T, LineErrorReason> {
        match self {
            IntLiteral::Value(v) => Ok(v),
            IntLiteral::OutOfRange => Err(out_of_range),
            IntLiteral::Invalid => Err(invalid),
        }
    }
}

/// `digits` (at least one ASCII digit, nothing else) as a `u64`; every byte is
/// checked before an overflow is reported, so malformed beats out-of-range.
fn parse_digits(digits: &[u8]) -> IntLiteral<u64> {
    if digits.is_empty() {
        return IntLiteral::Invalid;
    }
    // Up to 19 digits cannot overflow a u64 (10^19 - 1 < 2^64): no checks needed
    // (this covers nanosecond timestamps).
    if digits.len() <= 19 {
        let mut value: u64 = 0;
        let mut chunks = digits.chunks_exact(8);
        for chunk in &mut chunks {
            let Ok(bytes) = <[u8; 8]>::try_from(chunk) else { break };
            match eight_digits(bytes) {
                Some(v) => value = value * 100_000_000 + v,
                None => return IntLiteral::Invalid,
            }
        }
        for &b in chunks.remainder() {
            let d = b.wrapping_sub(b'0');
            if d > 9 {
                return IntLiteral::Invalid;
            }
            value = value * 10 + u64::from(d);
        }
        return IntLiteral::Value(value);
    }
    let mut value: u64 = 0;
    let mut overflow = false;
    for &b in digits {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return IntLiteral::Invalid;
        }
        match value.checked_mul(10).and_then(|v| v.checked_add(u64::from(d))) {
            Some(v) => value = v,
            None => overflow = true,
        }
    }
    if overflow {
        IntLiteral::OutOfRange
    } else {
        IntLiteral::Value(value)
    }
}

/// Eight ASCII digits (first digit in `bytes[0]`) as their value, or `None` if
/// any byte is not a digit: the SWAR check and reduction used by simdjson and
/// fast_float (each byte must be `0x3_` and stay `0x3_` after adding 6; a carry
/// out of a byte only happens for bytes >= 0xFA, which already fail).
fn eight_digits(bytes: [u8; 8]) -> Option<u64> {
    let v = u64::from_le_bytes(bytes);
    const HIGH_NIBBLES: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    if (v & HIGH_NIBBLES) | ((v.wrapping_add(0x0606_0606_0606_0606) & HIGH_NIBBLES) >> 4) != 0x3333_3333_3333_3333 {
        return None;
    }
    let v = v - 0x3030_3030_3030_3030;
    // Pairs of digits, then quads, then all eight.
    let v = v.wrapping_mul(10).wrapping_add(v >> 8);
    const MASK: u64 = 0x0000_00FF_0000_00FF;
    const MUL1: u64 = 100 + (1_000_000 << 32);
    const MUL2: u64 = 1 + (10_000 << 32);
    Some(((v & MASK).wrapping_mul(MUL1).wrapping_add(((v >> 16) & MASK).wrapping_mul(MUL2))) >> 32)
}

/// `-?digits` as an `i64` (the same accepted set and range as `str::parse::<i64>`
/// after `is_integer_literal`).
fn parse_signed(token: &[u8]) -> IntLiteral<i64> {
    let (negative, digits) = match token.strip_prefix(b"-") {
        Some(rest) => (true, rest),
        None => (false, token),
    };
    match parse_digits(digits) {
        IntLiteral::Value(magnitude) if negative => match 0i64.checked_sub_unsigned(magnitude) {
            Some(v) => IntLiteral::Value(v),
            None => IntLiteral::OutOfRange,
        },
        IntLiteral::Value(magnitude) => match i64::try_from(magnitude) {
            Ok(v) => IntLiteral::Value(v),
            Err(_) => IntLiteral::OutOfRange,
        },
        IntLiteral::OutOfRange => IntLiteral::OutOfRange,
        IntLiteral::Invalid => IntLiteral::Invalid,
    }
}

/// Exact fast path for the common float shape `-?digits[.digits]` with at most
/// 15 digits in all (Clinger): the digits form an integer `m < 10^15 < 2^53`
/// and the divisor `10^k` (`k <= 15`) is exact in an `f64`, so the single IEEE
/// division is correctly rounded, i.e. equal to `str::parse::<f64>`. `None`
/// for anything else (exponents, long mantissas, invalid text): use the slow path.
fn parse_short_decimal(token: &[u8]) -> Option<f64> {
    const POW10: [f64; 16] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15];
    let (negative, rest) = match token.strip_prefix(b"-") {
        Some(rest) => (true, rest),
        None => (false, token),
    };
    let mut mantissa: u64 = 0;
    let mut digits = 0usize;
    let mut frac_digits = 0usize;
    let mut seen_dot = false;
    for &b in rest {
        let d = b.wrapping_sub(b'0');
        if d <= 9 {
            mantissa = mantissa * 10 + u64::from(d);
            digits += 1;
            frac_digits += usize::from(seen_dot);
            if digits > 15 {
                return None;
            }
        } else if b == b'.' && !seen_dot {
            seen_dot = true;
        } else {
            return None;
        }
    }
    if digits == 0 {
        return None;
    }
    // `mantissa < 10^15` is exact as f64; `POW10[frac_digits]` is exact.
    #[allow(clippy::cast_precision_loss)]
    let value = mantissa as f64 / *POW10.get(frac_digits)?;
    Some(if negative { -value } else { value })
}

/// Why a record cannot be written as line protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("empty measurement, tag key, tag value or field key")]
    EmptyName,
    #[error("measurement starts with '#' or a tab (would read back as a comment or be trimmed)")]
    AmbiguousMeasurementStart,
    #[error("newline in a measurement, tag or field key (line protocol cannot escape it)")]
    NewlineInName,
    #[error("record has no fields")]
    NoFields,
    #[error("non-finite float field value")]
    NonFiniteFloat,
}

fn write_escaped(out: &mut Vec<u8>, text: &str, element: Element) -> Result<(), EncodeError> {
    if text.is_empty() {
        return Err(EncodeError::EmptyName);
    }
    for &b in text.as_bytes() {
        if b == b'\n' {
            return Err(EncodeError::NewlineInName);
        }
        if element.is_escapable(b) {
            out.push(b'\\');
        }
        out.push(b);
    }
    Ok(())
}

/// Appends `record` as one line (with `\n`) of line protocol, escaped so that
/// [`LineProtocolParser`] reads back the same record; the timestamp is always
/// written, in nanoseconds. On error `out` is left as it was.
pub fn write_line_protocol(record: &RecordRef<'_, '_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start_len = out.len();
    let result = write_line_protocol_inner(record, out);
    if result.is_err() {
        out.truncate(start_len);
    }
    result
}

fn write_line_protocol_inner(record: &RecordRef<'_, '_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    use std::io::Write as _;
    if matches!(record.measurement.as_bytes().first(), Some(b'#' | b'\t')) {
        return Err(EncodeError::AmbiguousMeasurementStart);
    }
    write_escaped(out, record.measurement, Element::Measurement)?;
    for tag in record.tags {
        out.push(b',');
        write_escaped(out, &tag.key, Element::TagKey)?;
        out.push(b'=');
        write_escaped(out, &tag.value, Element::TagValue)?;
    }
    if record.fields.is_empty() {
        return Err(EncodeError::NoFields);
    }
    for (i, field) in record.fields.iter().enumerate() {
        out.push(if i == 0 { b' ' } else { b',' });
        write_escaped(out, &field.key, Element::FieldKey)?;
        out.push(b'=');
        // Writing into a Vec cannot fail; the io::Result is only a formality.
        let _ = match &field.value {
            FieldValue::Int(v) => write!(out, "{v}i"),
            FieldValue::UInt(v) => write!(out, "{v}u"),
            FieldValue::Float(v) if !v.is_finite() => return Err(EncodeError::NonFiniteFloat),
            // `{:?}` prints the shortest round-tripping form and keeps a `.0` or exponent.
            FieldValue::Float(v) => write!(out, "{v:?}"),
            FieldValue::Bool(v) => write!(out, "{v}"),
            FieldValue::Str(s) => {
                out.push(b'"');
                for &b in s.as_bytes() {
                    if is_string_escapable(b) {
                        out.push(b'\\');
                    }
                    out.push(b);
                }
                out.push(b'"');
                Ok(())
            }
        };
    }
    let _ = writeln!(out, " {}", record.timestamp_ns);
    Ok(())
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::Nanoseconds => "ns",
            Precision::Microseconds => "us",
            Precision::Milliseconds => "ms",
            Precision::Seconds => "s",
            Precision::Minutes => "m",
            Precision::Hours => "h",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::record::{field, tag, Record, SinkFull};

    const NOW: i64 = 1_700_000_000_000_000_000;

    fn parse_all(body: &[u8]) -> (Vec<Record>, ParseSummary) {
        let mut parser = LineProtocolParser::new();
        let mut records = Vec::new();
        let summary = parser.parse_into(body, Precision::Nanoseconds, NOW, &mut records);
        (records, summary)
    }

    fn parse_one(body: &[u8]) -> Record {
        let (records, summary) = parse_all(body);
        assert_eq!(summary.first_error, None, "body {:?}", String::from_utf8_lossy(body));
        assert_eq!(records.len(), 1);
        records.into_iter().next().expect("one record")
    }

    fn reason(body: &[u8]) -> LineErrorReason {
        let (records, summary) = parse_all(body);
        assert!(records.is_empty(), "body {:?} parsed", String::from_utf8_lossy(body));
        summary.first_error.expect("an error").reason
    }

    #[test]
    fn full_line_with_tags_fields_and_timestamp() {
        let record = parse_one(
            b"cpu,host=server01,region=us-west usage_idle=98.5,usage_user=1.25 1434055562000000000",
            // ^ measurement
            //   ^ tag set (already sorted)
            //                                 ^ field set: two floats
            //                                                                ^ timestamp, ns
        );
        assert_eq!(record.measurement, "cpu");
        assert_eq!(record.tags, vec![tag("host", "server01"), tag("region", "us-west")]);
        assert_eq!(
            record.fields,
            vec![field("usage_idle", FieldValue::Float(98.5)), field("usage_user", FieldValue::Float(1.25))]
        );
        assert_eq!(record.timestamp_ns, 1_434_055_562_000_000_000);
    }

    #[test]
    fn missing_timestamp_is_now() {
        let record = parse_one(b"mem free=1i");
        assert_eq!(record.timestamp_ns, NOW);
        assert!(record.tags.is_empty());
    }

    #[test]
    fn tags_are_sorted_by_key() {
        let record = parse_one(b"m,zone=a,b=2,alpha=x v=1");
        //                      ^ tags out of order: zone, b, alpha
        let keys: Vec<_> = record.tags.iter().map(|t| t.key.to_string()).collect();
        assert_eq!(keys, ["alpha", "b", "zone"]);
    }

    #[test]
    fn duplicate_tag_key_is_rejected() {
        assert_eq!(reason(b"m,a=1,a=2 v=1"), LineErrorReason::DuplicateTagKey);
    }

    #[test]
    fn duplicate_field_key_last_wins() {
        let record = parse_one(b"m a=1i,b=2i,a=3i");
        assert_eq!(record.fields, vec![field("b", FieldValue::Int(2)), field("a", FieldValue::Int(3))]);
        // Large field sets take the sorted-index path.
        let mut line = b"m ".to_vec();
        for i in 0..40 {
            line.extend_from_slice(format!("f{}={}i,", i % 20, i).as_bytes());
        }
        line.pop();
        let record = parse_one(&line);
        assert_eq!(record.fields.len(), 20);
        assert_eq!(record.fields[0], field("f0", FieldValue::Int(20)));
        assert_eq!(record.fields[19], field("f19", FieldValue::Int(39)));
    }

    #[test]
    fn field_value_types() {
        let record = parse_one(b"m i=-42i,u=42u,f=-1.5E-2,e=1e3,d=.5,p=3.,s=\"hi\",t=t,T=TRUE,F=False");
        //                       ^ signed int  ^ unsigned ^ exponent forms ^ leading/trailing dot
        assert_eq!(
            record.fields,
            vec![
                field("i", FieldValue::Int(-42)),
                field("u", FieldValue::UInt(42)),
                field("f", FieldValue::Float(-1.5e-2)),
                field("e", FieldValue::Float(1000.0)),
                field("d", FieldValue::Float(0.5)),
                field("p", FieldValue::Float(3.0)),
                field("s", FieldValue::Str("hi".into())),
                field("t", FieldValue::Bool(true)),
                field("T", FieldValue::Bool(true)),
                field("F", FieldValue::Bool(false)),
            ]
        );
    }

    #[test]
    fn all_boolean_spellings() {
        for (text, value) in [
            ("t", true),
            ("T", true),
            ("true", true),
            ("True", true),
            ("TRUE", true),
            ("f", false),
            ("F", false),
            ("false", false),
            ("False", false),
            ("FALSE", false),
        ] {
            let record = parse_one(format!("m b={text}").as_bytes());
            assert_eq!(record.fields[0].value, FieldValue::Bool(value), "{text}");
        }
        assert_eq!(reason(b"m b=tRUE"), LineErrorReason::InvalidFieldValue);
    }

    #[test]
    fn integer_ranges_are_checked() {
        assert_eq!(parse_one(b"m v=9223372036854775807i").fields[0].value, FieldValue::Int(i64::MAX));
        assert_eq!(parse_one(b"m v=-9223372036854775808i").fields[0].value, FieldValue::Int(i64::MIN));
        assert_eq!(reason(b"m v=9223372036854775808i"), LineErrorReason::IntegerOutOfRange);
        assert_eq!(parse_one(b"m v=18446744073709551615u").fields[0].value, FieldValue::UInt(u64::MAX));
        assert_eq!(reason(b"m v=18446744073709551616u"), LineErrorReason::IntegerOutOfRange);
        assert_eq!(reason(b"m v=-1u"), LineErrorReason::InvalidFieldValue);
        assert_eq!(reason(b"m v=+1i"), LineErrorReason::InvalidFieldValue);
        assert_eq!(reason(b"m v=1.5i"), LineErrorReason::InvalidFieldValue);
    }

    #[test]
    fn stop_tables_match_the_grammar() {
        for element in [Element::Measurement, Element::TagKey, Element::TagValue, Element::FieldKey] {
            for b in 0..=255u8 {
                let expected = element.is_terminator(b) || b == b'\\';
                assert_eq!(element.stop_bytes().contains(b), expected, "byte {b:#04x}");
            }
        }
        for b in 0..=255u8 {
            assert_eq!(VALUE_STOP.contains(b), matches!(b, b',' | b' ' | b'\n' | b'\r'));
            assert_eq!(TIMESTAMP_STOP.contains(b), matches!(b, b' ' | b'\t' | b'\r' | b'\n'));
        }
    }

    #[test]
    fn hand_written_integers_match_str_parse() {
        let tokens: &[&[u8]] = &[
            b"0",
            b"-0",
            b"007",
            b"-",
            b"",
            b"+1",
            b"1-",
            b"12a",
            b"9223372036854775807",
            b"9223372036854775808",
            b"-9223372036854775808",
            b"-9223372036854775809",
            b"18446744073709551615",
            b"18446744073709551616",
            b"99999999999999999999999x",
            b"1 ",
            b"--1",
            b"\xff1",
        ];
        for &token in tokens {
            let text = std::str::from_utf8(token).unwrap_or("x");
            let signed = if !is_integer_literal(token) {
                IntLiteral::Invalid
            } else {
                text.parse::<i64>().map_or(IntLiteral::OutOfRange, IntLiteral::Value)
            };
            assert_eq!(parse_signed(token), signed, "{token:?}");
            let unsigned = if token.first() == Some(&b'-') || !is_integer_literal(token) {
                IntLiteral::Invalid
            } else {
                text.parse::<u64>().map_or(IntLiteral::OutOfRange, IntLiteral::Value)
            };
            assert_eq!(parse_digits(token), unsigned, "{token:?}");
        }
    }

    #[test]
    fn eight_digit_swar_matches_bytewise() {
        assert_eq!(eight_digits(*b"00000000"), Some(0));
        assert_eq!(eight_digits(*b"12345678"), Some(12_345_678));
        assert_eq!(eight_digits(*b"99999999"), Some(99_999_999));
        assert_eq!(eight_digits(*b"1234567/"), None);
        assert_eq!(eight_digits(*b":2345678"), None);
        for bad in [b'/', b':', b' ', b'-', 0x00, 0x80, 0xfa, 0xff, b'a', b'i'] {
            for at in 0..8 {
                let mut bytes = *b"12345678";
                bytes[at] = bad;
                assert_eq!(eight_digits(bytes), None, "{bytes:?}");
            }
        }
    }

    #[test]
    fn short_decimal_fast_path_is_exact() {
        let tokens = [
            "0",
            "-0",
            "0.0",
            "-0.0",
            "5.",
            ".5",
            "-.5",
            "1.25",
            "95.5",
            "0.1",
            "0.3",
            "42.7",
            "123456789012345",
            "12345678901234.5",
            "0.000000000000001",
            "999999999999999",
            "-999999999999999",
            "9007199254740993",
            "1234567890123456",
            "1.7976931348623157",
            "2.2250738585072014",
            "0.1234567890123",
        ];
        for token in tokens {
            let expected: f64 = token.parse().expect("valid float");
            match parse_short_decimal(token.as_bytes()) {
                Some(v) => assert_eq!(v.to_bits(), expected.to_bits(), "{token}"),
                None => assert!(token.bytes().filter(u8::is_ascii_digit).count() > 15, "{token}"),
            }
        }
        for token in ["", "-", ".", "1..2", "1e5", "1.5e3", "nan", "inf", "-x", "1-"] {
            assert_eq!(parse_short_decimal(token.as_bytes()), None, "{token}");
        }
    }

    #[test]
    fn invalid_floats_are_rejected() {
        assert_eq!(reason(b"m v=NaN"), LineErrorReason::InvalidFieldValue);
        assert_eq!(reason(b"m v=inf"), LineErrorReason::InvalidFieldValue);
        assert_eq!(reason(b"m v=1e"), LineErrorReason::InvalidFieldValue);
        assert_eq!(reason(b"m v=1..2"), LineErrorReason::InvalidFieldValue);
        assert_eq!(reason(b"m v=-"), LineErrorReason::InvalidFieldValue);
        assert_eq!(reason(b"m v=."), LineErrorReason::InvalidFieldValue);
        assert_eq!(reason(b"m v=1e999"), LineErrorReason::FloatOutOfRange);
    }

    #[test]
    fn escapes_in_identifiers() {
        let record = parse_one(br"my\ meas\,ure=x,tag\ key\,\==tag\ val\,\= field\ k\,\==1i");
        //                        ^ measurement: `\ ` and `\,` escaped, `=` literal
        //                                       ^ tag key / value: `\ ` `\,` `\=`
        assert_eq!(record.measurement, "my meas,ure=x");
        assert_eq!(record.tags, vec![tag("tag key,=", "tag val,=")]);
        assert_eq!(record.fields, vec![field("field k,=", FieldValue::Int(1))]);
        assert!(matches!(record.measurement, Cow::Owned(_)) || record.measurement == "my meas,ure=x");
    }

    #[test]
    fn backslashes_follow_influx_rules() {
        // `\\` is one backslash; a backslash before a non-escapable byte is literal.
        let record = parse_one(br"a\\b,t=x\y v=1");
        assert_eq!(record.measurement, r"a\b");
        assert_eq!(record.tags, vec![tag("t", r"x\y")]);
        // `\=` is not an escape in a measurement.
        assert_eq!(parse_one(br"m\=x v=1").measurement, r"m\=x");
        // A trailing `\\` then a separator: the separator still separates.
        assert_eq!(parse_one(br"m,t=x\\ v=1").tags, vec![tag("t", r"x\")]);
    }

    #[test]
    fn string_field_escapes_and_specials() {
        let record = parse_one(br#"m s="a \"quoted\" \\ back, comma = eq \n kept""#);
        assert_eq!(record.fields[0].value, FieldValue::Str(r#"a "quoted" \ back, comma = eq \n kept"#.into()));
    }

    #[test]
    fn unescaped_text_is_borrowed() {
        let body = b"cpu,host=a v=1,s=\"x\"".to_vec();
        let mut parser = LineProtocolParser::new();
        struct CheckBorrowed;
        impl RecordSink for CheckBorrowed {
            fn push(&mut self, r: &RecordRef<'_, '_>) -> Result<(), SinkFull> {
                assert!(matches!(r.measurement, Cow::Borrowed(_)));
                assert!(r.tags.iter().all(|t| matches!((&t.key, &t.value), (Cow::Borrowed(_), Cow::Borrowed(_)))));
                assert!(matches!(r.fields[1].value, FieldValue::Str(Cow::Borrowed(_))));
                Ok(())
            }
        }
        let summary = parser.parse_into(&body, Precision::Nanoseconds, NOW, &mut CheckBorrowed);
        assert_eq!(summary.records, 1);
    }

    #[test]
    fn newline_inside_string_stays_in_the_record() {
        let (records, summary) = parse_all(b"m s=\"two\nlines\" 1\nbad\nm v=2");
        //                                   ^ line 1-2: one record   ^ line 3: bad ^ line 4
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].fields[0].value, FieldValue::Str("two\nlines".into()));
        assert_eq!(summary.first_error, Some(LineError { line: 3, reason: LineErrorReason::MissingFields }));
    }

    #[test]
    fn comments_blank_lines_and_crlf() {
        let body = b"# a comment\r\n\r\n  \n\tcpu v=1 10\r\nmem v=2\r\n# trailing comment";
        let (records, summary) = parse_all(body);
        assert_eq!(summary.invalid, 0);
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].timestamp_ns, 10);
        assert_eq!(records[1].measurement, "mem");
    }

    #[test]
    fn trailing_whitespace_ok_garbage_not() {
        assert_eq!(parse_one(b"m v=1 5  \t").timestamp_ns, 5);
        assert_eq!(parse_one(b"m v=1 ").timestamp_ns, NOW);
        assert_eq!(reason(b"m v=1 5 6"), LineErrorReason::TrailingGarbage);
        assert_eq!(reason(b"m v=1 5x"), LineErrorReason::InvalidTimestamp);
        assert_eq!(reason(b"m s=\"x\"y"), LineErrorReason::GarbageAfterString);
        assert_eq!(reason(b"m v=1\rx"), LineErrorReason::TrailingGarbage);
    }

    #[test]
    fn structural_errors() {
        assert_eq!(reason(b"m"), LineErrorReason::MissingFields);
        assert_eq!(reason(b"m "), LineErrorReason::MissingFields);
        assert_eq!(reason(b"m,t=1"), LineErrorReason::MissingFields);
        assert_eq!(reason(b",t=1 v=1"), LineErrorReason::EmptyMeasurement);
        assert_eq!(reason(b" v=1"), LineErrorReason::MissingFields);
        assert_eq!(reason(b"m,=1 v=1"), LineErrorReason::EmptyTagKey);
        assert_eq!(reason(b"m,t= v=1"), LineErrorReason::MissingTagValue);
        assert_eq!(reason(b"m,t v=1"), LineErrorReason::TagWithoutEquals);
        assert_eq!(reason(b"m,t=a=b v=1"), LineErrorReason::UnescapedEqualsInTagValue);
        assert_eq!(reason(b"m =1"), LineErrorReason::EmptyFieldKey);
        assert_eq!(reason(b"m v"), LineErrorReason::FieldWithoutEquals);
        assert_eq!(reason(b"m v="), LineErrorReason::MissingFieldValue);
        assert_eq!(reason(b"m v=1,"), LineErrorReason::EmptyFieldKey);
        assert_eq!(reason(b"m s=\"open"), LineErrorReason::UnterminatedString);
        assert_eq!(reason(b"m s=\"ends in escape\\\""), LineErrorReason::UnterminatedString);
        assert_eq!(reason(b"m\\"), LineErrorReason::MissingFields);
        assert_eq!(reason(b"m\xff v=1"), LineErrorReason::InvalidUtf8);
    }

    #[test]
    fn precision_scales_with_overflow_checks() {
        let mut parser = LineProtocolParser::new();
        for (precision, expected) in [
            (Precision::Nanoseconds, 7),
            (Precision::Microseconds, 7_000),
            (Precision::Milliseconds, 7_000_000),
            (Precision::Seconds, 7_000_000_000),
            (Precision::Minutes, 420_000_000_000),
            (Precision::Hours, 25_200_000_000_000),
        ] {
            let mut records = Vec::new();
            let _ = parser.parse_into(b"m v=1 7", precision, NOW, &mut records);
            assert_eq!(records[0].timestamp_ns, expected, "{precision}");
        }
        assert_eq!(parser.validate(b"m v=1 -7", Precision::Seconds, NOW), Ok(1));
        let err = parser.validate(b"m v=1 9223372036854775807", Precision::Seconds, NOW).unwrap_err();
        assert_eq!(err.first_reason, LineErrorReason::TimestampOutOfRange);
        let err = parser.validate(b"m v=1 99999999999999999999", Precision::Nanoseconds, NOW).unwrap_err();
        assert_eq!(err.first_reason, LineErrorReason::TimestampOutOfRange);
        assert_eq!("us".parse::<Precision>(), Ok(Precision::Microseconds));
        assert_eq!(Precision::from_query_value("u"), Some(Precision::Microseconds));
        assert!("x".parse::<Precision>().is_err());
    }

    #[test]
    fn validate_reports_first_bad_line_and_count() {
        let mut parser = LineProtocolParser::new();
        let body = b"ok v=1\nbad\nok v=2\n\nm v=zz\nok v=3\n";
        let err = parser.validate(body, Precision::Nanoseconds, NOW).unwrap_err();
        assert_eq!(
            err,
            BatchError { first_line: 2, first_reason: LineErrorReason::MissingFields, bad_lines: 2, valid_lines: 3 }
        );
        assert_eq!(err.to_string(), "line 2: missing fields (2 invalid line(s), 3 valid)");
        assert_eq!(parser.validate(b"a v=1\nb v=2", Precision::Nanoseconds, NOW), Ok(2));
    }

    #[test]
    fn lenient_mode_keeps_valid_lines() {
        let (records, summary) = parse_all(b"a v=1\nb\nc v=3\nd v=x\n");
        assert_eq!(records.len(), 2);
        assert_eq!((summary.records, summary.invalid), (2, 2));
    }

    #[test]
    fn sink_full_stops_and_resumes() {
        struct Room(usize, Vec<Record>);
        impl RecordSink for Room {
            fn push(&mut self, r: &RecordRef<'_, '_>) -> Result<(), SinkFull> {
                if self.1.len() == self.0 {
                    return Err(SinkFull);
                }
                self.1.push(r.to_owned_record());
                Ok(())
            }
        }
        let body = b"a v=1\nb v=2\nbad\nc v=3\n";
        let mut parser = LineProtocolParser::new();
        let mut sink = Room(1, Vec::new());
        let first = parser.parse_into(body, Precision::Nanoseconds, NOW, &mut sink);
        assert_eq!(first.records, 1);
        let resume = first.resume_at.expect("stopped");
        assert_eq!(resume, BodyPosition { offset: 6, line: 2 });
        sink.0 = 10;
        let second = parser.parse_from(body, resume, Precision::Nanoseconds, NOW, &mut sink);
        assert_eq!((second.records, second.invalid, second.resume_at), (2, 1, None));
        assert_eq!(second.first_error, Some(LineError { line: 3, reason: LineErrorReason::MissingFields }));
        let names: Vec<_> = sink.1.iter().map(|r| r.measurement.to_string()).collect();
        assert_eq!(names, ["a", "b", "c"]);
    }

    #[test]
    fn limits_bound_tags_and_fields() {
        let mut parser =
            LineProtocolParser::with_limits(LineProtocolLimits { max_tags_per_line: 2, max_fields_per_line: 2 });
        let err = parser.validate(b"m,a=1,b=2,c=3 v=1", Precision::Nanoseconds, NOW).unwrap_err();
        assert_eq!(err.first_reason, LineErrorReason::TooManyTags);
        let err = parser.validate(b"m a=1,b=2,c=3", Precision::Nanoseconds, NOW).unwrap_err();
        assert_eq!(err.first_reason, LineErrorReason::TooManyFields);
    }

    #[test]
    fn scratch_allocations_are_reused_across_bodies() {
        let mut parser = LineProtocolParser::new();
        let _ = parser.validate(b"m,a=1,b=2 v=1,w=2", Precision::Nanoseconds, NOW);
        let (tags_ptr, fields_ptr) = (parser.tags.as_ptr(), parser.fields.as_ptr());
        assert!(parser.tags.capacity() >= 2 && parser.fields.capacity() >= 2);
        let body = String::from("m,a=1,b=2 v=1,w=2");
        let _ = parser.validate(body.as_bytes(), Precision::Nanoseconds, NOW);
        assert_eq!((parser.tags.as_ptr(), parser.fields.as_ptr()), (tags_ptr, fields_ptr));
    }

    #[test]
    fn encoder_escapes_and_round_trips_examples() {
        let record = Record {
            measurement: Cow::Borrowed("we ird,m=\\"),
            tags: vec![tag("k ,=", "v\\ ,="), tag("z", "1")],
            fields: vec![
                field("f ,=\\", FieldValue::Str("q\"b\\s\nl".into())),
                field("i", FieldValue::Int(-3)),
                field("u", FieldValue::UInt(3)),
                field("x", FieldValue::Float(1e-7)),
                field("y", FieldValue::Float(2.0)),
                field("b", FieldValue::Bool(false)),
            ],
            timestamp_ns: -5,
        };
        let mut out = Vec::new();
        write_line_protocol(&record.as_ref(), &mut out).expect("encodable");
        assert_eq!(
            String::from_utf8_lossy(&out),
            "we\\ ird\\,m=\\\\,k\\ \\,\\==v\\\\\\ \\,\\=,z=1 f\\ \\,\\=\\\\=\"q\\\"b\\\\s\nl\",i=-3i,u=3u,x=1e-7,y=2.0,b=false -5\n"
        );
        assert_eq!(parse_one(&out), record);
    }

    #[test]
    fn encoder_refuses_unrepresentable_records() {
        let mut record = Record {
            measurement: Cow::Borrowed("#m"),
            tags: vec![],
            fields: vec![field("v", FieldValue::Float(1.0))],
            timestamp_ns: 0,
        };
        let mut out = b"keep".to_vec();
        assert_eq!(write_line_protocol(&record.as_ref(), &mut out), Err(EncodeError::AmbiguousMeasurementStart));
        assert_eq!(out, b"keep");
        record.measurement = Cow::Borrowed("m");
        record.fields[0].value = FieldValue::Float(f64::NAN);
        assert_eq!(write_line_protocol(&record.as_ref(), &mut out), Err(EncodeError::NonFiniteFloat));
        record.fields[0].value = FieldValue::Float(1.0);
        record.tags.push(tag("a\nb", "x"));
        assert_eq!(write_line_protocol(&record.as_ref(), &mut out), Err(EncodeError::NewlineInName));
        assert_eq!(out, b"keep");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn name() -> impl Strategy<Value = String> {
            // Printable text plus every character the escaping rules care about.
            "[a-zA-Z0-9 ,=\\\\\"#\t\r_é.-]{1,12}".prop_filter("encodable", |s| !s.starts_with(['#', '\t']))
        }

        fn field_value() -> impl Strategy<Value = FieldValue<'static>> {
            prop_oneof![
                any::<i64>().prop_map(FieldValue::Int),
                any::<u64>().prop_map(FieldValue::UInt),
                any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(FieldValue::Float),
                any::<bool>().prop_map(FieldValue::Bool),
                "[a-z \"\\\\\n,=\r]{0,12}".prop_map(|s| FieldValue::Str(Cow::Owned(s))),
            ]
        }

        fn record() -> impl Strategy<Value = Record> {
            (
                name(),
                proptest::collection::btree_map("[a-zA-Z0-9 ,=\\\\_\"]{1,8}", name(), 0..5),
                proptest::collection::btree_map("[a-zA-Z0-9 ,=\\\\_\"#]{1,8}", field_value(), 1..6),
                any::<i64>(),
            )
                .prop_map(|(measurement, tags, fields, timestamp_ns)| Record {
                    measurement: Cow::Owned(measurement),
                    tags: tags.into_iter().map(|(k, v)| tag(&k, &v)).collect(),
                    fields: fields.into_iter().map(|(k, v)| field(&k, v)).collect(),
                    timestamp_ns,
                })
        }

        proptest! {
            #[test]
            fn word_scan_finds_the_first_stop_byte(
                body in proptest::collection::vec(prop_oneof![any::<u8>(), Just(b','), Just(b'='), Just(b' '), Just(b'\n'), Just(b'\\'), Just(0u8), Just(0x80u8)], 0..40),
                start in 0usize..40,
            ) {
                let sets: [(&StopSet, &[u8]); 4] = [
                    (&MEASUREMENT_STOP, b", \n\\"),
                    (&KEY_STOP, b",= \n\\"),
                    (&VALUE_STOP, b", \n\r"),
                    (&TIMESTAMP_STOP, b" \t\r\n"),
                ];
                for (set, bytes) in sets {
                    let start = start.min(body.len());
                    let mut cursor = Cursor { body: &body, text: None, pos: start, line: 1 };
                    cursor.skip_until(set);
                    let expected = body[start..].iter().position(|b| bytes.contains(b)).map_or(body.len(), |i| start + i);
                    prop_assert_eq!(cursor.pos, expected);
                }
            }

            #[test]
            fn duplicate_fields_keep_the_last_value(keys in proptest::collection::vec("[ab]{1,2}|cc[a-z]", 1..20)) {
                let line: Vec<String> = keys.iter().enumerate().map(|(i, k)| format!("{k}={i}i")).collect();
                let record = parse_one(format!("m {} 1", line.join(",")).as_bytes());
                let mut expected: Vec<(String, i64)> = Vec::new();
                for (i, k) in keys.iter().enumerate() {
                    if !keys[i + 1..].contains(k) {
                        expected.push((k.clone(), i as i64));
                    }
                }
                let got: Vec<(String, i64)> = record
                    .fields
                    .iter()
                    .map(|f| (f.key.to_string(), match f.value { FieldValue::Int(v) => v, _ => -1 }))
                    .collect();
                prop_assert_eq!(got, expected);
            }

            #[test]
            fn sort_tags_matches_a_full_sort(keys in proptest::collection::vec("[ab]{1,3}", 0..20)) {
                let mut tags: Vec<Tag<'static>> = keys.iter().map(|k| tag(k, "v")).collect();
                let mut expected = keys.clone();
                expected.sort();
                let duplicate = expected.windows(2).any(|w| w[0] == w[1]);
                match sort_tags(&mut tags) {
                    Ok(()) => {
                        prop_assert!(!duplicate);
                        let sorted: Vec<&str> = tags.iter().map(|t| t.key.as_ref()).collect();
                        prop_assert_eq!(sorted, expected.iter().map(String::as_str).collect::<Vec<_>>());
                    }
                    Err(reason) => {
                        prop_assert!(duplicate);
                        prop_assert_eq!(reason, LineErrorReason::DuplicateTagKey);
                    }
                }
            }

            #[test]
            fn integer_parsing_matches_str_parse(token in "-?[0-9]{0,24}|[0-9 /:a-]{0,24}") {
                let bytes = token.as_bytes();
                let signed = if !is_integer_literal(bytes) {
                    IntLiteral::Invalid
                } else {
                    token.parse::<i64>().map_or(IntLiteral::OutOfRange, IntLiteral::Value)
                };
                prop_assert_eq!(parse_signed(bytes), signed);
                let unsigned = if bytes.first() == Some(&b'-') || !is_integer_literal(bytes) {
                    IntLiteral::Invalid
                } else {
                    token.parse::<u64>().map_or(IntLiteral::OutOfRange, IntLiteral::Value)
                };
                prop_assert_eq!(parse_digits(bytes), unsigned);
            }

            #[test]
            fn eight_digits_matches_bytewise(bytes in any::<[u8; 8]>(), digits in 0u64..100_000_000, raw in any::<bool>()) {
                let bytes = if raw { bytes } else { <[u8; 8]>::try_from(format!("{digits:08}").as_bytes()).expect("8") };
                let expected = bytes
                    .iter()
                    .try_fold(0u64, |acc, &b| b.is_ascii_digit().then(|| acc * 10 + u64::from(b - b'0')));
                prop_assert_eq!(eight_digits(bytes), expected);
            }

            #[test]
            fn short_decimals_match_str_parse(token in "-?[0-9]{0,10}\\.?[0-9]{0,10}") {
                if let Some(v) = parse_short_decimal(token.as_bytes()) {
                    let expected: f64 = token.parse().expect("fast path only takes valid floats");
                    prop_assert_eq!(v.to_bits(), expected.to_bits());
                }
            }

            #[test]
            fn encode_then_parse_is_identity(records in proptest::collection::vec(record(), 1..4)) {
                let mut body = Vec::new();
                for record in &records {
                    write_line_protocol(&record.as_ref(), &mut body).expect("encodable");
                }
                let (parsed, summary) = parse_all(&body);
                prop_assert_eq!(summary.first_error, None);
                prop_assert_eq!(parsed, records);
            }

            #[test]
            fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
                let (records, summary) = parse_all(&body);
                prop_assert_eq!(records.len(), summary.records);
                prop_assert!(summary.records + summary.invalid <= body.len());
            }
        }
    }
}
