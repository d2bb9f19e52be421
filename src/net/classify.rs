//! Classification of received frames: which class a frame belongs to
//! (ARP, IPv4 TCP/UDP/other, IPv6, other ethertypes) or why it is
//! `Malformed`, after 802.1Q/802.1ad tags. Any byte sequence is safe to hand
//! in. The headers the stacks read come back as the checked views of
//! [`wire`](super::wire) (lengths and the IPv4 checksum proved once, here),
//! never as raw slices whose offsets a reader must trust.

use super::wire::{EthernetHeader, Ipv4Datagram, TcpSegment, UdpDatagram};
use smoltcp::wire::{EthernetProtocol, IpProtocol, Ipv4Address, Ipv6Packet};

pub use super::wire::Malformed;

/// An 802.1Q or 802.1ad tag: the TCI, then the next ethertype.
const VLAN_TAG: usize = 4;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
/// The fixed IPv6 header (extension headers are the payload's).
const IPV6_HEADER: usize = 40;
/// An ARP packet for Ethernet and IPv4 addresses.
const ARP_ETH_IPV4: usize = 28;

/// A classified frame, borrowing from the packet buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// An ARP packet (Ethernet/IPv4 sized), starting at the ARP header.
    Arp {
        arp: &'a [u8],
    },
    /// A TCP segment in IPv4 (unfragmented or a first fragment).
    Ipv4Tcp(TcpSegment<'a>),
    /// An IPv4 UDP datagram; `payload` is trimmed to the UDP length.
    Ipv4Udp {
        src: Ipv4Address,
        dst: Ipv4Address,
        src_port: u16,
        dst_port: u16,
        payload: &'a [u8],
    },
    /// IPv4 with another protocol (ICMP, ...) or a non-first fragment.
    Ipv4Other(Ipv4Datagram<'a>),
    /// Any IPv6 packet, trimmed to its length.
    Ipv6 {
        ip: &'a [u8],
    },
    /// Another ethertype.
    Other {
        ethertype: u16,
    },
    Malformed(Malformed),
}

/// Counter index of a frame's class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum FrameClass {
    Arp = 0,
    Ipv4Tcp,
    Ipv4Udp,
    Ipv4Other,
    Ipv6,
    Other,
    Malformed,
}

impl FrameClass {
    pub const COUNT: usize = 7;
    pub const ALL: [FrameClass; FrameClass::COUNT] = [
        FrameClass::Arp,
        FrameClass::Ipv4Tcp,
        FrameClass::Ipv4Udp,
        FrameClass::Ipv4Other,
        FrameClass::Ipv6,
        FrameClass::Other,
        FrameClass::Malformed,
    ];

    /// The name used in reports and metrics.
    pub fn name(self) -> &'static str {
        match self {
            FrameClass::Arp => "arp",
            FrameClass::Ipv4Tcp => "ipv4_tcp",
            FrameClass::Ipv4Udp => "ipv4_udp",
            FrameClass::Ipv4Other => "ipv4_other",
            FrameClass::Ipv6 => "ipv6",
            FrameClass::Other => "other",
            FrameClass::Malformed => "malformed",
        }
    }
}

impl Frame<'_> {
    pub fn class(&self) -> FrameClass {
        match self {
            Frame::Arp { .. } => FrameClass::Arp,
            Frame::Ipv4Tcp(_) => FrameClass::Ipv4Tcp,
            Frame::Ipv4Udp { .. } => FrameClass::Ipv4Udp,
            Frame::Ipv4Other(_) => FrameClass::Ipv4Other,
            Frame::Ipv6 { .. } => FrameClass::Ipv6,
            Frame::Other { .. } => FrameClass::Other,
            Frame::Malformed(_) => FrameClass::Malformed,
        }
    }
}

/// Result of [`classify`]: the frame, its Ethernet header and whether it
/// carried 802.1Q/802.1ad tags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Classified<'a> {
    pub frame: Frame<'a>,
    /// The (outer) Ethernet header: `None` only for a runt.
    pub ethernet: Option<EthernetHeader<'a>>,
    pub vlan_tagged: bool,
}

