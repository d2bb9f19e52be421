//! The stack cell and what both TCP stacks (server and client) build on it:
//! a [`Cell`] is a smoltcp `Interface` (`Medium::Ip`) with a small, fixed set
//! of TCP sockets; [`CellIo`] and [`CellDevice`] are the `phy::Device` that
//! feeds it one packet at a time and frames what it sends; [`CellScheduler`]
//! decides which cells a poll services. smoltcp's per-packet socket scan is
//! bounded by the cell size, not by the number of connections of the worker.
//!
//! A server cell ([`ServerCell`]) holds at most one socket in LISTEN at a
//! time (its *listener*), so a SYN handed to the cell is taken by exactly
//! that socket and the stack knows the connection's slot without searching.
//! The other free sockets are idle (CLOSED, no tuple) until the listener is
//! taken and the next one is armed.

use super::frame_io::{FrameSink, NetCounters};
use super::l2::{FrameError, Link, ETH_HEADER_LEN};
use crate::time::Nanos;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Checksum, ChecksumCapabilities, Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{HardwareAddress, IpCidr, Ipv4Address};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// The process's [`Nanos`] as smoltcp's microsecond `Instant`: the one place
/// the two meet (nothing outside `net/` sees smoltcp's time).
pub(super) fn smol_instant(now: Nanos) -> Instant {
    Instant::from_micros(i64::try_from(now.as_micros()).unwrap_or(i64::MAX))
}

/// smoltcp's `Instant` (a timer it reports) back as [`Nanos`].
pub(super) fn nanos_of(at: Instant) -> Nanos {
    Nanos::from_micros(u64::try_from(at.total_micros()).unwrap_or(0))
}

/// Device capabilities of every cell: IP medium, our MTU, IPv4 header
/// checksums already verified by `classify` on receive.
fn capabilities(mtu: usize) -> DeviceCapabilities {
    let mut caps = DeviceCapabilities::default();
    caps.medium = Medium::Ip;
    caps.max_transmission_unit = mtu;
    caps.max_burst_size = None;
    let mut checksum = ChecksumCapabilities::default();
    checksum.ipv4 = Checksum::Tx;
    caps.checksum = checksum;
    caps
}

/// Builds an `Interface` for a cell (only `capabilities` is consulted).
pub(crate) fn interface(
    ip: Ipv4Address,
    prefix_len: u8,
    gateway: Option<Ipv4Address>,
    mtu: usize,
    seed: u64,
    now: Instant,
) -> Interface {
    struct CapsOnly(usize);
    impl Device for CapsOnly {
        type RxToken<'a> = SliceRx<'a>;
        type TxToken<'a> = SliceRx<'a>;
        fn receive(&mut self, _: Instant) -> Option<(SliceRx<'_>, SliceRx<'_>)> {
            None
        }
        fn transmit(&mut self, _: Instant) -> Option<SliceRx<'_>> {
            None
        }
        fn capabilities(&self) -> DeviceCapabilities {
            capabilities(self.0)
        }
    }
    let mut config = Config::new(HardwareAddress::Ip);
    config.random_seed = seed;
    let mut iface = Interface::new(config, &mut CapsOnly(mtu), now);
    iface.update_ip_addrs(|addrs| {
        // Capacity is IFACE_MAX_ADDR_COUNT (>= 1); the list is empty here.
        let _ = addrs.push(IpCidr::new(ip.into(), prefix_len));
    });
    // smoltcp needs a route to consider an off-link peer reachable; with
    // Medium::Ip the route's address is not used, our `Link` picks the next hop.
    let _ = iface.routes_mut().add_default_ipv4_route(gateway.unwrap_or(ip));
    iface
}

/// A cell: a smoltcp interface and its TCP sockets, addressed by slot.
/// Both stacks shard their connections into cells; what a slot means is the
/// stack's business (the server's accept state is in [`ServerCell`]).
pub(crate) struct Cell {
    pub iface: Interface,
    pub sockets: SocketSet<'static>,
    /// Socket handle of each slot.
    pub handles: Vec<SocketHandle>,
}

impl Cell {
    /// A cell of `sockets` CLOSED sockets, each with its own buffers.
    pub fn new(
        iface: Interface,
        sockets: usize,
        rx_buffer: usize,
        tx_buffer: usize,
        timeout: Option<smoltcp::time::Duration>,
    ) -> Cell {
        Cell::with_sockets(iface, sockets, || new_socket(rx_buffer, tx_buffer, timeout))
    }

