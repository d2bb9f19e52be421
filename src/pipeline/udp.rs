//! UDP ingestion: the stateless fast path. Datagrams to the line-protocol
//! port are validated and indexed as InfluxDB line protocol in one pass and
//! their lines copied as received into the worker's current writer batch;
//! datagrams to the StatsD port are parsed as StatsD/DogStatsD and written
//! into it as line-protocol text. Each datagram's records are then charged to
//! its source address in the shared limiter and rolled back out of the batch
//! if refused.
//!
//! UDP cannot push back, so every record that is not written is counted,
//! once, by reason: invalid lines, limited, or writer full. Sans-IO: no DPDK,
//! no clock; the caller passes `now`.

use crate::ingest::line_index::LineIndexer;
use crate::ingest::line_protocol::Precision;
use crate::ingest::record::Discard;
use crate::ingest::statsd::StatsdParser;
use crate::limit::{address_id, ClientKey, KeyedLimiter, ADDRESS_ID_BYTES};
use crate::time::Nanos;
use crate::writer::{AckMode, Batch, TenantIndex, WriterHandle};
use serde::{Deserialize, Serialize};
use smoltcp::wire::Ipv4Address;
use std::sync::Arc;

/// The `[udp]` table.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct UdpConfig {
    /// InfluxDB line protocol over UDP (0: off).
    pub line_port: u16,
    /// StatsD/DogStatsD (0: off).
    pub statsd_port: u16,
    /// Longest a partly filled batch waits before it goes to the writer.
    pub flush_interval_us: u64,
}

impl Default for UdpConfig {
    fn default() -> Self {
        UdpConfig { line_port: 8089, statsd_port: 8125, flush_interval_us: 1_000 }
    }
}

/// Per-worker UDP counters. They balance: the three `datagrams_*` add up to
/// the UDP datagrams received, and `records_parsed` is the sum of
/// `records_accepted`, `records_limited` and `records_dropped_writer_full`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UdpCounters {
    pub datagrams_line: u64,
    pub datagrams_statsd: u64,
    pub datagrams_other_port: u64,
    /// Valid records found in datagrams.
    pub records_parsed: u64,
    /// Handed to the writer.
    pub records_accepted: u64,
    /// Refused by the client's rate limit (or no limiter capacity).
    pub records_limited: u64,
    /// Invalid lines / metrics (not records: they never parsed).
    pub records_invalid: u64,
    /// Dropped because the writer had no free batch (backpressure).
    pub records_dropped_writer_full: u64,
    /// Batches handed to the writer.
    pub batches_submitted: u64,
}

impl UdpCounters {
    pub fn add(&mut self, o: &UdpCounters) {
        self.datagrams_line += o.datagrams_line;
        self.datagrams_statsd += o.datagrams_statsd;
        self.datagrams_other_port += o.datagrams_other_port;
        self.records_parsed += o.records_parsed;
        self.records_accepted += o.records_accepted;
        self.records_limited += o.records_limited;
        self.records_invalid += o.records_invalid;
        self.records_dropped_writer_full += o.records_dropped_writer_full;
        self.batches_submitted += o.batches_submitted;
    }

    pub fn datagrams(&self) -> u64 {
        self.datagrams_line + self.datagrams_statsd + self.datagrams_other_port
    }

    pub fn balances(&self) -> bool {
        self.records_parsed == self.records_accepted + self.records_limited + self.records_dropped_writer_full
    }
}

/// Remembers the limiter key of recent source addresses, so a datagram from
/// a known source costs one array probe instead of formatting its dotted
/// quad and SipHashing it. Direct-mapped, fixed size (allocated once per
/// worker); a colliding address simply replaces the entry. The key of an
/// address never changes for one limiter, so a hit is exactly
/// `limiter.key_for(address_id(src))`.
struct SourceKeyCache {
    entries: Box<[Option<(Ipv4Address, ClientKey)>]>,
}

impl SourceKeyCache {
    /// Entries (a power of two): room for the sources of a busy collector fleet.
    const ENTRIES: usize = 4096;

    fn new() -> SourceKeyCache {
        SourceKeyCache { entries: vec![None; Self::ENTRIES].into_boxed_slice() }
    }