/// Classifies one Ethernet frame. Never panics, whatever the bytes.
#[inline]
pub fn classify(frame: &[u8]) -> Classified<'_> {
    let Some((header, mut l3)) = frame.split_first_chunk::<{ EthernetHeader::LEN }>() else {
        return Classified { frame: Frame::Malformed(Malformed::Runt), ethernet: None, vlan_tagged: false };
    };
    let ethernet = EthernetHeader::new(header);
    let mut ethertype = ethernet.ethertype();
    let mut vlan_tagged = false;
    // Up to two tags (802.1ad outer + 802.1Q inner); deeper stacks are "other".
    for _ in 0..2 {
        if ethertype != ETHERTYPE_VLAN && ethertype != ETHERTYPE_QINQ {
            break;
        }
        vlan_tagged = true;
        let Some((tag, rest)) = l3.split_first_chunk::<VLAN_TAG>() else {
            return Classified { frame: Frame::Malformed(Malformed::Truncated), ethernet: Some(ethernet), vlan_tagged };
        };
        ethertype = u16::from_be_bytes([tag[2], tag[3]]);
        l3 = rest;
    }
    let frame = match EthernetProtocol::from(ethertype) {
        EthernetProtocol::Ipv4 => classify_ipv4(l3),
        EthernetProtocol::Ipv6 => classify_ipv6(l3),
        EthernetProtocol::Arp => classify_arp(l3),
        EthernetProtocol::Unknown(other) => Frame::Other { ethertype: other },
    };
    Classified { frame, ethernet: Some(ethernet), vlan_tagged }
}

fn classify_arp(arp: &[u8]) -> Frame<'_> {
    // Ethernet/IPv4 ARP is the only kind we answer; its size is fixed.
    if arp.len() < ARP_ETH_IPV4 {
        return Frame::Malformed(Malformed::Truncated);
    }
    Frame::Arp { arp: &arp[..ARP_ETH_IPV4] }
}

fn classify_ipv4(l3: &[u8]) -> Frame<'_> {
    let ip = match Ipv4Datagram::new_checked(l3) {
        Ok(ip) => ip,
        Err(m) => return Frame::Malformed(m),
    };
    // Non-first fragments carry no L4 header.
    if ip.frag_offset() != 0 {
        return Frame::Ipv4Other(ip);
    }
    match ip.protocol() {
        IpProtocol::Tcp => match TcpSegment::new_checked(ip) {
            Ok(tcp) => Frame::Ipv4Tcp(tcp),
            Err(m) => Frame::Malformed(m),
        },
        IpProtocol::Udp => match UdpDatagram::new_checked(ip) {
            Ok(udp) => Frame::Ipv4Udp {
                src: ip.src(),
                dst: ip.dst(),
                src_port: udp.src_port(),
                dst_port: udp.dst_port(),
                payload: udp.payload(),
            },
            Err(m) => Frame::Malformed(m),
        },
        _ => Frame::Ipv4Other(ip),
    }
}

