//! The accessors of an indexed line: its elements as raw spans or unescaped
//! text, its fields with their type-checked values (converted on demand).

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use super::values::{digits_value, signed_value, Digits};
use super::{Element, FieldKind, FieldKinds, FieldSpan, LineFlags, ParsedLine, Span, TagSpan};
use crate::ingest::record::FieldValue;

/// One valid line, borrowed from the body (`'a`) and the indexer's scratch (`'s`).
#[derive(Clone, Copy)]
pub struct IndexedLine<'s, 'a> {
    pub(super) body: &'a [u8],
    pub(super) line_number: usize,
    pub(super) start: usize,
    pub(super) parsed: ParsedLine,
    pub(super) tags: &'s [TagSpan],
    pub(super) fields: &'s [FieldSpan],
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
    pub(super) raw: &'a [u8],
    pub(super) element: Element,
    pub(super) escaped: bool,
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
