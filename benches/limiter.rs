//! Limiter throughput vs `governor`'s keyed limiter, and bounded memory.
//!
//! `cargo bench --bench limiter` (harness = false: its own timing loop; prints
//! markdown tables). Both limiters get the same pre-generated key sequences
//! (seeded PRNG): 1 key, 10k keys uniform, 1M keys Zipf(s=1); 1 and 2
//! threads; quota 100M records/s, burst 1000 per key (nearly every decision
//! is admitted, so every decision performs its CAS / state update).
//! Ours takes `now` from `MonotonicClock` once per 32 decisions (what a worker
//! does per rx burst); governor reads its default (quanta/TSC) clock inside
//! every check, as it is designed to.

use std::num::NonZeroU32;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Instant;

use metricsstream::limit::{ClientKey, KeyedLimiter, LimitsConfig, MonotonicClock};

const RATE: u32 = 100_000_000;
const BURST: u32 = 1_000;
const SEQUENCE_LEN: usize = 1 << 20;
const OPS_PER_THREAD: usize = 2_000_000;
const REPETITIONS: usize = 3;

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Well-mixed 64-bit key for client number `id`.
fn key_hash(id: u64) -> u64 {
    let mut s = id;
    splitmix64(&mut s)
}

fn uniform_keys(distinct: u64, seed: u64) -> Vec<u64> {
    let mut rng = seed;
    (0..SEQUENCE_LEN)
        .map(|_| key_hash(splitmix64(&mut rng) % distinct))
        .collect()
}

fn zipf_keys(distinct: usize, s: f64, seed: u64) -> Vec<u64> {
    let mut cdf = Vec::with_capacity(distinct);
    let mut total = 0.0;
    for rank in 1..=distinct {
        total += 1.0 / (rank as f64).powf(s);
        cdf.push(total);
    }
    let mut rng = seed;
    (0..SEQUENCE_LEN)
        .map(|_| {
            let u = (splitmix64(&mut rng) >> 11) as f64 / (1u64 << 53) as f64 * total;
            let rank = cdf.partition_point(|&c| c < u).min(distinct - 1);
            key_hash(rank as u64)
        })
        .collect()
}

/// Runs `decide(key, now_or_0)` `OPS_PER_THREAD` times on each of `threads`
/// threads, after one untimed warm-up pass over the sequence (so both
/// limiters are measured in steady state, with every key already known);
/// returns (wall seconds, admitted).
fn run<F>(
    clock: MonotonicClock,
    threads: usize,
    keys: &Arc<Vec<u64>>,
    decide: &Arc<F>,
) -> (f64, u64)
where
    F: Fn(u64, u64) -> bool + Send + Sync + 'static,
{
    // One clock for the whole run (warm-up, repetitions): a second epoch
    // would look like time running backwards to our limiter (which then,
    // correctly, limits).
    for &key in keys.iter() {
        let _ = decide(key, clock.now_ns());
    }
    let barrier = Arc::new(Barrier::new(threads + 1));

    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let keys = Arc::clone(keys);
            let decide = Arc::clone(decide);
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                let mut admitted = 0u64;
                let mut index = t * (SEQUENCE_LEN / 2 + 7);
                let mut now = 0;
                for op in 0..OPS_PER_THREAD {
                    if op % 32 == 0 {
                        now = clock.now_ns();
                    }
                    index = (index + 1) & (SEQUENCE_LEN - 1);
                    admitted += u64::from(decide(keys[index], now));
                }
                admitted
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    let admitted = handles.into_iter().map(|h| h.join().expect("join")).sum();
    (start.elapsed().as_secs_f64(), admitted)
}

fn our_limiter(capacity: usize) -> KeyedLimiter {
    let cfg = LimitsConfig {
        default_rate: RATE.into(),
        default_burst: BURST.into(),
        capacity,
        ..LimitsConfig::default()
    };
    KeyedLimiter::new(&cfg).expect("valid bench config")
}

fn governor_quota() -> governor::Quota {
    governor::Quota::per_second(NonZeroU32::new(RATE).expect("nonzero"))
        .allow_burst(NonZeroU32::new(BURST).expect("nonzero"))
}

