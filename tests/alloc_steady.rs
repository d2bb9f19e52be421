//! Zero heap allocations per request in steady state, through the worker
//! logic: smoltcp clients on the deterministic in-memory network send
//! keep-alive requests to a `NetStack` + `HttpApp` backed by a real
//! `writer::Writer` (segment log in a temp dir, `ack = enqueued` and
//! `ack = durable`), driven the way `worker::run_serve` drives them.
//!
//! A counting global allocator sees the whole process: server, clients (the
//! harness recycles frames and pre-renders requests, so it allocates nothing
//! once warm) and the writer threads. After a warm-up the test counts the
//! allocations of 10,000 requests and of 100,000 requests: if anything
//! allocated per request the second figure would be ~10x the first. The
//! per-request figure `(A(100k) - A(10k)) / 90k` is printed (goal: 0).
//!
//! The request mix covers the write routes (v1, v2, JSON; plain, chunked and
//! gzip bodies), a refused batch (400), `/ping`, `/health`, `/metrics` and an
//! unknown route (404).

mod netstack_sim;

use metricsstream::app::{AppShared, HttpApp};
use metricsstream::http::auth::AuthConfig;
use metricsstream::http::HttpConfig;
use metricsstream::limit::{KeyedLimiter, LimitsConfig};
use metricsstream::net::NetStack;
use metricsstream::writer::{AckMode, Writer, WriterConfig, WriterRuntime};
use netstack_sim::http::{FramePool, HttpClient, HttpRequest, PoolSink};
use smoltcp::time::{Duration, Instant};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;
use std::io::Write as _;
use std::sync::{Arc, Mutex};

// Counts allocations (stats_alloc wraps the system allocator; no `unsafe` here).
#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The allocator is process-wide: one measurement at a time.
static MEASURE: Mutex<()> = Mutex::new(());

const CLIENTS: usize = 8;
const CONNS_PER_CLIENT: usize = 5;
const CONNS: u64 = (CLIENTS * CONNS_PER_CLIENT) as u64;

