//! Recycled byte buffers for HTTP connections, with counters that prove no
//! buffer leaks: a worker's [`ConnectionPools`] lend each connection its
//! request (body) buffers, response buffers and gzip inflaters while it has a request in
//! progress or output to send, and take them back when it is idle or closes
//! ([`Connection::attach_buffers`](super::Connection::attach_buffers) /
//! [`Connection::return_buffers`](super::Connection::return_buffers)).
//! Idle keep-alive connections hold no buffer, and in steady state no buffer
//! is allocated: `allocations` stops growing.
//!
//! Per worker, single-threaded: no lock, no atomic.

use serde::Serialize;

/// The balance every pool keeps: `allocated == in_use + free` at all times.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PoolCounters {
    /// Buffers lent out now.
    pub in_use: u64,
    /// Buffers that exist now (lent or free).
    pub allocated: u64,
    /// Buffers waiting in the pool.
    pub free: u64,
    /// Most buffers ever lent out at once.
    pub high_water: u64,
    /// Buffers ever allocated (flat in steady state).
    pub allocations: u64,
}

impl PoolCounters {
    pub fn balanced(&self) -> bool {
        self.allocated == self.in_use + self.free
    }
}

/// A free list of `Vec<u8>` lent out and given back.
#[derive(Debug)]
pub struct BufferPool {
    free: Vec<Vec<u8>>,
    initial_capacity: usize,
    keep_capacity: usize,
    counters: PoolCounters,
}

impl BufferPool {
    /// New buffers get `initial_capacity`; a returned buffer that grew beyond
    /// `keep_capacity` is freed (one large upload does not pin its memory),
    /// and at most `max_free` buffers wait in the pool (the free list itself
    /// is allocated here, once).
    pub fn new(initial_capacity: usize, keep_capacity: usize, max_free: usize) -> BufferPool {
        BufferPool {
            free: Vec::with_capacity(max_free),
            initial_capacity,
            keep_capacity: keep_capacity.max(initial_capacity),
            counters: PoolCounters::default(),
        }
    }

    /// An empty buffer: a recycled one if any, else a new one.
    pub fn take(&mut self) -> Vec<u8> {
        let buf = match self.free.pop() {
            Some(buf) => buf,
            None => {
                self.counters.allocations += 1;
                self.counters.allocated += 1;
                Vec::with_capacity(self.initial_capacity)
            }
        };
        self.counters.in_use += 1;
        self.counters.high_water = self.counters.high_water.max(self.counters.in_use);
        buf
    }

    /// Takes back a buffer from [`BufferPool::take`] (its content is discarded).
    pub fn give(&mut self, mut buf: Vec<u8>) {
        debug_assert!(self.counters.in_use > 0, "a buffer given back that was never taken");
        self.counters.in_use = self.counters.in_use.saturating_sub(1);
        if buf.capacity() > self.keep_capacity || self.free.len() == self.free.capacity() {
            self.counters.allocated = self.counters.allocated.saturating_sub(1);
            return; // freed
        }
        buf.clear();
        self.free.push(buf);
    }

    pub fn counters(&self) -> PoolCounters {
        PoolCounters { free: self.free.len() as u64, ..self.counters }
    }
}

/// Recycled gzip inflaters (zlib state and window, ~40 KiB each): a
/// connection borrows one for a gzip body only.
pub struct InflaterPool {
    free: Vec<flate2::Decompress>,
    counters: PoolCounters,
}

impl std::fmt::Debug for InflaterPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InflaterPool").field("counters", &self.counters()).finish_non_exhaustive()
    }
}

impl InflaterPool {
    pub fn new(max_free: usize) -> InflaterPool {
        InflaterPool { free: Vec::with_capacity(max_free), counters: PoolCounters::default() }
    }

    pub fn take(&mut self) -> flate2::Decompress {
        let inflater = match self.free.pop() {
            Some(inflater) => inflater,
            None => {
                self.counters.allocations += 1;
                self.counters.allocated += 1;
                flate2::Decompress::new(false)
            }
        };
        self.counters.in_use += 1;
        self.counters.high_water = self.counters.high_water.max(self.counters.in_use);
        inflater
    }

    pub fn give(&mut self, inflater: flate2::Decompress) {
        debug_assert!(self.counters.in_use > 0, "an inflater given back that was never taken");
        self.counters.in_use = self.counters.in_use.saturating_sub(1);
        if self.free.len() == self.free.capacity() {
            self.counters.allocated = self.counters.allocated.saturating_sub(1);
            return;
        }
        self.free.push(inflater);
    }

