//! `replay` on real DPDK (`net_pcap` on `--no-huge`): exact per-class counts on
//! a pcap of known composition, speed mode reports, and clean failures.

mod common;

use common::*;
use metricsstream::pcap::synth::{client, tcp_frame, udp_frame, TcpFlags, SERVER_IP, SERVER_MAC};
use smoltcp::wire::{Ipv4Packet, Ipv6Address};
use std::time::Duration;

fn udp() -> Vec<u8> {
    let (ip, mac) = client(1);
    udp_frame((ip, mac, 4000), (SERVER_IP, SERVER_MAC, 8089), b"cpu,host=a usage=1 1\n")
}

fn tcp() -> Vec<u8> {
    let (ip, mac) = client(2);
    tcp_frame((ip, mac, 5000), (SERVER_IP, SERVER_MAC, 8080), 1, 0, TcpFlags { syn: true, ..Default::default() }, &[])
}

/// 802.1Q tag (VLAN 42) inserted after the MAC addresses.
fn vlan(mut f: Vec<u8>) -> Vec<u8> {
    f.splice(12..12, [0x81, 0x00, 0x00, 0x2a]);
    f
}

fn arp() -> Vec<u8> {
    let mut f = vec![0xff; 6]; // broadcast
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x09, 0x08, 0x06]); // src MAC, ethertype ARP
    f.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]); // Ethernet/IPv4, request
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x09, 198, 18, 0, 2]); // sender
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&[198, 18, 0, 1]); // target
    f
}

fn ipv6_udp() -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x86, 0xdd];
    f.extend_from_slice(&[0x60, 0, 0, 0, 0, 12, 17, 64]); // version 6, payload 12, UDP, hop limit
    f.extend_from_slice(&Ipv6Address::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2).octets());
    f.extend_from_slice(&Ipv6Address::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).octets());
    f.extend_from_slice(&[0x0f, 0xa0, 0x1f, 0x99, 0, 12, 0, 0, b'a', b'=', b'1', b'\n']);
    f
}

/// ICMP echo request: the UDP frame with protocol 1 and a fixed checksum.
fn icmp() -> Vec<u8> {
    let mut f = udp();
    f[14 + 9] = 1;
    Ipv4Packet::new_unchecked(&mut f[14..]).fill_checksum();
    f
}

fn bad_checksum() -> Vec<u8> {
    let mut f = udp();
    f[14 + 10] ^= 0x5a;
    f
}

fn lldp() -> Vec<u8> {
    let mut f = vec![0x01, 0x80, 0xc2, 0, 0, 0x0e, 0x02, 0, 0, 0, 0, 3, 0x88, 0xcc];
    f.resize(60, 0);
    f
}

#[test]
fn known_composition_gives_exact_counts() {
    let dir = TempDir::new("compose");
    let pcap = dir.path("mix.pcap");
    let report = dir.path("report.json");
    let trace = dir.path("trace.pcap");
    let mut frames: Vec<Vec<u8>> = Vec::new();
    let mut add = |n: usize, f: Vec<u8>| frames.extend(std::iter::repeat_n(f, n));
    add(10, udp());
    add(5, vlan(udp()));
    add(3, arp());
    add(4, ipv6_udp());
    add(6, icmp());
    add(7, tcp());
    add(2, vec![0xaa; 10]); // runts
    add(3, tcp()[..14 + 20 + 10].to_vec()); // TCP header cut short
    add(2, bad_checksum());
    add(1, lldp());
    write_pcap(&pcap, &frames);

    let r = replay_once(&pcap, &report, &["--trace-pcap", trace.to_str().unwrap()]);
    assert_eq!(r["rx_packets"], 43, "{r:#}");
    // --trace-pcap: the worker saw exactly the frames of the file, in order.
    let mut traced = metricsstream::pcap::PcapReader::open(&trace).unwrap();
    let mut frame = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        assert!(traced.next_into(&mut frame).unwrap().is_some(), "trace ends at frame {i}");
        assert_eq!(&frame, f, "frame {i}");
    }
    assert_eq!(traced.next_into(&mut frame).unwrap(), None);
    let c = &r["classes"];
    assert_eq!(c["ipv4_udp"], 15);
    assert_eq!(c["arp"], 3);
    assert_eq!(c["ipv6"], 4);
    assert_eq!(c["ipv4_other"], 6);
    assert_eq!(c["ipv4_tcp"], 7);
    assert_eq!(c["other"], 1);
    assert_eq!(c["malformed"], 7);
    assert_eq!(r["malformed"]["runt"], 2);
    assert_eq!(r["malformed"]["truncated"], 3);
    assert_eq!(r["malformed"]["bad_checksum"], 2);
    assert_eq!(r["malformed"]["bad_header"], 0);
    assert_eq!(r["vlan_tagged"], 5);
    let bytes: usize = frames.iter().map(Vec::len).sum();
    assert_eq!(r["rx_bytes"], bytes as u64);
    assert_eq!(r["port"]["ipackets"], 43);
}

