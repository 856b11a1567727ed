//! Durability: the watermarks, and the waiters on them. Register, wait,
//! publish, poison; every wake fires with no lock held.

use std::task::Waker;
use std::time::{Duration, Instant};

use wal_io::IoError;

use super::state::{Shared, State, StateGuard, held};
use crate::WalError;
use crate::sync::thread::{self, Thread};
use crate::sync::{Ordering, StdArc};

/// Something waiting for an LSN to become durable.
pub(crate) enum Wake {
    Thread(Thread),
    Task(Waker),
    Callback(Box<dyn FnOnce(Result<(), WalError>) + Send>),
}

impl Wake {
    fn fire(self, result: &Result<(), WalError>) {
        match self {
            Wake::Thread(t) => t.unpark(),
            Wake::Task(w) => w.wake(),
            Wake::Callback(f) => f(result.clone()),
        }
    }
}

/// Waiters taken out of the state, to wake once every lock is released: a
/// callback may call back into the log, and a waker may run anything.
#[must_use = "waiters taken out must be woken, with no lock held"]
pub(crate) struct Woken {
    /// Each publication's waiters with the result it gave them, in order.
    groups: Vec<(Vec<Wake>, Result<(), WalError>)>,
}

impl Woken {
    pub(super) fn none() -> Self {
        Woken { groups: Vec::new() }
    }

    fn of(wakes: Vec<Wake>, result: Result<(), WalError>) -> Self {
        Woken {
            groups: vec![(wakes, result)],
        }
    }

    /// The error a failure gave these waiters, if one did: for the caller
    /// whose call failed with them.
    pub(super) fn error(&self) -> Option<WalError> {
        self.groups.iter().rev().find_map(|(_, r)| r.clone().err())
    }

    pub(super) fn is_empty(&self) -> bool {
        self.groups.iter().all(|(w, _)| w.is_empty())
    }

    /// Adds `other`'s waiters, each keeping the result its publication gave.
    pub(super) fn extend(&mut self, mut other: Woken) {
        self.groups.append(&mut other.groups);
    }

    /// Unparks the blocked threads among them now, leaving the rest (task
    /// wakers, callbacks) for [`Woken::fire`]. An unpark runs no code of the
    /// caller's, so it is safe under a lock; the buffered writer does it
    /// before it lets go of `io`, which batches better (docs/DECISIONS.md).
    pub(super) fn unpark_threads(&mut self) {
        for (wakes, _) in &mut self.groups {
            wakes.retain(|w| match w {
                Wake::Thread(t) => {
                    t.unpark();
                    false
                }
                _ => true,
            });
        }
    }

    /// Wakes them all, in order. No log lock may be held.
    pub(super) fn fire(mut self) {
        if self.is_empty() {
            self.groups.clear();
            return;
        }
        held::none();
        for (wakes, result) in std::mem::take(&mut self.groups) {
            for w in wakes {
                w.fire(&result);
            }
        }
    }
}

impl Drop for Woken {
    fn drop(&mut self) {
        // Waiters taken out and never woken would wait for ever.
        debug_assert!(
            self.is_empty() || std::thread::panicking(),
            "waiters were taken out and never woken"
        );
    }
}

/// Why the write path stopped the log.
#[derive(Debug)]
pub(crate) enum Failure {
    /// A write, sync or directory change failed.
    Io(IoError),
    /// An invariant of the engine broke (a bug): encoding a frame that was
    /// checked when it was appended failed, say.
    Internal(String),
}

impl From<IoError> for Failure {
    fn from(e: IoError) -> Self {
        Failure::Io(e)
    }
}

/// The failure a poisoned log keeps, shared with every error it returns.
#[derive(Debug, Clone)]
pub(crate) enum Poison {
    Io(StdArc<IoError>),
    Internal(String),
}

impl Poison {
    /// The error for a call made after the failure.
    pub(crate) fn later(&self) -> WalError {
        match self {
            Poison::Io(e) => WalError::Poisoned(e.clone()),
            Poison::Internal(detail) => WalError::Internal {
                detail: detail.clone(),
            },
        }
    }

