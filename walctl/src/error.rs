//! What can stop a command before it has an answer. Each is one line for
//! the operator; the exit code is [`EXIT_ERROR`].

use std::path::PathBuf;

/// The exit code of a command that could not do its job (0, 1 and 2 are
/// `verify`'s verdicts).
pub const EXIT_ERROR: u8 = 3;

/// Why a command could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The path is not a directory.
    #[error("{0}: not a directory")]
    NotADirectory(PathBuf),
    /// A directory with neither segments nor a store manifest.
    #[error(
        "{0}: not a log or a store (no segment files like 00000000000000000001.wal, no MANIFEST)"
    )]
    NotALog(PathBuf),
    /// A process holds the directory, and the command needs it still.
    #[error("{dir}: held by {}; stop it first{hint}", holder.map_or("another process".to_owned(), |p| format!("process {p}")))]
    Locked {
        /// The directory.
        dir: PathBuf,
        /// The holder's pid, if it recorded one.
        holder: Option<u32>,
        /// What else the operator can do.
        hint: &'static str,
    },
    /// A segment of a format version newer than this build reads.
    #[error(
        "{segment}: format version {version}; this walctl reads versions up to {supported}: use the walctl of the build that wrote it"
    )]
    NewerFormat {
        /// The segment file.
        segment: String,
        /// Its version.
        version: u16,
        /// The newest this build reads.
        supported: u16,
    },
    /// The store's manifest does not decode.
    #[error("{dir}: its MANIFEST is unreadable: {detail}")]
    BadManifest {
        /// The directory.
        dir: PathBuf,
        /// Why.
        detail: String,
    },
    /// A destination that is not new and empty.
    #[error("{0}: already exists and is not empty; salvage writes only into a new directory")]
    NotEmpty(PathBuf),
    /// Reading or writing files failed.
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
    /// The storage layer failed.
    #[error(transparent)]
    Storage(#[from] wal_io::IoError),
    /// Archiving or restore failed.
    #[error(transparent)]
    Archive(#[from] wal_archive::ArchiveError),
    /// An argument that does not parse.
    #[error("{0}")]
    Usage(String),
}

impl CliError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> CliError {
        let what = what.into();
        move |source| CliError::Io { what, source }
    }
}
