//! The `io_uring` backend (Linux, cargo feature `io-uring`).
//!
//! Single synchronous operations go straight to the portable system calls: a
//! ring round trip for one operation only adds latency. What the ring is for
//! is the [`IoQueue`]: a whole group-commit batch (writes, and a data sync
//! ordered after them with `IOSQE_IO_DRAIN`, or O_DIRECT writes with
//! `RWF_DSYNC`, several in flight) goes to the kernel in one `io_uring_enter`,
//! and completions are reaped by the thread that owns the ring.
//!
//! [`UringStorage::over`] probes the kernel first: where `io_uring` is
//! refused (the `kernel.io_uring_disabled` sysctl, a seccomp profile such as
//! Docker's default, an old kernel, a missing opcode) the storage falls back
//! to the portable backend, logs one line saying why, and reports
//! [`Backend::Portable`] with [`Storage::fallback_reason`]. Setting the
//! environment variable `WAL_IO_DISABLE_URING=1` forces that fallback.

use std::sync::Arc;

use crate::portable::PortableStorage;
use crate::queue::InOrderQueue;
use crate::{Backend, DirLock, FileOptions, FileRef, IoError, IoQueue, Storage};

/// The environment variable that, when set to `1`, makes the probe refuse
/// `io_uring` as if the kernel had.
pub const DISABLE_ENV: &str = "WAL_IO_DISABLE_URING";

/// A directory whose queues use `io_uring` where the kernel allows it.
#[derive(Debug)]
pub struct UringStorage {
    inner: PortableStorage,
    fallback: Option<String>,
}

impl UringStorage {
    /// Probes `io_uring` and wraps `portable`: the result reports
    /// [`Backend::Uring`] if the probe passed, [`Backend::Portable`] with a
    /// [`Storage::fallback_reason`] otherwise.
    pub fn over(portable: PortableStorage) -> Arc<dyn Storage> {
        let fallback = probe().err();
        if let Some(reason) = &fallback {
            tracing::warn!(
                dir = %portable.path().display(),
                "io_uring unavailable ({reason}); using the portable backend"
            );
        }
        Arc::new(UringStorage {
            inner: portable,
            fallback,
        })
    }
}

impl Storage for UringStorage {
    fn backend(&self) -> Backend {
        if self.fallback.is_some() {
            Backend::Portable
        } else {
            Backend::Uring
        }
    }

    fn fallback_reason(&self) -> Option<&str> {
        self.fallback.as_deref()
    }

    fn create(&self, name: &str, options: FileOptions) -> Result<FileRef, IoError> {
        self.inner.create(name, options)
    }

    fn open(&self, name: &str, options: FileOptions) -> Result<FileRef, IoError> {
        self.inner.open(name, options)
    }

    fn remove(&self, name: &str) -> Result<(), IoError> {
        self.inner.remove(name)
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), IoError> {
        self.inner.rename(from, to)
    }

    fn list(&self) -> Result<Vec<String>, IoError> {
        self.inner.list()
    }

    fn sync_dir(&self) -> Result<(), IoError> {
        self.inner.sync_dir()
    }

    fn lock(&self) -> Result<DirLock, IoError> {
        self.inner.lock()
    }

    fn queue(&self, depth: u32) -> Result<Box<dyn IoQueue>, IoError> {
        if self.fallback.is_some() {
            return Ok(Box::<InOrderQueue>::default());
        }
        ring::UringQueue::boxed(depth, self.inner.path())
    }
}

#[cfg(all(target_os = "linux", feature = "io-uring"))]
fn probe() -> Result<(), String> {
    if std::env::var_os(DISABLE_ENV).is_some_and(|v| v == "1") {
        return Err(format!("{DISABLE_ENV}=1"));
    }
    ring::probe()
}

#[cfg(not(all(target_os = "linux", feature = "io-uring")))]
fn probe() -> Result<(), String> {
    Err("built without io_uring support (Linux with the `io-uring` feature only)".to_owned())
}

#[cfg(all(target_os = "linux", feature = "io-uring"))]
mod ring {
    use std::collections::VecDeque;
    use std::path::Path;

    use io_uring::{IoUring, Probe, opcode, squeue, types};

    use crate::queue::check_write;
    use crate::{Completion, FileRef, IoBuf, IoError, IoQueue, Op};

