//! A deterministic in-memory network for the sharded stack: smoltcp client
//! interfaces (`Medium::Ethernet`, each its own MAC/IP with many sockets)
//! wired to one `NetStack` by two frame queues, a virtual clock, optional
//! loss and reordering, and a PING/PONG `TcpApp` on the server side.
#![allow(dead_code)]

pub mod http;

use metricsstream::net::{ConnId, FrameSink, L2Config, NetStack, NetStackConfig, TcpApp};
use metricsstream::time::Nanos;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address};
use std::collections::VecDeque;
use std::net::SocketAddrV4;
use std::time::Duration;

/// The simulation's clock is the appliance's [`Nanos`]; its peers (clients
/// and the plain server) are smoltcp interfaces, which keep their own
/// microsecond `Instant`.
pub fn peer_time(now: Nanos) -> Instant {
    Instant::from_micros(now.as_micros() as i64)
}

/// Client host `index`'s smoltcp interface (its MAC and IP, a seed per host).
pub fn client_interface(index: usize, seed: u64, dev: &mut impl Device, now: Nanos) -> Interface {
    let mut config = Config::new(HardwareAddress::Ethernet(client_mac(index)));
    config.random_seed = seed + index as u64;
    let mut iface = Interface::new(config, dev, peer_time(now));
    iface.update_ip_addrs(|a| {
        a.push(IpCidr::new(client_ip(index).into(), 16)).unwrap();
    });
    iface
}

/// Where the clock goes after a step in which nothing moved: 1 ms on, or on
/// to the earliest timer (server's or a client's) if that is later.
pub fn idle_step_time(now: Nanos, timers: impl IntoIterator<Item = Option<Nanos>>) -> Nanos {
    let next = now + Duration::from_millis(1);
    timers.into_iter().flatten().min().map_or(next, |t| next.max(t))
}

/// A smoltcp peer's timer on the simulation's clock.
pub fn sim_time(at: Instant) -> Nanos {
    Nanos::from_micros(at.total_micros().max(0) as u64)
}

pub const SERVER_MAC: EthernetAddress = EthernetAddress([0x02, 0x53, 0, 0, 0, 0x01]);
pub const SERVER_IP: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);
pub const PORT: u16 = 8080;

pub fn client_mac(i: usize) -> EthernetAddress {
    EthernetAddress([0x02, 0x43, 0, 0, (i >> 8) as u8, i as u8])
}

pub fn client_ip(i: usize) -> Ipv4Address {
    Ipv4Address::new(10, 0, 1 + (i / 200) as u8, 1 + (i % 200) as u8)
}

pub fn stack_config(max_connections: usize) -> NetStackConfig {
    let link = L2Config { mac: SERVER_MAC, ip: SERVER_IP, prefix_len: 16, gateway: None, neighbor_capacity: 1024 };
    let mut c = NetStackConfig::new(link, PORT, max_connections);
    c.rx_buffer = 2048;
    c.tx_buffer = 2048;
    c.idle_timeout_ms = None;
    // The sim's clients send all their SYNs in one step, before any ACK can
    // come back, so a half-open bound below the slot count would evict
    // their own handshakes; the bound has its own tests (tests/netstack.rs).
    c.max_half_open = max_connections;
    c
}

// ---------------------------------------------------------------- server app

struct AppConn {
    id: ConnId,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    held: Vec<u8>,
    peer_closed: bool,
    bye: bool,
}

/// Answers "PING x\n" with "PONG x\n"; "BYE\n" makes it close. With `hold`,
/// answers wait for `release` (a response held until, say, an fsync).
#[derive(Default)]
pub struct PingApp {
    conns: Vec<Option<AppConn>>,
    pub opened: u64,
    pub closed: u64,
    pub requests: u64,
    pub hold: bool,
}

impl PingApp {
    pub fn new(slots: usize) -> PingApp {
        PingApp { conns: (0..slots).map(|_| None).collect(), ..PingApp::default() }
    }

    fn conn(&mut self, c: ConnId) -> &mut AppConn {
        let a = self.conns[c.index()].as_mut().expect("event for a connection that is not open");
        assert_eq!(a.id, c, "stale ConnId delivered");
        a
    }

