//! A cached block's hash index: where each key's newest version starts,
//! found by the key's hash. Built in memory by the first get that finds the
//! block in the cache, never stored, so the table format does not change.
//!
//! Why: a point read used to binary-search the block's key prefixes, and on
//! a store larger than the CPU caches every step of that search was a cache
//! miss. A profile of K2 gets put half of a get there. One probe of this
//! index touches one line, and the 8-bit tag beside each offset lets most
//! probes of other keys pass without reading their key.

/// Bits of a slot that hold an entry's offset plus one (0: an empty slot).
const OFFSET_BITS: u32 = 24;
const OFFSET_MASK: u32 = (1 << OFFSET_BITS) - 1;
/// The largest entry offset a slot holds. A block in which some key's first
/// entry starts past it (about 16 MiB in; default blocks are 16 KiB) gets no
/// index, and a get searches it instead.
pub(super) const ENTRY_OFFSET_MAX: usize = OFFSET_MASK as usize - 1;

/// An open-addressed table of slots, `tag << 24 | (offset + 1)`, probed
/// linearly from `hash & mask`; at most three quarters full, so a probe
/// meets an empty slot soon.
#[derive(Debug, Default)]
pub(super) struct HashIndex {
    slots: Box<[u32]>,
}

impl HashIndex {
    /// An index of `keys`, each (hash, offset of its first entry).
    /// `None` when an offset does not fit a slot.
    pub(super) fn build(keys: &[(u32, usize)]) -> Option<HashIndex> {
        let capacity = capacity(keys.len());
        let mut slots = vec![0u32; capacity].into_boxed_slice();
        let mask = capacity - 1;
        for &(hash, offset) in keys {
            let offset = u32::try_from(offset)
                .ok()
                .filter(|&o| o as usize <= ENTRY_OFFSET_MAX)?;
            let slot = tag(hash) | (offset + 1);
            let mut i = hash as usize & mask;
            // Terminates: more slots than keys, so one is empty.
            while slots[i] != 0 {
                i = (i + 1) & mask;
            }
            slots[i] = slot;
        }
        Some(HashIndex { slots })
    }

    /// The offsets of the entries whose key may have this hash, in the
    /// order they were added: callers compare each one's key.
    pub(super) fn candidates(&self, hash: u32) -> impl Iterator<Item = usize> + '_ {
        let mask = self.slots.len().wrapping_sub(1);
        let start = hash as usize & mask;
        let tag = tag(hash);
        // Every slot from `start` on, wrapping, up to the first empty one;
        // an index always has one, and the range bounds the walk anyway.
        (0..self.slots.len())
            .map(move |k| self.slots[(start + k) & mask])
            .take_while(|&slot| slot != 0)
            .filter(move |&slot| slot & !OFFSET_MASK == tag)
            .map(|slot| (slot & OFFSET_MASK) as usize - 1)
    }

    /// The memory an index of at most `keys` keys holds, in bytes.
    pub(super) fn bytes_for(keys: usize) -> usize {
        4 * capacity(keys)
    }
}

/// Slots for `keys` keys: a quarter or more of them stay empty, so every
/// probe ends.
fn capacity(keys: usize) -> usize {
    (keys + keys / 3 + 1).next_power_of_two()
}

/// The slot bits a hash contributes: its top 8 bits (the low ones pick the
/// slot, so the two are independent for any index of under 2^24 slots).
fn tag(hash: u32) -> u32 {
    hash & !OFFSET_MASK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_key_among_colliding_ones() {
        // Hashes that share their low bits, and some their tag too.
        let keys: Vec<(u32, usize)> = (0..300)
            .map(|i| (((i % 7) << 24) | 5, 13 * i as usize))
            .collect();
        let index = HashIndex::build(&keys).expect("offsets fit");
        for &(hash, offset) in &keys {
            let found: Vec<usize> = index.candidates(hash).collect();
            assert!(found.contains(&offset), "{offset} not among {found:?}");
            // The tag filters out the keys with another tag.
            assert!(found.iter().all(|o| (o / 13) % 7 == offset / 13 % 7));
        }
        assert_eq!(index.candidates(0xff00_0005).count(), 0);
    }

    #[test]
    fn an_offset_past_the_slot_bits_builds_no_index() {
        assert!(HashIndex::build(&[(1, ENTRY_OFFSET_MAX + 1)]).is_none());
        let index = HashIndex::build(&[(1, ENTRY_OFFSET_MAX)]).expect("fits");
        assert_eq!(index.candidates(1).collect::<Vec<_>>(), [ENTRY_OFFSET_MAX]);
    }

    #[test]
    fn an_empty_index_finds_nothing() {
        let index = HashIndex::build(&[]).expect("nothing to place");
        assert_eq!(index.candidates(7).count(), 0);
    }
}
