//! Appending: records into the shared frame, under the state lock, with
//! backpressure when the frame is full (`Options::frame_fill_bytes` for a
//! frame of several batches, the queue for one batch).

use std::ops::Range;
use std::time::Instant;

use wal_format::{
    FRAME_ALIGN, FRAME_HEADER_LEN, FrameBuf, FrameBuilder, RECORD_PREFIX_LEN, TIMESTAMP_LEN,
};

use super::Wal;
use crate::sync::Ordering;
use crate::{SyncPolicy, WalError};

/// Placeholder identity of a frame under construction: the writer binds the
/// real one when it knows which segment the frame lands in.
const UNBOUND_SEGMENT_ID: u64 = 1;

fn internal(e: &wal_format::EncodeError) -> WalError {
    // Lengths are checked before anything is pushed; reaching this is a bug.
    WalError::Internal {
        detail: format!("frame encoding failed after validation: {e}"),
    }
}

impl Wal {
    /// Appends one record; returns its LSN. Does not wait for the write.
    ///
    /// # Errors
    /// [`WalError::RecordTooLarge`], [`WalError::Poisoned`], [`WalError::Closed`].
    pub fn append(&self, record: &[u8]) -> Result<u64, WalError> {
        self.append_batch(&[record]).map(|r| r.start)
    }

    /// Appends records atomically: after any crash either all of them are in
    /// the log or none is. Returns their LSNs. Waits only while the pending
    /// frame cannot take the batch: it holds batches and the batch would take
    /// it past [`Options::frame_fill_bytes`](crate::Options::frame_fill_bytes).
    ///
    /// ```
    /// # let (wal, _) = wal_engine::Wal::open_with(wal_io::sim::SimDisk::new(1).storage(), Default::default())?;
    /// let lsns = wal.append_batch(&[b"debit", b"credit"])?;
    /// assert_eq!(lsns, 1..3);
    /// wal.wait_durable(lsns.end - 1)?;
    /// # Ok::<(), wal_engine::WalError>(())
    /// ```
    ///
    /// # Errors
    /// [`WalError::EmptyBatch`], [`WalError::RecordTooLarge`],
    /// [`WalError::BatchTooLarge`], [`WalError::Poisoned`], [`WalError::Closed`].
    pub fn append_batch(&self, records: &[&[u8]]) -> Result<Range<u64>, WalError> {
        self.append_records(records, true)
    }

    /// [`Wal::append_batch`]. `wake_owner` false is for a caller that waits
    /// for these records next ([`Shared::wait_durable`]): that wait writes
    /// them itself when no one is doing I/O, or wakes the owner when someone
    /// is, so waking the owner here would only cost a system call and a
    /// thread that wakes to find the work taken (W1: 4.3 context switches
    /// per commit against raft-engine's 2.1).
    pub(crate) fn append_records(
        &self,
        records: &[&[u8]],
        wake_owner: bool,
    ) -> Result<Range<u64>, WalError> {
        let options = &self.shared.options;
        if records.is_empty() {
            return Err(WalError::EmptyBatch);
        }
        let mut encoded = FRAME_HEADER_LEN + TIMESTAMP_LEN + FRAME_ALIGN;
        for r in records {
            if r.len() > options.record_bytes_max {
                return Err(WalError::RecordTooLarge {
                    len: r.len(),
                    max: options.record_bytes_max,
                });
            }
            encoded += RECORD_PREFIX_LEN + r.len();
        }
        if encoded > options.queue_bytes_max {
            return Err(WalError::BatchTooLarge {
                len: encoded,
                max: options.queue_bytes_max,
            });
        }
        let mut st = self.shared.state();
        loop {
            st.check_usable()?;
            // An empty queue takes any batch that fits it; a frame already
            // holding batches takes more only up to the fill size.
            if st.frame.is_none() || st.buf.len() + encoded <= options.frame_fill_bytes() {
                break;
            }
            // Backpressure: the frame is full until the owner takes it. A
            // failure or a close wakes this wait too.
            self.shared.work.notify_one();
            st.space_waiters += 1;
            st = st.wait(&self.shared.space, None);
            st.space_waiters -= 1;
        }
        let first = st.next_lsn;
        let state = &mut *st;
        let new_frame = state.frame.is_none();
        let before = state.buf.len();
        let builder = match &mut state.frame {
            Some(b) => b,
            None => {
                // The time is set when the frame is written.
                let b =
                    FrameBuilder::begin_timestamped(&mut state.buf, UNBOUND_SEGMENT_ID, first, 0)
                        .map_err(|e| internal(&e))?;
                state.pending_since = Some(Instant::now());
                state.frame.insert(b)
            }
        };
        for r in records {
            builder.push(&mut state.buf, r).map_err(|e| internal(&e))?;
        }
        let count = records.len() as u64;
        state.next_lsn += count;
        state.check_watermarks();
        state.appends += count;
        state.append_bytes += (state.buf.len() - before) as u64;
        self.shared
            .appended
            .store(state.next_lsn - 1, Ordering::Release);
        // Wake the owner only when this append gives it something new to
        // decide: a batch to take, or a size threshold crossed. Waking it on
        // every append costs a system call each and makes it spin.
        let threshold = match options.sync {
            SyncPolicy::Group {
                max_batch_bytes, ..
            } => Some(max_batch_bytes),
            SyncPolicy::Never => Some(options.frame_fill_bytes() / 2),
            SyncPolicy::Always | SyncPolicy::Interval(_) => None,
        };
        let crossed = threshold.is_some_and(|t| before < t && state.buf.len() >= t);
        // A frame a committer opened quietly is announced by the first
        // append nobody leads for: the committer may hold its commit a while.
        let announce = wake_owner && (new_frame || state.frame_unannounced);
        if new_frame || announce {
            state.frame_unannounced = !wake_owner;
        }
        drop(st);
        if announce || crossed {
            self.shared.work.notify_one();
        }
        Ok(first..first + count)
    }

