//! The client side of the userspace TCP/IP stack, sans-IO: `loadgen` opens
//! and keeps N connections to one target with it. Frames and time go in,
//! frames come out through a [`FrameSink`], connection events and bytes go
//! to a [`ClientApp`]. No DPDK type, no clock read, no allocation per packet.
//!
//! It shares the server stack's building blocks and its reasons for them:
//! [`Link`] owns Ethernet and ARP (smoltcp runs with `Medium::Ip`), and the
//! sockets are sharded into small smoltcp cells so that smoltcp's linear
//! socket scans see one cell, never all 10,000 connections. A client needs
//! no flow table: every connection has its own local port, and a
//! 65,536-entry array maps a destination port straight to the slot.
//!
//! Lifecycle of a slot: idle → connecting (local port taken) → open
//! (`on_open`) → closed (`on_close` with a [`CloseKind`], port released) →
//! idle. While the stack is running, idle slots are reconnected (at most
//! `max_connects_per_poll` per poll, and only once the target's next hop
//! answered ARP, so no SYN is lost to an unresolved neighbour).
//!
//! A connection we close first ends in TIME-WAIT; the slot is recycled at
//! once (without RST) and its next connection takes another local port
//! (ports rotate through `first_port..=65535`), so a reused 4-tuple is as
//! far away as the port range allows.

use super::cell::{deliver_received, interface, nanos_of, peer_sent_fin, smol_instant, Cell, CellIo, CellScheduler};
use super::classify::{classify, Frame};
use super::frame_io::{FrameSink, NetCounters};
use super::l2::{ArpOutcome, L2Config, Link, ETH_MIN_FRAME};
use super::wire::TcpSegment;
use crate::time::Nanos;
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, IpEndpoint};
use std::net::SocketAddrV4;

/// ARP requests for the target's next hop are repeated this often until answered.
const ARP_RETRY: Duration = Duration::from_millis(200);
/// Marks a free entry of the port → slot map.
const NO_SLOT: u32 = u32::MAX;

/// A connection of the client stack: dense slot index (for the
/// application's own slab) and the slot's generation (stale ids are ignored).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientConn {
    index: u32,
    generation: u32,
}

impl ClientConn {
    /// The slot index, `< ClientStack::slots()`; reused by later connections.
    #[inline]
    pub fn index(self) -> usize {
        self.index as usize
    }

    pub fn generation(self) -> u32 {
        self.generation
    }

    /// An id as the stack would hand it out, for applications' unit tests.
    #[cfg(test)]
    pub(crate) fn for_tests(index: u32, generation: u32) -> ClientConn {
        ClientConn { index, generation }
    }
}

/// How a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseKind {
    /// Never established (RST to the SYN, or the SYN timed out).
    ConnectFailed,
    /// We closed it (the application asked) and the close completed.
    Closed,
    /// The server closed it (FIN); we closed our side in answer.
    PeerClosed,
    /// Reset by the server, or timed out (retransmissions or keep-alive).
    Reset,
    /// We aborted it ([`ClientStack::abort`]).
    Aborted,
}

/// The application on top of the client connections (loadgen's HTTP client).
/// Per connection: `on_open` once (unless the connect failed), then any
/// number of `on_data` / `poll_send` / `wants_close`, and `on_close` once.
pub trait ClientApp {
    /// The handshake completed.
    fn on_open(&mut self, conn: ClientConn, now: Nanos);
    /// Received bytes in order; returns how many were consumed (the rest is
    /// offered again at the next service of the connection).
    fn on_data(&mut self, conn: ClientConn, data: &[u8], now: Nanos) -> usize;
    /// Offers room in the send buffer: `out` takes bytes and returns how many it took.
    fn poll_send(&mut self, conn: ClientConn, now: Nanos, out: &mut dyn FnMut(&[u8]) -> usize);
    /// Whether to close our side now (FIN after what was written).
    fn wants_close(&mut self, conn: ClientConn) -> bool;
    /// The connection is gone; `conn` is dead.
    fn on_close(&mut self, conn: ClientConn, kind: CloseKind, now: Nanos);
}

