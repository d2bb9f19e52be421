//! Parser throughput on realistic bodies: a plain timing loop (no harness), so
//! it builds without nightly or criterion's plotting stack.
//!
//!     cargo bench --bench parsers
//!
//! Prints MB/s and records/s per parser. The sink counts records and touches
//! each one (as the writer's encoder would) so nothing is optimised away.

use std::hint::black_box;
use std::time::{Duration, Instant};

use metricsstream::ingest::{
    JsonBatchParser, LineProtocolParser, Precision, RecordRef, RecordSink, SinkFull, StatsdParser,
};

const NOW_NS: i64 = 1_700_000_000_000_000_000;

#[derive(Default)]
struct TouchingSink {
    records: u64,
    bytes: u64,
}

impl RecordSink for TouchingSink {
    fn push(&mut self, record: &RecordRef<'_, '_>) -> Result<(), SinkFull> {
        self.records += 1;
        self.bytes += (record.measurement.len() + record.tags.len() + record.fields.len()) as u64;
        Ok(())
    }
}

/// 100 telegraf-like lines: cpu (5 tags, 8 fields), mem (4 tags, 6 fields), disk (6 tags, 3 fields).
fn line_protocol_body() -> Vec<u8> {
    let mut body = Vec::new();
    for i in 0..100u64 {
        let ts = 1_700_000_000_000_000_000 + i * 10_000_000_000;
        let line = match i % 3 {
            0 => format!(
                "cpu,cpu=cpu{},dc=eu-west-1,host=web{:02},os=linux,rack=r{} usage_user={}.{},usage_system=1.25,usage_idle=95.5,usage_nice=0,usage_iowait=0.75,usage_irq=0.01,usage_softirq=0.02,usage_steal=0 {ts}\n",
                i % 8, i % 40, i % 5, i % 50, i % 10
            ),
            1 => format!(
                "mem,dc=eu-west-1,host=web{:02},os=linux,rack=r{} active={}i,available=8237481984i,buffered=275611648i,cached=4152164352i,free=1539092480i,used_percent=42.{} {ts}\n",
                i % 40, i % 5, 3_000_000_000 + i, i % 10
            ),
            _ => format!(
                "disk,dc=eu-west-1,device=nvme0n1p{},fstype=ext4,host=web{:02},mode=rw,path=/var/lib/data{} free={}i,used=10737418240i,used_percent=55.5 {ts}\n",
                i % 4, i % 40, i % 4, 100_000_000_000 + i
            ),
        };
        body.extend_from_slice(line.as_bytes());
    }
    body
}

/// UDP-shaped line protocol: 1000 datagrams of 1-3 lines each from the replay
/// generator (`pcap::synth::line_protocol_line`), parsed one datagram per call.
fn line_protocol_datagrams() -> Vec<Vec<u8>> {
    let mut rng = metricsstream::pcap::synth::SplitMix64::new(7);
    (0..1000u64)
        .map(|i| {
            let mut datagram = String::new();
            for _ in 0..=rng.below(3) {
                metricsstream::pcap::synth::line_protocol_line(&mut rng, 1_700_000_000_000_000_000 + i, &mut datagram);
            }
            datagram.into_bytes()
        })
        .collect()
}

fn json_body() -> Vec<u8> {
    let metrics: Vec<String> = (0..100)
        .map(|i| {
            format!(
                r#"{{"name":"http_requests","value":{}.5,"timestamp":{},"tags":{{"service":"api","host":"web{:02}","route":"/v1/items","status":"200","dc":"eu-west-1"}}}}"#,
                i,
                1_700_000_000_000u64 + i,
                i % 40
            )
        })
        .collect();
    format!(r#"{{"client_id":"bench-client","metrics":[{}]}}"#, metrics.join(",")).into_bytes()
}

fn statsd_datagram() -> Vec<u8> {
    let mut datagram = Vec::new();
    for i in 0..20 {
        let line = match i % 4 {
            0 => format!("api.requests:{}|c|@0.5|#service:api,host:web{:02},env:prod\n", i, i),
            1 => format!("api.latency:{}.5:12:13|ms|#service:api,route:/v1/items\n", i),
            2 => format!("queue.depth:{}|g|#queue:ingest\n", i * 3),
            _ => format!("users.online:user{}|s|#env:prod\n", i),
        };
        datagram.extend_from_slice(line.as_bytes());
    }
    datagram
}

fn measure(name: &str, body: &[u8], mut parse_once: impl FnMut(&mut TouchingSink) -> usize) {
    // `cargo bench` passes `--bench`; under `cargo test --all-targets` just smoke-run once.
    if !std::env::args().any(|arg| arg == "--bench") {
        let parsed = parse_once(&mut TouchingSink::default());
        println!("{name}: {parsed} records (run with `cargo bench` for timings)");
        return;
    }
    // Warm up caches and the parsers' scratch space.
    let mut sink = TouchingSink::default();
    for _ in 0..100 {
        parse_once(&mut sink);
    }
    let mut sink = TouchingSink::default();
    let mut iterations = 0u64;
    let mut records = 0u64;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        for _ in 0..100 {
            records += parse_once(&mut sink) as u64;
        }
        iterations += 100;
    }
    let secs = started.elapsed().as_secs_f64();
    black_box(sink.bytes);
    println!(
        "{name:<14} body {:>6} B  {:>8.1} MB/s  {:>6.2} M records/s  ({} records/body)",
        body.len(),
        (body.len() as u64 * iterations) as f64 / secs / 1e6,
        records as f64 / secs / 1e6,
        records / iterations.max(1),
    );
}

fn main() {
    let line_protocol = line_protocol_body();
    let mut lp = LineProtocolParser::new();
    measure("line_protocol", &line_protocol, |sink| {
        let summary = lp.parse_into(black_box(&line_protocol), Precision::Nanoseconds, NOW_NS, sink);
        assert_eq!(summary.invalid, 0);
        summary.records
    });
    measure("lp validate", &line_protocol, |_| {
        black_box(lp.validate(black_box(&line_protocol), Precision::Nanoseconds, NOW_NS)).unwrap_or(0)
    });
    // Reported per pass over all 1000 datagrams (bytes and records are totals).
    let datagrams = line_protocol_datagrams();
    let total: Vec<u8> = datagrams.concat();
    measure("lp datagrams", &total, |sink| {
        let mut records = 0;
        for datagram in &datagrams {
            let summary = lp.parse_into(black_box(datagram), Precision::Nanoseconds, NOW_NS, sink);
            assert_eq!(summary.invalid, 0);
            records += summary.records;
        }
        records
    });

    let json = json_body();
    let mut js = JsonBatchParser::new();
    measure("json", &json, |sink| js.parse_into(black_box(&json), NOW_NS, sink).map_or(0, |summary| summary.records));

    let datagram = statsd_datagram();
    let mut sd = StatsdParser::new();
    measure("statsd", &datagram, |sink| {
        let summary = sd.parse_into(black_box(&datagram), NOW_NS, sink);
        assert_eq!(summary.invalid, 0);
        summary.records
    });
}
