//! The sharded userspace TCP stack against smoltcp clients on a
//! deterministic in-memory network (see `netstack_sim`).

mod netstack_sim;

use metricsstream::net::{DropReason, NetStack, Received};
use metricsstream::time::Nanos;
use netstack_sim::*;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, IpAddress, IpProtocol, Ipv4Address, Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, TcpRepr,
    TcpSeqNumber,
};
use smoltcp::wire::{Icmpv4Message, Icmpv4Packet};

/// Ethernet + IPv4 around `l4` (protocol `proto`), checksums filled.
fn ipv4_frame(src_mac: EthernetAddress, src: Ipv4Address, dst: Ipv4Address, proto: IpProtocol, l4: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20 + l4.len()];
    f[0..6].copy_from_slice(&SERVER_MAC.0);
    f[6..12].copy_from_slice(&src_mac.0);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let repr = Ipv4Repr { src_addr: src, dst_addr: dst, next_header: proto, payload_len: l4.len(), hop_limit: 64 };
    let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
    repr.emit(&mut ip, &ChecksumCapabilities::default());
    f[34..].copy_from_slice(l4);
    f
}

/// A TCP segment from `src:sport` to the server (seq 1000, ack 5000 when `ack`), checksummed.
fn tcp_frame(
    src_mac: EthernetAddress,
    src: Ipv4Address,
    sport: u16,
    dport: u16,
    control: TcpControl,
    ack: bool,
) -> Vec<u8> {
    tcp_segment(src_mac, src, (sport, dport), control, 1000, ack.then_some(5000))
}

/// A TCP segment from client 0's `sport` to the server with explicit sequence numbers.
fn segment(sport: u16, control: TcpControl, seq: u32, ack: Option<u32>) -> Vec<u8> {
    tcp_segment(client_mac(0), client_ip(0), (sport, PORT), control, seq, ack)
}

/// A checksummed TCP segment without payload from `src` to the server.
fn tcp_segment(
    src_mac: EthernetAddress,
    src: Ipv4Address,
    (sport, dport): (u16, u16),
    control: TcpControl,
    seq: u32,
    ack: Option<u32>,
) -> Vec<u8> {
    let repr = TcpRepr {
        src_port: sport,
        dst_port: dport,
        control,
        seq_number: TcpSeqNumber(seq as i32),
        ack_number: ack.map(|a| TcpSeqNumber(a as i32)),
        window_len: 64240,
        window_scale: None,
        max_seg_size: if control == TcpControl::Syn { Some(1460) } else { None },
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: &[],
    };
    let mut l4 = vec![0u8; repr.buffer_len()];
    repr.emit(
        &mut TcpPacket::new_unchecked(&mut l4[..]),
        &IpAddress::Ipv4(src),
        &IpAddress::Ipv4(SERVER_IP),
        &ChecksumCapabilities::default(),
    );
    ipv4_frame(src_mac, src, SERVER_IP, IpProtocol::Tcp, &l4)
}

/// Opens a connection from client 0's `sport` with raw segments (SYN, then
/// the ACK of the server's SYN-ACK); returns (our next seq, the server's next seq).
fn raw_handshake(s: &mut NetStack, app: &mut netstack_sim::PingApp, sport: u16, now: Nanos) -> (u32, u32) {
    let mut out: Vec<Vec<u8>> = Vec::new();
    assert_eq!(s.receive(now, &segment(sport, TcpControl::Syn, 1000, None), &mut out), Received::Consumed);
    s.poll(now, app, &mut out);
    let server_isn = out
        .iter()
        .find_map(|f| {
            let ip = Ipv4Packet::new_checked(&f[14..]).ok()?;
            let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
            (tcp.syn() && tcp.ack() && tcp.dst_port() == sport).then(|| tcp.seq_number().0 as u32)
        })
        .expect("a SYN-ACK");
    let ack = segment(sport, TcpControl::None, 1001, Some(server_isn.wrapping_add(1)));
    assert_eq!(s.receive(now, &ack, &mut out), Received::Consumed);
    s.poll(now, app, &mut out);
    (1001, server_isn.wrapping_add(1))
}

fn stack(max: usize) -> NetStack {
    NetStack::new(stack_config(max), Nanos::from_millis(1)).unwrap()
}

