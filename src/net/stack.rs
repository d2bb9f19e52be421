//! The userspace TCP/IP stack of one worker, sans-IO: frames and time go in,
//! frames come out through a [`FrameSink`], connection events and bytes go
//! to a [`TcpApp`]. No DPDK type, no clock read, no allocation per packet.
//!
//! Per-packet work does not grow with the number of connections:
//! - [`Link`](super::l2::Link) answers ARP and ICMP echo and frames output;
//! - the [`FlowTable`] maps an established 4-tuple to its slot in O(1);
//! - sockets are sharded into cells of `sockets_per_cell` smoltcp sockets,
//!   so smoltcp's linear socket scans see one cell, never the whole worker;
//! - a SYN for a new 4-tuple takes the listener of the cell on top of the
//!   *accept stack* (cells with an armed listener), O(1);
//! - [`NetStack::poll`] services only cells that received input, were woken
//!   by the application, or have a smoltcp timer due (a min-heap of
//!   per-cell deadlines).
//!
//! Lifecycle of a slot: idle → listener → open (flow inserted, counted in
//! `connections_opened`) → recycled (flow removed, `connections_closed`,
//! socket back to CLOSED) → idle. Every open slot is recycled exactly once.
//!
//! TCP policy:
//! - a non-SYN segment without a flow, or a SYN to another port, gets an RST
//!   from a socket-less smoltcp interface (correct TCP, constant cost);
//! - half-open connections (SYN-RECEIVED) are bounded apart from
//!   established ones: at most `max_half_open` of the `max_connections`
//!   slots, each freed silently `syn_received_timeout_ms` after its SYN
//!   (counted `syn_half_open_expired`), and a SYN that finds the bound (or
//!   every slot) taken evicts the *oldest* half-open entry
//!   (`syn_half_open_evicted`). The half-open entries form a FIFO list
//!   threaded through the slots (O(1) insert, remove, evict; no allocation).
//!   So a burst of spoofed SYNs holds at most `max_half_open` slots, each
//!   for at most the lifetime, and a legitimate SYN always gets a slot: it
//!   completes its handshake unless `max_half_open` newer SYNs arrive
//!   within its round trip. Freed silently (no RST): the peer of a spoofed
//!   SYN does not exist, and an RST would be backscatter. Not built: SYN
//!   cookies (stateless above the bound; docs/syn-flood.md);
//! - a SYN that finds every slot established (or no free listener) is
//!   dropped silently and counted: no RST storm under a SYN flood, and the
//!   client's SYN retransmission retries later;
//! - after [`NetStack::stop_accepting`] (graceful shutdown) a SYN for a new
//!   4-tuple is refused with an RST and counted, like a closed port: the
//!   client fails over at once instead of retrying a server that is leaving.
//!   Established connections (and handshakes already in SYN-RECEIVED) go on;
//! - TIME-WAIT is cut short: a socket that reaches TIME-WAIT is recycled at
//!   the end of the poll that took it there (after its final ACK was sent),
//!   without an RST. A retransmitted FIN then finds no flow and is answered
//!   with RST, which closes a peer in LAST-ACK all the same. This keeps a
//!   server-closed connection from pinning a socket and its buffers for
//!   smoltcp's fixed 10 s; the peer (the active opener) keeps its own
//!   TIME-WAIT, which is what protects a reused 4-tuple;
//! - with `idle_timeout_ms`, smoltcp's keep-alive (every half timeout) and
//!   timeout abort a connection whose peer stopped answering.
//!
//! Memory: allocated in [`NetStack::new`] per connection slot ~550 bytes
//! (a bare smoltcp socket with 0-byte buffers, slot 24, flow-table share
//! ~40); per cell ~600 bytes (the `Interface`); slots = `max_connections`
//! rounded up to whole cells. Socket buffers (`rx_buffer + tx_buffer` per
//! connection) are not committed per slot: a [`SocketPool`] lends them from
//! a connection's SYN to its recycling, allocating lazily up to
//! `socket_buffer_budget` and reusing them after that (gauges
//! `socket_buffer_bytes_allocated` / `_in_use`). 10,000 connections with
//! 64 KiB rx + 8 KiB tx hold ~703 MiB of buffers; an idle stack, none. The
//! rx buffer bounds the TCP window a client can use, so size it to request
//! bodies × RTT.
//!
//! One worker iteration (the DPDK worker does the same with an RX burst and
//! a sink over its TX burst):
//!
//! ```
//! use metricsstream::net::{ConnId, L2Config, NetStack, NetStackConfig, Received, TcpApp};
//! use metricsstream::time::Nanos;
//! use smoltcp::wire::{EthernetAddress, Ipv4Address};
//! # struct Http;
//! # impl TcpApp for Http {
//! #     fn on_open(&mut self, _: ConnId, _: std::net::SocketAddrV4, _: Nanos) {}
//! #     fn on_data(&mut self, _: ConnId, data: &[u8], _: Nanos) -> usize { data.len() }
//! #     fn on_peer_closed(&mut self, _: ConnId, _: Nanos) {}
//! #     fn poll_send(&mut self, _: ConnId, _: Nanos, _: &mut dyn FnMut(&[u8]) -> usize) {}
//! #     fn wants_close(&mut self, _: ConnId) -> bool { false }
//! #     fn on_close(&mut self, _: ConnId, _: Nanos) {}
//! # }
//! let link = L2Config {
//!     mac: EthernetAddress([0x02, 0, 0, 0, 0, 1]),
//!     ip: Ipv4Address::new(10, 0, 0, 1),
//!     prefix_len: 24,
//!     gateway: Some(Ipv4Address::new(10, 0, 0, 254)),
//!     neighbor_capacity: 1024,
//! };
//! let mut config = NetStackConfig::new(link, 8080, 1024);
//! config.rx_buffer = 4096;
//! config.tx_buffer = 4096;
//! let mut stack = NetStack::new(config, Nanos::ZERO).unwrap();
//! let mut app = Http;
//! let mut tx: Vec<Vec<u8>> = Vec::new(); // any FrameSink
//! let rx_burst: Vec<Vec<u8>> = Vec::new();
//! let now = Nanos::from_millis(1);
//! for frame in &rx_burst {
//!     if let Received::Udp { payload, .. } = stack.receive(now, frame, &mut tx) {
//!         let _ = payload; // line protocol / StatsD parser
//!     }
//! }
//! stack.poll(now, &mut app, &mut tx);
//! // ... tx_burst(tx); publish *stack.counters() now and then.
//! ```