    /// A cell of `sockets` CLOSED sockets made by `make`.
    pub fn with_sockets(iface: Interface, sockets: usize, mut make: impl FnMut() -> tcp::Socket<'static>) -> Cell {
        let mut set = SocketSet::new(Vec::with_capacity(sockets));
        let mut handles = Vec::with_capacity(sockets);
        for _ in 0..sockets {
            handles.push(set.add(make()));
        }
        Cell { iface, sockets: set, handles }
    }

    /// A cell without sockets: its interface answers every TCP segment with RST.
    pub fn socketless(iface: Interface) -> Cell {
        Cell { iface, sockets: SocketSet::new(Vec::new()), handles: Vec::new() }
    }

    pub fn socket(&mut self, slot: usize) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(self.handles[slot])
    }

    /// Returns a socket in any state (a finished connection, or a half-open
    /// one evicted or expired) to CLOSED with no tuple, without sending anything.
    pub fn reset_socket(&mut self, slot: usize, port: u16) {
        let s = self.socket(slot);
        // abort() moves any state to CLOSED (an RST would only go out at the
        // next dispatch, which never comes: listen() clears the tuple first);
        // listen() resets a CLOSED socket silently; close() on LISTEN goes to
        // CLOSED without a tuple. Without the abort, listen() fails on an
        // open socket (SYN-RECEIVED) and close() would send it a FIN.
        s.abort();
        let _ = s.listen(port);
        s.close();
        debug_assert_eq!(s.state(), tcp::State::Closed);
    }

    /// When the cell wants servicing again after a service: at once if the
    /// sink refused output (`blocked`: smoltcp kept it), else at smoltcp's timer.
    pub fn next_service(&mut self, now: Instant, blocked: bool) -> Option<Instant> {
        self.iface.poll_at(now, &self.sockets).map(|t| if blocked { now } else { t })
    }
}

/// A CLOSED TCP socket with `rx`/`tx` bytes of buffers (0 for a bare one)
/// and the options every connection gets.
fn new_socket(rx: usize, tx: usize, timeout: Option<smoltcp::time::Duration>) -> tcp::Socket<'static> {
    socket_with(tcp::SocketBuffer::new(vec![0; rx]), tcp::SocketBuffer::new(vec![0; tx]), timeout)
}

fn socket_with(
    rx: tcp::SocketBuffer<'static>,
    tx: tcp::SocketBuffer<'static>,
    timeout: Option<smoltcp::time::Duration>,
) -> tcp::Socket<'static> {
    let mut s = tcp::Socket::new(rx, tx);
    // Requests and responses are written whole; do not hold the tail back for an ACK.
    s.set_nagle_enabled(false);
    s.set_timeout(timeout);
    s.set_keep_alive(timeout.map(|t| t / 2));
    s
}

/// Sockets' buffers per slab of the [`SocketPool`] (64 × (64 + 8) KiB = 4.5 MiB
/// with the appliance's defaults; well above glibc's 128 KiB mmap threshold).
const SLAB_SOCKETS: usize = 64;

/// The server stack's socket buffers, lent to a slot for one connection.
///
/// smoltcp 0.12 cannot swap a socket's `SocketBuffer`s after `Socket::new`
/// (and gives them back only by dropping the socket), so the unit lent is a
/// whole CLOSED socket *with* its buffers: when a SYN is accepted, the
/// listener slot's bare socket (0-byte buffers, ~500 bytes) is swapped out
/// for a buffered one, and when the slot is recycled the buffered socket
/// (reset to CLOSED) is swapped back into the pool. Buffered sockets are
/// allocated lazily, at most `max` of them (the configured budget), and
/// never freed: growth stops at the budget and a recycled socket is reused,
/// so steady state allocates nothing. The buffers are cut from slabs of
/// [`SLAB_SOCKETS`] sockets' worth, leaked on purpose (the pool lives as long
/// as the worker and never gives memory back): one allocation per slab, and a
/// slab is large enough for the allocator to map it fresh from the kernel, so
/// its pages are committed only when a connection first writes to them. A
/// spoofed SYN's half-open socket then costs no resident memory, and a flood
/// that allocates the whole budget does not stall the worker on page faults.
/// Swapping whole sockets also keeps
/// smoltcp's window scale, computed from the rx capacity in `Socket::new`,
/// right.
pub(crate) struct SocketPool {
    /// The unused rest of the newest slab.
    slab: &'static mut [u8],
    /// CLOSED sockets with buffers, ready to lend.
    buffered: Vec<tcp::Socket<'static>>,
    /// CLOSED bare sockets that lent buffered ones displaced (one per socket in use).
    bare: Vec<tcp::Socket<'static>>,
    rx: usize,
    tx: usize,
    timeout: Option<smoltcp::time::Duration>,
    /// Buffered sockets that exist (lent or free).
    allocated: usize,
    /// Buffered sockets lent to slots.
    in_use: usize,
    /// Buffered sockets at most (the budget).
    max: usize,
}

