//! The one serve step: everything one iteration of a `serve` worker does
//! besides moving mbufs. `worker::run_serve` (and so `serve` and `bench`)
//! calls [`ServeCore::step`] once per RX burst with the frames it received
//! and a [`FrameSink`] over its TX burst; the deterministic in-memory network
//! tests call the same step with frames from memory and a virtual clock.
//!
//! Sans-IO: no DPDK, no clock (the caller passes `now`), no logging.

use super::http_app::HttpApp;
use super::timing::{Drain, Every, DRAIN_CHECK_NS, EXIT_FLUSH_NS, TIMEOUT_SCAN_NS};
use super::udp::UdpIngest;
use super::{ServeCounters, SocketLevels};
use crate::net::{FrameSink, NetStack, Received};
use crate::time::Nanos;

/// Whether the worker goes on stepping.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepOutcome {
    Running,
    /// The drain after [`ServeCore::stop`] is over (every connection
    /// finished, or its time ran out): call [`ServeCore::finish`] and exit.
    Finished,
}

/// A worker's TCP/IP stack, HTTP application and UDP stage, and the timing
/// that ties them together.
pub struct ServeCore {
    pub stack: NetStack,
    pub app: HttpApp,
    pub udp: UdpIngest,
    stop_requested: bool,
    drain: Drain,
    drain_check: Every,
    timeouts: Every,
}

impl ServeCore {
    /// After [`stop`](Self::stop), open connections are served at most
    /// `drain_ns` longer so that requests in progress and held (durable)
    /// responses are answered.
    pub fn new(stack: NetStack, app: HttpApp, udp: UdpIngest, drain_ns: u64) -> ServeCore {
        ServeCore {
            stack,
            app,
            udp,
            stop_requested: false,
            drain: Drain::new(drain_ns),
            drain_check: Every::new(DRAIN_CHECK_NS),
            timeouts: Every::new(TIMEOUT_SCAN_NS),
        }
    }

    /// Asks for a graceful shutdown (idempotent); the next step begins it.
    pub fn stop(&mut self) {
        self.stop_requested = true;
    }

    /// One iteration: `frames` (Ethernet) into the TCP/IP stack (ARP, ICMP,
    /// TCP to the HTTP application) and UDP datagrams to the UDP stage; held
    /// responses released as the writer makes batches durable; timeouts at
    /// their period; the stack polled when it has input or a timer due, its
    /// output frames written to `sink`; the step's requests submitted as one
    /// batch (group commit); the UDP batch shipped when it waited long enough.
    ///
    /// After [`stop`](Self::stop) the stack refuses new connections (RST,
    /// counted) and every connection answers the request it is receiving or
    /// answering with `Connection: close`, idle ones close at once; the step
    /// says [`StepOutcome::Finished`] when no response is held and every
    /// connection's output and FIN are acknowledged, or after the drain time.
    pub fn step<'f, S: FrameSink + ?Sized>(
        &mut self,
        now: Nanos,
        frames: impl IntoIterator<Item = &'f [u8]>,
        sink: &mut S,
    ) -> StepOutcome {
        if self.drain.begins(now, self.stop_requested) {
            self.stack.stop_accepting();
            self.app.shut_down();
            self.wake_connections();
        }
        let mut received = false;
        for frame in frames {
            received = true;
            if let Received::Udp { src, dst_port, payload, .. } = self.stack.receive(now, frame, sink) {
                self.udp.on_datagram(src, dst_port, payload, now);
            }
        }
        self.app.release_held(now);
        self.wake_connections();
        if self.timeouts.due(now) {
            self.app.handle_timeouts(now);
            self.wake_connections();
        }
        if received || self.stack.poll_at().is_some_and(|t| t <= now) {
            self.stack.poll(now, &mut self.app, sink);
        }
        // Group commit: the requests of this step share one batch (and of
        // later ones too while the writer's channel is full).
        self.app.flush();
        self.udp.maybe_flush(now);
        if self.drained(now) {
            StepOutcome::Finished
        } else {
            StepOutcome::Running
        }
    }

    /// The app's wake-ups, handed to the stack.
    fn wake_connections(&mut self) {
        for conn in self.app.wakeups().drain() {
            self.stack.wake(conn);
        }
    }

    /// Whether the drain is over: out of time, or (checked at its period,
    /// a scan of all slots) nothing held and every connection finished.
    fn drained(&mut self, now: Nanos) -> bool {
        if !self.drain.draining() {
            return false;
        }
        if self.drain.out_of_time(now) {
            return true;
        }
        self.drain_check.due(now) && self.app.counters().held == 0 && self.stack.quiescent()
    }

    /// What the drain left unfinished, for the worker's exit message: the
    /// connections still open by TCP state (scans every slot and allocates:
    /// once, at exit).
    pub fn unfinished(&mut self) -> Option<String> {
        let still_open = self.stack.counters().connections_open;
        (still_open > 0)
            .then(|| format!("{still_open} connection(s) still open at exit: {}", self.stack.open_connection_states()))
    }

    /// The exit path, after the last step. Records of requests whose
    /// connection went away (or whose drain ran out) are still written: the
    /// open batch waits for room in the writer's channel, at most
    /// [`EXIT_FLUSH_NS`] by `now`, with `pause` between tries (the worker
    /// sleeps [`EXIT_FLUSH_RETRY_NS`](super::timing::EXIT_FLUSH_RETRY_NS)).
    /// Then the UDP stage ships its batch.
    pub fn finish(&mut self, mut now: impl FnMut() -> Nanos, mut pause: impl FnMut()) {
        let give_up = now().plus_ns(EXIT_FLUSH_NS);
        while self.app.flush() && now() < give_up {
            pause();
        }
        self.udp.flush();
    }

    /// Copies the stack's, the application's and the UDP stage's counters
    /// and the socket levels into `c` (the worker's own fields stay).
    pub fn snapshot(&mut self, c: &mut ServeCounters) {
        c.net = *self.stack.counters();
        c.http = *self.app.counters();
        c.udp = *self.udp.counters();
        c.sockets = SocketLevels {
            flows: self.stack.flows() as u64,
            free: self.stack.free_sockets() as u64,
            slots: self.stack.slots() as u64,
        };
    }
}
