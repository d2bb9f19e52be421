//! `LimitsConfig`: the `[limits]` table of the appliance configuration, its
//! defaults and its validation.
//!
//! ```toml
//! [limits]
//! default_rate = 100000     # records per second, per client
//! default_burst = 200000    # records admitted at once from a full bucket
//! capacity = 65536          # keyed-table slots, power of two (32 B each: 2 MiB)
//! overflow = "shared"       # or "refuse": what clients without a slot get
//! idle_timeout_s = 300      # a client idle (bucket full) this long loses its slot
//! probe_limit = 16          # slots examined per lookup
//! [[limits.client]]
//! id = "svc-a"
//! rate = 1000
//! burst = 1000
//! ```
//!
//! Every key has a default. `capacity` defaults to 65536 slots (2 MiB, fixed
//! at start-up): enough for tens of thousands of concurrently active clients
//! at a load factor that keeps probe chains short, and small enough to stay
//! resident in L2/L3 next to the packet buffers.

use std::collections::HashSet;

use serde::Deserialize;

use super::bucket::{Quota, QuotaError};

/// What a client gets when the keyed table has no slot for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Overflow {
    /// All such clients share one bucket with the default quota.
    #[default]
    Shared,
    /// Such clients are refused ([`super::Decision::NoCapacity`]).
    Refuse,
}

/// A per-client override of the default quota.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientLimit {
    /// The client identity as the ingest path sees it (auth token name,
    /// tenant id, ...); hashed with the limiter's key hasher.
    pub id: String,
    /// Records per second.
    pub rate: u64,
    /// Records admitted at once; defaults to `rate` (one second's worth).
    pub burst: Option<u64>,
}

/// The `[limits]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Records per second per client.
    pub default_rate: u64,
    /// Records admitted at once from a full bucket.
    pub default_burst: u64,
    /// Keyed-table slots; a power of two; fixed at start-up.
    pub capacity: usize,
    /// Policy for clients without a slot.
    pub overflow: Overflow,
    /// Seconds a client's bucket must have been full before its slot is reclaimed.
    pub idle_timeout_s: u64,
    /// Maximum slots examined per lookup (bounded probe length).
    pub probe_limit: usize,
    /// Per-client overrides.
    #[serde(rename = "client")]
    pub clients: Vec<ClientLimit>,
}

/// Largest accepted table: 2^24 slots (512 MiB) guards against typos.
pub const MAX_CAPACITY: usize = 1 << 24;

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            default_rate: 100_000,
            default_burst: 200_000,
            capacity: 65_536,
            overflow: Overflow::Shared,
            idle_timeout_s: 300,
            probe_limit: 16,
            clients: Vec::new(),
        }
    }
}

/// Why a `[limits]` table was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitsConfigError {
    #[error("limits.default_rate/default_burst: {0}")]
    DefaultQuota(QuotaError),
    #[error("limits.client {id:?}: {source}")]
    ClientQuota { id: String, source: QuotaError },
    #[error("limits.client id {0:?} appears more than once")]
    DuplicateClient(String),
    #[error("limits.client id must not be empty")]
    EmptyClientId,
    #[error("limits.capacity {0} must be a power of two between 1 and {MAX_CAPACITY}")]
    Capacity(usize),
    #[error("limits.probe_limit {probe_limit} must be between 1 and capacity ({capacity})")]
    ProbeLimit { probe_limit: usize, capacity: usize },
    #[error("limits.idle_timeout_s must be at least 1")]
    IdleTimeout,
    #[error("limits: invalid TOML: {0}")]
    Toml(String),
}

impl LimitsConfig {
    /// Parse a document whose `[limits]` table (if any) is this config;
    /// other tables are ignored. Validates.
    pub fn from_toml_document(text: &str) -> Result<Self, LimitsConfigError> {
        #[derive(Deserialize)]
        struct Document {
            #[serde(default)]
            limits: LimitsConfig,
        }
        let doc: Document = toml::from_str(text).map_err(|e| LimitsConfigError::Toml(e.to_string()))?;
        doc.limits.validate()?;
        Ok(doc.limits)
    }

    /// The default quota, validated.
    pub fn default_quota(&self) -> Result<Quota, LimitsConfigError> {
        Quota::new(self.default_rate, self.default_burst).map_err(LimitsConfigError::DefaultQuota)
    }

