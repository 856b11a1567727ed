//! The store's errors.

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
    /// The options are inconsistent.
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// A background checkpoint or compaction failed earlier; the store
    /// refuses further work (reopen recovers).
    #[error("the store failed earlier and must be reopened: {0}")]
    Failed(String),
}

impl KvError {
    pub(crate) fn corrupt(file: &str, offset: u64, detail: impl Into<String>) -> KvError {
        KvError::Corrupt {
            file: file.to_owned(),
            offset,
            detail: detail.into(),
        }
    }
}