fn classify_ipv6(l3: &[u8]) -> Frame<'_> {
    if l3.len() < IPV6_HEADER {
        return Frame::Malformed(Malformed::Truncated);
    }
    if l3[0] >> 4 != 6 {
        return Frame::Malformed(Malformed::BadHeader);
    }
    let packet = Ipv6Packet::new_unchecked(l3);
    let len = IPV6_HEADER + usize::from(packet.payload_len());
    if len > l3.len() {
        return Frame::Malformed(Malformed::Truncated);
    }
    Frame::Ipv6 { ip: &l3[..len] }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::{EthernetAddress, Ipv4Packet};

    const ETHERTYPE_IPV4: u16 = 0x0800;
    const ETHERTYPE_ARP: u16 = 0x0806;
    const ETHERTYPE_IPV6: u16 = 0x86dd;

    /// Ethernet header: dst, src, ethertype.
    fn eth(ethertype: u16) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f
    }

    /// IPv4 UDP 10.0.0.1:1234 -> 10.0.0.2:8089, payload "cpu v=1", checksum filled.
    fn ipv4_udp() -> Vec<u8> {
        let payload = b"cpu v=1";
        let mut ip = vec![
            0x45, 0x00, // version 4, IHL 5; DSCP/ECN
            0x00, 0x00, // total length (filled below)
            0x00, 0x01, 0x40, 0x00, // id 1, DF, fragment offset 0
            0x40, 17, // TTL 64, protocol UDP
            0x00, 0x00, // header checksum (filled below)
            10, 0, 0, 1, // source
            10, 0, 0, 2, // destination
            0x04, 0xd2, 0x1f, 0x99, // UDP ports 1234 -> 8089
            0x00, 0x00, 0x00, 0x00, // UDP length (below), checksum 0 (none)
        ];
        ip.extend_from_slice(payload);
        let total = ip.len() as u16;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        Ipv4Packet::new_unchecked(&mut ip[..]).fill_checksum();
        ip
    }

    fn frame(ethertype: u16, l3: &[u8]) -> Vec<u8> {
        let mut f = eth(ethertype);
        f.extend_from_slice(l3);
        f
    }

    #[test]
    fn udp_datagram_is_parsed_with_ports_and_payload() {
        let f = frame(ETHERTYPE_IPV4, &ipv4_udp());
        let c = classify(&f);
        assert!(!c.vlan_tagged);
        match c.frame {
            Frame::Ipv4Udp { src, dst, src_port, dst_port, payload } => {
                assert_eq!(src, Ipv4Address::new(10, 0, 0, 1));
                assert_eq!(dst, Ipv4Address::new(10, 0, 0, 2));
                assert_eq!((src_port, dst_port), (1234, 8089));
                assert_eq!(payload, b"cpu v=1");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn tcp_segment_comes_as_a_checked_view() {
        let mut ip = vec![
            0x45, 0x00, 0x00, 0x00, // version 4, IHL 5; total length (filled below)
            0x00, 0x01, 0x40, 0x00, // id 1, DF, fragment offset 0
            0x40, 6, 0x00, 0x00, // TTL 64, protocol TCP, checksum (filled below)
            10, 0, 0, 1, // source
            10, 0, 0, 2, // destination
            0x9c, 0x40, 0x1f, 0x90, // TCP ports 40000 -> 8080
            0, 0, 0, 7, 0, 0, 0, 9, // seq 7, ack 9
            0x50, 0x11, 0xff, 0xff, // data offset 5; FIN ACK; window
            0x00, 0x00, 0x00, 0x00, // checksum, urgent pointer
        ];
        let total = ip.len() as u16;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        Ipv4Packet::new_unchecked(&mut ip[..]).fill_checksum();
        let f = frame(ETHERTYPE_IPV4, &ip);
        let c = classify(&f);
        let eth = c.ethernet.unwrap();
        assert_eq!((eth.dst(), eth.src()), (EthernetAddress([2, 0, 0, 0, 0, 1]), EthernetAddress([2, 0, 0, 0, 0, 2])));
        let Frame::Ipv4Tcp(tcp) = c.frame else { panic!("unexpected {:?}", c.frame) };
        assert_eq!((tcp.ip().src(), tcp.ip().dst()), (Ipv4Address::new(10, 0, 0, 1), Ipv4Address::new(10, 0, 0, 2)));
        assert_eq!((tcp.src_port(), tcp.dst_port(), tcp.seq_number(), tcp.ack_number()), (40000, 8080, 7, 9));
        assert!(tcp.flags().fin() && tcp.flags().ack());
        assert_eq!(tcp.ip().packet(), &ip[..], "the packet smoltcp gets is the IP packet, borrowed");
        // A TCP header cut short or with a data offset beyond it.
        let cut = {
            let mut cut = ip[..39].to_vec();
            cut[2..4].copy_from_slice(&39u16.to_be_bytes());
            Ipv4Packet::new_unchecked(&mut cut[..]).fill_checksum();
            cut
        };
        assert_eq!(classify(&frame(ETHERTYPE_IPV4, &cut)).frame, Frame::Malformed(Malformed::Truncated));
        let mut offset = ip.clone();
        offset[32] = 0x60;
        assert_eq!(classify(&frame(ETHERTYPE_IPV4, &offset)).frame, Frame::Malformed(Malformed::BadHeader));
        // A later fragment is "other", whatever its protocol.
        let mut later = ip;
        later[6..8].copy_from_slice(&[0x00, 0x01]);
        Ipv4Packet::new_unchecked(&mut later[..]).fill_checksum();
        assert!(
            matches!(classify(&frame(ETHERTYPE_IPV4, &later)).frame, Frame::Ipv4Other(ip) if ip.protocol() == IpProtocol::Tcp)
        );
    }

    #[test]
    fn only_a_runt_has_no_ethernet_header() {
        assert_eq!(classify(&[0u8; 13]).ethernet, None);
        let tagged = eth(ETHERTYPE_VLAN);
        let truncated_tag = classify(&tagged);
        assert_eq!(truncated_tag.frame, Frame::Malformed(Malformed::Truncated));
        assert_eq!(truncated_tag.ethernet.map(|e| e.ethertype()), Some(ETHERTYPE_VLAN));
    }

    #[test]
    fn ethernet_padding_is_trimmed() {
        let mut f = frame(ETHERTYPE_IPV4, &ipv4_udp());
        f.resize(60, 0);
        assert!(matches!(classify(&f).frame, Frame::Ipv4Udp { payload: b"cpu v=1", .. }));
    }

    #[test]
    fn vlan_and_qinq_tags_are_skipped() {
        let mut f = eth(ETHERTYPE_VLAN);
        f.extend_from_slice(&[0x00, 0x64]); // TCI: VLAN 100
        f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        f.extend_from_slice(&ipv4_udp());
        let c = classify(&f);
        assert!(c.vlan_tagged);
        assert_eq!(c.frame.class(), FrameClass::Ipv4Udp);

        let mut q = eth(ETHERTYPE_QINQ);
        q.extend_from_slice(&[0x00, 0x0a, 0x81, 0x00, 0x00, 0x64, 0x08, 0x00]); // S-tag 10, C-tag 100, IPv4
        q.extend_from_slice(&ipv4_udp());
        assert_eq!(classify(&q).frame.class(), FrameClass::Ipv4Udp);
    }

    #[test]
    fn malformed_frames_have_reasons() {
        assert_eq!(classify(&[0u8; 13]).frame, Frame::Malformed(Malformed::Runt));
        assert_eq!(classify(&eth(ETHERTYPE_VLAN)).frame, Frame::Malformed(Malformed::Truncated));
        // IPv4 header cut short.
        assert_eq!(classify(&frame(ETHERTYPE_IPV4, &ipv4_udp()[..19])).frame, Frame::Malformed(Malformed::Truncated));
        // Total length beyond the frame.
        let ip = ipv4_udp();
        assert_eq!(classify(&frame(ETHERTYPE_IPV4, &ip[..ip.len() - 1])).frame, Frame::Malformed(Malformed::Truncated));
        // Bad header checksum.
        let mut bad = ipv4_udp();
        bad[10] ^= 0xff;
        assert_eq!(classify(&frame(ETHERTYPE_IPV4, &bad)).frame, Frame::Malformed(Malformed::BadChecksum));
        // IHL below 5.
        let mut ihl = ipv4_udp();
        ihl[0] = 0x44;
        assert_eq!(classify(&frame(ETHERTYPE_IPV4, &ihl)).frame, Frame::Malformed(Malformed::BadHeader));
        // UDP length larger than the IP payload.
        let mut udp_len = ipv4_udp();
        udp_len[24..26].copy_from_slice(&200u16.to_be_bytes());
        assert_eq!(classify(&frame(ETHERTYPE_IPV4, &udp_len)).frame, Frame::Malformed(Malformed::BadHeader));
        // ARP shorter than Ethernet/IPv4 ARP.
        assert_eq!(classify(&frame(ETHERTYPE_ARP, &[0u8; 27])).frame, Frame::Malformed(Malformed::Truncated));
        // IPv6 payload length beyond the frame.
        let mut v6 = vec![0x60, 0, 0, 0, 0x00, 0x10, 59, 64];
        v6.extend_from_slice(&[0u8; 32]);
        assert_eq!(classify(&frame(ETHERTYPE_IPV6, &v6)).frame, Frame::Malformed(Malformed::Truncated));
    }

    #[test]
    fn other_classes() {
        assert_eq!(classify(&frame(ETHERTYPE_ARP, &[0u8; 28])).frame.class(), FrameClass::Arp);
        let mut v6 = vec![0x60, 0, 0, 0, 0x00, 0x00, 59, 64];
        v6.extend_from_slice(&[0u8; 32]);
        assert_eq!(classify(&frame(ETHERTYPE_IPV6, &v6)).frame.class(), FrameClass::Ipv6);
        assert_eq!(classify(&frame(0x88cc, &[0u8; 46])).frame, Frame::Other { ethertype: 0x88cc });
        let mut icmp = ipv4_udp();
        icmp[9] = 1;
        Ipv4Packet::new_unchecked(&mut icmp[..]).fill_checksum();
        assert!(
            matches!(classify(&frame(ETHERTYPE_IPV4, &icmp)).frame, Frame::Ipv4Other(ip) if ip.protocol() == IpProtocol::Icmp)
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = classify(&bytes);
        }

        #[test]
        fn never_panics_on_ipv4_mutations(pos in 0usize..48, val in proptest::prelude::any::<u8>(), cut in 0usize..50) {
            let mut f = frame(ETHERTYPE_IPV4, &ipv4_udp());
            let p = pos % f.len();
            f[p] = val;
            f.truncate(f.len().saturating_sub(cut));
            let _ = classify(&f);
        }
    }
}
