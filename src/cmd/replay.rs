//! `metricsstream replay`: replays a pcap through real DPDK (the `net_pcap`
//! PMD with `infinite_rx=1`) into the workers, prints a stats line every
//! interval and a summary, and writes the JSON report.

use anyhow::{bail, Context};
use clap::Args;
use metricsstream::config::{Profile, DEFAULT_REPLAY_PROFILE};
use metricsstream::dpdk::{self, Eal, LcoreJob, Mempool, Port, PortConfig, BURST_SIZE};
use metricsstream::pcap::count_packets;
use metricsstream::stats::{
    self, Dropped, MbufReport, PortReport, ReplayReport, RxCounters, SharedRxCounters, WorkerReport,
};
use metricsstream::worker;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Name of the pcap port replay creates.
const PCAP_PORT: &str = "net_pcap0";

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// pcap file (Ethernet) to replay; the PMD loads it into mbufs once and loops over it.
    #[arg(long)]
    pcap: PathBuf,
    /// Stop after this many seconds (default: run until SIGINT/SIGTERM).
    #[arg(long)]
    duration: Option<f64>,
    /// Worker lcores, one RX queue each (each queue replays the whole pcap) [default: profile's rx_queues].
    #[arg(long)]
    workers: Option<u16>,
    /// Write the final report as JSON to this file.
    #[arg(long)]
    report: Option<PathBuf>,
    /// DPDK profile (TOML) [default: dpdk-config/pcap-replay.toml, built in: --no-huge, no NIC].
    #[arg(long)]
    profile: Option<PathBuf>,
    /// Replay the file once (no loop) and stop when every packet has been received;
    /// for checking a capture's composition rather than speed.
    #[arg(long)]
    once: bool,
    /// Seconds between stats lines on stderr (0: none).
    #[arg(long, default_value_t = 1.0)]
    stats_interval: f64,
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
    if workers == 0 {
        bail!("--workers must be at least 1");
    }
    if let Some(d) = args.duration {
        if !(d > 0.0 && d.is_finite()) {
            bail!("--duration must be a positive number of seconds");
        }
    }
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
    if !Profile::sets_lcores(&eal_args) {
        eal_args.push("-l".into());
        eal_args.push(format!("0-{workers}"));
    }
    let rx_pcaps: Vec<String> = (0..workers).map(|_| format!("rx_pcap={pcap}")).collect();
    eal_args.push("--vdev".into());
    let looping = if args.once { "" } else { ",infinite_rx=1" };
    eal_args.push(format!("{PCAP_PORT},{}{looping}", rx_pcaps.join(",")));

    let eal = Eal::init(&eal_args).context("EAL initialisation failed (see the EAL message above; EAL options: https://doc.dpdk.org/guides-22.11/linux_gsg/linux_eal_parameters.html)")?;
    let lcores = eal.worker_lcores();
    if lcores.len() < usize::from(workers) {
        bail!("{workers} workers need {workers} worker lcores, the EAL has {} (set -l 0-{workers})", lcores.len());
    }
    let port_id = eal.port_by_name(PCAP_PORT).context("the pcap port was not created")?;

    // infinite_rx keeps a copy of the whole file per queue in mbufs.
    let p = &profile.port;
    let held = if args.once { 0 } else { packets };
    let per_queue = held + u64::from(p.rx_desc) + 2 * BURST_SIZE as u64;
    let pool_size =
        u64::from(workers) * per_queue + u64::from(p.mbufs) + u64::from(p.mbuf_cache) * (u64::from(workers) + 1);
    let pool_size = u32::try_from(pool_size).context("the pcap is too large to hold in an mbuf pool")?;
    let pool = Arc::new(
        Mempool::new(&eal, "ms_rx_pool", pool_size, p.mbuf_cache, Mempool::DEFAULT_DATA_ROOM).with_context(|| {
            format!(
                "cannot allocate {pool_size} mbufs (~{} MiB) to hold {packets} packets x {workers} queue(s); raise -m after `--` or replay a smaller pcap",
                (u64::from(pool_size) * 2560) >> 20
            )
        })?,
    );
    let config = PortConfig { queues: workers, rx_desc: p.rx_desc, tx_desc: p.tx_desc, promiscuous: true };
    let mut port = Port::open(&eal, port_id, &config, pool.clone())?;

    let stop = Arc::new(AtomicBool::new(false));
    // A second SIGINT/SIGTERM while stopping exits at once.
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone())?;
        signal_hook::flag::register(sig, stop.clone())?;
    }

    let counters: Vec<Arc<SharedRxCounters>> = (0..workers).map(|_| Arc::new(SharedRxCounters::default())).collect();
    let mut jobs = Vec::new();
    for ((rx, _tx), (lcore, shared)) in port.take_queues().into_iter().zip(lcores.iter().zip(&counters)) {
        let (shared, stop) = (shared.clone(), stop.clone());
        jobs.push(LcoreJob::launch(&eal, *lcore, move || worker::run_classify(rx, shared, stop))?);
    }
    eprintln!(
        "replaying {pcap} ({packets} packets) on {} ({} queue(s), RSS {}) with {workers} worker(s) on lcores {:?}; {}",
        port.name(),
        port.queues(),
        if port.rss() { "on" } else { "off" },
        &lcores[..usize::from(workers)],
        match args.duration {
            Some(d) => format!("{d} s"),
            None if args.once => "once".into(),
            None => "until Ctrl-C".into(),
        }
    );

    let total = |cs: &[Arc<SharedRxCounters>]| {
        let mut t = RxCounters::default();
        cs.iter().for_each(|c| t.add(&c.snapshot()));
        t
    };
    let dropped = |port: &Port| {
        port.stats()
            .map(|s| Dropped { imissed: s.imissed, nombuf: s.rx_nombuf, ierrors: s.ierrors })
            .unwrap_or_default()
    };

    let start = Instant::now();
    let deadline = args.duration.map(|d| start + Duration::from_secs_f64(d));
    let interval = (args.stats_interval > 0.0).then(|| Duration::from_secs_f64(args.stats_interval));
    let mut next_tick = interval.map(|i| start + i);
    let mut prev = RxCounters::default();
    let mut prev_at = start;
    let stopped_at = loop {
        let now = Instant::now();
        if stop.load(Ordering::Relaxed) {
            break now;
        }
        let all_received = args.once && total(&counters).rx_packets >= packets * u64::from(workers);
        if all_received || deadline.is_some_and(|d| now >= d) {
            stop.store(true, Ordering::Relaxed);
            break now;
        }
        if let (Some(tick), Some(i)) = (next_tick, interval) {
            if now >= tick {
                let t = total(&counters);
                let mut delta = t;
                delta.rx_packets -= prev.rx_packets;
                delta.rx_bytes -= prev.rx_bytes;
                for (d, p) in delta.classes.iter_mut().zip(prev.classes) {
                    *d -= p;
                }
                let line = stats::stats_line(
                    (now - start).as_secs_f64(),
                    &delta,
                    (now - prev_at).as_secs_f64(),
                    &dropped(&port),
                );
                eprintln!("{line}");
                prev = t;
                prev_at = now;
                next_tick = Some(tick + i);
            }
        }
        let mut wake = now + Duration::from_millis(if args.once { 5 } else { 50 });
        for t in [deadline, next_tick].into_iter().flatten() {
            wake = wake.min(t);
        }
        std::thread::sleep(wake.saturating_duration_since(now));
    };
    for job in jobs {
        job.join()?;
    }
    let elapsed = (stopped_at - start).as_secs_f64();

    let t = total(&counters);
    if !t.balances() {
        bail!("internal error: per-class counters do not add up to rx_packets");
    }
    let port_stats = port.stats()?;
    let (rx_mpps, rx_gbps) = stats::rates(t.rx_packets, t.rx_bytes, elapsed);
    let report = ReplayReport {
        duration_s: elapsed,
        rx_packets: t.rx_packets,
        rx_bytes: t.rx_bytes,
        rx_mpps,
        rx_gbps,
        classes: ReplayReport::class_map(&t),
        malformed: ReplayReport::malformed_map(&t),
        vlan_tagged: t.vlan_tagged,
        dropped: dropped(&port),
        workers: counters
            .iter()
            .enumerate()
            .map(|(q, c)| {
                let s = c.snapshot();
                WorkerReport {
                    lcore: lcores[q],
                    queue: q as u16,
                    rx_packets: s.rx_packets,
                    rx_mpps: stats::rates(s.rx_packets, 0, elapsed).0,
                    rx_bursts: s.rx_bursts,
                    empty_polls: s.empty_polls,
                }
            })
            .collect(),
        port: PortReport {
            id: port.id(),
            name: port.name().to_string(),
            queues: port.queues(),
            rss: port.rss(),
            ipackets: port_stats.ipackets,
            ibytes: port_stats.ibytes,
        },
        mbufs: MbufReport { pool_size: pool.size(), in_use_at_stop: pool.in_use() },
        dpdk_version: dpdk::version(),
    };
    drop(port);

    println!(
        "replay: {:.2} s, {} packets, {:.3} Mpps, {:.2} Gbps over {} worker(s)",
        report.duration_s, report.rx_packets, report.rx_mpps, report.rx_gbps, workers
    );
    let classes: Vec<String> = report.classes.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!("  classes: {}", classes.join(", "));
    println!(
        "  dropped: imissed {}, nombuf {}, ierrors {}",
        report.dropped.imissed, report.dropped.nombuf, report.dropped.ierrors
    );
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("cannot write the report to {}", path.display()))?;
        println!("  report: {}", path.display());
    }
    Ok(())
}
