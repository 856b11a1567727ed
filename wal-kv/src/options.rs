//! The store's options, and how durable a write must be.

use crate::KvError;
use crate::table::TableCompression;

/// The store's options.
///
/// # Memory
///
/// What the store holds is bounded by these options: up to two memtables
/// (the active one and, while a checkpoint writes it, the frozen one) of
/// [`Options::memtable_bytes_max`] each, each with a key filter of about
/// 1/45 of that (750 KB by default, 20 MiB at most), the block cache
/// ([`Options::block_cache_bytes`]; each open table also keeps a 32-byte
/// slot per block for it, 2 MiB per GiB of tables with the default block
/// size, cached or not, and the cache's queues about 40 bytes per cached
/// block), the log's queue (two buffers of the
/// log's `queue_bytes_max`, 8 MiB by default), and, only while read-write
/// transactions are open, the conflict window
/// ([`Options::conflict_window_bytes_max`], about twice that with its
/// index). With the defaults: 2 x (32 MiB + 0.7 MiB) + 256 MiB + 16 MiB,
/// plus the allocator's slack. Loading 1M keys peaked at about 270 MB per
/// process in the benchmark (K2, 2026-12-05), and reading them back after
/// a reopen at about 160 MB (a closed store replays nothing; after a crash
/// the replay refills a memtable first), the benchmark's own bookkeeping
/// included. A value [`crate::Store::get`] or [`crate::Snapshot::get`]
/// returns is a copy up to 1 KiB; past that it shares the buffer that
/// holds it and keeps it in memory while the caller keeps the value: a
/// table block (16 KiB by default, cached or not), the write's own
/// allocation, or after a reopen the log part the replay read it from (up
/// to a few MiB).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// The log's options (sync policy for buffered batches, segment size...).
    pub log: wal_engine::Options,
    /// The memtable is checkpointed into a table at this size, counting
    /// each version's key, value and 56 bytes for its place in the map.
    /// Default 32 MiB.
    pub memtable_bytes_max: usize,
    /// Longest key. Default 64 KiB.
    pub key_bytes_max: usize,
    /// Longest value. Default 512 KiB (a batch must fit one log record).
    pub value_bytes_max: usize,
    /// Uncompressed size a table block is cut at. Default 16 KiB.
    pub block_bytes: usize,
    /// Table block compression. Default none.
    pub compression: TableCompression,
    /// Level 0 (the checkpoints' tables, whose key ranges overlap) is
    /// merged into level 1 when it holds more than this many tables.
    /// Default 4.
    pub compaction_trigger: usize,
    /// Bytes level 1 may hold before a table of it is merged into level 2;
    /// each deeper level may hold [`Options::level_size_ratio`] times the
    /// one above. Default 256 MiB.
    pub level1_bytes_target: u64,
    /// How much larger each level below 1 is than the one above. Default 10.
    pub level_size_ratio: u32,
    /// Compaction cuts its output into tables of about this size, so one
    /// step rewrites a bounded part of a level. Default 64 MiB.
    pub table_bytes_max: u64,
    /// Memory for decoded table blocks, shared by all tables; reads that
    /// miss it go to the file (and the page cache). A block read goes in
    /// on probation; one read again stays over blocks read once, so a
    /// long scan does not push out what point reads keep coming back to
    /// (S3-FIFO). 0 caches nothing. Default 256 MiB.
    pub block_cache_bytes: u64,
    /// Most operations one transaction may hold: its writes (one per key)
    /// plus, when serializable, the keys and ranges it read. Its commit is
    /// one log record, so its bytes are bounded by the log's
    /// `record_bytes_max`. Default 100,000.
    pub transaction_ops_max: usize,
    /// Memory for the keys written since the oldest open read-write
    /// transaction's snapshot, which commits are checked against. Past it
    /// the oldest are forgotten, and a transaction whose snapshot is older
    /// fails with [`KvError::TransactionTooOld`]. Counted as each key's
    /// length plus 48 bytes; while transactions are open a hash index of
    /// the same keys comes on top (about as much again). Default 64 MiB.
    pub conflict_window_bytes_max: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            log: wal_engine::Options::default(),
            memtable_bytes_max: 32 << 20,
            key_bytes_max: 64 << 10,
            value_bytes_max: 512 << 10,
            block_bytes: 16 << 10,
            compression: TableCompression::None,
            compaction_trigger: 4,
            level1_bytes_target: 256 << 20,
            level_size_ratio: 10,
            table_bytes_max: 64 << 20,
            block_cache_bytes: 256 << 20,
            transaction_ops_max: 100_000,
            conflict_window_bytes_max: 64 << 20,
        }
    }
}

impl Options {
    pub(crate) fn validate(&self) -> Result<(), KvError> {
        let bad = |m: String| Err(KvError::InvalidOptions(m));
        if self.memtable_bytes_max < 4096 {
            return bad("memtable_bytes_max must be at least 4096".into());
        }
        if self.key_bytes_max == 0 || self.key_bytes_max > u32::MAX as usize {
            return bad("key_bytes_max must be between 1 and 2^32 - 1".into());
        }
        if self.value_bytes_max > u32::MAX as usize {
            return bad("value_bytes_max must be below 2^32".into());
        }
        if self.block_bytes < 256 {
            return bad("block_bytes must be at least 256".into());
        }
        if self.compaction_trigger < 2 {
            return bad("compaction_trigger must be at least 2".into());
        }
        if self.level_size_ratio < 2 {
            return bad("level_size_ratio must be at least 2".into());
        }
        if self.table_bytes_max < 4096 {
            return bad("table_bytes_max must be at least 4096".into());
        }
        if self.level1_bytes_target < self.table_bytes_max {
            return bad("level1_bytes_target must be at least table_bytes_max".into());
        }
        if self.transaction_ops_max == 0 {
            return bad("transaction_ops_max must be at least 1".into());
        }
        if self.conflict_window_bytes_max < 4096 {
            return bad("conflict_window_bytes_max must be at least 4096".into());
        }
        Ok(())
    }
}

/// How durable a batch must be before `write` returns, and before readers
/// see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Durable (survives power loss) when the call returns. Readers see it
    /// only once it is durable, and never if its sync failed: nothing a
    /// crash can take back is ever read.
    #[default]
    Sync,
    /// Applied and visible at once, unless a `Sync` batch before it is still
    /// waiting for its sync (readers see a prefix of the log); durable when
    /// the log's sync policy makes it so (or at the next `Sync` batch), so a
    /// crash may lose it after it was read (RocksDB's `sync = false`).
    Buffered,
}

/// How isolated a transaction is from the commits made while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Isolation {
    /// Reads see the snapshot taken when the transaction began (and its
    /// own writes); the commit fails if a key it writes was written by a
    /// commit after that snapshot: first committer wins. Two transactions
    /// that each read what the other writes may both commit (write skew).
    #[default]
    Snapshot,
    /// As [`Isolation::Snapshot`], and the commit also fails if a key it
    /// read, or a key inside a range it scanned, was written after its
    /// snapshot: committed transactions are equivalent to running one at a
    /// time in LSN order (no write skew, no phantoms).
    Serializable,
}
