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

use super::line_protocol::{BatchError, BodyPosition, LineError, LineErrorReason, LineProtocolLimits, Precision};
use super::structural::{Classifier, StructuralCursor};

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
    /// The first [`REPORTED_BAD_LINES`] bad lines, with where they are in the
    /// body, so a 400 can name them (and quote them) without a second pass.
    pub reported: [Option<BadLine>; REPORTED_BAD_LINES],
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

/// Bad lines a [`BodySummary`] locates (the rest are only counted): enough
/// for a client to see what is wrong, bounded so a body of garbage costs
/// nothing more to report.
pub const REPORTED_BAD_LINES: usize = 4;

/// One bad line: its number, why, and its bytes in the body
/// (`start..end`, without the line terminator).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadLine {
    pub line: usize,
    pub reason: LineErrorReason,
    pub start: usize,
    pub end: usize,
}

impl BadLine {
    /// The line's text in `body` (the body it was found in).
    pub fn text<'b>(&self, body: &'b [u8]) -> &'b [u8] {
        body.get(self.start..self.end.min(body.len())).unwrap_or(&[])
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
                    if summary.first_error.is_none() {
                        summary.first_error = Some(LineError { line: line_number, reason: fail.reason });
                    }
                    let next = scan.skip_past_newline(fail.at);
                    if let Some(slot) = summary.reported.get_mut(summary.bad_lines) {
                        let text = &body[pos..next];
                        let text = text.strip_suffix(b"\n").unwrap_or(text);
                        let text = text.strip_suffix(b"\r").unwrap_or(text);
                        *slot =
                            Some(BadLine { line: line_number, reason: fail.reason, start: pos, end: pos + text.len() });
                    }
                    summary.bad_lines += 1;
                    pos = next;
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

mod scan;
mod values;
mod view;

use scan::Scan;
pub use view::{IndexedField, IndexedLine, Text, Unescaped};

#[cfg(test)]
mod tests;
