//! The on-disk segment log: file format, the appending [`SegmentWriter`]
//! (rotation, retention), crash recovery of the tail, the frame reader used by
//! `dump`, `verify` and the shipper ([`SegmentReader`], [`LogTail`]).
//!
//! Format (`docs/log-format.md` is the reference). `data_dir` holds segment
//! files named `{first_record_id:020}.seg`. Every record in the log has a
//! global record id (starting at 1, dense, in log order); a segment's name is
//! the id of its first record.
//!
//! ```text
//! segment header, 24 bytes:
//!   magic "MSSEGLOG" | version u32 LE | first_record_id u64 LE | crc32c u32 LE of the previous 20 bytes
//! frames, back to back, one per batch:
//!   payload_len u32 LE | crc32c u32 LE of payload | payload
//! payload (little-endian):
//!   first_record_id u64 | record_count u32 | worker u32 | worker_seq u64 | client_len u8 | client
//!   version 2 only: tenant_count u8 | { tenant_len u8 | tenant }*
//!   records (in the encoding of `codec`'s version)
//! ```
//!
//! The header's version says how every frame of the file is encoded: the
//! writer writes version 2 and never appends to a segment of another version
//! (a version-1 tail is recovered as before, then a new segment is started);
//! readers dispatch once per file and read both.
//!
//! A crash can leave the tail segment with a torn last frame (or a torn
//! header); recovery truncates it. Frames in a segment are only ever appended,
//! so everything before the first bad frame is intact.
//!
//! Layout: this file holds the format (constants, file naming, listing,
//! [`Frame`] parsing and encoding) and [`SegmentError`]; `writer.rs` the
//! [`SegmentWriter`] (buffering, rotation, retention); `recovery.rs` the tail
//! repair it runs at open ([`Recovery`]); `reader.rs` [`SegmentReader`] and
//! [`LogTail`]; `verify.rs` [`verify_log`].

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use thiserror::Error;

use super::codec::{Batch, DecodeError, FrameRecords, RecordFormat, TenantTable};
use crate::ingest::line_index::LineIndexer;
use crate::ingest::record::Record;

mod reader;
mod recovery;
#[cfg(test)]
mod tests;
mod verify;
mod writer;

pub use reader::{DecodedFrame, FrameRead, LogTail, SegmentReader, TailFrame, TailIdle};
pub use recovery::Recovery;
pub use verify::{verify_log, VerifyReport};
pub use writer::{SegmentWriter, SyncPoint};

pub const SEGMENT_MAGIC: [u8; 8] = *b"MSSEGLOG";
/// Every token re-encoded (releases up to 2026-12): read, no longer written.
pub const SEGMENT_VERSION_1: u32 = 1;
/// Records stored as received, with a tenant table per frame.
pub const SEGMENT_VERSION_2: u32 = 2;
/// The version the writer writes.
pub const SEGMENT_VERSION: u32 = SEGMENT_VERSION_2;
pub const SEGMENT_HEADER_BYTES: u64 = 24;
pub const FRAME_HEADER_BYTES: usize = 8;
const PAYLOAD_FIXED_BYTES: usize = 8 + 4 + 4 + 8 + 1;
/// Frames larger than this are treated as corrupt (a flipped length bit must
/// not make a reader allocate gigabytes). Batches are capped far below it.
pub const MAX_FRAME_BYTES: u32 = 64 << 20;
/// The first record id of an empty log.
pub const FIRST_RECORD_ID: u64 = 1;

#[derive(Debug, Error)]
pub enum SegmentError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: bad segment header ({reason})")]
    BadHeader { path: PathBuf, reason: String },
    #[error("{path} at offset {offset}: corrupt frame ({reason})")]
    CorruptFrame { path: PathBuf, offset: u64, reason: String },
    #[error("frame payload: {0}")]
    BadPayload(String),
    #[error("records: {0}")]
    Decode(#[from] DecodeError),
}

trait IoContext<T> {
    fn at(self, path: &Path) -> Result<T, SegmentError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &Path) -> Result<T, SegmentError> {
        self.map_err(|source| SegmentError::Io { path: path.to_owned(), source })
    }
}

pub fn segment_file_name(first_record_id: u64) -> String {
    format!("{first_record_id:020}.seg")
}

fn segment_header(first_record_id: u64, version: u32) -> [u8; SEGMENT_HEADER_BYTES as usize] {
    let mut h = [0u8; SEGMENT_HEADER_BYTES as usize];
    h[..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&version.to_le_bytes());
    h[12..20].copy_from_slice(&first_record_id.to_le_bytes());
    let crc = crc32c::crc32c(&h[..20]);
    h[20..24].copy_from_slice(&crc.to_le_bytes());
    h
}

/// The record format of a segment version this release reads.
fn record_format(version: u32) -> Option<RecordFormat> {
    match version {
        SEGMENT_VERSION_1 => Some(RecordFormat::V1),
        SEGMENT_VERSION_2 => Some(RecordFormat::V2),
        _ => None,
    }
}

/// Checks a segment header; returns its version.
fn check_header(h: &[u8], expected_first: u64) -> Result<u32, String> {
    if h[..8] != SEGMENT_MAGIC {
        return Err("bad magic".into());
    }
    if crc32c::crc32c(&h[..20]).to_le_bytes() != h[20..24] {
        return Err("header checksum mismatch".into());
    }
    let version = u32::from_le_bytes(h[8..12].try_into().unwrap_or_default());
    if record_format(version).is_none() {
        return Err(format!(
            "unsupported version {version} (this release reads versions {SEGMENT_VERSION_1} and {SEGMENT_VERSION_2}; \
             a newer release wrote it: read it with that release)"
        ));
    }
    let first = u64::from_le_bytes(h[12..20].try_into().unwrap_or_default());
    if first != expected_first {
        return Err(format!("header says first record {first}, file name says {expected_first}"));
    }
    Ok(version)
}

