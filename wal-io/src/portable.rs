//! The portable backend: positional system calls on every Unix.
//!
//! `pwritev`/`pread`, `fdatasync` (`F_FULLFSYNC` on Apple systems, where
//! `fsync` does not flush the drive's cache), `fallocate` where the file
//! system has it and explicit zero-fill where it does not, `flock` for the
//! directory lock. Its queue performs operations in order on the calling thread.

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::buffer::spare_capacity;
use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use crate::queue::InOrderQueue;
use crate::{
    Backend, DirLock, FileOptions, FileRef, IoBuf, IoError, IoQueue, Op, Storage, StorageFile,
    check_direct, check_name,
};

/// The name of the lock file every backend keeps in a locked directory. It
/// is reserved: no other file may take it, and [`Storage::list`] leaves it out.
pub const LOCK_FILE_NAME: &str = "LOCK";

/// Slices per `pwritev` call: `IOV_MAX` is 1024 on Linux and the BSDs.
const IOV_PER_CALL_MAX: usize = 1024;

/// Retries a system call interrupted by a signal.
fn retry<T>(mut f: impl FnMut() -> Result<T, Errno>) -> Result<T, Errno> {
    loop {
        match f() {
            Err(Errno::INTR) => continue,
            other => return other,
        }
    }
}

/// Extra tries for the directory lock when it is held, and the pause
/// between them: long enough for a probe's instant, short enough that a
/// refused open is still quick.
const LOCK_TRIES: u32 = 20;
const LOCK_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(5);

/// A directory on a real file system.
#[derive(Debug)]
pub struct PortableStorage {
    path: PathBuf,
    dir: Arc<OwnedFd>,
    /// Files open read-only; nothing is created, removed, renamed, synced
    /// or locked.
    read_only: bool,
}

