//! Link layer of one worker: our address, the bounded neighbour table, ARP
//! replies and requests, ICMP echo replies, and the Ethernet header put on
//! every IP packet the stack cells send.
//!
//! The cells run smoltcp with `Medium::Ip`, so nothing below IP reaches
//! smoltcp: this module owns Ethernet and ARP. Neighbours are learned from
//! ARP packets addressed to us and from the source of IPv4 frames sent by
//! on-link hosts. The table is set-associative with a fixed number of entries
//! allocated once; a full set evicts its least recently confirmed entry.
//! Entries do not age out: any frame from the host refreshes them, and a
//! changed MAC is learned from its next ARP or IPv4 frame.
//!
//! Workers share what ARP teaches them ([`SharedNeighbors`]): with RSS an ARP
//! reply carries no L4 header, so it lands on one queue, and the other workers
//! would never learn the gateway's MAC from their own frames. ARP is the only
//! publisher (IPv4 frames are per-flow and teach their own worker), and a
//! worker reads the shared table only when its own table misses or a borrowed
//! entry is older than [`BORROW_REFRESH`]: the lock is off the per-frame path.
//!
//! An outgoing packet whose next hop has no entry is dropped (counted) and
//! one ARP request is sent for that next hop (at most one per second per
//! address): TCP retransmits the packet once the reply is learned. Queuing
//! would buy one round trip on the first packet to an unknown host, which for
//! a server never happens in practice: the peer's SYN taught us its MAC.

use std::sync::{Arc, Mutex, PoisonError};

use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, Icmpv4Message, Icmpv4Packet, Ipv4Address, Ipv4Cidr, Ipv4Packet};

/// Bytes of an untagged Ethernet header.
pub const ETH_HEADER_LEN: usize = 14;
/// Bytes of an Ethernet/IPv4 ARP packet.
pub const ARP_LEN: usize = 28;
/// Smallest Ethernet frame without FCS: shorter frames are padded with zeros.
pub const ETH_MIN_FRAME: usize = 60;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
const ARP_REQUEST: u16 = 1;
const ARP_REPLY: u16 = 2;
/// Ways per neighbour-table set.
const WAYS: usize = 4;
/// Minimum time between two ARP requests for the same address.
const ARP_RETRY: Duration = Duration::from_millis(1000);
/// Next hops waiting for an ARP request to be sent (per poll of a cell).
const PENDING_ARP: usize = 8;

/// Our link and IP identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L2Config {
    pub mac: EthernetAddress,
    pub ip: Ipv4Address,
    pub prefix_len: u8,
    /// Next hop for destinations outside our prefix; without it they are unreachable.
    pub gateway: Option<Ipv4Address>,
    /// Neighbour entries (rounded up to a power of two, at least 4).
    pub neighbor_capacity: usize,
}

#[derive(Clone, Copy, Debug)]
struct Neighbor {
    /// 0 = empty slot (0.0.0.0 is never a neighbour).
    ip: u32,
    mac: [u8; 6],
    resolved: bool,
    /// When the entry was last confirmed (or created), for eviction.
    seen: Instant,
    /// When we last sent an ARP request for it.
    requested: Option<Instant>,
    /// Copied from [`SharedNeighbors`] (learned by another worker), so
    /// re-read from there once it is [`BORROW_REFRESH`] old.
    borrowed: bool,
}

impl Default for Neighbor {
    fn default() -> Neighbor {
        Neighbor { ip: 0, mac: [0; 6], resolved: false, seen: Instant::ZERO, requested: None, borrowed: false }
    }
}

/// Fixed-capacity, set-associative IPv4 → MAC table.
pub struct NeighborTable {
    entries: Vec<Neighbor>,
    set_mask: usize,
}

impl NeighborTable {
    pub fn new(capacity: usize) -> NeighborTable {
        let capacity = capacity.max(WAYS).next_power_of_two();
        NeighborTable { entries: vec![Neighbor::default(); capacity], set_mask: capacity / WAYS - 1 }
    }

    pub fn capacity(&self) -> usize {
        self.entries.len()
    }

