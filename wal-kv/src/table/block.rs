//! A table's blocks: checked decoding of untrusted bytes and the search
//! inside a block.

use std::sync::OnceLock;

use super::hash_index::HashIndex;
use super::*;

/// The positions in sorted `prefixes` where they equal `p`: everything
/// before `lo` is below it, everything from `hi` above it.
pub(super) fn equal_range(prefixes: &[u64], p: u64) -> (usize, usize) {
    let lo = prefixes.partition_point(|&x| x < p);
    if prefixes.get(lo) != Some(&p) {
        return (lo, lo); // the common case: no other key shares the prefix
    }
    let hi = lo
        + prefixes
            .get(lo..)
            .unwrap_or_default()
            .partition_point(|&x| x == p);
    (lo, hi)
}

/// The CPU's cache line, the unit [`Block::touch_entry`] loads by.
const CACHE_LINE_BYTES: usize = 64;
/// The most of an entry [`Block::touch_entry`] loads ahead: a few lines,
/// enough for small values. A larger value is read in order by whoever
/// copies it, which the CPU's own prefetchers follow.
const ENTRY_TOUCH_BYTES_MAX: usize = 512;

/// Values up to this size are copied out by a point read, not shared with
/// the block or memtable chunk that holds them (see [`value_out`]).
pub(crate) const VALUE_COPY_BYTES_MAX: usize = 1024;
// A memtable keeps values up to its chunk limit in shared 64 KiB chunks;
// copying every one of them out is what keeps a kept value from keeping
// its chunk alive.
const _: () = assert!(crate::arena::COPIED_BYTES_MAX <= VALUE_COPY_BYTES_MAX);

/// A value a point read found in `shared` (a block, a memtable chunk), as
/// the caller gets it: a copy up to [`VALUE_COPY_BYTES_MAX`], else `shared`
/// itself.
///
/// Why: sharing costs an atomic increment and decrement on the shared
/// buffer's count, an allocation of its own that a get on a large store
/// finds out of the CPU caches, and a value kept by the caller keeps the
/// whole buffer (a 16 KiB block, a 64 KiB chunk) in memory. A copy of a
/// small value is cheaper than that miss, and owns only its bytes.
pub(crate) fn value_out(shared: &Bytes) -> Bytes {
    value_out_of(shared, || shared.clone())
}

fn value_out_of(v: &[u8], share: impl FnOnce() -> Bytes) -> Bytes {
    if v.len() <= VALUE_COPY_BYTES_MAX {
        Bytes::copy_from_slice(v)
    } else {
        share()
    }
}

/// Reads untrusted bytes.
pub(super) struct Cursor<'a> {
    pub(super) data: &'a [u8],
    pub(super) at: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let out = self.data.get(self.at..end)?;
        self.at = end;
        Some(out)
    }
    pub(super) fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }
    pub(super) fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    pub(super) fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    pub(super) fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.u32()?).ok()?;
        self.take(n)
    }
    pub(super) fn done(&self) -> bool {
        self.at == self.data.len()
    }
}

/// Checks and strips a trailing CRC32C.
pub(super) fn checked<'a>(
    data: &'a [u8],
    name: &str,
    offset: u64,
    what: &str,
) -> Result<&'a [u8], KvError> {
    let split = data
        .len()
        .checked_sub(4)
        .ok_or_else(|| KvError::corrupt(name, offset, format!("{what} too short")))?;
    let (body, crc) = data.split_at(split);
    let stored = u32::from_le_bytes(crc.try_into().unwrap_or_default());
    if crc32c::crc32c(body) != stored {
        return Err(KvError::corrupt(
            name,
            offset,
            format!("{what} checksum mismatch"),
        ));
    }
    Ok(body)
}

#[derive(Debug)]
pub(super) struct BlockHandle {
    pub(super) last_key: Bytes,
    pub(super) offset: u64,
    pub(super) len: u32,
}

