//! Per-client rate limits: lock-free CAS token buckets in a bounded keyed
//! table shared by all workers.
//!
//! This module owns the admission decision for "may client C ingest n more
//! records now?", and nothing else: it never reads a clock (every call takes
//! `now` as a [`Nanos`](crate::time::Nanos) from the process clock or a test's virtual clock),
//! never allocates after start-up, never takes a lock on the decision path.
//!
//! - [`bucket`]: [`TokenBucket`] — exact GCRA in one `AtomicU64`, [`Decision`].
//! - [`table`]: [`KeyedLimiter`] — fixed-capacity open-addressing table of
//!   buckets, overflow policy, idle sweep, reload (the concurrency argument
//!   lives in its module comment).
//! - [`config`]: [`LimitsConfig`] — the `[limits]` table, defaults, validation.
//! - [`headers`]: [`RateLimitHeaders`] — `RateLimit*`, `X-RateLimit-*`, `Retry-After`.
//! - [`address`]: [`address_id`] — the client id of a peer known by its IPv4
//!   address (dotted quad), for HTTP and UDP alike.
//!
//! Worker usage:
//! ```
//! use metricsstream::limit::{KeyedLimiter, LimitsConfig, RateLimitHeaders};
//! use metricsstream::time::MonotonicClock;
//! let limiter = KeyedLimiter::new(&LimitsConfig::default()).expect("valid config");
//! let clock = MonotonicClock::new();
//! let key = limiter.key_for(b"svc-a"); // once per connection / auth token
//! let verdict = limiter.try_acquire(key, 500, clock.now());
//! if !verdict.decision.is_allowed() {
//!     let mut response = Vec::new();
//!     RateLimitHeaders::from_verdict(&verdict).write_to(&mut response).expect("vec");
//! }
//! ```
//!
//! A worker deciding a whole rx burst should use
//! [`KeyedLimiter::try_acquire_burst`] (same semantics, overlapped cache misses).
//!
//! Reload: on SIGHUP the `serve` command re-reads the config file and calls
//! [`KeyedLimiter::reload`] (safe while workers decide). Idle slots are
//! reclaimed by a [`Sweeper`] that a housekeeping thread ticks (a slice of the
//! table per tick, the whole table about once per second), so spoofed sources
//! or made-up client ids hold their slots only for `idle_timeout_s`.

pub mod address;
pub mod bucket;
pub mod config;
pub mod headers;
mod sync;
pub mod table;

#[cfg(all(test, loom))]
mod loom_tests;

pub use address::{address_id, ADDRESS_ID_BYTES};
pub use bucket::{Decision, Quota, QuotaError, TokenBucket};
pub use config::{ClientLimit, HeaderTrust, LimitsConfig, LimitsConfigError, Overflow};
pub use headers::RateLimitHeaders;
pub use table::{ClientKey, KeyedLimiter, LimiterStats, QuotaScope, ReloadReport, SweepReport, Sweeper, Verdict};