impl SocketPool {
    /// A pool of at most `max` buffered sockets of `rx + tx` bytes; none allocated yet.
    pub fn new(max: usize, rx: usize, tx: usize, timeout: Option<smoltcp::time::Duration>) -> SocketPool {
        SocketPool {
            slab: &mut [],
            buffered: Vec::with_capacity(max),
            bare: Vec::with_capacity(max),
            rx,
            tx,
            timeout,
            allocated: 0,
            in_use: 0,
            max,
        }
    }

    /// A bare socket (0-byte buffers) for a slot without a connection.
    pub fn bare_socket(&self) -> tcp::Socket<'static> {
        new_socket(0, 0, self.timeout)
    }

    /// Whether a buffered socket can be lent now (a free one, or room to allocate).
    pub fn available(&self) -> bool {
        !self.buffered.is_empty() || self.allocated < self.max
    }

    /// Buffer bytes allocated and lent out: (allocated, in_use).
    pub fn bytes(&self) -> (u64, u64) {
        let per = (self.rx + self.tx) as u64;
        (self.allocated as u64 * per, self.in_use as u64 * per)
    }

    /// Whether `sock` holds buffers from this pool.
    pub fn is_buffered(sock: &tcp::Socket<'_>) -> bool {
        sock.recv_capacity() > 0
    }

    /// Gives the listener `sock` (a bare socket in LISTEN on `port`) buffers:
    /// swaps in a buffered socket, listening on `port`. False if the budget
    /// is spent and none is free (`sock` is left as it was).
    pub fn attach(&mut self, sock: &mut tcp::Socket<'static>, port: u16) -> bool {
        debug_assert!(!Self::is_buffered(sock));
        let mut lent = match self.buffered.pop() {
            Some(s) => s,
            None if self.allocated < self.max => self.new_buffered(),
            None => return false,
        };
        let listening = lent.listen(port).is_ok();
        debug_assert!(listening, "pooled sockets are CLOSED");
        std::mem::swap(sock, &mut lent);
        // `lent` is now the bare listener: back to CLOSED (close() on LISTEN sends nothing).
        lent.close();
        self.bare.push(lent);
        self.in_use += 1;
        true
    }

    /// A new buffered socket, cut from the slab (a new slab if it is used up).
    fn new_buffered(&mut self) -> tcp::Socket<'static> {
        let per = self.rx + self.tx;
        if self.slab.len() < per {
            let sockets = SLAB_SOCKETS.min(self.max - self.allocated);
            self.slab = Vec::leak(vec![0u8; sockets * per]);
        }
        self.allocated += 1;
        let (rx, rest) = std::mem::take(&mut self.slab).split_at_mut(self.rx);
        let (tx, rest) = rest.split_at_mut(self.tx);
        self.slab = rest;
        socket_with(tcp::SocketBuffer::new(rx), tcp::SocketBuffer::new(tx), self.timeout)
    }

    /// Takes the buffers back from `sock` (CLOSED, no tuple), leaving a bare
    /// CLOSED socket in its place. Nothing happens to a bare socket.
    pub fn detach(&mut self, sock: &mut tcp::Socket<'static>) {
        if !Self::is_buffered(sock) {
            return;
        }
        debug_assert_eq!(sock.state(), tcp::State::Closed);
        let Some(mut bare) = self.bare.pop() else {
            debug_assert!(false, "one bare socket per lent one");
            return;
        };
        std::mem::swap(sock, &mut bare);
        self.buffered.push(bare);
        self.in_use -= 1;
    }
}

