use super::scan::{StopSet, KEY_STOP, MEASUREMENT_STOP, VALUE_STOP};
use super::values::{eight_digits, parse_digits, parse_short_decimal, parse_signed, IntLiteral};
use super::*;
use crate::ingest::record::{field, tag, FieldValue, Record, SinkFull};

const NOW: i64 = 1_700_000_000_000_000_000;

fn parse_all(body: &[u8]) -> (Vec<Record>, ParseSummary) {
    let mut parser = LineProtocolParser::new();
    let mut records = Vec::new();
    let summary = parser.parse_into(body, Precision::Nanoseconds, NOW, &mut records);
    (records, summary)
}

fn parse_one(body: &[u8]) -> Record {
    let (records, summary) = parse_all(body);
    assert_eq!(summary.first_error, None, "body {:?}", String::from_utf8_lossy(body));
    assert_eq!(records.len(), 1);
    records.into_iter().next().expect("one record")
}

fn reason(body: &[u8]) -> LineErrorReason {
    let (records, summary) = parse_all(body);
    assert!(records.is_empty(), "body {:?} parsed", String::from_utf8_lossy(body));
    summary.first_error.expect("an error").reason
}

#[test]
fn full_line_with_tags_fields_and_timestamp() {
    let record = parse_one(
        b"cpu,host=server01,region=us-west usage_idle=98.5,usage_user=1.25 1434055562000000000",
        // ^ measurement
        //   ^ tag set (already sorted)
        //                                 ^ field set: two floats
        //                                                                ^ timestamp, ns
    );
    assert_eq!(record.measurement, "cpu");
    assert_eq!(record.tags, vec![tag("host", "server01"), tag("region", "us-west")]);
    assert_eq!(
        record.fields,
        vec![field("usage_idle", FieldValue::Float(98.5)), field("usage_user", FieldValue::Float(1.25))]
    );
    assert_eq!(record.timestamp_ns, 1_434_055_562_000_000_000);
}

#[test]
fn missing_timestamp_is_now() {
    let record = parse_one(b"mem free=1i");
    assert_eq!(record.timestamp_ns, NOW);
    assert!(record.tags.is_empty());
}

#[test]
fn tags_are_sorted_by_key() {
    let record = parse_one(b"m,zone=a,b=2,alpha=x v=1");
    //                      ^ tags out of order: zone, b, alpha
    let keys: Vec<_> = record.tags.iter().map(|t| t.key.to_string()).collect();
    assert_eq!(keys, ["alpha", "b", "zone"]);
}

#[test]
fn duplicate_tag_key_is_rejected() {
    assert_eq!(reason(b"m,a=1,a=2 v=1"), LineErrorReason::DuplicateTagKey);
}

#[test]
fn duplicate_field_key_last_wins() {
    let record = parse_one(b"m a=1i,b=2i,a=3i");
    assert_eq!(record.fields, vec![field("b", FieldValue::Int(2)), field("a", FieldValue::Int(3))]);
    // Large field sets take the sorted-index path.
    let mut line = b"m ".to_vec();
    for i in 0..40 {
        line.extend_from_slice(format!("f{}={}i,", i % 20, i).as_bytes());
    }
    line.pop();
    let record = parse_one(&line);
    assert_eq!(record.fields.len(), 20);
    assert_eq!(record.fields[0], field("f0", FieldValue::Int(20)));
    assert_eq!(record.fields[19], field("f19", FieldValue::Int(39)));
}

#[test]
fn field_value_types() {
    let record = parse_one(b"m i=-42i,u=42u,f=-1.5E-2,e=1e3,d=.5,p=3.,s=\"hi\",t=t,T=TRUE,F=False");
    //                       ^ signed int  ^ unsigned ^ exponent forms ^ leading/trailing dot
    assert_eq!(
        record.fields,
        vec![
            field("i", FieldValue::Int(-42)),
            field("u", FieldValue::UInt(42)),
            field("f", FieldValue::Float(-1.5e-2)),
            field("e", FieldValue::Float(1000.0)),
            field("d", FieldValue::Float(0.5)),
            field("p", FieldValue::Float(3.0)),
            field("s", FieldValue::Str("hi".into())),
            field("t", FieldValue::Bool(true)),
            field("T", FieldValue::Bool(true)),
            field("F", FieldValue::Bool(false)),
        ]
    );
}