fn lines(n: usize, ts_unit: u64) -> Vec<u8> {
    let mut body = Vec::new();
    for i in 0..n {
        let ts = 1_700_000_000 * ts_unit + i as u64;
        writeln!(body, "cpu,host=h{i},region=eu usage_idle={i}.5,usage_user=1i {ts}").unwrap();
    }
    body
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

fn chunked(target: &str, body: &[u8], expect_status: u16) -> HttpRequest {
    let mut bytes =
        format!("POST {target} HTTP/1.1\r\nHost: appliance\r\nTransfer-Encoding: chunked\r\n\r\n").into_bytes();
    for piece in body.chunks(200) {
        write!(bytes, "{:x}\r\n", piece.len()).unwrap();
        bytes.extend_from_slice(piece);
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(b"0\r\n\r\n");
    HttpRequest { bytes, expect_status }
}

fn request_mix() -> Vec<HttpRequest> {
    let json = br#"{"client_id":"sim","metrics":[{"name":"cpu","value":1.5,"tags":{"host":"a"}},{"name":"mem","value":2,"timestamp":1700000000000}]}"#;
    vec![
        HttpRequest::new("POST", "/write?db=metrics&precision=ns", "", &lines(10, 1_000_000_000), 204),
        HttpRequest::new("POST", "/api/v2/write?org=o&bucket=b&precision=ms", "", &lines(10, 1_000), 204),
        HttpRequest::new("POST", "/api/v1/metrics", "Content-Type: application/json\r\n", json, 202),
        HttpRequest::new("GET", "/ping", "", b"", 204),
        chunked("/write?precision=ns", &lines(8, 1_000_000_000), 204),
        HttpRequest::new(
            "POST",
            "/write?precision=ns",
            "Content-Encoding: gzip\r\n",
            &gzip(&lines(12, 1_000_000_000)),
            204,
        ),
        HttpRequest::new("GET", "/health", "", b"", 200),
        HttpRequest::new("POST", "/write", "", b"cpu usage=1 1700000000000000000\nnot line protocol\n", 400),
        HttpRequest::new("GET", "/metrics", "", b"", 200),
        HttpRequest::new("GET", "/missing", "", b"", 404),
    ]
}

/// Server, clients and the writer, stepped like `worker::run_serve`.
struct Sim {
    stack: NetStack,
    app: HttpApp,
    clients: Vec<HttpClient>,
    pool: FramePool,
    requests: Vec<HttpRequest>,
    now: Instant,
    to_server: Vec<Vec<u8>>,
    to_clients: Vec<Vec<u8>>,
    last_timeouts_ns: u64,
}

fn ns(now: Instant) -> u64 {
    now.total_micros() as u64 * 1_000
}

impl Sim {
    fn new(ack: AckMode, data_dir: &std::path::Path) -> (Sim, WriterRuntime) {
        let writer_config = WriterConfig {
            data_dir: data_dir.to_path_buf(),
            ack,
            // Commit each drained round at once: the durable path waits on
            // the real fsync, and the test should not wait on a timer.
            fsync_interval_ms: 0,
            // One segment for the whole run (rotation is per GiB, not per request).
            segment_bytes: 1 << 30,
            retention_bytes: 0,
            ..WriterConfig::default()
        };
        let (writer, mut handles) = Writer::start(writer_config, 1).unwrap();
        let limits = LimitsConfig { default_rate: 1 << 30, default_burst: 1 << 30, ..LimitsConfig::default() };
        let shared = AppShared {
            http: HttpConfig::default(),
            auth: Arc::new(AuthConfig::default()),
            limiter: Arc::new(KeyedLimiter::new(&limits).unwrap()),
            metrics: Arc::new(|out: &mut String| out.push_str("# TYPE sim_up gauge\nsim_up 1\n")),
            unix_offset_ns: 1_700_000_000_000_000_000,
        };
        let now = Instant::from_millis(1);
        let stack = NetStack::new(netstack_sim::stack_config(256), now).unwrap();
        let app = HttpApp::new(shared, handles.pop().unwrap(), stack.slots());
        let pool = FramePool::default();
        let clients = (0..CLIENTS).map(|i| HttpClient::new(i, CONNS_PER_CLIENT, &pool, now)).collect();
        let sim = Sim {
            stack,
            app,
            clients,
            pool,
            requests: request_mix(),
            now,
            to_server: Vec::with_capacity(1024),
            to_clients: Vec::with_capacity(1024),
            last_timeouts_ns: 0,
        };
        (sim, writer)
    }

    /// One worker iteration between client polls; returns the frames moved.
    fn step(&mut self) -> usize {
        let (now, now_ns) = (self.now, ns(self.now));
        for c in &mut self.clients {
            c.poll(now, &mut self.to_server, &self.pool, &self.requests);
        }
        let mut moved = self.to_server.len();
        let mut sink = PoolSink { frames: &mut self.to_clients, pool: &self.pool };
        for f in self.to_server.drain(..) {
            let _ = self.stack.receive(now, &f, &mut sink);
            self.pool.give(f);
        }
        for &conn in self.app.poll_held(now_ns) {
            self.stack.wake(conn);
        }
        if now_ns - self.last_timeouts_ns >= 100_000_000 {
            self.last_timeouts_ns = now_ns;
            for &conn in self.app.poll_timeouts(now_ns) {
                self.stack.wake(conn);
            }
        }
        self.stack.poll(now, &mut self.app, &mut sink);
        self.app.flush();
        moved += self.to_clients.len();
        for f in self.to_clients.drain(..) {
            let dst = &f[0..6];
            if dst == [0xff; 6] {
                for c in &mut self.clients {
                    let mut copy = self.pool.take(f.len());
                    copy.copy_from_slice(&f);
                    c.rx.push_back(copy);
                }
                self.pool.give(f);
            } else if dst[0..4] == [0x02, 0x43, 0, 0] {
                let i = usize::from(dst[4]) << 8 | usize::from(dst[5]);
                self.clients[i].rx.push_back(f);
            } else {
                panic!("frame to an unknown MAC {dst:02x?}");
            }
        }
        moved
    }

    /// Every connection sends `per_conn` more requests; runs until all are answered.
    fn run(&mut self, per_conn: u64) {
        for c in &mut self.clients {
            c.add_requests(per_conn);
        }
        let mut steps = 0u64;
        while !self.clients.iter().all(HttpClient::done) {
            steps += 1;
            assert!(steps < 200 * per_conn + 10_000, "stuck: {:?}", self.app.counters());
            if self.step() > 0 {
                self.now += Duration::from_millis(1);
            } else if self.app.counters().held > 0 {
                // Waiting for the writer thread (a real fsync): real time passes, not virtual.
                std::thread::sleep(std::time::Duration::from_micros(20));
            } else {
                let mut next = self.now + Duration::from_millis(1);
                let mut at = self.stack.poll_at();
                for c in &mut self.clients {
                    if let Some(t) = c.poll_at(self.now) {
                        at = Some(at.map_or(t, |a: Instant| a.min(t)));
                    }
                }
                if let Some(t) = at {
                    next = next.max(t);
                }
                self.now = next;
            }
        }
        for c in &self.clients {
            assert_eq!(c.wrong_status, 0, "unexpected answer: {}", c.first_wrong);
        }
    }

    fn answered(&self) -> u64 {
        self.clients.iter().map(HttpClient::answered).sum()
    }
}

/// Allocations (and reallocations) while `f` runs.
fn allocations(f: impl FnOnce()) -> usize {
    let region = Region::new(GLOBAL);
    f();
    let change = region.change();
    change.allocations + change.reallocations
}

fn steady_state(ack: AckMode) {
    let _one_at_a_time = MEASURE.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir()).unwrap();
    let (mut sim, writer) = Sim::new(ack, dir.path());
    // Warm-up: connections open, buffers and pools reach their working size.
    sim.run(3 * sim.requests.len() as u64);
    let small = 10_000 / CONNS;
    let large = 100_000 / CONNS;
    let before = sim.answered();
    let a_small = allocations(|| sim.run(small));
    let a_large = allocations(|| sim.run(large));
    assert_eq!(sim.answered() - before, (small + large) * CONNS);
    let per_request = a_large.saturating_sub(a_small) as f64 / ((large - small) * CONNS) as f64;
    println!(
        "alloc_steady ack={ack:?}: {} requests: {a_small} allocations; {} requests: {a_large} allocations; \
         per request ({a_large} - {a_small}) / {} = {per_request:.6} (goal 0)",
        small * CONNS,
        large * CONNS,
        (large - small) * CONNS
    );
    let counters = *sim.app.counters();
    println!("alloc_steady ack={ack:?}: {counters:?}");
    assert_eq!(counters.held, 0);
    drop(sim);
    let summary = writer.shutdown().unwrap();
    assert!(summary.records_written > 0);
    // The figure the test exists for: the large run must not allocate more than the small one.
    assert!(
        a_large <= a_small,
        "allocations grow with the request count: {a_small} in {} requests, {a_large} in {} \
         ({per_request:.4} per request)",
        small * CONNS,
        large * CONNS
    );
}

#[test]
fn keep_alive_requests_allocate_nothing_ack_enqueued() {
    steady_state(AckMode::Enqueued);
}

#[test]
fn keep_alive_requests_allocate_nothing_ack_durable() {
    steady_state(AckMode::Durable);
}
