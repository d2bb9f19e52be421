//! The subcommands: argument structs (clap) and the code that runs them.
//! Binary-only code: errors are `anyhow` here and typed in the library.
pub mod bench;
pub mod bench_report;
pub mod gen_body;
pub mod gen_pcap;
pub mod housekeeping;
pub mod loadgen;
pub mod receive;
pub mod replay;
pub mod rx;
pub mod serve;

use anyhow::{bail, Context};
use clap::Args;
use metricsstream::config::Profile;
use metricsstream::dpdk::Eal;
use std::path::PathBuf;

/// When a run ends and what it reports: shared by `serve`, `replay` and `rx`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Stop after this many seconds (default: run until SIGINT/SIGTERM).
    #[arg(long, value_parser = positive_seconds)]
    pub duration: Option<f64>,
    /// Write the final report as JSON to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Seconds between stats lines on stderr (0: none).
    #[arg(long, default_value_t = 1.0, value_parser = seconds_or_zero)]
    pub stats_interval: f64,
}

/// clap value parser: a positive, finite number of seconds (rejected before
/// the EAL starts, instead of a panic in `Duration::from_secs_f64`).
pub fn positive_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("{s:?} is not a positive number of seconds")),
    }
}

/// clap value parser: zero (off) or a positive, finite number of seconds.
pub fn seconds_or_zero(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v >= 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("{s:?} is not 0 or a positive number of seconds")),
    }
}

/// Context of an EAL start-up failure; the EAL printed its reason above.
const EAL_FAILED: &str = "EAL initialisation failed (see the EAL message above; EAL options: https://doc.dpdk.org/guides-22.11/linux_gsg/linux_eal_parameters.html)";

/// Starts the EAL with `args` (plus `-l 0-N` unless they choose lcores) and
/// returns it with the first `workers` worker lcores.
fn start_eal(mut args: Vec<String>, workers: u16) -> anyhow::Result<(Eal, Vec<u32>)> {
    if workers == 0 {
        bail!("--workers must be at least 1");
    }
    if !Profile::sets_lcores(&args) {
        args.push("-l".into());
        args.push(format!("0-{workers}"));
    }
    let eal = Eal::init(&args).context(EAL_FAILED)?;
    let mut lcores = eal.worker_lcores();
    if lcores.len() < usize::from(workers) {
        bail!("{workers} workers need {workers} worker lcores, the EAL has {} (set -l 0-{workers})", lcores.len());
    }
    lcores.truncate(usize::from(workers));
    Ok((eal, lcores))
}
