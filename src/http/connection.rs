//! One HTTP/1.1 server connection as a sans-IO state machine.
//!
//! The TCP layer feeds received bytes ([`Connection::receive`]), drains output
//! ([`Connection::take_output`] / [`Connection::consume_output`]) and closes
//! when [`Connection::wants_close`]. The application polls
//! ([`Connection::poll_request`]) and answers each request with
//! [`Connection::respond`], possibly later (`ack = durable`): the next
//! pipelined request is not yielded before the current one is answered, so
//! responses leave in request order.
//!
//! Memory: the current request (head + body) lives contiguously in one input
//! `Vec`, plus at most `max_header_bytes` of look-ahead; `receive` accepts
//! only what fits and the TCP layer keeps the rest in its receive window
//! (backpressure). Chunked bodies are de-chunked into a body `Vec`, gzip
//! bodies inflated into it, both capped at `max_body_bytes` (checked on the
//! decompressed size too). All buffers are kept across keep-alive requests and
//! shrunk after the connection has been idle for a second, if they grew large.
//!
//! Pooled mode ([`Connection::pooled`], what the worker uses): the buffers
//! are lent by the worker's [`ConnectionPools`] ([`Connection::attach_buffers`]
//! before feeding or answering, [`Connection::return_buffers`] after), so an
//! idle keep-alive connection holds none. A body that needs a de-chunk or
//! inflate buffer the connection does not hold waits ([`Connection::needs_buffers`])
//! until the next `attach_buffers`. With a [`BodyBudget`]
//! ([`Connection::with_budget`]) body bytes are reserved from the global
//! budget and a body that does not fit is answered 503.

use super::{BodyBudget, ConnectionPools, HttpConfig, HttpError, Response};
use std::sync::Arc;

/// More header fields than this is answered 431.
pub const MAX_HEADERS: usize = 64;
/// Buffers larger than this are shrunk when the connection is idle.
const SHRINK_ABOVE: usize = 64 << 10;
/// How long a connection must be idle before its buffers are shrunk.
const IDLE_SHRINK_NS: u64 = 1_000_000_000;
/// A request is not yielded while more response bytes than this wait to be
/// sent: a pipelining client that does not read cannot grow the output.
const OUTPUT_HIGH_WATER: usize = 64 << 10;
/// Inflate output grows in steps of this (until the body limit).
const INFLATE_STEP: usize = 32 << 10;
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
/// The buffers a pooled connection borrows, as bits of `Connection::lent`.
const INPUT: u8 = 1;
const DECODED: u8 = 2;
const COMPRESSED: u8 = 4;
const OUTPUT: u8 = 8;
const SCRATCH: u8 = 16;
const ALL_BUFFERS: [u8; 5] = [INPUT, DECODED, COMPRESSED, OUTPUT, SCRATCH];
/// Not a buffer: the gzip inflater, lent by the inflater pool.
const INFLATER: u8 = 32;
const NS_PER_MS: u64 = 1_000_000;

