//! The structural-byte classifier of line protocol: which bytes of a body a
//! line-protocol parser has to stop at, found 64 bytes at a time.
//!
//! This module owns the definition of a *structural* byte ([`is_structural`]),
//! the per-64-byte-block masks ([`BlockMasks`]), the choice of kernel
//! ([`SimdLevel`], detected once per process) and the [`StructuralCursor`] that
//! walks a whole body's structural positions in order. The SIMD kernels live in
//! the fenced child module `x86` (the only `unsafe` here); this file is safe code
//! and holds the portable scalar kernel every SIMD level must agree with (a
//! property test holds them equal on every length and alignment).
//!
//! Structural bytes are what ends or changes a line-protocol element: space,
//! comma, `=`, `"`, backslash, newline, and every byte the reference refuses in
//! names (0x00-0x1f, which includes tab, `\r` and `\n`, and 0x7f). Everything
//! else (letters, digits, `.`, `-`, UTF-8 continuation bytes...) is skipped many
//! bytes per instruction. A second mask marks non-ASCII bytes, so a parser can
//! validate UTF-8 only for the lines that have any.

#[cfg(target_arch = "x86_64")]
mod x86;

use std::sync::OnceLock;

/// Bytes per classified block (one bit per byte in a `u64`).
pub const BLOCK: usize = 64;

/// The line-protocol structural set (see the module comment).
#[inline]
pub const fn is_structural(b: u8) -> bool {
    matches!(b, b' ' | b',' | b'=' | b'"' | b'\\' | 0x7f) || b < 0x20
}

/// The masks of one 64-byte block: bit `i` describes byte `i` of the block.
/// Bits past the end of a short (tail) block are zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockMasks {
    /// Bytes for which [`is_structural`] holds.
    pub structural: u64,
    /// Bytes >= 0x80 (part of a multi-byte UTF-8 sequence, or invalid).
    pub non_ascii: u64,
}

/// A kernel: classifies `bytes` into one [`BlockMasks`] per 64-byte block, at
/// most `out.len()` blocks, and returns how many it wrote. The last block may be
/// short; it is never read past the end of `bytes`.
pub(crate) type ClassifyFn = fn(bytes: &[u8], out: &mut [BlockMasks]) -> usize;

/// Which kernel classifies blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SimdLevel {
    /// Portable: one table look-up per byte (the reference the others must equal).
    Scalar,
    /// x86-64 SSE2: four 16-byte compares per block.
    Sse2,
    /// x86-64 AVX2: two 32-byte nibble look-ups per block.
    Avx2,
}

impl SimdLevel {
    /// The fastest level this CPU supports, detected once per process.
    pub fn detected() -> SimdLevel {
        static DETECTED: OnceLock<SimdLevel> = OnceLock::new();
        *DETECTED.get_or_init(|| {
            SimdLevel::ALL.iter().rev().copied().find(|level| level.kernel().is_some()).unwrap_or(SimdLevel::Scalar)
        })
    }

    /// Every level, slowest first.
    pub const ALL: [SimdLevel; 3] = [SimdLevel::Scalar, SimdLevel::Sse2, SimdLevel::Avx2];

    /// The levels this CPU can run (always includes [`SimdLevel::Scalar`]).
    pub fn available() -> impl Iterator<Item = SimdLevel> {
        SimdLevel::ALL.into_iter().filter(|level| level.kernel().is_some())
    }

    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Scalar => "scalar",
            SimdLevel::Sse2 => "sse2",
            SimdLevel::Avx2 => "avx2",
        }
    }

    /// This level's kernel, if the CPU has the instructions (runtime check).
    fn kernel(self) -> Option<ClassifyFn> {
        match self {
            SimdLevel::Scalar => Some(classify_scalar),
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Sse2 => x86::sse2(),
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx2 => x86::avx2(),
            #[cfg(not(target_arch = "x86_64"))]
            SimdLevel::Sse2 | SimdLevel::Avx2 => None,
        }
    }
}

/// A chosen kernel: the feature check happens once, in the constructor; each
/// call afterwards is a plain indirect call per window of blocks.
#[derive(Clone, Copy)]
pub struct Classifier {
    level: SimdLevel,
    kernel: ClassifyFn,
}

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classifier").field("level", &self.level).finish()
    }
}

impl Default for Classifier {
    fn default() -> Self {
        Classifier::new()
    }
}

impl Classifier {
    /// The fastest kernel this CPU supports.
    pub fn new() -> Classifier {
        Classifier::with_level(SimdLevel::detected()).unwrap_or(Classifier::scalar())
    }

    /// The portable kernel.
    pub fn scalar() -> Classifier {
        Classifier { level: SimdLevel::Scalar, kernel: classify_scalar }
    }

    /// A specific kernel; `None` if this CPU cannot run it.
    pub fn with_level(level: SimdLevel) -> Option<Classifier> {
        level.kernel().map(|kernel| Classifier { level, kernel })
    }

    pub fn level(&self) -> SimdLevel {
        self.level
    }

    /// Classifies `bytes` into `out`, one entry per 64-byte block (the last one
    /// possibly short), and returns the number of entries written: at most
    /// `out.len()`, covering `min(bytes.len(), 64 * out.len())` bytes.
    #[inline]
    pub fn classify(&self, bytes: &[u8], out: &mut [BlockMasks]) -> usize {
        (self.kernel)(bytes, out)
    }
}

