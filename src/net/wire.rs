//! Checked, zero-copy views of the received headers the stacks read
//! (Ethernet, IPv4, TCP, UDP), in smoltcp's `wire` style: a view is made by
//! `new_checked`, which proves every length it relies on (and, for IPv4, the
//! header checksum), and from then on its accessors cannot panic. Each view
//! holds its fixed header as an array reference, so every field read is a
//! constant index the compiler checks, not an offset proven by a comment.
//! Views borrow the frame and are `Copy`: making one copies no byte.
//!
//! [`classify`](super::classify::classify) makes them; the stacks take addresses,
//! ports, flags and the packet to hand to smoltcp from them.

use smoltcp::wire::{EthernetAddress, IpProtocol, Ipv4Address, Ipv4Packet};

const ETH_HEADER: usize = 14;
const IPV4_MIN_HEADER: usize = 20;
const TCP_MIN_HEADER: usize = 20;
const UDP_HEADER: usize = 8;

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

/// The Ethernet header at the start of a frame (its outer ethertype: a
/// tagged frame's tags follow it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EthernetHeader<'a> {
    header: &'a [u8; ETH_HEADER],
}

impl<'a> EthernetHeader<'a> {
    /// Bytes of the header.
    pub const LEN: usize = ETH_HEADER;

    /// The header of `frame`; `Runt` if `frame` is shorter than 14 bytes.
    pub fn new_checked(frame: &'a [u8]) -> Result<EthernetHeader<'a>, Malformed> {
        frame.first_chunk().map(EthernetHeader::new).ok_or(Malformed::Runt)
    }

    /// The header in `header` (its type is the length check).
    pub fn new(header: &'a [u8; ETH_HEADER]) -> EthernetHeader<'a> {
        EthernetHeader { header }
    }

    pub fn dst(&self) -> EthernetAddress {
        let h = self.header;
        EthernetAddress([h[0], h[1], h[2], h[3], h[4], h[5]])
    }

    pub fn src(&self) -> EthernetAddress {
        let h = self.header;
        EthernetAddress([h[6], h[7], h[8], h[9], h[10], h[11]])
    }

    pub fn ethertype(&self) -> u16 {
        u16::from_be_bytes([self.header[12], self.header[13]])
    }
}

/// A checked IPv4 packet: version 4, a header of at least 20 bytes inside
/// a total length inside the buffer, header checksum verified. The view is
/// trimmed to the total length (Ethernet pads short frames).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Datagram<'a> {
    /// The whole packet, `header_len() ..= len()` bytes.
    packet: &'a [u8],
    /// Its first 20 bytes (options, if any, follow up to `header_len()`).
    header: &'a [u8; IPV4_MIN_HEADER],
}

impl<'a> Ipv4Datagram<'a> {
    /// Checks the IPv4 packet at the start of `l3`, in this order: shorter
    /// than 20 bytes is `Truncated`; a version other than 4 or a header
    /// length below 20 is `BadHeader`; a header beyond `l3` is `Truncated`;
    /// a total length below the header length is `BadHeader`, beyond `l3`
    /// `Truncated`; then the header checksum (`BadChecksum`).
    pub fn new_checked(l3: &'a [u8]) -> Result<Ipv4Datagram<'a>, Malformed> {
        let header: &[u8; IPV4_MIN_HEADER] = l3.first_chunk().ok_or(Malformed::Truncated)?;
        let version = header[0] >> 4;
        let header_len = usize::from(header[0] & 0x0f) * 4;
        if version != 4 || header_len < IPV4_MIN_HEADER {
            return Err(Malformed::BadHeader);
        }
        if l3.len() < header_len {
            return Err(Malformed::Truncated);
        }
        let total_len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        if total_len < header_len {
            return Err(Malformed::BadHeader);
        }
        let packet = l3.get(..total_len).ok_or(Malformed::Truncated)?;
        if !Ipv4Packet::new_unchecked(packet).verify_checksum() {
            return Err(Malformed::BadChecksum);
        }
        Ok(Ipv4Datagram { packet, header })
    }

    pub fn src(&self) -> Ipv4Address {
        let h = self.header;
        Ipv4Address::new(h[12], h[13], h[14], h[15])
    }

    pub fn dst(&self) -> Ipv4Address {
        let h = self.header;
        Ipv4Address::new(h[16], h[17], h[18], h[19])
    }

    /// The protocol of the payload (TCP, UDP, ICMP, ...).
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol::from(self.header[9])
    }

