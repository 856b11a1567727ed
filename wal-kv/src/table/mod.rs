//! Immutable sorted table files: what a checkpoint writes and compaction
//! merges. Layout (all integers little-endian):
//!
//! ```text
//! block*  : payload | codec u8 | raw_len u32 | crc32c u32 (of payload, codec, raw_len)
//!           payload (after decompression) = entry*, each
//!           key_len u32 | key | lsn u64 | has_value u8 | [value_len u32 | value]
//!           sorted by key, then newest LSN first
//! index   : first_key_len u32 | first_key
//!           | (last_key_len u32 | last_key | offset u64 | len u32)* | crc32c u32
//! filter  : hashes u32 | line* | crc32c u32       (a Bloom filter of the keys:
//!           64-byte lines; crc32c(key) picks a key's line, and `hashes`
//!           bits in it from crc32c_append(0x9e3779b9, key) and a step)
//! footer  : magic "WALKVSST" | version u32 | index_offset u64 | index_len u32
//!           | filter_offset u64 | filter_len u32 | entries u64 | max_lsn u64 | crc32c u32
//! ```

use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use wal_io::{FileOptions, FileRef, Storage};

use crate::KvError;
use crate::bloom;
use crate::memtable::{Entry, prefix};

const MAGIC: &[u8; 8] = b"WALKVSST";
const VERSION: u32 = 3;
/// Version 2 had no first key in the index; such tables are still read.
const VERSION_NO_FIRST_KEY: u32 = 2;
const FOOTER_LEN: usize = 8 + 4 + 8 + 4 + 8 + 4 + 8 + 8 + 4;
const TRAILER_LEN: usize = 9;
/// How table blocks are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TableCompression {
    /// Stored as they are.
    #[default]
    None,
    /// LZ4 block format.
    Lz4,
    /// Snappy raw format.
    Snappy,
}

impl TableCompression {
    fn code(self) -> u8 {
        match self {
            TableCompression::None => 0,
            TableCompression::Lz4 => 1,
            TableCompression::Snappy => 2,
        }
    }
}

/// The file name of table `id`.
pub(crate) fn file_name(id: u64) -> String {
    format!("{id:020}.sst")
}

/// The id of a table file name.
pub(crate) fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".sst")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

mod block;
mod build;
mod cache;
#[cfg(test)]
mod cache_tests;
mod hash_index;
#[cfg(test)]
mod tests;

#[cfg(test)]
pub(crate) use block::VALUE_COPY_BYTES_MAX;
pub(crate) use block::{Block, value_out};
use block::{BlockHandle, Cursor, Found, checked, equal_range};
pub(crate) use build::TableBuilder;
use cache::Slots;
pub(crate) use cache::{BlockCache, block_cache};

/// An open table: index and filter in memory, blocks read on demand through
/// the store's block cache.
pub(crate) struct Table {
    pub id: u64,
    pub name: String,
    file: FileRef,
    /// The smallest key (the largest is the last block's last key).
    first_key: Bytes,
    blocks: Vec<BlockHandle>,
    /// The prefix of each block's last key.
    last_prefixes: Vec<u64>,
    filter: Vec<u8>,
    hashes: u32,
    cache: Arc<BlockCache>,
    /// Where the cache keeps this table's blocks, by number.
    slots: Arc<Slots>,
    pub entries: u64,
    pub max_lsn: u64,
    pub size: u64,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("id", &self.id)
            .field("blocks", &self.blocks.len())
            .field("entries", &self.entries)
            .field("max_lsn", &self.max_lsn)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        // Its blocks go now, not when the cache gets round to them.
        self.cache.forget(&self.slots);
    }
}

impl Table {
    pub fn open(storage: &dyn Storage, id: u64, cache: Arc<BlockCache>) -> Result<Table, KvError> {
        let name = file_name(id);
        let file = storage.open(&name, FileOptions::BUFFERED)?;
        let size = file.size()?;
        Table::from_file(file, name, id, size, cache)
    }

