//! The store: the write path (log first, then the memtable) and the public
//! [`Store`]; opening, reads, the version set and the background worker
//! live in the submodules.

use std::collections::BTreeMap;
use std::future::Future;
use std::ops::Bound;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::task::{Context, Poll};
use std::thread::JoinHandle;

use bytes::Bytes;
use wal_engine::{DurableFuture, PendingCommit, SyncPolicy, Wal};
use wal_io::Storage;

use crate::batch::{Op, WriteBatch};
use crate::locks::{lock, read, write};
use crate::memtable::Memtable;
use crate::table::{self, Table};
use crate::txn::conflict::Recent;
use crate::visibility::Visibility;
use crate::{Durability, KvError, Options};

mod open;
mod read;
mod stats;
mod version;
mod worker;

pub use read::{Iter, Snapshot};
pub use stats::{LevelStats, Stats};
use version::Tree;
use worker::Work;

/// The store's shared state: the log, the version set, readers' views and
/// the worker's queue.
pub(crate) struct Inner {
    pub(crate) wal: Wal,
    storage: Arc<dyn Storage>,
    pub(crate) options: Options,
    cache: Arc<table::BlockCache>,
    /// Held while a write is checked, logged and applied, so LSN order is
    /// apply order; guards the keys written since the oldest open
    /// read-write transaction's snapshot, which commits are checked against.
    write_lock: Mutex<Recent>,
    /// Snapshots of the open read-write transactions (LSN -> how many).
    /// Locked after `write_lock`, before `snapshots`.
    pub(crate) txns: Mutex<BTreeMap<u64, usize>>,
    tree: RwLock<Tree>,
    /// Which applied batches readers see (a `Sync` batch once durable).
    pub(crate) visibility: Visibility,
    snapshots: Mutex<BTreeMap<u64, usize>>,
    work: Mutex<Work>,
    work_cv: Condvar,
    done_cv: Condvar,
    obsolete: Mutex<Vec<Arc<Table>>>,
    user_bytes: AtomicU64,
    table_bytes_written: AtomicU64,
    gets: AtomicU64,
    probes: AtomicU64,
}

/// A durable, versioned key-value store on the write-ahead log.
///
/// ```
/// use wal_kv::{Durability, Options, Store, WriteBatch};
///
/// let disk = wal_io::sim::SimDisk::new(1);
/// let store = Store::open_with(disk.storage(), Options::default())?;
/// let mut batch = WriteBatch::new();
/// batch.put("apple", "red").put("kiwi", "green");
/// let lsn = store.write(&batch, Durability::Sync)?;
/// let before = store.snapshot();
/// store.delete("apple")?;
/// assert_eq!(store.get(b"apple")?, None);
/// assert_eq!(before.get(b"apple")?.as_deref(), Some(&b"red"[..]));
/// assert!(before.lsn() >= lsn);
/// store.checkpoint()?; // memtable -> sorted table; the log is cut in front
/// let all = store.scan(std::ops::Bound::Unbounded, std::ops::Bound::Unbounded)?;
/// assert_eq!(all.len(), 1);
/// # Ok::<(), wal_kv::KvError>(())
/// ```
pub struct Store {
    pub(crate) inner: Arc<Inner>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("visible_lsn", &self.inner.visibility.visible())
            .finish_non_exhaustive()
    }
}

/// A `Sync` batch of this many operations or more is handed to the log's
/// owner thread as soon as it is appended (under `SyncPolicy::Always`), so
/// the write and sync overlap the memtable's insertion; a smaller one is
/// written by its own thread when it waits (the log's quiet commit), which
/// saves the two thread switches a hand-off costs. One put (K1) must not
/// pay them; a batch of 1000 (K2's load) gains from the overlap. 64 lies
/// between and was not swept (docs/DECISIONS.md).
const SYNC_OVERLAP_OPS_MIN: usize = 64;

