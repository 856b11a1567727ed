//! Batched writes and syncs: the path the engine's group commit uses.

use std::collections::VecDeque;

use crate::{FileRef, IoBuf, IoError, Op};

/// The outcome of one queued operation.
#[derive(Debug)]
#[non_exhaustive]
pub struct Completion {
    /// The token the operation was queued with.
    pub token: u64,
    /// Whether it succeeded.
    pub result: Result<(), IoError>,
    /// The buffer of a write, handed back for reuse.
    pub buf: Option<IoBuf>,
}

/// A queue of writes and syncs, owned and driven by one thread.
///
/// Push operations, [`submit`](IoQueue::submit) them (one system call for the
/// whole batch where the backend can), then [`wait`](IoQueue::wait) for
/// completions. No thread is spent per request: completions are reaped by
/// the caller. Buffers are moved into the queue and come back in their
/// [`Completion`], so they cannot be touched while the kernel reads them.
///
/// Ordering: a sync runs after every write pushed before it on this queue
/// has completed, and covers them. Writes pushed without a sync between them
/// may complete in any order (the `io_uring` backend runs them concurrently).
///
/// Dropping a queue waits for everything in flight.
pub trait IoQueue: Send + std::fmt::Debug {
    /// Queues a write of `buf` at `offset` of `file`. With `durable`, the
    /// write is durable when it completes (`RWF_DSYNC`, or a data sync of its
    /// own where that flag is missing).
    ///
    /// # Errors
    /// [`IoError::Misaligned`] for an O_DIRECT file; [`IoError::Closed`]. The
    /// buffer is dropped with the error.
    fn push_write(
        &mut self,
        token: u64,
        file: &FileRef,
        offset: u64,
        buf: IoBuf,
        durable: bool,
    ) -> Result<(), IoError>;

    /// Queues a data sync of `file` that runs once every operation queued
    /// before it has completed.
    ///
    /// # Errors
    /// [`IoError::Closed`].
    fn push_sync(&mut self, token: u64, file: &FileRef) -> Result<(), IoError>;

    /// Hands every queued operation to the backend.
    ///
    /// # Errors
    /// [`IoError`] if the submission itself failed (operations that were
    /// handed over still complete and are reported by [`IoQueue::wait`]).
    fn submit(&mut self) -> Result<(), IoError>;

    /// Submits anything still queued, waits until at least `min` operations
    /// have completed (or none are left in flight), and appends every
    /// completion available to `out`.
    ///
    /// # Errors
    /// [`IoError`] if waiting itself failed.
    fn wait(&mut self, min: usize, out: &mut Vec<Completion>) -> Result<(), IoError>;

    /// Operations pushed and not yet handed back by [`IoQueue::wait`].
    fn in_flight(&self) -> usize;
}

/// An operation pushed on a queue and not yet run.
pub(crate) enum Pending {
    Write {
        token: u64,
        file: FileRef,
        offset: u64,
        buf: IoBuf,
        durable: bool,
    },
    Sync {
        token: u64,
        file: FileRef,
    },
}

/// A queue that performs operations one after another on the calling thread,
/// in the order they were pushed: the portable backend's queue, and the
/// `io_uring` backend's where the kernel lacks what its own queue needs.
#[derive(Default)]
pub(crate) struct InOrderQueue {
    pending: VecDeque<Pending>,
    done: VecDeque<Completion>,
    /// An operation failed: nothing queued after it runs.
    failed: bool,
}

impl std::fmt::Debug for InOrderQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InOrderQueue")
            .field("pending", &self.pending.len())
            .field("done", &self.done.len())
            .finish()
    }
}

impl Pending {
    /// A write of `buf` at `offset` of `file`, checked as every queue checks
    /// a write before accepting it.
    pub(crate) fn write(
        token: u64,
        file: &FileRef,
        offset: u64,
        buf: IoBuf,
        durable: bool,
    ) -> Result<Self, IoError> {
        check_write(file, offset, &buf)?;
        Ok(Pending::Write {
            token,
            file: file.clone(),
            offset,
            buf,
            durable,
        })
    }

    /// A data sync of `file`.
    pub(crate) fn sync(token: u64, file: &FileRef) -> Self {
        Pending::Sync {
            token,
            file: file.clone(),
        }
    }

