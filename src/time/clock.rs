//! The process clock: the monotonic time every worker loop feeds into the
//! sans-IO code as [`Nanos`].
//!
//! One choice: `CLOCK_MONOTONIC` through [`std::time::Instant`], expressed as
//! nanoseconds since a process-local epoch. Not raw TSC (`rdtsc`, what
//! `quanta` uses by default in `governor`): the TSC is only trustworthy when
//! it is invariant *and* synchronised across sockets/cores; a worker that
//! migrates, a VM that is live-migrated, or firmware that resets one core's
//! counter sees time jump (forwards: a whole burst is handed out; backwards:
//! clients are limited for the jump's length). The kernel's monotonic clock
//! already corrects for that, never goes backwards, and costs ~20 ns through
//! the vDSO, once per burst of 32 packets, which is negligible. Workers read
//! it once per rx burst and pass the same `now` to every decision.

use super::Nanos;
use std::time::Instant;

/// Monotonic nanoseconds since the clock was created (process start when the
/// appliance creates one at boot). Cheap to copy; share one per process so all
/// workers agree on the epoch.
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    epoch: Instant,
    /// Unix time (ns) at the epoch: records without a timestamp are stamped
    /// with wall time derived from the monotonic clock (no NTP steps mid-run).
    unix_at_epoch_ns: u64,
}

impl MonotonicClock {
    /// A clock whose epoch (`now() == Nanos::ZERO`) is this instant.
    pub fn new() -> Self {
        let unix_at_epoch_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        Self { epoch: Instant::now(), unix_at_epoch_ns }
    }

    /// Unix time in ns at the epoch.
    pub fn unix_at_epoch_ns(&self) -> u64 {
        self.unix_at_epoch_ns
    }

    /// Now. Saturates (after 584 years) instead of wrapping, so time never
    /// appears to run backwards.
    pub fn now(&self) -> Nanos {
        Nanos::from_ns(u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_is_monotonic_and_starts_near_zero() {
        let clock = MonotonicClock::new();
        let a = clock.now();
        let b = clock.now();
        assert!(a <= b);
        assert!(a < Nanos::from_secs(1), "epoch is creation time");
    }
}
