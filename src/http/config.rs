//! The `[http]` table: listening port, request size limits, timeouts, the
//! per-worker connection cap and the global body-memory budget. Unknown keys are errors (as everywhere in the
//! configuration), and [`HttpConfig::validate`] rejects values that cannot work.

use serde::Deserialize;

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// TCP port the HTTP server listens on.
    pub port: u16,
    /// Largest request body accepted, after de-chunking and after gunzip.
    pub max_body_bytes: usize,
    /// Largest request head (request line + headers + final CRLF), and the
    /// bound on chunk-size lines and trailers.
    pub max_header_bytes: usize,
    /// A connection with no request in progress is closed after this long
    /// without input; a stalled body is answered 408 after this long.
    pub idle_timeout_ms: u64,
    /// A request head must be complete this long after its first byte.
    pub header_timeout_ms: u64,
    /// Connections one worker holds at most; further SYNs are refused.
    pub max_connections_per_worker: u32,
    /// Request-body bytes all workers' connections hold at most together
    /// (reserved by Content-Length, per chunk, per inflate step); a request
    /// beyond it is answered 503 with Retry-After. At least `max_body_bytes`.
    pub body_memory_budget_bytes: usize,
    /// A line-protocol body with bad lines on `/write` and `/api/v2/write`:
    /// `false` refuses it whole (400, nothing written); `true` writes its
    /// valid lines and answers 400 naming the bad ones (InfluxDB 1.x's
    /// behaviour). `/api/v3/write_lp` decides per request (`accept_partial`,
    /// default true as in InfluxDB 3).
    pub partial_writes: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            port: 8080,
            max_body_bytes: 32 << 20,
            max_header_bytes: 16 << 10,
            idle_timeout_ms: 60_000,
            header_timeout_ms: 10_000,
            max_connections_per_worker: 16_384,
            body_memory_budget_bytes: 256 << 20,
            partial_writes: false,
        }
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum HttpConfigError {
    #[error("http.port must not be 0")]
    Port,
    #[error("http.max_body_bytes must be between 1 and 1 GiB, got {0}")]
    MaxBody(usize),
    #[error("http.max_header_bytes must be between 256 and 1 MiB, got {0}")]
    MaxHeader(usize),
    #[error("http.{0} must be between 1 and 3600000 ms")]
    Timeout(&'static str),
    #[error("http.max_connections_per_worker must be between 1 and 1048576, got {0}")]
    MaxConnections(u32),
    #[error("http.body_memory_budget_bytes must be between max_body_bytes ({max_body}) and 64 GiB, got {budget}")]
    BodyBudget { budget: usize, max_body: usize },
}

impl HttpConfig {
    pub fn validate(&self) -> Result<(), HttpConfigError> {
        if self.port == 0 {
            return Err(HttpConfigError::Port);
        }
        if !(1..=1 << 30).contains(&self.max_body_bytes) {
            return Err(HttpConfigError::MaxBody(self.max_body_bytes));
        }
        if !(256..=1 << 20).contains(&self.max_header_bytes) {
            return Err(HttpConfigError::MaxHeader(self.max_header_bytes));
        }
        if !(1..=3_600_000).contains(&self.idle_timeout_ms) {
            return Err(HttpConfigError::Timeout("idle_timeout_ms"));
        }
        if !(1..=3_600_000).contains(&self.header_timeout_ms) {
            return Err(HttpConfigError::Timeout("header_timeout_ms"));
        }
        if !(1..=1 << 20).contains(&self.max_connections_per_worker) {
            return Err(HttpConfigError::MaxConnections(self.max_connections_per_worker));
        }
        if !(self.max_body_bytes..=64 << 30).contains(&self.body_memory_budget_bytes) {
            return Err(HttpConfigError::BodyBudget {
                budget: self.body_memory_budget_bytes,
                max_body: self.max_body_bytes,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let c: HttpConfig = toml::from_str("").unwrap();
        assert_eq!(c, HttpConfig::default());
        c.validate().unwrap();
        let c: HttpConfig = toml::from_str("port = 9000\nmax_body_bytes = 1048576\nidle_timeout_ms = 5000").unwrap();
        assert_eq!((c.port, c.max_body_bytes, c.idle_timeout_ms), (9000, 1 << 20, 5000));
        assert_eq!(c.max_header_bytes, 16 << 10);
        assert!(toml::from_str::<HttpConfig>("partial_writes = true").unwrap().partial_writes);
        let c: HttpConfig = toml::from_str("body_memory_budget_bytes = 1073741824").unwrap();
        assert_eq!(c.body_memory_budget_bytes, 1 << 30);
        c.validate().unwrap();
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values() {
        assert!(toml::from_str::<HttpConfig>("max_body = 1").is_err());
        let bad = |f: fn(&mut HttpConfig)| {
            let mut c = HttpConfig::default();
            f(&mut c);
            c.validate().unwrap_err()
        };
        assert_eq!(bad(|c| c.port = 0), HttpConfigError::Port);
        assert_eq!(bad(|c| c.max_body_bytes = 0), HttpConfigError::MaxBody(0));
        assert_eq!(bad(|c| c.max_header_bytes = 10), HttpConfigError::MaxHeader(10));
        assert_eq!(bad(|c| c.idle_timeout_ms = 0), HttpConfigError::Timeout("idle_timeout_ms"));
        assert_eq!(bad(|c| c.header_timeout_ms = 0), HttpConfigError::Timeout("header_timeout_ms"));
        assert_eq!(bad(|c| c.max_connections_per_worker = 0), HttpConfigError::MaxConnections(0));
        assert_eq!(
            bad(|c| c.body_memory_budget_bytes = 1 << 20),
            HttpConfigError::BodyBudget { budget: 1 << 20, max_body: 32 << 20 }
        );
    }
}
