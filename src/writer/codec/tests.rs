use std::borrow::Cow;

use proptest::prelude::*;

use super::*;
use crate::ingest::line_index::FieldKind;
use crate::ingest::line_protocol::{LineProtocolParser, Precision};
use crate::ingest::record::{Field, FieldValue, LineElement, Tag, Unrepresentable};

const NOW: i64 = 1_700_000_000_000_000_000;

/// Text line protocol can carry in a name, key or tag value: the characters
/// it escapes, a backslash (not at the end), `"`, `#` and non-ASCII.
fn name() -> impl Strategy<Value = String> {
    "[a-z ,=\"#\\\\é]{0,7}[a-z,= é]".prop_map(|s| s)
}

/// A field value of every type; `floats` and `text` say which floats and
/// string values (the version-1 tests use it too).
pub(crate) fn field_value(
    floats: impl Strategy<Value = f64>,
    text: impl Strategy<Value = String>,
) -> impl Strategy<Value = FieldValue<'static>> {
    prop_oneof![
        text.prop_map(|s| FieldValue::Str(Cow::Owned(s))),
        floats.prop_map(FieldValue::Float),
        any::<bool>().prop_map(FieldValue::Bool),
        any::<i64>().prop_map(FieldValue::Int),
        any::<u64>().prop_map(FieldValue::UInt),
    ]
}

/// An owned record of these parts.
pub(crate) fn owned_record(
    measurement: String,
    tags: impl IntoIterator<Item = (String, String)>,
    fields: impl IntoIterator<Item = (String, FieldValue<'static>)>,
    timestamp_ns: i64,
) -> Record {
    Record {
        measurement: Cow::Owned(measurement),
        tags: tags.into_iter().map(|(k, v)| Tag { key: Cow::Owned(k), value: Cow::Owned(v) }).collect(),
        fields: fields.into_iter().map(|(k, v)| Field { key: Cow::Owned(k), value: v }).collect(),
        timestamp_ns,
    }
}

/// Records that line protocol can carry (what the parsers hand the batch):
/// tags sorted by key without duplicates, distinct field keys.
pub(crate) fn storable_record() -> impl Strategy<Value = Record> {
    (
        "[a-z][a-z ,=\"\\\\é]{0,6}[a-z]",
        proptest::collection::btree_map(name(), name(), 0..5),
        // String values may hold anything, raw newlines and control bytes included.
        proptest::collection::btree_map(
            name(),
            field_value(
                any::<f64>().prop_filter("finite", |f| f.is_finite()),
                prop_oneof!["[a-z \"\\\\\n]{0,12}", any::<String>().prop_map(|s| s.chars().take(12).collect())],
            ),
            1..5,
        ),
        any::<i64>(),
    )
        .prop_map(|(m, tags, fields, ts)| owned_record(m, tags, fields, ts))
}

/// Indexes `body` into `batch` the way the ingest paths do.
fn index_into(batch: &mut Batch, body: &[u8], precision: Precision) -> usize {
    let mut indexer = LineIndexer::new();
    let summary = indexer
        .index_batch(body, precision, NOW, |line| batch.push_line(line, TenantIndex::DEFAULT).is_ok())
        .expect("valid body");
    assert!(summary.resume_at.is_none());
    summary.lines
}

fn stored_lines(batch: &Batch) -> Vec<StoredLine<'_>> {
    batch
        .records()
        .map(|r| match r.expect("decodes") {
            StoredRecord::V2(line) => line,
            StoredRecord::V1(_) => panic!("a batch holds version-2 records"),
        })
        .collect()
}

fn line_protocol_of(batch: &Batch) -> String {
    let mut out = Vec::new();
    for r in batch.records() {
        r.expect("decodes").write_line_protocol(&mut out);
    }
    String::from_utf8(out).expect("utf-8")
}

