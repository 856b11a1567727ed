//! Reading durable records back, and tailing the log.

use std::time::Duration;

use bytes::Bytes;
use wal_format::{
    DecodeError, FRAME_HEADER_LEN, FrameExpect, FrameKind, IntoRecords, PADDED_BLOCK_BYTES, Record,
    decode_frame,
};

use crate::WalError;
use crate::log::Shared;
use crate::segment::SegMeta;
use crate::sync::Arc;

/// Bytes read per call.
const CHUNK_BYTES: usize = 1 << 20;

/// Iterates durable records in LSN order from a starting LSN, with `pread`
/// (never `mmap`: an I/O error must be an error, not a `SIGBUS`). It sees
/// records as they become durable, so it can also tail the log.
///
/// Records arrive with their LSN; LSNs are dense, except after a recovery
/// in [`RecoveryMode::SkipCorrupted`](crate::RecoveryMode::SkipCorrupted),
/// which may leave gaps the reader steps over. A reader that handed out
/// records a later [`Wal::truncate_back`](crate::Wal::truncate_back) cut
/// fails with [`WalError::Truncated`] rather than going on in the new
/// history; one whose next record a truncation took away waits for the new
/// one.
pub struct Reader {
    shared: Arc<Shared>,
    next: u64,
    seg: Option<Arc<SegMeta>>,
    chunk: Bytes,
    chunk_at: u64,
    pos: u64,
    /// The records of the frame being read, with those before `next` and
    /// past the segment's end or the durable LSN filtered on the way out.
    pending: Option<IntoRecords>,
    /// Where `pending` stops: records from here on are not handed out.
    pending_end: u64,
    /// The `truncate_back` generation this reader last checked.
    cuts_seen: u64,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader").field("next", &self.next).finish()
    }
}

impl Reader {
    pub(crate) fn new(shared: Arc<Shared>, next: u64) -> Self {
        Reader {
            next,
            seg: None,
            chunk: Bytes::new(),
            chunk_at: 0,
            pos: 0,
            pending: None,
            pending_end: 0,
            cuts_seen: shared.cut_generation(),
            shared,
        }
    }

    /// Fails if a `truncate_back` since the last call cut records this
    /// reader handed out: going on would mix two histories.
    fn check_cuts(&mut self) -> Result<(), WalError> {
        let (now, kept) = self.shared.kept_since(self.cuts_seen);
        match kept {
            Some(kept) if self.next > kept + 1 => Err(WalError::Truncated {
                lsn: self.next - 1,
                kept,
            }),
            _ => {
                self.cuts_seen = now;
                Ok(())
            }
        }
    }

    /// The LSN the reader returns next.
    pub fn next_lsn(&self) -> u64 {
        self.next
    }

    /// The next record, waiting for it to become durable if it is not yet:
    /// the tailing form of [`Iterator::next`]. Returns `Ok(None)` if `timeout`
    /// passes first. Waiting never forces a sync.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let (wal, _) = wal_engine::Wal::open_with(wal_io::sim::SimDisk::new(1).storage(), Default::default())?;
    /// let mut tail = wal.reader(1)?;
    /// assert!(tail.next_wait(Some(Duration::from_millis(1)))?.is_none()); // nothing yet
    /// wal.commit(b"first")?;
    /// let record = tail.next_wait(None)?.unwrap();
    /// assert_eq!((record.lsn, &record.data[..]), (1, &b"first"[..]));
    /// # Ok::<(), wal_engine::WalError>(())
    /// ```
    ///
    /// # Errors
    /// As [`Iterator::next`], and [`WalError::Closed`] if the log closes.
    pub fn next_wait(&mut self, timeout: Option<Duration>) -> Result<Option<Record>, WalError> {
        loop {
            if let Some(record) = self.next().transpose()? {
                return Ok(Some(record));
            }
            if !self.shared.wait_passive(self.next, timeout)? {
                return Ok(None);
            }
        }
    }

    /// The next record, awaiting it if it is not durable yet: the async form
    /// of [`Reader::next_wait`]. The future is woken by the log's owner
    /// thread, so any executor can drive it; waiting never forces a sync.
    ///
    /// # Errors
    /// As [`Iterator::next`], and [`WalError::Closed`] if the log closes.
    pub async fn next_async(&mut self) -> Result<Record, WalError> {
        loop {
            if let Some(record) = self.next().transpose()? {
                return Ok(record);
            }
            crate::DurableFuture::passive(self.shared.clone(), self.next).await?;
        }
    }

    /// Finds the segment holding `self.next`, stepping over gaps.
    fn locate(&mut self) -> Result<bool, WalError> {
        let segs = self.shared.segments_read();
        let first = segs.first().map_or(1, |s| s.first_lsn);
        if self.next < first {
            return Err(WalError::Purged {
                lsn: self.next,
                first,
            });
        }
        let i = segs
            .partition_point(|s| s.first_lsn <= self.next)
            .saturating_sub(1);
        let Some(mut seg) = segs.get(i).cloned() else {
            return Ok(false);
        };
        if self.next >= seg.end_lsn() {
            match segs.get(i + 1) {
                Some(after) => {
                    self.next = after.first_lsn;
                    seg = after.clone();
                }
                None => return Ok(false),
            }
        }
        drop(segs);
        self.pos = seg.seek(self.next);
        self.seg = Some(seg);
        self.chunk = Bytes::new();
        Ok(true)
    }

