//! The line-protocol scanner: a bounds-safe [`Cursor`] over the body, the
//! word-at-a-time [`StopSet`] searches, and the escape rules of identifiers
//! ([`Element`]) and quoted string values.

use std::borrow::Cow;

use super::LineErrorReason;

/// A position in the body; never indexes out of bounds (all reads go through `peek`).
pub(super) struct Cursor<'a> {
    pub(super) body: &'a [u8],
    /// `body` as text when all of it is valid UTF-8; tokens are then sliced from
    /// it without re-validating (see [`Cursor::text`]).
    pub(super) text: Option<&'a str>,
    pub(super) pos: usize,
    pub(super) line: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn at_end(&self) -> bool {
        self.pos >= self.body.len()
    }

    pub(super) fn peek(&self) -> Option<u8> {
        self.body.get(self.pos).copied()
    }

    pub(super) fn peek_at(&self, ahead: usize) -> Option<u8> {
        self.body.get(self.pos.saturating_add(ahead)).copied()
    }

    pub(super) fn skip_while(&mut self, pred: impl Fn(u8) -> bool) {
        while let Some(b) = self.peek() {
            if !pred(b) {
                break;
            }
            self.pos += 1;
        }
    }

    /// Skips blank lines and `#` comment lines (and leading spaces/tabs).
    pub(super) fn skip_blank_and_comments(&mut self) {
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
    pub(super) fn skip_past_newline(&mut self) {
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
    pub(super) fn at_line_end(&self) -> bool {
        match self.peek() {
            None | Some(b'\n') => true,
            Some(b'\r') => matches!(self.peek_at(1), None | Some(b'\n')),
            _ => false,
        }
    }

    /// Consumes the line terminator (the caller checked [`at_line_end`]).
    pub(super) fn consume_line_end(&mut self) {
        if self.peek() == Some(b'\r') {
            self.pos += 1;
        }
        if self.peek() == Some(b'\n') {
            self.pos += 1;
            self.line += 1;
        }
    }

    pub(super) fn slice(&self, from: usize, to: usize) -> &'a [u8] {
        self.body.get(from..to).unwrap_or(&[])
    }

    /// `body[from..to]` as text. Same result as `from_utf8` on the bytes: when
    /// the whole body is valid UTF-8, a sub-slice is valid exactly when both
    /// ends are char boundaries, which `str::get` checks in O(1).
    #[inline]
    pub(super) fn text(&self, from: usize, to: usize) -> Result<&'a str, LineErrorReason> {
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
    pub(super) fn skip_until(&mut self, stop: &StopSet) {
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
pub(super) struct StopSet {
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
    pub(super) fn contains(&self, b: u8) -> bool {
        self.matches(u64::from(b)) & 0x80 != 0
    }
}

/// Bytes that end (or may escape within) a measurement: its terminators and `\\`.
pub(super) static MEASUREMENT_STOP: StopSet = StopSet::new(b", \n\\");
/// Bytes that end (or may escape within) a tag key, tag value or field key.
pub(super) static KEY_STOP: StopSet = StopSet::new(b",= \n\\");
/// Bytes that end an unquoted field value.
pub(super) static VALUE_STOP: StopSet = StopSet::new(b", \n\r");
/// Bytes that end a timestamp token.
pub(super) static TIMESTAMP_STOP: StopSet = StopSet::new(b" \t\r\n");

/// Which element an identifier is: decides its terminators and escapes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Element {
    Measurement,
    TagKey,
    TagValue,
    FieldKey,
}

impl Element {
    pub(super) fn is_escapable(self, b: u8) -> bool {
        match self {
            Element::Measurement => matches!(b, b',' | b' ' | b'\\'),
            Element::TagKey | Element::TagValue | Element::FieldKey => {
                matches!(b, b',' | b'=' | b' ' | b'\\')
            }
        }
    }

    /// Terminators plus the backslash: where [`scan_identifier`] must look.
    pub(super) fn stop_bytes(self) -> &'static StopSet {
        match self {
            Element::Measurement => &MEASUREMENT_STOP,
            Element::TagKey | Element::TagValue | Element::FieldKey => &KEY_STOP,
        }
    }

    /// The grammar's terminators, spelled out; the stop tables are checked against it.
    #[cfg(test)]
    pub(super) fn is_terminator(self, b: u8) -> bool {
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
pub(super) fn scan_identifier<'a>(cursor: &mut Cursor<'a>, element: Element) -> Result<Cow<'a, str>, LineErrorReason> {
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
pub(super) fn scan_key<'a>(
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

/// Scans `"..."` (the cursor is on the opening quote); `\"` and `\\` are
/// unescaped, raw newlines are kept (and counted for line numbers).
pub(super) fn scan_string<'a>(cursor: &mut Cursor<'a>) -> Result<Cow<'a, str>, LineErrorReason> {
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
pub(super) fn is_string_escapable(b: u8) -> bool {
    matches!(b, b'"' | b'\\')
}
