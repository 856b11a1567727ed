//! Recovery: reading every segment back, deciding by the recovery mode what
//! the log is, and saying what was found.

#[cfg(not(loom))]
use std::collections::{BTreeMap, VecDeque};
use std::ops::ControlFlow;

use bytes::{Bytes, BytesMut};
use wal_format::{
    CleanClose, DecodeError, FRAME_ALIGN, FRAME_HEADER_LEN, Frame, FrameExpect, FrameKind, Record,
    SegmentEnd, SegmentHeader, SegmentScanner, TERMINATOR_LEN, decode_frame,
};
use wal_io::{FileOptions, FileRef, IoError, Storage};

use crate::segment::{SegMeta, parse_segment_name};
use crate::sync::Arc;
use crate::{RecoveryMode, WalError};

/// Bytes read per call while loading a segment.
const READ_CHUNK_BYTES: usize = 4 << 20;

/// Segments a replaying recovery scans ahead of the one it hands out, at
/// most: each one ahead is a whole segment in memory.
const REPLAY_SEGMENTS_AHEAD_MAX: usize = 4;

/// Where a replay during open starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayFrom {
    /// The first record the log holds, wherever that is.
    Start,
    /// This LSN: [`WalError::Purged`] if the log starts after it.
    Lsn(u64),
}

impl From<u64> for ReplayFrom {
    fn from(lsn: u64) -> Self {
        ReplayFrom::Lsn(lsn)
    }
}

/// A replay of records to its consumer while recovery reads them.
pub(crate) struct Replay<'a> {
    from: ReplayFrom,
    each: &'a mut dyn FnMut(Record) -> ControlFlow<()>,
    /// The consumer asked for no more records.
    stopped: bool,
}

impl<'a> Replay<'a> {
    pub(crate) fn new(
        from: ReplayFrom,
        each: &'a mut dyn FnMut(Record) -> ControlFlow<()>,
    ) -> Self {
        Replay {
            from,
            each,
            stopped: false,
        }
    }
}

/// Whether segment `k` of `names` (sorted by first LSN) may hold a record a
/// replay from `from` wants: it holds none at or past the next one's first
/// LSN.
fn wants(from: ReplayFrom, names: &[(String, u64)], k: usize) -> bool {
    match from {
        ReplayFrom::Start => true,
        ReplayFrom::Lsn(from) => names.get(k + 1).is_none_or(|&(_, next)| next > from),
    }
}

/// What recovery found in one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SegmentReport {
    /// The file's name.
    pub name: String,
    /// Its first LSN.
    pub first_lsn: u64,
    /// Valid frames read.
    pub frames: u64,
    /// Records kept from it.
    pub records: u64,
    /// Offset after its last valid frame.
    pub valid_end: u64,
    /// How its valid prefix ended.
    pub end: SegmentEnd,
}

/// Something recovery removed or set aside, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Cut {
    /// The segment.
    pub segment: String,
    /// Where in it the removed bytes start.
    pub offset: u64,
    /// How many bytes were removed from the file (0 when only set aside logically).
    pub bytes: u64,
    /// Why.
    pub reason: String,
    /// The decoder's verdict on the first removed frame, where one applies.
    pub error: Option<DecodeError>,
}

/// What [`Wal::open`](crate::Wal::open) found and did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// The segments kept, in LSN order.
    pub segments: Vec<SegmentReport>,
    /// Records in the log after recovery.
    pub records: u64,
    /// The first LSN in the log (the next LSN if it is empty).
    pub first_lsn: u64,
    /// The next LSN the log assigns; the last record is `next_lsn - 1`.
    pub next_lsn: u64,
    /// What was cut from the tail or set aside, and why.
    pub cuts: Vec<Cut>,
    /// Segment files renamed aside (`.discarded`) by a salvage mode.
    pub discarded: Vec<String>,
    /// LSN ranges (`start..end`) missing from the log after a salvage mode
    /// skipped damage.
    pub gaps: Vec<(u64, u64)>,
}

