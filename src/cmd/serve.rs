//! `metricsstream serve`: the appliance. Workers run the userspace TCP/IP
//! stack with the HTTP write APIs and the UDP ingestion ports on a DPDK
//! port; the writer thread persists what they accept. Runs until
//! SIGINT/SIGTERM (or `--duration`), then stops accepting connections (new
//! SYNs get an RST, counted), lets requests in progress and held responses
//! finish (at most `DRAIN`), drains and fsyncs the writer, and writes the report.

use super::housekeeping::LimiterSweeper;
use anyhow::{bail, Context};
use clap::Args;
use metricsstream::config::{AppConfig, Profile};
use metricsstream::dpdk::{LcoreJob, Mempool, Port, PortConfig, RxQueue, TxQueue, BURST_SIZE};
use metricsstream::limit::KeyedLimiter;
use metricsstream::net::{L2Config, NetStack, NetStackConfig, SharedNeighbors};
use metricsstream::pcap::trace::{self, PacketTrace};
use metricsstream::pipeline::{AppShared, HttpApp, MetricsRenderer, ServeCore, ServeCounters, UdpIngest};
use metricsstream::stats::{LifecycleReport, MbufReport, ProcessResources, Published};
use metricsstream::time::MonotonicClock;
use metricsstream::worker::{self, ServeWorker};
use metricsstream::writer::{Shipper, Writer, WriterHandle, WriterStats};
use smoltcp::wire::EthernetAddress;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Appliance config (TOML; every key documented in dpdk-config/metricsstream.toml).
    #[arg(long)]
    config: PathBuf,
    /// DPDK profile (TOML): EAL arguments and port settings. Without it, the EAL gets
    /// exactly the arguments after `--`.
    #[arg(long)]
    profile: Option<PathBuf>,
    /// Worker lcores, one RX/TX queue pair each [default: profile's rx_queues, or 1].
    #[arg(long)]
    workers: Option<u16>,
    #[command(flatten)]
    run: super::RunArgs,
    /// Write every frame a worker receives and sends to this pcap (one file
    /// per worker: FILE-qN.pcap when there are several). Costs throughput while on.
    #[arg(long, value_name = "FILE")]
    trace_pcap: Option<PathBuf>,
    /// Run several workers although the port cannot keep each flow on one
    /// queue (no RSS, no kernel fanout): a TCP segment that lands on another
    /// worker's queue is then answered with RST. UDP is not affected.
    #[arg(long)]
    allow_no_rss: bool,
    /// EAL arguments (appended to the profile's), e.g. `-- --no-huge -m 512 --vdev net_af_packet0,iface=veth0`.
    #[arg(last = true)]
    eal_args: Vec<String>,
}

/// How the port keeps each flow on one queue (so on the worker whose stack holds it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FlowSpreading {
    /// One queue: nothing to spread.
    SingleQueue,
    /// The NIC hashes the 4-tuple (RSS).
    Rss,
    /// `net_af_packet` queues are a kernel fanout group hashing each flow
    /// (PACKET_FANOUT_HASH): consistent per flow, although the PMD reports no RSS.
    KernelFanout,
    /// Nothing keeps a flow on one queue.
    None,
}

impl FlowSpreading {
    fn of(port: &Port) -> FlowSpreading {
        if port.queues() <= 1 {
            FlowSpreading::SingleQueue
        } else if port.rss() {
            FlowSpreading::Rss
        } else if port.name().starts_with("net_af_packet") {
            FlowSpreading::KernelFanout
        } else {
            FlowSpreading::None
        }
    }

    fn describe(self) -> &'static str {
        match self {
            FlowSpreading::SingleQueue => "nothing (one queue)",
            FlowSpreading::Rss => "RSS",
            FlowSpreading::KernelFanout => "the kernel's AF_PACKET fanout hash",
            FlowSpreading::None => "nothing (no RSS: --allow-no-rss)",
        }
    }
}

