//! Per-worker counters, their aggregation, the 1 Hz stats line and the JSON
//! report.
//!
//! A worker counts into plain integers ([`RxCounters`]) and publishes them
//! once per burst into its own cache-line-aligned block of atomics
//! ([`SharedRxCounters`]) with relaxed stores: one writer, so no atomic
//! read-modify-write is ever needed on the datapath. The main lcore reads
//! the blocks to print and report.

mod exposition;

pub use exposition::{for_each_u64_field, is_gauge, Exposition, MetricKind};

use crate::net::classify::{Classified, Malformed};
use crate::net::FrameClass;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// What one worker saw, as plain counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxCounters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub rx_bursts: u64,
    pub empty_polls: u64,
    pub vlan_tagged: u64,
    /// Multi-segment packets (only the first segment is classified).
    pub chained: u64,
    pub classes: [u64; FrameClass::COUNT],
    pub malformed: [u64; 4],
}

impl RxCounters {
    /// Counts one classified frame of `len` bytes.
    #[inline]
    pub fn count(&mut self, c: &Classified<'_>, len: usize) {
        self.rx_packets += 1;
        self.rx_bytes += len as u64;
        self.vlan_tagged += u64::from(c.vlan_tagged);
        self.classes[c.frame.class() as usize] += 1;
        if let crate::net::Frame::Malformed(reason) = c.frame {
            self.malformed[reason as usize] += 1;
        }
    }

    pub fn add(&mut self, o: &RxCounters) {
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.rx_bursts += o.rx_bursts;
        self.empty_polls += o.empty_polls;
        self.vlan_tagged += o.vlan_tagged;
        self.chained += o.chained;
        for (a, b) in self.classes.iter_mut().zip(o.classes) {
            *a += b;
        }
        for (a, b) in self.malformed.iter_mut().zip(o.malformed) {
            *a += b;
        }
    }

    /// Every received packet is in exactly one class.
    pub fn balances(&self) -> bool {
        self.classes.iter().sum::<u64>() == self.rx_packets
            && self.malformed.iter().sum::<u64>() == self.classes[FrameClass::Malformed as usize]
    }

    pub fn class(&self, c: FrameClass) -> u64 {
        self.classes[c as usize]
    }
}

const FIELDS: usize = 6 + FrameClass::COUNT + 4;

/// A worker's published counters, alone on their cache lines so that
/// workers never share a line (no false sharing).
#[repr(align(128))]
#[derive(Default)]
pub struct SharedRxCounters {
    cells: [AtomicU64; FIELDS],
}

impl SharedRxCounters {
    /// Publishes `c` (called by the owning worker only).
    #[inline]
    pub fn publish(&self, c: &RxCounters) {
        let scalars = [c.rx_packets, c.rx_bytes, c.rx_bursts, c.empty_polls, c.vlan_tagged, c.chained];
        let values = scalars.iter().chain(c.classes.iter()).chain(c.malformed.iter());
        for (cell, v) in self.cells.iter().zip(values) {
            cell.store(*v, Ordering::Relaxed);
        }
    }

    pub fn snapshot(&self) -> RxCounters {
        let v: Vec<u64> = self.cells.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        let mut c = RxCounters {
            rx_packets: v[0],
            rx_bytes: v[1],
            rx_bursts: v[2],
            empty_polls: v[3],
            vlan_tagged: v[4],
            chained: v[5],
            ..Default::default()
        };
        c.classes.copy_from_slice(&v[6..6 + FrameClass::COUNT]);
        c.malformed.copy_from_slice(&v[6 + FrameClass::COUNT..]);
        c
    }
}

/// Packet and bit rates over an interval.
pub fn rates(packets: u64, bytes: u64, seconds: f64) -> (f64, f64) {
    if seconds <= 0.0 {
        return (0.0, 0.0);
    }
    (packets as f64 / seconds / 1e6, bytes as f64 * 8.0 / seconds / 1e9)
}

/// Device-side drops, from the port's own counters.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Dropped {
    /// Frames the NIC dropped because an RX ring was full.
    pub imissed: u64,
    /// Frames dropped for lack of an mbuf.
    pub nombuf: u64,
    /// Frames the NIC reported as erroneous.
    pub ierrors: u64,
}