use super::cell::{
    deliver_received, interface, nanos_of, peer_sent_fin, smol_instant, Cell, CellIo, CellScheduler, ServerCell,
    SocketPool,
};
use super::classify::{classify, Frame, Malformed};
use super::flow::{FlowKey, FlowTable};
use super::frame_io::{FrameSink, NetCounters};
use super::l2::{is_echo_request, ArpOutcome, L2Config, Link, SharedNeighbors, ETH_HEADER_LEN, ETH_MIN_FRAME};
use super::wire::TcpSegment;
use crate::time::Nanos;
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{IpProtocol, Ipv4Address};
use std::net::SocketAddrV4;

/// A connection: its slot index (dense, `< NetStack::slots()`, for the
/// application's own slab) and the slot's generation (stale ids are ignored).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId {
    index: u32,
    generation: u32,
}

impl ConnId {
    /// The slot index, `< NetStack::slots()`; reused by later connections.
    #[inline]
    pub fn index(self) -> usize {
        self.index as usize
    }

    pub fn generation(self) -> u32 {
        self.generation
    }
}

/// The application on top of TCP (the HTTP server), driven by
/// [`NetStack::poll`]. For one connection the calls are: `on_open` once,
/// then any number of `on_data` / `poll_send` / `wants_close`, at most one
/// `on_peer_closed`, and `on_close` once. All calls for a connection happen
/// inside `poll`, in that order per service.
pub trait TcpApp {
    /// The handshake completed.
    fn on_open(&mut self, conn: ConnId, peer: SocketAddrV4, now: Nanos);

    /// Received bytes, in order (a call per contiguous chunk of the socket's
    /// receive buffer). Returns how many bytes were consumed: the rest stays
    /// in the socket (its window shrinks) and is offered again at the next
    /// service of the connection, e.g. after [`NetStack::wake`].
    fn on_data(&mut self, conn: ConnId, data: &[u8], now: Nanos) -> usize;

    /// The peer sent FIN: no more data will arrive. Output may still be sent.
    fn on_peer_closed(&mut self, conn: ConnId, now: Nanos);

    /// Offers room in the socket's send buffer: call `out` with bytes to send;
    /// it returns how many it took (0 when the buffer is full).
    fn poll_send(&mut self, conn: ConnId, now: Nanos, out: &mut dyn FnMut(&[u8]) -> usize);

    /// Whether to close our side now (FIN after everything already written).
    fn wants_close(&mut self, conn: ConnId) -> bool;

    /// The connection is gone (closed, reset or timed out); `conn` is dead.
    fn on_close(&mut self, conn: ConnId, now: Nanos);
}

/// Stack configuration.
#[derive(Clone, Copy, Debug)]
pub struct NetStackConfig {
    pub link: L2Config,
    /// The TCP port we accept connections on.
    pub listen_port: u16,
    /// Open connections at most; SYNs beyond are dropped and counted.
    pub max_connections: usize,
    /// TCP sockets per smoltcp cell (bounds smoltcp's per-packet scans).
    pub sockets_per_cell: usize,
    /// Per-socket receive buffer (bounds the advertised window).
    pub rx_buffer: usize,
    /// Per-socket send buffer.
    pub tx_buffer: usize,
    /// IP MTU.
    pub mtu: usize,
    /// Abort connections whose peer stops answering (keep-alive at half of it).
    pub idle_timeout_ms: Option<u64>,
    /// Cells serviced per `poll` at most; the rest wait for the next one.
    pub max_cells_per_poll: usize,
    /// Seed for the flow hash and smoltcp's initial sequence numbers.
    pub seed: u64,
    /// Half-open (SYN-RECEIVED) connections at most, within
    /// `max_connections`; a SYN beyond evicts the oldest. Clamped to
    /// `1..=max_connections`.
    pub max_half_open: usize,
    /// A half-open connection is freed this long after its SYN.
    pub syn_received_timeout_ms: u64,
    /// Socket buffer bytes (`rx_buffer + tx_buffer` per connection) the
    /// stack may allocate, lazily as connections open; a SYN that finds the
    /// budget spent evicts the oldest half-open entry or is dropped
    /// (`drop_syn_full`). Default: every slot (`usize::MAX`).
    pub socket_buffer_budget: usize,
}

