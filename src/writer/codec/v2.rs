//! Segment format version 2 records: the validated line as received plus a
//! small header (`docs/log-format.md`).
//!
//! ```text
//! tenant u8 | flags u8 | types u8 | timestamp_ns zigzag varint | line_len varint | line
//! ```
//!
//! `line` is `measurement[,tag=value...] field=value[,field=value...]` with
//! its escapes, without the timestamp token, trailing spaces or newline; it
//! is always canonical (tags sorted by key, no repeated field). Writing one
//! copies the client's bytes; only lines that are not canonical, and records
//! of other protocols, are written as line-protocol text here (REWRITTEN).
//! Reading one back into tags and fields re-parses it with the same
//! [`LineIndexer`] that validated it at ingest.

use std::borrow::Cow;
use std::cmp::Ordering;

use super::{encode_varint, unzigzag, zigzag, Cursor, DecodeError, TenantIndex, TenantTable, MAX_VARINT};
use crate::ingest::line_index::{FieldKind, IndexedLine, LineIndexer};
use crate::ingest::line_protocol::Precision;
use crate::ingest::record::{Field, FieldValue, Record, RecordRef, Tag, Unrepresentable};

const REWRITTEN: u8 = 1;
const IMPLIED_TS: u8 = 2;
const ESCAPES: u8 = 4;
const KNOWN_FLAGS: u8 = REWRITTEN | IMPLIED_TS | ESCAPES;
/// Bits 0-4 of the field-type summary (one per [`FieldKind`]).
const KNOWN_KINDS: u8 = 0x1f;

/// A stored record's flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RecordFlags(u8);

impl RecordFlags {
    /// Not the client's bytes: canonicalised, or produced from another protocol.
    pub fn rewritten(self) -> bool {
        self.0 & REWRITTEN != 0
    }

    /// The line had no timestamp; `timestamp_ns` is the arrival time. (Only
    /// known for line protocol; records of other protocols leave it clear.)
    pub fn implied_timestamp(self) -> bool {
        self.0 & IMPLIED_TS != 0
    }

    /// The line holds backslash escapes.
    pub fn has_escapes(self) -> bool {
        self.0 & ESCAPES != 0
    }

    pub fn bits(self) -> u8 {
        self.0
    }
}

/// One version-2 record, borrowed from its frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredLine<'a> {
    pub tenant: &'a str,
    pub flags: RecordFlags,
    /// Which field types occur: bit `k as u8` per [`FieldKind`] `k`.
    pub field_kinds: u8,
    pub timestamp_ns: i64,
    /// The line, without its timestamp.
    pub line: &'a [u8],
}

/// The header up to and including the timestamp, into `out` (room for
/// `3 + MAX_VARINT` bytes); returns its length.
#[inline(always)]
fn header(out: &mut [u8], tenant: TenantIndex, flags: u8, kinds: u8, timestamp_ns: i64) -> usize {
    if let Some(fixed) = out.get_mut(..3) {
        fixed.copy_from_slice(&[tenant.get(), flags, kinds]);
    }
    3 + encode_varint(zigzag(timestamp_ns), out.get_mut(3..).unwrap_or(&mut []))
}

/// Appends the length of what `write` appends, as a varint in front of it.
/// One byte is reserved first (lines under 128 bytes); a longer line is moved
/// up inside the buffer to make room, so nothing is staged elsewhere.
#[inline]
fn length_prefixed<R>(buf: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    let at = buf.len();
    buf.push(0);
    let result = write(buf);
    let len = buf.len() - at - 1;
    let mut varint = [0u8; MAX_VARINT];
    let n = encode_varint(len as u64, &mut varint);
    if n > 1 {
        buf.extend_from_slice(varint.get(..n - 1).unwrap_or(&[]));
        buf.copy_within(at + 1..at + 1 + len, at + n);
    }
    if let (Some(dst), Some(src)) = (buf.get_mut(at..at + n), varint.get(..n)) {
        dst.copy_from_slice(src);
    }
    result
}

/// Scratch of the canonicaliser, kept in the batch so it is allocated once.
#[derive(Debug, Default)]
pub(super) struct CanonicalScratch {
    order: Vec<u32>,
    dead: Vec<bool>,
}

