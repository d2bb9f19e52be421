use std::fs::{File, OpenOptions};
use std::time::Duration;

use super::writer::DIRECT_WRITE_MIN_BYTES;
use super::*;
use crate::ingest::line_index::LineIndexer;
use crate::ingest::record::{Field, FieldValue, RecordSink};
use crate::writer::codec::tests::storable_record as record;
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
    let batches: Vec<Vec<Record>> = (0..12).map(|b| (0..if b % 2 == 0 { 3 } else { 1500 }).map(r).collect()).collect();
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
    b.push(&one_field_record("m", "v", FieldValue::Int(1), 0).as_ref()).unwrap();
    w.append(&b).unwrap();
    w.sync().unwrap();
    assert_eq!(verify_log(dir.path()).unwrap().records, 1);
}

/// A version-1 log written by the previous release
/// (`metricsstream write-load --records 100 --batch-records 10 --ack enqueued`
/// of main at 4de6325), and what that release's `dump` printed for it.
const V1_SEGMENT: &[u8] = include_bytes!("testdata/v1-write-load-100.seg");
const V1_DUMP_LP: &str = include_str!("testdata/v1-write-load-100.lp");
const V1_DUMP_JSON: &str = include_str!("testdata/v1-write-load-100.json");

/// A data directory holding the version-1 segment.
fn v1_log() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(segment_file_name(1)), V1_SEGMENT).unwrap();
    dir
}

