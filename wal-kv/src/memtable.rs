//! The in-memory table of recent batches: every version of every key since
//! the last checkpoint, ordered by key then newest first.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;

use crate::arena::Arena;
use crate::batch::{Op, WriteBatch};
use crate::bloom;

/// One version of a key: its value, or a tombstone (`None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub key: Bytes,
    pub lsn: u64,
    pub value: Option<Bytes>,
}

/// Bytes charged per version beyond its key and value (map node, LSN).
const VERSION_OVERHEAD_BYTES: usize = 56;

/// The most keys a memtable's filter is sized for: a budget past about
/// 900 MiB (or `usize::MAX`, "checkpoint only when asked") gets a 20 MiB
/// filter, not one proportional to the budget, allocated before any data.
pub(crate) const FILTER_KEYS_MAX: usize = 1 << 24;

/// The first 8 bytes of a key as a big-endian number, zero-padded. Ordering
/// by it never contradicts the keys' byte order, so comparing it first
/// settles most comparisons without touching the keys' bytes.
pub(crate) fn prefix(key: &[u8]) -> u64 {
    let mut head = [0u8; 8];
    let n = key.len().min(8);
    head[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(head)
}

/// A version's place in the memtable: key order (the prefix first, as a
/// shortcut), then newest first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Place {
    prefix: u64,
    key: Bytes,
    lsn: Reverse<u64>,
}

