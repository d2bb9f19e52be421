//! Ethernet ports: configuration (queues, RSS), start/stop, link, counters,
//! and the per-queue RX/TX handles given to workers (one worker per queue).

use super::eal::Eal;
use super::error::{check, DpdkError};
use super::mbuf::{RxBurst, TxBurst, BURST_SIZE};
use super::mempool::Mempool;
use std::ffi::CStr;
use std::os::raw::c_char;
use std::sync::Arc;

/// How to set a port up.
#[derive(Clone, Debug)]
pub struct PortConfig {
    /// RX/TX queue pairs, one per worker. RSS spreads flows over them when
    /// there is more than one and the device supports it.
    pub queues: u16,
    pub rx_desc: u16,
    pub tx_desc: u16,
    pub promiscuous: bool,
}

impl Default for PortConfig {
    fn default() -> Self {
        PortConfig { queues: 1, rx_desc: 1024, tx_desc: 1024, promiscuous: true }
    }
}

/// Counters the device keeps (`rte_eth_stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    pub ipackets: u64,
    pub ibytes: u64,
    /// Dropped by the device because RX queues were full (we were too slow).
    pub imissed: u64,
    pub ierrors: u64,
    /// RX mbuf allocation failures (pool too small or leaking).
    pub rx_nombuf: u64,
    pub opackets: u64,
    pub obytes: u64,
    pub oerrors: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    pub up: bool,
    pub speed_mbps: u32,
}

struct PortInner {
    id: u16,
    _pool: Arc<Mempool>,
    _eal: Eal,
}

impl Drop for PortInner {
    fn drop(&mut self) {
        // SAFETY: the last queue handle is gone (they hold this Arc), so no
        // worker polls the port any more.
        unsafe {
            dpdk_sys::rte_eth_dev_stop(self.id);
            dpdk_sys::rte_eth_dev_close(self.id);
        }
    }
}

/// A started port. Dropping the port and all its queue handles stops and
/// closes it.
pub struct Port {
    inner: Arc<PortInner>,
    name: String,
    queues: u16,
    rss: bool,
    rx: Vec<RxQueue>,
    tx: Vec<TxQueue>,
}

impl Port {
    /// Configures and starts port `id`, receiving into `pool`.
    pub fn open(eal: &Eal, id: u16, config: &PortConfig, pool: Arc<Mempool>) -> Result<Port, DpdkError> {
        // SAFETY: the EAL is initialised; any u16 may be asked about.
        if unsafe { dpdk_sys::rte_eth_dev_is_valid_port(id) } == 0 {
            return Err(DpdkError::Invalid(format!(
                "no DPDK port {id} ({} probed); pass a --vdev or bind a NIC (scripts/bind-nic.sh)",
                eal.port_count()
            )));
        }
        if config.queues == 0 {
            return Err(DpdkError::Invalid("a port needs at least one queue".into()));
        }
        let mut info = dpdk_sys::rte_eth_dev_info::default();
        // SAFETY: valid port, info is a properly sized out-parameter.
        check("rte_eth_dev_info_get", unsafe { dpdk_sys::rte_eth_dev_info_get(id, &mut info) })?;
        if config.queues > info.max_rx_queues || config.queues > info.max_tx_queues {
            return Err(DpdkError::Invalid(format!(
                "port {id} supports at most {} RX / {} TX queues, {} requested (workers)",
                info.max_rx_queues, info.max_tx_queues, config.queues
            )));
        }

        let mut conf = dpdk_sys::rte_eth_conf::default();
        // SAFETY: a pure function returning a constant.
        let wanted_rss = unsafe { dpdk_sys::ms_rss_hf_ip_tcp_udp() };
        let rss_hf = wanted_rss & info.flow_type_rss_offloads;
        let rss = config.queues > 1 && rss_hf != 0;
        if rss {
            conf.rxmode.mq_mode = dpdk_sys::rte_eth_rx_mq_mode_RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_hf = rss_hf;
        }
        // SAFETY: valid port, conf outlives the call.
        check("rte_eth_dev_configure", unsafe {
            dpdk_sys::rte_eth_dev_configure(id, config.queues, config.queues, &conf)
        })?;

        // SAFETY: valid port.
        let socket = unsafe { dpdk_sys::rte_eth_dev_socket_id(id) };
        let socket = if socket < 0 { 0 } else { socket as u32 };
        for q in 0..config.queues {
            // SAFETY: configured port; null conf selects the driver default;
            // the pool outlives the port (PortInner holds it).
            check("rte_eth_rx_queue_setup", unsafe {
                dpdk_sys::rte_eth_rx_queue_setup(id, q, config.rx_desc, socket, std::ptr::null(), pool.as_ptr())
            })?;
            // SAFETY: as above.
            check("rte_eth_tx_queue_setup", unsafe {
                dpdk_sys::rte_eth_tx_queue_setup(id, q, config.tx_desc, socket, std::ptr::null())
            })?;
        }
        // SAFETY: configured port with all queues set up.
        check("rte_eth_dev_start", unsafe { dpdk_sys::rte_eth_dev_start(id) })?;
        if config.promiscuous {
            // Virtual devices may not support it; that is not fatal.
            // SAFETY: started port.
            let _ = unsafe { dpdk_sys::rte_eth_promiscuous_enable(id) };
        }

        let mut name_buf = [0 as c_char; 64];
        // SAFETY: buffer is RTE_ETH_NAME_MAX_LEN (64) bytes as the API requires.
        let name = if unsafe { dpdk_sys::rte_eth_dev_get_name_by_port(id, name_buf.as_mut_ptr()) } == 0 {
            // SAFETY: DPDK wrote a NUL-terminated name into the buffer.
            unsafe { CStr::from_ptr(name_buf.as_ptr()) }.to_string_lossy().into_owned()
        } else {
            format!("port{id}")
        };

        let inner = Arc::new(PortInner { id, _pool: pool, _eal: eal.clone() });
        let rx = (0..config.queues).map(|queue| RxQueue { port: inner.clone(), queue }).collect();
        let tx = (0..config.queues).map(|queue| TxQueue { port: inner.clone(), queue }).collect();
        Ok(Port { inner, name, queues: config.queues, rss, rx, tx })
    }