    fn set(&self, ip: u32) -> std::ops::Range<usize> {
        let h = (ip.wrapping_mul(0x9e37_79b1) >> 8) as usize & self.set_mask;
        h * WAYS..h * WAYS + WAYS
    }

    fn find(&self, ip: u32) -> Option<usize> {
        self.set(ip).find(|&i| self.entries[i].ip == ip)
    }

    /// The slot for `ip`: its own, else an empty one, else the stalest of its set.
    fn slot_for(&mut self, ip: u32) -> usize {
        if let Some(i) = self.find(ip) {
            return i;
        }
        let set = self.set(ip);
        let victim = set.min_by_key(|&i| (self.entries[i].ip != 0, self.entries[i].seen)).unwrap_or(0);
        self.entries[victim] = Neighbor { ip, ..Neighbor::default() };
        victim
    }

    /// The resolved MAC of `ip`.
    pub fn lookup(&self, ip: Ipv4Address) -> Option<EthernetAddress> {
        let e = &self.entries[self.find(ip.to_bits())?];
        e.resolved.then_some(EthernetAddress(e.mac))
    }

    /// Records `ip` at `mac`; with `create` false only an existing entry is
    /// updated. Tells whether it was recorded.
    pub fn learn(&mut self, ip: Ipv4Address, mac: EthernetAddress, now: Instant, create: bool) -> bool {
        self.record(ip, mac, now, create, false)
    }

    fn record(&mut self, ip: Ipv4Address, mac: EthernetAddress, now: Instant, create: bool, borrowed: bool) -> bool {
        let bits = ip.to_bits();
        if bits == 0 || !mac.is_unicast() {
            return false;
        }
        let i = match self.find(bits) {
            Some(i) => i,
            None if create => self.slot_for(bits),
            None => return false,
        };
        let e = &mut self.entries[i];
        e.mac = mac.0;
        e.resolved = true;
        e.seen = now;
        e.requested = None;
        e.borrowed = borrowed;
        true
    }

    /// The resolved MAC of `ip` unless it is a borrowed entry due for a re-read.
    fn lookup_fresh(&self, ip: Ipv4Address, now: Instant) -> Option<EthernetAddress> {
        let e = &self.entries[self.find(ip.to_bits())?];
        (e.resolved && !(e.borrowed && now >= e.seen + BORROW_REFRESH)).then_some(EthernetAddress(e.mac))
    }

    /// Whether an ARP request for `ip` is due now (and records it as sent).
    fn request_due(&mut self, ip: Ipv4Address, now: Instant) -> bool {
        let i = self.slot_for(ip.to_bits());
        let e = &mut self.entries[i];
        if e.resolved {
            return false;
        }
        if e.ip != 0 && e.requested.is_some_and(|t| now < t + ARP_RETRY) {
            return false;
        }
        e.requested = Some(now);
        e.seen = now;
        true
    }

    /// Resolved entries.
    pub fn len(&self) -> usize {
        self.entries.iter().filter(|e| e.ip != 0 && e.resolved).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How long a worker uses a neighbour copied from [`SharedNeighbors`] before
/// reading it again (a MAC that changed reaches every worker within this).
pub const BORROW_REFRESH: Duration = Duration::from_secs(1);

/// The neighbours every worker of a port learned from ARP, read by the others
/// on a miss (see the module comment for why a lock is fine here).
pub struct SharedNeighbors {
    table: Mutex<NeighborTable>,
}

impl SharedNeighbors {
    pub fn new(capacity: usize) -> Arc<SharedNeighbors> {
        Arc::new(SharedNeighbors { table: Mutex::new(NeighborTable::new(capacity)) })
    }

    fn table(&self) -> std::sync::MutexGuard<'_, NeighborTable> {
        // A worker that panicked holding the lock left a consistent table:
        // every update is a few plain stores.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn publish(&self, ip: Ipv4Address, mac: EthernetAddress, now: Instant) {
        self.table().learn(ip, mac, now, true);
    }

    pub fn lookup(&self, ip: Ipv4Address) -> Option<EthernetAddress> {
        self.table().lookup(ip)
    }
}

/// Why an outgoing IP packet could not be framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The destination is off-link and there is no gateway.
    NoRoute,
    /// The next hop's MAC is unknown; an ARP request is (or was) sent.
    NoNeighbor(Ipv4Address),
    /// The buffer is too short to hold an IPv4 header.
    Malformed,
}

