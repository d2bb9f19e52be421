//! Unit tests of the indexer: grammar, spans, flags, modes, limits, and the
//! SIMD levels against the scalar kernel on adversarial bodies.

use super::values::eight_digit_value;
use super::*;
use crate::ingest::line_protocol::LineErrorReason;
use crate::ingest::record::{Field, FieldValue, RecordRef, Tag};
use crate::ingest::structural::SimdLevel;
use proptest::prelude::*;
use std::borrow::Cow;

const NOW: i64 = 1_700_000_000_000_000_000;

/// An owned view of one indexed line, built only from the public accessors.
#[derive(Clone, Debug, PartialEq)]
struct Owned {
    line_number: usize,
    bytes: String,
    series: String,
    field_set: String,
    timestamp: Option<String>,
    timestamp_ns: i64,
    flags: LineFlags,
    measurement: String,
    tags: Vec<(String, String)>,
    fields: Vec<(String, FieldValue<'static>)>,
}

fn own(line: &IndexedLine<'_, '_>) -> Owned {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let bytes = line.bytes();
    // The record model's own conversion makes the values owned.
    let measurement = line.measurement().unescaped();
    let tags: Vec<Tag<'_>> =
        line.tags().map(|(key, value)| Tag { key: key.unescaped(), value: value.unescaped() }).collect();
    let fields: Vec<Field<'_>> = line.fields().map(|f| Field { key: f.key.unescaped(), value: f.value() }).collect();
    let record =
        RecordRef { measurement: &measurement, tags: &tags, fields: &fields, timestamp_ns: line.timestamp_ns() }
            .to_owned_record();
    Owned {
        line_number: line.line_number(),
        bytes: text(bytes),
        series: text(&bytes[line.series_range()]),
        field_set: text(&bytes[line.field_set_range()]),
        timestamp: line.timestamp_range().map(|r| text(&bytes[r])),
        timestamp_ns: record.timestamp_ns,
        flags: line.flags(),
        measurement: record.measurement.into_owned(),
        tags: record.tags.into_iter().map(|t| (t.key.into_owned(), t.value.into_owned())).collect(),
        fields: record.fields.into_iter().map(|f| (f.key.into_owned(), f.value)).collect(),
    }
}

fn index_all(indexer: &mut LineIndexer, body: &[u8]) -> (Vec<Owned>, BodySummary) {
    let mut lines = Vec::new();
    let summary = indexer.index_lenient(body, Precision::Nanoseconds, NOW, |line| {
        lines.push(own(line));
        true
    });
    (lines, summary)
}

fn one(body: &str) -> Owned {
    let (lines, summary) = index_all(&mut LineIndexer::new(), body.as_bytes());
    assert_eq!((lines.len(), summary.first_error), (1, None), "{body:?}");
    lines.into_iter().next().unwrap()
}

fn reason(body: &str) -> LineErrorReason {
    let (lines, summary) = index_all(&mut LineIndexer::new(), body.as_bytes());
    assert!(lines.is_empty(), "{body:?} was accepted: {lines:?}");
    summary.first_error.expect("an error").reason
}

fn s(text: &str) -> String {
    text.to_string()
}

#[test]
fn full_line_with_spans_types_and_timestamp() {
    let line = one("  cpu,host=a,region=eu usage=1.5,count=3i,big=7u,ok=t,msg=\"hi\" 1700000000000000001  \r\n");
    assert_eq!(line.bytes, "cpu,host=a,region=eu usage=1.5,count=3i,big=7u,ok=t,msg=\"hi\" 1700000000000000001");
    assert_eq!(line.series, "cpu,host=a,region=eu");
    assert_eq!(line.field_set, "usage=1.5,count=3i,big=7u,ok=t,msg=\"hi\"");
    assert_eq!(line.timestamp.as_deref(), Some("1700000000000000001"));
    assert_eq!(line.timestamp_ns, 1_700_000_000_000_000_001);
    assert_eq!(line.measurement, "cpu");
    assert_eq!(line.tags, vec![(s("host"), s("a")), (s("region"), s("eu"))]);
    assert_eq!(
        line.fields,
        vec![
            (s("usage"), FieldValue::Float(1.5)),
            (s("count"), FieldValue::Int(3)),
            (s("big"), FieldValue::UInt(7)),
            (s("ok"), FieldValue::Bool(true)),
            (s("msg"), FieldValue::Str(Cow::Borrowed("hi"))),
        ]
    );
    assert!(line.flags.had_timestamp() && !line.flags.has_escapes() && !line.flags.needs_canonical());
}

#[test]
fn field_kinds_and_counts_are_summarised() {
    let mut seen = None;
    let _ = LineIndexer::new().index_lenient(b"m a=1i,b=2i,c=\"x\" 5", Precision::Seconds, NOW, |line| {
        seen = Some((line.field_count(), line.tag_count(), line.field_kinds(), line.timestamp_ns()));
        true
    });
    let (fields, tags, kinds, ts) = seen.expect("one line");
    assert_eq!((fields, tags, ts), (3, 0, 5_000_000_000));
    assert!(kinds.contains(FieldKind::Int) && kinds.contains(FieldKind::Str) && !kinds.contains(FieldKind::Float));
    assert_eq!(kinds.bits(), (1 << FieldKind::Int as u8) | (1 << FieldKind::Str as u8));
}

#[test]
fn missing_timestamp_is_now_and_flagged() {
    let line = one("m f=1");
    assert_eq!((line.timestamp_ns, line.timestamp.as_deref()), (NOW, None));
    assert!(!line.flags.had_timestamp());
    let line = one("m f=1   \n");
    assert_eq!((line.bytes.as_str(), line.timestamp_ns), ("m f=1", NOW));
}

#[test]
fn a_backslash_escapes_only_the_characters_of_its_element() {
    // Measurement: comma and space only.
    assert_eq!(one(r"a\,b\ c\=d f=1").measurement, "a,b c\\=d");
    // Tag key/value, field key: comma, '=' and space.
    let line = one(r"m,k\,\=\ 1=v\,\=\ 2 f\,\=\ 3=1");
    assert_eq!(line.tags, vec![(s("k,= 1"), s("v,= 2"))]);
    assert_eq!(line.fields[0].0, "f,= 3");
    assert!(line.flags.has_escapes());
    // Any other backslash is an ordinary character: `\\` is two backslashes
    // (InfluxDB's Go decoder; today's parser reads one).
    assert_eq!(one(r"m,t=a\\b f=1").tags, vec![(s("t"), s(r"a\\b"))]);
    assert_eq!(one(r"m\\x,t=\a f=1").measurement, r"m\\x");
    assert_eq!(one(r"m,t=\a f=1").tags, vec![(s("t"), s(r"\a"))]);
    // ... and the second backslash of `\\,` escapes the comma.
    assert_eq!(one(r"m,t=a\\,b f=1").tags, vec![(s("t"), s(r"a\,b"))]);
    assert_eq!(reason(r"m,t=a\\,u=b f=1"), LineErrorReason::UnescapedEqualsInTagValue);
    // A raw backslash before a terminator it does not escape.
    assert_eq!(one("m\\\"x f=1").measurement, "m\\\"x");
    assert!(!one(r"m,t=\a f=1").flags.has_escapes());
}

#[test]
fn quotes_and_equals_are_ordinary_in_names() {
    assert_eq!(one("m=\"x f=1").measurement, "m=\"x");
    assert_eq!(one("m,\"k\"=\"v\" \"f\"=1").tags, vec![(s("\"k\""), s("\"v\""))]);
}

#[test]
fn string_values_unescape_quote_and_backslash_only() {
    let line = one(r#"m s="a\"b\\c\d\n" 1"#);
    assert_eq!(line.fields, vec![(s("s"), FieldValue::Str(Cow::Owned(s(r#"a"b\c\d\n"#))))]);
    assert!(line.flags.has_escapes());
    assert_eq!(one(r#"m s="" 1"#).fields, vec![(s("s"), FieldValue::Str(Cow::Borrowed("")))]);
    assert_eq!(one("m s=\"a,b c=d\t\x01\"").fields[0].1, FieldValue::Str(Cow::Borrowed("a,b c=d\t\x01")));
    assert_eq!(reason(r#"m s="abc\"#), LineErrorReason::UnterminatedString);
    assert_eq!(reason(r#"m s="abc"x"#), LineErrorReason::GarbageAfterString);
    assert_eq!(reason(r#"m s="abc"="#), LineErrorReason::GarbageAfterString);
}

#[test]
fn newlines_in_strings_keep_the_line_numbers_physical() {
    let body = "m s=\"a\nb\" 1\n\nbad\nm f=2\n";
    let (lines, summary) = index_all(&mut LineIndexer::new(), body.as_bytes());
    assert_eq!(lines.iter().map(|l| l.line_number).collect::<Vec<_>>(), vec![1, 5]);
    assert_eq!(lines[0].fields[0].1, FieldValue::Str(Cow::Borrowed("a\nb")));
    assert_eq!(summary.first_error, Some(LineError { line: 4, reason: LineErrorReason::MissingFields }));
}

#[test]
fn control_characters_are_refused_outside_strings() {
    for body in [
        "m\tx f=1",
        "\x01m f=1",
        "m,t\x02=1 f=1",
        "m,t=v\x7f f=1",
        "m f\x1b=1",
        "m\rx f=1",
        "m f=1\t1",
        "m,t=v\t f=1",
        "m f=1 1\t",
    ] {
        let (lines, summary) = index_all(&mut LineIndexer::new(), body.as_bytes());
        assert!(lines.is_empty() && summary.bad_lines == 1, "{body:?} accepted");
    }
    assert_eq!(reason("m\x01 f=1"), LineErrorReason::ControlCharacter);
    assert_eq!(reason("m,t=\x01 f=1"), LineErrorReason::ControlCharacter);
    // A backslash does not make a control character acceptable.
    assert_eq!(reason("m,t=a\\\tb f=1"), LineErrorReason::ControlCharacter);
    // Leading tabs (indentation) are still skipped.
    assert_eq!(one("\t\t m f=1").measurement, "m");
}

#[test]
fn comments_blank_lines_and_crlf() {
    let body = "# comment, with = \"stuff\n\r\n   \n\tm f=1\r\n  # another\nm f=2\r";
    let (lines, summary) = index_all(&mut LineIndexer::new(), body.as_bytes());
    assert_eq!(summary.first_error, None);
    assert_eq!(
        lines.iter().map(|l| (l.line_number, l.bytes.as_str())).collect::<Vec<_>>(),
        [(4, "m f=1"), (6, "m f=2")]
    );
}

#[test]
fn each_error_has_its_reason() {
    use LineErrorReason::*;
    let cases: &[(&str, LineErrorReason)] = &[
        (",t=1 f=1", EmptyMeasurement),
        (" ,t=1 f=1", EmptyMeasurement),
        ("m", MissingFields),
        ("m ", MissingFields),
        ("m,t=1", MissingFields),
        ("m,t=1 ", MissingFields),
        ("m,=1 f=1", EmptyTagKey),
        ("m, f=1", EmptyTagKey),
        ("m,t f=1", TagWithoutEquals),
        ("m,t,u=1 f=1", TagWithoutEquals),
        ("m,t= f=1", MissingTagValue),
        ("m,t=,u=1 f=1", MissingTagValue),
        ("m,t=a=b f=1", UnescapedEqualsInTagValue),
        ("m,t=1,t=2 f=1", DuplicateTagKey),
        ("m,t=1,u=2,t=3 f=1", DuplicateTagKey),
        ("m =1", EmptyFieldKey),
        ("m f=1,=2", EmptyFieldKey),
        ("m f", FieldWithoutEquals),
        ("m f,g=1", FieldWithoutEquals),
        ("m f=", MissingFieldValue),
        ("m f=,g=1", MissingFieldValue),
        ("m f= 1", MissingFieldValue),
        ("m f=1,", EmptyFieldKey),
        ("m f=abc", InvalidFieldValue),
        ("m f=1x", InvalidFieldValue),
        ("m f=1\"", InvalidFieldValue),
        ("m f=1=", InvalidFieldValue),
        ("m f=1.2.3", InvalidFieldValue),
        ("m f=+1", InvalidFieldValue),
        ("m f=1e", InvalidFieldValue),
        ("m f=1e+", InvalidFieldValue),
        ("m f=.", InvalidFieldValue),
        ("m f=-", InvalidFieldValue),
        ("m f=NaN", InvalidFieldValue),
        ("m f=inf", InvalidFieldValue),
        ("m f=-inf", InvalidFieldValue),
        ("m f=tru", InvalidFieldValue),
        ("m f=1.5i", InvalidFieldValue),
        ("m f=-1u", InvalidFieldValue),
        ("m f=i", InvalidFieldValue),
        ("m f=9223372036854775808i", IntegerOutOfRange),
        ("m f=-9223372036854775809i", IntegerOutOfRange),
        ("m f=18446744073709551616u", IntegerOutOfRange),
        ("m f=1e309", FloatOutOfRange),
        ("m f=-1e400", FloatOutOfRange),
        ("m s=\"abc", UnterminatedString),
        ("m f=1 12a", InvalidTimestamp),
        ("m f=1 1.5", InvalidTimestamp),
        ("m f=1 -", InvalidTimestamp),
        ("m f=1 1,", InvalidTimestamp),
        ("m f=1 9223372036854775808", TimestampOutOfRange),
        ("m f=1 1 2", TrailingGarbage),
        ("m f=\"\u{e9}\" 1 \u{e9}", TrailingGarbage),
    ];
    for &(body, expected) in cases {
        assert_eq!(reason(body), expected, "{body:?}");
    }
}

#[test]
fn numbers_at_the_edges_are_accepted() {
    let line = one("m a=9223372036854775807i,b=-9223372036854775808i,c=18446744073709551615u,d=0u,e=-0i,f=007i");
    let values: Vec<_> = line.fields.into_iter().map(|(_, v)| v).collect();
    assert_eq!(
        values,
        vec![
            FieldValue::Int(i64::MAX),
            FieldValue::Int(i64::MIN),
            FieldValue::UInt(u64::MAX),
            FieldValue::UInt(0),
            FieldValue::Int(0),
            FieldValue::Int(7),
        ]
    );
    let floats = one("m a=1.,b=.5,c=-.5,d=1e5,e=1E-5,f=1.5e+3,g=1.e2,h=1e-400,i=1.7976931348623157e308,j=-0");
    let values: Vec<f64> =
        floats.fields.iter().map(|(_, v)| if let FieldValue::Float(f) = v { *f } else { f64::NAN }).collect();
    assert_eq!(values, vec![1.0, 0.5, -0.5, 1e5, 1e-5, 1.5e3, 1e2, 0.0, f64::MAX, -0.0]);
    for spelling in ["t", "T", "true", "True", "TRUE", "f", "F", "false", "False", "FALSE"] {
        let expected = spelling.starts_with(['t', 'T']);
        assert_eq!(one(&format!("m b={spelling}")).fields[0].1, FieldValue::Bool(expected));
    }
    assert_eq!(one("m f=1 -1").timestamp_ns, -1);
    assert_eq!(one("m f=1 9223372036854775807").timestamp_ns, i64::MAX);
    assert_eq!(one("m f=1 -9223372036854775808").timestamp_ns, i64::MIN);
}

#[test]
fn precision_scales_timestamps_with_overflow_checks() {
    let mut indexer = LineIndexer::new();
    for (precision, expected) in [
        (Precision::Nanoseconds, Some(7)),
        (Precision::Microseconds, Some(7_000)),
        (Precision::Milliseconds, Some(7_000_000)),
        (Precision::Seconds, Some(7_000_000_000)),
        (Precision::Minutes, Some(420_000_000_000)),
        (Precision::Hours, Some(25_200_000_000_000)),
    ] {
        let mut got = None;
        let _ = indexer.index_lenient(b"m f=1 7", precision, NOW, |line| {
            got = Some(line.timestamp_ns());
            true
        });
        assert_eq!(got, expected, "{precision:?}");
    }
    let summary = indexer.index_lenient(b"m f=1 9223372036854775807", Precision::Seconds, NOW, |_| true);
    assert_eq!(summary.first_error.map(|e| e.reason), Some(LineErrorReason::TimestampOutOfRange));
    // A missing timestamp is `now_ns` whatever the precision.
    let mut got = None;
    let _ = indexer.index_lenient(b"m f=1", Precision::Hours, 42, |line| {
        got = Some(line.timestamp_ns());
        true
    });
    assert_eq!(got, Some(42));
}

#[test]
fn canonicalisation_needs_are_flagged() {
    let sorted = one("m,a=1,b=2 f=1,g=2");
    assert!(!sorted.flags.needs_canonical());
    let unsorted = one("m,b=1,a=2 f=1");
    assert!(unsorted.flags.tags_unsorted() && unsorted.flags.needs_canonical());
    let duplicates = one("m f=1,g=2,f=3");
    assert!(duplicates.flags.duplicate_fields() && !duplicates.flags.tags_unsorted());
    // Raw fields keep input order and duplicates (the canonicaliser picks the last).
    assert_eq!(duplicates.fields.len(), 3);
    // Same signature (length + last byte), different keys: not duplicates.
    assert!(!one("m ab=1,bb=2,cb=3").flags.duplicate_fields());
    // Unescaped order decides: "a b" (0x20) sorts before "a!" (0x21) even
    // though the raw `a\ b` (0x5c) does not.
    assert!(!one(r"m,a\ b=1,a!=2 f=1").flags.tags_unsorted());
    assert!(one(r"m,a!=2,a\ b=1 f=1").flags.tags_unsorted());
    // Large sets take the sorting path.
    let many: Vec<String> = (0..40).map(|i| format!("k{:02}={i}", 39 - i)).collect();
    let line = one(&format!("m,{} f=1", many.join(",")));
    assert!(line.flags.tags_unsorted());
    assert_eq!(reason(&format!("m,{},k05=x f=1", many.join(","))), LineErrorReason::DuplicateTagKey);
    let fields: Vec<String> = (0..40).map(|i| format!("f{i}={i}")).collect();
    assert!(!one(&format!("m {}", fields.join(","))).flags.duplicate_fields());
    assert!(one(&format!("m {},f7=1", fields.join(","))).flags.duplicate_fields());
}

#[test]
fn invalid_utf8_is_refused_and_valid_utf8_kept() {
    assert_eq!(one("m\u{e9},t=\u{2603} f=\"\u{1f600}\"").measurement, "m\u{e9}");
    let mut body = b"m f=\"a".to_vec();
    body.push(0xff);
    body.extend_from_slice(b"\" 1\nm f=2");
    let (lines, summary) = index_all(&mut LineIndexer::new(), &body);
    assert_eq!(summary.first_error, Some(LineError { line: 1, reason: LineErrorReason::InvalidUtf8 }));
    assert_eq!(lines.len(), 1);
    // A non-ASCII byte later in the body does not make earlier ASCII lines fail.
    let (lines, summary) = index_all(&mut LineIndexer::new(), "m f=1\nm f=\"\u{e9}\"".as_bytes());
    assert_eq!((lines.len(), summary.bad_lines), (2, 0));
}

#[test]
fn batch_mode_stops_handing_over_at_the_first_bad_line_and_counts() {
    let body = b"m f=1\nbad\nm f=2\nm f=\nm f=3\n";
    let mut handed = 0;
    let error = LineIndexer::new()
        .index_batch(body, Precision::Nanoseconds, NOW, |_| {
            handed += 1;
            true
        })
        .expect_err("two bad lines");
    assert_eq!(handed, 1);
    assert_eq!(
        error,
        BatchError { first_line: 2, first_reason: LineErrorReason::MissingFields, bad_lines: 2, valid_lines: 3 }
    );
    let ok = LineIndexer::new().index_batch(b"m f=1\nm f=2", Precision::Nanoseconds, NOW, |_| true).expect("valid");
    assert_eq!((ok.lines, ok.bad_lines, ok.resume_at), (2, 0, None));
}

#[test]
fn lenient_mode_skips_bad_lines() {
    let (lines, summary) = index_all(&mut LineIndexer::new(), b"m f=1\nbad\nm f=2\nm f=\nm f=3\n");
    assert_eq!(lines.iter().map(|l| l.line_number).collect::<Vec<_>>(), [1, 3, 5]);
    assert_eq!((summary.lines, summary.bad_lines, summary.valid_not_handed), (3, 2, 0));
    assert_eq!(summary.first_error, Some(LineError { line: 2, reason: LineErrorReason::MissingFields }));
}

#[test]
fn a_refused_line_stops_and_resumes_where_it_was() {
    let body = b"m f=1\n\nm f=2\nm f=3\n";
    let mut indexer = LineIndexer::new();
    let mut taken = Vec::new();
    let summary = indexer.index_lenient(body, Precision::Nanoseconds, NOW, |line| {
        if taken.len() == 1 {
            return false;
        }
        taken.push(line.line_number());
        true
    });
    assert_eq!(summary.resume_at, Some(BodyPosition { offset: 7, line: 3 }));
    let start = summary.resume_at.unwrap();
    let rest = indexer.index_from(body, start, Precision::Nanoseconds, NOW, BadLines::Skip, |line| {
        taken.push(line.line_number());
        true
    });
    assert_eq!((rest.lines, rest.resume_at), (2, None));
    assert_eq!(taken, [1, 3, 4]);
}

#[test]
fn limits_bound_tags_and_fields() {
    let limits = LineProtocolLimits { max_tags_per_line: 2, max_fields_per_line: 3 };
    let mut indexer = LineIndexer::with_limits(limits);
    let check =
        |indexer: &mut LineIndexer, body: &str| index_all(indexer, body.as_bytes()).1.first_error.map(|e| e.reason);
    assert_eq!(check(&mut indexer, "m,a=1,b=2 f=1,g=2,h=3"), None);
    assert_eq!(check(&mut indexer, "m,a=1,b=2,c=3 f=1"), Some(LineErrorReason::TooManyTags));
    assert_eq!(check(&mut indexer, "m f=1,g=2,h=3,i=4"), Some(LineErrorReason::TooManyFields));
}

#[test]
fn scratch_is_reused_across_bodies() {
    let mut indexer = LineIndexer::new();
    let body = "m,a=1,b=2,c=3 f=1,g=2,h=3,i=4\n".repeat(10);
    let _ = index_all(&mut indexer, body.as_bytes());
    let capacities = (indexer.tags.capacity(), indexer.fields.capacity(), indexer.order.capacity());
    for _ in 0..10 {
        let summary = indexer.index_lenient(body.as_bytes(), Precision::Nanoseconds, NOW, |_| true);
        assert_eq!(summary.lines, 10);
    }
    assert_eq!(capacities, (indexer.tags.capacity(), indexer.fields.capacity(), indexer.order.capacity()));
}

#[test]
fn eight_digit_swar_matches_a_byte_loop() {
    let bytewise = |word: [u8; 8]| -> Option<u64> {
        word.iter().try_fold(0u64, |acc, &b| b.is_ascii_digit().then(|| acc * 10 + u64::from(b - b'0')))
    };
    for word in [*b"00000000", *b"12345678", *b"99999999", *b"1234567/", *b"1234567:", *b"/0000000", *b"\xff9999999"] {
        assert_eq!(eight_digit_value(u64::from_le_bytes(word)), bytewise(word), "{word:?}");
    }
    for b in 0..=255u8 {
        for lane in 0..8 {
            let mut word = *b"55555555";
            word[lane] = b;
            assert_eq!(eight_digit_value(u64::from_le_bytes(word)), bytewise(word), "{word:?}");
        }
    }
}

/// Every line of `body` through one kernel, as debug strings (spans included),
/// plus the summary.
fn index_with(level: SimdLevel, body: &[u8]) -> (Vec<String>, BodySummary) {
    let classifier = Classifier::with_level(level).expect("available level");
    let mut indexer = LineIndexer::with_classifier(LineProtocolLimits::default(), classifier);
    let mut lines = Vec::new();
    let summary = indexer.index_lenient(body, Precision::Nanoseconds, NOW, |line| {
        lines.push(format!("{line:?}"));
        true
    });
    (lines, summary)
}

fn levels_agree(body: &[u8]) {
    let expected = index_with(SimdLevel::Scalar, body);
    for level in SimdLevel::available() {
        assert_eq!(index_with(level, body), expected, "{level:?} on {:?}", String::from_utf8_lossy(body));
    }
}

#[test]
fn every_level_indexes_every_length_and_alignment_alike() {
    // Escapes, quotes and newlines land on every block boundary as the window slides.
    let text =
        "m\\ x,t\\,=a\\=b,u=\"v s=\"a\\\"b\\\\\" 1\ncpu f=1.5,g=2i \t\nx,y=z s=\"q\nr\",b=t 7\r\n# c\nm\\\\,t=1 f=1\n";
    let buffer: Vec<u8> = text.bytes().cycle().take(64 + 256).collect();
    for offset in 0..64 {
        for len in 0..=256 {
            levels_agree(&buffer[offset..offset + len]);
        }
    }
}

proptest! {
    #[test]
    fn levels_agree_on_random_line_like_bodies(
        body in proptest::collection::vec(
            prop_oneof![
                4 => proptest::sample::select(b"m,t=1 f\\\"\n.-0123456789eiu\r\t#".to_vec()),
                1 => any::<u8>(),
            ],
            0..600,
        )
    ) {
        levels_agree(&body);
    }

    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        levels_agree(&body);
    }
}