#[test]
fn arp_resolution_then_handshake_and_requests() {
    let mut net = Net::new(stack_config(64), clients(1, 1, 3, Ending::ClientCloses));
    net.run_to_completion(10_000);
    let c = *net.stack.counters();
    assert_eq!(c.arp_replies, 1, "the client resolved us by ARP first: {c:?}");
    assert_eq!(net.stack.link().neighbors.lookup(client_ip(0)), Some(client_mac(0)));
    assert_eq!((c.syn_accepted, c.connections_opened, c.connections_closed), (1, 1, 1));
    assert_eq!(net.app.requests, 3);
    assert_eq!(net.clients[0].resets(), 0);
    assert_eq!(c.tx_drop_no_neighbor, 0);
    net.assert_balanced();
}

#[test]
fn many_sequential_requests_on_keep_alive() {
    let mut net = Net::new(stack_config(64), clients(1, 2, 300, Ending::ClientCloses));
    net.run_to_completion(100_000);
    assert_eq!(net.app.requests, 600);
    assert_eq!(net.stack.counters().connections_opened, 2);
    net.assert_balanced();
}

#[test]
fn server_closes_first_and_time_wait_is_recycled() {
    let mut net = Net::new(stack_config(64), clients(4, 8, 3, Ending::ServerCloses));
    net.run_to_completion(20_000);
    // Every server socket passed through TIME-WAIT; none waited smoltcp's 10 s.
    assert!(net.now < Nanos::from_secs(2), "recycling waited for TIME-WAIT: t = {}", net.now);
    assert_eq!(net.app.requests, 4 * 8 * 3);
    let c = *net.stack.counters();
    assert_eq!((c.connections_opened, c.connections_closed), (32, 32));
    assert!(net.clients.iter().all(|c| c.resets() == 0));
    net.assert_balanced();
    // The recycled sockets serve a second wave.
    for (i, c) in net.clients.iter_mut().enumerate() {
        *c = Client::new(i, 8, 2, Ending::ClientCloses, net.now);
    }
    // Fresh client ports are the same 4-tuples: the server kept no TIME-WAIT.
    net.run_to_completion(20_000);
    assert_eq!(net.stack.counters().connections_closed, 64);
    net.assert_balanced();
}

#[test]
fn a_thousand_concurrent_connections() {
    let mut net = Net::new(stack_config(1000), clients(10, 100, 2, Ending::KeepOpen));
    net.run_until(50_000, |n| n.all_done());
    assert_eq!(net.stack.counters().connections_open, 1000);
    assert_eq!(net.stack.flows(), 1000);
    assert_eq!(net.app.requests, 2000);
    for c in &mut net.clients {
        c.ending = Ending::ClientCloses;
    }
    net.run_to_completion(50_000);
    assert_eq!(net.stack.counters().drop_syn_full, 0);
    net.assert_balanced();
}

#[test]
fn ten_thousand_concurrent_connections() {
    let mut net = Net::new(stack_config(10_000), clients(100, 100, 1, Ending::KeepOpen));
    net.run_until(50_000, |n| n.all_done());
    let c = *net.stack.counters();
    assert_eq!((c.connections_open, c.syn_accepted), (10_000, 10_000), "{c:?}");
    assert_eq!(net.stack.flows(), 10_000);
    assert_eq!(net.app.requests, 10_000);
    assert_eq!(net.app.live(), 10_000);
    // Keep-alive round on all of them, then close.
    for c in &mut net.clients {
        c.add_requests(1);
    }
    net.run_until(50_000, |n| n.all_done());
    assert_eq!(net.app.requests, 20_000);
    for c in &mut net.clients {
        c.ending = Ending::ClientCloses;
    }
    net.run_to_completion(50_000);
    let c = *net.stack.counters();
    assert_eq!((c.connections_opened, c.connections_closed, c.drop_syn_full), (10_000, 10_000, 0));
    assert!(net.clients.iter().all(|c| c.resets() == 0));
    net.assert_balanced();
}

#[test]
fn loss_is_recovered_by_retransmission() {
    let mut net = Net::new(stack_config(256), clients(5, 10, 5, Ending::ClientCloses));
    net.faults.drop_every = 7;
    net.run_to_completion(200_000);
    assert!(net.frames_dropped > 50, "the fault injector dropped {}", net.frames_dropped);
    assert_eq!(net.app.requests, 5 * 10 * 5);
    net.assert_balanced();
}

#[test]
fn reordering_is_recovered() {
    let mut net = Net::new(stack_config(256), clients(5, 10, 5, Ending::ClientCloses));
    net.faults.swap_adjacent = true;
    net.run_to_completion(200_000);
    assert_eq!(net.app.requests, 5 * 10 * 5);
    net.assert_balanced();
}