/// What [`Link::handle_arp`] did with an ARP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArpOutcome {
    /// A request for our address: answer with [`Link::write_arp_reply`].
    Reply { to_mac: EthernetAddress, to_ip: Ipv4Address },
    /// A reply to us (or a request not for us): learned or ignored, nothing to send.
    Consumed,
    /// Not Ethernet/IPv4 ARP, or an operation we do not handle.
    Unsupported,
}

/// Our link identity, the neighbour table and next hops awaiting ARP requests.
pub struct Link {
    pub config: L2Config,
    pub neighbors: NeighborTable,
    shared: Option<Arc<SharedNeighbors>>,
    cidr: Ipv4Cidr,
    pending_arp: [Option<Ipv4Address>; PENDING_ARP],
}

impl Link {
    pub fn new(config: L2Config) -> Link {
        Link {
            neighbors: NeighborTable::new(config.neighbor_capacity),
            shared: None,
            cidr: Ipv4Cidr::new(config.ip, config.prefix_len),
            config,
            pending_arp: [None; PENDING_ARP],
        }
    }

    /// Publishes what ARP teaches this link to `shared` and reads from it on
    /// a miss: every worker of a port gets the same table.
    pub fn share_neighbors(&mut self, shared: Arc<SharedNeighbors>) {
        self.shared = Some(shared);
    }

    /// The MAC of next hop `hop`: our own entry, else (refreshing a borrowed
    /// one) the shared table's, copied into ours.
    fn resolve(&mut self, hop: Ipv4Address, now: Instant) -> Option<EthernetAddress> {
        if let Some(mac) = self.neighbors.lookup_fresh(hop, now) {
            return Some(mac);
        }
        // A stale borrowed entry the shared table evicted is still our best
        // guess; it is re-stamped either way, so the lock is taken once per
        // BORROW_REFRESH, not once per frame.
        let mac = self.shared.as_ref().and_then(|s| s.lookup(hop)).or_else(|| self.neighbors.lookup(hop))?;
        self.neighbors.record(hop, mac, now, true, true);
        Some(mac)
    }

    pub fn mac(&self) -> EthernetAddress {
        self.config.mac
    }

    pub fn ip(&self) -> Ipv4Address {
        self.config.ip
    }

    /// Whether `ip` is in our prefix (and not our own address).
    pub fn is_on_link(&self, ip: Ipv4Address) -> bool {
        ip != self.config.ip && self.cidr.contains_addr(&ip)
    }

    /// The neighbour an IP packet to `dst` is sent to.
    pub fn next_hop(&self, dst: Ipv4Address) -> Option<Ipv4Address> {
        if self.cidr.contains_addr(&dst) {
            Some(dst)
        } else {
            self.config.gateway
        }
    }

    /// Learns the sender of an IPv4 frame addressed to us, if it is on-link.
    #[inline]
    pub fn learn_from_ipv4(&mut self, src_mac: EthernetAddress, src_ip: Ipv4Address, now: Instant) {
        if self.is_on_link(src_ip) {
            self.neighbors.learn(src_ip, src_mac, now, true);
        }
    }

