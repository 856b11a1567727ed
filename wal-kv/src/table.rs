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
use std::sync::atomic::{AtomicU64, Ordering};

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

/// Writes a table from entries given in order.
pub(crate) struct TableBuilder {
    file: FileRef,
    name: String,
    compression: TableCompression,
    block_bytes: usize,
    block: Vec<u8>,
    first_key: Option<Bytes>,
    last_key: Option<Bytes>,
    offset: u64,
    index: Vec<u8>,
    key_hashes: Vec<(u32, u32)>,
    entries: u64,
    max_lsn: u64,
}

impl TableBuilder {
    pub fn create(
        storage: &dyn Storage,
        id: u64,
        compression: TableCompression,
        block_bytes: usize,
    ) -> Result<TableBuilder, KvError> {
        let name = file_name(id);
        // A leftover of an interrupted checkpoint may hold this name.
        let _ = storage.remove(&name);
        let file = storage.create(&name, FileOptions::BUFFERED)?;
        Ok(TableBuilder {
            file,
            name,
            compression,
            block_bytes,
            block: Vec::new(),
            first_key: None,
            last_key: None,
            offset: 0,
            index: Vec::new(),
            key_hashes: Vec::new(),
            entries: 0,
            max_lsn: 0,
        })
    }

    /// Adds an entry; keys ascending, and for one key LSNs descending.
    pub fn add(&mut self, e: &Entry) -> Result<(), KvError> {
        if let Some(last) = &self.last_key {
            assert!(last <= &e.key, "table entries must be added in key order");
        }
        if self.last_key.as_ref() != Some(&e.key) {
            self.key_hashes.push(bloom::hashes(&e.key));
        }
        if self.first_key.is_none() {
            self.first_key = Some(e.key.clone());
        }
        put_bytes(&mut self.block, &e.key);
        self.block.extend_from_slice(&e.lsn.to_le_bytes());
        match &e.value {
            Some(v) => {
                self.block.push(1);
                put_bytes(&mut self.block, v);
            }
            None => self.block.push(0),
        }
        self.entries += 1;
        self.max_lsn = self.max_lsn.max(e.lsn);
        self.last_key = Some(e.key.clone());
        if self.block.len() >= self.block_bytes {
            self.flush_block()?;
        }
        Ok(())
    }

    fn flush_block(&mut self) -> Result<(), KvError> {
        if self.block.is_empty() {
            return Ok(());
        }
        let raw_len = u32::try_from(self.block.len())
            .map_err(|_| KvError::InvalidOptions("table block over 4 GiB".into()))?;
        let mut out = match self.compression {
            TableCompression::None => std::mem::take(&mut self.block),
            TableCompression::Lz4 => lz4_flex::block::compress(&self.block),
            TableCompression::Snappy => snap::raw::Encoder::new()
                .compress_vec(&self.block)
                .map_err(|e| KvError::InvalidOptions(format!("snappy: {e}")))?,
        };
        out.push(self.compression.code());
        out.extend_from_slice(&raw_len.to_le_bytes());
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        self.file.write_at(self.offset, &[&out])?;
        let last = self.last_key.clone().unwrap_or_default();
        put_bytes(&mut self.index, &last);
        self.index.extend_from_slice(&self.offset.to_le_bytes());
        let len = u32::try_from(out.len()).unwrap_or(u32::MAX);
        self.index.extend_from_slice(&len.to_le_bytes());
        self.offset += out.len() as u64;
        self.block.clear();
        Ok(())
    }

    /// Bytes of data written and buffered so far (before index and filter).
    pub fn data_bytes(&self) -> u64 {
        self.offset + self.block.len() as u64
    }

    /// The last key added.
    pub fn last_key(&self) -> Option<&Bytes> {
        self.last_key.as_ref()
    }

