//! Limiter properties on a virtual clock (proptest), real-thread stress, and
//! the keyed table's overflow, sweep and reload behaviour.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use metricsstream::limit::{
    ClientKey, ClientLimit, Decision, KeyedLimiter, LimitsConfig, Overflow, Quota, QuotaScope, Sweeper, TokenBucket,
};
use metricsstream::time::Nanos;
use proptest::prelude::*;

const SEC: u64 = 1_000_000_000;

fn config(rate: u64, burst: u64, capacity: usize, probe_limit: usize) -> LimitsConfig {
    LimitsConfig {
        default_rate: rate,
        default_burst: burst,
        capacity,
        probe_limit,
        overflow: Overflow::Shared,
        idle_timeout_s: 10,
        clients: Vec::new(),
        ..LimitsConfig::default()
    }
}

/// Checks `admitted <= rate*d + burst` for every window spanned by two
/// admissions (the worst windows start and end at admissions).
fn assert_window_bound(admissions: &[(u64, u64)], rate: u64, burst: u64) {
    for (i, &(start, _)) in admissions.iter().enumerate() {
        let mut total: u128 = 0;
        for &(end, n) in &admissions[i..] {
            total += u128::from(n);
            let bound = u128::from(rate) * u128::from(end - start) + u128::from(burst) * 1_000_000_000;
            assert!(
                total * 1_000_000_000 <= bound,
                "{total} records in [{start}, {end}] ns exceed rate {rate}/s + burst {burst}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn admitted_records_never_exceed_rate_times_window_plus_burst(
        rate in 1u64..2_000_000,
        burst in 1u64..64,
        arrivals in prop::collection::vec((0u64..50_000_000, 1u64..80), 1..300),
    ) {
        let bucket = TokenBucket::new(Quota::new(rate, burst).expect("valid"));
        let mut now = 0;
        let mut admitted = Vec::new();
        for (gap, n) in arrivals {
            now += gap;
            match bucket.try_acquire(n, Nanos::from_ns(now)) {
                Decision::Allowed { .. } => admitted.push((now, n)),
                Decision::TooLarge { .. } => prop_assert!(n > burst),
                Decision::Limited { retry_after, .. } => {
                    // Retry-after is exact: waiting that long admits the same request.
                    prop_assert!(retry_after.as_nanos() > 0);
                }
                Decision::NoCapacity => prop_assert!(false, "plain bucket never lacks capacity"),
            }
        }
        assert_window_bound(&admitted, rate, burst);
    }

    #[test]
    fn retry_after_is_exact(
        rate in 1u64..1_000_000,
        burst in 1u64..64,
        drain in 1u64..64,
        n in 1u64..64,
    ) {
        let bucket = TokenBucket::new(Quota::new(rate, burst).expect("valid"));
        let _ = bucket.try_acquire(drain.min(burst), Nanos::from_ns(SEC));
        let n = n.min(burst);
        if let Decision::Limited { retry_after, .. } = bucket.try_acquire(n, Nanos::from_ns(SEC)) {
            let at = SEC + retry_after.as_nanos() as u64;
            prop_assert!(!bucket.try_acquire(n, Nanos::from_ns(at - 1)).is_allowed());
            prop_assert!(bucket.try_acquire(n, Nanos::from_ns(at)).is_allowed());
        }
    }

    #[test]
    fn a_client_within_its_envelope_is_never_limited(
        rate in 1u64..5_000_000,
        burst in 1u64..64,
        requests in prop::collection::vec((1u64..64, 0u64..1_000_000), 1..300),
    ) {
        // The greedy conforming client: each request is sent at the first
        // nanosecond an exact (rational) GCRA oracle would admit it, plus i ns
        // of slack for our stored TAT's rounding (< 1/8 ns per call), plus a
        // random extra delay. Oracle TAT is kept scaled by `rate` (ns*rate).
        let bucket = TokenBucket::new(Quota::new(rate, burst).expect("valid"));
        let rate128 = u128::from(rate);
        let mut oracle_tat_scaled: u128 = 0;
        let mut now: u64 = SEC;
        for (i, (n, extra)) in requests.into_iter().enumerate() {
            let n = n.min(burst);
            let slack_scaled = u128::from(burst - n) * 1_000_000_000;
            let earliest = oracle_tat_scaled.saturating_sub(slack_scaled).div_ceil(rate128) as u64;
            now = now.max(earliest + i as u64) + extra;
            let decision = bucket.try_acquire(n, Nanos::from_ns(now));
            prop_assert!(decision.is_allowed(), "request {i} ({n} at {now} ns): {decision:?}");
            oracle_tat_scaled =
                oracle_tat_scaled.max(u128::from(now) * rate128) + u128::from(n) * 1_000_000_000;
        }
    }
}

#[test]
fn threads_at_a_frozen_instant_admit_exactly_burst_in_total() {
    let limiter = Arc::new(KeyedLimiter::new(&config(1_000, 5_000, 64, 8)).expect("valid"));
    let keys: Vec<ClientKey> = (0..4u64).map(|k| limiter.key_for(&k.to_le_bytes())).collect();
    let threads = 4;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let limiter = Arc::clone(&limiter);
            let keys = keys.clone();
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                let mut admitted = vec![0u64; keys.len()];
                for round in 0..20_000 {
                    for (k, key) in keys.iter().enumerate() {
                        let n = 1 + (round % 3) as u64;
                        if limiter.try_acquire(*key, n, Nanos::from_ns(7 * SEC)).decision.is_allowed() {
                            admitted[k] += n;
                        }
                    }
                }
                admitted
            })
        })
        .collect();
    let mut totals = vec![0u64; keys.len()];
    for handle in handles {
        for (total, n) in totals.iter_mut().zip(handle.join().expect("join")) {
            *total += n;
        }
    }
    // Requests of 1..3 records drain a 5000 bucket to within 2 of empty; the
    // last n=1 requests take it exactly to zero.
    assert_eq!(totals, vec![5_000; keys.len()]);
}

