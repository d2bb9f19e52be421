//! The TCP flow table: a connection's 4-tuple → the stack slot (cell and
//! socket) that owns it.
//!
//! Open addressing with linear probing over a power-of-two array sized once
//! at start (at least twice the maximum number of flows, so probes stay
//! short); deletion shifts the following entries back, so there are no
//! tombstones and the table never degrades. The hash is keyed with a seed
//! chosen at start, so a peer cannot aim its ports at one probe chain
//! without knowing it.

use smoltcp::wire::Ipv4Address;

/// A TCP connection as seen from us: the peer is the source of what we receive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FlowKey {
    pub src_ip: u32,
    pub dst_ip: u32,
    pub src_port: u16,
    pub dst_port: u16,
}

impl FlowKey {
    pub fn new(src: Ipv4Address, src_port: u16, dst: Ipv4Address, dst_port: u16) -> FlowKey {
        FlowKey { src_ip: src.to_bits(), dst_ip: dst.to_bits(), src_port, dst_port }
    }
}

/// `insert` failed: the table holds its maximum number of flows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("flow table full")]
pub struct FlowTableFull;

const EMPTY: u32 = u32::MAX;

/// Fixed-capacity 4-tuple → `u32` map; no allocation after `new`.
pub struct FlowTable {
    keys: Vec<FlowKey>,
    values: Vec<u32>,
    mask: usize,
    len: usize,
    max: usize,
    seed: u64,
}

impl FlowTable {
    /// A table for up to `max_flows` entries.
    pub fn new(max_flows: usize, seed: u64) -> FlowTable {
        let slots = (max_flows.max(1) * 2).next_power_of_two();
        FlowTable {
            keys: vec![FlowKey::default(); slots],
            values: vec![EMPTY; slots],
            mask: slots - 1,
            len: 0,
            max: max_flows.max(1),
            seed: seed | 1,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn home(&self, k: &FlowKey) -> usize {
        let a = (u64::from(k.src_ip) << 32 | u64::from(k.dst_ip)) ^ self.seed;
        let b = u64::from(k.src_port) << 16 | u64::from(k.dst_port);
        let mut h =
            a.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ b.wrapping_add(self.seed).wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
        h ^= h >> 31;
        h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
        (h ^ (h >> 29)) as usize & self.mask
    }

    #[inline]
    fn position(&self, k: &FlowKey) -> Option<usize> {
        let mut i = self.home(k);
        loop {
            if self.values[i] == EMPTY {
                return None;
            }
            if self.keys[i] == *k {
                return Some(i);
            }
            i = (i + 1) & self.mask;
        }
    }

    #[inline]
    pub fn lookup(&self, k: &FlowKey) -> Option<u32> {
        self.position(k).map(|i| self.values[i])
    }

    /// Inserts or replaces `k`. `value` must not be `u32::MAX`.
    pub fn insert(&mut self, k: FlowKey, value: u32) -> Result<(), FlowTableFull> {
        debug_assert_ne!(value, EMPTY);
        let mut i = self.home(&k);
        loop {
            if self.values[i] == EMPTY {
                if self.len == self.max {
                    return Err(FlowTableFull);
                }
                self.keys[i] = k;
                self.values[i] = value;
                self.len += 1;
                return Ok(());
            }
            if self.keys[i] == k {
                self.values[i] = value;
                return Ok(());
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Removes `k`, returning its value.
    pub fn remove(&mut self, k: &FlowKey) -> Option<u32> {
        let mut hole = self.position(k)?;
        let value = self.values[hole];
        self.values[hole] = EMPTY;
        self.len -= 1;
        // Backward-shift: move later entries of the chain into the hole when
        // their home position does not lie cyclically in (hole, j].
        let mut j = hole;
        loop {
            j = (j + 1) & self.mask;
            if self.values[j] == EMPTY {
                return Some(value);
            }
            let home = self.home(&self.keys[j]);
            let stays = if hole <= j { hole < home && home <= j } else { hole < home || home <= j };
            if !stays {
                self.keys[hole] = self.keys[j];
                self.values[hole] = self.values[j];
                self.values[j] = EMPTY;
                hole = j;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn key(i: u32) -> FlowKey {
        FlowKey { src_ip: 0x0a00_0000 | (i >> 16), dst_ip: 0x0a00_0001, src_port: i as u16, dst_port: 80 }
    }

    #[test]
    fn insert_lookup_remove() {
        let mut t = FlowTable::new(4, 7);
        assert_eq!(t.lookup(&key(1)), None);
        t.insert(key(1), 10).unwrap();
        t.insert(key(2), 20).unwrap();
        assert_eq!(t.lookup(&key(1)), Some(10));
        t.insert(key(1), 11).unwrap();
        assert_eq!((t.lookup(&key(1)), t.len()), (Some(11), 2));
        t.insert(key(3), 30).unwrap();
        t.insert(key(4), 40).unwrap();
        assert_eq!(t.insert(key(5), 50), Err(FlowTableFull));
        assert_eq!(t.remove(&key(2)), Some(20));
        assert_eq!(t.remove(&key(2)), None);
        t.insert(key(5), 50).unwrap();
        assert_eq!(t.lookup(&key(5)), Some(50));
    }

    proptest::proptest! {
        /// Any sequence of inserts and removes agrees with a HashMap model.
        #[test]
        fn matches_a_hashmap(ops in proptest::collection::vec((0u32..64, proptest::prelude::any::<bool>()), 0..400)) {
            let mut t = FlowTable::new(48, 3);
            let mut model = HashMap::new();
            for (n, (k, insert)) in ops.into_iter().enumerate() {
                if insert {
                    let full = model.len() == 48 && !model.contains_key(&k);
                    proptest::prop_assert_eq!(t.insert(key(k), n as u32).is_err(), full);
                    if !full { model.insert(k, n as u32); }
                } else {
                    proptest::prop_assert_eq!(t.remove(&key(k)), model.remove(&k));
                }
                proptest::prop_assert_eq!(t.len(), model.len());
            }
            for k in 0..64 {
                proptest::prop_assert_eq!(t.lookup(&key(k)), model.get(&k).copied());
            }
        }
    }
}