struct Scanned {
    name: String,
    first_lsn: u64,
    file: FileRef,
    size: u64,
    outcome: Outcome,
}

enum Outcome {
    BadHeader {
        error: DecodeError,
        /// No valid frame of any identity starting at or after the name's
        /// LSN is anywhere in the file: it never held a record.
        never_held_records: bool,
    },
    Scanned {
        header: SegmentHeader,
        summary: wal_format::ScanSummary,
        index: Vec<(u64, u64)>,
    },
}

/// What a scan hands the deciding thread about one segment, in order.
enum Part {
    /// The segment's header is valid: its frames follow.
    Head(SegmentHeader),
    /// Record frames, in order, for a replay that wants this segment's
    /// records, and the bytes they are slices of (to reuse once they are
    /// handed out).
    Frames(Vec<Frame>, Bytes),
    /// The scan is done.
    Done(Result<Box<Scanned>, IoError>),
}

/// Buffers of scanned parts no frame uses any more, for the next part to be
/// read into instead of faulting in new pages.
#[derive(Default)]
struct Pool(std::sync::Mutex<Vec<BytesMut>>);

impl Pool {
    fn take(&self, len: usize) -> Option<BytesMut> {
        let mut free = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let i = free.iter().position(|b| b.capacity() >= len)?;
        Some(free.swap_remove(i))
    }

    fn give(&self, data: Bytes) {
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
        // A fresh zeroed allocation maps zero pages lazily; `resize` of a
        // reused one writes only the bytes it adds.
        let mut buf = self.take(len).unwrap_or_else(|| BytesMut::zeroed(len));
        buf.resize(len, 0);
        for (i, chunk) in buf.chunks_mut(READ_CHUNK_BYTES).enumerate() {
            file.read_at(offset + (i * READ_CHUNK_BYTES) as u64, chunk)?;
        }
        Ok(buf.freeze())
    }
}

