//! HTTP/1.1 keep-alive clients for the in-memory network that allocate
//! nothing in steady state, so a counting allocator around a whole run sees
//! the server's allocations only: frames come from a [`FramePool`] shared by
//! both directions, requests are pre-rendered, responses are parsed in a
//! fixed buffer. Each connection sends one request at a time (the next after
//! the answer) and checks the status of every answer. [`HttpSim`] wires them
//! to a `ServeCore` (`NetStack` + `HttpApp` + `UdpIngest`) backed by a real
//! `writer::Writer`, and runs the production serve step (`ServeCore::step`,
//! the one `worker::run_serve` runs) on a virtual clock.

use super::{client_interface, idle_step_time, peer_time, sim_time, PORT, SERVER_IP};
use metricsstream::http::auth::AuthConfig;
use metricsstream::http::{BodyBudget, HttpConfig};
use metricsstream::limit::{KeyedLimiter, LimitsConfig};
use metricsstream::net::{FrameSink, NetStack};
use metricsstream::pipeline::{AppShared, HttpApp, ServeCore, StepOutcome, UdpConfig, UdpIngest};
use metricsstream::time::Nanos;
use metricsstream::writer::{AckMode, Writer, WriterConfig, WriterRuntime};
use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

/// Frame buffers are allocated with this capacity (an Ethernet frame).
const FRAME_CAPACITY: usize = 1536;
/// A response head and body must fit this (ours are a few hundred bytes).
const RESPONSE_BUFFER: usize = 4096;

/// Recycled frame buffers: a frame is taken when sent and given back when
/// received, so the buffers in circulation stop growing after a warm-up.
#[derive(Default)]
pub struct FramePool {
    free: RefCell<Vec<Vec<u8>>>,
    /// Buffers allocated so far (steady state: constant).
    pub allocated: Cell<usize>,
}

impl FramePool {
    pub fn take(&self, len: usize) -> Vec<u8> {
        let mut v = self.free.borrow_mut().pop().unwrap_or_else(|| {
            self.allocated.set(self.allocated.get() + 1);
            Vec::with_capacity(FRAME_CAPACITY)
        });
        v.clear();
        v.resize(len, 0);
        v
    }

    pub fn give(&self, frame: Vec<u8>) {
        self.free.borrow_mut().push(frame);
    }
}

/// The server's TX side over the frame pool (no burst limit).
pub struct PoolSink<'a> {
    pub frames: &'a mut Vec<Vec<u8>>,
    pub pool: &'a FramePool,
}

impl FrameSink for PoolSink<'_> {
    fn has_room(&mut self) -> bool {
        true
    }

    fn frame(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8]) -> bool) -> bool {
        let mut buf = self.pool.take(len);
        if fill(&mut buf) {
            self.frames.push(buf);
            true
        } else {
            self.pool.give(buf);
            false
        }
    }
}

struct PoolDevice<'a> {
    rx: &'a mut VecDeque<Vec<u8>>,
    tx: &'a mut Vec<Vec<u8>>,
    pool: &'a FramePool,
}

struct PooledRx<'a> {
    frame: Vec<u8>,
    pool: &'a FramePool,
}

impl RxToken for PooledRx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let r = f(&self.frame);
        self.pool.give(self.frame);
        r
    }
}

struct PooledTx<'a> {
    tx: &'a mut Vec<Vec<u8>>,
    pool: &'a FramePool,
}

impl TxToken for PooledTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = self.pool.take(len);
        let r = f(&mut buf);
        self.tx.push(buf);
        r
    }
}

impl Device for PoolDevice<'_> {
    type RxToken<'b>
        = PooledRx<'b>
    where
        Self: 'b;
    type TxToken<'b>
        = PooledTx<'b>
    where
        Self: 'b;
    fn receive(&mut self, _: Instant) -> Option<(PooledRx<'_>, PooledTx<'_>)> {
        let frame = self.rx.pop_front()?;
        Some((PooledRx { frame, pool: self.pool }, PooledTx { tx: self.tx, pool: self.pool }))
    }
    fn transmit(&mut self, _: Instant) -> Option<PooledTx<'_>> {
        Some(PooledTx { tx: self.tx, pool: self.pool })
    }
    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps
    }
}

