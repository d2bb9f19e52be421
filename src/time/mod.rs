//! Time, owned in one place: the one instant type of the sans-IO code and the
//! process clock that produces it.
//!
//! - [`Nanos`]: a monotonic instant in nanoseconds since the process clock's
//!   epoch. Every sans-IO component (TCP/IP stack, HTTP connections, the
//!   pipeline, the limiter) takes `now: Nanos` from its caller and never reads
//!   a clock; tests pass a virtual one. Spans stay plain `u64` nanoseconds
//!   named `*_ns`. smoltcp's microsecond `Instant` exists only inside `net/`.
//! - [`MonotonicClock`]: the only reader of the system clock, read once per
//!   burst by the worker loops.
//!
//! Record timestamps are data, not clock readings: `i64` Unix nanoseconds as
//! line protocol defines them; [`Nanos::to_unix_ns`] turns an instant into
//! one for records that arrive without a timestamp.

pub mod clock;

pub use clock::MonotonicClock;

/// A monotonic instant: nanoseconds since the process clock's epoch. Ordered,
/// cheap to copy; arithmetic saturates, so time never appears to run
/// backwards or wrap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Nanos(u64);

impl Nanos {
    /// The clock's epoch.
    pub const ZERO: Nanos = Nanos(0);
    /// Later than any instant a run reaches (584 years).
    pub const MAX: Nanos = Nanos(u64::MAX);

    pub const fn from_ns(ns: u64) -> Nanos {
        Nanos(ns)
    }

    pub const fn from_micros(us: u64) -> Nanos {
        Nanos(us.saturating_mul(1_000))
    }

    pub const fn from_millis(ms: u64) -> Nanos {
        Nanos(ms.saturating_mul(1_000_000))
    }

    pub const fn from_secs(s: u64) -> Nanos {
        Nanos(s.saturating_mul(1_000_000_000))
    }

    /// Nanoseconds since the epoch.
    pub const fn as_ns(self) -> u64 {
        self.0
    }

    /// Whole microseconds since the epoch (smoltcp's resolution).
    pub const fn as_micros(self) -> u64 {
        self.0 / 1_000
    }

    /// This instant `span_ns` later (saturating).
    #[must_use]
    pub const fn plus_ns(self, span_ns: u64) -> Nanos {
        Nanos(self.0.saturating_add(span_ns))
    }

    /// The wall time (Unix ns, a record timestamp) at this instant, for a
    /// clock whose epoch was `unix_at_epoch_ns`.
    pub fn to_unix_ns(self, unix_at_epoch_ns: u64) -> i64 {
        i64::try_from(unix_at_epoch_ns.saturating_add(self.0)).unwrap_or(i64::MAX)
    }

    /// Nanoseconds from `earlier` to `self`; 0 if `earlier` is not earlier.
    pub const fn ns_since(self, earlier: Nanos) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// `now + Duration`: as for `std::time::Instant` (saturating).
impl std::ops::Add<std::time::Duration> for Nanos {
    type Output = Nanos;
    fn add(self, span: std::time::Duration) -> Nanos {
        self.plus_ns(u64::try_from(span.as_nanos()).unwrap_or(u64::MAX))
    }
}

impl std::ops::AddAssign<std::time::Duration> for Nanos {
    fn add_assign(&mut self, span: std::time::Duration) {
        *self = *self + span;
    }
}

impl std::fmt::Display for Nanos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:09}s", self.0 / 1_000_000_000, self.0 % 1_000_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_and_saturating_arithmetic() {
        assert_eq!(Nanos::from_millis(3).as_ns(), 3_000_000);
        assert_eq!(Nanos::from_micros(7).as_micros(), 7);
        assert_eq!(Nanos::from_secs(2), Nanos::from_ns(2_000_000_000));
        assert_eq!(Nanos::MAX.plus_ns(1), Nanos::MAX);
        assert_eq!(Nanos::from_ns(5).ns_since(Nanos::from_ns(9)), 0);
        assert_eq!(Nanos::from_ns(9).ns_since(Nanos::from_ns(5)), 4);
        assert!(Nanos::ZERO < Nanos::from_ns(1));
        assert_eq!(Nanos::from_ns(1_500_000_000).to_string(), "1.500000000s");
        let mut t = Nanos::from_millis(1) + std::time::Duration::from_micros(5);
        t += std::time::Duration::from_nanos(7);
        assert_eq!(t, Nanos::from_ns(1_005_007));
    }
}