    /// Header length in bytes, options included (20..=60).
    pub fn header_len(&self) -> usize {
        usize::from(self.header[0] & 0x0f) * 4
    }

    /// Fragment offset in bytes; non-zero for every fragment but the first.
    pub fn frag_offset(&self) -> u16 {
        (u16::from_be_bytes([self.header[6], self.header[7]]) & 0x1fff) << 3
    }

    /// The whole packet, header included, trimmed to its total length: what
    /// a `Medium::Ip` smoltcp interface takes.
    pub fn packet(&self) -> &'a [u8] {
        self.packet
    }

    /// What follows the header, up to the total length.
    pub fn payload(&self) -> &'a [u8] {
        // new_checked proved header_len <= packet.len(): never the default.
        self.packet.get(self.header_len()..).unwrap_or_default()
    }
}

/// The control bits of a TCP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpFlags(u8);

impl TcpFlags {
    const FIN: u8 = 0x01;
    const SYN: u8 = 0x02;
    const RST: u8 = 0x04;
    const ACK: u8 = 0x10;

    /// The flags byte (header offset 13: CWR ECE URG ACK PSH RST SYN FIN).
    pub fn bits(self) -> u8 {
        self.0
    }

    pub fn fin(self) -> bool {
        self.0 & Self::FIN != 0
    }

    pub fn syn(self) -> bool {
        self.0 & Self::SYN != 0
    }

    pub fn rst(self) -> bool {
        self.0 & Self::RST != 0
    }

    pub fn ack(self) -> bool {
        self.0 & Self::ACK != 0
    }

    /// SYN without ACK, RST or FIN: a request for a new connection.
    pub fn is_connection_request(self) -> bool {
        self.0 & (Self::SYN | Self::ACK | Self::RST | Self::FIN) == Self::SYN
    }
}

/// A checked TCP segment in a checked IPv4 packet: a 20-byte header and a
/// data offset of at least 20 inside the IP payload. The TCP checksum is not
/// verified here (smoltcp does, on ingress).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSegment<'a> {
    ip: Ipv4Datagram<'a>,
    header: &'a [u8; TCP_MIN_HEADER],
}

impl<'a> TcpSegment<'a> {
    /// The TCP segment `ip` carries: `Truncated` if its payload is shorter
    /// than a TCP header, `BadHeader` if the data offset is below 20 bytes or
    /// beyond the payload. The caller has dispatched on `ip.protocol()` and
    /// knows this is not a later fragment.
    pub fn new_checked(ip: Ipv4Datagram<'a>) -> Result<TcpSegment<'a>, Malformed> {
        let l4 = ip.payload();
        let header: &[u8; TCP_MIN_HEADER] = l4.first_chunk().ok_or(Malformed::Truncated)?;
        let data_offset = usize::from(header[12] >> 4) * 4;
        if data_offset < TCP_MIN_HEADER || data_offset > l4.len() {
            return Err(Malformed::BadHeader);
        }
        Ok(TcpSegment { ip, header })
    }

    /// The IPv4 packet around the segment.
    pub fn ip(&self) -> Ipv4Datagram<'a> {
        self.ip
    }

    pub fn src_port(&self) -> u16 {
        u16::from_be_bytes([self.header[0], self.header[1]])
    }

    pub fn dst_port(&self) -> u16 {
        u16::from_be_bytes([self.header[2], self.header[3]])
    }

    pub fn seq_number(&self) -> u32 {
        let h = self.header;
        u32::from_be_bytes([h[4], h[5], h[6], h[7]])
    }

    pub fn ack_number(&self) -> u32 {
        let h = self.header;
        u32::from_be_bytes([h[8], h[9], h[10], h[11]])
    }

