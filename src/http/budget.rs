//! The global body-memory budget (`[http] body_memory_budget_bytes`): all
//! workers' connections together hold at most this many bytes of request
//! bodies. A connection reserves a body's bytes when its head arrives
//! (`Content-Length`), per chunk as a chunked body grows, and per inflate
//! step for gzip; it releases them when the request is answered, fails or the
//! connection closes. A request that does not fit is answered `503` with
//! `Retry-After` and the connection closes: 10,000 clients uploading at once
//! cannot take more memory than the budget.
//!
//! Lock-free: one atomic counter shared by every worker; a reservation is a
//! CAS loop, a release a `fetch_sub`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

#[derive(Debug)]
pub struct BodyBudget {
    limit: usize,
    reserved: AtomicUsize,
    refused: AtomicU64,
}

impl BodyBudget {
    pub fn new(limit: usize) -> BodyBudget {
        BodyBudget { limit, reserved: AtomicUsize::new(0), refused: AtomicU64::new(0) }
    }

    /// Reserves `n` bytes if they fit; counts a refusal otherwise.
    #[must_use = "a failed reservation must refuse the request"]
    pub fn try_reserve(&self, n: usize) -> bool {
        let fits = self
            .reserved
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |r| r.checked_add(n).filter(|&t| t <= self.limit))
            .is_ok();
        if !fits {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        fits
    }

    /// Gives back `n` reserved bytes.
    pub fn release(&self, n: usize) {
        let before = self.reserved.fetch_sub(n, Ordering::AcqRel);
        debug_assert!(before >= n, "released more body memory than reserved");
    }

    /// Bytes reserved right now (all workers).
    pub fn reserved(&self) -> usize {
        self.reserved.load(Ordering::Relaxed)
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Reservations refused so far (all workers).
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserves_up_to_the_limit_and_releases() {
        let b = BodyBudget::new(100);
        assert!(b.try_reserve(60));
        assert!(b.try_reserve(40));
        assert!(!b.try_reserve(1));
        assert!(!b.try_reserve(usize::MAX), "no overflow");
        assert_eq!((b.reserved(), b.refused()), (100, 2));
        b.release(40);
        assert!(b.try_reserve(30));
        b.release(90);
        assert_eq!(b.reserved(), 0);
    }

    #[test]
    fn concurrent_reservations_never_exceed_the_limit() {
        let b = std::sync::Arc::new(BodyBudget::new(1000));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        if b.try_reserve(7) {
                            assert!(b.reserved() <= 1000);
                            b.release(7);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(b.reserved(), 0);
    }
}
