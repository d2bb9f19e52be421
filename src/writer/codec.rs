//! The compact binary encoding of one record in the log, and [`Batch`], the
//! recycled buffer workers fill (it is the parsers' [`RecordSink`]).
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

use thiserror::Error;

use crate::ingest::record::{Field, FieldValue, Record, RecordRef, RecordSink, SinkFull, Tag};

/// Why bytes could not be decoded as records. Corrupt input is an error value,
/// never a panic.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("record data ends in the middle of a record")]
    Truncated,
    #[error("varint longer than 10 bytes or overflowing u64")]
    BadVarint,
    #[error("text is not valid UTF-8")]
    BadUtf8,
    #[error("unknown field type {0}")]
    BadFieldType(u8),
    #[error("length {0} does not fit the remaining data")]
    BadLength(u64),
    #[error("{0} bytes left over after the last record")]
    TrailingBytes(usize),
}

const TYPE_INT: u8 = 0;
const TYPE_UINT: u8 = 1;
const TYPE_FLOAT: u8 = 2;
const TYPE_FALSE: u8 = 3;
const TYPE_TRUE: u8 = 4;
const TYPE_STR: u8 = 5;

#[inline]
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline]
fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Longest LEB128 encoding of a `u64`.
const MAX_VARINT: usize = 10;

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
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.byte((v as u8) | 0x80);
            v >>= 7;
        }
        self.byte(v as u8);
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
    data: &'a [u8],
    pos: usize,
}

impl<'a> RecordDecoder<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    /// True when every byte has been consumed.
    pub fn is_at_end(&self) -> bool {
        self.pos == self.data.len()
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self.data.get(self.pos).ok_or(DecodeError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.byte()?;
            let bits = u64::from(b & 0x7f);
            // The 10th byte may only carry the single remaining bit.
            if i == 9 && bits > 1 {
                return Err(DecodeError::BadVarint);
            }
            v |= bits << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::BadVarint)
    }

    fn bytes(&mut self, n: u64) -> Result<&'a [u8], DecodeError> {
        let left = self.data.len() - self.pos;
        if n > left as u64 {
            return Err(DecodeError::BadLength(n));
        }
        let s = &self.data[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
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
        if n > (self.data.len() - self.pos) as u64 {
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
        return Err(DecodeError::TrailingBytes(data.len() - dec.pos));
    }
    Ok(out)
}

/// Longest client id a batch keeps; longer ids are cut (at a char boundary),
/// so the recycled string never has to grow past this.
pub const MAX_CLIENT_ID_BYTES: usize = 255;

/// A recycled buffer of encoded records from one worker for one client.
///
/// Workers take an empty batch from their [`WriterHandle`](super::WriterHandle),
/// hand it to a parser as its [`RecordSink`], and submit it. The buffer's
/// capacity is kept across uses, so the steady state allocates nothing.
/// `push` refuses a record with [`SinkFull`] once the byte or record budget is
/// reached (a single record larger than the whole budget is still accepted
/// into an empty batch, otherwise it could never be written).
#[derive(Debug)]
pub struct Batch {
    pub(crate) buf: Vec<u8>,
    pub(crate) records: u32,
    pub(crate) client: String,
    pub(crate) worker: u32,
    pub(crate) seq: u64,
    /// Whether a client waits for this batch to be durable. `None` until the
    /// caller or [`WriterHandle::submit`](super::WriterHandle::submit) (from
    /// the handle's ack mode) decides; the writer starts a sync at once for
    /// an awaited batch and lets the others ride the next one.
    pub(crate) awaited: Option<bool>,
    max_bytes: usize,
    max_records: u32,
}

impl Batch {
    /// An empty batch that holds up to `max_bytes` of encoded records and at
    /// most `max_records` records.
    pub fn with_budget(max_bytes: usize, max_records: u32) -> Self {
        Self {
            buf: Vec::with_capacity(max_bytes + 1024),
            records: 0,
            client: String::with_capacity(MAX_CLIENT_ID_BYTES),
            worker: 0,
            seq: 0,
            awaited: None,
            max_bytes,
            max_records: max_records.max(1),
        }
    }

    /// Sets the client id every record of this batch is attributed to.
    pub fn set_client(&mut self, client: &str) {
        let mut end = client.len().min(MAX_CLIENT_ID_BYTES);
        while !client.is_char_boundary(end) {
            end -= 1;
        }
        self.client.clear();
        self.client.push_str(&client[..end]);
    }

    pub fn client(&self) -> &str {
        &self.client
    }