proptest! {
    #[test]
    fn records_of_other_protocols_round_trip(records in proptest::collection::vec(storable_record(), 0..20)) {
        let mut b = Batch::with_budget(1 << 20, 1000);
        for r in &records {
            prop_assert_eq!(r.as_ref().check_line().map(|_| ()), Ok(()));
            b.push(&r.as_ref()).unwrap();
        }
        prop_assert_eq!(b.decode().unwrap(), records.clone());
        let mut indexer = LineIndexer::new();
        for (line, record) in stored_lines(&b).iter().zip(&records) {
            prop_assert!(line.flags.rewritten());
            prop_assert_eq!(line.timestamp_ns, record.timestamp_ns);
            prop_assert_eq!(line.tenant, "");
            line.check(&mut indexer).unwrap();
        }
    }

    /// Lines that are canonical already are stored byte for byte and read
    /// back as the records they were written from.
    #[test]
    fn indexed_lines_are_stored_as_received(records in proptest::collection::vec(storable_record(), 1..10)) {
        let mut body = Vec::new();
        for r in &records {
            r.as_ref().write_line(&mut body).unwrap();
            body.extend_from_slice(format!(" {}\n", r.timestamp_ns).as_bytes());
        }
        let mut b = Batch::with_budget(1 << 20, 1000);
        prop_assert_eq!(index_into(&mut b, &body, Precision::Nanoseconds), records.len());
        prop_assert_eq!(b.decode().unwrap(), records.clone());
        // Stored bytes + " " + timestamp are the body's lines exactly.
        prop_assert_eq!(line_protocol_of(&b), String::from_utf8(body).unwrap());
        for line in stored_lines(&b) {
            prop_assert!(!line.flags.rewritten());
        }
    }

    /// Tags in any order and repeated fields: only those lines are
    /// rewritten, and every line reads back as the previous parser (which
    /// canonicalised every line) read it. No backslashes: there the two
    /// parsers' escaping rules differ on purpose.
    #[test]
    fn canonicalised_lines_read_back_as_the_previous_parser_read_them(
        lines in proptest::collection::vec((
            "[a-z]{1,3}",
            proptest::collection::btree_map("[a-z]{1,2}", "[a-z ,=]{1,3}", 0..5),
            any::<u64>(),
            proptest::collection::vec(("[a-z]{1,2}", prop_oneof!["1", "-2i", "3u", "true", "\"s ,=\""]), 1..6),
            proptest::option::of(any::<i32>()),
        ), 1..8)
    ) {
        let mut body = String::new();
        for (measurement, tags, order, fields, timestamp) in &lines {
            body.push_str(measurement);
            let mut tags: Vec<_> = tags.iter().collect();
            if order & 1 == 1 {
                tags.reverse();
            }
            let n = tags.len().max(1);
            tags.rotate_left((*order as usize >> 1) % n);
            for (k, v) in tags {
                body.push_str(&format!(",{k}={}", v.replace(',', "\\,").replace('=', "\\=").replace(' ', "\\ ")));
            }
            for (i, (k, v)) in fields.iter().enumerate() {
                body.push_str(&format!("{}{k}={v}", if i == 0 { ' ' } else { ',' }));
            }
            if let Some(ts) = timestamp {
                body.push_str(&format!(" {ts}"));
            }
            body.push('\n');
        }
        let mut previous = Vec::new();
        let summary = LineProtocolParser::new().parse_into(body.as_bytes(), Precision::Nanoseconds, NOW, &mut previous);
        prop_assert_eq!(summary.records, lines.len());
        let mut b = Batch::with_budget(1 << 20, 1000);
        let mut indexer = LineIndexer::new();
        let mut needed = Vec::new();
        let summary = indexer
            .index_batch(body.as_bytes(), Precision::Nanoseconds, NOW, |line| {
                needed.push(line.flags().needs_canonical());
                b.push_line(line, TenantIndex::DEFAULT).is_ok()
            })
            .unwrap();
        prop_assert_eq!(summary.lines, lines.len());
        prop_assert_eq!(b.decode().unwrap(), previous);
        let rewritten: Vec<bool> = stored_lines(&b).iter().map(|l| l.flags.rewritten()).collect();
        prop_assert_eq!(rewritten, needed);
    }

    #[test]
    fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200), n in 0u32..5) {
        let mut indexer = LineIndexer::new();
        for r in FrameRecords::new(RecordFormat::V2, &data, n, TenantTable::DEFAULT_ONLY).flatten() {
            let _ = r.to_record(&mut indexer);
        }
        let _ = TenantTable::parse(&data);
    }
}

#[test]
fn escapes_are_kept_byte_for_byte_and_timestamps_normalised() {
    // InfluxDB's rules: `\\` before a comma in a tag value is a literal
    // backslash then an escaped comma; `\\` in a string value is one backslash.
    let body = "m\\ x,t\\,k=a\\\\,b,u=v f=\"q\\\"\\\\\",g=1i 1700000000\n\
                plain v=1.5 1700000001\n";
    let mut b = Batch::with_budget(1 << 20, 100);
    assert_eq!(index_into(&mut b, body.as_bytes(), Precision::Seconds), 2);
    let lines = stored_lines(&b);
    assert_eq!(lines[0].line, b"m\\ x,t\\,k=a\\\\,b,u=v f=\"q\\\"\\\\\",g=1i");
    assert!(lines[0].flags.has_escapes() && !lines[0].flags.rewritten() && !lines[0].flags.implied_timestamp());
    assert_eq!(lines[0].timestamp_ns, 1_700_000_000_000_000_000);
    assert_eq!(lines[0].field_kinds, 1 << FieldKind::Str as u8 | 1 << FieldKind::Int as u8);
    assert_eq!(lines[1].line, b"plain v=1.5");
    assert!(!lines[1].flags.has_escapes());
    assert_eq!(
        line_protocol_of(&b),
        "m\\ x,t\\,k=a\\\\,b,u=v f=\"q\\\"\\\\\",g=1i 1700000000000000000\nplain v=1.5 1700000001000000000\n"
    );
    let records = b.decode().unwrap();
    assert_eq!(records[0].measurement, "m x");
    assert_eq!(records[0].tags[0], Tag { key: "t,k".into(), value: "a\\,b".into() });
    assert_eq!(records[0].fields[0].value, FieldValue::Str("q\"\\".into()));
}