    /// The error for a waiter whose own write or sync failed.
    fn own(&self) -> WalError {
        match self {
            Poison::Io(e) => WalError::Io(e.clone()),
            Poison::Internal(_) => self.later(),
        }
    }
}

/// What a registration found.
pub(crate) enum Registered {
    /// Decided already: the waiter was not registered.
    Now(Result<(), WalError>),
    /// Registered under this number; it fires once the LSN is decided.
    Later(u64),
}

/// The outcome of waiting for `lsn`, if the state already decides it.
///
/// Fail-stop: once poisoned, every wait fails, even for an LSN made durable
/// before. A waiter whose LSN was in flight gets the I/O error itself, as the
/// failed write or sync was its own.
fn decided(st: &State, lsn: u64) -> Option<Result<(), WalError>> {
    if let Some(p) = &st.poisoned {
        return Some(Err(if lsn > st.durable { p.own() } else { p.later() }));
    }
    if st.durable >= lsn {
        return Some(Ok(()));
    }
    // A `truncate_back` since the wait began took the LSN away (a waiter it
    // woke on the way may find this only now).
    (lsn >= st.next_lsn).then_some(Err(WalError::BeyondEnd {
        lsn,
        next: st.next_lsn,
    }))
}

/// The same for a tail's wait, which asks for no sync and may wait for an
/// LSN not yet appended: the log closing decides it too.
fn decided_passive(st: &State, lsn: u64) -> Option<Result<(), WalError>> {
    if st.durable >= lsn {
        return Some(Ok(()));
    }
    if let Some(p) = &st.poisoned {
        return Some(Err(p.later()));
    }
    st.closing.then_some(Err(WalError::Closed))
}

/// The instant `timeout` after `now`, or `None` if it is too far to count
/// (a wait that long is a wait without a deadline).
pub(super) fn deadline_after(now: Instant, timeout: Duration) -> Option<Instant> {
    now.checked_add(timeout)
}

