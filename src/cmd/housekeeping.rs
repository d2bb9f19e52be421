//! The limiter's housekeeping thread: it ticks a [`Sweeper`] every
//! [`SWEEP_TICK`] so that idle clients (spoofed UDP sources, made-up
//! `X-Client-Id`s) give their slots back after `limits.idle_timeout_s`,
//! a slice of the table per tick (the whole table about once a second).
//! A plain thread, not an lcore: it sleeps between ticks and a tick touches
//! 1/100 of the table (10 µs for the default 65,536 slots).

use metricsstream::limit::{KeyedLimiter, SweepReport, Sweeper};
use metricsstream::time::MonotonicClock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the sweeper ticks.
pub const SWEEP_TICK: Duration = Duration::from_millis(10);
/// Ticks per pass over the whole table (1 s at [`SWEEP_TICK`]).
pub const TICKS_PER_PASS: usize = 100;

/// The running sweeper; stopped (and joined) by [`LimiterSweeper::stop`] or on drop.
pub struct LimiterSweeper {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<SweepReport>>,
}

impl LimiterSweeper {
    pub fn spawn(limiter: Arc<KeyedLimiter>, clock: MonotonicClock) -> std::io::Result<LimiterSweeper> {
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = stop.clone();
        let thread = std::thread::Builder::new().name("limiter-sweep".into()).spawn(move || {
            let mut sweeper = Sweeper::new(limiter.capacity(), TICKS_PER_PASS);
            while !stop_flag.load(Ordering::Relaxed) {
                sweeper.tick(&limiter, clock.now());
                std::thread::sleep(SWEEP_TICK);
            }
            sweeper.total()
        })?;
        Ok(LimiterSweeper { stop, thread: Some(thread) })
    }

    /// Stops the thread; returns what all its ticks found and reclaimed.
    pub fn stop(mut self) -> SweepReport {
        self.join()
    }

    fn join(&mut self) -> SweepReport {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().and_then(|t| t.join().ok()).unwrap_or_default()
    }
}

impl Drop for LimiterSweeper {
    fn drop(&mut self) {
        self.join();
    }
}
