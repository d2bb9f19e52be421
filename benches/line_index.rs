//! The one-pass line indexer against the previous parser and IOx's crate on
//! the same inputs (criterion; the closing table gives ns/byte, records/s and
//! the ratios the issue sets as goals: new >= 4x previous, >= 10x IOx).
//!
//!     cargo bench --bench line_index -- --warm-up-time 1 --measurement-time 3
//!
//! Inputs: UDP datagrams as `gen-pcap --kind udp-line` makes them (1-3 lines
//! each, `pcap::synth::line_protocol_line`), a 100-line HTTP body from the same
//! generator, and a 100-line body with escapes in every element and strings
//! with quotes, backslashes and commas. Each parser touches every record it
//! produces (a count and a length), so nothing is optimised away.
//!
//! Parsers: "previous" is `LineProtocolParser` as the HTTP path ran it before
//! the one-pass path (`validate` then `parse_into`) and as UDP ran it
//! (`parse_into`), kept as the baseline; "indexer"
//! is `LineIndexer` at each SIMD level this CPU has (the batch mode for HTTP
//! bodies, the lenient mode for datagrams); "iox" is `influxdb_line_protocol::
//! parse_lines` (after the UTF-8 check it needs to get a `&str`).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Mutex;
use std::time::Instant;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput};
use metricsstream::ingest::line_index::LineIndexer;
use metricsstream::ingest::structural::{Classifier, SimdLevel};
use metricsstream::ingest::{LineProtocolLimits, LineProtocolParser, Precision, RecordRef, RecordSink, SinkFull};
use metricsstream::pcap::synth::{line_protocol_line, SplitMix64, TagOrder};

const NOW_NS: i64 = 1_700_000_000_000_000_000;

/// One input: its datagrams (or a single body), total bytes and records.
struct Input {
    name: &'static str,
    bodies: Vec<Vec<u8>>,
    bytes: usize,
    records: usize,
    /// Whole-batch (HTTP) semantics, else per-datagram lenient (UDP).
    http: bool,
}

impl Input {
    fn new(name: &'static str, bodies: Vec<Vec<u8>>, http: bool) -> Input {
        let bytes = bodies.iter().map(Vec::len).sum();
        let records = bodies.iter().map(|b| b.iter().filter(|&&c| c == b'\n').count()).sum();
        Input { name, bodies, bytes, records, http }
    }
}

/// UDP payloads exactly as `gen-pcap --kind udp-line` builds them.
fn udp_datagrams() -> Input {
    let mut rng = SplitMix64::new(7);
    let bodies = (0..1000u64)
        .map(|i| {
            let mut text = String::new();
            for k in 0..1 + rng.below(3) {
                line_protocol_line(&mut rng, NOW_NS as u64 + i * 1_000 + k, TagOrder::Unsorted, &mut text);
            }
            text.into_bytes()
        })
        .collect();
    Input::new("udp datagrams", bodies, false)
}

fn http_body() -> Input {
    let mut rng = SplitMix64::new(11);
    let mut text = String::new();
    for k in 0..100 {
        line_protocol_line(&mut rng, NOW_NS as u64 + k, TagOrder::Unsorted, &mut text);
    }
    Input::new("http 100 lines", vec![text.into_bytes()], true)
}

/// Escapes in every element and strings with quotes, backslashes and commas.
fn escapes_body() -> Input {
    let mut text = String::new();
    for i in 0..100 {
        text.push_str(&format!(
            "web\\ log,host=web{:02},path=/api/v1/items\\,all,query\\=x=a\\ b\\=c status=200i,\
             message=\"GET /items?id={i} \\\"ok\\\" C:\\\\logs\\\\a.txt, 12 ms\",bytes={}u,ok=true,\
             field\\ with\\ space=1.5 {}\n",
            i % 40,
            1000 + i,
            NOW_NS + i
        ));
    }
    Input::new("escapes+strings", vec![text.into_bytes()], true)
}

/// Counts records and touches each (records, bytes).
#[derive(Default)]
struct TouchingSink(usize, usize);

impl RecordSink for TouchingSink {
    fn push(&mut self, record: &RecordRef<'_, '_>) -> Result<(), SinkFull> {
        *self = TouchingSink(self.0 + 1, self.1 + record.measurement.len() + record.fields.len());
        Ok(())
    }
}

/// Per (input, parser): the per-pass times of every timed batch criterion ran.
static TIMES: Mutex<BTreeMap<(String, String), Vec<f64>>> = Mutex::new(BTreeMap::new());

