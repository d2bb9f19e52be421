//! One typed error for everything DPDK returns: negative return codes and
//! `rte_errno` are turned into [`DpdkError`] with DPDK's own message.

use std::ffi::CStr;

#[derive(Debug, thiserror::Error)]
pub enum DpdkError {
    #[error("{call} failed: {message} (error {code})")]
    Call { call: &'static str, code: i32, message: String },
    #[error("{0}")]
    Invalid(String),
}

fn strerror(code: i32) -> String {
    // SAFETY: rte_strerror accepts any value and returns a pointer to a
    // NUL-terminated string in static or thread-local storage.
    unsafe { CStr::from_ptr(dpdk_sys::rte_strerror(code)) }.to_string_lossy().into_owned()
}

impl DpdkError {
    /// The error a call reported through `rte_errno`.
    pub(crate) fn from_errno(call: &'static str) -> Self {
        // SAFETY: reading the per-lcore rte_errno has no preconditions.
        let code = unsafe { dpdk_sys::ms_errno() };
        DpdkError::Call { call, code, message: strerror(code) }
    }

    /// The error of a call that returns `-errno` on failure.
    pub(crate) fn from_rc(call: &'static str, rc: i32) -> Self {
        let code = rc.saturating_abs();
        DpdkError::Call { call, code, message: strerror(code) }
    }
}

/// Turns a DPDK `int` return code into a `Result` (negative is an error).
pub(crate) fn check(call: &'static str, rc: i32) -> Result<i32, DpdkError> {
    if rc < 0 {
        Err(DpdkError::from_rc(call, rc))
    } else {
        Ok(rc)
    }
}
