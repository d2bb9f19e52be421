//! The subcommands: argument structs (clap) and the code that runs them.
//! Binary-only code: errors are `anyhow` here and typed in the library.
pub mod bench;
pub mod bench_report;
pub mod gen_pcap;
pub mod loadgen;
pub mod receive;
pub mod replay;
pub mod rx;
pub mod serve;

use anyhow::{bail, Context};
use metricsstream::config::Profile;
use metricsstream::dpdk::Eal;

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
