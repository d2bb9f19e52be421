//! The canonical form of a parsed line: tags sorted by key (a duplicate tag
//! is an error) and duplicate field keys resolved last-wins.

use std::cmp::Ordering;

use super::{LineErrorReason, LineScratch};
use crate::ingest::record::Tag;

/// Sorts tags by key (byte order); telegraf already sends them sorted, so check first.
pub(super) fn sort_tags(tags: &mut [Tag<'_>]) -> Result<(), LineErrorReason> {
    // Most neighbours differ in the first byte: settle those without memcmp.
    fn key_cmp(a: &[u8], b: &[u8]) -> Ordering {
        match a.first().cmp(&b.first()) {
            Ordering::Equal => a.cmp(b),
            order => order,
        }
    }
    // Common case in one pass: strictly increasing keys are sorted and distinct.
    if tags.windows(2).all(|w| key_cmp(w[0].key.as_bytes(), w[1].key.as_bytes()) == Ordering::Less) {
        return Ok(());
    }
    if tags.len() <= 16 {
        // Insertion sort: a handful of tags, often nearly sorted; a duplicate
        // key shows up as an equal neighbour on the way (the sorted prefix
        // puts an equal key right where the new one stops).
        for i in 1..tags.len() {
            let mut j = i;
            while j > 0 {
                match key_cmp(tags[j - 1].key.as_bytes(), tags[j].key.as_bytes()) {
                    Ordering::Greater => tags.swap(j - 1, j),
                    Ordering::Equal => return Err(LineErrorReason::DuplicateTagKey),
                    Ordering::Less => break,
                }
                j -= 1;
            }
        }
        return Ok(());
    }
    let by_key = |a: &Tag<'_>, b: &Tag<'_>| a.key.as_bytes().cmp(b.key.as_bytes());
    if !tags.windows(2).all(|w| by_key(&w[0], &w[1]) != Ordering::Greater) {
        tags.sort_unstable_by(by_key);
    }
    if tags.windows(2).any(|w| w[0].key == w[1].key) {
        return Err(LineErrorReason::DuplicateTagKey);
    }
    Ok(())
}

/// Removes earlier duplicates of a field key, keeping the last value and the
/// input order of the survivors. Small sets compare pairwise; large ones sort
/// an index scratch so adversarial lines stay O(n log n).
pub(super) fn dedup_fields_last_wins(scratch: &mut LineScratch<'_, '_>) {
    let fields = &mut *scratch.fields;
    let n = fields.len();
    if n < 2 {
        return;
    }
    // Small sets with distinct keys (the common case): nothing to mark. A
    // 64-bit signature set of (length, last byte) proves most sets distinct
    // with one well-predicted branch per key; a shared signature falls back
    // to comparing pairs.
    if n <= 16 {
        let mut seen = 0u64;
        let mut maybe_duplicate = false;
        for f in fields.iter() {
            let key = f.key.as_bytes();
            let signature = (key.len() as u64).wrapping_mul(7) ^ u64::from(key.last().copied().unwrap_or(0));
            let bit = 1u64 << (signature & 63);
            maybe_duplicate |= seen & bit != 0;
            seen |= bit;
        }
        if !maybe_duplicate
            || !fields
                .iter()
                .enumerate()
                .any(|(i, g)| fields.get(i + 1..).unwrap_or(&[]).iter().any(|f| same_key(&g.key, &f.key)))
        {
            return;
        }
    }
    let dead = &mut *scratch.field_dead;
    dead.clear();
    dead.resize(n, false);
    let mut any_dead = false;
    if n <= 16 {
        for i in 0..n {
            let later_same = fields
                .get(i + 1..)
                .unwrap_or(&[])
                .iter()
                .any(|f| fields.get(i).is_some_and(|g| same_key(&g.key, &f.key)));
            if later_same {
                if let Some(d) = dead.get_mut(i) {
                    *d = true;
                    any_dead = true;
                }
            }
        }
    } else {
        let order = &mut *scratch.field_order;
        order.clear();
        order.extend((0..n).filter_map(|i| u32::try_from(i).ok()));
        let key_of = |i: u32| fields.get(i as usize).map(|f| f.key.as_bytes()).unwrap_or(&[]);
        // Stable: equal keys keep input order, so the last of a run is the survivor.
        order.sort_by(|&a, &b| key_of(a).cmp(key_of(b)));
        for w in order.windows(2) {
            if key_of(w[0]) == key_of(w[1]) {
                if let Some(d) = dead.get_mut(w[0] as usize) {
                    *d = true;
                    any_dead = true;
                }
            }
        }
    }
    if any_dead {
        let mut index = 0;
        fields.retain(|_| {
            let keep = !dead.get(index).copied().unwrap_or(false);
            index += 1;
            keep
        });
    }
}

/// `a == b`, rejecting most distinct keys (same length, shared prefix such as
/// `usage_`) on the last byte before calling memcmp.
fn same_key(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.last() == b.last() && a == b
}