    fn from_file(
        file: FileRef,
        name: String,
        id: u64,
        size: u64,
        cache: Arc<BlockCache>,
    ) -> Result<Table, KvError> {
        let bad = |offset: u64, detail: &str| KvError::corrupt(&name, offset, detail);
        let footer_at = size
            .checked_sub(FOOTER_LEN as u64)
            .ok_or_else(|| bad(0, "shorter than a footer"))?;
        let mut footer = vec![0u8; FOOTER_LEN];
        file.read_at(footer_at, &mut footer)?;
        let body = checked(&footer, &name, footer_at, "footer")?;
        let mut c = Cursor { data: body, at: 0 };
        if c.take(8) != Some(MAGIC.as_slice()) {
            return Err(bad(footer_at, "not a table (magic)"));
        }
        let version = c.u32();
        if version != Some(VERSION) && version != Some(VERSION_NO_FIRST_KEY) {
            return Err(bad(footer_at, "unknown table version"));
        }
        let fields = (|| Some((c.u64()?, c.u32()?, c.u64()?, c.u32()?, c.u64()?, c.u64()?)))();
        let (index_offset, index_len, filter_offset, filter_len, entries, max_lsn) =
            fields.ok_or_else(|| bad(footer_at, "footer truncated"))?;
        let in_file = |off: u64, len: u32| {
            off.checked_add(u64::from(len))
                .is_some_and(|e| e <= footer_at)
        };
        if !in_file(index_offset, index_len) || !in_file(filter_offset, filter_len) {
            return Err(bad(footer_at, "index or filter outside the file"));
        }
        let mut index = vec![0u8; index_len as usize];
        file.read_at(index_offset, &mut index)?;
        let body = checked(&index, &name, index_offset, "index")?;
        let mut c = Cursor { data: body, at: 0 };
        let mut first_key = Bytes::new();
        if version == Some(VERSION) {
            let key = c
                .bytes()
                .ok_or_else(|| bad(index_offset, "first key truncated"))?;
            first_key = Bytes::copy_from_slice(key);
        }
        let mut blocks = Vec::new();
        while !c.done() {
            let handle = (|| {
                let last_key = Bytes::copy_from_slice(c.bytes()?);
                Some(BlockHandle {
                    last_key,
                    offset: c.u64()?,
                    len: c.u32()?,
                })
            })()
            .ok_or_else(|| bad(index_offset, "index entry truncated"))?;
            if !in_file(handle.offset, handle.len) || (handle.len as usize) < TRAILER_LEN {
                return Err(bad(index_offset, "block outside the data"));
            }
            blocks.push(handle);
        }
        let mut filter = vec![0u8; filter_len as usize];
        file.read_at(filter_offset, &mut filter)?;
        let body = checked(&filter, &name, filter_offset, "filter")?;
        let mut c = Cursor { data: body, at: 0 };
        let hashes = c
            .u32()
            .ok_or_else(|| bad(filter_offset, "filter truncated"))?;
        let bits = body.get(4..).unwrap_or_default().to_vec();
        if bits.is_empty() || bits.len() % bloom::LINE_BYTES != 0 || hashes == 0 || hashes > 32 {
            return Err(bad(filter_offset, "filter malformed"));
        }
        let mut table = Table {
            id,
            name,
            file,
            first_key,
            last_prefixes: blocks.iter().map(|b| prefix(&b.last_key)).collect(),
            slots: Slots::new(blocks.len()),
            blocks,
            filter: bits,
            hashes,
            cache,
            entries,
            max_lsn,
            size,
        };
        if version == Some(VERSION_NO_FIRST_KEY)
            && let Some(handle) = table.blocks.first()
        {
            let block = table.read_block(handle)?;
            let first = block
                .entry(0)
                .ok_or_else(|| KvError::corrupt(&table.name, 0, "first block empty"))?;
            table.first_key = first.key;
        }
        if let Some(last) = table.blocks.last()
            && table.first_key > last.last_key
        {
            let detail = "first key above the last key";
            return Err(KvError::corrupt(&table.name, index_offset, detail));
        }
        Ok(table)
    }

    /// The smallest and largest key; `None` for a table without entries.
    /// Data blocks.
    pub fn block_count(&self) -> usize {
        self.blocks.len()
    }

    pub fn key_range(&self) -> Option<(&Bytes, &Bytes)> {
        Some((&self.first_key, &self.blocks.last()?.last_key))
    }

