//! Checked, zero-copy classification of received frames.
//!
//! Every length is checked before a field is read, so any byte sequence is
//! safe to hand in: a frame is either a well-formed member of a class or
//! `Malformed` with the reason. Field access goes through smoltcp's `wire`
//! views, used only after the checks here have proved them in bounds.

use smoltcp::wire::{EthernetFrame, Ipv4Address, Ipv4Packet, Ipv6Packet, UdpPacket};

const ETH_HEADER: usize = 14;
const VLAN_TAG: usize = 4;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const IPV4_MIN_HEADER: usize = 20;
const IPV6_HEADER: usize = 40;
const TCP_MIN_HEADER: usize = 20;
const UDP_HEADER: usize = 8;
const ARP_ETH_IPV4: usize = 28;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

/// Why a frame was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// Shorter than an Ethernet header.
    Runt,
    /// A header (VLAN, ARP, IP, TCP, UDP) is cut off by the end of the frame.
    Truncated,
    /// IPv4 header checksum does not verify.
    BadChecksum,
    /// A length or version field contradicts itself or the frame.
    BadHeader,
}

impl Malformed {
    pub const ALL: [Malformed; 4] =
        [Malformed::Runt, Malformed::Truncated, Malformed::BadChecksum, Malformed::BadHeader];

    pub fn name(self) -> &'static str {
        match self {
            Malformed::Runt => "runt",
            Malformed::Truncated => "truncated",
            Malformed::BadChecksum => "bad_checksum",
            Malformed::BadHeader => "bad_header",
        }
    }
}

/// A classified frame, borrowing from the packet buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// An ARP packet (Ethernet/IPv4 sized), starting at the ARP header.
    Arp {
        arp: &'a [u8],
    },
    /// An IPv4 packet carrying TCP, trimmed to its total length.
    Ipv4Tcp {
        ip: &'a [u8],
    },
    /// An IPv4 UDP datagram; `payload` is trimmed to the UDP length.
    Ipv4Udp {
        src: Ipv4Address,
        dst: Ipv4Address,
        src_port: u16,
        dst_port: u16,
        payload: &'a [u8],
    },
    /// IPv4 with another protocol (ICMP, ...) or a non-first fragment.
    Ipv4Other {
        protocol: u8,
        ip: &'a [u8],
    },
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
            Frame::Ipv4Tcp { .. } => FrameClass::Ipv4Tcp,
            Frame::Ipv4Udp { .. } => FrameClass::Ipv4Udp,
            Frame::Ipv4Other { .. } => FrameClass::Ipv4Other,
            Frame::Ipv6 { .. } => FrameClass::Ipv6,
            Frame::Other { .. } => FrameClass::Other,
            Frame::Malformed(_) => FrameClass::Malformed,
        }
    }
}

/// Result of [`classify`]: the frame and whether it carried 802.1Q/802.1ad tags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Classified<'a> {
    pub frame: Frame<'a>,
    pub vlan_tagged: bool,
}

/// Classifies one Ethernet frame. Never panics, whatever the bytes.
#[inline]
pub fn classify(frame: &[u8]) -> Classified<'_> {
    if frame.len() < ETH_HEADER {
        return Classified { frame: Frame::Malformed(Malformed::Runt), vlan_tagged: false };
    }
    let eth = EthernetFrame::new_unchecked(frame);
    let mut ethertype = u16::from(eth.ethertype());
    let mut offset = ETH_HEADER;
    let mut vlan_tagged = false;
    // Up to two tags (802.1ad outer + 802.1Q inner); deeper stacks are "other".
    for _ in 0..2 {
        if ethertype != ETHERTYPE_VLAN && ethertype != ETHERTYPE_QINQ {
            break;
        }
        vlan_tagged = true;
        if frame.len() < offset + VLAN_TAG {
            return Classified { frame: Frame::Malformed(Malformed::Truncated), vlan_tagged };
        }
        ethertype = u16::from_be_bytes([frame[offset + 2], frame[offset + 3]]);
        offset += VLAN_TAG;
    }
    let l3 = &frame[offset..];
    let frame = match ethertype {
        ETHERTYPE_IPV4 => classify_ipv4(l3),
        ETHERTYPE_IPV6 => classify_ipv6(l3),
        ETHERTYPE_ARP => classify_arp(l3),
        other => Frame::Other { ethertype: other },
    };
    Classified { frame, vlan_tagged }
}

fn classify_arp(arp: &[u8]) -> Frame<'_> {
    // Ethernet/IPv4 ARP is the only kind we answer; its size is fixed.
    if arp.len() < ARP_ETH_IPV4 {
        return Frame::Malformed(Malformed::Truncated);
    }
    Frame::Arp { arp: &arp[..ARP_ETH_IPV4] }
}

fn classify_ipv4(l3: &[u8]) -> Frame<'_> {
    if l3.len() < IPV4_MIN_HEADER {
        return Frame::Malformed(Malformed::Truncated);
    }
    let version = l3[0] >> 4;
    let header_len = usize::from(l3[0] & 0x0f) * 4;
    if version != 4 || header_len < IPV4_MIN_HEADER {
        return Frame::Malformed(Malformed::BadHeader);
    }
    if l3.len() < header_len {
        return Frame::Malformed(Malformed::Truncated);
    }
    let total_len = usize::from(u16::from_be_bytes([l3[2], l3[3]]));
    if total_len < header_len {
        return Frame::Malformed(Malformed::BadHeader);
    }
    if total_len > l3.len() {
        return Frame::Malformed(Malformed::Truncated);
    }
    // Ethernet pads short frames: trim to the IP length.
    let ip = &l3[..total_len];
    let packet = Ipv4Packet::new_unchecked(ip);
    if !packet.verify_checksum() {
        return Frame::Malformed(Malformed::BadChecksum);
    }
    let protocol = l3[9];
    // Non-first fragments carry no L4 header.
    if packet.frag_offset() != 0 {
        return Frame::Ipv4Other { protocol, ip };
    }
    let l4 = &ip[header_len..];
    match protocol {
        PROTO_TCP => {
            if l4.len() < TCP_MIN_HEADER {
                return Frame::Malformed(Malformed::Truncated);
            }
            let data_offset = usize::from(l4[12] >> 4) * 4;
            if data_offset < TCP_MIN_HEADER || data_offset > l4.len() {
                return Frame::Malformed(Malformed::BadHeader);
            }
            Frame::Ipv4Tcp { ip }
        }
        PROTO_UDP => {
            if l4.len() < UDP_HEADER {
                return Frame::Malformed(Malformed::Truncated);
            }
            let udp_len = usize::from(u16::from_be_bytes([l4[4], l4[5]]));
            if udp_len < UDP_HEADER || udp_len > l4.len() {
                return Frame::Malformed(Malformed::BadHeader);
            }
            let udp = UdpPacket::new_unchecked(&l4[..udp_len]);
            Frame::Ipv4Udp {
                src: packet.src_addr(),
                dst: packet.dst_addr(),
                src_port: udp.src_port(),
                dst_port: udp.dst_port(),
                payload: &l4[UDP_HEADER..udp_len],
            }
        }
        _ => Frame::Ipv4Other { protocol, ip },
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
        assert!(matches!(classify(&frame(ETHERTYPE_IPV4, &icmp)).frame, Frame::Ipv4Other { protocol: 1, .. }));
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
