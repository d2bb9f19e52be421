//! The receive-and-count run shared by `replay` (pcap port) and `rx` (any
//! port): launches one classify worker per queue, prints the stats line every
//! interval, stops on a signal, a deadline or a packet count, and writes the
//! summary and the JSON report.

use super::housekeeping::LimiterSweeper;
use anyhow::{bail, Context};
use clap::Args;
use metricsstream::config::{AppConfig, PortSection};
use metricsstream::dpdk::{self, Eal, LcoreJob, Mempool, Port, PortConfig, BURST_SIZE};
use metricsstream::limit::KeyedLimiter;
use metricsstream::net::FrameClass;
use metricsstream::pcap::trace::{self, PacketTrace};
use metricsstream::pipeline::{UdpCounters, UdpIngest};
use metricsstream::stats::{
    self, Dropped, LifecycleReport, MbufReport, PortReport, ProcessResources, ReplayReport, RxCounters,
    SharedRxCounters, WorkerReport,
};
use metricsstream::stats::{IngestReport, Published};
use metricsstream::time::MonotonicClock;
use metricsstream::worker::{self, RxTrace, UdpStage};
use metricsstream::writer::Writer;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The options `replay` and `rx` share: when the run ends, what it reports,
/// and whether it runs the UDP ingestion pipeline.
#[derive(Args, Debug)]
pub struct ReceiveArgs {
    #[command(flatten)]
    run: super::RunArgs,
    /// Write every frame a worker receives to this pcap (one file per worker:
    /// FILE-qN.pcap when there are several). Costs throughput while on.
    #[arg(long, value_name = "FILE")]
    trace_pcap: Option<PathBuf>,
    /// Appliance config (TOML, e.g. dpdk-config/metricsstream.toml): run the UDP
    /// ingestion pipeline (parse, limit, write to [writer] data_dir) on its [udp] ports.
    #[arg(long)]
    config: Option<PathBuf>,
}

impl ReceiveArgs {
    pub fn duration(&self) -> Option<f64> {
        self.run.duration
    }

    /// The run's options (loads the appliance config, if any).
    pub fn run_options(&self, label: &'static str, stop_after_packets: Option<u64>) -> anyhow::Result<RunOptions> {
        Ok(RunOptions {
            label,
            duration: self.run.duration,
            stats_interval: self.run.stats_interval,
            stop_after_packets,
            report: self.run.report.clone(),
            ingest: self.config.as_deref().map(AppConfig::load).transpose()?,
            trace_pcap: self.trace_pcap.clone(),
        })
    }
}

/// Mbufs for `workers` RX queues of port `p`: per queue its descriptor ring,
/// two bursts in flight and `held_per_queue` more (a looping pcap's copy);
/// then the profile's spare mbufs and one cache per lcore (workers + main).
/// `None` if that does not fit a mempool's `u32` size.
pub fn rx_pool_size(p: &PortSection, workers: u16, held_per_queue: u64) -> Option<u32> {
    let per_queue = held_per_queue + u64::from(p.rx_desc) + 2 * BURST_SIZE as u64;
    let total =
        u64::from(workers) * per_queue + u64::from(p.mbufs) + u64::from(p.mbuf_cache) * (u64::from(workers) + 1);
    u32::try_from(total).ok()
}

/// Creates the receive pool of `pool_size` mbufs and opens `port_id` with one
/// RX queue per worker, promiscuous. `alloc_failed` says what to do when the
/// pool cannot be allocated.
pub fn open_rx_port(
    eal: &Eal,
    port_id: u16,
    p: &PortSection,
    workers: u16,
    pool_size: u32,
    alloc_failed: impl FnOnce() -> String,
) -> anyhow::Result<(Port, Arc<Mempool>)> {
    let pool = Arc::new(
        Mempool::new(eal, "ms_rx_pool", pool_size, p.mbuf_cache, Mempool::DEFAULT_DATA_ROOM)
            .with_context(alloc_failed)?,
    );
    let config = PortConfig { queues: workers, rx_desc: p.rx_desc, tx_desc: p.tx_desc, promiscuous: true };
    let port = Port::open(eal, port_id, &config, pool.clone())?;
    Ok((port, pool))
}