    /// Writes index, filter and footer, syncs, and opens the table for reading.
    pub fn finish(mut self, id: u64, cache: Arc<BlockCache>) -> Result<Table, KvError> {
        self.flush_block()?;
        let index_offset = self.offset;
        let mut index = Vec::with_capacity(self.index.len() + 64);
        put_bytes(&mut index, self.first_key.as_deref().unwrap_or_default());
        index.extend_from_slice(&self.index);
        let crc = crc32c::crc32c(&index);
        index.extend_from_slice(&crc.to_le_bytes());
        self.file.write_at(index_offset, &[&index])?;
        let filter_offset = index_offset + index.len() as u64;
        let lines = bloom::lines_for(self.key_hashes.len());
        let mut filter = vec![0u8; 4 + lines * bloom::LINE_BYTES];
        filter[..4].copy_from_slice(&bloom::HASHES.to_le_bytes());
        for &h in &self.key_hashes {
            bloom::add(&mut filter[4..], bloom::HASHES, h);
        }
        let crc = crc32c::crc32c(&filter);
        filter.extend_from_slice(&crc.to_le_bytes());
        self.file.write_at(filter_offset, &[&filter])?;
        let mut footer = Vec::with_capacity(FOOTER_LEN);
        footer.extend_from_slice(MAGIC);
        footer.extend_from_slice(&VERSION.to_le_bytes());
        footer.extend_from_slice(&index_offset.to_le_bytes());
        footer.extend_from_slice(&u32::try_from(index.len()).unwrap_or(u32::MAX).to_le_bytes());
        footer.extend_from_slice(&filter_offset.to_le_bytes());
        footer.extend_from_slice(
            &u32::try_from(filter.len())
                .unwrap_or(u32::MAX)
                .to_le_bytes(),
        );
        footer.extend_from_slice(&self.entries.to_le_bytes());
        footer.extend_from_slice(&self.max_lsn.to_le_bytes());
        let crc = crc32c::crc32c(&footer);
        footer.extend_from_slice(&crc.to_le_bytes());
        self.file
            .write_at(filter_offset + filter.len() as u64, &[&footer])?;
        self.file.sync_data()?;
        let size = filter_offset + filter.len() as u64 + footer.len() as u64;
        Table::from_file(self.file, self.name, id, size, cache)
    }
}

/// The positions in sorted `prefixes` where they equal `p`: everything
/// before `lo` is below it, everything from `hi` above it.
fn equal_range(prefixes: &[u64], p: u64) -> (usize, usize) {
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

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    let len = u32::try_from(b.len()).expect("keys and values are checked against u32 limits");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(b);
}

/// Reads untrusted bytes.
struct Cursor<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let out = self.data.get(self.at..end)?;
        self.at = end;
        Some(out)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.u32()?).ok()?;
        self.take(n)
    }
    fn done(&self) -> bool {
        self.at == self.data.len()
    }
}

/// Checks and strips a trailing CRC32C.
fn checked<'a>(data: &'a [u8], name: &str, offset: u64, what: &str) -> Result<&'a [u8], KvError> {
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
struct BlockHandle {
    last_key: Bytes,
    offset: u64,
    len: u32,
}

/// A decoded block: its entries' bytes and where each entry starts. Checked
/// once when read, so lookups parse only the entries they touch.
#[derive(Debug, Default)]
pub(crate) struct Block {
    data: Bytes,
    starts: Vec<u32>,
    /// Each entry's key prefix ([`prefix`]), for a search that compares
    /// numbers first.
    prefixes: Vec<u64>,
}

/// Decoded blocks shared by every table of a store, weighed in bytes, and a
/// count of the blocks read from files.
pub(crate) struct BlockCache {
    map: quick_cache::sync::Cache<(u64, u32), Arc<Block>, BlockWeight>,
    /// Blocks read from table files (cache misses and uncached reads).
    pub reads: AtomicU64,
}

/// A new block cache of about `bytes`; 0 keeps nothing.
pub(crate) fn block_cache(bytes: u64) -> Arc<BlockCache> {
    // The estimate sizes the hash table up front: blocks of ~16 KiB.
    let items = usize::try_from(bytes / (16 << 10))
        .unwrap_or(1 << 16)
        .max(16);
    Arc::new(BlockCache {
        map: quick_cache::sync::Cache::with_weighter(items, bytes, BlockWeight),
        reads: AtomicU64::new(0),
    })
}

/// Weighs a cached block by the memory it holds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlockWeight;

impl quick_cache::Weighter<(u64, u32), Arc<Block>> for BlockWeight {
    fn weight(&self, _key: &(u64, u32), block: &Arc<Block>) -> u64 {
        (block.data.len() + 12 * block.starts.len() + 64) as u64
    }
}

