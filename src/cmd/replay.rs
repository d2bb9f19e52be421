//! `metricsstream replay`: replays a pcap through real DPDK (the `net_pcap`
//! PMD with `infinite_rx=1`) into the workers, prints a stats line every
//! interval and a summary, and writes the JSON report.

use super::receive::{self, ReceiveArgs};
use anyhow::{bail, Context};
use clap::Args;
use metricsstream::config::{Profile, DEFAULT_REPLAY_PROFILE};
use metricsstream::pcap::count_packets;
use std::path::PathBuf;

/// Name of the pcap port replay creates.
const PCAP_PORT: &str = "net_pcap0";

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// pcap file (Ethernet) to replay; the PMD loads it into mbufs once and loops over it.
    #[arg(long)]
    pcap: PathBuf,
    /// Worker lcores, one RX queue each (each queue replays the whole pcap) [default: profile's rx_queues].
    #[arg(long)]
    workers: Option<u16>,
    /// DPDK profile (TOML) [default: dpdk-config/pcap-replay.toml, built in: --no-huge, no NIC].
    #[arg(long)]
    profile: Option<PathBuf>,
    /// Replay the file once (no loop) and stop when every packet has been received;
    /// for checking a capture's composition rather than speed.
    #[arg(long)]
    once: bool,
    #[command(flatten)]
    run: ReceiveArgs,
    /// Extra EAL arguments, appended to the profile's (e.g. `-- -m 2048`).
    #[arg(last = true)]
    eal_args: Vec<String>,
}

pub fn run(args: ReplayArgs) -> anyhow::Result<()> {
    let profile = match &args.profile {
        Some(path) => Profile::load(path)?,
        None => Profile::parse(DEFAULT_REPLAY_PROFILE, "built-in pcap-replay profile")?,
    };
    let workers = args.workers.unwrap_or(profile.port.rx_queues);
    let pcap = args.pcap.to_str().context("the pcap path is not UTF-8")?.to_string();
    if pcap.contains(',') {
        bail!("the pcap path must not contain ',' (DPDK device arguments are comma-separated)");
    }
    let packets = count_packets(&args.pcap).with_context(|| format!("cannot replay {pcap}"))?;
    if packets == 0 {
        bail!("{pcap} has no packets");
    }

    let mut eal_args = profile.eal.args.clone();
    eal_args.extend(args.eal_args.iter().cloned());
    let rx_pcaps: Vec<String> = (0..workers).map(|_| format!("rx_pcap={pcap}")).collect();
    eal_args.push("--vdev".into());
    let looping = if args.once { "" } else { ",infinite_rx=1" };
    eal_args.push(format!("{PCAP_PORT},{}{looping}", rx_pcaps.join(",")));

    let (eal, lcores) = super::start_eal(eal_args, workers)?;
    let port_id = eal.port_by_name(PCAP_PORT).context("the pcap port was not created")?;

    // infinite_rx keeps a copy of the whole file per queue in mbufs.
    let p = &profile.port;
    let held = if args.once { 0 } else { packets };
    let pool_size = receive::rx_pool_size(p, workers, held).context("the pcap is too large to hold in an mbuf pool")?;
    let (port, pool) = receive::open_rx_port(&eal, port_id, p, workers, pool_size, || {
        format!(
            "cannot allocate {pool_size} mbufs (~{} MiB) to hold {packets} packets x {workers} queue(s); raise -m after `--` or replay a smaller pcap",
            (u64::from(pool_size) * 2560) >> 20
        )
    })?;

    let banner = format!(
        "replaying {pcap} ({packets} packets) on {} with {workers} worker(s); {}",
        port.name(),
        match (args.run.duration(), args.once) {
            (Some(d), _) => format!("{d} s"),
            (None, true) => "once".into(),
            (None, false) => "until Ctrl-C".into(),
        }
    );
    let run = args.run.run_options("replay", args.once.then(|| packets * u64::from(workers)))?;
    receive::run(&eal, port, pool, &lcores, &run, &banner)
}
