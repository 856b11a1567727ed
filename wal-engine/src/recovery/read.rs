//! Reading one segment: its bytes, part by part, into reusable buffers, and
//! the scan of its frames, whose record frames go out as each part is done.

use bytes::{Bytes, BytesMut};
use wal_format::{
    CleanClose, DecodeError, FRAME_ALIGN, FRAME_HEADER_LEN, Frame, FrameExpect, FrameKind,
    PADDED_BLOCK_BYTES, ScanSummary, SegmentEnd, SegmentHeader, SegmentScanner, TERMINATOR_LEN,
    decode_frame, peek_frame_segment_id,
};
use wal_io::{FileOptions, FileRef, IoError, Storage};

use crate::WalError;
use crate::segment::SegMeta;

/// Bytes read per call while loading a segment.
const READ_CHUNK_BYTES: usize = 4 << 20;

/// Bytes of a segment read and scanned at a time, at most: the frames of
/// one part are handed out while the next is read. As large as the frames
/// batches share; a part that ends inside a frame is followed by one sized
/// by that frame (`next_part`), so only a single batch larger than this
/// makes a larger part.
const PART_BYTES_MAX: usize = crate::FRAME_FILL_BYTES_MAX;

/// Bytes of a segment read first, at most: see `scan_parts`.
const FIRST_PART_BYTES_MAX: usize = 1 << 20;

/// Bytes a fresh part buffer of a MiB or more holds, at least: a part of
/// `PART_BYTES_MAX` and the blocks `next_part` adds around a frame that
/// ends past it. So the first part's buffer, and any other, serves every
/// later part of usual size: three buffers go round instead of five (two
/// of them used once), each mapped in and out once.
const PART_CAPACITY_BYTES_MIN: usize = PART_BYTES_MAX + 4 * PADDED_BLOCK_BYTES;

/// A scanned segment file and what its scan found.
pub(super) struct Scanned {
    pub(super) name: String,
    pub(super) first_lsn: u64,
    pub(super) file: FileRef,
    pub(super) size: u64,
    pub(super) outcome: Outcome,
}

pub(super) enum Outcome {
    BadHeader {
        error: DecodeError,
        /// No valid frame of any identity starting at or after the name's
        /// LSN is anywhere in the file: it never held a record.
        never_held_records: bool,
    },
    Scanned {
        header: SegmentHeader,
        summary: ScanSummary,
        index: Vec<(u64, u64)>,
    },
}

/// What a scan hands the deciding thread about one segment, in order.
pub(super) enum Part {
    /// The segment's header is valid: its frames follow.
    Head(SegmentHeader),
    /// Record frames, in order, for a replay that wants this segment's
    /// records, and the bytes they are slices of (to reuse once they are
    /// handed out).
    Frames(Vec<Frame>, Bytes),
    /// The scan is done.
    Done(Result<Box<Scanned>, WalError>),
}

/// Buffers of scanned parts no frame uses any more, for the next part to be
/// read into instead of faulting in new pages.
#[derive(Default)]
pub(super) struct Pool(std::sync::Mutex<Vec<BytesMut>>);

impl Pool {
    fn take(&self, len: usize) -> Option<BytesMut> {
        let mut free = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // The smallest that fits, so a larger part finds a larger buffer.
        let (i, _) = free
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= len)
            .min_by_key(|(_, b)| b.capacity())?;
        Some(free.swap_remove(i))
    }

    /// Any buffer the pool holds (tests).
    #[cfg(test)]
    pub(super) fn take_any(&self) -> Option<BytesMut> {
        self.take(0)
    }

    pub(super) fn give(&self, data: Bytes) {
        // Only if nothing else holds the bytes: a consumer may keep records.
        if let Ok(mem) = data.try_into_mut() {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(mem);
        }
    }

    /// Reads `len` bytes of `file` from `offset` into a buffer of the pool,
    /// or a new one.
    fn read(&self, file: &FileRef, offset: u64, len: usize) -> Result<Bytes, IoError> {
        // A fresh buffer's pages are mapped in at once (`prefault`), not
        // faulted in one by one by the read; `resize` of a reused one
        // writes only the bytes it adds.
        let mut buf = self.take(len).unwrap_or_else(|| page_aligned_zeroed(len));
        buf.resize(len, 0);
        for (i, chunk) in buf.chunks_mut(READ_CHUNK_BYTES).enumerate() {
            file.read_at(offset + (i * READ_CHUNK_BYTES) as u64, chunk)?;
        }
        Ok(buf.freeze())
    }
}