/// A batch logged and applied: a small `Sync` one still to be waited for
/// (the wait leads the log's write when it is idle), or one at an LSN (a
/// `Buffered` one, or a large `Sync` one handed to the log's owner, which
/// the caller still waits for).
pub(crate) enum Logged<'a> {
    Pending(PendingCommit<'a>),
    At(u64),
}

impl Logged<'_> {
    pub(crate) fn lsn(&self) -> u64 {
        match self {
            Logged::Pending(commit) => commit.lsns().start,
            Logged::At(lsn) => *lsn,
        }
    }
}

/// A batch applied and visible, resolving once durable (see
/// [`Store::write_async`]).
pub struct Commit {
    lsn: u64,
    durable: DurableFuture,
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Commit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Commit").field("lsn", &self.lsn).finish()
    }
}

impl Commit {
    /// The future of `lsn`, applied as a `Sync` write: it becomes visible
    /// once durable, whether or not the future is ever polled.
    pub(crate) fn new(inner: &Arc<Inner>, lsn: u64) -> Commit {
        let owner = Arc::clone(inner);
        inner.wal.on_durable(lsn, move |result| {
            if result.is_ok() {
                owner.visibility.durable(lsn);
            }
        });
        Commit {
            lsn,
            durable: inner.wal.durable(lsn),
            inner: Arc::clone(inner),
        }
    }

    /// The batch's LSN.
    pub fn lsn(&self) -> u64 {
        self.lsn
    }
}

impl Future for Commit {
    type Output = Result<u64, KvError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let lsn = self.lsn;
        let polled = Pin::new(&mut self.durable).poll(cx);
        if let Poll::Ready(Ok(())) = polled {
            // Its own reader sees it when the future says it is durable,
            // even if the log's callback has not run yet.
            self.inner.visibility.durable(lsn);
        }
        polled.map(|r| r.map(|()| lsn).map_err(KvError::from))
    }
}

impl Store {
    /// Applies `batch` atomically; returns its LSN.
    ///
    /// # Errors
    /// Limits ([`KvError::KeyTooLarge`], [`KvError::ValueTooLarge`],
    /// [`KvError::EmptyBatch`], [`KvError::BatchTooLarge`]); the log's
    /// errors (a failed write poisons the log: reopen); [`KvError::Failed`]
    /// after a background failure.
    pub fn write(&self, batch: &WriteBatch, durability: Durability) -> Result<u64, KvError> {
        let sync = durability == Durability::Sync;
        let logged = self.inner.apply(batch, sync, |_| Ok(()))?;
        self.inner.settle(logged, durability)
    }

    /// Applies `batch` at once and returns a future that resolves with its
    /// LSN once it is durable; it needs no particular async runtime.
    ///
    /// # Errors
    /// As [`Store::write`], for the apply; durability errors come from the future.
    pub fn write_async(&self, batch: &WriteBatch) -> Result<Commit, KvError> {
        let lsn = self.inner.apply(batch, true, |_| Ok(()))?.lsn();
        Ok(Commit::new(&self.inner, lsn))
    }

    /// Whether a write now may wait for a checkpoint (the memtable is full,
    /// or one is still being written): a hint for an async caller choosing
    /// whether to write on its own thread. It can be stale by the time the
    /// write runs; correctness never depends on it.
    pub fn write_may_wait(&self) -> bool {
        let tree = read(&self.inner.tree);
        tree.frozen.is_some() || read(&tree.active).bytes() >= self.inner.options.memtable_bytes_max
    }

    /// Sets one key, durably.
    ///
    /// # Errors
    /// As [`Store::write`].
    pub fn put(&self, key: impl Into<Bytes>, value: impl Into<Bytes>) -> Result<u64, KvError> {
        let mut b = WriteBatch::new();
        b.put(key, value);
        self.write(&b, Durability::Sync)
    }

    /// Removes one key, durably.
    ///
    /// # Errors
    /// As [`Store::write`].
    pub fn delete(&self, key: impl Into<Bytes>) -> Result<u64, KvError> {
        let mut b = WriteBatch::new();
        b.delete(key);
        self.write(&b, Durability::Sync)
    }