    /// Releases held answers; returns the connections to wake.
    pub fn release(&mut self) -> Vec<ConnId> {
        let mut woken = Vec::new();
        for c in self.conns.iter_mut().flatten() {
            if !c.held.is_empty() {
                let held = std::mem::take(&mut c.held);
                c.out.extend_from_slice(&held);
                woken.push(c.id);
            }
        }
        woken
    }

    pub fn live(&self) -> usize {
        self.conns.iter().filter(|c| c.is_some()).count()
    }
}

impl TcpApp for PingApp {
    fn on_open(&mut self, conn: ConnId, _peer: SocketAddrV4, _now: Nanos) {
        assert!(self.conns[conn.index()].is_none(), "slot opened twice");
        self.conns[conn.index()] = Some(AppConn {
            id: conn,
            inbuf: Vec::new(),
            out: Vec::new(),
            held: Vec::new(),
            peer_closed: false,
            bye: false,
        });
        self.opened += 1;
    }

    fn on_data(&mut self, conn: ConnId, data: &[u8], _now: Nanos) -> usize {
        let hold = self.hold;
        let c = self.conn(conn);
        c.inbuf.extend_from_slice(data);
        let mut answered = 0;
        while let Some(end) = c.inbuf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = c.inbuf.drain(..=end).collect();
            if let Some(rest) = line.strip_prefix(b"PING ") {
                let dst = if hold { &mut c.held } else { &mut c.out };
                dst.extend_from_slice(b"PONG ");
                dst.extend_from_slice(rest);
                answered += 1;
            } else if line == b"BYE\n" {
                c.bye = true;
            } else {
                panic!("unexpected request {:?}", String::from_utf8_lossy(&line));
            }
        }
        self.requests += answered;
        data.len()
    }

    fn on_peer_closed(&mut self, conn: ConnId, _now: Nanos) {
        self.conn(conn).peer_closed = true;
    }

    fn poll_send(&mut self, conn: ConnId, _now: Nanos, out: &mut dyn FnMut(&[u8]) -> usize) {
        let c = self.conn(conn);
        if !c.out.is_empty() {
            let n = out(&c.out);
            c.out.drain(..n);
        }
    }

    fn wants_close(&mut self, conn: ConnId) -> bool {
        let c = self.conn(conn);
        (c.peer_closed || c.bye) && c.out.is_empty() && c.held.is_empty()
    }

    fn on_close(&mut self, conn: ConnId, _now: Nanos) {
        self.conn(conn);
        self.conns[conn.index()] = None;
        self.closed += 1;
    }
}

// ---------------------------------------------------------------- clients

struct QueueDevice<'a> {
    rx: &'a mut VecDeque<Vec<u8>>,
    tx: &'a mut Vec<Vec<u8>>,
}

struct OwnedRx(Vec<u8>);
impl RxToken for OwnedRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

struct VecTx<'a>(&'a mut Vec<Vec<u8>>);
impl TxToken for VecTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0; len];
        let r = f(&mut buf);
        self.0.push(buf);
        r
    }
}

impl Device for QueueDevice<'_> {
    type RxToken<'b>
        = OwnedRx
    where
        Self: 'b;
    type TxToken<'b>
        = VecTx<'b>
    where
        Self: 'b;
    fn receive(&mut self, _: Instant) -> Option<(OwnedRx, VecTx<'_>)> {
        let f = self.rx.pop_front()?;
        Some((OwnedRx(f), VecTx(self.tx)))
    }
    fn transmit(&mut self, _: Instant) -> Option<VecTx<'_>> {
        Some(VecTx(self.tx))
    }
    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps
    }
}

/// How a client connection ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The client closes first after its last answer.
    ClientCloses,
    /// The client sends "BYE": the server closes first (its TIME-WAIT path).
    ServerCloses,
    /// Stay open.
    KeepOpen,
}

pub struct ClientConn {
    handle: SocketHandle,
    id: usize,
    local_port: u16,
    pub requests: usize,
    pub sent: usize,
    pub answered: usize,
    buf: Vec<u8>,
    pub closing: bool,
    connected: bool,
    bye_sent: bool,
    pub resets: usize,
}