    /// Checks that a ring can be set up and has the opcodes the queue uses.
    pub(super) fn probe() -> Result<(), String> {
        let ring = IoUring::new(2).map_err(|e| format!("io_uring_setup failed: {e}"))?;
        let mut probe = Probe::new();
        ring.submitter()
            .register_probe(&mut probe)
            .map_err(|e| format!("io_uring probe failed: {e}"))?;
        for (code, name) in [
            (opcode::Write::CODE, "WRITE"),
            (opcode::Fsync::CODE, "FSYNC"),
        ] {
            if !probe.is_supported(code) {
                return Err(format!("the kernel's io_uring lacks {name}"));
            }
        }
        Ok(())
    }

    /// An operation the kernel may still be working on. It owns what the
    /// kernel uses: the buffer it reads from, and the file whose descriptor
    /// must stay open.
    struct InFlight {
        token: u64,
        file: FileRef,
        buf: Option<IoBuf>,
        offset: u64,
    }

    pub(super) struct UringQueue {
        ring: IoUring,
        depth: usize,
        slots: Vec<Option<InFlight>>,
        free: Vec<usize>,
        unsubmitted: Vec<squeue::Entry>,
        ready: VecDeque<Completion>,
        /// The directory the queue's files are in: errors name a file by
        /// its whole path, as every other operation's do.
        dir: std::path::PathBuf,
    }