    pub fn counters(&self) -> PoolCounters {
        PoolCounters { free: self.free.len() as u64, ..self.counters }
    }
}

/// Recycled zstd decoders. Each holds up to a window's memory
/// (8 MiB at most: the decoder refuses larger windows) after use, so
/// few are kept idle.
pub struct ZstdPool {
    free: Vec<zstd::zstd_safe::DCtx<'static>>,
    counters: PoolCounters,
}

impl std::fmt::Debug for ZstdPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZstdPool").field("counters", &self.counters()).finish_non_exhaustive()
    }
}

impl ZstdPool {
    pub fn new(max_free: usize) -> ZstdPool {
        ZstdPool { free: Vec::with_capacity(max_free), counters: PoolCounters::default() }
    }

    pub fn take(&mut self) -> zstd::zstd_safe::DCtx<'static> {
        let decoder = match self.free.pop() {
            Some(decoder) => decoder,
            None => {
                self.counters.allocations += 1;
                self.counters.allocated += 1;
                super::connection::zstd_decoder()
            }
        };
        self.counters.in_use += 1;
        self.counters.high_water = self.counters.high_water.max(self.counters.in_use);
        decoder
    }

    pub fn give(&mut self, decoder: zstd::zstd_safe::DCtx<'static>) {
        debug_assert!(self.counters.in_use > 0, "a zstd decoder given back that was never taken");
        self.counters.in_use = self.counters.in_use.saturating_sub(1);
        if self.free.len() == self.free.capacity() {
            self.counters.allocated = self.counters.allocated.saturating_sub(1);
            return;
        }
        self.free.push(decoder);
    }

    pub fn counters(&self) -> PoolCounters {
        PoolCounters { free: self.free.len() as u64, ..self.counters }
    }
}

/// A worker's pools: request buffers (head + body, de-chunked and decoded
/// bodies), response buffers (output and body formatting), inflaters
/// (gzip, deflate) and zstd decoders.
#[derive(Debug)]
pub struct ConnectionPools {
    pub body: BufferPool,
    pub response: BufferPool,
    pub inflaters: InflaterPool,
    pub zstd: ZstdPool,
}

/// Buffers start at 4 KiB (a typical request or response fits) ...
const INITIAL_CAPACITY: usize = 4 << 10;
/// ... and are kept up to 64 KiB when returned (larger ones are freed).
const KEEP_CAPACITY: usize = 64 << 10;
/// Idle inflaters kept at most (they are large; gzip bodies are rarer).
const MAX_FREE_INFLATERS: usize = 64;
/// Idle zstd decoders kept at most (up to 8 MiB each after a large body).
const MAX_FREE_ZSTD: usize = 4;

impl ConnectionPools {
    /// Pools keeping at most `max_free` idle buffers each.
    pub fn new(max_free: usize) -> ConnectionPools {
        ConnectionPools {
            body: BufferPool::new(INITIAL_CAPACITY, KEEP_CAPACITY, max_free),
            response: BufferPool::new(INITIAL_CAPACITY, KEEP_CAPACITY, max_free),
            inflaters: InflaterPool::new(max_free.min(MAX_FREE_INFLATERS)),
            zstd: ZstdPool::new(max_free.min(MAX_FREE_ZSTD)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_balance_through_take_and_give() {
        let mut pool = BufferPool::new(16, 64, 2);
        let a = pool.take();
        let mut b = pool.take();
        let c = pool.take();
        assert_eq!(pool.counters(), PoolCounters { in_use: 3, allocated: 3, free: 0, high_water: 3, allocations: 3 });
        b.extend_from_slice(&[7; 100]); // grew beyond keep_capacity: freed on return
        pool.give(b);
        pool.give(a);
        pool.give(c);
        let k = pool.counters();
        assert!(k.balanced(), "{k:?}");
        assert_eq!((k.in_use, k.allocated, k.free, k.high_water), (0, 2, 2, 3));
        // Recycled: no new allocation, and the content is gone.
        let again = pool.take();
        assert!(again.is_empty() && again.capacity() >= 16);
        assert_eq!(pool.counters().allocations, 3);
        pool.give(again);
        // A full free list frees the surplus.
        let (x, y, z) = (pool.take(), pool.take(), pool.take());
        for buf in [x, y, z] {
            pool.give(buf);
        }
        let k = pool.counters();
        assert!(k.balanced(), "{k:?}");
        assert_eq!((k.in_use, k.free, k.allocated), (0, 2, 2));
    }
}