/// Client stack configuration.
#[derive(Clone, Copy, Debug)]
pub struct ClientStackConfig {
    /// Our address: the MAC of the port, an IP in the target's prefix.
    pub link: L2Config,
    pub target: SocketAddrV4,
    /// Connections to keep open.
    pub connections: usize,
    pub sockets_per_cell: usize,
    pub rx_buffer: usize,
    pub tx_buffer: usize,
    /// IP MTU.
    pub mtu: usize,
    /// Connections whose peer stops answering are reset after this long
    /// (SYN and data retransmissions; keep-alive at half of it).
    pub timeout: Option<Duration>,
    /// Local ports are taken from `first_port..=65535`, rotating.
    pub first_port: u16,
    /// New connections started per poll at most (bounds one iteration's work).
    pub max_connects_per_poll: usize,
    /// Cells serviced per poll at most.
    pub max_cells_per_poll: usize,
    /// Seed of smoltcp's initial sequence numbers.
    pub seed: u64,
}

impl ClientStackConfig {
    /// Defaults: 16 sockets per cell, 8 KiB buffers, MTU 1500, 10 s timeout,
    /// ports from 10,000, 256 connects and 256 cells per poll.
    pub fn new(link: L2Config, target: SocketAddrV4, connections: usize) -> ClientStackConfig {
        ClientStackConfig {
            link,
            target,
            connections,
            sockets_per_cell: 16,
            rx_buffer: 8 * 1024,
            tx_buffer: 8 * 1024,
            mtu: 1500,
            timeout: Some(Duration::from_secs(10)),
            first_port: 10_000,
            max_connects_per_poll: 256,
            max_cells_per_poll: 256,
            seed: 0xc11e,
        }
    }
}

/// Invalid [`ClientStackConfig`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClientStackError {
    #[error("connections ({0}) must be 1..= the local port range (65536 - first_port)")]
    BadConnections(usize),
    #[error("sockets_per_cell must be 1..=65535 and the target port non-zero")]
    BadSizes,
    #[error("buffers must hold at least one MTU-sized segment and the MTU must be 576..=9000")]
    BadBuffers,
}

/// Client-side counters besides the shared [`NetCounters`] (whose
/// `connections_*` count established connections).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClientCounters {
    pub net: NetCounters,
    /// SYNs started (connection attempts).
    pub connects: u64,
    pub connect_failed: u64,
    pub closed_by_us: u64,
    pub closed_by_peer: u64,
    pub resets: u64,
    pub aborted: u64,
    /// TCP segments for a local port without a connection.
    pub rx_no_conn: u64,
    /// Frames not from the target or not TCP/ARP.
    pub rx_other: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotState {
    Idle,
    Busy,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    generation: u32,
    state: SlotState,
    local_port: u16,
    app_open: bool,
    close_requested: bool,
    abort_requested: bool,
    peer_closed: bool,
}

/// The sharded client TCP/IP stack of one loadgen worker. See the module docs.
pub struct ClientStack {
    io: CellIo,
    target: SocketAddrV4,
    cells: Vec<Cell>,
    slots: Vec<Slot>,
    /// Idle slots (a stack).
    idle: Vec<u32>,
    /// Local port → slot index, or [`NO_SLOT`].
    port_owner: Vec<u32>,
    next_port: u16,
    first_port: u16,
    /// Connections to keep (lowered to 0 to wind down).
    wanted: usize,
    busy: usize,
    scheduler: CellScheduler,
    counters: ClientCounters,
    per_cell: usize,
    max_connects_per_poll: usize,
    last_arp: Option<Instant>,
}