#[test]
fn loss_and_reordering_with_server_close() {
    let mut net = Net::new(stack_config(256), clients(4, 8, 4, Ending::ServerCloses));
    net.faults = Faults { drop_every: 5, swap_adjacent: true };
    net.run_to_completion(400_000);
    assert_eq!(net.app.requests, 4 * 8 * 4);
    net.assert_balanced();
}

/// 1,000 spoofed SYNs against 64 slots with 8 established and at most 8
/// half-open: the flood holds 8 slots, each new SYN evicting the oldest
/// half-open entry; established connections are untouched and a new
/// client connecting right after the flood gets in.
#[test]
fn syn_flood_holds_at_most_max_half_open_slots_and_evicts_the_oldest() {
    let mut config = stack_config(64);
    config.sockets_per_cell = 16;
    config.max_half_open = 8;
    let mut net = Net::new(config, clients(1, 8, 1, Ending::KeepOpen));
    net.run_until(10_000, |n| n.all_done());
    assert_eq!(net.stack.counters().connections_open, 8);
    // 1,000 SYNs from spoofed on-link sources.
    let flood_mac = EthernetAddress([0x02, 0x66, 0, 0, 0, 1]);
    for i in 0..1000u16 {
        let src = Ipv4Address::new(10, 0, 250, (i % 250) as u8 + 1);
        let syn = tcp_frame(flood_mac, src, 30_000 + i, PORT, TcpControl::Syn, false);
        net.to_server.push(syn);
    }
    net.step();
    let c = *net.stack.counters();
    assert_eq!(c.syn_accepted, 8 + 1000, "{c:?}");
    assert_eq!((c.connections_half_open, c.syn_half_open_evicted, c.drop_syn_full), (8, 992, 0), "{c:?}");
    assert_eq!(c.connections_open, 8 + 8);
    // Existing connections keep working; a new client connects at once.
    for c in &mut net.clients {
        c.add_requests(5);
    }
    let now = net.now;
    net.clients.push(Client::new(1, 4, 2, Ending::KeepOpen, now));
    net.run_until(20_000, |n| n.all_done());
    assert_eq!(net.app.requests, 8 * 6 + 4 * 2);
    assert!(net.clients.iter().all(|c| c.resets() == 0));
    assert!(net.now.ns_since(now) < 1_000_000_000, "the new client waited {} ns", net.now.ns_since(now));
    let c = *net.stack.counters();
    assert_eq!(c.syn_half_open_completed, 8 + 4, "{c:?}");
    net.assert_balanced();
}

/// When every slot is taken (established + half-open), a SYN still evicts
/// the oldest half-open entry; only with every slot established is it dropped.
#[test]
fn syn_with_every_slot_taken_evicts_a_half_open_entry_or_is_dropped() {
    let mut config = stack_config(16);
    config.sockets_per_cell = 16;
    config.max_half_open = 16;
    let mut net = Net::new(config, clients(1, 12, 1, Ending::KeepOpen));
    net.run_until(10_000, |n| n.all_done());
    let flood_mac = EthernetAddress([0x02, 0x66, 0, 0, 0, 1]);
    let flood =
        |i: u16| tcp_frame(flood_mac, Ipv4Address::new(10, 0, 250, 1), 30_000 + i, PORT, TcpControl::Syn, false);
    for i in 0..10 {
        net.to_server.push(flood(i));
    }
    net.step();
    let c = *net.stack.counters();
    assert_eq!((c.connections_open, c.connections_half_open), (16, 4), "{c:?}");
    assert_eq!((c.syn_half_open_evicted, c.drop_syn_full), (6, 0), "{c:?}");
    // Let the flood entries expire (3 s): 12 established, 4 free slots.
    net.now += std::time::Duration::from_millis(3_000);
    net.step();
    let c = *net.stack.counters();
    assert_eq!((c.connections_open, c.connections_half_open, c.syn_half_open_expired), (12, 0, 4), "{c:?}");
    // Four more clients fill the slots with established connections; a SYN now is dropped.
    net.clients.push(Client::new(1, 4, 1, Ending::KeepOpen, net.now));
    net.run_until(10_000, |n| n.all_done());
    net.to_server.push(flood(100));
    net.step();
    let c = *net.stack.counters();
    assert_eq!((c.connections_open, c.connections_half_open, c.drop_syn_full), (16, 0, 1), "{c:?}");
    net.assert_balanced();
}