    /// Fibonacci hashing of the address picks the entry (not an attacker-facing
    /// table: a collision costs one SipHash, nothing else).
    fn index(src: Ipv4Address) -> usize {
        let bits = u32::from_be_bytes(src.octets());
        (bits.wrapping_mul(0x9E37_79B9) >> (32 - Self::ENTRIES.trailing_zeros())) as usize
    }

    fn key(&mut self, limiter: &KeyedLimiter, src: Ipv4Address) -> ClientKey {
        let Some(entry) = self.entries.get_mut(Self::index(src)) else {
            let mut id = [0u8; ADDRESS_ID_BYTES];
            return limiter.key_for(address_id(src, &mut id));
        };
        match *entry {
            Some((cached, key)) if cached == src => key,
            _ => {
                let mut id = [0u8; ADDRESS_ID_BYTES];
                let key = limiter.key_for(address_id(src, &mut id));
                *entry = Some((src, key));
                key
            }
        }
    }
}

/// What a datagram is, by destination port.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Line,
    Statsd,
}

/// One worker's UDP ingestion state.
pub struct UdpIngest {
    config: UdpConfig,
    indexer: LineIndexer,
    statsd: StatsdParser,
    limiter: Arc<KeyedLimiter>,
    source_keys: SourceKeyCache,
    writer: WriterHandle,
    batch: Option<Batch>,
    /// When the current batch got its first record.
    batch_started: Nanos,
    counters: UdpCounters,
    /// Added to the monotonic `now` to stamp records that carry no timestamp.
    unix_offset_ns: u64,
}

/// Client id recorded on UDP batches: datagrams of many sources share a
/// batch; the limiter, not the log, keys on the source address.
const UDP_CLIENT: &str = "udp";

impl UdpIngest {
    pub fn new(config: UdpConfig, limiter: Arc<KeyedLimiter>, writer: WriterHandle) -> UdpIngest {
        // Nobody waits for a datagram's durability: its batches must not start
        // a sync of their own (the writer's `sync_interval_ms` bounds their loss).
        let writer = writer.with_ack(AckMode::Enqueued);
        UdpIngest {
            config,
            indexer: LineIndexer::new(),
            statsd: StatsdParser::new(),
            limiter,
            source_keys: SourceKeyCache::new(),
            writer,
            batch: None,
            batch_started: Nanos::ZERO,
            counters: UdpCounters::default(),
            unix_offset_ns: 0,
        }
    }

    /// Records without a timestamp get the wall time at `now` for a clock
    /// whose epoch was `unix_offset_ns` (the clock's
    /// [`unix_at_epoch_ns`](crate::time::MonotonicClock::unix_at_epoch_ns)).
    pub fn with_unix_offset(mut self, unix_offset_ns: u64) -> UdpIngest {
        self.unix_offset_ns = unix_offset_ns;
        self
    }

    /// The source-key cache entry [`on_datagram`](Self::on_datagram) will
    /// read for `src`, for the caller to prefetch (step 1 of 2 at the top of
    /// an rx burst; the module itself stays free of DPDK and intrinsics).
    pub fn source_entry(&self, src: Ipv4Address) -> Option<&(impl Sized + '_)> {
        self.source_keys.entries.get(SourceKeyCache::index(src))
    }

    /// The limiter slot a decision for `src` reads first, for the caller to
    /// prefetch (step 2: reads the entry of step 1, hashing `src` on a miss).
    /// Both slots are usually evicted between bursts by the packet data
    /// streaming through the cache; prefetching a burst's worth overlaps those
    /// misses instead of stalling one decision each.
    pub fn limiter_slot(&mut self, src: Ipv4Address) -> Option<&(impl Sized + '_)> {
        let key = self.source_keys.key(&self.limiter, src);
        self.limiter.home_slot(key)
    }

    pub fn counters(&self) -> &UdpCounters {
        &self.counters
    }

