//! Buffer ownership: in pooled mode the buffers a phase writes to are lent by
//! the worker's [`ConnectionPools`] and given back when idle; unpooled, large
//! buffers are shrunk after a second of idleness.

use super::head::Framing;
use super::{Connection, Phase};
use crate::http::ConnectionPools;

/// Buffers larger than this are shrunk when the connection is idle.
pub(super) const SHRINK_ABOVE: usize = 64 << 10;
/// The buffers a pooled connection borrows, as bits of `Connection::lent`.
const INPUT: u8 = 1;
const DECODED: u8 = 2;
const COMPRESSED: u8 = 4;
const OUTPUT: u8 = 8;
const SCRATCH: u8 = 16;
const ALL_BUFFERS: [u8; 5] = [INPUT, DECODED, COMPRESSED, OUTPUT, SCRATCH];
/// Not a buffer: the gzip/deflate inflater, lent by the inflater pool.
const INFLATER: u8 = 32;
/// Not a buffer: the zstd decoder, lent by its pool.
const ZSTD: u8 = 64;

impl Connection {
    /// The buffers the current phase can write to.
    fn wanted_buffers(&self) -> u8 {
        let mut wanted = INPUT | OUTPUT | SCRATCH;
        if matches!(self.phase, Phase::Body | Phase::Ready | Phase::Dispatched) {
            let chunked = self.head.framing == Framing::Chunked;
            let coding = self.head.coding;
            if chunked || coding.compressed() {
                wanted |= DECODED;
            }
            if chunked && coding.compressed() {
                wanted |= COMPRESSED;
            }
            if coding.inflates() {
                wanted |= INFLATER;
            } else if coding.compressed() {
                wanted |= ZSTD;
            }
        }
        wanted
    }

    /// Pooled mode: a body is waiting for a de-chunk/inflate buffer; call
    /// [`Connection::attach_buffers`] (which resumes it), then offer the
    /// bytes `receive` did not take again.
    pub fn needs_buffers(&self) -> bool {
        self.pooled
            && self.phase == Phase::Body
            && self.wanted_buffers() & !self.lent & (DECODED | COMPRESSED | INFLATER | ZSTD) != 0
    }

    fn buffer_mut(&mut self, bit: u8) -> &mut Vec<u8> {
        match bit {
            INPUT => &mut self.input,
            DECODED => &mut self.decoded,
            COMPRESSED => &mut self.compressed,
            OUTPUT => &mut self.output,
            _ => &mut self.scratch,
        }
    }

    /// Borrows from `pools` the buffers this connection may write to before
    /// the next `return_buffers` (call it before `receive`, `respond`,
    /// `handle_timeout`, ...), and resumes a body that waited for one.
    pub fn attach_buffers(&mut self, pools: &mut ConnectionPools) {
        let missing = self.wanted_buffers() & !self.lent;
        for bit in ALL_BUFFERS {
            if missing & bit != 0 && self.buffer_mut(bit).capacity() == 0 {
                let pool = if bit & (OUTPUT | SCRATCH) != 0 { &mut pools.response } else { &mut pools.body };
                *self.buffer_mut(bit) = pool.take();
                self.lent |= bit;
            }
        }
        if missing & INFLATER != 0 && self.inflater.is_none() {
            self.inflater = Some(pools.inflaters.take());
            self.lent |= INFLATER;
        }
        if missing & ZSTD != 0 && self.zstd.is_none() {
            self.zstd = Some(pools.zstd.take());
            self.lent |= ZSTD;
        }
        if self.phase == Phase::Body {
            self.advance();
        }
    }

    /// Gives back to `pools` the lent buffers that hold nothing needed now:
    /// request buffers between requests, the output once sent, the scratch
    /// space always.
    pub fn return_buffers(&mut self, pools: &mut ConnectionPools) {
        let busy = matches!(self.phase, Phase::Body | Phase::Ready | Phase::Dispatched);
        for bit in ALL_BUFFERS {
            if self.lent & bit == 0 {
                continue;
            }
            let idle = match bit {
                OUTPUT => self.output.is_empty(),
                SCRATCH => true,
                _ => !busy && self.buffer_mut(bit).is_empty(),
            };
            if idle {
                self.give_back(bit, pools);
            }
        }
        if !busy {
            self.give_back_inflater(pools);
        }
    }

    fn give_back_inflater(&mut self, pools: &mut ConnectionPools) {
        if self.lent & INFLATER != 0 {
            if let Some(inflater) = self.inflater.take() {
                pools.inflaters.give(inflater);
            }
            self.lent &= !INFLATER;
        }
        if self.lent & ZSTD != 0 {
            if let Some(zstd) = self.zstd.take() {
                pools.zstd.give(zstd);
            }
            self.lent &= !ZSTD;
        }
    }

    /// Gives every lent buffer back (the connection is closing).
    pub fn release_buffers(&mut self, pools: &mut ConnectionPools) {
        for bit in ALL_BUFFERS {
            if self.lent & bit != 0 {
                self.give_back(bit, pools);
            }
        }
        self.give_back_inflater(pools);
        self.out_pos = 0;
    }

    fn give_back(&mut self, bit: u8, pools: &mut ConnectionPools) {
        let buf = std::mem::take(self.buffer_mut(bit));
        let pool = if bit & (OUTPUT | SCRATCH) != 0 { &mut pools.response } else { &mut pools.body };
        pool.give(buf);
        self.lent &= !bit;
    }

    /// Frees buffers that grew beyond 64 KiB (and the inflater) while no
    /// request is in progress (a no-op otherwise). Called by
    /// [`Connection::handle_timeout`] after a second of idleness.
    pub fn release_memory(&mut self) {
        if !matches!(self.phase, Phase::Head | Phase::Done) {
            return;
        }
        // Lent buffers go back to their pool instead (`return_buffers`).
        for bit in ALL_BUFFERS {
            if self.lent & bit == 0 {
                let v = self.buffer_mut(bit);
                if v.is_empty() && v.capacity() > SHRINK_ABOVE {
                    *v = Vec::new();
                }
            }
        }
        if self.lent & INFLATER == 0 {
            self.inflater = None;
        }
        if self.lent & ZSTD == 0 {
            self.zstd = None;
        }
    }

    /// Whether [`Connection::release_memory`] would free something.
    pub(super) fn holds_large_buffers(&self) -> bool {
        let large = |bit: u8, v: &Vec<u8>| self.lent & bit == 0 && v.is_empty() && v.capacity() > SHRINK_ABOVE;
        (self.inflater.is_some() && self.lent & INFLATER == 0)
            || (self.zstd.is_some() && self.lent & ZSTD == 0)
            || large(INPUT, &self.input)
            || large(OUTPUT, &self.output)
            || large(DECODED, &self.decoded)
            || large(COMPRESSED, &self.compressed)
            || large(SCRATCH, &self.scratch)
    }
}