pub struct Client {
    pub index: usize,
    iface: Interface,
    sockets: SocketSet<'static>,
    pub conns: Vec<ClientConn>,
    pub rx: VecDeque<Vec<u8>>,
    pub ending: Ending,
}

impl Client {
    pub fn new(index: usize, conns: usize, requests: usize, ending: Ending, now: Nanos) -> Client {
        let mut tx = Vec::new();
        let mut rx = VecDeque::new();
        let iface = client_interface(index, 0xc11e, &mut QueueDevice { rx: &mut rx, tx: &mut tx }, now);
        let mut sockets = SocketSet::new(Vec::new());
        let mut list = Vec::new();
        for k in 0..conns {
            let s = tcp::Socket::new(tcp::SocketBuffer::new(vec![0; 1024]), tcp::SocketBuffer::new(vec![0; 1024]));
            list.push(ClientConn {
                handle: sockets.add(s),
                id: index * 100_000 + k,
                local_port: 20_000 + k as u16,
                requests,
                sent: 0,
                answered: 0,
                buf: Vec::new(),
                closing: false,
                connected: false,
                bye_sent: false,
                resets: 0,
            });
        }
        Client { index, iface, sockets, conns: list, rx, ending }
    }

    /// Polls the interface, runs every connection's request loop, polls again.
    pub fn poll(&mut self, now: Nanos, out: &mut Vec<Vec<u8>>) {
        let now = peer_time(now);
        let mut dev = QueueDevice { rx: &mut self.rx, tx: out };
        self.iface.poll(now, &mut dev, &mut self.sockets);
        for c in &mut self.conns {
            let s = self.sockets.get_mut::<tcp::Socket>(c.handle);
            if !c.connected {
                s.connect(self.iface.context(), (SERVER_IP, PORT), c.local_port).unwrap();
                c.connected = true;
                continue;
            }
            while s.can_recv() {
                s.recv(|d| {
                    c.buf.extend_from_slice(d);
                    (d.len(), ())
                })
                .unwrap();
            }
            while let Some(end) = c.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = c.buf.drain(..=end).collect();
                let expect = format!("PONG {}:{}\n", c.id, c.answered);
                assert_eq!(String::from_utf8_lossy(&line), expect, "wrong answer on connection {}", c.id);
                c.answered += 1;
            }
            if s.state() == tcp::State::Closed && !c.closing && c.answered < c.requests && c.sent > 0 {
                // Reset by the server: count it (tests assert none happen).
                c.resets += 1;
                c.closing = true;
            }
            if s.may_send() && c.sent == c.answered && c.sent < c.requests {
                let line = format!("PING {}:{}\n", c.id, c.sent);
                assert_eq!(s.send_slice(line.as_bytes()).unwrap(), line.len());
                c.sent += 1;
            }
            if c.answered == c.requests && !c.closing {
                match self.ending {
                    Ending::ClientCloses => {
                        s.close();
                        c.closing = true;
                    }
                    Ending::ServerCloses if !c.bye_sent && s.may_send() => {
                        s.send_slice(b"BYE\n").unwrap();
                        c.bye_sent = true;
                    }
                    _ => {}
                }
            }
            if c.bye_sent && !c.closing && s.state() == tcp::State::CloseWait {
                s.close();
                c.closing = true;
            }
        }
        let mut dev = QueueDevice { rx: &mut self.rx, tx: out };
        self.iface.poll(now, &mut dev, &mut self.sockets);
    }

    pub fn poll_at(&mut self, now: Nanos) -> Option<Nanos> {
        self.iface.poll_at(peer_time(now), &self.sockets).map(sim_time)
    }

    /// Every connection got all its answers and, unless kept open, is closed.
    pub fn done(&self) -> bool {
        self.conns.iter().all(|c| {
            let state = self.sockets.get::<tcp::Socket>(c.handle).state();
            c.answered == c.requests
                && match self.ending {
                    Ending::KeepOpen => true,
                    _ => matches!(state, tcp::State::Closed | tcp::State::TimeWait),
                }
        })
    }

    pub fn answered(&self) -> usize {
        self.conns.iter().map(|c| c.answered).sum()
    }

    pub fn resets(&self) -> usize {
        self.conns.iter().map(|c| c.resets).sum()
    }

    /// Adds one request to the connections `pick` selects (by index in this client).
    pub fn add_request_where(&mut self, mut pick: impl FnMut(usize) -> bool) {
        for (k, c) in self.conns.iter_mut().enumerate() {
            if pick(k) {
                c.requests += 1;
            }
        }
    }

    /// Adds `n` more requests to every connection (for keep-alive rounds).
    pub fn add_requests(&mut self, n: usize) {
        for c in &mut self.conns {
            c.requests += n;
        }
    }
}

