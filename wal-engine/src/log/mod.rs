//! The log: appenders, the I/O owner thread, watermarks and waiters.
//!
//! One job per file, in the order data flows: [`open`] (lock, clean-close
//! record, recovery, the tail's repair, threads), [`append`] (records into
//! the shared frame), [`state`] (what the threads share, the lock order),
//! [`policy`] (what the next round does, a pure function), [`writer`]
//! (rounds: the buffered and the pipelined writer, the owner thread,
//! leading committers), [`placement`] (fit, seal, rotate, spares), [`pipe`]
//! (the pipelined writer's queue), [`durability`] (watermarks and waiters),
//! [`truncate`], [`close`].

mod append;
mod close;
mod cut;
mod durability;
mod open;
mod pipe;
mod placement;
mod policy;
mod state;
mod truncate;
mod writer;

use std::ops::ControlFlow;
use std::path::Path;

use wal_io::{BackendChoice, Storage};

pub use append::PendingCommit;
pub(crate) use durability::{Registered, Wake};
pub(crate) use state::Shared;

use crate::recovery::{RecoveryReport, Replay, ReplayFrom, Replayed};
use crate::stats::Stats;
use crate::sync::thread::JoinHandle;
use crate::sync::{Arc, Mutex, Ordering, StdArc};
use crate::{Options, Reader, WalError};

/// A segmented, group-committed write-ahead log. See the crate docs for the
/// durability contract it keeps.
pub struct Wal {
    shared: Arc<Shared>,
    owner: Mutex<Option<JoinHandle<()>>>,
    preparer: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("backend", &self.shared.storage.backend())
            .field("durable_lsn", &self.durable_lsn())
            .finish()
    }
}

impl Wal {
    /// Opens (creating if empty) the log in directory `dir`, which must
    /// exist, with the `io_uring`-capable backend where the kernel allows it.
    ///
    /// # Errors
    /// [`WalError::InvalidOptions`], an I/O error (the directory lock is held
    /// by another process: [`IoError::Locked`](wal_io::IoError::Locked)), or [`WalError::Corrupt`] when
    /// recovery finds damage the recovery mode may not repair.
    pub fn open(
        dir: impl AsRef<Path>,
        options: Options,
    ) -> Result<(Wal, RecoveryReport), WalError> {
        let storage = wal_io::open_dir(dir, BackendChoice::Auto)?;
        Wal::open_with(storage, options)
    }

    /// Opens the log on any [`Storage`], such as a simulated disk.
    ///
    /// ```
    /// use wal_engine::{Options, Wal};
    /// use wal_io::sim::{CrashMode, SimDisk};
    ///
    /// let disk = SimDisk::new(7);
    /// let (wal, _) = Wal::open_with(disk.storage(), Options::default())?;
    /// wal.commit(b"kept")?;
    /// wal.append(b"maybe lost")?;
    /// disk.crash(CrashMode::LoseAll); // power loss: unsynced data is gone
    /// drop(wal);
    ///
    /// let (_wal, report) = Wal::open_with(disk.storage(), Options::default())?;
    /// assert!(report.records >= 1);
    /// # Ok::<(), wal_engine::WalError>(())
    /// ```
    ///
    /// # Errors
    /// As [`Wal::open`].
    pub fn open_with(
        storage: StdArc<dyn Storage>,
        options: Options,
    ) -> Result<(Wal, RecoveryReport), WalError> {
        open::open(storage, options, None)
    }

