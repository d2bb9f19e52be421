//! What both TCP stacks (server and client) and their cells share about
//! frames: the [`FrameSink`] outgoing frames are written into, and the
//! [`NetCounters`] every frame received or sent is counted in. Its own
//! module so that the cells, the server stack and the client stack all
//! depend on it and none of them on another for it.

/// Where outgoing frames go. The DPDK worker implements it over mbufs in
/// its TX burst; tests over `Vec<u8>`.
pub trait FrameSink {
    /// Whether a frame can be queued now (a burst slot and a buffer are free).
    /// When false, cells stop sending for this poll and retry on the next
    /// (smoltcp keeps the data): this is TX backpressure, counted. A sink
    /// over a TX burst may flush the full burst to the NIC here first.
    fn has_room(&mut self) -> bool;

    /// Queues one frame of exactly `len` bytes: allocates the buffer (e.g. an
    /// mbuf) and calls `fill` at most once to write the whole frame in place.
    /// If `fill` returns false the frame is discarded (buffer freed). Returns
    /// whether a frame was queued; false without calling `fill` when no
    /// buffer is available.
    fn frame(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8]) -> bool) -> bool;
}

/// `Vec<Vec<u8>>` as a sink without limit, for tests and tools.
impl FrameSink for Vec<Vec<u8>> {
    fn has_room(&mut self) -> bool {
        true
    }

    fn frame(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8]) -> bool) -> bool {
        let mut buf = vec![0; len];
        if fill(&mut buf) {
            self.push(buf);
            true
        } else {
            false
        }
    }
}

/// Counters of one stack, plain u64s; the worker publishes a copy.
/// The server stack balances `rx_frames` = `rx_arp + rx_icmp_echo + rx_tcp +
/// rx_udp` + every `drop_*` ([`NetCounters::rx_accounted`]); the client stack
/// counts its other outcomes in `ClientCounters`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NetCounters {
    pub rx_frames: u64,
    pub rx_arp: u64,
    pub rx_icmp_echo: u64,
    /// TCP segments handed to a cell (flow hit, accepted SYN, or RST reply).
    pub rx_tcp: u64,
    pub rx_udp: u64,
    pub drop_malformed: u64,
    pub drop_vlan: u64,
    pub drop_wrong_mac: u64,
    pub drop_wrong_ip: u64,
    pub drop_unsupported: u64,
    pub drop_syn_full: u64,
    pub drop_syn_rejected: u64,
    pub drop_rst_no_flow: u64,
    pub drop_no_tx_buffer: u64,
    pub arp_replies: u64,
    pub arp_requests: u64,
    pub icmp_echo_replies: u64,
    pub syn_accepted: u64,
    /// Half-open (SYN-RECEIVED) connections now, a gauge. Balances:
    /// `syn_accepted` = `syn_half_open_completed + _evicted + _expired +
    /// _reset + connections_half_open`.
    pub connections_half_open: u64,
    /// Handshakes completed (the client's ACK arrived).
    pub syn_half_open_completed: u64,
    /// Oldest half-open entries freed for a new SYN (bound or slots full).
    pub syn_half_open_evicted: u64,
    /// Half-open entries freed at the end of their SYN-RECEIVED lifetime.
    pub syn_half_open_expired: u64,
    /// Half-open entries ended by the peer's RST (or smoltcp's timeout).
    pub syn_half_open_reset: u64,
    /// SYNs to a port we do not listen on (answered with RST, in `rx_tcp`).
    pub syn_closed_port: u64,
    /// SYNs refused after `stop_accepting` (answered with RST, in `rx_tcp`).
    pub syn_refused_stopping: u64,
    /// Non-SYN segments without a flow (answered with RST, in `rx_tcp`).
    pub tcp_no_flow: u64,
    pub connections_opened: u64,
    pub connections_closed: u64,
    pub connections_open: u64,
    pub cells_polled: u64,
    /// Frames queued into the sink.
    pub tx_frames: u64,
    pub tx_drop_no_buffer: u64,
    pub tx_drop_no_neighbor: u64,
    pub tx_drop_no_route: u64,
    /// Times a cell stopped sending because the sink was full.
    pub tx_backpressure: u64,
    /// Socket buffer bytes allocated (lazily, up to `[net]
    /// socket_buffer_budget_mb`; never freed, reused), a gauge.
    pub socket_buffer_bytes_allocated: u64,
    /// Socket buffer bytes lent to connections now, a gauge.
    pub socket_buffer_bytes_in_use: u64,
}

impl NetCounters {
    /// Frames accounted for by an outcome; equals `rx_frames` when balanced.
    pub fn rx_accounted(&self) -> u64 {
        self.rx_arp
            + self.rx_icmp_echo
            + self.rx_tcp
            + self.rx_udp
            + self.drop_malformed
            + self.drop_vlan
            + self.drop_wrong_mac
            + self.drop_wrong_ip
            + self.drop_unsupported
            + self.drop_syn_full
            + self.drop_syn_rejected
            + self.drop_rst_no_flow
            + self.drop_no_tx_buffer
    }
}
