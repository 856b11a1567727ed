//! Every file descriptor of the write-ahead log.
//!
//! The engine and the key-value store do all their I/O through the small
//! positional [`Storage`] (a directory) and [`StorageFile`] traits, plus an
//! [`IoQueue`] for batches of writes and syncs whose completions are reaped
//! by the one thread that drives the queue. Three backends implement them:
//!
//! - [`portable`]: `pwritev`/`preadv`/`fdatasync` (`F_FULLFSYNC` on macOS),
//!   `fallocate` where the file system has it. Every Unix.
//! - [`uring`] (Linux, cargo feature `io-uring`, on by default): the same
//!   synchronous operations, and an `io_uring` queue that submits a batch
//!   with one system call: a buffered write and its `fdatasync` ordered in
//!   the ring, or O_DIRECT writes with `RWF_DSYNC`, several in flight. Probed
//!   at open; where the kernel refuses `io_uring` it falls back to portable
//!   with one log line, and [`Storage::backend`] says so.
//! - [`sim`]: in memory, deterministic from a seed. It keeps what is durable
//!   apart from what is only written, loses unsynced data at
//!   [`sim::SimDisk::crash`] the ways real disks do, and injects `EIO` or
//!   `ENOSPC` at the N-th operation of a kind. Public, so users can crash
//!   their own code.
//!
//! This crate decides nothing about what is durable or what a record is. It
//! is the only crate of the workspace with `unsafe` code, each block with a
//! `// SAFETY:` proof.
//!
//! ```
//! use wal_io::{BackendChoice, FileOptions};
//!
//! let dir = tempfile::tempdir()?;
//! let storage = wal_io::open_dir(dir.path(), BackendChoice::Auto)?;
//! let _lock = storage.lock()?;
//! let file = storage.create("00000000000000000001.wal", FileOptions::default())?;
//! file.allocate(0, 1 << 20)?;
//! file.write_at(0, &[b"hello, ", b"log"])?;
//! file.sync_data()?;
//! storage.sync_dir()?;
//!
//! let mut back = [0u8; 10];
//! file.read_at(0, &mut back)?;
//! assert_eq!(&back, b"hello, log");
//! println!("backend in use: {}", storage.backend());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

// `unsafe` is denied workspace-wide and allowed only in the two modules that
// need it: the aligned buffer's allocation, and handing buffers to the kernel.
#[allow(unsafe_code)]
mod buf;
mod error;
mod queue;

pub mod portable;
pub mod sim;
#[allow(unsafe_code)]
pub mod uring;

use std::path::Path;
use std::sync::Arc;

pub use buf::{DIRECT_IO_ALIGN, IoBuf, advise_huge_pages, prefault};
pub use error::{IoError, Op};
pub use queue::{Completion, IoQueue};

/// A shared handle to an open file.
pub type FileRef = Arc<dyn StorageFile>;

/// How a file is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct FileOptions {
    /// Bypass the page cache (O_DIRECT). Offsets, lengths and buffer
    /// addresses must then be multiples of [`DIRECT_IO_ALIGN`]; [`IoBuf`]
    /// meets the address rule by construction.
    pub direct: bool,
}

impl FileOptions {
    /// Buffered I/O through the page cache.
    pub const BUFFERED: FileOptions = FileOptions { direct: false };
    /// O_DIRECT I/O.
    pub const DIRECT: FileOptions = FileOptions { direct: true };
}

/// The backend a [`Storage`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// `pwritev`/`fdatasync`.
    Portable,
    /// `io_uring` for queued batches.
    Uring,
    /// The in-memory simulated disk.
    Sim,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Portable => "portable",
            Backend::Uring => "uring",
            Backend::Sim => "sim",
        })
    }
}

/// Which backend [`open_dir`] should use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum BackendChoice {
    /// `io_uring` where the kernel allows it, portable otherwise.
    #[default]
    Auto,
    /// Portable, always.
    Portable,
    /// `io_uring`, falling back to portable (with a log line) where refused.
    Uring,
}

