//! Closing: the owner writes and syncs what is pending and stops, the
//! clean-close record is left, and whoever still waits is told.

use wal_format::CleanClose;

use super::Wal;
use crate::WalError;
use crate::segment;
use crate::sync::lock;

impl Wal {
    /// Writes and syncs everything appended, stops the owner thread and
    /// releases the directory lock (once every reader is dropped too).
    ///
    /// # Errors
    /// The error that poisoned the log, if one did.
    pub fn close(self) -> Result<(), WalError> {
        self.shutdown()
    }

    fn shutdown(&self) -> Result<(), WalError> {
        self.shared.state().closing = true;
        self.shared.work.notify_all();
        self.shared.space.notify_all();
        let owner = lock(&self.owner).take();
        let first_shutdown = owner.is_some();
        if let Some(owner) = owner {
            // The owner never panics on I/O errors; a panic is a bug to surface.
            owner
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
        }
        lock(&self.shared.spare).closing = true;
        self.shared.spare_cv.notify_all();
        if let Some(preparer) = lock(&self.preparer).take() {
            preparer
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
        }
        if first_shutdown {
            self.mark_clean_close();
        }
        let mut st = self.shared.state();
        let woken = self.shared.take_all_waiters(&mut st);
        let result = match &st.poisoned {
            Some(p) => Err(p.later()),
            None => Ok(()),
        };
        drop(st);
        woken.fire();
        result
    }

    /// Leaves the clean-close record (docs/FORMAT.md) if everything appended
    /// is durable and the log is not poisoned (a record kept since open,
    /// nothing having changed, stays as it is): the next open then verifies
    /// the last segment only up to where its frames end, and takes the
    /// record as evidence of what was durable. Nothing is written after it:
    /// every call fails once the log is closing. A failure costs only that
    /// speed-up, so it is logged, not returned.
    fn mark_clean_close(&self) {
        let shared = &*self.shared;
        let (io, mut woken, drained) = shared.io_drained();
        let mut st = shared.state();
        if let Err(failure) = drained {
            woken.extend(shared.poison(&mut st, failure));
        }
        let complete = st.poisoned.is_none() && st.frame.is_none() && st.durable + 1 == st.next_lsn;
        // Nothing changed since open: the record on disk is still the log's.
        let kept = io.clean_close_kept;
        let mark = CleanClose::new(
            shared.log_id,
            io.active.meta.first_lsn,
            io.active.meta.id,
            io.active.offset,
            st.next_lsn,
        );
        drop(st);
        drop(io);
        woken.fire();
        if kept || !complete {
            return;
        }
        let written = mark.map_err(|e| e.to_string()).and_then(|m| {
            segment::write_clean_close(&*shared.storage, &m).map_err(|e| e.to_string())
        });
        if let Err(error) = written {
            tracing::warn!(%error, "could not leave the clean-close record");
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