impl Block {
    /// Walks every entry of `raw`, checking its structure.
    fn decode(raw: Bytes) -> Option<Block> {
        let mut c = Cursor { data: &raw, at: 0 };
        let mut starts = Vec::new();
        let mut prefixes = Vec::new();
        while !c.done() {
            starts.push(u32::try_from(c.at).ok()?);
            prefixes.push(prefix(c.bytes()?));
            c.u64()?;
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
            prefixes,
        })
    }

    fn len(&self) -> usize {
        self.starts.len()
    }

    /// Entry `i`, sharing the block's bytes.
    fn entry(&self, i: usize) -> Option<Entry> {
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

    /// The first entry at or after (`key`, newest version at or below
    /// `snapshot`) in the table's order.
    fn seek(&self, key: &[u8], snapshot: u64) -> usize {
        let (lo, hi) = equal_range(&self.prefixes, prefix(key));
        let starts = self.starts.get(lo..hi).unwrap_or_default();
        lo + starts.partition_point(|&start| {
            let mut c = Cursor {
                data: &self.data,
                at: start as usize,
            };
            match (c.bytes(), c.u64()) {
                (Some(k), Some(lsn)) => k < key || (k == key && lsn > snapshot),
                _ => false, // unreachable: decode checked every entry
            }
        })
    }
}

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
        let Some(handle) = self.blocks.get(i) else {
            return Ok(Arc::new(Block::default()));
        };
        let key = (self.id, u32::try_from(i).unwrap_or(u32::MAX));
        if let Some(block) = self.cache.map.get(&key) {
            return Ok(block);
        }
        let block = Arc::new(self.read_block(handle)?);
        if keep {
            self.cache.map.insert(key, Arc::clone(&block));
        }
        Ok(block)
    }

    fn read_block(&self, handle: &BlockHandle) -> Result<Block, KvError> {
        self.cache.reads.fetch_add(1, Ordering::Relaxed);
        let mut data = vec![0u8; handle.len as usize];
        self.file.read_at(handle.offset, &mut data)?;
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
    /// [`crate::memtable::Memtable::get`].
    /// Reads blocks without asking the filter: callers ask it first.
    pub fn get(&self, key: &[u8], snapshot: u64) -> Result<Option<Option<Bytes>>, KvError> {
        // Versions of one key may continue into the next block.
        for i in self.block_for(key)..self.blocks.len() {
            let block = self.block(i, true)?;
            let at = block.seek(key, snapshot);
            if at == block.len() {
                continue;
            }
            let e = block
                .entry(at)
                .ok_or_else(|| KvError::corrupt(&self.name, 0, "entry malformed"))?;
            return Ok((e.key.as_ref() == key).then_some(e.value));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn build(storage: &dyn Storage, n: u64, cache: &Arc<BlockCache>) -> Table {
        let mut b = TableBuilder::create(storage, 1, TableCompression::Lz4, 512).unwrap();
        for i in 0..n {
            // Two versions of every key: newest first.
            for lsn in [2 * i + 2, 2 * i + 1] {
                b.add(&Entry {
                    key: Bytes::from(format!("key{i:08}")),
                    lsn,
                    value: Some(Bytes::from(format!("v{lsn}"))),
                })
                .unwrap();
            }
        }
        b.finish(1, Arc::clone(cache)).unwrap()
    }

    /// Reads a table the way docs/KV_FORMAT.md describes it, with none of
    /// the reader above: the document and the writer must agree.
    #[test]
    // A test table of a few KiB: offsets fit in usize.
    #[allow(clippy::cast_possible_truncation)]
    fn the_documented_layout_is_what_the_builder_writes() {
        let disk = wal_io::sim::SimDisk::new(5);
        let storage = disk.storage();
        let mut b = TableBuilder::create(&*storage, 1, TableCompression::None, 256).unwrap();
        let mut want = Vec::new();
        for i in 0..40u64 {
            let value = (i % 3 != 0).then(|| Bytes::from(format!("value {i}")));
            let e = Entry {
                key: Bytes::from(format!("k{i:04}")),
                lsn: 100 + i,
                value,
            };
            b.add(&e).unwrap();
            want.push(e);
        }
        drop(b.finish(1, block_cache(0)).unwrap());
        let file = storage.open(&file_name(1), FileOptions::BUFFERED).unwrap();
        let mut bytes = vec![0; file.size().unwrap() as usize];
        file.read_at(0, &mut bytes).unwrap();

        let u32_at = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
        let u64_at = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
        // Footer: 56 bytes, its CRC over the 52 before it.
        let footer = &bytes[bytes.len() - 56..];
        assert_eq!(crc32c::crc32c(&footer[..52]), u32_at(footer, 52));
        assert_eq!(&footer[..8], b"WALKVSST");
        assert_eq!(u32_at(footer, 8), 3);
        let (index_at, index_len) = (u64_at(footer, 12) as usize, u32_at(footer, 20) as usize);
        let (filter_at, filter_len) = (u64_at(footer, 24) as usize, u32_at(footer, 32) as usize);
        assert_eq!(u64_at(footer, 36), 40, "entries");
        assert_eq!(u64_at(footer, 44), 139, "max_lsn");
        assert_eq!(filter_at + filter_len, bytes.len() - 56);
        // Filter: hashes, whole 64-byte lines, CRC.
        let filter = &bytes[filter_at..filter_at + filter_len];
        assert_eq!(
            crc32c::crc32c(&filter[..filter_len - 4]),
            u32_at(filter, filter_len - 4)
        );
        assert_eq!(u32_at(filter, 0), 7);
        assert_eq!((filter_len - 8) % 64, 0);
        // Index: first key, then (last key, offset, len) per block, CRC.
        let index = &bytes[index_at..index_at + index_len];
        assert_eq!(
            crc32c::crc32c(&index[..index_len - 4]),
            u32_at(index, index_len - 4)
        );
        let first_len = u32_at(index, 0) as usize;
        assert_eq!(&index[4..4 + first_len], b"k0000");
        let mut at = 4 + first_len;
        let mut got = Vec::new();
        let mut data_end = 0;
        while at < index_len - 4 {
            let key_len = u32_at(index, at) as usize;
            let last_key = &index[at + 4..at + 4 + key_len];
            let (offset, len) = (
                u64_at(index, at + 4 + key_len) as usize,
                u32_at(index, at + 12 + key_len) as usize,
            );
            at += 16 + key_len;
            assert_eq!(offset, data_end, "blocks follow each other from offset 0");
            data_end = offset + len;
            // Block: payload, codec, raw_len, CRC over the three.
            let block = &bytes[offset..offset + len];
            assert_eq!(crc32c::crc32c(&block[..len - 4]), u32_at(block, len - 4));
            assert_eq!(block[len - 9], 0, "codec none");
            let payload = &block[..len - 9];
            assert_eq!(u32_at(block, len - 8) as usize, payload.len());
            let mut p = 0;
            let mut last = &b""[..];
            while p < payload.len() {
                let key_len = u32_at(payload, p) as usize;
                let key = &payload[p + 4..p + 4 + key_len];
                let lsn = u64_at(payload, p + 4 + key_len);
                p += 12 + key_len;
                let value = match payload[p] {
                    0 => None,
                    1 => {
                        let value_len = u32_at(payload, p + 1) as usize;
                        let v = &payload[p + 5..p + 5 + value_len];
                        p += 4 + value_len;
                        Some(Bytes::copy_from_slice(v))
                    }
                    other => panic!("has_value {other}"),
                };
                p += 1;
                last = key;
                got.push(Entry {
                    key: Bytes::copy_from_slice(key),
                    lsn,
                    value,
                });
            }
            assert_eq!(last, last_key, "the index names each block's last key");
        }
        assert_eq!(data_end, index_at, "the index follows the blocks");
        assert!(
            got.len() == want.len()
                && got
                    .iter()
                    .zip(&want)
                    .all(|(g, w)| g.key == w.key && g.lsn == w.lsn && g.value == w.value)
        );
    }

    #[test]
    fn gets_find_every_version_with_or_without_a_cache() {
        let disk = wal_io::sim::SimDisk::new(7);
        let storage = disk.storage();
        for cache_bytes in [0, 4096, 1 << 20] {
            let cache = block_cache(cache_bytes);
            let t = build(&*storage, 2000, &cache);
            for i in 0..2000u64 {
                let key = format!("key{i:08}");
                let newest = t.get(key.as_bytes(), u64::MAX).unwrap();
                assert_eq!(newest, Some(Some(Bytes::from(format!("v{}", 2 * i + 2)))));
                let older = t.get(key.as_bytes(), 2 * i + 1).unwrap();
                assert_eq!(older, Some(Some(Bytes::from(format!("v{}", 2 * i + 1)))));
                assert_eq!(t.get(key.as_bytes(), 2 * i).unwrap(), None, "before it");
            }
            assert_eq!(t.get(b"key", u64::MAX).unwrap(), None);
            assert_eq!(t.get(b"kez", u64::MAX).unwrap(), None);
            let all: Vec<Entry> = Arc::new(t)
                .iter(Bound::Unbounded, Bound::Unbounded, cache_bytes > 0, false)
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(all.len(), 4000);
            storage.remove(&file_name(1)).unwrap();
        }
    }

    #[test]
    fn reverse_iteration_is_forward_reversed_for_any_bounds() {
        let disk = wal_io::sim::SimDisk::new(9);
        let storage = disk.storage();
        let t = Arc::new(build(&*storage, 300, &block_cache(1 << 20)));
        let key = |i: u64| Bytes::from(format!("key{i:08}"));
        let bounds = |i: u64| {
            [
                Bound::Unbounded,
                Bound::Included(key(i)),
                Bound::Excluded(key(i)),
                // Between two keys, and beyond either end.
                Bound::Included(Bytes::from(format!("key{i:08}!"))),
                Bound::Excluded(Bytes::from("a")),
                Bound::Included(Bytes::from("z")),
            ]
        };
        let mut checked = 0;
        for (a, b) in [
            (0, 299),
            (17, 18),
            (40, 41),
            (150, 151),
            (5, 290),
            (299, 299),
        ] {
            for lo in bounds(a) {
                for hi in bounds(b) {
                    let forward: Vec<Entry> = t
                        .iter(lo.clone(), hi.clone(), true, false)
                        .collect::<Result<_, _>>()
                        .unwrap();
                    let mut reverse: Vec<Entry> = t
                        .iter(lo.clone(), hi.clone(), true, true)
                        .collect::<Result<_, _>>()
                        .unwrap();
                    reverse.reverse();
                    assert_eq!(forward, reverse, "{lo:?}..{hi:?}");
                    checked += usize::from(!forward.is_empty());
                }
            }
        }
        assert!(checked > 100, "most ranges are not empty: {checked}");
    }

    /// Rewrites table 1 in the version-2 layout: no first key in the index.
    // A test table is a few KiB: its offsets fit every integer type here.
    #[allow(clippy::cast_possible_truncation)]
    fn downgrade_to_version_2(storage: &dyn Storage) {
        let name = file_name(1);
        let file = storage.open(&name, FileOptions::BUFFERED).unwrap();
        let mut data = vec![0u8; usize::try_from(file.size().unwrap()).unwrap()];
        file.read_at(0, &mut data).unwrap();
        file.close();
        let footer = &data[data.len() - FOOTER_LEN..];
        let field = |at: usize, n: usize| {
            let mut b = [0u8; 8];
            b[..n].copy_from_slice(&footer[at..at + n]);
            u64::from_le_bytes(b) as usize
        };
        let (index_at, index_len) = (field(12, 8), field(20, 4));
        let (filter_at, filter_len) = (field(24, 8), field(32, 4));
        let first_len =
            u32::from_le_bytes(data[index_at..index_at + 4].try_into().unwrap()) as usize;
        let mut out = data[..index_at].to_vec();
        let mut index = data[index_at + 4 + first_len..index_at + index_len - 4].to_vec();
        let crc = crc32c::crc32c(&index);
        index.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&index);
        let new_filter_at = out.len() as u64;
        out.extend_from_slice(&data[filter_at..filter_at + filter_len]);
        let mut f = Vec::new();
        f.extend_from_slice(MAGIC);
        f.extend_from_slice(&VERSION_NO_FIRST_KEY.to_le_bytes());
        f.extend_from_slice(&(index_at as u64).to_le_bytes());
        f.extend_from_slice(&(index.len() as u32).to_le_bytes());
        f.extend_from_slice(&new_filter_at.to_le_bytes());
        f.extend_from_slice(&footer[32..FOOTER_LEN - 4]);
        let crc = crc32c::crc32c(&f);
        f.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&f);
        storage.remove(&name).unwrap();
        let file = storage.create(&name, FileOptions::BUFFERED).unwrap();
        file.write_at(0, &[&out]).unwrap();
        file.close();
    }

    #[test]
    fn a_version_2_table_reads_its_first_key_from_its_first_block() {
        let disk = wal_io::sim::SimDisk::new(10);
        let storage = disk.storage();
        let cache = block_cache(1 << 20);
        let v3 = build(&*storage, 500, &cache);
        let range = v3.key_range().map(|(a, b)| (a.clone(), b.clone()));
        assert_eq!(range.as_ref().unwrap().0, Bytes::from("key00000000"));
        drop(v3);
        downgrade_to_version_2(&*storage);
        let v2 = Table::open(&*storage, 1, block_cache(1 << 20)).unwrap();
        assert_eq!(v2.key_range().map(|(a, b)| (a.clone(), b.clone())), range);
        let newest = v2.get(b"key00000321", u64::MAX).unwrap();
        assert_eq!(newest, Some(Some(Bytes::from("v644"))));
    }

    #[test]
    fn the_filter_has_no_false_negatives_and_few_false_positives() {
        let disk = wal_io::sim::SimDisk::new(8);
        let storage = disk.storage();
        let t = build(&*storage, 5000, &block_cache(0));
        for i in 0..5000u64 {
            assert!(t.may_contain(bloom::hashes(format!("key{i:08}").as_bytes())));
        }
        let false_positives = (5000..25_000u64)
            .filter(|i| t.may_contain(bloom::hashes(format!("key{i:08}").as_bytes())))
            .count();
        // 10 bits per key and 7 hashes in one line: about 1 % expected.
        assert!(false_positives < 600, "{false_positives} of 20000");
    }
}
