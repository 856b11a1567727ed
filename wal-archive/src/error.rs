//! What archiving and restoring can fail with.

/// Archiving's and restore's errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// The object store failed.
    #[error("archive: {0}")]
    Store(#[from] object_store::Error),
    /// An archive this build cannot open.
    #[error("{0}")]
    Unsupported(String),
    /// Other bytes are archived under this name already.
    #[error("{name} is archived already with other contents; refusing to overwrite it")]
    Conflict {
        /// The object.
        name: String,
    },
    /// An upload that did not read back as written, or an archived file
    /// that does not decode.
    #[error("{name}: {detail}")]
    Corrupt {
        /// The object.
        name: String,
        /// What is wrong.
        detail: String,
    },
    /// Something restore needs is not in the archive.
    #[error("the archive lacks {0}")]
    Missing(String),
    /// A restore target the archive cannot reach.
    #[error("{0}")]
    Target(String),
    /// Local files.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// The log refused.
    #[error(transparent)]
    Wal(#[from] wal_engine::WalError),
    /// The store refused.
    #[error(transparent)]
    Kv(#[from] wal_kv::KvError),
    /// The local storage failed.
    #[error(transparent)]
    Storage(#[from] wal_io::IoError),
}

impl ArchiveError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ArchiveError {
        let what = what.into();
        move |source| ArchiveError::Io { what, source }
    }
}
