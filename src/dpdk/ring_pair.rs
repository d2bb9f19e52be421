//! Two ethdevs joined back to back inside one process by a pair of
//! `rte_ring`s (the net_ring PMD): what one port transmits the other
//! receives, mbuf pointers only, no copy. `metricsstream bench` runs `serve`'s
//! worker on one end and `loadgen`'s on the other.

use super::eal::Eal;
use super::error::DpdkError;
use std::ffi::CString;

/// Creates the pair named `name` (ports `<name>_a` and `<name>_b`, rings of
/// `ring_size` slots, a power of two) and returns their port ids. Open each
/// with [`Port::open`](super::Port::open) and one queue. The rings stay
/// allocated until the process exits (DPDK frees them with its memory).
pub fn ring_port_pair(_eal: &Eal, name: &str, ring_size: u32) -> Result<(u16, u16), DpdkError> {
    if !ring_size.is_power_of_two() || ring_size < 64 {
        return Err(DpdkError::Invalid(format!("ring size {ring_size} must be a power of two >= 64")));
    }
    let cname = CString::new(name).map_err(|_| DpdkError::Invalid(format!("bad ring pair name {name:?}")))?;
    let (mut a, mut b) = (0u16, 0u16);
    // SAFETY: the EAL is initialised (the `Eal` guard proves it); valid C
    // string and out-parameters that outlive the call.
    let rc = unsafe { dpdk_sys::ms_ring_port_pair(cname.as_ptr(), ring_size, &mut a, &mut b) };
    if rc != 0 {
        return Err(DpdkError::from_errno("rte_eth_from_rings"));
    }
    Ok((a, b))
}
