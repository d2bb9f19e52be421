//! Buffer lifecycle through the worker logic: 200 connections upload at
//! once against a small global body-memory budget over the in-memory
//! network (`NetStack` + `HttpApp` + a real writer). What fits is accepted,
//! the rest is answered 503 with `Retry-After` and a JSON message and
//! counted, and once the connections close every pool balances with nothing
//! lent and the budget holds nothing. A graceful stop (the serve step's
//! drain) answers the held responses first and leaves the pools idle too.

mod netstack_sim;

use metricsstream::http::{BodyBudget, HttpConfig};
use metricsstream::time::Nanos;
use metricsstream::writer::AckMode;
use netstack_sim::http::{assert_pools_idle, HttpRequest, HttpSim};
use std::io::Write as _;
use std::sync::Arc;

const CLIENTS: usize = 40;
const CONNS_PER_CLIENT: usize = 5;

fn upload(lines: usize) -> HttpRequest {
    let mut body = Vec::new();
    for i in 0..lines {
        writeln!(body, "upload,host=h{i} value={i} {}", 1_700_000_000_000_000_000u64 + i as u64).unwrap();
    }
    // Status 0: 204 or 503 are both right here; the test counts them.
    HttpRequest::new("POST", "/write?precision=ns", "", &body, 0)
}

#[test]
fn uploads_beyond_the_body_budget_get_503_and_everything_balances() {
    let request = upload(60);
    let body_len = request.bytes.len() - request.bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() - 4;
    let limit = 64 << 10;
    let http = HttpConfig { max_body_bytes: 16 << 10, body_memory_budget_bytes: limit, ..HttpConfig::default() };
    http.validate().unwrap();
    let budget = Arc::new(BodyBudget::new(limit));
    let dir = tempfile::tempdir().unwrap();
    let (mut sim, writer) =
        HttpSim::new(AckMode::Durable, dir.path(), http, budget.clone(), CLIENTS, CONNS_PER_CLIENT, vec![request]);
    for c in &mut sim.clients {
        c.add_requests(1);
    }
    // Every connection's head arrives in the same round: the budget decides.
    let mut most_reserved = 0;
    sim.run_until(100_000, |sim| {
        most_reserved = most_reserved.max(sim.app_reserved());
        sim.clients.iter().all(|c| c.done())
    });
    let ok: u64 = sim.clients.iter().map(|c| c.by_class[2]).sum();
    let refused: u64 = sim.clients.iter().map(|c| c.by_class[5]).sum();
    let conns = (CLIENTS * CONNS_PER_CLIENT) as u64;
    println!("http_pools: {ok} uploads of {body_len} B accepted, {refused} refused 503; budget {limit} B");
    assert_eq!(ok + refused, conns, "every upload answered 204 or 503");
    assert!(ok >= (limit / body_len) as u64 / 2 && ok < conns, "accepted {ok}");
    assert!(refused > 0);
    assert!(most_reserved <= limit as u64, "reserved {most_reserved} > budget {limit}");
    let answer = sim.clients.iter().find(|c| c.by_class[5] > 0).map(|c| c.first_of_class[5].clone()).unwrap();
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(answer.contains("Retry-After: 1\r\n"), "{answer}");
    // /write is a v1 endpoint: InfluxDB 1's `{"error"}` shape.
    assert!(answer.contains(r#"{"error":"the appliance holds too many request bodies"#), "{answer}");

    let counters = *sim.core.app.counters();
    assert_eq!(counters.body_budget_refused, refused, "{counters:?}");
    assert_eq!(budget.refused(), refused);
    assert_eq!(counters.responses_2xx, ok);
    assert!(counters.body_buffers_high_water > 0 && counters.response_buffers_high_water > 0);

    sim.close_all();
    assert_pools_idle(&mut sim, &budget);
    let c = *sim.core.app.counters();
    assert_eq!(c.connections_accepted, c.connections_closed, "{c:?}");
    drop(sim);
    writer.shutdown().unwrap();
}

/// `ServeCore::stop` while durable responses are held: the serve step goes
/// on until they are answered (after the writer's fsync) and every
/// connection has closed its side, then says `Finished`, well inside the
/// drain time; the exit flush leaves nothing in the pools.
#[test]
fn a_stop_answers_held_responses_then_finishes() {
    let request = upload(20);
    let http = HttpConfig::default();
    let budget = Arc::new(BodyBudget::new(http.body_memory_budget_bytes));
    let dir = tempfile::tempdir().unwrap();
    let (mut sim, writer) = HttpSim::new(AckMode::Durable, dir.path(), http, budget.clone(), 4, 5, vec![request]);
    sim.run(3);
    let conns = 4 * 5;
    let before = sim.core.app.counters().requests;
    for c in &mut sim.clients {
        c.add_requests(1);
    }
    // Every connection's next request reached the application (most are held for the fsync).
    sim.run_until(10_000, |sim| sim.core.app.counters().requests == before + conns);
    // The step that handled the last of them submitted its batch; the next one releases it.
    let held = sim.core.app.counters().held;
    assert!(held > 0, "responses are held when the stop comes");
    let stopped_at = sim.now;
    sim.core.stop();
    sim.run_until(100_000, |sim| sim.finished);
    let drained_in = std::time::Duration::from_nanos(sim.now.ns_since(stopped_at));
    println!("http_pools: {held} held responses at the stop; drained in {drained_in:?} of virtual time");
    assert!(drained_in < std::time::Duration::from_secs(2), "finished by the drain, not its deadline");
    assert!(sim.clients.iter().all(|c| c.done() && c.wrong_status == 0), "every held request answered 204");
    let c = *sim.core.app.counters();
    assert_eq!((c.held, c.responses_2xx, c.requests), (0, 4 * conns, 4 * conns), "{c:?}");
    assert!(!sim.core.stack.is_accepting());
    let clock = std::time::Instant::now();
    sim.core.finish(
        || Nanos::from_ns(clock.elapsed().as_nanos() as u64),
        || std::thread::sleep(std::time::Duration::from_millis(1)),
    );
    assert_pools_idle(&mut sim, &budget);
    drop(sim);
    assert_eq!(writer.shutdown().unwrap().records_written, 20 * 4 * conns);
}