#[test]
fn threads_on_a_shared_virtual_clock_respect_the_bound() {
    let rate = 100_000;
    let burst = 1_000;
    let limiter = Arc::new(KeyedLimiter::new(&config(rate, burst, 64, 8)).expect("valid"));
    let key = limiter.key_for(b"hot-client");
    let clock = Arc::new(AtomicU64::new(SEC));
    let stop_at = SEC + SEC / 10; // 100 ms of virtual time
    let handles: Vec<_> = (0..3)
        .map(|t| {
            let limiter = Arc::clone(&limiter);
            let clock = Arc::clone(&clock);
            thread::spawn(move || {
                let mut admitted = 0u64;
                loop {
                    // Thread 0 drives the clock forward 1 µs per step.
                    let now = if t == 0 {
                        clock.fetch_add(1_000, Ordering::AcqRel) + 1_000
                    } else {
                        clock.load(Ordering::Acquire)
                    };
                    if now > stop_at {
                        return admitted;
                    }
                    if limiter.try_acquire(key, 1, Nanos::from_ns(now)).decision.is_allowed() {
                        admitted += 1;
                    }
                }
            })
        })
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().expect("join")).sum();
    // 100 ms at 100k/s = 10_000, plus the burst; every step offers more than
    // the refill, so the bound is met exactly (minus at most one step's refill).
    assert!(total <= 10_000 + burst, "{total}");
    assert!(total >= 10_000 + burst - 1, "{total}");
}

#[test]
fn full_table_falls_back_to_the_shared_bucket_and_counts_it() {
    let limiter = KeyedLimiter::new(&config(1, 3, 4, 4)).expect("valid");
    for k in 0..4u64 {
        let verdict = limiter.try_acquire(limiter.key_for(&k.to_le_bytes()), 1, Nanos::from_ns(SEC));
        assert_eq!(verdict.scope, QuotaScope::Default);
    }
    assert_eq!(limiter.live_slots(), 4);
    // Three new keys share one 3-record bucket; the fourth record is limited.
    let mut scopes = Vec::new();
    let mut allowed = 0;
    for k in 4..8u64 {
        let verdict = limiter.try_acquire(limiter.key_for(&k.to_le_bytes()), 1, Nanos::from_ns(SEC));
        scopes.push(verdict.scope);
        allowed += u64::from(verdict.decision.is_allowed());
    }
    assert!(scopes.iter().all(|s| *s == QuotaScope::Overflow));
    assert_eq!(allowed, 3);
    let stats = limiter.stats();
    assert_eq!((stats.inserted, stats.overflowed, stats.refused), (4, 4, 0));
    assert_eq!(stats.table_bytes, 4 * 32);
}

#[test]
fn refuse_policy_refuses_keys_without_a_slot() {
    let mut cfg = config(1, 3, 2, 2);
    cfg.overflow = Overflow::Refuse;
    let limiter = KeyedLimiter::new(&cfg).expect("valid");
    let decisions: Vec<_> = (0..3u64)
        .map(|k| limiter.try_acquire(limiter.key_for(&k.to_le_bytes()), 1, Nanos::from_ns(SEC)).decision)
        .collect();
    assert!(decisions[0].is_allowed() && decisions[1].is_allowed());
    assert_eq!(decisions[2], Decision::NoCapacity);
    assert_eq!(limiter.stats().refused, 1);
}

