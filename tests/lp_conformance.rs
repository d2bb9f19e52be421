//! Differential test of the line indexer (`ingest::line_index`) against
//! InfluxDB IOx's parser (the `influxdb-line-protocol` crate, dev-dependency
//! only): on generated valid and near-valid lines and on a fixed table of
//! tricky cases, both must agree on accept/reject and, when both accept, on the
//! measurement, every tag, every field (type and value) and the timestamp.
//!
//! Where we differ on purpose, the case is in [`KNOWN_DIFFERENCES`] with its
//! reason, and both sides' behaviour is asserted there (so a change on either
//! side shows up). The generator of the agreement test does not produce those
//! classes of input. The reference for our side is InfluxDB's line-protocol
//! documentation and its Go decoder (`influxdata/line-protocol/v2`).
//!
//! IOx's `parse_lines` leaves duplicate tag keys to its `Series::generate_base`
//! (which refuses them); the comparison applies it, so duplicate tags are an
//! agreement, not a difference.

use std::fmt::Write as _;

use influxdb_line_protocol as iox;
use metricsstream::ingest::line_index::{BodySummary, LineIndexer};
use metricsstream::ingest::{FieldValue, LineErrorReason, Precision};
use proptest::prelude::*;

const NOW: i64 = 1_700_000_000_000_000_000;

/// One accepted record, as both parsers can describe it.
#[derive(Clone, Debug, PartialEq)]
struct Canon {
    measurement: String,
    tags: Vec<(String, String)>,
    fields: Vec<(String, Value)>,
    timestamp: Option<i64>,
}

#[derive(Clone, Debug, PartialEq)]
enum Value {
    Float(u64),
    Int(i64),
    UInt(u64),
    Bool(bool),
    Str(String),
}

/// Accepted records in order, and the number of rejected lines.
type Outcome = (Vec<Canon>, usize);

/// Our accepted records with their line numbers, and the summary.
fn ours_by_line(body: &str) -> (Vec<(usize, Canon)>, BodySummary) {
    let mut records = Vec::new();
    let summary = LineIndexer::new().index_lenient(body.as_bytes(), Precision::Nanoseconds, NOW, |line| {
        let canon = Canon {
            measurement: line.measurement().unescaped().into_owned(),
            tags: line.tags().map(|(k, v)| (k.unescaped().into_owned(), v.unescaped().into_owned())).collect(),
            fields: line
                .fields()
                .map(|f| {
                    let value = match f.value() {
                        FieldValue::Float(v) => Value::Float(v.to_bits()),
                        FieldValue::Int(v) => Value::Int(v),
                        FieldValue::UInt(v) => Value::UInt(v),
                        FieldValue::Bool(v) => Value::Bool(v),
                        FieldValue::Str(s) => Value::Str(s.into_owned()),
                    };
                    (f.key.unescaped().into_owned(), value)
                })
                .collect(),
            timestamp: line.flags().had_timestamp().then_some(line.timestamp_ns()),
        };
        records.push((line.line_number(), canon));
        true
    });
    (records, summary)
}

fn ours(body: &str) -> Outcome {
    let (records, summary) = ours_by_line(body);
    (records.into_iter().map(|(_, canon)| canon).collect(), summary.bad_lines)
}

/// Our verdict on the first line of `body` (`None`: no line at all).
fn ours_first(body: &str) -> Option<Result<Canon, LineErrorReason>> {
    let (records, summary) = ours_by_line(body);
    let first_bad = summary.first_error.map_or(usize::MAX, |e| e.line);
    match (records.into_iter().next(), summary.first_error) {
        (Some((line, canon)), _) if line < first_bad => Some(Ok(canon)),
        (_, Some(error)) => Some(Err(error.reason)),
        _ => None,
    }
}