/// A zeroed buffer of `len` bytes that starts on a page boundary.
///
/// Why: the kernel copies a read out of the page cache with `rep movsb`,
/// which on this project's test machine (AMD EPYC) ran about four times
/// slower into a buffer starting 16 bytes past a page boundary, which is
/// where the allocator puts a large allocation, than into one that starts
/// on the boundary. A replay from a warm cache took 44 ms instead of 29.
///
/// A buffer of 1 MiB or more holds at least a usual part
/// (`PART_CAPACITY_BYTES_MIN`), so that later parts, usual or a little
/// longer than the one it was made for (a part grows to hold a frame that
/// runs past it), reuse it. It starts on a 2 MiB boundary and its capacity
/// is whole 2 MiB, huge pages where the system gives them on request (the
/// size on x86-64 and on arm64 with 4 KiB pages; elsewhere this is only
/// an alignment): the huge pages `len` touches are mapped in at once, the
/// rest when a later part writes them, and each is one fault and one entry
/// to unmap instead of 512. Resident: `len` rounded up to 2 MiB (to 4 KiB
/// where huge pages are off). A smaller buffer is rounded up to whole pages
/// only: the store's replay keeps slices of a part in its memtable, which
/// keep the whole buffer alive.
fn page_aligned_zeroed(len: usize) -> BytesMut {
    const PAGE_BYTES: usize = 4096;
    const HUGE_PAGE_BYTES: usize = 2 << 20;
    let (align, capacity) = if len >= FIRST_PART_BYTES_MAX {
        let capacity = len
            .max(PART_CAPACITY_BYTES_MIN)
            .next_multiple_of(HUGE_PAGE_BYTES);
        (HUGE_PAGE_BYTES, capacity)
    } else {
        (PAGE_BYTES, len.next_multiple_of(PAGE_BYTES))
    };
    // Fresh memory from the allocator's own mapping is mapped in only where
    // written, so the slack skipped to reach the boundary costs address
    // space only. (Memory the allocator reuses from its heap is zeroed by
    // it, slack included: a second recovery in one process may pay that.)
    let mut buf = BytesMut::zeroed(capacity.saturating_add(align));
    let skip = buf.as_ptr().align_offset(align).min(align);
    bytes::Buf::advance(&mut buf, skip);
    buf.truncate(capacity);
    // Without huge pages, only the 4 KiB pages the part needs.
    let huge = align == HUGE_PAGE_BYTES && wal_io::advise_huge_pages(&mut buf);
    let page = if huge { HUGE_PAGE_BYTES } else { PAGE_BYTES };
    let touched = len.next_multiple_of(page).min(capacity);
    wal_io::prefault(buf.get_mut(..touched).unwrap_or_default());
    buf.truncate(len);
    debug_assert_eq!(buf.as_ptr().align_offset(align), 0);
    buf
}

/// Whether any valid frame (of whatever identity: the header that would
/// name it is unreadable) with an LSN at or past `first_lsn` is in `data`.
/// Frames are 8-aligned from the end of the header, and an identity is never
/// zero, so only candidates with a non-zero identity field are decoded.
fn holds_frames(data: &Bytes, first_lsn: u64) -> bool {
    (SegmentHeader::LEN..data.len().saturating_sub(FRAME_HEADER_LEN))
        .step_by(FRAME_ALIGN)
        .any(|pos| {
            let id = peek_frame_segment_id(data, pos).unwrap_or(0);
            id != 0
                && decode_frame(
                    data,
                    pos,
                    FrameExpect {
                        segment_id: id,
                        first_lsn: None,
                    },
                )
                .is_ok_and(|f| f.first_lsn() >= first_lsn)
        })
}

/// Whether a scan of only the bytes a clean-close record covers confirms it:
/// the same segment, frames to exactly its end, nothing but a zero header
/// (or the end of the file) after them, and the same next LSN.
fn confirms(outcome: &Outcome, mark: &CleanClose) -> bool {
    match outcome {
        Outcome::Scanned {
            header, summary, ..
        } => {
            header.log_id() == mark.log_id
                && header.segment_id() == mark.segment_id
                && summary.end == SegmentEnd::Clean
                && summary.valid_end == mark.valid_end
                && summary.next_lsn == mark.next_lsn
        }
        Outcome::BadHeader { .. } => false,
    }
}

