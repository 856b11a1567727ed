//! The Raft storage's errors.

use wal_engine::WalError;
use wal_io::IoError;
use wal_kv::KvError;

/// Everything the Raft storage can fail with. openraft sees each as an
/// `io::Error` (and stops the node: a storage error is fatal to Raft).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RaftStoreError {
    /// The Raft log failed.
    #[error("raft log: {0}")]
    Log(#[from] WalError),
    /// The metadata file could not be read or written.
    #[error("raft metadata: {0}")]
    Io(#[from] IoError),
    /// The state machine's store failed.
    #[error("state machine: {0}")]
    Store(#[from] KvError),
    /// A record or the metadata file failed its checks.
    #[error("corrupt {what}: {detail}")]
    Corrupt {
        /// What: `raft log at LSN n`, `raft metadata`.
        what: String,
        /// What was wrong.
        detail: String,
    },
    /// openraft asked for something its contract rules out.
    #[error("misuse: {0}")]
    Misuse(String),
}

impl RaftStoreError {
    pub(crate) fn corrupt(what: impl Into<String>, detail: impl Into<String>) -> Self {
        RaftStoreError::Corrupt {
            what: what.into(),
            detail: detail.into(),
        }
    }
}

impl From<RaftStoreError> for std::io::Error {
    fn from(e: RaftStoreError) -> Self {
        let kind = match &e {
            RaftStoreError::Corrupt { .. } => std::io::ErrorKind::InvalidData,
            RaftStoreError::Misuse(_) => std::io::ErrorKind::InvalidInput,
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, e)
    }
}