/// The unescaped-separator class of [`KNOWN_DIFFERENCES`]: we refused the line
/// at a `,` in a key or a `=` in a tag value that IOx read as part of the text.
fn iox_kept_an_unescaped_separator(
    ours: &Option<Result<Canon, LineErrorReason>>,
    iox: &Option<Result<Canon, ()>>,
) -> bool {
    use LineErrorReason::*;
    let (Some(Err(reason)), Some(Ok(record))) = (ours, iox) else { return false };
    matches!(reason, TagWithoutEquals | FieldWithoutEquals | UnescapedEqualsInTagValue | EmptyFieldKey | EmptyTagKey)
        && (record.tags.iter().any(|(k, v)| k.contains(',') || v.contains('='))
            || record.fields.iter().any(|(k, _)| k.contains(',')))
}

fn iox(body: &str) -> Outcome {
    let mut records = Vec::new();
    let mut bad = 0;
    for line in iox::parse_lines(body) {
        match iox_canon(line) {
            Ok(canon) => records.push(canon),
            Err(()) => bad += 1,
        }
    }
    (records, bad)
}

/// One IOx result as a record; duplicate tag keys refused as IOx's
/// `generate_base` (its series key) refuses them.
fn iox_canon(line: iox::Result<iox::ParsedLine<'_>>) -> Result<Canon, ()> {
    let line = line.map_err(|_| ())?;
    let canon = Canon {
        measurement: line.series.measurement.to_string(),
        tags: line.series.tag_set.iter().flatten().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        fields: line
            .field_set
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    iox::FieldValue::F64(v) => Value::Float(v.to_bits()),
                    iox::FieldValue::I64(v) => Value::Int(*v),
                    iox::FieldValue::U64(v) => Value::UInt(*v),
                    iox::FieldValue::Boolean(v) => Value::Bool(*v),
                    iox::FieldValue::String(s) => Value::Str(s.to_string()),
                };
                (k.to_string(), value)
            })
            .collect(),
        timestamp: line.timestamp,
    };
    line.series.generate_base().map_err(|_| ())?;
    Ok(canon)
}

/// IOx's verdict on the first line of `body`.
fn iox_first(body: &str) -> Option<Result<Canon, ()>> {
    iox::parse_lines(body).next().map(iox_canon)
}

/// A compact rendering for the fixed table: `m,k=v f=I(1) 5`, `-` for a rejected line.
fn render(outcome: &Outcome) -> String {
    let mut out = String::new();
    for record in &outcome.0 {
        out.push_str(&record.measurement);
        for (k, v) in &record.tags {
            let _ = write!(out, ",{k}={v}");
        }
        let fields: Vec<String> = record
            .fields
            .iter()
            .map(|(k, v)| match v {
                Value::Float(bits) => format!("{k}=F({})", f64::from_bits(*bits)),
                Value::Int(i) => format!("{k}=I({i})"),
                Value::UInt(u) => format!("{k}=U({u})"),
                Value::Bool(b) => format!("{k}=B({b})"),
                Value::Str(s) => format!("{k}=S({s:?})"),
            })
            .collect();
        let _ = write!(out, " {}", fields.join(","));
        if let Some(ts) = record.timestamp {
            let _ = write!(out, " {ts}");
        }
        out.push('\n');
    }
    for _ in 0..outcome.1 {
        out.push_str("-\n");
    }
    out
}

fn assert_agree(body: &str) {
    let (a, b) = (ours(body), iox(body));
    assert_eq!(a, b, "body {body:?}\nours:\n{}iox:\n{}", render(&a), render(&b));
}