    /// Opens the log in directory `dir` as [`Wal::open`] does, and hands
    /// every record from `from` on to `each`, in LSN order, while recovery
    /// reads it: a replay at startup reads the log once instead of twice
    /// (once to recover, once more with a [`Reader`]).
    ///
    /// `each` gets exactly the records a [`Reader`] from `from` would yield
    /// right after the open, up to the last recovered one, unless it returns
    /// [`ControlFlow::Break`], after which it gets no more (the log still
    /// opens). It may see records before recovery refuses to open the log
    /// (a [`WalError::Corrupt`] in a later segment, say): on an error, throw
    /// away what it built. At most a few whole segments are in memory at a
    /// time.
    ///
    /// Each record is lent ([`Replayed`]): its bytes borrowed from what
    /// recovery read, at no cost per record; [`Replayed::to_bytes`] keeps
    /// them without a copy.
    ///
    /// ```
    /// use std::ops::ControlFlow;
    /// use wal_engine::{Options, ReplayFrom, Wal};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let (wal, _) = Wal::open(dir.path(), Options::default())?;
    /// for word in ["a", "b", "c"] {
    ///     wal.commit(word.as_bytes())?;
    /// }
    /// drop(wal);
    ///
    /// let mut state = Vec::new();
    /// let from = ReplayFrom::Lsn(2); // or ReplayFrom::Start for all there is
    /// let (wal, report) = Wal::open_replaying(dir.path(), Options::default(), from, |record| {
    ///     state.push((record.lsn, record.to_bytes()));
    ///     ControlFlow::Continue(())
    /// })?;
    /// assert_eq!(state, [(2, "b".into()), (3, "c".into())]);
    /// assert_eq!((report.next_lsn, wal.durable_lsn()), (4, 3));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Wal::open`], and [`WalError::Purged`] if `from` is an LSN below
    /// the log's first (use [`ReplayFrom::Start`] for all there is).
    pub fn open_replaying(
        dir: impl AsRef<Path>,
        options: Options,
        from: ReplayFrom,
        each: impl FnMut(Replayed<'_>) -> ControlFlow<()>,
    ) -> Result<(Wal, RecoveryReport), WalError> {
        let storage = wal_io::open_dir(dir, BackendChoice::Auto)?;
        Wal::open_with_replaying(storage, options, from, each)
    }

    /// [`Wal::open_replaying`] on any [`Storage`], such as a simulated disk.
    ///
    /// ```
    /// use std::ops::ControlFlow;
    /// use wal_engine::{Options, ReplayFrom, Wal};
    /// use wal_io::sim::SimDisk;
    ///
    /// let disk = SimDisk::new(7);
    /// let (wal, _) = Wal::open_with(disk.storage(), Options::default())?;
    /// wal.append_batch(&[b"debit", b"credit"])?;
    /// wal.sync()?;
    /// drop(wal);
    ///
    /// let mut seen = 0;
    /// let (_wal, _) = Wal::open_with_replaying(disk.storage(), Options::default(), ReplayFrom::Start, |_| {
    ///     seen += 1;
    ///     ControlFlow::Break(()) // enough: the log still opens
    /// })?;
    /// assert_eq!(seen, 1);
    /// # Ok::<(), wal_engine::WalError>(())
    /// ```
    ///
    /// # Errors
    /// As [`Wal::open_replaying`].
    pub fn open_with_replaying(
        storage: StdArc<dyn Storage>,
        options: Options,
        from: ReplayFrom,
        mut each: impl FnMut(Replayed<'_>) -> ControlFlow<()>,
    ) -> Result<(Wal, RecoveryReport), WalError> {
        open::open(storage, options, Some(Replay::new(from, &mut each)))
    }

    /// Blocks until every record up to `lsn` is durable, asking for a sync if
    /// the policy would not make one.
    ///
    /// # Errors
    /// [`WalError::BeyondEnd`] for an LSN not yet assigned; [`WalError::Io`]
    /// if the write or sync failed; [`WalError::Poisoned`].
    pub fn wait_durable(&self, lsn: u64) -> Result<(), WalError> {
        self.shared.wait_durable(lsn)
    }

    /// A future that resolves when `lsn` is durable. It needs no particular
    /// runtime (the owner thread wakes it), so it can be awaited on tokio
    /// without `spawn_blocking`.
    ///
    /// ```
    /// # let (wal, _) = wal_engine::Wal::open_with(wal_io::sim::SimDisk::new(1).storage(), Default::default())?;
    /// let lsn = wal.append(b"event")?;
    /// let durable = wal.durable(lsn);
    /// // `durable.await` in async code; any executor can poll it.
    /// # drop(durable);
    /// # Ok::<(), wal_engine::WalError>(())
    /// ```
    pub fn durable(&self, lsn: u64) -> crate::DurableFuture {
        crate::DurableFuture::new(self.shared.clone(), lsn)
    }

    /// Calls `callback` once `lsn` is durable (or with the error if the log
    /// fails first). The callback runs on the thread that made the LSN
    /// durable (the owner thread or a committer), or on this one if the LSN
    /// is already durable, always with none of the log's locks held: it may
    /// call back into the log. Keep it short all the same: the thread that
    /// runs it writes the next batch only after it returns.
    ///
    /// ```
    /// # let (wal, _) = wal_engine::Wal::open_with(wal_io::sim::SimDisk::new(1).storage(), Default::default())?;
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let lsn = wal.append(b"event")?;
    /// wal.on_durable(lsn, move |result| tx.send(result.is_ok()).unwrap());
    /// assert!(rx.recv().unwrap());
    /// # Ok::<(), wal_engine::WalError>(())
    /// ```
    pub fn on_durable(
        &self,
        lsn: u64,
        callback: impl FnOnce(Result<(), WalError>) + Send + 'static,
    ) {
        let mut callback = Some(callback);
        let result = self.shared.register(lsn, || {
            let f = callback.take();
            Wake::Callback(Box::new(move |r| {
                if let Some(f) = f {
                    f(r);
                }
            }))
        });
        if let (Registered::Now(result), Some(f)) = (result, callback) {
            f(result);
        }
    }

    /// Makes everything appended so far durable.
    ///
    /// # Errors
    /// As [`Wal::wait_durable`]: [`WalError::Io`] if this sync is the one
    /// that failed, [`WalError::Poisoned`] once the log is poisoned.
    pub fn sync(&self) -> Result<(), WalError> {
        self.shared.state().check_usable()?;
        self.shared.wait_durable(self.appended_lsn())
    }

    /// The last LSN assigned (0 if none ever was).
    pub fn appended_lsn(&self) -> u64 {
        self.shared.appended.load(Ordering::Acquire)
    }

    /// The last LSN written to the file system (not necessarily durable).
    pub fn written_lsn(&self) -> u64 {
        self.shared.written.load(Ordering::Acquire)
    }

    /// The last LSN known durable: it survives a crash or power loss.
    pub fn durable_lsn(&self) -> u64 {
        self.shared.durable_lsn()
    }

    /// The first LSN still in the log.
    pub fn first_lsn(&self) -> u64 {
        self.shared.first_lsn()
    }

    /// The backend the log's storage runs on.
    pub fn backend(&self) -> wal_io::Backend {
        self.shared.storage.backend()
    }

    /// A reader of durable records from `lsn` on.
    ///
    /// ```
    /// # let (wal, _) = wal_engine::Wal::open_with(wal_io::sim::SimDisk::new(1).storage(), Default::default())?;
    /// for i in 0..5u8 {
    ///     wal.commit(&[i])?;
    /// }
    /// let tail: Vec<u64> = wal.reader(3)?.map(|r| r.map(|r| r.lsn)).collect::<Result<_, _>>()?;
    /// assert_eq!(tail, [3, 4, 5]);
    /// # Ok::<(), wal_engine::WalError>(())
    /// ```
    ///
    /// # Errors
    /// [`WalError::Purged`] if `lsn` was truncated away.
    pub fn reader(&self, lsn: u64) -> Result<Reader, WalError> {
        let first = self.first_lsn();
        if lsn < first {
            return Err(WalError::Purged { lsn, first });
        }
        Ok(Reader::new(self.shared.clone(), lsn))
    }

    /// A snapshot of the counters and histograms.
    pub fn stats(&self) -> Stats {
        let mut stats = self.shared.stats.snapshot();
        let st = self.shared.state();
        stats.appends = st.appends;
        stats.append_bytes = st.append_bytes;
        stats.waiters = st.waiters.len() as u64;
        stats.owner_wakes = st.owner_wakes;
        stats
    }
}
