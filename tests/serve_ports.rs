//! `serve` and the port it is given: several workers need a port that keeps
//! each flow on one queue (RSS, or the kernel's AF_PACKET fanout); on one
//! that cannot (`net_pcap`: queues, no RSS) `serve` refuses to start unless
//! told `--allow-no-rss`, and says how flows are spread either way.

mod common;

use common::*;
use metricsstream::pcap::synth::{client, udp_frame, SERVER_IP, SERVER_MAC};
use std::time::Duration;

/// `serve --workers 2` on a two-queue `net_pcap` port (one rx/tx pcap per queue).
fn serve_two_pcap_queues(dir: &TempDir, extra: &[&str]) -> std::process::Output {
    let (ip, mac) = client(1);
    let frame = udp_frame((ip, mac, 4000), (SERVER_IP, SERVER_MAC, 8089), b"cpu v=1i 1\n");
    let (rx0, rx1) = (dir.path("rx0.pcap"), dir.path("rx1.pcap"));
    write_pcap(&rx0, std::slice::from_ref(&frame));
    write_pcap(&rx1, &[frame]);
    let config = dir.path("config.toml");
    std::fs::write(&config, format!("[writer]\ndata_dir = \"{}\"\n", dir.path("data").display())).unwrap();
    let vdev = format!(
        "net_pcap0,rx_pcap={},rx_pcap={},tx_pcap={},tx_pcap={}",
        rx0.display(),
        rx1.display(),
        dir.path("tx0.pcap").display(),
        dir.path("tx1.pcap").display()
    );
    let mut args = vec!["serve", "--config", config.to_str().unwrap(), "--workers", "2", "--duration", "1"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--stats-interval", "0", "--", "--no-huge", "-m", "512", "--no-shconf", "--no-pci"]);
    args.extend_from_slice(&["--lcores", "0@0,1@1,2@1", "--log-level", "*:warning", "--vdev", &vdev]);
    run(&args, Duration::from_secs(60))
}

#[test]
fn several_workers_on_a_port_without_rss_are_refused_unless_allowed() {
    let dir = TempDir::new("norss");
    let _dpdk = dpdk_lock();
    let refused = serve_two_pcap_queues(&dir, &[]);
    let stderr = text(&refused.stderr);
    assert!(!refused.status.success(), "serve started without RSS: {stderr}");
    assert!(stderr.contains("RSS unavailable") && stderr.contains("--allow-no-rss"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let allowed = serve_two_pcap_queues(&dir, &["--allow-no-rss"]);
    let stderr = text(&allowed.stderr);
    assert!(allowed.status.success(), "{stderr}");
    assert!(stderr.contains("with 2 worker(s), flows spread by nothing (no RSS: --allow-no-rss)"), "{stderr}");
}
