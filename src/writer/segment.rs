//! The on-disk segment log: file format, the appending [`SegmentWriter`]
//! (rotation, retention), crash recovery of the tail, the frame reader used by
//! `dump`, `verify` and the shipper ([`SegmentReader`], [`LogTail`]).
//!
//! Format. `data_dir` holds segment files named `{first_record_id:020}.seg`.
//! Every record in the log has a global record id (starting at 1, dense, in log
//! order); a segment's name is the id of its first record.
//!
//! ```text
//! segment header, 24 bytes:
//!   magic "MSSEGLOG" | version u32 LE = 1 | first_record_id u64 LE | crc32c u32 LE of the previous 20 bytes
//! frames, back to back, one per batch:
//!   payload_len u32 LE | crc32c u32 LE of payload | payload
//! payload:
//!   first_record_id u64 | record_count u32 | worker u32 | worker_seq u64 | client_len u8 | client | records
//!   (little-endian; records in the encoding of `codec`)
//! ```
//!
//! A crash can leave the tail segment with a torn last frame (or a torn
//! header); recovery truncates it. Frames in a segment are only ever appended,
//! so everything before the first bad frame is intact.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use thiserror::Error;

use super::codec::{decode_records, Batch, DecodeError};
use crate::ingest::record::Record;

pub const SEGMENT_MAGIC: [u8; 8] = *b"MSSEGLOG";
pub const SEGMENT_VERSION: u32 = 1;
pub const SEGMENT_HEADER_BYTES: u64 = 24;
pub const FRAME_HEADER_BYTES: usize = 8;
const PAYLOAD_FIXED_BYTES: usize = 8 + 4 + 4 + 8 + 1;
/// Frames larger than this are treated as corrupt (a flipped length bit must
/// not make a reader allocate gigabytes). Batches are capped far below it.
pub const MAX_FRAME_BYTES: u32 = 64 << 20;
/// The first record id of an empty log.
pub const FIRST_RECORD_ID: u64 = 1;
/// Buffered frames are written to the file once this many bytes accumulate
/// (large sequential writes), or earlier when the writer goes idle or syncs.
const WRITE_CHUNK_BYTES: usize = 1 << 20;
/// Batches at least this large skip the write buffer (vectored write of the
/// frame head plus the batch buffer); smaller ones are coalesced.
const DIRECT_WRITE_MIN_BYTES: usize = 32 << 10;

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

fn segment_header(first_record_id: u64) -> [u8; SEGMENT_HEADER_BYTES as usize] {
    let mut h = [0u8; SEGMENT_HEADER_BYTES as usize];
    h[..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&first_record_id.to_le_bytes());
    let crc = crc32c::crc32c(&h[..20]);
    h[20..24].copy_from_slice(&crc.to_le_bytes());
    h
}

fn check_header(h: &[u8], expected_first: u64) -> Result<(), String> {
    if h[..8] != SEGMENT_MAGIC {
        return Err("bad magic".into());
    }
    if crc32c::crc32c(&h[..20]).to_le_bytes() != h[20..24] {
        return Err("header checksum mismatch".into());
    }
    let version = u32::from_le_bytes(h[8..12].try_into().unwrap_or_default());
    if version != SEGMENT_VERSION {
        return Err(format!("unsupported version {version}"));
    }
    let first = u64::from_le_bytes(h[12..20].try_into().unwrap_or_default());
    if first != expected_first {
        return Err(format!("header says first record {first}, file name says {expected_first}"));
    }
    Ok(())
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
    pub first_record_id: u64,
    pub record_count: u32,
    pub worker: u32,
    pub worker_seq: u64,
    pub client: &'a str,
    pub records: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Parses a payload whose checksum has already been verified.
    pub fn parse(p: &'a [u8]) -> Result<Self, SegmentError> {
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
        Ok(Frame {
            first_record_id: u64_at(0),
            record_count: u32_at(8),
            worker: u32_at(12),
            worker_seq: u64_at(16),
            client,
            records: &rest[client_len..],
        })
    }

    /// One past the last record id of this frame.
    pub fn end_record_id(&self) -> u64 {
        self.first_record_id + u64::from(self.record_count)
    }

    pub fn decode_records(&self) -> Result<Vec<Record>, DecodeError> {
        decode_records(self.records, self.record_count)
    }
}

/// Appends the on-disk frame for `batch` (header + payload) to `out`.
pub fn encode_frame(out: &mut Vec<u8>, first_record_id: u64, batch: &Batch) {
    encode_frame_head(out, first_record_id, batch);
    out.extend_from_slice(&batch.buf);
}