// ---------------------------------------------------------------- baseline

/// The design the stack avoids, for the bench: one smoltcp interface
/// (`Medium::Ethernet`) holding every socket, each listening, and an
/// application loop that has to visit every socket each poll.
pub struct PlainServer {
    iface: Interface,
    sockets: SocketSet<'static>,
    handles: Vec<SocketHandle>,
    inbufs: Vec<Vec<u8>>,
    pub requests: u64,
}

impl PlainServer {
    pub fn new(sockets: usize, now: Nanos) -> PlainServer {
        let now = peer_time(now);
        let mut tx = Vec::new();
        let mut rx = VecDeque::new();
        let mut dev = QueueDevice { rx: &mut rx, tx: &mut tx };
        let mut iface = Interface::new(Config::new(HardwareAddress::Ethernet(SERVER_MAC)), &mut dev, now);
        iface.update_ip_addrs(|a| {
            a.push(IpCidr::new(SERVER_IP.into(), 16)).unwrap();
        });
        let mut set = SocketSet::new(Vec::new());
        let mut handles = Vec::new();
        for _ in 0..sockets {
            let mut s = tcp::Socket::new(tcp::SocketBuffer::new(vec![0; 2048]), tcp::SocketBuffer::new(vec![0; 2048]));
            s.set_nagle_enabled(false);
            s.listen(PORT).unwrap();
            handles.push(set.add(s));
        }
        PlainServer { iface, sockets: set, handles, inbufs: vec![Vec::new(); sockets], requests: 0 }
    }

    pub fn step(&mut self, now: Nanos, rx: Vec<Vec<u8>>, tx: &mut Vec<Vec<u8>>) {
        let now = peer_time(now);
        let mut rx: VecDeque<Vec<u8>> = rx.into();
        let mut dev = QueueDevice { rx: &mut rx, tx };
        self.iface.poll(now, &mut dev, &mut self.sockets);
        for (h, inbuf) in self.handles.iter().zip(&mut self.inbufs) {
            let s = self.sockets.get_mut::<tcp::Socket>(*h);
            while s.can_recv() {
                s.recv(|d| {
                    inbuf.extend_from_slice(d);
                    (d.len(), ())
                })
                .unwrap();
            }
            while let Some(end) = inbuf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = inbuf.drain(..=end).collect();
                if let Some(rest) = line.strip_prefix(b"PING ") {
                    s.send_slice(b"PONG ").unwrap();
                    s.send_slice(rest).unwrap();
                    self.requests += 1;
                }
            }
            match s.state() {
                tcp::State::CloseWait => s.close(),
                tcp::State::Closed | tcp::State::TimeWait => {
                    s.abort();
                    let _ = s.listen(PORT);
                }
                _ => {}
            }
        }
        let mut dev = QueueDevice { rx: &mut rx, tx };
        self.iface.poll(now, &mut dev, &mut self.sockets);
    }

    pub fn poll_at(&mut self, now: Nanos) -> Option<Nanos> {
        self.iface.poll_at(peer_time(now), &self.sockets).map(sim_time)
    }
}

// ---------------------------------------------------------------- network

/// Loss and reordering applied to frames in both directions.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    /// Drop every Nth frame (0 = none).
    pub drop_every: usize,
    /// Swap each pair of adjacent frames of a step.
    pub swap_adjacent: bool,
}