/// What [`Connection::poll_request`] yields.
#[must_use]
#[derive(Debug)]
pub enum Event<'c> {
    /// A complete request (head and decoded body). Answer it with
    /// [`Connection::respond`], now or later; it stays readable through
    /// [`Connection::request`] until then.
    Request(RequestRef<'c>),
    /// A protocol error. The error response (with `Connection: close`) is
    /// already queued; the connection reads no more requests. Do not respond.
    Error(HttpError),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    /// The span of `part`, a sub-slice of `buf`.
    fn of(buf: &[u8], part: &[u8]) -> Span {
        let start = (part.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
        debug_assert!(start <= buf.len() && part.len() <= buf.len() - start, "span outside the buffer");
        Span { start: start as u32, end: (start + part.len()) as u32 }
    }

    fn get(self, buf: &[u8]) -> &[u8] {
        buf.get(self.start as usize..self.end as usize).unwrap_or(&[])
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkState {
    /// Expecting `hex-size [;ext...] CRLF`.
    Size,
    /// This many data bytes of the current chunk remain.
    Data(usize),
    /// Expecting the CRLF after chunk data.
    DataEnd,
    /// Expecting trailer fields or the final CRLF.
    Trailer,
}

/// The parsed request head, as spans into the input buffer.
#[derive(Clone, Copy, Debug)]
struct Head {
    len: usize,
    method: Span,
    path: Span,
    query: Span,
    minor: u8,
    headers: [(Span, Span); MAX_HEADERS],
    n_headers: usize,
    keep_alive: bool,
    expect_continue: bool,
    gzip: bool,
    is_head: bool,
    framing: Framing,
}

impl Head {
    const EMPTY: Head = Head {
        len: 0,
        method: Span { start: 0, end: 0 },
        path: Span { start: 0, end: 0 },
        query: Span { start: 0, end: 0 },
        minor: 1,
        headers: [(Span { start: 0, end: 0 }, Span { start: 0, end: 0 }); MAX_HEADERS],
        n_headers: 0,
        keep_alive: true,
        expect_continue: false,
        gzip: false,
        is_head: false,
        framing: Framing::Length(0),
    };
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Reading a request head starting at `input[0]`.
    Head,
    /// Head parsed; reading the body.
    Body,
    /// A complete request waits to be yielded.
    Ready,
    /// Yielded; waiting for `respond`.
    Dispatched,
    /// An error was found and answered; it waits to be yielded.
    Failed(HttpError),
    /// No further requests: close once the output is flushed.
    Done,
}

/// Where the current request's body is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BodyAt {
    Input(Span),
    Decoded,
}

/// One HTTP/1.1 server connection. See the module documentation.
pub struct Connection {
    max_body: usize,
    max_header: usize,
    idle_timeout_ns: u64,
    header_timeout_ns: u64,
    phase: Phase,
    head: Head,
    body_at: BodyAt,
    /// End of the current request in `input` (start of the next one).
    req_end: usize,
    chunk: ChunkState,
    /// Decode position in `input` while de-chunking.
    chunk_pos: usize,
    /// Trailer bytes seen so far (bounded by `max_header`).
    trailer_bytes: usize,
    /// How far `input` was searched for the end of the head.
    scanned: usize,
    peer_closed: bool,
    input: Vec<u8>,
    /// De-chunked and/or inflated body.
    decoded: Vec<u8>,
    /// De-chunked gzip bytes (chunked + gzip only).
    compressed: Vec<u8>,
    output: Vec<u8>,
    out_pos: usize,
    /// Formatting space for response bodies.
    scratch: Vec<u8>,
    inflater: Option<flate2::Decompress>,
    /// Start of the current request head (header timeout).
    head_started_ns: u64,
    /// Last input or last response (idle timeout).
    last_activity_ns: u64,
    /// Restart both clocks at the next call that knows the time.
    restart_clock: bool,
    /// Graceful shutdown: the next response closes the connection.
    closing: bool,
    /// Buffers come from the worker's pools (see the module documentation).
    pooled: bool,
    /// Which buffers (bits) are lent by the pools right now.
    lent: u8,
    budget: Option<Arc<BodyBudget>>,
    /// Bytes of the budget this connection holds for the current request.
    reserved: usize,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.release_body();
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("phase", &self.phase)
            .field("input", &self.input.len())
            .field("output", &(self.output.len() - self.out_pos))
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// A new connection accepted at `now_ns`. Allocates nothing until bytes arrive.
    pub fn new(config: &HttpConfig, now_ns: u64) -> Connection {
        Connection {
            // Clamped to what HttpConfig::validate allows, so spans fit u32
            // even for an unvalidated config.
            max_body: config.max_body_bytes.clamp(1, 1 << 30),
            max_header: config.max_header_bytes.clamp(256, 1 << 20),
            idle_timeout_ns: config.idle_timeout_ms.saturating_mul(NS_PER_MS),
            header_timeout_ns: config.header_timeout_ms.saturating_mul(NS_PER_MS),
            phase: Phase::Head,
            head: Head::EMPTY,
            body_at: BodyAt::Decoded,
            req_end: 0,
            chunk: ChunkState::Size,
            chunk_pos: 0,
            trailer_bytes: 0,
            scanned: 0,
            peer_closed: false,
            input: Vec::new(),
            decoded: Vec::new(),
            compressed: Vec::new(),
            output: Vec::new(),
            out_pos: 0,
            scratch: Vec::new(),
            inflater: None,
            head_started_ns: now_ns,
            last_activity_ns: now_ns,
            restart_clock: false,
            closing: false,
            pooled: false,
            lent: 0,
            budget: None,
            reserved: 0,
        }
    }

    /// Buffers come from the worker's pools: see [`Connection::attach_buffers`].
    pub fn pooled(mut self) -> Connection {
        self.pooled = true;
        self
    }

    /// Request bodies reserve their bytes from `budget` (503 when it is full).
    pub fn with_budget(mut self, budget: Arc<BodyBudget>) -> Connection {
        self.budget = Some(budget);
        self
    }

    /// Bytes of the body budget this connection holds now.
    pub fn reserved_body_bytes(&self) -> usize {
        self.reserved
    }

    /// The buffers the current phase can write to.
    fn wanted_buffers(&self) -> u8 {
        let mut wanted = INPUT | OUTPUT | SCRATCH;
        if matches!(self.phase, Phase::Body | Phase::Ready | Phase::Dispatched) {
            let chunked = self.head.framing == Framing::Chunked;
            if chunked || self.head.gzip {
                wanted |= DECODED;
            }
            if chunked && self.head.gzip {
                wanted |= COMPRESSED;
            }
            if self.head.gzip {
                wanted |= INFLATER;
            }
        }
        wanted
    }

    /// Pooled mode: a body is waiting for a de-chunk/inflate buffer; call
    /// [`Connection::attach_buffers`] (which resumes it), then offer the
    /// bytes `receive` did not take again.
    pub fn needs_buffers(&self) -> bool {
        self.pooled
            && self.phase == Phase::Body
            && self.wanted_buffers() & !self.lent & (DECODED | COMPRESSED | INFLATER) != 0
    }

    fn buffer_mut(&mut self, bit: u8) -> &mut Vec<u8> {
        match bit {
            INPUT => &mut self.input,
            DECODED => &mut self.decoded,
            COMPRESSED => &mut self.compressed,
            OUTPUT => &mut self.output,
            _ => &mut self.scratch,
        }
    }

    /// Borrows from `pools` the buffers this connection may write to before
    /// the next `return_buffers` (call it before `receive`, `respond`,
    /// `poll_timeout`, ...), and resumes a body that waited for one.
    pub fn attach_buffers(&mut self, pools: &mut ConnectionPools) {
        let missing = self.wanted_buffers() & !self.lent;
        for bit in ALL_BUFFERS {
            if missing & bit != 0 && self.buffer_mut(bit).capacity() == 0 {
                let pool = if bit & (OUTPUT | SCRATCH) != 0 { &mut pools.response } else { &mut pools.body };
                *self.buffer_mut(bit) = pool.take();
                self.lent |= bit;
            }
        }
        if missing & INFLATER != 0 && self.inflater.is_none() {
            self.inflater = Some(pools.inflaters.take());
            self.lent |= INFLATER;
        }
        if self.phase == Phase::Body {
            self.advance();
        }
    }

    /// Gives back to `pools` the lent buffers that hold nothing needed now:
    /// request buffers between requests, the output once sent, the scratch
    /// space always.
    pub fn return_buffers(&mut self, pools: &mut ConnectionPools) {
        let busy = matches!(self.phase, Phase::Body | Phase::Ready | Phase::Dispatched);
        for bit in ALL_BUFFERS {
            if self.lent & bit == 0 {
                continue;
            }
            let idle = match bit {
                OUTPUT => self.output.is_empty(),
                SCRATCH => true,
                _ => !busy && self.buffer_mut(bit).is_empty(),
            };
            if idle {
                self.give_back(bit, pools);
            }
        }
        if !busy {
            self.give_back_inflater(pools);
        }
    }

    fn give_back_inflater(&mut self, pools: &mut ConnectionPools) {
        if self.lent & INFLATER != 0 {
            if let Some(inflater) = self.inflater.take() {
                pools.inflaters.give(inflater);
            }
            self.lent &= !INFLATER;
        }
    }

    /// Gives every lent buffer back (the connection is closing).
    pub fn release_buffers(&mut self, pools: &mut ConnectionPools) {
        for bit in ALL_BUFFERS {
            if self.lent & bit != 0 {
                self.give_back(bit, pools);
            }
        }
        self.give_back_inflater(pools);
        self.out_pos = 0;
    }

    fn give_back(&mut self, bit: u8, pools: &mut ConnectionPools) {
        let buf = std::mem::take(self.buffer_mut(bit));
        let pool = if bit & (OUTPUT | SCRATCH) != 0 { &mut pools.response } else { &mut pools.body };
        pool.give(buf);
        self.lent &= !bit;
    }

    /// Reserves `n` more body bytes from the budget, if there is one.
    fn reserve_body(&mut self, n: usize) -> Result<(), HttpError> {
        reserve(self.budget.as_deref(), &mut self.reserved, n)
    }

    fn release_body(&mut self) {
        if let Some(budget) = &self.budget {
            if self.reserved > 0 {
                budget.release(self.reserved);
            }
        }
        self.reserved = 0;
    }

    /// Most bytes the input buffer ever holds: one maximal request plus the
    /// look-ahead. Its capacity never exceeds this.
    pub fn input_limit(&self) -> usize {
        self.max_header * 2 + self.max_body
    }

    /// Capacity of the body buffers never exceeds this.
    pub fn body_limit(&self) -> usize {
        self.max_body + 1
    }

    /// Offers received bytes; returns how many were taken. The rest must stay
    /// in the TCP receive buffer and be offered again later (after the
    /// application answered, or output drained): this is the backpressure
    /// that keeps the input buffer bounded. After an error or close decision
    /// input is discarded (all of it is "taken").
    #[must_use = "bytes not taken must be offered again"]
    pub fn receive(&mut self, mut bytes: &[u8], now_ns: u64) -> usize {
        let total = bytes.len();
        self.restart_clock_at(now_ns);
        if !bytes.is_empty() {
            self.last_activity_ns = now_ns;
        }
        loop {
            if matches!(self.phase, Phase::Failed(_) | Phase::Done) {
                return total;
            }
            let room = self.window().saturating_sub(self.input.len());
            let n = room.min(bytes.len());
            if n == 0 {
                return total - bytes.len();
            }
            if self.phase == Phase::Head && self.input.is_empty() {
                self.head_started_ns = now_ns;
            }
            let limit = self.input_limit();
            reserve_bounded(&mut self.input, n, limit);
            self.input.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            self.advance();
        }
    }

    /// The peer sent FIN (call it once all received bytes were taken): no
    /// more input. A partial request is abandoned; complete ones (the one
    /// being answered and pipelined ones) are still answered, then the
    /// connection closes.
    pub fn receive_eof(&mut self) {
        self.peer_closed = true;
        match self.phase {
            Phase::Head | Phase::Body => self.phase = Phase::Done,
            _ => {}
        }
    }

    /// Yields the next complete request or protocol error, after checking
    /// timeouts. Returns `None` while a yielded request is unanswered.
    #[must_use]
    pub fn poll_request(&mut self, now_ns: u64) -> Option<Event<'_>> {
        self.poll_timeout(now_ns);
        match self.phase {
            Phase::Failed(e) => {
                self.phase = Phase::Done;
                Some(Event::Error(e))
            }
            Phase::Ready if self.output.len() - self.out_pos <= OUTPUT_HIGH_WATER => {
                self.phase = Phase::Dispatched;
                Some(Event::Request(RequestRef { conn: self }))
            }
            _ => None,
        }
    }

    /// The request yielded and not yet answered, if any.
    pub fn request(&self) -> Option<RequestRef<'_>> {
        (self.phase == Phase::Dispatched).then_some(RequestRef { conn: self })
    }

    /// Whether a yielded request waits for [`Connection::respond`].
    pub fn awaiting_response(&self) -> bool {
        self.phase == Phase::Dispatched
    }

    /// Applies the header timeout (408), the stalled-body timeout (408) and the
    /// idle timeout (silent close: a 408 on an idle keep-alive connection
    /// would race the client's next request), and shrinks buffers of an idle
    /// connection. A request being answered by the application never times out.
    pub fn poll_timeout(&mut self, now_ns: u64) {
        self.restart_clock_at(now_ns);
        match self.next_deadline_ns() {
            Some(deadline) if now_ns >= deadline => {}
            _ => return,
        }
        match self.phase {
            Phase::Head if !self.input.is_empty() => self.fail(HttpError::HeaderTimeout),
            Phase::Head => {
                if now_ns.saturating_sub(self.last_activity_ns) >= self.idle_timeout_ns {
                    self.phase = Phase::Done;
                }
                self.release_memory();
            }
            Phase::Body => self.fail(HttpError::BodyTimeout),
            _ => {}
        }
    }

    /// When [`Connection::poll_timeout`] next has something to do, if ever.
    pub fn next_deadline_ns(&self) -> Option<u64> {
        if self.restart_clock {
            return None;
        }
        match self.phase {
            Phase::Head if !self.input.is_empty() => Some(self.head_started_ns.saturating_add(self.header_timeout_ns)),
            Phase::Head => {
                let shrink = self.last_activity_ns.saturating_add(IDLE_SHRINK_NS);
                let idle = self.last_activity_ns.saturating_add(self.idle_timeout_ns);
                Some(if self.holds_large_buffers() { shrink.min(idle) } else { idle })
            }
            Phase::Body => Some(self.last_activity_ns.saturating_add(self.idle_timeout_ns)),
            _ => None,
        }
    }

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

    /// Frees buffers that grew beyond 64 KiB (and the inflater) while no
    /// request is in progress (a no-op otherwise). Called by
    /// [`Connection::poll_timeout`] after a second of idleness.
    pub fn release_memory(&mut self) {
        if !matches!(self.phase, Phase::Head | Phase::Done) {
            return;
        }
        // Lent buffers go back to their pool instead (`return_buffers`).
        for bit in ALL_BUFFERS {
            if self.lent & bit == 0 {
                let v = self.buffer_mut(bit);
                if v.is_empty() && v.capacity() > SHRINK_ABOVE {
                    *v = Vec::new();
                }
            }
        }
        if self.lent & INFLATER == 0 {
            self.inflater = None;
        }
    }

    /// Whether [`Connection::release_memory`] would free something.
    fn holds_large_buffers(&self) -> bool {
        let large = |bit: u8, v: &Vec<u8>| self.lent & bit == 0 && v.is_empty() && v.capacity() > SHRINK_ABOVE;
        (self.inflater.is_some() && self.lent & INFLATER == 0)
            || large(INPUT, &self.input)
            || large(OUTPUT, &self.output)
            || large(DECODED, &self.decoded)
            || large(COMPRESSED, &self.compressed)
            || large(SCRATCH, &self.scratch)
    }

    fn restart_clock_at(&mut self, now_ns: u64) {
        if self.restart_clock {
            self.restart_clock = false;
            self.last_activity_ns = now_ns;
            self.head_started_ns = now_ns;
        }
    }

    /// How many bytes `input` may hold in the current phase.
    fn window(&self) -> usize {
        match self.phase {
            Phase::Head => self.max_header,
            Phase::Body => match self.head.framing {
                Framing::Length(n) => self.head.len + n,
                Framing::Chunked => self.chunk_pos + self.max_header,
            },
            Phase::Ready | Phase::Dispatched => self.req_end + self.max_header,
            Phase::Failed(_) | Phase::Done => 0,
        }
    }

    /// Drops the answered request's bytes and per-request state.
    fn finish_request(&mut self) {
        let end = self.req_end.min(self.input.len());
        self.input.drain(..end);
        self.req_end = 0;
        self.decoded.clear();
        self.compressed.clear();
        self.head = Head::EMPTY;
        self.chunk = ChunkState::Size;
        self.chunk_pos = 0;
        self.trailer_bytes = 0;
        self.scanned = 0;
        self.release_body();
    }

    /// Queues the error response and stops reading requests.
    fn fail(&mut self, error: HttpError) {
        let mut r = Response::error(error.status(), error.code(), error_message(error));
        if error == HttpError::BodyBudgetExhausted {
            r = r.with_raw_headers(b"Retry-After: 1\r\n");
        }
        r.write_to(&mut self.output, &mut self.scratch, false, Some("close"));
        self.input.clear();
        self.release_body();
        self.phase = Phase::Failed(error);
    }

    /// Moves the state machine as far as the buffered input allows.
    fn advance(&mut self) {
        loop {
            match self.phase {
                Phase::Head => {
                    if self.input.is_empty() {
                        return;
                    }
                    match self.parse_head() {
                        Ok(false) => return,
                        Ok(true) => self.phase = Phase::Body,
                        Err(e) => return self.fail(e),
                    }
                }
                Phase::Body => {
                    if self.needs_buffers() {
                        return; // resumed by attach_buffers
                    }
                    let complete = match self.head.framing {
                        Framing::Length(n) => Ok(self.input.len() >= self.head.len + n),
                        Framing::Chunked => self.dechunk(),
                    };
                    match complete.and_then(|done| if done { self.finish_body().map(|()| true) } else { Ok(false) }) {
                        Ok(true) => self.phase = Phase::Ready,
                        Ok(false) => return,
                        Err(e) => return self.fail(e),
                    }
                }
                _ => return,
            }
        }
    }

    /// Parses the head at `input[0..]`: `Ok(true)` when complete (and
    /// acceptable), `Ok(false)` when more bytes are needed.
    fn parse_head(&mut self) -> Result<bool, HttpError> {
        let full = self.input.len() >= self.max_header;
        // Only run the parser once the blank line ending the head is there (or
        // the limit is reached), so a head trickling in byte by byte costs
        // linear, not quadratic, time.
        let end_seen = has_head_end(&self.input[self.scanned.saturating_sub(2)..]);
        self.scanned = self.input.len();
        if !full && !end_seen {
            return Ok(false);
        }
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut fields);
        let len = match req.parse(&self.input) {
            Ok(httparse::Status::Complete(len)) if len <= self.max_header => len,
            Ok(httparse::Status::Complete(_)) => return Err(HttpError::HeadersTooLarge),
            Ok(httparse::Status::Partial) if full => return Err(HttpError::HeadersTooLarge),
            Ok(httparse::Status::Partial) => return Ok(false),
            Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadersTooLarge),
            Err(_) => return Err(HttpError::BadRequestHead),
        };
        let buf = &self.input[..];
        let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
            return Err(HttpError::BadRequestHead);
        };
        let mut head = Head::EMPTY;
        head.len = len;
        head.method = Span::of(buf, method.as_bytes());
        let (path, query) = target.split_once('?').unwrap_or((target, &target[target.len()..]));
        head.path = Span::of(buf, path.as_bytes());
        head.query = Span::of(buf, query.as_bytes());
        head.minor = minor;
        head.is_head = method == "HEAD";
        let (mut length, mut chunked, mut other_te) = (None::<usize>, false, false);
        let (mut close, mut keep_alive, mut bad_encoding) = (false, false, false);
        for (i, h) in req.headers.iter().enumerate() {
            head.headers[i] = (Span::of(buf, h.name.as_bytes()), Span::of(buf, h.value));
            let value = trim(h.value);
            if h.name.eq_ignore_ascii_case("content-length") {
                let n = parse_length(value).ok_or(HttpError::BadContentLength)?;
                if length.is_some_and(|l| l != n) {
                    return Err(HttpError::BadContentLength);
                }
                length = Some(n);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                for coding in value.split(|&b| b == b',').map(trim) {
                    if coding.eq_ignore_ascii_case(b"chunked") && !chunked {
                        chunked = true;
                    } else {
                        other_te = true;
                    }
                }
            } else if h.name.eq_ignore_ascii_case("content-encoding") {
                if value.eq_ignore_ascii_case(b"gzip") || value.eq_ignore_ascii_case(b"x-gzip") {
                    bad_encoding |= head.gzip;
                    head.gzip = true;
                } else if !value.eq_ignore_ascii_case(b"identity") {
                    bad_encoding = true;
                }
            } else if h.name.eq_ignore_ascii_case("connection") {
                for token in value.split(|&b| b == b',').map(trim) {
                    close |= token.eq_ignore_ascii_case(b"close");
                    keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            } else if h.name.eq_ignore_ascii_case("expect") {
                head.expect_continue = minor == 1 && value.eq_ignore_ascii_case(b"100-continue");
            }
        }
        head.n_headers = req.headers.len();
        head.keep_alive = !close && (minor == 1 || keep_alive);
        if length.is_some() && (chunked || other_te) {
            return Err(HttpError::ConflictingFraming);
        }
        if other_te {
            return Err(HttpError::UnsupportedTransferEncoding);
        }
        if bad_encoding {
            return Err(HttpError::UnsupportedContentEncoding);
        }
        head.framing = match length {
            Some(n) if n > self.max_body => return Err(HttpError::BodyTooLarge),
            Some(n) => Framing::Length(n),
            None if chunked => Framing::Chunked,
            None => Framing::Length(0),
        };
        if let Framing::Length(n @ 1..) = head.framing {
            self.reserve_body(n)?;
        }
        // 100 Continue once, only if a body is expected and none of it has
        // arrived yet (a client that did not wait needs none). A refused
        // request returned above, so it gets its final status instead.
        if head.expect_continue && self.input.len() == len && head.framing != Framing::Length(0) {
            self.output.extend_from_slice(CONTINUE);
        }
        self.head = head;
        self.chunk = ChunkState::Size;
        self.chunk_pos = len;
        Ok(true)
    }

    /// De-chunks what `input` holds after the head into the body buffer and
    /// drops the consumed bytes from `input`. `Ok(true)` when the last chunk
    /// and the trailers were read.
    fn dechunk(&mut self) -> Result<bool, HttpError> {
        let (max_body, max_line) = (self.max_body, self.max_header);
        let target = if self.head.gzip { &mut self.compressed } else { &mut self.decoded };
        let mut pos = self.chunk_pos;
        let mut done = false;
        let result = loop {
            let avail = &self.input[pos..];
            match self.chunk {
                ChunkState::Size => {
                    let Some(nl) = avail.iter().position(|&b| b == b'\n') else {
                        if avail.len() >= max_line {
                            break Err(HttpError::BadChunk);
                        }
                        break Ok(());
                    };
                    let size = match parse_chunk_size(&avail[..nl]) {
                        Some(size) => size,
                        None => break Err(HttpError::BadChunk),
                    };
                    if size > max_body - target.len() {
                        break Err(HttpError::BodyTooLarge);
                    }
                    if let Err(e) = reserve(self.budget.as_deref(), &mut self.reserved, size) {
                        break Err(e);
                    }
                    pos += nl + 1;
                    self.chunk = if size == 0 { ChunkState::Trailer } else { ChunkState::Data(size) };
                }
                ChunkState::Data(remaining) => {
                    let take = remaining.min(avail.len());
                    if take == 0 {
                        break Ok(());
                    }
                    reserve_bounded(target, take, max_body + 1);
                    target.extend_from_slice(&avail[..take]);
                    pos += take;
                    self.chunk =
                        if take == remaining { ChunkState::DataEnd } else { ChunkState::Data(remaining - take) };
                }
                ChunkState::DataEnd => {
                    if avail.len() < 2 {
                        break Ok(());
                    }
                    if &avail[..2] != b"\r\n" {
                        break Err(HttpError::BadChunk);
                    }
                    pos += 2;
                    self.chunk = ChunkState::Size;
                }
                ChunkState::Trailer => {
                    let Some(nl) = avail.iter().position(|&b| b == b'\n') else {
                        if self.trailer_bytes + avail.len() >= max_line {
                            break Err(HttpError::BadChunk);
                        }
                        break Ok(());
                    };
                    let line = &avail[..nl];
                    self.trailer_bytes += nl + 1;
                    if self.trailer_bytes > max_line || line.last() != Some(&b'\r') {
                        break Err(HttpError::BadChunk);
                    }
                    pos += nl + 1;
                    if line.len() == 1 {
                        done = true;
                        break Ok(());
                    }
                    if !line.contains(&b':') {
                        break Err(HttpError::BadChunk);
                    }
                }
            }
        };
        result?;
        // Drop the decoded framing so the input keeps only head + undecoded tail.
        self.input.drain(self.head.len..pos);
        self.chunk_pos = self.head.len;
        Ok(done)
    }

    /// The body is complete: locate it, inflating it if gzip.
    fn finish_body(&mut self) -> Result<(), HttpError> {
        let start = self.head.len;
        let raw = match self.head.framing {
            Framing::Length(n) => {
                self.req_end = start + n;
                Span { start: start as u32, end: (start + n) as u32 }
            }
            Framing::Chunked => {
                self.req_end = start;
                self.body_at = BodyAt::Decoded;
                if !self.head.gzip {
                    return Ok(());
                }
                Span::default()
            }
        };
        if !self.head.gzip {
            self.body_at = BodyAt::Input(raw);
            return Ok(());
        }
        let src = match self.head.framing {
            Framing::Length(_) => raw.get(&self.input),
            Framing::Chunked => &self.compressed[..],
        };
        let inflater = self.inflater.get_or_insert_with(|| flate2::Decompress::new(false));
        let (budget, reserved) = (self.budget.as_deref(), &mut self.reserved);
        gunzip(src, &mut self.decoded, inflater, self.max_body, &mut |n| reserve(budget, reserved, n))?;
        self.body_at = BodyAt::Decoded;
        Ok(())
    }
}