/// Tricky inputs on which both parsers must agree.
const AGREED: &[&str] = &[
    "cpu,host=a,region=eu usage=1.5,count=3i,big=7u,ok=t,msg=\"hi\" 1700000000000000001",
    "m f=1",
    "m f=1 123 ",
    "m  f=1   123",
    "m,t=1  f=1",
    "  m f=1",
    "\tm f=1",
    "# comment\nm f=1\n\n#another \"quoted\nm f=2",
    r"a\,b\ c f=1",
    r"a\=b f=1",
    r"m,k\ \,\==v\ \,\= f\ \,\==1",
    r"m,t=\a f=1",
    r"m\a,t=v f=1",
    "m,t=a\"b f=1",
    "m=x f=1",
    "m \"f\"=1",
    r#"m s="a\"b" 1"#,
    r#"m s="a\\b" 1"#,
    r#"m s="a\b" 1"#,
    r#"m s="" 1"#,
    "m s=\"a\nb\",g=2i 1\nm f=3",
    "m s=\"a,b c=d\" 1",
    "m s=\"\t\x01\x7f\" 1",
    "m f=9223372036854775807i,g=-9223372036854775808i,h=18446744073709551615u",
    "m f=9223372036854775808i",
    "m f=18446744073709551616u",
    "m f=-1u",
    "m f=1e5,g=1E-5,h=1.5e+3,i=-0,j=007,k=1.7976931348623157e308",
    "m f=t,g=T,h=true,i=True,j=TRUE,k=f,l=F,m=false,n=False,o=FALSE",
    "m f=tru",
    "m f=truex",
    "m f=NaN",
    "m f=inf",
    "m f=+1",
    "m f=1.2.3",
    "m f=1e",
    "m f=0x10",
    "m f=1 -1",
    "m f=1 9223372036854775807",
    "m f=1 -9223372036854775808",
    "m f=1 9223372036854775808",
    "m f=1 12a",
    "m f=1 1.5",
    "m f=1 1 2",
    "m f=1\t1",
    "m f=1 1\t",
    "m\tx f=1",
    "m,t=a\tb f=1",
    "m",
    "m ",
    "m,t=1",
    ",t=1 f=1",
    "m,=1 f=1",
    "m, f=1",
    "m,t f=1",
    "m,t= f=1",
    "m,t=1, f=1",
    "m =1",
    "m f",
    "m f=",
    "m f= 1",
    "m s=\"abc",
    "m s=\"abc\"x",
    "m s=\"abc\\\"",
    "m,t=1,t=2 f=1",
    "m,b=1,a=2,b=3 f=1",
    "m,b=1,a=2 f=1,f=2,g=3",
    "m\u{e9},t=\u{2603} f=\"\u{1f600}\" 1",
    "m f=1\nbad\nm f=2",
    "\n\n  \n",
    "",
];

#[test]
fn tricky_cases_agree() {
    for body in AGREED {
        assert_agree(body);
    }
}

/// A case where we differ from IOx on purpose: what each side does and why.
struct Difference {
    input: &'static str,
    /// Our result, rendered (see [`render`]).
    ours: &'static str,
    /// IOx's result, rendered.
    iox: &'static str,
    reason: &'static str,
}