    /// Handles a 28-byte Ethernet/IPv4 ARP packet: learns its sender (always
    /// when it is addressed to us, else only if already known, as RFC 826
    /// says) and tells whether to reply.
    pub fn handle_arp(&mut self, arp: &[u8], now: Instant) -> ArpOutcome {
        if arp.len() < ARP_LEN || arp[0..6] != [0x00, 0x01, 0x08, 0x00, 6, 4] {
            return ArpOutcome::Unsupported;
        }
        let op = u16::from_be_bytes([arp[6], arp[7]]);
        let sender_mac = EthernetAddress::from_bytes(&arp[8..14]);
        let sender_ip = Ipv4Address::new(arp[14], arp[15], arp[16], arp[17]);
        let target_ip = Ipv4Address::new(arp[24], arp[25], arp[26], arp[27]);
        let for_us = target_ip == self.config.ip;
        if self.is_on_link(sender_ip) && self.neighbors.learn(sender_ip, sender_mac, now, for_us) {
            if let Some(shared) = &self.shared {
                shared.publish(sender_ip, sender_mac, now);
            }
        }
        match op {
            ARP_REQUEST if for_us && sender_mac.is_unicast() => {
                ArpOutcome::Reply { to_mac: sender_mac, to_ip: sender_ip }
            }
            ARP_REQUEST | ARP_REPLY => ArpOutcome::Consumed,
            _ => ArpOutcome::Unsupported,
        }
    }

    /// Writes an ARP frame (padded to the Ethernet minimum) into `frame`,
    /// which must be [`ETH_MIN_FRAME`] bytes long.
    fn write_arp(
        &self,
        frame: &mut [u8],
        eth_dst: EthernetAddress,
        op: u16,
        target_mac: [u8; 6],
        target_ip: Ipv4Address,
    ) {
        frame.fill(0);
        write_eth_header(frame, eth_dst, self.config.mac, ETHERTYPE_ARP);
        let arp = &mut frame[ETH_HEADER_LEN..ETH_HEADER_LEN + ARP_LEN];
        arp[0..6].copy_from_slice(&[0x00, 0x01, 0x08, 0x00, 6, 4]); // Ethernet, IPv4, sizes
        arp[6..8].copy_from_slice(&op.to_be_bytes());
        arp[8..14].copy_from_slice(&self.config.mac.0);
        arp[14..18].copy_from_slice(&self.config.ip.octets());
        arp[18..24].copy_from_slice(&target_mac);
        arp[24..28].copy_from_slice(&target_ip.octets());
    }

    /// Writes the ARP reply for [`ArpOutcome::Reply`] into a [`ETH_MIN_FRAME`]-byte frame.
    pub fn write_arp_reply(&self, frame: &mut [u8], to_mac: EthernetAddress, to_ip: Ipv4Address) {
        self.write_arp(frame, to_mac, ARP_REPLY, to_mac.0, to_ip);
    }

    /// Writes a broadcast ARP request for `ip` into a [`ETH_MIN_FRAME`]-byte frame.
    pub fn write_arp_request(&self, frame: &mut [u8], ip: Ipv4Address) {
        self.write_arp(frame, EthernetAddress::BROADCAST, ARP_REQUEST, [0; 6], ip);
    }

    /// Puts the Ethernet header in front of the IPv4 packet at
    /// `frame[ETH_HEADER_LEN..]`, addressed to its next hop. A missing
    /// neighbour is queued for an ARP request (see [`Link::take_pending_arp`]).
    pub fn frame_ipv4(&mut self, frame: &mut [u8], now: Instant) -> Result<(), FrameError> {
        if frame.len() < ETH_HEADER_LEN + 20 {
            return Err(FrameError::Malformed);
        }
        let d = &frame[ETH_HEADER_LEN + 16..ETH_HEADER_LEN + 20];
        let dst = Ipv4Address::new(d[0], d[1], d[2], d[3]);
        let hop = self.next_hop(dst).ok_or(FrameError::NoRoute)?;
        match self.resolve(hop, now) {
            Some(mac) => {
                write_eth_header(frame, mac, self.config.mac, ETHERTYPE_IPV4);
                Ok(())
            }
            None => {
                if self.neighbors.request_due(hop, now) {
                    if let Some(slot) = self.pending_arp.iter_mut().find(|s| s.is_none() || **s == Some(hop)) {
                        *slot = Some(hop);
                    }
                }
                Err(FrameError::NoNeighbor(hop))
            }
        }
    }

    /// Next hops an ARP request is due for; each is returned once.
    pub fn take_pending_arp(&mut self) -> Option<Ipv4Address> {
        self.pending_arp.iter_mut().find_map(|s| s.take())
    }