    /// A consistent view as of now.
    pub fn snapshot(&self) -> Snapshot<'_> {
        let mut snaps = lock(&self.inner.snapshots);
        let lsn = self.inner.visibility.visible();
        *snaps.entry(lsn).or_insert(0) += 1;
        Snapshot { store: self, lsn }
    }

    /// The current value of `key`.
    ///
    /// # Errors
    /// A table read failed or is corrupt.
    pub fn get(&self, key: &[u8]) -> Result<Option<Bytes>, KvError> {
        self.snapshot().get(key)
    }

    /// Current key-value pairs within the bounds, ascending.
    ///
    /// # Errors
    /// As [`Store::get`].
    pub fn scan(&self, lo: Bound<&[u8]>, hi: Bound<&[u8]>) -> Result<Vec<(Bytes, Bytes)>, KvError> {
        self.snapshot().scan(lo, hi)
    }

    /// Current key-value pairs within the bounds, ascending, read lazily
    /// (see [`Snapshot::iter`]); the view stays as of the call while the
    /// iterator lives.
    ///
    /// ```
    /// use std::ops::{Bound, ControlFlow};
    /// use wal_kv::{Options, Store};
    ///
    /// let disk = wal_io::sim::SimDisk::new(2);
    /// let store = Store::open_with(disk.storage(), Options::default())?;
    /// store.put("a", "1")?;
    /// store.put("b", "2")?;
    /// store.checkpoint()?;
    /// store.put("c", "3")?;
    /// let keys: Vec<_> = store
    ///     .iter(Bound::Unbounded, Bound::Unbounded)
    ///     .map(|kv| kv.map(|(k, _)| k))
    ///     .collect::<Result<_, _>>()?;
    /// assert_eq!(keys, ["a", "b", "c"]);
    /// # Ok::<(), wal_kv::KvError>(())
    /// ```
    pub fn iter(&self, lo: Bound<&[u8]>, hi: Bound<&[u8]>) -> Iter<'_> {
        let snapshot = self.snapshot();
        let lsn = snapshot.lsn;
        Iter::new(self, Some(snapshot), lsn, lo, hi, false)
    }

    /// As [`Store::scan`], descending.
    ///
    /// # Errors
    /// As [`Store::get`].
    pub fn scan_rev(
        &self,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
    ) -> Result<Vec<(Bytes, Bytes)>, KvError> {
        self.iter_rev(lo, hi).collect()
    }

    /// As [`Store::iter`], descending: the largest key first, as lazily.
    ///
    /// ```
    /// use std::ops::{Bound, ControlFlow};
    /// use wal_kv::{Options, Store};
    ///
    /// let disk = wal_io::sim::SimDisk::new(3);
    /// let store = Store::open_with(disk.storage(), Options::default())?;
    /// for key in ["a", "b", "c", "d"] {
    ///     store.put(key, "x")?;
    /// }
    /// store.checkpoint()?;
    /// let last_two: Vec<_> = store
    ///     .iter_rev(Bound::Included(&b"b"[..]), Bound::Unbounded)
    ///     .take(2)
    ///     .map(|kv| kv.map(|(k, _)| k))
    ///     .collect::<Result<_, _>>()?;
    /// assert_eq!(last_two, ["d", "c"]);
    /// # Ok::<(), wal_kv::KvError>(())
    /// ```
    pub fn iter_rev(&self, lo: Bound<&[u8]>, hi: Bound<&[u8]>) -> Iter<'_> {
        let snapshot = self.snapshot();
        let lsn = snapshot.lsn;
        Iter::new(self, Some(snapshot), lsn, lo, hi, true)
    }

    /// Checkpoints now: everything written so far goes into a table, the
    /// manifest is replaced and the log cut in front of it. Returns when done.
    ///
    /// # Errors
    /// The checkpoint's I/O errors ([`KvError::Failed`] after a background failure).
    pub fn checkpoint(&self) -> Result<(), KvError> {
        let upto = {
            let _w = lock(&self.inner.write_lock);
            match self.inner.freeze()? {
                Some(upto) => upto,
                // Nothing new to freeze: the last frozen memtable's table
                // may be written while its log cut is still under way.
                None => lock(&self.inner.work).frozen_upto,
            }
        };
        // Done once a checkpoint covering this memtable's LSNs finished,
        // the log's cut included. (Counting checkpoints instead could count
        // one that finished while `freeze` waited for it, before this one
        // ran; and the frozen memtable leaves before the log is cut.)
        self.inner.wait_work(|w| w.checkpointed_upto >= upto)
    }

    /// Merges every table into one sorted run at the deepest level in use
    /// now, dropping every version and tombstone no reader needs; returns
    /// when done. The background worker compacts step by step on its own;
    /// this is for when reads matter more than the rewrite.
    ///
    /// # Errors
    /// As [`Store::checkpoint`].
    pub fn compact(&self) -> Result<(), KvError> {
        let mut work = lock(&self.inner.work);
        let done = work.full_compactions;
        work.compact = true;
        self.inner.work_cv.notify_all();
        drop(work);
        self.inner.wait_work(|w| w.full_compactions > done)
    }

    /// Returns once the background worker is idle: no checkpoint pending
    /// and no compaction step due. Writes meanwhile may start more work;
    /// this waits for that too.
    ///
    /// # Errors
    /// As [`Store::checkpoint`].
    pub fn wait_idle(&self) -> Result<(), KvError> {
        self.inner
            .wait_work(|w| !(w.busy || w.checkpoint || w.compact || w.reshape))
    }

    /// The log underneath (for its stats and watermarks).
    pub fn log(&self) -> &Wal {
        &self.inner.wal
    }

    /// Checkpoints the memtable, then stops the background worker and
    /// closes the log, so the next open has nothing to replay: a close
    /// costs one table write of up to `memtable_bytes_max`, and saves the
    /// next open replaying that much log into memory. Everything written
    /// with [`Durability::Sync`] is durable already; buffered batches are
    /// made durable first (a table never holds what the log could lose).
    /// Dropping the store instead skips the checkpoint, as a crash would:
    /// the next open replays the log.
    ///
    /// # Errors
    /// A failed final sync; else a failed checkpoint, or the worker's
    /// earlier failure (the log is synced all the same).
    pub fn close(self) -> Result<(), KvError> {
        // Synced even if the checkpoint failed: what was written stays in
        // the log, for the next open to replay.
        let checkpointed = self.checkpoint();
        self.inner.wal.sync()?;
        checkpointed
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        lock(&self.inner.work).closing = true;
        self.inner.work_cv.notify_all();
        if let Some(worker) = lock(&self.worker).take() {
            let _ = worker.join();
        }
    }
}