/// A request yielded by [`Connection::poll_request`], borrowed from the connection.
#[derive(Clone, Copy)]
pub struct RequestRef<'c> {
    conn: &'c Connection,
}

impl std::fmt::Debug for RequestRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestRef")
            .field("method", &self.method())
            .field("path", &self.path())
            .field("query", &self.query())
            .field("body_len", &self.body().len())
            .finish_non_exhaustive()
    }
}

impl<'c> RequestRef<'c> {
    fn text(&self, span: Span) -> &'c str {
        std::str::from_utf8(span.get(&self.conn.input)).unwrap_or("")
    }

    pub fn method(&self) -> &'c str {
        self.text(self.conn.head.method)
    }

    /// The path, without the query.
    pub fn path(&self) -> &'c str {
        self.text(self.conn.head.path)
    }

    /// The raw query string after `?` (empty if none), still percent-encoded.
    pub fn query(&self) -> &'c str {
        self.text(self.conn.head.query)
    }

    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub fn version_minor(&self) -> u8 {
        self.conn.head.minor
    }

    /// Whether the connection stays open after this request (unless the
    /// response says otherwise).
    pub fn keep_alive(&self) -> bool {
        self.conn.head.keep_alive
    }

    /// All header fields in order, names as sent.
    pub fn headers(&self) -> impl Iterator<Item = (&'c str, &'c [u8])> + 'c {
        let conn = self.conn;
        conn.head.headers[..conn.head.n_headers].iter().map(move |&(name, value)| {
            (std::str::from_utf8(name.get(&conn.input)).unwrap_or(""), trim(value.get(&conn.input)))
        })
    }

    /// The first field named `name` (ASCII case-insensitive), value trimmed.
    pub fn header(&self, name: &str) -> Option<&'c [u8]> {
        self.headers().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v)
    }

    /// [`RequestRef::header`] as UTF-8 text, `None` if absent or not UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&'c str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The body: de-chunked and gunzipped (`Content-Encoding: gzip`).
    pub fn body(&self) -> &'c [u8] {
        match self.conn.body_at {
            BodyAt::Input(span) => span.get(&self.conn.input),
            BodyAt::Decoded => &self.conn.decoded,
        }
    }
}