/// A cell of the server stack: at most one socket listens (the *listener*),
/// the other free sockets are idle (see the module docs).
pub(crate) struct ServerCell {
    pub cell: Cell,
    /// The slot in LISTEN, if any.
    pub listener: Option<u16>,
    /// Slots that are CLOSED and free (a stack; capacity = sockets per cell).
    pub idle: Vec<u16>,
}

impl ServerCell {
    pub fn new(cell: Cell) -> ServerCell {
        let idle = (0..cell.handles.len() as u16).rev().collect();
        ServerCell { cell, listener: None, idle }
    }

    pub fn socket(&mut self, slot: u16) -> &mut tcp::Socket<'static> {
        self.cell.socket(usize::from(slot))
    }

    /// Puts an idle socket in LISTEN on `port`; false if none is idle.
    pub fn arm_listener(&mut self, port: u16) -> bool {
        debug_assert!(self.listener.is_none());
        let Some(slot) = self.idle.pop() else { return false };
        let listening = self.socket(slot).listen(port).is_ok();
        debug_assert!(listening, "idle sockets are CLOSED");
        self.listener = Some(slot);
        true
    }

    /// Returns a socket that left the connection (CLOSED, TIME-WAIT, or back
    /// in LISTEN after an RST in SYN-RECEIVED) to CLOSED with no tuple, so it
    /// neither answers nor sends anything, and makes it idle.
    /// Its buffers go back to `pool`.
    pub fn recycle(&mut self, slot: u16, port: u16, pool: &mut SocketPool) {
        self.cell.reset_socket(usize::from(slot), port);
        pool.detach(self.socket(slot));
        self.idle.push(slot);
    }
}

/// Hands the bytes `sock` received to `take` chunk by chunk, until it takes
/// none (the rest stays in the socket and its window shrinks) or none are left.
pub(crate) fn deliver_received(sock: &mut tcp::Socket<'_>, mut take: impl FnMut(&[u8]) -> usize) {
    while sock.can_recv() {
        match sock.recv(|data| {
            let taken = take(data).min(data.len());
            (taken, taken)
        }) {
            Ok(taken) if taken > 0 => {}
            _ => break,
        }
    }
}

/// Whether the peer's FIN has arrived (received data may still be unread).
pub(crate) fn peer_sent_fin(state: tcp::State) -> bool {
    matches!(state, tcp::State::CloseWait | tcp::State::LastAck | tcp::State::Closing | tcp::State::TimeWait)
}

/// What a stack's cells send through: the [`Link`] that frames their IP
/// packets, a scratch buffer for a packet the sink has no room for, and the
/// MTU. One per stack, so building a cell's device borrows it apart from the
/// cells and the counters.
pub(crate) struct CellIo {
    pub link: Link,
    scratch: Vec<u8>,
    mtu: usize,
}

impl CellIo {
    pub fn new(link: Link, mtu: usize) -> CellIo {
        CellIo { link, scratch: vec![0; mtu], mtu }
    }

    /// Runs smoltcp's ingress for one IP packet in `cell` (what smoltcp
    /// answers at once, e.g. an RST, goes to `sink`).
    pub fn ingress<S: FrameSink + ?Sized>(
        &mut self,
        cell: &mut Cell,
        ip: &[u8],
        now: Instant,
        sink: &mut S,
        counters: &mut NetCounters,
    ) {
        let mut dev = self.device(Some(ip), sink, counters, now);
        let _ = cell.iface.poll_ingress_single(now, &mut dev, &mut cell.sockets);
    }

    /// Runs smoltcp's egress for `cell`; returns whether the sink ran out of
    /// room (smoltcp keeps what it could not send).
    pub fn egress<S: FrameSink + ?Sized>(
        &mut self,
        cell: &mut Cell,
        now: Instant,
        sink: &mut S,
        counters: &mut NetCounters,
    ) -> bool {
        let mut dev = self.device(None, sink, counters, now);
        let _ = cell.iface.poll_egress(now, &mut dev, &mut cell.sockets);
        dev.blocked
    }

    fn device<'a, S: FrameSink + ?Sized>(
        &'a mut self,
        rx: Option<&'a [u8]>,
        sink: &'a mut S,
        counters: &'a mut NetCounters,
        now: Instant,
    ) -> CellDevice<'a, S> {
        CellDevice {
            rx,
            sink,
            link: &mut self.link,
            counters,
            scratch: &mut self.scratch,
            mtu: self.mtu,
            now,
            blocked: false,
        }
    }
}

