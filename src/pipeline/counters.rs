//! What a `serve` worker publishes: the counters of its TCP stack, HTTP
//! application and UDP stage, its own frame drops, and where its connection
//! slots are; their Prometheus exposition and the connection-lifecycle
//! balances that hold at every publication.

use super::http_app::HttpCounters;
use super::udp::UdpCounters;
use crate::net::NetCounters;
use crate::stats::{Exposition, MetricKind, Published};
use std::sync::Arc;

/// What `serve` publishes per worker.
#[derive(Clone, Copy, Debug, Default)]
pub struct ServeCounters {
    pub net: NetCounters,
    pub http: HttpCounters,
    pub udp: UdpCounters,
    /// Multi-segment frames, dropped before the stack (it sees one segment).
    pub rx_chained_dropped: u64,
    pub tx_no_mbuf: u64,
    pub tx_unsent_dropped: u64,
    /// 1 when, at exit, the driver could not free the worker's completed
    /// transmissions on demand (their mbufs stay in the TX ring until close).
    pub tx_reclaim_unsupported: u64,
    pub sockets: SocketLevels,
}

/// Where a worker's connection slots are, read at each publication.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SocketLevels {
    /// Entries in the flow table.
    pub flows: u64,
    /// Sockets idle or listening (not owned by a connection).
    pub free: u64,
    /// All connection slots (sockets) of the worker.
    pub slots: u64,
}

impl ServeCounters {
    /// Writes the workers' counters, each summed over them, as Prometheus
    /// samples (serve's `/metrics`). Runs on a worker lcore once per scrape:
    /// allocates nothing (`tests/alloc_steady.rs`).
    pub fn expose(workers: &[Arc<Published<ServeCounters>>], e: &mut Exposition) {
        let each = || workers.iter().map(|p| p.snapshot());
        e.section_sum("net", each().map(|c| c.net));
        e.section_sum("sockets", each().map(|c| c.sockets));
        e.section_sum("http", each().map(|c| c.http));
        e.section_sum("udp", each().map(|c| c.udp));
        let sum = |field: fn(&ServeCounters) -> u64| each().map(|c| field(&c)).sum::<u64>() as f64;
        let frames = "frames of several segments, dropped before the stack";
        e.sample("rx_chained_dropped", frames, MetricKind::Counter, sum(|c| c.rx_chained_dropped));
        e.sample("tx_no_mbuf", "frames not sent: no mbuf in the pool", MetricKind::Counter, sum(|c| c.tx_no_mbuf));
        let unsent = "frames the TX queue did not take after retries, freed";
        e.sample("tx_unsent_dropped", unsent, MetricKind::Counter, sum(|c| c.tx_unsent_dropped));
    }

    /// The connection-lifecycle balances that hold at every publication:
    /// every opened connection is open or closed, the flow table holds
    /// exactly the open connections, and every socket not owned by one is
    /// back to idle or listening. `Err` names the first one that fails.
    pub fn check_lifecycle(&self) -> Result<(), String> {
        let (n, s) = (&self.net, &self.sockets);
        if n.connections_opened != n.connections_closed + n.connections_open {
            return Err(format!(
                "connections opened {} != closed {} + open {}",
                n.connections_opened, n.connections_closed, n.connections_open
            ));
        }
        if s.flows != n.connections_open {
            return Err(format!("flow table holds {} entries for {} open connections", s.flows, n.connections_open));
        }
        if s.free + n.connections_open != s.slots {
            return Err(format!(
                "{} free sockets + {} open connections != {} slots",
                s.free, n.connections_open, s.slots
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_check_names_each_imbalance() {
        let mut c = ServeCounters::default();
        c.net.connections_opened = 5;
        c.net.connections_closed = 3;
        c.net.connections_open = 2;
        c.sockets = SocketLevels { flows: 2, free: 14, slots: 16 };
        assert_eq!(c.check_lifecycle(), Ok(()));
        let mut stale = c;
        stale.sockets.flows = 3;
        assert!(stale.check_lifecycle().unwrap_err().contains("flow table"));
        let mut lost = c;
        lost.sockets.free = 13;
        assert!(lost.check_lifecycle().unwrap_err().contains("free sockets"));
        let mut unclosed = c;
        unclosed.net.connections_closed = 2;
        assert!(unclosed.check_lifecycle().unwrap_err().contains("opened"));
    }
}
