//! Figures about the store.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Store;
use crate::locks::{lock, read};

/// Figures about the store.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Bytes in the active memtable.
    pub memtable_bytes: usize,
    /// Bytes in a memtable being checkpointed.
    pub frozen_bytes: usize,
    /// Live tables, in all levels.
    pub tables: usize,
    /// Tables and their bytes per level: level 0 first (checkpoint output),
    /// then each sorted run below it.
    pub levels: Vec<LevelStats>,
    /// Their size on disk.
    pub table_bytes: u64,
    /// Versions stored in them.
    pub table_entries: u64,
    /// Checkpoints and compactions completed, and their total time.
    pub checkpoints: u64,
    /// Total checkpoint time.
    pub checkpoint_time: Duration,
    /// Compactions completed.
    pub compactions: u64,
    /// Total compaction time.
    pub compaction_time: Duration,
    /// Bytes of batches written by users.
    pub user_bytes: u64,
    /// Bytes written to tables (checkpoints and compactions).
    pub table_bytes_written: u64,
    /// (log bytes + table bytes written) / user bytes.
    pub write_amplification: f64,
    /// Point reads, and tables they read a block of.
    pub gets: u64,
    /// Table blocks probed per get (after the filters).
    pub read_amplification: f64,
    /// The checkpoint LSN: everything at or below it is in tables.
    pub checkpoint_lsn: u64,
    /// Table blocks read from files: reads that missed the block cache, and
    /// compaction's reads, which bypass it.
    pub block_reads: u64,
    /// Keys written since the oldest open read-write transaction's
    /// snapshot, kept to check commits against (see
    /// [`Options::conflict_window_bytes_max`](crate::Options::conflict_window_bytes_max)).
    pub conflict_keys: usize,
    /// Read-write transactions open now.
    pub open_transactions: usize,
}

/// One level's share of the tables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LevelStats {
    /// Tables in the level.
    pub tables: usize,
    /// Their size on disk.
    pub bytes: u64,
}

impl Store {
    /// Figures about the store.
    pub fn stats(&self) -> Stats {
        let inner = &self.inner;
        // Before the tree and work locks: a writer holds the write lock
        // while it takes those.
        let conflict_keys = lock(&inner.write_lock).len();
        let open_transactions = lock(&inner.txns).values().sum();
        // `work` before `tree`, as a writer waiting in `freeze` takes them:
        // the other order deadlocks with it and a checkpoint queued for the
        // tree's write lock (a queued writer holds back new readers).
        let work = lock(&inner.work);
        let tree = read(&inner.tree);
        let user = inner.user_bytes.load(Ordering::Relaxed);
        let tables_written = inner.table_bytes_written.load(Ordering::Relaxed);
        let log = inner.wal.stats().append_bytes;
        let gets = inner.gets.load(Ordering::Relaxed);
        Stats {
            memtable_bytes: read(&tree.active).bytes(),
            frozen_bytes: tree.frozen.as_ref().map_or(0, |(m, _)| read(m).bytes()),
            tables: tree.tables().count(),
            levels: tree
                .levels
                .iter()
                .map(|l| LevelStats {
                    tables: l.len(),
                    bytes: l.iter().map(|t| t.size).sum(),
                })
                .collect(),
            table_bytes: tree.tables().map(|t| t.size).sum(),
            table_entries: tree.tables().map(|t| t.entries).sum(),
            checkpoints: work.checkpoints,
            checkpoint_time: work.checkpoint_time,
            compactions: work.compactions,
            compaction_time: work.compaction_time,
            user_bytes: user,
            table_bytes_written: tables_written,
            write_amplification: if user == 0 {
                0.0
            } else {
                (log + tables_written) as f64 / user as f64
            },
            gets,
            read_amplification: if gets == 0 {
                0.0
            } else {
                inner.probes.load(Ordering::Relaxed) as f64 / gets as f64
            },
            checkpoint_lsn: tree.manifest.checkpoint_lsn,
            block_reads: inner.cache.reads.load(Ordering::Relaxed),
            conflict_keys,
            open_transactions,
        }
    }
}
