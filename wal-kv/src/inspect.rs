//! A store's files read without opening the store: its manifest, and each
//! table read whole and checked. For tools that inspect a store another
//! process may hold (through `wal_io::open_dir_read_only`), or check one
//! before trusting it; nothing here writes.

use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;
use wal_io::Storage;

use crate::KvError;
use crate::manifest::Manifest;
use crate::table::{self, Table};

/// The manifest's file name: a directory holding it is a store.
pub const MANIFEST_NAME: &str = crate::manifest::NAME;

/// What a store's manifest says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ManifestInfo {
    /// Every batch at or below this LSN is in the tables.
    pub checkpoint_lsn: u64,
    /// The id the next table gets.
    pub next_table_id: u64,
    /// Table ids per level: level 0 newest first, deeper levels in key order.
    pub levels: Vec<Vec<u64>>,
}

/// The store's manifest, if it has one (a store that never checkpointed
/// has none).
///
/// # Errors
/// [`KvError::Corrupt`] for a manifest that does not decode (a bad
/// checksum, an unknown version); the storage's read errors.
pub fn read_manifest(storage: &dyn Storage) -> Result<Option<ManifestInfo>, KvError> {
    Ok(Manifest::read(storage)?.map(|m| ManifestInfo {
        checkpoint_lsn: m.checkpoint_lsn,
        next_table_id: m.next_table_id,
        levels: m.levels,
    }))
}

/// Writes `m` as the manifest in `storage`, atomically (a temporary file
/// renamed over it). For assembling a store from parts of another, as a
/// salvage into a new directory does; never for a store a process holds.
///
/// # Errors
/// The storage's errors.
pub fn write_manifest(storage: &dyn Storage, m: &ManifestInfo) -> Result<(), KvError> {
    Manifest {
        checkpoint_lsn: m.checkpoint_lsn,
        next_table_id: m.next_table_id,
        levels: m.levels.clone(),
    }
    .write(storage)
}

/// The file name of table `id`.
pub fn table_name(id: u64) -> String {
    table::file_name(id)
}

/// The table id a file name stands for, if it names a table.
pub fn parse_table_name(name: &str) -> Option<u64> {
    table::parse_name(name)
}

/// What a table holds, once every block of it was read and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TableSummary {
    /// Its id.
    pub id: u64,
    /// Bytes of its file.
    pub size: u64,
    /// Entries (versions of keys, deletions included).
    pub entries: u64,
    /// Data blocks.
    pub blocks: usize,
    /// The highest LSN among its entries.
    pub max_lsn: u64,
    /// Its smallest and largest keys (none if it is empty).
    pub key_range: Option<(Bytes, Bytes)>,
}

/// Reads table `id` whole, bypassing any cache, and checks it: footer,
/// index and filter (as opening does), then every block's checksum and
/// encoding, the entries in order, and their count and highest LSN
/// against what the footer says.
///
/// # Errors
/// [`KvError::Corrupt`] naming the file, the offset where it applies and
/// what is wrong; the storage's read errors.
pub fn verify_table(storage: &dyn Storage, id: u64) -> Result<TableSummary, KvError> {
    let t = Arc::new(Table::open(storage, id, table::block_cache(0))?);
    let corrupt = |detail: String| KvError::Corrupt {
        file: t.name.clone(),
        offset: 0,
        detail,
    };
    let mut entries = 0u64;
    let mut max_lsn = 0u64;
    let mut last: Option<(Bytes, u64)> = None;
    let mut first_key = None;
    for entry in t.iter(Bound::Unbounded, Bound::Unbounded, false, false) {
        let e = entry?;
        if let Some((key, lsn)) = &last
            && (e.key < *key || (e.key == *key && e.lsn == *lsn))
        {
            return Err(corrupt(format!(
                "entry {entries} (key {:?}, LSN {}) is out of order after key {key:?}, LSN {lsn}",
                e.key, e.lsn
            )));
        }
        first_key.get_or_insert_with(|| e.key.clone());
        max_lsn = max_lsn.max(e.lsn);
        entries += 1;
        last = Some((e.key, e.lsn));
    }
    if entries != t.entries {
        return Err(corrupt(format!(
            "the footer says {} entries, the blocks hold {entries}",
            t.entries
        )));
    }
    if max_lsn != t.max_lsn {
        return Err(corrupt(format!(
            "the footer says the highest LSN is {}, the blocks' is {max_lsn}",
            t.max_lsn
        )));
    }
    Ok(TableSummary {
        id,
        size: t.size,
        entries,
        blocks: t.block_count(),
        max_lsn,
        key_range: first_key.zip(last.map(|(k, _)| k)),
    })
}
