//! The poll-mode loops that run on worker lcores.
//!
//! A worker owns one RX/TX queue pair and its own counters; it shares nothing
//! mutable with other workers. Each iteration takes at most one burst, so the
//! work between two checks of the stop flag is bounded.

use crate::dpdk::{Mempool, RxBurst, RxQueue, TxBurst, TxQueue, BURST_SIZE};
use crate::net::FrameSink;
use crate::net::{classify, Frame};
use crate::pcap::trace::PacketTrace;
use crate::stats::{RxCounters, SharedRxCounters};
use smoltcp::wire::Ipv4Address;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Packets ahead of the one being classified whose data is prefetched.
const PREFETCH_AHEAD: usize = 3;
/// Empty polls between two publications of the counters when idle.
const IDLE_PUBLISH_EVERY: u64 = 4096;

/// The UDP ingestion stage of an rx worker, with what it needs besides the frames.
pub struct UdpStage {
    pub ingest: crate::udp::UdpIngest,
    pub published: Arc<crate::stats::Published<crate::udp::UdpCounters>>,
    pub clock: crate::limit::MonotonicClock,
}

/// `--trace-pcap` on an rx worker: the file and the clock its timestamps
/// come from (the one whose Unix offset the file was created with).
pub struct RxTrace {
    pub file: PacketTrace,
    pub clock: crate::limit::MonotonicClock,
}

/// UDP counters are read for the final report only: publish them this often.
const UDP_PUBLISH_NS: u64 = 50_000_000;

/// Receives, classifies and counts every frame, then frees it: the replay/rx
/// datapath and the per-packet floor of every later one. With a UDP stage,
/// every UDP datagram to an ingestion port is also parsed, limited and
/// batched to the writer.
pub fn run_rx(
    mut rx: RxQueue,
    counters: Arc<SharedRxCounters>,
    mut udp: Option<UdpStage>,
    mut trace: Option<RxTrace>,
    stop: Arc<AtomicBool>,
) -> i32 {
    let mut burst = RxBurst::default();
    let mut local = RxCounters::default();
    let mut last_udp_publish = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let n = rx.rx_burst(&mut burst);
        // One clock read per burst (only the UDP stage needs time).
        let now = udp.as_ref().map_or(0, |u| u.clock.now_ns());
        if let Some(u) = udp.as_mut() {
            u.ingest.maybe_flush(now);
            if now - last_udp_publish >= UDP_PUBLISH_NS {
                last_udp_publish = now;
                u.published.publish(u.ingest.counters());
            }
        }
        if n == 0 {
            local.empty_polls += 1;
            if local.empty_polls % IDLE_PUBLISH_EVERY == 0 {
                counters.publish(&local);
            }
            continue;
        }
        if let Some(t) = trace.as_mut() {
            let now = t.clock.now_ns();
            (0..n).for_each(|i| t.file.frame(now, burst.packet(i)));
        }
        for i in 0..PREFETCH_AHEAD.min(n) {
            burst.prefetch(i);
        }
        // Pass 1: classify and count every frame; note the UDP datagrams and
        // prefetch their sources' key-cache entries. The key cache and the
        // shared limiter table are evicted between bursts by the packet data
        // streaming through the cache, so each decision used to stall on
        // misses; prefetched a burst at a time, the misses overlap.
        let mut datagrams: [Option<(Ipv4Address, u16, &[u8])>; BURST_SIZE] = [None; BURST_SIZE];
        for (i, datagram) in datagrams.iter_mut().enumerate().take(n) {
            burst.prefetch(i + PREFETCH_AHEAD);
            let packet = burst.packet(i);
            local.chained += u64::from(burst.is_chained(i));
            let c = classify(packet);
            local.count(&c, packet.len());
            if let (Some(u), Frame::Ipv4Udp { src, dst_port, payload, .. }) = (udp.as_ref(), c.frame) {
                if let Some(entry) = u.ingest.source_entry(src) {
                    crate::dpdk::prefetch(entry);
                }
                *datagram = Some((src, dst_port, payload));
            }
        }
        if let Some(u) = udp.as_mut() {
            // Pass 2: prefetch the limiter slots (the entries have arrived).
            for &(src, _, _) in datagrams.iter().take(n).flatten() {
                if let Some(slot) = u.ingest.limiter_slot(src) {
                    crate::dpdk::prefetch(slot);
                }
            }
            // Pass 3: parse, limit and batch, in arrival order.
            for &(src, dst_port, payload) in datagrams.iter().take(n).flatten() {
                u.ingest.on_datagram(src, dst_port, payload, now);
            }
        }
        local.rx_bursts += 1;
        counters.publish(&local);
    }
    burst.clear();
    if let Some(t) = trace {
        report_trace(t.file, rx.queue());
    }
    if let Some(u) = udp.as_mut() {
        u.ingest.flush();
        u.published.publish_final(u.ingest.counters());
    }
    counters.publish(&local);
    0
}

