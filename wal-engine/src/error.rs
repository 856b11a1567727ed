//! The engine's error type.

use std::sync::Arc;

use wal_format::DecodeError;
use wal_io::IoError;

/// Why a log operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    /// A write or sync failed. The log is poisoned: this call and every later
    /// one fail, no sync is retried, and only reopening (which recovers from
    /// what is on disk) makes it usable again.
    #[error("I/O failed: {0}")]
    Io(Arc<IoError>),
    /// An earlier write or sync failed; see [`WalError::Io`].
    #[error("the log is poisoned by an earlier I/O failure ({0}); reopen it to recover")]
    Poisoned(Arc<IoError>),
    /// The log was closed.
    #[error("the log is closed")]
    Closed,
    /// A record longer than [`Options::record_bytes_max`](crate::Options::record_bytes_max).
    #[error("record of {len} bytes exceeds record_bytes_max ({max})")]
    RecordTooLarge {
        /// The record's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A batch whose encoded size exceeds [`Options::queue_bytes_max`](crate::Options::queue_bytes_max).
    #[error("batch of {len} encoded bytes exceeds queue_bytes_max ({max})")]
    BatchTooLarge {
        /// The batch's encoded length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A batch with no records.
    #[error("a batch needs at least one record")]
    EmptyBatch,
    /// Options out of range.
    #[error("invalid option {field}: {reason}")]
    InvalidOptions {
        /// The option.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Recovery found damage it may not repair in the chosen mode (C5): it
    /// names the segment and the byte offset.
    #[error("corruption in segment {segment} at offset {offset}: {detail}")]
    Corrupt {
        /// The segment file's name.
        segment: String,
        /// Byte offset of the damage within it.
        offset: u64,
        /// What is wrong.
        detail: String,
        /// The decoder's verdict, where one applies.
        cause: Option<DecodeError>,
    },
    /// A segment written in a newer format version than this build reads.
    /// Refused in every recovery mode, before anything in the directory is
    /// changed: a salvage mode must not set aside (or an empty last segment
    /// be removed as) data an upgrade wrote.
    #[error(
        "segment {segment} is in format version {version}; this build reads versions up to {supported}: open the log with the newer build that wrote it"
    )]
    NewerFormat {
        /// The segment file's name.
        segment: String,
        /// Its format version.
        version: u16,
        /// The newest version this build reads.
        supported: u16,
    },
    /// The LSN was removed by [`Wal::truncate_front`](crate::Wal::truncate_front).
    #[error("LSN {lsn} was purged: the log starts at LSN {first}")]
    Purged {
        /// The LSN asked for.
        lsn: u64,
        /// The first LSN still in the log.
        first: u64,
    },
    /// A broken invariant of the engine itself: a bug, never the caller's
    /// input or the disk's state. The log is poisoned where one is found
    /// on the write path.
    #[error("internal error (a bug in wal-engine): {detail}")]
    Internal {
        /// Which invariant broke, and where.
        detail: String,
    },
    /// A reader handed out records that a later
    /// [`Wal::truncate_back`](crate::Wal::truncate_back) removed: what it
    /// handed out after `kept` is no longer the log's, and going on would
    /// mix two histories. Read again from `kept + 1` with a new reader.
    #[error("this reader handed out LSN {lsn}, but truncate_back kept the log only up to LSN {kept}; read again from LSN {} with a new reader", kept + 1)]
    Truncated {
        /// The last LSN the reader handed out.
        lsn: u64,
        /// The last LSN the truncation kept.
        kept: u64,
    },
    /// An LSN that was never assigned.
    #[error("LSN {lsn} is beyond the end of the log (next LSN {next})")]
    BeyondEnd {
        /// The LSN asked for.
        lsn: u64,
        /// The next LSN the log will assign.
        next: u64,
    },
}

impl WalError {
    pub(crate) fn io(e: IoError) -> Self {
        WalError::Io(Arc::new(e))
    }
}

impl From<IoError> for WalError {
    fn from(e: IoError) -> Self {
        WalError::io(e)
    }
}