impl NetStackConfig {
    /// Defaults for a worker: 16 sockets per cell, 16 KiB rx, 8 KiB tx, MTU
    /// 1500, 120 s idle timeout. (`benches/netstack.rs`: at 10,000 open
    /// connections a request in a cold cell costs ~3 µs with 8 sockets per
    /// cell and ~5 µs with 32; a busy cell amortises either to < 1 µs.)
    pub fn new(link: L2Config, listen_port: u16, max_connections: usize) -> NetStackConfig {
        NetStackConfig {
            link,
            listen_port,
            max_connections,
            sockets_per_cell: 16,
            rx_buffer: 16 * 1024,
            tx_buffer: 8 * 1024,
            mtu: 1500,
            idle_timeout_ms: Some(120_000),
            max_cells_per_poll: 256,
            seed: 0x5eed,
            max_half_open: NetStackConfig::default_max_half_open(max_connections),
            syn_received_timeout_ms: 3_000,
            socket_buffer_budget: usize::MAX,
        }
    }

    /// Every slot: half-open entries only ever take free slots (established
    /// ones are never evicted), so a flood cannot cost established capacity,
    /// and the larger the bound, the more newer SYNs a legitimate handshake
    /// survives (16,384: ~270 ms of a 60k SYN/s flood). A smaller bound
    /// evicts real handshakes of a legitimate burst of connects: a quarter
    /// of 16,384 made bench.sh's 10,000-connection run lose 5,167
    /// connections to resets.
    pub fn default_max_half_open(max_connections: usize) -> usize {
        max_connections.max(1)
    }

    /// Socket buffer bytes the stack allocates at most (under load; none at start).
    pub fn buffer_memory(&self) -> usize {
        self.buffered_sockets() * (self.rx_buffer + self.tx_buffer)
    }

    /// Connections that can hold buffers at once: the budget's worth, at most every slot.
    pub fn buffered_sockets(&self) -> usize {
        (self.socket_buffer_budget / (self.rx_buffer + self.tx_buffer).max(1)).min(self.cells() * self.sockets_per_cell)
    }

    fn cells(&self) -> usize {
        self.max_connections.div_ceil(self.sockets_per_cell.max(1))
    }
}

/// Invalid [`NetStackConfig`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NetStackError {
    #[error("sockets_per_cell must be 1..=65535, max_connections and listen_port non-zero")]
    BadSizes,
    #[error("buffers must hold at least one MTU-sized segment and the MTU must be 576..=9000")]
    BadBuffers,
    #[error("the socket buffer budget must hold at least one connection's rx_buffer + tx_buffer")]
    BadBudget,
}

/// What `receive` did with a frame (each frame counted in exactly one outcome).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received<'a> {
    /// ARP, ICMP echo or TCP handled by the stack.
    Consumed,
    /// A UDP datagram for us: the caller's to parse.
    Udp { src: Ipv4Address, src_port: u16, dst_port: u16, payload: &'a [u8] },
    /// Dropped (counted).
    Dropped(DropReason),
}

/// Why a received frame was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    Malformed(Malformed),
    /// 802.1Q/802.1ad tagged: this port is untagged.
    Vlan,
    /// Not to our MAC (nor a broadcast ARP).
    WrongMac,
    /// IPv4 not to our address.
    WrongIp,
    /// IPv6, other ethertypes, IP protocols, ICMP other than echo request, fragments, other ARP.
    Unsupported,
    /// A SYN that found every slot established, or no free listener.
    SynFull,
    /// smoltcp refused a SYN (bad checksum or options).
    SynRejected,
    /// A TCP RST without a flow (answered by nothing).
    RstNoFlow,
    /// The reply could not be queued (no TX buffer).
    NoTxBuffer,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotState {
    /// Idle or listening: no connection.
    Free,
    /// Owns a connection and its flow entry.
    Open,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    generation: u32,
    state: SlotState,
    /// `on_open` was called (so `on_close` is owed).
    app_open: bool,
    peer_fin_seen: bool,
    close_requested: bool,
    flow: FlowKey,
    /// On the half-open list (SYN-RECEIVED, handshake not completed).
    half_open: bool,
    /// When the SYN was accepted (half-open entries only).
    syn_at: Instant,
    /// Neighbours on the half-open list, oldest first ([`NONE`] at the ends).
    half_prev: u32,
    half_next: u32,
}

/// No slot (end of the half-open list).
const NONE: u32 = u32::MAX;

/// The half-open connections, oldest first: a doubly linked list threaded
/// through [`Slot::half_prev`] / [`Slot::half_next`].
#[derive(Clone, Copy, Debug)]
struct HalfOpen {
    head: u32,
    tail: u32,
    len: usize,
    max: usize,
    lifetime: Duration,
}