/// A [`FrameSink`] over a TX burst: frames are written straight into mbufs
/// from `pool`; a full burst is sent before more are queued.
pub struct MbufSink<'a> {
    pub pool: &'a Mempool,
    pub burst: &'a mut TxBurst,
    pub tx: &'a mut TxQueue,
    /// Frames dropped for lack of an mbuf.
    pub no_mbuf: u64,
    /// Sent frames are traced here at `now_ns`.
    pub trace: Option<&'a mut PacketTrace>,
    pub now_ns: u64,
}

impl FrameSink for MbufSink<'_> {
    fn has_room(&mut self) -> bool {
        if self.burst.is_full() {
            self.tx.tx_burst(self.burst);
        }
        !self.burst.is_full()
    }

    fn frame(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8]) -> bool) -> bool {
        if !self.has_room() {
            return false;
        }
        let Some(mut m) = self.pool.alloc() else {
            self.no_mbuf += 1;
            return false;
        };
        // A frame longer than the mbuf (or a refused fill) frees `m` on return.
        let Some(buf) = m.append(len) else { return false };
        if !fill(buf) {
            return false;
        }
        if let Some(t) = self.trace.as_deref_mut() {
            t.frame(self.now_ns, buf);
        }
        self.burst.push(m).is_ok()
    }
}

/// What `serve` publishes per worker.
#[derive(Clone, Copy, Debug, Default)]
pub struct ServeCounters {
    pub net: crate::net::NetCounters,
    pub http: crate::app::HttpCounters,
    pub udp: crate::udp::UdpCounters,
    /// Multi-segment frames, dropped before the stack (it sees one segment).
    pub rx_chained_dropped: u64,
    pub tx_no_mbuf: u64,
    pub tx_unsent_dropped: u64,
    pub sockets: SocketLevels,
}

/// Where a worker's connection slots are, read at each publication.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SocketLevels {
    /// Entries in the flow table.
    pub flows: u64,
    /// Sockets idle or listening (not owned by a connection).
    pub free: u64,
    /// All connection slots (sockets) of the worker.
    pub slots: u64,
}

impl ServeCounters {
    /// Writes the workers' counters, each summed over them, as Prometheus
    /// samples (serve's `/metrics`). Runs on a worker lcore once per scrape:
    /// allocates nothing (`tests/alloc_steady.rs`).
    pub fn expose(workers: &[Arc<crate::stats::Published<ServeCounters>>], e: &mut crate::stats::Exposition) {
        use crate::stats::MetricKind;
        let each = || workers.iter().map(|p| p.snapshot());
        e.section_sum("net", each().map(|c| c.net));
        e.section_sum("sockets", each().map(|c| c.sockets));
        e.section_sum("http", each().map(|c| c.http));
        e.section_sum("udp", each().map(|c| c.udp));
        let sum = |field: fn(&ServeCounters) -> u64| each().map(|c| field(&c)).sum::<u64>() as f64;
        let frames = "frames of several segments, dropped before the stack";
        e.sample("rx_chained_dropped", frames, MetricKind::Counter, sum(|c| c.rx_chained_dropped));
        e.sample("tx_no_mbuf", "frames not sent: no mbuf in the pool", MetricKind::Counter, sum(|c| c.tx_no_mbuf));
        let unsent = "frames the TX queue did not take after retries, freed";
        e.sample("tx_unsent_dropped", unsent, MetricKind::Counter, sum(|c| c.tx_unsent_dropped));
    }