/// One line per interval: rates and per-class counts of that interval.
pub fn stats_line(elapsed_s: f64, delta: &RxCounters, interval_s: f64, dropped: &Dropped) -> String {
    let (mpps, gbps) = rates(delta.rx_packets, delta.rx_bytes, interval_s);
    let c = |class| delta.class(class);
    format!(
        "[{elapsed_s:7.1}s] rx {mpps:7.3} Mpps {gbps:6.2} Gbps | udp {} tcp {} arp {} v4other {} v6 {} other {} malformed {} | imissed {} nombuf {}",
        c(FrameClass::Ipv4Udp),
        c(FrameClass::Ipv4Tcp),
        c(FrameClass::Arp),
        c(FrameClass::Ipv4Other),
        c(FrameClass::Ipv6),
        c(FrameClass::Other),
        c(FrameClass::Malformed),
        dropped.imissed,
        dropped.nombuf
    )
}

/// The final report of a replay run (`--report FILE.json`).
#[derive(Debug, Serialize)]
pub struct ReplayReport {
    pub duration_s: f64,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub rx_mpps: f64,
    pub rx_gbps: f64,
    pub classes: BTreeMap<&'static str, u64>,
    pub malformed: BTreeMap<&'static str, u64>,
    pub vlan_tagged: u64,
    pub dropped: Dropped,
    pub workers: Vec<WorkerReport>,
    pub port: PortReport,
    pub mbufs: MbufReport,
    pub process: LifecycleReport,
    pub dpdk_version: String,
    /// Present when the UDP ingestion pipeline ran (`replay --config`).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub ingest: Option<IngestReport>,
}

/// What the UDP ingestion pipeline did with the datagrams (`replay --config`).
/// Balances: `records_parsed = records_accepted + records_limited +
/// records_dropped_writer_full` and `records_written = records_accepted`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct IngestReport {
    pub udp_datagrams: u64,
    #[serde(flatten)]
    pub counters: crate::pipeline::UdpCounters,
    pub records_written: u64,
}

impl IngestReport {
    pub fn new(counters: crate::pipeline::UdpCounters, records_written: u64) -> IngestReport {
        IngestReport { udp_datagrams: counters.datagrams(), counters, records_written }
    }

    pub fn balances(&self) -> bool {
        self.counters.balances() && self.records_written == self.counters.records_accepted
    }
}

#[derive(Debug, Serialize)]
pub struct WorkerReport {
    pub lcore: u32,
    pub queue: u16,
    pub rx_packets: u64,
    pub rx_mpps: f64,
    pub rx_bursts: u64,
    pub empty_polls: u64,
}

#[derive(Debug, Serialize)]
pub struct PortReport {
    pub id: u16,
    pub name: String,
    pub queues: u16,
    pub rss: bool,
    pub ipackets: u64,
    pub ibytes: u64,
}

/// Mbuf accounting of a run: the pool's in-use count at three moments.
/// Nothing leaked when `in_use_at_stop == idle_baseline` (workers stopped,
/// their bursts freed, TX completions reclaimed; up to `tx_ring_may_hold`
/// more with a driver that cannot reclaim on demand) and
/// `in_use_after_close` is 0 (the port gave back its rings).
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub struct MbufReport {
    pub pool_size: u32,
    /// In use with the port started and idle, before the workers ran
    /// (RX rings the driver filled, copies a PMD keeps).
    pub idle_baseline: u32,
    /// In use after the workers stopped, port still started.
    pub in_use_at_stop: u32,
    /// In use after the port was stopped and closed.
    pub in_use_after_close: u32,
    /// How many mbufs may still sit in TX rings at stop because the driver
    /// cannot free completed transmissions on demand (no
    /// `rte_eth_tx_done_cleanup`, e.g. virtio, which frees them only when its
    /// ring runs full): those queues' TX descriptors; 0 with drivers that can.
    /// The close (`in_use_after_close == 0`) is then the exact check.
    pub tx_ring_may_hold: u32,
}

impl MbufReport {
    pub fn balances(&self) -> bool {
        let held_in_tx_rings = self.in_use_at_stop.checked_sub(self.idle_baseline);
        held_in_tx_rings.is_some_and(|n| n <= self.tx_ring_may_hold) && self.in_use_after_close == 0
    }
}

/// Threads and open file descriptors of this process, from /proc.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct ProcessResources {
    pub threads: u32,
    pub fds: u32,
}

impl ProcessResources {
    /// Reads /proc/self (zeros where /proc is unavailable).
    pub fn now() -> ProcessResources {
        let count = |dir: &str| std::fs::read_dir(dir).map_or(0, |d| d.count() as u32);
        ProcessResources { threads: count("/proc/self/task"), fds: count("/proc/self/fd") }
    }
}

