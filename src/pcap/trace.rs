//! Per-worker packet tracing (`--trace-pcap FILE`): every frame a worker
//! receives, and in `serve` every frame it sends, appended to a pcap file
//! (like smoltcp's `PcapWriter` on a device), for Wireshark/tshark.
//!
//! Built with the `trace-pcap` feature (on by default), a worker holds an
//! `Option<PacketTrace>`; when tracing is off the cost is one predictable
//! branch per burst (receive) or per sent frame. Built without the feature,
//! [`PacketTrace`] is an uninhabited type, `Option<PacketTrace>` is always
//! `None`, and the compiler removes every trace branch: that build is the
//! baseline `scripts/bench-replay.sh --trace-overhead` compares against.

use std::path::{Path, PathBuf};

/// Where worker `queue` of `queues` writes: `FILE` itself for one worker,
/// else `STEM-qN.EXT`.
pub fn path_for_worker(base: &Path, queue: u16, queues: u16) -> PathBuf {
    if queues <= 1 {
        return base.to_path_buf();
    }
    let stem = base.file_stem().map_or_else(|| "trace".into(), |s| s.to_string_lossy().into_owned());
    let ext = base.extension().map_or_else(|| "pcap".into(), |e| e.to_string_lossy().into_owned());
    base.with_file_name(format!("{stem}-q{queue}.{ext}"))
}

#[cfg(feature = "trace-pcap")]
mod enabled {
    use super::super::{PcapError, PcapWriter};
    use crate::time::Nanos;
    use std::fs::File;
    use std::io::BufWriter;
    use std::path::Path;

    /// A worker's open trace file.
    pub struct PacketTrace {
        writer: PcapWriter<BufWriter<File>>,
        unix_offset_ns: u64,
        frames: u64,
        write_errors: u64,
    }

    impl PacketTrace {
        /// Creates the file; `unix_offset_ns` turns the worker's monotonic
        /// nanoseconds into wall-clock pcap timestamps.
        pub fn create(path: &Path, unix_offset_ns: u64) -> Result<PacketTrace, PcapError> {
            Ok(PacketTrace { writer: PcapWriter::create(path)?, unix_offset_ns, frames: 0, write_errors: 0 })
        }

        /// Appends one frame seen at `now`. A failed write (disk full) is
        /// counted, never fatal to the datapath.
        #[inline]
        pub fn frame(&mut self, now: Nanos, frame: &[u8]) {
            match self.writer.write(self.unix_offset_ns.saturating_add(now.as_ns()), frame) {
                Ok(()) => self.frames += 1,
                Err(_) => self.write_errors += 1,
            }
        }

        /// Flushes the file; returns (frames written, write errors).
        pub fn finish(self) -> (u64, u64) {
            let errors = self.write_errors + u64::from(self.writer.finish().is_err());
            (self.frames, errors)
        }
    }
}

#[cfg(feature = "trace-pcap")]
pub use enabled::PacketTrace;

/// Uninhabited without the `trace-pcap` feature: no value exists, so every
/// `Option<PacketTrace>` is `None` and trace code compiles away.
#[cfg(not(feature = "trace-pcap"))]
pub enum PacketTrace {}

#[cfg(not(feature = "trace-pcap"))]
impl PacketTrace {
    pub fn create(_: &Path, _: u64) -> Result<PacketTrace, super::PcapError> {
        Err(super::PcapError::Io(std::io::Error::other("built without the trace-pcap feature")))
    }

    #[inline]
    pub fn frame(&mut self, _: crate::time::Nanos, _: &[u8]) {
        match *self {}
    }

    pub fn finish(self) -> (u64, u64) {
        match self {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(feature = "trace-pcap")]
    use crate::time::Nanos;

    #[test]
    fn one_file_per_worker() {
        assert_eq!(path_for_worker(Path::new("/t/x.pcap"), 0, 1), Path::new("/t/x.pcap"));
        assert_eq!(path_for_worker(Path::new("/t/x.pcap"), 1, 2), Path::new("/t/x-q1.pcap"));
        assert_eq!(path_for_worker(Path::new("trace"), 0, 2), Path::new("trace-q0.pcap"));
    }

    #[cfg(feature = "trace-pcap")]
    #[test]
    fn traced_frames_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.pcap");
        let mut t = PacketTrace::create(&path, 1_000_000_000).unwrap();
        t.frame(Nanos::from_ns(5), &[1, 2, 3]);
        t.frame(Nanos::from_ns(6), &[4; 60]);
        assert_eq!(t.finish(), (2, 0));
        let mut r = super::super::PcapReader::open(&path).unwrap();
        let mut buf = Vec::new();
        assert_eq!(r.next_into(&mut buf).unwrap(), Some(1_000_000_005));
        assert_eq!(buf, [1, 2, 3]);
        assert_eq!(r.next_into(&mut buf).unwrap(), Some(1_000_000_006));
        assert_eq!(r.next_into(&mut buf).unwrap(), None);
    }
}
