//! Protocol errors a [`Connection`](super::Connection) detects while reading a
//! request, and the status each one is answered with.

/// A request the connection refuses. The connection has already queued the
/// matching response (with `Connection: close`) when it yields this; the
/// application only counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("malformed request line or header")]
    BadRequestHead,
    /// The bytes before a request head cannot start an HTTP request (a
    /// non-token byte in the method, a control byte in the target, no line
    /// end within the header limit): refused as soon as that is visible,
    /// not after the header timeout.
    #[error("not an HTTP request line")]
    NotHttp,
    #[error("invalid Content-Length")]
    BadContentLength,
    #[error("both Content-Length and Transfer-Encoding present")]
    ConflictingFraming,
    #[error("malformed chunked encoding")]
    BadChunk,
    #[error("malformed gzip body")]
    BadGzip,
    #[error("malformed deflate body")]
    BadDeflate,
    #[error("malformed zstd body (or a zstd window beyond 8 MiB)")]
    BadZstd,
    #[error("request body larger than the configured limit")]
    BodyTooLarge,
    #[error("request header fields too large")]
    HeadersTooLarge,
    #[error("request head not received in time")]
    HeaderTimeout,
    #[error("request body stalled")]
    BodyTimeout,
    #[error("unsupported Content-Encoding (only gzip, deflate, zstd and identity)")]
    UnsupportedContentEncoding,
    #[error("unsupported Transfer-Encoding (only chunked)")]
    UnsupportedTransferEncoding,
    /// The global body-memory budget (`http.body_memory_budget_bytes`) has
    /// no room for this body now: 503 with `Retry-After`.
    #[error("body memory budget exhausted")]
    BodyBudgetExhausted,
}

impl HttpError {
    /// The HTTP status this error is answered with.
    pub fn status(self) -> u16 {
        match self {
            HttpError::BadRequestHead
            | HttpError::NotHttp
            | HttpError::BadContentLength
            | HttpError::ConflictingFraming
            | HttpError::BadChunk
            | HttpError::BadGzip
            | HttpError::BadDeflate
            | HttpError::BadZstd => 400,
            HttpError::BodyTooLarge => 413,
            HttpError::HeadersTooLarge => 431,
            HttpError::HeaderTimeout | HttpError::BodyTimeout => 408,
            HttpError::UnsupportedContentEncoding => 415,
            HttpError::UnsupportedTransferEncoding => 501,
            HttpError::BodyBudgetExhausted => 503,
        }
    }

    /// The InfluxDB-style error code for the JSON body (`{"code":...}`), so
    /// Influx clients show a familiar error.
    pub fn code(self) -> &'static str {
        match self.status() {
            400 => "invalid",
            413 => "request too large",
            431 => "request header fields too large",
            408 => "request timeout",
            415 => "unsupported media type",
            503 => "unavailable",
            _ => "not implemented",
        }
    }
}