impl PortableStorage {
    /// Opens the directory at `path`, which must exist.
    ///
    /// # Errors
    /// [`IoError::Os`] if it cannot be opened as a directory.
    pub fn open(path: &Path) -> Result<Self, IoError> {
        let dir = retry(|| {
            rustix::fs::open(
                path,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
        })
        .map_err(|e| IoError::os(Op::OpenDir, path, e))?;
        Ok(PortableStorage {
            path: path.to_path_buf(),
            dir: Arc::new(dir),
            read_only: false,
        })
    }

    /// Opens the directory at `path` for reading only: files open
    /// `O_RDONLY`, and creating, removing, renaming, syncing and locking
    /// fail with [`IoError::Unsupported`]. For tools that inspect a
    /// directory another process may hold, or one on read-only media.
    ///
    /// # Errors
    /// [`IoError::Os`] if it cannot be opened as a directory.
    pub fn open_read_only(path: &Path) -> Result<Self, IoError> {
        let mut storage = PortableStorage::open(path)?;
        storage.read_only = true;
        Ok(storage)
    }

    /// Refuses `op` on a read-only storage.
    fn writable(&self, op: Op, name: &str) -> Result<(), IoError> {
        if self.read_only {
            return Err(IoError::Unsupported {
                op,
                path: self.path.join(name),
                reason: "the directory was opened read-only".to_owned(),
            });
        }
        Ok(())
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn open_file(
        &self,
        op: Op,
        name: &str,
        options: FileOptions,
        create: bool,
    ) -> Result<FileRef, IoError> {
        check_name(name)?;
        let path = self.path.join(name);
        let mut flags = if self.read_only {
            if create {
                self.writable(op, name)?;
            }
            OFlags::RDONLY | OFlags::CLOEXEC
        } else {
            OFlags::RDWR | OFlags::CLOEXEC
        };
        if create {
            flags |= OFlags::CREATE | OFlags::EXCL;
        }
        // A listing names regular files only: a name opened must be one
        // too, or a file the log moved in by name (a spare renamed into a
        // segment) could be one no later listing shows.
        flags |= OFlags::NOFOLLOW;
        if options.direct {
            flags |= direct_flag(op, &path)?;
        }
        let fd =
            retry(|| rustix::fs::openat(self.dir.as_fd(), name, flags, Mode::from_raw_mode(0o644)))
                .map_err(|e| {
                    if options.direct && e == Errno::INVAL {
                        IoError::Unsupported {
                            op,
                            path: path.clone(),
                            reason: "the file system refuses O_DIRECT".to_owned(),
                        }
                    } else if refused_symlink(e) {
                        IoError::Unsupported {
                            op,
                            path: path.clone(),
                            reason: "a symbolic link: the log's files must be regular files"
                                .to_owned(),
                        }
                    } else {
                        IoError::os(op, &path, e)
                    }
                })?;
        Ok(Arc::new(PortableFile {
            fd,
            name: name.to_owned(),
            path,
            options,
            read_only: self.read_only,
            closed: AtomicBool::new(false),
        }))
    }
}

/// The error an open with `O_NOFOLLOW` gives for a symbolic link: ELOOP,
/// or EMLINK on FreeBSD and DragonFly. (NetBSD's EFTYPE is not mapped:
/// there it stays the system's error.)
fn refused_symlink(e: Errno) -> bool {
    e == Errno::LOOP
        || (cfg!(any(target_os = "freebsd", target_os = "dragonfly")) && e == Errno::MLINK)
}

#[cfg(target_os = "linux")]
fn direct_flag(_op: Op, _path: &Path) -> Result<OFlags, IoError> {
    Ok(OFlags::DIRECT)
}

#[cfg(not(target_os = "linux"))]
fn direct_flag(op: Op, path: &Path) -> Result<OFlags, IoError> {
    Err(IoError::Unsupported {
        op,
        path: path.to_path_buf(),
        reason: "O_DIRECT is supported on Linux only".to_owned(),
    })
}

struct LockGuard {
    _fd: OwnedFd,
}

impl Storage for PortableStorage {
    fn backend(&self) -> Backend {
        Backend::Portable
    }

    fn create(&self, name: &str, options: FileOptions) -> Result<FileRef, IoError> {
        self.open_file(Op::Create, name, options, true)
    }

    fn open(&self, name: &str, options: FileOptions) -> Result<FileRef, IoError> {
        self.open_file(Op::Open, name, options, false)
    }

    fn remove(&self, name: &str) -> Result<(), IoError> {
        check_name(name)?;
        self.writable(Op::Remove, name)?;
        retry(|| rustix::fs::unlinkat(self.dir.as_fd(), name, AtFlags::empty()))
            .map_err(|e| IoError::os(Op::Remove, self.path.join(name), e))
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), IoError> {
        check_name(from)?;
        check_name(to)?;
        self.writable(Op::Rename, from)?;
        retry(|| rustix::fs::renameat(self.dir.as_fd(), from, self.dir.as_fd(), to))
            .map_err(|e| IoError::os(Op::Rename, self.path.join(from), e))
    }

    fn list(&self) -> Result<Vec<String>, IoError> {
        let entries =
            std::fs::read_dir(&self.path).map_err(|e| IoError::os(Op::List, &self.path, e))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| IoError::os(Op::List, &self.path, e))?;
            let is_file = entry
                .file_type()
                .map_err(|e| IoError::os(Op::List, entry.path(), e))?
                .is_file();
            // Names that are not UTF-8 cannot have been created through this API.
            if let (true, Ok(name)) = (is_file, entry.file_name().into_string())
                && name != LOCK_FILE_NAME
            {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn sync_dir(&self) -> Result<(), IoError> {
        self.writable(Op::SyncDir, "")?;
        retry(|| rustix::fs::fsync(self.dir.as_fd()))
            .map_err(|e| IoError::os(Op::SyncDir, &self.path, e))
    }

    fn lock(&self) -> Result<DirLock, IoError> {
        self.writable(Op::Lock, LOCK_FILE_NAME)?;
        let lock_file = self.path.join(LOCK_FILE_NAME);
        let fd = retry(|| {
            rustix::fs::openat(
                self.dir.as_fd(),
                LOCK_FILE_NAME,
                OFlags::RDWR | OFlags::CREATE | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
            )
        })
        .map_err(|e| IoError::os(Op::Lock, &lock_file, e))?;
        // A tool's probe (`lock_state`) holds a shared lock for an instant:
        // a few tries apart tell it from a holder.
        let mut tries = 0;
        let taken = loop {
            let exclusive = rustix::fs::FlockOperation::NonBlockingLockExclusive;
            match retry(|| rustix::fs::flock(&fd, exclusive)) {
                Err(Errno::WOULDBLOCK) if tries < LOCK_TRIES => {
                    tries += 1;
                    std::thread::sleep(LOCK_RETRY_PAUSE);
                }
                other => break other,
            }
        };
        match taken {
            Ok(()) => {}
            Err(Errno::WOULDBLOCK) => {
                let holder = recorded_holder(&fd);
                return Err(IoError::Locked {
                    dir: self.path.clone(),
                    lock_file,
                    holder,
                });
            }
            Err(e) => return Err(IoError::os(Op::Lock, &lock_file, e)),
        }
        record_holder(&fd);
        Ok(DirLock::new(LockGuard { _fd: fd }))
    }

    fn queue(&self, _depth: u32) -> Result<Box<dyn IoQueue>, IoError> {
        Ok(Box::<InOrderQueue>::default())
    }
}

/// Leaves the lock holder's pid where a refused opener can find it (best
/// effort; the lock itself is the `flock`). Where the kernel lists every
/// lock with its holder (`/proc/locks`, Linux) nothing is written. Writing
/// the pid into the file cost an open 0.3-2.3 ms after a cold start: the
/// write's metadata update waited on the file system's journal, and a
/// truncation first, or a write shorter than a page into a page no longer
/// cached, waited for more. Elsewhere the pid goes into the file.
fn record_holder(fd: &OwnedFd) {
    if kernel_lists_locks() {
        return;
    }
    let pid = format!("{}\n", std::process::id());
    let _ = retry(|| rustix::fs::ftruncate(fd, 0));
    let _ = retry(|| rustix::io::pwrite(fd, pid.as_bytes(), 0));
}

/// The holder of the lock on the file behind `fd`: from the kernel's list
/// where there is one, else the pid it wrote into the file.
fn recorded_holder(fd: &OwnedFd) -> Option<u32> {
    if kernel_lists_locks() {
        return listed_holder(fd);
    }
    let mut text = [0u8; 32];
    let n = retry(|| rustix::io::pread(fd, &mut text, 0)).unwrap_or(0);
    std::str::from_utf8(text.get(..n).unwrap_or_default())
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// Where the kernel lists every file lock and its holder; looked up once.
const LOCK_LIST_PATH: &str = "/proc/locks";

/// Whether this system lists its file locks at [`LOCK_LIST_PATH`].
fn kernel_lists_locks() -> bool {
    static LISTS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *LISTS.get_or_init(|| cfg!(target_os = "linux") && std::fs::metadata(LOCK_LIST_PATH).is_ok())
}

/// The pid of the process holding the `flock` on the file behind `fd`, as
/// the kernel lists it: `1: FLOCK ADVISORY WRITE <pid>
/// <major>:<minor>:<inode> 0 EOF` (hexadecimal device numbers; a waiter's
/// line has `->` after the number and is skipped). An exclusive holder is
/// preferred to a shared one (a tool's probe, for an instant). `None` if
/// the list cannot be read or names no holder visible here (pid 0, as for
/// a holder in another pid namespace).
fn listed_holder(fd: &OwnedFd) -> Option<u32> {
    let stat = retry(|| rustix::fs::fstat(fd)).ok()?;
    let file = format!(
        "{:02x}:{:02x}:{}",
        rustix::fs::major(stat.st_dev),
        rustix::fs::minor(stat.st_dev),
        stat.st_ino
    );
    let locks = std::fs::read_to_string(LOCK_LIST_PATH).ok()?;
    let holders = locks.lines().filter_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            // POSIX: where the file system emulates `flock` with record
            // locks (NFS).
            [_, "FLOCK" | "POSIX", _, mode, pid, on, ..] if *on == file => {
                let pid = pid.parse::<u32>().ok().filter(|&p| p != 0)?;
                Some((*mode == "WRITE", pid))
            }
            _ => None,
        }
    });
    holders
        .max_by_key(|&(exclusive, _)| exclusive)
        .map(|(_, pid)| pid)
}

/// Whether a process holds the directory's lock (see [`Storage::lock`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LockState {
    /// No process holds it.
    Free,
    /// A process holds it; its pid, if it recorded one.
    Held {
        /// The holder's process id.
        holder: Option<u32>,
    },
}