pub struct Net {
    pub stack: NetStack,
    pub app: PingApp,
    pub clients: Vec<Client>,
    pub now: Nanos,
    pub faults: Faults,
    frames_seen: usize,
    pub frames_dropped: usize,
    pub to_server: Vec<Vec<u8>>,
    pub to_clients: Vec<Vec<u8>>,
    /// Frames sent by the server to an unknown MAC (e.g. a spoofed SYN source).
    pub unrouted: usize,
    /// Time spent in `NetStack::receive`/`poll` (for the bench only).
    pub stack_time: std::time::Duration,
    pub measure: bool,
    pub steps: usize,
    /// Print every delivered frame (debugging).
    pub trace: bool,
    /// Frames the server may queue per step (a TX burst); beyond, backpressure.
    pub tx_limit: usize,
    /// Serve with a plain smoltcp interface instead of the stack (bench baseline).
    pub plain: Option<PlainServer>,
}

/// A sink that holds at most `limit` frames, like a TX burst.
pub struct BoundedSink {
    pub frames: Vec<Vec<u8>>,
    pub limit: usize,
}

impl FrameSink for BoundedSink {
    fn has_room(&mut self) -> bool {
        self.frames.len() < self.limit
    }

    fn frame(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8]) -> bool) -> bool {
        if !self.has_room() {
            return false;
        }
        let mut buf = vec![0; len];
        let keep = fill(&mut buf);
        if keep {
            self.frames.push(buf);
        }
        keep
    }
}

impl Net {
    pub fn new(config: NetStackConfig, clients: Vec<Client>) -> Net {
        let now = Nanos::from_millis(1);
        let stack = NetStack::new(config, now).unwrap();
        let app = PingApp::new(stack.slots());
        Net {
            stack,
            app,
            clients,
            now,
            faults: Faults::default(),
            frames_seen: 0,
            frames_dropped: 0,
            to_server: Vec::new(),
            to_clients: Vec::new(),
            unrouted: 0,
            stack_time: std::time::Duration::ZERO,
            measure: false,
            steps: 0,
            trace: false,
            tx_limit: usize::MAX,
            plain: None,
        }
    }

    fn apply_faults(&mut self, frames: &mut Vec<Vec<u8>>) {
        if self.faults.drop_every > 0 {
            let every = self.faults.drop_every;
            let mut seen = self.frames_seen;
            let before = frames.len();
            frames.retain(|_| {
                seen += 1;
                seen % every != 0
            });
            self.frames_dropped += before - frames.len();
            self.frames_seen = seen;
        }
        if self.faults.swap_adjacent {
            for pair in frames.chunks_mut(2) {
                pair.reverse();
            }
        }
    }

    /// One round: clients send, the stack receives and polls, frames are delivered.
    /// Returns how many frames moved.
    pub fn step(&mut self) -> usize {
        self.steps += 1;
        let now = self.now;
        let mut to_server = std::mem::take(&mut self.to_server);
        for c in &mut self.clients {
            c.poll(now, &mut to_server);
        }
        self.apply_faults(&mut to_server);
        let mut sink = BoundedSink { frames: std::mem::take(&mut self.to_clients), limit: self.tx_limit };
        let moved = to_server.len();
        if self.trace {
            for f in &to_server {
                println!("{} C->S {}", now, describe(f));
            }
        }
        let t0 = self.measure.then(std::time::Instant::now);
        if let Some(plain) = &mut self.plain {
            plain.step(now, std::mem::take(&mut to_server), &mut sink.frames);
        } else {
            for f in to_server.drain(..) {
                let _ = self.stack.receive(now, &f, &mut sink);
            }
            self.stack.poll(now, &mut self.app, &mut sink);
        }
        let mut to_clients = sink.frames;
        if let Some(t0) = t0 {
            self.stack_time += t0.elapsed();
        }
        self.to_server = to_server;
        self.apply_faults(&mut to_clients);
        let moved = moved + to_clients.len();
        if self.trace {
            for f in &to_clients {
                println!("{} S->C {}", now, describe(f));
            }
        }
        for f in to_clients.drain(..) {
            let dst = EthernetAddress::from_bytes(&f[0..6]);
            if dst.is_broadcast() {
                for c in &mut self.clients {
                    c.rx.push_back(f.clone());
                }
            } else if dst.0[0..4] == [0x02, 0x43, 0, 0] {
                let i = usize::from(dst.0[4]) << 8 | usize::from(dst.0[5]);
                match self.clients.get_mut(i) {
                    Some(c) => c.rx.push_back(f),
                    None => self.unrouted += 1,
                }
            } else {
                self.unrouted += 1;
            }
        }
        self.to_clients = to_clients;
        moved
    }

