//! What the log's threads share, and the order its locks are taken in.
//!
//! Lock order, stated once: **`io` before `state`**; the segment list's
//! `RwLock` and the spare slot are taken inside either, never the other way
//! round. Nothing is woken and no callback runs while any of them is held
//! ([`Woken::fire`](super::durability::Woken::fire) checks that in debug
//! builds). The order is asserted in debug builds: a thread that takes `io`
//! while it holds `state` panics at once instead of deadlocking later.

use std::collections::BTreeMap;
use std::time::Instant;

use wal_format::{FrameBuf, FrameBuilder, FrameEncoder};
use wal_io::{DirLock, IoError, Storage};

use super::durability::{Poison, Wake};
use super::policy::View;
use super::writer::Writer;
use crate::segment::{Active, Ids, SegMeta, SpareFile};
use crate::stats::StatsCollector;
use crate::sync::{
    Arc, AtomicU64, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard, StdArc,
    lock,
};
use crate::write_buf::WriteBuf;
use crate::{Options, WalError};

/// What appenders, waiters and the I/O side share under one short lock.
pub(crate) struct State {
    /// The frame being filled, laid out in `buf` (the next write).
    pub(super) buf: WriteBuf,
    pub(super) frame: Option<FrameBuilder>,
    pub(super) next_lsn: u64,
    /// The last LSN written to the file system (`durable <= written < next_lsn`).
    pub(super) written: u64,
    /// The last LSN known durable.
    pub(super) durable: u64,
    /// The highest LSN a caller asked to make durable.
    pub(super) sync_upto: u64,
    /// Directory syncs another thread (the preparer) has under way. While
    /// one runs, the durability the owner's syncs reach is held back in
    /// `durable_held`: if it fails, a sync that passed meanwhile proves
    /// nothing (fsyncgate), and nothing more may be published.
    pub(super) dir_syncs: u32,
    /// The durable watermark the owner reached during those syncs.
    pub(super) durable_held: u64,
    pub(super) pending_since: Option<Instant>,
    pub(super) last_sync: Instant,
    /// The failure that stopped the log.
    pub(super) poisoned: Option<Poison>,
    pub(super) closing: bool,
    /// Counted here, under the lock appenders hold anyway.
    pub(super) appends: u64,
    pub(super) append_bytes: u64,
    /// Waiters by (LSN, registration), so one can be taken out again.
    pub(super) waiters: BTreeMap<(u64, u64), Wake>,
    /// The next registration number.
    pub(super) next_waiter: u64,
    /// Appenders waiting for queue space: `space` is notified only when
    /// one is, since a notification is a system call whether or not anyone
    /// waits, and the write path would pay two per round for nothing.
    pub(super) space_waiters: usize,
    /// Times the owner woke from waiting for work ([`crate::Stats::owner_wakes`]).
    pub(super) owner_wakes: u64,
    /// The pending frame was opened by a committer that did not wake the
    /// owner (it leads its own round): the first plain append into it does.
    pub(super) frame_unannounced: bool,
}

impl State {
    pub(super) fn new(durable: u64, queue_bytes_max: usize) -> Self {
        State {
            buf: WriteBuf::for_queue(queue_bytes_max),
            frame: None,
            next_lsn: durable + 1,
            written: durable,
            durable,
            sync_upto: durable,
            dir_syncs: 0,
            durable_held: durable,
            pending_since: None,
            last_sync: Instant::now(),
            poisoned: None,
            closing: false,
            appends: 0,
            append_bytes: 0,
            waiters: BTreeMap::new(),
            next_waiter: 0,
            space_waiters: 0,
            owner_wakes: 0,
            frame_unannounced: false,
        }
    }

    /// Asserts the watermark order `durable <= written < next_lsn` wherever
    /// a watermark changes.
    pub(super) fn check_watermarks(&self) {
        debug_assert!(
            self.durable <= self.written && self.written < self.next_lsn,
            "watermarks out of order: durable {} written {} next {}",
            self.durable,
            self.written,
            self.next_lsn
        );
    }

    /// What the sync policy needs to know of the state.
    pub(super) fn view(&self) -> View {
        View {
            first_pending: self.frame.as_ref().map(FrameBuilder::first_lsn),
            pending_bytes: self.buf.len(),
            pending_since: self.pending_since,
            written: self.written,
            // Held-back durability needs no more syncs, only the other
            // thread's outcome: the owner does not sync again for it.
            durable: self.durable.max(self.durable_held),
            sync_upto: self.sync_upto,
            last_sync: self.last_sync,
            closing: self.closing,
            poisoned: self.poisoned.is_some(),
            space_wanted: self.space_waiters > 0,
        }
    }

    /// Fails if the log can take no more calls.
    pub(super) fn check_usable(&self) -> Result<(), WalError> {
        if let Some(p) = &self.poisoned {
            return Err(p.later());
        }
        if self.closing {
            return Err(WalError::Closed);
        }
        Ok(())
    }
}

