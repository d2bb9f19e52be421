//! The request body: Content-Length bodies stay in the input, chunked ones are
//! de-chunked and compressed ones (gzip, deflate, zstd) decoded into the body
//! buffer, all capped at the body limit and reserved from the body budget:
//! the decoders write into capacity reserved step by step, so a
//! decompression bomb stops at the limit (413) without holding more.

use super::head::{trim, Coding, Framing, Span};
use super::{reserve_bounded, BodyAt, Connection};
use crate::http::{BodyBudget, HttpError};

/// Decoder output grows in steps of this (until the body limit).
const INFLATE_STEP: usize = 32 << 10;

/// Largest zstd window accepted (2^23 = 8 MiB: what zstd's levels up to 19
/// and Go's klauspost encoder, used by VictoriaMetrics' vmagent, produce).
/// The decoder holds a window's worth of memory; a frame asking for more is
/// refused (400) rather than allocated.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 23;

/// A zstd decoder with the window bound set.
pub fn zstd_decoder() -> zstd::zstd_safe::DCtx<'static> {
    let mut ctx = zstd::zstd_safe::DCtx::create();
    // Only fails for an out-of-range value, which this constant is not.
    let _ = ctx.set_parameter(zstd::zstd_safe::DParameter::WindowLogMax(ZSTD_WINDOW_LOG_MAX));
    ctx
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ChunkState {
    /// Expecting `hex-size [;ext...] CRLF`.
    Size,
    /// This many data bytes of the current chunk remain.
    Data(usize),
    /// Expecting the CRLF after chunk data.
    DataEnd,
    /// Expecting trailer fields or the final CRLF.
    Trailer,
}

impl Connection {
    /// Reserves `n` more body bytes from the budget, if there is one.
    pub(super) fn reserve_body(&mut self, n: usize) -> Result<(), HttpError> {
        reserve(self.budget.as_deref(), &mut self.reserved, n)
    }

    pub(super) fn release_body(&mut self) {
        if let Some(budget) = &self.budget {
            if self.reserved > 0 {
                budget.release(self.reserved);
            }
        }
        self.reserved = 0;
    }

    /// De-chunks what `input` holds after the head into the body buffer and
    /// drops the consumed bytes from `input`. `Ok(true)` when the last chunk
    /// and the trailers were read.
    pub(super) fn dechunk(&mut self) -> Result<bool, HttpError> {
        let (max_body, max_line) = (self.max_body, self.max_header);
        let target = if self.head.coding.compressed() { &mut self.compressed } else { &mut self.decoded };
        let mut pos = self.chunk_pos;
        let mut done = false;
        let result = loop {
            let avail = &self.input[pos..];
            match self.chunk {
                ChunkState::Size => {
                    let Some(nl) = avail.iter().position(|&b| b == b'\n') else {
                        if avail.len() >= max_line {
                            break Err(HttpError::BadChunk);
                        }
                        break Ok(());
                    };
                    let size = match parse_chunk_size(&avail[..nl]) {
                        Some(size) => size,
                        None => break Err(HttpError::BadChunk),
                    };
                    if size > max_body - target.len() {
                        break Err(HttpError::BodyTooLarge);
                    }
                    if let Err(e) = reserve(self.budget.as_deref(), &mut self.reserved, size) {
                        break Err(e);
                    }
                    pos += nl + 1;
                    self.chunk = if size == 0 { ChunkState::Trailer } else { ChunkState::Data(size) };
                }
                ChunkState::Data(remaining) => {
                    let take = remaining.min(avail.len());
                    if take == 0 {
                        break Ok(());
                    }
                    reserve_bounded(target, take, max_body + 1);
                    target.extend_from_slice(&avail[..take]);
                    pos += take;
                    self.chunk =
                        if take == remaining { ChunkState::DataEnd } else { ChunkState::Data(remaining - take) };
                }
                ChunkState::DataEnd => {
                    if avail.len() < 2 {
                        break Ok(());
                    }
                    if &avail[..2] != b"\r\n" {
                        break Err(HttpError::BadChunk);
                    }
                    pos += 2;
                    self.chunk = ChunkState::Size;
                }
                ChunkState::Trailer => {
                    let Some(nl) = avail.iter().position(|&b| b == b'\n') else {
                        if self.trailer_bytes + avail.len() >= max_line {
                            break Err(HttpError::BadChunk);
                        }
                        break Ok(());
                    };
                    let line = &avail[..nl];
                    self.trailer_bytes += nl + 1;
                    if self.trailer_bytes > max_line || line.last() != Some(&b'\r') {
                        break Err(HttpError::BadChunk);
                    }
                    pos += nl + 1;
                    if line.len() == 1 {
                        done = true;
                        break Ok(());
                    }
                    if !line.contains(&b':') {
                        break Err(HttpError::BadChunk);
                    }
                }
            }
        };
        result?;
        // Drop the decoded framing so the input keeps only head + undecoded tail.
        self.input.drain(self.head.len..pos);
        self.chunk_pos = self.head.len;
        Ok(done)
    }

