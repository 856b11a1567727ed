//! Truncation: whole segments off the front after a checkpoint, records
//! off the back after a Raft conflict. Both are crash-safe and both drain
//! the pipelined writer first.

use super::Wal;
use super::cut;
use super::durability::{Failure, Woken};
use super::placement::start_segment;
use super::state::{Io, Shared, StateGuard};
use crate::WalError;
use crate::segment;
use crate::sync::{Ordering, lock};

impl Wal {
    /// Removes whole segments whose records all come before `lsn` (after a
    /// checkpoint covering them). Records of a segment that also holds `lsn`
    /// or later stay readable; a reader inside a removed segment gets
    /// [`WalError::Purged`]. Returns how many segments went. Crash-safe:
    /// segments go oldest first, so a crash leaves a contiguous log.
    ///
    /// ```
    /// # let (wal, _) = wal_engine::Wal::open_with(wal_io::sim::SimDisk::new(1).storage(), Default::default())?;
    /// # wal.commit(b"x")?;
    /// // After a checkpoint that covers everything before LSN 1000:
    /// let removed = wal.truncate_front(1000)?;
    /// assert_eq!(removed, 0); // one segment, still in use: nothing to remove
    /// # Ok::<(), wal_engine::WalError>(())
    /// ```
    ///
    /// With [`Options::recycle_segments`](crate::Options::recycle_segments) one purged file becomes the next
    /// segment instead of being deleted.
    ///
    /// # Errors
    /// [`WalError::Poisoned`] or [`WalError::Closed`] if the log is no
    /// longer usable. An I/O error removing or renaming a file, or syncing
    /// the directory, leaves the directory in an uncertain state: it poisons
    /// the log, and a reopen sorts it out.
    pub fn truncate_front(&self, lsn: u64) -> Result<usize, WalError> {
        let shared = &*self.shared;
        let (mut io, mut woken, drained) = shared.io_drained();
        let result = front_locked(shared, &mut io, drained, lsn, &mut woken);
        drop(io);
        woken.fire();
        result
    }

    /// Removes every record after `lsn`, so that the next append gets
    /// `lsn + 1` (for Raft log conflicts). Everything appended is made durable
    /// first. Crash-safe: after a crash the log is a prefix of the log before
    /// the call that holds every record up to `lsn`; if it still holds later
    /// ones, the truncation did not happen and may be repeated. The log
    /// never loses its position: even truncating every record, a crash
    /// leaves a segment that says where the log goes on.
    ///
    /// ```
    /// # let (wal, _) = wal_engine::Wal::open_with(wal_io::sim::SimDisk::new(1).storage(), Default::default())?;
    /// for term in [1u8, 1, 1, 2] {
    ///     wal.append(&[term])?;
    /// }
    /// // A new leader's log diverges after LSN 2:
    /// wal.truncate_back(2)?;
    /// assert_eq!(wal.append(&[3])?, 3);
    /// # Ok::<(), wal_engine::WalError>(())
    /// ```
    ///
    /// # Errors
    /// [`WalError::Purged`] if `lsn + 1` is before the first LSN; I/O errors
    /// (which poison the log).
    pub fn truncate_back(&self, lsn: u64) -> Result<(), WalError> {
        let shared = &*self.shared;
        loop {
            self.sync()?;
            let (mut io, mut woken, drained) = shared.io_drained();
            let done = back_locked(shared, &mut io, drained, lsn, &mut woken);
            drop(io);
            woken.fire();
            // New appends arrived after the sync: make them durable too.
            if done? {
                return Ok(());
            }
        }
    }
}

/// Poisons the log with `failure`, returning the error for the caller.
fn poison(
    shared: &Shared,
    st: &mut StateGuard<'_>,
    failure: Failure,
    woken: &mut Woken,
) -> WalError {
    let failed = shared.poison(st, failure);
    let error = failed.error().unwrap_or(WalError::Closed);
    woken.extend(failed);
    error
}

fn front_locked(
    shared: &Shared,
    io: &mut Io,
    drained: Result<(), Failure>,
    lsn: u64,
    woken: &mut Woken,
) -> Result<usize, WalError> {
    let failure = match drained {
        Ok(()) => {
            shared.state().check_usable()?;
            match remove_front(shared, io, lsn) {
                Ok(removed) => return Ok(removed),
                Err(e) => Failure::Io(e),
            }
        }
        Err(failure) => failure,
    };
    let mut st = shared.state();
    Err(poison(shared, &mut st, failure, woken))
}