/// Grows `v` so `additional` more bytes fit, never beyond `cap` capacity
/// (callers never push past `cap`), doubling otherwise.
fn reserve_bounded(v: &mut Vec<u8>, additional: usize, cap: usize) {
    let need = v.len() + additional;
    if need <= v.capacity() {
        return;
    }
    let want = need.max(v.capacity() * 2).max(4096).min(cap).max(need);
    v.reserve_exact(want - v.len());
}

/// Whether `buf` contains the empty line ending a head (CRLF CRLF or LF LF).
fn has_head_end(buf: &[u8]) -> bool {
    buf.windows(2).enumerate().any(|(i, w)| w == b"\n\n" || (w == b"\n\r" && buf.get(i + 2) == Some(&b'\n')))
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(start, |e| e + 1);
    &v[start..end]
}

/// A Content-Length value: 1 to 18 ASCII digits, nothing else.
fn parse_length(v: &[u8]) -> Option<usize> {
    if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0usize, |n, &d| n.checked_mul(10)?.checked_add(usize::from(d - b'0')))
}

/// `hex-size [ws] [; ext] CR` (the LF already stripped): the size, at most 15
/// hex digits.
fn parse_chunk_size(line: &[u8]) -> Option<usize> {
    let line = line.strip_suffix(b"\r")?;
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 15 {
        return None;
    }
    let rest = &line[digits..];
    let rest_ok = rest.iter().all(|&b| b == b' ' || b == b'\t') || trim(rest).first() == Some(&b';');
    if !rest_ok || rest.iter().any(|&b| b < 0x20 && b != b'\t') {
        return None;
    }
    let hex = std::str::from_utf8(&line[..digits]).ok()?;
    usize::from_str_radix(hex, 16).ok()
}

