//! The writer's subcommands as library functions with clap `Args`: `dump`
//! (records as line protocol or JSON), `verify` (check every frame) and
//! `write-load` (synthetic load through the real writer thread; the crash
//! test's victim and the writer benchmark).

use std::borrow::Cow;
use std::collections::VecDeque;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use thiserror::Error;

use super::codec::DecodeError;
use super::config::{AckMode, WriterConfig};
use super::format::json_value;
use super::runtime::{BackpressureReason, Ticket, Writer, WriterError};
use super::segment::{verify_log, LogTail, SegmentError, TailIdle};
use super::stats::CommitReport;
use crate::ingest::line_index::LineIndexer;
use crate::ingest::record::{Field, FieldValue, RecordRef, RecordSink, Tag};

#[derive(Debug, Error)]
pub enum CliError {
    #[error(transparent)]
    Segment(#[from] SegmentError),
    #[error("records: {0}")]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Writer(#[from] WriterError),
    #[error("output: {0}")]
    Io(#[from] io::Error),
    #[error("the log has {0} corrupt frame(s) or segment(s)")]
    Corruption(u64),
    #[error("the writer stopped while load was running")]
    WriterStopped,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DumpFormat {
    /// InfluxDB line protocol, one record per line.
    Lp,
    /// One JSON object per line (with record id and client).
    Json,
}

/// `metricsstream dump`: print the log's records in log order.
#[derive(Clone, Debug, clap::Args)]
pub struct DumpArgs {
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    #[arg(long, value_enum, default_value = "lp")]
    pub format: DumpFormat,
    /// First record id to print.
    #[arg(long, default_value_t = 0)]
    pub from: u64,
}

/// Prints every record from `args.from` on: as line protocol, a version-2
/// record's stored line as it is plus its timestamp in ns (a version-1
/// record rendered from its tokens); as JSON, every record re-parsed. A torn
/// tail (a crash before recovery ran) ends the dump with a note on stderr,
/// not an error.
pub fn dump(args: &DumpArgs, out: &mut dyn Write) -> Result<u64, CliError> {
    let mut out = BufWriter::with_capacity(1 << 16, out);
    let mut tail = LogTail::new(&args.data_dir, args.from);
    let mut indexer = LineIndexer::new();
    let mut line = Vec::new();
    let mut n = 0u64;
    loop {
        match tail.poll_frame(u64::MAX)? {
            Ok(frame) => {
                for (i, r) in frame.records().enumerate() {
                    let r = r?;
                    line.clear();
                    match args.format {
                        DumpFormat::Lp => r.write_line_protocol(&mut line),
                        DumpFormat::Json => {
                            let id = frame.first_record_id() + i as u64;
                            let record = r.into_record(&mut indexer)?;
                            serde_json::to_writer(&mut line, &json_value(id, frame.client(), &record))
                                .map_err(io::Error::from)?;
                            line.push(b'\n');
                        }
                    }
                    out.write_all(&line)?;
                    n += 1;
                }
            }
            Err(TailIdle::CaughtUp) => break,
            Err(TailIdle::TornTail { path, offset }) => {
                eprintln!(
                    "dump: {} ends in a torn frame at offset {offset} (recovered at next writer start)",
                    path.display()
                );
                break;
            }
        }
    }
    if tail.skipped_records > 0 {
        eprintln!("dump: {} records before the oldest segment were deleted by retention", tail.skipped_records);
    }
    out.flush()?;
    Ok(n)
}

/// `metricsstream verify`: check every segment header and frame.
#[derive(Clone, Debug, clap::Args)]
pub struct VerifyArgs {
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
}

/// Prints one line per problem and `records=N frames=N segments=N corrupt=N`;
/// corruption is an `Err` (non-zero exit).
pub fn verify(args: &VerifyArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let rep = verify_log(&args.data_dir)?;
    for p in &rep.problems {
        writeln!(out, "corrupt: {p}")?;
    }
    writeln!(out, "records={} frames={} segments={} corrupt={}", rep.records, rep.frames, rep.segments, rep.corrupt)?;
    out.flush()?;
    if rep.corrupt > 0 {
        return Err(CliError::Corruption(rep.corrupt));
    }
    Ok(())
}

/// `metricsstream write-load`: push synthetic records through the writer.
#[derive(Clone, Debug, clap::Args)]
pub struct WriteLoadArgs {
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// durable | enqueued
    #[arg(long, default_value = "durable")]
    pub ack: AckMode,
    /// Records to write.
    #[arg(long)]
    pub records: u64,
    /// Records per batch.
    #[arg(long, default_value_t = 1000)]
    pub batch_records: u32,
    /// Group commit: longest a sync waits after the first awaited batch
    /// (0: it starts at once).
    #[arg(long, default_value_t = 0)]
    pub commit_delay_us: u64,
    /// Longest a batch nobody awaits (`--ack enqueued`) stays unsynced.
    /// `--fsync-interval-ms` is its old name.
    #[arg(long, default_value_t = 1000, alias = "fsync-interval-ms")]
    pub sync_interval_ms: u64,
    #[arg(long, default_value_t = 256 << 20)]
    pub segment_bytes: u64,
    /// Worker handles, driven round-robin by one producer thread.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Most unacknowledged batches per worker (0: no limit): with a limit,
    /// each worker behaves like that many clients waiting for their acks,
    /// which is what an `ack = durable` server sees.
    #[arg(long, default_value_t = 0)]
    pub inflight: usize,
    /// The synthetic id (field `id`) of the first record; give each run a
    /// disjoint range to tell runs apart.
    #[arg(long, default_value_t = 0)]
    pub first_id: u64,
    /// Print `ack FIRST LAST` (synthetic ids, inclusive) per acknowledged batch.
    #[arg(long)]
    pub print_acks: bool,
}

/// Figures of one `write-load` run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadReport {
    pub records: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub fsyncs: u64,
    pub backpressure: u64,
    /// Ack and fdatasync latency, bytes and waiters per sync.
    pub commit: CommitReport,
}

impl LoadReport {
    pub fn records_per_sec(&self) -> f64 {
        self.records as f64 / self.seconds.max(1e-9)
    }
    pub fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.seconds.max(1e-9)
    }
}

const HOSTS: usize = 64;
const REGIONS: [&str; 4] = ["ap-south", "eu-west", "us-east", "us-west"];

pub fn write_load(args: &WriteLoadArgs, out: &mut dyn Write) -> Result<LoadReport, CliError> {
    let config = WriterConfig {
        data_dir: args.data_dir.clone(),
        ack: args.ack,
        commit_delay_us: args.commit_delay_us,
        sync_interval_ms: args.sync_interval_ms,
        segment_bytes: args.segment_bytes,
        retention_bytes: 0,
        batch_bytes: 4 << 20,
        batch_records: args.batch_records.max(1),
        ..Default::default()
    };
    let workers = args.workers.max(1);
    let (rt, mut handles) = Writer::start(config, workers)?;
    let rec = rt.recovery();
    if rec.truncated_bytes > 0 {
        eprintln!(
            "write-load: recovery dropped {} bytes ({}); log continues at record {}",
            rec.truncated_bytes,
            rec.truncated_reason.as_deref().unwrap_or("?"),
            rec.next_record_id
        );
    }

    let hosts: Vec<String> = (0..HOSTS).map(|i| format!("host-{i:02}")).collect();
    let now_ns = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);
    let (k_host, k_region, k_id, k_value) =
        (Cow::Borrowed("host"), Cow::Borrowed("region"), Cow::Borrowed("id"), Cow::Borrowed("value"));
    let measurement = Cow::Borrowed("load");