/// A decoded block: its entries' bytes, where each entry starts, and (once
/// a get finds it cached) where each key's newest version starts by the
/// key's hash. Checked once when read, order included, so lookups parse
/// only the entries they touch and the search and the index agree.
#[derive(Debug, Default)]
pub(crate) struct Block {
    data: Bytes,
    starts: Vec<u32>,
    /// Built by the first get that finds the block in the cache (see
    /// [`Block::find`]); `None` inside when a key starts past what a slot
    /// holds, and a get searches the block instead.
    index: OnceLock<Option<HashIndex>>,
}

/// Where a block leaves a point read (see [`Block::find`]).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Found {
    /// The newest version at or below the snapshot: a value, or `None` for
    /// a deletion.
    Version(Option<Bytes>),
    /// No version at or below the snapshot is here, and none can follow in
    /// later blocks.
    Absent,
    /// Every version here is newer than the snapshot, and the key's last:
    /// older ones may begin the next block.
    MayContinue,
}

impl Block {
    /// The memory the block holds while cached, in bytes: its bytes, its
    /// entries' starts, and its hash index, weighed before it is built as
    /// large as it can be, plus its header.
    pub(super) fn weight(&self) -> u64 {
        let index = HashIndex::bytes_for(self.starts.len());
        (self.data.len() + 4 * self.starts.len() + index + 64) as u64
    }

    /// Walks every entry of `raw`, checking its structure and its order:
    /// keys ascending, each key's versions newest first (a repeated version
    /// is let through: the search and the index both find its first copy). A block out of
    /// order (a bug that wrote it, bytes that pass the CRC by chance) would
    /// answer a search and an index differently.
    pub(super) fn decode(raw: Bytes) -> Option<Block> {
        let mut c = Cursor { data: &raw, at: 0 };
        let mut starts = Vec::new();
        let mut last: Option<(&[u8], u64)> = None;
        while !c.done() {
            starts.push(u32::try_from(c.at).ok()?);
            let key = c.bytes()?;
            let lsn = c.u64()?;
            if let Some((k, l)) = last
                && (key < k || (key == k && lsn > l))
            {
                return None;
            }
            last = Some((key, lsn));
            match c.u8()? {
                0 => {}
                1 => {
                    c.bytes()?;
                }
                _ => return None,
            }
        }
        Some(Block {
            data: raw,
            starts,
            index: OnceLock::new(),
        })
    }

    /// The block's hash index, built on first use: each key's first
    /// (newest) entry by its [`bloom::key_hash`].
    fn index(&self) -> Option<&HashIndex> {
        self.index
            .get_or_init(|| {
                let mut firsts = Vec::new();
                let mut last = None;
                for &start in &self.starts {
                    let key = self.key_at(start as usize);
                    if key != last {
                        firsts.push((key.map_or(0, bloom::key_hash), start as usize));
                        last = key;
                    }
                }
                HashIndex::build(&firsts)
            })
            .as_ref()
    }

    /// Whether the block's index has been built.
    #[cfg(test)]
    pub(super) fn is_indexed(&self) -> bool {
        self.index.get().is_some()
    }

    pub(super) fn len(&self) -> usize {
        self.starts.len()
    }

    /// Entry `i`, sharing the block's bytes.
    pub(super) fn entry(&self, i: usize) -> Option<Entry> {
        let at = usize::try_from(*self.starts.get(i)?).ok()?;
        let mut c = Cursor {
            data: &self.data,
            at,
        };
        let key = self.data.slice_ref(c.bytes()?);
        let lsn = c.u64()?;
        let value = match c.u8()? {
            0 => None,
            1 => Some(self.data.slice_ref(c.bytes()?)),
            _ => return None,
        };
        Some(Entry { key, lsn, value })
    }