/// A half-open entry lives `syn_received_timeout_ms` (3 s by default) on a
/// virtual clock: still there a millisecond before, freed at the deadline,
/// which `poll_at` announces so an idle worker wakes for it.
#[test]
fn half_open_entries_expire_after_their_lifetime() {
    let mut s = stack(64);
    let mut app = netstack_sim::PingApp::new(s.slots());
    let mut out: Vec<Vec<u8>> = Vec::new();
    let t0 = Nanos::from_millis(10);
    let spoofed = EthernetAddress([0x02, 0x66, 0, 0, 0, 1]);
    for i in 0..5u16 {
        let syn = tcp_frame(spoofed, Ipv4Address::new(10, 0, 250, 9), 40_000 + i, PORT, TcpControl::Syn, false);
        assert_eq!(s.receive(t0.plus_ns(u64::from(i) * 1_000_000), &syn, &mut out), Received::Consumed);
    }
    s.poll(t0, &mut app, &mut out);
    assert_eq!((s.half_open(), s.flows()), (5, 5));
    let deadline = t0.plus_ns(3_000_000_000);
    assert!(s.poll_at().is_some_and(|t| t <= deadline), "poll_at {:?} after the first expiry", s.poll_at());
    s.poll(Nanos::from_ns(deadline.as_ns() - 1), &mut app, &mut out);
    assert_eq!(s.half_open(), 5, "expired early");
    // At t0 + 3 s the first goes, one per millisecond after (oldest first).
    s.poll(deadline.plus_ns(2_000_000), &mut app, &mut out);
    assert_eq!((s.half_open(), s.flows(), s.counters().syn_half_open_expired), (2, 2, 3));
    s.poll(deadline.plus_ns(4_000_000), &mut app, &mut out);
    let c = *s.counters();
    assert_eq!((c.connections_half_open, c.syn_half_open_expired, c.connections_open), (0, 5, 0), "{c:?}");
    assert_eq!(s.free_sockets(), s.slots());
    assert_half_open_balanced(&s);
    assert_eq!(app.opened, 0, "the app never saw a half-open connection");
}

/// Eviction takes the oldest half-open entry, not the newest: a handshake
/// whose ACK comes back before `max_half_open` newer SYNs completes; one
/// that waited longer finds its entry gone and is reset.
#[test]
fn eviction_is_oldest_first() {
    let mut config = stack_config(64);
    config.max_half_open = 4;
    let mut s = NetStack::new(config, Nanos::from_millis(1)).unwrap();
    let mut app = netstack_sim::PingApp::new(s.slots());
    let mut out: Vec<Vec<u8>> = Vec::new();
    let now = Nanos::from_millis(2);
    let syn_ack_seq = |out: &mut Vec<Vec<u8>>, sport: u16| {
        let seq = out.iter().find_map(|f| {
            let ip = Ipv4Packet::new_checked(&f[14..]).ok()?;
            let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
            (tcp.syn() && tcp.ack() && tcp.dst_port() == sport).then(|| tcp.seq_number().0 as u32)
        });
        out.clear();
        seq.expect("a SYN-ACK")
    };
    // A's SYN, then 4 spoofed SYNs: A (the oldest) is evicted by the 4th.
    assert_eq!(s.receive(now, &segment(51_000, TcpControl::Syn, 1000, None), &mut out), Received::Consumed);
    s.poll(now, &mut app, &mut out);
    let a_isn = syn_ack_seq(&mut out, 51_000);
    let spoofed = EthernetAddress([0x02, 0x66, 0, 0, 0, 1]);
    for i in 0..4u16 {
        let syn = tcp_frame(spoofed, Ipv4Address::new(10, 0, 250, 9), 40_000 + i, PORT, TcpControl::Syn, false);
        let _ = s.receive(now, &syn, &mut out);
    }
    assert_eq!((s.half_open(), s.counters().syn_half_open_evicted), (4, 1));
    // B's SYN evicts the oldest spoofed entry; B's ACK comes back at once.
    assert_eq!(s.receive(now, &segment(51_001, TcpControl::Syn, 1000, None), &mut out), Received::Consumed);
    s.poll(now, &mut app, &mut out);
    let b_isn = syn_ack_seq(&mut out, 51_001);
    let b_ack = segment(51_001, TcpControl::None, 1001, Some(b_isn.wrapping_add(1)));
    assert_eq!(s.receive(now, &b_ack, &mut out), Received::Consumed);
    s.poll(now, &mut app, &mut out);
    assert_eq!(app.opened, 1, "B is established");
    // A's late ACK finds no flow: answered with RST.
    let no_flow = s.counters().tcp_no_flow;
    let a_ack = segment(51_000, TcpControl::None, 1001, Some(a_isn.wrapping_add(1)));
    assert_eq!(s.receive(now, &a_ack, &mut out), Received::Consumed);
    assert_eq!(s.counters().tcp_no_flow, no_flow + 1);
    let c = *s.counters();
    assert_eq!((c.syn_accepted, c.syn_half_open_completed, c.syn_half_open_evicted), (6, 1, 2), "{c:?}");
    assert_eq!((c.connections_half_open, c.connections_open), (3, 4), "{c:?}");
    assert_half_open_balanced(&s);
}

