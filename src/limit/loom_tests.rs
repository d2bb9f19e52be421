//! loom models of the limiter's CAS protocols (2-3 threads, tiny tables).
//! Run: `RUSTFLAGS="--cfg loom" cargo test --release --lib limit::loom_tests --target-dir target/loom`

use loom::sync::Arc;
use loom::thread;

use super::{ClientKey, Decision, KeyedLimiter, LimitsConfig, Overflow, Quota, TokenBucket};
use crate::time::Nanos;

const SEC: u64 = 1_000_000_000;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(f);
}

fn table(capacity: usize, probe_limit: usize, burst: u64, overflow: Overflow) -> KeyedLimiter {
    let cfg = LimitsConfig {
        default_rate: 1,
        default_burst: burst,
        capacity,
        probe_limit,
        overflow,
        idle_timeout_s: 1,
        clients: Vec::new(),
        ..LimitsConfig::default()
    };
    KeyedLimiter::new(&cfg).expect("valid config")
}

/// A key whose home slot is `home`.
fn key_at(home: u64, distinct: u64) -> ClientKey {
    ClientKey::from_hash(((distinct << 8) | home) << 2)
}

#[test]
fn concurrent_cas_admits_exactly_burst() {
    model(|| {
        let bucket = Arc::new(TokenBucket::new(Quota::new(1, 2).expect("valid")));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let bucket = Arc::clone(&bucket);
                thread::spawn(move || {
                    u64::from(bucket.try_acquire(1, Nanos::from_ns(SEC)).is_allowed())
                        + u64::from(bucket.try_acquire(1, Nanos::from_ns(SEC)).is_allowed())
                })
            })
            .collect();
        let admitted: u64 = handles.into_iter().map(|h| h.join().expect("join")).sum();
        assert_eq!(admitted, 2);
        assert!(!bucket.try_acquire(1, Nanos::from_ns(SEC)).is_allowed());
    });
}

#[test]
fn concurrent_first_sight_inserts_share_one_slot() {
    model(|| {
        let limiter = Arc::new(table(2, 2, 1, Overflow::Refuse));
        let key = key_at(0, 1);
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let limiter = Arc::clone(&limiter);
                thread::spawn(move || limiter.try_acquire(key, 1, Nanos::from_ns(SEC)).decision.is_allowed())
            })
            .collect();
        let admitted = handles.into_iter().filter_map(|h| h.join().ok()).filter(|allowed| *allowed).count();
        assert_eq!(admitted, 1, "burst 1 admitted once, whatever the interleaving");
        assert_eq!(limiter.live_slots(), 1, "one LIVE slot per key");
    });
}

#[test]
fn decision_racing_sweep_is_never_lost() {
    model(|| {
        let limiter = Arc::new(table(2, 2, 1, Overflow::Refuse));
        let key = key_at(0, 1);
        // Insert without consuming (n = 0): the bucket is full and, at 10 s,
        // idle for longer than the 1 s timeout.
        assert!(limiter.try_acquire(key, 0, Nanos::ZERO).decision.is_allowed());
        let worker = {
            let limiter = Arc::clone(&limiter);
            thread::spawn(move || limiter.try_acquire(key, 1, Nanos::from_ns(10 * SEC)).decision.is_allowed())
        };
        let sweeper = {
            let limiter = Arc::clone(&limiter);
            thread::spawn(move || limiter.sweep(Nanos::from_ns(10 * SEC), SEC).reclaimed)
        };
        let allowed = worker.join().expect("join");
        let _ = sweeper.join().expect("join");
        assert!(allowed, "a full bucket (old or new slot) admits");
        // The record admitted above must be accounted to the key: a stale
        // worker admitting on a reclaimed slot would let this one through.
        let again = limiter.try_acquire(key, 1, Nanos::from_ns(10 * SEC)).decision;
        assert!(!again.is_allowed(), "{again:?}");
        assert!(limiter.live_slots() <= 1);
    });
}

#[test]
fn reused_slot_is_not_charged_by_a_stale_worker() {
    model(|| {
        // One slot: the new key only gets it if the sweep frees it.
        let limiter = Arc::new(table(1, 1, 1, Overflow::Refuse));
        let old = key_at(0, 1);
        let new = key_at(0, 2);
        assert!(limiter.try_acquire(old, 0, Nanos::ZERO).decision.is_allowed());
        let stale = {
            let limiter = Arc::clone(&limiter);
            thread::spawn(move || limiter.try_acquire(old, 1, Nanos::from_ns(10 * SEC)).decision)
        };
        let sweeper = {
            let limiter = Arc::clone(&limiter);
            thread::spawn(move || {
                let _ = limiter.sweep(Nanos::from_ns(10 * SEC), SEC);
                limiter.try_acquire(new, 1, Nanos::from_ns(10 * SEC)).decision
            })
        };
        let old_decision = stale.join().expect("join");
        let new_decision = sweeper.join().expect("join");
        assert!(
            !matches!(new_decision, Decision::Limited { .. }),
            "the new key's bucket starts full: {new_decision:?}"
        );
        assert!(matches!(old_decision, Decision::Allowed { .. } | Decision::NoCapacity));
    });
}

#[test]
fn two_first_sight_inserts_racing_a_sweep_admit_exactly_burst() {
    let mut builder = loom::model::Builder::new();
    // Three threads: one preemption keeps the model under a minute.
    builder.preemption_bound = Some(1);
    builder.check(|| {
        let limiter = Arc::new(table(2, 2, 1, Overflow::Refuse));
        let key = key_at(0, 1);
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let limiter = Arc::clone(&limiter);
                thread::spawn(move || limiter.try_acquire(key, 1, Nanos::from_ns(SEC)).decision.is_allowed())
            })
            .collect();
        let sweeper = {
            let limiter = Arc::clone(&limiter);
            // idle 0: a fresh (full) slot may be reclaimed before its first use
            thread::spawn(move || limiter.sweep(Nanos::from_ns(SEC), 0).reclaimed)
        };
        let mut admitted = workers.into_iter().map(|h| u64::from(h.join().expect("join"))).sum::<u64>();
        let _ = sweeper.join().expect("join");
        // Quiescent now: the key has (or gets) one slot; burst 1 in total.
        admitted += u64::from(limiter.try_acquire(key, 1, Nanos::from_ns(SEC)).decision.is_allowed());
        assert_eq!(admitted, 1);
        assert!(limiter.live_slots() <= 1);
    });
}

#[test]
fn reload_racing_an_insert_leaves_no_stale_quota() {
    model(|| {
        let limiter = Arc::new(table(2, 2, 1, Overflow::Refuse));
        let key = key_at(0, 1);
        let mut next =
            LimitsConfig { default_rate: 5, default_burst: 5, capacity: 2, probe_limit: 2, ..LimitsConfig::default() };
        next.overflow = Overflow::Refuse;
        let inserter = {
            let limiter = Arc::clone(&limiter);
            thread::spawn(move || limiter.try_acquire(key, 0, Nanos::from_ns(SEC)).decision)
        };
        let reloader = {
            let limiter = Arc::clone(&limiter);
            thread::spawn(move || limiter.reload(&next).map(|report| report.slots_updated))
        };
        let _ = inserter.join().expect("join");
        assert!(reloader.join().expect("join").is_ok());
        let verdict = limiter.try_acquire(key, 0, Nanos::from_ns(SEC));
        assert_eq!(verdict.quota, Quota::new(5, 5).expect("valid"));
    });
}