/// One request a client sends, pre-rendered, and the status it expects.
pub struct HttpRequest {
    pub bytes: Vec<u8>,
    pub expect_status: u16,
}

impl HttpRequest {
    /// `method path` with `Content-Length` and `body` (and extra header lines, each ending in CRLF).
    pub fn new(method: &str, target: &str, headers: &str, body: &[u8], expect_status: u16) -> HttpRequest {
        let mut bytes =
            format!("{method} {target} HTTP/1.1\r\nHost: appliance\r\n{headers}Content-Length: {}\r\n\r\n", body.len())
                .into_bytes();
        bytes.extend_from_slice(body);
        HttpRequest { bytes, expect_status }
    }
}

struct HttpConn {
    handle: SocketHandle,
    local_port: u16,
    connected: bool,
    /// Requests this connection is to send in total.
    target: u64,
    sent: u64,
    answered: u64,
    /// Bytes of the current request already written to the socket.
    written: usize,
    response: Box<[u8; RESPONSE_BUFFER]>,
    response_len: usize,
    /// Requests answered on the current TCP connection.
    on_this_connection: u64,
    /// TCP connections opened so far.
    opened: u64,
}

/// One client host (its own MAC and IP) with keep-alive connections.
pub struct HttpClient {
    iface: Interface,
    sockets: SocketSet<'static>,
    conns: Vec<HttpConn>,
    pub rx: VecDeque<Vec<u8>>,
    /// Answers whose status differed from the expected one.
    pub wrong_status: u64,
    /// The first unexpected answer's head, for the failure message.
    pub first_wrong: String,
    /// Answers by status class (`[2]`: 2xx, ...).
    pub by_class: [u64; 6],
    /// The first answer of each class (head and body), for inspection.
    pub first_of_class: [String; 6],
    /// Close each connection once all its requests are answered.
    closing: bool,
    /// Churn: a connection closes after this many answers and a new one
    /// (next local port) carries on. `None`: keep-alive for good.
    pub requests_per_connection: Option<u64>,
}

impl HttpClient {
    pub fn new(index: usize, conns: usize, pool: &FramePool, now: Nanos) -> HttpClient {
        let mut rx = VecDeque::with_capacity(256);
        let mut tx = Vec::new();
        let iface = client_interface(index, 0x4177, &mut PoolDevice { rx: &mut rx, tx: &mut tx, pool }, now);
        let mut sockets = SocketSet::new(Vec::new());
        let conns = (0..conns)
            .map(|k| {
                let mut s =
                    tcp::Socket::new(tcp::SocketBuffer::new(vec![0; 4096]), tcp::SocketBuffer::new(vec![0; 4096]));
                s.set_nagle_enabled(false);
                HttpConn {
                    handle: sockets.add(s),
                    local_port: 30_000 + k as u16,
                    connected: false,
                    target: 0,
                    sent: 0,
                    answered: 0,
                    written: 0,
                    response: Box::new([0; RESPONSE_BUFFER]),
                    response_len: 0,
                    on_this_connection: 0,
                    opened: 0,
                }
            })
            .collect();
        HttpClient {
            iface,
            sockets,
            conns,
            rx,
            wrong_status: 0,
            first_wrong: String::new(),
            by_class: [0; 6],
            first_of_class: Default::default(),
            closing: false,
            requests_per_connection: None,
        }
    }

    /// Every connection sends `n` more requests.
    pub fn add_requests(&mut self, n: u64) {
        for c in &mut self.conns {
            c.target += n;
        }
    }

    /// Close each connection once its requests are answered.
    pub fn close_when_done(&mut self) {
        self.closing = true;
    }

    pub fn answered(&self) -> u64 {
        self.conns.iter().map(|c| c.answered).sum()
    }

    /// TCP connections opened so far.
    pub fn opened(&self) -> u64 {
        self.conns.iter().map(|c| c.opened).sum()
    }

    pub fn done(&self) -> bool {
        self.conns.iter().all(|c| c.answered == c.target)
    }

    pub fn poll_at(&mut self, now: Nanos) -> Option<Nanos> {
        self.iface.poll_at(peer_time(now), &self.sockets).map(sim_time)
    }

