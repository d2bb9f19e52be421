//! Synthetic, realistic load for `gen-pcap`: InfluxDB line-protocol and
//! StatsD/DogStatsD datagrams, and complete HTTP/1.1 TCP conversations
//! (handshake, POST of a line-protocol body, 204, FIN), from many client
//! addresses and ports, with correct IPv4/UDP/TCP checksums.
//!
//! Deterministic for a given seed and base time.

use smoltcp::wire::{IpAddress, IpProtocol, Ipv4Address, Ipv4Packet, TcpPacket, TcpSeqNumber, UdpPacket};
use std::fmt::Write as _;

/// The appliance's address and MAC in generated traffic (benchmarking range).
pub const SERVER_IP: Ipv4Address = Ipv4Address::new(198, 18, 0, 1);
pub const SERVER_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
pub const LINE_PORT: u16 = 8089;
pub const STATSD_PORT: u16 = 8125;
pub const HTTP_PORT: u16 = 8080;
const MSS: usize = 1460;

/// What to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// InfluxDB line protocol over UDP (1-3 lines per datagram) to port 8089.
    UdpLine,
    /// StatsD/DogStatsD over UDP (1-4 metrics per datagram) to port 8125.
    UdpStatsd,
    /// HTTP/1.1 conversations: POST /write with a line-protocol body to port 8080.
    Http,
}

/// A small, fast, seedable PRNG (SplitMix64); no dependency, reproducible.
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// Client number `i` → its address and MAC, spread over 198.18.1.0 – 198.19.255.254.
pub fn client(i: u32) -> (Ipv4Address, [u8; 6]) {
    let n = 256 + i % 130_000;
    let ip = Ipv4Address::new(198, 18 + (n >> 16) as u8, (n >> 8) as u8, (n as u8).max(1));
    let b = i.to_be_bytes();
    (ip, [0x02, 0x01, b[0], b[1], b[2], b[3]])
}

fn ethernet(dst: [u8; 6], src: [u8; 6], ethertype: u16, l3_len: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + l3_len);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.resize(14 + l3_len, 0);
    f
}

fn ipv4_header(ip: &mut [u8], src: Ipv4Address, dst: Ipv4Address, protocol: IpProtocol, ident: u16) {
    let total = ip.len() as u16;
    let mut p = Ipv4Packet::new_unchecked(ip);
    p.set_version(4);
    p.set_header_len(20);
    p.set_total_len(total);
    p.set_ident(ident);
    p.set_dont_frag(true);
    p.set_hop_limit(64);
    p.set_next_header(protocol);
    p.set_src_addr(src);
    p.set_dst_addr(dst);
    p.fill_checksum();
}

/// An Ethernet/IPv4/UDP frame with valid checksums.
pub fn udp_frame(src: (Ipv4Address, [u8; 6], u16), dst: (Ipv4Address, [u8; 6], u16), payload: &[u8]) -> Vec<u8> {
    let l3_len = 20 + 8 + payload.len();
    let mut f = ethernet(dst.1, src.1, 0x0800, l3_len);
    let ip = &mut f[14..];
    ipv4_header(ip, src.0, dst.0, IpProtocol::Udp, src.2);
    let mut udp = UdpPacket::new_unchecked(&mut ip[20..]);
    udp.set_src_port(src.2);
    udp.set_dst_port(dst.2);
    udp.set_len((8 + payload.len()) as u16);
    udp.payload_mut().copy_from_slice(payload);
    udp.fill_checksum(&IpAddress::Ipv4(src.0), &IpAddress::Ipv4(dst.0));
    f
}

/// TCP flags of a generated segment.
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpFlags {
    pub syn: bool,
    pub ack: bool,
    pub psh: bool,
    pub fin: bool,
}