    /// Runs the operation through [`StorageFile`](crate::StorageFile)
    /// methods. A durable write is a write followed by a data sync of that
    /// file.
    pub(crate) fn run(self) -> Completion {
        match self {
            Pending::Write {
                token,
                file,
                offset,
                buf,
                durable,
            } => {
                let mut result = file.write_at(offset, &[buf.as_slice()]);
                if durable && result.is_ok() {
                    // RWF_DSYNC: this write's range is durable, no more.
                    result = file.sync_range(offset, buf.len() as u64);
                }
                Completion {
                    token,
                    result,
                    buf: Some(buf),
                }
            }
            Pending::Sync { token, file } => Completion {
                token,
                result: file.sync_data(),
                buf: None,
            },
        }
    }

    pub(crate) fn is_sync(&self) -> bool {
        matches!(self, Pending::Sync { .. })
    }

    /// Completes the operation without running it, because one before it
    /// failed (`ECANCELED`): in a queue that runs operations one after
    /// another, a sync after a failed write must not run and report success
    /// for data that was never written, nor a later write land after a gap.
    pub(crate) fn cancel(self) -> Completion {
        let (token, file, op, buf) = match self {
            Pending::Write {
                token, file, buf, ..
            } => (token, file, Op::Write, Some(buf)),
            Pending::Sync { token, file } => (token, file, Op::SyncData, None),
        };
        Completion {
            token,
            result: Err(IoError::os(
                op,
                file.name(),
                std::io::Error::from_raw_os_error(rustix::io::Errno::CANCELED.raw_os_error()),
            )),
            buf,
        }
    }
}

impl InOrderQueue {
    /// Runs what is pending, in order; once one operation has failed,
    /// completes every later one as cancelled instead of running it.
    fn run(&mut self) {
        while let Some(op) = self.pending.pop_front() {
            let done = if self.failed { op.cancel() } else { op.run() };
            self.failed |= done.result.is_err();
            self.done.push_back(done);
        }
    }
}

/// The O_DIRECT checks every queue applies before accepting a write.
pub(crate) fn check_write(file: &FileRef, offset: u64, buf: &IoBuf) -> Result<(), IoError> {
    if file.options().direct {
        crate::check_direct(
            Op::Write,
            std::path::Path::new(file.name()),
            offset,
            buf.len(),
            buf.as_ptr() as usize,
        )?;
    }
    Ok(())
}

impl IoQueue for InOrderQueue {
    fn push_write(
        &mut self,
        token: u64,
        file: &FileRef,
        offset: u64,
        buf: IoBuf,
        durable: bool,
    ) -> Result<(), IoError> {
        self.pending
            .push_back(Pending::write(token, file, offset, buf, durable)?);
        Ok(())
    }

    fn push_sync(&mut self, token: u64, file: &FileRef) -> Result<(), IoError> {
        self.pending.push_back(Pending::sync(token, file));
        Ok(())
    }

    fn submit(&mut self) -> Result<(), IoError> {
        self.run();
        Ok(())
    }

    fn wait(&mut self, _min: usize, out: &mut Vec<Completion>) -> Result<(), IoError> {
        // Everything runs at submit time, so whatever was pushed is done now.
        self.run();
        out.extend(self.done.drain(..));
        Ok(())
    }

    fn in_flight(&self) -> usize {
        self.pending.len() + self.done.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FileOptions;
    use crate::sim::{Fault, FaultError, SimDisk};

    /// Once an operation fails, nothing queued after it runs: a sync after
    /// a failed write would report success for data never written.
    #[test]
    fn the_in_order_queue_runs_nothing_after_a_failed_operation() {
        let disk = SimDisk::new(6);
        let storage = disk.storage();
        let file = storage.create("f", FileOptions::BUFFERED).unwrap();
        let mut queue = InOrderQueue::default();
        disk.inject(Fault::once(
            Op::Write,
            disk.op_count(Op::Write) + 1,
            FaultError::Eio,
        ));
        let syncs = disk.op_count(Op::SyncData);
        let writes = disk.op_count(Op::Write);
        let mut buf = IoBuf::with_capacity(16);
        buf.extend_from_slice(b"lost");
        queue.push_write(1, &file, 0, buf, false).unwrap();
        queue.push_sync(2, &file).unwrap();
        let mut more = IoBuf::with_capacity(16);
        more.extend_from_slice(b"after");
        queue.push_write(3, &file, 8, more, true).unwrap();
        let mut done = Vec::new();
        queue.wait(3, &mut done).unwrap();
        assert_eq!(done.len(), 3);
        assert!(done.iter().all(|c| c.result.is_err()), "{done:?}");
        assert_eq!(
            disk.op_count(Op::SyncData),
            syncs,
            "a sync ran after the failure"
        );
        assert_eq!(
            disk.op_count(Op::Write),
            writes + 1,
            "a write ran after the failure"
        );
        assert_eq!(file.size().unwrap(), 0);
    }
}