    /// Polls the interface, reads answers, sends the next request of each idle
    /// connection (`requests[n % len]` for its `n`-th), polls again.
    pub fn poll(&mut self, now: Nanos, out: &mut Vec<Vec<u8>>, pool: &FramePool, requests: &[HttpRequest]) {
        let now = peer_time(now);
        let mut dev = PoolDevice { rx: &mut self.rx, tx: out, pool };
        self.iface.poll(now, &mut dev, &mut self.sockets);
        let n_conns = self.conns.len() as u64;
        for (k, c) in self.conns.iter_mut().enumerate() {
            let s = self.sockets.get_mut::<tcp::Socket>(c.handle);
            let per = self.requests_per_connection.unwrap_or(u64::MAX);
            if c.connected && c.on_this_connection == per && c.answered < c.target {
                // Churn: this connection is done; once closed, the next one starts.
                if s.is_open() && s.state() != tcp::State::TimeWait {
                    s.close();
                }
                if matches!(s.state(), tcp::State::Closed | tcp::State::TimeWait) {
                    s.abort();
                    c.connected = false;
                    c.on_this_connection = 0;
                    c.local_port = 30_000 + ((k as u64 + c.opened * n_conns) % 30_000) as u16;
                }
            }
            if !c.connected {
                s.connect(self.iface.context(), (SERVER_IP, PORT), c.local_port).unwrap();
                c.connected = true;
                c.opened += 1;
                continue;
            }
            while s.can_recv() && c.response_len < RESPONSE_BUFFER {
                let n = s.recv_slice(&mut c.response[c.response_len..]).unwrap();
                c.response_len += n;
                if n == 0 {
                    break;
                }
            }
            while let Some(len) = complete_response(&c.response[..c.response_len]) {
                let expect = requests[(c.answered % requests.len() as u64) as usize].expect_status;
                let status = status_of(&c.response[..len]);
                let class = usize::from(status.unwrap_or(0) / 100).min(5);
                if self.by_class[class] == 0 {
                    self.first_of_class[class] = String::from_utf8_lossy(&c.response[..len]).into_owned();
                }
                self.by_class[class] += 1;
                // 0: any status is fine (counted by class).
                if expect != 0 && status != Some(expect) {
                    if self.wrong_status == 0 {
                        self.first_wrong = String::from_utf8_lossy(&c.response[..len]).into_owned();
                    }
                    self.wrong_status += 1;
                }
                c.response.copy_within(len..c.response_len, 0);
                c.response_len -= len;
                c.answered += 1;
                c.on_this_connection += 1;
            }
            assert!(c.response_len < RESPONSE_BUFFER, "a response does not fit the client's buffer");
            if self.closing && c.answered == c.target && s.is_open() {
                s.close();
            }
            if c.sent == c.answered && c.sent < c.target && c.on_this_connection < per && s.may_send() {
                let req = &requests[(c.sent % requests.len() as u64) as usize].bytes;
                c.written += s.send_slice(&req[c.written..]).unwrap();
                if c.written == req.len() {
                    c.written = 0;
                    c.sent += 1;
                }
            }
        }
        let mut dev = PoolDevice { rx: &mut self.rx, tx: out, pool };
        self.iface.poll(now, &mut dev, &mut self.sockets);
    }
}

/// Length of the first complete response in `buf` (head + Content-Length body).
fn complete_response(buf: &[u8]) -> Option<usize> {
    let head = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let body = content_length(&buf[..head]).unwrap_or(0);
    (buf.len() >= head + body).then_some(head + body)
}

fn content_length(head: &[u8]) -> Option<usize> {
    head.split(|&b| b == b'\n').find_map(|line| {
        let (name, value) = line.split_at(line.iter().position(|&b| b == b':')?);
        if !name.eq_ignore_ascii_case(b"content-length") {
            return None;
        }
        std::str::from_utf8(&value[1..]).ok()?.trim().parse().ok()
    })
}

fn status_of(response: &[u8]) -> Option<u16> {
    std::str::from_utf8(response.get(9..12)?).ok()?.parse().ok()
}