    /// Ingests one datagram; returns false when its port is not one of ours
    /// (counted as `datagrams_other_port`).
    pub fn on_datagram(&mut self, src: Ipv4Address, dst_port: u16, payload: &[u8], now: Nanos) -> bool {
        let protocol = match dst_port {
            p if p != 0 && p == self.config.line_port => Protocol::Line,
            p if p != 0 && p == self.config.statsd_port => Protocol::Statsd,
            _ => {
                self.counters.datagrams_other_port += 1;
                return false;
            }
        };
        match protocol {
            Protocol::Line => self.counters.datagrams_line += 1,
            Protocol::Statsd => self.counters.datagrams_statsd += 1,
        }
        let wall_ns = now.to_unix_ns(self.unix_offset_ns);
        // At most two tries: the current batch, then a fresh one if it filled up.
        for _ in 0..2 {
            if !self.ensure_batch(now) {
                break;
            }
            // A field borrow, disjoint from the parsers and counters.
            let Some(batch) = self.batch.as_mut() else { break };
            let mark = batch.mark();
            let (records, invalid, full) = match protocol {
                Protocol::Line => {
                    let s = self.indexer.index_lenient(payload, Precision::Nanoseconds, wall_ns, |line| {
                        batch.push_line(line, TenantIndex::DEFAULT).is_ok()
                    });
                    (s.lines as u64, s.bad_lines as u64, s.resume_at.is_some())
                }
                Protocol::Statsd => {
                    let s = self.statsd.parse_into(payload, wall_ns, batch);
                    (s.records as u64, s.invalid as u64, s.sink_full)
                }
            };
            if full {
                // The datagram did not fit: take it out whole, ship the full
                // batch, and parse the datagram again into an empty one.
                batch.rollback(mark);
                self.flush();
                continue;
            }
            self.counters.records_invalid += invalid;
            self.counters.records_parsed += records;
            if records == 0 {
                return true;
            }
            let key = self.source_keys.key(&self.limiter, src);
            if self.limiter.try_acquire(key, records, now).decision.is_allowed() {
                self.counters.records_accepted += records;
            } else {
                batch.rollback(mark);
                self.counters.records_limited += records;
            }
            return true;
        }
        // No batch to put it in: count what is lost, by parsing into nothing.
        let (records, invalid) = match protocol {
            Protocol::Line => {
                let s = self.indexer.index_lenient(payload, Precision::Nanoseconds, wall_ns, |_| true);
                (s.lines as u64, s.bad_lines as u64)
            }
            Protocol::Statsd => {
                let s = self.statsd.parse_into(payload, wall_ns, &mut Discard);
                (s.records as u64, s.invalid as u64)
            }
        };
        self.counters.records_invalid += invalid;
        self.counters.records_parsed += records;
        self.counters.records_dropped_writer_full += records;
        true
    }

    /// Makes sure there is a batch to fill, taking a fresh one from the
    /// writer if needed; false when the writer has none free.
    fn ensure_batch(&mut self, now: Nanos) -> bool {
        if self.batch.is_none() {
            let Some(mut batch) = self.writer.take_batch() else { return false };
            batch.set_client(UDP_CLIENT);
            self.batch = Some(batch);
            self.batch_started = now;
        }
        true
    }

    /// Ships the current batch if it has waited `flush_interval_us`; call once
    /// per burst and when idle.
    pub fn maybe_flush(&mut self, now: Nanos) {
        let waited = now.ns_since(self.batch_started);
        if waited >= self.config.flush_interval_us * 1_000 {
            self.flush();
        }
    }