#[test]
fn looping_replay_reports_rates_that_add_up() {
    let dir = TempDir::new("loop");
    let pcap = dir.path("load.pcap");
    let report = dir.path("report.json");
    let gen = run(
        &["gen-pcap", "--kind", "udp-statsd", "--out", pcap.to_str().unwrap(), "--packets", "2000"],
        Duration::from_secs(30),
    );
    assert!(gen.status.success(), "{}", text(&gen.stderr));

    let _dpdk = dpdk_lock();
    let out = run(
        &["replay", "--pcap", pcap.to_str().unwrap(), "--duration", "2", "--report", report.to_str().unwrap()],
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "replay failed: {}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains(" Mpps "), "no stats line: {stderr}");
    let r = read_json(&report);
    assert_balances(&r);
    let rx = r["rx_packets"].as_u64().unwrap();
    // Far more than one pass: the file is replayed in a loop.
    assert!(rx > 2000 * 10, "{r:#}");
    assert_eq!(r["classes"]["ipv4_udp"].as_u64().unwrap(), rx);
    let mpps = r["rx_mpps"].as_f64().unwrap();
    let secs = r["duration_s"].as_f64().unwrap();
    assert!((mpps * 1e6 * secs - rx as f64).abs() / (rx as f64) < 1e-6);
    assert!(r["port"]["ipackets"].as_u64().unwrap() >= rx);
    assert_eq!(r["dropped"]["nombuf"], 0);
    assert!(text(&out.stdout).contains("Mpps"));
}

/// The last stderr line is our error, alone on its line; nothing panicked.
fn assert_one_line_error(out: &std::process::Output, needle: &str) {
    assert!(!out.status.success(), "expected failure");
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains(needle), "{stderr}");
}

#[test]
fn missing_pcap_is_a_one_line_error() {
    let out = run(&["replay", "--pcap", "/nonexistent/x.pcap", "--duration", "1"], Duration::from_secs(30));
    assert_one_line_error(&out, "/nonexistent/x.pcap");
}

/// A negative, zero, infinite or non-numeric run length is refused by the
/// argument parser (exit 2, before the EAL starts), never a panic.
#[test]
fn bad_durations_and_intervals_are_refused_before_the_eal_starts() {
    let cases: [&[&str]; 6] = [
        &["serve", "--config", "x.toml", "--duration=-1"],
        &["serve", "--config", "x.toml", "--stats-interval=inf"],
        &["replay", "--pcap", "x.pcap", "--duration=0"],
        &["rx", "--stats-interval=-2"],
        &["loadgen", "--body", "x", "--duration=nan"],
        &["bench", "--config", "x.toml", "--body", "x", "--stats-interval=-1"],
    ];
    for args in cases {
        let out = run(args, Duration::from_secs(30));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out.stderr));
        assert_one_line_error(&out, "seconds");
        assert!(!text(&out.stderr).contains("EAL"), "{args:?}: the EAL started");
    }
}

#[test]
fn bad_eal_arguments_are_a_one_line_error() {
    let dir = TempDir::new("badeal");
    let pcap = dir.path("p.pcap");
    write_pcap(&pcap, &[udp()]);
    let _dpdk = dpdk_lock();
    let out = run(
        &["replay", "--pcap", pcap.to_str().unwrap(), "--duration", "1", "--", "--no-such-eal-flag"],
        Duration::from_secs(30),
    );
    assert_one_line_error(&out, "EAL initialisation failed");
}

#[test]
fn unknown_profile_key_is_a_one_line_error() {
    let dir = TempDir::new("badprofile");
    let profile = dir.path("p.toml");
    std::fs::write(&profile, "[eal]\nargs = [\"--no-huge\"]\n[port]\nrx_queue = 2\n").unwrap();
    let out = run(
        &["replay", "--pcap", "/dev/null", "--profile", profile.to_str().unwrap(), "--duration", "1"],
        Duration::from_secs(30),
    );
    assert_one_line_error(&out, "rx_queue");
}

#[test]
fn not_a_pcap_is_a_one_line_error() {
    let dir = TempDir::new("notpcap");
    let f = dir.path("x.pcap");
    std::fs::write(&f, b"this is not a capture file at all").unwrap();
    let out = run(&["replay", "--pcap", f.to_str().unwrap(), "--duration", "1"], Duration::from_secs(30));
    assert_one_line_error(&out, "not a pcap file");
}
