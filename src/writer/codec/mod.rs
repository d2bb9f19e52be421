//! The record encodings of the log, and [`Batch`], the recycled buffer workers
//! fill: the parsers' [`RecordSink`], and the target of the one-pass
//! line-protocol path ([`Batch::push_line`]).
//!
//! - `v2` (what the writer writes, `docs/log-format.md`): each record is the
//!   validated line as received, without its timestamp, behind a header of a
//!   few bytes (tenant, flags, field types, timestamp in ns, line length).
//!   Lines that need canonicalising, and records of other protocols (JSON,
//!   StatsD), are written as line-protocol text and flagged REWRITTEN.
//! - [`v1`] (releases up to 2026-12): every token re-encoded; read for older
//!   logs, written only by tests.
//!
//! [`FrameRecords`] walks the records of one frame in either version.
//! There is no per-record checksum: records live inside a log frame that
//! carries one, and the frame header carries the record count.

use thiserror::Error;

use crate::ingest::line_index::{IndexedLine, LineIndexer};
use crate::ingest::line_protocol::LineErrorReason;
use crate::ingest::record::{Record, RecordRef, RecordSink, SinkFull};

#[cfg(test)]
pub(crate) mod tests;
pub mod v1;
mod v2;

pub use v2::{RecordFlags, StoredLine};

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
    #[error("record names tenant {index}; the frame's tenant table has {count}")]
    BadTenant { index: u8, count: u8 },
    #[error("the frame's tenant table runs past the payload or is not UTF-8")]
    BadTenantTable,
    #[error("unknown record flags {0:#04x}")]
    BadFlags(u8),
    #[error("stored line does not read back as line protocol: {0}")]
    BadLine(LineErrorReason),
    #[error("stored line is not exactly one canonical line without a timestamp")]
    NotOneLine,
    #[error("record header disagrees with its line ({0})")]
    HeaderMismatch(&'static str),
}

/// Longest LEB128 encoding of a `u64`.
pub(crate) const MAX_VARINT: usize = 10;

#[inline]
pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline]
pub(crate) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Writes `v` as LEB128 at the start of `out` (room for [`MAX_VARINT`]
/// bytes); returns how many bytes it took.
#[inline]
pub(crate) fn encode_varint(mut v: u64, out: &mut [u8]) -> usize {
    let mut n = 0;
    while v >= 0x80 {
        if let Some(slot) = out.get_mut(n) {
            *slot = (v as u8) | 0x80;
        }
        v >>= 7;
        n += 1;
    }
    if let Some(slot) = out.get_mut(n) {
        *slot = v as u8;
    }
    n + 1
}

/// A read position in encoded bytes; every read is checked.
#[derive(Clone, Debug)]
pub(crate) struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Cursor { data, pos: 0 }
    }

    /// Bytes not read yet.
    pub(crate) fn left(&self) -> usize {
        self.data.len() - self.pos
    }

    pub(crate) fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self.data.get(self.pos).ok_or(DecodeError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    pub(crate) fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for i in 0..MAX_VARINT {
            let b = self.byte()?;
            let bits = u64::from(b & 0x7f);
            // The 10th byte may only carry the single remaining bit.
            if i == MAX_VARINT - 1 && bits > 1 {
                return Err(DecodeError::BadVarint);
            }
            v |= bits << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::BadVarint)
    }

    pub(crate) fn bytes(&mut self, n: u64) -> Result<&'a [u8], DecodeError> {
        if n > self.left() as u64 {
            return Err(DecodeError::BadLength(n));
        }
        let s = self.data.get(self.pos..self.pos + n as usize).ok_or(DecodeError::BadLength(n))?;
        self.pos += n as usize;
        Ok(s)
    }

    /// The bytes not read yet.
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.data.get(self.pos..).unwrap_or(&[])
    }
}

/// A record's tenant: an index into its batch's (and frame's) tenant table.
/// Only the batch hands out indices, so a record cannot name an entry its
/// frame does not have.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TenantIndex(u8);

