//! `loadgen` against `serve` on real DPDK: `metricsstream bench` runs both
//! workers in one process on two `--no-huge` ports joined by rings, for a few
//! seconds. Every 2xx loadgen counted must be a batch in the log (read back
//! with `metricsstream dump`), with no socket error and a non-zero rate.

mod common;

use common::*;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

fn config(dir: &TempDir, ack: &str) -> std::path::PathBuf {
    config_with(dir, ack, "")
}

/// The appliance config, with more `[writer]` keys.
fn config_with(dir: &TempDir, ack: &str, writer: &str) -> std::path::PathBuf {
    let path = dir.path("config.toml");
    let text = format!(
        "[net]\nipv4 = \"198.18.0.1/24\"\ntcp_rx_buffer = 16384\n\
         [writer]\ndata_dir = \"{}\"\nack = \"{ack}\"\n{writer}\
         [limits]\ndefault_rate = 1000000000\ndefault_burst = 1000000000\n",
        dir.path("data").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Connections of the short runs.
const CONNECTIONS: u64 = 64;

/// Runs `bench` with `source` args and returns its report.
fn bench(dir: &TempDir, ack: &str, source: &[&str], connections: u64) -> serde_json::Value {
    bench_with(dir, config(dir, ack), source, connections)
}

fn bench_with(dir: &TempDir, config: std::path::PathBuf, source: &[&str], connections: u64) -> serde_json::Value {
    let report = dir.path("report.json");
    let mut args = vec!["bench", "--config", config.to_str().unwrap(), "--report", report.to_str().unwrap()];
    args.extend_from_slice(source);
    let connections = connections.to_string();
    args.extend_from_slice(&["--connections", &connections, "--duration", "3", "--stats-interval", "0"]);
    let out = run(&args, LIMIT);
    assert!(out.status.success(), "bench failed:\n{}\n{}", text(&out.stdout), text(&out.stderr));
    read_json(&report)
}

/// Records in the log, by `metricsstream dump`.
fn dumped_records(dir: &TempDir) -> u64 {
    let out = run(&["dump", "--data-dir", dir.path("data").to_str().unwrap()], LIMIT);
    assert!(out.status.success(), "dump failed: {}", text(&out.stderr));
    text(&out.stdout).lines().filter(|l| !l.trim().is_empty()).count() as u64
}

/// Checks the loadgen side of a report and returns (2xx, records in 2xx requests).
fn check_loadgen(report: &serde_json::Value, connections: u64) -> (u64, u64) {
    let lg = &report["loadgen"];
    // In-process: both sides' mbufs are back in their pools.
    for side in ["serve", "loadgen"] {
        let m = &report[side]["mbufs"];
        assert_eq!(m["in_use_at_stop"], m["idle_baseline"], "{side} mbufs: {report:#}");
        assert_eq!(m["in_use_after_close"], 0, "{side} mbufs: {report:#}");
    }
    let http = &lg["http"];
    let ok = http["status_2xx"].as_u64().unwrap();
    assert!(ok > 0, "no 2xx: {report:#}");
    assert_eq!(http["responses"].as_u64().unwrap(), ok, "non-2xx answers: {report:#}");
    assert_eq!(lg["socket_errors"].as_u64().unwrap(), 0, "socket errors: {report:#}");
    assert_eq!(lg["unfinished"].as_u64().unwrap(), 0, "requests left unanswered: {report:#}");
    assert!(lg["requests_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(lg["client"]["net"]["connections_opened"].as_u64().unwrap(), connections, "{report:#}");
    assert!(lg["latency"]["count"].as_u64().unwrap() == ok && lg["latency"]["p99_us"].as_u64().unwrap() > 0);
    (ok, http["records_2xx"].as_u64().unwrap())
}

#[test]
fn loadgen_body_over_a_ring_pair_every_2xx_batch_is_in_the_log() {
    let _dpdk = dpdk_lock();
    let dir = TempDir::new("loadgen-body");
    let lines = 50u64;
    let body: String =
        (0..lines).map(|i| format!("cpu,host=h{} usage={i}.5 {}\n", i % 7, 1_700_000_000_000_000_000u64 + i)).collect();
    std::fs::write(dir.path("body.lp"), body).unwrap();
    let report = bench(&dir, "durable", &["--body", dir.path("body.lp").to_str().unwrap()], CONNECTIONS);
    let (ok, records) = check_loadgen(&report, CONNECTIONS);
    assert_eq!(records, ok * lines);
    assert_eq!(dumped_records(&dir), ok * lines, "the log holds exactly the 2xx batches: {report:#}");
    assert_eq!(report["serve"]["records_written"].as_u64().unwrap(), ok * lines);
    assert_eq!(report["serve"]["http"]["responses_2xx"].as_u64().unwrap(), ok, "serve answered what loadgen counted");
}

/// 10,000 connections closing at once at the end: what the two workers
/// sent that the other never read (final ACKs, FIN retransmissions) is left
/// in the rings; `bench` frees it before counting, so both pools still
/// balance, and it says how many frames that was.
#[test]
fn ten_thousand_connections_over_a_ring_pair_leave_no_mbuf_behind() {
    let _dpdk = dpdk_lock();
    let dir = TempDir::new("loadgen-10k");
    std::fs::write(dir.path("body.lp"), "c10k,host=a v=1i 1700000000000000000\n").unwrap();
    let report = bench(&dir, "enqueued", &["--body", dir.path("body.lp").to_str().unwrap()], 10_000);
    let (ok, records) = check_loadgen(&report, 10_000);
    assert_eq!(records, ok);
    assert_eq!(report["serve"]["records_written"].as_u64().unwrap(), ok, "{report:#}");
    eprintln!("10,000 connections: {ok} requests, {} frames in the rings at stop", report["frames_in_flight_at_stop"]);
}

/// A writer far behind (one batch in flight, 150 records per batch, fsync
/// per batch) under 200 connections of 100-line bodies: most requests get
/// 503, and bodies spill over batch boundaries all the time. Every 2xx
/// batch is in the log, and the log holds nothing else but the heads of
/// spilled bodies refused midway (`records_handed_over_then_refused`):
/// written == accepted + that, exactly, and `dump` agrees.
#[test]
fn a_writer_far_behind_gets_503s_and_the_log_holds_exactly_what_was_counted() {
    let _dpdk = dpdk_lock();
    let dir = TempDir::new("loadgen-503");
    let lines = 100u64;
    let body: String = (0..lines).map(|i| format!("full,host=h{} v={i}i {}\n", i % 10, 1_700_000_000 + i)).collect();
    std::fs::write(dir.path("body.lp"), body).unwrap();
    let config = config_with(&dir, "durable", "channel_batches = 1\nbatch_records = 150\n");
    let report = bench_with(&dir, config, &["--body", dir.path("body.lp").to_str().unwrap()], 200);
    let (http, serve) = (&report["serve"]["http"], &report["serve"]);
    let n = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap_or_else(|| panic!("no {k}: {report:#}"));
    assert!(n(http, "responses_503") > 0, "the writer never fell behind: {report:#}");
    assert!(n(http, "responses_2xx") > 0, "{report:#}");
    assert_eq!(n(http, "records_accepted"), n(http, "responses_2xx") * lines, "{report:#}");
    let written = n(serve, "records_written");
    assert_eq!(written, n(http, "records_accepted") + n(http, "records_handed_over_then_refused"), "{report:#}");
    assert_eq!(dumped_records(&dir), written, "{report:#}");
    assert_eq!(report["loadgen"]["socket_errors"], 0, "{report:#}");
    eprintln!(
        "writer behind: {} x 2xx, {} x 503, {} records written of refused spilled bodies",
        n(http, "responses_2xx"),
        n(http, "responses_503"),
        n(http, "records_handed_over_then_refused")
    );
}

#[test]
fn loadgen_replays_the_http_requests_of_a_pcap() {
    let _dpdk = dpdk_lock();
    let dir = TempDir::new("loadgen-pcap");
    let pcap = dir.path("http.pcap");
    let out = run(&["gen-pcap", "--kind", "http", "--out", pcap.to_str().unwrap(), "--packets", "400"], LIMIT);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = bench(&dir, "enqueued", &["--pcap", pcap.to_str().unwrap()], CONNECTIONS);
    let (ok, records) = check_loadgen(&report, CONNECTIONS);
    assert!(report["loadgen"]["requests_in_set"].as_u64().unwrap() > 1, "several distinct requests from the pcap");
    assert!(records > ok * 10, "each synthetic request carries 10-49 lines");
    assert_eq!(dumped_records(&dir), records, "the log holds exactly the records of the 2xx requests: {report:#}");
}

/// Between processes: `serve` and `loadgen` as two DPDK processes joined by
/// memif (`role=server` / `role=client` on one socket). Two pollers share the
/// cores, so this checks function, not speed.
#[test]
fn loadgen_and_serve_in_two_processes_over_memif() {
    use std::process::{Command, Stdio};
    use std::time::Instant;
    let _dpdk = dpdk_lock();
    let dir = TempDir::new("loadgen-memif");
    let lines = 20u64;
    let body: String =
        (0..lines).map(|i| format!("mem,host=h{i} v={i} {}\n", 1_700_000_000_000_000_000u64 + i)).collect();
    std::fs::write(dir.path("body.lp"), body).unwrap();
    let config = config(&dir, "durable");
    let socket = dir.path("memif.sock");
    let eal = |role: &str| {
        vec![
            "--no-huge".to_string(),
            "-m".into(),
            "512".into(),
            "--no-shconf".into(),
            "--no-pci".into(),
            "-l".into(),
            "0-1".into(),
            "--log-level".into(),
            "*:warning".into(),
            "--vdev".into(),
            format!("net_memif0,role={role},socket={}", socket.display()),
        ]
    };
    let serve_log = std::fs::File::create(dir.path("serve.log")).unwrap();
    let serve_report = dir.path("serve.json");
    let mut args: Vec<String> =
        ["serve", "--config", config.to_str().unwrap(), "--stats-interval", "0", "--report"].map(String::from).to_vec();
    args.push(serve_report.to_str().unwrap().into());
    args.push("--".into());
    args.extend(eal("server"));
    let serve = Command::new(BIN).args(&args).stdout(Stdio::null()).stderr(serve_log).spawn().expect("spawn serve");
    let pid = serve.id().to_string();
    let mut serve = ChildGuard(Some(serve));
    let start = Instant::now();
    while !std::fs::read_to_string(dir.path("serve.log")).unwrap_or_default().contains("serving ") {
        assert!(start.elapsed() < Duration::from_secs(30), "serve did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let report = dir.path("loadgen.json");
    let mut args: Vec<String> =
        ["loadgen", "--body", dir.path("body.lp").to_str().unwrap(), "--connections", "16"].map(String::from).to_vec();
    args.extend(
        ["--duration", "3", "--stats-interval", "0", "--report", report.to_str().unwrap(), "--"].map(String::from),
    );
    args.extend(eal("client"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&args, LIMIT);
    assert!(out.status.success(), "loadgen failed:\n{}\n{}", text(&out.stdout), text(&out.stderr));
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = serve.0.as_mut().unwrap().wait().unwrap();
    serve.0 = None;
    assert!(status.success(), "serve: {}", std::fs::read_to_string(dir.path("serve.log")).unwrap());
    let lg = read_json(&report);
    assert_balances(&lg);
    let serve = read_json(&serve_report);
    assert_balances(&serve);
    let ok = lg["http"]["status_2xx"].as_u64().unwrap();
    assert!(ok > 0 && lg["requests_per_s"].as_f64().unwrap() > 0.0, "{lg:#}");
    assert_eq!(lg["socket_errors"].as_u64().unwrap(), 0, "{lg:#}");
    assert_eq!(lg["http"]["responses"].as_u64().unwrap(), ok, "{lg:#}");
    assert_eq!(lg["unfinished"].as_u64().unwrap(), 0, "{lg:#}");
    assert_eq!(dumped_records(&dir), ok * lines, "the log holds exactly the 2xx batches");
    assert_eq!(serve["records_written"].as_u64().unwrap(), ok * lines);
}
