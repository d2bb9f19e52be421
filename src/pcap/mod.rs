//! Classic libpcap files (Ethernet link type): a streaming reader and writer,
//! and the synthetic traffic generator behind `gen-pcap` ([`synth`]).

pub mod synth;
pub mod trace;

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

const MAGIC_US: u32 = 0xa1b2_c3d4;
const MAGIC_NS: u32 = 0xa1b2_3c4d;
const LINKTYPE_ETHERNET: u32 = 1;
/// Larger records than this are not Ethernet frames we can replay.
const MAX_RECORD: u32 = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("not a pcap file (magic {0:#010x}); pcapng is not supported, convert with `editcap -F pcap`")]
    BadMagic(u32),
    #[error("link type {0} is not Ethernet (1)")]
    LinkType(u32),
    #[error("record {index}: length {len} is out of range")]
    BadRecord { index: u64, len: u32 },
}

/// Reads packets one by one.
pub struct PcapReader<R> {
    input: R,
    swapped: bool,
    nanos: bool,
    index: u64,
}

impl PcapReader<BufReader<File>> {
    pub fn open(path: &Path) -> Result<Self, PcapError> {
        PcapReader::new(BufReader::with_capacity(1 << 20, File::open(path)?))
    }
}

impl<R: Read> PcapReader<R> {
    pub fn new(mut input: R) -> Result<Self, PcapError> {
        let mut h = [0u8; 24];
        input.read_exact(&mut h)?;
        let magic = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let (swapped, nanos) = match magic {
            MAGIC_US => (false, false),
            MAGIC_NS => (false, true),
            m if m.swap_bytes() == MAGIC_US => (true, false),
            m if m.swap_bytes() == MAGIC_NS => (true, true),
            m => return Err(PcapError::BadMagic(m)),
        };
        let r = PcapReader { input, swapped, nanos, index: 0 };
        let link = r.u32_at(&h, 20);
        if link != LINKTYPE_ETHERNET {
            return Err(PcapError::LinkType(link));
        }
        Ok(r)
    }

    fn u32_at(&self, b: &[u8], at: usize) -> u32 {
        let v = u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        if self.swapped {
            v.swap_bytes()
        } else {
            v
        }
    }

    /// Reads the next packet into `buf` (replacing its contents); returns its
    /// timestamp in ns, or `None` at the end of the file.
    pub fn next_into(&mut self, buf: &mut Vec<u8>) -> Result<Option<u64>, PcapError> {
        let mut h = [0u8; 16];
        match self.input.read_exact(&mut h) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let (sec, frac, caplen) = (self.u32_at(&h, 0), self.u32_at(&h, 4), self.u32_at(&h, 8));
        if caplen > MAX_RECORD {
            return Err(PcapError::BadRecord { index: self.index, len: caplen });
        }
        buf.resize(caplen as usize, 0);
        self.input.read_exact(buf)?;
        self.index += 1;
        let frac_ns = if self.nanos { u64::from(frac) } else { u64::from(frac) * 1000 };
        Ok(Some(u64::from(sec) * 1_000_000_000 + frac_ns))
    }
}

/// Counts the packets in a pcap file (and so checks that it is one).
pub fn count_packets(path: &Path) -> Result<u64, PcapError> {
    let mut reader = PcapReader::open(path)?;
    let mut buf = Vec::new();
    let mut n = 0;
    while reader.next_into(&mut buf)?.is_some() {
        n += 1;
    }
    Ok(n)
}

/// Writes packets with nanosecond timestamps.
pub struct PcapWriter<W: Write> {
    out: W,
}

impl PcapWriter<BufWriter<File>> {
    pub fn create(path: &Path) -> Result<Self, PcapError> {
        PcapWriter::new(BufWriter::with_capacity(1 << 20, File::create(path)?))
    }
}

impl<W: Write> PcapWriter<W> {
    pub fn new(mut out: W) -> Result<Self, PcapError> {
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(&MAGIC_NS.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes()); // version 2.4
        h.extend_from_slice(&4u16.to_le_bytes());
        h.extend_from_slice(&0i32.to_le_bytes()); // UTC
        h.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
        h.extend_from_slice(&65535u32.to_le_bytes()); // snaplen
        h.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        out.write_all(&h)?;
        Ok(PcapWriter { out })
    }

    pub fn write(&mut self, ts_ns: u64, frame: &[u8]) -> Result<(), PcapError> {
        let len = frame.len() as u32;
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&((ts_ns / 1_000_000_000) as u32).to_le_bytes());
        h[4..8].copy_from_slice(&((ts_ns % 1_000_000_000) as u32).to_le_bytes());
        h[8..12].copy_from_slice(&len.to_le_bytes());
        h[12..16].copy_from_slice(&len.to_le_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(frame)?;
        Ok(())
    }

    pub fn finish(mut self) -> Result<W, PcapError> {
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_read_back() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        w.write(1_500_000_123, &[1, 2, 3]).unwrap();
        w.write(2_000_000_000, &[4; 70]).unwrap();
        let bytes = w.finish().unwrap();
        let mut r = PcapReader::new(&bytes[..]).unwrap();
        let mut buf = Vec::new();
        assert_eq!(r.next_into(&mut buf).unwrap(), Some(1_500_000_123));
        assert_eq!(buf, [1, 2, 3]);
        assert_eq!(r.next_into(&mut buf).unwrap(), Some(2_000_000_000));
        assert_eq!(buf.len(), 70);
        assert_eq!(r.next_into(&mut buf).unwrap(), None);
    }

    #[test]
    fn rejects_other_formats() {
        let pcapng = [0x0a, 0x0d, 0x0d, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(matches!(PcapReader::new(&pcapng[..]), Err(PcapError::BadMagic(_))));
        assert!(matches!(PcapReader::new(&[0u8; 3][..]), Err(PcapError::Io(_))));
    }
}
