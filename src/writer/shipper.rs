//! The VictoriaMetrics shipper: a thread that tails the durable log and POSTs
//! line protocol to `{url}/write`, plus the tiny HTTP/1.1 client it uses.
//! Version-2 records are forwarded as stored (the line + " " + timestamp in
//! ns, which is why the timestamp is normalised at ingest); version-1 records
//! are rendered from their tokens.
//!
//! Delivery is at-least-once: the checkpoint file (`data_dir/shipper-victoriametrics.checkpoint`,
//! the next record id to ship) is advanced only after a 2xx answer, so a crash
//! or an unreachable server means re-sending, never skipping. Failures are
//! retried with exponential backoff. A 4xx other than 408/429 means
//! VictoriaMetrics will never accept those lines: they are counted as errors
//! and skipped rather than blocking the log forever.
//!
//! The client is deliberately small: one connection per POST with
//! `Connection: close` (a POST carries up to `batch_records` lines, so the
//! connect cost is amortised), status line parsed, body drained.

use std::fs;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use thiserror::Error;

use super::config::{ConfigError, HttpEndpoint, VictoriaMetricsConfig};
use super::segment::{LogTail, SegmentError, FIRST_RECORD_ID};
use super::stats::WriterStats;

pub const CHECKPOINT_FILE: &str = "shipper-victoriametrics.checkpoint";

#[derive(Debug, Error)]
pub enum ShipperError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Segment(#[from] SegmentError),
    #[error("checkpoint {path}: {source}")]
    Checkpoint { path: PathBuf, source: io::Error },
    #[error("cannot spawn the shipper thread: {0}")]
    Spawn(io::Error),
    #[error("the shipper thread panicked")]
    Panicked,
}

/// Reads the checkpoint; a missing or unreadable one restarts from the
/// beginning (at-least-once: re-sending is allowed, skipping is not).
pub fn read_checkpoint(data_dir: &Path) -> u64 {
    fs::read_to_string(data_dir.join(CHECKPOINT_FILE))
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(FIRST_RECORD_ID)
}

fn write_checkpoint(data_dir: &Path, next_record_id: u64) -> Result<(), ShipperError> {
    let path = data_dir.join(CHECKPOINT_FILE);
    let tmp = data_dir.join(format!("{CHECKPOINT_FILE}.tmp"));
    let err = |source| ShipperError::Checkpoint { path: path.clone(), source };
    let mut f = fs::File::create(&tmp).map_err(err)?;
    f.write_all(format!("{next_record_id}\n").as_bytes()).map_err(err)?;
    f.sync_data().map_err(err)?;
    fs::rename(&tmp, &path).map_err(err)
}

/// A complete HTTP response (body de-chunked).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_owned())
}

fn find(h: &[u8], needle: &[u8]) -> Option<usize> {
    h.windows(needle.len()).position(|w| w == needle)
}

fn dechunk(mut data: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = find(data, b"\r\n").ok_or_else(|| bad("chunk size line"))?;
        let size_str = std::str::from_utf8(&data[..eol]).map_err(|_| bad("chunk size"))?;
        let size_str = size_str.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_str, 16).map_err(|_| bad("chunk size"))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err(bad("truncated chunk"));
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// One HTTP/1.1 request with `Connection: close`; reads the whole response.
pub fn http_request(
    endpoint: &HttpEndpoint,
    method: &str,
    path: &str,
    body: &[u8],
    timeout: Duration,
) -> io::Result<HttpResponse> {
    let addr = endpoint
        .authority
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "host has no address"))?;
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.set_nodelay(true)?;
    let head = format!(
        "{method} {}{path} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        endpoint.path_prefix,
        endpoint.authority,
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let end = find(&resp, b"\r\n\r\n").ok_or_else(|| bad("no end of response head"))?;
    let head = std::str::from_utf8(&resp[..end]).map_err(|_| bad("response head not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|r| r.get(2..5))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let raw = &resp[end + 4..];
    let body = if chunked { dechunk(raw)? } else { raw.to_vec() };
    Ok(HttpResponse { status, body })
}

/// What the shipper did, returned by [`Shipper::stop`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShipperSummary {
    pub shipped_records: u64,
    pub posts: u64,
    pub errors: u64,
    /// The persisted checkpoint (next record id to ship).
    pub checkpoint: u64,
}

/// The running shipper thread.
#[derive(Debug)]
pub struct Shipper {
    thread: Option<JoinHandle<Result<ShipperSummary, ShipperError>>>,
    stop: Arc<AtomicBool>,
}

impl Shipper {
    /// Starts shipping `data_dir` from its checkpoint. `durable_record_id` is
    /// the writer's published bound (ship only fsynced records); `None`
    /// ships every complete frame on disk (for a log no writer is appending to).
    pub fn start(
        data_dir: PathBuf,
        config: VictoriaMetricsConfig,
        durable_record_id: Option<Arc<AtomicU64>>,
        stats: Arc<WriterStats>,
    ) -> Result<Self, ShipperError> {
        let endpoint = config.validate()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("ms-shipper".into())
            .spawn(move || {
                let mut lp = ShipLoop { data_dir, config, endpoint, durable_record_id, stats, stop: stop2 };
                let r = lp.run();
                if let Err(e) = &r {
                    log::error!("shipper stopped: {e}");
                }
                r
            })
            .map_err(ShipperError::Spawn)?;
        Ok(Self { thread: Some(thread), stop })
    }

    /// Stops after the current POST attempt; unshipped records stay in the
    /// log and are shipped from the checkpoint next time.
    pub fn stop(mut self) -> Result<ShipperSummary, ShipperError> {
        self.stop.store(true, Ordering::Release);
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| ShipperError::Panicked)?,
            None => Err(ShipperError::Panicked),
        }
    }
}

