//! Atomics used by the limiter: `std` in normal builds, `loom` under
//! `--cfg loom` so the model tests explore every interleaving of the CAS
//! protocols. Nothing else in `limit` names an atomic type directly.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering};