    /// The connection-lifecycle balances that hold at every publication:
    /// every opened connection is open or closed, the flow table holds
    /// exactly the open connections, and every socket not owned by one is
    /// back to idle or listening. `Err` names the first one that fails.
    pub fn check_lifecycle(&self) -> Result<(), String> {
        let (n, s) = (&self.net, &self.sockets);
        if n.connections_opened != n.connections_closed + n.connections_open {
            return Err(format!(
                "connections opened {} != closed {} + open {}",
                n.connections_opened, n.connections_closed, n.connections_open
            ));
        }
        if s.flows != n.connections_open {
            return Err(format!("flow table holds {} entries for {} open connections", s.flows, n.connections_open));
        }
        if s.free + n.connections_open != s.slots {
            return Err(format!(
                "{} free sockets + {} open connections != {} slots",
                s.free, n.connections_open, s.slots
            ));
        }
        Ok(())
    }
}

/// Everything a `serve` worker owns.
pub struct ServeWorker {
    pub rx: RxQueue,
    pub tx: TxQueue,
    pub pool: Arc<Mempool>,
    pub stack: crate::net::NetStack,
    pub app: crate::app::HttpApp,
    pub udp: crate::udp::UdpIngest,
    pub clock: crate::limit::MonotonicClock,
    pub published: Arc<crate::stats::Published<ServeCounters>>,
    pub stop: Arc<AtomicBool>,
    /// After `stop`, keep serving open connections at most this long so
    /// requests in progress and held (durable) responses are answered.
    pub drain_ns: u64,
    /// `--trace-pcap`: every frame received and sent.
    pub trace: Option<PacketTrace>,
}

/// Timeouts are checked at this period (they are seconds-scale).
const TIMEOUT_SCAN_NS: u64 = 100_000_000;
/// Counters are handed to the main lcore at this period.
const PUBLISH_NS: u64 = 50_000_000;
/// At exit, how long the open batch may wait for room in the writer's channel.
const EXIT_FLUSH_NS: u64 = 5_000_000_000;
/// While draining, whether every connection is finished is checked this often (a scan of all slots).
const DRAIN_CHECK_NS: u64 = 1_000_000;