/// Server, clients and the writer; the server runs the serve step.
pub struct HttpSim {
    /// The server: what a `serve` worker runs between its RX and TX bursts.
    pub core: ServeCore,
    pub clients: Vec<HttpClient>,
    pub pool: FramePool,
    pub requests: Vec<HttpRequest>,
    pub now: Nanos,
    /// A step said [`StepOutcome::Finished`] (the drain after `core.stop()` is over).
    pub finished: bool,
    to_server: Vec<Vec<u8>>,
    to_clients: Vec<Vec<u8>>,
}

impl HttpSim {
    /// `clients` hosts with `conns_per_client` connections each, sending
    /// `requests` in turn; the writer logs into `data_dir` with `ack`.
    pub fn new(
        ack: AckMode,
        data_dir: &std::path::Path,
        http: HttpConfig,
        body_budget: Arc<BodyBudget>,
        clients: usize,
        conns_per_client: usize,
        requests: Vec<HttpRequest>,
    ) -> (HttpSim, WriterRuntime) {
        let limits = LimitsConfig { default_rate: 1 << 30, default_burst: 1 << 30, ..LimitsConfig::default() };
        Self::with_writer_and_limits(
            ack,
            data_dir,
            http,
            body_budget,
            (clients, conns_per_client),
            requests,
            |_| {},
            limits,
        )
    }

    /// [`new`](Self::new) with the writer's config adjusted by `writer` and
    /// these client limits.
    #[allow(clippy::too_many_arguments)]
    pub fn with_writer_and_limits(
        ack: AckMode,
        data_dir: &std::path::Path,
        http: HttpConfig,
        body_budget: Arc<BodyBudget>,
        (clients, conns_per_client): (usize, usize),
        requests: Vec<HttpRequest>,
        writer: impl FnOnce(&mut WriterConfig),
        limits: LimitsConfig,
    ) -> (HttpSim, WriterRuntime) {
        let mut writer_config = WriterConfig {
            data_dir: data_dir.to_path_buf(),
            ack,
            // Commit each drained round at once: the durable path waits on
            // the real fsync, and the test should not wait on a timer.
            sync_interval_ms: 0,
            // One segment for the whole run (rotation is per GiB, not per request).
            segment_bytes: 1 << 30,
            retention_bytes: 0,
            ..WriterConfig::default()
        };
        writer(&mut writer_config);
        // One handle for the HTTP application, one for the UDP stage (as serve).
        let (writer, mut handles) = Writer::start(writer_config, 2).unwrap();
        let shared = AppShared {
            http,
            auth: Arc::new(AuthConfig::default()),
            limiter: Arc::new(KeyedLimiter::new(&limits).unwrap()),
            header_trust: limits.header_trust().unwrap(),
            metrics: Arc::new(|out: &mut String| out.push_str("# TYPE sim_up gauge\nsim_up 1\n")),
            unix_offset_ns: 1_700_000_000_000_000_000,
            body_budget,
            databases: Default::default(),
        };
        let now = Nanos::from_millis(1);
        let stack = NetStack::new(super::stack_config(256), now).unwrap();
        let udp = UdpIngest::new(UdpConfig::default(), shared.limiter.clone(), handles.pop().unwrap());
        let app = HttpApp::new(shared, handles.pop().unwrap(), stack.slots());
        // After `core.stop()`: virtual time for the drain (serve gives 2 s).
        let core = ServeCore::new(stack, app, udp, 2_000_000_000);
        let pool = FramePool::default();
        let clients = (0..clients).map(|i| HttpClient::new(i, conns_per_client, &pool, now)).collect();
        let sim = HttpSim {
            core,
            clients,
            pool,
            requests,
            now,
            finished: false,
            to_server: Vec::with_capacity(1024),
            to_clients: Vec::with_capacity(1024),
        };
        (sim, writer)
    }

