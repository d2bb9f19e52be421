//! `metricsstream rx`: the replay datapath (receive, classify, count, free) on
//! any DPDK port: a NIC bound with scripts/bind-nic.sh, a virtio device in the
//! Vagrant VM, a vhost/virtio-user or AF_PACKET vdev. Reads Mpps off a real
//! port, and shows what arrives on it.

use super::receive::{self, RunOptions};
use anyhow::Context;
use clap::Args;
use metricsstream::config::AppConfig;
use metricsstream::config::Profile;
use metricsstream::dpdk::{Mempool, Port, PortConfig, BURST_SIZE};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args, Debug)]
pub struct RxArgs {
    /// DPDK profile (TOML) naming the EAL arguments and the port (e.g. dpdk-config/virtio.toml).
    #[arg(long)]
    profile: PathBuf,
    /// Stop after this many seconds (default: run until SIGINT/SIGTERM).
    #[arg(long)]
    duration: Option<f64>,
    /// Stop once this many packets have arrived.
    #[arg(long)]
    packets: Option<u64>,
    /// Worker lcores, one RX queue each [default: profile's rx_queues].
    #[arg(long)]
    workers: Option<u16>,
    /// Write the final report as JSON to this file.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Write every frame a worker receives to this pcap (one file per worker:
    /// FILE-qN.pcap when there are several). Costs throughput while on.
    #[arg(long, value_name = "FILE")]
    trace_pcap: Option<PathBuf>,
    /// Appliance config (TOML, e.g. dpdk-config/metricsstream.toml): run the UDP
    /// ingestion pipeline (parse, limit, write to [writer] data_dir) on its [udp] ports.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Seconds between stats lines on stderr (0: none).
    #[arg(long, default_value_t = 1.0)]
    stats_interval: f64,
    /// Extra EAL arguments, appended to the profile's (e.g. `-- --vdev net_tap0`).
    #[arg(last = true)]
    eal_args: Vec<String>,
}

pub fn run(args: RxArgs) -> anyhow::Result<()> {
    let profile = Profile::load(&args.profile)?;
    let workers = args.workers.unwrap_or(profile.port.rx_queues);
    let mut eal_args = profile.eal.args.clone();
    eal_args.extend(args.eal_args.iter().cloned());
    let (eal, lcores) = super::start_eal(eal_args, workers)?;
    let p = &profile.port;
    let pool_size = u32::from(workers) * (u32::from(p.rx_desc) + 2 * BURST_SIZE as u32)
        + p.mbufs
        + p.mbuf_cache * (u32::from(workers) + 1);
    let pool = Arc::new(
        Mempool::new(&eal, "ms_rx_pool", pool_size, p.mbuf_cache, Mempool::DEFAULT_DATA_ROOM)
            .with_context(|| format!("cannot allocate {pool_size} mbufs; raise -m (or reserve hugepages)"))?,
    );
    let config = PortConfig { queues: workers, rx_desc: p.rx_desc, tx_desc: p.tx_desc, promiscuous: true };
    let port = Port::open(&eal, p.port_id, &config, pool.clone())?;
    let banner = format!("rx on port {} ({})", p.port_id, port.name());
    let run = RunOptions {
        label: "rx",
        duration: args.duration,
        stats_interval: args.stats_interval,
        stop_after_packets: args.packets,
        report: args.report.clone(),
        ingest: args.config.as_deref().map(AppConfig::load).transpose()?,
        trace_pcap: args.trace_pcap.clone(),
    };
    receive::run(&eal, port, pool, &lcores, &run, &banner)
}
