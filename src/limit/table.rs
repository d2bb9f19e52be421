//! `KeyedLimiter`: the bounded, lock-free table of per-client buckets shared
//! by all workers, its overflow policy, idle-slot reclamation and reload.
//!
//! # Layout
//! A fixed array of `capacity` (power of two) 32-byte slots, allocated once
//! at start-up; open addressing with linear probing over at most
//! `probe_limit` slots from the key's home slot. Each slot is three atomics:
//! `key` (state + key tag), `tat` (the bucket's GCRA state, see `bucket`) and
//! `quota` (packed rate/burst, rewritten by reload).
//!
//! # Keys and collisions
//! A client id is hashed with SipHash under a per-process random key
//! ([`std::collections::hash_map::RandomState`]), so a client spoofing ids
//! cannot aim them at one probe window. The table stores 62 bits of the hash
//! (the *tag*); two ids with the same tag share one bucket (probability
//! about `live^2 / 2^63`, ~5e-10 for 65536 live clients): they are limited
//! together, never more than one quota admitted for both. Callers that
//! already hold a well-mixed 64-bit hash can use [`ClientKey::from_hash`].
//!
//! # Key word state machine (all transitions by CAS)
//! ```text
//! EMPTY --claim--> PENDING(t) --publish--> LIVE(t) --sweep--> EMPTY
//!                     |  ^--------kill------ (a competing claimant)
//!                     +--abort--> EMPTY       KILLED --owner--> EMPTY
//! ```
//! Only LIVE slots are used for decisions. Insertion (first sight of a key) is
//! lock-free and never creates two LIVE slots for one key:
//! 1. scan the window; a LIVE slot for the key (whose TAT is not DEAD) is used;
//! 2. CAS the first EMPTY slot to PENDING(t) (no EMPTY slot: overflow policy);
//! 3. re-read every other slot of the window with an RMW (`fetch_or(0)`),
//!    so that of two concurrent claimants at least one sees the other
//!    (Dekker with RMWs: each read is ordered after the other's claim or
//!    synchronises with it). A LIVE slot for the key wins (abort ours and use
//!    it); a PENDING claim for the key *earlier* in probe order wins (abort
//!    ours, retry); one *later* in probe order is killed (PENDING -> KILLED;
//!    its owner clears it to EMPTY and retries);
//! 4. CAS PENDING -> LIVE; failure means we were killed: retry.
//!
//! Retries are bounded (`INSERT_ATTEMPTS`): a call that cannot complete an
//! insertion without waiting for another thread is decided by the overflow
//! policy, so no worker ever waits for another.
//!
//! # Reclamation (`sweep`) and why stale slot indices are harmless
//! A slot is reclaimed when its bucket has been full for `idle` (its TAT is
//! `<= now - idle`); a full bucket is indistinguishable from a fresh one, so
//! handing the slot, with its TAT, to a new key is semantically a new bucket.
//! The sweeper, for a LIVE slot with idle TAT `v`:
//! 1. CAS `tat: v -> v|DEAD`. This is the linearisation point: it fails if any
//!    decision was admitted since `v` was read, and after it no decision can
//!    be admitted on the slot (a DEAD TAT is never CAS-ed by a decision);
//! 2. CAS `key: LIVE(t) -> EMPTY`; only the sweeper ever changes a LIVE key;
//! 3. CAS `tat: v|DEAD -> v+1` (Release) to revive the slot as a full bucket.
//!    A claimant of the EMPTY slot performs the same CAS before publishing, so
//!    a sweeper descheduled after step 2 delays nobody.
//!
//! A worker that found `LIVE(t)` at index `i` and is then delayed may run its
//! CAS loop after the slot was reclaimed and reused. It cannot admit against
//! the new owner's bucket: TAT values of a slot only grow (every admission
//! adds at least one tick, revival writes `v+1 > v`), so a CAS expecting a
//! pre-reclaim value fails; and after each TAT load (Acquire) the worker
//! re-checks that `key == LIVE(t)`: a TAT written by revival or by a later
//! owner happens-after step 2, so the re-check sees EMPTY or a later key
//! (it sees `LIVE(t)` again only if `t` was legitimately re-inserted there).
//! A worker seeing DEAD or a changed key looks the key up again.
//!
//! # Reload
//! The policy table (default + per-client quotas) sits behind
//! `RwLock<Arc<Policies>>`, read only on insertion (first sight). Each slot
//! carries its own quota word; `reload` swaps the policies, bumps a
//! generation, then rewrites the quota word of every occupied slot. An
//! inserter that read the old policies re-reads them after publishing if the
//! generation moved (checked with an RMW, so that either the inserter sees
//! the new generation or the reload's walk sees the inserter's slot). Bucket state (TAT) is never touched, so unchanged
//! clients keep their state and changed ones stay drained until the same
//! instant (GCRA state is "full again at"), refilling at the new rate.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, RwLock};