/// Length of the gzip member header at the start of `src` (RFC 1952 §2.3).
fn gzip_header_len(src: &[u8]) -> Option<usize> {
    const FHCRC: u8 = 2;
    const FEXTRA: u8 = 4;
    const FNAME: u8 = 8;
    const FCOMMENT: u8 = 16;
    if src.len() < 10 || src[0] != 0x1f || src[1] != 0x8b || src[2] != 8 || src[3] & 0xe0 != 0 {
        return None;
    }
    let flags = src[3];
    let mut pos = 10;
    if flags & FEXTRA != 0 {
        let xlen = usize::from(u16::from_le_bytes([*src.get(pos)?, *src.get(pos + 1)?]));
        pos += 2 + xlen;
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            pos += src.get(pos..)?.iter().position(|&b| b == 0)? + 1;
        }
    }
    if flags & FHCRC != 0 {
        pos += 2;
    }
    (pos <= src.len()).then_some(pos)
}

/// Reserves `n` bytes from `budget` (if any) into `reserved`.
fn reserve(budget: Option<&BodyBudget>, reserved: &mut usize, n: usize) -> Result<(), HttpError> {
    if let Some(budget) = budget {
        if !budget.try_reserve(n) {
            return Err(HttpError::BodyBudgetExhausted);
        }
        *reserved += n;
    }
    Ok(())
}

