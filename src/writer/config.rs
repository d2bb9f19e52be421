//! Writer and VictoriaMetrics-sink configuration: serde types for the TOML
//! tables `[writer]` and `[sink.victoriametrics]`, their defaults and
//! validation.
//!
//! Example (every key optional; these are the defaults except `retention_*`):
//!
//! ```toml
//! [writer]
//! data_dir = "data"          # segment files, shipper checkpoint
//! ack = "durable"            # "durable": ack after the fsync covering the record
//!                            # "enqueued": ack once the batch is in the writer's channel
//! commit_delay_us = 0        # group commit: a sync starts as soon as a client waits for one
//!                            # (> 0: wait at most this long first, to gather more batches)
//! sync_interval_ms = 1000    # batches nobody waits for (enqueued, UDP) are synced at most this
//!                            # long after they were written: what a crash can lose of them
//! fsync_bytes = 8388608      # ...or once this many bytes are unsynced, whichever first
//! segment_bytes = 268435456  # rotate segment files at this size
//! retention_bytes = 10737418240  # delete oldest whole segments above this total (0 = no limit)
//! retention_hours = 168      # delete whole segments older than this (0 = no limit)
//! channel_batches = 64       # per-worker channel depth (batches in flight)
//! batch_bytes = 262144       # encoded bytes per batch
//! batch_records = 8192       # records per batch
//!
//! [sink.victoriametrics]
//! url = "http://127.0.0.1:8428"  # POSTs line protocol to {url}/write
//! batch_records = 10000
//! retry_initial_ms = 100         # exponential backoff after a failed POST...
//! retry_max_ms = 5000            # ...capped here
//! timeout_ms = 5000              # connect/read/write timeout of one POST
//! poll_interval_ms = 50          # how often to look for new durable records
//! ```
//!
//! Why `ack = "durable"` is the default: the appliance's promise is "a 204 means
//! the data is on disk" (InfluxDB's WAL contract). The price is one or two
//! fdatasyncs of latency per request (leader/follower group commit, see
//! [`runtime`](super::runtime)): a sync starts as soon as a client waits and
//! none is in flight, and every request that arrives meanwhile shares the
//! next one, so throughput follows the disk instead of a timer. Operators who
//! prefer VictoriaMetrics/Vector-style in-memory buffering opt in with
//! `ack = "enqueued"` and accept losing up to `sync_interval_ms` (or
//! `fsync_bytes`) of acknowledged data on a crash.
//!
//! `commit_delay_us` is PostgreSQL's `commit_delay` / MySQL's
//! `binlog_group_commit_sync_delay`: 0 (the default) is right unless the disk
//! is so slow per fdatasync that fewer, larger syncs matter more than latency.
//!
//! The key `fsync_interval_ms` (before group commit: durable acks waited for
//! this timer) is still read, with a warning, as `sync_interval_ms`: what it
//! kept meaning is the bound on unsynced un-awaited data.

use std::path::PathBuf;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// When a worker may acknowledge a batch to its client.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AckMode {
    /// As soon as the batch is in the writer's channel (lost on a crash
    /// before the next sync, at most `sync_interval_ms` later).
    Enqueued,
    /// Only after the fsync that covers the batch.
    #[default]
    Durable,
}

impl std::str::FromStr for AckMode {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "durable" => Ok(Self::Durable),
            "enqueued" => Ok(Self::Enqueued),
            other => Err(ConfigError::Invalid { key: "ack", reason: format!("{other:?} is not durable|enqueued") }),
        }
    }
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("writer config: {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key, reason: reason.into() }
}

/// `[writer]`.
// `remote = "Self"`: the derived code becomes inherent functions, which the
// trait impls below wrap (deserializing first renames the deprecated key).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", default, deny_unknown_fields)]
pub struct WriterConfig {
    pub data_dir: PathBuf,
    pub ack: AckMode,
    /// Longest a sync waits after the first awaited append to gather more
    /// (0: it starts at once), µs.
    pub commit_delay_us: u64,
    /// Longest an append nobody awaits stays unsynced, ms: what a crash can
    /// lose of `enqueued` / UDP traffic (0: sync every append at once).
    pub sync_interval_ms: u64,
    /// A sync also starts once this many bytes are unsynced.
    pub fsync_bytes: u64,
    pub segment_bytes: u64,
    pub retention_bytes: u64,
    pub retention_hours: u64,
    pub channel_batches: usize,
    pub batch_bytes: usize,
    pub batch_records: u32,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            ack: AckMode::Durable,
            commit_delay_us: 0,
            sync_interval_ms: 1000,
            fsync_bytes: 8 << 20,
            segment_bytes: 256 << 20,
            retention_bytes: 10 << 30,
            retention_hours: 168,
            channel_batches: 64,
            batch_bytes: 256 << 10,
            batch_records: 8192,
        }
    }
}

