//! Network layers the worker runs before any socket: checked, zero-copy
//! frame classification (Ethernet, 802.1Q, ARP, IPv4, IPv6, TCP, UDP, ICMP).
pub mod classify;

pub use classify::{classify, Frame, FrameClass, Malformed};