impl ClientStack {
    /// Allocates every cell, socket and table.
    pub fn new(config: ClientStackConfig, now: Nanos) -> Result<ClientStack, ClientStackError> {
        let now = smol_instant(now);
        let c = config;
        let ports = 65536 - usize::from(c.first_port.max(1));
        if c.connections == 0 || c.connections > ports {
            return Err(ClientStackError::BadConnections(c.connections));
        }
        if c.sockets_per_cell == 0 || c.sockets_per_cell > 65535 || c.target.port() == 0 {
            return Err(ClientStackError::BadSizes);
        }
        if !(576..=9000).contains(&c.mtu) || c.rx_buffer < c.mtu || c.tx_buffer < c.mtu {
            return Err(ClientStackError::BadBuffers);
        }
        let ncells = c.connections.div_ceil(c.sockets_per_cell);
        let l = c.link;
        let mut cells = Vec::with_capacity(ncells);
        for i in 0..ncells {
            let iface = interface(l.ip, l.prefix_len, l.gateway, c.mtu, c.seed ^ (i as u64 + 1) << 17, now);
            cells.push(Cell::new(iface, c.sockets_per_cell, c.rx_buffer, c.tx_buffer, c.timeout));
        }
        let nslots = ncells * c.sockets_per_cell;
        let slot = Slot {
            generation: 0,
            state: SlotState::Idle,
            local_port: 0,
            app_open: false,
            close_requested: false,
            abort_requested: false,
            peer_closed: false,
        };
        // Only the first `connections` slots are ever used; connect low slots first.
        let idle = (0..c.connections as u32).rev().collect();
        Ok(ClientStack {
            io: CellIo::new(Link::new(l), c.mtu),
            target: c.target,
            cells,
            slots: vec![slot; nslots],
            idle,
            port_owner: vec![NO_SLOT; 65536],
            next_port: c.first_port.max(1),
            first_port: c.first_port.max(1),
            wanted: c.connections,
            busy: 0,
            scheduler: CellScheduler::new(ncells, c.max_cells_per_poll),
            counters: ClientCounters::default(),
            per_cell: c.sockets_per_cell,
            max_connects_per_poll: c.max_connects_per_poll.max(1),
            last_arp: None,
        })
    }

    pub fn counters(&self) -> &ClientCounters {
        &self.counters
    }

    /// Connection slots: every `ClientConn::index()` is below this.
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Connections in any state but idle (connecting, open, closing).
    pub fn busy(&self) -> usize {
        self.busy
    }

    /// Established connections.
    pub fn open(&self) -> u64 {
        self.counters.net.connections_open
    }

    /// Whether the target's next hop answered ARP.
    pub fn target_resolved(&self) -> bool {
        self.io.link.next_hop(*self.target.ip()).and_then(|hop| self.io.link.neighbors.lookup(hop)).is_some()
    }

    /// Stops reconnecting: idle slots stay idle from now on (connections that
    /// are open stay open until the application closes them).
    pub fn stop_connecting(&mut self) {
        self.wanted = 0;
    }

    /// Resets `conn` (RST to the server) at the next poll; `on_close` then
    /// reports [`CloseKind::Aborted`]. False if `conn` is stale.
    pub fn abort(&mut self, conn: ClientConn) -> bool {
        let Some(s) = self.slots.get_mut(conn.index()) else { return false };
        if s.generation != conn.generation || s.state != SlotState::Busy {
            return false;
        }
        s.abort_requested = true;
        let (cell, slot) = (conn.index() / self.per_cell, conn.index() % self.per_cell);
        self.cells[cell].socket(slot).abort();
        self.scheduler.activate(cell);
        true
    }

    /// Asks for `conn` to be serviced at the next poll (e.g. the
    /// application has output for it). False if `conn` is stale.
    pub fn wake(&mut self, conn: ClientConn) -> bool {
        let Some(s) = self.slots.get(conn.index()) else { return false };
        if s.generation != conn.generation || s.state != SlotState::Busy {
            return false;
        }
        self.scheduler.activate(conn.index() / self.per_cell);
        true
    }

    /// Handles one received Ethernet frame: ARP is answered or learned at
    /// once; TCP from the target is fed to its connection's cell.
    pub fn receive<S: FrameSink + ?Sized>(&mut self, now: Nanos, frame: &[u8], sink: &mut S) {
        let now = smol_instant(now);
        self.counters.net.rx_frames += 1;
        let classified = classify(frame);
        if classified.vlan_tagged {
            self.counters.net.drop_vlan += 1;
            return;
        }
        let Some(ethernet) = classified.ethernet else {
            // A runt.
            self.counters.net.drop_malformed += 1;
            return;
        };
        let (dst_mac, src_mac) = (ethernet.dst(), ethernet.src());
        let to_us = dst_mac == self.io.link.mac();
        match classified.frame {
            Frame::Malformed(_) => self.counters.net.drop_malformed += 1,
            Frame::Arp { arp } if to_us || dst_mac.is_broadcast() => {
                self.counters.net.rx_arp += 1;
                if let ArpOutcome::Reply { to_mac, to_ip } = self.io.link.handle_arp(arp, now) {
                    let link = &self.io.link;
                    if sink.frame(ETH_MIN_FRAME, &mut |f: &mut [u8]| {
                        link.write_arp_reply(f, to_mac, to_ip);
                        true
                    }) {
                        self.counters.net.arp_replies += 1;
                        self.counters.net.tx_frames += 1;
                    } else {
                        self.counters.net.tx_drop_no_buffer += 1;
                    }
                }
            }
            Frame::Ipv4Tcp(tcp) if to_us => self.tcp_input(now, tcp, src_mac, sink),
            _ if !to_us => self.counters.net.drop_wrong_mac += 1,
            _ => self.counters.rx_other += 1,
        }
    }