impl Inner {
    fn check_failed(&self) -> Result<(), KvError> {
        match &lock(&self.work).failed {
            Some(e) => Err(KvError::Failed(e.clone())),
            None => Ok(()),
        }
    }

    /// Waits for what `durability` asks of applied write `logged`; returns
    /// its LSN.
    pub(crate) fn settle(
        &self,
        logged: Logged<'_>,
        durability: Durability,
    ) -> Result<u64, KvError> {
        let lsn = logged.lsn();
        if durability == Durability::Sync {
            // The wait rides on the log's group commit, leading the write
            // when the log is idle; the write becomes visible here (or
            // earlier, by a later write's durability).
            match logged {
                Logged::Pending(commit) => {
                    commit.wait()?;
                }
                Logged::At(lsn) => self.wal.wait_durable(lsn)?,
            }
            self.visibility.durable(lsn);
        }
        Ok(lsn)
    }

    /// Logs and applies a batch once `check` passes against the writes
    /// since the oldest open transaction (under the write lock, so nothing
    /// commits in between); returns its LSN. With `sync` the batch is seen
    /// only once it is durable ([`Visibility`]); otherwise at once.
    pub(crate) fn apply(
        &self,
        batch: &WriteBatch,
        sync: bool,
        check: impl FnOnce(&mut Recent) -> Result<(), KvError>,
    ) -> Result<Logged<'_>, KvError> {
        self.check_failed()?;
        let record = batch.encode(self.options.key_bytes_max, self.options.value_bytes_max)?;
        let max = self.options.log.record_bytes_max;
        if record.len() > max {
            return Err(KvError::BatchTooLarge {
                bytes: record.len(),
                max,
            });
        }
        let mut recent = lock(&self.write_lock);
        check(&mut recent)?;
        let active = {
            let tree = read(&self.tree);
            Arc::clone(&tree.active)
        };
        if read(&active).bytes() >= self.options.memtable_bytes_max {
            // Memory is full: freeze, which waits (bounded by one
            // checkpoint) while an earlier frozen memtable is being written.
            self.freeze()?;
        }
        let active = {
            let tree = read(&self.tree);
            Arc::clone(&tree.active)
        };
        // A large `Sync` batch hands its record to the log's owner thread
        // at once, which writes and syncs it while this thread fills the
        // memtable below. Only under `Always`: under the other policies the
        // owner would not sync it before the wait asks, so the hand-off
        // would cost its switches and overlap nothing.
        let hand_off = batch.ops().len() >= SYNC_OVERLAP_OPS_MIN
            && matches!(self.options.log.sync, SyncPolicy::Always);
        let logged = if sync && !hand_off {
            Logged::Pending(self.wal.begin_commit(&[&record])?)
        } else {
            Logged::At(self.wal.append(&record)?)
        };
        let lsn = logged.lsn();
        write(&active).apply(batch, lsn);
        self.visibility.applied_batch(lsn, sync);
        recent.record(lsn, batch.ops().iter().map(Op::key));
        let (floor, open) = self.txn_floor();
        recent.prune(floor, open);
        drop(recent);
        self.user_bytes
            .fetch_add(record.len() as u64, Ordering::Relaxed);
        Ok(logged)
    }

    /// The LSN no open read-write transaction's snapshot is below: the
    /// oldest one's, or the visible LSN (a transaction beginning now reads
    /// at it or later). Taken under the transactions' lock, as a beginning
    /// transaction takes its snapshot, so none can begin below it unseen.
    /// Also whether any is open.
    pub(crate) fn txn_floor(&self) -> (u64, bool) {
        let txns = lock(&self.txns);
        let visible = self.visibility.visible();
        let oldest = txns.keys().next();
        (
            oldest.map_or(visible, |&s| s.min(visible)),
            oldest.is_some(),
        )
    }

    /// Makes the active memtable the frozen one and wakes the worker. The
    /// caller holds the write lock. Returns the LSN the frozen memtable
    /// covers, or `None` when there was nothing to freeze.
    fn freeze(&self) -> Result<Option<u64>, KvError> {
        self.wait_work(|_| read(&self.tree).frozen.is_none())?;
        // Allocated before the tree's lock, which readers wait on.
        let fresh = Memtable::new(self.options.memtable_bytes_max);
        let mut tree = write(&self.tree);
        if read(&tree.active).is_empty() {
            return Ok(None);
        }
        // Everything applied goes with the memtable, visible yet or not:
        // the checkpoint LSN must cover every LSN its table holds.
        let upto = self.visibility.applied();
        let full = std::mem::replace(&mut tree.active, Arc::new(RwLock::new(fresh)));
        tree.frozen = Some((full, upto));
        tree.refresh_view();
        drop(tree);
        let mut work = lock(&self.work);
        work.checkpoint = true;
        work.frozen_upto = upto;
        drop(work);
        self.work_cv.notify_all();
        Ok(Some(upto))
    }
}