/// Requests in progress and held (durable) responses get this long to finish after a stop signal.
const DRAIN: Duration = Duration::from_secs(2);

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = AppConfig::load(&args.config)?;
    let profile = match &args.profile {
        Some(path) => Some(Profile::load(path)?),
        None => None,
    };
    let port_section = profile.as_ref().map(|p| p.port.clone()).unwrap_or_default();
    let workers = args.workers.unwrap_or(port_section.rx_queues);
    let mut eal_args = profile.as_ref().map(|p| p.eal.args.clone()).unwrap_or_default();
    eal_args.extend(args.eal_args.iter().cloned());
    let (ip, prefix_len, gateway) = config.net.addresses().map_err(anyhow::Error::msg)?;

    warn_small_af_packet_ring(&eal_args);
    let (eal, lcores) = super::start_eal(eal_args, workers)?;
    let port_id = profile.as_ref().map_or(config.net.port_id, |p| p.port.port_id);
    let p = &port_section;
    let pool_size = u32::from(workers) * (u32::from(p.rx_desc) + u32::from(p.tx_desc) + 4 * BURST_SIZE as u32)
        + p.mbufs
        + p.mbuf_cache * (u32::from(workers) + 1);
    let pool = Arc::new(
        Mempool::new(&eal, "ms_pool", pool_size, p.mbuf_cache, Mempool::DEFAULT_DATA_ROOM)
            .with_context(|| format!("cannot allocate {pool_size} mbufs; raise -m (or reserve hugepages)"))?,
    );
    let port_config = PortConfig { queues: workers, rx_desc: p.rx_desc, tx_desc: p.tx_desc, promiscuous: true };
    let mut port = Port::open(&eal, port_id, &port_config, pool.clone())?;
    let spreading = FlowSpreading::of(&port);
    if workers > 1 && spreading == FlowSpreading::None && !args.allow_no_rss {
        bail!(
            "port {port_id} ({}) cannot spread flows over {workers} queues by hash (RSS unavailable): \
             each TCP connection's segments would land on arbitrary workers and be reset; \
             run one worker, or pass --allow-no-rss for UDP-only use",
            port.name()
        );
    }
    let mac = port.mac()?;
    // Before any writer, shipper or worker exists; the port is started and idle.
    let at_start = ProcessResources::now();
    let idle_baseline = pool.in_use();

    // Two writer handles per worker: one for the HTTP application, one for
    // the UDP stage (each has its own batches and durable sequence).
    let (writer, handles) = Writer::start(config.writer.clone(), 2 * usize::from(workers))
        .with_context(|| format!("cannot start the writer in {}", config.writer.data_dir.display()))?;
    let shipper = match &config.sink.victoriametrics {
        Some(vm) => Some(
            Shipper::start(
                config.writer.data_dir.clone(),
                vm.clone(),
                Some(writer.durable_record_id()),
                writer.stats().clone(),
            )
            .context("cannot start the VictoriaMetrics shipper")?,
        ),
        None => None,
    };
    let limiter = Arc::new(KeyedLimiter::new(&config.limits)?);
    let clock = MonotonicClock::new();
    let sweeper = LimiterSweeper::spawn(limiter.clone(), clock).context("cannot start the limiter's sweeper")?;
    let published: Vec<Arc<Published<ServeCounters>>> = (0..workers).map(|_| Arc::new(Published::default())).collect();
    let metrics: MetricsRenderer = {
        let (published, writer_stats, pool, limiter) =
            (published.clone(), writer.stats().clone(), pool.clone(), limiter.clone());
        Arc::new(move |out: &mut String| render_metrics(out, &published, &writer_stats, &limiter, &pool, idle_baseline))
    };
    let shared = app_shared(&config, limiter.clone(), metrics, &clock);

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone())?;
        signal_hook::flag::register(sig, stop.clone())?;
    }
    // SIGHUP: re-read the config file and apply its [limits] (bucket state of
    // unchanged clients is kept); other tables need a restart.
    let reload = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, reload.clone())?;
    let mut jobs = Vec::new();
    let mut handles = handles.into_iter();
    let link = L2Config { mac: EthernetAddress(mac), ip, prefix_len, gateway, neighbor_capacity: config.net.neighbors };
    let neighbors = SharedNeighbors::new(config.net.neighbors);
    let setup = WorkerSetup {
        config: &config,
        link,
        neighbors,
        shared: &shared,
        clock,
        pool: pool.clone(),
        stop: stop.clone(),
    };
    for (q, (rx, tx)) in port.take_queues().into_iter().enumerate() {
        let (Some(app_writer), Some(udp_writer)) = (handles.next(), handles.next()) else {
            bail!("internal error: the writer gave fewer handles than asked for");
        };
        let trace = match &args.trace_pcap {
            Some(base) => {
                let path = trace::path_for_worker(base, q as u16, workers);
                Some(
                    PacketTrace::create(&path, clock.unix_at_epoch_ns())
                        .with_context(|| format!("--trace-pcap: cannot create {}", path.display()))?,
                )
            }
            None => None,
        };
        let w = setup.worker(q, (rx, tx), (app_writer, udp_writer), published[q].clone(), trace)?;
        jobs.push(LcoreJob::launch(&eal, lcores[q], move || worker::run_serve(w))?);
    }
    eprintln!(
        "serving {ip}/{prefix_len} on port {port_id} ({}, MAC {}) with {workers} worker(s), flows spread by {}: HTTP :{}, UDP line :{} statsd :{}; data in {} (ack {:?})",
        port.name(),
        EthernetAddress(mac),
        spreading.describe(),
        config.http.port,
        config.udp.line_port,
        config.udp.statsd_port,
        config.writer.data_dir.display(),
        config.writer.ack,
    );

    let start = Instant::now();
    let deadline = args.run.duration.map(|d| start + Duration::from_secs_f64(d));
    let interval = (args.run.stats_interval > 0.0).then(|| Duration::from_secs_f64(args.run.stats_interval));
    let mut next_tick = interval.map(|i| start + i);
    let mut prev = ServeCounters::default();
    let mut imbalances = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if reload.swap(false, Ordering::Relaxed) {
            reload_limits(&args.config, &limiter);
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            stop.store(true, Ordering::Relaxed);
            break;
        }
        if let (Some(tick), Some(i)) = (next_tick, interval) {
            if now >= tick {
                imbalances += check_lifecycle(&published);
                let total = sum(&published);
                eprintln!("{}", stats_line((now - start).as_secs_f64(), &total, &prev, i.as_secs_f64(), &writer));
                prev = total;
                next_tick = Some(tick + i);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("stopping: finishing held responses, draining the writer");
    for job in jobs {
        job.join()?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let sweeps = sweeper.stop();
    imbalances += check_lifecycle(&published);
    let total = sum(&published);
    let port_stats = port.stats()?;
    let in_use_at_stop = pool.in_use();
    let shipped = match shipper {
        Some(s) => Some(s.stop().context("shipper")?),
        None => None,
    };
    let writer_stats = std::sync::Arc::clone(writer.stats());
    let summary = writer.shutdown().context("writer shutdown")?;
    let w = writer_stats.snapshot();
    drop(port);
    let process = LifecycleReport { at_start, at_exit: ProcessResources::now() };
    let tx_ring_may_hold =
        u32::from(p.tx_desc) * published.iter().map(|w| w.snapshot().tx_reclaim_unsupported as u32).sum::<u32>();
    let mbufs = MbufReport {
        pool_size: pool.size(),
        idle_baseline,
        in_use_at_stop,
        in_use_after_close: pool.in_use(),
        tx_ring_may_hold,
    };
    let net = &total.net;
    let report = serde_json::json!({
        "duration_s": elapsed,
        "rx_packets": port_stats.ipackets,
        "tx_packets": port_stats.opackets,
        "dropped": { "imissed": port_stats.imissed, "nombuf": port_stats.rx_nombuf, "ierrors": port_stats.ierrors,
                     "tx_no_mbuf": total.tx_no_mbuf, "tx_unsent": total.tx_unsent_dropped,
                     "rx_chained": total.rx_chained_dropped },
        "net": net_json(net),
        "workers": per_worker(&published),
        "flow_spreading": spreading.describe(),
        "sockets": total.sockets,
        "lifecycle_imbalances": imbalances,
        "mbufs": mbufs,
        "process": process,
        "http": total.http,
        "udp": total.udp,
        "records_accepted": total.http.records_accepted + total.udp.records_accepted,
        "records_written": summary.records_written,
        "fsyncs": summary.fsyncs,
        "commit": summary.commit,
        "storage": { "write_errors": w.write_errors, "fsync_errors": w.fsync_errors,
                     "no_space_errors": w.no_space_errors, "segments_abandoned": w.segments_abandoned,
                     "records_lost": w.records_lost, "storage_fault": w.storage_fault },
        "shipper": shipped.map(|s| format!("{s:?}")),
        "limiter": limiter.stats(),
        "limiter_sweeps": sweeps,
    });
    println!(
        "serve: {:.1} s, {} connections, {} requests, {} records accepted, {} written, {} fsyncs",
        elapsed,
        net.connections_opened,
        total.http.requests,
        total.http.records_accepted + total.udp.records_accepted,
        summary.records_written,
        summary.fsyncs
    );
    if let Some(path) = &args.run.report {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("cannot write the report to {}", path.display()))?;
    }
    if imbalances > 0 {
        bail!("internal error: connection lifecycle counters did not balance {imbalances} time(s) (see above)");
    }
    if !mbufs.balances() {
        bail!("internal error: mbufs do not return to the pool: {mbufs:?}");
    }
    if !process.balances() {
        bail!("internal error: threads or file descriptors outlive the run: {process:?}");
    }
    Ok(())
}

/// `net_af_packet`'s default ring (512 frames) overflows under a few hundred
/// connections whenever the worker is descheduled briefly, and the kernel's
/// drops into a full ring are not counted by DPDK 22.11 (imissed stays 0):
/// clients just see retransmissions and timeouts. Say so at start.
fn warn_small_af_packet_ring(eal_args: &[String]) {
    if eal_args.iter().any(|a| a.contains("net_af_packet") && !a.contains("framecnt=")) {
        eprintln!(
            "warning: net_af_packet without framecnt= uses 512-frame rings, which drop frames (uncounted) \
             under many connections; give it about 6 frames per connection, e.g. framecnt=8192 for 1,000"
        );
    }
}

/// What every worker's HTTP application shares (also used by `bench`).
pub(super) fn app_shared(
    config: &AppConfig,
    limiter: Arc<KeyedLimiter>,
    metrics: MetricsRenderer,
    clock: &MonotonicClock,
) -> AppShared {
    AppShared {
        http: config.http.clone(),
        auth: Arc::new(config.auth.clone()),
        limiter,
        header_trust: config.limits.header_trust().expect("validated when the config was loaded"),
        metrics,
        unix_offset_ns: clock.unix_at_epoch_ns(),
        body_budget: Arc::new(metricsstream::http::BodyBudget::new(config.http.body_memory_budget_bytes)),
        databases: Default::default(),
    }
}

/// Builds `serve` workers (also used by `bench`): one TCP stack, HTTP
/// application and UDP stage per RX/TX queue pair.
pub(super) struct WorkerSetup<'a> {
    pub config: &'a AppConfig,
    pub link: L2Config,
    /// One table for all workers of the port: ARP replies reach one queue only.
    pub neighbors: Arc<SharedNeighbors>,
    pub shared: &'a AppShared,
    pub clock: MonotonicClock,
    pub pool: Arc<Mempool>,
    pub stop: Arc<AtomicBool>,
}