#[test]
fn all_boolean_spellings() {
    for (text, value) in [
        ("t", true),
        ("T", true),
        ("true", true),
        ("True", true),
        ("TRUE", true),
        ("f", false),
        ("F", false),
        ("false", false),
        ("False", false),
        ("FALSE", false),
    ] {
        let record = parse_one(format!("m b={text}").as_bytes());
        assert_eq!(record.fields[0].value, FieldValue::Bool(value), "{text}");
    }
    assert_eq!(reason(b"m b=tRUE"), LineErrorReason::InvalidFieldValue);
}

#[test]
fn integer_ranges_are_checked() {
    assert_eq!(parse_one(b"m v=9223372036854775807i").fields[0].value, FieldValue::Int(i64::MAX));
    assert_eq!(parse_one(b"m v=-9223372036854775808i").fields[0].value, FieldValue::Int(i64::MIN));
    assert_eq!(reason(b"m v=9223372036854775808i"), LineErrorReason::IntegerOutOfRange);
    assert_eq!(parse_one(b"m v=18446744073709551615u").fields[0].value, FieldValue::UInt(u64::MAX));
    assert_eq!(reason(b"m v=18446744073709551616u"), LineErrorReason::IntegerOutOfRange);
    assert_eq!(reason(b"m v=-1u"), LineErrorReason::InvalidFieldValue);
    assert_eq!(reason(b"m v=+1i"), LineErrorReason::InvalidFieldValue);
    assert_eq!(reason(b"m v=1.5i"), LineErrorReason::InvalidFieldValue);
}

#[test]
fn stop_tables_match_the_grammar() {
    for element in [Element::Measurement, Element::TagKey, Element::TagValue, Element::FieldKey] {
        for b in 0..=255u8 {
            let expected = element.is_terminator(b) || b == b'\\';
            assert_eq!(element.stop_bytes().contains(b), expected, "byte {b:#04x}");
        }
    }
    for b in 0..=255u8 {
        assert_eq!(VALUE_STOP.contains(b), matches!(b, b',' | b' ' | b'\n' | b'\r'));
        assert_eq!(TIMESTAMP_STOP.contains(b), matches!(b, b' ' | b'\t' | b'\r' | b'\n'));
    }
}

#[test]
fn hand_written_integers_match_str_parse() {
    let tokens: &[&[u8]] = &[
        b"0",
        b"-0",
        b"007",
        b"-",
        b"",
        b"+1",
        b"1-",
        b"12a",
        b"9223372036854775807",
        b"9223372036854775808",
        b"-9223372036854775808",
        b"-9223372036854775809",
        b"18446744073709551615",
        b"18446744073709551616",
        b"99999999999999999999999x",
        b"1 ",
        b"--1",
        b"\xff1",
    ];
    for &token in tokens {
        let text = std::str::from_utf8(token).unwrap_or("x");
        let signed = if !is_integer_literal(token) {
            IntLiteral::Invalid
        } else {
            text.parse::<i64>().map_or(IntLiteral::OutOfRange, IntLiteral::Value)
        };
        assert_eq!(parse_signed(token), signed, "{token:?}");
        let unsigned = if token.first() == Some(&b'-') || !is_integer_literal(token) {
            IntLiteral::Invalid
        } else {
            text.parse::<u64>().map_or(IntLiteral::OutOfRange, IntLiteral::Value)
        };
        assert_eq!(parse_digits(token), unsigned, "{token:?}");
    }
}

#[test]
fn eight_digit_swar_matches_bytewise() {
    assert_eq!(eight_digits(*b"00000000"), Some(0));
    assert_eq!(eight_digits(*b"12345678"), Some(12_345_678));
    assert_eq!(eight_digits(*b"99999999"), Some(99_999_999));
    assert_eq!(eight_digits(*b"1234567/"), None);
    assert_eq!(eight_digits(*b":2345678"), None);
    for bad in [b'/', b':', b' ', b'-', 0x00, 0x80, 0xfa, 0xff, b'a', b'i'] {
        for at in 0..8 {
            let mut bytes = *b"12345678";
            bytes[at] = bad;
            assert_eq!(eight_digits(bytes), None, "{bytes:?}");
        }
    }
}

