//! [`verify_log`]: checks every header, frame checksum and record encoding of
//! a log, and that record ids are contiguous across segments.

use std::path::Path;

use super::{list_segments, FrameRead, SegmentError, SegmentReader};
use crate::ingest::line_index::LineIndexer;

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
/// records decode (a version-2 line reads back as exactly the canonical line
/// its header describes), and that record ids are contiguous across the log.
/// Segments of versions 1 and 2 are read; another version is reported as a
/// bad header naming it.
pub fn verify_log(dir: &Path) -> Result<VerifyReport, SegmentError> {
    let mut rep = VerifyReport::default();
    let mut indexer = LineIndexer::new();
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
                    let bad = f.stored_records().find_map(|r| r.and_then(|r| r.check(&mut indexer)).err());
                    if let Some(e) = bad {
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