    /// Builds the echo reply to the IPv4 ICMP packet `ip` (already checked by
    /// `classify`) into `frame` (`ETH_HEADER_LEN + ip.len()` bytes). Returns
    /// false, leaving `frame` unspecified, unless `ip` is a valid echo request
    /// (unfragmented, ICMP checksum verified).
    pub fn write_echo_reply(&self, ip: &[u8], to_mac: EthernetAddress, frame: &mut [u8]) -> bool {
        if !is_echo_request(ip) || frame.len() != ETH_HEADER_LEN + ip.len() {
            return false;
        }
        let header_len = usize::from(ip[0] & 0x0f) * 4;
        write_eth_header(frame, to_mac, self.config.mac, ETHERTYPE_IPV4);
        let out = &mut frame[ETH_HEADER_LEN..];
        out.copy_from_slice(ip);
        {
            let mut packet = Ipv4Packet::new_unchecked(&mut out[..]);
            let src = packet.src_addr();
            packet.set_dst_addr(src);
            packet.set_src_addr(self.config.ip);
            packet.set_hop_limit(64);
            packet.fill_checksum();
        }
        let mut icmp = Icmpv4Packet::new_unchecked(&mut out[header_len..]);
        icmp.set_msg_type(Icmpv4Message::EchoReply);
        icmp.set_msg_code(0);
        icmp.fill_checksum();
        true
    }
}

/// Whether `ip` (a checked IPv4 packet) is an unfragmented, checksum-valid ICMP echo request.
pub fn is_echo_request(ip: &[u8]) -> bool {
    let Ok(packet) = Ipv4Packet::new_checked(ip) else { return false };
    if packet.more_frags() || packet.frag_offset() != 0 || packet.next_header() != smoltcp::wire::IpProtocol::Icmp {
        return false;
    }
    let header_len = usize::from(packet.header_len());
    let Some(icmp) = ip.get(header_len..) else { return false };
    let Ok(icmp) = Icmpv4Packet::new_checked(icmp) else { return false };
    icmp.msg_type() == Icmpv4Message::EchoRequest && icmp.msg_code() == 0 && icmp.verify_checksum()
}