    /// Number of records in the batch.
    pub fn len(&self) -> usize {
        self.records as usize
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Bytes of encoded records.
    pub fn encoded_bytes(&self) -> usize {
        self.buf.len()
    }

    /// The worker-local sequence number given at the last submit.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Marks whether a client waits for this batch to be durable (a
    /// per-request choice); without a call, `submit` uses the handle's ack
    /// mode (`durable`: awaited).
    pub fn set_awaited(&mut self, awaited: bool) {
        self.awaited = Some(awaited);
    }

    /// Whether a client waits for this batch to be durable (false while
    /// neither [`set_awaited`](Self::set_awaited) nor `submit` decided).
    pub fn is_awaited(&self) -> bool {
        self.awaited == Some(true)
    }

    /// Empties the batch, keeping its capacity.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.records = 0;
        self.client.clear();
        self.seq = 0;
        self.awaited = None;
    }

    /// Where the batch is now; [`rollback`](Self::rollback) returns to it.
    pub fn mark(&self) -> BatchMark {
        BatchMark { bytes: self.buf.len(), records: self.records }
    }

    /// Drops every record pushed since `mark` was taken, e.g. a datagram the
    /// limiter refused after it was parsed into the batch.
    pub fn rollback(&mut self, mark: BatchMark) {
        if mark.records <= self.records && mark.bytes <= self.buf.len() {
            self.buf.truncate(mark.bytes);
            self.records = mark.records;
        }
    }

    /// Decodes the batch's records (tests and tools; allocates).
    pub fn decode(&self) -> Result<Vec<Record>, DecodeError> {
        decode_records(&self.buf, self.records)
    }
}

/// A position in a [`Batch`] (bytes and records), from [`Batch::mark`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchMark {
    bytes: usize,
    records: u32,
}

impl RecordSink for Batch {
    fn push(&mut self, record: &RecordRef<'_, '_>) -> Result<(), SinkFull> {
        if self.records >= self.max_records {
            return Err(SinkFull);
        }
        let before = self.buf.len();
        encode_record(record, &mut self.buf);
        if self.buf.len() > self.max_bytes && self.records > 0 {
            self.buf.truncate(before);
            return Err(SinkFull);
        }
        self.records += 1;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        // Mix of ASCII with the characters line protocol must escape and
        // arbitrary Unicode.
        prop_oneof!["[a-z ,=\"\\\\]{0,12}".prop_map(|s| s), any::<String>().prop_map(|s| s.chars().take(12).collect()),]
    }

    fn field_value() -> impl Strategy<Value = FieldValue<'static>> {
        prop_oneof![
            any::<i64>().prop_map(FieldValue::Int),
            any::<u64>().prop_map(FieldValue::UInt),
            any::<f64>().prop_filter("NaN != NaN", |f| !f.is_nan()).prop_map(FieldValue::Float),
            any::<bool>().prop_map(FieldValue::Bool),
            text().prop_map(|s| FieldValue::Str(Cow::Owned(s))),
        ]
    }

    pub(crate) fn record() -> impl Strategy<Value = Record> {
        (
            "[a-z]{1,8}",
            proptest::collection::btree_map("[a-z,= ]{1,6}", text(), 0..5),
            proptest::collection::vec(("[a-z]{1,6}", field_value()), 1..5),
            any::<i64>(),
        )
            .prop_map(|(m, tags, fields, ts)| Record {
                measurement: Cow::Owned(m),
                tags: tags.into_iter().map(|(k, v)| Tag { key: Cow::Owned(k), value: Cow::Owned(v) }).collect(),
                fields: fields.into_iter().map(|(k, v)| Field { key: Cow::Owned(k), value: v }).collect(),
                timestamp_ns: ts,
            })
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
        fn batch_round_trips(recs in proptest::collection::vec(record(), 0..20)) {
            let mut b = Batch::with_budget(1 << 20, 1000);
            for r in &recs {
                b.push(&r.as_ref()).unwrap();
            }
            prop_assert_eq!(b.decode().unwrap(), recs);
        }

        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200), n in 0u32..5) {
            let _ = decode_records(&data, n);
        }
    }

    #[test]
    fn batch_enforces_budgets() {
        let rec = Record {
            measurement: "m".into(),
            tags: vec![],
            fields: vec![Field { key: "v".into(), value: FieldValue::Int(1) }],
            timestamp_ns: 5,
        };
        let mut b = Batch::with_budget(1 << 20, 3);
        for _ in 0..3 {
            b.push(&rec.as_ref()).unwrap();
        }
        assert_eq!(b.push(&rec.as_ref()), Err(SinkFull));
        assert_eq!(b.len(), 3);

        let mut b = Batch::with_budget(20, 100);
        let mut n = 0;
        while b.push(&rec.as_ref()).is_ok() {
            n += 1;
        }
        assert!(n >= 1 && b.encoded_bytes() <= 20, "n={n} bytes={}", b.encoded_bytes());
        assert_eq!(b.decode().unwrap().len(), n);
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

    #[test]
    fn client_id_is_cut_at_char_boundary() {
        let mut b = Batch::with_budget(100, 10);
        let long = "é".repeat(200);
        b.set_client(&long);
        assert!(b.client().len() <= MAX_CLIENT_ID_BYTES);
        assert!(b.client().chars().all(|c| c == 'é'));
    }
}