    /// Header length in bytes, options included (the data offset, 20..=60).
    pub fn header_len(&self) -> usize {
        usize::from(self.header[12] >> 4) * 4
    }

    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.header[13])
    }

    /// The segment's data (after the options).
    pub fn payload(&self) -> &'a [u8] {
        // new_checked proved the data offset is inside the IP payload: never the default.
        self.ip.payload().get(self.header_len()..).unwrap_or_default()
    }
}

/// A checked UDP datagram in a checked IPv4 packet: an 8-byte header and a
/// UDP length of at least 8 inside the IP payload. The UDP checksum is not
/// verified (it is optional in IPv4, and the parsers validate the payload).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpDatagram<'a> {
    header: &'a [u8; UDP_HEADER],
    /// Trimmed to the UDP length.
    payload: &'a [u8],
}

impl<'a> UdpDatagram<'a> {
    /// The UDP datagram `ip` carries: `Truncated` if its payload is shorter
    /// than a UDP header, `BadHeader` if the UDP length is below 8 or beyond
    /// the payload. As for [`TcpSegment::new_checked`], the caller has
    /// dispatched on the protocol.
    pub fn new_checked(ip: Ipv4Datagram<'a>) -> Result<UdpDatagram<'a>, Malformed> {
        let l4 = ip.payload();
        let header: &[u8; UDP_HEADER] = l4.first_chunk().ok_or(Malformed::Truncated)?;
        let udp_len = usize::from(u16::from_be_bytes([header[4], header[5]]));
        if udp_len < UDP_HEADER {
            return Err(Malformed::BadHeader);
        }
        let payload = l4.get(UDP_HEADER..udp_len).ok_or(Malformed::BadHeader)?;
        Ok(UdpDatagram { header, payload })
    }

    pub fn src_port(&self) -> u16 {
        u16::from_be_bytes([self.header[0], self.header[1]])
    }

    pub fn dst_port(&self) -> u16 {
        u16::from_be_bytes([self.header[2], self.header[3]])
    }

    /// The datagram's data, trimmed to the UDP length.
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ethernet header of a frame to 02:00:00:00:00:01 carrying IPv4.
    const ETHERNET: [u8; 14] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // destination MAC
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // source MAC
        0x08, 0x00, // ethertype IPv4
    ];

    /// IPv4 TCP SYN 10.0.0.1:40000 -> 10.0.0.2:8080 with an MSS option.
    const TCP_SYN: [u8; 44] = [
        0x45, 0x00, 0x00, 0x2c, // version 4, IHL 5 (20 bytes); DSCP/ECN 0; total length 44
        0x00, 0x01, 0x40, 0x00, // identification 1; flags DF, fragment offset 0
        0x40, 0x06, 0x26, 0xc9, // TTL 64; protocol TCP; header checksum
        0x0a, 0x00, 0x00, 0x01, // source 10.0.0.1
        0x0a, 0x00, 0x00, 0x02, // destination 10.0.0.2
        0x9c, 0x40, 0x1f, 0x90, // source port 40000; destination port 8080
        0x01, 0x02, 0x03, 0x04, // sequence number
        0x00, 0x00, 0x00, 0x00, // acknowledgment number
        0x60, 0x02, 0xfa, 0xf0, // data offset 6 (24 bytes); flags SYN; window 64240
        0x00, 0x00, 0x00, 0x00, // checksum (not the view's to check); urgent pointer
        0x02, 0x04, 0x05, 0xb4, // option MSS 1460
    ];

    /// A TCP segment (ACK|PSH) carrying "GET /", for [`ipv4_packet`].
    const TCP_DATA: [u8; 25] = [
        0x9c, 0x40, 0x1f, 0x90, // source port 40000; destination port 8080
        0x01, 0x02, 0x03, 0x05, // sequence number
        0x0a, 0x0b, 0x0c, 0x0d, // acknowledgment number
        0x50, 0x18, 0xfa, 0xf0, // data offset 5 (20 bytes); flags ACK, PSH; window 64240
        0x00, 0x00, 0x00, 0x00, // checksum (not the view's to check); urgent pointer
        b'G', b'E', b'T', b' ', b'/', // data
    ];