/// What every scan of one recovery shares.
pub(super) struct ScanJob<'a> {
    pub(super) storage: &'a dyn Storage,
    /// The clean-close record, only if it names the last segment: it is
    /// what lets that segment be read only up to where its frames end.
    pub(super) clean_close: Option<CleanClose>,
    /// The first LSN of the last segment, the only one that can hold writes
    /// no sync covered (every other was sealed and synced before the next
    /// one was created).
    pub(super) last: Option<u64>,
    pub(super) pool: Pool,
}

/// Scans one segment. With a clean-close record for it, reads only up to
/// the record's end (and a frame header's worth after it) first, and the
/// whole file only if that scan does not confirm the record. With `keep`,
/// hands its record frames to `emit` as each part is scanned.
pub(super) fn scan(
    job: &ScanJob<'_>,
    name: String,
    first_lsn: u64,
    keep: bool,
    emit: &mut dyn FnMut(Part),
) -> Result<Scanned, WalError> {
    let file = job.storage.open(&name, FileOptions::BUFFERED)?;
    let mut confirmed = None;
    let mut emitted = 0;
    let mark = job.clean_close.filter(|m| m.segment_first_lsn == first_lsn);
    // A writer that did not close cleanly may have had a sync fail: Linux
    // then keeps the pages it could not write as clean, and reading them
    // would recover records the disk never got (and that no later sync
    // writes). Reading the last segment from the device instead sees what
    // a power loss would leave. A clean close was written only with every
    // record durable and no failure, so it needs none of this.
    if job.last == Some(first_lsn) && mark.is_none() {
        file.drop_cache()?;
    }
    // After the drop: the length a lost change set goes with it.
    let mut size = file.size()?;
    if let Some(mark) = mark {
        let covered = mark.valid_end.saturating_add(TERMINATOR_LEN as u64);
        let outcome = scan_parts(
            job,
            &file,
            size.min(covered),
            first_lsn,
            keep,
            &mut emitted,
            emit,
        )?;
        if confirms(&outcome, &mark) {
            confirmed = Some(outcome);
        } else {
            tracing::warn!(segment = %name, "the clean-close record does not match the segment; reading it whole");
            file.drop_cache()?;
            size = file.size()?;
        }
    }
    let outcome = match confirmed {
        Some(outcome) => outcome,
        None => scan_parts(job, &file, size, first_lsn, keep, &mut emitted, emit)?,
    };
    Ok(Scanned {
        name,
        first_lsn,
        file,
        size,
        outcome,
    })
}

/// A segment of `size` bytes is read in about eight parts of whole 4 KiB
/// blocks (small segments, as in the crash tests, in several parts too).
fn part_bytes(size: u64) -> usize {
    let block = PADDED_BLOCK_BYTES;
    usize::try_from(size / 8)
        .unwrap_or(PART_BYTES_MAX)
        .clamp(block, PART_BYTES_MAX)
        .next_multiple_of(block)
}