/// The sharded userspace TCP/IP stack of one worker. See the module docs.
pub struct NetStack {
    io: CellIo,
    flows: FlowTable,
    cells: Vec<ServerCell>,
    /// Socket-less cell that answers stray segments with RST.
    rst_cell: Cell,
    slots: Vec<Slot>,
    /// Cells with an armed listener; the top one takes the next SYN.
    accept: Vec<u32>,
    scheduler: CellScheduler,
    counters: NetCounters,
    per_cell: usize,
    port: u16,
    max_connections: usize,
    /// False after `stop_accepting`: new SYNs are refused.
    accepting: bool,
    half_open: HalfOpen,
    /// Socket buffers, lent to a slot from its SYN to its recycling.
    pool: SocketPool,
}

impl NetStack {
    /// Allocates every cell, socket and table (see the memory note above).
    pub fn new(config: NetStackConfig, now: Nanos) -> Result<NetStack, NetStackError> {
        let now = smol_instant(now);
        let c = config;
        if c.sockets_per_cell == 0 || c.sockets_per_cell > 65535 || c.max_connections == 0 || c.listen_port == 0 {
            return Err(NetStackError::BadSizes);
        }
        if !(576..=9000).contains(&c.mtu) || c.rx_buffer < c.mtu || c.tx_buffer < c.mtu {
            return Err(NetStackError::BadBuffers);
        }
        if c.buffered_sockets() == 0 {
            return Err(NetStackError::BadBudget);
        }
        let timeout = c.idle_timeout_ms.map(Duration::from_millis);
        let pool = SocketPool::new(c.buffered_sockets(), c.rx_buffer, c.tx_buffer, timeout);
        let ncells = c.cells();
        let l = c.link;
        let mut cells = Vec::with_capacity(ncells);
        for i in 0..ncells {
            let iface = interface(l.ip, l.prefix_len, l.gateway, c.mtu, c.seed ^ (i as u64 + 1) << 17, now);
            // Bare sockets: buffers come from `pool` when a SYN is accepted.
            cells.push(ServerCell::new(Cell::with_sockets(iface, c.sockets_per_cell, || pool.bare_socket())));
        }
        let mut accept = Vec::with_capacity(ncells);
        for (i, cell) in cells.iter_mut().enumerate().rev() {
            cell.arm_listener(c.listen_port);
            accept.push(i as u32);
        }
        let slot = Slot {
            generation: 0,
            state: SlotState::Free,
            app_open: false,
            peer_fin_seen: false,
            close_requested: false,
            flow: FlowKey::default(),
            half_open: false,
            syn_at: Instant::ZERO,
            half_prev: NONE,
            half_next: NONE,
        };
        Ok(NetStack {
            io: CellIo::new(Link::new(l), c.mtu),
            flows: FlowTable::new(c.max_connections, c.seed),
            rst_cell: Cell::socketless(interface(l.ip, l.prefix_len, l.gateway, c.mtu, c.seed, now)),
            slots: vec![slot; ncells * c.sockets_per_cell],
            accept,
            scheduler: CellScheduler::new(ncells, c.max_cells_per_poll),
            counters: NetCounters::default(),
            per_cell: c.sockets_per_cell,
            port: c.listen_port,
            max_connections: c.max_connections,
            accepting: true,
            half_open: HalfOpen {
                head: NONE,
                tail: NONE,
                len: 0,
                max: c.max_half_open.clamp(1, c.max_connections),
                lifetime: Duration::from_millis(c.syn_received_timeout_ms.max(1)),
            },
            pool,
            cells,
        })
    }

    /// Graceful shutdown: from now on a SYN for a new connection is answered
    /// with an RST and counted (`syn_refused_stopping`); open connections are
    /// served as before. Irreversible.
    pub fn stop_accepting(&mut self) {
        self.accepting = false;
    }

    /// Whether new connections are accepted (see [`NetStack::stop_accepting`]).
    pub fn is_accepting(&self) -> bool {
        self.accepting
    }

    /// Counters (copy them out to publish).
    pub fn counters(&self) -> &NetCounters {
        &self.counters
    }

    /// Connection slots: every `ConnId::index()` is below this.
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Entries in the flow table (= open connections).
    pub fn flows(&self) -> usize {
        self.flows.len()
    }

    /// Shares the neighbours ARP teaches this stack with every stack given
    /// the same table (one per port: see [`SharedNeighbors`]).
    pub fn share_neighbors(&mut self, shared: std::sync::Arc<SharedNeighbors>) {
        self.io.link.share_neighbors(shared);
    }

    /// The neighbour table (for inspection).
    pub fn link(&self) -> &Link {
        &self.io.link
    }

    /// Sockets that are neither listening nor owned by a connection, plus
    /// listeners: equals `slots()` when no connection is open.
    pub fn free_sockets(&mut self) -> usize {
        let port = self.port;
        let mut free = 0;
        for cell in &mut self.cells {
            free += cell.idle.len();
            if let Some(l) = cell.listener {
                let listening = cell.socket(l).is_listening() && cell.socket(l).listen_endpoint().port == port;
                free += usize::from(listening);
            }
        }
        free
    }