    let start = Instant::now();
    let end_id = args.first_id + args.records;
    let mut next_id = args.first_id;
    let mut inflight: Vec<VecDeque<(Ticket, u64, u64)>> = vec![VecDeque::new(); workers];
    let mut w = 0usize;
    let mut backpressure = 0u64;
    loop {
        // Report acks first, in submit order per worker.
        for (h, q) in handles.iter().zip(inflight.iter_mut()) {
            while let Some((t, first, last)) = q.front() {
                if !h.is_acked(t) {
                    break;
                }
                if args.print_acks {
                    writeln!(out, "ack {first} {last}")?;
                    out.flush()?;
                }
                q.pop_front();
            }
        }
        if next_id >= end_id {
            if inflight.iter().all(VecDeque::is_empty) {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        if args.inflight > 0 && inflight[w].len() >= args.inflight {
            if inflight.iter().all(|q| q.len() >= args.inflight) {
                // Every client waits for an ack.
                std::thread::sleep(Duration::from_micros(20));
            }
            w = (w + 1) % workers;
            continue;
        }
        let h = &mut handles[w];
        let Some(mut batch) = h.take_batch() else {
            backpressure += 1;
            std::thread::yield_now();
            continue;
        };
        batch.set_client("write-load");
        let first = next_id;
        while next_id < end_id {
            let i = next_id as usize;
            let tags = [
                Tag { key: k_host.clone(), value: Cow::Borrowed(hosts[i % HOSTS].as_str()) },
                Tag { key: k_region.clone(), value: Cow::Borrowed(REGIONS[i % REGIONS.len()]) },
            ];
            let fields = [
                Field { key: k_id.clone(), value: FieldValue::UInt(next_id) },
                Field { key: k_value.clone(), value: FieldValue::Float((i % 1000) as f64 * 0.25) },
            ];
            let r =
                RecordRef { measurement: &measurement, tags: &tags, fields: &fields, timestamp_ns: now_ns + i as i64 };
            if batch.push(&r).is_err() {
                break;
            }
            next_id += 1;
        }
        let last = next_id - 1;
        loop {
            match h.submit(batch) {
                Ok(t) => {
                    inflight[w].push_back((t, first, last));
                    break;
                }
                Err(bp) if bp.reason == BackpressureReason::ChannelFull => {
                    backpressure += 1;
                    batch = bp.batch;
                    std::thread::yield_now();
                }
                Err(_) => return Err(CliError::WriterStopped),
            }
        }
        w = (w + 1) % workers;
    }
    drop(handles);
    let stats = rt.stats().clone();
    let summary = rt.shutdown()?;
    let seconds = start.elapsed().as_secs_f64();
    let snap = stats.snapshot();
    let report = LoadReport {
        records: summary.records_written,
        bytes: snap.bytes_written,
        seconds,
        fsyncs: summary.fsyncs,
        backpressure,
        commit: summary.commit,
    };
    let c = &report.commit;
    writeln!(
        out,
        "records={} bytes={} seconds={:.3} records_per_sec={:.0} mb_per_sec={:.1} fsyncs={} backpressure={} next_record_id={} \
         ack_p50_us={} ack_p99_us={} ack_max_us={} fsync_p50_us={} fsync_p99_us={} bytes_per_sync_p50={} waiters_per_sync_p50={}",
        report.records,
        report.bytes,
        report.seconds,
        report.records_per_sec(),
        report.mb_per_sec(),
        report.fsyncs,
        report.backpressure,
        summary.next_record_id,
        c.ack_latency_us.p50,
        c.ack_latency_us.p99,
        c.ack_latency_us.max,
        c.fsync_latency_us.p50,
        c.fsync_latency_us.p99,
        c.bytes_per_sync.p50,
        c.waiters_per_sync.p50,
    )?;
    out.flush()?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_then_dump_and_verify() {
        let dir = tempfile::tempdir().unwrap();
        let args = WriteLoadArgs {
            data_dir: dir.path().to_owned(),
            ack: AckMode::Durable,
            records: 2500,
            batch_records: 100,
            commit_delay_us: 0,
            sync_interval_ms: 1,
            segment_bytes: 1 << 20,
            workers: 2,
            inflight: 3,
            first_id: 7,
            print_acks: true,
        };
        let mut out = Vec::new();
        let rep = write_load(&args, &mut out).unwrap();
        assert_eq!(rep.records, 2500);
        let text = String::from_utf8(out).unwrap();
        let acked: u64 = text
            .lines()
            .filter_map(|l| l.strip_prefix("ack "))
            .map(|l| {
                let (a, b) = l.split_once(' ').unwrap();
                b.parse::<u64>().unwrap() - a.parse::<u64>().unwrap() + 1
            })
            .sum();
        assert_eq!(acked, 2500);

        let mut out = Vec::new();
        let n = dump(&DumpArgs { data_dir: dir.path().to_owned(), format: DumpFormat::Lp, from: 0 }, &mut out).unwrap();
        assert_eq!(n, 2500);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.lines().next().unwrap().starts_with("load,host=host-07,region=us-west id=7u,value=1.75 "),
            "{text:.200}"
        );
        // Two workers interleave in the log; every synthetic id is there once.
        let mut ids: Vec<u64> =
            text.lines().map(|l| l.split(" id=").nth(1).unwrap().split('u').next().unwrap().parse().unwrap()).collect();
        ids.sort_unstable();
        assert_eq!(ids, (7..2507).collect::<Vec<u64>>());

        let mut out = Vec::new();
        let n = dump(&DumpArgs { data_dir: dir.path().to_owned(), format: DumpFormat::Json, from: 2500 }, &mut out)
            .unwrap();
        assert_eq!(n, 1);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["id"], 2500);
        assert!((7..2507).contains(&v["fields"]["id"].as_u64().unwrap()));

        let mut out = Vec::new();
        verify(&VerifyArgs { data_dir: dir.path().to_owned() }, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "records=2500 frames=25 segments=1 corrupt=0\n");
    }
}