impl Drop for Shipper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct ShipLoop {
    data_dir: PathBuf,
    config: VictoriaMetricsConfig,
    endpoint: HttpEndpoint,
    durable_record_id: Option<Arc<AtomicU64>>,
    stats: Arc<WriterStats>,
    stop: Arc<AtomicBool>,
}

enum PostOutcome {
    Accepted,
    Rejected(u16),
    Stopped,
}

impl ShipLoop {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Sleeps up to `d`, waking early on stop.
    fn sleep(&self, d: Duration) {
        let step = Duration::from_millis(10);
        let mut left = d;
        while !left.is_zero() && !self.stopped() {
            let s = left.min(step);
            std::thread::sleep(s);
            left -= s;
        }
    }

    /// Lag = durable records not yet acknowledged by VictoriaMetrics
    /// (including the batch being posted).
    fn update_lag(&self, checkpoint: u64) {
        if let Some(d) = &self.durable_record_id {
            let lag = d.load(Ordering::Acquire).saturating_sub(checkpoint);
            self.stats.shipper_lag_records.store(lag, Ordering::Relaxed);
        }
    }

    fn run(&mut self) -> Result<ShipperSummary, ShipperError> {
        let mut summary = ShipperSummary { checkpoint: read_checkpoint(&self.data_dir), ..Default::default() };
        let mut tail = LogTail::new(&self.data_dir, summary.checkpoint);
        let mut body = Vec::new();
        let poll = Duration::from_millis(self.config.poll_interval_ms);
        while !self.stopped() {
            let limit = self.durable_record_id.as_ref().map_or(u64::MAX, |d| d.load(Ordering::Acquire));
            body.clear();
            let mut n = 0u64;
            while n < self.config.batch_records as u64 {
                match tail.poll_frame(limit)? {
                    Ok(frame) => {
                        for r in frame.records() {
                            r.map_err(SegmentError::Decode)?.write_line_protocol(&mut body);
                        }
                        n += u64::from(frame.record_count());
                    }
                    Err(_idle) => break,
                }
            }
            self.stats.shipper_skipped_records.store(tail.skipped_records, Ordering::Relaxed);
            if n > 0 {
                match self.post_with_retry(&body, &mut summary) {
                    PostOutcome::Accepted => {
                        summary.shipped_records += n;
                        self.stats.shipper_shipped_records.fetch_add(n, Ordering::Relaxed);
                    }
                    PostOutcome::Rejected(status) => {
                        log::error!("victoriametrics rejected {n} records with HTTP {status}; skipping them");
                    }
                    PostOutcome::Stopped => break,
                }
                summary.checkpoint = tail.position();
                write_checkpoint(&self.data_dir, summary.checkpoint)?;
            }
            self.update_lag(summary.checkpoint);
            if n == 0 {
                self.sleep(poll);
            }
        }
        Ok(summary)
    }

