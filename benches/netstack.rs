//! Server-side cost per request of the sharded stack with 100, 1,000 and
//! 10,000 open connections, on the in-memory network of `tests/netstack_sim`.
//!
//! Each round gives one request to 100 of the open connections, so the batch
//! is the same whatever the number open. Three patterns:
//! - `hot`: the same 100 connections every round, the others idle: shows
//!   the algorithmic cost (flat if nothing scans all connections);
//! - `dense`: 100 consecutive connections (they share ~4 cells, as
//!   connections accepted together do), a different block each round, so
//!   with many open the block is cold in the CPU caches;
//! - `sparse`: every `open/100`-th connection, i.e. one per cell at 10,000
//!   open: the worst case, each request pays a whole cell poll.
//!
//! The baseline first: one plain smoltcp interface holding every socket,
//! with an application loop that visits every socket per poll (smoltcp has
//! no readiness list), the design the stack avoids.
//!
//! Only time inside `NetStack::receive`/`poll` (with the PING/PONG app), or
//! the baseline server's poll and loop, is counted; the smoltcp clients are not. Prints numbers, asserts nothing
//! about time. Run: `cargo bench --bench netstack`.

#[path = "../tests/netstack_sim/mod.rs"]
mod netstack_sim;

use netstack_sim::*;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Pattern {
    Hot,
    Dense,
    Sparse,
}

fn run(open: usize, per_cell: usize, pattern: Pattern, rounds: usize) {
    run_server(open, per_cell, pattern, rounds, false)
}

/// `plain`: one smoltcp interface with all sockets instead of the stack.
fn run_server(open: usize, per_cell: usize, pattern: Pattern, rounds: usize, plain: bool) {
    let per_client = 100;
    let mut config = stack_config(open);
    config.sockets_per_cell = per_cell;
    let mut net = Net::new(config, clients(open / per_client, per_client, 1, Ending::KeepOpen));
    if plain {
        net.plain = Some(PlainServer::new(open, net.now));
    }
    net.run_until(100_000, |n| n.all_done());
    if !plain {
        assert_eq!(net.stack.counters().connections_open as usize, open);
    }
    let groups = open / 100;
    let c0 = *net.stack.counters();
    let server_requests = |n: &Net| n.plain.as_ref().map_or(n.app.requests, |p| p.requests);
    let requests0 = server_requests(&net);
    net.measure = true;
    for r in 0..rounds {
        let g = if pattern == Pattern::Hot { 0 } else { r % groups };
        for (i, c) in net.clients.iter_mut().enumerate() {
            c.add_request_where(|k| {
                let conn = i * per_client + k;
                match pattern {
                    Pattern::Sparse => conn % groups == g,
                    Pattern::Hot | Pattern::Dense => conn / 100 == g,
                }
            });
        }
        net.run_until(10_000, |n| n.all_done());
    }
    let c = *net.stack.counters();
    let requests = server_requests(&net) - requests0;
    if plain {
        let t = net.stack_time.as_secs_f64();
        println!(
            "open {open:>6}  plain smoltcp, one interface  {pattern:?}  {:>8.2} µs/request",
            t * 1e6 / requests as f64
        );
        return;
    }
    let frames = c.rx_frames + c.tx_frames - c0.rx_frames - c0.tx_frames;
    let t = net.stack_time.as_secs_f64();
    println!(
        "open {open:>6}  cell {per_cell:>2}  {:<6}  {:>6.2} µs/request  {:>5.0} ns/frame  {:.2} cells polled/request",
        format!("{pattern:?}"),
        t * 1e6 / requests as f64,
        t * 1e9 / frames as f64,
        (c.cells_polled - c0.cells_polled) as f64 / requests as f64,
    );
}

fn main() {
    let rounds = std::env::args().filter_map(|a| a.parse().ok()).next().unwrap_or(300);
    for open in [100, 1_000, 10_000] {
        // Fewer rounds: at 10,000 sockets every poll visits all of them.
        run_server(open, 32, Pattern::Hot, (rounds / 10).max(10), true);
    }
    for per_cell in [32, 16, 8] {
        for pattern in [Pattern::Hot, Pattern::Dense, Pattern::Sparse] {
            for open in [100, 1_000, 10_000] {
                run(open, per_cell, pattern, rounds);
            }
        }
    }
}
