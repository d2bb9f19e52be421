//! The client stack against the server stack over an in-memory wire.

use super::*;
use crate::net::{ConnId, NetStack, NetStackConfig, TcpApp};
use crate::time::Nanos;
use smoltcp::wire::Ipv4Address;

const SERVER: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);
const CLIENT: Ipv4Address = Ipv4Address::new(10, 0, 0, 2);

fn l2(mac: u8, ip: Ipv4Address) -> L2Config {
    L2Config { mac: EthernetAddress([2, 0, 0, 0, 0, mac]), ip, prefix_len: 24, gateway: None, neighbor_capacity: 64 }
}

/// Echoes every byte back; closes when the client did.
#[derive(Default)]
struct Echo {
    pending: std::collections::HashMap<usize, Vec<u8>>,
    peer_closed: std::collections::HashSet<usize>,
}

impl TcpApp for Echo {
    fn on_open(&mut self, _: ConnId, _: SocketAddrV4, _: Nanos) {}
    fn on_data(&mut self, conn: ConnId, data: &[u8], _: Nanos) -> usize {
        self.pending.entry(conn.index()).or_default().extend_from_slice(data);
        data.len()
    }
    fn on_peer_closed(&mut self, conn: ConnId, _: Nanos) {
        self.peer_closed.insert(conn.index());
    }
    fn poll_send(&mut self, conn: ConnId, _: Nanos, out: &mut dyn FnMut(&[u8]) -> usize) {
        if let Some(p) = self.pending.get_mut(&conn.index()) {
            let n = out(p);
            p.drain(..n);
        }
    }
    fn wants_close(&mut self, conn: ConnId) -> bool {
        self.peer_closed.contains(&conn.index())
    }
    fn on_close(&mut self, conn: ConnId, _: Nanos) {
        self.pending.remove(&conn.index());
        self.peer_closed.remove(&conn.index());
    }
}

/// Sends "hello" `rounds` times, one at a time, then closes.
struct Pinger {
    rounds: usize,
    state: Vec<(usize, usize, bool)>, // (rounds done, bytes of the echo received, request sent)
    closes: Vec<CloseKind>,
    opens: usize,
}

impl ClientApp for Pinger {
    fn on_open(&mut self, conn: ClientConn, _: Nanos) {
        self.opens += 1;
        self.state[conn.index()] = (0, 0, false);
    }
    fn on_data(&mut self, conn: ClientConn, data: &[u8], _: Nanos) -> usize {
        let st = &mut self.state[conn.index()];
        st.1 += data.len();
        if st.1 >= 5 {
            st.1 -= 5;
            st.0 += 1;
            st.2 = false;
        }
        data.len()
    }
    fn poll_send(&mut self, conn: ClientConn, _: Nanos, out: &mut dyn FnMut(&[u8]) -> usize) {
        let st = &mut self.state[conn.index()];
        if st.0 < self.rounds && !st.2 {
            assert_eq!(out(b"hello"), 5);
            st.2 = true;
        }
    }
    fn wants_close(&mut self, conn: ClientConn) -> bool {
        self.state[conn.index()].0 >= self.rounds
    }
    fn on_close(&mut self, _: ClientConn, kind: CloseKind, _: Nanos) {
        self.closes.push(kind);
    }
}

/// One step of both stacks: the client polls, its frames (with those left
/// in `to_server`) reach the server, the server answers, and its frames
/// reach the client, whose replies wait in `to_server` for the next step.
fn exchange(
    client: &mut ClientStack,
    server: &mut NetStack,
    pinger: &mut Pinger,
    echo: &mut impl TcpApp,
    to_server: &mut Vec<Vec<u8>>,
    now: Nanos,
) {
    client.poll(now, pinger, to_server);
    let mut to_client: Vec<Vec<u8>> = Vec::new();
    for f in std::mem::take(to_server) {
        let _ = server.receive(now, &f, &mut to_client);
    }
    server.poll(now, echo, &mut to_client);
    for f in &to_client {
        client.receive(now, f, to_server);
    }
}

/// Exchanges 1 ms apart (at most 400 steps) until `closes` connections have
/// closed; then the client stops connecting and the run ends once it has no
/// connection busy.
fn run_until_closed(
    client: &mut ClientStack,
    server: &mut NetStack,
    pinger: &mut Pinger,
    echo: &mut impl TcpApp,
    closes: usize,
) {
    let mut now = Nanos::ZERO;
    // Frames in flight to the server, kept across steps.
    let mut to_server: Vec<Vec<u8>> = Vec::new();
    for _ in 0..400 {
        exchange(client, server, pinger, echo, &mut to_server, now);
        if pinger.closes.len() >= closes {
            client.stop_connecting();
            if client.busy() == 0 {
                break;
            }
        }
        now = now.plus_ns(1_000_000);
    }
}

