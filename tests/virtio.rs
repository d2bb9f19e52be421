//! The virtio PMD path without a VM: the appliance (`rx`) on `net_virtio_user`,
//! fed by a second DPDK process, `dpdk-testpmd`, that owns the vhost-user
//! socket (`net_vhost`) and forwards a generated pcap into it once. Every
//! frame testpmd reports as transmitted on the vhost port must be received
//! and classified by the appliance (testpmd may itself drop when the virtio
//! ring stays full past its retries; it counts those as TX-dropped).
//!
//! EAL flags as verified on this machine (docs/operations.md): `--no-huge`
//! works on both sides; the two busy-polling workers sit on different CPUs.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const FRAMES: u64 = 20_000;

#[test]
fn appliance_on_virtio_user_counts_every_frame_from_vhost() {
    let dir = TempDir::new("virtio");
    let pcap = dir.path("load.pcap");
    let sock = dir.path("vhost.sock");
    let report = dir.path("report.json");
    let profile = dir.path("virtio-user.toml");
    let gen = run(
        &["gen-pcap", "--kind", "udp-line", "--out", pcap.to_str().unwrap(), "--packets", &FRAMES.to_string()],
        Duration::from_secs(30),
    );
    assert!(gen.status.success(), "{}", text(&gen.stderr));
    // Appliance: worker on lcore 0 (main lcore 1), testpmd forwards on lcore 1.
    std::fs::write(
        &profile,
        format!(
            "[eal]\nargs = [\"--no-huge\", \"-m\", \"512\", \"--no-shconf\", \"--no-pci\", \"-l\", \"0-1\", \"--main-lcore\", \"1\", \
             \"--vdev\", \"net_virtio_user0,path={},queues=1\"]\n[port]\nport_id = 0\n",
            sock.display()
        ),
    )
    .unwrap();

    let _dpdk = dpdk_lock();
    let testpmd = Command::new("dpdk-testpmd")
        .args(["--no-huge", "-m", "512", "--no-shconf", "--no-pci", "-l", "0-1", "--log-level", "*:error"])
        .arg("--vdev")
        .arg(format!("net_pcap0,rx_pcap={}", pcap.display()))
        .arg("--vdev")
        .arg(format!("net_vhost0,iface={},queues=1", sock.display()))
        .args(["--", "-i", "--no-flush-rx", "--total-num-mbufs=32768"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("dpdk-testpmd (package dpdk-dev) must be installed: scripts/setup.sh");
    let mut testpmd = ChildGuard(Some(testpmd));
    let start = Instant::now();
    while !sock.exists() {
        assert!(start.elapsed() < Duration::from_secs(20), "testpmd did not create the vhost socket");
        std::thread::sleep(Duration::from_millis(50));
    }

    let appliance = Command::new(BIN)
        .args(["rx", "--profile", profile.to_str().unwrap(), "--packets", &FRAMES.to_string()])
        .args(["--duration", "20", "--stats-interval", "0", "--report", report.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut appliance = ChildGuard(Some(appliance));
    // The banner says the port is started (and so connected to vhost).
    let mut stderr = BufReader::new(appliance.0.as_mut().unwrap().stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "appliance exited early: {seen}");
        seen.push_str(&line);
        if line.starts_with("rx on port") {
            break;
        }
    }
    std::thread::sleep(Duration::from_secs(1));

    // io forwarding from the pcap port (0) to vhost (1); retry when the virtio ring is full.
    let stdin = testpmd.0.as_mut().unwrap().stdin.as_mut().unwrap();
    stdin.write_all(b"set fwd io retry\nstart\n").unwrap();
    stdin.flush().unwrap();

    let start = Instant::now();
    let status = loop {
        if let Some(status) = appliance.0.as_mut().unwrap().try_wait().unwrap() {
            break status;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "appliance did not finish");
        std::thread::sleep(Duration::from_millis(50));
    };
    appliance.0 = None;
    let mut rest = String::new();
    let _ = stderr.read_to_string(&mut rest);
    assert!(status.success(), "appliance failed: {seen}{rest}");

    // "stop" prints per-port forward statistics; port 1 is the vhost port.
    let mut pmd = testpmd.0.take().unwrap();
    pmd.stdin.as_mut().unwrap().write_all(b"stop\nquit\n").unwrap();
    let mut out = String::new();
    pmd.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let _ = pmd.wait();
    let port1 = out.split("Forward statistics for port 1").nth(1).expect("testpmd printed port 1 statistics");
    let field = |name: &str| -> u64 {
        let at = port1.find(name).unwrap_or_else(|| panic!("no {name} in {port1}")) + name.len();
        port1[at..].split_whitespace().next().unwrap().parse().unwrap()
    };
    let (sent, dropped) = (field("TX-packets:"), field("TX-dropped:"));
    assert_eq!(sent + dropped, FRAMES, "testpmd forwarded the whole pcap: {port1}");
    assert!(sent > FRAMES / 2, "most frames reached the vhost ring: {port1}");

    let r = read_json(&report);
    assert_balances(&r);
    assert_eq!(r["rx_packets"], sent, "appliance received every frame testpmd sent (dropped {dropped}): {r:#}");
    assert_eq!(r["classes"]["ipv4_udp"], sent, "{r:#}");
    assert_eq!(r["classes"]["malformed"], 0);
    assert_eq!(r["port"]["name"], "net_virtio_user0");
}

use std::io::Read as _;