/// Timer-heap entry: (deadline in µs, cell).
type Deadline = Reverse<(i64, u32)>;

/// Which cells a stack services, and when. A cell is serviced at the next
/// poll once it is activated (it got input, was woken, or its output was
/// held back) or its smoltcp deadline is due. One poll services at most
/// `max_per_poll` cells; the others stay at the front of the active list, so
/// they come first at the next poll. Deadlines sit in a min-heap with lazy
/// deletion: a cell's new deadline leaves its old entry behind, ignored when
/// popped, and the heap is rebuilt from the live deadlines once it holds
/// more than 4 entries per cell. Everything is allocated in `new`.
pub(crate) struct CellScheduler {
    /// Per cell: whether it is on `active` (or in the current batch, not yet handed out).
    queued: Vec<bool>,
    /// Per cell: the deadline of its live heap entry.
    deadlines: Vec<Option<Instant>>,
    /// Cells to service at the next poll, in order.
    active: Vec<u32>,
    /// The current poll's batch (swapped with `active`) and the next to hand out.
    servicing: Vec<u32>,
    next: usize,
    timers: BinaryHeap<Deadline>,
    max_per_poll: usize,
}

impl CellScheduler {
    pub fn new(cells: usize, max_per_poll: usize) -> CellScheduler {
        let max_per_poll = max_per_poll.max(1);
        CellScheduler {
            queued: vec![false; cells],
            deadlines: vec![None; cells],
            active: Vec::with_capacity(cells),
            servicing: Vec::with_capacity(cells),
            next: 0,
            // Stale entries are dropped by a rebuild past 4 per cell; one poll adds at most one per cell serviced.
            timers: BinaryHeap::with_capacity(cells * 4 + max_per_poll + 1),
            max_per_poll,
        }
    }

    /// Services `cell` at the next poll.
    #[inline]
    pub fn activate(&mut self, cell: usize) {
        if !self.queued[cell] {
            self.queued[cell] = true;
            self.active.push(cell as u32);
        }
    }

    /// When a poll has work: now if a cell is active, else the earliest deadline.
    pub fn poll_at(&self) -> Option<Instant> {
        if !self.active.is_empty() {
            return Some(Instant::ZERO);
        }
        self.timers.peek().map(|Reverse((t, _))| Instant::from_micros(*t))
    }

    /// Starts a poll: activates the cells whose deadline is due and takes
    /// the first `max_per_poll` active cells as the batch that
    /// [`next_cell`](Self::next_cell) hands out. Returns the batch size.
    pub fn begin_poll(&mut self, now: Instant) -> usize {
        debug_assert!(self.servicing.is_empty(), "end_poll ends every poll");
        let now_us = now.total_micros();
        while let Some(&Reverse((t, cell))) = self.timers.peek() {
            if t > now_us {
                break;
            }
            self.timers.pop();
            let cell = cell as usize;
            if self.deadlines[cell].is_some_and(|d| d.total_micros() == t) {
                self.deadlines[cell] = None;
                self.activate(cell);
            }
        }
        let n = self.active.len().min(self.max_per_poll);
        std::mem::swap(&mut self.active, &mut self.servicing);
        // Cells beyond the cap go back to the front of the active list.
        self.active.extend(self.servicing.drain(n..));
        self.next = 0;
        n
    }

    /// The next cell of the batch to service; it can be activated again from now on.
    pub fn next_cell(&mut self) -> Option<usize> {
        let cell = *self.servicing.get(self.next)? as usize;
        self.next += 1;
        self.queued[cell] = false;
        Some(cell)
    }

    /// Records when a serviced `cell` wants servicing again: at or before
    /// `now` it is activated for the next poll, later it waits in the heap,
    /// `None` means no timer.
    pub fn schedule(&mut self, cell: usize, now: Instant, next: Option<Instant>) {
        match next {
            Some(t) if t <= now => {
                self.deadlines[cell] = None;
                self.activate(cell);
            }
            Some(t) => {
                if self.deadlines[cell] != Some(t) {
                    self.deadlines[cell] = Some(t);
                    self.timers.push(Reverse((t.total_micros(), cell as u32)));
                }
            }
            None => self.deadlines[cell] = None,
        }
    }

