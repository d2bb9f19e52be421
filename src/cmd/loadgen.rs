//! `metricsstream loadgen`: a DPDK HTTP client that keeps N TCP connections
//! open to a target (its own userspace stack and ARP) and replays a body or
//! the HTTP requests of a pcap over them, closed-loop; prints a stats line
//! per second and a report with req/s, latency percentiles (HDR histogram),
//! status classes and socket errors. `bench` reuses [`launch`] and [`finish`].

use anyhow::{bail, Context};
use clap::Args;
use metricsstream::dpdk::{Eal, LcoreJob, Mempool, Port, PortConfig, BURST_SIZE};
use metricsstream::loadgen::requests::{Requests, DEFAULT_HTTP_PORTS};
use metricsstream::loadgen::{self, HttpLoad, LoadgenCounters, LoadgenWorker};
use metricsstream::net::client::{ClientStack, ClientStackConfig};
use metricsstream::net::L2Config;
use metricsstream::stats::Published;
use metricsstream::stats::{LifecycleReport, MbufReport, ProcessResources};
use metricsstream::time::MonotonicClock;
use smoltcp::wire::{EthernetAddress, Ipv4Address};
use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What to send: a pcap's HTTP requests or one body.
#[derive(Args, Debug, Clone)]
pub struct LoadSource {
    /// Replay the HTTP requests of this pcap (client → server TCP payloads to --pcap-ports).
    #[arg(long, conflicts_with = "body", required_unless_present = "body")]
    pub pcap: Option<PathBuf>,
    /// POST this file as the body of every request.
    #[arg(long)]
    pub body: Option<PathBuf>,
    /// Request path for --body.
    #[arg(long, default_value = "/write")]
    pub path: String,
    /// TCP ports whose requests are taken from --pcap.
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_HTTP_PORTS)]
    pub pcap_ports: Vec<u16>,
    /// Concurrent connections (one request in flight on each).
    #[arg(long, default_value_t = 100)]
    pub connections: usize,
    /// Seconds of load.
    #[arg(long, default_value_t = 10.0, value_parser = super::positive_seconds)]
    pub duration: f64,
    /// A request unanswered after this many ms counts as a timeout (and its connection is reset).
    #[arg(long, default_value_t = 2000)]
    pub timeout_ms: u64,
    /// Write the report as JSON to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Seconds between stats lines on stderr (0: none).
    #[arg(long, default_value_t = 1.0, value_parser = super::seconds_or_zero)]
    pub stats_interval: f64,
}

#[derive(Args, Debug)]
pub struct LoadgenArgs {
    #[command(flatten)]
    pub source: LoadSource,
    /// The server.
    #[arg(long, default_value = "198.18.0.1:8080")]
    pub target: SocketAddrV4,
    /// Our address and prefix on the port (the target must be on-link or reachable via --gateway).
    #[arg(long, default_value = "198.18.0.2/24")]
    pub ip: String,
    /// Next hop for a target outside our prefix.
    #[arg(long)]
    pub gateway: Option<Ipv4Address>,
    /// DPDK port to send on.
    #[arg(long, default_value_t = 0)]
    pub port_id: u16,
    /// EAL arguments, e.g. `-- --no-huge -m 1024 --vdev net_memif0,role=client,socket=/tmp/ms.sock`.
    #[arg(last = true)]
    pub eal_args: Vec<String>,
}

/// Drain time after the duration: in-flight requests get this long to be answered.
pub const DRAIN: Duration = Duration::from_secs(2);

/// A loadgen worker running on an lcore.
pub struct Running {
    job: LcoreJob,
    pub published: Arc<Published<LoadgenCounters>>,
    histogram: Arc<Mutex<Option<hdrhistogram::Histogram<u64>>>>,
    pub stop: Arc<AtomicBool>,
    pub started: Instant,
    pub connections: usize,
    pub requests: usize,
}