/// An RST in SYN-RECEIVED ends the half-open entry (counted as reset).
#[test]
fn rst_in_syn_received_frees_the_half_open_entry() {
    let mut s = stack(64);
    let mut app = netstack_sim::PingApp::new(s.slots());
    let mut out: Vec<Vec<u8>> = Vec::new();
    let now = Nanos::from_millis(2);
    assert_eq!(s.receive(now, &segment(52_000, TcpControl::Syn, 1000, None), &mut out), Received::Consumed);
    s.poll(now, &mut app, &mut out);
    assert_eq!(s.half_open(), 1);
    let _ = s.receive(now, &segment(52_000, TcpControl::Rst, 1001, None), &mut out);
    s.poll(now, &mut app, &mut out);
    let c = *s.counters();
    assert_eq!((c.connections_half_open, c.syn_half_open_reset, c.connections_open), (0, 1, 0), "{c:?}");
    assert_half_open_balanced(&s);
}

/// Graceful shutdown, stack part: after `stop_accepting` a SYN for a new
/// connection is answered with an RST (counted, no socket taken), while open
/// connections keep being served.
#[test]
fn after_stop_accepting_new_syns_are_refused_and_open_connections_go_on() {
    let mut net = Net::new(stack_config(64), clients(1, 4, 1, Ending::KeepOpen));
    net.run_until(10_000, |n| n.all_done());
    assert_eq!(net.stack.counters().connections_open, 4);
    assert!(net.stack.is_accepting());
    net.stack.stop_accepting();
    assert!(!net.stack.is_accepting());

    // A raw SYN from a new 4-tuple: one RST back, nothing accepted.
    let free = net.stack.free_sockets();
    let syn = tcp_frame(client_mac(0), client_ip(0), 41_000, PORT, TcpControl::Syn, false);
    let mut out: Vec<Vec<u8>> = Vec::new();
    assert_eq!(net.stack.receive(net.now, &syn, &mut out), Received::Consumed);
    assert_eq!(out.len(), 1, "exactly one reply");
    let ip = Ipv4Packet::new_checked(&out[0][14..]).unwrap();
    let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
    assert!(tcp.rst() && !tcp.syn(), "a refusal, not a SYN-ACK");
    assert_eq!((tcp.src_port(), tcp.dst_port()), (PORT, 41_000));
    assert_eq!(net.stack.free_sockets(), free, "no socket taken");

    // A real client connecting now is refused too; the open ones are served.
    net.clients.push(Client::new(1, 2, 1, Ending::KeepOpen, net.now));
    net.clients[0].add_requests(2);
    net.run_until(20_000, |n| n.clients[0].done() && n.stack.counters().syn_refused_stopping >= 3);
    for _ in 0..200 {
        net.step();
        net.now += std::time::Duration::from_millis(10);
    }
    let c = *net.stack.counters();
    assert_eq!((c.syn_accepted, c.connections_opened, c.connections_open), (4, 4, 4), "{c:?}");
    assert!(c.syn_refused_stopping >= 3, "{c:?}");
    assert_eq!(net.clients[1].answered(), 0);
    assert_eq!(net.clients[0].answered(), 4 * 3);
    assert_eq!(net.clients[0].resets(), 0);
    assert_eq!(net.app.requests, 4 * 3);
    assert_eq!(c.rx_frames, c.rx_accounted());
}