/// An Ethernet/IPv4/TCP frame with valid checksums.
pub fn tcp_frame(
    src: (Ipv4Address, [u8; 6], u16),
    dst: (Ipv4Address, [u8; 6], u16),
    seq: u32,
    ack: u32,
    flags: TcpFlags,
    payload: &[u8],
) -> Vec<u8> {
    let l3_len = 20 + 20 + payload.len();
    let mut f = ethernet(dst.1, src.1, 0x0800, l3_len);
    let ip = &mut f[14..];
    ipv4_header(ip, src.0, dst.0, IpProtocol::Tcp, (seq >> 16) as u16);
    let mut tcp = TcpPacket::new_unchecked(&mut ip[20..]);
    tcp.set_src_port(src.2);
    tcp.set_dst_port(dst.2);
    tcp.set_seq_number(TcpSeqNumber(seq as i32));
    tcp.set_ack_number(TcpSeqNumber(if flags.ack { ack as i32 } else { 0 }));
    tcp.set_header_len(20);
    tcp.set_syn(flags.syn);
    tcp.set_ack(flags.ack);
    tcp.set_psh(flags.psh);
    tcp.set_fin(flags.fin);
    tcp.set_window_len(64240);
    tcp.payload_mut().copy_from_slice(payload);
    tcp.fill_checksum(&IpAddress::Ipv4(src.0), &IpAddress::Ipv4(dst.0));
    f
}

const HOSTS: [&str; 8] = ["web-01", "web-02", "api-01", "api-02", "db-01", "cache-01", "edge-01", "batch-01"];
const REGIONS: [&str; 4] = ["eu-west-1", "us-east-1", "us-west-2", "ap-south-1"];
const SERVICES: [&str; 5] = ["checkout", "search", "auth", "billing", "ingest"];

/// The order of a generated line's tags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum TagOrder {
    /// Sorted by key, as Telegraf and the Influx client libraries write them
    /// (their series key is built sorted): stored as received.
    #[default]
    Sorted,
    /// In the order of a hand-written line (`cpu,host=..,region=..,cpu=..`):
    /// every line is canonicalised before it is stored, the worst case.
    Unsorted,
}

/// Appends one InfluxDB line-protocol line (with `\n`) in the style Telegraf
/// sends: several tags (in `order`), int/uint/float/bool/string fields, ns
/// timestamp. The random draws do not depend on `order`.
pub fn line_protocol_line(rng: &mut SplitMix64, ts_ns: u64, order: TagOrder, out: &mut String) {
    let host = rng.pick(&HOSTS);
    let region = rng.pick(&REGIONS);
    let mut series = |measurement: &str, tags: &mut [(&str, String)]| {
        if order == TagOrder::Sorted {
            tags.sort_unstable_by(|a, b| a.0.cmp(b.0));
        }
        out.push_str(measurement);
        for (key, value) in tags.iter() {
            let _ = write!(out, ",{key}={value}");
        }
    };
    let (h, r) = (host.to_string(), region.to_string());
    let _ = match rng.below(5) {
        0 => {
            series("cpu", &mut [("host", h), ("region", r), ("cpu", format!("cpu{}", rng.below(16)))]);
            writeln!(
                out,
                " usage_user={:.3},usage_system={:.3},usage_idle={:.3},throttled=false {ts_ns}",
                rng.below(100_000) as f64 / 1000.0,
                rng.below(30_000) as f64 / 1000.0,
                rng.below(100_000) as f64 / 1000.0
            )
        }
        1 => {
            series("mem", &mut [("host", h), ("region", r)]);
            writeln!(
                out,
                " used={}i,free={}i,available_percent={:.2},swap_used={}u {ts_ns}",
                rng.below(1 << 34),
                rng.below(1 << 33),
                rng.below(10_000) as f64 / 100.0,
                rng.below(1 << 30)
            )
        }
        2 => {
            let service = rng.pick(&SERVICES).to_string();
            let status = rng.pick(&[200, 201, 204, 400, 429, 500]).to_string();
            series(
                "http_requests",
                &mut [("host", h), ("service", service), ("method", "POST".into()), ("status", status)],
            );
            writeln!(
                out,
                " count={}i,latency_ms={:.2},path=\"/api/v1/{}\" {ts_ns}",
                rng.below(5000),
                rng.below(250_000) as f64 / 100.0,
                rng.pick(&SERVICES)
            )
        }
        3 => {
            let device = format!("nvme{}n1", rng.below(4));
            series("disk", &mut [("host", h), ("region", r), ("device", device), ("path", "/data".into())]);
            writeln!(
                out,
                " used_percent={:.2},inodes_free={}i,read_only=false {ts_ns}",
                rng.below(10_000) as f64 / 100.0,
                rng.below(10_000_000)
            )
        }
        _ => {
            let interface = format!("eth{}", rng.below(2));
            series("net", &mut [("host", h), ("region", r), ("interface", interface)]);
            writeln!(
                out,
                " bytes_recv={}u,bytes_sent={}u,err_in={}i,up=true {ts_ns}",
                rng.below(1 << 40),
                rng.below(1 << 40),
                rng.below(10)
            )
        }
    };
}