impl TenantIndex {
    /// Entry 0: the default tenant (`""`).
    pub const DEFAULT: TenantIndex = TenantIndex(0);

    pub fn get(self) -> u8 {
        self.0
    }
}

/// A frame's tenant table as stored: `tenant_count u8 | { tenant_len u8 | tenant }*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TenantTable<'a> {
    count: u8,
    /// The entries, after the count byte.
    entries: &'a [u8],
}

impl<'a> TenantTable<'a> {
    /// The table of a version-1 frame (which has none): every record is the
    /// default tenant's.
    pub const DEFAULT_ONLY: TenantTable<'static> = TenantTable { count: 1, entries: &[0] };

    /// Reads a table from the start of `data`; returns it and the bytes after it.
    pub fn parse(data: &'a [u8]) -> Result<(TenantTable<'a>, &'a [u8]), DecodeError> {
        let mut cur = Cursor::new(data);
        let count = cur.byte().map_err(|_| DecodeError::BadTenantTable)?;
        let start = cur.pos;
        for _ in 0..count {
            let len = cur.byte().map_err(|_| DecodeError::BadTenantTable)?;
            let name = cur.bytes(u64::from(len)).map_err(|_| DecodeError::BadTenantTable)?;
            std::str::from_utf8(name).map_err(|_| DecodeError::BadTenantTable)?;
        }
        let entries = data.get(start..cur.pos).ok_or(DecodeError::BadTenantTable)?;
        Ok((TenantTable { count, entries }, cur.rest()))
    }

    pub fn len(&self) -> usize {
        usize::from(self.count)
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Entry `index` (tables hold a handful of names: a walk, not an index).
    pub fn get(&self, index: u8) -> Option<&'a str> {
        let mut rest = self.entries;
        for i in 0..self.count {
            let (&len, tail) = rest.split_first()?;
            let (name, tail) = tail.split_at_checked(usize::from(len))?;
            if i == index {
                return std::str::from_utf8(name).ok();
            }
            rest = tail;
        }
        None
    }
}

/// How a frame's records are encoded (the segment header's version decides).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordFormat {
    V1,
    V2,
}

/// One record as stored, borrowed from its frame where the format allows.
#[derive(Clone, Debug, PartialEq)]
pub enum StoredRecord<'a> {
    /// Version 1: decoded from its tokens.
    V1(Record),
    /// Version 2: the stored line and its header.
    V2(StoredLine<'a>),
}

impl StoredRecord<'_> {
    pub fn timestamp_ns(&self) -> i64 {
        match self {
            StoredRecord::V1(r) => r.timestamp_ns,
            StoredRecord::V2(l) => l.timestamp_ns,
        }
    }

    /// Appends the record as one nanosecond-precision line of line protocol
    /// with its newline: a version-2 record's stored bytes as they are, plus
    /// `" " + timestamp_ns`; a version-1 record rendered from its tokens.
    pub fn write_line_protocol(&self, out: &mut Vec<u8>) {
        match self {
            StoredRecord::V1(r) => super::format::write_line_protocol(out, r),
            StoredRecord::V2(l) => l.write_line_protocol(out),
        }
    }

    /// The record with its tags and fields (a version-2 line is re-parsed).
    pub fn to_record(&self, indexer: &mut LineIndexer) -> Result<Record, DecodeError> {
        match self {
            StoredRecord::V1(r) => Ok(r.clone()),
            StoredRecord::V2(l) => l.to_record(indexer),
        }
    }

    /// [`to_record`](Self::to_record), consuming the record.
    pub fn into_record(self, indexer: &mut LineIndexer) -> Result<Record, DecodeError> {
        match self {
            StoredRecord::V1(r) => Ok(r),
            StoredRecord::V2(l) => l.to_record(indexer),
        }
    }

    /// Checks that the record decodes completely (a version-2 line reads
    /// back as exactly the canonical line its header describes).
    pub fn check(&self, indexer: &mut LineIndexer) -> Result<(), DecodeError> {
        match self {
            StoredRecord::V1(_) => Ok(()),
            StoredRecord::V2(l) => l.check(indexer),
        }
    }
}