impl WorkerSetup<'_> {
    /// The worker of queue pair `q`, with its two writer handles (HTTP, UDP).
    pub fn worker(
        &self,
        q: usize,
        (rx, tx): (RxQueue, TxQueue),
        (app_writer, udp_writer): (WriterHandle, WriterHandle),
        published: Arc<Published<ServeCounters>>,
        trace: Option<PacketTrace>,
    ) -> anyhow::Result<ServeWorker> {
        let (config, clock) = (self.config, self.clock);
        let mut stack_config =
            NetStackConfig::new(self.link, config.http.port, config.http.max_connections_per_worker as usize);
        stack_config.sockets_per_cell = config.net.sockets_per_cell;
        stack_config.rx_buffer = config.net.tcp_rx_buffer;
        stack_config.tx_buffer = config.net.tcp_tx_buffer;
        stack_config.idle_timeout_ms = Some(config.http.idle_timeout_ms.max(1000));
        if let Some(n) = config.net.max_half_open {
            stack_config.max_half_open = n;
        }
        stack_config.syn_received_timeout_ms = config.net.syn_received_timeout_ms;
        stack_config.socket_buffer_budget =
            usize::try_from(config.net.socket_buffer_budget_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
        stack_config.seed ^= q as u64;
        let now = clock.now();
        let mut stack = NetStack::new(stack_config, now).context("TCP stack configuration")?;
        stack.share_neighbors(self.neighbors.clone());
        let app = HttpApp::new(self.shared.clone(), app_writer, stack.slots());
        let udp = UdpIngest::new(config.udp.clone(), self.shared.limiter.clone(), udp_writer)
            .with_unix_offset(clock.unix_at_epoch_ns());
        Ok(ServeWorker {
            rx,
            tx,
            pool: self.pool.clone(),
            core: ServeCore::new(stack, app, udp, DRAIN.as_nanos() as u64),
            clock,
            published,
            stop: self.stop.clone(),
            trace,
        })
    }
}