use super::bucket::{acquire_on, duration_ns_to_ticks, ns_to_ticks, Decision, Quota, TokenBucket, DEAD_BIT};
use super::config::{LimitsConfig, LimitsConfigError, Overflow};
use super::sync::{AtomicU64, Ordering};
use crate::time::Nanos;

/// Claim attempts per insertion before the call falls to the overflow
/// policy (tiny under loom so models stay finite).
const INSERT_ATTEMPTS: usize = if cfg!(loom) { 2 } else { 64 };

const EMPTY: u64 = 0;
const KILLED: u64 = 1;
const STATE_MASK: u64 = 0b11;
const STATE_PENDING: u64 = 0b10;
const STATE_LIVE: u64 = 0b11;

/// A client's identity as the table sees it: a well-mixed 64-bit hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(u64);

impl ClientKey {
    /// Use an existing well-mixed 64-bit hash (its low bits choose the home
    /// slot). Prefer [`KeyedLimiter::key_for`], whose hash is keyed per process.
    pub fn from_hash(hash: u64) -> Self {
        Self(hash)
    }

    /// 62-bit tag stored in the slot.
    fn tag(self) -> u64 {
        self.0 >> 2
    }

    fn live_word(self) -> u64 {
        (self.tag() << 2) | STATE_LIVE
    }

    fn pending_word(self) -> u64 {
        (self.tag() << 2) | STATE_PENDING
    }

    fn home(self, mask: usize) -> usize {
        // The tag's low bits are the hash's bits 2.., still uniformly mixed.
        (self.tag() as usize) & mask
    }
}

/// Where the quota of a decision came from (for headers and stats).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaScope {
    /// The client's own `[[limits.client]]` quota.
    Client,
    /// The default quota, in the client's own bucket.
    Default,
    /// The default quota in the bucket shared by all clients without a slot
    /// (or, for [`Decision::NoCapacity`], no bucket at all).
    Overflow,
}

/// A decision plus the quota it was taken under.
#[must_use = "a rate-limit verdict must be acted upon"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub decision: Decision,
    pub quota: Quota,
    pub scope: QuotaScope,
}

/// Counters since start-up (monotonic; read them for the stats line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct LimiterStats {
    /// Slots in the table (fixed).
    pub capacity: u64,
    /// Bytes of slot memory (fixed: `capacity * 32`).
    pub table_bytes: u64,
    /// Keys given a slot.
    pub inserted: u64,
    /// Slots reclaimed by `sweep`.
    pub reclaimed: u64,
    /// Decisions for keys without a slot (probe window full, or an insertion
    /// race not settled within the retry budget), taken on the shared bucket.
    pub overflowed: u64,
    /// Decisions for keys without a slot refused (`Overflow::Refuse`).
    pub refused: u64,
}

/// Result of one [`KeyedLimiter::sweep`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct SweepReport {
    /// LIVE slots seen.
    pub live: u64,
    /// Of those, reclaimed by this sweep.
    pub reclaimed: u64,
}

/// The production sweep: a slice of the table per tick, so a pass over a
/// large table never stalls whoever runs it (a few µs per tick) and a full
/// pass takes at most `ticks_per_pass` ticks. Sans-IO: the caller ticks it at its
/// period with its clock's `now` (the `serve`/`replay` housekeeping thread
/// ticks every 10 ms, 100 ticks per pass: the whole table once a second).
#[derive(Debug, Clone)]
pub struct Sweeper {
    cursor: usize,
    per_tick: usize,
    total: SweepReport,
}

impl Sweeper {
    /// A sweeper that covers `capacity` slots in at most `ticks_per_pass`
    /// ticks (slices of `capacity / ticks_per_pass` rounded up).
    pub fn new(capacity: usize, ticks_per_pass: usize) -> Sweeper {
        Sweeper { cursor: 0, per_tick: capacity.div_ceil(ticks_per_pass.max(1)).max(1), total: SweepReport::default() }
    }

