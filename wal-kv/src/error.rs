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