/// When and how a receive run ends and reports.
pub struct RunOptions {
    /// Names the run in the summary ("replay", "rx").
    pub label: &'static str,
    pub duration: Option<f64>,
    /// Seconds between stats lines (0: none).
    pub stats_interval: f64,
    /// Stop once this many packets have arrived (a pcap replayed once).
    pub stop_after_packets: Option<u64>,
    pub report: Option<PathBuf>,
    /// Run the UDP ingestion pipeline (parse, limit, write) with this config,
    /// instead of classifying only.
    pub ingest: Option<AppConfig>,
    /// Write every received frame to this pcap (one file per worker).
    pub trace_pcap: Option<PathBuf>,
}

/// Runs classify workers on `lcores` (one per queue of `port`) until the run ends.
pub fn run(
    eal: &Eal,
    mut port: Port,
    pool: Arc<Mempool>,
    lcores: &[u32],
    run: &RunOptions,
    banner: &str,
) -> anyhow::Result<()> {
    let eal = eal.clone();
    // Taken before any worker or writer thread exists (the port is started and idle).
    let at_start = ProcessResources::now();
    let idle_baseline = pool.in_use();
    let stop = Arc::new(AtomicBool::new(false));
    // A second SIGINT/SIGTERM while stopping exits at once.
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone())?;
        signal_hook::flag::register(sig, stop.clone())?;
    }

    let workers = lcores.len();
    let counters: Vec<Arc<SharedRxCounters>> = (0..workers).map(|_| Arc::new(SharedRxCounters::default())).collect();
    let udp_counters: Vec<Arc<Published<UdpCounters>>> = (0..workers).map(|_| Arc::new(Published::default())).collect();
    let clock = MonotonicClock::new();
    let mut pipeline = match &run.ingest {
        Some(config) => {
            let (runtime, handles) = Writer::start(config.writer.clone(), workers)
                .with_context(|| format!("cannot start the writer in {}", config.writer.data_dir.display()))?;
            let limiter = Arc::new(KeyedLimiter::new(&config.limits)?);
            let sweeper =
                LimiterSweeper::spawn(limiter.clone(), clock).context("cannot start the limiter's sweeper")?;
            let ingests: Vec<UdpIngest> =
                handles.into_iter().map(|h| UdpIngest::new(config.udp.clone(), limiter.clone(), h)).collect();
            Some((runtime, ingests, sweeper))
        }
        None => None,
    };
    let mut ingests = pipeline
        .as_mut()
        .map(|(_, i, _)| std::mem::take(i).into_iter().map(move |u| u.with_unix_offset(clock.unix_at_epoch_ns())));
    let mut jobs = Vec::new();
    for (q, (rx, _tx)) in port.take_queues().into_iter().enumerate() {
        let (shared, stop) = (counters[q].clone(), stop.clone());
        let udp = ingests.as_mut().and_then(Iterator::next).map(|ingest| UdpStage {
            ingest,
            published: udp_counters[q].clone(),
            clock,
        });
        let trace = match &run.trace_pcap {
            Some(base) => {
                let path = trace::path_for_worker(base, q as u16, workers as u16);
                let file = PacketTrace::create(&path, clock.unix_at_epoch_ns())
                    .with_context(|| format!("--trace-pcap: cannot create {}", path.display()))?;
                Some(RxTrace { file, clock })
            }
            None => None,
        };
        jobs.push(LcoreJob::launch(&eal, lcores[q], move || worker::run_rx(rx, shared, udp, trace, stop))?);
    }
    eprintln!(
        "{banner}: {} queue(s), RSS {}, worker lcores {lcores:?}",
        port.queues(),
        if port.rss() { "on" } else { "off" }
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
    let deadline = run.duration.map(|d| start + Duration::from_secs_f64(d));
    let interval = (run.stats_interval > 0.0).then(|| Duration::from_secs_f64(run.stats_interval));
    let mut next_tick = interval.map(|i| start + i);
    let mut prev = RxCounters::default();
    let mut prev_at = start;
    let stopped_at = loop {
        let now = Instant::now();
        if stop.load(Ordering::Relaxed) {
            break now;
        }
        let all_received = run.stop_after_packets.is_some_and(|n| total(&counters).rx_packets >= n);
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
        let mut wake = now + Duration::from_millis(if run.stop_after_packets.is_some() { 5 } else { 50 });
        for t in [deadline, next_tick].into_iter().flatten() {
            wake = wake.min(t);
        }
        std::thread::sleep(wake.saturating_duration_since(now));
    };
    for job in jobs {
        job.join()?;
    }
    let elapsed = (stopped_at - start).as_secs_f64();

    // Workers are gone (their writer handles with them): drain and fsync.
    let ingest = match pipeline {
        Some((runtime, _, sweeper)) => {
            sweeper.stop();
            let summary = runtime.shutdown().context("writer shutdown")?;
            let mut u = UdpCounters::default();
            udp_counters.iter().for_each(|c| u.add(&c.snapshot()));
            Some(IngestReport::new(u, summary.records_written))
        }
        None => None,
    };
    let t = total(&counters);
    if let Some(i) = &ingest {
        if i.udp_datagrams != t.class(FrameClass::Ipv4Udp) || !i.balances() {
            bail!("internal error: UDP counters do not balance: {i:?}");
        }
    }
    if !t.balances() {
        bail!("internal error: per-class counters do not add up to rx_packets");
    }
    let port_stats = port.stats()?;
    let (rx_mpps, rx_gbps) = stats::rates(t.rx_packets, t.rx_bytes, elapsed);
    let mut report = ReplayReport {
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
        mbufs: MbufReport {
            pool_size: pool.size(),
            idle_baseline,
            in_use_at_stop: pool.in_use(),
            in_use_after_close: 0,
            tx_ring_may_hold: 0,
        },
        process: LifecycleReport { at_start, at_exit: at_start },
        dpdk_version: dpdk::version(),
        ingest,
    };
    drop(port);
    report.mbufs.in_use_after_close = pool.in_use();
    report.process.at_exit = ProcessResources::now();

    println!(
        "{}: {:.2} s, {} packets, {:.3} Mpps, {:.2} Gbps over {} worker(s)",
        run.label, report.duration_s, report.rx_packets, report.rx_mpps, report.rx_gbps, workers
    );
    let classes: Vec<String> = report.classes.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!("  classes: {}", classes.join(", "));
    println!(
        "  dropped: imissed {}, nombuf {}, ierrors {}",
        report.dropped.imissed, report.dropped.nombuf, report.dropped.ierrors
    );
    if let Some(i) = &report.ingest {
        println!(
            "  udp: {} datagrams (line {}, statsd {}, other ports {})",
            i.udp_datagrams, i.counters.datagrams_line, i.counters.datagrams_statsd, i.counters.datagrams_other_port
        );
        println!(
            "  records: parsed {}, accepted {}, written {}, limited {}, invalid lines {}, dropped (writer full) {}",
            i.counters.records_parsed,
            i.counters.records_accepted,
            i.records_written,
            i.counters.records_limited,
            i.counters.records_invalid,
            i.counters.records_dropped_writer_full
        );
    }
    if let Some(path) = &run.report {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("cannot write the report to {}", path.display()))?;
        println!("  report: {}", path.display());
    }
    if !report.mbufs.balances() {
        bail!("internal error: mbufs do not return to the pool: {:?}", report.mbufs);
    }
    if !report.process.balances() {
        bail!("internal error: threads or file descriptors outlive the run: {:?}", report.process);
    }
    Ok(())
}