    /// The newest version of `key` (whose [`bloom::key_hash`] is `hash`) at
    /// or below `snapshot` in this block, through its hash index if
    /// `indexed` (building it the first time), else by a binary search.
    /// `None`: an entry is malformed (unreachable: decoding checked every
    /// entry).
    pub(super) fn find(
        &self,
        key: &[u8],
        hash: u32,
        snapshot: u64,
        indexed: bool,
    ) -> Option<Found> {
        let index = if indexed { self.index() } else { None };
        let first = match index {
            Some(index) => index.candidates(hash).find(|&at| {
                self.touch_entry(at);
                self.key_at(at) == Some(key)
            }),
            None => {
                let i = self
                    .starts
                    .partition_point(|&s| self.key_at(s as usize).is_some_and(|k| k < key));
                let at = self.starts.get(i).map(|&s| s as usize);
                at.filter(|&at| self.key_at(at) == Some(key))
            }
        };
        let Some(mut at) = first else {
            return Some(Found::Absent);
        };
        // The key's versions follow each other, newest first.
        loop {
            if at == self.data.len() {
                return Some(Found::MayContinue);
            }
            let mut c = Cursor {
                data: &self.data,
                at,
            };
            if c.bytes()? != key {
                return Some(Found::Absent);
            }
            let lsn = c.u64()?;
            let value = match c.u8()? {
                0 => None,
                1 => Some(c.bytes()?),
                _ => return None,
            };
            if lsn <= snapshot {
                return Some(Found::Version(value.map(|v| self.value(v))));
            }
            at = c.at;
        }
    }

    /// Loads the cache lines after the first that an entry of the block's
    /// average size starting at `at` spans, up to [`ENTRY_TOUCH_BYTES_MAX`].
    ///
    /// Why: an entry found by the index is one line for its key and two or
    /// three more for a K2-sized value, and the copy that follows would
    /// wait for each in turn, since where the value ends is read from the
    /// entry itself. These loads depend only on `at`, so the CPU issues them
    /// while the key's line is still coming, and the misses overlap. A
    /// guess wrong by a line costs one read of a line nobody needs.
    fn touch_entry(&self, at: usize) {
        let average = self.data.len() / self.starts.len().max(1);
        let end = at
            .saturating_add(average.min(ENTRY_TOUCH_BYTES_MAX))
            .min(self.data.len());
        // Line boundaries are in memory, not in the block: the offset in
        // the block where the line after the entry's first one begins.
        let in_line = (self.data.as_ptr() as usize).wrapping_add(at) % CACHE_LINE_BYTES;
        let mut sink = 0u8;
        let mut next = at.saturating_add(CACHE_LINE_BYTES - in_line);
        while next < end {
            sink ^= self.data.get(next).copied().unwrap_or_default();
            next += CACHE_LINE_BYTES;
        }
        // Keeps the loads: nothing else reads what they return.
        std::hint::black_box(sink);
    }

    /// A value found in this block, as the caller gets it (see
    /// [`value_out`]).
    fn value(&self, v: &[u8]) -> Bytes {
        value_out_of(v, || self.data.slice_ref(v))
    }