#[test]
fn only_lines_that_need_it_are_canonicalised() {
    let body = "m,zz\\ k=1,a=x\\,y,b=2 x=1,s=\"a\\\"b\",x=3i,y=true\nm,a=1 v=1 5\n";
    let mut b = Batch::with_budget(1 << 20, 100);
    assert_eq!(index_into(&mut b, body.as_bytes(), Precision::Nanoseconds), 2);
    let lines = stored_lines(&b);
    // Tags sorted by key, escapes kept; `x` last-wins, in the position of its last occurrence.
    assert_eq!(lines[0].line, b"m,a=x\\,y,b=2,zz\\ k=1 s=\"a\\\"b\",x=3i,y=true");
    assert!(lines[0].flags.rewritten() && lines[0].flags.has_escapes() && lines[0].flags.implied_timestamp());
    assert_eq!(lines[0].timestamp_ns, NOW);
    // The float `x=1` was dropped: the summary names only the kinds left.
    assert_eq!(
        lines[0].field_kinds,
        1 << FieldKind::Str as u8 | 1 << FieldKind::Int as u8 | 1 << FieldKind::Bool as u8
    );
    assert_eq!(lines[1].line, b"m,a=1 v=1");
    assert!(!lines[1].flags.rewritten());
    // The same records as the previous parser's (which always canonicalised).
    let mut previous = Vec::new();
    let summary = LineProtocolParser::new().parse_into(body.as_bytes(), Precision::Nanoseconds, NOW, &mut previous);
    assert_eq!(summary.records, 2);
    assert_eq!(b.decode().unwrap(), previous);
}

#[test]
fn long_lines_get_a_longer_length_prefix() {
    for len in [100, 127, 128, 200, 16_383, 16_384, 70_000] {
        // Rewritten (unsorted tags), so the line is written before its length is known.
        let body = format!("m,b=1,a=1 s=\"{}\"\n", "x".repeat(len));
        let mut b = Batch::with_budget(1 << 20, 100);
        index_into(&mut b, body.as_bytes(), Precision::Nanoseconds);
        let record = Record {
            measurement: "m".into(),
            tags: vec![],
            fields: vec![Field { key: "s".into(), value: FieldValue::Str("y".repeat(len).into()) }],
            timestamp_ns: -1,
        };
        b.push(&record.as_ref()).unwrap();
        let lines = stored_lines(&b);
        assert_eq!(lines[0].line.len(), len + 14, "{len}");
        assert_eq!(lines[1].line, format!("m s=\"{}\"", "y".repeat(len)).as_bytes());
        assert_eq!(b.decode().unwrap()[1], record);
    }
}

#[test]
fn rollback_drops_exactly_what_came_after_the_mark() {
    let mut b = Batch::with_budget(1 << 20, 100);
    index_into(&mut b, b"a v=1 1\n", Precision::Nanoseconds);
    let mark = b.mark();
    index_into(&mut b, b"b v=2 2\nc,y=1,x=1 v=3 3\n", Precision::Nanoseconds);
    b.push(&Record { measurement: "d".into(), tags: vec![], fields: vec![], timestamp_ns: 0 }.as_ref()).unwrap_err();
    assert_eq!(b.len(), 3);
    b.rollback(mark);
    assert_eq!(b.len(), 1);
    assert_eq!(line_protocol_of(&b), "a v=1 1\n");
    assert_eq!(b.tenant_table().get(0), Some(""));
    b.clear();
    assert!(b.is_empty() && b.tenant_table().len() == 1);
}