/// Whether any valid frame (of whatever identity: the header that would
/// name it is unreadable) with an LSN at or past `first_lsn` is in `data`.
/// Frames are 8-aligned from the end of the header, and an identity is never
/// zero, so only candidates with a non-zero identity field are decoded.
fn holds_frames(data: &Bytes, first_lsn: u64) -> bool {
    (SegmentHeader::LEN..data.len().saturating_sub(FRAME_HEADER_LEN))
        .step_by(FRAME_ALIGN)
        .any(|pos| {
            let id = data
                .get(pos + 24..pos + 32)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map_or(0, u64::from_le_bytes);
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
struct ScanJob<'a> {
    storage: &'a dyn Storage,
    clean_close: Option<CleanClose>,
    /// The first LSN of the last segment, the only one that can hold writes
    /// no sync covered (every other was sealed and synced before the next
    /// one was created).
    last: Option<u64>,
    pool: Pool,
}

/// Scans one segment. With a clean-close record for it, reads only up to
/// the record's end (and a frame header's worth after it) first, and the
/// whole file only if that scan does not confirm the record. With `keep`,
/// hands its record frames to `emit` as each part is scanned.
fn scan(
    job: &ScanJob<'_>,
    name: String,
    first_lsn: u64,
    keep: bool,
    emit: &mut dyn FnMut(Part),
) -> Result<Scanned, IoError> {
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

/// Bytes of a segment read and scanned at a time, at most: the frames of
/// one part are handed out while the next is read.
const PART_BYTES_MAX: usize = 8 << 20;

/// A segment of `size` bytes is read in about eight parts of whole 4 KiB
/// blocks (small segments, as in the crash tests, in several parts too).
fn part_bytes(size: u64) -> usize {
    let block = wal_format::PADDED_BLOCK_BYTES;
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
) -> Result<Outcome, IoError> {
    let limit = usize::try_from(limit).map_err(|_| IoError::Unsupported {
        op: wal_io::Op::Read,
        path: file.name().into(),
        reason: format!("a segment of {limit} bytes does not fit in memory"),
    })?;
    let part_len = part_bytes(file.size()?);
    let mut end = part_len.min(limit);
    let mut part = job.pool.read(file, 0, end)?;
    let mut scanner = match SegmentScanner::new(part.clone()) {
        Ok(scanner) => scanner,
        Err(error) => {
            job.pool.give(part);
            // Whether it ever held a record takes the whole file to tell.
            let data = job.pool.read(file, 0, limit)?;
            let never_held_records = !holds_frames(&data, first_lsn);
            job.pool.give(data);
            return Ok(Outcome::BadHeader {
                error,
                never_held_records,
            });
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
        let mut frames = Vec::new();
        for frame in scanner.by_ref() {
            SegMeta::sparse(&mut index, frame.first_lsn(), frame.offset());
            if keep && frame.kind() != FrameKind::Seal {
                seen += 1;
                if seen > *emitted {
                    frames.push(frame);
                }
            }
        }
        let done = end == limit || matches!(scanner.end(), Some(SegmentEnd::Sealed { .. }));
        let point = scanner.point();
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
        // On from the start of the block the scan stopped in (reads on block
        // boundaries; the scanner counts blocks from the segment's start
        // whatever the base); the whole rest if the last part did not get
        // the scan past that point, so the verdict on the end sees every
        // byte after the break.
        let stop = point.offset();
        let base = stop - stop % wal_format::PADDED_BLOCK_BYTES as u64;
        let start = usize::try_from(base).unwrap_or(limit).min(limit);
        end = if last_stop == Some(stop) {
            limit
        } else {
            start.saturating_add(part_len).min(limit)
        };
        last_stop = Some(stop);
        part = job.pool.read(file, base, end - start)?;
        scanner = SegmentScanner::resume(part.clone(), base, &point).map_err(|e| {
            IoError::Unsupported {
                op: wal_io::Op::Read,
                path: file.name().into(),
                reason: format!("resuming the scan: {e}"),
            }
        })?;
    }
}

/// Under loom the scan runs on the calling thread, lazily: the models are
/// about the group-commit hand-off, and real threads have no place in a loom
/// model.
#[cfg(loom)]
fn with_scans<R>(
    job: &ScanJob<'_>,
    names: &[(String, u64)],
    keep: &(dyn Fn(usize) -> bool + Sync),
    _ahead: usize,
    consume: impl FnOnce(&mut dyn Iterator<Item = Part>) -> R,
) -> R {
    let mut parts = names.iter().enumerate().flat_map(|(k, (name, lsn))| {
        let mut parts = Vec::new();
        let scanned = scan(job, name.clone(), *lsn, keep(k), &mut |p| parts.push(p));
        parts.push(Part::Done(scanned.map(Box::new)));
        parts
    });
    consume(&mut parts)
}

/// Scans segments on as many threads as the machine has and hands their
/// parts to `consume` in LSN order as they are ready, so a segment is
/// decided on (and its records handed out) while later ones, and the rest
/// of it, are still read. Scans run at most `ahead` segments past the one
/// `consume` is at.
#[cfg(not(loom))]
fn with_scans<R>(
    job: &ScanJob<'_>,
    names: &[(String, u64)],
    keep: &(dyn Fn(usize) -> bool + Sync),
    ahead: usize,
    consume: impl FnOnce(&mut dyn Iterator<Item = Part>) -> R,
) -> R {
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(ahead)
        .min(names.len())
        .max(1);
    let feed = Feed::default();
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                // Unblocks the consumer if this thread panics: it must not
                // wait for a segment that will never come.
                let _guard = feed.guard();
                loop {
                    let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((name, lsn)) = names.get(k) else {
                        break;
                    };
                    if !feed.wait_turn(k, ahead) {
                        break;
                    }
                    let scanned = scan(job, name.clone(), *lsn, keep(k), &mut |p| feed.put(k, p));
                    feed.put(k, Part::Done(scanned.map(Box::new)));
                }
            });
        }
        let mut parts = InOrder {
            feed: &feed,
            next: 0,
            count: names.len(),
        };
        consume(&mut parts)
    })
}