    /// The key of the entry starting at byte `at`.
    fn key_at(&self, at: usize) -> Option<&[u8]> {
        Cursor {
            data: &self.data,
            at,
        }
        .bytes()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A version as a block stores it: key, LSN, value (`None`: deleted).
    type Version = (Vec<u8>, u64, Option<Vec<u8>>);

    fn len32(bytes: &[u8]) -> [u8; 4] {
        u32::try_from(bytes.len()).expect("small").to_le_bytes()
    }

    /// A block's raw bytes: entries as the table layout has them.
    fn encode(entries: &[Version]) -> Bytes {
        let mut raw = Vec::new();
        for (key, lsn, value) in entries {
            raw.extend_from_slice(&len32(key));
            raw.extend_from_slice(key);
            raw.extend_from_slice(&lsn.to_le_bytes());
            match value {
                None => raw.push(0),
                Some(v) => {
                    raw.push(1);
                    raw.extend_from_slice(&len32(v));
                    raw.extend_from_slice(v);
                }
            }
        }
        Bytes::from(raw)
    }

    /// What a block of sorted `entries` answers, read off the list.
    fn model(entries: &[Version], key: &[u8], snapshot: u64) -> Found {
        let versions: Vec<_> = entries.iter().filter(|e| e.0 == key).collect();
        if let Some(v) = versions.iter().find(|e| e.1 <= snapshot) {
            return Found::Version(v.2.clone().map(Bytes::from));
        }
        match entries.last() {
            Some(last) if !versions.is_empty() && last.0 == key => Found::MayContinue,
            _ => Found::Absent,
        }
    }

    proptest! {
        /// The index and the search it replaces agree with the list, for
        /// keys present, absent, and cut off at the block's end.
        #[test]
        fn find_agrees_with_the_entries_indexed_or_not(
            keys in prop::collection::btree_map(
                prop::collection::vec(0u8..4, 0..4),
                prop::collection::btree_set(1u64..20, 1..4),
                0..40,
            ),
            deleted in any::<u64>(),
            queries in prop::collection::vec((prop::collection::vec(0u8..4, 0..4), 0u64..22), 1..40),
        ) {
            let mut entries = Vec::new();
            for (i, (key, lsns)) in keys.iter().enumerate() {
                for &lsn in lsns.iter().rev() {
                    // A value that names its key and version.
                    let value = (deleted >> (i % 64) & 1 == 0)
                        .then(|| format!("{i}@{lsn}").into_bytes());
                    entries.push((key.clone(), lsn, value));
                }
            }
            let block = Block::decode(encode(&entries)).expect("well formed");
            prop_assert!(block.index().is_some());
            for (key, snapshot) in &queries {
                let hash = bloom::key_hash(key);
                for indexed in [true, false] {
                    let want = model(&entries, key, *snapshot);
                    prop_assert_eq!(block.find(key, hash, *snapshot, indexed), Some(want));
                }
            }
        }
    }

    proptest! {
        /// Bytes that pass the CRC but break the order (unsorted keys, a key
        /// in two separate runs, versions oldest first) are refused; a block
        /// in order is read, and answers, without a panic or a hang.
        #[test]
        fn decode_refuses_blocks_out_of_order(
            entries in prop::collection::vec(
                (prop::collection::vec(0u8..3, 0..3), 0u64..6, prop::option::of(prop::collection::vec(any::<u8>(), 0..3))),
                0..30,
            ),
            queries in prop::collection::vec((prop::collection::vec(0u8..3, 0..3), 0u64..7), 1..20),
        ) {
            let in_order = entries
                .windows(2)
                .all(|w| w[0].0 < w[1].0 || (w[0].0 == w[1].0 && w[0].1 >= w[1].1));
            let block = Block::decode(encode(&entries));
            prop_assert_eq!(block.is_some(), in_order);
            for indexed in [true, false] {
                for (key, snapshot) in &queries {
                    if let Some(block) = &block {
                        prop_assert!(block.find(key, bloom::key_hash(key), *snapshot, indexed).is_some());
                    }
                }
            }
        }
    }

    #[test]
    fn a_key_starting_past_the_slot_bits_leaves_the_block_searched() {
        use super::super::hash_index::ENTRY_OFFSET_MAX;
        let big = vec![0u8; ENTRY_OFFSET_MAX];
        let entries = vec![
            (b"a".to_vec(), 2, Some(big)),
            (b"b".to_vec(), 1, Some(b"small".to_vec())),
        ];
        let block = Block::decode(encode(&entries)).expect("well formed");
        assert!(block.index().is_none(), "b starts past what a slot holds");
        let found = block.find(b"b", bloom::key_hash(b"b"), 5, true);
        assert_eq!(found, Some(Found::Version(Some(Bytes::from("small")))));
        let found = block.find(b"c", bloom::key_hash(b"c"), 5, true);
        assert_eq!(found, Some(Found::Absent));
    }

    #[test]
    fn a_key_whose_versions_outlast_the_block_may_continue() {
        let entries = vec![
            (b"a".to_vec(), 9, Some(b"a9".to_vec())),
            (b"b".to_vec(), 8, Some(b"b8".to_vec())),
            (b"b".to_vec(), 7, None),
        ];
        let block = Block::decode(encode(&entries)).expect("well formed");
        let find = |key: &[u8], snapshot| block.find(key, bloom::key_hash(key), snapshot, true);
        assert_eq!(find(b"b", 6), Some(Found::MayContinue));
        assert_eq!(
            find(b"a", 8),
            Some(Found::Absent),
            "older versions would be here"
        );
        assert_eq!(find(b"b", 7), Some(Found::Version(None)));
        assert_eq!(
            find(b"b", 100),
            Some(Found::Version(Some(Bytes::from("b8"))))
        );
        assert_eq!(find(b"c", 100), Some(Found::Absent));
    }
}