/// The pre-group-commit name of `sync_interval_ms`.
const DEPRECATED_SYNC_INTERVAL_KEY: &str = "fsync_interval_ms";

impl<'de> Deserialize<'de> for WriterConfig {
    /// Reads `fsync_interval_ms` as `sync_interval_ms`, with a warning.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut table = toml::Table::deserialize(deserializer)?;
        if let Some(ms) = table.remove(DEPRECATED_SYNC_INTERVAL_KEY) {
            if table.contains_key("sync_interval_ms") {
                return Err(de::Error::custom(
                    "both fsync_interval_ms (deprecated) and sync_interval_ms are set: keep sync_interval_ms",
                ));
            }
            log::warn!(
                "[writer] fsync_interval_ms is deprecated and read as sync_interval_ms = {ms}: durable acks no longer \
                 wait for a timer (a sync starts as soon as a client waits; commit_delay_us adds an optional wait), \
                 and sync_interval_ms bounds what a crash can lose of enqueued-only traffic; rename the key"
            );
            table.insert("sync_interval_ms".into(), ms);
        }
        WriterConfig::deserialize(toml::Value::Table(table)).map_err(de::Error::custom)
    }
}

impl Serialize for WriterConfig {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        WriterConfig::serialize(self, serializer)
    }
}

/// Longest `commit_delay_us` (PostgreSQL's `commit_delay` limit): a longer
/// wait only adds latency to every durable ack.
pub const MAX_COMMIT_DELAY_US: u64 = 100_000;

/// Largest batch: a frame must stay well inside `u32` and the reader's
/// sanity limit ([`super::segment::MAX_FRAME_BYTES`]).
pub const MAX_BATCH_BYTES: usize = 16 << 20;

impl WriterConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "must not be empty"));
        }
        if self.commit_delay_us > MAX_COMMIT_DELAY_US {
            return Err(invalid("commit_delay_us", format!("must be <= {MAX_COMMIT_DELAY_US} (0: no delay)")));
        }
        if self.sync_interval_ms > 60_000 {
            return Err(invalid("sync_interval_ms", "must be <= 60000"));
        }
        if self.fsync_bytes == 0 {
            return Err(invalid("fsync_bytes", "must be > 0"));
        }
        if self.segment_bytes < 4096 {
            return Err(invalid("segment_bytes", "must be >= 4096"));
        }
        if self.retention_bytes != 0 && self.retention_bytes < self.segment_bytes {
            return Err(invalid("retention_bytes", "must be 0 (no limit) or >= segment_bytes"));
        }
        if self.channel_batches == 0 || self.channel_batches > 1 << 16 {
            return Err(invalid("channel_batches", "must be in 1..=65536"));
        }
        if self.batch_bytes < 1024 || self.batch_bytes > MAX_BATCH_BYTES {
            return Err(invalid("batch_bytes", format!("must be in 1024..={MAX_BATCH_BYTES}")));
        }
        if self.batch_records == 0 {
            return Err(invalid("batch_records", "must be > 0"));
        }
        Ok(())
    }
}

/// `[sink.victoriametrics]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VictoriaMetricsConfig {
    pub url: String,
    pub batch_records: usize,
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    pub timeout_ms: u64,
    pub poll_interval_ms: u64,
}

impl Default for VictoriaMetricsConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8428".into(),
            batch_records: 10_000,
            retry_initial_ms: 100,
            retry_max_ms: 5_000,
            timeout_ms: 5_000,
            poll_interval_ms: 50,
        }
    }
}

/// The parts of an `http://host:port/prefix` URL the shipper needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpEndpoint {
    /// `host:port`, for connecting and for the Host header.
    pub authority: String,
    /// Path prefix without a trailing slash ("" for the root).
    pub path_prefix: String,
}

impl VictoriaMetricsConfig {
    pub fn validate(&self) -> Result<HttpEndpoint, ConfigError> {
        if self.batch_records == 0 {
            return Err(invalid("sink.victoriametrics.batch_records", "must be > 0"));
        }
        if self.retry_initial_ms == 0 || self.retry_max_ms < self.retry_initial_ms {
            return Err(invalid("sink.victoriametrics.retry_*", "need 0 < retry_initial_ms <= retry_max_ms"));
        }
        if self.timeout_ms == 0 {
            return Err(invalid("sink.victoriametrics.timeout_ms", "must be > 0"));
        }
        self.endpoint()
    }

