//! Segment format version 1 (releases up to 2026-12): every token of a
//! record re-encoded. Kept so that logs written by those releases stay
//! readable record for record; the encoder is kept for the tests that write
//! such logs. The writer no longer writes it (see `v2`).
//!
//! Record encoding (all integers are LEB128 varints unless noted; signed ones
//! are zigzag-encoded first, so small negative numbers stay short):
//!
//! ```text
//! measurement_len, measurement bytes
//! tag_count, { key_len, key, value_len, value } * tag_count
//! field_count, { key_len, key, type u8, value } * field_count
//!     type 0 Int   zigzag varint      type 3 Bool false (no value)
//!     type 1 UInt  varint             type 4 Bool true  (no value)
//!     type 2 Float 8 bytes LE (bits)  type 5 Str  len, bytes
//! timestamp_ns zigzag varint
//! ```
//!
//! There is no per-record length or checksum: records live inside a log frame
//! that carries both, and the frame header carries the record count.

use std::borrow::Cow;

use super::{encode_varint, unzigzag, zigzag, Cursor, DecodeError, MAX_VARINT};
use crate::ingest::record::{Field, FieldValue, Record, RecordRef, Tag};

const TYPE_INT: u8 = 0;
const TYPE_UINT: u8 = 1;
const TYPE_FLOAT: u8 = 2;
const TYPE_FALSE: u8 = 3;
const TYPE_TRUE: u8 = 4;
const TYPE_STR: u8 = 5;

/// Writes one record into a slice that [`encode_record`] sized for the worst
/// case, so no write checks capacity or grows the vector (the per-push
/// checks and `memcpy` calls of `Vec` were most of the encoding cost for
/// records made of short strings).
struct Encoder<'b> {
    out: &'b mut [u8],
    pos: usize,
}

impl Encoder<'_> {
    #[inline]
    fn byte(&mut self, b: u8) {
        if let Some(slot) = self.out.get_mut(self.pos) {
            *slot = b;
        }
        self.pos += 1;
    }

    #[inline]
    fn varint(&mut self, v: u64) {
        let mut b = [0u8; MAX_VARINT];
        let n = encode_varint(v, &mut b);
        self.bytes(b.get(..n).unwrap_or(&[]));
    }

    /// Copies `bytes`; short ones (most names and values) with at most two
    /// fixed-size overlapping moves instead of a `memcpy` call.
    #[inline]
    fn bytes(&mut self, bytes: &[u8]) {
        let n = bytes.len();
        let Some(dst) = self.out.get_mut(self.pos..self.pos + n) else {
            return;
        };
        if (8..=16).contains(&n) {
            copy_fixed::<8>(&mut dst[..8], &bytes[..8]);
            copy_fixed::<8>(&mut dst[n - 8..], &bytes[n - 8..]);
        } else if (4..8).contains(&n) {
            copy_fixed::<4>(&mut dst[..4], &bytes[..4]);
            copy_fixed::<4>(&mut dst[n - 4..], &bytes[n - 4..]);
        } else {
            dst.copy_from_slice(bytes);
        }
        self.pos += n;
    }

    #[inline]
    fn str(&mut self, s: &str) {
        self.varint(s.len() as u64);
        self.bytes(s.as_bytes());
    }
}

#[inline(always)]
fn copy_fixed<const N: usize>(dst: &mut [u8], src: &[u8]) {
    if let (Ok(d), Ok(s)) = (<&mut [u8; N]>::try_from(dst), <&[u8; N]>::try_from(src)) {
        *d = *s;
    }
}

/// An upper bound of the encoded size of `record` (every varint at its longest).
fn encoded_bound(record: &RecordRef<'_, '_>) -> usize {
    let tags: usize = record.tags.iter().map(|t| 2 * MAX_VARINT + t.key.len() + t.value.len()).sum();
    let fields: usize = record
        .fields
        .iter()
        .map(|f| {
            MAX_VARINT
                + f.key.len()
                + 1
                + match &f.value {
                    FieldValue::Str(s) => MAX_VARINT + s.len(),
                    _ => MAX_VARINT,
                }
        })
        .sum();
    4 * MAX_VARINT + record.measurement.len() + tags + fields
}

/// Appends the encoding of `record` to `out`.
pub fn encode_record(record: &RecordRef<'_, '_>, out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + encoded_bound(record), 0);
    let mut e = Encoder { out: &mut out[start..], pos: 0 };
    e.str(record.measurement);
    e.varint(record.tags.len() as u64);
    for tag in record.tags {
        e.str(&tag.key);
        e.str(&tag.value);
    }
    e.varint(record.fields.len() as u64);
    for field in record.fields {
        e.str(&field.key);
        // An if-chain, most common types first, rather than a `match` that
        // compiles to a jump table: one indirect branch per field that the
        // mix of types in a line keeps mispredicting.
        if let FieldValue::Float(v) = &field.value {
            e.byte(TYPE_FLOAT);
            e.bytes(&v.to_bits().to_le_bytes());
        } else if let FieldValue::Int(v) = &field.value {
            e.byte(TYPE_INT);
            e.varint(zigzag(*v));
        } else if let FieldValue::UInt(v) = &field.value {
            e.byte(TYPE_UINT);
            e.varint(*v);
        } else if let FieldValue::Bool(b) = &field.value {
            e.byte(if *b { TYPE_TRUE } else { TYPE_FALSE });
        } else if let FieldValue::Str(s) = &field.value {
            e.byte(TYPE_STR);
            e.str(s);
        }
    }
    e.varint(zigzag(record.timestamp_ns));
    let written = e.pos;
    debug_assert!(start + written <= out.len(), "encoded_bound is an upper bound");
    out.truncate(start + written);
}