    fn post_with_retry(&self, body: &[u8], summary: &mut ShipperSummary) -> PostOutcome {
        let timeout = Duration::from_millis(self.config.timeout_ms);
        let mut backoff = Duration::from_millis(self.config.retry_initial_ms);
        let max = Duration::from_millis(self.config.retry_max_ms);
        loop {
            if self.stopped() {
                return PostOutcome::Stopped;
            }
            self.update_lag(summary.checkpoint);
            summary.posts += 1;
            let why = match http_request(&self.endpoint, "POST", "/write", body, timeout) {
                Ok(r) if (200..300).contains(&r.status) => return PostOutcome::Accepted,
                Ok(r) if (400..500).contains(&r.status) && r.status != 408 && r.status != 429 => {
                    summary.errors += 1;
                    self.stats.shipper_errors.fetch_add(1, Ordering::Relaxed);
                    return PostOutcome::Rejected(r.status);
                }
                Ok(r) => format!("HTTP {}", r.status),
                Err(e) => e.to_string(),
            };
            summary.errors += 1;
            self.stats.shipper_errors.fetch_add(1, Ordering::Relaxed);
            log::warn!("victoriametrics POST failed ({why}); retrying in {backoff:?}");
            self.sleep(backoff);
            backoff = (backoff * 2).min(max);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunks() {
        assert_eq!(dechunk(b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n").unwrap(), b"abcde");
        assert!(dechunk(b"5\r\nab").is_err());
    }

    /// A stand-in for VictoriaMetrics: answers every POST 204 and keeps the
    /// bodies, in order.
    fn fake_victoriametrics() -> (String, Arc<std::sync::Mutex<Vec<u8>>>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let received = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = Arc::clone(&received);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { return };
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                let body = loop {
                    let Ok(n) = s.read(&mut buf) else { break None };
                    if n == 0 {
                        break None;
                    }
                    request.extend_from_slice(&buf[..n]);
                    let Some(end) = find(&request, b"\r\n\r\n") else { continue };
                    let head = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if request.len() >= end + 4 + len {
                        break Some(request[end + 4..end + 4 + len].to_vec());
                    }
                };
                if let Some(body) = body {
                    sink.lock().unwrap().extend_from_slice(&body);
                }
                let _ = s.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
            }
        });
        (url, received)
    }

    #[test]
    fn stored_lines_are_forwarded_as_they_are() {
        use crate::ingest::line_index::LineIndexer;
        use crate::ingest::Precision;
        use crate::writer::codec::{Batch, TenantIndex};
        use crate::writer::segment::{segment_file_name, SegmentWriter};

        let dir = tempfile::tempdir().unwrap();
        // A version-1 segment of the previous release, then version-2 records.
        fs::write(dir.path().join(segment_file_name(1)), include_bytes!("segment/testdata/v1-write-load-100.seg"))
            .unwrap();
        let lines = "cpu,host=a\\ b,path=C:\\dir\\,x usage=0.5,msg=\"say \\\"hi\\\"\" 1700000000\n\
                     mem,b=2,a=1 free=3i 1700000001\n";
        {
            let (mut w, _) = SegmentWriter::open(dir.path(), 1 << 20).unwrap();
            let mut b = Batch::with_budget(1 << 20, 100);
            let summary = LineIndexer::new()
                .index_batch(lines.as_bytes(), Precision::Seconds, 0, |l| b.push_line(l, TenantIndex::DEFAULT).is_ok())
                .unwrap();
            assert_eq!(summary.lines, 2);
            w.append(&b).unwrap();
            w.sync().unwrap();
        }
        let (url, received) = fake_victoriametrics();
        let config = VictoriaMetricsConfig { url, batch_records: 64, poll_interval_ms: 5, ..Default::default() };
        let shipper = Shipper::start(dir.path().to_owned(), config, None, Arc::new(WriterStats::default())).unwrap();
        let t0 = std::time::Instant::now();
        while read_checkpoint(dir.path()) != 103 {
            assert!(t0.elapsed() < Duration::from_secs(10), "shipper stuck at {}", read_checkpoint(dir.path()));
            std::thread::sleep(Duration::from_millis(5));
        }
        let summary = shipper.stop().unwrap();
        assert_eq!((summary.shipped_records, summary.checkpoint), (102, 103));
        let body = String::from_utf8(received.lock().unwrap().clone()).unwrap();
        // The old records as the old release rendered them; the new ones byte
        // for byte as received (escapes, `\\` and all), the timestamp in ns,
        // the unsorted line canonicalised.
        let expected = format!(
            "{}{}",
            include_str!("segment/testdata/v1-write-load-100.lp"),
            "cpu,host=a\\ b,path=C:\\dir\\,x usage=0.5,msg=\"say \\\"hi\\\"\" 1700000000000000000\n\
             mem,a=1,b=2 free=3i 1700000001000000000\n"
        );
        assert_eq!(body, expected);
    }

    #[test]
    fn checkpoint_round_trip_and_default() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(read_checkpoint(d.path()), FIRST_RECORD_ID);
        write_checkpoint(d.path(), 42).unwrap();
        assert_eq!(read_checkpoint(d.path()), 42);
    }
}