#[test]
fn short_decimal_fast_path_is_exact() {
    let tokens = [
        "0",
        "-0",
        "0.0",
        "-0.0",
        "5.",
        ".5",
        "-.5",
        "1.25",
        "95.5",
        "0.1",
        "0.3",
        "42.7",
        "123456789012345",
        "12345678901234.5",
        "0.000000000000001",
        "999999999999999",
        "-999999999999999",
        "9007199254740993",
        "1234567890123456",
        "1.7976931348623157",
        "2.2250738585072014",
        "0.1234567890123",
    ];
    for token in tokens {
        let expected: f64 = token.parse().expect("valid float");
        match parse_short_decimal(token.as_bytes()) {
            Some(v) => assert_eq!(v.to_bits(), expected.to_bits(), "{token}"),
            None => assert!(token.bytes().filter(u8::is_ascii_digit).count() > 15, "{token}"),
        }
    }
    for token in ["", "-", ".", "1..2", "1e5", "1.5e3", "nan", "inf", "-x", "1-"] {
        assert_eq!(parse_short_decimal(token.as_bytes()), None, "{token}");
    }
}

#[test]
fn invalid_floats_are_rejected() {
    assert_eq!(reason(b"m v=NaN"), LineErrorReason::InvalidFieldValue);
    assert_eq!(reason(b"m v=inf"), LineErrorReason::InvalidFieldValue);
    assert_eq!(reason(b"m v=1e"), LineErrorReason::InvalidFieldValue);
    assert_eq!(reason(b"m v=1..2"), LineErrorReason::InvalidFieldValue);
    assert_eq!(reason(b"m v=-"), LineErrorReason::InvalidFieldValue);
    assert_eq!(reason(b"m v=."), LineErrorReason::InvalidFieldValue);
    assert_eq!(reason(b"m v=1e999"), LineErrorReason::FloatOutOfRange);
}

#[test]
fn escapes_in_identifiers() {
    let record = parse_one(br"my\ meas\,ure=x,tag\ key\,\==tag\ val\,\= field\ k\,\==1i");
    //                        ^ measurement: `\ ` and `\,` escaped, `=` literal
    //                                       ^ tag key / value: `\ ` `\,` `\=`
    assert_eq!(record.measurement, "my meas,ure=x");
    assert_eq!(record.tags, vec![tag("tag key,=", "tag val,=")]);
    assert_eq!(record.fields, vec![field("field k,=", FieldValue::Int(1))]);
    assert!(matches!(record.measurement, Cow::Owned(_)) || record.measurement == "my meas,ure=x");
}

