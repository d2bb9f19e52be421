//! The only safe layer over `dpdk-sys`: EAL start-up and clean-up, mbuf pools,
//! owned mbufs and bursts, ports with their RX/TX queues, and launching
//! workers on lcores. Every other module is safe code; every `unsafe` block in
//! here carries a `// SAFETY:` comment saying why it holds.
//!
//! Lifetimes: [`Eal`] is a shared guard; pools and ports hold a clone of it,
//! so `rte_eal_cleanup` runs only after the last port and pool is gone.
#![allow(unsafe_code)]

mod eal;
mod error;
mod lcore;
mod mbuf;
mod mempool;
mod port;
mod ring_pair;

pub use eal::Eal;
pub use error::DpdkError;
pub use lcore::{current_lcore, LcoreJob};
pub use mbuf::{Mbuf, RxBurst, TxBurst, BURST_SIZE};
pub use mempool::Mempool;
pub use port::{Link, Port, PortConfig, PortStats, RxQueue, TxQueue};
pub use ring_pair::ring_port_pair;

/// Hints the CPU to start loading the cache line of `value` (a limiter slot,
/// a table entry) without waiting for it: unlike a plain load, a prefetch
/// never holds up the instructions after it.
#[inline(always)]
pub fn prefetch<T>(value: &T) {
    let p = value as *const T as *const i8;
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetch is a hint and never faults; `p` is a valid reference anyway.
    unsafe {
        std::arch::x86_64::_mm_prefetch(p, std::arch::x86_64::_MM_HINT_T0)
    };
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: as above, through DPDK's rte_prefetch0.
    unsafe {
        dpdk_sys::ms_prefetch0(p as *const _)
    };
}

/// The DPDK version the binary runs against, e.g. "DPDK 22.11.11".
pub fn version() -> String {
    // SAFETY: rte_version returns a pointer to a static NUL-terminated string.
    unsafe { std::ffi::CStr::from_ptr(dpdk_sys::ms_version()) }.to_string_lossy().into_owned()
}

/// Reads the time-stamp counter; cheap, for per-worker loop accounting only.
#[inline]
pub fn rdtsc() -> u64 {
    // SAFETY: rdtsc has no preconditions.
    unsafe { dpdk_sys::ms_rdtsc() }
}