    /// Whether the table may hold keys within `[lo, hi]`.
    pub fn overlaps(&self, lo: &[u8], hi: &[u8]) -> bool {
        self.key_range()
            .is_some_and(|(first, last)| first.as_ref() <= hi && last.as_ref() >= lo)
    }

    /// False when the key with these [`bloom::hashes`] is certainly absent.
    pub fn may_contain(&self, hashes: (u32, u32)) -> bool {
        bloom::may_contain(&self.filter, self.hashes, hashes)
    }

    /// Block `i`, from the cache or read, checked and decoded; a block read
    /// goes into the cache when `keep` says so.
    fn block(&self, i: usize, keep: bool) -> Result<Arc<Block>, KvError> {
        match self.slots.cached(i) {
            Some(block) => Ok(block),
            None => self.read_and_keep(i, keep),
        }
    }

    /// Block `i` read from the file, checked and decoded, and cached when
    /// `keep` says so. Past the last block, an empty one.
    fn read_and_keep(&self, i: usize, keep: bool) -> Result<Arc<Block>, KvError> {
        // Only a miss reads the handle: on a large table it is a cache miss
        // of its own.
        let Some(handle) = self.blocks.get(i) else {
            return Ok(Arc::new(Block::default()));
        };
        let block = Arc::new(self.read_block(handle)?);
        if keep {
            self.cache.insert(&self.slots, i, &block);
        }
        Ok(block)
    }

    fn read_block(&self, handle: &BlockHandle) -> Result<Block, KvError> {
        self.cache.reads.fetch_add(1, Ordering::Relaxed);
        let mut data = self.file.read_vec(handle.offset, handle.len as usize)?;
        let body = checked(&data, &self.name, handle.offset, "block")?;
        let bad = |detail: &str| KvError::corrupt(&self.name, handle.offset, detail);
        let split = body
            .len()
            .checked_sub(5)
            .ok_or_else(|| bad("block too short"))?;
        let (payload, meta) = body.split_at(split);
        let mut m = Cursor { data: meta, at: 0 };
        let (codec, raw_len) = (m.u8(), m.u32());
        let raw_len = raw_len.ok_or_else(|| bad("block trailer"))? as usize;
        let raw: Bytes = match codec {
            Some(0) => {
                // Uncompressed: keep the read buffer, minus its trailer.
                data.truncate(payload.len());
                Bytes::from(data)
            }
            Some(1) => lz4_flex::block::decompress(payload, raw_len)
                .map_err(|e| bad(&format!("lz4: {e}")))?
                .into(),
            Some(2) => snap::raw::Decoder::new()
                .decompress_vec(payload)
                .map_err(|e| bad(&format!("snappy: {e}")))?
                .into(),
            _ => return Err(bad("unknown codec")),
        };
        if raw.len() != raw_len {
            return Err(bad("block length mismatch"));
        }
        Block::decode(raw).ok_or_else(|| bad("entry malformed"))
    }

    /// The first block that may hold `key`.
    fn block_for(&self, key: &[u8]) -> usize {
        let (lo, hi) = equal_range(&self.last_prefixes, prefix(key));
        let blocks = self.blocks.get(lo..hi).unwrap_or_default();
        lo + blocks.partition_point(|b| b.last_key.as_ref() < key)
    }

    /// The newest version of `key` at or below `snapshot`, as
    /// [`crate::memtable::Memtable::get`]; `hash` is the key's
    /// [`bloom::key_hash`]. Reads blocks without asking the filter: callers
    /// ask it first.
    pub fn get(
        &self,
        key: &[u8],
        hash: u32,
        snapshot: u64,
    ) -> Result<Option<Option<Bytes>>, KvError> {
        // Versions of one key may continue into the next block.
        for i in self.block_for(key)..self.blocks.len() {
            // A block just read is in the CPU caches, where a binary search
            // costs little. Its index is built by the first get that finds
            // it in the block cache: a block read for one get and evicted
            // before the next (a data set past the cache) never pays for one.
            // A cached block is searched in place, under its slot's read
            // lock, without a count taken on the block itself.
            let found = match self
                .slots
                .with_cached(i, |b| b.find(key, hash, snapshot, true))
            {
                Some(found) => found,
                None => self
                    .read_and_keep(i, true)?
                    .find(key, hash, snapshot, false),
            };
            match found {
                Some(Found::Version(value)) => return Ok(Some(value)),
                Some(Found::Absent) => return Ok(None),
                Some(Found::MayContinue) => {}
                None => return Err(KvError::corrupt(&self.name, 0, "entry malformed")),
            }
        }
        Ok(None)
    }