/// Parses `A.B.C.D/len`.
pub fn parse_cidr(s: &str) -> anyhow::Result<(Ipv4Address, u8)> {
    let (ip, len) = s.split_once('/').with_context(|| format!("{s:?}: expected A.B.C.D/prefix"))?;
    let ip: Ipv4Address = ip.parse().map_err(|_| anyhow::anyhow!("{s:?}: bad IPv4 address"))?;
    let len: u8 = len.parse().ok().filter(|l| (1..=32).contains(l)).with_context(|| format!("{s:?}: bad prefix"))?;
    Ok((ip, len))
}

/// Builds the requests of `source` (Host: the target).
pub fn requests(source: &LoadSource, target: SocketAddrV4) -> anyhow::Result<Requests> {
    match (&source.pcap, &source.body) {
        (Some(pcap), _) => {
            let (requests, extract) = Requests::from_pcap(pcap, &source.pcap_ports)
                .with_context(|| format!("cannot take HTTP requests from {}", pcap.display()))?;
            eprintln!(
                "{}: {} requests from {} flows ({extract:?})",
                pcap.display(),
                requests.items.len(),
                extract.flows
            );
            Ok(requests)
        }
        (None, Some(body)) => {
            let bytes = std::fs::read(body).with_context(|| format!("cannot read {}", body.display()))?;
            Ok(Requests::from_body(&bytes, &source.path, &target.to_string())?)
        }
        (None, None) => bail!("give --pcap or --body"),
    }
}

/// Mbufs for one loadgen queue: descriptors, bursts in flight, and slack.
pub fn pool_size(port: &PortConfig) -> u32 {
    u32::from(port.rx_desc) + u32::from(port.tx_desc) + 4 * BURST_SIZE as u32 + 8192
}

/// Opens `port` with one queue and starts a loadgen worker on `lcore`.
#[allow(clippy::too_many_arguments)]
pub fn launch(
    eal: &Eal,
    port: &mut Port,
    pool: Arc<Mempool>,
    lcore: u32,
    ip: (Ipv4Address, u8),
    gateway: Option<Ipv4Address>,
    target: SocketAddrV4,
    requests: Requests,
    source: &LoadSource,
) -> anyhow::Result<Running> {
    let mac = port.mac()?;
    let Some((rx, tx)) = port.take_queues().into_iter().next() else { bail!("the port has no queue") };
    let clock = MonotonicClock::new();
    let now = clock.now();
    let link = L2Config { mac: EthernetAddress(mac), ip: ip.0, prefix_len: ip.1, gateway, neighbor_capacity: 64 };
    let mut config = ClientStackConfig::new(link, target, source.connections);
    config.rx_buffer = 4096;
    // A request fits the send buffer whole when it can (bigger ones go out in pieces).
    config.tx_buffer = requests.max_len().clamp(4096, 64 * 1024);
    let stack = ClientStack::new(config, now).context("client TCP stack configuration")?;
    let request_count = requests.items.len();
    let app = HttpLoad::new(Arc::new(requests), stack.slots(), source.timeout_ms * 1000);
    let published = Arc::new(Published::default());
    let histogram = Arc::new(Mutex::new(None));
    let stop = Arc::new(AtomicBool::new(false));
    let worker = LoadgenWorker {
        rx,
        tx,
        pool,
        stack,
        app,
        clock,
        published: published.clone(),
        stop: stop.clone(),
        drain_ns: DRAIN.as_nanos() as u64,
        histogram_out: histogram.clone(),
    };
    let job = LcoreJob::launch(eal, lcore, move || loadgen::run_loadgen(worker))?;
    Ok(Running {
        job,
        published,
        histogram,
        stop,
        started: Instant::now(),
        connections: source.connections,
        requests: request_count,
    })
}