/// SIGHUP: applies the config file's `[limits]`; a bad file changes nothing.
fn reload_limits(path: &std::path::Path, limiter: &KeyedLimiter) {
    match AppConfig::load(path) {
        Ok(config) => match limiter.reload(&config.limits) {
            Ok(r) => eprintln!(
                "SIGHUP: [limits] reloaded from {} ({} client slots updated{})",
                path.display(),
                r.slots_updated,
                if r.capacity_change_ignored { "; capacity changes need a restart" } else { "" }
            ),
            Err(e) => eprintln!("SIGHUP: [limits] not reloaded: {e}"),
        },
        Err(e) => eprintln!("SIGHUP: config not reloaded: {e}"),
    }
}

fn sum(published: &[Arc<Published<ServeCounters>>]) -> ServeCounters {
    let mut t = ServeCounters::default();
    for c in published.iter().map(|p| p.snapshot()) {
        t.net = add_fields(&t.net, &c.net);
        t.http = add_fields(&t.http, &c.http);
        t.udp.add(&c.udp);
        t.rx_chained_dropped += c.rx_chained_dropped;
        t.tx_no_mbuf += c.tx_no_mbuf;
        t.tx_unsent_dropped += c.tx_unsent_dropped;
        t.sockets = add_fields(&t.sockets, &c.sockets);
    }
    t
}