const KNOWN_DIFFERENCES: &[Difference] = &[
    Difference {
        input: r"m,t=a\\b f=1",
        ours: "m,t=a\\\\b f=F(1)\n",
        iox: "m,t=a\\b f=F(1)\n",
        reason: "a backslash escapes only the element's listed characters (InfluxDB's reference and Go decoder); \
                 IOx also reads `\\\\` as one backslash in names",
    },
    Difference {
        input: r"m\\ x f=1",
        ours: "m\\ x f=F(1)\n",
        iox: "-\n",
        reason: "ours: a literal backslash, then `\\ ` escapes the space (measurement `m\\ x`); IOx reads \
                 `\\\\` as one backslash and then refuses a name that ends in one",
    },
    Difference {
        input: r"m,t=a\\,u=b f=1",
        ours: "-\n",
        iox: "-\n",
        reason: "(both refuse, for different reasons) ours: literal `\\`, then `\\,` escapes the comma, so \
                 `u=b` is in the value and its `=` is refused; IOx: `\\\\` is one backslash and a tag value \
                 may not end in one",
    },
    Difference {
        input: "m\x01 f=1",
        ours: "-\n",
        iox: "m\x01 f=F(1)\n",
        reason: "control characters are refused in names (the reference: non-printable characters are not \
                 allowed in measurements, keys and tag values); IOx accepts all but tab, newline and NUL",
    },
    Difference {
        input: "m,t=v\x7f f=1",
        ours: "-\n",
        iox: "m,t=v\x7f f=F(1)\n",
        reason: "DEL is a control character (as above)",
    },
    Difference {
        input: "m,t=a\\\nb f=1",
        ours: "b f=F(1)\n-\n",
        iox: "m,t=a\\\nb f=F(1)\n",
        reason: "a newline always ends a line outside a string; IOx lets a backslash carry it into a tag value",
    },
    Difference {
        input: "m f=1\r\nm f=2\r\n",
        ours: "m f=F(1)\nm f=F(2)\n",
        iox: "-\n-\n",
        reason: "`\\r\\n` ends a line (Windows clients; the Go decoder and today's parser accept it); IOx keeps \
                 the `\\r` as trailing content",
    },
    Difference {
        input: "m\rx f=1",
        ours: "-\n",
        iox: "m\rx f=F(1)\n",
        reason: "a `\\r` that does not end the line is a control character",
    },
    Difference {
        input: "m f=1 ",
        ours: "m f=F(1)\n",
        iox: "-\n",
        reason: "spaces may follow the field set when there is no timestamp (Go decoder, today's parser); IOx \
                 accepts trailing spaces only after a timestamp",
    },
    Difference {
        input: "m a=.5,b=1.,c=-.5,d=1.e2",
        ours: "m a=F(0.5),b=F(1),c=F(-0.5),d=F(100)\n",
        iox: "-\n",
        reason: "a float needs digits on one side of the point only (InfluxDB's Go parsers, today's parser); \
                 IOx wants digits on both sides",
    },
    Difference {
        input: "m f=1e400",
        ours: "-\n",
        iox: "m f=F(inf)\n",
        reason: "a float that overflows is out of range (InfluxDB refuses it); IOx stores infinity",
    },
    Difference {
        input: "m,a,b=1 f=1",
        ours: "-\n",
        iox: "m,a,b=1 f=F(1)\n",
        reason: "an unescaped comma ends a tag key (the reference lists it as needing an escape); IOx reads \
                 it as part of the key",
    },
    Difference {
        input: "m a,b=1",
        ours: "-\n",
        iox: "m a,b=F(1)\n",
        reason: "an unescaped comma ends a field key (as above)",
    },
    Difference {
        input: "m f=1,,g=2",
        ours: "-\n",
        iox: "m f=F(1),,g=F(2)\n",
        reason: "(as above) IOx reads the second comma as the start of the field key `,g`",
    },
    Difference {
        input: "m,t=a=b f=1",
        ours: "-\n",
        iox: "m,t=a=b f=F(1)\n",
        reason: "an unescaped `=` in a tag value is refused (Go decoder, today's parser); IOx keeps it",
    },
    Difference {
        input: "  = \"=1\n",
        ours: "= \"=F(1)\n",
        iox: "-\n",
        reason: "IOx's line splitter (a port of Go's old scanLine) starts counting `=` and `,` at the first \
                 space, leading indentation included, so here it takes the `\"` of the field key `\"` for \
                 an opening quote and the newline for part of a string",
    },
    Difference {
        input: "# a=\"\nm f=1\n\"",
        ours: "m f=F(1)\n-\n",
        iox: "-\n",
        reason: "(same splitter) a `\"` in a comment opens a string for IOx, which then treats the next lines as \
                 one; a comment ends at its newline",
    },
    Difference {
        input: "m f=1,",
        ours: "-\n",
        iox: "m f=F(1)\n",
        reason: "a comma after the last field is refused (Go decoder: no field key after it); IOx's list \
                 parser swallows it when the field set has one field",
    },
    Difference {
        input: "m,t=a f=1\"\nm f=2\n",
        ours: "m f=F(2)\n-\n",
        iox: "-\n",
        reason: "after a bad line we resume on the next physical line (Go decoder); IOx's line splitter \
                 decides quoting before parsing, so a stray quote swallows the following lines",
    },
];

#[test]
fn known_differences_are_as_listed() {
    for case in KNOWN_DIFFERENCES {
        assert_eq!(render(&ours(case.input)), case.ours, "ours on {:?} ({})", case.input, case.reason);
        assert_eq!(render(&iox(case.input)), case.iox, "IOx on {:?} ({})", case.input, case.reason);
    }
}

