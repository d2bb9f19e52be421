//! The one pass over a body: the structural cursor walks a line's elements,
//! checks the grammar and fills a [`ParsedLine`](super::ParsedLine); key order
//! and duplicate-key checks for tags and fields.

use std::cmp::Ordering;

use super::values::{field_kind, signed_value, Digits};
use super::{Element, FieldKind, FieldKinds, FieldSpan, LineFlags, ParsedLine, Span, TagSpan, Unescaped};
use crate::ingest::line_protocol::{LineErrorReason, LineProtocolLimits, Precision};
use crate::ingest::structural::StructuralCursor;

/// A line that failed: why, and where the scan stopped (recovery resumes at
/// the next newline from there).
#[derive(Clone, Copy, Debug)]
pub(super) struct Fail {
    pub(super) reason: LineErrorReason,
    pub(super) at: usize,
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
pub(super) struct Scan<'a, 'x> {
    pub(super) body: &'a [u8],
    pub(super) cursor: StructuralCursor<'a>,
    /// Physical line number at the scan position.
    pub(super) line: usize,
    pub(super) limits: LineProtocolLimits,
    pub(super) tags: &'x mut Vec<TagSpan>,
    pub(super) fields: &'x mut Vec<FieldSpan>,
    pub(super) order: &'x mut Vec<u32>,
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
    pub(super) fn skip_blank_and_comments(&mut self, mut pos: usize) -> usize {
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
    pub(super) fn skip_past_newline(&mut self, mut pos: usize) -> usize {
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
    pub(super) fn consume_line_end(&mut self, mut pos: usize) -> usize {
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
    pub(super) fn index_line(&mut self, start: usize, precision: Precision, now_ns: i64) -> Result<ParsedLine, Fail> {
        self.tags.clear();
        self.fields.clear();
        let mut flags = LineFlags::default();

        // Measurement.
        let (measurement_end, escaped) = self.name(start, Element::Measurement);
        let measurement = Span { start, end: measurement_end, escaped };
        let mut stop = self.stop(measurement_end);
        if stop == Stop::Other {
            return fail(LineErrorReason::ControlCharacter, measurement_end);
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
                Stop::Other => return fail(LineErrorReason::ControlCharacter, key_end),
                _ if key_end == key_start => return fail(LineErrorReason::EmptyTagKey, key_end),
                Stop::Equals => {}
                _ => return fail(LineErrorReason::TagWithoutEquals, key_end),
            }
            let value_start = key_end + 1;
            let (value_end, value_escaped) = self.name(value_start, Element::TagValue);
            stop = self.stop(value_end);
            match stop {
                Stop::Equals => return fail(LineErrorReason::UnescapedEqualsInTagValue, value_end),
                Stop::Other => return fail(LineErrorReason::ControlCharacter, value_end),
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
                Stop::Other => return fail(LineErrorReason::ControlCharacter, key_end),
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
