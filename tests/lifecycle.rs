//! 20 start/stop cycles of the in-process pipeline (writer with its sync
//! thread, VictoriaMetrics shipper, limiter, UDP ingestion, TCP stack and
//! HTTP application) leave no thread, file descriptor or memory behind,
//! read from /proc. Its own test binary: no other test's threads interfere.

use metricsstream::http::HttpConfig;
use metricsstream::limit::{KeyedLimiter, LimitsConfig};
use metricsstream::net::{L2Config, NetStack, NetStackConfig};
use metricsstream::pipeline::{AppShared, HttpApp, UdpConfig, UdpIngest};
use metricsstream::stats::ProcessResources;
use metricsstream::time::Nanos;
use metricsstream::writer::{AckMode, Shipper, VictoriaMetricsConfig, Writer, WriterConfig};
use smoltcp::wire::{EthernetAddress, Ipv4Address};
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;
use std::sync::Arc;

// Counts every allocation and free, so live heap bytes are exact (RSS also
// moves with the allocator's caching, which is not a leak).
#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn live_heap_bytes() -> i64 {
    let s = GLOBAL.stats();
    // stats_alloc adds a realloc's growth to bytes_allocated (shrink to
    // bytes_deallocated) itself; bytes_reallocated only repeats it.
    s.bytes_allocated as i64 - s.bytes_deallocated as i64
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// One run of the pipeline: start everything, push 20,000 UDP datagrams of
/// 3 records through it, stop everything. Returns the records written.
fn cycle(dir: &std::path::Path, n: usize) -> u64 {
    let config = WriterConfig { data_dir: dir.join(format!("data-{n}")), ack: AckMode::Durable, ..Default::default() };
    let (writer, mut handles) = Writer::start(config.clone(), 2).unwrap();
    // Nothing listens on port 9: the shipper retries with backoff until stopped.
    let vm = VictoriaMetricsConfig { url: "http://127.0.0.1:9".into(), ..Default::default() };
    let shipper =
        Shipper::start(config.data_dir.clone(), vm, Some(writer.durable_record_id()), writer.stats().clone()).unwrap();
    let limiter = Arc::new(KeyedLimiter::new(&LimitsConfig::default()).unwrap());
    let shared = AppShared {
        http: HttpConfig::default(),
        auth: Arc::new(Default::default()),
        limiter: limiter.clone(),
        header_trust: Default::default(),
        metrics: Arc::new(|_: &mut String| {}),
        body_budget: Arc::new(metricsstream::http::BodyBudget::new(64 << 20)),
        unix_offset_ns: 0,
        databases: Default::default(),
    };
    let link = L2Config {
        mac: EthernetAddress([2, 0, 0, 0, 0, 1]),
        ip: Ipv4Address::new(10, 0, 0, 1),
        prefix_len: 24,
        gateway: None,
        neighbor_capacity: 256,
    };
    let stack = NetStack::new(NetStackConfig::new(link, 8080, 1000), Nanos::ZERO).unwrap();
    let app = HttpApp::new(shared, handles.pop().unwrap(), stack.slots());
    let mut udp = UdpIngest::new(UdpConfig::default(), limiter, handles.pop().unwrap());
    let payload = b"cpu,host=a usage=1.5 1\ncpu,host=b usage=2.5 2\nmem,host=a used=3i 3\n";
    for i in 0..20_000u64 {
        udp.on_datagram(Ipv4Address::new(10, 0, 1, (i % 200) as u8), 8089, payload, Nanos::from_ns(i * 1_000));
    }
    udp.flush();
    drop((udp, app, stack));
    shipper.stop().unwrap();
    writer.shutdown().unwrap().records_written
}

#[test]
fn twenty_start_stop_cycles_leave_no_threads_fds_or_memory_behind() {
    let dir = tempfile::tempdir().unwrap();
    // Warm-up: the allocator's arenas and lazily initialised statics settle.
    assert_eq!(cycle(dir.path(), 0), 60_000);
    let before = ProcessResources::now();
    let (heap_before, rss_before) = (live_heap_bytes(), rss_kib());
    for n in 1..=20 {
        assert_eq!(cycle(dir.path(), n), 60_000, "cycle {n}");
        // A joined thread's task can stay listed in /proc for a moment after
        // `join` returns (the kernel clears the join futex before the task is
        // reaped): wait up to 1 s for the count to settle; a leaked thread never does.
        let settle = std::time::Instant::now();
        while ProcessResources::now() != before && settle.elapsed() < std::time::Duration::from_secs(1) {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(ProcessResources::now(), before, "cycle {n} left threads or descriptors behind");
    }
    let heap_growth = live_heap_bytes() - heap_before;
    eprintln!(
        "20 cycles: threads {}, fds {}, live heap growth {heap_growth} bytes, RSS growth {} KiB",
        before.threads,
        before.fds,
        rss_kib() as i64 - rss_before as i64
    );
    assert!(heap_growth <= 0, "{heap_growth} bytes of heap outlive 20 cycles");
}
