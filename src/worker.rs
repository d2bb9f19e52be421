//! The poll-mode loops that run on worker lcores.
//!
//! A worker owns one RX/TX queue pair and its own counters; it shares nothing
//! mutable with other workers. Each iteration takes at most one burst, so the
//! work between two checks of the stop flag is bounded.

use crate::dpdk::{RxBurst, RxQueue};
use crate::net::{classify, Frame};
use crate::stats::{RxCounters, SharedRxCounters};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Packets ahead of the one being classified whose data is prefetched.
const PREFETCH_AHEAD: usize = 3;
/// Empty polls between two publications of the counters when idle.
const IDLE_PUBLISH_EVERY: u64 = 4096;

/// Receives, classifies and counts every frame, then frees it: the replay
/// datapath of the foundation, and the per-packet floor of every later one.
pub fn run_classify(mut rx: RxQueue, counters: Arc<SharedRxCounters>, stop: Arc<AtomicBool>) -> i32 {
    let mut burst = RxBurst::default();
    let mut local = RxCounters::default();
    while !stop.load(Ordering::Relaxed) {
        let n = rx.rx_burst(&mut burst);
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
        for i in 0..n {
            burst.prefetch(i + PREFETCH_AHEAD);
            let packet = burst.packet(i);
            local.chained += u64::from(burst.is_chained(i));
            local.count(&classify(packet), packet.len());
        }
        local.rx_bursts += 1;
        counters.publish(&local);
    }
    burst.clear();
    counters.publish(&local);
    0
}

/// The UDP ingestion datapath: like [`run_classify`], and every UDP datagram
/// to an ingestion port is parsed, limited and batched to the writer.
pub fn run_ingest(
    mut rx: RxQueue,
    counters: Arc<SharedRxCounters>,
    udp_counters: Arc<crate::udp::SharedUdpCounters>,
    mut udp: crate::udp::UdpIngest,
    clock: crate::limit::MonotonicClock,
    stop: Arc<AtomicBool>,
) -> i32 {
    let mut burst = RxBurst::default();
    let mut local = RxCounters::default();
    while !stop.load(Ordering::Relaxed) {
        let n = rx.rx_burst(&mut burst);
        // One clock read per burst, not per packet.
        let now = clock.now_ns();
        if n == 0 {
            local.empty_polls += 1;
            udp.maybe_flush(now);
            if local.empty_polls % IDLE_PUBLISH_EVERY == 0 {
                counters.publish(&local);
                udp_counters.publish(udp.counters());
            }
            continue;
        }
        for i in 0..PREFETCH_AHEAD.min(n) {
            burst.prefetch(i);
        }
        for i in 0..n {
            burst.prefetch(i + PREFETCH_AHEAD);
            let packet = burst.packet(i);
            local.chained += u64::from(burst.is_chained(i));
            let c = classify(packet);
            local.count(&c, packet.len());
            if let Frame::Ipv4Udp { src, dst_port, payload, .. } = c.frame {
                udp.on_datagram(src, dst_port, payload, now);
            }
        }
        udp.maybe_flush(now);
        local.rx_bursts += 1;
        counters.publish(&local);
        udp_counters.publish(udp.counters());
    }
    burst.clear();
    udp.flush();
    counters.publish(&local);
    udp_counters.publish(udp.counters());
    0
}
