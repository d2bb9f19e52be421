//! `metricsstream gen-pcap`: writes synthetic load to a pcap file.

use anyhow::Context;
use clap::Args;
use metricsstream::pcap::synth::{generate, Kind, Params, TagOrder};
use metricsstream::pcap::PcapWriter;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Args, Debug)]
pub struct GenPcapArgs {
    /// What to generate.
    #[arg(long, value_enum)]
    kind: Kind,
    /// Output pcap file.
    #[arg(long)]
    out: PathBuf,
    /// Frames to write (HTTP: whole conversations, at least this many frames).
    #[arg(long, default_value_t = 65_536)]
    packets: u64,
    /// Distinct client addresses (198.18.1.0 and up).
    #[arg(long, default_value_t = 1_000)]
    clients: u32,
    /// PRNG seed; the same seed and base time give the same file.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Timestamp of the first packet and metric in ns since the epoch (default: now).
    #[arg(long)]
    base_time_ns: Option<u64>,
    /// Tag order of line-protocol lines: `sorted` as Telegraf and the Influx
    /// client libraries send them (stored as received), `unsorted` as a
    /// hand-written line (every line canonicalised: the worst case).
    #[arg(long, value_enum, default_value_t = TagOrder::Sorted)]
    tag_order: TagOrder,
}

pub fn run(args: GenPcapArgs) -> anyhow::Result<()> {
    let base_time_ns = match args.base_time_ns {
        Some(t) => t,
        None => SystemTime::now().duration_since(UNIX_EPOCH).context("system clock before 1970")?.as_nanos() as u64,
    };
    let params = Params {
        kind: args.kind,
        packets: args.packets,
        clients: args.clients,
        seed: args.seed,
        base_time_ns,
        tag_order: args.tag_order,
    };
    let mut writer = PcapWriter::create(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut bytes = 0u64;
    let frames = generate(&params, |ts, frame| {
        bytes += frame.len() as u64;
        writer.write(ts, frame)
    })
    .with_context(|| format!("writing {}", args.out.display()))?;
    writer.finish().with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "wrote {} frames ({:.1} MB, {:.0} B/frame avg) of {:?} load from {} clients to {}",
        frames,
        bytes as f64 / 1e6,
        bytes as f64 / frames.max(1) as f64,
        args.kind,
        args.clients,
        args.out.display()
    );
    Ok(())
}
