//! The store's errors.

use bytes::Bytes;
use wal_engine::WalError;
use wal_io::IoError;

/// Everything the store can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KvError {
    /// The log failed (I/O, poisoned, corrupt, closed).
    #[error("log: {0}")]
    Log(#[from] WalError),
    /// A table or manifest file could not be read or written.
    #[error("storage: {0}")]
    Io(#[from] IoError),
    /// A key over the limit.
    #[error("key of {len} bytes is over the limit of {max}")]
    KeyTooLarge {
        /// The key's length.
        len: usize,
        /// `Options::key_bytes_max`.
        max: usize,
    },
    /// A value over the limit.
    #[error("value of {len} bytes is over the limit of {max}")]
    ValueTooLarge {
        /// The value's length.
        len: usize,
        /// `Options::value_bytes_max`.
        max: usize,
    },
    /// A batch with no operation.
    #[error("empty write batch")]
    EmptyBatch,
    /// A batch whose encoding is over the log's record limit.
    #[error("batch of {bytes} bytes is over the log's record limit of {max}")]
    BatchTooLarge {
        /// The encoded batch.
        bytes: usize,
        /// The log's `record_bytes_max`.
        max: usize,
    },
    /// A table, the manifest or a log record failed its checks.
    #[error("corrupt {file} at offset {offset}: {detail}")]
    Corrupt {
        /// The file (or `log` for a record).
        file: String,
        /// Where.
        offset: u64,
        /// What was wrong.
        detail: String,
    },
    /// The log does not go on from the manifest's checkpoint: it ends at or
    /// below it (it would hand out LSNs the tables already hold, and the
    /// next checkpoint would write a manifest the next open refuses), or it
    /// starts after the LSN after it (the records between are lost). Segments
    /// were lost or cut, for instance by a salvage recovery mode.
    #[error(
        "the log holds LSNs {first_lsn}..{next_lsn} but the tables hold everything up to LSN {checkpoint_lsn}: {}; restore the missing log segments (from a backup or an archive) and open again",
        if *next_lsn <= *checkpoint_lsn { "the log ends at or below the checkpoint, and new writes would reuse LSNs the tables hold" } else { "the records after the checkpoint up to the log's first are missing" }
    )]
    LogBehindCheckpoint {
        /// The manifest's checkpoint LSN.
        checkpoint_lsn: u64,
        /// The log's first LSN.
        first_lsn: u64,
        /// The LSN the log would assign next.
        next_lsn: u64,
    },
    /// A transaction's commit met a commit after its snapshot that touched
    /// what it wrote (or, serializable, what it read); nothing of it was
    /// written. Run it again (see [`Store::transact`](crate::Store::transact)).
    #[error(
        "transaction conflict: key \"{}\", {kind}, was written at LSN {lsn}, after the transaction's snapshot at LSN {snapshot_lsn}; nothing was written, retry the transaction",
        key.escape_ascii()
    )]
    Conflict {
        /// A key both touched (for a range read: the key written in it).
        key: Bytes,
        /// How this transaction touched it.
        kind: ConflictKind,
        /// The commit that got there first.
        lsn: u64,
        /// The transaction's snapshot.
        snapshot_lsn: u64,
    },
    /// A read-write transaction stayed open so long that the writes since
    /// its snapshot outgrew [`Options::conflict_window_bytes_max`](crate::Options::conflict_window_bytes_max):
    /// it can no longer be checked, so it is refused; nothing was written.
    #[error(
        "transaction too old: its snapshot at LSN {snapshot_lsn} is below LSN {oldest_lsn}, the oldest the store still checks commits against; nothing was written, retry the transaction"
    )]
    TransactionTooOld {
        /// The transaction's snapshot.
        snapshot_lsn: u64,
        /// Writes at or below this LSN are no longer remembered.
        oldest_lsn: u64,
    },
    /// A transaction over its limits: operations (writes and recorded
    /// reads, [`Options::transaction_ops_max`](crate::Options::transaction_ops_max)) or bytes of its
    /// commit record (the log's `record_bytes_max`).
    #[error(
        "transaction too large: {ops} operations and {bytes} bytes, over the limits of {ops_max} operations and {bytes_max} bytes; split it"
    )]
    TransactionTooLarge {
        /// Operations it would hold.
        ops: usize,
        /// Bytes its commit record would hold.
        bytes: usize,
        /// The operations limit.
        ops_max: usize,
        /// The bytes limit.
        bytes_max: usize,
    },
    /// The options are inconsistent.
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// A background checkpoint or compaction failed earlier; the store
    /// refuses further work (reopen recovers).
    #[error("the store failed earlier and must be reopened: {0}")]
    Failed(String),
}

/// How a transaction touched the key it conflicted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConflictKind {
    /// It wrote the key (write-write: first committer wins).
    Write,
    /// It read the key (serializable only).
    Read,
    /// It scanned a range holding the key (serializable only: a phantom).
    Range,
}

impl std::fmt::Display for ConflictKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ConflictKind::Write => "which it wrote",
            ConflictKind::Read => "which it read",
            ConflictKind::Range => "in a range it scanned",
        })
    }
}

impl KvError {
    /// Whether running the transaction again may succeed: a conflict, or a
    /// transaction too old to check. [`Store::transact`](crate::Store::transact) retries these.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            KvError::Conflict { .. } | KvError::TransactionTooOld { .. }
        )
    }

    pub(crate) fn corrupt(file: &str, offset: u64, detail: impl Into<String>) -> KvError {
        KvError::Corrupt {
            file: file.to_owned(),
            offset,
            detail: detail.into(),
        }
    }
}