#[test]
fn client_connections_open_exchange_and_close_against_the_server_stack() {
    let n = 40;
    let t0 = Nanos::ZERO;
    let mut server = NetStack::new(NetStackConfig::new(l2(1, SERVER), 8080, 64), t0).unwrap();
    let mut cfg = ClientStackConfig::new(l2(2, CLIENT), SocketAddrV4::new(SERVER, 8080), n);
    cfg.sockets_per_cell = 8;
    cfg.max_connects_per_poll = 16;
    let mut client = ClientStack::new(cfg, t0).unwrap();
    let mut echo = Echo::default();
    let mut pinger = Pinger { rounds: 3, state: vec![(0, 0, false); client.slots()], closes: Vec::new(), opens: 0 };
    run_until_closed(&mut client, &mut server, &mut pinger, &mut echo, n);
    assert!(pinger.closes.len() >= n, "closes {:?}, counters {:?}", pinger.closes.len(), client.counters());
    assert!(pinger.closes.iter().all(|k| *k == CloseKind::Closed), "{:?}", pinger.closes);
    assert_eq!(pinger.opens, pinger.closes.len());
    let c = client.counters();
    assert_eq!(c.connects as usize, pinger.closes.len());
    assert_eq!((c.connect_failed, c.resets, c.rx_no_conn), (0, 0, 0), "{c:?}");
    assert_eq!(c.net.arp_requests, 1);
    assert_eq!(server.counters().connections_opened as usize, pinger.closes.len());
}

#[test]
fn an_unanswered_target_is_asked_by_arp_and_no_syn_is_sent_before_it_answers() {
    let t0 = Nanos::ZERO;
    let cfg = ClientStackConfig::new(l2(2, CLIENT), SocketAddrV4::new(SERVER, 8080), 4);
    let mut client = ClientStack::new(cfg, t0).unwrap();
    let mut app = Pinger { rounds: 1, state: vec![(0, 0, false); client.slots()], closes: Vec::new(), opens: 0 };
    let mut out: Vec<Vec<u8>> = Vec::new();
    client.poll(t0, &mut app, &mut out);
    client.poll(t0.plus_ns(100_000_000), &mut app, &mut out);
    client.poll(t0.plus_ns(250_000_000), &mut app, &mut out);
    assert_eq!(out.len(), 2, "two ARP requests 200 ms apart, nothing else");
    assert!(out.iter().all(|f| f[12..14] == [0x08, 0x06]));
    assert_eq!(client.counters().connects, 0);
}

#[test]
fn bad_configurations_are_refused() {
    let t0 = Nanos::ZERO;
    let target = SocketAddrV4::new(SERVER, 8080);
    let mut cfg = ClientStackConfig::new(l2(2, CLIENT), target, 0);
    assert_eq!(ClientStack::new(cfg, t0).err(), Some(ClientStackError::BadConnections(0)));
    cfg.connections = 60_000; // more than the 55,536 ports from 10,000
    assert!(ClientStack::new(cfg, t0).is_err());
    cfg.connections = 1;
    cfg.rx_buffer = 100;
    assert_eq!(ClientStack::new(cfg, t0).err(), Some(ClientStackError::BadBuffers));
}

/// Echoes once, then closes (like a server answering `Connection: close`).
#[derive(Default)]
struct EchoOnce {
    inner: Echo,
    answered: std::collections::HashSet<usize>,
}

impl TcpApp for EchoOnce {
    fn on_open(&mut self, c: ConnId, p: SocketAddrV4, t: Nanos) {
        self.inner.on_open(c, p, t)
    }
    fn on_data(&mut self, c: ConnId, d: &[u8], t: Nanos) -> usize {
        self.inner.on_data(c, d, t)
    }
    fn on_peer_closed(&mut self, c: ConnId, t: Nanos) {
        self.inner.on_peer_closed(c, t)
    }
    fn poll_send(&mut self, c: ConnId, t: Nanos, out: &mut dyn FnMut(&[u8]) -> usize) {
        let had = self.inner.pending.get(&c.index()).is_some_and(|p| !p.is_empty());
        self.inner.poll_send(c, t, out);
        if had && self.inner.pending.get(&c.index()).is_some_and(|p| p.is_empty()) {
            self.answered.insert(c.index());
        }
    }
    fn wants_close(&mut self, c: ConnId) -> bool {
        self.answered.contains(&c.index()) || self.inner.wants_close(c)
    }
    fn on_close(&mut self, c: ConnId, t: Nanos) {
        self.answered.remove(&c.index());
        self.inner.on_close(c, t)
    }
}

#[test]
fn connections_the_server_closes_are_reported_and_reopened() {
    let n = 8;
    let t0 = Nanos::ZERO;
    let mut server = NetStack::new(NetStackConfig::new(l2(1, SERVER), 8080, 64), t0).unwrap();
    let cfg = ClientStackConfig::new(l2(2, CLIENT), SocketAddrV4::new(SERVER, 8080), n);
    let mut client = ClientStack::new(cfg, t0).unwrap();
    let mut echo = EchoOnce::default();
    // Three rounds per connection, but the server closes after each: every round needs a new connection.
    let mut pinger = Pinger { rounds: 3, state: vec![(0, 0, false); client.slots()], closes: Vec::new(), opens: 0 };
    run_until_closed(&mut client, &mut server, &mut pinger, &mut echo, 3 * n);
    let c = *client.counters();
    assert!(pinger.closes.len() >= 3 * n, "{c:?} server {:?} closes {:?}", server.counters(), pinger.closes);
    assert!(pinger.closes.iter().all(|k| *k == CloseKind::PeerClosed), "{:?}", pinger.closes);
    assert_eq!(c.closed_by_peer as usize, pinger.closes.len());
    assert_eq!(c.connects as usize, pinger.closes.len(), "each close was followed by a new connection");
    assert_eq!((c.connect_failed, c.resets), (0, 0));
    assert_eq!(c.net.connections_open, 0);
}