    /// A UDP datagram 1234 -> 8089 carrying "cpu v=1", for [`ipv4_packet`].
    const UDP_DATAGRAM: [u8; 15] = [
        0x04, 0xd2, 0x1f, 0x99, // source port 1234; destination port 8089
        0x00, 0x0f, 0x00, 0x00, // UDP length 15; checksum 0 (none)
        b'c', b'p', b'u', b' ', b'v', b'=', b'1', // data
    ];

    /// IPv4 options: NOP, NOP, NOP, end of list.
    const IPV4_OPTIONS: [u8; 4] = [0x01, 0x01, 0x01, 0x00];

    /// The IPv4 packet of [`TCP_SYN`]'s header fields carrying `l4` of
    /// `protocol`, with `options` and a filled-in checksum, then `padding`
    /// zero bytes (as Ethernet adds to short frames).
    fn ipv4_packet(protocol: IpProtocol, options: &[u8], l4: &[u8], padding: usize) -> Vec<u8> {
        let header_len = 20 + options.len();
        let mut p = TCP_SYN[..20].to_vec();
        p[0] = 0x40 | (header_len / 4) as u8;
        p[2..4].copy_from_slice(&((header_len + l4.len()) as u16).to_be_bytes());
        p[9] = protocol.into();
        p.extend_from_slice(options);
        p.extend_from_slice(l4);
        let mut p = refilled(p);
        p.resize(p.len() + padding, 0);
        p
    }

    /// TCP_DATA in an IPv4 packet with options, 3 bytes of padding after it.
    fn tcp_data_padded() -> Vec<u8> {
        ipv4_packet(IpProtocol::Tcp, &IPV4_OPTIONS, &TCP_DATA, 3)
    }

    fn udp_packet() -> Vec<u8> {
        ipv4_packet(IpProtocol::Udp, &[], &UDP_DATAGRAM, 0)
    }

