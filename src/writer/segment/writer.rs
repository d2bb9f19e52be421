//! [`SegmentWriter`]: appends frames to the active segment with large
//! buffered (or, for big batches, vectored) writes, syncs, rotates by size
//! and enforces retention.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::recovery::{recover_tail, Recovery, Tail};
use super::{
    encode_frame, encode_frame_head, frame_bytes, list_segments, segment_file_name, segment_header, IoContext,
    SegmentError, SEGMENT_HEADER_BYTES, SEGMENT_VERSION,
};
use crate::writer::codec::Batch;

/// Buffered frames are written to the file once this many bytes accumulate
/// (large sequential writes), or earlier when the writer goes idle or syncs.
const WRITE_CHUNK_BYTES: usize = 1 << 20;
/// Batches at least this large skip the write buffer (vectored write of the
/// frame head plus the batch buffer); smaller ones are coalesced.
pub(super) const DIRECT_WRITE_MIN_BYTES: usize = 32 << 10;

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

fn sync_dir(dir: &Path) -> Result<(), SegmentError> {
    // Makes a created or deleted segment's directory entry durable.
    File::open(dir).at(dir)?.sync_all().at(dir)
}

/// A point of the active segment up to which everything is on disk: its
/// length and the id of the next record after it. `segment` numbers the
/// active segments of this writer (a point of an earlier one is stale).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncPoint {
    segment: u64,
    len: u64,
    next_record_id: u64,
}

impl SyncPoint {
    pub fn next_record_id(&self) -> u64 {
        self.next_record_id
    }
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
    /// Counts the active segments (rotation and abandoning start a new one).
    segment_no: u64,
    /// The last point of the active segment known durable: what
    /// [`abandon`](Self::abandon) cuts back to. Always in the active segment:
    /// rotation syncs the old segment whole before a new one becomes active.
    durable: SyncPoint,
}

impl SegmentWriter {
    /// Recovers `dir` (creating it if needed) and opens the tail for
    /// appending. A tail of an older version is left as recovery leaves it
    /// and a new segment of the current version is started after it (or,
    /// when it holds no frame, its header is rewritten in the current version).
    pub fn open(dir: &Path, segment_bytes: u64) -> Result<(Self, Recovery), SegmentError> {
        fs::create_dir_all(dir).at(dir)?;
        let (rec, tail) = recover_tail(dir)?;
        let (path, file, len) = match tail {
            Some(Tail { info, valid_len, version }) if version == SEGMENT_VERSION => {
                let mut file = OpenOptions::new().write(true).open(&info.path).at(&info.path)?;
                file.seek(SeekFrom::Start(valid_len)).at(&info.path)?;
                (info.path, file, valid_len)
            }
            Some(Tail { info, valid_len, .. }) if valid_len <= SEGMENT_HEADER_BYTES => {
                // No frame yet: the file's name is the next record's id, so it
                // cannot be followed by a new segment; it becomes one.
                let mut file = OpenOptions::new().write(true).open(&info.path).at(&info.path)?;
                file.set_len(0).at(&info.path)?;
                file.write_all(&segment_header(info.first_record_id, SEGMENT_VERSION)).at(&info.path)?;
                file.sync_data().at(&info.path)?;
                (info.path, file, SEGMENT_HEADER_BYTES)
            }
            Some(_) | None => {
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
            segment_no: 0,
            // What recovery left is what the file holds; abandoning never
            // cuts below it.
            durable: SyncPoint { segment: 0, len, next_record_id: rec.next_record_id },
        };
        Ok((w, rec))
    }

    fn create_segment(dir: &Path, first_record_id: u64) -> Result<(PathBuf, File), SegmentError> {
        let path = dir.join(segment_file_name(first_record_id));
        let mut file = OpenOptions::new().write(true).create_new(true).open(&path).at(&path)?;
        file.write_all(&segment_header(first_record_id, SEGMENT_VERSION)).at(&path)?;
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
        if self.len > SEGMENT_HEADER_BYTES && self.len + frame_bytes(batch) > self.segment_bytes {
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
        self.durable = self.point();
        Ok(())
    }

    /// Where the active segment ends now (buffered bytes included).
    fn point(&self) -> SyncPoint {
        SyncPoint { segment: self.segment_no, len: self.len, next_record_id: self.next_record_id }
    }

    /// A sync of what [`prepare_sync`](Self::prepare_sync) returned with
    /// `point` succeeded: abandoning will not cut below it. A point of an
    /// earlier segment is ignored (rotation synced that one whole).
    pub fn synced(&mut self, point: SyncPoint) {
        if point.segment == self.segment_no && point.len > self.durable.len {
            self.durable = point;
        }
    }

    /// The last point known durable.
    pub fn durable_point(&self) -> SyncPoint {
        self.durable
    }

    /// After a failed write or fsync: gives up everything appended after the
    /// last durable point and goes on in a new segment. The active file is
    /// cut back to that point (a partial frame or frames whose fsync failed
    /// must not stay in the middle of the log) and synced; a segment named by
    /// the next record id (a half-created one, or the active one when it held
    /// no durable frame) is removed and created afresh. After a failed
    /// fdatasync the old file is never trusted again, only truncated. Safe to
    /// call again when it fails (e.g. the disk is still full): every step is
    /// idempotent. Returns the records given up.
    pub fn abandon(&mut self) -> Result<u64, SegmentError> {
        self.buf.clear();
        let d = self.durable;
        let given_up = self.next_record_id - d.next_record_id;
        self.next_record_id = d.next_record_id;
        self.len = d.len;
        self.unsynced_bytes = 0;
        let next = self.dir.join(segment_file_name(d.next_record_id));
        if d.len > SEGMENT_HEADER_BYTES && self.path != next {
            self.file.set_len(d.len).at(&self.path)?;
            self.file.sync_all().at(&self.path)?;
        }
        match fs::remove_file(&next) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).at(&next),
        }
        // On failure a half-written header is removed by the next attempt.
        let (path, file) = Self::create_segment(&self.dir, d.next_record_id)?;
        self.path = path;
        self.file = file;
        self.len = SEGMENT_HEADER_BYTES;
        self.segment_no += 1;
        self.durable = self.point();
        Ok(given_up)
    }

    /// For a sync on another thread: flushes, and returns a duplicate of
    /// the active file's descriptor whose `sync_data` makes everything
    /// appended so far durable (earlier segments were synced on rotation).
    /// The point is what the sync covers (for [`synced`](Self::synced)).
    pub fn prepare_sync(&mut self) -> Result<(File, SyncPoint), SegmentError> {
        self.flush()?;
        let f = self.file.try_clone().at(&self.path)?;
        self.unsynced_bytes = 0;
        Ok((f, self.point()))
    }

    fn rotate(&mut self) -> Result<(), SegmentError> {
        self.sync()?;
        let (path, file) = Self::create_segment(&self.dir, self.next_record_id)?;
        self.path = path;
        self.file = file;
        self.len = SEGMENT_HEADER_BYTES;
        self.segment_no += 1;
        self.durable = self.point();
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
