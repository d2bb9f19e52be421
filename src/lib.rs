//! metricsstream: a kernel-bypass metrics-ingestion appliance.
//!
//! DPDK poll-mode workers pull bursts of frames from NIC queues, classify
//! them, run a userspace TCP/IP stack with an HTTP/1.1 server on top, parse
//! metric batches, apply per-client lock-free token-bucket limits, and hand
//! accepted records to a writer core that persists them durably.
//!
//! Module map (one module owns one thing):
//! - [`dpdk`]: the only safe wrappers over `dpdk-sys` (EAL, ports, mempools,
//!   mbufs, lcores). With the fenced SIMD kernel `ingest::structural::x86`,
//!   the only code allowed to use `unsafe`.
//! - [`net`]: checked, zero-copy frame classification, ARP/ICMP, the TCP flow
//!   table and the sharded sans-IO TCP stack over small smoltcp cells.
//! - [`http`]: the sans-IO HTTP/1.1 server connection, responses, routing,
//!   credential parsing and the `[http]` configuration.
//! - [`limit`]: lock-free CAS token buckets, the bounded keyed table and the
//!   client id of a peer known by its address.
//! - [`ingest`]: the record model and the sans-IO metric parsers (the one-pass
//!   line indexer over the SIMD structural classifier, JSON, StatsD; the
//!   previous line-protocol parser is kept as the benchmarks' baseline).
//! - [`writer`]: batches, hand-off channels, the segment log, recovery, sinks.
//! - [`stats`]: per-worker counters, aggregation, stats line and JSON report.
//! - [`time`]: [`time::Nanos`], the one instant type of the sans-IO code
//!   (smoltcp's `Instant` stays inside `net`), and the process clock.
//! - [`pipeline`]: the sans-IO ingestion pipeline of a serve worker: the HTTP
//!   application (route, auth, parse, limit, write, durable acks), the UDP
//!   ingestion stage, the serve counters, and the one serve step
//!   ([`pipeline::ServeCore::step`]) that the worker and the in-memory tests run.
//! - [`config`]: TOML profiles and appliance configuration.
//! - [`pcap`]: pcap file reading/writing and the synthetic traffic generator.
//! - [`loadgen`]: the DPDK HTTP load generator (closed loop over the client TCP stack, HDR latencies).
//! - [`worker`]: the DPDK poll-mode loops (replay/rx classify, UDP ingest, serve:
//!   RX/TX bursts around the serve step).
#![deny(unsafe_code)]

pub mod config;
pub mod dpdk;
pub mod http;
pub mod ingest;
pub mod limit;
pub mod loadgen;
pub mod net;
pub mod pcap;
pub mod pipeline;
pub mod stats;
pub mod time;
pub mod worker;
pub mod writer;