enum RecordsInner<'a> {
    V1(v1::RecordDecoder<'a>),
    V2 { cur: Cursor<'a>, tenants: TenantTable<'a> },
}

/// The records of one frame, in order; a record that does not decode ends the
/// walk with its error, and so do bytes left over after the last one.
pub struct FrameRecords<'a> {
    inner: RecordsInner<'a>,
    left: u32,
    done: bool,
}

impl<'a> FrameRecords<'a> {
    /// The `count` records in `data`, encoded in `format`; `tenants` is the
    /// frame's tenant table (version 2).
    pub fn new(format: RecordFormat, data: &'a [u8], count: u32, tenants: TenantTable<'a>) -> Self {
        let inner = match format {
            RecordFormat::V1 => RecordsInner::V1(v1::RecordDecoder::new(data)),
            RecordFormat::V2 => RecordsInner::V2 { cur: Cursor::new(data), tenants },
        };
        FrameRecords { inner, left: count, done: false }
    }

    fn left_over(&self) -> usize {
        match &self.inner {
            RecordsInner::V1(d) => d.left(),
            RecordsInner::V2 { cur, .. } => cur.left(),
        }
    }
}

impl<'a> Iterator for FrameRecords<'a> {
    type Item = Result<StoredRecord<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.left == 0 {
            self.done = true;
            let extra = self.left_over();
            return (extra > 0).then_some(Err(DecodeError::TrailingBytes(extra)));
        }
        self.left -= 1;
        let record = match &mut self.inner {
            RecordsInner::V1(d) => d.next_record().map(StoredRecord::V1),
            RecordsInner::V2 { cur, tenants } => StoredLine::read(cur, tenants).map(StoredRecord::V2),
        };
        if record.is_err() {
            self.done = true;
        }
        Some(record)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left as usize + 1))
    }
}

/// Longest client id a batch keeps; longer ids are cut (at a char boundary),
/// so the recycled string never has to grow past this.
pub const MAX_CLIENT_ID_BYTES: usize = 255;

/// A recycled buffer of encoded (version 2) records from one worker.
///
/// Workers take an empty batch from their [`WriterHandle`](super::WriterHandle),
/// index line protocol into it ([`push_line`](Self::push_line)) or hand it to a
/// parser as its [`RecordSink`], and submit it. The buffer's capacity is kept
/// across uses, so the steady state allocates nothing. A push is refused with
/// [`SinkFull`] once the byte or record budget is reached (a single record
/// larger than the whole budget is still accepted into an empty batch,
/// otherwise it could never be written).
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
    /// The frame's tenant table as stored (see [`TenantTable`]); entry 0 is
    /// the default tenant `""` and is always there.
    pub(crate) tenants: Vec<u8>,
    /// Boxed: the batch travels by value through the writer's channels.
    canonical: Box<v2::CanonicalScratch>,
    max_bytes: usize,
    max_records: u32,
}

/// The tenant table of a batch that only knows the default tenant.
const DEFAULT_TENANT_TABLE: [u8; 2] = [1, 0];

impl Batch {
    /// An empty batch that holds up to `max_bytes` of encoded records and at
    /// most `max_records` records.
    pub fn with_budget(max_bytes: usize, max_records: u32) -> Self {
        let mut tenants = Vec::with_capacity(256);
        tenants.extend_from_slice(&DEFAULT_TENANT_TABLE);
        Self {
            buf: Vec::with_capacity(max_bytes + 1024),
            records: 0,
            client: String::with_capacity(MAX_CLIENT_ID_BYTES),
            worker: 0,
            seq: 0,
            awaited: None,
            tenants,
            canonical: Box::default(),
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

    /// The tenant table the batch's frame will carry.
    pub fn tenant_table(&self) -> TenantTable<'_> {
        TenantTable::parse(&self.tenants).map_or(TenantTable::DEFAULT_ONLY, |(table, _)| table)
    }

    /// Empties the batch, keeping its capacity.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.records = 0;
        self.client.clear();
        self.seq = 0;
        self.awaited = None;
        self.tenants.clear();
        self.tenants.extend_from_slice(&DEFAULT_TENANT_TABLE);
    }