/// Appends the record of an indexed line (see [`super::Batch::push_line`]).
#[inline]
pub(super) fn write_indexed_line(
    buf: &mut Vec<u8>,
    scratch: &mut CanonicalScratch,
    line: &IndexedLine<'_, '_>,
    tenant: TenantIndex,
) {
    let line_flags = line.flags();
    let mut flags = 0;
    if !line_flags.had_timestamp() {
        flags |= IMPLIED_TS;
    }
    let mut head = [0u8; 3 + 2 * MAX_VARINT];
    if !line_flags.needs_canonical() {
        if line_flags.has_escapes() {
            flags |= ESCAPES;
        }
        let stored = line.bytes().get(..line.field_set_range().end).unwrap_or(&[]);
        let mut n = header(&mut head, tenant, flags, line.field_kinds().bits(), line.timestamp_ns());
        n += encode_varint(stored.len() as u64, head.get_mut(n..).unwrap_or(&mut []));
        buf.reserve(n + stored.len());
        buf.extend_from_slice(head.get(..n).unwrap_or(&[]));
        buf.extend_from_slice(stored);
        return;
    }
    // The kinds and escapes of the fields that survive are known only once
    // the line is written: the header goes first with placeholders.
    flags |= REWRITTEN;
    let at = buf.len();
    let n = header(&mut head, tenant, flags, 0, line.timestamp_ns());
    buf.extend_from_slice(head.get(..n).unwrap_or(&[]));
    let (kinds, escapes) = length_prefixed(buf, |buf| canonical_line(line, scratch, buf));
    if let Some(header) = buf.get_mut(at + 1..at + 3) {
        header.copy_from_slice(&[flags | if escapes { ESCAPES } else { 0 }, kinds]);
    }
}

/// Writes the canonical form of `line` from its elements as received: tags
/// sorted by (unescaped) key, a repeated field key resolved last-wins with
/// the survivors in input order. Returns the field kinds and whether an
/// escape was written.
fn canonical_line(line: &IndexedLine<'_, '_>, scratch: &mut CanonicalScratch, out: &mut Vec<u8>) -> (u8, bool) {
    let measurement = line.measurement();
    out.extend_from_slice(measurement.raw());
    let mut escapes = measurement.is_escaped();

    let order = &mut scratch.order;
    order.clear();
    order.extend((0..line.tag_count()).filter_map(|i| u32::try_from(i).ok()));
    if line.flags().tags_unsorted() {
        let key = |i: u32| line.tag(i as usize).map(|(k, _)| k);
        order.sort_unstable_by(|&a, &b| match (key(a), key(b)) {
            // Without escapes the unescaped bytes are the raw ones: one memcmp
            // instead of walking two unescaping iterators per comparison.
            (Some(a), Some(b)) if !a.is_escaped() && !b.is_escaped() => a.raw().cmp(b.raw()),
            (Some(a), Some(b)) => a.unescaped_bytes().cmp(b.unescaped_bytes()),
            _ => Ordering::Equal,
        });
    }
    for (key, value) in order.iter().filter_map(|&i| line.tag(i as usize)) {
        out.push(b',');
        out.extend_from_slice(key.raw());
        out.push(b'=');
        out.extend_from_slice(value.raw());
        escapes |= key.is_escaped() | value.is_escaped();
    }

    let fields = line.field_count();
    let dead = &mut scratch.dead;
    dead.clear();
    dead.resize(fields, false);
    if line.flags().duplicate_fields() {
        let key = |i: usize| line.field(i).map_or(&[][..], |f| f.key.raw());
        if fields <= 16 {
            for (i, is_dead) in dead.iter_mut().enumerate() {
                *is_dead = (i + 1..fields).any(|j| key(i) == key(j));
            }
        } else {
            // Stable: equal keys keep input order, so the last of a run survives.
            order.clear();
            order.extend((0..fields).filter_map(|i| u32::try_from(i).ok()));
            order.sort_by(|&a, &b| key(a as usize).cmp(key(b as usize)));
            for pair in order.windows(2) {
                if key(pair[0] as usize) == key(pair[1] as usize) {
                    if let Some(is_dead) = dead.get_mut(pair[0] as usize) {
                        *is_dead = true;
                    }
                }
            }
        }
    }
    let mut kinds = 0u8;
    let mut separator = b' ';
    for (i, field) in (0..fields).filter_map(|i| line.field(i).map(|f| (i, f))) {
        if dead.get(i).copied().unwrap_or(false) {
            continue;
        }
        out.push(separator);
        separator = b',';
        out.extend_from_slice(field.key.raw());
        out.push(b'=');
        if field.kind == FieldKind::Str {
            out.push(b'"');
            out.extend_from_slice(field.value.raw());
            out.push(b'"');
        } else {
            out.extend_from_slice(field.value.raw());
        }
        kinds |= 1 << field.kind as u8;
        escapes |= field.key.is_escaped() | field.value.is_escaped();
    }
    (kinds, escapes)
}