    /// Sweeps the next slice with the limiter's configured idle timeout.
    pub fn tick(&mut self, limiter: &KeyedLimiter, now: Nanos) -> SweepReport {
        let report = limiter.sweep_slice(now, limiter.idle_timeout_ns(), self.cursor, self.per_tick);
        self.cursor = (self.cursor + self.per_tick) % limiter.capacity().max(1);
        self.total.live += report.live;
        self.total.reclaimed += report.reclaimed;
        report
    }

    /// What every tick so far found and reclaimed.
    pub fn total(&self) -> SweepReport {
        self.total
    }
}

/// Result of one [`KeyedLimiter::reload`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReloadReport {
    /// Occupied slots whose quota changed.
    pub slots_updated: u64,
    /// The new config asked for another capacity; the table is sized once at
    /// start-up, so the old capacity stays until restart.
    pub capacity_change_ignored: bool,
}

/// One table slot: half a cache line.
#[repr(align(32))]
#[derive(Debug)]
struct Slot {
    key: AtomicU64,
    tat: AtomicU64,
    quota: AtomicU64,
}

/// The quota policies in force (swapped as a whole by reload).
#[derive(Debug)]
struct Policies {
    default: Quota,
    per_client: HashMap<u64, Quota>,
}

impl Policies {
    fn from_config(cfg: &LimitsConfig, hasher: &RandomState) -> Result<Self, LimitsConfigError> {
        cfg.validate()?;
        let per_client =
            cfg.client_quotas()?.into_iter().map(|(id, quota)| (key_of(hasher, id.as_bytes()).tag(), quota)).collect();
        Ok(Self { default: cfg.default_quota()?, per_client })
    }

    /// The packed quota word for a tag.
    fn quota_word(&self, tag: u64) -> u64 {
        match self.per_client.get(&tag) {
            Some(quota) => quota.pack(true),
            None => self.default.pack(false),
        }
    }
}

fn key_of(hasher: &RandomState, client_id: &[u8]) -> ClientKey {
    ClientKey(hasher.hash_one(client_id))
}

/// Counters on their own cache line, away from the slots.
#[repr(align(64))]
#[derive(Debug)]
struct Counters {
    inserted: AtomicU64,
    reclaimed: AtomicU64,
    overflowed: AtomicU64,
    refused: AtomicU64,
}

/// Per-client token buckets in a bounded lock-free table, shared by all workers.
#[derive(Debug)]
pub struct KeyedLimiter {
    slots: Box<[Slot]>,
    mask: usize,
    probe_limit: usize,
    hasher: RandomState,
    /// 0 = shared, 1 = refuse; reloadable.
    overflow_refuses: AtomicU64,
    overflow_bucket: TokenBucket,
    idle_timeout_ns: AtomicU64,
    policies: RwLock<Arc<Policies>>,
    policy_generation: AtomicU64,
    counters: Counters,
}

enum Insert {
    Slot(usize),
    NoRoom,
}

impl KeyedLimiter {
    /// Allocate the table (the only allocation; none after start-up except
    /// the policy map on reload).
    pub fn new(cfg: &LimitsConfig) -> Result<Self, LimitsConfigError> {
        let hasher = RandomState::new();
        let policies = Policies::from_config(cfg, &hasher)?;
        let slots = (0..cfg.capacity)
            .map(|_| Slot {
                key: AtomicU64::new(EMPTY),
                tat: AtomicU64::new(0),
                quota: AtomicU64::new(policies.default.pack(false)),
            })
            .collect::<Vec<_>>()
            .into_boxed_slice();
        Ok(Self {
            slots,
            mask: cfg.capacity - 1,
            probe_limit: cfg.probe_limit,
            hasher,
            overflow_refuses: AtomicU64::new(u64::from(cfg.overflow == Overflow::Refuse)),
            overflow_bucket: TokenBucket::new(policies.default),
            idle_timeout_ns: AtomicU64::new(cfg.idle_timeout_ns()),
            policies: RwLock::new(Arc::new(policies)),
            policy_generation: AtomicU64::new(0),
            counters: Counters {
                inserted: AtomicU64::new(0),
                reclaimed: AtomicU64::new(0),
                overflowed: AtomicU64::new(0),
                refused: AtomicU64::new(0),
            },
        })
    }

    /// The table key for a client id (SipHash with this limiter's random key).
    pub fn key_for(&self, client_id: &[u8]) -> ClientKey {
        key_of(&self.hasher, client_id)
    }