    /// Where the batch is now; [`rollback`](Self::rollback) returns to it.
    pub fn mark(&self) -> BatchMark {
        BatchMark {
            bytes: self.buf.len(),
            records: self.records,
            tenant_bytes: self.tenants.len(),
            tenant_count: self.tenants.first().copied().unwrap_or(1),
        }
    }

    /// Drops every record pushed since `mark` was taken, e.g. a datagram the
    /// limiter refused after it was parsed into the batch.
    pub fn rollback(&mut self, mark: BatchMark) {
        if mark.records <= self.records && mark.bytes <= self.buf.len() && mark.tenant_bytes <= self.tenants.len() {
            self.buf.truncate(mark.bytes);
            self.records = mark.records;
            self.tenants.truncate(mark.tenant_bytes);
            if let Some(count) = self.tenants.first_mut() {
                *count = mark.tenant_count;
            }
        }
    }

    /// Appends one line the indexer validated: its bytes as received (without
    /// the timestamp) behind a record header, or, for a line that needs
    /// canonicalising (tags out of order, a repeated field), the canonical
    /// line re-written from its elements (escapes kept) and flagged REWRITTEN.
    /// Allocates nothing once the batch's buffers have their capacity.
    #[inline]
    pub fn push_line(&mut self, line: &IndexedLine<'_, '_>, tenant: TenantIndex) -> Result<(), SinkFull> {
        if self.records >= self.max_records {
            return Err(SinkFull);
        }
        let before = self.buf.len();
        v2::write_indexed_line(&mut self.buf, &mut self.canonical, line, tenant);
        self.admit(before)
    }

    /// Appends a record of another protocol (JSON, StatsD) written as
    /// line-protocol text straight into the batch, flagged REWRITTEN. A record
    /// line protocol cannot carry ([`RecordRef::check_line`]; the parsers
    /// refuse those first) is refused like a full batch.
    pub fn push_record(&mut self, record: &RecordRef<'_, '_>, tenant: TenantIndex) -> Result<(), SinkFull> {
        if self.records >= self.max_records {
            return Err(SinkFull);
        }
        let before = self.buf.len();
        if v2::write_record(&mut self.buf, record, tenant).is_err() {
            self.buf.truncate(before);
            return Err(SinkFull);
        }
        self.admit(before)
    }

    /// Keeps the record just written after `before` if the byte budget allows.
    #[inline]
    fn admit(&mut self, before: usize) -> Result<(), SinkFull> {
        if self.buf.len() > self.max_bytes && self.records > 0 {
            self.buf.truncate(before);
            return Err(SinkFull);
        }
        self.records += 1;
        Ok(())
    }

    /// The batch's records as stored.
    pub fn records(&self) -> FrameRecords<'_> {
        FrameRecords::new(RecordFormat::V2, &self.buf, self.records, self.tenant_table())
    }

    /// Decodes the batch's records (tests and tools; allocates).
    pub fn decode(&self) -> Result<Vec<Record>, DecodeError> {
        let mut indexer = LineIndexer::new();
        self.records().map(|r| r.and_then(|r| r.into_record(&mut indexer))).collect()
    }
}

/// A position in a [`Batch`] (bytes, records and tenant table), from [`Batch::mark`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchMark {
    bytes: usize,
    records: u32,
    tenant_bytes: usize,
    tenant_count: u8,
}

impl RecordSink for Batch {
    fn push(&mut self, record: &RecordRef<'_, '_>) -> Result<(), SinkFull> {
        self.push_record(record, TenantIndex::DEFAULT)
    }
}