/// What only the thread holding the `io` lock touches.
pub(crate) struct Io {
    /// The frame being written: swapped with the state's buffer at each round.
    pub(super) batch: WriteBuf,
    pub(super) active: Active,
    /// How the active segment is written: the one source of that truth.
    pub(super) writer: Writer,
    pub(super) ids: Ids,
    pub(super) encoder: FrameEncoder,
    pub(super) seal: Vec<u8>,
    /// The spare for the rotation after this segment has been asked for.
    pub(super) spare_requested: bool,
    /// Frames and bytes written to the active segment since it became
    /// active: their mean tells whether the spare is worth zero-filling.
    pub(super) segment_frames: u64,
    pub(super) segment_frame_bytes: u64,
    /// The last frame's time: the next is never below it, whatever the
    /// clock says.
    pub(super) last_time_us: u64,
    /// The clean-close record the log opened with is still on disk and
    /// still true of it: nothing has been written, cut or purged since.
    /// It goes, durably, before the first change (`retire_clean_close`),
    /// and close leaves it as it is.
    pub(super) clean_close_kept: bool,
}

impl Io {
    /// Removes the clean-close record, durably, if the log still has it:
    /// left in place, it would vouch for an end that the change about to
    /// be made moves (docs/FORMAT.md: a writer removes it before it writes
    /// to the log again). Called before anything changes the log's files.
    pub(super) fn retire_clean_close(&mut self, storage: &dyn Storage) -> Result<(), IoError> {
        if self.clean_close_kept {
            crate::segment::remove_clean_close(storage)?;
            self.clean_close_kept = false;
        }
        Ok(())
    }
}

/// The hand-over between the preparer thread and rotation.
#[derive(Default)]
pub(super) struct Spare {
    pub(super) ready: Option<SpareFile>,
    pub(super) wanted: bool,
    /// Whether the spare wanted is to be written with zeros (else only
    /// preallocated): [`crate::segment::prepare_spare`].
    pub(super) zero_fill: bool,
    /// The preparer is filling the spare file: nothing else may take its name.
    pub(super) filling: bool,
    pub(super) closing: bool,
}

/// Everything the log's threads share.
pub(crate) struct Shared {
    pub(crate) storage: StdArc<dyn Storage>,
    pub(crate) options: Options,
    pub(super) log_id: u64,
    state: Mutex<State>,
    /// The owner waits here for work.
    pub(super) work: Condvar,
    /// Appenders wait here for queue space.
    pub(super) space: Condvar,
    io: Mutex<Io>,
    pub(crate) segments: RwLock<Vec<Arc<SegMeta>>>,
    /// Published copies of the watermarks, read without a lock.
    pub(super) durable: AtomicU64,
    pub(super) written: AtomicU64,
    pub(super) appended: AtomicU64,
    pub(super) stats: StatsCollector,
    /// The next segment, prepared ahead by the preparer thread.
    pub(super) spare: Mutex<Spare>,
    pub(super) spare_cv: Condvar,
    /// The latest `truncate_back` cuts, for readers to tell whether what
    /// they handed out is still the log's.
    pub(super) cuts: Mutex<Cuts>,
    /// How many cuts there were: a reader looks at `cuts` only when this moved.
    pub(super) cut_generation: AtomicU64,
    pub(super) _lock: DirLock,
}

/// Cuts the readers may not have seen yet: (generation, the LSN kept).
#[derive(Debug, Default)]
pub(super) struct Cuts {
    pub(super) recent: std::collections::VecDeque<(u64, u64)>,
}

/// The pieces [`Shared::new`] puts together.
pub(super) struct Parts {
    pub(super) storage: StdArc<dyn Storage>,
    pub(super) options: Options,
    pub(super) log_id: u64,
    pub(super) durable: u64,
    pub(super) io: Io,
    pub(super) segments: Vec<Arc<SegMeta>>,
    pub(super) spare: Option<SpareFile>,
    pub(super) lock: DirLock,
}

impl Shared {
    pub(super) fn new(parts: Parts) -> Self {
        let durable = parts.durable;
        Shared {
            log_id: parts.log_id,
            state: Mutex::new(State::new(durable, parts.options.queue_bytes_max)),
            work: Condvar::new(),
            space: Condvar::new(),
            io: Mutex::new(parts.io),
            segments: RwLock::new(parts.segments),
            durable: AtomicU64::new(durable),
            written: AtomicU64::new(durable),
            appended: AtomicU64::new(durable),
            stats: StatsCollector::default(),
            spare: Mutex::new(Spare {
                ready: parts.spare,
                ..Spare::default()
            }),
            spare_cv: Condvar::new(),
            cuts: Mutex::new(Cuts::default()),
            cut_generation: AtomicU64::new(0),
            storage: parts.storage,
            options: parts.options,
            _lock: parts.lock,
        }
    }