    fn tcp_input<S: FrameSink + ?Sized>(
        &mut self,
        now: Instant,
        tcp: TcpSegment<'_>,
        src_mac: EthernetAddress,
        sink: &mut S,
    ) {
        let ip = tcp.ip();
        if ip.dst() != self.io.link.ip() {
            self.counters.net.drop_wrong_ip += 1;
            return;
        }
        let src = ip.src();
        if src != *self.target.ip() || tcp.src_port() != self.target.port() {
            self.counters.rx_other += 1;
            return;
        }
        self.io.link.learn_from_ipv4(src_mac, src, now);
        let index = self.port_owner[usize::from(tcp.dst_port())];
        if index == NO_SLOT {
            // A late segment of a recycled connection; the server's own timers end it.
            self.counters.rx_no_conn += 1;
            return;
        }
        let cell_ix = index as usize / self.per_cell;
        self.counters.net.rx_tcp += 1;
        self.io.ingress(&mut self.cells[cell_ix], ip.packet(), now, sink, &mut self.counters.net);
        self.scheduler.activate(cell_ix);
    }

    /// The earliest time `poll` has work: now if cells are active or
    /// connections are missing, else the earliest smoltcp timer.
    pub fn poll_at(&self) -> Option<Nanos> {
        if self.busy < self.wanted && !self.idle.is_empty() {
            return Some(Nanos::ZERO);
        }
        self.scheduler.poll_at().map(nanos_of)
    }

    /// Starts missing connections, services the cells that got input, were
    /// woken or have a timer due (data and events to `app`, its output out
    /// through `sink`), and recycles finished connections. Returns the cells serviced.
    pub fn poll<A: ClientApp + ?Sized, S: FrameSink + ?Sized>(
        &mut self,
        now: Nanos,
        app: &mut A,
        sink: &mut S,
    ) -> usize {
        let app_now = now;
        let now = smol_instant(now);
        self.connect_missing(now, sink);
        let n = self.scheduler.begin_poll(now);
        while let Some(cell) = self.scheduler.next_cell() {
            self.service(now, app_now, cell, app, sink);
        }
        self.scheduler.end_poll();
        self.counters.net.cells_polled += n as u64;
        n
    }

    /// ARP for the target until it answers, then SYNs for missing connections.
    fn connect_missing<S: FrameSink + ?Sized>(&mut self, now: Instant, sink: &mut S) {
        if self.busy >= self.wanted || self.idle.is_empty() {
            return;
        }
        if !self.target_resolved() {
            let Some(hop) = self.io.link.next_hop(*self.target.ip()) else { return };
            if self.last_arp.is_some_and(|t| now < t + ARP_RETRY) {
                return;
            }
            self.last_arp = Some(now);
            let link = &self.io.link;
            if sink.frame(ETH_MIN_FRAME, &mut |f: &mut [u8]| {
                link.write_arp_request(f, hop);
                true
            }) {
                self.counters.net.arp_requests += 1;
                self.counters.net.tx_frames += 1;
            }
            return;
        }
        let remote = IpEndpoint::new((*self.target.ip()).into(), self.target.port());
        for _ in 0..self.max_connects_per_poll {
            if self.busy >= self.wanted {
                break;
            }
            let Some(index) = self.idle.pop() else { break };
            let Some(port) = self.take_port(index) else {
                self.idle.push(index);
                break;
            };
            let (cell_ix, slot) = (index as usize / self.per_cell, index as usize % self.per_cell);
            let cell = &mut self.cells[cell_ix];
            let handle = cell.handles[slot];
            let sock = cell.sockets.get_mut::<tcp::Socket>(handle);
            if sock.connect(cell.iface.context(), remote, port).is_err() {
                // Only an open socket or a bad address refuses; neither happens to an idle slot.
                self.port_owner[usize::from(port)] = NO_SLOT;
                self.idle.push(index);
                break;
            }
            let s = &mut self.slots[index as usize];
            s.state = SlotState::Busy;
            s.local_port = port;
            s.app_open = false;
            s.close_requested = false;
            s.abort_requested = false;
            s.peer_closed = false;
            self.busy += 1;
            self.counters.connects += 1;
            self.scheduler.activate(cell_ix);
        }
    }