/// Parts handed from the scan threads to the consumer.
#[cfg(not(loom))]
#[derive(Default)]
struct Feed {
    state: std::sync::Mutex<FeedState>,
    changed: std::sync::Condvar,
}

#[cfg(not(loom))]
#[derive(Default)]
struct FeedState {
    parts: BTreeMap<usize, VecDeque<Part>>,
    /// Segments the consumer has taken whole.
    taken: usize,
    /// The consumer is gone: scan no more.
    stop: bool,
    /// A scan thread died.
    panicked: bool,
}

#[cfg(not(loom))]
impl Feed {
    fn lock(&self) -> std::sync::MutexGuard<'_, FeedState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits until segment `k` is within `ahead` of the consumer; false if
    /// the consumer is gone.
    fn wait_turn(&self, k: usize, ahead: usize) -> bool {
        let mut st = self.lock();
        while !st.stop && k >= st.taken.saturating_add(ahead) {
            st = self
                .changed
                .wait(st)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        !st.stop
    }

    fn put(&self, k: usize, part: Part) {
        self.lock().parts.entry(k).or_default().push_back(part);
        self.changed.notify_all();
    }

    fn guard(&self) -> FeedGuard<'_> {
        FeedGuard(self)
    }
}

/// Marks the feed as broken when a scan thread unwinds.
#[cfg(not(loom))]
struct FeedGuard<'a>(&'a Feed);

#[cfg(not(loom))]
impl Drop for FeedGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.lock().panicked = true;
            self.0.changed.notify_all();
        }
    }
}

/// The consumer's side of a [`Feed`]: parts in segment order.
#[cfg(not(loom))]
struct InOrder<'a> {
    feed: &'a Feed,
    next: usize,
    count: usize,
}

#[cfg(not(loom))]
impl Iterator for InOrder<'_> {
    type Item = Part;

    fn next(&mut self) -> Option<Part> {
        if self.next >= self.count {
            return None;
        }
        let mut st = self.feed.lock();
        loop {
            if let Some(part) = st.parts.get_mut(&self.next).and_then(VecDeque::pop_front) {
                if matches!(part, Part::Done(_)) {
                    st.parts.remove(&self.next);
                    self.next += 1;
                    st.taken = self.next;
                    drop(st);
                    self.feed.changed.notify_all();
                }
                return Some(part);
            }
            // The scope re-raises the scan thread's panic after this one.
            assert!(!st.panicked, "a recovery scan thread panicked");
            st = self
                .feed
                .changed
                .wait(st)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

#[cfg(not(loom))]
impl Drop for InOrder<'_> {
    fn drop(&mut self) {
        self.feed.lock().stop = true;
        self.feed.changed.notify_all();
    }
}

/// Where the last segment's valid prefix ends.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tail {
    pub(crate) valid_end: u64,
    /// Nothing but zeros follows (or the file ends there): nothing to cut.
    pub(crate) clean: bool,
}

/// The log as recovery leaves it.
pub(crate) struct Recovered {
    pub(crate) log_id: Option<u64>,
    pub(crate) segments: Vec<Arc<SegMeta>>,
    pub(crate) next_lsn: u64,
    /// Where appending resumes in the last segment, unless it is sealed.
    pub(crate) tail: Option<Tail>,
    pub(crate) report: RecoveryReport,
}

fn corrupt(segment: &str, offset: u64, detail: String, cause: Option<DecodeError>) -> WalError {
    WalError::Corrupt {
        segment: segment.to_owned(),
        offset,
        detail,
        cause,
    }
}

