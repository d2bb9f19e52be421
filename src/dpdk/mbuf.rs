//! Owned mbufs and fixed-size bursts of them. Whatever is dropped is freed
//! back to its pool: an mbuf cannot leak through an early return.

use std::ptr::{self, NonNull};

/// Packets per rx/tx burst.
pub const BURST_SIZE: usize = 32;

/// One owned packet buffer (single segment). Dropping it frees it.
pub struct Mbuf(NonNull<dpdk_sys::rte_mbuf>);

// SAFETY: an Mbuf is uniquely owned; DPDK allows freeing it from any thread.
unsafe impl Send for Mbuf {}

impl Mbuf {
    pub(crate) fn from_owned(raw: NonNull<dpdk_sys::rte_mbuf>) -> Mbuf {
        Mbuf(raw)
    }

    pub(crate) fn into_raw(self) -> *mut dpdk_sys::rte_mbuf {
        let raw = self.0.as_ptr();
        std::mem::forget(self);
        raw
    }

    /// The packet bytes of the first segment.
    pub fn data(&self) -> &[u8] {
        // SAFETY: we own the mbuf; mtod points at data_len initialised bytes.
        unsafe { segment(self.0.as_ptr()) }
    }

    pub fn data_mut(&mut self) -> &mut [u8] {
        let raw = self.0.as_ptr();
        // SAFETY: as data(), and &mut self gives exclusive access.
        unsafe {
            std::slice::from_raw_parts_mut(dpdk_sys::ms_pktmbuf_data(raw), dpdk_sys::ms_pktmbuf_data_len(raw) as usize)
        }
    }

    pub fn len(&self) -> usize {
        // SAFETY: we own the mbuf.
        unsafe { dpdk_sys::ms_pktmbuf_pkt_len(self.0.as_ptr()) as usize }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Grows the packet by `len` bytes and returns them to fill in; `None`
    /// when the buffer has no room.
    pub fn append(&mut self, len: usize) -> Option<&mut [u8]> {
        let len16 = u16::try_from(len).ok()?;
        // SAFETY: we own the mbuf; append returns null when there is no room.
        let p = unsafe { dpdk_sys::ms_pktmbuf_append(self.0.as_ptr(), len16) };
        // SAFETY: a non-null result points at len freshly reserved bytes we own.
        (!p.is_null()).then(|| unsafe { std::slice::from_raw_parts_mut(p, len) })
    }

    /// Room left after the data.
    pub fn tailroom(&self) -> usize {
        // SAFETY: we own the mbuf.
        unsafe { dpdk_sys::ms_pktmbuf_tailroom(self.0.as_ptr()) as usize }
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: we own the mbuf and give it back exactly once.
        unsafe { dpdk_sys::ms_pktmbuf_free(self.0.as_ptr()) };
    }
}

/// The first segment's bytes, read straight from the mbuf header (bindgen's
/// layout of `struct rte_mbuf`, checked by dpdk-sys's layout tests) rather
/// than through a shim call: this runs for every packet.
///
/// # Safety
/// `raw` must be a valid mbuf that outlives the returned slice.
#[inline]
unsafe fn segment<'a>(raw: *mut dpdk_sys::rte_mbuf) -> &'a [u8] {
    let m = &*raw;
    std::slice::from_raw_parts((m.buf_addr as *const u8).add(usize::from(m.data_off)), usize::from(m.data_len))
}

/// Up to [`BURST_SIZE`] received mbufs, owned. Read packets in place, then
/// `clear()` (one bulk free) before the next rx; drop frees what is left.
pub struct RxBurst {
    mbufs: [*mut dpdk_sys::rte_mbuf; BURST_SIZE],
    len: usize,
}

// SAFETY: the burst uniquely owns the mbufs it holds.
unsafe impl Send for RxBurst {}

impl Default for RxBurst {
    fn default() -> Self {
        RxBurst { mbufs: [ptr::null_mut(); BURST_SIZE], len: 0 }
    }
}

impl RxBurst {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Packet `i` (first segment), `i < len()`; empty if it was taken.
    #[inline]
    pub fn packet(&self, i: usize) -> &[u8] {
        assert!(i < self.len, "packet index out of the burst");
        let raw = self.mbufs[i];
        if raw.is_null() {
            return &[];
        }
        // SAFETY: non-null slots below len hold valid mbufs owned by this burst.
        unsafe { segment(raw) }
    }

