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
    /// On a cluster: this node does not lead; the leader's client address
    /// if one is known. Nothing was written.
    #[error("this node does not lead{}", .leader.as_ref().map_or("; no leader is known".into(), |l| format!("; the leader is {l}")))]
    NotLeader {
        /// The leader's client address.
        leader: Option<String>,
    },
    /// On a cluster: leadership changed while the write was in flight; it
    /// may or may not have been written.
    #[error("leadership changed during the write: it may or may not have been applied")]
    OutcomeUnknown,
    /// On a cluster: no majority confirmed this node's leadership within
    /// the request timeout (it is cut off, or most nodes are down).
    /// Nothing was read or written.
    #[error("no majority answered within {waited:?}; nothing was done")]
    NoQuorum {
        /// How long the node waited.
        waited: std::time::Duration,
    },
    /// On a cluster: the write was proposed but not committed within the
    /// request timeout; it may still be, later, or never.
    #[error("no majority acknowledged the write within {waited:?}: it may or may not be applied")]
    WriteTimedOut {
        /// How long the node waited.
        waited: std::time::Duration,
    },
    /// On a cluster: a write larger than one Raft log record.
    #[error("a write of {bytes} bytes is over the cluster's limit of {max} bytes per write")]
    RequestTooLarge {
        /// The write's encoded size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// On a cluster: a write to a key the state machine keeps for itself.
    #[error("keys starting with \\xffraft/ are reserved")]
    ReservedKey,
    /// On a cluster: the Raft node failed or refused.
    #[error("raft: {0}")]
    Raft(String),
    /// A configuration that cannot work: a data directory of another
    /// node or of the other mode, a cluster node without an HTTP address.
    #[error("{0}")]
    Misconfigured(String),
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
            ) | ServerError::NotLeader { .. }
                | ServerError::OutcomeUnknown
                | ServerError::NoQuorum { .. }
                | ServerError::WriteTimedOut { .. }
                | ServerError::RequestTooLarge { .. }
                | ServerError::ReservedKey
                | ServerError::Raft(_)
        )
    }

    /// The error reply's text: Redis's codes where a client knows one
    /// (`CLUSTERDOWN` is retried by cluster-aware clients), `NOTLEADER
    /// host:port` naming where to send the command, `ERR` otherwise.
    pub fn reply_text(&self) -> String {
        match self {
            ServerError::NotLeader { leader: Some(addr) } => format!("NOTLEADER {addr}"),
            ServerError::NotLeader { leader: None } => {
                "CLUSTERDOWN no leader is known yet; try again".into()
            }
            ServerError::Raft(e) => format!("CLUSTERDOWN {e}"),
            e @ ServerError::NoQuorum { .. } => format!("CLUSTERDOWN {e}"),
            e => format!("ERR {e}"),
        }
    }

    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServerError {
        let what = what.into();
        move |source| ServerError::Io { what, source }
    }
}