/// Sets a segment aside under a `.discarded` name (salvage modes only):
/// recorded now, renamed once every scan is done.
fn discard(changes: &mut Changes, s: &Scanned, report: &mut RecoveryReport, reason: String) {
    let aside = format!("{}.discarded", s.name);
    changes.renames.push((s.name.clone(), aside.clone()));
    report.discarded.push(aside);
    report.cuts.push(Cut {
        segment: s.name.clone(),
        offset: 0,
        bytes: 0,
        reason,
        error: None,
    });
}

/// What recovery changes in the directory, done only after every segment
/// was scanned (a scan thread may still be reading a file the decision is
/// about) and only if the log opens.
#[derive(Default)]
struct Changes {
    renames: Vec<(String, String)>,
    removals: Vec<String>,
}

/// A segment kept in the log whose records a replay has yet to hand out:
/// those at or past the first LSN of the segment after it are handed out
/// once that one is known, as it may cut this one short (`truncate_back`).
struct Undelivered {
    meta: Arc<SegMeta>,
    frames: Vec<Frame>,
    /// The parts `frames` are slices of, to reuse once they are handed out.
    parts: Vec<Bytes>,
    /// The LSN after its valid prefix's last record.
    next_lsn: u64,
    /// Records below this LSN were handed out already.
    floor: u64,
}

impl Replay<'_> {
    /// Hands out the records of `frames` in `from..end`, in order, unless
    /// the consumer broke off.
    fn hand_out(&mut self, frames: Vec<Frame>, from: u64, end: u64) {
        'frames: for frame in frames {
            if self.stopped || frame.first_lsn() >= end {
                break;
            }
            if frame.next_lsn() <= from {
                continue;
            }
            for record in frame {
                if record.lsn >= end {
                    break 'frames;
                }
                if record.lsn >= from && (self.each)(record).is_break() {
                    self.stopped = true;
                    break 'frames;
                }
            }
        }
    }

    /// Hands out what is left of `seg` from the replay's start up to where
    /// the segment ends, then gives its memory back to `pool`.
    fn deliver(&mut self, seg: Undelivered, from: u64, pool: &Pool) {
        let end = seg.meta.end_lsn().min(seg.next_lsn);
        self.hand_out(seg.frames, from.max(seg.floor), end);
        for part in seg.parts {
            pool.give(part);
        }
    }
}

/// Recovers the log in `storage`. `clean_close` is the record a cleanly
/// closed writer left, if any: it applies only to the last segment. A
/// `replay` gets the records it asks for in LSN order while later segments
/// are still being scanned; if recovery then fails, the log does not open
/// and what it got is to be thrown away.
pub(crate) fn recover(
    storage: &dyn Storage,
    mode: RecoveryMode,
    clean_close: Option<CleanClose>,
    mut replay: Option<Replay<'_>>,
) -> Result<Recovered, WalError> {
    let mut names: Vec<(String, u64)> = storage
        .list()?
        .into_iter()
        .filter_map(|n| parse_segment_name(&n).map(|lsn| (n, lsn)))
        .collect();
    names.sort_by_key(|(_, lsn)| *lsn);
    let last = names.last().map(|&(_, lsn)| lsn);
    let job = ScanJob {
        storage,
        clean_close: clean_close.filter(|m| Some(m.segment_first_lsn) == last),
        last,
        pool: Pool::default(),
    };
    let replay_from = replay.as_ref().map(|r| r.from);
    let keep = |k: usize| replay_from.is_some_and(|from| wants(from, &names, k));
    // Without a replay a scan holds no segment in memory once it is done.
    let ahead = if replay.is_some() {
        REPLAY_SEGMENTS_AHEAD_MAX
    } else {
        usize::MAX
    };
    let mut changes = Changes::default();
    let decided = with_scans(&job, &names, &keep, ahead, |scans| {
        decide(
            scans,
            &names,
            mode,
            &mut changes,
            replay.as_mut(),
            &job.pool,
        )
    })?;
    for (from, to) in &changes.renames {
        storage.rename(from, to)?;
    }
    for name in &changes.removals {
        storage.remove(name)?;
    }
    if !changes.renames.is_empty() || !changes.removals.is_empty() {
        storage.sync_dir()?;
    }
    Ok(decided)
}