#[test]
fn probe_limit_bounds_the_search_even_with_free_slots() {
    // Keys with the same home slot: only `probe_limit` of them get a slot.
    let limiter = KeyedLimiter::new(&config(1, 1, 64, 2)).expect("valid");
    let same_home = |k: u64| ClientKey::from_hash((k << 8) << 2);
    for k in 0..3 {
        let _ = limiter.try_acquire(same_home(k), 1, Nanos::from_ns(SEC));
    }
    assert_eq!(limiter.live_slots(), 2);
    assert_eq!(limiter.stats().overflowed, 1);
}

#[test]
fn sweep_reclaims_idle_keys_only_and_frees_room_for_new_ones() {
    let limiter = KeyedLimiter::new(&config(10, 10, 4, 4)).expect("valid");
    let key = |k: u64| limiter.key_for(&k.to_le_bytes());
    for k in 0..4 {
        let _ = limiter.try_acquire(key(k), 10, Nanos::ZERO); // each bucket full again at 1 s
    }
    // Key 3 keeps busy: its bucket is full again only at 100 s.
    for t in 1..100 {
        let _ = limiter.try_acquire(key(3), 10, Nanos::from_ns(t * SEC));
    }
    assert!(limiter.try_acquire(key(9), 1, Nanos::from_ns(100 * SEC)).scope == QuotaScope::Overflow);
    let report = limiter.sweep(Nanos::from_ns(100 * SEC), 10 * SEC);
    assert_eq!((report.live, report.reclaimed), (4, 3));
    assert_eq!(limiter.live_slots(), 1);
    // Key 3 kept its state (drained at 99 s, no tokens at 99.5 s).
    assert!(!limiter.try_acquire(key(3), 10, Nanos::from_ns(99 * SEC + SEC / 2)).decision.is_allowed());
    // New keys get slots again, starting full.
    let verdict = limiter.try_acquire(key(9), 10, Nanos::from_ns(100 * SEC));
    assert_eq!(verdict.scope, QuotaScope::Default);
    assert!(verdict.decision.is_allowed());
    // A reclaimed key comes back as a fresh (full) bucket.
    assert!(limiter.try_acquire(key(0), 10, Nanos::from_ns(100 * SEC)).decision.is_allowed());
    assert_eq!(limiter.stats().reclaimed, 3);
}

#[test]
fn sweeper_covers_the_table_in_slices_and_a_pass_frees_every_idle_slot() {
    // 1,000 spoofed sources into 256 slots: the table fills, the rest overflow.
    let mut cfg = config(10, 10, 256, 8);
    cfg.overflow = Overflow::Refuse;
    let limiter = KeyedLimiter::new(&cfg).expect("valid");
    let key = |k: u64| limiter.key_for(&k.to_le_bytes());
    for k in 0..1_000u64 {
        let _ = limiter.try_acquire(key(k), 1, Nanos::ZERO);
    }
    let filled = limiter.live_slots();
    assert!(filled > 200, "table filled: {filled} of 256");
    assert!(limiter.stats().refused > 0);
    let newcomer = key(5_000);
    assert_eq!(limiter.try_acquire(newcomer, 1, Nanos::from_secs(1)).decision, Decision::NoCapacity);
    // Before idle_timeout_s (10 s) a full pass reclaims nothing.
    let mut sweeper = Sweeper::new(limiter.capacity(), 64);
    for _ in 0..64 {
        sweeper.tick(&limiter, Nanos::from_secs(5));
    }
    assert_eq!((sweeper.total().live, sweeper.total().reclaimed), (filled as u64, 0));
    // After it, each tick reclaims only its slice of 4 slots: 63 ticks leave
    // the last slice, the 64th completes the pass.
    let mut sweeper = Sweeper::new(limiter.capacity(), 64);
    for _ in 0..63 {
        assert!(sweeper.tick(&limiter, Nanos::from_secs(11)).reclaimed <= 4);
    }
    let last_slice = limiter.live_slots();
    assert!(last_slice <= 4, "{last_slice} slots left for the last slice");
    sweeper.tick(&limiter, Nanos::from_secs(11));
    assert_eq!(limiter.live_slots(), 0, "one pass frees every idle slot");
    assert_eq!(sweeper.total().reclaimed, filled as u64);
    assert_eq!(limiter.stats().reclaimed, filled as u64);
    // The newcomer now gets its own slot.
    let verdict = limiter.try_acquire(newcomer, 1, Nanos::from_secs(11));
    assert!(verdict.decision.is_allowed());
    assert_eq!(verdict.scope, QuotaScope::Default);
}