    /// The body is complete: locate it, decoding it if compressed.
    pub(super) fn finish_body(&mut self) -> Result<(), HttpError> {
        let start = self.head.len;
        let coding = self.head.coding;
        let raw = match self.head.framing {
            Framing::Length(n) => {
                self.req_end = start + n;
                Span { start: start as u32, end: (start + n) as u32 }
            }
            Framing::Chunked => {
                self.req_end = start;
                self.body_at = BodyAt::Decoded;
                if !coding.compressed() {
                    return Ok(());
                }
                Span::default()
            }
        };
        if !coding.compressed() {
            self.body_at = BodyAt::Input(raw);
            return Ok(());
        }
        let src = match self.head.framing {
            Framing::Length(_) => raw.get(&self.input),
            Framing::Chunked => &self.compressed[..],
        };
        let (budget, reserved) = (self.budget.as_deref(), &mut self.reserved);
        let mut reserve = |n| reserve(budget, reserved, n);
        match coding {
            Coding::Zstd => {
                let decoder = self.zstd.get_or_insert_with(zstd_decoder);
                unzstd(src, &mut self.decoded, decoder, self.max_body, &mut reserve)?;
            }
            Coding::Deflate => {
                let inflater = self.inflater.get_or_insert_with(|| flate2::Decompress::new(false));
                // zlib (RFC 1950) if the first two bytes are a zlib header, else raw deflate.
                let zlib = src.len() >= 2 && src[0] & 0x0f == 8 && u16::from_be_bytes([src[0], src[1]]) % 31 == 0;
                inflater.reset(zlib);
                let out = inflate_member(src, &mut self.decoded, inflater, self.max_body, &mut reserve, 0);
                match out {
                    Ok((_, used)) if used == src.len() => {}
                    Ok(_) | Err(HttpError::BadGzip) => return Err(HttpError::BadDeflate),
                    Err(e) => return Err(e),
                }
            }
            _ => {
                let inflater = self.inflater.get_or_insert_with(|| flate2::Decompress::new(false));
                gunzip(src, &mut self.decoded, inflater, self.max_body, &mut reserve)?;
            }
        }
        self.body_at = BodyAt::Decoded;
        Ok(())
    }
}

/// `hex-size [ws] [; ext] CR` (the LF already stripped): the size, at most 15
/// hex digits.
fn parse_chunk_size(line: &[u8]) -> Option<usize> {
    let line = line.strip_suffix(b"\r")?;
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 15 {
        return None;
    }
    let rest = &line[digits..];
    let rest_ok = rest.iter().all(|&b| b == b' ' || b == b'\t') || trim(rest).first() == Some(&b';');
    if !rest_ok || rest.iter().any(|&b| b < 0x20 && b != b'\t') {
        return None;
    }
    let hex = std::str::from_utf8(&line[..digits]).ok()?;
    usize::from_str_radix(hex, 16).ok()
}

/// Length of the gzip member header at the start of `src` (RFC 1952 §2.3).
fn gzip_header_len(src: &[u8]) -> Option<usize> {
    const FHCRC: u8 = 2;
    const FEXTRA: u8 = 4;
    const FNAME: u8 = 8;
    const FCOMMENT: u8 = 16;
    if src.len() < 10 || src[0] != 0x1f || src[1] != 0x8b || src[2] != 8 || src[3] & 0xe0 != 0 {
        return None;
    }
    let flags = src[3];
    let mut pos = 10;
    if flags & FEXTRA != 0 {
        let xlen = usize::from(u16::from_le_bytes([*src.get(pos)?, *src.get(pos + 1)?]));
        pos += 2 + xlen;
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            pos += src.get(pos..)?.iter().position(|&b| b == 0)? + 1;
        }
    }
    if flags & FHCRC != 0 {
        pos += 2;
    }
    (pos <= src.len()).then_some(pos)
}

/// Reserves `n` bytes from `budget` (if any) into `reserved`.
fn reserve(budget: Option<&BodyBudget>, reserved: &mut usize, n: usize) -> Result<(), HttpError> {
    if let Some(budget) = budget {
        if !budget.try_reserve(n) {
            return Err(HttpError::BodyBudgetExhausted);
        }
        *reserved += n;
    }
    Ok(())
}

