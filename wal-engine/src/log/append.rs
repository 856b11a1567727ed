//! Appending: records into the shared frame, under the state lock, with
//! backpressure when the queue is full.

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
    /// the log or none is. Returns their LSNs. Waits only while the queue is
    /// full.
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
            if st.frame.is_none() || st.buf.len() + encoded <= options.queue_bytes_max {
                break;
            }
            // Backpressure: the queue is full until the owner takes it. A
            // failure or a close wakes this wait too.
            self.shared.work.notify_one();
            st = st.wait(&self.shared.space, None);
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
            SyncPolicy::Never => Some(options.queue_bytes_max / 2),
            SyncPolicy::Always | SyncPolicy::Interval(_) => None,
        };
        let crossed = threshold.is_some_and(|t| before < t && state.buf.len() >= t);
        drop(st);
        if new_frame || crossed {
            self.shared.work.notify_one();
        }
        Ok(first..first + count)
    }

    /// Appends a record and, under [`SyncPolicy::Always`] or
    /// [`SyncPolicy::Group`], waits until it is durable; under the other
    /// policies returns once it is appended. Returns its LSN.
    ///
    /// # Errors
    /// As [`Wal::append`] and [`Wal::wait_durable`].
    pub fn commit(&self, record: &[u8]) -> Result<u64, WalError> {
        let lsn = self.append(record)?;
        if self.shared.options.sync.commit_waits() {
            self.shared.wait_durable(lsn)?;
        }
        Ok(lsn)
    }

    /// Appends a record and waits until it is durable, whatever the policy:
    /// one commit can ask for more durability than the log's policy gives.
    ///
    /// # Errors
    /// As [`Wal::append`] and [`Wal::wait_durable`].
    pub fn commit_durable(&self, record: &[u8]) -> Result<u64, WalError> {
        let lsn = self.append(record)?;
        self.shared.wait_durable(lsn)?;
        Ok(lsn)
    }
}