    /// Whether every open connection has had all our output and our FIN
    /// acknowledged (FIN-WAIT-2 or TIME-WAIT): nothing is left to deliver.
    /// Scans every slot: for a graceful shutdown, not per packet.
    pub fn quiescent(&mut self) -> bool {
        let per_cell = self.per_cell;
        for (index, slot) in self.slots.iter().enumerate() {
            if slot.state != SlotState::Open {
                continue;
            }
            let state = self.cells[index / per_cell].socket((index % per_cell) as u16).state();
            if !matches!(state, tcp::State::FinWait2 | tcp::State::TimeWait | tcp::State::Closed) {
                return false;
            }
        }
        true
    }

    /// Open connections by TCP state, e.g. `"ESTABLISHED=3 FIN-WAIT-2=1"`
    /// (for the shutdown message; scans every slot and allocates).
    pub fn open_connection_states(&mut self) -> String {
        let mut counts: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
        let per_cell = self.per_cell;
        for (index, slot) in self.slots.iter().enumerate() {
            if slot.state == SlotState::Open {
                let state = self.cells[index / per_cell].socket((index % per_cell) as u16).state();
                *counts.entry(state.to_string()).or_default() += 1;
            }
        }
        counts.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
    }

    /// The earliest smoltcp timer of any cell or half-open expiry, if any
    /// (an idle worker may sleep until then).
    pub fn poll_at(&self) -> Option<Nanos> {
        let expiry = self.oldest_half_open_expiry();
        match (self.scheduler.poll_at(), expiry) {
            (Some(a), Some(b)) => Some(nanos_of(a.min(b))),
            (a, b) => a.or(b).map(nanos_of),
        }
    }

    /// Publishes the pool's buffer bytes in the counters.
    fn sync_pool_counters(&mut self) {
        (self.counters.socket_buffer_bytes_allocated, self.counters.socket_buffer_bytes_in_use) = self.pool.bytes();
    }

    /// Half-open connections now (also `connections_half_open`).
    pub fn half_open(&self) -> usize {
        self.half_open.len
    }

    fn oldest_half_open_expiry(&self) -> Option<Instant> {
        let head = self.slots.get(self.half_open.head as usize)?;
        Some(head.syn_at + self.half_open.lifetime)
    }

    /// Appends slot `index` (its SYN accepted at `now`) to the half-open list.
    fn link_half_open(&mut self, index: usize, now: Instant) {
        let tail = self.half_open.tail;
        let s = &mut self.slots[index];
        debug_assert!(!s.half_open);
        s.half_open = true;
        s.syn_at = now;
        s.half_prev = tail;
        s.half_next = NONE;
        match self.slots.get_mut(tail as usize) {
            Some(t) => t.half_next = index as u32,
            None => self.half_open.head = index as u32,
        }
        self.half_open.tail = index as u32;
        self.half_open.len += 1;
        self.counters.connections_half_open = self.half_open.len as u64;
    }

    /// Takes slot `index` off the half-open list, if it is on it.
    fn unlink_half_open(&mut self, index: usize) -> bool {
        let s = &mut self.slots[index];
        if !s.half_open {
            return false;
        }
        s.half_open = false;
        let (prev, next) = (s.half_prev, s.half_next);
        (s.half_prev, s.half_next) = (NONE, NONE);
        match self.slots.get_mut(prev as usize) {
            Some(p) => p.half_next = next,
            None => self.half_open.head = next,
        }
        match self.slots.get_mut(next as usize) {
            Some(n) => n.half_prev = prev,
            None => self.half_open.tail = prev,
        }
        self.half_open.len -= 1;
        self.counters.connections_half_open = self.half_open.len as u64;
        true
    }

    /// Frees the half-open entries whose lifetime has run out at `now`.
    fn expire_half_open(&mut self, now: Instant) {
        while self.oldest_half_open_expiry().is_some_and(|t| t <= now) {
            self.release_slot(self.half_open.head as usize);
            self.counters.syn_half_open_expired += 1;
        }
    }

    /// Frees the oldest half-open entry, if any.
    fn evict_oldest_half_open(&mut self) {
        if let Some(index) = (self.half_open.head != NONE).then_some(self.half_open.head as usize) {
            self.release_slot(index);
            self.counters.syn_half_open_evicted += 1;
        }
    }

    /// Returns an open slot to idle: flow removed, socket reset to CLOSED
    /// without sending anything, a listener re-armed in its cell if it had
    /// none. The caller has called `on_close` if the app knew the
    /// connection. Returns whether the slot was half-open.
    fn release_slot(&mut self, index: usize) -> bool {
        let (cell_ix, slot) = (index / self.per_cell, (index % self.per_cell) as u16);
        let was_half_open = self.unlink_half_open(index);
        let s = &mut self.slots[index];
        debug_assert_eq!(s.state, SlotState::Open);
        self.flows.remove(&s.flow);
        s.state = SlotState::Free;
        s.app_open = false;
        s.generation = s.generation.wrapping_add(1);
        let cell = &mut self.cells[cell_ix];
        cell.recycle(slot, self.port, &mut self.pool);
        if cell.listener.is_none() && cell.arm_listener(self.port) {
            self.accept.push(cell_ix as u32);
        }
        self.sync_pool_counters();
        self.counters.connections_closed += 1;
        self.counters.connections_open -= 1;
        was_half_open
    }