/// Inflates the gzip members in `src` into `dst` (cleared first), refusing
/// output beyond `max` bytes without ever holding more than `max + 1`.
/// `reserve` is asked for every byte of `dst`'s capacity before it is
/// written to (the body-memory budget).
fn gunzip(
    mut src: &[u8],
    dst: &mut Vec<u8>,
    inflater: &mut flate2::Decompress,
    max: usize,
    reserve: &mut dyn FnMut(usize) -> Result<(), HttpError>,
) -> Result<(), HttpError> {
    dst.clear();
    let mut reserved = 0;
    loop {
        src = &src[gzip_header_len(src).ok_or(HttpError::BadGzip)?..];
        inflater.reset(false);
        let member_start = dst.len();
        let used;
        (reserved, used) = inflate_member(src, dst, inflater, max, reserve, reserved)?;
        src = &src[used..];
        let trailer = src.get(..8).ok_or(HttpError::BadGzip)?;
        let mut crc = flate2::Crc::new();
        crc.update(&dst[member_start..]);
        let want_crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
        let want_len = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
        if crc.sum() != want_crc || (dst.len() - member_start) as u32 != want_len {
            return Err(HttpError::BadGzip);
        }
        src = &src[8..];
        if src.is_empty() {
            return Ok(());
        }
    }
}

/// Inflates one deflate stream from `src`, appending to `dst` (the inflater
/// was reset for its format); `reserved` is how much of `dst`'s capacity the
/// budget already covers. Returns the new `reserved` and the input bytes used.
fn inflate_member(
    mut src: &[u8],
    dst: &mut Vec<u8>,
    inflater: &mut flate2::Decompress,
    max: usize,
    reserve: &mut dyn FnMut(usize) -> Result<(), HttpError>,
    mut reserved: usize,
) -> Result<(usize, usize), HttpError> {
    use flate2::{FlushDecompress, Status};
    let total = src.len();
    loop {
        grow_reserved(dst, max, reserve, &mut reserved)?;
        let (in_before, out_before) = (inflater.total_in(), dst.len());
        let status = inflater.decompress_vec(src, dst, FlushDecompress::None).map_err(|_| HttpError::BadGzip)?;
        let used = (inflater.total_in() - in_before) as usize;
        src = &src[used.min(src.len())..];
        if dst.len() > max {
            return Err(HttpError::BodyTooLarge);
        }
        match status {
            Status::StreamEnd => return Ok((reserved, total - src.len())),
            _ if used == 0 && dst.len() == out_before => return Err(HttpError::BadGzip),
            _ => {}
        }
    }
}

/// Gives `dst` room for the next decoder step (at most `max + 1` bytes in
/// all), reserving every new byte of capacity from the budget first.
fn grow_reserved(
    dst: &mut Vec<u8>,
    max: usize,
    reserve: &mut dyn FnMut(usize) -> Result<(), HttpError>,
    reserved: &mut usize,
) -> Result<(), HttpError> {
    if dst.len() > max {
        return Err(HttpError::BodyTooLarge);
    }
    reserve_bounded(dst, INFLATE_STEP.min(max + 1 - dst.len()), max + 1);
    if dst.capacity() > *reserved {
        reserve(dst.capacity() - *reserved)?;
        *reserved = dst.capacity();
    }
    Ok(())
}

/// Decodes the zstd frames in `src` into `dst` (cleared first), with the
/// same bounds as [`gunzip`]; the decoder's window is bounded by
/// [`ZSTD_WINDOW_LOG_MAX`].
fn unzstd(
    src: &[u8],
    dst: &mut Vec<u8>,
    decoder: &mut zstd::zstd_safe::DCtx<'static>,
    max: usize,
    reserve: &mut dyn FnMut(usize) -> Result<(), HttpError>,
) -> Result<(), HttpError> {
    use zstd::zstd_safe::{InBuffer, OutBuffer, ResetDirective};
    dst.clear();
    // Whatever a previous body left half-decoded is dropped; the window bound stays.
    let _ = decoder.reset(ResetDirective::SessionOnly);
    if src.is_empty() {
        return Err(HttpError::BadZstd);
    }
    let mut input = InBuffer::around(src);
    let mut reserved = 0;
    loop {
        grow_reserved(dst, max, reserve, &mut reserved)?;
        let (in_before, out_before) = (input.pos(), dst.len());
        let remaining = {
            let pos = dst.len();
            let mut out = OutBuffer::around_pos(dst, pos);
            decoder.decompress_stream(&mut out, &mut input).map_err(|_| HttpError::BadZstd)?
        };
        if dst.len() > max {
            return Err(HttpError::BodyTooLarge);
        }
        // 0: a frame is complete and flushed; the next one (if any) follows.
        if remaining == 0 && input.pos() == src.len() {
            return Ok(());
        }
        let stalled = input.pos() == in_before && dst.len() == out_before;
        if stalled && (input.pos() == src.len() || dst.len() < dst.capacity()) {
            // Truncated (input used up mid-frame) or no progress with room to write.
            return Err(HttpError::BadZstd);
        }
    }
}