impl Place {
    fn new(key: Bytes, lsn: u64) -> Place {
        Place {
            prefix: prefix(&key),
            key,
            lsn: Reverse(lsn),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Memtable {
    map: BTreeMap<Place, Option<Bytes>>,
    bytes: usize,
    /// A Bloom filter of every key applied, so that a get for a key the
    /// memtable lacks costs one memory access instead of a descent through
    /// the map (a node visit per level, each a likely cache miss). Sized
    /// once, for the most versions the budget admits.
    filter: Vec<u8>,
    /// Holds the small keys and values (see [`crate::arena`]).
    arena: Arena,
}

impl Memtable {
    /// An empty memtable for a budget of `budget_bytes` (the store's
    /// `memtable_bytes_max`), which sizes its filter: about 1/45 of the
    /// budget, enough for 10 bits per key were every version the smallest
    /// possible, and at most [`FILTER_KEYS_MAX`] keys' worth (20 MiB). A
    /// memtable may outgrow what its filter was sized for (a replay, one
    /// large batch, a huge budget); its filter then answers "maybe" more
    /// often, never wrongly.
    pub fn new(budget_bytes: usize) -> Memtable {
        let keys = (budget_bytes / VERSION_OVERHEAD_BYTES).min(FILTER_KEYS_MAX);
        Memtable {
            map: BTreeMap::new(),
            bytes: 0,
            filter: vec![0; bloom::lines_for(keys) * bloom::LINE_BYTES],
            arena: Arena::default(),
        }
    }

    /// Applies batch `lsn`; a later operation on the same key wins.
    pub fn apply(&mut self, batch: &WriteBatch, lsn: u64) {
        for op in batch.ops() {
            let (key, value) = match op {
                Op::Put { key, value } => (self.arena.keep(key), Some(self.arena.keep(value))),
                Op::Delete { key } => (self.arena.keep(key), None),
            };
            let key_len = key.len();
            bloom::add(&mut self.filter, bloom::HASHES, bloom::hashes(&key));
            self.bytes += key_len + value.as_ref().map_or(0, Bytes::len) + VERSION_OVERHEAD_BYTES;
            if let Some(old) = self.map.insert(Place::new(key, lsn), value) {
                self.bytes -= key_len + old.map_or(0, |v| v.len()) + VERSION_OVERHEAD_BYTES;
            }
        }
    }

    /// Bytes held, approximately.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The newest version of `key` (whose [`bloom::hashes`] are `hashes`) at
    /// or below `snapshot`: `Some(None)` is a tombstone, `None` means this
    /// table does not know the key.
    pub fn get(&self, key: &[u8], hashes: (u32, u32), snapshot: u64) -> Option<Option<Bytes>> {
        // An empty memtable (the usual one after a reopen) would still cost
        // a filter line that is rarely in the CPU caches.
        if self.map.is_empty() || !bloom::may_contain(&self.filter, bloom::HASHES, hashes) {
            return None;
        }
        let start = Place::new(Bytes::copy_from_slice(key), snapshot);
        let (place, v) = self.map.range(start..).next()?;
        // As from a table (`crate::table::value_out`): a small value is the
        // caller's own copy, so keeping it keeps no 64 KiB chunk alive.
        (place.key.as_ref() == key).then(|| v.as_ref().map(crate::table::value_out))
    }

    /// Every version with a key in `[lo, hi)` (bounds as given), in order;
    /// none for bounds that hold no key (`lo` above `hi`, for instance).
    pub fn range(
        &self,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
    ) -> impl DoubleEndedIterator<Item = Entry> + '_ {
        let empty = is_empty_range(lo, hi);
        let lo = match lo {
            Bound::Included(k) => Bound::Included(Place::new(Bytes::copy_from_slice(k), u64::MAX)),
            Bound::Excluded(k) => Bound::Excluded(Place::new(Bytes::copy_from_slice(k), 0)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let hi = match hi {
            Bound::Included(k) => Bound::Included(Place::new(Bytes::copy_from_slice(k), 0)),
            Bound::Excluded(k) => Bound::Excluded(Place::new(Bytes::copy_from_slice(k), u64::MAX)),
            Bound::Unbounded => Bound::Unbounded,
        };
        // `BTreeMap::range` panics on inverted bounds: never pass them.
        (!empty)
            .then(|| self.map.range((lo, hi)))
            .into_iter()
            .flatten()
            .map(|(place, v)| Entry {
                key: place.key.clone(),
                lsn: place.lsn.0,
                value: v.clone(),
            })
    }
}

/// Whether no key lies within the bounds.
pub(crate) fn is_empty_range(lo: Bound<&[u8]>, hi: Bound<&[u8]>) -> bool {
    match (lo, hi) {
        (Bound::Included(l), Bound::Included(h)) => l > h,
        (Bound::Included(l) | Bound::Excluded(l), Bound::Excluded(h))
        | (Bound::Excluded(l), Bound::Included(h)) => l >= h,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_never_contradicts_byte_order() {
        let keys: [&[u8]; 9] = [
            b"",
            b"\0",
            b"a",
            b"a\0",
            b"ab",
            b"abcdefgh",
            b"abcdefgh\0",
            b"abcdefgi",
            b"\xff",
        ];
        for a in keys {
            for b in keys {
                if a < b {
                    assert!(prefix(a) <= prefix(b), "{a:?} {b:?}");
                }
            }
        }
    }

    #[test]
    fn versions_are_read_as_of_a_snapshot() {
        let mut m = Memtable::new(1 << 20);
        let mut b = WriteBatch::new();
        b.put("k", "v1");
        m.apply(&b, 5);
        let mut b = WriteBatch::new();
        b.delete("k").put("z", "last");
        m.apply(&b, 9);
        assert_eq!(m.get(b"k", bloom::hashes(b"k"), 4), None);
        assert_eq!(
            m.get(b"k", bloom::hashes(b"k"), 5),
            Some(Some(Bytes::from("v1")))
        );
        assert_eq!(
            m.get(b"k", bloom::hashes(b"k"), 8),
            Some(Some(Bytes::from("v1")))
        );
        assert_eq!(m.get(b"k", bloom::hashes(b"k"), 9), Some(None));
        assert_eq!(m.get(b"j", bloom::hashes(b"j"), 9), None);
        let all: Vec<u64> = m
            .range(Bound::Included(b"k"), Bound::Unbounded)
            .map(|e| e.lsn)
            .collect();
        assert_eq!(all, [9, 5, 9]);
    }

    #[test]
    fn a_small_value_read_is_a_copy_and_a_large_one_is_shared() {
        let max = crate::table::VALUE_COPY_BYTES_MAX;
        let mut m = Memtable::new(1 << 20);
        let mut b = WriteBatch::new();
        for len in [1, max, max + 1] {
            b.put(format!("k{len}"), vec![7u8; len]);
        }
        m.apply(&b, 1);
        for len in [1, max, max + 1] {
            let value = get_of(&m, format!("k{len}").as_bytes())
                .flatten()
                .expect("present");
            assert_eq!(value, vec![7u8; len]);
            // A copy owns its bytes; a shared value keeps what holds it
            // (a chunk, the batch's allocation) alive while the caller
            // keeps it.
            assert_eq!(value.is_unique(), len <= max, "value of {len} bytes");
        }
    }

    fn get_of(m: &Memtable, key: &[u8]) -> Option<Option<Bytes>> {
        m.get(key, bloom::hashes(key), u64::MAX)
    }

    #[test]
    fn a_memtable_past_its_budget_still_finds_every_key() {
        // A 4 KiB budget sizes the filter for 73 keys; 5,000 saturate it.
        let mut m = Memtable::new(4096);
        for i in 0..5_000u64 {
            let mut batch = WriteBatch::new();
            batch.put(format!("key{i}"), format!("v{i}"));
            batch.delete(format!("gone{i}"));
            m.apply(&batch, i + 1);
        }
        for i in 0..5_000u64 {
            let want = Some(Some(Bytes::from(format!("v{i}"))));
            assert_eq!(get_of(&m, format!("key{i}").as_bytes()), want);
            assert_eq!(get_of(&m, format!("gone{i}").as_bytes()), Some(None));
        }
    }

    #[test]
    fn the_filter_turns_away_most_keys_the_memtable_lacks() {
        let mut m = Memtable::new(32 << 20);
        let mut batch = WriteBatch::new();
        for i in 0..50_000u64 {
            batch.put(format!("key{i}"), "v");
        }
        m.apply(&batch, 1);
        // Every key added is found, through a filter far from full (a
        // filter that disagreed with itself would turn some away)...
        for i in 0..50_000u64 {
            assert_eq!(
                get_of(&m, format!("key{i}").as_bytes()),
                Some(Some(Bytes::from("v")))
            );
        }
        // ...and most keys never added are turned away by it alone.
        let passed = (0..50_000u64)
            .filter(|i| {
                bloom::may_contain(
                    &m.filter,
                    bloom::HASHES,
                    bloom::hashes(format!("absent{i}").as_bytes()),
                )
            })
            .count();
        // Sized for 600k keys and holding 50k: well under 1% expected.
        assert!(
            passed < 500,
            "{passed} of 50000 absent keys passed the filter"
        );
        assert_eq!(get_of(&m, b"absent7"), None);
    }
}
