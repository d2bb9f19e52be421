//! `metricsstream gen-body`: writes one request body of synthetic samples to
//! a file, for load tools that replay a body (wrk in scripts/bench-remote-write.sh,
//! `loadgen --body`).

use anyhow::Context;
use clap::{Args, ValueEnum};
use metricsstream::ingest::remote_write::{encode_body, Label, Sample, TimeSeries, WriteRequest};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(ValueEnum, Clone, Copy, Debug)]
enum BodyFormat {
    /// Prometheus remote_write 1.0: a snappy block of a protobuf `WriteRequest`.
    RemoteWrite,
}

#[derive(Args, Debug)]
pub struct GenBodyArgs {
    /// Encoding of the body.
    #[arg(long, value_enum)]
    format: BodyFormat,
    /// Output file.
    #[arg(long)]
    out: PathBuf,
    /// Series in the body, one sample each (`bench_cpu_usage{host, cpu, series}`).
    #[arg(long, default_value_t = 100)]
    series: u32,
    /// Timestamp of the samples in ms since the epoch (default: now).
    #[arg(long)]
    timestamp_ms: Option<i64>,
}

pub fn run(args: GenBodyArgs) -> anyhow::Result<()> {
    let timestamp = match args.timestamp_ms {
        Some(t) => t,
        None => SystemTime::now().duration_since(UNIX_EPOCH).context("system clock before 1970")?.as_millis() as i64,
    };
    let body = match args.format {
        BodyFormat::RemoteWrite => encode_body(&remote_write(args.series, timestamp)),
    };
    std::fs::write(&args.out, &body).with_context(|| format!("cannot write {}", args.out.display()))?;
    println!(
        "wrote a {:?} body of {} samples ({} bytes) to {}",
        args.format,
        args.series,
        body.len(),
        args.out.display()
    );
    Ok(())
}

/// `series` series shaped like bench-http.sh's line-protocol body: 10 hosts,
/// 4 CPUs, labels sorted by name as Prometheus sends them.
fn remote_write(series: u32, timestamp: i64) -> WriteRequest {
    let label = |name: &str, value: String| Label { name: name.into(), value };
    WriteRequest {
        timeseries: (0..series)
            .map(|i| TimeSeries {
                labels: vec![
                    label("__name__", "bench_cpu_usage".into()),
                    label("cpu", format!("c{}", i % 4)),
                    label("host", format!("h{}", i % 10)),
                    label("series", format!("s{i}")),
                ],
                samples: vec![Sample { value: f64::from(i) + 0.5, timestamp }],
                exemplars: vec![],
                histograms: vec![],
            })
            .collect(),
    }
}