    /// The next free local port (rotating), now owned by `index`.
    fn take_port(&mut self, index: u32) -> Option<u16> {
        let range = 65536 - u32::from(self.first_port);
        for _ in 0..range {
            let p = self.next_port;
            self.next_port = if p == u16::MAX { self.first_port } else { p + 1 };
            if self.port_owner[usize::from(p)] == NO_SLOT {
                self.port_owner[usize::from(p)] = index;
                return Some(p);
            }
        }
        None
    }

    fn service<A: ClientApp + ?Sized, S: FrameSink + ?Sized>(
        &mut self,
        now: Instant,
        app_now: Nanos,
        cell_ix: usize,
        app: &mut A,
        sink: &mut S,
    ) {
        let per_cell = self.per_cell;
        let base = cell_ix * per_cell;
        // 1. Application: events and data in, output out, closes.
        for slot in 0..per_cell {
            let index = base + slot;
            let s = &mut self.slots[index];
            if s.state != SlotState::Busy || s.abort_requested {
                continue;
            }
            let conn = ClientConn { index: index as u32, generation: s.generation };
            let sock = self.cells[cell_ix].socket(slot);
            if !s.app_open {
                if matches!(sock.state(), tcp::State::SynSent | tcp::State::SynReceived | tcp::State::Closed) {
                    continue;
                }
                app.on_open(conn, app_now);
                s.app_open = true;
                self.counters.net.connections_opened += 1;
                self.counters.net.connections_open += 1;
            }
            deliver_received(sock, |data| app.on_data(conn, data, app_now));
            // The server closed (FIN) and its last bytes are consumed: answer with our
            // FIN and send nothing more (an HTTP server that closed answers no new request).
            if peer_sent_fin(sock.state()) && !s.peer_closed && !sock.can_recv() {
                s.peer_closed = true;
                if !s.close_requested {
                    sock.close();
                }
            }
            if !s.peer_closed && sock.may_send() {
                app.poll_send(conn, app_now, &mut |bytes| sock.send_slice(bytes).unwrap_or(0));
            }
            if !s.close_requested && !s.peer_closed && app.wants_close(conn) {
                s.close_requested = true;
                sock.close();
            }
        }
        // 2. smoltcp egress.
        let cell = &mut self.cells[cell_ix];
        let blocked = self.io.egress(cell, now, sink, &mut self.counters.net);
        // 3. Recycle finished connections.
        for slot in 0..per_cell {
            let index = base + slot;
            let s = &mut self.slots[index];
            if s.state != SlotState::Busy {
                continue;
            }
            let done = match cell.socket(slot).state() {
                tcp::State::Closed => true,
                tcp::State::TimeWait => !blocked,
                _ => false,
            };
            if !done {
                continue;
            }
            let kind = if s.abort_requested {
                self.counters.aborted += 1;
                CloseKind::Aborted
            } else if !s.app_open {
                self.counters.connect_failed += 1;
                CloseKind::ConnectFailed
            } else if s.close_requested {
                self.counters.closed_by_us += 1;
                CloseKind::Closed
            } else if s.peer_closed {
                self.counters.closed_by_peer += 1;
                CloseKind::PeerClosed
            } else {
                self.counters.resets += 1;
                CloseKind::Reset
            };
            if s.app_open {
                self.counters.net.connections_closed += 1;
                self.counters.net.connections_open -= 1;
            }
            app.on_close(ClientConn { index: index as u32, generation: s.generation }, kind, app_now);
            cell.reset_socket(slot, s.local_port);
            self.port_owner[usize::from(s.local_port)] = NO_SLOT;
            s.state = SlotState::Idle;
            s.app_open = false;
            s.generation = s.generation.wrapping_add(1);
            self.idle.push(index as u32);
            self.busy -= 1;
        }
        // 4. Next deadline: again at the next poll if output is pending, else its timer.
        let next = cell.next_service(now, blocked);
        self.scheduler.schedule(cell_ix, now, next);
    }
}

#[cfg(test)]
mod tests;