    fn ipv4(bytes: &[u8]) -> Ipv4Datagram<'_> {
        Ipv4Datagram::new_checked(bytes).unwrap()
    }

    /// `bytes` with the IPv4 header checksum recomputed (after a mutation).
    fn refilled(mut bytes: Vec<u8>) -> Vec<u8> {
        Ipv4Packet::new_unchecked(&mut bytes[..]).fill_checksum();
        bytes
    }

    /// `vector` with `bytes` written at `at` (the checksum is left as it was).
    fn patched(vector: &[u8], at: usize, bytes: &[u8]) -> Vec<u8> {
        let mut v = vector.to_vec();
        v[at..at + bytes.len()].copy_from_slice(bytes);
        v
    }

    /// `vector` cut to `len` bytes, its total length and checksum made to match.
    fn cut(vector: &[u8], len: usize) -> Vec<u8> {
        refilled(patched(&vector[..len], 2, &(len as u16).to_be_bytes()))
    }

    #[test]
    fn the_vectors_checksum_is_right() {
        assert!(Ipv4Packet::new_checked(&TCP_SYN[..]).unwrap().verify_checksum());
    }

    #[test]
    fn ethernet_fields() {
        let eth = EthernetHeader::new_checked(&ETHERNET).unwrap();
        assert_eq!(eth.dst(), EthernetAddress([2, 0, 0, 0, 0, 1]));
        assert_eq!(eth.src(), EthernetAddress([2, 0, 0, 0, 0, 2]));
        assert_eq!(eth.ethertype(), 0x0800);
        assert_eq!(EthernetHeader::new_checked(&ETHERNET[..13]), Err(Malformed::Runt));
    }

    #[test]
    fn ipv4_fields() {
        let ip = ipv4(&TCP_SYN);
        assert_eq!(ip.src(), Ipv4Address::new(10, 0, 0, 1));
        assert_eq!(ip.dst(), Ipv4Address::new(10, 0, 0, 2));
        assert_eq!(ip.protocol(), IpProtocol::Tcp);
        assert_eq!(ip.header_len(), 20);
        assert_eq!(ip.frag_offset(), 0);
        assert_eq!(ip.packet(), &TCP_SYN[..]);
        assert_eq!(ip.payload(), &TCP_SYN[20..]);
    }

    #[test]
    fn ipv4_options_are_skipped_and_padding_trimmed() {
        let padded = tcp_data_padded();
        assert_eq!(padded.len(), 52);
        let ip = ipv4(&padded);
        assert_eq!(ip.header_len(), 24);
        assert_eq!(ip.packet(), &padded[..49]);
        assert_eq!(ip.payload(), &TCP_DATA[..]);
    }

    #[test]
    fn ipv4_fragment_offset_is_in_bytes() {
        let later = refilled(patched(&TCP_SYN, 6, &[0x20, 0x03])); // MF, offset 3 (24 bytes)
        assert_eq!(ipv4(&later).frag_offset(), 24);
    }

    #[test]
    fn ipv4_rejections_have_reasons_in_order() {
        let check = |bytes: &[u8]| Ipv4Datagram::new_checked(bytes).map(|_| ());
        assert_eq!(check(&TCP_SYN[..19]), Err(Malformed::Truncated));
        assert_eq!(check(&patched(&TCP_SYN, 0, &[0x65])), Err(Malformed::BadHeader), "version 6");
        assert_eq!(check(&patched(&TCP_SYN, 0, &[0x44])), Err(Malformed::BadHeader), "IHL 4: 16 bytes");
        assert_eq!(check(&patched(&TCP_SYN[..20], 0, &[0x46])), Err(Malformed::Truncated), "IHL 6, 20 bytes there");
        assert_eq!(check(&patched(&TCP_SYN, 2, &[0, 19])), Err(Malformed::BadHeader), "total length 19");
        assert_eq!(check(&TCP_SYN[..43]), Err(Malformed::Truncated), "total length beyond the buffer");
        assert_eq!(check(&patched(&TCP_SYN, 11, &[0xc8])), Err(Malformed::BadChecksum));
    }

    #[test]
    fn tcp_syn_fields() {
        let tcp = TcpSegment::new_checked(ipv4(&TCP_SYN)).unwrap();
        assert_eq!((tcp.src_port(), tcp.dst_port()), (40000, 8080));
        assert_eq!(tcp.seq_number(), 0x0102_0304);
        assert_eq!(tcp.ack_number(), 0);
        assert_eq!(tcp.header_len(), 24);
        let flags = tcp.flags();
        assert!(flags.syn() && !flags.ack() && !flags.rst() && !flags.fin());
        assert!(flags.is_connection_request());
        assert_eq!(tcp.payload(), b"");
        assert_eq!(tcp.ip().packet(), &TCP_SYN[..]);
    }

    #[test]
    fn tcp_data_fields() {
        let padded = tcp_data_padded();
        let tcp = TcpSegment::new_checked(ipv4(&padded)).unwrap();
        assert_eq!((tcp.src_port(), tcp.dst_port()), (40000, 8080));
        assert_eq!((tcp.seq_number(), tcp.ack_number()), (0x0102_0305, 0x0a0b_0c0d));
        assert_eq!(tcp.header_len(), 20);
        assert_eq!(tcp.flags().bits(), 0x18);
        assert!(tcp.flags().ack() && !tcp.flags().syn() && !tcp.flags().is_connection_request());
        assert_eq!(tcp.payload(), b"GET /", "padding is not data");
    }

    #[test]
    fn a_syn_with_another_control_bit_is_no_connection_request() {
        let flags = |bits: u8| TcpSegment::new_checked(ipv4(&patched(&TCP_SYN, 33, &[bits]))).unwrap().flags();
        for bits in [0x03, 0x06, 0x12] {
            assert!(flags(bits).syn() && !flags(bits).is_connection_request(), "{bits:#x}");
        }
        assert!(flags(0x12).ack());
        let fin_rst = flags(0x05);
        assert!(fin_rst.fin() && fin_rst.rst() && !fin_rst.syn() && !fin_rst.ack());
    }

    #[test]
    fn l4_rejections_have_reasons() {
        let tcp = |bytes: &[u8]| TcpSegment::new_checked(ipv4(bytes)).map(|_| ());
        let datagram = |bytes: &[u8]| UdpDatagram::new_checked(ipv4(bytes)).map(|_| ());
        assert_eq!(tcp(&cut(&TCP_SYN, 39)), Err(Malformed::Truncated), "19 bytes of TCP header");
        assert_eq!(tcp(&patched(&TCP_SYN, 32, &[0x40])), Err(Malformed::BadHeader), "data offset 4: 16 bytes");
        assert_eq!(
            tcp(&patched(&TCP_SYN, 32, &[0x70])),
            Err(Malformed::BadHeader),
            "data offset 7: 28 bytes, 24 there"
        );
        assert_eq!(datagram(&cut(&udp_packet(), 27)), Err(Malformed::Truncated), "7 bytes of UDP header");
        assert_eq!(datagram(&patched(&udp_packet(), 24, &[0, 7])), Err(Malformed::BadHeader), "UDP length 7");
        assert_eq!(
            datagram(&patched(&udp_packet(), 24, &[0, 16])),
            Err(Malformed::BadHeader),
            "UDP length beyond the packet"
        );
    }

    #[test]
    fn udp_fields() {
        let vector = udp_packet();
        let udp = UdpDatagram::new_checked(ipv4(&vector)).unwrap();
        assert_eq!((udp.src_port(), udp.dst_port()), (1234, 8089));
        assert_eq!(udp.payload(), b"cpu v=1");
        // A UDP length shorter than the IP payload trims the data.
        let shorter = patched(&udp_packet(), 24, &[0, 12]);
        assert_eq!(UdpDatagram::new_checked(ipv4(&shorter)).unwrap().payload(), b"cpu ");
    }

    /// Makes every view `bytes` allows and checks its accessors stay inside it.
    fn read_all_views(bytes: &[u8]) -> Result<(), proptest::test_runner::TestCaseError> {
        let _ = EthernetHeader::new_checked(bytes).map(|e| (e.dst(), e.src(), e.ethertype()));
        if let Ok(ip) = Ipv4Datagram::new_checked(bytes) {
            let _ = (ip.src(), ip.dst(), ip.protocol(), ip.frag_offset());
            proptest::prop_assert_eq!(ip.header_len() + ip.payload().len(), ip.packet().len());
            proptest::prop_assert!(ip.packet().len() <= bytes.len());
            if let Ok(tcp) = TcpSegment::new_checked(ip) {
                let _ = (tcp.src_port(), tcp.dst_port(), tcp.seq_number(), tcp.ack_number(), tcp.flags());
                proptest::prop_assert_eq!(tcp.header_len() + tcp.payload().len(), ip.payload().len());
            }
            if let Ok(udp) = UdpDatagram::new_checked(ip) {
                let _ = (udp.src_port(), udp.dst_port());
                proptest::prop_assert!(udp.payload().len() + UDP_HEADER <= ip.payload().len());
            }
        }
        Ok(())
    }

    proptest::proptest! {
        #[test]
        fn views_of_any_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80)) {
            read_all_views(&bytes)?;
        }

        /// Mutated vectors, IPv4 checksum fixed up so that they reach the TCP and UDP views.
        #[test]
        fn views_of_mutated_vectors_never_panic(
            vector in 0usize..3,
            muts in proptest::collection::vec((0usize..52, proptest::prelude::any::<u8>()), 1..4),
            cut in proptest::option::of(0usize..52),
        ) {
            let mut bytes = vec![TCP_SYN.to_vec(), tcp_data_padded(), udp_packet()].swap_remove(vector);
            for (pos, val) in muts {
                if let Some(b) = bytes.get_mut(pos) {
                    *b = val;
                }
            }
            bytes.truncate(bytes.len().saturating_sub(cut.unwrap_or(0)));
            let header_len = usize::from(bytes.first().map_or(0, |b| b & 0x0f)) * 4;
            if header_len >= 20 && header_len <= bytes.len() {
                bytes = refilled(bytes);
            }
            read_all_views(&bytes)?;
        }
    }
}