/// Linux answers a segment that reaches a closed socket with an RST that
/// carries no ACK. Such a segment also matches the cell's listening socket;
/// when the listener sits in a lower slot than the connection, smoltcp gave
/// the RST to the listener, which ignored it, and the connection stayed open
/// (LAST-ACK, retransmitting its FIN) until the idle timeout.
#[test]
fn a_bare_rst_closes_its_connection_whatever_the_listener_slot() {
    let mut s = stack(16);
    let mut app = netstack_sim::PingApp::new(s.slots());
    let now = Nanos::from_millis(2);
    let mut out: Vec<Vec<u8>> = Vec::new();
    // A takes slot 0, B slot 1; A is reset (RST|ACK: only A's socket takes
    // it), so slot 0 is idle again; C takes the armed listener (slot 2) and
    // the listener is re-armed on slot 0, below B and C.
    let (a_seq, a_ack) = raw_handshake(&mut s, &mut app, 50_001, now);
    let (b_seq, _) = raw_handshake(&mut s, &mut app, 50_002, now);
    let rst_a = segment(50_001, TcpControl::Rst, a_seq, Some(a_ack));
    assert_eq!(s.receive(now, &rst_a, &mut out), Received::Consumed);
    s.poll(now, &mut app, &mut out);
    assert_eq!(s.counters().connections_open, 1);
    raw_handshake(&mut s, &mut app, 50_003, now);
    assert_eq!(s.counters().connections_open, 2);
    // A bare RST (no ACK) for B, at B's next sequence number.
    let rst_b = segment(50_002, TcpControl::Rst, b_seq, None);
    assert_eq!(s.receive(now, &rst_b, &mut out), Received::Consumed);
    s.poll(now, &mut app, &mut out);
    let c = *s.counters();
    assert_eq!((c.connections_open, c.connections_closed), (1, 2), "B must be closed: {c:?}");
    assert_eq!(c.rx_frames, c.rx_accounted());
    // The listener still accepts.
    raw_handshake(&mut s, &mut app, 50_004, now);
    assert_eq!(s.counters().connections_open, 2);
}

#[test]
fn held_responses_go_out_after_wake_without_input() {
    let mut net = Net::new(stack_config(64), clients(1, 3, 1, Ending::KeepOpen));
    net.app.hold = true;
    net.run_until(10_000, |n| n.app.requests == 3);
    for _ in 0..50 {
        net.step();
        net.now += std::time::Duration::from_millis(1);
    }
    assert_eq!(net.clients[0].answered(), 0, "held answers must not leak out");
    let woken = net.app.release();
    assert_eq!(woken.len(), 3);
    for conn in woken {
        assert!(net.stack.wake(conn));
    }
    net.run_until(1_000, |n| n.all_done());
    assert_eq!(net.clients[0].answered(), 3);
    net.assert_balanced();
}

#[test]
fn tiny_neighbour_table_falls_back_to_arp_requests() {
    let mut config = stack_config(256);
    config.link.neighbor_capacity = 4;
    let mut net = Net::new(config, clients(20, 2, 3, Ending::ClientCloses));
    net.run_to_completion(200_000);
    let c = *net.stack.counters();
    assert!(c.arp_requests > 0 && c.tx_drop_no_neighbor > 0, "{c:?}");
    assert_eq!(net.app.requests, 20 * 2 * 3);
    net.assert_balanced();
}

#[test]
fn icmp_echo_reply_is_checksum_valid() {
    let mut s = stack(16);
    let mut icmp = vec![
        0x08, 0x00, 0x00, 0x00, // echo request, code 0, checksum (below)
        0x12, 0x34, 0x00, 0x01, // ident, seq
    ];
    icmp.extend_from_slice(b"abcdefgh");
    Icmpv4Packet::new_unchecked(&mut icmp[..]).fill_checksum();
    let req = ipv4_frame(client_mac(0), client_ip(0), SERVER_IP, IpProtocol::Icmp, &icmp);
    let mut out: Vec<Vec<u8>> = Vec::new();
    assert_eq!(s.receive(Nanos::from_millis(2), &req, &mut out), Received::Consumed);
    assert_eq!(out.len(), 1);
    let f = &out[0];
    assert_eq!(&f[0..6], &client_mac(0).0);
    assert_eq!(&f[6..12], &SERVER_MAC.0);
    let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!((ip.src_addr(), ip.dst_addr()), (SERVER_IP, client_ip(0)));
    let reply = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert!(reply.verify_checksum());
    assert_eq!(reply.msg_type(), Icmpv4Message::EchoReply);
    assert_eq!((reply.echo_ident(), reply.echo_seq_no(), reply.data()), (0x1234, 1, &b"abcdefgh"[..]));
    // Not for our address: dropped.
    let other = ipv4_frame(client_mac(0), client_ip(0), Ipv4Address::new(10, 0, 0, 9), IpProtocol::Icmp, &icmp);
    assert_eq!(s.receive(Nanos::from_millis(2), &other, &mut out), Received::Dropped(DropReason::WrongIp));
    assert_eq!(out.len(), 1);
    let c = s.counters();
    assert_eq!((c.icmp_echo_replies, c.drop_wrong_ip, c.rx_frames), (1, 1, 2));
    assert_eq!(c.rx_frames, c.rx_accounted());
}

