//! The timing of the poll-mode loops, in one place: the periods of the
//! serve step's scans and of the workers' publications, the exit flush, and
//! the two helpers the serve step and the loadgen loop share: [`Every`] (a
//! period) and [`Drain`] (stop, then a bounded time to finish).
//!
//! Instants are [`Nanos`] of the worker's monotonic clock (or a test's
//! virtual clock), periods `u64` nanoseconds; nothing here reads a clock.

use crate::time::Nanos;

/// HTTP header/idle timeouts are checked at this period (they are seconds-scale).
pub const TIMEOUT_SCAN_NS: u64 = 100_000_000;
/// Counters are handed to the main lcore at this period (serve, loadgen, UDP rx).
pub const PUBLISH_NS: u64 = 50_000_000;
/// At exit, how long the open batch may wait for room in the writer's channel.
pub const EXIT_FLUSH_NS: u64 = 5_000_000_000;
/// At exit, the pause between two tries of the open batch.
pub const EXIT_FLUSH_RETRY_NS: u64 = 1_000_000;
/// While draining, whether every connection is finished is checked this
/// often (a scan of all slots).
pub const DRAIN_CHECK_NS: u64 = 1_000_000;
/// loadgen: connection aborts and request timeouts are checked at this period.
pub const ABORT_SCAN_NS: u64 = 10_000_000;

/// Something done at most once per period: due at the first call at or
/// after `period_ns` (from time 0), then `period_ns` after the last time it
/// was due.
#[derive(Clone, Copy, Debug)]
pub struct Every {
    period_ns: u64,
    last: Nanos,
}

impl Every {
    pub const fn new(period_ns: u64) -> Every {
        Every { period_ns, last: Nanos::ZERO }
    }

    /// Whether the period has passed at `now` (then it starts again).
    pub fn due(&mut self, now: Nanos) -> bool {
        if now.ns_since(self.last) >= self.period_ns {
            self.last = now;
            true
        } else {
            false
        }
    }
}

/// A graceful stop: once asked, the loop stops taking new work and has
/// `drain_ns` to finish the work in progress.
#[derive(Clone, Copy, Debug)]
pub struct Drain {
    drain_ns: u64,
    deadline: Option<Nanos>,
}

impl Drain {
    pub const fn new(drain_ns: u64) -> Drain {
        Drain { drain_ns, deadline: None }
    }

    /// True exactly once: at the first call with `stop` set (the drain
    /// starts at `now`); the caller then stops taking new work.
    pub fn begins(&mut self, now: Nanos, stop: bool) -> bool {
        if self.deadline.is_some() || !stop {
            return false;
        }
        self.deadline = Some(now.plus_ns(self.drain_ns));
        true
    }

    /// Whether the drain has begun.
    pub fn draining(&self) -> bool {
        self.deadline.is_some()
    }

    /// Whether the drain has begun and its time is up.
    pub fn out_of_time(&self, now: Nanos) -> bool {
        self.deadline.is_some_and(|d| now >= d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_is_due_once_per_period() {
        let mut e = Every::new(100);
        assert!(!e.due(Nanos::ZERO));
        assert!(!e.due(Nanos::from_ns(99)));
        assert!(e.due(Nanos::from_ns(100)));
        assert!(!e.due(Nanos::from_ns(150)));
        assert!(!e.due(Nanos::from_ns(199)));
        assert!(e.due(Nanos::from_ns(230)));
        // The next period counts from when it was last due, not on a grid.
        assert!(!e.due(Nanos::from_ns(329)));
        assert!(e.due(Nanos::from_ns(330)));
        // A clock that goes back is never due early.
        assert!(!e.due(Nanos::from_ns(10)));
    }

    #[test]
    fn drain_begins_once_and_runs_out_at_its_deadline() {
        let mut d = Drain::new(1_000);
        assert!(!d.begins(Nanos::from_ns(5), false));
        assert!(!d.draining() && !d.out_of_time(Nanos::MAX));
        assert!(d.begins(Nanos::from_ns(10), true));
        assert!(!d.begins(Nanos::from_ns(20), true), "only once");
        assert!(d.draining());
        assert!(!d.out_of_time(Nanos::from_ns(1_009)));
        assert!(d.out_of_time(Nanos::from_ns(1_010)));
        let mut zero = Drain::new(0);
        assert!(zero.begins(Nanos::from_ns(7), true));
        assert!(zero.out_of_time(Nanos::from_ns(7)));
    }
}
