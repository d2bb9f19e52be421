//! DPDK profiles: which EAL arguments and port settings a run uses
//! (`dpdk-config/*.toml`). Unknown keys are errors, so a typo cannot
//! silently fall back to a default.

use serde::Deserialize;
use std::path::Path;

/// The profile `replay` uses when none is given: `--no-huge`, no NIC.
pub const DEFAULT_REPLAY_PROFILE: &str = include_str!("../dpdk-config/pcap-replay.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    #[serde(default)]
    pub eal: EalSection,
    #[serde(default)]
    pub port: PortSection,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EalSection {
    /// EAL arguments; command-line arguments after `--` are appended.
    #[serde(default)]
    pub args: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PortSection {
    /// DPDK port to serve (replay uses its own pcap port).
    pub port_id: u16,
    /// RX/TX queue pairs = workers, unless `--workers` says otherwise.
    pub rx_queues: u16,
    pub rx_desc: u16,
    pub tx_desc: u16,
    /// Mbufs in the pool, beyond what a pcap replay needs to hold its file.
    pub mbufs: u32,
    pub mbuf_cache: u32,
}

impl Default for PortSection {
    fn default() -> Self {
        PortSection { port_id: 0, rx_queues: 1, rx_desc: 1024, tx_desc: 1024, mbufs: 8191, mbuf_cache: 256 }
    }
}

impl Profile {
    pub fn parse(text: &str, origin: &str) -> Result<Profile, ConfigError> {
        toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: origin.to_string(), message: one_line(&e.to_string()) })
    }

    pub fn load(path: &Path) -> Result<Profile, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        Profile::parse(&text, &path.display().to_string())
    }

    /// Whether the EAL arguments already choose lcores.
    pub fn sets_lcores(args: &[String]) -> bool {
        args.iter().any(|a| a == "-l" || a == "-c" || a.starts_with("--lcores") || a.starts_with("-l") && a.len() > 2)
    }
}

/// toml's messages span several lines (with a source excerpt); errors here
/// are one line.
fn one_line(message: &str) -> String {
    message.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('|')).collect::<Vec<_>>().join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_profile_parses() {
        let p = Profile::parse(DEFAULT_REPLAY_PROFILE, "default").unwrap();
        assert!(p.eal.args.iter().any(|a| a == "--no-huge"));
        assert_eq!(p.port.rx_queues, 1);
    }

    #[test]
    fn unknown_keys_are_errors_on_one_line() {
        let e = Profile::parse("[port]\nrx_queue = 2\n", "x.toml").unwrap_err().to_string();
        assert!(e.contains("rx_queue"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn lcore_arguments_are_detected() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(Profile::sets_lcores(&v(&["-l", "0-1"])));
        assert!(Profile::sets_lcores(&v(&["-l0-3"])));
        assert!(Profile::sets_lcores(&v(&["--lcores=0@0,1@1"])));
        assert!(!Profile::sets_lcores(&v(&["--no-huge", "-m", "512"])));
    }
}

/// The appliance configuration shared by `serve` and `replay --config`
/// (example: `dpdk-config/metricsstream.toml`). Every table is optional and
/// every key has a default; unknown keys are errors.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AppConfig {
    pub net: NetConfig,
    pub http: crate::http::HttpConfig,
    pub auth: crate::http::auth::AuthConfig,
    pub udp: crate::pipeline::UdpConfig,
    pub writer: crate::writer::WriterConfig,
    pub limits: crate::limit::LimitsConfig,
    pub sink: SinkConfig,
}