    /// Ends a poll (after the whole batch was handed out) and bounds the heap.
    pub fn end_poll(&mut self) {
        debug_assert_eq!(self.next, self.servicing.len(), "every cell of the batch is serviced");
        self.servicing.clear();
        self.next = 0;
        if self.timers.len() > self.deadlines.len() * 4 {
            // Drop stale entries (deadlines that were replaced).
            self.timers.clear();
            for (cell, deadline) in self.deadlines.iter().enumerate() {
                if let Some(d) = deadline {
                    self.timers.push(Reverse((d.total_micros(), cell as u32)));
                }
            }
        }
    }
}

/// The receive side: one IP packet.
pub(crate) struct SliceRx<'a>(&'a [u8]);

impl RxToken for SliceRx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

impl TxToken for SliceRx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        // Never handed out (CapsOnly has no tokens); a scratch buffer keeps it total.
        f(&mut vec![0; len])
    }
}

/// The device a cell is polled with: at most one received IP packet, and a
/// transmit path that frames into the caller's sink.
pub(crate) struct CellDevice<'a, S: FrameSink + ?Sized> {
    pub rx: Option<&'a [u8]>,
    pub sink: &'a mut S,
    pub link: &'a mut Link,
    pub counters: &'a mut NetCounters,
    /// Where smoltcp writes a packet that cannot be sent (sink out of buffers).
    pub scratch: &'a mut [u8],
    pub mtu: usize,
    pub now: Instant,
    /// Set when `transmit` was refused because the sink had no room.
    pub blocked: bool,
}

impl<'a, S: FrameSink + ?Sized> Device for CellDevice<'a, S> {
    type RxToken<'t>
        = SliceRx<'t>
    where
        Self: 't;
    type TxToken<'t>
        = CellTx<'t, 'a, S>
    where
        Self: 't;

    fn receive(&mut self, _: Instant) -> Option<(SliceRx<'_>, CellTx<'_, 'a, S>)> {
        let packet = self.rx.take()?;
        Some((SliceRx(packet), CellTx(self)))
    }

    fn transmit(&mut self, _: Instant) -> Option<CellTx<'_, 'a, S>> {
        if !self.sink.has_room() {
            self.blocked = true;
            self.counters.tx_backpressure += 1;
            return None;
        }
        Some(CellTx(self))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        capabilities(self.mtu)
    }
}

/// Transmits one IP packet: the sink's buffer gets smoltcp's packet after
/// room for the Ethernet header, which `Link` then fills in (no copy).
pub(crate) struct CellTx<'t, 'a, S: FrameSink + ?Sized>(&'t mut CellDevice<'a, S>);

