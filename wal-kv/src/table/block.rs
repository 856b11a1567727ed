//! A table's blocks: checked decoding of untrusted bytes, the search inside
//! a block, and the cache of decoded blocks shared by a store's tables.

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
    pub(super) map: quick_cache::sync::Cache<(u64, u32), Arc<Block>, BlockWeight>,
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
    pub(super) fn decode(raw: Bytes) -> Option<Block> {
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

    /// The first entry at or after (`key`, newest version at or below
    /// `snapshot`) in the table's order.
    pub(super) fn seek(&self, key: &[u8], snapshot: u64) -> usize {
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
