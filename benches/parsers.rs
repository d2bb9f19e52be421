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
use metricsstream::limit::{KeyedLimiter, LimitsConfig};
use metricsstream::pipeline::{UdpConfig, UdpIngest};
use metricsstream::time::Nanos;
use metricsstream::writer::{Batch, Writer, WriterConfig};
use smoltcp::wire::Ipv4Address;
use std::sync::Arc;

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
                metricsstream::pcap::synth::line_protocol_line(
                    &mut rng,
                    1_700_000_000_000_000_000 + i,
                    metricsstream::pcap::synth::TagOrder::Unsorted,
                    &mut datagram,
                );
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

/// A Prometheus remote_write body as a scrape of node_exporter-like targets
/// sends it: 200 series of 6 labels, one sample each.
fn remote_write_request() -> metricsstream::ingest::remote_write::WriteRequest {
    use metricsstream::ingest::remote_write::{Label, Sample, TimeSeries, WriteRequest};
    let label = |name: &str, value: String| Label { name: name.into(), value };
    let names = ["node_cpu_seconds_total", "node_memory_MemFree_bytes", "node_network_receive_bytes_total"];
    WriteRequest {
        timeseries: (0..200)
            .map(|i| TimeSeries {
                labels: vec![
                    label("__name__", names[i % 3].into()),
                    label("cpu", format!("{}", i % 8)),
                    label("instance", format!("node{:02}.example.com:9100", i % 25)),
                    label("job", "node".into()),
                    label("mode", ["idle", "user", "system", "iowait"][i % 4].into()),
                    label("region", "eu-west-1".into()),
                ],
                samples: vec![Sample { value: i as f64 * 1.25, timestamp: 1_700_000_000_000 + i as i64 }],
                exemplars: vec![],
                histograms: vec![],
            })
            .collect(),
    }
}