/// A cursor over encoded records. Each `next_record` call decodes one.
#[derive(Clone, Debug)]
pub struct RecordDecoder<'a> {
    cur: Cursor<'a>,
}

impl<'a> RecordDecoder<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { cur: Cursor::new(data) }
    }

    /// True when every byte has been consumed.
    pub fn is_at_end(&self) -> bool {
        self.cur.left() == 0
    }

    /// Bytes not consumed yet.
    pub fn left(&self) -> usize {
        self.cur.left()
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        self.cur.byte()
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        self.cur.varint()
    }

    fn bytes(&mut self, n: u64) -> Result<&'a [u8], DecodeError> {
        self.cur.bytes(n)
    }

    fn str(&mut self) -> Result<&'a str, DecodeError> {
        let n = self.varint()?;
        let b = self.bytes(n)?;
        std::str::from_utf8(b).map_err(|_| DecodeError::BadUtf8)
    }

    /// A count that must be plausible for the bytes left (each element takes
    /// at least one byte), so corrupt input cannot make us reserve gigabytes.
    fn count(&mut self) -> Result<usize, DecodeError> {
        let n = self.varint()?;
        if n > self.cur.left() as u64 {
            return Err(DecodeError::BadLength(n));
        }
        Ok(n as usize)
    }

    /// Decodes the next record into an owned [`Record`].
    pub fn next_record(&mut self) -> Result<Record, DecodeError> {
        let own = |s: &str| Cow::Owned(s.to_owned());
        let measurement = own(self.str()?);
        let n_tags = self.count()?;
        let mut tags = Vec::with_capacity(n_tags);
        for _ in 0..n_tags {
            let key = own(self.str()?);
            let value = own(self.str()?);
            tags.push(Tag { key, value });
        }
        let n_fields = self.count()?;
        let mut fields = Vec::with_capacity(n_fields);
        for _ in 0..n_fields {
            let key = own(self.str()?);
            let value = match self.byte()? {
                TYPE_INT => FieldValue::Int(unzigzag(self.varint()?)),
                TYPE_UINT => FieldValue::UInt(self.varint()?),
                TYPE_FLOAT => {
                    let b = self.bytes(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    FieldValue::Float(f64::from_bits(u64::from_le_bytes(a)))
                }
                TYPE_FALSE => FieldValue::Bool(false),
                TYPE_TRUE => FieldValue::Bool(true),
                TYPE_STR => FieldValue::Str(own(self.str()?)),
                other => return Err(DecodeError::BadFieldType(other)),
            };
            fields.push(Field { key, value });
        }
        let timestamp_ns = unzigzag(self.varint()?);
        Ok(Record { measurement, tags, fields, timestamp_ns })
    }
}

/// Decodes exactly `count` records that must fill `data` completely.
pub fn decode_records(data: &[u8], count: u32) -> Result<Vec<Record>, DecodeError> {
    let mut dec = RecordDecoder::new(data);
    let mut out = Vec::with_capacity(count.min(1 << 16) as usize);
    for _ in 0..count {
        out.push(dec.next_record()?);
    }
    if !dec.is_at_end() {
        return Err(DecodeError::TrailingBytes(dec.left()));
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::writer::codec::tests::{field_value, owned_record};
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        // Mix of ASCII with the characters line protocol must escape and
        // arbitrary Unicode.
        prop_oneof!["[a-z ,=\"\\\\]{0,12}".prop_map(|s| s), any::<String>().prop_map(|s| s.chars().take(12).collect()),]
    }

    pub(crate) fn record() -> impl Strategy<Value = Record> {
        (
            "[a-z]{1,8}",
            proptest::collection::btree_map("[a-z,= ]{1,6}", text(), 0..5),
            proptest::collection::vec(
                ("[a-z]{1,6}", field_value(any::<f64>().prop_filter("NaN != NaN", |f| !f.is_nan()), text())),
                1..5,
            ),
            any::<i64>(),
        )
            .prop_map(|(m, tags, fields, ts)| owned_record(m, tags, fields, ts))
    }

    proptest! {
        #[test]
        fn record_round_trips(rec in record()) {
            let mut buf = Vec::new();
            encode_record(&rec.as_ref(), &mut buf);
            let back = decode_records(&buf, 1).unwrap();
            prop_assert_eq!(&back[0], &rec);
        }

        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200), n in 0u32..5) {
            let _ = decode_records(&data, n);
        }
    }

    #[test]
    fn varint_edges() {
        for v in [0u64, 1, 127, 128, 16383, 16384, u64::MAX] {
            let mut out = vec![0u8; MAX_VARINT];
            let mut e = Encoder { out: &mut out, pos: 0 };
            e.varint(v);
            let n = e.pos;
            out.truncate(n);
            assert_eq!(RecordDecoder::new(&out).varint().unwrap(), v);
        }
        for v in [0i64, -1, 1, i64::MIN, i64::MAX] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        // 11 continuation bytes
        assert_eq!(RecordDecoder::new(&[0xff; 11]).varint(), Err(DecodeError::BadVarint));
    }
}
