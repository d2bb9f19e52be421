//! `loadgen`: a DPDK HTTP load generator on the client TCP stack
//! ([`crate::net::client`]). It keeps N connections open to one target and
//! replays requests over them closed-loop (one in flight per connection),
//! like TRex's stateful mode replays a pcap's payloads over live TCP instead
//! of its packets. It measures req/s, a latency HDR histogram, status
//! classes and socket errors.
//!
//! - [`requests`]: the requests (a given body, or those found in a pcap);
//! - [`http`]: the sans-IO HTTP/1.1 client (parse responses, count, time);
//! - [`run_loadgen`]: the poll-mode loop on a worker lcore.
pub mod http;
pub mod requests;

use crate::dpdk::{Mempool, RxBurst, RxQueue, TxBurst, TxQueue};
use crate::net::client::{ClientCounters, ClientStack};
use crate::pipeline::timing::{Drain, Every, ABORT_SCAN_NS, PUBLISH_NS};
use crate::stats::Published;
use crate::time::MonotonicClock;
use crate::worker::MbufSink;
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub use http::{HttpLoad, LoadCounters};
pub use requests::{Request, Requests};

/// What a loadgen worker publishes.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct LoadgenCounters {
    pub client: ClientCounters,
    pub http: LoadCounters,
    pub tx_no_mbuf: u64,
    pub tx_unsent_dropped: u64,
    /// Requests still unanswered when the drain time ran out.
    pub unfinished: u64,
    /// Time in loop iterations that received frames or had cells to service,
    /// and in all of them: busy/loop near 1 means loadgen itself is the limit.
    pub busy_ns: u64,
    pub loop_ns: u64,
}

/// Everything a loadgen worker owns.
pub struct LoadgenWorker {
    pub rx: RxQueue,
    pub tx: TxQueue,
    pub pool: Arc<Mempool>,
    pub stack: ClientStack,
    pub app: HttpLoad,
    pub clock: MonotonicClock,
    pub published: Arc<Published<LoadgenCounters>>,
    pub stop: Arc<AtomicBool>,
    /// After `stop`: no new requests, this long for the ones in flight, then close.
    pub drain_ns: u64,
    /// The latency histogram, handed back at exit.
    pub histogram_out: Arc<Mutex<Option<Histogram<u64>>>>,
}

/// The loadgen datapath: frames into the client stack, the HTTP client's
/// requests out; stops after `stop` once in-flight requests are answered
/// (or the drain time ran out) and connections are closed. The loop has the
/// serve step's skeleton: its periods and stop/drain are
/// [`crate::pipeline::timing`]'s.
pub fn run_loadgen(mut w: LoadgenWorker) -> i32 {
    let mut burst = RxBurst::default();
    let mut txb = TxBurst::default();
    let mut counters = LoadgenCounters::default();
    let (mut aborts, mut publish) = (Every::new(ABORT_SCAN_NS), Every::new(PUBLISH_NS));
    let mut drain = Drain::new(w.drain_ns);
    // The previous iteration: when it started and whether it did work.
    let (mut prev, mut prev_busy) = (w.clock.now(), false);
    loop {
        let now = w.clock.now();
        counters.loop_ns += now.ns_since(prev);
        if prev_busy {
            counters.busy_ns += now.ns_since(prev);
        }
        prev = now;
        if drain.begins(now, w.stop.load(Ordering::Relaxed)) {
            w.app.stop();
            w.stack.stop_connecting();
        }
        if drain.draining() {
            if w.stack.busy() == 0 {
                break;
            }
            if drain.out_of_time(now) {
                counters.unfinished = w.app.in_flight() as u64;
                break;
            }
        }
        let n = w.rx.rx_burst(&mut burst);
        let mut sink = MbufSink { pool: &w.pool, burst: &mut txb, tx: &mut w.tx, no_mbuf: 0, trace: None, now };
        for i in 0..n {
            w.stack.receive(now, burst.packet(i), &mut sink);
        }
        burst.clear();
        if aborts.due(now) {
            for &conn in w.app.poll_aborts(now) {
                w.stack.abort(conn);
            }
        }
        prev_busy = n > 0;
        if n > 0 || w.stack.poll_at().is_some_and(|t| t <= now) {
            prev_busy |= w.stack.poll(now, &mut w.app, &mut sink) > 0;
        }
        counters.tx_no_mbuf += sink.no_mbuf;
        w.tx.tx_burst(&mut txb);
        if publish.due(now) {
            counters.client = *w.stack.counters();
            counters.http = *w.app.counters();
            w.published.publish(&counters);
        }
    }
    w.tx.tx_burst(&mut txb);
    counters.tx_unsent_dropped += txb.drop_all() as u64;
    burst.clear();
    // Completed transmissions give their mbufs back now, not on a later burst.
    let _ = w.tx.reclaim_completed();
    counters.client = *w.stack.counters();
    counters.http = *w.app.counters();
    w.published.publish_final(&counters);
    if let Ok(mut slot) = w.histogram_out.lock() {
        *slot = Some(std::mem::replace(&mut w.app.histogram, Histogram::new(1).expect("1 significant digit is valid")));
    }
    0
}

/// Latency percentiles of a histogram in µs, for reports.
pub fn latency_json(h: &Histogram<u64>) -> serde_json::Value {
    serde_json::json!({
        "count": h.len(),
        "min_us": h.min(),
        "mean_us": h.mean(),
        "p50_us": h.value_at_quantile(0.50),
        "p90_us": h.value_at_quantile(0.90),
        "p99_us": h.value_at_quantile(0.99),
        "p999_us": h.value_at_quantile(0.999),
        "max_us": h.max(),
    })
}