/// Removes (or recycles) the segments wholly before `lsn`, oldest first,
/// but none the purge hold has not released.
fn remove_front(shared: &Shared, io: &mut Io, asked: u64) -> Result<usize, wal_io::IoError> {
    let mut segs = shared.segments_write();
    let released = shared.options.purge_hold.as_ref().map(|h| h.released());
    // A segment may go once the next one starts at or before `lsn`: all of
    // its LSNs are then below it.
    let lsn = released.map_or(asked, |r| asked.min(r.saturating_add(1)));
    let wanted = segs
        .iter()
        .skip(1)
        .take_while(|s| s.first_lsn <= asked)
        .count();
    let mut removed = 0;
    while segs.len() >= 2 && segs.get(1).is_some_and(|s| s.first_lsn <= lsn) {
        // A purge leaves the last segment as it is, so a kept clean-close
        // record would still be true; it goes all the same before the first
        // file does, so that no segment file changes with it in place. A
        // purge that removes nothing (a store's checkpoint often asks for
        // one) leaves it.
        io.retire_clean_close(&*shared.storage)?;
        if let Some(oldest) = segs.first() {
            // The file goes first: if that fails, the list still names it.
            let mut spare = lock(&shared.spare);
            let free = spare.ready.is_none() && !spare.filling;
            let recycled = if shared.options.recycle_segments && free {
                segment::recycle(&*shared.storage, &shared.options, oldest)?
            } else {
                None
            };
            match recycled {
                Some(file) => spare.ready = Some(file),
                None => shared.storage.remove(&oldest.name)?,
            }
            // A reader inside it stops handing out its records: they are
            // purged, and a recycled file will hold others once a
            // rotation (which needs the I/O lock held here) stamps it.
            oldest.set_end_lsn(oldest.first_lsn);
        }
        segs.remove(0);
        removed += 1;
    }
    drop(segs);
    let held = (wanted - removed) as u64;
    shared.stats.held(held);
    if held > 0 {
        tracing::warn!(
            held,
            released = released.unwrap_or(0),
            asked,
            "segments kept until they are released (archived)"
        );
    }
    if removed > 0 {
        shared.storage.sync_dir()?;
    }
    Ok(removed)
}

/// One attempt at `truncate_back(lsn)` with the `io` lock held and nothing
/// in flight. Returns whether it is done (`false`: appends arrived since
/// the caller's sync; sync and try again).
fn back_locked(
    shared: &Shared,
    io: &mut Io,
    drained: Result<(), Failure>,
    lsn: u64,
    woken: &mut Woken,
) -> Result<bool, WalError> {
    // The state lock is held throughout, so no append lands meanwhile.
    let mut st = shared.state();
    if let Err(failure) = drained {
        return Err(poison(shared, &mut st, failure, woken));
    }
    st.check_usable()?;
    if st.frame.is_some() || st.durable + 1 != st.next_lsn {
        return Ok(false);
    }
    if lsn + 1 >= st.next_lsn {
        return Ok(true);
    }
    let first = shared.first_lsn();
    if lsn + 1 < first {
        return Err(WalError::Purged {
            lsn: lsn + 1,
            first,
        });
    }
    let cut = io
        .retire_clean_close(&*shared.storage)
        .map_err(Failure::from)
        .and_then(|()| cut_back(shared, io, lsn));
    if let Err(failure) = cut {
        return Err(poison(shared, &mut st, failure, woken));
    }
    st.next_lsn = lsn + 1;
    st.written = lsn;
    st.durable = lsn;
    // What was held back past the cut is gone with it.
    st.durable_held = lsn;
    st.sync_upto = st.sync_upto.min(lsn);
    st.check_watermarks();
    shared.durable.store(lsn, Ordering::Release);
    shared.written.store(lsn, Ordering::Release);
    shared.appended.store(lsn, Ordering::Release);
    Ok(true)
}