/// Inflates the gzip members in `src` into `dst` (cleared first), refusing
/// output beyond `max` bytes without ever holding more than `max + 1`.
/// `reserve` is asked for every byte of `dst`'s capacity before it is
/// written to (the body-memory budget).
fn gunzip(
    mut src: &[u8],
    dst: &mut Vec<u8>,
    inflater: &mut flate2::Decompress,
    max: usize,
    reserve: &mut dyn FnMut(usize) -> Result<(), HttpError>,
) -> Result<(), HttpError> {
    use flate2::{FlushDecompress, Status};
    dst.clear();
    let mut reserved = 0;
    loop {
        src = &src[gzip_header_len(src).ok_or(HttpError::BadGzip)?..];
        inflater.reset(false);
        let member_start = dst.len();
        loop {
            if dst.len() > max {
                return Err(HttpError::BodyTooLarge);
            }
            reserve_bounded(dst, INFLATE_STEP.min(max + 1 - dst.len()), max + 1);
            if dst.capacity() > reserved {
                reserve(dst.capacity() - reserved)?;
                reserved = dst.capacity();
            }
            let (in_before, out_before) = (inflater.total_in(), dst.len());
            let status = inflater.decompress_vec(src, dst, FlushDecompress::None).map_err(|_| HttpError::BadGzip)?;
            let used = (inflater.total_in() - in_before) as usize;
            src = &src[used.min(src.len())..];
            if dst.len() > max {
                return Err(HttpError::BodyTooLarge);
            }
            match status {
                Status::StreamEnd => break,
                _ if used == 0 && dst.len() == out_before => return Err(HttpError::BadGzip),
                _ => {}
            }
        }
        let trailer = src.get(..8).ok_or(HttpError::BadGzip)?;
        let mut crc = flate2::Crc::new();
        crc.update(&dst[member_start..]);
        let want_crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
        let want_len = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
        if crc.sum() != want_crc || (dst.len() - member_start) as u32 != want_len {
            return Err(HttpError::BadGzip);
        }
        src = &src[8..];
        if src.is_empty() {
            return Ok(());
        }
    }
}