/// A directory of files: the unit the log locks and syncs.
///
/// File names are single path components (no `/`, not `.` or `..`).
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// The backend actually in use.
    fn backend(&self) -> Backend;

    /// Why the requested backend is not the one in use, if it fell back.
    fn fallback_reason(&self) -> Option<&str> {
        None
    }

    /// Creates a new, empty file; fails if the name exists.
    ///
    /// # Errors
    /// [`IoError`] from the system, or [`IoError::InvalidName`].
    fn create(&self, name: &str, options: FileOptions) -> Result<FileRef, IoError>;

    /// Opens an existing file for reading and writing.
    ///
    /// # Errors
    /// [`IoError`] from the system (`ENOENT` if it does not exist).
    fn open(&self, name: &str, options: FileOptions) -> Result<FileRef, IoError>;

    /// Removes a file.
    ///
    /// # Errors
    /// [`IoError`] from the system.
    fn remove(&self, name: &str) -> Result<(), IoError>;

    /// Renames a file, atomically replacing `to` if it exists. Durable only
    /// after [`Storage::sync_dir`].
    ///
    /// # Errors
    /// [`IoError`] from the system.
    fn rename(&self, from: &str, to: &str) -> Result<(), IoError>;

    /// The names of the files in the directory, sorted.
    ///
    /// # Errors
    /// [`IoError`] from the system.
    fn list(&self) -> Result<Vec<String>, IoError>;

    /// Makes creations, removals and renames in the directory durable.
    ///
    /// # Errors
    /// [`IoError`] from the system.
    fn sync_dir(&self) -> Result<(), IoError>;

    /// Takes the directory's exclusive lock, held until the returned guard
    /// drops. A second holder, in this process or another, gets
    /// [`IoError::Locked`] naming the lock file.
    ///
    /// # Errors
    /// [`IoError::Locked`], or [`IoError`] from the system.
    fn lock(&self) -> Result<DirLock, IoError>;

    /// A queue for batched writes and syncs, holding at most `depth`
    /// operations in flight. Owned and driven by one thread.
    ///
    /// # Errors
    /// [`IoError`] if the backend cannot set one up.
    fn queue(&self, depth: u32) -> Result<Box<dyn IoQueue>, IoError>;
}

/// An open file. All operations are positional, so one handle can be used by
/// several threads at once.
pub trait StorageFile: Send + Sync + std::fmt::Debug {
    /// The file's name in its directory.
    fn name(&self) -> &str;

    /// How it was opened.
    fn options(&self) -> FileOptions;

    /// Writes all of `bufs`, in order, starting at `offset`.
    ///
    /// # Errors
    /// [`IoError::Misaligned`] on an O_DIRECT file, [`IoError::ShortWrite`],
    /// [`IoError::Closed`], or [`IoError`] from the system.
    fn write_at(&self, offset: u64, bufs: &[&[u8]]) -> Result<(), IoError>;

    /// Fills `buf` from `offset`.
    ///
    /// # Errors
    /// [`IoError::ReadPastEnd`] if the file ends first, [`IoError::Misaligned`]
    /// on an O_DIRECT file, [`IoError::Closed`], or [`IoError`] from the system.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), IoError>;

    /// Reads `len` bytes from `offset` into a new vector, as
    /// [`StorageFile::read_at`]; a backend that can reads into uninitialised
    /// memory, where zeroing it first cost a table's block reads a twelfth
    /// of their time.
    ///
    /// # Errors
    /// As [`StorageFile::read_at`]. A vector is not aligned: on an O_DIRECT
    /// file this is [`IoError::Misaligned`]; read those with `read_at` into
    /// an [`IoBuf`].
    fn read_vec(&self, offset: u64, len: usize) -> Result<Vec<u8>, IoError> {
        let mut buf = vec![0; len];
        self.read_at(offset, &mut buf)?;
        Ok(buf)
    }

    /// Makes the file's written data durable (`fdatasync`).
    ///
    /// # Errors
    /// [`IoError`] from the system. After a failed sync the data it covered
    /// must be taken as lost: the kernel may have dropped it and will not
    /// report the failure again, so retrying is never right.
    fn sync_data(&self) -> Result<(), IoError>;

    /// Makes the data written in `offset..offset + len` durable, with the
    /// file length that reads it: what a write with `RWF_DSYNC` (or on an
    /// `O_DSYNC` file) guarantees for its own range, and nothing more.
    /// Writes outside the range may stay unsynced. The default syncs the
    /// whole file, which is more than the contract asks; the simulated disk
    /// keeps to the letter of it, so a caller that counts on more is caught.
    ///
    /// # Errors
    /// As [`StorageFile::sync_data`].
    fn sync_range(&self, offset: u64, len: u64) -> Result<(), IoError> {
        let _ = (offset, len);
        self.sync_data()
    }

    /// Reserves space for `offset..offset + len`, extending the file if that
    /// range goes past its end. Existing bytes are unchanged and new ones
    /// read as zeros; a full disk shows here rather than in a later write.
    ///
    /// # Errors
    /// [`IoError`] from the system (`ENOSPC`).
    fn allocate(&self, offset: u64, len: u64) -> Result<(), IoError>;

    /// Truncates or extends (with zeros) the file to `len` bytes.
    ///
    /// # Errors
    /// [`IoError`] from the system.
    fn set_len(&self, len: u64) -> Result<(), IoError>;

    /// The file's size in bytes.
    ///
    /// # Errors
    /// [`IoError`] from the system.
    fn size(&self) -> Result<u64, IoError>;

