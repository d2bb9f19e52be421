//! `metricsstream rx`: the replay datapath (receive, classify, count, free) on
//! any DPDK port: a NIC bound with scripts/bind-nic.sh, a virtio device in the
//! Vagrant VM, a vhost/virtio-user or AF_PACKET vdev. Reads Mpps off a real
//! port, and shows what arrives on it.

use super::receive::{self, ReceiveArgs};
use anyhow::Context;
use clap::Args;
use metricsstream::config::Profile;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct RxArgs {
    /// DPDK profile (TOML) naming the EAL arguments and the port (e.g. dpdk-config/virtio.toml).
    #[arg(long)]
    profile: PathBuf,
    /// Stop once this many packets have arrived.
    #[arg(long)]
    packets: Option<u64>,
    /// Worker lcores, one RX queue each [default: profile's rx_queues].
    #[arg(long)]
    workers: Option<u16>,
    #[command(flatten)]
    run: ReceiveArgs,
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
    let pool_size = receive::rx_pool_size(p, workers, 0).context("the mbuf pool size does not fit in 32 bits")?;
    let (port, pool) = receive::open_rx_port(&eal, p.port_id, p, workers, pool_size, || {
        format!("cannot allocate {pool_size} mbufs; raise -m (or reserve hugepages)")
    })?;
    let banner = format!("rx on port {} ({})", p.port_id, port.name());
    let run = args.run.run_options("rx", args.packets)?;
    receive::run(&eal, port, pool, &lcores, &run, &banner)
}