/// Decides, segment by segment in LSN order, what the log is.
fn decide(
    parts: &mut dyn Iterator<Item = Part>,
    names: &[(String, u64)],
    mode: RecoveryMode,
    changes: &mut Changes,
    mut replay: Option<&mut Replay<'_>>,
    pool: &Pool,
) -> Result<Recovered, WalError> {
    let count = names.len();
    let mut report = RecoveryReport::default();
    let mut segments: Vec<Arc<SegMeta>> = Vec::new();
    let mut log_id = None;
    let mut next_lsn: Option<u64> = None;
    let mut tail = None;
    let mut stop = false;
    let mut undelivered: Option<Undelivered> = None;
    // Where the replay starts, once the log's first segment is known.
    let mut replay_from: Option<u64> = None;
    for (i, (_, name_lsn)) in names.iter().enumerate() {
        let last = i + 1 == count;
        // Records below the next segment's first LSN are this segment's
        // whatever that one turns out to be.
        let limit = names.get(i + 1).map_or(u64::MAX, |&(_, lsn)| lsn);
        // Frames whose records are not handed out yet, and their parts.
        let mut held: Vec<Frame> = Vec::new();
        let mut held_parts: Vec<Bytes> = Vec::new();
        // Whether (and from where) this segment's records go out as its
        // parts arrive: once its header shows it will be kept unless the
        // log refuses to open, the segment before it is settled too. Then
        // only those at or past `limit` are held.
        let mut early: Option<u64> = None;
        let s = loop {
            match parts.next() {
                None => {
                    return Err(WalError::io(IoError::Unsupported {
                        op: wal_io::Op::Read,
                        path: names
                            .get(i)
                            .map_or_else(Default::default, |n| n.0.clone().into()),
                        reason: "a recovery scan ended without its result".to_owned(),
                    }));
                }
                Some(Part::Head(header)) => {
                    let Some(replay) = replay.as_deref_mut() else {
                        continue;
                    };
                    let chained = match (segments.last(), next_lsn) {
                        (Some(_), Some(expected)) => *name_lsn <= expected,
                        _ => true,
                    };
                    let from = match (replay_from, replay.from) {
                        (Some(from), _) => Some(from),
                        (None, ReplayFrom::Start) => Some(*name_lsn),
                        (None, ReplayFrom::Lsn(lsn)) => (lsn >= *name_lsn).then_some(lsn),
                    };
                    if stop
                        || replay.stopped
                        || !chained
                        || header.first_lsn() != *name_lsn
                        || log_id.is_some_and(|id| id != header.log_id())
                    {
                        continue;
                    }
                    let Some(from) = from else { continue };
                    replay_from = Some(from);
                    if let Some(prev) = segments.last() {
                        prev.set_end_lsn(*name_lsn);
                    }
                    if let Some(seg) = undelivered.take() {
                        replay.deliver(seg, from, pool);
                    }
                    early = Some(from);
                }
                Some(Part::Frames(frames, part)) => match (early, replay.as_deref_mut()) {
                    (Some(from), Some(replay)) if !replay.stopped => {
                        let rest: Vec<Frame> = frames
                            .iter()
                            .filter(|f| f.next_lsn() > limit)
                            .cloned()
                            .collect();
                        replay.hand_out(frames, from, limit);
                        if rest.is_empty() {
                            pool.give(part);
                        } else {
                            held.extend(rest);
                            held_parts.push(part);
                        }
                    }
                    _ => {
                        held.extend(frames);
                        held_parts.push(part);
                    }
                },
                Some(Part::Done(scanned)) => break *scanned?,
            }
        };
        if stop {
            discard(
                changes,
                &s,
                &mut report,
                "after the point-in-time cut".to_owned(),
            );
            continue;
        }
        let (header, summary, index) = match s.outcome {
            Outcome::BadHeader {
                never_held_records: true,
                ..
            } if last => {
                // A creation interrupted before its header was synced (a
                // segment gets records only after that): it never held one.
                changes.removals.push(s.name.clone());
                report.cuts.push(Cut {
                    segment: s.name.clone(),
                    offset: 0,
                    bytes: s.size,
                    reason:
                        "segment creation was interrupted (no valid header, no records); removed"
                            .to_owned(),
                    error: None,
                });
                continue;
            }
            Outcome::BadHeader { ref error, .. } => {
                let detail = format!("unreadable segment header: {error}");
                match mode {
                    RecoveryMode::PointInTime => {
                        stop = true;
                        discard(changes, &s, &mut report, detail);
                        continue;
                    }
                    RecoveryMode::SkipCorrupted => {
                        discard(changes, &s, &mut report, detail);
                        continue;
                    }
                    _ => return Err(corrupt(&s.name, 0, detail, Some(error.clone()))),
                }
            }
            Outcome::Scanned {
                header,
                ref summary,
                ref index,
            } => (header, summary.clone(), index.clone()),
        };
        if header.first_lsn() != s.first_lsn {
            return Err(corrupt(
                &s.name,
                0,
                format!(
                    "header says first LSN {}, the name says {}",
                    header.first_lsn(),
                    s.first_lsn
                ),
                None,
            ));
        }
        match log_id {
            None => log_id = Some(header.log_id()),
            Some(id) if id != header.log_id() => {
                return Err(corrupt(
                    &s.name,
                    0,
                    format!("belongs to log {:#x}, not {id:#x}", header.log_id()),
                    None,
                ));
            }
            Some(_) => {}
        }
        // Chain: this segment must start at or before where the previous ends.
        if let (Some(prev), Some(expected)) = (segments.last(), next_lsn) {
            if s.first_lsn <= expected {
                // Readers move on to this segment at its first LSN. One that
                // starts inside the previous one was made by truncate_back:
                // the previous one logically ends there.
                prev.set_end_lsn(s.first_lsn);
                if let Some(r) = report.segments.last_mut() {
                    r.records = s.first_lsn.saturating_sub(r.first_lsn);
                }
            } else {
                prev.set_end_lsn(expected);
                let detail = format!(
                    "LSNs {expected}..{} are missing before this segment",
                    s.first_lsn
                );
                match mode {
                    RecoveryMode::PointInTime => {
                        stop = true;
                        discard(changes, &s, &mut report, detail);
                        continue;
                    }
                    RecoveryMode::SkipCorrupted => report.gaps.push((expected, s.first_lsn)),
                    _ => return Err(corrupt(&s.name, 0, detail, None)),
                }
            }
        }
        let mut keep_end = summary.valid_end;
        let seg_report = |records: u64| SegmentReport {
            name: s.name.clone(),
            first_lsn: s.first_lsn,
            frames: summary.frames,
            records,
            valid_end: summary.valid_end,
            end: summary.end.clone(),
        };
        match &summary.end {
            SegmentEnd::Clean | SegmentEnd::Sealed { .. } => {}
            SegmentEnd::TornTail {
                error,
                later_frames,
            } => {
                if mode == RecoveryMode::AbsoluteConsistency {
                    return Err(corrupt(
                        &s.name,
                        summary.valid_end,
                        format!(
                            "torn tail ({later_frames} unacknowledged frames after it) and the mode is AbsoluteConsistency"
                        ),
                        Some(error.clone()),
                    ));
                }
                if last {
                    report.cuts.push(Cut {
                        segment: s.name.clone(),
                        offset: summary.valid_end,
                        bytes: s.size.saturating_sub(summary.valid_end),
                        reason: format!(
                            "torn tail: an interrupted, unacknowledged write ({later_frames} later frames, none vouching for it)"
                        ),
                        error: Some(error.clone()),
                    });
                }
            }
            SegmentEnd::Corrupt { error, evidence } => {
                let detail = format!(
                    "{error}; the frame at offset {} (LSN {}) records LSN {} as durable, so acknowledged data was lost",
                    evidence.offset, evidence.first_lsn, evidence.durable_lsn
                );
                match mode {
                    RecoveryMode::PointInTime => {
                        stop = true;
                        report.cuts.push(Cut {
                            segment: s.name.clone(),
                            offset: summary.valid_end,
                            bytes: s.size.saturating_sub(summary.valid_end),
                            reason: format!("point-in-time cut at corruption: {detail}"),
                            error: Some(error.clone()),
                        });
                        keep_end = summary.valid_end;
                    }
                    RecoveryMode::SkipCorrupted => {
                        // The rest of this segment is skipped. In the last
                        // segment that is the tail, cut before appending; in
                        // an earlier one the chain check records the gap.
                        report.cuts.push(Cut {
                            segment: s.name.clone(),
                            offset: summary.valid_end,
                            bytes: if last {
                                s.size.saturating_sub(summary.valid_end)
                            } else {
                                0
                            },
                            reason: format!(
                                "skipped the rest of the segment after corruption: {detail}"
                            ),
                            error: Some(error.clone()),
                        });
                    }
                    _ => {
                        return Err(corrupt(
                            &s.name,
                            summary.valid_end,
                            detail,
                            Some(error.clone()),
                        ));
                    }
                }
            }
            _ => {}
        }
        report.segments.push(seg_report(summary.records));
        let meta = Arc::new(SegMeta::new(
            s.first_lsn,
            s.name.clone(),
            s.file.clone(),
            header.segment_id(),
            header.padded(),
            index,
        ));
        if let Some(replay) = replay.as_deref_mut() {
            // The segment before this one now ends where it must.
            let from = match replay_from {
                Some(from) => from,
                None => {
                    let from = match replay.from {
                        ReplayFrom::Start => s.first_lsn,
                        ReplayFrom::Lsn(lsn) if lsn < s.first_lsn => {
                            return Err(WalError::Purged {
                                lsn,
                                first: s.first_lsn,
                            });
                        }
                        ReplayFrom::Lsn(lsn) => lsn,
                    };
                    *replay_from.insert(from)
                }
            };
            if let Some(seg) = undelivered.take() {
                replay.deliver(seg, from, pool);
            }
            undelivered = Some(Undelivered {
                meta: meta.clone(),
                frames: held,
                parts: held_parts,
                next_lsn: summary.next_lsn,
                floor: early.map_or(0, |_| limit),
            });
        }
        segments.push(meta);
        next_lsn = Some(summary.next_lsn);
        tail = match summary.end {
            SegmentEnd::Sealed { .. } => None,
            SegmentEnd::Clean => Some(Tail {
                valid_end: keep_end,
                clean: true,
            }),
            // Torn, or damage salvaged by a point-in-time or skipping mode:
            // what follows the kept prefix must go before appending.
            _ => Some(Tail {
                valid_end: keep_end,
                clean: false,
            }),
        };
    }
    if let Some(replay) = replay {
        match (replay_from, replay.from) {
            (Some(from), _) => {
                if let Some(seg) = undelivered.take() {
                    replay.deliver(seg, from, pool);
                }
            }
            // An empty log starts at LSN 1.
            (None, ReplayFrom::Lsn(lsn)) if lsn < 1 => {
                return Err(WalError::Purged { lsn, first: 1 });
            }
            (None, _) => {}
        }
    }
    let first_lsn = segments.first().map_or(1, |s| s.first_lsn);
    let next = next_lsn.unwrap_or(first_lsn);
    report.first_lsn = first_lsn;
    report.next_lsn = next;
    report.records = report.segments.iter().map(|s| s.records).sum();
    Ok(Recovered {
        log_id,
        segments,
        next_lsn: next,
        tail,
        report,
    })
}
