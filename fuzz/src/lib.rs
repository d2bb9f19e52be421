//! One checking function per parser, shared by the cargo-fuzz targets
//! (`fuzz_targets/*.rs`, nightly) and the stable smoke test
//! (`tests/parser_fuzz_seeds.rs`, which `#[path]`-includes this file).
//!
//! Each function feeds one input through a parser and panics on anything a
//! parser must never do: panic itself, emit a record that breaks the record
//! invariants (non-empty measurement and fields, tags sorted by key without
//! duplicates), disagree between its validate and parse passes, or (line
//! protocol) emit a record that does not survive encode → parse unchanged.

use metricsstream::ingest::{
    write_line_protocol, JsonBatchError, JsonBatchParser, LineProtocolParser, Precision, Record, RecordRef, RecordSink,
    SinkFull, StatsdParser,
};

const NOW_NS: i64 = 1_700_000_000_000_000_000;

/// Keeps owned copies and checks every record's invariants as it arrives.
#[derive(Default)]
struct CheckingSink {
    records: Vec<Record>,
}

impl RecordSink for CheckingSink {
    fn push(&mut self, record: &RecordRef<'_, '_>) -> Result<(), SinkFull> {
        assert!(!record.measurement.is_empty(), "empty measurement");
        assert!(!record.fields.is_empty(), "no fields");
        assert!(
            record.tags.windows(2).all(|w| w[0].key.as_bytes() < w[1].key.as_bytes()),
            "tags unsorted or duplicated"
        );
        self.records.push(record.to_owned_record());
        Ok(())
    }
}

/// Line protocol: invariants, validate == parse_into, every precision, and
/// encode → parse identity for every record the parser accepted.
pub fn line_protocol(data: &[u8]) {
    let mut parser = LineProtocolParser::new();
    let mut sink = CheckingSink::default();
    let summary = parser.parse_into(data, Precision::Nanoseconds, NOW_NS, &mut sink);
    assert_eq!(summary.records, sink.records.len());
    assert!(summary.resume_at.is_none());
    assert_eq!(summary.invalid == 0, summary.first_error.is_none());
    match parser.validate(data, Precision::Nanoseconds, NOW_NS) {
        Ok(records) => assert_eq!((records, summary.invalid), (summary.records, 0)),
        Err(err) => {
            assert_eq!(Some(err.first_line), summary.first_error.map(|e| e.line));
            assert_eq!((err.bad_lines, err.valid_lines), (summary.invalid, summary.records));
        }
    }
    for precision in [Precision::Seconds, Precision::Hours] {
        let _ = parser.validate(data, precision, NOW_NS);
    }

    let mut encoded = Vec::new();
    for record in &sink.records {
        write_line_protocol(&record.as_ref(), &mut encoded).expect("a parsed record must be encodable");
    }
    let mut reparsed = CheckingSink::default();
    let again = parser.parse_into(&encoded, Precision::Nanoseconds, NOW_NS, &mut reparsed);
    assert_eq!(again.first_error, None, "encoded form of parsed records does not parse");
    assert_eq!(reparsed.records, sink.records, "encode → parse changed a record");
}

/// JSON: invariants, and validate agrees with parse_into.
pub fn json(data: &[u8]) {
    let mut parser = JsonBatchParser::new();
    let mut sink = CheckingSink::default();
    let parsed = parser.parse_into(data, NOW_NS, &mut sink);
    let validated = parser.validate(data, NOW_NS);
    match (parsed, validated) {
        (Ok(p), Ok(v)) => {
            assert_eq!(p, v);
            assert_eq!(p.records, sink.records.len());
        }
        (Err(JsonBatchError::Invalid(p)), Err(JsonBatchError::Invalid(v))) => assert_eq!(p, v),
        (p, v) => panic!("parse_into {p:?} and validate {v:?} disagree"),
    }
}

/// StatsD: invariants and consistent counts.
pub fn statsd(data: &[u8]) {
    let mut parser = StatsdParser::new();
    let mut sink = CheckingSink::default();
    let summary = parser.parse_into(data, NOW_NS, &mut sink);
    assert_eq!(summary.records, sink.records.len());
    assert!(!summary.sink_full);
    assert_eq!(summary.invalid == 0, summary.first_error.is_none());
    assert!(summary.invalid <= data.split(|&b| b == b'\n').count());
}

/// HTTP/1.1: the server connection fed `data` in varying splits, answering
/// every request (see `metricsstream::http::fuzz_connection`), plus routing,
/// query and credential parsing. Must not panic; buffers stay bounded.
pub fn http(data: &[u8]) {
    metricsstream::http::fuzz_connection(data);
    metricsstream::http::fuzz_helpers(data);
}

/// Prometheus remote_write: the input as the body (snappy errors) and, to
/// reach the protobuf decoder, as the snappy-compressed protobuf. Never a
/// panic; every pushed record keeps the invariants and is representable as
/// line protocol; push_into pushes exactly the samples decode counted.
pub fn remote_write(data: &[u8]) {
    use metricsstream::ingest::remote_write::{snappy_block, RemoteWriteDecoder, SamplePosition};
    let mut decoder = RemoteWriteDecoder::new();
    for body in [data.to_vec(), snappy_block(data)] {
        let Ok(summary) = decoder.decode(&body) else { continue };
        let mut sink = CheckingSink::default();
        let pushed = decoder.push_into(SamplePosition::START, &mut sink);
        assert_eq!((pushed.pushed, pushed.resume_at), (summary.samples, None));
        assert_eq!(sink.records.len() as u64, summary.samples);
        let mut line = Vec::new();
        for record in &sink.records {
            write_line_protocol(&record.as_ref(), &mut line).expect("a remote_write record must be encodable");
        }
    }
}