/// Appends a record of another protocol as line-protocol text (see
/// [`super::Batch::push_record`]). On error the buffer holds part of it.
pub(super) fn write_record(
    buf: &mut Vec<u8>,
    record: &RecordRef<'_, '_>,
    tenant: TenantIndex,
) -> Result<(), Unrepresentable> {
    let at = buf.len();
    let mut head = [0u8; 3 + MAX_VARINT];
    let n = header(&mut head, tenant, REWRITTEN, 0, record.timestamp_ns);
    buf.extend_from_slice(head.get(..n).unwrap_or(&[]));
    let facts = length_prefixed(buf, |buf| record.write_line(buf))?;
    if let Some(header) = buf.get_mut(at + 1..at + 3) {
        header.copy_from_slice(&[REWRITTEN | if facts.escapes { ESCAPES } else { 0 }, facts.field_kinds]);
    }
    Ok(())
}

impl<'a> StoredLine<'a> {
    /// Reads the next record at `cur`.
    pub(super) fn read(cur: &mut Cursor<'a>, tenants: &TenantTable<'a>) -> Result<StoredLine<'a>, DecodeError> {
        let index = cur.byte()?;
        let flags = cur.byte()?;
        if flags & !KNOWN_FLAGS != 0 {
            return Err(DecodeError::BadFlags(flags));
        }
        let field_kinds = cur.byte()?;
        if field_kinds & !KNOWN_KINDS != 0 {
            return Err(DecodeError::BadFieldType(field_kinds));
        }
        let timestamp_ns = unzigzag(cur.varint()?);
        let len = cur.varint()?;
        let line = cur.bytes(len)?;
        let count = u8::try_from(tenants.len()).unwrap_or(u8::MAX);
        let tenant = tenants.get(index).ok_or(DecodeError::BadTenant { index, count })?;
        Ok(StoredLine { tenant, flags: RecordFlags(flags), field_kinds, timestamp_ns, line })
    }

    /// Appends `line + " " + timestamp_ns + "\n"`: a valid nanosecond-precision
    /// line of line protocol, the stored bytes unchanged.
    pub fn write_line_protocol(&self, out: &mut Vec<u8>) {
        use std::io::Write as _;
        out.extend_from_slice(self.line);
        // Writing into a Vec cannot fail.
        let _ = writeln!(out, " {}", self.timestamp_ns);
    }

    /// Re-parses the line with `indexer` and hands the one line it holds to
    /// `read`, after checking the header against it.
    fn read_back<R>(
        &self,
        indexer: &mut LineIndexer,
        read: impl FnOnce(&IndexedLine<'_, '_>) -> R,
    ) -> Result<R, DecodeError> {
        let mut read = Some(read);
        let mut result = None;
        let mut lines = 0usize;
        let mut check = Ok(());
        let whole = self.line.len();
        let summary = indexer.index_batch(self.line, Precision::Nanoseconds, self.timestamp_ns, |line| {
            lines += 1;
            let flags = line.flags();
            let one_canonical_line =
                line.offset() == 0 && line.bytes().len() == whole && !flags.had_timestamp() && !flags.needs_canonical();
            check = if !one_canonical_line {
                Err(DecodeError::NotOneLine)
            } else if line.field_kinds().bits() != self.field_kinds {
                Err(DecodeError::HeaderMismatch("field types"))
            } else if flags.has_escapes() != self.flags.has_escapes() {
                Err(DecodeError::HeaderMismatch("escapes flag"))
            } else {
                Ok(())
            };
            if check.is_ok() {
                result = read.take().map(|read| read(line));
            }
            true
        });
        if let Err(e) = summary {
            return Err(DecodeError::BadLine(e.first_reason));
        }
        check?;
        match (lines, result) {
            (1, Some(result)) => Ok(result),
            _ => Err(DecodeError::NotOneLine),
        }
    }

    /// Checks that the line reads back as exactly what the header says.
    pub fn check(&self, indexer: &mut LineIndexer) -> Result<(), DecodeError> {
        self.read_back(indexer, |_| ())
    }

    /// The record: the line re-parsed, the header's timestamp.
    pub fn to_record(&self, indexer: &mut LineIndexer) -> Result<Record, DecodeError> {
        self.read_back(indexer, |line| {
            let own = |text: Cow<'_, str>| Cow::Owned(text.into_owned());
            Record {
                measurement: own(line.measurement().unescaped()),
                tags: line.tags().map(|(k, v)| Tag { key: own(k.unescaped()), value: own(v.unescaped()) }).collect(),
                fields: line
                    .fields()
                    .map(|f| Field {
                        key: own(f.key.unescaped()),
                        value: match f.value() {
                            FieldValue::Str(s) => FieldValue::Str(own(s)),
                            FieldValue::Int(v) => FieldValue::Int(v),
                            FieldValue::UInt(v) => FieldValue::UInt(v),
                            FieldValue::Float(v) => FieldValue::Float(v),
                            FieldValue::Bool(v) => FieldValue::Bool(v),
                        },
                    })
                    .collect(),
                timestamp_ns: line.timestamp_ns(),
            }
        })
    }
}