    /// Appends records atomically, as [`Wal::append_batch`], for a caller
    /// that waits for them next: [`PendingCommit::wait`] writes and syncs
    /// them on the calling thread when no one else is doing I/O, so a
    /// thread committing alone costs one write and one sync and wakes no
    /// other thread. Use it where the append and the wait are apart (the
    /// append under a lock of the caller's, the wait after it); dropping
    /// the commit unwaited hands the records to the owner thread, as
    /// [`Wal::append_batch`] would have. Until it is waited for or dropped
    /// its records are not written (a tail does not see them), so keep the
    /// two close; appends by other threads meanwhile still wake the owner.
    ///
    /// ```
    /// # let (wal, _) = wal_engine::Wal::open_with(wal_io::sim::SimDisk::new(1).storage(), Default::default())?;
    /// let commit = wal.begin_commit(&[b"debit", b"credit"])?;
    /// assert_eq!(commit.lsns(), 1..3);
    /// let lsns = commit.wait()?; // durable from here on
    /// assert_eq!(wal.durable_lsn(), lsns.end - 1);
    /// # Ok::<(), wal_engine::WalError>(())
    /// ```
    ///
    /// # Errors
    /// As [`Wal::append_batch`].
    pub fn begin_commit(&self, records: &[&[u8]]) -> Result<PendingCommit<'_>, WalError> {
        let lsns = self.append_records(records, false)?;
        Ok(PendingCommit {
            wal: self,
            lsns,
            waited: false,
        })
    }

    /// Appends a record and, under [`SyncPolicy::Always`] or
    /// [`SyncPolicy::Group`], waits until it is durable; under the other
    /// policies returns once it is appended. Returns its LSN.
    ///
    /// # Errors
    /// As [`Wal::append`] and [`Wal::wait_durable`].
    pub fn commit(&self, record: &[u8]) -> Result<u64, WalError> {
        if !self.shared.options.sync.commit_waits() {
            return self.append(record);
        }
        Ok(self.begin_commit(&[record])?.wait()?.start)
    }

    /// Appends a record and waits until it is durable, whatever the policy:
    /// one commit can ask for more durability than the log's policy gives.
    ///
    /// # Errors
    /// As [`Wal::append`] and [`Wal::wait_durable`].
    pub fn commit_durable(&self, record: &[u8]) -> Result<u64, WalError> {
        Ok(self.begin_commit(&[record])?.wait()?.start)
    }
}

/// Records appended by [`Wal::begin_commit`], not yet waited for.
#[must_use = "wait for it, or drop it to hand the records to the owner thread"]
pub struct PendingCommit<'a> {
    wal: &'a Wal,
    lsns: Range<u64>,
    waited: bool,
}

impl PendingCommit<'_> {
    /// The records' LSNs.
    pub fn lsns(&self) -> Range<u64> {
        self.lsns.clone()
    }

    /// Waits until the records are durable, whatever the policy; returns
    /// their LSNs.
    ///
    /// # Errors
    /// As [`Wal::wait_durable`].
    pub fn wait(mut self) -> Result<Range<u64>, WalError> {
        self.waited = true;
        self.wal.shared.wait_durable(self.lsns.end - 1)?;
        Ok(self.lsns.clone())
    }
}

impl std::fmt::Debug for PendingCommit<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingCommit")
            .field("lsns", &self.lsns)
            .finish()
    }
}

impl Drop for PendingCommit<'_> {
    fn drop(&mut self) {
        // Nobody woke the owner for these records: unwaited, they would sit
        // in the queue until the next append or sync.
        if !self.waited {
            self.wal.shared.work.notify_one();
        }
    }
}
