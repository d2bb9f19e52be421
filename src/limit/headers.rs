//! `RateLimitHeaders`: the HTTP header values for a limiter verdict (sans-IO).
//!
//! Emits the IETF httpapi `RateLimit-Policy` / `RateLimit` fields
//! (draft-ietf-httpapi-ratelimit-headers, structured-field form), the
//! de-facto `X-RateLimit-*` trio, and `Retry-After` on refusals. A token
//! bucket maps onto the draft's "quota per window" as quota = burst and
//! window = the time a drained bucket takes to refill (`burst / rate`,
//! rounded up to whole seconds): `rate = burst = 1000/s` reads
//! `"default";q=1000;w=1`. `t` / `X-RateLimit-Reset` are delta-seconds until
//! the bucket is full again; `Retry-After` is delta-seconds (rounded up)
//! until the same request would be admitted.

use std::io::{self, Write};
use std::time::Duration;

use super::bucket::{Decision, Quota};
use super::table::{QuotaScope, Verdict};

/// The numbers behind the rate-limit headers of one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitHeaders {
    /// Policy name in the structured fields: `default`, `client` or `shared`.
    pub policy: &'static str,
    /// Quota units per window (the burst).
    pub limit: u64,
    /// Window in seconds (refill time, at least 1).
    pub window_s: u64,
    /// Records that could still be admitted now.
    pub remaining: u64,
    /// Seconds until the bucket is full again.
    pub reset_s: u64,
    /// Seconds to wait before retrying; `None` when admitted, or when waiting
    /// cannot help (`TooLarge`: answer 413 instead).
    pub retry_after_s: Option<u64>,
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl RateLimitHeaders {
    /// Headers for a keyed-limiter verdict.
    pub fn from_verdict(verdict: &Verdict) -> Self {
        let policy = match verdict.scope {
            QuotaScope::Client => "client",
            QuotaScope::Default => "default",
            QuotaScope::Overflow => "shared",
        };
        Self::from_decision(&verdict.decision, verdict.quota, policy)
    }

    /// Headers for a decision taken under `quota`, named `policy`.
    pub fn from_decision(decision: &Decision, quota: Quota, policy: &'static str) -> Self {
        let mut headers = Self {
            policy,
            limit: quota.burst(),
            window_s: ceil_secs(quota.refill_time()).max(1),
            remaining: 0,
            reset_s: 0,
            retry_after_s: None,
        };
        match *decision {
            Decision::Allowed { remaining, reset_after } => {
                headers.remaining = remaining;
                headers.reset_s = ceil_secs(reset_after);
            }
            Decision::Limited { retry_after, reset_after } => {
                headers.reset_s = ceil_secs(reset_after);
                headers.retry_after_s = Some(ceil_secs(retry_after).max(1));
            }
            Decision::TooLarge { .. } => {}
            // No slot for the client: slots free up as idle clients are swept.
            Decision::NoCapacity => headers.retry_after_s = Some(1),
        }
        headers
    }

    /// Write the header lines (`Name: value\r\n` each) into `out`.
    pub fn write_to<W: Write>(&self, out: &mut W) -> io::Result<()> {
        let p = self.policy;
        write!(
            out,
            "RateLimit-Policy: \"{p}\";q={};w={}\r\n\
             RateLimit: \"{p}\";r={};t={}\r\n\
             X-RateLimit-Limit: {}\r\n\
             X-RateLimit-Remaining: {}\r\n\
             X-RateLimit-Reset: {}\r\n",
            self.limit, self.window_s, self.remaining, self.reset_s, self.limit, self.remaining, self.reset_s
        )?;
        if let Some(secs) = self.retry_after_s {
            write!(out, "Retry-After: {secs}\r\n")?;
        }
        Ok(())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn limited_decision_renders_all_headers() {
        let quota = Quota::new(1000, 1000).expect("valid");
        let decision =
            Decision::Limited { retry_after: Duration::from_millis(2_001), reset_after: Duration::from_millis(2_500) };
        let headers = RateLimitHeaders::from_decision(&decision, quota, "default");
        let mut out = Vec::new();
        headers.write_to(&mut out).expect("vec write");
        assert_eq!(
            String::from_utf8(out).expect("ascii"),
            "RateLimit-Policy: \"default\";q=1000;w=1\r\n\
             RateLimit: \"default\";r=0;t=3\r\n\
             X-RateLimit-Limit: 1000\r\n\
             X-RateLimit-Remaining: 0\r\n\
             X-RateLimit-Reset: 3\r\n\
             Retry-After: 3\r\n"
        );
    }

    #[test]
    fn allowed_decision_has_no_retry_after_and_window_is_refill_time() {
        let quota = Quota::new(100_000, 200_000).expect("valid");
        let decision = Decision::Allowed { remaining: 199_990, reset_after: Duration::from_micros(100) };
        let headers = RateLimitHeaders::from_decision(&decision, quota, "client");
        assert_eq!(headers.window_s, 2);
        assert_eq!(headers.reset_s, 1);
        assert_eq!(headers.retry_after_s, None);
        let mut out = Vec::new();
        headers.write_to(&mut out).expect("vec write");
        let text = String::from_utf8(out).expect("ascii");
        assert!(text.contains("RateLimit: \"client\";r=199990;t=1\r\n"));
        assert!(!text.contains("Retry-After"));
    }

    #[test]
    fn sub_second_retry_rounds_up_to_one() {
        let quota = Quota::new(1_000_000, 10).expect("valid");
        let decision =
            Decision::Limited { retry_after: Duration::from_nanos(1_000), reset_after: Duration::from_nanos(10_000) };
        let headers = RateLimitHeaders::from_decision(&decision, quota, "default");
        assert_eq!(headers.retry_after_s, Some(1));
        assert_eq!(headers.window_s, 1);
    }
}