/// Reads the first `limit` bytes of `file` part by part, each resuming the
/// scan where the last one stopped (`SegmentScanner::resume`: the same
/// frames and verdict as one scan of all of them). Record frames go to
/// `emit` if `keep`, except the first `emitted` ones, which an earlier scan
/// of the same file handed out already; `emitted` counts them.
fn scan_parts(
    job: &ScanJob<'_>,
    file: &FileRef,
    limit: u64,
    first_lsn: u64,
    keep: bool,
    emitted: &mut u64,
    emit: &mut dyn FnMut(Part),
) -> Result<Outcome, WalError> {
    let limit = usize::try_from(limit).map_err(|_| IoError::Unsupported {
        op: wal_io::Op::Read,
        path: file.name().into(),
        reason: format!("a segment of {limit} bytes does not fit in memory"),
    })?;
    let part_len = part_bytes(file.size()?);
    // A short first part: if the segment's frames are large, its scan stops
    // inside the first one, and every later part is sized by its frame
    // (`next_part`); a first part of `part_len` would be read twice.
    let mut end = part_len.min(FIRST_PART_BYTES_MAX).min(limit);
    let mut part = job.pool.read(file, 0, end)?;
    let mut scanner = match SegmentScanner::new(part.clone()) {
        Ok(scanner) if end < limit => scanner.more_follows(),
        Ok(scanner) => scanner,
        Err(error) => {
            job.pool.give(part);
            return bad_header(job, file, limit, first_lsn, error);
        }
    };
    let header = *scanner.header();
    if keep && *emitted == 0 {
        emit(Part::Head(header));
    }
    let mut index = Vec::new();
    let mut seen = 0u64;
    let mut last_stop = None;
    loop {
        let frames = part_frames(&mut scanner, &mut index, keep, &mut seen, *emitted);
        // The last part's scan judges the end; a part with more to follow
        // ends the scan only with a seal.
        let done = scanner.end().is_some();
        debug_assert!(done || end < limit, "the last part's scan always ends");
        let point = scanner.point();
        let wanted_end = scanner.wanted_end();
        // The scanner holds the part too: let go of it first.
        let summary = if done {
            Some(scanner.finish())
        } else {
            drop(scanner);
            None
        };
        // Nothing but the frames holds the part now: the deciding thread
        // gives it back once it is done with them.
        if frames.is_empty() {
            job.pool.give(part);
        } else {
            *emitted += frames.len() as u64;
            emit(Part::Frames(frames, part));
        }
        if let Some(summary) = summary {
            return Ok(Outcome::Scanned {
                header,
                summary,
                index,
            });
        }
        let stop = point.offset();
        let (base, start, next_end) = next_part(stop, last_stop, wanted_end, end, part_len, limit);
        end = next_end;
        last_stop = Some(stop);
        part = job.pool.read(file, base, end - start)?;
        // The point came from a scan of the bytes `base` is in: a resume
        // that does not take it is a bug of this loop, not damage.
        scanner =
            SegmentScanner::resume(part.clone(), base, &point).map_err(|e| WalError::Internal {
                detail: format!(
                    "recovery could not resume the scan of {} at offset {base}: {e}",
                    file.name()
                ),
            })?;
        if end < limit {
            scanner = scanner.more_follows();
        }
    }
}

/// The part to read after a scan that stopped at offset `stop`, as its
/// offset in the segment and its range of the first `limit` bytes. It
/// starts at the block the scan stopped in (reads on block boundaries; the
/// scanner counts blocks from the segment's start whatever the base).
///
/// - The last part did not get the scan past that point (`last_stop`) and
///   held every byte the frame there says it needs (`read_end`, where the
///   last part ended, reaches `wanted_end`): the whole rest, so the verdict
///   on the end sees every byte after the break. A part that ended inside
///   the frame's header learned its length only on this second look, and
///   is sized by the frame as below instead of reading the whole rest.
/// - The last part ended inside a frame of at least a quarter of
///   `part_len`, which ends at `wanted_end`: up to that end and two blocks
///   more, which hold the next frame's header (after any padding), so the
///   part after this one is sized by that frame in turn. Reading a fixed
///   length instead would end inside the next large frame as well, and
///   read its bytes twice: 1.2 times the log for frames of 4 MiB.
/// - Otherwise `part_len` bytes, or to `wanted_end` if that is further.
fn next_part(
    stop: u64,
    last_stop: Option<u64>,
    wanted_end: Option<u64>,
    read_end: usize,
    part_len: usize,
    limit: usize,
) -> (u64, usize, usize) {
    let block = PADDED_BLOCK_BYTES;
    let base = stop - stop % block as u64;
    let start = usize::try_from(base).unwrap_or(limit).min(limit);
    let wanted = wanted_end.map_or(0, |w| usize::try_from(w).unwrap_or(limit));
    let frame = wanted.saturating_sub(usize::try_from(stop).unwrap_or(limit));
    // Terminates: each part either moves the scan on, or ends past the last
    // one (`wanted` beyond `read_end`), or is the whole rest.
    let needs_more = wanted > read_end && read_end < limit;
    let end = if last_stop == Some(stop) && !needs_more {
        limit
    } else if frame >= part_len / 4 {
        wanted.saturating_add(2 * block)
    } else {
        start.saturating_add(part_len).max(wanted)
    };
    (base, start, end.min(limit))
}