    /// Every entry with a key in the bounds, in order (descending keys
    /// when `rev`, each key's versions then oldest first), a block at a
    /// time. `cached`: blocks read go into the block cache (reads by users),
    /// or not (compaction, which reads each block once and then deletes it).
    pub fn iter(
        self: &Arc<Self>,
        lo: Bound<Bytes>,
        hi: Bound<Bytes>,
        cached: bool,
        rev: bool,
    ) -> TableIter {
        let next_block = if rev {
            // One past the last block that may hold a key within `hi`:
            // versions of the bound's key may continue into the next block.
            let end = match &hi {
                Bound::Included(k) => self.blocks.partition_point(|b| b.last_key <= *k) + 1,
                Bound::Excluded(k) => self.blocks.partition_point(|b| b.last_key < *k) + 1,
                Bound::Unbounded => self.blocks.len(),
            };
            end.min(self.blocks.len())
        } else {
            match &lo {
                Bound::Included(k) | Bound::Excluded(k) => self.block_for(k),
                Bound::Unbounded => 0,
            }
        };
        TableIter {
            table: Arc::clone(self),
            next_block,
            pending: None,
            cached,
            rev,
            lo,
            hi,
            done: false,
        }
    }
}

/// Iterates a table's entries within bounds, forward or in reverse.
pub(crate) struct TableIter {
    table: Arc<Table>,
    /// Forward: the next block to read. Reverse: one past it.
    next_block: usize,
    /// The block being read and, forward, the index of its next entry;
    /// reverse, one past it.
    pending: Option<(Arc<Block>, usize)>,
    cached: bool,
    rev: bool,
    lo: Bound<Bytes>,
    hi: Bound<Bytes>,
    done: bool,
}

impl TableIter {
    /// The index of the next entry of the pending block, if any is left.
    fn step(&mut self) -> Option<usize> {
        let (block, at) = self.pending.as_mut()?;
        let i = if self.rev {
            *at = at.checked_sub(1)?;
            *at
        } else {
            if *at >= block.len() {
                return None;
            }
            *at += 1;
            *at - 1
        };
        Some(i)
    }

    /// Loads the next block in the direction of travel; false at the end.
    fn load(&mut self) -> Result<bool, KvError> {
        let i = if self.rev {
            let Some(i) = self.next_block.checked_sub(1) else {
                return Ok(false);
            };
            self.next_block = i;
            i
        } else {
            if self.next_block >= self.table.blocks.len() {
                return Ok(false);
            }
            self.next_block += 1;
            self.next_block - 1
        };
        let block = self.table.block(i, self.cached)?;
        let at = if self.rev { block.len() } else { 0 };
        self.pending = Some((block, at));
        Ok(true)
    }
}

impl Iterator for TableIter {
    type Item = Result<Entry, KvError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let Some(i) = self.step() else {
                match self.load() {
                    Ok(true) => continue,
                    Ok(false) => break,
                    Err(e) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
            };
            let Some(e) = self.pending.as_ref().and_then(|(block, _)| block.entry(i)) else {
                self.done = true;
                return Some(Err(KvError::corrupt(
                    &self.table.name,
                    0,
                    "entry malformed",
                )));
            };
            let below = match &self.lo {
                Bound::Included(k) => e.key < *k,
                Bound::Excluded(k) => e.key <= *k,
                Bound::Unbounded => false,
            };
            let above = match &self.hi {
                Bound::Included(k) => e.key > *k,
                Bound::Excluded(k) => e.key >= *k,
                Bound::Unbounded => false,
            };
            // Skip what lies before the range in the direction of travel;
            // stop at what lies past it.
            let (before, past) = if self.rev {
                (above, below)
            } else {
                (below, above)
            };
            if past {
                break;
            }
            if !before {
                return Some(Ok(e));
            }
        }
        self.done = true;
        None
    }
}