impl Shared {
    /// The last LSN known durable, without a lock.
    pub(crate) fn durable_lsn(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    fn insert_waiter(st: &mut State, lsn: u64, wake: Wake) -> u64 {
        let id = st.next_waiter;
        st.next_waiter += 1;
        st.waiters.insert((lsn, id), wake);
        id
    }

    /// Registers `wake` for `lsn` and asks the owner for a sync covering it,
    /// unless the state decides it already.
    pub(crate) fn register(&self, lsn: u64, wake: impl FnOnce() -> Wake) -> Registered {
        let (registered, asked) = self.register_asking(lsn, wake);
        if asked {
            self.work.notify_one();
        }
        registered
    }

    /// [`Shared::register`] without waking the owner: also returns whether
    /// this registration raised the sync mark, in which case the caller
    /// must lead a round covering it or wake the owner.
    fn register_asking(&self, lsn: u64, wake: impl FnOnce() -> Wake) -> (Registered, bool) {
        let mut st = self.state();
        if let Some(result) = decided(&st, lsn) {
            return (Registered::Now(result), false);
        }
        if lsn >= st.next_lsn {
            let next = st.next_lsn;
            return (
                Registered::Now(Err(WalError::BeyondEnd { lsn, next })),
                false,
            );
        }
        let id = Self::insert_waiter(&mut st, lsn, wake());
        let asked = st.sync_upto < lsn;
        if asked {
            st.sync_upto = lsn;
        }
        (Registered::Later(id), asked)
    }

    /// Registers a tail's `wake` for `lsn`: no sync asked for, and `lsn`
    /// may be past the last appended.
    pub(crate) fn register_passive(&self, lsn: u64, wake: impl FnOnce() -> Wake) -> Registered {
        let mut st = self.state();
        if let Some(result) = decided_passive(&st, lsn) {
            return Registered::Now(result);
        }
        Registered::Later(Self::insert_waiter(&mut st, lsn, wake()))
    }

    /// Takes a registration out again (a wait that timed out, a future
    /// dropped); nothing if it fired already.
    pub(crate) fn deregister(&self, lsn: u64, id: u64) {
        drop(self.state().waiters.remove(&(lsn, id)));
    }

    /// The outcome for a registered waiter, if decided: `passive` for a
    /// tail's wait. A registration still waiting gets `waker` in place of
    /// the one it had, so repeated polls keep one entry.
    ///
    /// A registration that is gone although the wait is not decided was
    /// woken by a publication that a `truncate_back` then took back: it is
    /// registered again, under the number returned.
    pub(crate) fn poll_registered(
        &self,
        lsn: u64,
        id: u64,
        passive: bool,
        waker: &Waker,
    ) -> Registered {
        let mut st = self.state();
        let result = if passive {
            decided_passive(&st, lsn)
        } else {
            decided(&st, lsn)
        };
        if let Some(result) = result {
            drop(st.waiters.remove(&(lsn, id)));
            return Registered::Now(result);
        }
        match st.waiters.get_mut(&(lsn, id)) {
            Some(Wake::Task(w)) => {
                if !w.will_wake(waker) {
                    *w = waker.clone();
                }
                Registered::Later(id)
            }
            _ => Registered::Later(Self::insert_waiter(&mut st, lsn, Wake::Task(waker.clone()))),
        }
    }

    /// The outcome of waiting for `lsn`, if it is already decided.
    fn settled(&self, lsn: u64) -> Option<Result<(), WalError>> {
        decided(&self.state(), lsn)
    }

    /// Waits until `lsn` is durable, asking the owner to sync if its policy
    /// would not, or leading the round itself if no one is doing I/O.
    ///
    /// It leads before it wakes anyone: a thread committing alone writes and
    /// syncs its own record, and the owner sleeps through it. Only when
    /// someone else holds the I/O does it wake the owner (once), since that
    /// holder may finish with a round that does not cover this LSN.
    pub(crate) fn wait_durable(&self, lsn: u64) -> Result<(), WalError> {
        let (registered, asked) = self.register_asking(lsn, || Wake::Thread(thread::current()));
        if let Registered::Now(result) = registered {
            return result;
        }
        let mut owner_told = !asked;
        loop {
            if !self.try_lead() {
                if !owner_told {
                    self.work.notify_one();
                    owner_told = true;
                }
                // On std an unpark before park is never lost; loom's model of
                // a blocked lock can swallow it, and looking first keeps the
                // models honest about what the code relies on.
                if self.settled(lsn).is_none() {
                    thread::park();
                }
            }
            // Whatever decided the wait also took this waiter out: a
            // publication splits off every waiter it covers and a poison
            // takes them all, under the lock that decides. No second lock
            // round to deregister it on the commit path.
            if let Some(result) = self.settled(lsn) {
                return result;
            }
        }
    }

    /// Waits, without asking for a sync, until `lsn` is durable or `timeout`
    /// passes (`Ok(false)`). The registration goes when the wait ends.
    pub(crate) fn wait_passive(
        &self,
        lsn: u64,
        timeout: Option<Duration>,
    ) -> Result<bool, WalError> {
        let deadline = timeout.and_then(|t| deadline_after(Instant::now(), t));
        let mut id = match self.register_passive(lsn, || Wake::Thread(thread::current())) {
            Registered::Now(result) => return result.map(|()| true),
            Registered::Later(id) => id,
        };
        loop {
            match deadline {
                None => thread::park(),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        self.deregister(lsn, id);
                        return Ok(false);
                    }
                    thread::park_timeout(d - now);
                }
            }
            let mut st = self.state();
            if let Some(result) = decided_passive(&st, lsn) {
                drop(st.waiters.remove(&(lsn, id)));
                return result.map(|()| true);
            }
            if !st.waiters.contains_key(&(lsn, id)) {
                // Woken by a publication a `truncate_back` then took back.
                id = Self::insert_waiter(&mut st, lsn, Wake::Thread(thread::current()));
            }
        }
    }

    /// Stops the log: every later call fails, every waiter and every
    /// appender waiting for queue space is woken, and the owner thread is
    /// told to stop. Returns the waiters to wake once the locks are released.
    pub(super) fn poison(&self, st: &mut StateGuard<'_>, failure: Failure) -> Woken {
        let poison = match failure {
            Failure::Io(error) => {
                tracing::error!(%error, "write-ahead log poisoned");
                Poison::Io(StdArc::new(error))
            }
            Failure::Internal(detail) => {
                tracing::error!(%detail, "write-ahead log stopped by an internal error");
                Poison::Internal(detail)
            }
        };
        let result = Err(poison.own());
        if st.poisoned.is_none() {
            st.poisoned = Some(poison);
        }
        self.work.notify_all();
        self.space.notify_all();
        Woken::of(
            std::mem::take(&mut st.waiters).into_values().collect(),
            result,
        )
    }

    /// Raises the durable watermark to `d` (never lowers it).
    fn advance_durable(&self, st: &mut StateGuard<'_>, d: u64) {
        st.durable = st.durable.max(d);
        st.durable_held = st.durable_held.max(st.durable);
        self.durable.store(st.durable, Ordering::Release);
    }

    /// Takes out the waiters the durable watermark now answers.
    fn take_durable_waiters(&self, st: &mut StateGuard<'_>) -> Woken {
        let after = (st.durable + 1, 0);
        let later = st.waiters.split_off(&after);
        Woken::of(
            std::mem::replace(&mut st.waiters, later)
                .into_values()
                .collect(),
            Ok(()),
        )
    }

    /// Syncs the directory from a thread other than the owner (the
    /// preparer). The owner's syncs that pass meanwhile are held back: a
    /// directory sync that fails may have lost the entry of the segment
    /// they wrote to, so it poisons the log before anything more is
    /// published, and only a sync that passed publishes what was held.
    /// Returns whether it passed (if not, the log is poisoned).
    pub(super) fn sync_dir_aside(&self) -> bool {
        self.state().dir_syncs += 1;
        let synced = self.storage.sync_dir();
        let mut st = self.state();
        st.dir_syncs -= 1;
        let woken = match synced {
            Err(error) => self.poison(&mut st, Failure::Io(error)),
            Ok(()) if st.dir_syncs == 0 && st.poisoned.is_none() => {
                let held = st.durable_held;
                self.advance_durable(&mut st, held);
                st.check_watermarks();
                self.take_durable_waiters(&mut st)
            }
            Ok(()) => Woken::none(),
        };
        let passed = st.poisoned.is_none();
        drop(st);
        woken.fire();
        passed
    }

    /// Takes every waiter out for closing: they get [`WalError::Closed`].
    pub(super) fn take_all_waiters(&self, st: &mut StateGuard<'_>) -> Woken {
        Woken::of(
            std::mem::take(&mut st.waiters).into_values().collect(),
            Err(WalError::Closed),
        )
    }

    /// Publishes the outcome of I/O: the new written and durable
    /// watermarks, or the poison. Returns the waiters it decided, to wake
    /// once every lock is released.
    pub(super) fn publish(&self, outcome: Result<(Option<u64>, Option<u64>), Failure>) -> Woken {
        let mut st = self.state();
        let woken = match outcome {
            // Poisoned meanwhile by another thread (the preparer's failed
            // directory sync, say): what this I/O did is no longer counted,
            // as a sync that passed after a failed one proves nothing.
            Ok(_) if st.poisoned.is_some() => Woken::none(),
            Ok((written, durable)) => {
                if let Some(w) = written {
                    st.written = st.written.max(w);
                    self.written.store(st.written, Ordering::Release);
                }
                if let Some(d) = durable {
                    st.last_sync = Instant::now();
                    if st.dir_syncs > 0 {
                        st.durable_held = st.durable_held.max(d);
                    } else {
                        self.advance_durable(&mut st, d);
                    }
                }
                st.check_watermarks();
                self.take_durable_waiters(&mut st)
            }
            Err(e) => self.poison(&mut st, e),
        };
        // More may have arrived during the I/O; the owner decides about it.
        if st.frame.is_some() {
            self.work.notify_one();
        }
        let space_waited = st.space_waiters > 0;
        drop(st);
        if space_waited {
            self.space.notify_all();
        }
        woken
    }
}