/// The frames the scanner finds in its part: every one goes into the sparse
/// `index`; record frames, if `keep`, into the result, except the first
/// `emitted` of the segment (handed out already); `seen` counts record
/// frames over all parts.
fn part_frames(
    scanner: &mut SegmentScanner,
    index: &mut Vec<(u64, u64)>,
    keep: bool,
    seen: &mut u64,
    emitted: u64,
) -> Vec<Frame> {
    let mut frames = Vec::new();
    for frame in scanner.by_ref() {
        SegMeta::sparse(index, frame.first_lsn(), frame.offset());
        if keep && frame.kind() != FrameKind::Seal {
            *seen += 1;
            if *seen > emitted {
                frames.push(frame);
            }
        }
    }
    frames
}

/// The outcome for a segment whose header does not decode.
fn bad_header(
    job: &ScanJob<'_>,
    file: &FileRef,
    limit: usize,
    first_lsn: u64,
    error: DecodeError,
) -> Result<Outcome, WalError> {
    // Whether it ever held a record takes the whole file to tell.
    let data = job.pool.read(file, 0, limit)?;
    let never_held_records = !holds_frames(&data, first_lsn);
    job.pool.give(data);
    Ok(Outcome::BadHeader {
        error,
        never_held_records,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_buffers_start_on_a_page_and_serve_slightly_longer_parts() {
        let len = (1 << 20) + 5000;
        let buf = page_aligned_zeroed(len);
        assert_eq!(buf.len(), len);
        assert_eq!(buf.as_ptr().align_offset(4096), 0);
        assert!(buf.iter().all(|&b| b == 0));
        let at = buf.as_ptr();
        let pool = Pool::default();
        pool.give(buf.freeze());
        // A part grown to hold a frame that ran past the last one.
        let again = pool.take(len + 8192).expect("the buffer is reused");
        assert_eq!(again.as_ptr(), at);
        assert!(pool.take(1).is_none());
        // The first part's buffer serves every usual part after it, and
        // starts on a huge page.
        let first = page_aligned_zeroed(FIRST_PART_BYTES_MAX);
        assert_eq!(first.as_ptr().align_offset(2 << 20), 0);
        let at = first.as_ptr();
        pool.give(first.freeze());
        let usual = pool.take(PART_CAPACITY_BYTES_MIN).expect("reused");
        assert_eq!(usual.as_ptr(), at);
        // A small part's buffer is only rounded to whole pages.
        let small = page_aligned_zeroed(5000);
        assert_eq!(small.as_ptr().align_offset(4096), 0);
        assert!(small.capacity() >= 5000 && small.capacity() < 5000 + 2 * 4096);
    }

    #[test]
    fn a_part_cut_inside_a_large_frames_header_is_followed_by_the_frame_not_the_rest() {
        const MIB: usize = 1 << 20;
        let (part, limit) = (2 * MIB, 64 * MIB);
        // The last part ended 20 bytes into a frame's header at 10 MiB - 20:
        // the scan knew only that the header needs 48 bytes.
        let stop = (10 * MIB - 20) as u64;
        let (base, start, end) = next_part(stop, None, Some(stop + 48), 10 * MIB, part, limit);
        assert_eq!((base, start), (stop - stop % 4096, (10 * MIB - 4096)));
        assert_eq!(end, start + part);
        // That part holds the header: the frame is 5 MiB, and the scan
        // stopped at the same point. The next part holds the frame.
        let wanted = 15 * MIB - 20;
        let (_, _, next) = next_part(stop, Some(stop), Some(wanted as u64), end, part, limit);
        assert_eq!(next, wanted + 2 * 4096);
        // Stopped again with every byte the frame wanted in hand: damage,
        // and the verdict needs the whole rest.
        let (_, _, rest) = next_part(stop, Some(stop), Some(wanted as u64), next, part, limit);
        assert_eq!(rest, limit);
        let (_, _, rest) = next_part(stop, Some(stop), None, next, part, limit);
        assert_eq!(rest, limit);
    }

    #[test]
    fn the_smallest_buffer_that_fits_is_taken() {
        let pool = Pool::default();
        for len in [7 << 20, 1 << 20, 5 << 20] {
            pool.give(page_aligned_zeroed(len).freeze());
        }
        // Each holds a usual part or its length, in whole 2 MiB, and what
        // is left of the slack skipped to reach the boundary (at most 2 MiB).
        for mib in [4, 6, 8] {
            let capacity = pool.take(1 << 19).unwrap().capacity();
            assert!(
                (mib << 20..=(mib + 2) << 20).contains(&capacity),
                "{capacity}"
            );
        }
    }
}