    /// Try to admit `n` records for `key` at `now` (caller's monotonic
    /// clock). Lock-free and allocation-free; a known key costs one probe,
    /// one quota load and the bucket's CAS.
    pub fn try_acquire(&self, key: ClientKey, n: u64, now: Nanos) -> Verdict {
        let live = key.live_word();
        let home = key.home(self.mask);
        // Fast path: the key's LIVE slot, normally at or near home.
        let mut found = self.find_live(live, home);
        loop {
            let index = match found {
                Some(index) => index,
                None => match self.insert(key, home) {
                    Insert::Slot(index) => index,
                    Insert::NoRoom => return self.overflow(n, now),
                },
            };
            let slot = &self.slots[index];
            let (quota, per_client) = Quota::unpack(slot.quota.load(Ordering::Relaxed));
            let still_owner = || slot.key.load(Ordering::Acquire) == live;
            match acquire_on(&slot.tat, quota, n, now, still_owner) {
                Ok(decision) => {
                    let scope = if per_client { QuotaScope::Client } else { QuotaScope::Default };
                    return Verdict { decision, quota, scope };
                }
                // Reclaimed under us: look again, skipping slots being reclaimed.
                Err(_) => found = self.find_live_not_dead(live, home),
            }
        }
    }

    /// The slot a decision for `key` reads first (its home slot), for a
    /// caller to prefetch when it knows its keys early (a worker, at the top
    /// of an rx burst): opaque, it only has an address.
    #[inline]
    pub fn home_slot(&self, key: ClientKey) -> Option<&(impl Sized + '_)> {
        self.slots.get(key.home(self.mask))
    }

    /// Decide a burst of requests (e.g. one per packet of an rx burst) at one
    /// `now`: `out[i]` is the verdict for `requests[i]` (`out` must be at
    /// least as long). Same semantics as calling [`KeyedLimiter::try_acquire`]
    /// in order; faster for large tables because the home slots of the whole
    /// burst are loaded first, so their cache misses overlap instead of being
    /// paid one after another.
    pub fn try_acquire_burst(&self, requests: &[(ClientKey, u64)], now: Nanos, out: &mut [Verdict]) {
        let mut touched = 0u64;
        for (key, _) in requests {
            let home = key.home(self.mask);
            touched ^= self.slots[home].key.load(Ordering::Relaxed);
        }
        // Keep the warming loads from being optimised away.
        std::hint::black_box(touched);
        for ((key, n), verdict) in requests.iter().zip(out.iter_mut()) {
            *verdict = self.try_acquire(*key, *n, now);
        }
    }