    /// Ships the current batch now (if it has records).
    pub fn flush(&mut self) {
        let Some(batch) = self.batch.take() else { return };
        if batch.is_empty() {
            self.batch = Some(batch);
            return;
        }
        let records = batch.len() as u64;
        match self.writer.submit(batch) {
            Ok(_) => self.counters.batches_submitted += 1,
            Err(refused) => {
                // Accepted records we cannot hand over are lost: move them
                // from accepted to dropped so the counters stay exact.
                self.counters.records_accepted -= records;
                self.counters.records_dropped_writer_full += records;
                self.writer.recycle(refused.batch);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limit::LimitsConfig;
    use crate::writer::{Writer, WriterConfig};

    fn setup(
        limits: LimitsConfig,
        channel_batches: usize,
    ) -> (crate::writer::WriterRuntime, UdpIngest, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let config = WriterConfig {
            data_dir: dir.path().to_path_buf(),
            channel_batches,
            batch_records: 4,
            ..WriterConfig::default()
        };
        let (runtime, mut handles) = Writer::start(config, 1).unwrap();
        let limiter = Arc::new(KeyedLimiter::new(&limits).unwrap());
        let ingest = UdpIngest::new(UdpConfig::default(), limiter, handles.remove(0));
        (runtime, ingest, dir)
    }

    const A: Ipv4Address = Ipv4Address::new(198, 18, 1, 1);

    #[test]
    fn cached_source_keys_equal_the_limiters_keys() {
        let limiter = KeyedLimiter::new(&LimitsConfig::default()).unwrap();
        let mut cache = SourceKeyCache::new();
        // More sources than entries, twice over: hits, misses and evictions.
        for _ in 0..2 {
            for i in 0..3 * SourceKeyCache::ENTRIES as u32 {
                let src = Ipv4Address::from_bits(0xC612_0000 + i * 7);
                let mut id = [0u8; ADDRESS_ID_BYTES];
                assert_eq!(cache.key(&limiter, src), limiter.key_for(address_id(src, &mut id)), "{src}");
            }
        }
    }

    #[test]
    fn line_and_statsd_records_reach_the_writer_and_invalid_lines_are_counted() {
        let (runtime, mut udp, _dir) = setup(LimitsConfig::default(), 8);
        assert!(udp.on_datagram(A, 8089, b"cpu,host=a v=1 1\ncpu v=2 2\nnot line protocol\n", Nanos::from_ns(10)));
        assert!(udp.on_datagram(A, 8125, b"req:1|c\nlat:2.5|ms|#env:prod\nbad", Nanos::from_ns(10)));
        assert!(!udp.on_datagram(A, 53, b"dns", Nanos::from_ns(10)));
        // batch_records = 4: the 5th record needs a second batch.
        udp.flush();
        let c = *udp.counters();
        assert_eq!((c.datagrams_line, c.datagrams_statsd, c.datagrams_other_port), (1, 1, 1));
        assert_eq!((c.records_parsed, c.records_accepted, c.records_invalid), (4, 4, 2));
        assert!(c.balances());
        drop(udp);
        let summary = runtime.shutdown().unwrap();
        assert_eq!(summary.records_written, 4);
    }

    #[test]
    fn limited_datagrams_are_rolled_back_whole() {
        let limits = LimitsConfig { default_rate: 1, default_burst: 3, ..LimitsConfig::default() };
        let (runtime, mut udp, _dir) = setup(limits, 8);
        udp.on_datagram(A, 8089, b"m v=1 1\nm v=2 2\n", Nanos::ZERO); // 2 of 3 tokens
        udp.on_datagram(A, 8089, b"m v=3 3\nm v=4 4\n", Nanos::ZERO); // 2 > 1 left: refused whole
        udp.on_datagram(Ipv4Address::new(198, 18, 1, 2), 8089, b"m v=5 5\n", Nanos::ZERO); // another client
        udp.flush();
        let c = *udp.counters();
        assert_eq!((c.records_accepted, c.records_limited), (3, 2));
        assert!(c.balances());
        drop(udp);
        assert_eq!(runtime.shutdown().unwrap().records_written, 3);
    }

    #[test]
    fn writer_backpressure_is_counted_not_lost() {
        // One batch in flight at most, and the writer is fed faster than it is drained.
        let (runtime, mut udp, _dir) = setup(LimitsConfig::default(), 1);
        for i in 0..2_000u64 {
            let line = format!("m v={i} {i}\nm w={i} {i}\n");
            udp.on_datagram(A, 8089, line.as_bytes(), Nanos::from_ns(i));
        }
        udp.flush();
        let c = *udp.counters();
        assert_eq!(c.records_parsed, 4_000);
        assert!(c.balances(), "{c:?}");
        let accepted = c.records_accepted;
        drop(udp);
        assert_eq!(runtime.shutdown().unwrap().records_written, accepted);
    }
}