/// For each byte value: bit 0 = structural. A table rather than the `matches!`
/// so the scalar kernel is one load per byte.
static SCALAR_CLASS: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = is_structural(b as u8) as u8;
        b += 1;
    }
    table
};

/// The masks of up to 64 bytes, one byte at a time.
fn scalar_block(block: &[u8]) -> BlockMasks {
    let mut masks = BlockMasks::default();
    for (i, &b) in block.iter().take(BLOCK).enumerate() {
        masks.structural |= u64::from(SCALAR_CLASS[usize::from(b)]) << i;
        masks.non_ascii |= u64::from(b >> 7) << i;
    }
    masks
}

fn classify_scalar(bytes: &[u8], out: &mut [BlockMasks]) -> usize {
    let mut written = 0;
    for (block, slot) in bytes.chunks(BLOCK).zip(out.iter_mut()) {
        *slot = scalar_block(block);
        written += 1;
    }
    written
}

/// Blocks classified per kernel call: one indirect call per 1 KiB of body, and
/// little classified ahead of where a short datagram ends.
const WINDOW_BLOCKS: usize = 16;

/// Walks the structural positions of one body in increasing order.
///
/// Positions are asked for with [`next_from`](Self::next_from) ("the first
/// structural byte at or after `from`"), so a parser can jump over bytes it has
/// consumed itself (an escaped character, a quoted string) without any state
/// to undo. Blocks are classified a window at a time as the walk moves forward;
/// asking for a position behind the window reclassifies (correct, just slower:
/// parsers only move forward).
#[derive(Debug)]
pub struct StructuralCursor<'a> {
    body: &'a [u8],
    classifier: Classifier,
    window: [BlockMasks; WINDOW_BLOCKS],
    /// Body offset of `window[0]` (a multiple of 64).
    window_start: usize,
    /// Bytes of the body the window covers (`0` before the first refill).
    window_len: usize,
    /// One past the last non-ASCII byte in any block classified so far.
    non_ascii_end: usize,
    /// The block of the last answer, cached: most calls land in it.
    block_start: usize,
    block_mask: u64,
}

impl<'a> StructuralCursor<'a> {
    pub fn new(body: &'a [u8], classifier: Classifier) -> StructuralCursor<'a> {
        StructuralCursor {
            body,
            classifier,
            window: [BlockMasks::default(); WINDOW_BLOCKS],
            window_start: 0,
            window_len: 0,
            non_ascii_end: 0,
            block_start: usize::MAX,
            block_mask: 0,
        }
    }

    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// The first structural position `>= from`, or `body.len()` if none.
    #[inline(always)]
    pub fn next_from(&mut self, from: usize) -> usize {
        let rel = from.wrapping_sub(self.block_start);
        if rel < BLOCK {
            let mask = self.block_mask >> rel;
            if mask != 0 {
                return from + mask.trailing_zeros() as usize;
            }
        }
        self.next_from_other_block(from)
    }

    /// [`next_from`](Self::next_from) past the cached block: later blocks of the
    /// window, then refills.
    #[inline(never)]
    fn next_from_other_block(&mut self, mut from: usize) -> usize {
        loop {
            let rel = from.wrapping_sub(self.window_start);
            if rel < self.window_len {
                let bit = rel % BLOCK;
                self.block_start = from - bit;
                self.block_mask = self.window.get(rel / BLOCK).map_or(0, |m| m.structural);
                let mask = self.block_mask >> bit;
                if mask != 0 {
                    return from + mask.trailing_zeros() as usize;
                }
                from += BLOCK - bit;
                continue;
            }
            if from >= self.body.len() {
                return self.body.len();
            }
            self.refill(from);
        }
    }

    /// Classifies the window of blocks that starts with the block holding `from`.
    #[inline(never)]
    fn refill(&mut self, from: usize) {
        let start = from - from % BLOCK;
        let rest = self.body.get(start..).unwrap_or(&[]);
        let blocks = self.classifier.classify(rest, &mut self.window);
        self.window_start = start;
        self.window_len = rest.len().min(blocks * BLOCK);
        for (i, masks) in self.window.iter().enumerate().take(blocks) {
            if masks.non_ascii != 0 {
                self.non_ascii_end = start + i * BLOCK + BLOCK - masks.non_ascii.leading_zeros() as usize;
            }
        }
    }

    /// False only if no byte at or after `from`, among the bytes classified so
    /// far, is non-ASCII. Every byte before the last position returned by
    /// [`next_from`](Self::next_from) has been classified, so for a range that
    /// ends there `false` proves the range is ASCII (`true` may come from a
    /// non-ASCII byte further on: check the range itself then).
    #[inline]
    pub fn may_have_non_ascii_from(&self, from: usize) -> bool {
        self.non_ascii_end > from
    }

    /// All structural positions from `from` on, in order.
    pub fn positions(self, from: usize) -> StructuralPositions<'a> {
        StructuralPositions { cursor: self, next: from }
    }
}

/// Iterator over structural positions (see [`StructuralCursor::positions`]).
#[derive(Debug)]
pub struct StructuralPositions<'a> {
    cursor: StructuralCursor<'a>,
    next: usize,
}

impl Iterator for StructuralPositions<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let pos = self.cursor.next_from(self.next);
        if pos >= self.cursor.body.len() {
            self.next = pos;
            return None;
        }
        self.next = pos + 1;
        Some(pos)
    }
}

#[cfg(test)]
mod tests;
