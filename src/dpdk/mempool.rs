//! Packet-buffer pools (`rte_pktmbuf_pool_create`).

use super::eal::Eal;
use super::error::DpdkError;
use super::mbuf::Mbuf;
use std::ffi::CString;
use std::ptr::NonNull;

/// An mbuf pool. Thread-safe in DPDK (lockless ring plus per-lcore caches),
/// hence `Send + Sync`.
pub struct Mempool {
    raw: NonNull<dpdk_sys::rte_mempool>,
    size: u32,
    _eal: Eal,
}

// SAFETY: DPDK mempool get/put operations are multi-producer/multi-consumer
// safe; the pointer itself is only freed in Drop, when no one else has it.
unsafe impl Send for Mempool {}
// SAFETY: as above; all shared operations are thread-safe in DPDK.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// Creates a pool of `size` mbufs with `data_room` bytes each (including
    /// headroom), with a per-lcore cache of `cache` mbufs.
    pub fn new(eal: &Eal, name: &str, size: u32, cache: u32, data_room: u16) -> Result<Mempool, DpdkError> {
        if size == 0 {
            return Err(DpdkError::Invalid("mbuf pool size must be > 0".into()));
        }
        let cname = CString::new(name).map_err(|_| DpdkError::Invalid(format!("pool name {name:?} contains NUL")))?;
        let cache = cache.min(512).min(size / 2);
        // SAFETY: the EAL is initialised (we hold it); the name is a valid C
        // string; socket -1 (SOCKET_ID_ANY) lets DPDK pick.
        let raw = unsafe { dpdk_sys::rte_pktmbuf_pool_create(cname.as_ptr(), size, cache, 0, data_room, -1) };
        let raw = NonNull::new(raw).ok_or_else(|| DpdkError::from_errno("rte_pktmbuf_pool_create"))?;
        Ok(Mempool { raw, size, _eal: eal.clone() })
    }

    /// Default data room: 2 KiB of packet data plus DPDK's headroom.
    pub const DEFAULT_DATA_ROOM: u16 = dpdk_sys::RTE_MBUF_DEFAULT_BUF_SIZE as u16;

    pub fn size(&self) -> u32 {
        self.size
    }

    /// Mbufs currently taken out of the pool (in queues, bursts, or leaked).
    pub fn in_use(&self) -> u32 {
        // SAFETY: the pool is alive; the call only reads counters.
        unsafe { dpdk_sys::rte_mempool_in_use_count(self.raw.as_ptr()) }
    }

    /// Mbufs available in the pool (ring plus caches).
    pub fn available(&self) -> u32 {
        // SAFETY: as in_use.
        unsafe { dpdk_sys::rte_mempool_avail_count(self.raw.as_ptr()) }
    }

    /// Takes one mbuf (reset, empty) from the pool; `None` when exhausted.
    pub fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: the pool is alive; a non-null result is an mbuf we own.
        let raw = unsafe { dpdk_sys::ms_pktmbuf_alloc(self.raw.as_ptr()) };
        NonNull::new(raw).map(Mbuf::from_owned)
    }

    pub(crate) fn as_ptr(&self) -> *mut dpdk_sys::rte_mempool {
        self.raw.as_ptr()
    }
}

impl Drop for Mempool {
    fn drop(&mut self) {
        // SAFETY: ports that reference the pool hold an Arc<Mempool>, so they
        // are gone; mbufs outside the pool at this point would be a leak the
        // counters report, not a use-after-free, because the pool's memory is
        // only returned to the EAL heap, which outlives this call.
        unsafe { dpdk_sys::rte_mempool_free(self.raw.as_ptr()) };
    }
}