#[test]
fn records_line_protocol_cannot_carry_are_refused() {
    let record = |m: &str, key: &str, value: &str, field: FieldValue<'static>| Record {
        measurement: m.to_owned().into(),
        tags: vec![Tag { key: key.to_owned().into(), value: value.to_owned().into() }],
        fields: vec![Field { key: "v".into(), value: field }],
        timestamp_ns: 0,
    };
    let one = FieldValue::Int(1);
    let cases = [
        (record("m", "k", "a\tb", one.clone()), Unrepresentable::ControlCharacter(LineElement::TagValue)),
        (record("m", "k", "a\\", one.clone()), Unrepresentable::TrailingBackslash(LineElement::TagValue)),
        (record("m\n", "k", "v", one.clone()), Unrepresentable::ControlCharacter(LineElement::Measurement)),
        (record("#m", "k", "v", one.clone()), Unrepresentable::CommentMeasurement),
        (record("m", "", "v", one.clone()), Unrepresentable::Empty(LineElement::TagKey)),
        (record("m", "k", "v", FieldValue::Float(f64::INFINITY)), Unrepresentable::NonFiniteFloat),
    ];
    let mut b = Batch::with_budget(1 << 20, 100);
    b.push(&record("ok", "k", "a\\b", FieldValue::Str("tab\there\n\\".into())).as_ref()).unwrap();
    let before = (b.len(), b.encoded_bytes());
    for (r, why) in cases {
        assert_eq!(r.as_ref().check_line(), Err(why), "{r:?}");
        assert_eq!(b.push(&r.as_ref()), Err(SinkFull));
        assert_eq!((b.len(), b.encoded_bytes()), before);
    }
    let mut dup = record("m", "k", "v", FieldValue::Int(1));
    dup.fields.push(Field { key: "v".into(), value: FieldValue::Int(2) });
    assert_eq!(dup.as_ref().check_line(), Err(Unrepresentable::DuplicateFieldKey));
    dup.fields.pop();
    dup.tags.push(Tag { key: "a".into(), value: "v".into() });
    assert_eq!(dup.as_ref().check_line(), Err(Unrepresentable::UnsortedTags));
    assert_eq!(line_protocol_of(&b), "ok,k=a\\b v=\"tab\there\n\\\\\" 0\n");
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

    // Indexed lines: the same budget; the line that does not fit is refused
    // and indexing says where to resume.
    let mut b = Batch::with_budget(24, 100);
    let mut indexer = LineIndexer::new();
    let body = b"first v=1 1\nsecond v=2 2\n";
    let summary = indexer
        .index_batch(body, Precision::Nanoseconds, NOW, |l| b.push_line(l, TenantIndex::DEFAULT).is_ok())
        .unwrap();
    assert_eq!((summary.lines, summary.resume_at.map(|p| p.line)), (1, Some(2)));
    assert_eq!(line_protocol_of(&b), "first v=1 1\n");
}

#[test]
fn client_id_is_cut_at_char_boundary() {
    let mut b = Batch::with_budget(100, 10);
    let long = "é".repeat(200);
    b.set_client(&long);
    assert!(b.client().len() <= MAX_CLIENT_ID_BYTES);
    assert!(b.client().chars().all(|c| c == 'é'));
}

#[test]
fn corrupt_records_are_decode_errors() {
    let mut b = Batch::with_budget(1 << 20, 100);
    index_into(&mut b, b"m,a=1 v=1 7\n", Precision::Nanoseconds);
    let good = b.buf.clone();
    let mut indexer = LineIndexer::new();
    let decode = |data: &[u8], indexer: &mut LineIndexer| -> Result<Vec<Record>, DecodeError> {
        FrameRecords::new(RecordFormat::V2, data, 1, TenantTable::DEFAULT_ONLY)
            .map(|r| r.and_then(|r| r.into_record(indexer)))
            .collect()
    };
    assert!(decode(&good, &mut indexer).is_ok());
    let mut bad = good.clone();
    bad[0] = 3; // tenant 3 of 1
    assert_eq!(decode(&bad, &mut indexer), Err(DecodeError::BadTenant { index: 3, count: 1 }));
    let mut bad = good.clone();
    bad[1] = 0x80;
    assert_eq!(decode(&bad, &mut indexer), Err(DecodeError::BadFlags(0x80)));
    let mut bad = good.clone();
    bad[2] = 1 << FieldKind::Int as u8; // the line's field is a float
    assert_eq!(decode(&bad, &mut indexer), Err(DecodeError::HeaderMismatch("field types")));
    let mut bad = good.clone();
    let at = bad.len() - 3; // "v=1" -> "v=x"
    bad[at + 2] = b'x';
    assert!(matches!(decode(&bad, &mut indexer), Err(DecodeError::BadLine(_))));
    let mut bad = good.clone();
    bad.push(0);
    assert_eq!(decode(&bad, &mut indexer), Err(DecodeError::TrailingBytes(1)));
    // A stored line with a timestamp token, or two lines, is not a record.
    for line in [&b"m v=1 5"[..], b"m v=1\nm v=2"] {
        let mut data = vec![0, 0, 1, 14, line.len() as u8];
        data.extend_from_slice(line);
        assert_eq!(decode(&data, &mut indexer), Err(DecodeError::NotOneLine), "{line:?}");
    }
}