/// One segment file found in the data directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    pub first_record_id: u64,
    pub path: PathBuf,
    pub len: u64,
    pub modified: SystemTime,
}

/// Segment files of `dir`, oldest first. Other files are ignored.
pub fn list_segments(dir: &Path) -> Result<Vec<SegmentInfo>, SegmentError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(".seg") else {
            continue;
        };
        if stem.len() != 20 {
            continue;
        }
        let Ok(first_record_id) = stem.parse::<u64>() else {
            continue;
        };
        let path = entry.path();
        let meta = entry.metadata().at(&path)?;
        out.push(SegmentInfo {
            first_record_id,
            path,
            len: meta.len(),
            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        });
    }
    out.sort_by_key(|s| s.first_record_id);
    Ok(out)
}

/// A decoded frame header plus its still-encoded records, borrowed from the
/// reader's buffer.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    /// How the records are encoded (the segment's version).
    pub format: RecordFormat,
    pub first_record_id: u64,
    pub record_count: u32,
    pub worker: u32,
    pub worker_seq: u64,
    pub client: &'a str,
    /// The frame's tenant table (a version-1 frame has only the default tenant).
    pub tenants: TenantTable<'a>,
    pub records: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Parses a payload whose checksum has already been verified.
    pub fn parse(p: &'a [u8], format: RecordFormat) -> Result<Self, SegmentError> {
        if p.len() < PAYLOAD_FIXED_BYTES {
            return Err(SegmentError::BadPayload(format!("{} bytes is shorter than the fixed header", p.len())));
        }
        let u64_at = |i: usize| u64::from_le_bytes(p[i..i + 8].try_into().unwrap_or_default());
        let u32_at = |i: usize| u32::from_le_bytes(p[i..i + 4].try_into().unwrap_or_default());
        let client_len = p[24] as usize;
        let rest = &p[PAYLOAD_FIXED_BYTES..];
        if rest.len() < client_len {
            return Err(SegmentError::BadPayload("client id runs past the payload".into()));
        }
        let client = std::str::from_utf8(&rest[..client_len])
            .map_err(|_| SegmentError::BadPayload("client id is not UTF-8".into()))?;
        let rest = &rest[client_len..];
        let (tenants, records) = match format {
            RecordFormat::V1 => (TenantTable::DEFAULT_ONLY, rest),
            RecordFormat::V2 => TenantTable::parse(rest).map_err(|e| SegmentError::BadPayload(e.to_string()))?,
        };
        Ok(Frame {
            format,
            first_record_id: u64_at(0),
            record_count: u32_at(8),
            worker: u32_at(12),
            worker_seq: u64_at(16),
            client,
            tenants,
            records,
        })
    }

    /// One past the last record id of this frame.
    pub fn end_record_id(&self) -> u64 {
        self.first_record_id + u64::from(self.record_count)
    }

    /// The records as stored, in order.
    pub fn stored_records(&self) -> FrameRecords<'a> {
        FrameRecords::new(self.format, self.records, self.record_count, self.tenants)
    }

    /// Every record decoded (tests and tools; allocates).
    pub fn decode_records(&self) -> Result<Vec<Record>, DecodeError> {
        self.decode_records_with(&mut LineIndexer::new())
    }

    /// [`decode_records`](Self::decode_records) with the caller's indexer.
    pub fn decode_records_with(&self, indexer: &mut LineIndexer) -> Result<Vec<Record>, DecodeError> {
        self.stored_records().map(|r| r.and_then(|r| r.into_record(indexer))).collect()
    }
}

/// Appends the on-disk frame for `batch` (header + payload) to `out`.
pub fn encode_frame(out: &mut Vec<u8>, first_record_id: u64, batch: &Batch) {
    encode_frame_head(out, first_record_id, batch);
    out.extend_from_slice(&batch.buf);
}

/// Appends everything of the version-2 frame for `batch` except the encoded
/// records themselves (which follow it on disk): length, checksum (over the
/// whole payload, records included), the fixed payload fields, the client id
/// and the tenant table.
/// Lets the writer hand large batches to the kernel without copying them.
pub fn encode_frame_head(out: &mut Vec<u8>, first_record_id: u64, batch: &Batch) {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER_BYTES]);
    out.extend_from_slice(&first_record_id.to_le_bytes());
    out.extend_from_slice(&batch.records.to_le_bytes());
    out.extend_from_slice(&batch.worker.to_le_bytes());
    out.extend_from_slice(&batch.seq.to_le_bytes());
    // `Batch::set_client` keeps the id <= 255 bytes.
    let client = batch.client.as_bytes();
    let client = &client[..client.len().min(255)];
    out.push(client.len() as u8);
    out.extend_from_slice(client);
    out.extend_from_slice(&batch.tenants);
    let head = &out[start + FRAME_HEADER_BYTES..];
    let len = (head.len() + batch.buf.len()) as u32;
    let crc = crc32c::crc32c_append(crc32c::crc32c(head), &batch.buf);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Bytes of the frame for `batch` on disk (header and payload).
pub(super) fn frame_bytes(batch: &Batch) -> u64 {
    (FRAME_HEADER_BYTES + PAYLOAD_FIXED_BYTES + batch.client.len().min(255) + batch.tenants.len() + batch.buf.len())
        as u64
}