    /// Takes the state lock.
    pub(super) fn state(&self) -> StateGuard<'_> {
        held::before(held::STATE, 0);
        held::take(held::STATE);
        StateGuard(Some(lock(&self.state)))
    }

    /// Takes the `io` lock; the state lock must not be held.
    pub(super) fn io(&self) -> IoGuard<'_> {
        held::before(held::IO, held::STATE);
        held::take(held::IO);
        IoGuard(lock(&self.io))
    }

    /// Takes the `io` lock if no one holds it.
    pub(super) fn try_io(&self) -> Option<IoGuard<'_>> {
        held::before(held::IO, held::STATE);
        let guard = match self.io.try_lock() {
            Ok(guard) => guard,
            // A panic while it was held (a bug) leaves its data consistent
            // (see `lock`): the lock is free, not busy.
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        held::take(held::IO);
        Some(IoGuard(guard))
    }

    pub(crate) fn segments_read(&self) -> RwLockReadGuard<'_, Vec<Arc<SegMeta>>> {
        self.segments
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn segments_write(&self) -> RwLockWriteGuard<'_, Vec<Arc<SegMeta>>> {
        self.segments
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The first LSN still in the log.
    pub(crate) fn first_lsn(&self) -> u64 {
        self.segments_read().first().map_or(1, |s| s.first_lsn)
    }
}

/// The state lock, held.
pub(crate) struct StateGuard<'a>(Option<MutexGuard<'a, State>>);

impl<'a> StateGuard<'a> {
    /// Waits on `cv` (releasing the lock meanwhile), with a timeout if one is
    /// given.
    pub(super) fn wait(mut self, cv: &Condvar, timeout: Option<std::time::Duration>) -> Self {
        let Some(guard) = self.0.take() else {
            unreachable!("a state guard always holds its lock until dropped")
        };
        held::release(held::STATE);
        let guard = match timeout {
            Some(t) => cv
                .wait_timeout(guard, t)
                .map_or_else(|p| p.into_inner().0, |(g, _)| g),
            None => cv
                .wait(guard)
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        };
        held::take(held::STATE);
        StateGuard(Some(guard))
    }
}

impl std::ops::Deref for StateGuard<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        match &self.0 {
            Some(g) => g,
            None => unreachable!("a state guard always holds its lock until dropped"),
        }
    }
}

impl std::ops::DerefMut for StateGuard<'_> {
    fn deref_mut(&mut self) -> &mut State {
        match &mut self.0 {
            Some(g) => g,
            None => unreachable!("a state guard always holds its lock until dropped"),
        }
    }
}

impl Drop for StateGuard<'_> {
    fn drop(&mut self) {
        if self.0.take().is_some() {
            held::release(held::STATE);
        }
    }
}

/// The `io` lock, held.
pub(crate) struct IoGuard<'a>(MutexGuard<'a, Io>);

impl std::ops::Deref for IoGuard<'_> {
    type Target = Io;
    fn deref(&self) -> &Io {
        &self.0
    }
}

impl std::ops::DerefMut for IoGuard<'_> {
    fn deref_mut(&mut self) -> &mut Io {
        &mut self.0
    }
}

impl Drop for IoGuard<'_> {
    fn drop(&mut self) {
        held::release(held::IO);
    }
}

/// Which of the log's locks this thread holds, tracked in debug builds
/// (not under loom, whose threads are not the OS's).
pub(super) mod held {
    pub(crate) const IO: u8 = 1;
    pub(crate) const STATE: u8 = 2;

    #[cfg(all(debug_assertions, not(loom)))]
    thread_local! {
        static HELD: std::cell::Cell<u8> = const { std::cell::Cell::new(0) };
    }

    /// Asserts that `taking` is not taken while `after` is held.
    #[cfg_attr(not(all(debug_assertions, not(loom))), allow(unused_variables))]
    pub(crate) fn before(taking: u8, after: u8) {
        #[cfg(all(debug_assertions, not(loom)))]
        HELD.with(|h| {
            assert!(
                h.get() & after == 0,
                "lock order broken: the io lock is taken while the state lock is held"
            );
            assert!(
                h.get() & taking == 0,
                "a log lock is taken twice by one thread"
            );
        });
    }

    #[cfg_attr(not(all(debug_assertions, not(loom))), allow(unused_variables))]
    pub(crate) fn take(which: u8) {
        #[cfg(all(debug_assertions, not(loom)))]
        HELD.with(|h| h.set(h.get() | which));
    }

    #[cfg_attr(not(all(debug_assertions, not(loom))), allow(unused_variables))]
    pub(crate) fn release(which: u8) {
        #[cfg(all(debug_assertions, not(loom)))]
        HELD.with(|h| h.set(h.get() & !which));
    }

    /// Asserts that this thread holds none of the log's locks.
    pub(crate) fn none() {
        #[cfg(all(debug_assertions, not(loom)))]
        HELD.with(|h| {
            assert!(
                h.get() == 0,
                "a waiter is woken or a callback runs while a log lock is held"
            );
        });
    }
}
