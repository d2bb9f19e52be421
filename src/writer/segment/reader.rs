//! Reading the log: [`SegmentReader`] walks the frames of one segment;
//! [`LogTail`] follows the whole log from a record id, segment to segment,
//! including the active one while it grows (`dump` and the shipper).

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::{
    check_header, list_segments, record_format, Frame, IoContext, SegmentError, FIRST_RECORD_ID, FRAME_HEADER_BYTES,
    MAX_FRAME_BYTES, PAYLOAD_FIXED_BYTES, SEGMENT_HEADER_BYTES,
};
use crate::ingest::line_index::LineIndexer;
use crate::ingest::record::Record;
use crate::writer::codec::{DecodeError, FrameRecords, RecordFormat, StoredRecord};

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
    version: u32,
    format: RecordFormat,
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
        let bad = |reason| SegmentError::BadHeader { path: path.to_owned(), reason };
        let version = check_header(&h, first_record_id).map_err(bad)?;
        let format = record_format(version).ok_or_else(|| bad(format!("unsupported version {version}")))?;
        Ok(Some(Self {
            path: path.to_owned(),
            file: BufReader::with_capacity(1 << 20, file),
            version,
            format,
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

    /// The segment header's version.
    pub fn version(&self) -> u32 {
        self.version
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
        let frame = match Frame::parse(&self.payload, self.format) {
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

    /// The frame the last [`next_frame`](Self::next_frame) returned, again
    /// (its payload is still in the reader's buffer).
    pub fn last_frame(&self) -> Result<Frame<'_>, SegmentError> {
        Frame::parse(&self.payload, self.format)
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

/// A frame [`LogTail::poll_frame`] delivers: borrowed from the tail's
/// buffer, records before the tail's position left out.
#[derive(Clone, Copy, Debug)]
pub struct TailFrame<'a> {
    frame: Frame<'a>,
    /// Records at the frame's start that lie before the position.
    skip: u32,
}

impl<'a> TailFrame<'a> {
    /// The id of the first record [`records`](Self::records) yields.
    pub fn first_record_id(&self) -> u64 {
        self.frame.first_record_id + u64::from(self.skip)
    }

    /// Records [`records`](Self::records) yields.
    pub fn record_count(&self) -> u32 {
        self.frame.record_count - self.skip
    }

    pub fn worker(&self) -> u32 {
        self.frame.worker
    }

    pub fn worker_seq(&self) -> u64 {
        self.frame.worker_seq
    }

    pub fn client(&self) -> &'a str {
        self.frame.client
    }

    /// The records as stored, from the position on.
    pub fn records(&self) -> impl Iterator<Item = Result<StoredRecord<'a>, DecodeError>> {
        let mut records: FrameRecords<'a> = self.frame.stored_records();
        let mut skipped = Ok(());
        for _ in 0..self.skip {
            if let Some(Err(e)) = records.next() {
                skipped = Err(e);
                break;
            }
        }
        skipped.err().map(Err).into_iter().chain(records)
    }

    /// Owned, with every record decoded.
    pub fn decode(&self, indexer: &mut LineIndexer) -> Result<DecodedFrame, DecodeError> {
        Ok(DecodedFrame {
            first_record_id: self.first_record_id(),
            worker: self.worker(),
            worker_seq: self.worker_seq(),
            client: self.client().to_owned(),
            records: self.records().map(|r| r.and_then(|r| r.into_record(indexer))).collect::<Result<_, _>>()?,
        })
    }
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
    /// Re-parses version-2 lines for [`poll`](Self::poll).
    indexer: LineIndexer,
    /// Records that were deleted by retention before they were read.
    pub skipped_records: u64,
}

impl LogTail {
    /// Starts at record id `from` (records before it are skipped).
    pub fn new(dir: &Path, from: u64) -> Self {
        Self {
            dir: dir.to_owned(),
            position: from.max(FIRST_RECORD_ID),
            reader: None,
            indexer: LineIndexer::new(),
            skipped_records: 0,
        }
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
    /// the shipper, `u64::MAX` for dump), decoded. Records before the
    /// position are removed from the returned frame. `Err(idle)` when there
    /// is nothing (yet).
    pub fn poll(&mut self, limit: u64) -> Result<Result<DecodedFrame, TailIdle>, SegmentError> {
        let skip = match self.advance(limit)? {
            Ok(skip) => skip,
            Err(idle) => return Ok(Err(idle)),
        };
        let reader = self.reader.as_ref().ok_or(SegmentError::BadPayload("no segment open".into()))?;
        let frame = TailFrame { frame: reader.last_frame()?, skip };
        Ok(Ok(frame.decode(&mut self.indexer)?))
    }

    /// [`poll`](Self::poll) without decoding: the frame as stored, borrowed
    /// until the next call (`dump --format lp` and the shipper copy version-2
    /// lines as they are).
    pub fn poll_frame(&mut self, limit: u64) -> Result<Result<TailFrame<'_>, TailIdle>, SegmentError> {
        let skip = match self.advance(limit)? {
            Ok(skip) => skip,
            Err(idle) => return Ok(Err(idle)),
        };
        let reader = self.reader.as_ref().ok_or(SegmentError::BadPayload("no segment open".into()))?;
        Ok(Ok(TailFrame { frame: reader.last_frame()?, skip }))
    }

    /// Reads up to the next frame to deliver (then the reader's last frame)
    /// and moves the position past it; returns how many of its records lie
    /// before the old position.
    fn advance(&mut self, limit: u64) -> Result<Result<u32, TailIdle>, SegmentError> {
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
                    let skip = self.position.saturating_sub(f.first_record_id).min(u64::from(f.record_count));
                    self.position = f.end_record_id();
                    return Ok(Ok(skip as u32));
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
