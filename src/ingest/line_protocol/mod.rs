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
//!
//! Layout: this file holds the public API (precision, errors, limits, the
//! parser and its per-line grammar); `scan.rs` the cursor, the word-at-a-time
//! stop sets and identifier/string escapes; `values.rs` field values, numbers
//! and timestamps; `canonical.rs` tag sorting and last-wins field dedup;
//! `encode.rs` the encoder ([`write_line_protocol`]).

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use super::record::{Discard, Field, RecordRef, RecordSink, Tag};

mod canonical;
mod encode;
mod scan;
#[cfg(test)]
mod tests;
mod values;

use canonical::{dedup_fields_last_wins, sort_tags};
pub use encode::{write_line_protocol, EncodeError};
use scan::{scan_identifier, scan_key, Cursor, Element, TIMESTAMP_STOP};
pub(crate) use values::{is_float_literal, is_integer_literal};
use values::{parse_field_value, parse_timestamp};

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
    /// InfluxDB 3's `precision=auto`: each timestamp's unit guessed from its
    /// magnitude ([`Precision::to_nanos`]).
    Auto,
}

impl Precision {
    /// Nanoseconds per unit (`Auto`: per timestamp, see [`Precision::to_nanos`]; 1 here).
    pub const fn nanos_per_unit(self) -> i64 {
        match self {
            Precision::Nanoseconds => 1,
            Precision::Microseconds => 1_000,
            Precision::Milliseconds => 1_000_000,
            Precision::Seconds => 1_000_000_000,
            Precision::Minutes => 60 * 1_000_000_000,
            Precision::Hours => 3_600 * 1_000_000_000,
            Precision::Auto => 1,
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
        match self {
            Precision::Auto => timestamp.checked_mul(Precision::guess(timestamp).nanos_per_unit()),
            _ => timestamp.checked_mul(self.nanos_per_unit()),
        }
    }

    /// The unit `auto` reads a timestamp in, as InfluxDB 3 guesses it: by
    /// magnitude, so that a date between 1970-02-27 and 2128 is read right
    /// whatever unit the client used (|t| < 5e9: s, < 5e12: ms, < 5e15: us, else ns).
    pub const fn guess(timestamp: i64) -> Precision {
        match timestamp.unsigned_abs() / 1_000_000_000 {
            0..=4 => Precision::Seconds,
            5..=4_999 => Precision::Milliseconds,
            5_000..=4_999_999 => Precision::Microseconds,
            _ => Precision::Nanoseconds,
        }
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

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::Nanoseconds => "ns",
            Precision::Microseconds => "us",
            Precision::Milliseconds => "ms",
            Precision::Seconds => "s",
            Precision::Minutes => "m",
            Precision::Hours => "h",
            Precision::Auto => "auto",
        })
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
    /// A control byte (0x00-0x1f, 0x7f) in a name, key or tag value, or
    /// between elements (string field values may hold any byte).
    #[error("control character outside a string field value")]
    ControlCharacter,
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