    pub fn id(&self) -> u16 {
        self.inner.id
    }

    /// The device name, e.g. `net_pcap0` or `0000:00:08.0`.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn queues(&self) -> u16 {
        self.queues
    }

    /// Whether RSS spreads flows over the queues.
    pub fn rss(&self) -> bool {
        self.rss
    }

    /// Hands out the RX/TX queue pairs, once: each belongs to one worker.
    pub fn take_queues(&mut self) -> Vec<(RxQueue, TxQueue)> {
        std::mem::take(&mut self.rx).into_iter().zip(std::mem::take(&mut self.tx)).collect()
    }

    /// Frees what the RX queues hold once their workers are gone: frames that
    /// arrived after the last poll. On a ring pair these are the peer's mbufs
    /// still "on the wire" (in the ring) when both ends stopped; nothing
    /// else would ever free them. Returns how many were freed, or `None`
    /// while a queue handle is held outside the port (a worker may still
    /// poll it). Stops at the first partial burst, so a live NIC cannot
    /// keep it busy.
    pub fn discard_received(&mut self) -> Option<u64> {
        if Arc::strong_count(&self.inner) != 1 + self.rx.len() + self.tx.len() {
            return None;
        }
        let mut burst = RxBurst::default();
        let mut discarded = 0u64;
        for queue in 0..self.queues {
            // No other handle of this queue is polled: checked above.
            let mut rx = RxQueue { port: Arc::clone(&self.inner), queue };
            loop {
                let n = rx.rx_burst(&mut burst);
                discarded += n as u64;
                if n < BURST_SIZE {
                    break;
                }
            }
        }
        burst.clear();
        Some(discarded)
    }

    pub fn stats(&self) -> Result<PortStats, DpdkError> {
        let mut s = dpdk_sys::rte_eth_stats::default();
        // SAFETY: started port, s is a valid out-parameter.
        check("rte_eth_stats_get", unsafe { dpdk_sys::rte_eth_stats_get(self.inner.id, &mut s) })?;
        Ok(PortStats {
            ipackets: s.ipackets,
            ibytes: s.ibytes,
            imissed: s.imissed,
            ierrors: s.ierrors,
            rx_nombuf: s.rx_nombuf,
            opackets: s.opackets,
            obytes: s.obytes,
            oerrors: s.oerrors,
        })
    }

    pub fn link(&self) -> Result<Link, DpdkError> {
        let (mut speed, mut up) = (0u32, 0i32);
        // SAFETY: started port, valid out-parameters.
        check("rte_eth_link_get_nowait", unsafe { dpdk_sys::ms_link_get(self.inner.id, &mut speed, &mut up) })?;
        Ok(Link { up: up != 0, speed_mbps: speed })
    }

    pub fn mac(&self) -> Result<[u8; 6], DpdkError> {
        let mut addr = dpdk_sys::rte_ether_addr::default();
        // SAFETY: valid port, valid out-parameter.
        check("rte_eth_macaddr_get", unsafe { dpdk_sys::rte_eth_macaddr_get(self.inner.id, &mut addr) })?;
        Ok(addr.addr_bytes)
    }
}

/// One RX queue; owned by exactly one worker (DPDK queues are not thread-safe).
pub struct RxQueue {
    port: Arc<PortInner>,
    queue: u16,
}

/// One TX queue; owned by exactly one worker.
pub struct TxQueue {
    port: Arc<PortInner>,
    queue: u16,
}

impl RxQueue {
    pub fn queue(&self) -> u16 {
        self.queue
    }

    /// Frees what `burst` still holds, then receives up to a burst of packets into it.
    #[inline]
    pub fn rx_burst(&mut self, burst: &mut RxBurst) -> usize {
        let (port, queue) = (self.port.id, self.queue);
        // SAFETY: this handle is the queue's only user (&mut self, not Clone);
        // the array has room for the count we pass.
        burst.fill_with(|pkts, n| unsafe { dpdk_sys::ms_rx_burst(port, queue, pkts, n) })
    }
}

impl TxQueue {
    pub fn queue(&self) -> u16 {
        self.queue
    }

    /// Transmits what `burst` holds; unsent mbufs stay in it for a retry.
    #[inline]
    pub fn tx_burst(&mut self, burst: &mut TxBurst) -> usize {
        let (port, queue) = (self.port.id, self.queue);
        // SAFETY: this handle is the queue's only user; the driver takes
        // ownership of exactly the mbufs it reports as sent.
        burst.drain_with(|pkts, n| unsafe { dpdk_sys::ms_tx_burst(port, queue, pkts, n) })
    }

    /// Asks the driver to free the mbufs of transmissions it has completed
    /// (drivers free them lazily, on later bursts): after the last burst,
    /// this makes the pool's in-use count comparable to its idle baseline.
    /// Returns how many were freed, or `None` if the driver cannot say.
    pub fn reclaim_completed(&mut self) -> Option<u32> {
        // SAFETY: this handle is the queue's only user; 0 = free all completed.
        let rc = unsafe { dpdk_sys::rte_eth_tx_done_cleanup(self.port.id, self.queue, 0) };
        u32::try_from(rc).ok()
    }
}