fn dump_text(dir: &Path, format: crate::writer::cli::DumpFormat) -> String {
    use crate::writer::cli::{dump, DumpArgs};
    let mut out = Vec::new();
    dump(&DumpArgs { data_dir: dir.to_owned(), format, from: 0 }, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

/// Appends one batch of the lines of `body` as the ingest path does.
fn append_lines(w: &mut SegmentWriter, body: &[u8]) {
    let mut b = Batch::with_budget(1 << 20, 1 << 16);
    b.set_client("http");
    let mut indexer = LineIndexer::new();
    let summary = indexer
        .index_batch(body, crate::ingest::Precision::Nanoseconds, 0, |l| {
            b.push_line(l, crate::writer::codec::TenantIndex::DEFAULT).is_ok()
        })
        .unwrap();
    assert!(summary.resume_at.is_none());
    w.append(&b).unwrap();
}

#[test]
fn a_v1_log_of_the_previous_release_reads_record_for_record() {
    use crate::writer::cli::DumpFormat;
    let dir = v1_log();
    let v = verify_log(dir.path()).unwrap();
    assert_eq!((v.records, v.frames, v.segments, v.corrupt), (100, 10, 1, 0), "{:?}", v.problems);
    assert_eq!(dump_text(dir.path(), DumpFormat::Lp), V1_DUMP_LP);
    assert_eq!(dump_text(dir.path(), DumpFormat::Json), V1_DUMP_JSON);
    let reader = SegmentReader::open(&dir.path().join(segment_file_name(1)), 1).unwrap().unwrap();
    assert_eq!(reader.version(), SEGMENT_VERSION_1);
}

#[test]
fn a_v1_tail_is_recovered_and_followed_by_v2_segments() {
    use crate::writer::cli::DumpFormat;
    let dir = v1_log();
    let v1_path = dir.path().join(segment_file_name(1));
    // A crash left half a frame at the end of the old release's tail.
    let mut torn = V1_SEGMENT.to_vec();
    torn.extend_from_slice(&V1_SEGMENT[SEGMENT_HEADER_BYTES as usize..SEGMENT_HEADER_BYTES as usize + 40]);
    fs::write(&v1_path, &torn).unwrap();

    let new_lines = "cpu,host=a\\ b,region=eu\\,west usage=0.5,msg=\"say \\\"hi\\\"\" 1700000000000000000\n\
                     mem,b=2,a=1 free=3i 1700000000000000001\n";
    {
        let (mut w, rec) = SegmentWriter::open(dir.path(), 4096).unwrap();
        assert_eq!((rec.next_record_id, rec.tail_records, rec.truncated_bytes), (101, 100, 40));
        append_lines(&mut w, new_lines.as_bytes());
        // Enough to rotate into a third segment (4 KiB segments).
        for i in 0..60 {
            append_lines(&mut w, format!("more v={i}i {i}\n").repeat(3).as_bytes());
        }
        w.sync().unwrap();
    }
    // The version-1 segment is exactly what the old release wrote, torn tail cut.
    assert_eq!(fs::read(&v1_path).unwrap(), V1_SEGMENT);
    let segments = list_segments(dir.path()).unwrap();
    assert!(segments.len() > 2, "{segments:?}");
    assert_eq!(segments[1].first_record_id, 101);
    for s in &segments[1..] {
        assert_eq!(SegmentReader::open(&s.path, s.first_record_id).unwrap().unwrap().version(), SEGMENT_VERSION_2);
    }
    let v = verify_log(dir.path()).unwrap();
    assert_eq!((v.records, v.corrupt), (100 + 2 + 180, 0), "{:?}", v.problems);

    // dump: the old records as the old release printed them, then the new
    // lines as received (the unsorted one canonicalised).
    let lp = dump_text(dir.path(), DumpFormat::Lp);
    let expected_new = "cpu,host=a\\ b,region=eu\\,west usage=0.5,msg=\"say \\\"hi\\\"\" 1700000000000000000\n\
                        mem,a=1,b=2 free=3i 1700000000000000001\n";
    assert_eq!(lp.get(..V1_DUMP_LP.len()), Some(V1_DUMP_LP));
    assert_eq!(lp[V1_DUMP_LP.len()..].get(..expected_new.len()), Some(expected_new));
    let json = dump_text(dir.path(), DumpFormat::Json);
    let record_101: serde_json::Value = serde_json::from_str(json.lines().nth(100).unwrap()).unwrap();
    assert_eq!(record_101["id"], 101);
    assert_eq!(record_101["tags"]["host"], "a b");
    assert_eq!(record_101["tags"]["region"], "eu,west");
    assert_eq!(record_101["fields"]["msg"], "say \"hi\"");

    // A tail from inside the version-1 segment crosses into version 2.
    let mut t = LogTail::new(dir.path(), 95);
    let mut ids = Vec::new();
    while let Ok(f) = t.poll(u64::MAX).unwrap() {
        ids.extend((0..f.records.len() as u64).map(|i| f.first_record_id + i));
    }
    assert_eq!(ids, (95..=282).collect::<Vec<u64>>());
    // Reopening appends to the version-2 tail, not a new segment.
    let (_, rec) = SegmentWriter::open(dir.path(), 4096).unwrap();
    assert_eq!((rec.next_record_id, rec.truncated_bytes, rec.segments), (283, 0, segments.len()));
}

#[test]
fn a_v1_tail_without_frames_becomes_a_v2_segment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(segment_file_name(1));
    fs::write(&path, &V1_SEGMENT[..SEGMENT_HEADER_BYTES as usize]).unwrap();
    let (mut w, rec) = SegmentWriter::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(rec.next_record_id, 1);
    append_lines(&mut w, b"m v=1 1\n");
    w.sync().unwrap();
    assert_eq!(list_segments(dir.path()).unwrap().len(), 1);
    assert_eq!(SegmentReader::open(&path, 1).unwrap().unwrap().version(), SEGMENT_VERSION_2);
    assert_eq!(verify_log(dir.path()).unwrap().records, 1);
}

#[test]
fn a_segment_of_an_unknown_version_is_named_by_verify() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(segment_file_name(1)), segment_header(1, 3)).unwrap();
    let v = verify_log(dir.path()).unwrap();
    assert_eq!(v.corrupt, 1);
    assert!(v.problems[0].contains("unsupported version 3"), "{:?}", v.problems);
}
