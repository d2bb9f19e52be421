//! The shipper against a real VictoriaMetrics (Debian package
//! `victoria-metrics`; CI: `apt-get install -y victoria-metrics`).
//!
//! Starts its own single-node VictoriaMetrics on a free port and a temporary
//! storage path, ships records written through the real writer, reads them
//! back with `/api/v1/export`, then stops VictoriaMetrics while more records
//! arrive and restarts it: nothing may be lost or stuck.
//! A missing binary FAILS the test (set `VICTORIA_METRICS_BIN` to override
//! the path).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use metricsstream::ingest::{Field, FieldValue, Record, RecordSink, Tag};
use metricsstream::writer::config::HttpEndpoint;
use metricsstream::writer::shipper::{http_request, read_checkpoint};
use metricsstream::writer::{AckMode, Shipper, VictoriaMetricsConfig, Writer, WriterConfig, WriterHandle};

fn vm_binary() -> PathBuf {
    if let Ok(p) = std::env::var("VICTORIA_METRICS_BIN") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "VICTORIA_METRICS_BIN={} does not exist: install victoria-metrics (`apt-get install -y victoria-metrics`)",
            p.display()
        );
        return p;
    }
    let found = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join("victoria-metrics")).find(|p| p.is_file()));
    found.unwrap_or_else(|| {
        panic!("victoria-metrics binary not found: install it with `apt-get install -y victoria-metrics` (or set VICTORIA_METRICS_BIN)")
    })
}

/// A running VictoriaMetrics, killed by PID when dropped (also on panic).
struct VmGuard {
    child: Child,
}

impl VmGuard {
    fn start(storage: &Path, port: u16, log: &Path) -> Self {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        let child = Command::new(vm_binary())
            .arg(format!("-storageDataPath={}", storage.display()))
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn victoria-metrics");
        let guard = Self { child };
        let ep = endpoint(port);
        let t0 = Instant::now();
        loop {
            if let Ok(r) = http_request(&ep, "GET", "/health", b"", Duration::from_secs(1)) {
                if r.status == 200 {
                    break;
                }
            }
            assert!(t0.elapsed() < Duration::from_secs(30), "victoria-metrics did not become healthy");
            std::thread::sleep(Duration::from_millis(50));
        }
        guard
    }
}

impl VmGuard {
    /// Graceful stop (SIGTERM by PID): VictoriaMetrics flushes its in-memory
    /// parts on SIGTERM; a SIGKILL may lose its last seconds of acknowledged
    /// samples (its own durability contract, not the shipper's).
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Drop kills it.
    }
}

impl Drop for VmGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn endpoint(port: u16) -> HttpEndpoint {
    HttpEndpoint { authority: format!("127.0.0.1:{port}"), path_prefix: String::new() }
}

/// Sample `i`: series host=h{i%5}, value i, timestamp in the recent past
/// (VictoriaMetrics drops samples older than its retention), 1 ms apart.
fn sample(i: u64, base_ms: i64) -> Record {
    Record {
        measurement: "vmtest".into(),
        tags: vec![Tag { key: "host".into(), value: format!("h{}", i % 5).into() }],
        fields: vec![Field { key: "v".into(), value: FieldValue::Float(i as f64) }],
        timestamp_ns: (base_ms + i as i64) * 1_000_000,
    }
}

