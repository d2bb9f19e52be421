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
//! trust_client_header = false             # see below
//! trusted_header_sources = ["10.1.0.0/16"] # relays whose X-Client-Id counts
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
//!
//! Who a client is: with auth on, its token's client. With auth off, a
//! client could escape its limit by naming itself anew in every request, so
//! a self-chosen name (`X-Client-Id`, the JSON API's `client_id`) counts only
//! from `trusted_header_sources` (relays, proxies) or everywhere when
//! `trust_client_header = true`; otherwise the peer's address is the client.

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
    /// With auth off, take every request's self-chosen client name
    /// (`X-Client-Id`, JSON `client_id`) as its limiter key.
    pub trust_client_header: bool,
    /// With auth off, sources (IPv4 CIDRs) whose self-chosen client name is
    /// taken even when `trust_client_header` is false.
    pub trusted_header_sources: Vec<String>,
}

/// Whose self-chosen client name the limiter takes (auth off); see the module doc.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderTrust {
    everyone: bool,
    /// (network, mask) in host order.
    sources: Vec<(u32, u32)>,
}

impl HeaderTrust {
    /// Whether a request from `peer` may name its client.
    pub fn trusts(&self, peer: std::net::Ipv4Addr) -> bool {
        let ip = u32::from(peer);
        self.everyone || self.sources.iter().any(|&(net, mask)| ip & mask == net)
    }
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
            trust_client_header: false,
            trusted_header_sources: Vec::new(),
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
    #[error("limits.trusted_header_sources: {0:?} is not an IPv4 CIDR like \"10.0.0.0/8\"")]
    TrustedSource(String),
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
        self.header_trust()?;
        Ok(())
    }

    /// `trust_client_header` and `trusted_header_sources`, parsed.
    pub fn header_trust(&self) -> Result<HeaderTrust, LimitsConfigError> {
        let cidr = |text: &String| {
            let bad = || LimitsConfigError::TrustedSource(text.clone());
            let (ip, prefix) = text.split_once('/').unwrap_or((text, "32"));
            let ip: std::net::Ipv4Addr = ip.trim().parse().map_err(|_| bad())?;
            let prefix: u32 = prefix.trim().parse().ok().filter(|p| *p <= 32).ok_or_else(bad)?;
            let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
            Ok((u32::from(ip) & mask, mask))
        };
        let sources = self.trusted_header_sources.iter().map(cidr).collect::<Result<_, _>>()?;
        Ok(HeaderTrust { everyone: self.trust_client_header, sources })
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
        for cidr in ["10.0.0/8", "10.0.0.0/33", "host", "10.0.0.0/x"] {
            let text = format!("[limits]\ntrusted_header_sources = [\"{cidr}\"]");
            assert_eq!(bad(&text), LimitsConfigError::TrustedSource(cidr.into()), "{cidr}");
        }
    }

    #[test]
    fn self_chosen_client_names_count_only_from_trusted_sources() {
        let ip = |s: &str| s.parse::<std::net::Ipv4Addr>().unwrap();
        let by_default = LimitsConfig::default().header_trust().unwrap();
        assert!(!by_default.trusts(ip("198.18.0.2")));
        let cfg = LimitsConfig::from_toml_document(
            "[limits]\ntrusted_header_sources = [\"10.1.0.0/16\", \"192.168.7.9\", \"0.0.0.0/0\"]",
        )
        .unwrap();
        assert!(cfg.header_trust().unwrap().trusts(ip("8.8.8.8")), "/0 is everyone");
        let cfg =
            LimitsConfig::from_toml_document("[limits]\ntrusted_header_sources = [\"10.1.0.0/16\", \"192.168.7.9\"]")
                .unwrap();
        let trust = cfg.header_trust().unwrap();
        assert!(trust.trusts(ip("10.1.255.3")) && trust.trusts(ip("192.168.7.9")));
        assert!(!trust.trusts(ip("10.2.0.1")) && !trust.trusts(ip("192.168.7.8")));
        let everyone = LimitsConfig { trust_client_header: true, ..LimitsConfig::default() };
        assert!(everyone.header_trust().unwrap().trusts(ip("203.0.113.5")));
    }
}
