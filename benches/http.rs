//! Cost of one HTTP request through the sans-IO connection: receive, poll,
//! respond, drain. Keep-alive with a 1 KiB line-protocol body, 16 pipelined
//! requests per segment, and a gzip body (inflate included).
//!
//! Before measuring, a counting allocator checks the design rule "no heap
//! allocation per request in steady state" for plain, pipelined, chunked,
//! gzip and error-answered requests, with the connection's own buffers and
//! with buffers lent by the worker's pools and a body budget, as `serve` runs
//! it (`cargo test --release --bench http` runs just that check and each
//! benchmark once).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use metricsstream::http::{BodyBudget, Connection, ConnectionPools, Event, HttpConfig, Response};
use metricsstream::time::Nanos;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;
use std::hint::black_box;
use std::io::Write as _;
use std::sync::Arc;

// Counts allocations (stats_alloc wraps the system allocator): no `unsafe`
// outside dpdk-sys/ and src/dpdk/, benches included.
#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Serves `segment` 100 times after a warm-up and asserts no allocation,
/// once with the connection's own buffers and once pooled (buffers lent per
/// segment and returned when idle; body bytes reserved from a budget).
fn assert_no_allocations(name: &str, segment: &[u8], per_segment: usize) {
    let budget = Arc::new(BodyBudget::new(HttpConfig::default().body_memory_budget_bytes));
    let mut pools = ConnectionPools::new(16);
    for pooled in [false, true] {
        let mut conn = Connection::new(&HttpConfig::default(), Nanos::ZERO);
        if pooled {
            conn = conn.pooled().with_budget(Arc::clone(&budget));
        }
        let mut pools = pooled.then_some(&mut pools);
        for _ in 0..3 {
            assert_eq!(serve_with(&mut conn, segment, pools.as_deref_mut()), per_segment, "{name}");
        }
        let region = Region::new(GLOBAL);
        for _ in 0..100 {
            assert_eq!(serve_with(&mut conn, segment, pools.as_deref_mut()), per_segment, "{name}");
        }
        let change = region.change();
        let allocations = change.allocations + change.reallocations;
        assert_eq!(allocations, 0, "{name} (pooled: {pooled}): {allocations} allocations in 100 steady-state rounds");
    }
    assert_eq!((pools.body.counters().in_use, pools.response.counters().in_use), (0, 0), "{name}");
    assert_eq!(budget.reserved(), 0, "{name}");
}

fn request(body: &[u8], gzip: bool) -> Vec<u8> {
    let encoding = if gzip { "Content-Encoding: gzip\r\n" } else { "" };
    let mut r = format!(
        "POST /api/v2/write?org=o&bucket=b&precision=ns HTTP/1.1\r\nHost: appliance:8080\r\n\
         User-Agent: telegraf\r\nAuthorization: Token abcdef\r\nContent-Type: text/plain; charset=utf-8\r\n\
         {encoding}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// Feeds `segment` and answers every request; returns the requests seen.
fn serve(conn: &mut Connection, segment: &[u8]) -> usize {
    serve_with(conn, segment, None)
}

/// [`serve`], with buffers lent by `pools` around each step if given.
fn serve_with(conn: &mut Connection, segment: &[u8], mut pools: Option<&mut ConnectionPools>) -> usize {
    let mut rest = segment;
    let mut seen = 0;
    while !rest.is_empty() {
        if let Some(p) = pools.as_deref_mut() {
            conn.attach_buffers(p);
        }
        let n = conn.receive(rest, Nanos::ZERO);
        rest = &rest[n..];
        loop {
            if conn.needs_buffers() {
                if let Some(p) = pools.as_deref_mut() {
                    conn.attach_buffers(p);
                }
            }
            let Some(event) = conn.poll_request(Nanos::ZERO) else { break };
            if let Event::Request(req) = event {
                black_box(req.body());
                if req.path() == "/missing" {
                    conn.respond(&Response::error(404, "not found", "no such route \"/missing\""));
                } else {
                    conn.respond(&Response::no_content());
                }
                seen += 1;
            }
        }
        let out = conn.take_output().len();
        conn.consume_output(out);
        if let Some(p) = pools.as_deref_mut() {
            conn.return_buffers(p);
        }
    }
    seen
}

fn bench(c: &mut Criterion) {
    let line = b"cpu,host=server01,region=us-west usage_idle=98.2,usage_user=1.1 1700000000000000000\n";
    let body: Vec<u8> = line.iter().copied().cycle().take(1024).collect();
    let config = HttpConfig::default();
    let chunked = b"POST /write HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: 1\r\n\r\n";
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&body).unwrap();
    let gz_small = request(&gz.finish().unwrap(), true);
    assert_no_allocations("keep-alive", &request(&body, false), 1);
    assert_no_allocations("pipelined", &request(&body, false).repeat(8), 8);
    assert_no_allocations("chunked", chunked, 1);
    assert_no_allocations("gzip", &gz_small, 1);
    assert_no_allocations("404 json", b"POST /missing HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 1);
    eprintln!("http: no allocation per request in steady state (plain, pipelined, chunked, gzip, error)");

    let mut group = c.benchmark_group("http");

    let one = request(&body, false);
    group.throughput(Throughput::Elements(1));
    group.bench_function("keepalive_1k_body", |b| {
        let mut conn = Connection::new(&config, Nanos::ZERO);
        b.iter(|| assert_eq!(serve(&mut conn, &one), 1));
    });

    // The same with buffers lent by pools and a body budget, as `serve` runs it.
    group.bench_function("keepalive_1k_body_pooled", |b| {
        let budget = Arc::new(BodyBudget::new(config.body_memory_budget_bytes));
        let mut pools = ConnectionPools::new(16);
        let mut conn = Connection::new(&config, Nanos::ZERO).pooled().with_budget(budget);
        b.iter(|| assert_eq!(serve_with(&mut conn, &one, Some(&mut pools)), 1));
    });

    let sixteen = one.repeat(16);
    group.throughput(Throughput::Elements(16));
    group.bench_function("pipelined_16x1k", |b| {
        let mut conn = Connection::new(&config, Nanos::ZERO);
        b.iter(|| assert_eq!(serve(&mut conn, &sixteen), 16));
    });

    let big: Vec<u8> = line.iter().copied().cycle().take(64 << 10).collect();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&big).unwrap();
    let gz_req = request(&gz.finish().unwrap(), true);
    group.throughput(Throughput::Bytes(big.len() as u64));
    group.bench_function("gzip_64k_body", |b| {
        let mut conn = Connection::new(&config, Nanos::ZERO);
        b.iter(|| assert_eq!(serve(&mut conn, &gz_req), 1));
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