fn vm_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn memory_bound() {
    let offered: u64 = 10_000_000;
    let rss_before = vm_rss_kib();
    let limiter = our_limiter(65_536);
    let rss_allocated = vm_rss_kib();
    let clock = MonotonicClock::new();
    let start = Instant::now();
    let mut admitted = 0u64;
    for id in 0..offered {
        let now = clock.now_ns();
        admitted += u64::from(
            limiter
                .try_acquire(ClientKey::from_hash(key_hash(id)), 1, now)
                .decision
                .is_allowed(),
        );
    }
    let secs = start.elapsed().as_secs_f64();
    let rss_after = vm_rss_kib();
    let stats = limiter.stats();
    println!("\n### Memory bound: {offered} distinct keys offered to capacity 65536 (overflow = shared)\n");
    println!("| metric | value |\n|---|---|");
    println!(
        "| table bytes (fixed) | {} ({} MiB) |",
        stats.table_bytes,
        stats.table_bytes >> 20
    );
    println!(
        "| live slots after | {} ({:.1}% of capacity) |",
        limiter.live_slots(),
        100.0 * limiter.live_slots() as f64 / 65_536.0
    );
    println!("| keys inserted | {} |", stats.inserted);
    println!(
        "| decisions on the shared overflow bucket | {} |",
        stats.overflowed
    );
    println!("| admitted (any bucket) | {admitted} |");
    println!("| VmRSS before new / after new / after 10M keys | {rss_before} / {rss_allocated} / {rss_after} KiB |");
    println!(
        "| RSS growth while offering 10M keys | {} KiB |",
        rss_after.saturating_sub(rss_allocated)
    );
    println!(
        "| time | {:.2} s ({:.0} ns/decision incl. clock read) |",
        secs,
        secs * 1e9 / offered as f64
    );

    let governor_keys: u64 = 1_000_000;
    let rss_before = vm_rss_kib();
    let governor = governor::RateLimiter::keyed(governor_quota());
    for id in 0..governor_keys {
        let _ = governor.check_key(&key_hash(id));
    }
    let rss_after = vm_rss_kib();
    println!(
        "| for contrast: governor keyed (dashmap) after {governor_keys} distinct keys | {} entries, RSS +{} KiB (unbounded until retain_recent) |",
        governor.len(),
        rss_after.saturating_sub(rss_before)
    );
    drop(governor);
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing
    // useful either way: always run the (short) full benchmark.
    memory_bound();
    let clock = MonotonicClock::new();

    println!("\n### Throughput (quota {RATE}/s, burst {BURST} per key; {OPS_PER_THREAD} decisions per thread, best of {REPETITIONS} alternating runs)\n");
    println!("| keys | threads | ours ns/decision | ours Mdecisions/s | governor ns/decision | governor Mdecisions/s | speed-up |");
    println!("|---|---|---|---|---|---|---|");
    let one = Arc::new(uniform_keys(1, 1));
    let ten_k = Arc::new(uniform_keys(10_000, 2));
    let zipf = Arc::new(zipf_keys(1_000_000, 1.0, 3));
    // (label, keys, our table capacity): the default capacity, and a table
    // sized to the key count (load <= 50%) where that differs.
    let workloads: Vec<(&str, &Arc<Vec<u64>>, usize)> = vec![
        ("1 (cap 65536)", &one, 65_536),
        ("10k uniform (cap 65536)", &ten_k, 65_536),
        ("10k uniform (cap 32768)", &ten_k, 32_768),
        ("1M Zipf(1.0) (cap 2^21)", &zipf, 1 << 21),
    ];
    for (name, keys, capacity) in workloads {
        for threads in [1, 2] {
            let ours = Arc::new(our_limiter(capacity));
            let our_decide = {
                let ours = Arc::clone(&ours);
                Arc::new(move |key: u64, now: u64| {
                    ours.try_acquire(ClientKey::from_hash(key), 1, now)
                        .decision
                        .is_allowed()
                })
            };
            let governor = Arc::new(governor::RateLimiter::keyed(governor_quota()));
            let gov_decide = {
                let governor = Arc::clone(&governor);
                Arc::new(move |key: u64, _now: u64| governor.check_key(&key).is_ok())
            };
            // The machine is shared: alternate the two REPETITIONS times and
            // keep each one's best (least disturbed) run.
            let (mut our_secs, mut gov_secs) = (f64::MAX, f64::MAX);
            let (mut our_admitted, mut gov_admitted) = (0, 0);
            for _ in 0..REPETITIONS {
                let (secs, admitted) = run(clock, threads, keys, &our_decide);
                our_secs = our_secs.min(secs);
                our_admitted = admitted;
                let (secs, admitted) = run(clock, threads, keys, &gov_decide);
                gov_secs = gov_secs.min(secs);
                gov_admitted = admitted;
            }
            let ops = (threads * OPS_PER_THREAD) as f64;
            // ns/decision: wall time per decision on one thread.
            let our_ns = our_secs * 1e9 / OPS_PER_THREAD as f64;
            let gov_ns = gov_secs * 1e9 / OPS_PER_THREAD as f64;
            println!(
                "| {name} | {threads} | {our_ns:.1} | {:.1} | {gov_ns:.1} | {:.1} | {:.2}x |",
                ops / our_secs / 1e6,
                ops / gov_secs / 1e6,
                gov_secs / our_secs
            );
            let total = ops as u64;
            if our_admitted * 100 < total * 99 || gov_admitted * 100 < total * 99 {
                println!(
                    "|   (admitted: ours {our_admitted}, governor {gov_admitted} of {total}) | | | | | | |"
                );
            }
        }
    }
}
