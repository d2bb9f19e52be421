//! The poll-mode loops that run on worker lcores.
//!
//! A worker owns one RX/TX queue pair and its own counters; it shares nothing
//! mutable with other workers. Each iteration takes at most one burst, so the
//! work between two checks of the stop flag is bounded.

use crate::dpdk::{Mempool, RxBurst, RxQueue, TxBurst, TxQueue, BURST_SIZE};
use crate::net::FrameSink;
use crate::net::{classify, Frame};
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
        self.burst.push(m).is_ok()
    }
}

/// What `serve` publishes per worker.
#[derive(Clone, Copy, Debug, Default)]
pub struct ServeCounters {
    pub net: crate::net::NetCounters,
    pub http: crate::app::HttpCounters,
    pub udp: crate::udp::UdpCounters,
    pub tx_no_mbuf: u64,
    pub tx_unsent_dropped: u64,
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
    /// After `stop`, keep serving this long so held (durable) responses go out.
    pub drain_ns: u64,
}

/// Timeouts are checked at this period (they are seconds-scale).
const TIMEOUT_SCAN_NS: u64 = 100_000_000;
/// Counters are handed to the main lcore at this period.
const PUBLISH_NS: u64 = 50_000_000;

/// The `serve` datapath: frames into the TCP/IP stack (ARP, ICMP, TCP to
/// the HTTP application), UDP datagrams to the UDP ingestion stage; held
/// responses released as the writer makes batches durable; output frames
/// written into mbufs and sent in bursts.
pub fn run_serve(mut w: ServeWorker) -> i32 {
    use crate::net::Received;
    use smoltcp::time::Instant;
    let mut burst = RxBurst::default();
    let mut txb = TxBurst::default();
    let mut counters = ServeCounters::default();
    let mut last_timeouts = 0u64;
    let mut last_publish = 0u64;
    let mut stop_at: Option<u64> = None;
    loop {
        let now_ns = w.clock.now_ns();
        if stop_at.is_none() && w.stop.load(Ordering::Relaxed) {
            stop_at = Some(now_ns + w.drain_ns);
        }
        if stop_at.is_some_and(|t| now_ns >= t || w.app.counters().held == 0) {
            break;
        }
        let now = Instant::from_micros((now_ns / 1_000) as i64);
        let n = w.rx.rx_burst(&mut burst);
        let mut sink = MbufSink { pool: &w.pool, burst: &mut txb, tx: &mut w.tx, no_mbuf: 0 };
        for i in 0..n {
            if burst.is_chained(i) {
                // Only the first segment is visible; jumbo frames are not ours.
                counters.net.drop_malformed += 1;
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
        // Group commit: the requests of this iteration share one batch.
        w.app.flush();
        counters.tx_no_mbuf += sink.no_mbuf;
        w.tx.tx_burst(&mut txb);
        w.udp.maybe_flush(now_ns);
        if now_ns - last_publish >= PUBLISH_NS {
            last_publish = now_ns;
            counters.net = *w.stack.counters();
            counters.http = *w.app.counters();
            counters.udp = *w.udp.counters();
            w.published.publish(&counters);
        }
    }
    // Records of requests whose connection went away are still written.
    w.app.flush();
    // Last chance for what is queued, then free the rest (counted).
    w.tx.tx_burst(&mut txb);
    counters.tx_unsent_dropped += txb.drop_all() as u64;
    burst.clear();
    w.udp.flush();
    counters.net = *w.stack.counters();
    counters.http = *w.app.counters();
    counters.udp = *w.udp.counters();
    w.published.publish_final(&counters);
    0
}
