//! The DPDK poll-mode loops that run on worker lcores: RX bursts in, TX
//! bursts out, counters published; what happens to the frames in between is
//! the sans-IO [`crate::pipeline`] (for `serve`, one [`ServeCore::step`] per
//! burst).
//!
//! A worker owns one RX/TX queue pair and its own counters; it shares nothing
//! mutable with other workers. Each iteration takes at most one burst, so the
//! work between two checks of the stop flag is bounded.

use crate::dpdk::{Mempool, RxBurst, RxQueue, TxBurst, TxQueue, BURST_SIZE};
use crate::net::FrameSink;
use crate::net::{classify, Frame};
use crate::pcap::trace::PacketTrace;
use crate::pipeline::timing::{EXIT_FLUSH_RETRY_NS, PUBLISH_NS};
use crate::pipeline::{Every, ServeCore, ServeCounters, StepOutcome, UdpCounters, UdpIngest};
use crate::stats::{RxCounters, SharedRxCounters};
use crate::time::{MonotonicClock, Nanos};
use smoltcp::wire::Ipv4Address;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Packets ahead of the one being classified whose data is prefetched.
const PREFETCH_AHEAD: usize = 3;
/// Empty polls between two publications of the counters when idle.
const IDLE_PUBLISH_EVERY: u64 = 4096;

/// The UDP ingestion stage of an rx worker, with what it needs besides the frames.
pub struct UdpStage {
    pub ingest: UdpIngest,
    pub published: Arc<crate::stats::Published<UdpCounters>>,
    pub clock: MonotonicClock,
}

/// `--trace-pcap` on an rx worker: the file and the clock its timestamps
/// come from (the one whose Unix offset the file was created with).
pub struct RxTrace {
    pub file: PacketTrace,
    pub clock: MonotonicClock,
}

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
    // UDP counters are read for the final report only: publish them at the usual period.
    let mut udp_publish = Every::new(PUBLISH_NS);
    while !stop.load(Ordering::Relaxed) {
        let n = rx.rx_burst(&mut burst);
        // One clock read per burst (only the UDP stage needs time).
        let now = udp.as_ref().map_or(Nanos::ZERO, |u| u.clock.now());
        if let Some(u) = udp.as_mut() {
            u.ingest.maybe_flush(now);
            if udp_publish.due(now) {
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
            let now = t.clock.now();
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
    /// Sent frames are traced here at `now`.
    pub trace: Option<&'a mut PacketTrace>,
    pub now: Nanos,
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
            t.frame(self.now, buf);
        }
        self.burst.push(m).is_ok()
    }
}

/// Everything a `serve` worker owns.
pub struct ServeWorker {
    pub rx: RxQueue,
    pub tx: TxQueue,
    pub pool: Arc<Mempool>,
    /// The stack, HTTP application and UDP stage, and the serve step.
    pub core: ServeCore,
    pub clock: MonotonicClock,
    pub published: Arc<crate::stats::Published<ServeCounters>>,
    pub stop: Arc<AtomicBool>,
    /// `--trace-pcap`: every frame received and sent.
    pub trace: Option<PacketTrace>,
}

/// The `serve` datapath around [`ServeCore::step`]: one RX burst per step
/// (multi-segment frames dropped, counted), output frames written into
/// mbufs and sent in bursts, counters published at their period. On `stop`
/// the step drains (see [`ServeCore::step`]); then the exit flush, and what
/// is left in the TX burst is sent or freed (counted).
pub fn run_serve(mut w: ServeWorker) -> i32 {
    let mut burst = RxBurst::default();
    let mut txb = TxBurst::default();
    let mut counters = ServeCounters::default();
    let mut publish = Every::new(PUBLISH_NS);
    loop {
        let now = w.clock.now();
        if w.stop.load(Ordering::Relaxed) {
            w.core.stop();
        }
        let n = w.rx.rx_burst(&mut burst);
        if let Some(t) = w.trace.as_mut() {
            (0..n).for_each(|i| t.frame(now, burst.packet(i)));
        }
        let mut sink =
            MbufSink { pool: &w.pool, burst: &mut txb, tx: &mut w.tx, no_mbuf: 0, trace: w.trace.as_mut(), now };
        let chained = &mut counters.rx_chained_dropped;
        let frames = (0..n).filter_map(|i| {
            // Only the first segment is visible; jumbo frames are not ours.
            let whole = !burst.is_chained(i);
            *chained += u64::from(!whole);
            whole.then(|| burst.packet(i))
        });
        let outcome = w.core.step(now, frames, &mut sink);
        counters.tx_no_mbuf += sink.no_mbuf;
        burst.clear();
        w.tx.tx_burst(&mut txb);
        if outcome == StepOutcome::Finished {
            break;
        }
        if publish.due(now) {
            w.core.snapshot(&mut counters);
            w.published.publish(&counters);
        }
    }
    if let Some(message) = w.core.unfinished() {
        // Once, at exit: what the drain did not finish.
        eprintln!("worker: {message}");
    }
    let clock = w.clock;
    let retry = std::time::Duration::from_nanos(EXIT_FLUSH_RETRY_NS);
    w.core.finish(|| clock.now(), || std::thread::sleep(retry));
    // Last chance for what is queued, then free the rest (counted).
    w.tx.tx_burst(&mut txb);
    counters.tx_unsent_dropped += txb.drop_all() as u64;
    burst.clear();
    if let Some(t) = w.trace.take() {
        report_trace(t, w.rx.queue());
    }
    // Completed transmissions give their mbufs back now, not on a later burst.
    counters.tx_reclaim_unsupported = u64::from(w.tx.reclaim_completed().is_none());
    w.core.snapshot(&mut counters);
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