/// `[net]`: the appliance's own address on the served port.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NetConfig {
    /// Our IPv4 address and prefix, e.g. "198.18.0.1/24".
    pub ipv4: String,
    /// Next hop for destinations outside the prefix.
    pub gateway: Option<String>,
    /// DPDK port to serve.
    pub port_id: u16,
    /// Neighbour (ARP) table entries.
    pub neighbors: usize,
    /// TCP sockets per smoltcp cell (bounds smoltcp's per-packet socket scan).
    pub sockets_per_cell: usize,
    /// Per-connection TCP receive and send buffers.
    pub tcp_rx_buffer: usize,
    pub tcp_tx_buffer: usize,
    /// Half-open (SYN-RECEIVED) connections per worker at most, within
    /// `http.max_connections_per_worker`; a SYN beyond evicts the oldest.
    /// Default: all of them (see `NetStackConfig::default_max_half_open`).
    pub max_half_open: Option<usize>,
    /// A half-open connection is freed this long after its SYN.
    pub syn_received_timeout_ms: u64,
    /// Socket buffer memory per worker at most, MiB: `tcp_rx_buffer +
    /// tcp_tx_buffer` per connection, allocated as connections open (none
    /// at start) and reused; a SYN beyond evicts the oldest half-open
    /// connection or is dropped (`drop_syn_full`).
    pub socket_buffer_budget_mb: u64,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            ipv4: "198.18.0.1/24".into(),
            gateway: None,
            port_id: 0,
            neighbors: 4096,
            sockets_per_cell: 16,
            tcp_rx_buffer: 64 * 1024,
            tcp_tx_buffer: 8 * 1024,
            max_half_open: None,
            syn_received_timeout_ms: 3_000,
            socket_buffer_budget_mb: 1024,
        }
    }
}

impl NetConfig {
    /// The address, prefix length and gateway, checked.
    pub fn addresses(&self) -> Result<(std::net::Ipv4Addr, u8, Option<std::net::Ipv4Addr>), String> {
        let (ip, prefix) =
            self.ipv4.split_once('/').ok_or_else(|| format!("[net] ipv4 {:?} needs a /prefix", self.ipv4))?;
        let ip: std::net::Ipv4Addr = ip.parse().map_err(|_| format!("[net] ipv4 {ip:?} is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| (1..=32).contains(p))
            .ok_or_else(|| format!("[net] prefix /{prefix} is not 1..=32"))?;
        let gateway = match &self.gateway {
            Some(g) => Some(g.parse().map_err(|_| format!("[net] gateway {g:?} is not an IPv4 address"))?),
            None => None,
        };
        Ok((ip, prefix, gateway))
    }
}

/// `[sink.*]`: where the log is forwarded (at-least-once, from the log).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SinkConfig {
    pub victoriametrics: Option<crate::writer::VictoriaMetricsConfig>,
}

impl AppConfig {
    pub fn parse(text: &str, origin: &str) -> Result<AppConfig, ConfigError> {
        let config: AppConfig = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: origin.to_string(), message: one_line(&e.to_string()) })?;
        config
            .writer
            .validate()
            .map_err(|e| ConfigError::Parse { path: origin.to_string(), message: e.to_string() })?;
        config
            .limits
            .validate()
            .map_err(|e| ConfigError::Parse { path: origin.to_string(), message: e.to_string() })?;
        // [http] was parsed but never checked before: a budget below max_body_bytes would refuse every large body.
        config.http.validate().map_err(|e| ConfigError::Parse { path: origin.to_string(), message: e.to_string() })?;
        Ok(config)
    }

    pub fn load(path: &Path) -> Result<AppConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        AppConfig::parse(&text, &path.display().to_string())
    }
}

#[cfg(test)]
mod app_config_tests {
    use super::*;

    #[test]
    fn example_config_parses_and_empty_is_default() {
        let example = include_str!("../dpdk-config/metricsstream.toml");
        let c = AppConfig::parse(example, "example").unwrap();
        assert_eq!(c.udp.line_port, 8089);
        assert_eq!(AppConfig::parse("", "empty").unwrap(), AppConfig::default());
        assert_eq!(c.http.body_memory_budget_bytes, 256 << 20);
    }

    #[test]
    fn http_table_is_validated() {
        let err = AppConfig::parse("[http]\nbody_memory_budget_bytes = 1024\n", "t").unwrap_err();
        assert!(err.to_string().contains("body_memory_budget_bytes"), "{err}");
    }

    #[test]
    fn unknown_keys_and_invalid_values_are_errors() {
        assert!(AppConfig::parse("[udp]\nline_prot = 1\n", "x").unwrap_err().to_string().contains("line_prot"));
        assert!(AppConfig::parse("[limits]\ndefault_rate = 0\n", "x").is_err());
    }
}