#[test]
fn backslashes_follow_influx_rules() {
    // `\\` is one backslash; a backslash before a non-escapable byte is literal.
    let record = parse_one(br"a\\b,t=x\y v=1");
    assert_eq!(record.measurement, r"a\b");
    assert_eq!(record.tags, vec![tag("t", r"x\y")]);
    // `\=` is not an escape in a measurement.
    assert_eq!(parse_one(br"m\=x v=1").measurement, r"m\=x");
    // A trailing `\\` then a separator: the separator still separates.
    assert_eq!(parse_one(br"m,t=x\\ v=1").tags, vec![tag("t", r"x\")]);
}

#[test]
fn string_field_escapes_and_specials() {
    let record = parse_one(br#"m s="a \"quoted\" \\ back, comma = eq \n kept""#);
    assert_eq!(record.fields[0].value, FieldValue::Str(r#"a "quoted" \ back, comma = eq \n kept"#.into()));
}

#[test]
fn unescaped_text_is_borrowed() {
    let body = b"cpu,host=a v=1,s=\"x\"".to_vec();
    let mut parser = LineProtocolParser::new();
    struct CheckBorrowed;
    impl RecordSink for CheckBorrowed {
        fn push(&mut self, r: &RecordRef<'_, '_>) -> Result<(), SinkFull> {
            assert!(matches!(r.measurement, Cow::Borrowed(_)));
            assert!(r.tags.iter().all(|t| matches!((&t.key, &t.value), (Cow::Borrowed(_), Cow::Borrowed(_)))));
            assert!(matches!(r.fields[1].value, FieldValue::Str(Cow::Borrowed(_))));
            Ok(())
        }
    }
    let summary = parser.parse_into(&body, Precision::Nanoseconds, NOW, &mut CheckBorrowed);
    assert_eq!(summary.records, 1);
}

#[test]
fn newline_inside_string_stays_in_the_record() {
    let (records, summary) = parse_all(b"m s=\"two\nlines\" 1\nbad\nm v=2");
    //                                   ^ line 1-2: one record   ^ line 3: bad ^ line 4
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].fields[0].value, FieldValue::Str("two\nlines".into()));
    assert_eq!(summary.first_error, Some(LineError { line: 3, reason: LineErrorReason::MissingFields }));
}

#[test]
fn comments_blank_lines_and_crlf() {
    let body = b"# a comment\r\n\r\n  \n\tcpu v=1 10\r\nmem v=2\r\n# trailing comment";
    let (records, summary) = parse_all(body);
    assert_eq!(summary.invalid, 0);
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].timestamp_ns, 10);
    assert_eq!(records[1].measurement, "mem");
}

#[test]
fn trailing_whitespace_ok_garbage_not() {
    assert_eq!(parse_one(b"m v=1 5  \t").timestamp_ns, 5);
    assert_eq!(parse_one(b"m v=1 ").timestamp_ns, NOW);
    assert_eq!(reason(b"m v=1 5 6"), LineErrorReason::TrailingGarbage);
    assert_eq!(reason(b"m v=1 5x"), LineErrorReason::InvalidTimestamp);
    assert_eq!(reason(b"m s=\"x\"y"), LineErrorReason::GarbageAfterString);
    assert_eq!(reason(b"m v=1\rx"), LineErrorReason::TrailingGarbage);
}

#[test]
fn structural_errors() {
    assert_eq!(reason(b"m"), LineErrorReason::MissingFields);
    assert_eq!(reason(b"m "), LineErrorReason::MissingFields);
    assert_eq!(reason(b"m,t=1"), LineErrorReason::MissingFields);
    assert_eq!(reason(b",t=1 v=1"), LineErrorReason::EmptyMeasurement);
    assert_eq!(reason(b" v=1"), LineErrorReason::MissingFields);
    assert_eq!(reason(b"m,=1 v=1"), LineErrorReason::EmptyTagKey);
    assert_eq!(reason(b"m,t= v=1"), LineErrorReason::MissingTagValue);
    assert_eq!(reason(b"m,t v=1"), LineErrorReason::TagWithoutEquals);
    assert_eq!(reason(b"m,t=a=b v=1"), LineErrorReason::UnescapedEqualsInTagValue);
    assert_eq!(reason(b"m =1"), LineErrorReason::EmptyFieldKey);
    assert_eq!(reason(b"m v"), LineErrorReason::FieldWithoutEquals);
    assert_eq!(reason(b"m v="), LineErrorReason::MissingFieldValue);
    assert_eq!(reason(b"m v=1,"), LineErrorReason::EmptyFieldKey);
    assert_eq!(reason(b"m s=\"open"), LineErrorReason::UnterminatedString);
    assert_eq!(reason(b"m s=\"ends in escape\\\""), LineErrorReason::UnterminatedString);
    assert_eq!(reason(b"m\\"), LineErrorReason::MissingFields);
    assert_eq!(reason(b"m\xff v=1"), LineErrorReason::InvalidUtf8);
}

#[test]
fn precision_scales_with_overflow_checks() {
    let mut parser = LineProtocolParser::new();
    for (precision, expected) in [
        (Precision::Nanoseconds, 7),
        (Precision::Microseconds, 7_000),
        (Precision::Milliseconds, 7_000_000),
        (Precision::Seconds, 7_000_000_000),
        (Precision::Minutes, 420_000_000_000),
        (Precision::Hours, 25_200_000_000_000),
    ] {
        let mut records = Vec::new();
        let _ = parser.parse_into(b"m v=1 7", precision, NOW, &mut records);
        assert_eq!(records[0].timestamp_ns, expected, "{precision}");
    }
    assert_eq!(parser.validate(b"m v=1 -7", Precision::Seconds, NOW), Ok(1));
    let err = parser.validate(b"m v=1 9223372036854775807", Precision::Seconds, NOW).unwrap_err();
    assert_eq!(err.first_reason, LineErrorReason::TimestampOutOfRange);
    let err = parser.validate(b"m v=1 99999999999999999999", Precision::Nanoseconds, NOW).unwrap_err();
    assert_eq!(err.first_reason, LineErrorReason::TimestampOutOfRange);
    assert_eq!("us".parse::<Precision>(), Ok(Precision::Microseconds));
    assert_eq!(Precision::from_query_value("u"), Some(Precision::Microseconds));
    assert!("x".parse::<Precision>().is_err());
}

#[test]
fn validate_reports_first_bad_line_and_count() {
    let mut parser = LineProtocolParser::new();
    let body = b"ok v=1\nbad\nok v=2\n\nm v=zz\nok v=3\n";
    let err = parser.validate(body, Precision::Nanoseconds, NOW).unwrap_err();
    assert_eq!(
        err,
        BatchError { first_line: 2, first_reason: LineErrorReason::MissingFields, bad_lines: 2, valid_lines: 3 }
    );
    assert_eq!(err.to_string(), "line 2: missing fields (2 invalid line(s), 3 valid)");
    assert_eq!(parser.validate(b"a v=1\nb v=2", Precision::Nanoseconds, NOW), Ok(2));
}

#[test]
fn lenient_mode_keeps_valid_lines() {
    let (records, summary) = parse_all(b"a v=1\nb\nc v=3\nd v=x\n");
    assert_eq!(records.len(), 2);
    assert_eq!((summary.records, summary.invalid), (2, 2));
}

#[test]
fn sink_full_stops_and_resumes() {
    struct Room(usize, Vec<Record>);
    impl RecordSink for Room {
        fn push(&mut self, r: &RecordRef<'_, '_>) -> Result<(), SinkFull> {
            if self.1.len() == self.0 {
                return Err(SinkFull);
            }
            self.1.push(r.to_owned_record());
            Ok(())
        }
    }
    let body = b"a v=1\nb v=2\nbad\nc v=3\n";
    let mut parser = LineProtocolParser::new();
    let mut sink = Room(1, Vec::new());
    let first = parser.parse_into(body, Precision::Nanoseconds, NOW, &mut sink);
    assert_eq!(first.records, 1);
    let resume = first.resume_at.expect("stopped");
    assert_eq!(resume, BodyPosition { offset: 6, line: 2 });
    sink.0 = 10;
    let second = parser.parse_from(body, resume, Precision::Nanoseconds, NOW, &mut sink);
    assert_eq!((second.records, second.invalid, second.resume_at), (2, 1, None));
    assert_eq!(second.first_error, Some(LineError { line: 3, reason: LineErrorReason::MissingFields }));
    let names: Vec<_> = sink.1.iter().map(|r| r.measurement.to_string()).collect();
    assert_eq!(names, ["a", "b", "c"]);
}

#[test]
fn limits_bound_tags_and_fields() {
    let mut parser =
        LineProtocolParser::with_limits(LineProtocolLimits { max_tags_per_line: 2, max_fields_per_line: 2 });
    let err = parser.validate(b"m,a=1,b=2,c=3 v=1", Precision::Nanoseconds, NOW).unwrap_err();
    assert_eq!(err.first_reason, LineErrorReason::TooManyTags);
    let err = parser.validate(b"m a=1,b=2,c=3", Precision::Nanoseconds, NOW).unwrap_err();
    assert_eq!(err.first_reason, LineErrorReason::TooManyFields);
}

#[test]
fn scratch_allocations_are_reused_across_bodies() {
    let mut parser = LineProtocolParser::new();
    let _ = parser.validate(b"m,a=1,b=2 v=1,w=2", Precision::Nanoseconds, NOW);
    let (tags_ptr, fields_ptr) = (parser.tags.as_ptr(), parser.fields.as_ptr());
    assert!(parser.tags.capacity() >= 2 && parser.fields.capacity() >= 2);
    let body = String::from("m,a=1,b=2 v=1,w=2");
    let _ = parser.validate(body.as_bytes(), Precision::Nanoseconds, NOW);
    assert_eq!((parser.tags.as_ptr(), parser.fields.as_ptr()), (tags_ptr, fields_ptr));
}

#[test]
fn encoder_escapes_and_round_trips_examples() {
    let record = Record {
        measurement: Cow::Borrowed("we ird,m=\\"),
        tags: vec![tag("k ,=", "v\\ ,="), tag("z", "1")],
        fields: vec![
            field("f ,=\\", FieldValue::Str("q\"b\\s\nl".into())),
            field("i", FieldValue::Int(-3)),
            field("u", FieldValue::UInt(3)),
            field("x", FieldValue::Float(1e-7)),
            field("y", FieldValue::Float(2.0)),
            field("b", FieldValue::Bool(false)),
        ],
        timestamp_ns: -5,
    };
    let mut out = Vec::new();
    write_line_protocol(&record.as_ref(), &mut out).expect("encodable");
    assert_eq!(
        String::from_utf8_lossy(&out),
        "we\\ ird\\,m=\\\\,k\\ \\,\\==v\\\\\\ \\,\\=,z=1 f\\ \\,\\=\\\\=\"q\\\"b\\\\s\nl\",i=-3i,u=3u,x=1e-7,y=2.0,b=false -5\n"
    );
    assert_eq!(parse_one(&out), record);
}

#[test]
fn encoder_refuses_unrepresentable_records() {
    let mut record = Record {
        measurement: Cow::Borrowed("#m"),
        tags: vec![],
        fields: vec![field("v", FieldValue::Float(1.0))],
        timestamp_ns: 0,
    };
    let mut out = b"keep".to_vec();
    assert_eq!(write_line_protocol(&record.as_ref(), &mut out), Err(EncodeError::AmbiguousMeasurementStart));
    assert_eq!(out, b"keep");
    record.measurement = Cow::Borrowed("m");
    record.fields[0].value = FieldValue::Float(f64::NAN);
    assert_eq!(write_line_protocol(&record.as_ref(), &mut out), Err(EncodeError::NonFiniteFloat));
    record.fields[0].value = FieldValue::Float(1.0);
    record.tags.push(tag("a\nb", "x"));
    assert_eq!(write_line_protocol(&record.as_ref(), &mut out), Err(EncodeError::NewlineInName));
    assert_eq!(out, b"keep");
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn name() -> impl Strategy<Value = String> {
        // Printable text plus every character the escaping rules care about.
        "[a-zA-Z0-9 ,=\\\\\"#\t\r_é.-]{1,12}".prop_filter("encodable", |s| !s.starts_with(['#', '\t']))
    }

    fn field_value() -> impl Strategy<Value = FieldValue<'static>> {
        prop_oneof![
            any::<i64>().prop_map(FieldValue::Int),
            any::<u64>().prop_map(FieldValue::UInt),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(FieldValue::Float),
            any::<bool>().prop_map(FieldValue::Bool),
            "[a-z \"\\\\\n,=\r]{0,12}".prop_map(|s| FieldValue::Str(Cow::Owned(s))),
        ]
    }

    fn record() -> impl Strategy<Value = Record> {
        (
            name(),
            proptest::collection::btree_map("[a-zA-Z0-9 ,=\\\\_\"]{1,8}", name(), 0..5),
            proptest::collection::btree_map("[a-zA-Z0-9 ,=\\\\_\"#]{1,8}", field_value(), 1..6),
            any::<i64>(),
        )
            .prop_map(|(measurement, tags, fields, timestamp_ns)| Record {
                measurement: Cow::Owned(measurement),
                tags: tags.into_iter().map(|(k, v)| tag(&k, &v)).collect(),
                fields: fields.into_iter().map(|(k, v)| field(&k, v)).collect(),
                timestamp_ns,
            })
    }

    proptest! {
        #[test]
        fn word_scan_finds_the_first_stop_byte(
            body in proptest::collection::vec(prop_oneof![any::<u8>(), Just(b','), Just(b'='), Just(b' '), Just(b'\n'), Just(b'\\'), Just(0u8), Just(0x80u8)], 0..40),
            start in 0usize..40,
        ) {
            let sets: [(&StopSet, &[u8]); 4] = [
                (&MEASUREMENT_STOP, b", \n\\"),
                (&KEY_STOP, b",= \n\\"),
                (&VALUE_STOP, b", \n\r"),
                (&TIMESTAMP_STOP, b" \t\r\n"),
            ];
            for (set, bytes) in sets {
                let start = start.min(body.len());
                let mut cursor = Cursor { body: &body, text: None, pos: start, line: 1 };
                cursor.skip_until(set);
                let expected = body[start..].iter().position(|b| bytes.contains(b)).map_or(body.len(), |i| start + i);
                prop_assert_eq!(cursor.pos, expected);
            }
        }

        #[test]
        fn duplicate_fields_keep_the_last_value(keys in proptest::collection::vec("[ab]{1,2}|cc[a-z]", 1..20)) {
            let line: Vec<String> = keys.iter().enumerate().map(|(i, k)| format!("{k}={i}i")).collect();
            let record = parse_one(format!("m {} 1", line.join(",")).as_bytes());
            let mut expected: Vec<(String, i64)> = Vec::new();
            for (i, k) in keys.iter().enumerate() {
                if !keys[i + 1..].contains(k) {
                    expected.push((k.clone(), i as i64));
                }
            }
            let got: Vec<(String, i64)> = record
                .fields
                .iter()
                .map(|f| (f.key.to_string(), match f.value { FieldValue::Int(v) => v, _ => -1 }))
                .collect();
            prop_assert_eq!(got, expected);
        }

        #[test]
        fn sort_tags_matches_a_full_sort(keys in proptest::collection::vec("[ab]{1,3}", 0..20)) {
            let mut tags: Vec<Tag<'static>> = keys.iter().map(|k| tag(k, "v")).collect();
            let mut expected = keys.clone();
            expected.sort();
            let duplicate = expected.windows(2).any(|w| w[0] == w[1]);
            match sort_tags(&mut tags) {
                Ok(()) => {
                    prop_assert!(!duplicate);
                    let sorted: Vec<&str> = tags.iter().map(|t| t.key.as_ref()).collect();
                    prop_assert_eq!(sorted, expected.iter().map(String::as_str).collect::<Vec<_>>());
                }
                Err(reason) => {
                    prop_assert!(duplicate);
                    prop_assert_eq!(reason, LineErrorReason::DuplicateTagKey);
                }
            }
        }

        #[test]
        fn integer_parsing_matches_str_parse(token in "-?[0-9]{0,24}|[0-9 /:a-]{0,24}") {
            let bytes = token.as_bytes();
            let signed = if !is_integer_literal(bytes) {
                IntLiteral::Invalid
            } else {
                token.parse::<i64>().map_or(IntLiteral::OutOfRange, IntLiteral::Value)
            };
            prop_assert_eq!(parse_signed(bytes), signed);
            let unsigned = if bytes.first() == Some(&b'-') || !is_integer_literal(bytes) {
                IntLiteral::Invalid
            } else {
                token.parse::<u64>().map_or(IntLiteral::OutOfRange, IntLiteral::Value)
            };
            prop_assert_eq!(parse_digits(bytes), unsigned);
        }

        #[test]
        fn eight_digits_matches_bytewise(bytes in any::<[u8; 8]>(), digits in 0u64..100_000_000, raw in any::<bool>()) {
            let bytes = if raw { bytes } else { <[u8; 8]>::try_from(format!("{digits:08}").as_bytes()).expect("8") };
            let expected = bytes
                .iter()
                .try_fold(0u64, |acc, &b| b.is_ascii_digit().then(|| acc * 10 + u64::from(b - b'0')));
            prop_assert_eq!(eight_digits(bytes), expected);
        }

        #[test]
        fn short_decimals_match_str_parse(token in "-?[0-9]{0,10}\\.?[0-9]{0,10}") {
            if let Some(v) = parse_short_decimal(token.as_bytes()) {
                let expected: f64 = token.parse().expect("fast path only takes valid floats");
                prop_assert_eq!(v.to_bits(), expected.to_bits());
            }
        }

        #[test]
        fn encode_then_parse_is_identity(records in proptest::collection::vec(record(), 1..4)) {
            let mut body = Vec::new();
            for record in &records {
                write_line_protocol(&record.as_ref(), &mut body).expect("encodable");
            }
            let (parsed, summary) = parse_all(&body);
            prop_assert_eq!(summary.first_error, None);
            prop_assert_eq!(parsed, records);
        }

        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let (records, summary) = parse_all(&body);
            prop_assert_eq!(records.len(), summary.records);
            prop_assert!(summary.records + summary.invalid <= body.len());
        }
    }
}

#[test]
fn auto_precision_reads_each_timestamp_by_magnitude() {
    // 2023-11-14T22:13:20Z in every unit InfluxDB 3's `auto` tells apart.
    let ns = 1_700_000_000_000_000_000;
    for t in [1_700_000_000, 1_700_000_000_000, 1_700_000_000_000_000, ns] {
        assert_eq!(Precision::Auto.to_nanos(t), Some(ns), "{t}");
    }
    assert_eq!(Precision::guess(4_999_999_999), Precision::Seconds);
    assert_eq!(Precision::guess(5_000_000_000), Precision::Milliseconds);
    assert_eq!(Precision::guess(4_999_999_999_999_999), Precision::Microseconds);
    assert_eq!(Precision::guess(5_000_000_000_000_000), Precision::Nanoseconds);
    assert_eq!(Precision::guess(-1_700_000_000), Precision::Seconds, "before 1970 too");
    assert_eq!(Precision::Auto.to_nanos(0), Some(0));
    assert_eq!(Precision::Auto.to_string(), "auto");
}
