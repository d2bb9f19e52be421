//! The SSE2 and AVX2 kernels of the structural classifier (x86-64 only).
//!
//! The only `unsafe` of the line-protocol scanner lives here: unaligned vector
//! loads from a slice, and entering a `#[target_feature]` function. A kernel
//! is handed out only by [`sse2`] / [`avx2`] after the runtime feature check,
//! so the safe wrappers below are reachable only on CPUs that have the
//! instructions. Results equal the scalar kernel's bit for bit (property test
//! in `tests.rs`).
#![allow(unsafe_code)]

use std::arch::x86_64::{
    __m128i, __m256i, _mm256_and_si256, _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_movemask_epi8, _mm256_set1_epi8,
    _mm256_setr_epi8, _mm256_setzero_si256, _mm256_shuffle_epi8, _mm256_srli_epi16, _mm_cmpeq_epi8, _mm_loadu_si128,
    _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
};

use super::{BlockMasks, ClassifyFn, BLOCK};

/// The SSE2 kernel, if this CPU has SSE2 (every x86-64 does; checked anyway).
pub(super) fn sse2() -> Option<ClassifyFn> {
    std::arch::is_x86_feature_detected!("sse2").then_some(classify_sse2 as ClassifyFn)
}

/// The AVX2 kernel, if this CPU has AVX2.
pub(super) fn avx2() -> Option<ClassifyFn> {
    std::arch::is_x86_feature_detected!("avx2").then_some(classify_avx2 as ClassifyFn)
}

fn classify_sse2(bytes: &[u8], out: &mut [BlockMasks]) -> usize {
    // SAFETY: this function is private and only handed out by `sse2()`, which
    // checked that the CPU supports SSE2.
    unsafe { classify_blocks_sse2(bytes, out) }
}

fn classify_avx2(bytes: &[u8], out: &mut [BlockMasks]) -> usize {
    // SAFETY: this function is private and only handed out by `avx2()`, which
    // checked that the CPU supports AVX2.
    unsafe { classify_blocks_avx2(bytes, out) }
}

/// Full blocks straight from the slice; a short tail is copied into a zeroed
/// block first (so nothing past `bytes` is read) and its padding bits cleared.
macro_rules! classify_blocks {
    ($bytes:ident, $out:ident, $block_fn:ident) => {{
        let mut written = 0;
        let mut chunks = $bytes.chunks_exact(BLOCK);
        for (chunk, slot) in (&mut chunks).zip($out.iter_mut()) {
            if let Ok(block) = <&[u8; BLOCK]>::try_from(chunk) {
                *slot = $block_fn(block);
                written += 1;
            }
        }
        let tail = chunks.remainder();
        if written == $bytes.len() / BLOCK && !tail.is_empty() {
            if let Some(slot) = $out.get_mut(written) {
                let mut padded = [0u8; BLOCK];
                if let Some(head) = padded.get_mut(..tail.len()) {
                    head.copy_from_slice(tail);
                }
                let masks = $block_fn(&padded);
                let keep = (1u64 << tail.len()) - 1; // tail.len() < 64
                *slot = BlockMasks { structural: masks.structural & keep, non_ascii: masks.non_ascii & keep };
                written += 1;
            }
        }
        written
    }};
}

#[target_feature(enable = "sse2")]
fn classify_blocks_sse2(bytes: &[u8], out: &mut [BlockMasks]) -> usize {
    classify_blocks!(bytes, out, sse2_block)
}

#[target_feature(enable = "avx2")]
fn classify_blocks_avx2(bytes: &[u8], out: &mut [BlockMasks]) -> usize {
    classify_blocks!(bytes, out, avx2_block)
}

/// Four 16-byte lanes: structural = (b <= 0x1f) or b in {space , = " \ DEL}.
#[target_feature(enable = "sse2")]
fn sse2_block(block: &[u8; BLOCK]) -> BlockMasks {
    let mut masks = BlockMasks::default();
    for lane in 0..4 {
        // SAFETY: `block` holds 64 bytes and `lane * 16 + 16 <= 64`; the load is unaligned.
        let v: __m128i = unsafe { _mm_loadu_si128(block.as_ptr().add(lane * 16).cast()) };
        let control = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
        let mut hit = control;
        for b in [b' ', b',', b'=', b'"', b'\\', 0x7f] {
            hit = _mm_or_si128(hit, _mm_cmpeq_epi8(v, _mm_set1_epi8(b as i8)));
        }
        let shift = lane * 16;
        masks.structural |= u64::from(_mm_movemask_epi8(hit) as u16) << shift;
        masks.non_ascii |= u64::from(_mm_movemask_epi8(v) as u16) << shift;
    }
    masks
}

/// Two 32-byte lanes, each classified by the simdjson nibble look-up: a byte
/// is structural when `LOW[b & 15] & HIGH[b >> 4] != 0`. Bit 0 = control
/// (high nibble 0 or 1, any low nibble); bit 1 = 0x20 / 0x22 / 0x2c; bit 2 =
/// 0x3d; bit 3 = 0x5c; bit 4 = 0x7f. High nibbles 8-f map to 0 (non-ASCII is
/// never structural).
#[target_feature(enable = "avx2")]
fn avx2_block(block: &[u8; BLOCK]) -> BlockMasks {
    #[rustfmt::skip]
    let low = _mm256_setr_epi8(
        3, 1, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 11, 5, 1, 17,
        3, 1, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 11, 5, 1, 17,
    );
    #[rustfmt::skip]
    let high = _mm256_setr_epi8(
        1, 1, 2, 4, 0, 8, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0,
        1, 1, 2, 4, 0, 8, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0,
    );
    let nibble = _mm256_set1_epi8(0x0f);
    let mut masks = BlockMasks::default();
    for lane in 0..2 {
        // SAFETY: `block` holds 64 bytes and `lane * 32 + 32 <= 64`; the load is unaligned.
        let v: __m256i = unsafe { _mm256_loadu_si256(block.as_ptr().add(lane * 32).cast()) };
        let lo = _mm256_shuffle_epi8(low, _mm256_and_si256(v, nibble));
        let hi = _mm256_shuffle_epi8(high, _mm256_and_si256(_mm256_srli_epi16::<4>(v), nibble));
        let none = _mm256_cmpeq_epi8(_mm256_and_si256(lo, hi), _mm256_setzero_si256());
        let shift = lane * 32;
        masks.structural |= u64::from(!(_mm256_movemask_epi8(none) as u32)) << shift;
        masks.non_ascii |= u64::from(_mm256_movemask_epi8(v) as u32) << shift;
    }
    masks
}
