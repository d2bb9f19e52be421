//! The ingestion pipeline of a `serve` worker, sans-IO: what happens to
//! frames between the NIC queue and the writer, as one step that the DPDK
//! worker (`worker::run_serve`, so `serve` and `bench`) and the
//! deterministic in-memory network tests all run.
//!
//! - [`serve`]: [`ServeCore`] and its [`step`](ServeCore::step): frames to
//!   the TCP/IP stack and the UDP stage, the app's wake-ups to the stack,
//!   timeouts, stack poll, group commit, UDP flush, stop/drain, exit flush.
//! - [`http_app`]: [`HttpApp`], the HTTP application on the TCP stack
//!   (route, auth, validate, limit, batch; held responses and group commit).
//! - [`udp`]: [`UdpIngest`], the UDP ingestion stage (line protocol and
//!   StatsD: parse, limit, batch).
//! - [`counters`]: [`ServeCounters`] and [`SocketLevels`], what a worker publishes.
//! - [`timing`]: the loops' periods as named constants, [`Every`] and
//!   [`Drain`] (shared with the loadgen loop).
//!
//! No DPDK, no clock: every call takes `now` (u64 ns of the worker's
//! monotonic clock, or a test's virtual clock).

pub mod counters;
pub mod http_app;
pub mod serve;
pub mod timing;
pub mod udp;

pub use counters::{ServeCounters, SocketLevels};
pub use http_app::{AppShared, HttpApp, HttpCounters, MetricsRenderer, Wakeups};
pub use serve::{ServeCore, StepOutcome};
pub use timing::{Drain, Every};
pub use udp::{UdpConfig, UdpCounters, UdpIngest};