/// Threads and descriptors once the port is started, before any worker,
/// writer or shipper exists; and again after all of them stopped and the
/// port was closed. Every thread the run started was joined when the thread
/// counts are equal, and every file it opened was closed when no descriptor
/// was added (closing the port may also close descriptors the driver opened
/// earlier, e.g. at probe; a driver may open some after start, e.g. memif on
/// connect, which is why the exit count is taken after the close).
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub struct LifecycleReport {
    pub at_start: ProcessResources,
    pub at_exit: ProcessResources,
}

impl LifecycleReport {
    pub fn balances(&self) -> bool {
        self.at_exit.threads == self.at_start.threads && self.at_exit.fds <= self.at_start.fds
    }
}

impl ReplayReport {
    pub fn class_map(c: &RxCounters) -> BTreeMap<&'static str, u64> {
        FrameClass::ALL.iter().map(|k| (k.name(), c.class(*k))).collect()
    }

    pub fn malformed_map(c: &RxCounters) -> BTreeMap<&'static str, u64> {
        Malformed::ALL.iter().map(|k| (k.name(), c.malformed[*k as usize])).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::classify;

    #[test]
    fn publish_and_snapshot_round_trip() {
        let mut c = RxCounters::default();
        c.count(&classify(&[0u8; 3]), 3);
        c.count(&classify(&[0u8; 60]), 60);
        c.rx_bursts = 7;
        let shared = SharedRxCounters::default();
        shared.publish(&c);
        let s = shared.snapshot();
        assert_eq!(s, c);
        assert!(s.balances());
        assert_eq!(s.class(FrameClass::Malformed), 1);
        assert_eq!(s.malformed[Malformed::Runt as usize], 1);
        assert_eq!(s.class(FrameClass::Other), 1);
    }

    #[test]
    fn mbuf_and_process_balances() {
        let m = MbufReport {
            pool_size: 10,
            idle_baseline: 4,
            in_use_at_stop: 4,
            in_use_after_close: 0,
            tx_ring_may_hold: 0,
        };
        assert!(m.balances());
        assert!(!MbufReport { in_use_at_stop: 5, ..m }.balances());
        assert!(!MbufReport { in_use_after_close: 1, ..m }.balances());
        assert!(!MbufReport { in_use_at_stop: 3, ..m }.balances());
        // A driver that keeps sent mbufs in its TX ring until the close.
        let virtio = MbufReport { tx_ring_may_hold: 256, ..m };
        assert!(MbufReport { in_use_at_stop: 9, ..virtio }.balances());
        assert!(!MbufReport { in_use_at_stop: 4 + 257, ..virtio }.balances());
        assert!(!MbufReport { in_use_at_stop: 9, in_use_after_close: 1, ..virtio }.balances());
        let a = ProcessResources { threads: 3, fds: 9 };
        assert!(LifecycleReport { at_start: a, at_exit: a }.balances());
        assert!(!LifecycleReport { at_start: a, at_exit: ProcessResources { threads: 4, fds: 9 } }.balances());
        assert!(!LifecycleReport { at_start: a, at_exit: ProcessResources { threads: 3, fds: 10 } }.balances());
        assert!(LifecycleReport { at_start: a, at_exit: ProcessResources { threads: 3, fds: 8 } }.balances());
        assert!(ProcessResources::now().threads >= 1);
    }

    #[test]
    fn rates_are_per_second() {
        let (mpps, gbps) = rates(2_000_000, 250_000_000, 2.0);
        assert!((mpps - 1.0).abs() < 1e-9);
        assert!((gbps - 1.0).abs() < 1e-9);
        assert_eq!(rates(5, 5, 0.0), (0.0, 0.0));
    }
}

/// Hands a worker's counters (any `Copy` struct) to the main lcore without
/// ever blocking the worker: the worker `try_lock`s at most once per publish
/// interval and skips a turn if the reader holds the lock; the reader locks
/// briefly once per stats tick. Not on the per-packet path.
#[derive(Default)]
pub struct Published<T: Copy + Default>(std::sync::Mutex<T>);

impl<T: Copy + Default> Published<T> {
    /// Worker side: never waits.
    pub fn publish(&self, value: &T) {
        if let Ok(mut slot) = self.0.try_lock() {
            *slot = *value;
        }
    }

    /// Worker side at exit: the last value must land.
    pub fn publish_final(&self, value: &T) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = *value;
    }

    pub fn snapshot(&self) -> T {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