/// Checks one pass, then either profiles (`LINE_INDEX_PASSES=N` and an
/// optional `LINE_INDEX_ONLY="input/parser"` prefix: N untimed passes, for perf
/// or callgrind) or hands the pass to criterion, keeping every sample's time.
fn register(group: &mut BenchmarkGroup<'_, WallTime>, input: &Input, parser: &str, mut pass: impl FnMut() -> usize) {
    if let Some(passes) = std::env::var("LINE_INDEX_PASSES").ok().and_then(|n| n.parse::<u64>().ok()) {
        let id = format!("{}/{parser}", input.name);
        if std::env::var("LINE_INDEX_ONLY").map_or(true, |only| id.starts_with(&only)) {
            let records: usize = (0..passes).map(|_| pass()).sum();
            println!("{id}: {passes} passes, {records} records, {} bytes", passes as usize * input.bytes);
        }
        return;
    }
    assert_eq!(pass(), input.records, "{parser} on {}", input.name);
    let key = (input.name.to_string(), parser.to_string());
    group.bench_function(parser, |b| {
        b.iter_custom(|iterations| {
            let started = Instant::now();
            for _ in 0..iterations {
                black_box(pass());
            }
            let elapsed = started.elapsed();
            if let Ok(mut times) = TIMES.lock() {
                times.entry(key.clone()).or_default().push(elapsed.as_secs_f64() / iterations as f64);
            }
            elapsed
        })
    });
}

fn bench_input(c: &mut Criterion, input: &Input) {
    let mut group = c.benchmark_group(input.name);
    group.throughput(Throughput::Bytes(input.bytes as u64));

    let mut previous = LineProtocolParser::new();
    if input.http {
        let mut pass = || {
            let mut sink = TouchingSink::default();
            for body in &input.bodies {
                let valid = previous.validate(black_box(body), Precision::Nanoseconds, NOW_NS).unwrap_or(0);
                let summary = previous.parse_into(body, Precision::Nanoseconds, NOW_NS, &mut sink);
                assert_eq!(valid, summary.records);
            }
            black_box(sink.1);
            sink.0
        };
        register(&mut group, input, "previous validate+parse", &mut pass);
    }
    let pass = || {
        let mut sink = TouchingSink::default();
        for body in &input.bodies {
            let _ = previous.parse_into(black_box(body), Precision::Nanoseconds, NOW_NS, &mut sink);
        }
        black_box(sink.1);
        sink.0
    };
    register(&mut group, input, "previous parse_into", pass);

    for level in SimdLevel::available() {
        let Some(classifier) = Classifier::with_level(level) else { continue };
        let mut indexer = LineIndexer::with_classifier(LineProtocolLimits::default(), classifier);
        let name = format!("indexer {}", level.name());
        let pass = || {
            let (mut records, mut bytes) = (0usize, 0usize);
            for body in &input.bodies {
                let on_line = |line: &metricsstream::ingest::line_index::IndexedLine<'_, '_>| {
                    records += 1;
                    bytes += line.bytes().len() + line.field_count();
                    true
                };
                if input.http {
                    let _ = indexer.index_batch(black_box(body), Precision::Nanoseconds, NOW_NS, on_line);
                } else {
                    let _ = indexer.index_lenient(black_box(body), Precision::Nanoseconds, NOW_NS, on_line);
                }
            }
            black_box(bytes);
            records
        };
        register(&mut group, input, &name, pass);
    }

    let pass = || {
        let (mut records, mut fields) = (0usize, 0usize);
        for body in &input.bodies {
            let Ok(text) = std::str::from_utf8(black_box(body)) else { continue };
            for line in influxdb_line_protocol::parse_lines(text).flatten() {
                records += 1;
                fields += line.field_set.len();
            }
        }
        black_box(fields);
        records
    };
    register(&mut group, input, "iox parse_lines", pass);
    group.finish();
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// ns/byte, records/s and the goal ratios, from the medians of criterion's samples.
fn print_table(inputs: &[Input]) {
    let Ok(mut times) = TIMES.lock() else { return };
    if times.is_empty() {
        return;
    }
    println!(
        "\n{:<16} {:<26} {:>9} {:>12} {:>11} {:>11}",
        "input", "parser", "ns/byte", "records/s", "vs prev", "vs iox"
    );
    for input in inputs {
        let mut median_of =
            |parser: &str| times.get_mut(&(input.name.to_string(), parser.to_string())).map(|v| median(v));
        let previous = median_of(if input.http { "previous validate+parse" } else { "previous parse_into" });
        let iox = median_of("iox parse_lines");
        let mut parsers = vec!["previous validate+parse".to_string(), "previous parse_into".to_string()];
        parsers.extend(SimdLevel::available().map(|l| format!("indexer {}", l.name())));
        parsers.push("iox parse_lines".to_string());
        for parser in parsers {
            let Some(secs) = median_of(&parser) else { continue };
            let ratio = |base: Option<f64>| base.map_or("-".to_string(), |b| format!("{:.2}x", b / secs));
            println!(
                "{:<16} {:<26} {:>9.3} {:>12.0} {:>11} {:>11}",
                input.name,
                parser,
                secs * 1e9 / input.bytes as f64,
                input.records as f64 / secs,
                ratio(previous),
                ratio(iox)
            );
        }
    }
    println!("(vs prev: the previous parser as this path runs it today; medians of criterion's samples)");
}

fn main() {
    let inputs = [udp_datagrams(), http_body(), escapes_body()];
    let mut criterion = Criterion::default().configure_from_args();
    for input in &inputs {
        bench_input(&mut criterion, input);
    }
    criterion.final_summary();
    print_table(&inputs);
}