/// One stats line: connections, req/s and statuses over the last interval.
pub fn stats_line(t: f64, c: &LoadgenCounters, prev: &LoadgenCounters, interval: f64) -> String {
    let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / interval;
    format!(
        "[{t:7.1}s] loadgen conns open {} | req {:.0}/s | 2xx {} 4xx {} 5xx {} | socket errors {} (connect {} read {} timeout {} protocol {})",
        c.client.net.connections_open,
        rate(c.http.responses, prev.http.responses),
        c.http.status_2xx,
        c.http.status_4xx,
        c.http.status_5xx,
        c.http.socket_errors(),
        c.http.connect_errors,
        c.http.read_errors,
        c.http.timeouts,
        c.http.protocol_errors,
    )
}

/// The counters when every connection was first open: req/s is measured from
/// there, so the connect ramp (seconds at 10,000 connections) does not dilute it.
pub struct Steady {
    at: Instant,
    counters: LoadgenCounters,
}

/// Runs the main-lcore loop until `duration` (or `interrupted`), printing stats lines.
pub fn wait(running: &Running, duration: f64, stats_interval: f64, interrupted: &AtomicBool) -> Option<Steady> {
    let deadline = running.started + Duration::from_secs_f64(duration);
    let interval = (stats_interval > 0.0).then(|| Duration::from_secs_f64(stats_interval));
    let mut next_tick = interval.map(|i| running.started + i);
    let mut prev = LoadgenCounters::default();
    let mut steady = None;
    while !interrupted.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        if steady.is_none() {
            let c = running.published.snapshot();
            if c.client.net.connections_open as usize >= running.connections {
                steady = Some(Steady { at: now, counters: c });
            }
        }
        if let (Some(tick), Some(i)) = (next_tick, interval) {
            if now >= tick {
                let c = running.published.snapshot();
                eprintln!("{}", stats_line((now - running.started).as_secs_f64(), &c, &prev, i.as_secs_f64()));
                prev = c;
                next_tick = Some(tick + i);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    steady
}

/// Stops the worker (it drains in-flight requests and closes its
/// connections) and returns the report.
pub fn finish(running: Running, steady: Option<Steady>) -> anyhow::Result<serde_json::Value> {
    let load_s = running.started.elapsed().as_secs_f64();
    let at_stop = running.published.snapshot();
    let steady_json = match &steady {
        Some(s) => {
            let secs = s.at.elapsed().as_secs_f64();
            let (a, b) = (&at_stop.http, &s.counters.http);
            serde_json::json!({
                "duration_s": secs,
                "requests_per_s": a.responses.saturating_sub(b.responses) as f64 / secs,
                "records_2xx_per_s": a.records_2xx.saturating_sub(b.records_2xx) as f64 / secs,
            })
        }
        None => serde_json::Value::Null,
    };
    running.stop.store(true, Ordering::Relaxed);
    running.job.join()?;
    let c = running.published.snapshot();
    let histogram = running
        .histogram
        .lock()
        .map_err(|_| anyhow::anyhow!("histogram lock poisoned"))?
        .take()
        .context("the loadgen worker returned no histogram")?;
    Ok(serde_json::json!({
        "connections": running.connections,
        "requests_in_set": running.requests,
        "duration_s": load_s,
        // From the moment every connection was open to the stop (null if they never all opened).
        "steady": steady_json,
        "requests_per_s": steady_json["requests_per_s"].as_f64().unwrap_or(c.http.responses as f64 / load_s),
        "records_2xx_per_s": steady_json["records_2xx_per_s"].as_f64().unwrap_or(c.http.records_2xx as f64 / load_s),
        "overall": { "requests_per_s": c.http.responses as f64 / load_s,
                     "records_2xx_per_s": c.http.records_2xx as f64 / load_s },
        "socket_errors": c.http.socket_errors(),
        "latency": loadgen::latency_json(&histogram),
        "http": c.http,
        "client": c.client,
        "tx_no_mbuf": c.tx_no_mbuf,
        "tx_unsent_dropped": c.tx_unsent_dropped,
        "unfinished": c.unfinished,
        // Share of the worker's time spent on frames and connections: near 1, loadgen itself is the limit.
        "busy_fraction": if c.loop_ns > 0 { c.busy_ns as f64 / c.loop_ns as f64 } else { 0.0 },
    }))
}

/// One summary line of a report.
pub fn summary(r: &serde_json::Value) -> String {
    let l = &r["latency"];
    format!(
        "loadgen: {} connections, {:.1} s: {:.0} req/s, 2xx {}, non-2xx {}, socket errors {}, latency p50 {} us p99 {} us max {} us, busy {:.0}%",
        r["connections"],
        r["duration_s"].as_f64().unwrap_or(0.0),
        r["requests_per_s"].as_f64().unwrap_or(0.0),
        r["http"]["status_2xx"],
        r["http"]["responses"].as_u64().unwrap_or(0) - r["http"]["status_2xx"].as_u64().unwrap_or(0),
        r["socket_errors"],
        l["p50_us"],
        l["p99_us"],
        l["max_us"],
        r["busy_fraction"].as_f64().unwrap_or(0.0) * 100.0,
    )
}

pub fn run(args: LoadgenArgs) -> anyhow::Result<()> {
    let ip = parse_cidr(&args.ip)?;
    let requests = requests(&args.source, args.target)?;
    let (eal, lcores) = super::start_eal(args.eal_args.clone(), 1)?;
    let port_config = PortConfig { queues: 1, rx_desc: 1024, tx_desc: 1024, promiscuous: true };
    let pool = Arc::new(
        Mempool::new(&eal, "lg_pool", pool_size(&port_config), 256, Mempool::DEFAULT_DATA_ROOM)
            .context("cannot allocate the mbuf pool; raise -m (or reserve hugepages)")?,
    );
    let mut port = Port::open(&eal, args.port_id, &port_config, pool.clone())?;
    let interrupted = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, interrupted.clone())?;
        signal_hook::flag::register(sig, interrupted.clone())?;
    }
    eprintln!(
        "loadgen: {} connections from {}/{} on port {} ({}) to {}, {} request(s), {} s",
        args.source.connections,
        ip.0,
        ip.1,
        args.port_id,
        port.name(),
        args.target,
        requests.items.len(),
        args.source.duration
    );
    // Before the worker exists; the port is started and idle.
    let (at_start, idle_baseline) = (ProcessResources::now(), pool.in_use());
    let running =
        launch(&eal, &mut port, pool.clone(), lcores[0], ip, args.gateway, args.target, requests, &args.source)?;
    let steady = wait(&running, args.source.duration, args.source.stats_interval, &interrupted);
    let mut report = finish(running, steady)?;
    let stats = port.stats()?;
    report["port"] = serde_json::json!({ "rx_packets": stats.ipackets, "tx_packets": stats.opackets,
        "imissed": stats.imissed, "rx_nombuf": stats.rx_nombuf, "oerrors": stats.oerrors });
    let in_use_at_stop = pool.in_use();
    drop(port);
    let process = LifecycleReport { at_start, at_exit: ProcessResources::now() };
    let mbufs = MbufReport {
        pool_size: pool.size(),
        idle_baseline,
        in_use_at_stop,
        in_use_after_close: pool.in_use(),
        tx_ring_may_hold: 0,
    };
    report["mbufs"] = serde_json::to_value(mbufs)?;
    report["process"] = serde_json::to_value(process)?;
    println!("{}", summary(&report));
    if let Some(path) = &args.source.report {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("cannot write the report to {}", path.display()))?;
    }
    if !mbufs.balances() {
        bail!("internal error: mbufs do not return to the pool: {mbufs:?}");
    }
    if !process.balances() {
        bail!("internal error: threads or file descriptors outlive the run: {process:?}");
    }
    Ok(())
}
