//! One stack cell: a smoltcp `Interface` (`Medium::Ip`) with a small, fixed
//! set of TCP sockets, and the `phy::Device` that feeds it one packet at a
//! time and frames what it sends.
//!
//! A cell holds at most one socket in LISTEN at a time (its *listener*), so a
//! SYN handed to the cell is taken by exactly that socket and the stack knows
//! the connection's slot without searching. The other free sockets are idle
//! (CLOSED, no tuple) until the listener is taken and the next one is armed.
//! smoltcp's per-packet socket scan is bounded by the cell size, not by the
//! number of connections of the worker.

use super::l2::{FrameError, Link, ETH_HEADER_LEN};
use super::stack::{FrameSink, NetCounters};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Checksum, ChecksumCapabilities, Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{HardwareAddress, IpCidr, Ipv4Address};

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

/// A cell: interface, sockets, and which of them listens / idles.
pub(crate) struct Cell {
    pub iface: Interface,
    pub sockets: SocketSet<'static>,
    /// Socket handle of each slot.
    pub handles: Vec<SocketHandle>,
    /// The slot in LISTEN, if any.
    pub listener: Option<u16>,
    /// Slots that are CLOSED and free (a stack; capacity = sockets per cell).
    pub idle: Vec<u16>,
    /// Whether the cell is in the stack's list of cells to service.
    pub active: bool,
    /// The deadline the cell is queued for in the timer heap.
    pub deadline: Option<Instant>,
}

impl Cell {
    pub fn new(
        iface: Interface,
        sockets: usize,
        rx_buffer: usize,
        tx_buffer: usize,
        timeout: Option<smoltcp::time::Duration>,
    ) -> Cell {
        let mut set = SocketSet::new(Vec::with_capacity(sockets));
        let mut handles = Vec::with_capacity(sockets);
        for _ in 0..sockets {
            let mut s = tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0; rx_buffer]),
                tcp::SocketBuffer::new(vec![0; tx_buffer]),
            );
            // Responses are written whole; do not hold the tail back for an ACK.
            s.set_nagle_enabled(false);
            s.set_timeout(timeout);
            s.set_keep_alive(timeout.map(|t| t / 2));
            handles.push(set.add(s));
        }
        let idle = (0..sockets as u16).rev().collect();
        Cell { iface, sockets: set, handles, listener: None, idle, active: false, deadline: None }
    }

    pub fn socket(&mut self, slot: u16) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(self.handles[usize::from(slot)])
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
    pub fn recycle(&mut self, slot: u16, port: u16) {
        let s = self.socket(slot);
        // listen() resets a CLOSED or TIME-WAIT socket silently (no RST);
        // close() on LISTEN goes to CLOSED without a tuple.
        let _ = s.listen(port);
        s.close();
        debug_assert_eq!(s.state(), tcp::State::Closed);
        self.idle.push(slot);
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
