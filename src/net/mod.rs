//! Network layers the worker runs before any socket: checked, zero-copy
//! frame classification (Ethernet, 802.1Q, ARP, IPv4, IPv6, TCP, UDP, ICMP),
//! the link layer (ARP, neighbours, ICMP echo), the TCP flow table, and the
//! sharded userspace TCP stack built from small smoltcp cells.
mod cell;
pub mod classify;
pub mod client;
pub mod flow;
mod frame_io;
pub mod l2;
pub mod stack;

pub use classify::{classify, Frame, FrameClass, Malformed};
pub use flow::{FlowKey, FlowTable};
pub use frame_io::{FrameSink, NetCounters};
pub use l2::{L2Config, Link, NeighborTable};
pub use stack::{ConnId, DropReason, NetStack, NetStackConfig, NetStackError, Received, TcpApp};