    /// Handles one received Ethernet frame. ARP and ICMP echo are answered
    /// at once through `sink`; TCP is fed to its cell (whose replies wait for
    /// `poll`, except RSTs for stray segments); UDP is handed back.
    pub fn receive<'f, S: FrameSink + ?Sized>(&mut self, now: Nanos, frame: &'f [u8], sink: &mut S) -> Received<'f> {
        self.counters.rx_frames += 1;
        let outcome = self.receive_inner(smol_instant(now), frame, sink);
        let c = &mut self.counters;
        match outcome {
            Received::Consumed | Received::Udp { .. } => {}
            Received::Dropped(reason) => match reason {
                DropReason::Malformed(_) => c.drop_malformed += 1,
                DropReason::Vlan => c.drop_vlan += 1,
                DropReason::WrongMac => c.drop_wrong_mac += 1,
                DropReason::WrongIp => c.drop_wrong_ip += 1,
                DropReason::Unsupported => c.drop_unsupported += 1,
                DropReason::SynFull => c.drop_syn_full += 1,
                DropReason::SynRejected => c.drop_syn_rejected += 1,
                DropReason::RstNoFlow => c.drop_rst_no_flow += 1,
                DropReason::NoTxBuffer => c.drop_no_tx_buffer += 1,
            },
        }
        outcome
    }

    fn receive_inner<'f, S: FrameSink + ?Sized>(
        &mut self,
        now: Instant,
        frame: &'f [u8],
        sink: &mut S,
    ) -> Received<'f> {
        let classified = classify(frame);
        if let Frame::Malformed(m) = classified.frame {
            return Received::Dropped(DropReason::Malformed(m));
        }
        if classified.vlan_tagged {
            return Received::Dropped(DropReason::Vlan);
        }
        // Only a runt has no Ethernet header, and it is Malformed above.
        let Some(ethernet) = classified.ethernet else {
            return Received::Dropped(DropReason::Malformed(Malformed::Runt));
        };
        let (dst_mac, src_mac) = (ethernet.dst(), ethernet.src());
        let to_us = dst_mac == self.io.link.mac();
        if let Frame::Arp { arp } = classified.frame {
            if !to_us && !dst_mac.is_broadcast() {
                return Received::Dropped(DropReason::WrongMac);
            }
            return match self.io.link.handle_arp(arp, now) {
                ArpOutcome::Reply { to_mac, to_ip } => {
                    let link = &self.io.link;
                    let sent = sink.frame(ETH_MIN_FRAME, &mut |f: &mut [u8]| {
                        link.write_arp_reply(f, to_mac, to_ip);
                        true
                    });
                    if !sent {
                        return Received::Dropped(DropReason::NoTxBuffer);
                    }
                    self.counters.arp_replies += 1;
                    self.counters.tx_frames += 1;
                    self.counters.rx_arp += 1;
                    Received::Consumed
                }
                ArpOutcome::Consumed => {
                    self.counters.rx_arp += 1;
                    Received::Consumed
                }
                ArpOutcome::Unsupported => Received::Dropped(DropReason::Unsupported),
            };
        }
        if !to_us {
            return Received::Dropped(DropReason::WrongMac);
        }
        let ip = match classified.frame {
            Frame::Ipv4Tcp(tcp) => tcp.ip(),
            Frame::Ipv4Other(ip) => ip,
            Frame::Ipv4Udp { src, dst, src_port, dst_port, payload } => {
                if dst != self.io.link.ip() {
                    return Received::Dropped(DropReason::WrongIp);
                }
                self.io.link.learn_from_ipv4(src_mac, src, now);
                self.counters.rx_udp += 1;
                return Received::Udp { src, src_port, dst_port, payload };
            }
            _ => return Received::Dropped(DropReason::Unsupported),
        };
        if ip.dst() != self.io.link.ip() {
            return Received::Dropped(DropReason::WrongIp);
        }
        self.io.link.learn_from_ipv4(src_mac, ip.src(), now);
        match classified.frame {
            Frame::Ipv4Tcp(tcp) => self.tcp_input(now, tcp, sink),
            Frame::Ipv4Other(ip) if ip.protocol() == IpProtocol::Icmp && is_echo_request(ip.packet()) => {
                let ip = ip.packet();
                let link = &self.io.link;
                let sent =
                    sink.frame(ETH_HEADER_LEN + ip.len(), &mut |f: &mut [u8]| link.write_echo_reply(ip, src_mac, f));
                if !sent {
                    return Received::Dropped(DropReason::NoTxBuffer);
                }
                self.counters.icmp_echo_replies += 1;
                self.counters.tx_frames += 1;
                self.counters.rx_icmp_echo += 1;
                Received::Consumed
            }
            _ => Received::Dropped(DropReason::Unsupported),
        }
    }

    fn tcp_input<S: FrameSink + ?Sized>(
        &mut self,
        now: Instant,
        tcp: TcpSegment<'_>,
        sink: &mut S,
    ) -> Received<'static> {
        let (src, src_port, dst_port) = (tcp.ip().src(), tcp.src_port(), tcp.dst_port());
        let key = FlowKey::new(src, src_port, tcp.ip().dst(), dst_port);
        let flags = tcp.flags();
        let is_syn = flags.is_connection_request();
        // What smoltcp is fed: the whole IP packet.
        let ip = tcp.ip().packet();
        if let Some(index) = self.flows.lookup(&key) {
            let cell = index as usize / self.per_cell;
            // A segment without ACK (a retransmitted SYN, or the bare RST a
            // kernel sends for data reaching a closed socket) matches the
            // cell's listener too, and smoltcp gives it to whichever socket it
            // scans first: the listener would swallow the RST and leave the
            // connection open. Park the listener while the segment is fed.
            let parked = if !flags.ack() { self.cells[cell].listener } else { None };
            if let Some(l) = parked {
                self.cells[cell].socket(l).close();
            }
            self.feed(now, cell, ip, sink);
            if let Some(l) = parked {
                let relisten = self.cells[cell].socket(l).listen(self.port);
                debug_assert!(relisten.is_ok());
            }
            // An RST in SYN-RECEIVED puts the socket back in LISTEN: close it
            // at once so the cell's own listener stays the only one.
            let slot = (index as usize % self.per_cell) as u16;
            let sock = self.cells[cell].socket(slot);
            let state = sock.state();
            if state == tcp::State::Listen {
                sock.close();
            }
            // The client proved it receives (its ACK of our SYN-ACK): no
            // longer half-open. (Closed/Listen ones are freed at the service.)
            if !matches!(state, tcp::State::SynReceived | tcp::State::Listen | tcp::State::Closed)
                && self.unlink_half_open(index as usize)
            {
                self.counters.syn_half_open_completed += 1;
            }
            self.scheduler.activate(cell);
            self.counters.rx_tcp += 1;
            return Received::Consumed;
        }
        if !is_syn || dst_port != self.port {
            if flags.rst() {
                return Received::Dropped(DropReason::RstNoFlow);
            }
            if is_syn {
                self.counters.syn_closed_port += 1;
            } else {
                self.counters.tcp_no_flow += 1;
            }
            self.feed_rst(now, ip, sink);
            self.counters.rx_tcp += 1;
            return Received::Consumed;
        }
        if !self.accepting {
            // The socket-less interface answers a SYN with RST, as for a closed port.
            self.counters.syn_refused_stopping += 1;
            self.feed_rst(now, ip, sink);
            self.counters.rx_tcp += 1;
            return Received::Consumed;
        }
        // Half-open entries past their lifetime go first; then a SYN that
        // finds the half-open bound, or every slot, taken evicts the oldest
        // half-open entry. It evicts before smoltcp checks the SYN: an
        // invalid SYN costs an attacker no more than a valid spoofed one.
        self.expire_half_open(now);
        // A spent buffer budget counts as every slot taken.
        if self.half_open.len >= self.half_open.max
            || self.counters.connections_open as usize >= self.max_connections
            || !self.pool.available()
        {
            self.evict_oldest_half_open();
        }
        if self.counters.connections_open as usize >= self.max_connections {
            return Received::Dropped(DropReason::SynFull);
        }
        let Some(&cell_id) = self.accept.last() else { return Received::Dropped(DropReason::SynFull) };
        let cell_ix = cell_id as usize;
        let Some(slot) = self.cells[cell_ix].listener else {
            debug_assert!(false, "cells on the accept stack have a listener");
            return Received::Dropped(DropReason::SynFull);
        };
        let index = cell_ix * self.per_cell + usize::from(slot);
        // The listener takes buffers for this SYN (it keeps them if smoltcp rejects the SYN).
        let listener = self.cells[cell_ix].socket(slot);
        if !SocketPool::is_buffered(listener) {
            if !self.pool.attach(listener, self.port) {
                // Budget spent and no half-open entry to evict: every buffer is in an established connection.
                return Received::Dropped(DropReason::SynFull);
            }
            self.sync_pool_counters();
        }
        self.feed(now, cell_ix, ip, sink);
        let cell = &mut self.cells[cell_ix];
        let sock = cell.socket(slot);
        let peer = smoltcp::wire::IpEndpoint::new(src.into(), src_port);
        if sock.state() != tcp::State::SynReceived || sock.remote_endpoint() != Some(peer) {
            // smoltcp dropped it (bad checksum, bad options): the listener stays.
            return Received::Dropped(DropReason::SynRejected);
        }
        if self.flows.insert(key, index as u32).is_err() {
            // Cannot happen (the table holds max_connections), but never leak a socket.
            cell.socket(slot).abort();
            cell.listener = None;
            cell.recycle(slot, self.port, &mut self.pool);
            cell.arm_listener(self.port);
            self.sync_pool_counters();
            return Received::Dropped(DropReason::SynFull);
        }
        cell.listener = None;
        if !cell.arm_listener(self.port) {
            self.accept.pop();
        }
        let s = &mut self.slots[index];
        s.state = SlotState::Open;
        s.flow = key;
        s.app_open = false;
        s.peer_fin_seen = false;
        s.close_requested = false;
        self.link_half_open(index, now);
        self.counters.syn_accepted += 1;
        self.counters.connections_opened += 1;
        self.counters.connections_open += 1;
        self.counters.rx_tcp += 1;
        self.scheduler.activate(cell_ix);
        Received::Consumed
    }

    /// Runs smoltcp's ingress for one IP packet in cell `cell`.
    fn feed<S: FrameSink + ?Sized>(&mut self, now: Instant, cell: usize, ip: &[u8], sink: &mut S) {
        self.io.ingress(&mut self.cells[cell].cell, ip, now, sink, &mut self.counters);
        self.flush_arp(now, sink);
    }

    /// Lets the socket-less cell answer a stray segment with RST.
    fn feed_rst<S: FrameSink + ?Sized>(&mut self, now: Instant, ip: &[u8], sink: &mut S) {
        self.io.ingress(&mut self.rst_cell, ip, now, sink, &mut self.counters);
        self.flush_arp(now, sink);
    }

    /// Sends the ARP requests `Link` asked for while framing.
    fn flush_arp<S: FrameSink + ?Sized>(&mut self, _now: Instant, sink: &mut S) {
        while let Some(ip) = self.io.link.take_pending_arp() {
            let link = &self.io.link;
            if sink.frame(ETH_MIN_FRAME, &mut |f: &mut [u8]| {
                link.write_arp_request(f, ip);
                true
            }) {
                self.counters.arp_requests += 1;
                self.counters.tx_frames += 1;
            } else {
                self.counters.tx_drop_no_buffer += 1;
            }
        }
    }

    /// Asks for `conn` to be serviced at the next `poll` even without input
    /// (e.g. a held response became ready). False if `conn` is stale.
    pub fn wake(&mut self, conn: ConnId) -> bool {
        let Some(s) = self.slots.get(conn.index()) else { return false };
        if s.generation != conn.generation || s.state != SlotState::Open {
            return false;
        }
        self.scheduler.activate(conn.index() / self.per_cell);
        true
    }

    /// Services the cells that got input, were woken, or have a timer due:
    /// delivers data and events to `app`, takes its output, sends through
    /// `sink`, recycles finished connections. At most `max_cells_per_poll`
    /// cells; returns how many were serviced.
    pub fn poll<A: TcpApp + ?Sized, S: FrameSink + ?Sized>(&mut self, now: Nanos, app: &mut A, sink: &mut S) -> usize {
        let app_now = now;
        let now = smol_instant(now);
        self.expire_half_open(now);
        let n = self.scheduler.begin_poll(now);
        while let Some(cell) = self.scheduler.next_cell() {
            self.service(now, app_now, cell, app, sink);
        }
        self.scheduler.end_poll();
        self.counters.cells_polled += n as u64;
        n
    }

    fn service<A: TcpApp + ?Sized, S: FrameSink + ?Sized>(
        &mut self,
        now: Instant,
        app_now: Nanos,
        cell_ix: usize,
        app: &mut A,
        sink: &mut S,
    ) {
        let per_cell = self.per_cell;
        let base = cell_ix * per_cell;
        // 1. Application: data in, output out, closes.
        for slot in 0..per_cell {
            let index = base + slot;
            let s = &mut self.slots[index];
            if s.state != SlotState::Open {
                continue;
            }
            let conn = ConnId { index: index as u32, generation: s.generation };
            let sock = self.cells[cell_ix].socket(slot as u16);
            if !s.app_open {
                if matches!(sock.state(), tcp::State::SynReceived | tcp::State::Closed | tcp::State::Listen) {
                    continue;
                }
                let peer = SocketAddrV4::new(Ipv4Address::from_bits(s.flow.src_ip), s.flow.src_port);
                app.on_open(conn, peer, app_now);
                s.app_open = true;
                // Only an inbound ACK completes a handshake, and tcp_input took it off the list then.
                debug_assert!(!s.half_open, "an established connection on the half-open list");
            }
            deliver_received(sock, |data| app.on_data(conn, data, app_now));
            if !s.peer_fin_seen && peer_sent_fin(sock.state()) && !sock.can_recv() {
                s.peer_fin_seen = true;
                app.on_peer_closed(conn, app_now);
            }
            if sock.may_send() {
                app.poll_send(conn, app_now, &mut |bytes| sock.send_slice(bytes).unwrap_or(0));
            }
            if !s.close_requested && app.wants_close(conn) {
                s.close_requested = true;
                sock.close();
            }
        }
        // 2. smoltcp egress.
        let blocked = self.io.egress(&mut self.cells[cell_ix].cell, now, sink, &mut self.counters);
        self.flush_arp(now, sink);
        // 3. Recycle finished connections.
        for slot in 0..per_cell {
            let index = base + slot;
            let s = self.slots[index];
            if s.state != SlotState::Open {
                continue;
            }
            let done = match self.cells[cell_ix].socket(slot as u16).state() {
                tcp::State::Closed | tcp::State::Listen => true,
                tcp::State::TimeWait => !blocked,
                _ => false,
            };
            if !done {
                continue;
            }
            if s.app_open {
                app.on_close(ConnId { index: index as u32, generation: s.generation }, app_now);
            }
            if self.release_slot(index) {
                // Reset by the peer or timed out by smoltcp in SYN-RECEIVED.
                self.counters.syn_half_open_reset += 1;
            }
        }
        // 4. Next deadline: again at the next poll if output is pending, else its timer.
        let next = self.cells[cell_ix].cell.next_service(now, blocked);
        self.scheduler.schedule(cell_ix, now, next);
    }
}