impl<S: FrameSink + ?Sized> TxToken for CellTx<'_, '_, S> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let dev = self.0;
        let now = dev.now;
        let mut f = Some(f);
        let mut result = None;
        let mut framed = Err(FrameError::Malformed);
        let link = &mut *dev.link;
        let sent = dev.sink.frame(ETH_HEADER_LEN + len, &mut |frame: &mut [u8]| {
            let Some(f) = f.take() else { return false };
            result = Some(f(&mut frame[ETH_HEADER_LEN..]));
            framed = link.frame_ipv4(frame, now);
            framed.is_ok()
        });
        let result = match (result, f.take()) {
            (Some(r), _) => r,
            // The sink had no buffer: let smoltcp write into scratch and count the drop.
            (None, Some(f)) => {
                dev.counters.tx_drop_no_buffer += 1;
                let n = len.min(dev.scratch.len());
                let scratch = &mut dev.scratch[..n];
                return f(scratch);
            }
            (None, None) => unreachable!("the closure ran, so it produced a result"),
        };
        match framed {
            Ok(()) if sent => dev.counters.tx_frames += 1,
            Ok(()) => dev.counters.tx_drop_no_buffer += 1,
            Err(FrameError::NoNeighbor(_)) => dev.counters.tx_drop_no_neighbor += 1,
            Err(FrameError::NoRoute) => dev.counters.tx_drop_no_route += 1,
            Err(FrameError::Malformed) => dev.counters.tx_drop_no_route += 1,
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> Instant {
        Instant::from_millis(ms)
    }

    /// Runs one poll and returns the cells handed out, in order.
    fn poll(s: &mut CellScheduler, now: Instant) -> Vec<usize> {
        let n = s.begin_poll(now);
        let batch: Vec<usize> = std::iter::from_fn(|| s.next_cell()).collect();
        s.end_poll();
        assert_eq!(batch.len(), n);
        batch
    }

    #[test]
    fn an_active_cell_is_serviced_once_per_poll() {
        let mut s = CellScheduler::new(4, 8);
        assert_eq!(s.poll_at(), None);
        s.activate(2);
        s.activate(1);
        s.activate(2);
        assert_eq!(s.poll_at(), Some(Instant::ZERO));
        assert_eq!(poll(&mut s, at(0)), vec![2, 1]);
        assert_eq!(poll(&mut s, at(0)), Vec::<usize>::new());
    }

    #[test]
    fn cells_beyond_the_cap_come_first_at_the_next_poll() {
        let mut s = CellScheduler::new(8, 2);
        for cell in [5, 0, 3, 1] {
            s.activate(cell);
        }
        assert_eq!(s.begin_poll(at(0)), 2);
        assert_eq!(s.next_cell(), Some(5));
        // Activated while the batch runs: behind the cells the cap held back.
        s.activate(7);
        // Reactivated after its service: serviced again at the next poll, not in this one.
        s.activate(5);
        // Still waiting in this batch: not queued twice.
        s.activate(0);
        assert_eq!(s.next_cell(), Some(0));
        assert_eq!(s.next_cell(), None);
        s.end_poll();
        assert_eq!(poll(&mut s, at(0)), vec![3, 1]);
        assert_eq!(poll(&mut s, at(0)), vec![7, 5]);
        assert_eq!(poll(&mut s, at(0)), Vec::<usize>::new());
    }

    #[test]
    fn a_cell_is_activated_when_its_deadline_is_due() {
        let mut s = CellScheduler::new(4, 8);
        s.schedule(1, at(0), Some(at(10)));
        s.schedule(3, at(0), Some(at(5)));
        assert_eq!(s.poll_at(), Some(at(5)));
        assert_eq!(poll(&mut s, at(4)), Vec::<usize>::new());
        assert_eq!(poll(&mut s, at(10)), vec![3, 1]);
        assert_eq!(s.poll_at(), None);
    }

    #[test]
    fn a_replaced_or_cleared_deadline_does_not_fire() {
        let mut s = CellScheduler::new(4, 8);
        s.schedule(0, at(0), Some(at(10)));
        s.schedule(0, at(1), Some(at(20)));
        s.schedule(2, at(0), Some(at(10)));
        s.schedule(2, at(1), None);
        assert_eq!(poll(&mut s, at(15)), Vec::<usize>::new());
        assert_eq!(poll(&mut s, at(20)), vec![0]);
    }

    #[test]
    fn a_deadline_already_due_activates_for_the_next_poll() {
        let mut s = CellScheduler::new(4, 8);
        s.schedule(1, at(0), Some(at(10)));
        // Serviced early (e.g. input): its smoltcp timer is now due, or its output was held back.
        s.schedule(1, at(12), Some(at(12)));
        assert_eq!(s.poll_at(), Some(Instant::ZERO));
        assert_eq!(poll(&mut s, at(12)), vec![1]);
        // The old heap entry finds no deadline and activates nothing.
        assert_eq!(poll(&mut s, at(12)), Vec::<usize>::new());
    }

    #[test]
    fn stale_timers_are_dropped_so_the_heap_stays_within_its_capacity() {
        let cells = 3;
        let mut s = CellScheduler::new(cells, 2);
        let capacity = s.timers.capacity();
        for round in 0..100 {
            s.activate(round % cells);
            let now = at(round as i64);
            let n = s.begin_poll(now);
            while let Some(cell) = s.next_cell() {
                // Every service moves the cell's deadline later, leaving a stale entry.
                s.schedule(cell, now, Some(at(1000 + round as i64)));
            }
            s.end_poll();
            assert!(n <= 2);
            assert!(s.timers.len() <= cells * 4, "round {round}: {} entries", s.timers.len());
        }
        assert_eq!(s.timers.capacity(), capacity, "the heap never grew");
        // The live deadlines survived the rebuilds (two polls: the cap is 2).
        let mut fired = poll(&mut s, at(2000));
        fired.extend(poll(&mut s, at(2000)));
        fired.sort_unstable();
        assert_eq!(fired, vec![0, 1, 2]);
    }
}