    /// Whether packet `i` spans several segments (only the first is visible).
    #[inline]
    pub fn is_chained(&self, i: usize) -> bool {
        assert!(i < self.len, "packet index out of the burst");
        // SAFETY: as in packet(); null (taken) slots read as not chained.
        unsafe { self.mbufs[i].as_ref() }.is_some_and(|m| m.nb_segs > 1)
    }

    /// Hints the CPU to fetch packet `i`'s first cache line.
    #[inline]
    pub fn prefetch(&self, i: usize) {
        if i < self.len {
            // SAFETY: slot i holds a valid mbuf (or null if taken: skipped).
            if let Some(m) = unsafe { self.mbufs[i].as_ref() } {
                let p = m.buf_addr as *const u8;
                #[cfg(target_arch = "x86_64")]
                // SAFETY: prefetch is a hint and never faults, whatever the address.
                unsafe {
                    std::arch::x86_64::_mm_prefetch(
                        p.wrapping_add(usize::from(m.data_off)) as *const i8,
                        std::arch::x86_64::_MM_HINT_T0,
                    )
                };
                #[cfg(not(target_arch = "x86_64"))]
                // SAFETY: as above, through DPDK's rte_prefetch0.
                unsafe {
                    dpdk_sys::ms_prefetch0(p.wrapping_add(usize::from(m.data_off)) as *const _)
                };
            }
        }
    }

    /// Takes packet `i` out as an owned mbuf (the slot is emptied; `clear`
    /// skips it).
    pub fn take(&mut self, i: usize) -> Option<Mbuf> {
        if i >= self.len {
            return None;
        }
        let raw = std::mem::replace(&mut self.mbufs[i], ptr::null_mut());
        NonNull::new(raw).map(Mbuf::from_owned)
    }

    /// Frees every mbuf still in the burst (one bulk call) and empties it.
    pub fn clear(&mut self) {
        if self.len > 0 {
            // SAFETY: slots below len hold mbufs we own or null (taken);
            // rte_pktmbuf_free_bulk skips null entries.
            unsafe { dpdk_sys::ms_pktmbuf_free_bulk(self.mbufs.as_mut_ptr(), self.len as u32) };
            self.len = 0;
        }
    }

    pub(crate) fn fill_with(&mut self, rx: impl FnOnce(*mut *mut dpdk_sys::rte_mbuf, u16) -> u16) -> usize {
        self.clear();
        let n = rx(self.mbufs.as_mut_ptr(), BURST_SIZE as u16) as usize;
        self.len = n.min(BURST_SIZE);
        self.len
    }
}

impl Drop for RxBurst {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Up to [`BURST_SIZE`] mbufs waiting to be transmitted. What the NIC did
/// not take stays queued for the next try; drop frees what is left.
pub struct TxBurst {
    mbufs: [*mut dpdk_sys::rte_mbuf; BURST_SIZE],
    len: usize,
}

// SAFETY: the burst uniquely owns the mbufs it holds.
unsafe impl Send for TxBurst {}

impl Default for TxBurst {
    fn default() -> Self {
        TxBurst { mbufs: [ptr::null_mut(); BURST_SIZE], len: 0 }
    }
}

impl TxBurst {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_full(&self) -> bool {
        self.len == BURST_SIZE
    }

    /// Queues `m`; gives it back when the burst is full.
    pub fn push(&mut self, m: Mbuf) -> Result<(), Mbuf> {
        if self.is_full() {
            return Err(m);
        }
        self.mbufs[self.len] = m.into_raw();
        self.len += 1;
        Ok(())
    }

    /// Hands the queued mbufs to `tx`; the ones it did not take move to the
    /// front and stay queued. Returns how many were sent.
    pub(crate) fn drain_with(&mut self, tx: impl FnOnce(*mut *mut dpdk_sys::rte_mbuf, u16) -> u16) -> usize {
        if self.len == 0 {
            return 0;
        }
        let sent = (tx(self.mbufs.as_mut_ptr(), self.len as u16) as usize).min(self.len);
        self.mbufs.copy_within(sent..self.len, 0);
        self.len -= sent;
        sent
    }

    /// Frees every queued mbuf (e.g. when the port is gone); returns how many.
    pub fn drop_all(&mut self) -> usize {
        let n = self.len;
        if n > 0 {
            // SAFETY: slots below len hold mbufs we own.
            unsafe { dpdk_sys::ms_pktmbuf_free_bulk(self.mbufs.as_mut_ptr(), n as u32) };
            self.len = 0;
        }
        n
    }
}

impl Drop for TxBurst {
    fn drop(&mut self) {
        self.drop_all();
    }
}