    /// Reads `len` bytes (or to the end of the file) from `pos` into the chunk.
    fn load(&mut self, seg: &SegMeta, len: usize) -> Result<(), WalError> {
        let size = seg.file.size()?;
        let want = usize::try_from(size.saturating_sub(self.pos))
            .unwrap_or(usize::MAX)
            .min(len);
        let mut buf = vec![0u8; want];
        seg.file.read_at(self.pos, &mut buf)?;
        self.chunk = Bytes::from(buf);
        self.chunk_at = self.pos;
        Ok(())
    }

    /// Decodes the frame at `pos` into `pending`; returns false at the end
    /// of the segment's readable frames.
    fn read_frame(&mut self, durable: u64) -> Result<bool, WalError> {
        let Some(seg) = self.seg.clone() else {
            return Ok(false);
        };
        let expect = FrameExpect {
            segment_id: seg.id,
            first_lsn: None,
        };
        // Bytes read fresh from the file at `pos` in this call, if any: a
        // cached chunk may predate the frame's write, or be too short for it.
        let mut fresh: Option<usize> = None;
        let frame = loop {
            let inside =
                self.pos >= self.chunk_at && self.pos < self.chunk_at + self.chunk.len() as u64;
            let at = usize::try_from(self.pos - self.chunk_at.min(self.pos)).unwrap_or(usize::MAX);
            let attempt = if inside {
                decode_frame(&self.chunk, at, expect)
            } else {
                Err(DecodeError::Incomplete {
                    offset: 0,
                    what: wal_format::Structure::FrameHeader,
                    needed: FRAME_HEADER_LEN as u64,
                    available: 0,
                })
            };
            let needed = match &attempt {
                Ok(_) => 0,
                Err(DecodeError::Incomplete { needed, .. }) => {
                    usize::try_from(*needed).unwrap_or(usize::MAX)
                }
                Err(_) => 0,
            };
            match attempt {
                Ok(frame) => break frame,
                // Padding in a padded segment (docs/FORMAT.md). Inside a
                // block it was written with the frame before it, so it cannot
                // be a stale read; on a block boundary a later write may have
                // landed since the chunk was read, so only a fresh read
                // counts.
                Err(DecodeError::Zeroed { .. })
                    if seg.padded
                        && (fresh.is_some()
                            || !self.pos.is_multiple_of(PADDED_BLOCK_BYTES as u64)) =>
                {
                    self.pos = (self.pos + FRAME_HEADER_LEN as u64)
                        .next_multiple_of(PADDED_BLOCK_BYTES as u64);
                    fresh = None;
                }
                // Read again, unless a fresh read of at least this much
                // already failed: then the bytes really are bad.
                Err(_) if fresh.is_none_or(|prev| needed > prev) => {
                    let want = needed.max(CHUNK_BYTES);
                    self.load(&seg, want)?;
                    fresh = Some(want);
                }
                // Purged while this reader was in it; its file may already
                // hold a new incarnation's frames.
                Err(_) if seg.end_lsn() <= seg.first_lsn => {
                    let first = self
                        .shared
                        .segments_read()
                        .first()
                        .map_or(self.next, |s| s.first_lsn);
                    return Err(WalError::Purged {
                        lsn: self.next,
                        first,
                    });
                }
                Err(e) => {
                    return Err(WalError::Corrupt {
                        segment: seg.name.clone(),
                        offset: self.pos,
                        detail: format!("a durable frame does not decode: {e}"),
                        cause: Some(e),
                    });
                }
            }
        };
        self.pos += frame.encoded_len() as u64;
        if frame.kind() == FrameKind::Seal {
            return Ok(false);
        }
        self.pending_end = seg.end_lsn().min(durable.saturating_add(1));
        self.pending = Some(frame.into_iter());
        Ok(true)
    }
}

impl Iterator for Reader {
    type Item = Result<Record, WalError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Err(e) = self.check_cuts() {
            return Some(Err(e));
        }
        loop {
            if let Some(records) = &mut self.pending {
                // The segment's end is looked at again for every record: a
                // `truncate_back` may have cut the frame since it was read,
                // and its records past the cut are no longer the log's.
                let end = self
                    .seg
                    .as_ref()
                    .map_or(self.pending_end, |s| s.end_lsn().min(self.pending_end));
                match records.find(|r| r.lsn >= self.next) {
                    Some(record) if record.lsn < end => {
                        self.next = record.lsn + 1;
                        return Some(Ok(record));
                    }
                    _ => self.pending = None,
                }
            }
            let durable = self.shared.durable_lsn();
            if self.next > durable {
                return None;
            }
            let in_segment = self.seg.as_ref().is_some_and(|s| self.next < s.end_lsn());
            if !in_segment {
                match self.locate() {
                    Ok(true) => {}
                    Ok(false) => return None,
                    Err(e) => return Some(Err(e)),
                }
            }
            match self.read_frame(durable) {
                Ok(true) => {}
                // End of this segment's frames: on to the one holding `next`.
                Ok(false) => {
                    let stuck = self.seg.as_ref().map(|s| s.first_lsn);
                    self.seg = None;
                    match self.locate() {
                        Ok(true) if self.seg.as_ref().map(|s| s.first_lsn) != stuck => {}
                        Ok(_) => return None,
                        Err(e) => return Some(Err(e)),
                    }
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }
}
