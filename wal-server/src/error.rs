//! The server's errors.

use wal_kv::KvError;

/// What the server can fail with, apart from a client's bad requests
/// (which are replies, not errors).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] KvError),
    /// A socket or the data directory failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// A stored value no encoder of this server wrote.
    #[error("corrupt value under key {key:?}")]
    CorruptValue {
        /// The key (lossily as text).
        key: String,
    },
    /// A write batch held an operation this server does not know.
    #[error("an operation this server does not know in a write batch")]
    UnknownOperation,
}

impl ServerError {
    /// Whether the client asked for too much (a key, value or batch over
    /// the store's limits): answered with an error, the connection kept.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            ServerError::Store(
                KvError::KeyTooLarge { .. }
                    | KvError::ValueTooLarge { .. }
                    | KvError::BatchTooLarge { .. }
                    | KvError::TransactionTooLarge { .. }
            )
        )
    }

    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServerError {
        let what = what.into();
        move |source| ServerError::Io { what, source }
    }
}