#[test]
fn control_characters_name_their_reason() {
    let summary = LineIndexer::new().index_lenient(b"m\x01 f=1", Precision::Nanoseconds, NOW, |_| true);
    let error = summary.first_error.expect("a control character in the measurement is refused");
    assert_eq!(error.reason, LineErrorReason::ControlCharacter);
    assert_eq!(error.to_string(), "line 1: control character outside a string field value");
}

#[test]
fn our_limits_are_an_intended_difference() {
    // LineProtocolLimits (256 tags, 1024 fields per line by default) bound the
    // scratch memory; IOx has no such cap.
    let tags: Vec<String> = (0..257).map(|i| format!("t{i:03}=v")).collect();
    let body = format!("m,{} f=1", tags.join(","));
    assert_eq!((ours(&body).0.len(), ours(&body).1), (0, 1));
    assert_eq!((iox(&body).0.len(), iox(&body).1), (1, 0));
}

// ---- the generator ----------------------------------------------------------

/// Name characters both parsers read alike: plain text, escapes of the
/// element's own characters, a backslash before an ordinary character, quotes,
/// UTF-8, and (near-valid) a tab, which both refuse.
fn name(escapable: &'static [u8], ordinary_equals: bool) -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        6 => "[a-zA-Z0-9_.-]{1,4}",
        1 => Just("\u{e9}".to_string()),
        1 => Just("\"".to_string()),
        1 => proptest::sample::select(escapable).prop_map(|c| format!("\\{}", c as char)),
        1 => Just("\\a".to_string()),
        1 => Just(if ordinary_equals { "=" } else { "x" }.to_string()),
        1 => Just("#".to_string()),
        1 => Just("\t".to_string()),
    ];
    // Mostly non-empty; an empty name is a near-valid line.
    prop_oneof![
        20 => proptest::collection::vec(atom, 1..4).prop_map(|atoms| atoms.concat()),
        1 => Just(String::new()),
    ]
}

fn measurement() -> impl Strategy<Value = String> {
    name(b", ", true)
}

fn key_or_tag_value() -> impl Strategy<Value = String> {
    name(b",= ", false)
}

fn string_value() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        6 => "[a-zA-Z0-9 ,=_.-]{1,5}",
        1 => Just("\\\"".to_string()),
        1 => Just("\\\\".to_string()),
        1 => Just("\\n".to_string()),
        1 => Just("\n".to_string()),
        1 => Just("\t\x01\x7f".to_string()),
        1 => Just("\u{2603}".to_string()),
    ];
    proptest::collection::vec(atom, 0..4).prop_map(|atoms| format!("\"{}\"", atoms.concat()))
}

fn number_value() -> impl Strategy<Value = String> {
    prop_oneof![
        (any::<i64>()).prop_map(|v| format!("{v}i")),
        (any::<u64>()).prop_map(|v| format!("{v}u")),
        Just("9223372036854775807i".to_string()),
        Just("-9223372036854775808i".to_string()),
        Just("9223372036854775808i".to_string()),
        Just("18446744073709551615u".to_string()),
        Just("18446744073709551616u".to_string()),
        Just("-0i".to_string()),
        (any::<i32>(), 0u32..1000).prop_map(|(a, b)| format!("{a}.{b}")),
        // |a| < 2.2e9, so exponents up to 298 stay finite (overflow is a known difference).
        (any::<i32>(), -300i32..=298).prop_map(|(a, e)| format!("{a}e{e}")),
        (0u32..100, 0u32..100, -300i32..300).prop_map(|(a, b, e)| format!("{a}.{b}E{e:+}")),
        any::<i32>().prop_map(|v| v.to_string()),
        Just("1.7976931348623157e308".to_string()),
        Just("4.9e-324".to_string()),
    ]
}

