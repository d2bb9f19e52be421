//! Helpers shared by the integration tests: they spawn the real binary (the
//! EAL initialises once per process) and bound every run in time.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub mod veth;
#[allow(unused_imports)] // only the veth tests use it
pub use veth::Veth;

pub const BIN: &str = env!("CARGO_BIN_EXE_metricsstream");

/// DPDK runs busy-poll a core each: run them one at a time.
static DPDK: Mutex<()> = Mutex::new(());

pub fn dpdk_lock() -> MutexGuard<'static, ()> {
    DPDK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ms-test-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // MS_KEEP_TEST_DIRS=1 keeps them for a post-mortem.
        if std::env::var_os("MS_KEEP_TEST_DIRS").is_some() {
            eprintln!("kept {}", self.0.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Kills the child (by PID) if the test ends before it does.
pub struct ChildGuard(pub Option<Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs the binary with `args`, killing it after `limit`; panics on a hang.
/// Both pipes are drained while it runs (a full pipe would block it).
pub fn run(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn metricsstream");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            buf
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let mut guard = ChildGuard(Some(child));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = guard.0.as_mut().unwrap().try_wait().unwrap() {
            guard.0 = None;
            break status;
        }
        if start.elapsed() > limit {
            panic!("metricsstream {args:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output { status, stdout: stdout.join().unwrap(), stderr: stderr.join().unwrap() }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("report written")).expect("report is JSON")
}

/// The counters that must balance after every run of `replay`, `rx` or
/// `serve`, checked from the raw numbers of its JSON report (not from a
/// verdict the binary computed). Panics naming the first one that does not.
pub fn assert_balances(report: &serde_json::Value) {
    let n = |v: &serde_json::Value, path: &str| -> u64 {
        let mut x = v;
        for key in path.split('.') {
            x = &x[key];
        }
        x.as_u64().unwrap_or_else(|| panic!("report has no number at {path}: {report:#}"))
    };
    // Mbufs: back to the idle baseline once workers stopped, all back after close.
    // Up to `tx_ring_may_hold` may still sit in TX rings of a driver that
    // cannot free completed transmissions on demand (virtio); none here.
    let held = n(report, "mbufs.in_use_at_stop").checked_sub(n(report, "mbufs.idle_baseline"));
    assert!(held.is_some_and(|h| h <= n(report, "mbufs.tx_ring_may_hold")), "mbufs leaked: {report:#}");
    assert_eq!(n(report, "mbufs.in_use_after_close"), 0, "mbufs held after port close: {report:#}");
    // Every thread started was joined; no descriptor was added (closing the
    // port may close ones its driver opened at probe).
    let (start, exit) = (&report["process"]["at_start"], &report["process"]["at_exit"]);
    assert_eq!(exit["threads"], start["threads"], "threads outlive the run: {report:#}");
    assert!(n(exit, "fds") <= n(start, "fds"), "descriptors outlive the run: {report:#}");
    if report.get("latency").is_some() {
        return; // loadgen: the client side has no server counters.
    }
    if report.get("classes").is_some() {
        // replay / rx: every frame is in exactly one class.
        let classes: u64 = report["classes"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
        assert_eq!(classes, n(report, "rx_packets"), "classes do not add up: {report:#}");
        if report.get("records_parsed").is_some() {
            assert_udp_records_balance(report, report);
            assert_eq!(n(report, "records_written"), n(report, "records_accepted"), "{report:#}");
        }
        return;
    }
    // serve: connection lifecycle at every stats tick and at the end.
    assert_eq!(n(report, "lifecycle_imbalances"), 0, "{report:#}");
    let net = &report["net"];
    let open = n(net, "connections_open");
    assert_eq!(n(net, "connections_opened"), n(net, "connections_closed") + open, "{report:#}");
    assert_eq!(n(report, "sockets.flows"), open, "stale flow-table entries: {report:#}");
    assert_eq!(n(report, "sockets.free") + open, n(report, "sockets.slots"), "{report:#}");
    // Every frame the stack received has exactly one outcome.
    let outcomes = [
        "rx_arp",
        "rx_icmp_echo",
        "rx_tcp",
        "rx_udp",
        "drop_malformed",
        "drop_vlan",
        "drop_wrong_mac",
        "drop_wrong_ip",
        "drop_unsupported",
        "drop_syn_full",
        "drop_syn_rejected",
        "drop_rst_no_flow",
        "drop_no_tx_buffer",
    ];
    let accounted: u64 = outcomes.iter().map(|k| n(net, k)).sum();
    assert_eq!(accounted, n(net, "rx_frames"), "received frames without an outcome: {report:#}");
    // The driver's own count, where it keeps one (memif reports 0 here).
    if n(report, "rx_packets") > 0 {
        assert_eq!(n(report, "rx_packets"), n(net, "rx_frames") + n(report, "dropped.rx_chained"), "{report:#}");
    }
    // Every record accepted (HTTP 2xx or UDP) was written by the clean stop,
    // and nothing else but the head of a large body refused 503 midway.
    assert_eq!(
        n(report, "records_written"),
        n(report, "records_accepted") + n(report, "http.records_handed_over_then_refused"),
        "{report:#}"
    );
    assert_udp_records_balance(report, &report["udp"]);
    // Every pooled buffer is either lent or free.
    for pool in ["body_buffers", "response_buffers", "inflaters", "zstd_decoders", "batches"] {
        let http = &report["http"];
        let n = |k: String| http[&k].as_u64().unwrap_or_else(|| panic!("report.http.{k} missing: {report:#}"));
        let (in_use, free, allocated) =
            (n(format!("{pool}_in_use")), n(format!("{pool}_free")), n(format!("{pool}_allocated")));
        assert_eq!(allocated, in_use + free, "{pool} pool does not balance: {report:#}");
    }
}

fn assert_udp_records_balance(report: &serde_json::Value, udp: &serde_json::Value) {
    let n = |k: &str| udp[k].as_u64().unwrap_or_else(|| panic!("no udp counter {k}: {report:#}"));
    assert_eq!(
        n("records_parsed"),
        n("records_accepted") + n("records_limited") + n("records_dropped_writer_full"),
        "UDP records do not balance: {report:#}"
    );
}

/// Writes `frames` to a new pcap at `path`, one microsecond apart.
pub fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    let mut w = metricsstream::pcap::PcapWriter::create(path).unwrap();
    for (i, f) in frames.iter().enumerate() {
        w.write(i as u64 * 1000, f).unwrap();
    }
    w.finish().unwrap();
}

/// Replays `pcap` once through real DPDK (`replay --once`, under the DPDK
/// lock) with `extra` arguments, checks that it succeeded and that its
/// counters balance, and returns its JSON report.
pub fn replay_once(pcap: &Path, report: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["replay", "--pcap", pcap.to_str().unwrap(), "--once", "--duration", "20"];
    args.extend(["--report", report.to_str().unwrap()]);
    args.extend_from_slice(extra);
    let _dpdk = dpdk_lock();
    let out = run(&args, Duration::from_secs(60));
    assert!(out.status.success(), "replay failed: {}", text(&out.stderr));
    let r = read_json(report);
    assert_balances(&r);
    r
}
