//! The output side: answering the yielded request (keep-alive or close),
//! error responses, graceful shutdown, and draining the output buffer.

use super::{Connection, Phase};
use crate::http::{HttpError, Response};

impl Connection {
    /// Answers the yielded request: serialises `response` into the output and
    /// moves on to the next pipelined request. Ignored (and a debug assertion)
    /// when no request is waiting for an answer.
    pub fn respond(&mut self, response: &Response) {
        debug_assert_eq!(self.phase, Phase::Dispatched, "respond without a yielded request");
        if self.phase != Phase::Dispatched {
            return;
        }
        let close = !self.head.keep_alive || response.close || self.closing;
        let connection = if close {
            Some("close")
        } else if self.head.minor == 0 {
            Some("keep-alive")
        } else {
            None
        };
        response.write_to(&mut self.output, &mut self.scratch, self.head.is_head, connection);
        self.finish_request();
        self.restart_clock = true;
        if close {
            self.phase = Phase::Done;
            self.input.clear();
        } else {
            self.phase = Phase::Head;
            self.advance();
            // After the peer's FIN, complete pipelined requests are still
            // answered; a partial one never completes.
            if self.peer_closed && matches!(self.phase, Phase::Head | Phase::Body) {
                self.phase = Phase::Done;
            }
        }
    }

    /// Graceful shutdown: a request being received or answered still gets its
    /// response, with `Connection: close`, then the connection closes. An idle
    /// one (nothing received of a next request) closes at the next
    /// [`Connection::wants_close`], which the caller asks after offering what
    /// the socket had received: a request that arrived with the signal is
    /// answered, not cut off.
    pub fn shut_down(&mut self) {
        self.closing = true;
    }

    /// Bytes waiting to be sent.
    pub fn take_output(&self) -> &[u8] {
        &self.output[self.out_pos..]
    }

    /// `n` bytes of [`Connection::take_output`] were sent.
    pub fn consume_output(&mut self, n: usize) {
        self.out_pos = (self.out_pos + n).min(self.output.len());
        if self.out_pos == self.output.len() {
            self.output.clear();
            self.out_pos = 0;
        }
    }

    /// The connection is finished (any error already yielded, or idle after
    /// [`Connection::shut_down`]: decided here, once, and later input is
    /// discarded) and its output flushed: close it (FIN, then keep reading
    /// and discarding briefly, so unread request bytes do not turn into an
    /// RST that eats the response).
    pub fn wants_close(&mut self) -> bool {
        if self.closing && self.phase == Phase::Head && self.input.is_empty() {
            self.phase = Phase::Done;
        }
        self.phase == Phase::Done && self.out_pos == self.output.len()
    }

    /// Queues the error response and stops reading requests.
    pub(super) fn fail(&mut self, error: HttpError) {
        let mut r = Response::error(error.status(), error.code(), error_message(error));
        if error == HttpError::BodyBudgetExhausted {
            r = r.with_raw_headers(b"Retry-After: 1\r\n");
        }
        // InfluxDB 1.x (and 3) clients read `{"error"}`: the request line,
        // still in the input when there is one, says which API was asked.
        if crate::http::routes::request_line_path(&self.input).is_some_and(crate::http::routes::v1_error_shape) {
            r = r.v1_error_shape();
        }
        r.write_to(&mut self.output, &mut self.scratch, false, Some("close"));
        self.input.clear();
        self.release_body();
        self.phase = Phase::Failed(error);
    }
}

fn error_message(error: HttpError) -> &'static str {
    match error {
        HttpError::BadRequestHead => "malformed request line or header",
        HttpError::NotHttp => {
            "not an HTTP request line: the method must be a token of at most 32 bytes, then a target, \
             then HTTP/1.0 or HTTP/1.1, ended by CRLF within the header limit"
        }
        HttpError::BadContentLength => "invalid Content-Length",
        HttpError::ConflictingFraming => "both Content-Length and Transfer-Encoding present",
        HttpError::BadChunk => "malformed chunked encoding",
        HttpError::BadGzip => "malformed gzip body",
        HttpError::BadDeflate => "malformed deflate body",
        HttpError::BadZstd => "malformed zstd body, or its window is beyond 8 MiB",
        HttpError::BodyTooLarge => "request body larger than the configured limit",
        HttpError::HeadersTooLarge => "request header fields too large or too many",
        HttpError::HeaderTimeout => "request head not received in time",
        HttpError::BodyTimeout => "request body stalled",
        HttpError::UnsupportedContentEncoding => "unsupported Content-Encoding: only gzip, deflate, zstd and identity",
        HttpError::UnsupportedTransferEncoding => "unsupported Transfer-Encoding: only chunked",
        HttpError::BodyBudgetExhausted => "the appliance holds too many request bodies right now; retry later",
    }
}