fn error_message(error: HttpError) -> &'static str {
    match error {
        HttpError::BadRequestHead => "malformed request line or header",
        HttpError::BadContentLength => "invalid Content-Length",
        HttpError::ConflictingFraming => "both Content-Length and Transfer-Encoding present",
        HttpError::BadChunk => "malformed chunked encoding",
        HttpError::BadGzip => "malformed gzip body",
        HttpError::BodyTooLarge => "request body larger than the configured limit",
        HttpError::HeadersTooLarge => "request header fields too large or too many",
        HttpError::HeaderTimeout => "request head not received in time",
        HttpError::BodyTimeout => "request body stalled",
        HttpError::UnsupportedContentEncoding => "unsupported Content-Encoding: only gzip and identity",
        HttpError::UnsupportedTransferEncoding => "unsupported Transfer-Encoding: only chunked",
        HttpError::BodyBudgetExhausted => "the appliance holds too many request bodies right now; retry later",
    }
}

/// Fuzz entry: the first bytes choose split points, the rest is fed as
/// received bytes in those pieces, with requests answered (some held) and
/// output drained. The first control byte's low bit chooses pooled mode with
/// a small body budget (buffers attached and returned around every call).
/// Panics only if an invariant breaks (buffers beyond their bounds, pool
/// counters out of balance, budget bytes not released).
pub fn fuzz_connection(data: &[u8]) {
    let config = HttpConfig { max_body_bytes: 4096, max_header_bytes: 512, ..HttpConfig::default() };
    let (control, mut bytes) = data.split_at(data.len().min(8));
    let pooled = control.first().is_some_and(|b| b & 1 == 1);
    let budget = Arc::new(BodyBudget::new(3000));
    let mut pools = ConnectionPools::new(4);
    let mut conn = Connection::new(&config, 0);
    if pooled {
        conn = conn.pooled().with_budget(Arc::clone(&budget));
    }
    let mut now = 0u64;
    let mut i = 0usize;
    while !bytes.is_empty() && !conn.wants_close() {
        let piece = usize::from(control.get(i % control.len().max(1)).copied().unwrap_or(7)) + 1;
        i += 1;
        if pooled {
            conn.attach_buffers(&mut pools);
        }
        let mut taken = conn.receive(&bytes[..piece.min(bytes.len())], now);
        while conn.needs_buffers() {
            conn.attach_buffers(&mut pools);
            taken += conn.receive(&bytes[taken..piece.min(bytes.len())], now);
        }
        bytes = &bytes[taken..];
        now += 1_000_000;
        loop {
            if conn.needs_buffers() {
                conn.attach_buffers(&mut pools);
            }
            match conn.poll_request(now) {
                Some(Event::Request(req)) => {
                    let _ = (req.method(), req.path(), req.query(), req.header("host"), req.body().len());
                    conn.respond(&Response::no_content());
                }
                Some(Event::Error(_)) => {}
                None => break,
            }
        }
        assert!(conn.input.capacity() <= conn.input_limit());
        assert!(conn.decoded.capacity() <= conn.body_limit());
        assert!(conn.compressed.capacity() <= conn.body_limit());
        let n = conn.take_output().len();
        conn.consume_output(n);
        if pooled {
            conn.return_buffers(&mut pools);
            assert_eq!(budget.reserved(), conn.reserved_body_bytes(), "one connection holds all reservations");
            for p in [pools.body.counters(), pools.response.counters()] {
                assert!(p.balanced(), "{p:?}");
            }
            assert!(pools.body.counters().in_use + pools.response.counters().in_use <= 5);
        }
        if taken == 0 && conn.take_output().is_empty() && !conn.awaiting_response() {
            break;
        }
    }
    conn.release_buffers(&mut pools);
    drop(conn);
    assert_eq!(budget.reserved(), 0, "budget released on close");
    assert_eq!((pools.body.counters().in_use, pools.response.counters().in_use), (0, 0));
    assert_eq!(pools.inflaters.counters().in_use, 0);
    assert!(pools.inflaters.counters().balanced());
}

#[cfg(test)]
mod tests;