    fn window(&self, home: usize) -> impl Iterator<Item = (usize, &Slot)> + '_ {
        (0..self.probe_limit).map(move |offset| {
            let index = (home + offset) & self.mask;
            (index, &self.slots[index])
        })
    }

    #[inline]
    fn find_live(&self, live: u64, home: usize) -> Option<usize> {
        self.window(home).find(|(_, slot)| slot.key.load(Ordering::Acquire) == live).map(|(index, _)| index)
    }

    fn find_live_not_dead(&self, live: u64, home: usize) -> Option<usize> {
        self.window(home)
            .find(|(_, slot)| {
                slot.key.load(Ordering::Acquire) == live && slot.tat.load(Ordering::Acquire) & DEAD_BIT == 0
            })
            .map(|(index, _)| index)
    }

    /// Claim a slot for `key` (or find the one a concurrent inserter published).
    fn insert(&self, key: ClientKey, home: usize) -> Insert {
        let live = key.live_word();
        let pending = key.pending_word();
        let offset_of = |index: usize| index.wrapping_sub(home) & self.mask;
        // Bounded: a claimant that keeps losing (e.g. another worker is
        // mid-way through inserting the same key and has not yet published)
        // decides this one call by the overflow policy instead of waiting,
        // which keeps insertion lock-free. In practice the competitor
        // publishes within a few hundred ns, well inside the retry budget.
        'retry: for _ in 0..INSERT_ATTEMPTS {
            // 1. Scan: an existing LIVE slot wins; else the first EMPTY one.
            let mut first_empty = None;
            for (index, slot) in self.window(home) {
                let word = slot.key.load(Ordering::Acquire);
                if word == live && slot.tat.load(Ordering::Acquire) & DEAD_BIT == 0 {
                    return Insert::Slot(index);
                }
                if word == EMPTY && first_empty.is_none() {
                    first_empty = Some(index);
                }
            }
            let Some(mine) = first_empty else {
                return Insert::NoRoom;
            };
            // 2. Claim.
            let slot = &self.slots[mine];
            if slot.key.compare_exchange(EMPTY, pending, Ordering::AcqRel, Ordering::Acquire).is_err() {
                continue 'retry;
            }
            // Revive a slot the sweeper left DEAD after emptying it (its key
            // went EMPTY first, so no stale worker can admit on it).
            let tat = slot.tat.load(Ordering::Acquire);
            if tat & DEAD_BIT != 0 {
                let _ = slot.tat.compare_exchange(tat, (tat & !DEAD_BIT) + 1, Ordering::AcqRel, Ordering::Acquire);
            }
            let generation = self.policy_generation.load(Ordering::Acquire);
            slot.quota.store(self.current_policies().quota_word(key.tag()), Ordering::Release);
            // 3. Verify against concurrent claimants of the same key.
            for (index, other) in self.window(home) {
                if index == mine {
                    continue;
                }
                let word = other.key.fetch_or(0, Ordering::AcqRel);
                if word == live && other.tat.load(Ordering::Acquire) & DEAD_BIT == 0 {
                    self.abandon_claim(slot, pending);
                    return Insert::Slot(index);
                }
                if word == pending {
                    if offset_of(index) < offset_of(mine) {
                        self.abandon_claim(slot, pending);
                        continue 'retry;
                    }
                    match other.key.compare_exchange(pending, KILLED, Ordering::AcqRel, Ordering::Acquire) {
                        Ok(_) => {}
                        Err(now) if now == live => {
                            // It published before we could kill it.
                            self.abandon_claim(slot, pending);
                            return Insert::Slot(index);
                        }
                        Err(_) => {}
                    }
                }
            }
            // 4. Publish.
            if slot.key.compare_exchange(pending, live, Ordering::AcqRel, Ordering::Acquire).is_err() {
                // Killed by an earlier claimant: the KILLED slot is ours to clear.
                slot.key.store(EMPTY, Ordering::Release);
                continue 'retry;
            }
            self.counters.inserted.fetch_add(1, Ordering::Relaxed);
            // An RMW, not a load: either it reads the bumped generation (and
            // we re-read the policies), or it precedes the reload's bump in
            // modification order, which then synchronises with it, so the
            // reload's slot walk sees our claim and rewrites our quota.
            // (A plain load could miss the bump while the walk misses the
            // claim: loom found that store-buffering interleaving.)
            if self.policy_generation.fetch_add(0, Ordering::AcqRel) != generation {
                slot.quota.store(self.current_policies().quota_word(key.tag()), Ordering::Release);
            }
            return Insert::Slot(mine);
        }
        Insert::NoRoom
    }

    /// Give up our PENDING claim (or clear it if a competitor KILLED it).
    fn abandon_claim(&self, slot: &Slot, pending: u64) {
        // Either PENDING (ours) or KILLED (ours, marked by a competitor):
        // nobody else writes a claimed slot, so a plain store is exact.
        let word = slot.key.load(Ordering::Acquire);
        debug_assert!(word == pending || word == KILLED);
        slot.key.store(EMPTY, Ordering::Release);
    }

    fn overflow(&self, n: u64, now: Nanos) -> Verdict {
        let quota = self.overflow_bucket.quota();
        if self.overflow_refuses.load(Ordering::Relaxed) != 0 {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            return Verdict { decision: Decision::NoCapacity, quota, scope: QuotaScope::Overflow };
        }
        self.counters.overflowed.fetch_add(1, Ordering::Relaxed);
        Verdict { decision: self.overflow_bucket.try_acquire(n, now), quota, scope: QuotaScope::Overflow }
    }

    fn current_policies(&self) -> Arc<Policies> {
        // A poisoned lock only means a reload panicked mid-swap; the Arc inside
        // is always a complete policy table.
        match self.policies.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Reclaim slots whose bucket has been full for at least `idle_ns` at
    /// `now`. Safe to run concurrently with decisions, inserts and other
    /// sweeps (see the module comment). O(capacity): production sweeps in
    /// slices instead ([`Sweeper`]).
    pub fn sweep(&self, now: Nanos, idle_ns: u64) -> SweepReport {
        self.sweep_slice(now, idle_ns, 0, self.slots.len())
    }

    /// [`sweep`](Self::sweep) over `count` slots from index `from` (taken
    /// modulo the capacity, wrapping round the end; at most one pass).
    pub fn sweep_slice(&self, now: Nanos, idle_ns: u64, from: usize, count: usize) -> SweepReport {
        let now_t = ns_to_ticks(now.as_ns());
        let idle_t = duration_ns_to_ticks(idle_ns);
        let mut report = SweepReport::default();
        let capacity = self.slots.len();
        let from = from % capacity.max(1);
        let count = count.min(capacity);
        let (tail, head) = self.slots.split_at(from);
        for slot in head.iter().chain(tail.iter()).take(count) {
            let word = slot.key.load(Ordering::Acquire);
            if word & STATE_MASK != STATE_LIVE {
                continue;
            }
            report.live += 1;
            let tat = slot.tat.load(Ordering::Acquire);
            if tat & DEAD_BIT != 0 || tat.saturating_add(idle_t) > now_t {
                continue;
            }
            // 1. Linearisation point: fails if anything was admitted since.
            if slot.tat.compare_exchange(tat, tat | DEAD_BIT, Ordering::AcqRel, Ordering::Acquire).is_err() {
                continue;
            }
            // 2. Only the sweeper that won step 1 empties a LIVE key.
            let _ = slot.key.compare_exchange(word, EMPTY, Ordering::AcqRel, Ordering::Acquire);
            // 3. Revive as a full bucket (unless a claimant already did).
            let _ = slot.tat.compare_exchange(tat | DEAD_BIT, tat + 1, Ordering::Release, Ordering::Relaxed);
            report.reclaimed += 1;
        }
        self.counters.reclaimed.fetch_add(report.reclaimed, Ordering::Relaxed);
        report
    }

    /// Apply a new config while workers keep deciding: new default and
    /// per-client quotas, overflow policy and idle timeout. Bucket state is
    /// kept (an unchanged client notices nothing). The capacity cannot change.
    pub fn reload(&self, cfg: &LimitsConfig) -> Result<ReloadReport, LimitsConfigError> {
        let policies = Arc::new(Policies::from_config(cfg, &self.hasher)?);
        self.overflow_refuses.store(u64::from(cfg.overflow == Overflow::Refuse), Ordering::Relaxed);
        self.overflow_bucket.set_quota(policies.default);
        self.idle_timeout_ns.store(cfg.idle_timeout_ns(), Ordering::Relaxed);
        {
            let mut guard = match self.policies.write() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            *guard = Arc::clone(&policies);
        }
        // Bumped after the swap (and outside the lock: no atomic operation
        // runs while the lock is held, which also keeps loom models from
        // blocking on a std lock).
        self.policy_generation.fetch_add(1, Ordering::AcqRel);
        let mut report = ReloadReport { slots_updated: 0, capacity_change_ignored: cfg.capacity != self.slots.len() };
        for slot in self.slots.iter() {
            let word = slot.key.load(Ordering::Acquire);
            if word & STATE_MASK != STATE_LIVE && word & STATE_MASK != STATE_PENDING {
                continue;
            }
            let quota = policies.quota_word(word >> 2);
            if slot.quota.swap(quota, Ordering::AcqRel) != quota {
                report.slots_updated += 1;
            }
        }
        Ok(report)
    }

    /// The configured idle timeout (for the housekeeping loop's `sweep`).
    pub fn idle_timeout_ns(&self) -> u64 {
        self.idle_timeout_ns.load(Ordering::Relaxed)
    }

    /// Slots in the table.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Bytes of slot memory, fixed at start-up.
    pub fn table_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.slots)
    }

    /// Counters since start-up.
    pub fn stats(&self) -> LimiterStats {
        LimiterStats {
            capacity: self.slots.len() as u64,
            table_bytes: self.table_bytes() as u64,
            inserted: self.counters.inserted.load(Ordering::Relaxed),
            reclaimed: self.counters.reclaimed.load(Ordering::Relaxed),
            overflowed: self.counters.overflowed.load(Ordering::Relaxed),
            refused: self.counters.refused.load(Ordering::Relaxed),
        }
    }

    /// Number of LIVE slots (O(capacity); for tests and the stats line).
    pub fn live_slots(&self) -> usize {
        self.slots.iter().filter(|slot| slot.key.load(Ordering::Relaxed) & STATE_MASK == STATE_LIVE).count()
    }
}
