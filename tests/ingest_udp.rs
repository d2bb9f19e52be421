//! `replay --config` runs the UDP ingestion pipeline on real DPDK: a pcap of
//! known content (valid, invalid, rate-limited, StatsD, other ports) gives
//! exact per-reason counts, and what was written comes back from `dump`
//! exactly as the pcap carried it.

mod common;

use common::*;
use metricsstream::pcap::synth::{client, udp_frame, SERVER_IP, SERVER_MAC};
use std::collections::BTreeSet;
use std::time::Duration;

fn datagram(client_no: u32, port: u16, payload: &str) -> Vec<u8> {
    let (ip, mac) = client(client_no);
    udp_frame((ip, mac, 40_000), (SERVER_IP, SERVER_MAC, port), payload.as_bytes())
}

#[test]
fn mixed_pcap_gives_exact_counts_and_dump_returns_the_records() {
    let dir = TempDir::new("ingest");
    let pcap = dir.path("mixed.pcap");
    let data = dir.path("data");
    let report = dir.path("report.json");
    let config = dir.path("config.toml");
    // Client 3 may send 4 records at once, then 1 per second.
    let (limited_ip, _) = client(3);
    std::fs::write(
        &config,
        format!(
            "[writer]\ndata_dir = \"{}\"\n[[limits.client]]\nid = \"{limited_ip}\"\nrate = 1\nburst = 4\n",
            data.display()
        ),
    )
    .unwrap();

    let mut frames = Vec::new();
    let mut expected_lines = BTreeSet::new();
    // Client 1: 5 datagrams of 2 valid lines each.
    for i in 0..5 {
        let a = format!("cpu,host=web-01,region=eu usage_user=1{i}i,idle=9{i}i 170000000000000000{i}");
        let b = format!("mem,host=web-01 used={i}i,free=4{i}i 170000000000000100{i}");
        frames.push(datagram(1, 8089, &format!("{a}\n{b}\n")));
        expected_lines.insert(a);
        expected_lines.insert(b);
    }
    // Client 2: one valid and one invalid line per datagram.
    for i in 0..3 {
        let good = format!("disk,path=/data used={i}i 170000000000000200{i}");
        frames.push(datagram(2, 8089, &format!("{good}\nthis is not line protocol\n")));
        expected_lines.insert(good);
    }
    // Client 3: 4 datagrams of 2 records; only the first two fit its burst.
    for i in 0..4 {
        let a = format!("net,iface=eth0 rx={i}i 170000000000000300{i}");
        let b = format!("net,iface=eth1 rx={i}i 170000000000000300{i}");
        frames.push(datagram(3, 8089, &format!("{a}\n{b}\n")));
        if i < 2 {
            expected_lines.insert(a);
            expected_lines.insert(b);
        }
    }
    // Client 4: StatsD, 2 valid metrics and 1 invalid.
    frames.push(datagram(4, 8125, "checkout.requests:1|c|#env:prod\ncheckout.queue:5|g"));
    frames.push(datagram(4, 8125, "checkout.bad:1|nosuchtype"));
    // Not an ingestion port.
    frames.push(datagram(5, 53, "dns?"));
    write_pcap(&pcap, &frames);

    let r = replay_once(&pcap, &report, &["--config", config.to_str().unwrap()]);
    let n = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("no {k} in {r:#}"));
    assert_eq!(n("rx_packets"), frames.len() as u64);
    assert_eq!(n("udp_datagrams"), 15);
    assert_eq!((n("datagrams_line"), n("datagrams_statsd"), n("datagrams_other_port")), (12, 2, 1));
    assert_eq!(n("records_parsed"), 10 + 3 + 8 + 2);
    assert_eq!(n("records_limited"), 4);
    assert_eq!(n("records_accepted"), 19);
    assert_eq!(n("records_invalid"), 3 + 1);
    assert_eq!(n("records_dropped_writer_full"), 0);
    assert_eq!(n("records_written"), 19);

    let verify = run(&["verify", "--data-dir", data.to_str().unwrap()], Duration::from_secs(30));
    assert!(verify.status.success(), "{}", text(&verify.stderr));
    assert!(text(&verify.stdout).contains("records=19"), "{}", text(&verify.stdout));

    let dump = run(&["dump", "--data-dir", data.to_str().unwrap()], Duration::from_secs(30));
    assert!(dump.status.success(), "{}", text(&dump.stderr));
    let dumped = text(&dump.stdout);
    let lines: Vec<&str> = dumped.lines().collect();
    assert_eq!(lines.len(), 19, "{dumped}");
    let line_protocol: BTreeSet<String> =
        lines.iter().filter(|l| !l.starts_with("checkout.")).map(|l| l.to_string()).collect();
    assert_eq!(line_protocol, expected_lines);
    let statsd: Vec<&&str> = lines.iter().filter(|l| l.starts_with("checkout.")).collect();
    assert_eq!(statsd.len(), 2, "{dumped}");
    assert!(statsd.iter().any(|l| l.starts_with("checkout.requests,") && l.contains("type=counter")), "{dumped}");
    assert!(statsd.iter().any(|l| l.starts_with("checkout.queue,") && l.contains("type=gauge")), "{dumped}");
}