    /// Drops the file's clean pages from the page cache, so that later reads
    /// of them come from the device (`POSIX_FADV_DONTNEED` over the whole
    /// file). Dirty pages stay: they are the file's own unsynced writes.
    ///
    /// What this is for: when a writeback fails, Linux marks the pages it
    /// could not write clean and keeps them, so reads go on returning bytes
    /// that the device never got, and no later sync will ever write them
    /// (ATC '20, "Can Applications Recover from fsync Failures?"). A reader
    /// that must know what is durable, such as recovery after a crash,
    /// calls this first. A backend without a page cache does nothing; where
    /// the system has no such advice (macOS), or the file system refuses
    /// it, neither does this.
    ///
    /// # Errors
    /// [`IoError::Closed`], or [`IoError`] from the system.
    fn drop_cache(&self) -> Result<(), IoError>;

    /// Closes the handle: every later operation on it fails with
    /// [`IoError::Closed`]. The descriptor itself is released when the last
    /// reference drops, so a thread in the middle of an operation is never
    /// left with a descriptor that was reused.
    fn close(&self);

    /// The raw file descriptor, for the `io_uring` queue. `None` for
    /// simulated files.
    #[doc(hidden)]
    fn raw_fd(&self) -> Option<i32> {
        None
    }
}

/// The directory lock; released when dropped.
pub struct DirLock {
    _guard: Box<dyn Send + Sync>,
}

impl DirLock {
    pub(crate) fn new(guard: impl Send + Sync + 'static) -> Self {
        DirLock {
            _guard: Box::new(guard),
        }
    }
}

impl std::fmt::Debug for DirLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DirLock")
    }
}

/// Opens the directory at `path` (which must exist) with the chosen backend.
///
/// # Errors
/// [`IoError`] if the directory cannot be opened.
pub fn open_dir(
    path: impl AsRef<Path>,
    choice: BackendChoice,
) -> Result<Arc<dyn Storage>, IoError> {
    let portable = portable::PortableStorage::open(path.as_ref())?;
    match choice {
        BackendChoice::Portable => Ok(Arc::new(portable)),
        BackendChoice::Auto | BackendChoice::Uring => Ok(uring::UringStorage::over(portable)),
    }
}

/// Opens the directory at `path` (which must exist) for reading only,
/// with the portable backend: see
/// [`portable::PortableStorage::open_read_only`].
///
/// # Errors
/// [`IoError`] if the directory cannot be opened.
pub fn open_dir_read_only(path: impl AsRef<Path>) -> Result<Arc<dyn Storage>, IoError> {
    Ok(Arc::new(portable::PortableStorage::open_read_only(
        path.as_ref(),
    )?))
}

/// Replaces the small file `name` with `bytes`, atomically and durably:
/// written under `temp` (a leftover of that name is removed first), synced,
/// renamed over `name`, the directory synced. After a crash at any point
/// `name` holds either its old contents or `bytes`, never a mix. For a
/// manifest or a metadata file; the caller picks a `temp` no one else uses.
///
/// ```
/// let disk = wal_io::sim::SimDisk::new(1);
/// let storage = disk.storage();
/// wal_io::replace_file(&*storage, "meta", "meta.tmp", b"v1")?;
/// wal_io::replace_file(&*storage, "meta", "meta.tmp", b"v2")?;
/// disk.crash(wal_io::sim::CrashMode::LoseAll);
/// assert_eq!(disk.durable_content("meta").as_deref(), Some(&b"v2"[..]));
/// # Ok::<(), wal_io::IoError>(())
/// ```
///
/// # Errors
/// [`IoError`] from any step; `name` is then unchanged or replaced whole.
pub fn replace_file(
    storage: &dyn Storage,
    name: &str,
    temp: &str,
    bytes: &[u8],
) -> Result<(), IoError> {
    if storage.list()?.iter().any(|n| n == temp) {
        storage.remove(temp)?;
    }
    let file = storage.create(temp, FileOptions::BUFFERED)?;
    let written = file.write_at(0, &[bytes]).and_then(|()| file.sync_data());
    file.close();
    written?;
    storage.rename(temp, name)?;
    storage.sync_dir()
}

/// Checks that `name` is a single, ordinary path component, and not the
/// reserved lock file.
pub(crate) fn check_name(name: &str) -> Result<(), IoError> {
    if name.is_empty()
        || name == "."
        || name == ".."
        || name == portable::LOCK_FILE_NAME
        || name.contains('/')
        || name.contains('\0')
    {
        return Err(IoError::InvalidName {
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// Checks the O_DIRECT alignment of an offset, a length and a buffer address.
pub(crate) fn check_direct(
    op: Op,
    path: &Path,
    offset: u64,
    len: usize,
    addr: usize,
) -> Result<(), IoError> {
    let align = DIRECT_IO_ALIGN;
    let bad = |what: &'static str, value: u64| IoError::Misaligned {
        op,
        path: path.to_path_buf(),
        what,
        value,
        align,
    };
    let align_u64 = align as u64;
    if !offset.is_multiple_of(align_u64) {
        return Err(bad("offset", offset));
    }
    if !len.is_multiple_of(align) {
        return Err(bad("length", len as u64));
    }
    if !addr.is_multiple_of(align) {
        return Err(bad("buffer address", addr as u64));
    }
    Ok(())
}