/// Appends one StatsD/DogStatsD metric (no trailing newline).
pub fn statsd_metric(rng: &mut SplitMix64, out: &mut String) {
    let svc = rng.pick(&SERVICES);
    let host = rng.pick(&HOSTS);
    let _ = match rng.below(6) {
        0 => write!(out, "{svc}.requests:{}|c|#env:prod,host:{host}", 1 + rng.below(10)),
        1 => write!(out, "{svc}.latency:{:.1}|ms|@0.5|#env:prod,host:{host}", rng.below(5000) as f64 / 10.0),
        2 => write!(out, "{svc}.queue_depth:{}|g", rng.below(1000)),
        3 => write!(out, "{svc}.users:{}|s", rng.below(100_000)),
        4 => write!(out, "{svc}.payload_bytes:{}|h|#host:{host}", rng.below(65536)),
        _ => write!(out, "{svc}.db_time:{:.3}|d|#env:prod,db:primary", rng.below(100_000) as f64 / 1000.0),
    };
}

/// Generation parameters.
#[derive(Clone, Debug)]
pub struct Params {
    pub kind: Kind,
    /// Frames to write (HTTP: whole conversations up to at least this many).
    pub packets: u64,
    /// Distinct client addresses.
    pub clients: u32,
    pub seed: u64,
    /// Timestamp of the first packet and of the first metric, in ns since the epoch.
    pub base_time_ns: u64,
    /// Tag order of line-protocol lines.
    pub tag_order: TagOrder,
}

/// Generates the frames of `params`, handing each to `emit(ts_ns, frame)`.
pub fn generate<E>(params: &Params, mut emit: impl FnMut(u64, &[u8]) -> Result<(), E>) -> Result<u64, E> {
    let mut rng = SplitMix64::new(params.seed);
    let clients = params.clients.max(1);
    let mut written = 0u64;
    let mut text = String::with_capacity(2048);
    let server = |port| (SERVER_IP, SERVER_MAC, port);
    while written < params.packets {
        let ts = params.base_time_ns + written * 1_000;
        let (ip, mac) = client(rng.below(u64::from(clients)) as u32);
        let sport = 1024 + rng.below(64_000) as u16;
        match params.kind {
            Kind::UdpLine => {
                text.clear();
                for k in 0..1 + rng.below(3) {
                    line_protocol_line(&mut rng, ts + k, params.tag_order, &mut text);
                }
                emit(ts, &udp_frame((ip, mac, sport), server(LINE_PORT), text.as_bytes()))?;
                written += 1;
            }
            Kind::UdpStatsd => {
                text.clear();
                for k in 0..1 + rng.below(4) {
                    if k > 0 {
                        text.push('\n');
                    }
                    statsd_metric(&mut rng, &mut text);
                }
                emit(ts, &udp_frame((ip, mac, sport), server(STATSD_PORT), text.as_bytes()))?;
                written += 1;
            }
            Kind::Http => {
                text.clear();
                for k in 0..10 + rng.below(40) {
                    line_protocol_line(&mut rng, ts + k, params.tag_order, &mut text);
                }
                written += http_conversation(&mut rng, (ip, mac, sport), ts, text.as_bytes(), &mut emit)?;
            }
        }
    }
    Ok(written)
}

