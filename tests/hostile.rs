//! Hostile clients over veth (#19): a burst of 30,000 SYNs from spoofed
//! sources in 198.18.0.0/24 against `serve` with its default connection
//! settings, while a legitimate client writes. Every legitimate write must
//! get 204 within 1 s during and right after the burst.
//!
//! Needs root (namespaces), curl, ethtool and python3 (scripts/setup.sh).
//! The veth set-up is `tests/common/veth.rs`, shared with `tests/serve_veth.rs`.

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SYNS: u32 = 30_000;

/// One legitimate write: (status, seconds curl took).
fn write_once(veth: &Veth) -> (u16, f64) {
    let out = veth
        .client("curl")
        .args(["-s", "-o", "/dev/null", "-m", "5", "-w", "%{http_code} %{time_total}"])
        .args(["--data-binary", "legit,host=a v=1", "http://198.18.0.1:8080/write"])
        .output()
        .unwrap();
    let s = text(&out.stdout);
    let (code, t) = s.split_once(' ').unwrap_or(("0", "99"));
    (code.parse().unwrap_or(0), t.parse().unwrap_or(99.0))
}

fn scrape(veth: &Veth) -> std::collections::HashMap<String, f64> {
    let out = veth.client("curl").args(["-s", "-m", "5", "http://198.18.0.1:8080/metrics"]).output().unwrap();
    text(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect()
}

/// SYNs with the kernel filling the IP header's checksum and us the TCP
/// one, from sources 198.18.0.10-249 (never the legitimate client's .2),
/// ports from 1024 up, as fast as Python sends them.
const SPOOFER: &str = r#"
import socket, struct, sys
n = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
dst = socket.inet_aton('198.18.0.1')
def csum(b):
    if len(b) % 2: b += b'\0'
    t = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while t >> 16: t = (t & 0xffff) + (t >> 16)
    return ~t & 0xffff
for i in range(n):
    src = socket.inet_aton('198.18.0.%d' % (10 + i % 240))
    sport = 1024 + i // 240
    opts = struct.pack('!BBH', 2, 4, 1460)
    hdr = struct.pack('!HHIIBBHHH', sport, 8080, 0x1000 + i, 0, 6 << 4, 0x02, 64240, 0, 0) + opts
    c = csum(src + dst + struct.pack('!BBH', 0, 6, len(hdr)) + hdr)
    hdr = hdr[:16] + struct.pack('!H', c) + hdr[18:]
    ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(hdr), 0, 0, 64, 6, 0, src, dst)
    s.sendto(ip + hdr, ('198.18.0.1', 0))
"#;

#[test]
fn legitimate_writes_get_204_within_a_second_during_and_after_a_spoofed_syn_burst() {
    let dir = TempDir::new("hostile-syn");
    let config = dir.path("config.toml");
    // Default [net] and [http] (16,384 connections per worker, half-open
    // bound and lifetime at their defaults); acks when enqueued, so the
    // latency measured is the network's, not fsync's.
    std::fs::write(&config, format!("[writer]\ndata_dir = \"{}\"\nack = \"enqueued\"\n", dir.path("data").display()))
        .unwrap();
    let spoofer = dir.path("spoof.py");
    std::fs::write(&spoofer, SPOOFER).unwrap();
    let report_path = dir.path("report.json");
    let _dpdk = dpdk_lock();
    let veth = Veth::new("host");
    let child = Command::new("ip")
        .args(["netns", "exec", &veth.app_ns, BIN, "serve", "--config", config.to_str().unwrap()])
        .args(["--report", report_path.to_str().unwrap(), "--duration", "50", "--stats-interval", "0", "--"])
        .args(["--no-huge", "-m", "512", "--no-shconf", "--no-pci", "--lcores", "0@0,1@1", "--log-level", "*:warning"])
        .arg(format!("--vdev=net_af_packet0,iface={},framecnt=16384", veth.app_if))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn serve");
    let mut guard = ChildGuard(Some(child));
    let start = Instant::now();
    while write_once(&veth).0 != 204 {
        assert!(start.elapsed() < Duration::from_secs(30), "appliance did not come up");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The burst, in the background; legitimate writes go on meanwhile.
    let t0 = Instant::now();
    let mut burst = veth.client("python3").arg(&spoofer).arg(SYNS.to_string()).spawn().unwrap();
    let mut during = Vec::new();
    let burst_secs = loop {
        if burst.try_wait().unwrap().is_some() {
            break t0.elapsed().as_secs_f64();
        }
        during.push(write_once(&veth));
        assert!(t0.elapsed() < Duration::from_secs(30), "the burst did not end");
    };
    assert!(burst.wait().unwrap().success(), "spoof.py failed");
    // Right after the burst: the half-open entries are still there (3 s lifetime).
    let mut after = Vec::new();
    let t1 = Instant::now();
    while t1.elapsed() < Duration::from_secs(2) {
        after.push(write_once(&veth));
    }
    let m = scrape(&veth);
    let g = |k: &str| m.get(&format!("metricsstream_net_{k}")).copied().unwrap_or(-1.0);
    println!(
        "SYN burst: {SYNS} spoofed SYNs sent in {burst_secs:.2} s; legitimate writes during: {} (max {:.3} s), after: {} (max {:.3} s)",
        during.len(),
        during.iter().map(|w| w.1).fold(0.0, f64::max),
        after.len(),
        after.iter().map(|w| w.1).fold(0.0, f64::max),
    );
    println!(
        "counters: syn_accepted {} half_open now {} completed {} evicted {} expired {} reset {} drop_syn_full {}",
        g("syn_accepted_total"),
        g("connections_half_open"),
        g("syn_half_open_completed_total"),
        g("syn_half_open_evicted_total"),
        g("syn_half_open_expired_total"),
        g("syn_half_open_reset_total"),
        g("drop_syn_full_total"),
    );
    assert!(!during.is_empty(), "no legitimate write during the burst");
    for (i, (code, secs)) in during.iter().chain(&after).enumerate() {
        assert!(*code == 204 && *secs < 1.0, "write {i}: {code} after {secs} s (during {during:?}, after {after:?})");
    }
    // The flood was bounded: at most the default half-open bound (every
    // slot of the worker, 16,384), the rest evicted, nothing refused for
    // lack of slots.
    assert!(g("connections_half_open") <= 16384.0, "{m:?}");
    assert!(g("syn_half_open_evicted_total") > 0.0, "the burst should exceed the half-open bound: {m:?}");
    assert_eq!(g("drop_syn_full_total"), 0.0, "{m:?}");
    // After the lifetime every spoofed entry is gone.
    std::thread::sleep(Duration::from_millis(3_500));
    let m = scrape(&veth);
    assert_eq!(m.get("metricsstream_net_connections_half_open").copied(), Some(0.0), "{m:?}");
    println!(
        "after 3.5 s: half_open 0, expired {}",
        m.get("metricsstream_net_syn_half_open_expired_total").copied().unwrap_or(-1.0)
    );
    // Clean stop; the report balances.
    let pid = guard.0.as_ref().unwrap().id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let status = guard.0.as_mut().unwrap().wait().unwrap();
    guard.0 = None;
    assert!(status.success(), "serve failed");
    let report = read_json(&report_path);
    assert_balances(&report);
    let net = &report["net"];
    assert_eq!(
        net["syn_accepted"].as_u64(),
        ["syn_half_open_completed", "syn_half_open_evicted", "syn_half_open_expired", "syn_half_open_reset"]
            .iter()
            .chain(&["connections_half_open"])
            .map(|k| net[k].as_u64())
            .sum::<Option<u64>>(),
        "{net:#}"
    );
}