/// Whether a process holds the lock of the directory at `path`, without
/// creating or writing anything: the lock file is opened read-only and a
/// shared lock tried and dropped at once ([`Storage::lock`] tries again a
/// few times, so a process taking the lock at that instant still gets it).
///
/// # Errors
/// [`IoError::Os`] if the lock file exists but cannot be opened or locked.
pub fn lock_state(path: &Path) -> Result<LockState, IoError> {
    let lock_file = path.join(LOCK_FILE_NAME);
    let fd = match retry(|| {
        rustix::fs::open(&lock_file, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
    }) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(LockState::Free),
        Err(e) => return Err(IoError::os(Op::Lock, &lock_file, e)),
    };
    match retry(|| rustix::fs::flock(&fd, rustix::fs::FlockOperation::NonBlockingLockShared)) {
        // Closing the descriptor below releases it.
        Ok(()) => Ok(LockState::Free),
        Err(Errno::WOULDBLOCK) => Ok(LockState::Held {
            holder: recorded_holder(&fd),
        }),
        Err(e) => Err(IoError::os(Op::Lock, &lock_file, e)),
    }
}

/// A file opened by [`PortableStorage`].
#[derive(Debug)]
pub struct PortableFile {
    fd: OwnedFd,
    name: String,
    path: PathBuf,
    options: FileOptions,
    /// Opened through a read-only storage: it changes nothing, not even
    /// the page cache another process relies on.
    read_only: bool,
    closed: AtomicBool,
}