/// Writes destination, source and ethertype into `frame[..14]`.
#[inline]
pub fn write_eth_header(frame: &mut [u8], dst: EthernetAddress, src: EthernetAddress, ethertype: u16) {
    frame[0..6].copy_from_slice(&dst.0);
    frame[6..12].copy_from_slice(&src.0);
    frame[12..14].copy_from_slice(&ethertype.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUR_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x01]);
    const PEER_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x02]);

    fn link() -> Link {
        Link::new(L2Config {
            mac: OUR_MAC,
            ip: Ipv4Address::new(10, 0, 0, 1),
            prefix_len: 24,
            gateway: Some(Ipv4Address::new(10, 0, 0, 254)),
            neighbor_capacity: 16,
        })
    }

    /// ARP request from 10.0.0.2 (02:..:02) for `target`.
    fn arp_request(target: [u8; 4]) -> [u8; 28] {
        let mut a = [0u8; 28];
        a[0..6].copy_from_slice(&[0x00, 0x01, 0x08, 0x00, 6, 4]); // Ethernet, IPv4, hlen 6, plen 4
        a[6..8].copy_from_slice(&[0, 1]); // request
        a[8..14].copy_from_slice(&PEER_MAC.0); // sender MAC
        a[14..18].copy_from_slice(&[10, 0, 0, 2]); // sender IP
        a[24..28].copy_from_slice(&target); // target IP (target MAC zero)
        a
    }

    #[test]
    fn arp_request_for_us_is_answered_and_learned() {
        let mut l = link();
        let t0 = Instant::from_millis(0);
        let out = l.handle_arp(&arp_request([10, 0, 0, 1]), t0);
        let ArpOutcome::Reply { to_mac, to_ip } = out else { panic!("{out:?}") };
        assert_eq!((to_mac, to_ip), (PEER_MAC, Ipv4Address::new(10, 0, 0, 2)));
        assert_eq!(l.neighbors.lookup(Ipv4Address::new(10, 0, 0, 2)), Some(PEER_MAC));
        let mut frame = [0u8; ETH_MIN_FRAME];
        l.write_arp_reply(&mut frame, to_mac, to_ip);
        assert_eq!(&frame[0..6], &PEER_MAC.0);
        assert_eq!(&frame[6..12], &OUR_MAC.0);
        assert_eq!(&frame[12..14], &[0x08, 0x06]);
        assert_eq!(&frame[20..22], &[0, 2]); // reply
        assert_eq!(&frame[22..28], &OUR_MAC.0); // sender MAC = ours
        assert_eq!(&frame[28..32], &[10, 0, 0, 1]); // sender IP = ours
        assert_eq!(&frame[32..38], &PEER_MAC.0);
        assert_eq!(&frame[38..42], &[10, 0, 0, 2]);
    }

    #[test]
    fn arp_request_for_another_host_is_not_answered_nor_learned() {
        let mut l = link();
        assert_eq!(l.handle_arp(&arp_request([10, 0, 0, 9]), Instant::ZERO), ArpOutcome::Consumed);
        assert_eq!(l.neighbors.lookup(Ipv4Address::new(10, 0, 0, 2)), None);
        let mut bad = arp_request([10, 0, 0, 1]);
        bad[5] = 16; // IPv6-sized protocol address
        assert_eq!(l.handle_arp(&bad, Instant::ZERO), ArpOutcome::Unsupported);
    }

    #[test]
    fn missing_neighbor_requests_arp_once_per_second() {
        let mut l = link();
        let mut frame = [0u8; 54];
        frame[ETH_HEADER_LEN + 16..ETH_HEADER_LEN + 20].copy_from_slice(&[10, 0, 0, 7]);
        let t0 = Instant::from_millis(10);
        let peer = Ipv4Address::new(10, 0, 0, 7);
        assert_eq!(l.frame_ipv4(&mut frame, t0), Err(FrameError::NoNeighbor(peer)));
        assert_eq!(l.take_pending_arp(), Some(peer));
        assert_eq!(l.take_pending_arp(), None);
        assert_eq!(l.frame_ipv4(&mut frame, t0 + Duration::from_millis(500)), Err(FrameError::NoNeighbor(peer)));
        assert_eq!(l.take_pending_arp(), None);
        assert!(l.frame_ipv4(&mut frame, t0 + Duration::from_millis(1000)).is_err());
        assert_eq!(l.take_pending_arp(), Some(peer));
        l.learn_from_ipv4(PEER_MAC, peer, t0);
        assert_eq!(l.frame_ipv4(&mut frame, t0), Ok(()));
        assert_eq!(&frame[0..6], &PEER_MAC.0);
        // Off-link goes to the gateway.
        frame[ETH_HEADER_LEN + 16..ETH_HEADER_LEN + 20].copy_from_slice(&[192, 168, 1, 1]);
        assert_eq!(l.frame_ipv4(&mut frame, t0), Err(FrameError::NoNeighbor(Ipv4Address::new(10, 0, 0, 254))));
    }

    /// ARP reply from the gateway 10.0.0.254 at `mac` to us.
    fn gateway_arp_reply(mac: EthernetAddress) -> [u8; 28] {
        let mut a = arp_request([10, 0, 0, 1]);
        a[6..8].copy_from_slice(&[0, 2]); // reply
        a[8..14].copy_from_slice(&mac.0);
        a[14..18].copy_from_slice(&[10, 0, 0, 254]);
        a[18..24].copy_from_slice(&OUR_MAC.0);
        a
    }

    #[test]
    fn an_arp_reply_on_one_workers_queue_serves_every_worker() {
        let (gw1, gw2) = (EthernetAddress([0x02, 0, 0, 0, 0, 0xfe]), EthernetAddress([0x02, 0, 0, 0, 0, 0xfd]));
        let shared = SharedNeighbors::new(16);
        let (mut a, mut b, mut alone) = (link(), link(), link());
        a.share_neighbors(shared.clone());
        b.share_neighbors(shared);
        let mut frame = [0u8; 54];
        frame[ETH_HEADER_LEN + 16..ETH_HEADER_LEN + 20].copy_from_slice(&[192, 168, 1, 1]); // off-link
        let t0 = Instant::from_millis(10);
        let gateway = Ipv4Address::new(10, 0, 0, 254);
        assert_eq!(b.frame_ipv4(&mut frame, t0), Err(FrameError::NoNeighbor(gateway)));

        // The reply lands on worker a's queue only.
        assert_eq!(a.handle_arp(&gateway_arp_reply(gw1), t0), ArpOutcome::Consumed);
        alone.handle_arp(&gateway_arp_reply(gw1), t0);
        assert_eq!(b.frame_ipv4(&mut frame, t0), Ok(()));
        assert_eq!(&frame[0..6], &gw1.0);

        // A new MAC reaches b once its borrowed copy is BORROW_REFRESH old.
        assert_eq!(a.handle_arp(&gateway_arp_reply(gw2), t0), ArpOutcome::Consumed);
        b.frame_ipv4(&mut frame, t0 + Duration::from_millis(999)).unwrap();
        assert_eq!(&frame[0..6], &gw1.0);
        b.frame_ipv4(&mut frame, t0 + BORROW_REFRESH).unwrap();
        assert_eq!(&frame[0..6], &gw2.0);

        // Without a shared table a link knows only what reached its own queue.
        let mut c = link();
        assert_eq!(c.frame_ipv4(&mut frame, t0), Err(FrameError::NoNeighbor(gateway)));
        assert_eq!(alone.frame_ipv4(&mut frame, t0), Ok(()));
    }

    #[test]
    fn off_link_sources_are_not_learned_and_table_is_bounded() {
        let mut l = link();
        l.learn_from_ipv4(PEER_MAC, Ipv4Address::new(192, 168, 0, 5), Instant::ZERO);
        assert!(l.neighbors.is_empty());
        for i in 0..200u32 {
            let ip = Ipv4Address::from_bits(0x0a00_0000 | (i + 2));
            l.neighbors.learn(ip, PEER_MAC, Instant::from_millis(i64::from(i)), true);
        }
        assert_eq!(l.neighbors.len(), 16);
        assert_eq!(l.neighbors.capacity(), 16);
    }

    #[test]
    fn echo_reply_swaps_addresses_and_has_valid_checksums() {
        let l = link();
        let mut ip = vec![
            0x45, 0x00, 0x00, 0x00, // version/IHL, DSCP, total length (below)
            0x12, 0x34, 0x40, 0x00, // id, DF
            0x40, 0x01, 0x00, 0x00, // TTL 64, ICMP, checksum (below)
            10, 0, 0, 2, // source
            10, 0, 0, 1, // destination
            0x08, 0x00, 0x00, 0x00, // echo request, code 0, checksum (below)
            0xbe, 0xef, 0x00, 0x07, // ident, seq
            b'h', b'e', b'l', b'l', b'o',
        ];
        let total = ip.len() as u16;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        Ipv4Packet::new_unchecked(&mut ip[..]).fill_checksum();
        Icmpv4Packet::new_unchecked(&mut ip[20..]).fill_checksum();
        let mut frame = vec![0u8; ETH_HEADER_LEN + ip.len()];
        assert!(l.write_echo_reply(&ip, PEER_MAC, &mut frame));
        let reply = Ipv4Packet::new_checked(&frame[ETH_HEADER_LEN..]).unwrap();
        assert!(reply.verify_checksum());
        assert_eq!(reply.src_addr(), Ipv4Address::new(10, 0, 0, 1));
        assert_eq!(reply.dst_addr(), Ipv4Address::new(10, 0, 0, 2));
        let icmp = Icmpv4Packet::new_checked(reply.payload()).unwrap();
        assert!(icmp.verify_checksum());
        assert_eq!(icmp.msg_type(), Icmpv4Message::EchoReply);
        assert_eq!((icmp.echo_ident(), icmp.echo_seq_no()), (0xbeef, 7));
        assert_eq!(icmp.data(), b"hello");
        // A corrupted ICMP checksum is not answered.
        ip[22] ^= 1;
        assert!(!l.write_echo_reply(&ip, PEER_MAC, &mut frame));
    }
}