/// Appends everything of the frame for `batch` except the encoded records
/// themselves (which follow it on disk): length, checksum (over the whole
/// payload, records included), the fixed payload fields and the client id.
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
    let head = &out[start + FRAME_HEADER_BYTES..];
    let len = (head.len() + batch.buf.len()) as u32;
    let crc = crc32c::crc32c_append(crc32c::crc32c(head), &batch.buf);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// `write_all` of `a` then `b` with vectored writes (no copy into one buffer).
fn write_all_two(file: &mut File, a: &[u8], b: &[u8]) -> io::Result<()> {
    let total = a.len() + b.len();
    let mut done = 0;
    while done < total {
        let r = if done < a.len() {
            file.write_vectored(&[io::IoSlice::new(&a[done..]), io::IoSlice::new(b)])
        } else {
            file.write(&b[done - a.len()..])
        };
        match r {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// What reading the next frame found.
#[derive(Debug)]
pub enum FrameRead<'a> {
    Frame(Frame<'a>),
    /// Clean end: the file ends exactly at a frame boundary.
    End,
    /// The file ends inside a frame (a write in progress, or a crash).
    Torn {
        offset: u64,
    },
    /// A complete frame that fails its checks.
    Corrupt {
        offset: u64,
        reason: String,
    },
}

/// Reads as much as possible into `buf`; returns how many bytes were read
/// (less than `buf.len()` only at end of file).
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Sequential frame reader over one segment file.
#[derive(Debug)]
pub struct SegmentReader {
    path: PathBuf,
    file: BufReader<File>,
    first_record_id: u64,
    offset: u64,
    next_record_id: u64,
    payload: Vec<u8>,
}

impl SegmentReader {
    /// Opens a segment and checks its header. `Ok(None)` when the file is
    /// shorter than a header (a torn header: only possible on the tail).
    pub fn open(path: &Path, first_record_id: u64) -> Result<Option<Self>, SegmentError> {
        let mut file = File::open(path).at(path)?;
        let mut h = [0u8; SEGMENT_HEADER_BYTES as usize];
        if read_full(&mut file, &mut h).at(path)? < h.len() {
            return Ok(None);
        }
        check_header(&h, first_record_id)
            .map_err(|reason| SegmentError::BadHeader { path: path.to_owned(), reason })?;
        Ok(Some(Self {
            path: path.to_owned(),
            file: BufReader::with_capacity(1 << 20, file),
            first_record_id,
            offset: SEGMENT_HEADER_BYTES,
            next_record_id: first_record_id,
            payload: Vec::new(),
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn first_record_id(&self) -> u64 {
        self.first_record_id
    }

    /// Byte offset of the next frame.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The record id the next frame must start with.
    pub fn next_record_id(&self) -> u64 {
        self.next_record_id
    }

    /// Goes back to the start of the frame at `offset` (after `Torn`, to try
    /// again once more data has been written).
    pub fn rewind(&mut self, offset: u64, next_record_id: u64) -> Result<(), SegmentError> {
        self.file.seek(SeekFrom::Start(offset)).at(&self.path)?;
        self.offset = offset;
        self.next_record_id = next_record_id;
        Ok(())
    }

    pub fn next_frame(&mut self) -> Result<FrameRead<'_>, SegmentError> {
        let offset = self.offset;
        let mut h = [0u8; FRAME_HEADER_BYTES];
        let n = read_full(&mut self.file, &mut h).at(&self.path)?;
        if n == 0 {
            return Ok(FrameRead::End);
        }
        if n < FRAME_HEADER_BYTES {
            self.rewind(offset, self.next_record_id)?;
            return Ok(FrameRead::Torn { offset });
        }
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        if len > MAX_FRAME_BYTES || (len as usize) < PAYLOAD_FIXED_BYTES {
            return Ok(FrameRead::Corrupt { offset, reason: format!("implausible frame length {len}") });
        }
        self.payload.resize(len as usize, 0);
        let n = read_full(&mut self.file, &mut self.payload).at(&self.path)?;
        if n < len as usize {
            self.rewind(offset, self.next_record_id)?;
            return Ok(FrameRead::Torn { offset });
        }
        if crc32c::crc32c(&self.payload) != crc {
            return Ok(FrameRead::Corrupt { offset, reason: "checksum mismatch".into() });
        }
        let frame = match Frame::parse(&self.payload) {
            Ok(f) => f,
            Err(e) => return Ok(FrameRead::Corrupt { offset, reason: e.to_string() }),
        };
        if frame.first_record_id != self.next_record_id {
            return Ok(FrameRead::Corrupt {
                offset,
                reason: format!("frame starts at record {}, expected {}", frame.first_record_id, self.next_record_id),
            });
        }
        self.offset = offset + FRAME_HEADER_BYTES as u64 + u64::from(len);
        self.next_record_id = frame.end_record_id();
        Ok(FrameRead::Frame(frame))
    }
}

/// What recovery found and did at start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Segment files present after recovery.
    pub segments: usize,
    /// Complete frames kept in the tail segment.
    pub tail_frames: u64,
    /// Records in those frames.
    pub tail_records: u64,
    /// The id the next appended record gets.
    pub next_record_id: u64,
    /// Bytes cut off the tail (a torn or corrupt last frame, or torn header).
    pub truncated_bytes: u64,
    /// Why the tail was cut, if it was.
    pub truncated_reason: Option<String>,
}

/// Scans the tail segment of `dir`, truncates a torn or corrupt tail, and
/// returns the valid length of the tail (or `None` for an empty log).
fn recover_tail(dir: &Path) -> Result<(Recovery, Option<(SegmentInfo, u64)>), SegmentError> {
    let segments = list_segments(dir)?;
    let mut rec = Recovery { segments: segments.len(), next_record_id: FIRST_RECORD_ID, ..Default::default() };
    let Some(tail) = segments.last().cloned() else {
        return Ok((rec, None));
    };
    rec.next_record_id = tail.first_record_id;
    let valid_len = match SegmentReader::open(&tail.path, tail.first_record_id)? {
        None => {
            // Torn header: the segment was just being created. Rewrite it.
            rec.truncated_bytes = tail.len;
            rec.truncated_reason = Some("torn segment header".into());
            let mut f = OpenOptions::new().write(true).open(&tail.path).at(&tail.path)?;
            f.set_len(0).at(&tail.path)?;
            f.write_all(&segment_header(tail.first_record_id)).at(&tail.path)?;
            f.sync_data().at(&tail.path)?;
            SEGMENT_HEADER_BYTES
        }
        Some(mut reader) => {
            loop {
                match reader.next_frame()? {
                    FrameRead::Frame(f) => {
                        rec.tail_frames += 1;
                        rec.tail_records += u64::from(f.record_count);
                    }
                    FrameRead::End => break,
                    FrameRead::Torn { offset } => {
                        rec.truncated_reason = Some(format!("torn frame at offset {offset}"));
                        break;
                    }
                    FrameRead::Corrupt { offset, reason } => {
                        rec.truncated_reason = Some(format!("corrupt frame at offset {offset}: {reason}"));
                        break;
                    }
                }
            }
            rec.next_record_id = reader.next_record_id();
            let valid = reader.offset();
            if valid < tail.len {
                rec.truncated_bytes = tail.len - valid;
                let f = OpenOptions::new().write(true).open(&tail.path).at(&tail.path)?;
                f.set_len(valid).at(&tail.path)?;
                f.sync_data().at(&tail.path)?;
            }
            valid
        }
    };
    if let Some(reason) = &rec.truncated_reason {
        log::warn!(
            "writer recovery: {}: dropped {} bytes ({reason}); continuing at record {}",
            tail.path.display(),
            rec.truncated_bytes,
            rec.next_record_id
        );
    }
    Ok((rec, Some((tail, valid_len))))
}

fn sync_dir(dir: &Path) -> Result<(), SegmentError> {
    // Makes a created or deleted segment's directory entry durable.
    File::open(dir).at(dir)?.sync_all().at(dir)
}

/// Appends frames to the active segment, rotating by size. Frames are
/// buffered and written in large chunks; [`SegmentWriter::sync`] makes
/// everything appended so far durable.
#[derive(Debug)]
pub struct SegmentWriter {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    /// Logical length of the active segment, including buffered bytes.
    len: u64,
    next_record_id: u64,
    buf: Vec<u8>,
    segment_bytes: u64,
    unsynced_bytes: u64,
    /// Bytes handed to write(2) since creation (for stats).
    written_bytes: u64,
    /// Frame bytes appended since creation (monotonic, for stats).
    appended_bytes: u64,
}

impl SegmentWriter {
    /// Recovers `dir` (creating it if needed) and opens the tail for appending.
    pub fn open(dir: &Path, segment_bytes: u64) -> Result<(Self, Recovery), SegmentError> {
        fs::create_dir_all(dir).at(dir)?;
        let (rec, tail) = recover_tail(dir)?;
        let (path, file, len) = match tail {
            Some((info, valid_len)) => {
                let mut file = OpenOptions::new().write(true).open(&info.path).at(&info.path)?;
                file.seek(SeekFrom::Start(valid_len)).at(&info.path)?;
                (info.path, file, valid_len)
            }
            None => {
                let (path, file) = Self::create_segment(dir, rec.next_record_id)?;
                (path, file, SEGMENT_HEADER_BYTES)
            }
        };
        let w = Self {
            dir: dir.to_owned(),
            path,
            file,
            len,
            next_record_id: rec.next_record_id,
            buf: Vec::with_capacity(WRITE_CHUNK_BYTES + (1 << 20)),
            segment_bytes,
            unsynced_bytes: 0,
            written_bytes: 0,
            appended_bytes: 0,
        };
        Ok((w, rec))
    }

    fn create_segment(dir: &Path, first_record_id: u64) -> Result<(PathBuf, File), SegmentError> {
        let path = dir.join(segment_file_name(first_record_id));
        let mut file = OpenOptions::new().write(true).create_new(true).open(&path).at(&path)?;
        file.write_all(&segment_header(first_record_id)).at(&path)?;
        file.sync_data().at(&path)?;
        sync_dir(dir)?;
        Ok((path, file))
    }

    pub fn next_record_id(&self) -> u64 {
        self.next_record_id
    }

    pub fn active_path(&self) -> &Path {
        &self.path
    }

    pub fn unsynced_bytes(&self) -> u64 {
        self.unsynced_bytes
    }

    pub fn written_bytes(&self) -> u64 {
        self.written_bytes
    }

    /// Frame bytes appended since open (buffered or written).
    pub fn appended_bytes(&self) -> u64 {
        self.appended_bytes
    }

    /// Appends `batch` as one frame; returns the id of its first record.
    /// Rotates first if the frame would overflow the active segment (which
    /// syncs the old segment; the caller still publishes durability only
    /// after its own [`sync`](Self::sync)).
    pub fn append(&mut self, batch: &Batch) -> Result<u64, SegmentError> {
        let frame_bytes = (FRAME_HEADER_BYTES + PAYLOAD_FIXED_BYTES + batch.client.len() + batch.buf.len()) as u64;
        if self.len > SEGMENT_HEADER_BYTES && self.len + frame_bytes > self.segment_bytes {
            self.rotate()?;
        }
        let first = self.next_record_id;
        let n = if batch.buf.len() >= DIRECT_WRITE_MIN_BYTES {
            // Large batch: write buffered frames, then this frame's head and
            // the batch's own buffer in one vectored write, no memcpy.
            self.flush()?;
            encode_frame_head(&mut self.buf, first, batch);
            write_all_two(&mut self.file, &self.buf, &batch.buf).at(&self.path)?;
            let n = (self.buf.len() + batch.buf.len()) as u64;
            self.written_bytes += n;
            self.buf.clear();
            n
        } else {
            let before = self.buf.len();
            encode_frame(&mut self.buf, first, batch);
            (self.buf.len() - before) as u64
        };
        self.len += n;
        self.unsynced_bytes += n;
        self.appended_bytes += n;
        self.next_record_id += u64::from(batch.records);
        if self.buf.len() >= WRITE_CHUNK_BYTES {
            self.flush()?;
        }
        Ok(first)
    }

    /// Hands buffered frames to the kernel (survives a process crash, not a
    /// power loss).
    pub fn flush(&mut self) -> Result<(), SegmentError> {
        if !self.buf.is_empty() {
            self.file.write_all(&self.buf).at(&self.path)?;
            self.written_bytes += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }

    /// Flushes and fdatasyncs: everything appended so far is durable after this.
    pub fn sync(&mut self) -> Result<(), SegmentError> {
        self.flush()?;
        self.file.sync_data().at(&self.path)?;
        self.unsynced_bytes = 0;
        Ok(())
    }

    /// For a sync on another thread: flushes, and returns a duplicate of
    /// the active file's descriptor whose `sync_data` makes everything
    /// appended so far durable (earlier segments were synced on rotation).
    pub fn prepare_sync(&mut self) -> Result<File, SegmentError> {
        self.flush()?;
        let f = self.file.try_clone().at(&self.path)?;
        self.unsynced_bytes = 0;
        Ok(f)
    }

    fn rotate(&mut self) -> Result<(), SegmentError> {
        self.sync()?;
        let (path, file) = Self::create_segment(&self.dir, self.next_record_id)?;
        self.path = path;
        self.file = file;
        self.len = SEGMENT_HEADER_BYTES;
        Ok(())
    }

    /// Deletes the oldest whole segments (never the active one) while the log
    /// is larger than `retention_bytes` or they are older than
    /// `retention_hours` (0 disables either). Returns how many were deleted.
    pub fn enforce_retention(&mut self, retention_bytes: u64, retention_hours: u64) -> Result<u64, SegmentError> {
        let segments = list_segments(&self.dir)?;
        let mut total: u64 = segments.iter().map(|s| s.len).sum();
        let now = SystemTime::now();
        let max_age = Duration::from_secs(retention_hours.saturating_mul(3600));
        let mut deleted = 0;
        for s in &segments {
            if s.path == self.path {
                break;
            }
            let too_big = retention_bytes != 0 && total > retention_bytes;
            let too_old = retention_hours != 0 && now.duration_since(s.modified).unwrap_or(Duration::ZERO) > max_age;
            if !(too_big || too_old) {
                break;
            }
            fs::remove_file(&s.path).at(&s.path)?;
            total -= s.len;
            deleted += 1;
        }
        if deleted > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(deleted)
    }
}

/// Result of checking every frame of a log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub segments: u64,
    pub frames: u64,
    pub records: u64,
    /// Corrupt frames, torn frames and bad headers / gaps between segments.
    pub corrupt: u64,
    /// One line per problem found.
    pub problems: Vec<String>,
}

/// Checks every segment header and frame checksum, that every frame's
/// records decode, and that record ids are contiguous across the log.
pub fn verify_log(dir: &Path) -> Result<VerifyReport, SegmentError> {
    let mut rep = VerifyReport::default();
    let mut expected_next: Option<u64> = None;
    for seg in list_segments(dir)? {
        rep.segments += 1;
        if let Some(exp) = expected_next {
            if seg.first_record_id != exp {
                rep.corrupt += 1;
                rep.problems.push(format!(
                    "{}: starts at record {}, previous segment ended at {exp}",
                    seg.path.display(),
                    seg.first_record_id
                ));
            }
        }
        let mut reader = match SegmentReader::open(&seg.path, seg.first_record_id) {
            Ok(Some(r)) => r,
            Ok(None) => {
                rep.corrupt += 1;
                rep.problems.push(format!("{}: torn segment header", seg.path.display()));
                expected_next = Some(seg.first_record_id);
                continue;
            }
            Err(SegmentError::BadHeader { path, reason }) => {
                rep.corrupt += 1;
                rep.problems.push(format!("{}: bad header: {reason}", path.display()));
                expected_next = None;
                continue;
            }
            Err(e) => return Err(e),
        };
        loop {
            match reader.next_frame()? {
                FrameRead::Frame(f) => {
                    rep.frames += 1;
                    rep.records += u64::from(f.record_count);
                    if let Err(e) = f.decode_records() {
                        rep.corrupt += 1;
                        rep.problems.push(format!(
                            "{}: frame at record {}: {e}",
                            seg.path.display(),
                            f.first_record_id
                        ));
                    }
                }
                FrameRead::End => break,
                FrameRead::Torn { offset } => {
                    rep.corrupt += 1;
                    rep.problems.push(format!("{}: torn frame at offset {offset}", seg.path.display()));
                    break;
                }
                FrameRead::Corrupt { offset, reason } => {
                    // A bad frame's length cannot be trusted: the rest of the
                    // segment is unreadable.
                    rep.corrupt += 1;
                    rep.problems.push(format!("{}: offset {offset}: {reason}", seg.path.display()));
                    break;
                }
            }
        }
        expected_next = Some(reader.next_record_id());
    }
    Ok(rep)
}

/// One frame, owned, with its records decoded.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodedFrame {
    pub first_record_id: u64,
    pub worker: u32,
    pub worker_seq: u64,
    pub client: String,
    pub records: Vec<Record>,
}

/// Why [`LogTail::poll`] returned nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TailIdle {
    /// Caught up with the log (or with the given limit).
    CaughtUp,
    /// The last segment ends inside a frame (being written, or torn by a crash).
    TornTail { path: PathBuf, offset: u64 },
}

/// Follows the log from a record id, segment to segment, including the
/// active segment while it grows. Used by `dump` and the shipper.
#[derive(Debug)]
pub struct LogTail {
    dir: PathBuf,
    position: u64,
    reader: Option<SegmentReader>,
    /// Records that were deleted by retention before they were read.
    pub skipped_records: u64,
}

impl LogTail {
    /// Starts at record id `from` (records before it are skipped).
    pub fn new(dir: &Path, from: u64) -> Self {
        Self { dir: dir.to_owned(), position: from.max(FIRST_RECORD_ID), reader: None, skipped_records: 0 }
    }

    /// The next record id this tail will deliver.
    pub fn position(&self) -> u64 {
        self.position
    }

    fn open_segment_for_position(&mut self) -> Result<bool, SegmentError> {
        let segments = list_segments(&self.dir)?;
        let chosen = match segments.iter().rposition(|s| s.first_record_id <= self.position) {
            Some(i) => &segments[i],
            None => match segments.first() {
                // Retention deleted what we wanted: continue at the oldest.
                Some(s) => {
                    self.skipped_records += s.first_record_id - self.position;
                    self.position = s.first_record_id;
                    s
                }
                None => return Ok(false),
            },
        };
        match SegmentReader::open(&chosen.path, chosen.first_record_id)? {
            Some(r) => {
                self.reader = Some(r);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The next frame with records at or after the position whose records
    /// all lie below `limit` (exclusive; the writer's durable record id for
    /// the shipper, `u64::MAX` for dump). Records before the position are
    /// removed from the returned frame. `Err(idle)` when there is nothing
    /// (yet).
    pub fn poll(&mut self, limit: u64) -> Result<Result<DecodedFrame, TailIdle>, SegmentError> {
        loop {
            if self.reader.is_none() && !self.open_segment_for_position()? {
                return Ok(Err(TailIdle::CaughtUp));
            }
            let Some(reader) = self.reader.as_mut() else {
                return Ok(Err(TailIdle::CaughtUp));
            };
            let (offset, next_id) = (reader.offset(), reader.next_record_id());
            let path = reader.path().to_owned();
            match reader.next_frame()? {
                FrameRead::Frame(f) => {
                    if f.end_record_id() <= self.position {
                        continue;
                    }
                    if f.end_record_id() > limit {
                        reader.rewind(offset, next_id)?;
                        return Ok(Err(TailIdle::CaughtUp));
                    }
                    let mut records = f.decode_records()?;
                    let skip = self.position.saturating_sub(f.first_record_id) as usize;
                    records.drain(..skip.min(records.len()));
                    let frame = DecodedFrame {
                        first_record_id: f.first_record_id + skip as u64,
                        worker: f.worker,
                        worker_seq: f.worker_seq,
                        client: f.client.to_owned(),
                        records,
                    };
                    self.position = f.end_record_id();
                    return Ok(Ok(frame));
                }
                read @ (FrameRead::End | FrameRead::Torn { .. }) => {
                    let torn = matches!(read, FrameRead::Torn { .. });
                    let current_first = reader.first_record_id();
                    reader.rewind(offset, next_id)?;
                    // A newer segment means this one is finished (the
                    // writer only creates one after syncing the old one).
                    let newer = list_segments(&self.dir)?.into_iter().find(|s| s.first_record_id > current_first);
                    let Some(newer) = newer else {
                        return Ok(Err(if torn { TailIdle::TornTail { path, offset } } else { TailIdle::CaughtUp }));
                    };
                    if torn {
                        return Err(SegmentError::CorruptFrame {
                            path,
                            offset,
                            reason: "torn frame in a finished segment".into(),
                        });
                    }
                    // Continue in the next segment; a gap in ids (which
                    // verify reports) is skipped rather than looped on.
                    if newer.first_record_id > self.position.max(next_id) {
                        self.skipped_records += newer.first_record_id - self.position.max(next_id);
                    }
                    self.position = self.position.max(newer.first_record_id);
                    self.reader = SegmentReader::open(&newer.path, newer.first_record_id)?;
                    if self.reader.is_none() {
                        return Ok(Err(TailIdle::CaughtUp));
                    }
                }
                FrameRead::Corrupt { offset, reason } => {
                    return Err(SegmentError::CorruptFrame { path, offset, reason });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::record::{Field, FieldValue, RecordSink};
    use crate::writer::codec::tests::record;
    use proptest::prelude::*;

    fn write_log(dir: &Path, batches: &[Vec<Record>], segment_bytes: u64) -> Vec<u64> {
        let (mut w, rec) = SegmentWriter::open(dir, segment_bytes).unwrap();
        assert_eq!(rec.next_record_id, FIRST_RECORD_ID);
        let mut ends = Vec::new();
        for (i, recs) in batches.iter().enumerate() {
            let mut b = Batch::with_budget(1 << 20, 1 << 16);
            b.set_client("client-a");
            b.seq = i as u64 + 1;
            for r in recs {
                b.push(&r.as_ref()).unwrap();
            }
            w.append(&b).unwrap();
            ends.push(w.next_record_id());
        }
        w.sync().unwrap();
        ends
    }

    /// A record of measurement `m` with no tags and the one field `key=value`.
    fn one_field_record(m: &str, key: &str, value: FieldValue<'static>, timestamp_ns: i64) -> Record {
        Record {
            measurement: m.to_owned().into(),
            tags: vec![],
            fields: vec![Field { key: key.to_owned().into(), value }],
            timestamp_ns,
        }
    }

    /// `batches` batches of 20 copies of one small record, in 4 KiB segments
    /// (so many segments), and the segments that made.
    fn write_small_segments(dir: &Path, batches: usize, value: FieldValue<'static>) -> Vec<SegmentInfo> {
        let r = one_field_record("cpu", "v", value, 1);
        let batches: Vec<Vec<Record>> = (0..batches).map(|_| vec![r.clone(); 20]).collect();
        write_log(dir, &batches, 4096);
        list_segments(dir).unwrap()
    }

    fn read_all(dir: &Path) -> Vec<Record> {
        let mut t = LogTail::new(dir, 0);
        let mut out = Vec::new();
        while let Ok(f) = t.poll(u64::MAX).unwrap() {
            out.extend(f.records);
        }
        out
    }

    /// Concatenated view of the log's files, to cut it at a global offset.
    fn total_len(dir: &Path) -> u64 {
        list_segments(dir).unwrap().iter().map(|s| s.len).sum()
    }

    fn cut_at(dir: &Path, mut cut: u64) {
        for s in list_segments(dir).unwrap() {
            if cut >= s.len {
                cut -= s.len;
                continue;
            }
            if cut == 0 {
                fs::remove_file(&s.path).unwrap();
            } else {
                OpenOptions::new().write(true).open(&s.path).unwrap().set_len(cut).unwrap();
                cut = 0;
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn cut_at_any_offset_recovers_exactly_the_complete_frames(
            batches in proptest::collection::vec(proptest::collection::vec(record(), 1..6), 1..8),
            cut_frac in 0.0f64..1.0,
            small_segments in any::<bool>(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let seg_bytes = if small_segments { 4096 } else { 1 << 20 };
            write_log(dir.path(), &batches, seg_bytes);
            let total = total_len(dir.path());
            let cut = (total as f64 * cut_frac) as u64;
            cut_at(dir.path(), cut);

            // Which frames are entirely before the cut? Re-derive from the
            // uncut layout: walk frames with their global end offsets.
            let before = {
                let d2 = tempfile::tempdir().unwrap();
                write_log(d2.path(), &batches, seg_bytes);
                let mut kept = Vec::new();
                let mut base = 0u64;
                for s in list_segments(d2.path()).unwrap() {
                    let mut r = SegmentReader::open(&s.path, s.first_record_id).unwrap().unwrap();
                    let mut i = 0;
                    while let FrameRead::Frame(f) = r.next_frame().unwrap() {
                        let recs = f.decode_records().unwrap();
                        i += 1;
                        if base + r.offset() <= cut { kept.extend(recs); }
                    }
                    let _ = i;
                    base += s.len;
                }
                kept
            };

            let (mut w, rec) = SegmentWriter::open(dir.path(), seg_bytes).unwrap();
            prop_assert_eq!(rec.next_record_id, FIRST_RECORD_ID + before.len() as u64);
            prop_assert_eq!(read_all(dir.path()), before.clone());
            // Appending continues with the next id, and verify is clean.
            let extra = &batches[0];
            let mut b = Batch::with_budget(1 << 20, 1 << 16);
            for r in extra { b.push(&r.as_ref()).unwrap(); }
            prop_assert_eq!(w.append(&b).unwrap(), FIRST_RECORD_ID + before.len() as u64);
            w.sync().unwrap();
            let v = verify_log(dir.path()).unwrap();
            prop_assert_eq!(v.corrupt, 0, "{:?}", v.problems);
            prop_assert_eq!(v.records, (before.len() + extra.len()) as u64);
        }

        #[test]
        fn any_bit_flip_is_detected_by_verify(
            batches in proptest::collection::vec(proptest::collection::vec(record(), 1..6), 1..6),
            pos_frac in 0.0f64..1.0,
            bit in 0u8..8,
        ) {
            let dir = tempfile::tempdir().unwrap();
            write_log(dir.path(), &batches, 1 << 20);
            let segs = list_segments(dir.path()).unwrap();
            prop_assert_eq!(segs.len(), 1);
            let mut data = fs::read(&segs[0].path).unwrap();
            let pos = ((data.len() as f64 * pos_frac) as usize).min(data.len() - 1);
            data[pos] ^= 1 << bit;
            fs::write(&segs[0].path, &data).unwrap();
            let v = verify_log(dir.path()).unwrap();
            prop_assert!(v.corrupt >= 1, "flip at {} bit {} not detected", pos, bit);
        }
    }

    #[test]
    fn rotation_and_retention_keep_ids_contiguous() {
        let dir = tempfile::tempdir().unwrap();
        let segs = write_small_segments(dir.path(), 200, FieldValue::Float(1.5));
        assert!(segs.len() > 5, "{}", segs.len());
        let v = verify_log(dir.path()).unwrap();
        assert_eq!((v.records, v.corrupt), (4000, 0));

        let (mut w, rec) = SegmentWriter::open(dir.path(), 4096).unwrap();
        assert_eq!(rec.next_record_id, 4001);
        assert_eq!(rec.truncated_bytes, 0);
        let deleted = w.enforce_retention(3 * 4096, 0).unwrap();
        assert!(deleted > 0);
        let left = list_segments(dir.path()).unwrap();
        assert!(left.iter().map(|s| s.len).sum::<u64>() <= 3 * 4096);
        assert_eq!(left.last().unwrap().path, w.active_path());
        // A tail from the start skips what retention deleted.
        let mut t = LogTail::new(dir.path(), 1);
        let f = t.poll(u64::MAX).unwrap().unwrap();
        assert_eq!(f.first_record_id, left[0].first_record_id);
        assert_eq!(t.skipped_records, left[0].first_record_id - 1);
    }

    #[test]
    fn age_retention_deletes_old_sealed_segments_only() {
        let dir = tempfile::tempdir().unwrap();
        let segs = write_small_segments(dir.path(), 100, FieldValue::Int(1));
        assert!(segs.len() >= 4);
        // The two oldest are two days old; the rest are fresh.
        let old = SystemTime::now() - Duration::from_secs(48 * 3600);
        for s in &segs[..2] {
            File::options().write(true).open(&s.path).unwrap().set_modified(old).unwrap();
        }
        let (mut w, _) = SegmentWriter::open(dir.path(), 4096).unwrap();
        assert_eq!(w.enforce_retention(0, 24).unwrap(), 2);
        let left = list_segments(dir.path()).unwrap();
        assert_eq!(left.len(), segs.len() - 2);
        assert_eq!(left[0].first_record_id, segs[2].first_record_id);
        // Even an old active segment is never deleted.
        for s in &left {
            File::options().write(true).open(&s.path).unwrap().set_modified(old).unwrap();
        }
        w.enforce_retention(0, 24).unwrap();
        let last = list_segments(dir.path()).unwrap();
        assert_eq!(last.len(), 1);
        assert_eq!(last[0].path, w.active_path());
    }

    #[test]
    fn large_batches_take_the_vectored_path_and_read_back_identically() {
        let dir = tempfile::tempdir().unwrap();
        let r = |i: i64| one_field_record("m", "payload", FieldValue::Str("x".repeat(40).into()), i);
        // Alternate small (buffered) and large (> DIRECT_WRITE_MIN_BYTES) batches.
        let batches: Vec<Vec<Record>> =
            (0..12).map(|b| (0..if b % 2 == 0 { 3 } else { 1500 }).map(r).collect()).collect();
        const { assert!(1500 * 45 > DIRECT_WRITE_MIN_BYTES) };
        write_log(dir.path(), &batches, 256 << 10);
        let all: Vec<Record> = batches.concat();
        assert_eq!(read_all(dir.path()), all);
        let v = verify_log(dir.path()).unwrap();
        assert_eq!((v.records, v.corrupt), (all.len() as u64, 0), "{:?}", v.problems);
        assert!(v.segments > 1);
    }

    #[test]
    fn torn_header_is_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(segment_file_name(1)), b"MSSEG").unwrap();
        let (mut w, rec) = SegmentWriter::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(rec.truncated_bytes, 5);
        assert_eq!(rec.next_record_id, 1);
        let mut b = Batch::with_budget(4096, 10);
        b.push(&Record { measurement: "m".into(), tags: vec![], fields: vec![], timestamp_ns: 0 }.as_ref()).unwrap();
        w.append(&b).unwrap();
        w.sync().unwrap();
        assert_eq!(verify_log(dir.path()).unwrap().records, 1);
    }
}