impl PortableFile {
    fn check_open(&self, op: Op) -> Result<(), IoError> {
        if self.closed.load(Ordering::Acquire) {
            Err(IoError::Closed {
                op,
                path: self.path.clone(),
            })
        } else {
            Ok(())
        }
    }

    fn err(&self, op: Op, e: Errno) -> IoError {
        IoError::os(op, &self.path, e)
    }

    /// Writes `bufs` at `offset` with `pwritev`, continuing after partial writes.
    fn write_all(&self, mut offset: u64, bufs: &[&[u8]]) -> Result<(), IoError> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let mut slices: Vec<IoSlice<'_>> = bufs.iter().map(|b| IoSlice::new(b)).collect();
        let mut rest = &mut slices[..];
        let mut written_total = 0usize;
        while !rest.is_empty() {
            let batch_len = rest.len().min(IOV_PER_CALL_MAX);
            let batch = rest.get(..batch_len).unwrap_or_default();
            let written = retry(|| rustix::io::pwritev(&self.fd, batch, offset))
                .map_err(|e| self.err(Op::Write, e))?;
            if written == 0 && batch.iter().any(|s| !s.is_empty()) {
                return Err(IoError::ShortWrite {
                    path: self.path.clone(),
                    offset,
                    len: total,
                    written: written_total,
                });
            }
            written_total += written;
            offset += written as u64;
            IoSlice::advance_slices(&mut rest, written);
        }
        Ok(())
    }
}