/// Cuts the log after `lsn`, crash-safely and without ever leaving the
/// directory without the log's position (cut.rs says where among frames the
/// new segment starts, and how no cut record ever comes back):
///
/// 1. the new segment starts at `lsn + 1`, or at the first LSN of the frame
///    holding `lsn + 1`, carrying that frame's records up to `lsn`;
/// 2. the segment that step 3 leaves last has its frames past its end (cut
///    by an earlier truncation) cut off in the file;
/// 3. the segments starting after the new one go, newest first, so a crash
///    leaves a prefix of the log (the truncation did not happen), and the
///    directory is synced;
/// 4. the new segment is stamped, synced, under a name no recovery reads;
/// 5. it takes its name, replacing the segment that started there if there
///    was one, and the directory is synced: the commit point. From then on
///    the segment before it ends there, as recovery reads a segment only up
///    to the next one's first LSN.
fn cut_back(shared: &Shared, io: &mut Io, lsn: u64) -> Result<(), Failure> {
    let (storage, options) = (&*shared.storage, &shared.options);
    // Readers learn of the cut before anything is cut: one that has handed
    // out records past it since will fail instead of going on in the new
    // history.
    shared.note_cut(lsn);
    let mut segs = shared.segments_write();
    // Readers stop handing out what goes, before it goes: its LSNs will be
    // given to new records.
    for seg in segs.iter().filter(|s| s.end_lsn() > lsn + 1) {
        let end = if seg.first_lsn > lsn {
            seg.first_lsn
        } else {
            lsn + 1
        };
        seg.set_end_lsn(end);
    }
    // The segment holding `lsn`, and where the new one starts among its
    // frames (cut.rs).
    let holder = segs.iter().rposition(|s| s.first_lsn <= lsn);
    let carried = cut::split(holder.and_then(|i| segs.get(i)).map(|s| &**s), lsn)?;
    let first = carried.first;
    // The segment the removals below leave last until the rename: frames it
    // holds past the next one's start were cut before, and must not come
    // back if a crash comes first.
    let last = segs.iter().rposition(|s| s.first_lsn <= first);
    if let Some(i) = last
        && let (Some(seg), Some(next)) = (segs.get(i), segs.get(i + 1))
        && next.first_lsn > first
    {
        cut::cut_stale(seg, next.first_lsn, lsn, options)?;
    }
    while let Some(newest) = segs.last().filter(|s| s.first_lsn > first) {
        storage.remove(&newest.name)?;
        segs.pop();
    }
    storage.sync_dir()?;
    // Staged after the removals, which free their space: on a full disk the
    // truncation then fails where the old code did, not earlier.
    let staged = segment::stage(storage, options, shared.log_id, io.ids.next(), first)?;
    let frames = if carried.records.is_empty() {
        None
    } else {
        Some(cut::write_carried(
            staged.file(),
            staged.id(),
            &carried,
            options,
        )?)
    };
    // The segment starting there, if any, is replaced by the rename.
    if segs.last().is_some_and(|s| s.first_lsn == first) {
        segs.pop();
    }
    let mut active = segment::commit_staged(storage, staged)?;
    if let Some((at, end)) = frames {
        active.meta.index_frame(first, at);
        active.offset = end;
    }
    segs.push(active.meta.clone());
    drop(segs);
    start_segment(shared, io, active, lsn)
}

/// Cuts remembered for readers; a reader that last looked before the oldest
/// of them is told its records may have been cut.
const CUTS_REMEMBERED: usize = 64;

impl Shared {
    /// Records that `truncate_back` keeps the log up to `kept`.
    fn note_cut(&self, kept: u64) {
        let mut cuts = lock(&self.cuts);
        let generation = self.cut_generation.load(Ordering::Acquire) + 1;
        cuts.recent.push_back((generation, kept));
        if cuts.recent.len() > CUTS_REMEMBERED {
            cuts.recent.pop_front();
        }
        self.cut_generation.store(generation, Ordering::Release);
    }

    /// How many cuts there were so far.
    pub(crate) fn cut_generation(&self) -> u64 {
        self.cut_generation.load(Ordering::Acquire)
    }

    /// The cut generation now, and the lowest LSN kept by the cuts made
    /// after generation `seen` (`Some(0)` if they go back further than
    /// remembered; `None` if there were none).
    pub(crate) fn kept_since(&self, seen: u64) -> (u64, Option<u64>) {
        let now = self.cut_generation.load(Ordering::Acquire);
        if now == seen {
            return (now, None);
        }
        let cuts = lock(&self.cuts);
        let remembered = cuts
            .recent
            .front()
            .is_some_and(|&(g, _)| g <= seen.saturating_add(1));
        let kept = cuts
            .recent
            .iter()
            .filter(|&&(g, _)| g > seen)
            .map(|&(_, kept)| kept)
            .min();
        let now = cuts.recent.back().map_or(now, |&(g, _)| g);
        (now, if remembered { kept } else { Some(0) })
    }
}
