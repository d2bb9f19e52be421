//! Network layers the worker runs before any socket: checked, zero-copy
//! frame classification (Ethernet, 802.1Q, ARP, IPv4, IPv6, TCP, UDP, ICMP),
//! the link layer (ARP, neighbours, ICMP echo), the TCP flow table, and the
//! sharded userspace TCP stack built from small smoltcp cells.
//!
//! Modules, each depending only on those listed before it:
//! - `wire`: checked views of the received headers (Ethernet, IPv4, TCP, UDP);
//! - `classify`: which class a frame is, handing out those views;
//! - `flow`: the 4-tuple → slot table; `l2`: our link identity, ARP, ICMP echo;
//! - `frame_io`: the [`FrameSink`] frames go out through and the [`NetCounters`];
//! - `cell`: the smoltcp cells, their device and scheduler, for both stacks;
//! - `stack`: the server stack; `client`: the client stack (loadgen).
mod cell;
pub mod classify;
pub mod client;
pub mod flow;
mod frame_io;
pub mod l2;
pub mod stack;
pub mod wire;

pub use classify::{classify, Frame, FrameClass, Malformed};
pub use flow::{FlowKey, FlowTable};
pub use frame_io::{FrameSink, NetCounters};
pub use l2::{L2Config, Link, NeighborTable, SharedNeighbors};
pub use stack::{ConnId, DropReason, NetStack, NetStackConfig, NetStackError, Received, TcpApp};
pub use wire::{EthernetHeader, Ipv4Datagram, TcpFlags, TcpSegment, UdpDatagram};