    /// Per-client quotas, validated, in file order.
    pub fn client_quotas(&self) -> Result<Vec<(&str, Quota)>, LimitsConfigError> {
        let mut seen = HashSet::new();
        let mut out = Vec::with_capacity(self.clients.len());
        for client in &self.clients {
            if client.id.is_empty() {
                return Err(LimitsConfigError::EmptyClientId);
            }
            if !seen.insert(client.id.as_str()) {
                return Err(LimitsConfigError::DuplicateClient(client.id.clone()));
            }
            let quota = Quota::new(client.rate, client.burst.unwrap_or(client.rate))
                .map_err(|source| LimitsConfigError::ClientQuota { id: client.id.clone(), source })?;
            out.push((client.id.as_str(), quota));
        }
        Ok(out)
    }

    /// Check every field; the limiter calls this before using a config.
    pub fn validate(&self) -> Result<(), LimitsConfigError> {
        self.default_quota()?;
        self.client_quotas()?;
        if self.capacity == 0 || !self.capacity.is_power_of_two() || self.capacity > MAX_CAPACITY {
            return Err(LimitsConfigError::Capacity(self.capacity));
        }
        if self.probe_limit == 0 || self.probe_limit > self.capacity {
            return Err(LimitsConfigError::ProbeLimit { probe_limit: self.probe_limit, capacity: self.capacity });
        }
        if self.idle_timeout_s == 0 {
            return Err(LimitsConfigError::IdleTimeout);
        }
        Ok(())
    }

    /// `idle_timeout_s` in nanoseconds (saturating).
    pub fn idle_timeout_ns(&self) -> u64 {
        self.idle_timeout_s.saturating_mul(1_000_000_000)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let cfg = LimitsConfig::from_toml_document(
            r#"
            [limits]
            default_rate = 100000
            default_burst = 200000
            capacity = 65536
            overflow = "refuse"
            idle_timeout_s = 300
            [[limits.client]]
            id = "svc-a"
            rate = 1000
            burst = 1000
            [[limits.client]]
            id = "svc-b"
            rate = 50
            "#,
        )
        .expect("valid");
        assert_eq!(cfg.overflow, Overflow::Refuse);
        assert_eq!(cfg.clients.len(), 2);
        let quotas = cfg.client_quotas().expect("valid");
        assert_eq!(quotas[1].1, Quota::new(50, 50).expect("valid"));
    }

    #[test]
    fn every_key_has_a_default() {
        let cfg = LimitsConfig::from_toml_document("[limits]\n").expect("valid");
        assert_eq!(cfg, LimitsConfig::default());
        let cfg = LimitsConfig::from_toml_document("[other]\nx = 1\n").expect("valid");
        assert_eq!(cfg, LimitsConfig::default());
    }

    #[test]
    fn rejects_nonsense() {
        let bad = |text: &str| LimitsConfig::from_toml_document(text).unwrap_err();
        assert!(matches!(bad("[limits]\ndefault_rate = 0"), LimitsConfigError::DefaultQuota(QuotaError::ZeroRate)));
        assert!(matches!(bad("[limits]\ndefault_burst = 0"), LimitsConfigError::DefaultQuota(QuotaError::ZeroBurst)));
        assert!(matches!(bad("[limits]\ncapacity = 0"), LimitsConfigError::Capacity(0)));
        assert!(matches!(bad("[limits]\ncapacity = 1000"), LimitsConfigError::Capacity(1000)));
        assert!(matches!(bad("[limits]\ncapacity = 8\nprobe_limit = 9"), LimitsConfigError::ProbeLimit { .. }));
        assert!(matches!(bad("[limits]\nidle_timeout_s = 0"), LimitsConfigError::IdleTimeout));
        assert!(matches!(bad("[limits]\noverflow = \"drop\""), LimitsConfigError::Toml(_)));
        assert!(matches!(bad("[limits]\ndefault_rat = 5"), LimitsConfigError::Toml(_)));
        assert!(matches!(bad("[[limits.client]]\nid = \"a\"\nrate = 0"), LimitsConfigError::ClientQuota { .. }));
        assert!(matches!(
            bad("[[limits.client]]\nid = \"a\"\nrate = 1\n[[limits.client]]\nid = \"a\"\nrate = 2"),
            LimitsConfigError::DuplicateClient(_)
        ));
    }
}