/// What each worker (RX queue) handled: shows whether RSS spreads the flows.
fn per_worker(published: &[Arc<Published<ServeCounters>>]) -> serde_json::Value {
    published
        .iter()
        .map(|p| {
            let c = p.snapshot();
            serde_json::json!({
                "rx_frames": c.net.rx_frames,
                "connections_opened": c.net.connections_opened,
                "http_requests": c.http.requests,
                "udp_datagrams": c.udp.datagrams(),
                "records_accepted": c.http.records_accepted + c.udp.records_accepted,
            })
        })
        .collect()
}

/// Checks every worker's connection lifecycle balances (see
/// [`ServeCounters::check_lifecycle`]); prints each failure, returns their number.
fn check_lifecycle(published: &[Arc<Published<ServeCounters>>]) -> u64 {
    let mut failures = 0;
    for (q, p) in published.iter().enumerate() {
        if let Err(e) = p.snapshot().check_lifecycle() {
            eprintln!("error: worker {q}: connection lifecycle does not balance: {e}");
            failures += 1;
        }
    }
    failures
}

/// Field-wise sum of two counter structs whose fields are all u64 (through
/// their serde form: the main lcore does this once per tick, not per packet).
fn add_fields<T: serde::Serialize + serde::de::DeserializeOwned + Copy>(a: &T, b: &T) -> T {
    let (Ok(mut x), Ok(y)) = (serde_json::to_value(a), serde_json::to_value(b)) else { return *a };
    if let (Some(x), Some(y)) = (x.as_object_mut(), y.as_object()) {
        for (k, v) in y {
            let sum = x.get(k).and_then(|n| n.as_u64()).unwrap_or(0) + v.as_u64().unwrap_or(0);
            x.insert(k.clone(), sum.into());
        }
    }
    serde_json::from_value(x).unwrap_or(*a)
}