    impl std::fmt::Debug for UringQueue {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("UringQueue")
                .field("depth", &self.depth)
                .field("in_flight", &self.in_flight())
                .finish()
        }
    }

    fn queue_err(path: &Path, e: std::io::Error) -> IoError {
        IoError::os(Op::Queue, path, e)
    }

    impl UringQueue {
        pub(super) fn boxed(depth: u32, dir: &Path) -> Result<Box<dyn IoQueue>, IoError> {
            let depth = depth.clamp(1, 4096);
            // A completion queue twice the submission queue (the default) can
            // never overflow while at most `depth` operations are in flight.
            let ring = IoUring::new(depth.next_power_of_two()).map_err(|e| queue_err(dir, e))?;
            let depth = depth as usize;
            Ok(Box::new(UringQueue {
                ring,
                depth,
                slots: (0..depth).map(|_| None).collect(),
                free: (0..depth).rev().collect(),
                unsubmitted: Vec::new(),
                ready: VecDeque::new(),
                dir: dir.to_path_buf(),
            }))
        }

        /// A free slot, reaping completions (into `ready`) while all are taken.
        fn slot(&mut self) -> Result<usize, IoError> {
            loop {
                if let Some(slot) = self.free.pop() {
                    return Ok(slot);
                }
                self.flush()?;
                self.reap_blocking(1)?;
            }
        }

        /// Pushes the entries built so far into the submission queue and
        /// submits them.
        fn flush(&mut self) -> Result<(), IoError> {
            let mut pushed = 0;
            while pushed < self.unsubmitted.len() {
                let entry = &self.unsubmitted[pushed];
                // SAFETY: every entry points at memory owned by its slot in
                // `self.slots` (an `IoBuf`, which never reallocates, kept until
                // the entry's completion is reaped) and at a descriptor kept
                // open by the slot's `FileRef`. Slots are freed only in `reap`,
                // after the kernel has posted the completion, or leaked by
                // `Drop` when waiting is impossible.
                let full = unsafe { self.ring.submission().push(entry).is_err() };
                if !full {
                    pushed += 1;
                } else if let Err(e) = self.submit_raw() {
                    // What was pushed stays in the ring and will complete; only
                    // the rest remains to be pushed.
                    self.unsubmitted.drain(..pushed);
                    return Err(e);
                }
            }
            self.unsubmitted.clear();
            self.submit_raw()
        }

        fn submit_raw(&mut self) -> Result<(), IoError> {
            loop {
                match self.ring.submit() {
                    Ok(_) => return Ok(()),
                    Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INTR.raw_os_error()) => {}
                    Err(e) => return Err(queue_err(Path::new("io_uring"), e)),
                }
            }
        }

        /// Moves every posted completion into `ready`; returns how many.
        fn reap(&mut self) -> usize {
            let mut n = 0;
            let mut posted = Vec::new();
            for cqe in self.ring.completion() {
                posted.push((cqe.user_data(), cqe.result()));
            }
            for (user_data, res) in posted {
                let Some(slot) = usize::try_from(user_data)
                    .ok()
                    .filter(|s| *s < self.slots.len())
                else {
                    continue;
                };
                let Some(op) = self.slots.get_mut(slot).and_then(Option::take) else {
                    continue;
                };
                self.free.push(slot);
                let name = self.dir.join(op.file.name());
                let result = if res < 0 {
                    let is_write = op.buf.is_some();
                    Err(IoError::os(
                        if is_write { Op::Write } else { Op::SyncData },
                        name,
                        std::io::Error::from_raw_os_error(-res),
                    ))
                } else {
                    match &op.buf {
                        Some(buf) if usize::try_from(res).ok() != Some(buf.len()) => {
                            Err(IoError::ShortWrite {
                                path: name,
                                offset: op.offset,
                                len: buf.len(),
                                written: usize::try_from(res).unwrap_or(0),
                            })
                        }
                        _ => Ok(()),
                    }
                };
                self.ready.push_back(Completion {
                    token: op.token,
                    result,
                    buf: op.buf,
                });
                n += 1;
            }
            n
        }

        /// Waits until at least `min` more completions are in `ready` or
        /// nothing is in flight.
        fn reap_blocking(&mut self, min: usize) -> Result<(), IoError> {
            let mut got = self.reap();
            while got < min && self.slots_in_use() > 0 {
                match self.ring.submit_and_wait(1) {
                    Ok(_) => {}
                    Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INTR.raw_os_error()) => {}
                    Err(e) => return Err(queue_err(Path::new("io_uring"), e)),
                }
                got += self.reap();
            }
            Ok(())
        }

        fn slots_in_use(&self) -> usize {
            self.depth - self.free.len()
        }

        fn fd(&self, file: &FileRef) -> Result<types::Fd, IoError> {
            file.raw_fd().map(types::Fd).ok_or_else(|| IoError::Closed {
                op: Op::Queue,
                path: self.dir.join(file.name()),
            })
        }
    }

    impl IoQueue for UringQueue {
        fn push_write(
            &mut self,
            token: u64,
            file: &FileRef,
            offset: u64,
            buf: IoBuf,
            durable: bool,
        ) -> Result<(), IoError> {
            check_write(file, offset, &buf)?;
            let fd = self.fd(file)?;
            let len = u32::try_from(buf.len()).map_err(|_| IoError::Unsupported {
                op: Op::Write,
                path: self.dir.join(file.name()),
                reason: format!("a queued write of {} bytes exceeds 4 GiB", buf.len()),
            })?;
            let slot = self.slot()?;
            let flags = if durable {
                rustix::io::ReadWriteFlags::DSYNC.bits() as _
            } else {
                0
            };
            let entry = opcode::Write::new(fd, buf.as_ptr(), len)
                .offset(offset)
                .rw_flags(flags)
                .build()
                .user_data(slot as u64);
            self.slots[slot] = Some(InFlight {
                token,
                file: file.clone(),
                buf: Some(buf),
                offset,
            });
            self.unsubmitted.push(entry);
            Ok(())
        }

        fn push_sync(&mut self, token: u64, file: &FileRef) -> Result<(), IoError> {
            let fd = self.fd(file)?;
            let slot = self.slot()?;
            // IO_DRAIN: the sync starts only after every earlier entry completed,
            // so it covers the writes queued before it.
            let entry = opcode::Fsync::new(fd)
                .flags(types::FsyncFlags::DATASYNC)
                .build()
                .flags(squeue::Flags::IO_DRAIN)
                .user_data(slot as u64);
            self.slots[slot] = Some(InFlight {
                token,
                file: file.clone(),
                buf: None,
                offset: 0,
            });
            self.unsubmitted.push(entry);
            Ok(())
        }

        fn submit(&mut self) -> Result<(), IoError> {
            self.flush()
        }

        fn wait(&mut self, min: usize, out: &mut Vec<Completion>) -> Result<(), IoError> {
            self.flush()?;
            let missing = min.saturating_sub(self.ready.len());
            self.reap_blocking(missing)?;
            out.extend(self.ready.drain(..));
            Ok(())
        }

        fn in_flight(&self) -> usize {
            self.slots_in_use() + self.ready.len()
        }
    }

    impl Drop for UringQueue {
        fn drop(&mut self) {
            // The kernel may still read from buffers in flight: wait for them.
            let waited = self.flush().and_then(|()| self.reap_blocking(usize::MAX));
            if waited.is_err() {
                // Cannot wait: leak what the kernel may still use rather than
                // free memory under it.
                for slot in self.slots.drain(..).flatten() {
                    std::mem::forget(slot);
                }
            }
        }
    }
}

#[cfg(not(all(target_os = "linux", feature = "io-uring")))]
mod ring {
    use std::path::Path;

    use crate::{IoError, IoQueue};

    pub(super) struct UringQueue;

    impl UringQueue {
        pub(super) fn new(_depth: u32, _dir: &Path) -> Result<Box<dyn IoQueue>, IoError> {
            // `probe` always fails on these builds, so storages fall back
            // before they could ask for a ring.
            Ok(Box::<crate::queue::InOrderQueue>::default())
        }
    }
}