impl PortableFile {
    /// The error for a read of `len` bytes at `offset` that met the end.
    fn past_end(&self, offset: u64, len: usize) -> IoError {
        match self.size() {
            Ok(file_len) => IoError::ReadPastEnd {
                path: self.path.clone(),
                offset,
                len,
                file_len,
            },
            Err(e) => e,
        }
    }
}

impl StorageFile for PortableFile {
    fn name(&self) -> &str {
        &self.name
    }

    fn options(&self) -> FileOptions {
        self.options
    }

    fn write_at(&self, offset: u64, bufs: &[&[u8]]) -> Result<(), IoError> {
        self.check_open(Op::Write)?;
        if self.options.direct {
            for (i, b) in bufs.iter().enumerate() {
                let at = offset + bufs.iter().take(i).map(|b| b.len() as u64).sum::<u64>();
                check_direct(Op::Write, &self.path, at, b.len(), b.as_ptr() as usize)?;
            }
        }
        self.write_all(offset, bufs)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        self.check_open(Op::Read)?;
        if self.options.direct {
            check_direct(
                Op::Read,
                &self.path,
                offset,
                buf.len(),
                buf.as_ptr() as usize,
            )?;
        }
        let len = buf.len();
        let mut done = 0usize;
        while done < len {
            let rest = buf.get_mut(done..).unwrap_or_default();
            let n = retry(|| rustix::io::pread(&self.fd, &mut *rest, offset + done as u64))
                .map_err(|e| self.err(Op::Read, e))?;
            if n == 0 {
                return Err(self.past_end(offset, len));
            }
            done += n;
        }
        Ok(())
    }

    fn read_vec(&self, offset: u64, len: usize) -> Result<Vec<u8>, IoError> {
        if self.options.direct || len == 0 {
            // O_DIRECT wants an aligned buffer: `read_at` refuses this one,
            // as the trait's documentation says.
            let mut buf = vec![0; len];
            self.read_at(offset, &mut buf)?;
            return Ok(buf);
        }
        self.check_open(Op::Read)?;
        let mut buf = Vec::with_capacity(len);
        while buf.len() < len {
            let at = offset + buf.len() as u64;
            // Reads into the spare capacity and extends `buf` by what came.
            let n = retry(|| rustix::io::pread(&self.fd, spare_capacity(&mut buf), at))
                .map_err(|e| self.err(Op::Read, e))?;
            if n == 0 {
                return Err(self.past_end(offset, len));
            }
        }
        // The capacity may exceed `len`, and a read may fill all of it.
        buf.truncate(len);
        Ok(buf)
    }

    fn drop_cache(&self) -> Result<(), IoError> {
        self.check_open(Op::DropCache)?;
        if self.read_only {
            // A reader beside a live writer must not evict (or start the
            // writeback of) the writer's pages.
            return Ok(());
        }
        drop_cache(&self.fd).map_err(|e| self.err(Op::DropCache, e))
    }

    fn sync_data(&self) -> Result<(), IoError> {
        self.check_open(Op::SyncData)?;
        sync_data(&self.fd).map_err(|e| self.err(Op::SyncData, e))
    }

    fn allocate(&self, offset: u64, len: u64) -> Result<(), IoError> {
        self.check_open(Op::Allocate)?;
        if len == 0 {
            return Ok(());
        }
        match fallocate(&self.fd, offset, len) {
            Ok(()) => Ok(()),
            Err(Errno::OPNOTSUPP | Errno::NOSYS) => self.zero_fill(offset, len),
            Err(e) => Err(self.err(Op::Allocate, e)),
        }
    }

    fn set_len(&self, len: u64) -> Result<(), IoError> {
        self.check_open(Op::SetLen)?;
        retry(|| rustix::fs::ftruncate(&self.fd, len)).map_err(|e| self.err(Op::SetLen, e))
    }