fn net_json(n: &metricsstream::net::NetCounters) -> serde_json::Value {
    serde_json::to_value(n).unwrap_or_default()
}

fn stats_line(
    t: f64,
    c: &ServeCounters,
    prev: &ServeCounters,
    interval: f64,
    writer: &metricsstream::writer::WriterRuntime,
) -> String {
    let rate = |a: u64, b: u64| (a.saturating_sub(b)) as f64 / interval;
    let w = writer.stats().snapshot();
    format!(
        "[{t:7.1}s] conns open {} (+{}) | req {:.0}/s 2xx {} 4xx {} 5xx {} | records {:.0}/s http, {:.0}/s udp, limited {} | written {} fsyncs {} backpressure {}",
        c.net.connections_open,
        c.net.connections_opened - prev.net.connections_opened,
        rate(c.http.requests, prev.http.requests),
        c.http.responses_2xx,
        c.http.responses_400 + c.http.responses_401 + c.http.responses_404_405 + c.http.responses_413 + c.http.responses_429,
        c.http.responses_503,
        rate(c.http.records_accepted, prev.http.records_accepted),
        rate(c.udp.records_accepted, prev.udp.records_accepted),
        c.http.records_limited + c.udp.records_limited,
        w.records_written,
        w.fsyncs,
        w.writer_backpressure,
    )
}

/// Prometheus text exposition of every counter the workers and the writer publish.
fn render_metrics(
    out: &mut String,
    published: &[Arc<Published<ServeCounters>>],
    writer: &Arc<WriterStats>,
    limiter: &KeyedLimiter,
    pool: &Mempool,
    idle_baseline: u32,
) {
    use metricsstream::stats::{Exposition, MetricKind};
    let mut e = Exposition::new(out);
    ServeCounters::expose(published, &mut e);
    writer.expose("writer", &mut e);
    let l = limiter.stats();
    let limits = [
        ("limiter_slots", "slots in the client table", MetricKind::Gauge, l.capacity),
        ("limiter_slots_in_use", "clients holding a slot", MetricKind::Gauge, l.inserted - l.reclaimed.min(l.inserted)),
        ("limiter_inserted", "clients given a slot", MetricKind::Counter, l.inserted),
        ("limiter_reclaimed", "slots reclaimed from idle clients", MetricKind::Counter, l.reclaimed),
        (
            "limiter_overflowed",
            "decisions for clients without a slot, on the shared bucket",
            MetricKind::Counter,
            l.overflowed,
        ),
        ("limiter_refused", "decisions for clients without a slot, refused", MetricKind::Counter, l.refused),
    ];
    for (name, help, kind, n) in limits {
        e.sample(name, help, kind, n as f64);
    }
    let mbufs = [
        ("mbufs_in_use", "mbufs taken out of the pool right now", pool.in_use()),
        ("mbufs_idle_baseline", "mbufs in use with the port started and idle", idle_baseline),
        ("mbufs_pool_size", "mbufs in the pool", pool.size()),
    ];
    for (name, help, n) in mbufs {
        e.sample(name, help, MetricKind::Gauge, f64::from(n));
    }
}