/// A broadcast ARP request from client 0 for `target`.
fn arp_request(target: Ipv4Address) -> Vec<u8> {
    let mut f = vec![0xff; 6]; // broadcast
    f.extend_from_slice(&client_mac(0).0);
    f.extend_from_slice(&[0x08, 0x06]); // ARP
    f.extend_from_slice(&[0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01]); // Ethernet/IPv4, request
    f.extend_from_slice(&client_mac(0).0);
    f.extend_from_slice(&client_ip(0).octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f.resize(60, 0);
    f
}

#[test]
fn arp_reply_for_our_ip_only() {
    let mut s = stack(16);
    let mut out: Vec<Vec<u8>> = Vec::new();
    let now = Nanos::from_millis(2);
    assert_eq!(s.receive(now, &arp_request(Ipv4Address::new(10, 0, 0, 77)), &mut out), Received::Consumed);
    assert!(out.is_empty());
    assert_eq!(s.link().neighbors.lookup(client_ip(0)), None, "not learned from a request for someone else");
    assert_eq!(s.receive(now, &arp_request(SERVER_IP), &mut out), Received::Consumed);
    assert_eq!(out.len(), 1);
    let r = &out[0];
    assert_eq!(r.len(), 60);
    assert_eq!(&r[0..6], &client_mac(0).0);
    assert_eq!(&r[12..14], &[0x08, 0x06]);
    assert_eq!(&r[20..22], &[0, 2]); // reply
    assert_eq!(&r[22..28], &SERVER_MAC.0);
    assert_eq!(&r[28..32], &SERVER_IP.octets());
    assert_eq!(s.link().neighbors.lookup(client_ip(0)), Some(client_mac(0)));
    let c = s.counters();
    assert_eq!((c.arp_replies, c.rx_arp), (1, 2));
}

#[test]
fn stray_segments_get_rst_and_junk_is_counted() {
    let mut s = stack(16);
    let mut out: Vec<Vec<u8>> = Vec::new();
    let now = Nanos::from_millis(2);
    // ACK without a flow -> RST.
    let ack = tcp_frame(client_mac(0), client_ip(0), 40_000, PORT, TcpControl::None, true);
    assert_eq!(s.receive(now, &ack, &mut out), Received::Consumed);
    // SYN to a closed port -> RST (with ACK).
    let syn = tcp_frame(client_mac(0), client_ip(0), 40_001, 9999, TcpControl::Syn, false);
    assert_eq!(s.receive(now, &syn, &mut out), Received::Consumed);
    assert_eq!(out.len(), 2);
    for f in &out {
        let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        assert!(tcp.rst());
        assert!(tcp.verify_checksum(&IpAddress::Ipv4(SERVER_IP), &IpAddress::Ipv4(client_ip(0))));
    }
    // RST without a flow -> nothing.
    let rst = tcp_frame(client_mac(0), client_ip(0), 40_002, PORT, TcpControl::Rst, false);
    assert_eq!(s.receive(now, &rst, &mut out), Received::Dropped(DropReason::RstNoFlow));
    // Another MAC, a VLAN tag, IPv6, a runt.
    let mut wrong_mac = ack.clone();
    wrong_mac[5] ^= 1;
    assert_eq!(s.receive(now, &wrong_mac, &mut out), Received::Dropped(DropReason::WrongMac));
    let mut vlan = ack[..12].to_vec();
    vlan.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
    vlan.extend_from_slice(&ack[12..]);
    assert_eq!(s.receive(now, &vlan, &mut out), Received::Dropped(DropReason::Vlan));
    assert!(matches!(s.receive(now, &[0u8; 10], &mut out), Received::Dropped(DropReason::Malformed(_))));
    // A SYN with a bad TCP checksum is refused by smoltcp and leaves the listener armed.
    let mut bad = tcp_frame(client_mac(0), client_ip(0), 40_003, PORT, TcpControl::Syn, false);
    let n = bad.len();
    bad[n - 4] ^= 0xff;
    assert_eq!(s.receive(now, &bad, &mut out), Received::Dropped(DropReason::SynRejected));
    assert_eq!(out.len(), 2);
    let c = *s.counters();
    assert_eq!((c.tcp_no_flow, c.syn_closed_port, c.drop_rst_no_flow), (1, 1, 1));
    assert_eq!((c.connections_opened, c.drop_syn_rejected), (0, 1));
    assert_eq!(c.rx_frames, c.rx_accounted());
    assert_eq!(s.free_sockets(), s.slots());
}

#[test]
fn idle_timeout_reclaims_half_open_but_keeps_live_idle_connections() {
    let mut config = stack_config(64);
    config.idle_timeout_ms = Some(5_000);
    let mut net = Net::new(config, clients(1, 8, 1, Ending::KeepOpen));
    net.run_until(10_000, |n| n.all_done());
    let flood_mac = EthernetAddress([0x02, 0x66, 0, 0, 0, 1]);
    for i in 0..20u16 {
        let syn = tcp_frame(flood_mac, Ipv4Address::new(10, 0, 250, 1), 30_000 + i, PORT, TcpControl::Syn, false);
        net.to_server.push(syn);
    }
    net.step();
    assert_eq!(net.stack.counters().connections_open, 28);
    // The spoofed peers never answer: their SYN-RECEIVED entries end after
    // the half-open lifetime (3 s, before the 5 s idle timeout); the real
    // clients answer keep-alives through 60 s of silence.
    let start = net.now;
    net.run_until(100_000, |n| n.now >= start + std::time::Duration::from_secs(60));
    let c = *net.stack.counters();
    assert_eq!((c.connections_open, c.connections_closed), (8, 20), "{c:?}");
    assert_eq!(c.syn_half_open_expired, 20, "{c:?}");
    assert_eq!(net.app.closed, 0, "half-open connections never reached the app");
    for c in &mut net.clients {
        c.add_requests(1);
    }
    net.run_until(10_000, |n| n.all_done());
    assert_eq!(net.app.requests, 16);
    assert_eq!(net.clients[0].resets(), 0);
    net.assert_balanced();
}

#[test]
fn tx_backpressure_delays_but_loses_nothing() {
    let mut net = Net::new(stack_config(256), clients(5, 20, 4, Ending::ServerCloses));
    net.tx_limit = 8;
    net.run_to_completion(200_000);
    let c = *net.stack.counters();
    assert!(c.tx_backpressure > 0, "the 8-frame burst must have filled: {c:?}");
    assert_eq!(net.app.requests, 5 * 20 * 4);
    assert!(net.clients.iter().all(|c| c.resets() == 0));
    net.assert_balanced();
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
    /// Mutated segments (IP checksum fixed up so they reach the TCP path)
    /// never panic the stack and keep every counter balanced.
    #[test]
    fn mutated_segments_never_panic(
        muts in proptest::collection::vec((14usize..60, proptest::prelude::any::<u8>()), 1..6),
        syn in proptest::prelude::any::<bool>(),
        port in proptest::prelude::any::<u16>(),
    ) {
        let mut s = stack(32);
        let mut out: Vec<Vec<u8>> = Vec::new();
        let control = if syn { TcpControl::Syn } else { TcpControl::None };
        let mut f = tcp_frame(client_mac(0), client_ip(0), port, PORT, control, !syn);
        for (pos, val) in muts {
            if pos < f.len() {
                f[pos] = val;
            }
        }
        let ihl = usize::from(f[14] & 0x0f) * 4;
        if ihl >= 20 && 14 + ihl <= f.len() {
            Ipv4Packet::new_unchecked(&mut f[14..]).fill_checksum();
        }
        let now = Nanos::from_millis(5);
        let _ = s.receive(now, &f, &mut out);
        // Again, as a retransmission would, then time passes.
        let _ = s.receive(now, &f, &mut out);
        let mut app = netstack_sim::PingApp::new(s.slots());
        for ms in [5, 1_000, 5_000, 60_000] {
            s.poll(Nanos::from_millis(ms), &mut app, &mut out);
        }
        let c = *s.counters();
        proptest::prop_assert_eq!(c.rx_frames, c.rx_accounted());
        proptest::prop_assert_eq!(c.connections_opened, c.connections_closed + c.connections_open);
        proptest::prop_assert_eq!(s.flows() as u64, c.connections_open);
    }
}
