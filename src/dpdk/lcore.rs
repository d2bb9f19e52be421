//! Launching worker closures on EAL lcores, with panics caught at the C boundary.

use super::eal::Eal;
use super::error::DpdkError;
use std::os::raw::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

type Job = Box<dyn FnOnce() -> i32 + Send + 'static>;

/// Return code of an lcore whose closure panicked.
const PANICKED: c_int = i32::MIN;

extern "C" fn run_job(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the Box<Job> leaked by `LcoreJob::launch`, handed to
    // exactly one lcore, so it is reclaimed exactly once here.
    let job: Box<Job> = unsafe { Box::from_raw(arg as *mut Job) };
    // A panic must not unwind into C: catch it and report it as a code.
    catch_unwind(AssertUnwindSafe(job)).unwrap_or(PANICKED)
}

/// A closure running on a worker lcore; `join` (or drop) waits for it.
pub struct LcoreJob {
    lcore: u32,
    joined: bool,
    _eal: Eal,
}

impl LcoreJob {
    /// Runs `job` on `lcore`, which must be an idle worker lcore.
    pub fn launch<F: FnOnce() -> i32 + Send + 'static>(eal: &Eal, lcore: u32, job: F) -> Result<LcoreJob, DpdkError> {
        let boxed: Box<Job> = Box::new(Box::new(job));
        let arg = Box::into_raw(boxed) as *mut c_void;
        // SAFETY: run_job matches lcore_function_t; arg is a valid leaked Box
        // that run_job takes back. On failure the lcore never saw it.
        let rc = unsafe { dpdk_sys::rte_eal_remote_launch(Some(run_job), arg, lcore) };
        if rc != 0 {
            // SAFETY: the launch failed, so the pointer is still ours alone.
            drop(unsafe { Box::from_raw(arg as *mut Job) });
            return Err(DpdkError::from_rc("rte_eal_remote_launch", rc));
        }
        Ok(LcoreJob { lcore, joined: false, _eal: eal.clone() })
    }

    pub fn lcore(&self) -> u32 {
        self.lcore
    }

    /// Waits for the closure to return; `Err` if it panicked.
    pub fn join(mut self) -> Result<i32, DpdkError> {
        self.joined = true;
        // SAFETY: this lcore was launched by us and is waited on once.
        let rc = unsafe { dpdk_sys::rte_eal_wait_lcore(self.lcore) };
        if rc == PANICKED {
            Err(DpdkError::Invalid(format!("worker on lcore {} panicked", self.lcore)))
        } else {
            Ok(rc)
        }
    }
}

impl Drop for LcoreJob {
    fn drop(&mut self) {
        if !self.joined {
            // SAFETY: as in join; never leave an lcore running past its handle.
            unsafe { dpdk_sys::rte_eal_wait_lcore(self.lcore) };
        }
    }
}

/// The lcore id of the calling thread (`u32::MAX` on a non-EAL thread).
pub fn current_lcore() -> u32 {
    // SAFETY: reads a per-thread variable.
    unsafe { dpdk_sys::ms_lcore_id() }
}