fn field_value() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => number_value(),
        2 => proptest::sample::select(&["t", "T", "true", "True", "TRUE", "f", "F", "false", "False", "FALSE"][..])
            .prop_map(str::to_string),
        3 => string_value(),
        // Near-valid.
        1 => proptest::sample::select(
            &["", "abc", "1x", "+1", "1.2.3", "--1", "1e", "0x1", "1i1", "tru", "NaN", "-", "1ii", "\"open"][..]
        )
        .prop_map(str::to_string),
    ]
}

fn timestamp() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just(String::new()),
        3 => any::<i64>().prop_map(|v| format!(" {v}")),
        1 => proptest::sample::select(
            &[" 0", " -1", " 9223372036854775807", " -9223372036854775808", " 9223372036854775808", " 12a",
              " 1.5", " 1 2", "  7  ", " -", "\t5"][..]
        )
        .prop_map(str::to_string),
    ]
}

prop_compose! {
    fn line()(
        measurement in measurement(),
        tags in proptest::collection::vec((key_or_tag_value(), key_or_tag_value()), 0..4),
        fields in proptest::collection::vec((key_or_tag_value(), field_value()), 0..4),
        spaces in prop_oneof![4 => Just(" "), 1 => Just("  "), 1 => Just("")],
        timestamp in timestamp(),
        leading in prop_oneof![8 => Just(""), 1 => Just("  "), 1 => Just("\t")],
    ) -> String {
        let mut line = format!("{leading}{measurement}");
        for (k, v) in tags {
            let _ = write!(line, ",{k}={v}");
        }
        line.push_str(spaces);
        let fields: Vec<String> = fields.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
        line.push_str(&fields.join(","));
        line.push_str(&timestamp);
        line
    }
}

/// A line IOx and we split the same way whatever it holds: no quote outside
/// a well-formed string and no raw newline in a string.
fn splits_alike(line: &str) -> bool {
    !line.contains('"') && !line.contains('\n')
}

/// The inputs of the known differences, which the generator must not make
/// (`\\` in a name, control characters other than tab in a name, `\r`,
/// trailing spaces without a timestamp, `.5`-style floats, overflowing floats,
/// unescaped `,` in keys and `=` in tag values cannot come out of the atoms
/// above; these check the two that can by combination).
fn in_a_known_difference_class(line: &str) -> bool {
    // A backslash atom followed by a backslash atom (`\a` after `\`), or a name
    // ending in `\` followed by its separator, gives `\\`.
    line.contains("\\\\") && !line.contains('"')
        // Trailing spaces after the field set with no timestamp.
        || line.ends_with(' ') && !line.trim_end().rsplit(' ').next().is_some_and(|t| t.parse::<i64>().is_ok())
}

proptest! {
    // About one generated line in five falls in a known-difference class and is skipped.
    #![proptest_config(ProptestConfig { cases: 4096, max_global_rejects: 1 << 16, ..ProptestConfig::default() })]

    #[test]
    fn generated_lines_agree(line in line(), newline in any::<bool>()) {
        prop_assume!(!in_a_known_difference_class(&line));
        let body = if newline { format!("{line}\n") } else { line };
        // IOx's splitter miscounts after leading indentation and in comments (see KNOWN_DIFFERENCES).
        prop_assume!(!(body.trim_start().starts_with('#') || body.starts_with([' ', '\t']))
            || !body.contains('"')
            || !body.contains('\n'));
        // The first line only: what follows a raw newline in a bad line is
        // recovery, where we differ on purpose (see KNOWN_DIFFERENCES).
        let (a, b) = (ours_first(&body), iox_first(&body));
        prop_assume!(!iox_kept_an_unescaped_separator(&a, &b));
        prop_assert_eq!(a.map(|r| r.map_err(|_| ())), b, "body {:?}", body);
    }

    #[test]
    fn generated_bodies_agree(lines in proptest::collection::vec(line(), 1..5)) {
        let lines: Vec<String> =
            lines.into_iter().filter(|l| splits_alike(l) && !in_a_known_difference_class(l)).collect();
        let body = lines.join("\n");
        let (a, b) = (ours(&body), iox(&body));
        prop_assert_eq!(&a, &b, "body {:?}\nours:\n{}iox:\n{}", body, render(&a), render(&b));
    }
}