/// One keep-nothing HTTP/1.1 exchange; returns the number of frames emitted.
fn http_conversation<E>(
    rng: &mut SplitMix64,
    cli: (Ipv4Address, [u8; 6], u16),
    ts: u64,
    body: &[u8],
    emit: &mut impl FnMut(u64, &[u8]) -> Result<(), E>,
) -> Result<u64, E> {
    let srv = (SERVER_IP, SERVER_MAC, HTTP_PORT);
    let mut request = format!(
        "POST /write?db=metrics&precision=ns HTTP/1.1\r\nHost: {SERVER_IP}:{HTTP_PORT}\r\nUser-Agent: metricsstream-gen-pcap/1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    let response = b"HTTP/1.1 204 No Content\r\nX-Influxdb-Version: metricsstream\r\n\r\n";
    let (mut c, mut s) = (rng.next_u64() as u32, rng.next_u64() as u32);
    let f = |syn, ack, psh, fin| TcpFlags { syn, ack, psh, fin };
    let mut frames: Vec<Vec<u8>> = Vec::with_capacity(12);
    frames.push(tcp_frame(cli, srv, c, 0, f(true, false, false, false), &[]));
    frames.push(tcp_frame(srv, cli, s, c.wrapping_add(1), f(true, true, false, false), &[]));
    c = c.wrapping_add(1);
    s = s.wrapping_add(1);
    frames.push(tcp_frame(cli, srv, c, s, f(false, true, false, false), &[]));
    for chunk in request.chunks(MSS) {
        frames.push(tcp_frame(cli, srv, c, s, f(false, true, true, false), chunk));
        c = c.wrapping_add(chunk.len() as u32);
    }
    frames.push(tcp_frame(srv, cli, s, c, f(false, true, false, false), &[]));
    frames.push(tcp_frame(srv, cli, s, c, f(false, true, true, false), response));
    s = s.wrapping_add(response.len() as u32);
    frames.push(tcp_frame(cli, srv, c, s, f(false, true, false, true), &[]));
    c = c.wrapping_add(1);
    frames.push(tcp_frame(srv, cli, s, c, f(false, true, false, true), &[]));
    s = s.wrapping_add(1);
    frames.push(tcp_frame(cli, srv, c, s, f(false, true, false, false), &[]));
    for (k, frame) in frames.iter().enumerate() {
        emit(ts + k as u64 * 10_000, frame)?;
    }
    Ok(frames.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{classify, Frame};

    fn params(kind: Kind) -> Params {
        Params {
            kind,
            packets: 500,
            clients: 50,
            seed: 7,
            base_time_ns: 1_700_000_000_000_000_000,
            tag_order: TagOrder::Sorted,
        }
    }

    fn frames(kind: Kind) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        generate::<()>(&params(kind), |_, f| {
            out.push(f.to_vec());
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn udp_line_frames_are_valid_and_checksummed() {
        let fs = frames(Kind::UdpLine);
        assert_eq!(fs.len(), 500);
        for f in &fs {
            let Frame::Ipv4Udp { src, dst, dst_port, payload, .. } = classify(f).frame else { panic!("not UDP") };
            assert_eq!((dst, dst_port), (SERVER_IP, LINE_PORT));
            let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
            let udp = UdpPacket::new_checked(ip.payload()).unwrap();
            assert!(udp.verify_checksum(&IpAddress::Ipv4(src), &IpAddress::Ipv4(dst)));
            let text = std::str::from_utf8(payload).unwrap();
            assert!(text.ends_with('\n') && text.lines().all(|l| l.split(' ').count() == 3), "{text}");
        }
    }

    #[test]
    fn statsd_frames_carry_metrics() {
        for f in frames(Kind::UdpStatsd) {
            let Frame::Ipv4Udp { dst_port, payload, .. } = classify(&f).frame else { panic!("not UDP") };
            assert_eq!(dst_port, STATSD_PORT);
            for m in std::str::from_utf8(payload).unwrap().split('\n') {
                assert!(m.contains(':') && m.contains('|'), "{m}");
            }
        }
    }

    #[test]
    fn http_conversations_are_complete_and_checksummed() {
        let fs = frames(Kind::Http);
        assert!(fs.len() >= 500);
        let mut syns = 0;
        let mut posts = 0;
        for f in &fs {
            let Frame::Ipv4Tcp(segment) = classify(f).frame else { panic!("not TCP") };
            let p = Ipv4Packet::new_checked(segment.ip().packet()).unwrap();
            let tcp = TcpPacket::new_checked(p.payload()).unwrap();
            assert!(tcp.verify_checksum(&IpAddress::Ipv4(p.src_addr()), &IpAddress::Ipv4(p.dst_addr())));
            syns += usize::from(tcp.syn() && !tcp.ack());
            posts += usize::from(tcp.payload().starts_with(b"POST /write"));
        }
        assert!(syns > 0);
        assert_eq!(syns, posts);
    }

    #[test]
    fn same_seed_same_bytes() {
        assert_eq!(frames(Kind::Http), frames(Kind::Http));
    }
}
