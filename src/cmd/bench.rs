//! `metricsstream bench`: the in-process HTTP benchmark. One process, one
//! EAL, two ports wired back to back by a pair of rings (`net_ring`): the
//! `serve` worker (TCP stack, HTTP app, limiter, writer) on one lcore and
//! the `loadgen` worker on another, so req/s per worker is measured without
//! the kernel, veth or a second process polling the same cores.
//!
//! At the end loadgen stops first (it drains its in-flight requests), then
//! serve flushes and the writer fsyncs, so every 2xx loadgen counted is a
//! batch in the log (`metricsstream dump --data-dir`).

use super::housekeeping::LimiterSweeper;
use super::loadgen::{self as lg, LoadSource};
use anyhow::{bail, Context};
use clap::Args;
use metricsstream::config::{AppConfig, Profile};
use metricsstream::dpdk::{ring_port_pair, LcoreJob, Mempool, Port, PortConfig};
use metricsstream::limit::KeyedLimiter;
use metricsstream::net::{L2Config, SharedNeighbors};
use metricsstream::pipeline::ServeCounters;
use metricsstream::stats::{MbufReport, Published};
use metricsstream::time::MonotonicClock;
use metricsstream::worker;
use metricsstream::writer::Writer;
use smoltcp::wire::EthernetAddress;
use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// The appliance config `serve` runs with (its [net] ipv4 and [http] port are the target).
    #[arg(long)]
    config: PathBuf,
    #[command(flatten)]
    source: LoadSource,
    /// loadgen's address and prefix (in the appliance's prefix).
    #[arg(long, default_value = "198.18.0.2/24")]
    client_ip: String,
    /// Slots of each of the two rings joining the ports.
    #[arg(long, default_value_t = 4096)]
    ring_size: u32,
    /// EAL arguments [default: --no-huge -m 1024 --no-shconf --no-pci, and on a machine with
    /// fewer than 3 CPUs `--lcores 0@(0,1),1@1,2@0`: serve on CPU 1, loadgen on CPU 0].
    #[arg(last = true)]
    eal_args: Vec<String>,
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let config = AppConfig::load(&args.config)?;
    let (server_ip, prefix_len, gateway) = config.net.addresses().map_err(anyhow::Error::msg)?;
    let target = SocketAddrV4::new(server_ip, config.http.port);
    let client_ip = lg::parse_cidr(&args.client_ip)?;
    let requests = lg::requests(&args.source, target)?;
    if usize::from(u16::MAX) < args.source.connections
        || (config.http.max_connections_per_worker as usize) < args.source.connections
    {
        bail!(
            "{} connections need [http] max_connections_per_worker >= that (it is {})",
            args.source.connections,
            config.http.max_connections_per_worker
        );
    }

    let mut eal_args = if args.eal_args.is_empty() {
        ["--no-huge", "-m", "1024", "--no-shconf", "--no-pci", "--log-level", "*:warning"].map(String::from).to_vec()
    } else {
        args.eal_args.clone()
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if !Profile::sets_lcores(&eal_args) && cpus < 3 {
        // Two busy-polling workers on two CPUs; the main lcore and the writer float.
        eal_args.push("--lcores".into());
        eal_args.push("0@(0,1),1@1,2@0".into());
    }
    let (eal, lcores) = super::start_eal(eal_args, 2)?;
    let (serve_port_id, load_port_id) = ring_port_pair(&eal, "msbench", args.ring_size)?;
    let port_config = PortConfig { queues: 1, rx_desc: 1024, tx_desc: 1024, promiscuous: true };

    // --- serve on port A ---------------------------------------------------
    let serve_pool = Arc::new(
        Mempool::new(
            &eal,
            "bench_serve",
            lg::pool_size(&port_config) + args.ring_size,
            256,
            Mempool::DEFAULT_DATA_ROOM,
        )
        .context("cannot allocate the serve mbuf pool; raise -m")?,
    );
    let mut serve_port = Port::open(&eal, serve_port_id, &port_config, serve_pool.clone())?;
    let serve_baseline = serve_pool.in_use();
    let serve_mac = serve_port.mac()?;
    let (writer, handles) = Writer::start(config.writer.clone(), 2)
        .with_context(|| format!("cannot start the writer in {}", config.writer.data_dir.display()))?;
    let mut handles = handles.into_iter();
    let (Some(app_writer), Some(udp_writer)) = (handles.next(), handles.next()) else {
        bail!("internal error: the writer gave fewer handles than asked for");
    };
    let limiter = Arc::new(KeyedLimiter::new(&config.limits)?);
    let clock = MonotonicClock::new();
    let _sweeper = LimiterSweeper::spawn(limiter.clone(), clock).context("cannot start the limiter's sweeper")?;
    let shared = super::serve::app_shared(&config, limiter, Arc::new(|_: &mut String| {}), &clock);
    let link = L2Config {
        mac: EthernetAddress(serve_mac),
        ip: server_ip,
        prefix_len,
        gateway,
        neighbor_capacity: config.net.neighbors,
    };
    let serve_stop = Arc::new(AtomicBool::new(false));
    let setup = super::serve::WorkerSetup {
        config: &config,
        link,
        neighbors: SharedNeighbors::new(config.net.neighbors),
        shared: &shared,
        clock,
        pool: serve_pool.clone(),
        stop: serve_stop.clone(),
    };
    let Some(queues) = serve_port.take_queues().into_iter().next() else { bail!("the serve port has no queue") };
    let serve_published: Arc<Published<ServeCounters>> = Arc::new(Published::default());
    let w = setup.worker(0, queues, (app_writer, udp_writer), serve_published.clone(), None)?;
    let serve_job = LcoreJob::launch(&eal, lcores[0], move || worker::run_serve(w))?;

    // --- loadgen on port B -------------------------------------------------
    let load_pool = Arc::new(
        Mempool::new(&eal, "bench_load", lg::pool_size(&port_config) + args.ring_size, 256, Mempool::DEFAULT_DATA_ROOM)
            .context("cannot allocate the loadgen mbuf pool; raise -m")?,
    );
    let mut load_port = Port::open(&eal, load_port_id, &port_config, load_pool.clone())?;
    let load_baseline = load_pool.in_use();
    let interrupted = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, interrupted.clone())?;
        signal_hook::flag::register(sig, interrupted.clone())?;
    }
    eprintln!(
        "bench: serve {server_ip}:{} on lcore {} <-> ring pair <-> loadgen {}/{} on lcore {}: {} connections, {} s, data in {} (ack {:?})",
        config.http.port,
        lcores[0],
        client_ip.0,
        client_ip.1,
        lcores[1],
        args.source.connections,
        args.source.duration,
        config.writer.data_dir.display(),
        config.writer.ack,
    );
    let running = lg::launch(
        &eal,
        &mut load_port,
        load_pool.clone(),
        lcores[1],
        client_ip,
        None,
        target,
        requests,
        &args.source,
    )?;
    let steady = lg::wait(&running, args.source.duration, args.source.stats_interval, &interrupted);
    let load_report = lg::finish(running, steady)?;

    // --- stop serve, drain the writer -------------------------------------
    serve_stop.store(true, Ordering::Relaxed);
    serve_job.join()?;
    let served = serve_published.snapshot();
    // Both workers are gone: what each sent that the other never read is
    // still in the rings between the ports (a wire that keeps its frames).
    let in_flight_discarded = [&mut serve_port, &mut load_port]
        .map(|p| p.discard_received().context("internal error: a queue of the ring pair is still in use"))
        .into_iter()
        .sum::<anyhow::Result<u64>>()?;
    let (serve_at_stop, load_at_stop) = (serve_pool.in_use(), load_pool.in_use());
    drop(load_port);
    drop(serve_port);
    let mbufs = |pool: &Mempool, idle_baseline, in_use_at_stop| MbufReport {
        pool_size: pool.size(),
        idle_baseline,
        in_use_at_stop,
        in_use_after_close: pool.in_use(),
        tx_ring_may_hold: 0,
    };
    let (serve_mbufs, load_mbufs) =
        (mbufs(&serve_pool, serve_baseline, serve_at_stop), mbufs(&load_pool, load_baseline, load_at_stop));
    let summary = writer.shutdown().context("writer shutdown")?;
    let mut load_report = load_report;
    load_report["mbufs"] = serde_json::to_value(load_mbufs)?;
    let report = serde_json::json!({
        "mode": "in-process (net_ring pair), one serve worker + one loadgen worker",
        "ack": format!("{:?}", config.writer.ack),
        "loadgen": load_report,
        "serve": {
            "net": served.net,
            "http": served.http,
            "records_written": summary.records_written,
            "fsyncs": summary.fsyncs,
            "commit": summary.commit,
            "tx_no_mbuf": served.tx_no_mbuf,
            "tx_unsent_dropped": served.tx_unsent_dropped,
            "mbufs": serve_mbufs,
        },
        "frames_in_flight_at_stop": in_flight_discarded,
    });
    println!("{}", lg::summary(&report["loadgen"]));
    println!(
        "serve: {} requests, 2xx {}, records accepted {}, written {}, fsyncs {}",
        served.http.requests,
        served.http.responses_2xx,
        served.http.records_accepted,
        summary.records_written,
        summary.fsyncs
    );
    if let Some(path) = &args.source.report {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("cannot write the report to {}", path.display()))?;
    }
    for (side, m) in [("serve", serve_mbufs), ("loadgen", load_mbufs)] {
        if !m.balances() {
            bail!("internal error: {side}'s mbufs do not return to the pool: {m:?}");
        }
    }
    Ok(())
}
