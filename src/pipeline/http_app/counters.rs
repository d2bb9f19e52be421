//! The HTTP application's per-worker counters: requests and responses by
//! class, records by outcome, and the gauges of the buffer pools and the
//! body-memory budget. Plain integers: the worker publishes a copy.

use serde::Serialize;

/// Per-worker HTTP counters (plain; the worker publishes them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct HttpCounters {
    pub connections_accepted: u64,
    pub connections_closed: u64,
    pub requests: u64,
    pub requests_write: u64,
    pub requests_json: u64,
    /// `POST /api/v1/write` (Prometheus remote_write) requests.
    pub requests_remote_write: u64,
    /// remote_write samples stored as records.
    pub remote_write_samples: u64,
    /// remote_write native histograms dropped (not stored; counted only).
    pub remote_write_dropped_histograms: u64,
    /// remote_write exemplars dropped (not stored; counted only).
    pub remote_write_dropped_exemplars: u64,
    /// remote_write NaN/Inf samples dropped (NaN is the staleness marker;
    /// line protocol has no non-finite floats).
    pub remote_write_dropped_non_finite: u64,
    /// remote_write samples of series line protocol cannot represent (no
    /// `__name__`, control characters, duplicate labels, timestamp overflow).
    pub remote_write_dropped_unrepresentable: u64,
    pub requests_other: u64,
    /// Protocol errors the connection answered itself (400/408/413/431/...).
    pub protocol_errors: u64,
    pub responses_2xx: u64,
    pub responses_400: u64,
    pub responses_401: u64,
    pub responses_404_405: u64,
    pub responses_413: u64,
    pub responses_429: u64,
    pub responses_503: u64,
    /// Insufficient storage: the log's disk is full.
    pub responses_507: u64,
    pub responses_other: u64,
    pub records_accepted: u64,
    pub records_limited: u64,
    /// Write requests whose self-chosen client name (`X-Client-Id`, JSON
    /// `client_id`) was ignored: auth off and the peer not a trusted source;
    /// the limiter keyed them by address instead.
    pub client_names_ignored: u64,
    /// Records in batches refused whole for an invalid line.
    pub records_rejected: u64,
    /// Invalid lines in line-protocol bodies (refused whole or skipped).
    pub lines_invalid: u64,
    /// Write requests whose valid lines were written while bad ones were
    /// skipped (`partial_writes`, v3 `accept_partial`): answered 400 once written.
    pub partial_writes: u64,
    /// `/query` requests refused (not `CREATE DATABASE` / `SHOW DATABASES`).
    pub queries_refused: u64,
    /// `CREATE DATABASE` names beyond the listed cap (answered 200, not listed).
    pub databases_not_listed: u64,
    /// Records of requests answered 503 (writer behind) after earlier batches
    /// of their body had been handed to the writer: written, and a retry may
    /// duplicate them (at-least-once). Only bodies spanning batches.
    pub records_handed_over_then_refused: u64,
    /// Records of durable requests answered 507/503 because a storage fault
    /// kept their batch from becoming durable (they may be in the log: a
    /// retry may duplicate them, at-least-once; see `writer_records_lost`).
    pub records_lost_to_storage: u64,
    pub body_bytes: u64,
    /// Write requests answered 2xx once their records were durable (the
    /// server's `ack = "durable"` or the request's own choice).
    pub requests_acked_durable: u64,
    /// Write requests answered 2xx once their records were handed to the
    /// writer, before any sync (`ack = "enqueued"`, `no_sync=true`, or
    /// `X-Metricsstream-Ack: enqueued`).
    pub requests_acked_enqueued: u64,
    /// Responses held for durability right now.
    pub held: u64,
    // Buffer pools (gauges, except `*_allocations`; summed over workers,
    // `*_high_water` is the sum of the workers' highs). Each pool balances:
    // allocated == in_use + free; in_use returns to 0 when connections are
    // idle or closed (batches: once the writer caught up).
    /// Request buffers (head + body, de-chunked, inflated) lent to connections.
    pub body_buffers_in_use: u64,
    pub body_buffers_allocated: u64,
    pub body_buffers_free: u64,
    pub body_buffers_high_water: u64,
    /// Request buffers ever allocated (flat in steady state).
    pub body_buffer_allocations: u64,
    /// Response buffers (output, body formatting) lent to connections.
    pub response_buffers_in_use: u64,
    pub response_buffers_allocated: u64,
    pub response_buffers_free: u64,
    pub response_buffers_high_water: u64,
    pub response_buffer_allocations: u64,
    /// gzip/deflate inflaters lent to connections (a body being inflated).
    pub inflaters_in_use: u64,
    pub inflaters_allocated: u64,
    pub inflaters_free: u64,
    pub inflaters_high_water: u64,
    pub inflater_allocations: u64,
    /// zstd decoders lent to connections (a zstd body being decoded).
    pub zstd_decoders_in_use: u64,
    pub zstd_decoders_allocated: u64,
    pub zstd_decoders_free: u64,
    pub zstd_decoders_high_water: u64,
    pub zstd_decoder_allocations: u64,
    /// Writer batches held by the application or in flight to the writer.
    pub batches_in_use: u64,
    pub batches_allocated: u64,
    pub batches_free: u64,
    pub batches_high_water: u64,
    /// Body-memory budget bytes this worker's connections hold (gauge).
    pub body_budget_reserved_bytes: u64,
    /// Requests answered 503 because the body-memory budget was full.
    pub body_budget_refused: u64,
}

impl HttpCounters {
    pub(super) fn count_status(&mut self, status: u16) {
        match status {
            200..=299 => self.responses_2xx += 1,
            400 => self.responses_400 += 1,
            401 => self.responses_401 += 1,
            404 | 405 => self.responses_404_405 += 1,
            413 => self.responses_413 += 1,
            429 => self.responses_429 += 1,
            503 => self.responses_503 += 1,
            507 => self.responses_507 += 1,
            _ => self.responses_other += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_status_is_counted_in_its_one_class() {
        let mut c = HttpCounters::default();
        for status in [200, 202, 204, 400, 401, 404, 405, 413, 429, 503, 507, 408, 431, 500] {
            c.count_status(status);
        }
        let classes = [
            c.responses_2xx,
            c.responses_400,
            c.responses_401,
            c.responses_404_405,
            c.responses_413,
            c.responses_429,
            c.responses_503,
            c.responses_507,
            c.responses_other,
        ];
        assert_eq!(classes, [3, 1, 1, 2, 1, 1, 1, 1, 3]);
    }
}
