//! The I/O layer's error type.

use std::path::PathBuf;

/// The operation an error happened in, for messages and for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Op {
    /// Opening (or probing) the directory itself.
    OpenDir,
    /// Creating a file that must not exist.
    Create,
    /// Opening an existing file.
    Open,
    /// Removing a file.
    Remove,
    /// Renaming a file.
    Rename,
    /// Listing the directory.
    List,
    /// Syncing the directory.
    SyncDir,
    /// Taking the directory lock.
    Lock,
    /// A positional write.
    Write,
    /// A positional read.
    Read,
    /// A data sync (`fdatasync`).
    SyncData,
    /// Preallocating space.
    Allocate,
    /// Setting a file's length.
    SetLen,
    /// Reading a file's length.
    Len,
    /// Setting up or driving a submission queue.
    Queue,
    /// Dropping a file's clean pages from the page cache.
    DropCache,
}

impl Op {
    /// Every operation, in a fixed order.
    pub const ALL: [Op; 16] = [
        Op::OpenDir,
        Op::Create,
        Op::Open,
        Op::Remove,
        Op::Rename,
        Op::List,
        Op::SyncDir,
        Op::Lock,
        Op::Write,
        Op::Read,
        Op::SyncData,
        Op::Allocate,
        Op::SetLen,
        Op::Len,
        Op::Queue,
        Op::DropCache,
    ];
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Op::OpenDir => "open directory",
            Op::Create => "create",
            Op::Open => "open",
            Op::Remove => "remove",
            Op::Rename => "rename",
            Op::List => "list",
            Op::SyncDir => "sync directory",
            Op::Lock => "lock",
            Op::Write => "write",
            Op::Read => "read",
            Op::SyncData => "sync data",
            Op::Allocate => "allocate",
            Op::SetLen => "set length",
            Op::Len => "length",
            Op::Queue => "queue",
            Op::DropCache => "drop cached pages",
        })
    }
}

/// Why an I/O operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IoError {
    /// The operating system (or the simulated disk, which uses the same
    /// error codes) refused the operation.
    #[error("{op} {path}: {source}")]
    Os {
        /// What was being done.
        op: Op,
        /// The file or directory it was done to.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// A buffer, offset or length does not meet the alignment O_DIRECT needs.
    #[error(
        "{op} {path}: {what} {value} is not a multiple of {align} (the file is open with O_DIRECT)"
    )]
    Misaligned {
        /// What was being done.
        op: Op,
        /// The file.
        path: PathBuf,
        /// Which value is misaligned: "offset", "length" or "buffer address".
        what: &'static str,
        /// The value.
        value: u64,
        /// The alignment required ([`DIRECT_IO_ALIGN`](crate::DIRECT_IO_ALIGN)).
        align: usize,
    },
    /// A read asked for bytes beyond the end of the file.
    #[error(
        "read {path}: {len} bytes at offset {offset} run past the end of the file ({file_len} bytes)"
    )]
    ReadPastEnd {
        /// The file.
        path: PathBuf,
        /// Where the read started.
        offset: u64,
        /// How many bytes were asked for.
        len: usize,
        /// The file's length.
        file_len: u64,
    },
    /// A write completed with fewer bytes than were asked for (the disk filled up
    /// halfway, for instance). What was written is not trustworthy.
    #[error("write {path}: {written} of {len} bytes written at offset {offset}")]
    ShortWrite {
        /// The file.
        path: PathBuf,
        /// Where the write started.
        offset: u64,
        /// Bytes asked for.
        len: usize,
        /// Bytes the system reported written.
        written: usize,
    },
    /// Another process (or another open handle in this one) holds the directory lock.
    #[error("directory {dir} is locked: lock file {lock_file} is held{}", holder_text(*holder))]
    Locked {
        /// The directory.
        dir: PathBuf,
        /// The lock file.
        lock_file: PathBuf,
        /// The holder's process id, if known: on Linux as the kernel lists
        /// the lock (`/proc/locks`), elsewhere as the holder wrote it into the
        /// lock file.
        holder: Option<u32>,
    },
    /// The handle was closed.
    #[error("{op} {path}: the file handle is closed")]
    Closed {
        /// What was being attempted.
        op: Op,
        /// The file.
        path: PathBuf,
    },
    /// The handle belongs to a simulated process that crashed: after
    /// [`SimDisk::crash`](crate::sim::SimDisk::crash) only new handles work.
    #[error("{op} {path}: the simulated process crashed; reopen the storage")]
    Crashed {
        /// What was being attempted.
        op: Op,
        /// The file or directory.
        path: PathBuf,
    },
    /// The operation is not available with this backend or these options.
    #[error("{op} {path}: not supported: {reason}")]
    Unsupported {
        /// What was being attempted.
        op: Op,
        /// The file or directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A file name that would leave the directory, or is empty.
    #[error("invalid file name {name:?}: names are single path components")]
    InvalidName {
        /// The name.
        name: String,
    },
}

fn holder_text(holder: Option<u32>) -> String {
    match holder {
        Some(pid) => format!(" by process {pid}"),
        None => String::new(),
    }
}

impl IoError {
    /// The operating system's error code, if this is a system error.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            IoError::Os { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// The operation that failed, where the error names one.
    pub fn op(&self) -> Option<Op> {
        match self {
            IoError::Os { op, .. }
            | IoError::Misaligned { op, .. }
            | IoError::Closed { op, .. }
            | IoError::Crashed { op, .. }
            | IoError::Unsupported { op, .. } => Some(*op),
            IoError::ReadPastEnd { .. } => Some(Op::Read),
            IoError::ShortWrite { .. } => Some(Op::Write),
            IoError::Locked { .. } => Some(Op::Lock),
            IoError::InvalidName { .. } => None,
        }
    }

    /// Whether a data or directory sync failed. After that, what the sync
    /// covered is in doubt for good: Linux marks the pages of a failed
    /// writeback clean, so a later sync can pass without them.
    pub fn is_sync(&self) -> bool {
        matches!(self.op(), Some(Op::SyncData | Op::SyncDir))
    }

    pub(crate) fn os(op: Op, path: impl Into<PathBuf>, source: impl Into<std::io::Error>) -> Self {
        IoError::Os {
            op,
            path: path.into(),
            source: source.into(),
        }
    }
}
