//! Crash recovery at open: scans the tail segment and truncates a torn or
//! corrupt last frame (or rewrites a torn header), reporting what it did.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use super::{
    list_segments, segment_header, FrameRead, IoContext, SegmentError, SegmentInfo, SegmentReader, FIRST_RECORD_ID,
    SEGMENT_HEADER_BYTES, SEGMENT_VERSION,
};

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

/// The tail segment after recovery: where it is, how long its valid part is
/// and its header's version.
#[derive(Clone, Debug)]
pub(super) struct Tail {
    pub info: SegmentInfo,
    pub valid_len: u64,
    pub version: u32,
}

/// Scans the tail segment of `dir` (of any version this release reads),
/// truncates a torn or corrupt tail, and returns what is left of it (or
/// `None` for an empty log).
pub(super) fn recover_tail(dir: &Path) -> Result<(Recovery, Option<Tail>), SegmentError> {
    let segments = list_segments(dir)?;
    let mut rec = Recovery { segments: segments.len(), next_record_id: FIRST_RECORD_ID, ..Default::default() };
    let Some(tail) = segments.last().cloned() else {
        return Ok((rec, None));
    };
    rec.next_record_id = tail.first_record_id;
    let (valid_len, version) = match SegmentReader::open(&tail.path, tail.first_record_id)? {
        None => {
            // Torn header: the segment was just being created. Rewrite it.
            rec.truncated_bytes = tail.len;
            rec.truncated_reason = Some("torn segment header".into());
            let mut f = OpenOptions::new().write(true).open(&tail.path).at(&tail.path)?;
            f.set_len(0).at(&tail.path)?;
            f.write_all(&segment_header(tail.first_record_id, SEGMENT_VERSION)).at(&tail.path)?;
            f.sync_data().at(&tail.path)?;
            (SEGMENT_HEADER_BYTES, SEGMENT_VERSION)
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
            (valid, reader.version())
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
    Ok((rec, Some(Tail { info: tail, valid_len, version })))
}
