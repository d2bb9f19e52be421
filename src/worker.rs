//! The poll-mode loops that run on worker lcores.
//!
//! A worker owns one RX/TX queue pair and its own counters; it shares nothing
//! mutable with other workers. Each iteration takes at most one burst, so the
//! work between two checks of the stop flag is bounded.

use crate::dpdk::{RxBurst, RxQueue};
use crate::net::classify;
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