/// The `serve` datapath: frames into the TCP/IP stack (ARP, ICMP, TCP to
/// the HTTP application), UDP datagrams to the UDP ingestion stage; held
/// responses released as the writer makes batches durable; output frames
/// written into mbufs and sent in bursts.
///
/// On `stop` (graceful shutdown) the stack refuses new connections (RST,
/// counted) and every connection answers the request it is receiving or
/// answering with `Connection: close`, idle ones close at once; the loop
/// ends when no response is held and every connection's output and FIN are
/// acknowledged, or after `drain_ns`. Then the open batch is submitted.
pub fn run_serve(mut w: ServeWorker) -> i32 {
    use crate::net::Received;
    use smoltcp::time::Instant;
    let mut burst = RxBurst::default();
    let mut txb = TxBurst::default();
    let mut counters = ServeCounters::default();
    let mut last_timeouts = 0u64;
    let mut last_publish = 0u64;
    let mut stop_at: Option<u64> = None;
    let mut last_drain_check = 0u64;
    loop {
        let now_ns = w.clock.now_ns();
        if stop_at.is_none() && w.stop.load(Ordering::Relaxed) {
            stop_at = Some(now_ns + w.drain_ns);
            w.stack.stop_accepting();
            for &conn in w.app.shut_down() {
                w.stack.wake(conn);
            }
        }
        if let Some(deadline) = stop_at {
            if now_ns >= deadline {
                break;
            }
            if now_ns - last_drain_check >= DRAIN_CHECK_NS {
                last_drain_check = now_ns;
                if w.app.counters().held == 0 && w.stack.quiescent() {
                    break;
                }
            }
        }
        let now = Instant::from_micros((now_ns / 1_000) as i64);
        let n = w.rx.rx_burst(&mut burst);
        if let Some(t) = w.trace.as_mut() {
            (0..n).for_each(|i| t.frame(now_ns, burst.packet(i)));
        }
        let mut sink =
            MbufSink { pool: &w.pool, burst: &mut txb, tx: &mut w.tx, no_mbuf: 0, trace: w.trace.as_mut(), now_ns };
        for i in 0..n {
            if burst.is_chained(i) {
                // Only the first segment is visible; jumbo frames are not ours.
                counters.rx_chained_dropped += 1;
                continue;
            }
            if let Received::Udp { src, dst_port, payload, .. } = w.stack.receive(now, burst.packet(i), &mut sink) {
                w.udp.on_datagram(src, dst_port, payload, now_ns);
            }
        }
        burst.clear();
        for &conn in w.app.poll_held(now_ns) {
            w.stack.wake(conn);
        }
        if now_ns - last_timeouts >= TIMEOUT_SCAN_NS {
            last_timeouts = now_ns;
            for &conn in w.app.poll_timeouts(now_ns) {
                w.stack.wake(conn);
            }
        }
        if n > 0 || w.stack.poll_at().is_some_and(|t| t <= now) {
            w.stack.poll(now, &mut w.app, &mut sink);
        }
        // Group commit: the requests of this iteration share one batch (and
        // of later ones too while the writer's channel is full).
        w.app.flush();
        counters.tx_no_mbuf += sink.no_mbuf;
        w.tx.tx_burst(&mut txb);
        w.udp.maybe_flush(now_ns);
        if now_ns - last_publish >= PUBLISH_NS {
            last_publish = now_ns;
            snapshot(&mut counters, &mut w);
            w.published.publish(&counters);
        }
    }
    let still_open = w.stack.counters().connections_open;
    if still_open > 0 {
        // Once, at exit: what the drain did not finish.
        eprintln!("worker: {still_open} connection(s) still open at exit: {}", w.stack.open_connection_states());
    }
    // Records of requests whose connection went away (or whose drain ran
    // out) are still written: wait for room in the writer's channel, bounded.
    let give_up = w.clock.now_ns() + EXIT_FLUSH_NS;
    while w.app.flush() && w.clock.now_ns() < give_up {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    // Last chance for what is queued, then free the rest (counted).
    w.tx.tx_burst(&mut txb);
    counters.tx_unsent_dropped += txb.drop_all() as u64;
    burst.clear();
    w.udp.flush();
    if let Some(t) = w.trace.take() {
        report_trace(t, w.rx.queue());
    }
    // Completed transmissions give their mbufs back now, not on a later burst.
    let _ = w.tx.reclaim_completed();
    snapshot(&mut counters, &mut w);
    w.published.publish_final(&counters);
    0
}

/// Closes a worker's trace file and says what it holds (once, at exit).
fn report_trace(trace: PacketTrace, queue: u16) {
    let (frames, errors) = trace.finish();
    if errors > 0 {
        eprintln!("worker {queue}: --trace-pcap: {frames} frames written, {errors} write errors (disk full?)");
    } else {
        eprintln!("worker {queue}: --trace-pcap: {frames} frames written");
    }
}

/// Copies the worker's counters and socket levels into `c` for publication.
fn snapshot(c: &mut ServeCounters, w: &mut ServeWorker) {
    c.net = *w.stack.counters();
    c.http = *w.app.counters();
    c.udp = *w.udp.counters();
    c.sockets = SocketLevels {
        flows: w.stack.flows() as u64,
        free: w.stack.free_sockets() as u64,
        slots: w.stack.slots() as u64,
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_check_names_each_imbalance() {
        let mut c = ServeCounters::default();
        c.net.connections_opened = 5;
        c.net.connections_closed = 3;
        c.net.connections_open = 2;
        c.sockets = SocketLevels { flows: 2, free: 14, slots: 16 };
        assert_eq!(c.check_lifecycle(), Ok(()));
        let mut stale = c;
        stale.sockets.flows = 3;
        assert!(stale.check_lifecycle().unwrap_err().contains("flow table"));
        let mut lost = c;
        lost.sockets.free = 13;
        assert!(lost.check_lifecycle().unwrap_err().contains("free sockets"));
        let mut unclosed = c;
        unclosed.net.connections_closed = 2;
        assert!(unclosed.check_lifecycle().unwrap_err().contains("opened"));
    }
}