fn measure(name: &str, body: &[u8], mut parse_once: impl FnMut(&mut TouchingSink) -> usize) {
    // `PARSERS_ONLY=name` runs one measurement (prefix match), e.g. under callgrind.
    if std::env::var("PARSERS_ONLY").is_ok_and(|only| !name.starts_with(&only)) {
        return;
    }
    // `cargo bench` passes `--bench`; under `cargo test --all-targets` just smoke-run once.
    if !std::env::args().any(|arg| arg == "--bench") {
        let parsed = parse_once(&mut TouchingSink::default());
        println!("{name}: {parsed} records (run with `cargo bench` for timings)");
        return;
    }
    // `PARSERS_PASSES=N`: exactly N passes, untimed (instruction counts per pass
    // under `valgrind --tool=callgrind` are then repeatable).
    if let Some(passes) = std::env::var("PARSERS_PASSES").ok().and_then(|n| n.parse::<u64>().ok()) {
        let mut sink = TouchingSink::default();
        let records: u64 = (0..passes).map(|_| parse_once(&mut sink) as u64).sum();
        black_box(sink.bytes);
        println!("{name:<14} {passes} passes, {records} records");
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
    let cpu_started = thread_cpu_ns();
    while started.elapsed() < Duration::from_secs(2) {
        for _ in 0..100 {
            records += parse_once(&mut sink) as u64;
        }
        iterations += 100;
    }
    let secs = started.elapsed().as_secs_f64();
    // CPU time of this thread: what a shared, loaded machine disturbs least.
    let cpu_secs = (thread_cpu_ns() - cpu_started) as f64 / 1e9;
    black_box(sink.bytes);
    println!(
        "{name:<14} body {:>6} B  {:>8.1} MB/s  {:>6.2} M records/s  ({} records/body)  CPU time: {:>6.2} M records/s, {:>6.1} ns/body",
        body.len(),
        (body.len() as u64 * iterations) as f64 / secs / 1e6,
        records as f64 / secs / 1e6,
        records / iterations.max(1),
        records as f64 / cpu_secs / 1e6,
        cpu_secs * 1e9 / iterations.max(1) as f64,
    );
}

fn thread_cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
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

    // The UDP stage's per-datagram work without DPDK or the writer thread:
    // parse into a writer batch (encoding every record), then one limiter
    // decision per datagram keyed by its source address, as `UdpIngest` does.
    let mut batch = Batch::with_budget(1 << 20, 4096);
    measure("lp dgram->batch", &total, |_| {
        let mut records = 0;
        for datagram in &datagrams {
            let mark = batch.mark();
            let summary = lp.parse_into(black_box(datagram), Precision::Nanoseconds, NOW_NS, &mut batch);
            if summary.resume_at.is_some() {
                batch.rollback(mark);
                batch.clear();
                continue;
            }
            records += summary.records;
        }
        records
    });
    // The whole UDP stage, `UdpIngest::on_datagram` (parse, encode, one limiter
    // decision per datagram keyed by its source address, batches to a real
    // writer thread persisting to tmpfs), minus DPDK. Under callgrind use
    // `--separate-threads=yes` and read the main thread.
    let limits = LimitsConfig { default_rate: 1_000_000_000, default_burst: 1_000_000_000, ..LimitsConfig::default() };
    let limiter = Arc::new(KeyedLimiter::new(&limits).expect("valid limits"));
    let dir = tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir()).expect("temp dir");
    let writer_config = WriterConfig { data_dir: dir.path().to_path_buf(), ..WriterConfig::default() };
    let (runtime, mut handles) = Writer::start(writer_config, 1).expect("writer starts");
    let mut udp = UdpIngest::new(UdpConfig::default(), limiter, handles.remove(0));
    let sources: Vec<Ipv4Address> =
        (0..datagrams.len()).map(|i| Ipv4Address::new(198, 18, (i / 250) as u8, (i % 250) as u8)).collect();
    let mut now = Nanos::ZERO;
    measure("udp ingest", &total, |_| {
        let before = udp.counters().records_accepted;
        now = now.plus_ns(1_000);
        for (datagram, &src) in datagrams.iter().zip(&sources) {
            udp.on_datagram(src, 8089, black_box(datagram), now);
        }
        udp.maybe_flush(now);
        (udp.counters().records_accepted - before) as usize
    });
    udp.flush();
    let counters = *udp.counters();
    drop(udp);
    let summary = runtime.shutdown().expect("writer shuts down");
    if counters.records_parsed > 0 {
        println!(
            "udp ingest: {} records parsed, {} written, {} dropped writer-full",
            counters.records_parsed, summary.records_written, counters.records_dropped_writer_full
        );
    }

    let json = json_body();
    let mut js = JsonBatchParser::new();
    measure("json", &json, |sink| js.parse_into(black_box(&json), NOW_NS, sink).map_or(0, |summary| summary.records));

    // remote_write: the in-place decoder (decode + push) against prost's
    // derived decoder on the same decompressed bytes (decode alone, which is
    // less work than ours: no label check, no records).
    {
        use metricsstream::ingest::remote_write::{encode_body, RemoteWriteDecoder, SamplePosition, WriteRequest};
        use prost::Message;
        let request = remote_write_request();
        let body = encode_body(&request);
        let raw = request.encode_to_vec();
        let mut decoder = RemoteWriteDecoder::new();
        measure("remote_write", &raw, |sink| {
            let summary = decoder.decode(black_box(&body)).expect("valid body");
            let pushed = decoder.push_into(SamplePosition::START, sink).pushed;
            assert_eq!(pushed, summary.samples);
            pushed as usize
        });
        let mut snappy = snap::raw::Decoder::new();
        let mut decompressed = vec![0; raw.len()];
        measure("rw prost", &raw, |_| {
            snappy.decompress(black_box(&body), &mut decompressed).expect("valid snappy");
            let request = WriteRequest::decode(decompressed.as_slice()).expect("valid protobuf");
            black_box(&request);
            request.timeseries.len()
        });
    }

    let datagram = statsd_datagram();
    let mut sd = StatsdParser::new();
    measure("statsd", &datagram, |sink| {
        let summary = sd.parse_into(black_box(&datagram), NOW_NS, sink);
        assert_eq!(summary.invalid, 0);
        summary.records
    });
}