    /// Parses `url`; only plain `http://` is supported (the sink talks to a
    /// local or in-cluster vminsert; TLS belongs in a proxy).
    pub fn endpoint(&self) -> Result<HttpEndpoint, ConfigError> {
        let rest = self
            .url
            .strip_prefix("http://")
            .ok_or_else(|| invalid("sink.victoriametrics.url", "must start with http://"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(invalid("sink.victoriametrics.url", "missing host"));
        }
        let authority = if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        Ok(HttpEndpoint { authority, path_prefix: path.trim_end_matches('/').to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_parse_from_toml() {
        let d = WriterConfig::default();
        d.validate().unwrap();
        // The defaults are the fast and safe ones: durable acks, no proactive delay.
        assert_eq!((d.ack, d.commit_delay_us, d.sync_interval_ms), (AckMode::Durable, 0, 1000));
        let c: WriterConfig =
            toml::from_str("ack = \"enqueued\"\ncommit_delay_us = 200\nsync_interval_ms = 5\n").unwrap();
        assert_eq!((c.ack, c.commit_delay_us, c.sync_interval_ms), (AckMode::Enqueued, 200, 5));
        assert_eq!(c.segment_bytes, d.segment_bytes);
        assert_eq!(toml::from_str::<WriterConfig>("").unwrap(), d);
        let err = toml::from_str::<WriterConfig>("bogus = 1").unwrap_err().to_string();
        assert!(err.contains("bogus"), "{err}");
        assert!(toml::from_str::<WriterConfig>("ack = \"sometimes\"").is_err());
        // Serialized and read back: the same config (no deprecated key written).
        let text = toml::to_string(&c).unwrap();
        assert!(!text.contains("fsync_interval_ms"), "{text}");
        assert_eq!(toml::from_str::<WriterConfig>(&text).unwrap(), c);
    }

    /// Collects warnings of this module (the test binary has no other logger).
    struct Warnings(std::sync::Mutex<Vec<String>>);

    impl log::Log for Warnings {
        fn enabled(&self, m: &log::Metadata<'_>) -> bool {
            m.level() <= log::Level::Warn && m.target() == module_path!().trim_end_matches("::tests")
        }
        fn log(&self, r: &log::Record<'_>) {
            if self.enabled(r.metadata()) {
                self.0.lock().unwrap().push(r.args().to_string());
            }
        }
        fn flush(&self) {}
    }

    static WARNINGS: Warnings = Warnings(std::sync::Mutex::new(Vec::new()));

    #[test]
    fn deprecated_fsync_interval_is_read_as_sync_interval_with_a_warning() {
        log::set_logger(&WARNINGS).expect("no other logger in the lib tests");
        log::set_max_level(log::LevelFilter::Warn);
        let c: WriterConfig = toml::from_str("fsync_interval_ms = 20\n").unwrap();
        assert_eq!((c.sync_interval_ms, c.commit_delay_us), (20, 0));
        let all = WARNINGS.0.lock().unwrap().clone();
        let warnings: Vec<_> = all.iter().filter(|w| w.contains("sync_interval_ms = 20:")).collect();
        assert_eq!(warnings.len(), 1, "one warning per load: {all:?}");
        for key in ["fsync_interval_ms is deprecated", "commit_delay_us", "crash"] {
            assert!(warnings[0].contains(key), "{key}: {warnings:?}");
        }
        let err = toml::from_str::<WriterConfig>("fsync_interval_ms = 20\nsync_interval_ms = 5\n").unwrap_err();
        assert!(err.to_string().contains("keep sync_interval_ms"), "{err}");
        // Inside the whole config file, as `serve` loads it.
        let app = crate::config::AppConfig::parse("[writer]\nfsync_interval_ms = 7\n", "t").unwrap();
        assert_eq!(app.writer.sync_interval_ms, 7);
        let err = crate::config::AppConfig::parse("[writer]\nsync_interval_ms = 7\nbogus = 1\n", "t").unwrap_err();
        assert!(err.to_string().contains("unknown field `bogus`"), "{err}");
    }

    #[test]
    fn validation_rejects_nonsense() {
        let bad = [
            WriterConfig { segment_bytes: 10, ..Default::default() },
            WriterConfig { channel_batches: 0, ..Default::default() },
            WriterConfig { batch_bytes: 1 << 30, ..Default::default() },
            WriterConfig { retention_bytes: 1, ..Default::default() },
            WriterConfig { data_dir: PathBuf::new(), ..Default::default() },
            WriterConfig { commit_delay_us: MAX_COMMIT_DELAY_US + 1, ..Default::default() },
            WriterConfig { sync_interval_ms: 60_001, ..Default::default() },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?}");
        }
    }

    #[test]
    fn vm_url_parsing() {
        let e = VictoriaMetricsConfig::default().validate().unwrap();
        assert_eq!(e, HttpEndpoint { authority: "127.0.0.1:8428".into(), path_prefix: "".into() });
        let c = VictoriaMetricsConfig { url: "http://vminsert/insert/0/influx/".into(), ..Default::default() };
        assert_eq!(
            c.endpoint().unwrap(),
            HttpEndpoint { authority: "vminsert:80".into(), path_prefix: "/insert/0/influx".into() }
        );
        assert!(VictoriaMetricsConfig { url: "https://x".into(), ..Default::default() }.validate().is_err());
    }
}