    /// Steps until `done` holds; the clock advances 1 ms per busy step and
    /// jumps to the next timer when nothing moves. Panics after `max_steps`.
    pub fn run_until(&mut self, max_steps: usize, mut done: impl FnMut(&Net) -> bool) {
        for _ in 0..max_steps {
            if done(self) {
                return;
            }
            if self.step() > 0 {
                self.now += Duration::from_millis(1);
            } else {
                let now = self.now;
                let server = match &mut self.plain {
                    Some(p) => p.poll_at(now),
                    None => self.stack.poll_at(),
                };
                let timers = self.clients.iter_mut().map(|c| c.poll_at(now));
                self.now = idle_step_time(now, std::iter::once(server).chain(timers));
            }
        }
        panic!(
            "not done after {max_steps} steps (t = {}): answered {} counters {:?}",
            self.now,
            self.clients.iter().map(Client::answered).sum::<usize>(),
            self.stack.counters()
        );
    }

    pub fn all_done(&self) -> bool {
        self.clients.iter().all(Client::done)
    }

    /// Runs until every client is done and the stack has no open connection.
    pub fn run_to_completion(&mut self, max_steps: usize) {
        self.run_until(max_steps, |n| n.all_done() && n.stack.counters().connections_open == 0);
    }

    /// The balance every test ends with.
    pub fn assert_balanced(&mut self) {
        let c = *self.stack.counters();
        assert_eq!(c.connections_opened, c.connections_closed + c.connections_open, "{c:?}");
        assert_eq!(self.stack.flows() as u64, c.connections_open, "flow table size == open");
        assert_eq!(c.rx_frames, c.rx_accounted(), "every frame has one outcome: {c:?}");
        assert_half_open_balanced(&self.stack);
        assert_eq!(self.app.opened, self.app.closed + self.app.live() as u64);
        assert!(self.app.opened <= c.connections_opened);
        if c.connections_open == 0 {
            assert_eq!(self.stack.free_sockets(), self.stack.slots(), "all sockets back to idle/listening");
            assert_eq!(self.app.live(), 0);
        }
    }
}

/// Every accepted SYN is half-open now or left that state by one decision.
pub fn assert_half_open_balanced(stack: &NetStack) {
    let c = stack.counters();
    assert_eq!(
        c.syn_accepted,
        c.syn_half_open_completed
            + c.syn_half_open_evicted
            + c.syn_half_open_expired
            + c.syn_half_open_reset
            + c.connections_half_open,
        "{c:?}"
    );
    assert_eq!(c.connections_half_open, stack.half_open() as u64);
}

/// Builds `n` clients with `per_client` connections each.
pub fn clients(n: usize, per_client: usize, requests: usize, ending: Ending) -> Vec<Client> {
    (0..n).map(|i| Client::new(i, per_client, requests, ending, Nanos::from_millis(1))).collect()
}

/// One line per frame: TCP 4-tuple, flags, sequence numbers.
pub fn describe(f: &[u8]) -> String {
    use smoltcp::wire::{EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, TcpPacket};
    let eth = EthernetFrame::new_unchecked(f);
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return format!("{:?}", eth.ethertype());
    }
    let ip = Ipv4Packet::new_unchecked(eth.payload());
    if ip.next_header() != IpProtocol::Tcp {
        return format!("ip {:?}", ip.next_header());
    }
    let t = TcpPacket::new_unchecked(ip.payload());
    let flags: String = [(t.syn(), 'S'), (t.fin(), 'F'), (t.rst(), 'R'), (t.ack(), 'A')]
        .iter()
        .filter_map(|&(on, c)| on.then_some(c))
        .collect();
    format!(
        "{}:{} -> {}:{} {} seq={} ack={} len={} win={}",
        ip.src_addr(),
        t.src_port(),
        ip.dst_addr(),
        t.dst_port(),
        flags,
        t.seq_number().0,
        t.ack_number().0,
        t.payload().len(),
        t.window_len()
    )
}