fn write_samples(h: &mut WriterHandle, range: std::ops::Range<u64>, base_ms: i64) {
    let mut i = range.start;
    let mut last = None;
    while i < range.end {
        let Some(mut b) = h.take_batch() else {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        };
        b.set_client("vm-test");
        while i < range.end && b.push(&sample(i, base_ms).as_ref()).is_ok() {
            i += 1;
        }
        loop {
            match h.submit(b) {
                Ok(t) => {
                    last = Some(t);
                    break;
                }
                Err(bp) => {
                    b = bp.batch;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
    let last = last.unwrap();
    let t0 = Instant::now();
    while !h.is_acked(&last) {
        assert!(t0.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// (host, timestamp_ms, value) of every exported `vmtest_v` sample, with
/// how many times each occurs.
fn export(port: u16) -> HashMap<(String, i64, u64), usize> {
    let ep = endpoint(port);
    let r = http_request(&ep, "GET", "/internal/force_flush", b"", Duration::from_secs(10)).unwrap();
    assert_eq!(r.status, 200, "force_flush");
    let r = http_request(
        &ep,
        "GET",
        "/api/v1/export?match%5B%5D=%7B__name__%3D%22vmtest_v%22%7D",
        b"",
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(r.status, 200, "export: {}", String::from_utf8_lossy(&r.body));
    let mut out = HashMap::new();
    for line in String::from_utf8(r.body).unwrap().lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let host = v["metric"]["host"].as_str().unwrap().to_owned();
        let values = v["values"].as_array().unwrap();
        let ts = v["timestamps"].as_array().unwrap();
        for (val, t) in values.iter().zip(ts) {
            *out.entry((host.clone(), t.as_i64().unwrap(), val.as_f64().unwrap() as u64)).or_insert(0) += 1;
        }
    }
    out
}

fn expected(range: std::ops::Range<u64>, base_ms: i64) -> BTreeSet<(String, i64, u64)> {
    range.map(|i| (format!("h{}", i % 5), base_ms + i as i64, i)).collect()
}

fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_export(port: u16, want: &BTreeSet<(String, i64, u64)>) -> HashMap<(String, i64, u64), usize> {
    let t0 = Instant::now();
    loop {
        let got = export(port);
        let keys: BTreeSet<_> = got.keys().cloned().collect();
        if &keys == want || t0.elapsed() > Duration::from_secs(15) {
            let missing: Vec<_> = want.difference(&keys).take(5).collect();
            let extra: Vec<_> = keys.difference(want).take(5).collect();
            assert!(missing.is_empty() && extra.is_empty(), "missing {missing:?} extra {extra:?} (of {})", want.len());
            return got;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn shipper_delivers_to_victoriametrics_across_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let storage = tmp.path().join("vm-storage");
    let log = tmp.path().join("vm.log");
    let data = tmp.path().join("data");
    let port = free_port();
    let mut vm = Some(VmGuard::start(&storage, port, &log));

    let cfg = WriterConfig {
        data_dir: data.clone(),
        ack: AckMode::Durable,
        sync_interval_ms: 2,
        batch_records: 300,
        ..Default::default()
    };
    let (rt, mut handles) = Writer::start(cfg, 1).unwrap();
    let stats = rt.stats().clone();
    let vm_cfg = VictoriaMetricsConfig {
        url: format!("http://127.0.0.1:{port}"),
        batch_records: 700,
        retry_initial_ms: 50,
        retry_max_ms: 400,
        timeout_ms: 2000,
        poll_interval_ms: 10,
    };
    let shipper = Shipper::start(data.clone(), vm_cfg.clone(), Some(rt.durable_record_id()), stats.clone()).unwrap();

    let base_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64 - 600_000;
    let h = &mut handles[0];

    // Phase 1: ship and read back.
    write_samples(h, 0..3000, base_ms);
    wait_for("3000 shipped", Duration::from_secs(20), || stats.shipper_shipped_records.load(Ordering::Relaxed) == 3000);
    wait_export(port, &expected(0..3000, base_ms));

    // Phase 2: VictoriaMetrics goes away while records keep arriving.
    if let Some(vm) = vm.take() {
        vm.stop();
    }
    let errors_before = stats.shipper_errors.load(Ordering::Relaxed);
    write_samples(h, 3000..5000, base_ms);
    wait_for("shipper to notice the outage", Duration::from_secs(10), || {
        stats.shipper_errors.load(Ordering::Relaxed) > errors_before
    });
    assert!(stats.shipper_lag_records.load(Ordering::Relaxed) > 0, "lag must show the backlog");
    assert_eq!(stats.shipper_shipped_records.load(Ordering::Relaxed), 3000);

    // Phase 3: restart on the same storage and port; the backlog drains.
    vm = Some(VmGuard::start(&storage, port, &log));
    write_samples(h, 5000..6000, base_ms);
    wait_for("6000 shipped", Duration::from_secs(30), || stats.shipper_shipped_records.load(Ordering::Relaxed) == 6000);
    let got = wait_export(port, &expected(0..6000, base_ms));
    let dups: usize = got.values().map(|n| n - 1).sum();
    eprintln!(
        "shipped 6000 records across a VictoriaMetrics restart: 0 lost, {dups} duplicate samples, {} failed POSTs retried",
        stats.shipper_errors.load(Ordering::Relaxed)
    );
    assert_eq!(stats.shipper_lag_records.load(Ordering::Relaxed), 0, "nothing stuck");

    let summary = shipper.stop().unwrap();
    assert_eq!(summary.checkpoint, 6001);
    assert_eq!(read_checkpoint(&data), 6001);
    drop(handles);
    rt.shutdown().unwrap();

    // Phase 4: a new shipper resumes at the checkpoint: nothing re-sent.
    let (rt, mut handles) = Writer::start(WriterConfig { data_dir: data.clone(), ..Default::default() }, 1).unwrap();
    let stats = rt.stats().clone();
    let shipper = Shipper::start(data.clone(), vm_cfg, Some(rt.durable_record_id()), stats.clone()).unwrap();
    write_samples(&mut handles[0], 6000..6500, base_ms);
    wait_for("500 more shipped", Duration::from_secs(20), || {
        stats.shipper_shipped_records.load(Ordering::Relaxed) == 500
    });
    wait_export(port, &expected(0..6500, base_ms));
    assert_eq!(shipper.stop().unwrap().checkpoint, 6501);
    drop(handles);
    rt.shutdown().unwrap();
    drop(vm);
}
