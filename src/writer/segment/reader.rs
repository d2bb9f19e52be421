//! Reading the log: [`SegmentReader`] walks the frames of one segment;
//! [`LogTail`] follows the whole log from a record id, segment to segment,
//! including the active one while it grows (`dump` and the shipper).

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::{
    check_header, list_segments, Frame, IoContext, SegmentError, FIRST_RECORD_ID, FRAME_HEADER_BYTES, MAX_FRAME_BYTES,
    PAYLOAD_FIXED_BYTES, SEGMENT_HEADER_BYTES,
};
use crate::ingest::record::Record;

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