    /// Clients poll, then one serve step; returns the frames moved.
    pub fn step(&mut self) -> usize {
        let now = self.now;
        for c in &mut self.clients {
            c.poll(now, &mut self.to_server, &self.pool, &self.requests);
        }
        let mut moved = self.to_server.len();
        let mut sink = PoolSink { frames: &mut self.to_clients, pool: &self.pool };
        let outcome = self.core.step(now, self.to_server.iter().map(Vec::as_slice), &mut sink);
        self.finished |= outcome == StepOutcome::Finished;
        for f in self.to_server.drain(..) {
            self.pool.give(f);
        }
        moved += self.to_clients.len();
        for f in self.to_clients.drain(..) {
            let dst = &f[0..6];
            if dst == [0xff; 6] {
                for c in &mut self.clients {
                    let mut copy = self.pool.take(f.len());
                    copy.copy_from_slice(&f);
                    c.rx.push_back(copy);
                }
                self.pool.give(f);
            } else if dst[0..4] == [0x02, 0x43, 0, 0] {
                let i = usize::from(dst[4]) << 8 | usize::from(dst[5]);
                self.clients[i].rx.push_back(f);
            } else {
                panic!("frame to an unknown MAC {dst:02x?}");
            }
        }
        moved
    }

    /// Every connection sends `per_conn` more requests; runs until all are
    /// answered and checks every answer had its expected status.
    pub fn run(&mut self, per_conn: u64) {
        for c in &mut self.clients {
            c.add_requests(per_conn);
        }
        self.run_until(200 * per_conn + 10_000, |sim| sim.clients.iter().all(HttpClient::done));
        for c in &self.clients {
            assert_eq!(c.wrong_status, 0, "unexpected answer: {}", c.first_wrong);
        }
    }

    /// Clients close every connection once answered; runs until the stack has none open.
    pub fn close_all(&mut self) {
        for c in &mut self.clients {
            c.close_when_done();
        }
        self.run_until(100_000, |sim| {
            sim.clients.iter().all(HttpClient::done) && sim.core.stack.counters().connections_open == 0
        });
    }

    /// Steps until `done`; the clock advances 1 ms per busy step, waits in
    /// real time while a response is held for the writer, and jumps to the
    /// next timer when nothing moves. Panics after `max_steps`.
    pub fn run_until(&mut self, max_steps: u64, mut done: impl FnMut(&mut HttpSim) -> bool) {
        let mut steps = 0u64;
        while !done(self) {
            steps += 1;
            assert!(steps < max_steps, "stuck: {:?}", self.core.app.counters());
            if self.step() > 0 {
                self.now += Duration::from_millis(1);
            } else if self.core.app.counters().held > 0 {
                // Waiting for the writer thread (a real fsync): real time passes, not virtual.
                std::thread::sleep(std::time::Duration::from_micros(20));
            } else {
                let now = self.now;
                let timers = self.clients.iter_mut().map(|c| c.poll_at(now));
                self.now = idle_step_time(now, std::iter::once(self.core.stack.poll_at()).chain(timers));
            }
        }
    }

    pub fn answered(&self) -> u64 {
        self.clients.iter().map(HttpClient::answered).sum()
    }

    /// Body-budget bytes the application's connections hold now.
    pub fn app_reserved(&mut self) -> u64 {
        self.core.app.counters().body_budget_reserved_bytes
    }
}

/// The buffer-lifecycle balance once no request is in progress: every pool
/// balances and has nothing lent, no body memory is reserved, and the
/// writer gives back every batch (waits up to 5 s for it to catch up).
pub fn assert_pools_idle(sim: &mut HttpSim, budget: &BodyBudget) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while sim.core.app.counters().batches_in_use > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let c = *sim.core.app.counters();
    assert_eq!(c.body_buffers_allocated, c.body_buffers_in_use + c.body_buffers_free, "{c:?}");
    assert_eq!(c.response_buffers_allocated, c.response_buffers_in_use + c.response_buffers_free, "{c:?}");
    assert_eq!(c.inflaters_allocated, c.inflaters_in_use + c.inflaters_free, "{c:?}");
    assert_eq!(c.batches_allocated, c.batches_in_use + c.batches_free, "{c:?}");
    let lent = (c.body_buffers_in_use, c.response_buffers_in_use, c.inflaters_in_use, c.batches_in_use);
    assert_eq!(lent, (0, 0, 0, 0), "{c:?}");
    assert_eq!(c.body_budget_reserved_bytes, 0, "{c:?}");
    assert_eq!(budget.reserved(), 0, "the global budget holds nothing");
    assert_eq!(c.held, 0);
}