#[test]
fn sweep_slice_wraps_round_the_end_and_covers_one_pass_at_most() {
    let limiter = KeyedLimiter::new(&config(10, 10, 64, 64)).expect("valid");
    for k in 0..64u64 {
        let _ = limiter.try_acquire(limiter.key_for(&k.to_le_bytes()), 1, Nanos::ZERO);
    }
    assert_eq!(limiter.live_slots(), 64);
    let idle = 10 * SEC;
    // 8 slots from index 60: 60..64 then 0..4.
    assert_eq!(limiter.sweep_slice(Nanos::from_secs(11), idle, 60, 8).reclaimed, 8);
    // Asking for more than the table sees each slot once.
    assert_eq!(limiter.sweep_slice(Nanos::from_secs(11), idle, 1_000_003, 10_000).live, 56);
    assert_eq!(limiter.live_slots(), 0);
}

#[test]
fn sweeping_while_threads_decide_keeps_every_key_within_its_bound() {
    // Real threads hammer 32 keys on a 16-slot table while a sweeper
    // reclaims aggressively; at a frozen instant no key may exceed its burst,
    // whether it lives in a slot, loses it and comes back, or overflows.
    let mut cfg = config(1, 4, 16, 4);
    cfg.overflow = Overflow::Refuse;
    let limiter = Arc::new(KeyedLimiter::new(&cfg).expect("valid"));
    let keys: Vec<ClientKey> = (0..32u64).map(|k| limiter.key_for(&k.to_le_bytes())).collect();
    let per_key: Arc<Vec<AtomicU64>> = Arc::new((0..32).map(|_| AtomicU64::new(0)).collect());
    let done = Arc::new(AtomicU64::new(0));
    let sweeper = {
        let limiter = Arc::clone(&limiter);
        let done = Arc::clone(&done);
        thread::spawn(move || {
            let mut reclaimed = 0;
            while done.load(Ordering::Acquire) == 0 {
                // idle 0: any full bucket may be reclaimed
                reclaimed += limiter.sweep(Nanos::from_ns(SEC), 0).reclaimed;
            }
            reclaimed
        })
    };
    let workers: Vec<_> = (0..2)
        .map(|t| {
            let limiter = Arc::clone(&limiter);
            let keys = keys.clone();
            let per_key = Arc::clone(&per_key);
            thread::spawn(move || {
                for round in 0..20_000usize {
                    let k = (round * 7 + t) % keys.len();
                    if limiter.try_acquire(keys[k], 1, Nanos::from_ns(SEC)).decision.is_allowed() {
                        per_key[k].fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("join");
    }
    done.store(1, Ordering::Release);
    let reclaimed = sweeper.join().expect("join");
    // Buckets that were drained are never "full" at the frozen instant, so
    // they are never reclaimed; only untouched (n = 0) or full ones would be.
    for (k, count) in per_key.iter().enumerate() {
        assert!(count.load(Ordering::Relaxed) <= 4, "key {k} admitted {count:?}");
    }
    let _ = reclaimed;
}

#[test]
fn reload_keeps_state_of_unchanged_clients_and_applies_new_quotas() {
    let mut cfg = config(100, 100, 64, 8);
    cfg.clients = vec![
        ClientLimit { id: "svc-a".into(), rate: 10, burst: Some(10) },
        ClientLimit { id: "svc-b".into(), rate: 10, burst: Some(10) },
    ];
    let limiter = KeyedLimiter::new(&cfg).expect("valid");
    let a = limiter.key_for(b"svc-a");
    let b = limiter.key_for(b"svc-b");
    let c = limiter.key_for(b"svc-c");
    for key in [a, b] {
        let verdict = limiter.try_acquire(key, 10, Nanos::from_ns(SEC));
        assert_eq!(verdict.scope, QuotaScope::Client);
        assert!(verdict.decision.is_allowed());
    }
    assert!(limiter.try_acquire(c, 100, Nanos::from_ns(SEC)).decision.is_allowed());

    let mut next = cfg.clone();
    next.clients[1].rate = 1_000;
    next.clients[1].burst = Some(1_000);
    next.default_rate = 200;
    next.default_burst = 200;
    let report = limiter.reload(&next).expect("valid");
    assert_eq!(report.slots_updated, 2, "svc-b and the default client");
    assert!(!report.capacity_change_ignored);

    // svc-a: unchanged quota, state kept (still drained).
    assert!(!limiter.try_acquire(a, 1, Nanos::from_ns(SEC)).decision.is_allowed());
    // svc-b: new quota applies to the kept state. GCRA state is time: the
    // bucket is full again at 2 s whatever the rate, so at 1.5 s half of the
    // new 1000-record burst is available.
    let verdict = limiter.try_acquire(b, 500, Nanos::from_ns(SEC + SEC / 2));
    assert_eq!(verdict.quota, Quota::new(1_000, 1_000).expect("valid"));
    assert!(verdict.decision.is_allowed());
    assert!(!limiter.try_acquire(b, 1, Nanos::from_ns(SEC + SEC / 2)).decision.is_allowed());
    // svc-c: default raised to 200/s, also full again at 2 s.
    assert!(limiter.try_acquire(c, 100, Nanos::from_ns(SEC + SEC / 2)).decision.is_allowed());
    assert!(!limiter.try_acquire(c, 1, Nanos::from_ns(SEC + SEC / 2)).decision.is_allowed());
    // A brand-new client gets the new default.
    let d = limiter.try_acquire(limiter.key_for(b"svc-d"), 200, Nanos::from_ns(SEC));
    assert!(d.decision.is_allowed());

    // Invalid reloads are rejected and change nothing.
    let mut bad = next.clone();
    bad.default_rate = 0;
    assert!(limiter.reload(&bad).is_err());
    assert!(!limiter.try_acquire(limiter.key_for(b"svc-e"), 201, Nanos::from_ns(SEC)).decision.is_allowed());
}

#[test]
fn burst_api_decides_exactly_like_sequential_calls() {
    let cfg = config(1_000, 3, 8, 4);
    let sequential = KeyedLimiter::new(&cfg).expect("valid");
    let burst = KeyedLimiter::new(&cfg).expect("valid");
    // 12 keys on 8 slots: repeats, limits and overflow all occur.
    let requests: Vec<(ClientKey, u64)> =
        (0..32u64).map(|i| (ClientKey::from_hash((i * 7 % 12) << 2), 1 + i % 2)).collect();
    let expected: Vec<_> =
        requests.iter().map(|(key, n)| sequential.try_acquire(*key, *n, Nanos::from_ns(SEC))).collect();
    let mut verdicts = expected.clone();
    for v in verdicts.iter_mut() {
        v.decision = Decision::NoCapacity;
    }
    burst.try_acquire_burst(&requests, Nanos::from_ns(SEC), &mut verdicts);
    assert_eq!(verdicts, expected);
    assert!(expected.iter().any(|v| v.scope == QuotaScope::Overflow));
    assert!(expected.iter().any(|v| !v.decision.is_allowed()));
}

#[test]
fn reload_racing_first_sight_inserts_leaves_no_stale_quota() {
    // Smoke test with real threads (the interleaving that matters is covered
    // by the loom model `reload_racing_an_insert_leaves_no_stale_quota`):
    // inserters keep claiming slots for new keys (n = 0 keeps buckets full,
    // so their own sweeps recycle the slots) while reloads flip the default
    // quota. Afterwards every key must see the last reload's quota.
    let cfg = config(1_000, 1_000, 1_024, 16);
    let limiter = Arc::new(KeyedLimiter::new(&cfg).expect("valid"));
    let mut other = cfg.clone();
    other.default_rate = 7;
    other.default_burst = 7;
    let done = Arc::new(AtomicU64::new(0));
    let inserters: Vec<_> = (0..2u64)
        .map(|t| {
            let limiter = Arc::clone(&limiter);
            let done = Arc::clone(&done);
            thread::spawn(move || {
                let mut i = 0;
                while done.load(Ordering::Acquire) == 0 {
                    let key = ClientKey::from_hash(splitmix(t << 40 | i));
                    let _ = limiter.try_acquire(key, 0, Nanos::from_ns(SEC));
                    let _ = limiter.sweep(Nanos::from_ns(SEC), 0);
                    i += 1;
                }
                i
            })
        })
        .collect();
    for round in 0..2_000 {
        let next = if round % 2 == 0 { &other } else { &cfg };
        limiter.reload(next).expect("valid");
    }
    done.store(1, Ordering::Release);
    let counts: Vec<u64> = inserters.into_iter().map(|h| h.join().expect("join")).collect();
    // Last reload applied `cfg` (round 1999).
    let expected = Quota::new(1_000, 1_000).expect("valid");
    for (t, count) in counts.into_iter().enumerate() {
        for i in 0..count {
            let key = ClientKey::from_hash(splitmix((t as u64) << 40 | i));
            let verdict = limiter.try_acquire(key, 0, Nanos::from_ns(SEC));
            assert_eq!(verdict.quota, expected, "key {t}/{i} ({:?})", verdict.scope);
        }
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
