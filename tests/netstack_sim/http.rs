//! HTTP/1.1 keep-alive clients for the in-memory network that allocate
//! nothing in steady state, so a counting allocator around a whole run sees
//! the server's allocations only: frames come from a [`FramePool`] shared by
//! both directions, requests are pre-rendered, responses are parsed in a
//! fixed buffer. Each connection sends one request at a time (the next after
//! the answer) and checks the status of every answer.

use super::{client_ip, client_mac, PORT, SERVER_IP};
use metricsstream::net::FrameSink;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{HardwareAddress, IpCidr};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

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
}

impl HttpClient {
    pub fn new(index: usize, conns: usize, pool: &FramePool, now: Instant) -> HttpClient {
        let mut rx = VecDeque::with_capacity(256);
        let mut tx = Vec::new();
        let mut dev = PoolDevice { rx: &mut rx, tx: &mut tx, pool };
        let mut config = Config::new(HardwareAddress::Ethernet(client_mac(index)));
        config.random_seed = 0x4177 + index as u64;
        let mut iface = Interface::new(config, &mut dev, now);
        iface.update_ip_addrs(|a| {
            a.push(IpCidr::new(client_ip(index).into(), 16)).unwrap();
        });
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
                }
            })
            .collect();
        HttpClient { iface, sockets, conns, rx, wrong_status: 0, first_wrong: String::new() }
    }

    /// Every connection sends `n` more requests.
    pub fn add_requests(&mut self, n: u64) {
        for c in &mut self.conns {
            c.target += n;
        }
    }

    pub fn answered(&self) -> u64 {
        self.conns.iter().map(|c| c.answered).sum()
    }

    pub fn done(&self) -> bool {
        self.conns.iter().all(|c| c.answered == c.target)
    }

    pub fn poll_at(&mut self, now: Instant) -> Option<Instant> {
        self.iface.poll_at(now, &self.sockets)
    }

    /// Polls the interface, reads answers, sends the next request of each idle
    /// connection (`requests[n % len]` for its `n`-th), polls again.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<Vec<u8>>, pool: &FramePool, requests: &[HttpRequest]) {
        let mut dev = PoolDevice { rx: &mut self.rx, tx: out, pool };
        self.iface.poll(now, &mut dev, &mut self.sockets);
        for c in &mut self.conns {
            let s = self.sockets.get_mut::<tcp::Socket>(c.handle);
            if !c.connected {
                s.connect(self.iface.context(), (SERVER_IP, PORT), c.local_port).unwrap();
                c.connected = true;
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
                if status_of(&c.response[..len]) != Some(expect) {
                    if self.wrong_status == 0 {
                        self.first_wrong = String::from_utf8_lossy(&c.response[..len]).into_owned();
                    }
                    self.wrong_status += 1;
                }
                c.response.copy_within(len..c.response_len, 0);
                c.response_len -= len;
                c.answered += 1;
            }
            assert!(c.response_len < RESPONSE_BUFFER, "a response does not fit the client's buffer");
            if c.sent == c.answered && c.sent < c.target && s.may_send() {
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