    fn size(&self) -> Result<u64, IoError> {
        self.check_open(Op::Len)?;
        let stat = retry(|| rustix::fs::fstat(&self.fd)).map_err(|e| self.err(Op::Len, e))?;
        u64::try_from(stat.st_size).map_err(|_| IoError::Unsupported {
            op: Op::Len,
            path: self.path.clone(),
            reason: format!("negative file size {}", stat.st_size),
        })
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    fn raw_fd(&self) -> Option<i32> {
        if self.closed.load(Ordering::Acquire) {
            None
        } else {
            Some(self.fd.as_raw_fd())
        }
    }
}

impl PortableFile {
    /// Where the file system has no `fallocate`: write zeros over the part of
    /// the range beyond the current end, so existing bytes stay untouched.
    fn zero_fill(&self, offset: u64, len: u64) -> Result<(), IoError> {
        let end = offset + len;
        let mut at = self.size()?.max(offset);
        if at >= end {
            return Ok(());
        }
        if self.options.direct
            && (!at.is_multiple_of(crate::DIRECT_IO_ALIGN as u64)
                || !end.is_multiple_of(crate::DIRECT_IO_ALIGN as u64))
        {
            // O_DIRECT cannot write a misaligned range; extending the length
            // still makes the range read as zeros.
            return self.set_len(end);
        }
        let mut zeros = IoBuf::with_capacity(1 << 20);
        zeros.resize(zeros.capacity(), 0);
        while at < end {
            let n = usize::try_from(end - at)
                .unwrap_or(usize::MAX)
                .min(zeros.len());
            self.write_all(at, &[zeros.as_slice().get(..n).unwrap_or_default()])?;
            at += n as u64;
        }
        Ok(())
    }
}

#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
fn fallocate(fd: &OwnedFd, offset: u64, len: u64) -> Result<(), Errno> {
    retry(|| rustix::fs::fallocate(fd, rustix::fs::FallocateFlags::empty(), offset, len))
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
fn fallocate(_fd: &OwnedFd, _offset: u64, _len: u64) -> Result<(), Errno> {
    Err(Errno::OPNOTSUPP)
}

#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
fn drop_cache(fd: &OwnedFd) -> Result<(), Errno> {
    // Offset 0 and no length: the whole file, whatever its size.
    match retry(|| rustix::fs::fadvise(fd, 0, None, rustix::fs::Advice::DontNeed)) {
        Err(e) if advice_refused(e) => Ok(()),
        other => other,
    }
}

/// Whether `fadvise` failed because the file takes no advice: a file
/// system without such a cache has nothing to drop, and a refusal must not
/// stop a recovery that only wanted the cache gone as a precaution. Other
/// errors (`EIO`, `EBADF`) stay errors.
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
fn advice_refused(e: Errno) -> bool {
    matches!(
        e,
        Errno::INVAL | Errno::SPIPE | Errno::NOSYS | Errno::OPNOTSUPP
    )
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
fn drop_cache(_fd: &OwnedFd) -> Result<(), Errno> {
    Ok(())
}

#[cfg(target_vendor = "apple")]
fn sync_data(fd: &OwnedFd) -> Result<(), Errno> {
    // fsync on macOS leaves data in the drive's volatile cache.
    retry(|| rustix::fs::fcntl_fullfsync(fd))
}

#[cfg(not(target_vendor = "apple"))]
fn sync_data(fd: &OwnedFd) -> Result<(), Errno> {
    retry(|| rustix::fs::fdatasync(fd))
}

#[cfg(all(
    test,
    any(target_os = "linux", target_os = "android", target_os = "freebsd")
))]
mod tests {
    use super::*;

    #[test]
    fn refused_advice_is_no_cache_but_a_failure_is_an_error() {
        for refused in [Errno::INVAL, Errno::SPIPE, Errno::NOSYS, Errno::OPNOTSUPP] {
            assert!(advice_refused(refused), "{refused:?}");
        }
        for failure in [Errno::IO, Errno::BADF, Errno::NOSPC] {
            assert!(!advice_refused(failure), "{failure:?}");
        }
    }
}
