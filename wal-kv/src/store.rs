//! The store: the write path (log first, then the memtable), reads across
//! memtables and tables at a snapshot, and the background worker that
//! checkpoints and compacts.

use std::collections::BTreeMap;
use std::future::Future;
use std::ops::{Bound, ControlFlow};
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use wal_engine::{DurableFuture, ReplayFrom, Wal, WalError};
use wal_io::{BackendChoice, Storage};

use crate::KvError;
use crate::batch::WriteBatch;
use crate::compaction::{self, Job, LevelIter, Levels, Merge, Outputs, Source};
use crate::manifest::{self, LEVELS_MAX, Manifest};
use crate::memtable::{Entry, Memtable};
use crate::table::{self, Table, TableCompression};
use crate::visibility::Visibility;

/// The store's options.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// The log's options (sync policy for buffered batches, segment size...).
    pub log: wal_engine::Options,
    /// The memtable is checkpointed into a table at this size. Default 64 MiB.
    pub memtable_bytes_max: usize,
    /// Longest key. Default 64 KiB.
    pub key_bytes_max: usize,
    /// Longest value. Default 512 KiB (a batch must fit one log record).
    pub value_bytes_max: usize,
    /// Uncompressed size a table block is cut at. Default 16 KiB.
    pub block_bytes: usize,
    /// Table block compression. Default none.
    pub compression: TableCompression,
    /// Level 0 (the checkpoints' tables, whose key ranges overlap) is
    /// merged into level 1 when it holds more than this many tables.
    /// Default 4.
    pub compaction_trigger: usize,
    /// Bytes level 1 may hold before a table of it is merged into level 2;
    /// each deeper level may hold [`Options::level_size_ratio`] times the
    /// one above. Default 256 MiB.
    pub level1_bytes_target: u64,
    /// How much larger each level below 1 is than the one above. Default 10.
    pub level_size_ratio: u32,
    /// Compaction cuts its output into tables of about this size, so one
    /// step rewrites a bounded part of a level. Default 64 MiB.
    pub table_bytes_max: u64,
    /// Memory for decoded table blocks, shared by all tables; reads that
    /// miss it go to the file (and the page cache). 0 caches nothing.
    /// Default 256 MiB.
    pub block_cache_bytes: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            log: wal_engine::Options::default(),
            memtable_bytes_max: 64 << 20,
            key_bytes_max: 64 << 10,
            value_bytes_max: 512 << 10,
            block_bytes: 16 << 10,
            compression: TableCompression::None,
            compaction_trigger: 4,
            level1_bytes_target: 256 << 20,
            level_size_ratio: 10,
            table_bytes_max: 64 << 20,
            block_cache_bytes: 256 << 20,
        }
    }
}

impl Options {
    fn validate(&self) -> Result<(), KvError> {
        let bad = |m: String| Err(KvError::InvalidOptions(m));
        if self.memtable_bytes_max < 4096 {
            return bad("memtable_bytes_max must be at least 4096".into());
        }
        if self.key_bytes_max == 0 || self.key_bytes_max > u32::MAX as usize {
            return bad("key_bytes_max must be between 1 and 2^32 - 1".into());
        }
        if self.value_bytes_max > u32::MAX as usize {
            return bad("value_bytes_max must be below 2^32".into());
        }
        if self.block_bytes < 256 {
            return bad("block_bytes must be at least 256".into());
        }
        if self.compaction_trigger < 2 {
            return bad("compaction_trigger must be at least 2".into());
        }
        if self.level_size_ratio < 2 {
            return bad("level_size_ratio must be at least 2".into());
        }
        if self.table_bytes_max < 4096 {
            return bad("table_bytes_max must be at least 4096".into());
        }
        if self.level1_bytes_target < self.table_bytes_max {
            return bad("level1_bytes_target must be at least table_bytes_max".into());
        }
        Ok(())
    }
}

/// How durable a batch must be before `write` returns, and before readers
/// see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Durable (survives power loss) when the call returns. Readers see it
    /// only once it is durable, and never if its sync failed: nothing a
    /// crash can take back is ever read.
    #[default]
    Sync,
    /// Applied and visible at once, unless a `Sync` batch before it is still
    /// waiting for its sync (readers see a prefix of the log); durable when
    /// the log's sync policy makes it so (or at the next `Sync` batch), so a
    /// crash may lose it after it was read (RocksDB's `sync = false`).
    Buffered,
}

/// Figures about the store.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Bytes in the active memtable.
    pub memtable_bytes: usize,
    /// Bytes in a memtable being checkpointed.
    pub frozen_bytes: usize,
    /// Live tables, in all levels.
    pub tables: usize,
    /// Tables and their bytes per level: level 0 first (checkpoint output),
    /// then each sorted run below it.
    pub levels: Vec<LevelStats>,
    /// Their size on disk.
    pub table_bytes: u64,
    /// Versions stored in them.
    pub table_entries: u64,
    /// Checkpoints and compactions completed, and their total time.
    pub checkpoints: u64,
    /// Total checkpoint time.
    pub checkpoint_time: Duration,
    /// Compactions completed.
    pub compactions: u64,
    /// Total compaction time.
    pub compaction_time: Duration,
    /// Bytes of batches written by users.
    pub user_bytes: u64,
    /// Bytes written to tables (checkpoints and compactions).
    pub table_bytes_written: u64,
    /// (log bytes + table bytes written) / user bytes.
    pub write_amplification: f64,
    /// Point reads, and tables they read a block of.
    pub gets: u64,
    /// Table blocks probed per get (after the filters).
    pub read_amplification: f64,
    /// The checkpoint LSN: everything at or below it is in tables.
    pub checkpoint_lsn: u64,
    /// Table blocks read from files: reads that missed the block cache, and
    /// compaction's reads, which bypass it.
    pub block_reads: u64,
}

/// One level's share of the tables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LevelStats {
    /// Tables in the level.
    pub tables: usize,
    /// Their size on disk.
    pub bytes: u64,
}

struct Tree {
    active: Arc<RwLock<Memtable>>,
    /// A memtable being checkpointed, and the last LSN it holds.
    frozen: Option<(Arc<RwLock<Memtable>>, u64)>,
    /// The live tables by level (see [`crate::compaction`]).
    levels: Levels,
    manifest: Manifest,
    /// What a read consults, newest first; rebuilt by every change above,
    /// so a read takes one `Arc` rather than copying the lists.
    view: Arc<View>,
}

/// The sources of a read, newest first.
struct View {
    mems: Vec<Arc<RwLock<Memtable>>>,
    levels: Levels,
}

impl Tree {
    fn refresh_view(&mut self) {
        let mut mems = vec![Arc::clone(&self.active)];
        if let Some((m, _)) = &self.frozen {
            mems.push(Arc::clone(m));
        }
        self.view = Arc::new(View {
            mems,
            levels: self.levels.clone(),
        });
    }

    fn tables(&self) -> impl Iterator<Item = &Arc<Table>> {
        self.levels.iter().flatten()
    }
}

#[derive(Default)]
struct Work {
    checkpoint: bool,
    /// A full compaction was asked for.
    compact: bool,
    /// The shape of the levels may call for a compaction step.
    reshape: bool,
    /// The worker is doing any of the above.
    busy: bool,
    closing: bool,
    failed: Option<String>,
    checkpoints: u64,
    compactions: u64,
    full_compactions: u64,
    checkpoint_time: Duration,
    compaction_time: Duration,
}

struct Inner {
    wal: Wal,
    storage: Arc<dyn Storage>,
    options: Options,
    cache: Arc<table::BlockCache>,
    write_lock: Mutex<()>,
    tree: RwLock<Tree>,
    /// Which applied batches readers see (a `Sync` batch once durable).
    visibility: Visibility,
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
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
    inner: Arc<Inner>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("visible_lsn", &self.inner.visibility.visible())
            .finish_non_exhaustive()
    }
}

/// A consistent view as of one LSN; writers go on meanwhile.
#[derive(Debug)]
pub struct Snapshot<'a> {
    store: &'a Store,
    lsn: u64,
}

impl Snapshot<'_> {
    /// The LSN this view is as of: every batch at or below it, none above.
    pub fn lsn(&self) -> u64 {
        self.lsn
    }

    /// The value of `key` in this view.
    ///
    /// # Errors
    /// A table read failed or is corrupt.
    pub fn get(&self, key: &[u8]) -> Result<Option<Bytes>, KvError> {
        self.store.inner.get_at(key, self.lsn)
    }

    /// Key-value pairs with keys within the bounds, ascending.
    ///
    /// # Errors
    /// As [`Snapshot::get`].
    pub fn scan(&self, lo: Bound<&[u8]>, hi: Bound<&[u8]>) -> Result<Vec<(Bytes, Bytes)>, KvError> {
        self.iter(lo, hi).collect()
    }

    /// Key-value pairs with keys within the bounds, ascending, read lazily:
    /// table blocks are read as the iteration reaches them, so a scan of
    /// more data than memory holds runs in bounded memory.
    pub fn iter(&self, lo: Bound<&[u8]>, hi: Bound<&[u8]>) -> Iter<'_> {
        Iter::new(self.store, None, self.lsn, lo, hi, false)
    }

    /// As [`Snapshot::scan`], descending.
    ///
    /// # Errors
    /// As [`Snapshot::get`].
    pub fn scan_rev(
        &self,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
    ) -> Result<Vec<(Bytes, Bytes)>, KvError> {
        self.iter_rev(lo, hi).collect()
    }

    /// As [`Snapshot::iter`], descending: the largest key first, as lazily.
    pub fn iter_rev(&self, lo: Bound<&[u8]>, hi: Bound<&[u8]>) -> Iter<'_> {
        Iter::new(self.store, None, self.lsn, lo, hi, true)
    }
}

impl Drop for Snapshot<'_> {
    fn drop(&mut self) {
        let mut snaps = lock(&self.store.inner.snapshots);
        if let Some(n) = snaps.get_mut(&self.lsn) {
            *n -= 1;
            if *n == 0 {
                snaps.remove(&self.lsn);
            }
        }
    }
}

/// The key-value pairs of one view within bounds, ascending or descending
/// (see [`Store::iter`], [`Store::iter_rev`], [`Snapshot::iter`]). An error
/// ends the iteration.
pub struct Iter<'a> {
    /// Keeps the view registered, so no version it reads is pruned.
    snapshot: Option<Snapshot<'a>>,
    lsn: u64,
    merge: Merge,
    rev: bool,
    /// Forward: the last key settled. Reverse: the key being gathered.
    last_key: Option<Bytes>,
    /// Reverse: the newest version of `last_key` at or below the view so
    /// far (the merge gives a key's versions in no set order).
    best: Option<Entry>,
    done: bool,
}

impl<'a> Iter<'a> {
    /// Iterates `store` as of `lsn`, holding `snapshot` (if given) so the
    /// view stays registered.
    fn new(
        store: &'a Store,
        snapshot: Option<Snapshot<'a>>,
        lsn: u64,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
        rev: bool,
    ) -> Iter<'a> {
        Iter {
            merge: store.inner.merge_at(lo, hi, lsn, rev),
            snapshot,
            lsn,
            rev,
            last_key: None,
            best: None,
            done: false,
        }
    }

    /// Reverse: the next pair, gathering each key's versions before
    /// deciding its value.
    fn next_rev(&mut self) -> Option<Result<(Bytes, Bytes), KvError>> {
        while !self.done {
            let e = match self.merge.next() {
                None => {
                    self.done = true;
                    None
                }
                Some(Ok(e)) => Some(e),
                Some(Err(err)) => {
                    self.done = true;
                    return Some(Err(err));
                }
            };
            let same_key = e.as_ref().map(|e| &e.key) == self.last_key.as_ref();
            let settled = if same_key {
                None
            } else {
                self.last_key = e.as_ref().map(|e| e.key.clone());
                self.best.take()
            };
            if let Some(e) = e
                && e.lsn <= self.lsn
                && self.best.as_ref().is_none_or(|b| e.lsn > b.lsn)
            {
                self.best = Some(e);
            }
            if let Some(Entry {
                key,
                value: Some(v),
                ..
            }) = settled
            {
                return Some(Ok((key, v)));
            }
        }
        None
    }
}

impl std::fmt::Debug for Iter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Iter")
            .field("lsn", &self.lsn)
            .field("owns_snapshot", &self.snapshot.is_some())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl Iterator for Iter<'_> {
    type Item = Result<(Bytes, Bytes), KvError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rev {
            return self.next_rev();
        }
        while !self.done {
            let e = match self.merge.next() {
                None => break,
                Some(Ok(e)) => e,
                Some(Err(err)) => {
                    self.done = true;
                    return Some(Err(err));
                }
            };
            // The first version of a key at or below the view is its value
            // there (or its deletion); older ones are shadowed.
            if e.lsn > self.lsn || self.last_key.as_ref() == Some(&e.key) {
                continue;
            }
            self.last_key = Some(e.key.clone());
            if let Some(v) = e.value {
                return Some(Ok((e.key, v)));
            }
        }
        self.done = true;
        None
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
    /// Opens (creating) the store in directory `dir`, which must exist.
    ///
    /// # Errors
    /// As [`Store::open_with`].
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<Store, KvError> {
        Store::open_with(wal_io::open_dir(dir, BackendChoice::Auto)?, options)
    }

    /// Opens the store on any storage: the log, replaying its records after
    /// the checkpoint LSN into the memtable while its recovery reads them
    /// (one pass over the log), then the manifest and its tables.
    ///
    /// # Errors
    /// Invalid options; the log's recovery errors; a corrupt manifest or
    /// table; I/O errors.
    pub fn open_with(storage: Arc<dyn Storage>, options: Options) -> Result<Store, KvError> {
        options.validate()?;
        // The log hands its records over while recovery reads them, so the
        // replay reads the log once. Where it starts comes from the manifest
        // read before the log's lock is held: a guess, checked below.
        let guess = Manifest::read(&*storage)?.map_or(0, |m| m.checkpoint_lsn);
        let mut memtable = Memtable::default();
        let mut replay_failed = None;
        let opened = Wal::open_with_replaying(
            Arc::clone(&storage),
            options.log.clone(),
            ReplayFrom::Lsn(guess + 1),
            |record| match WriteBatch::decode(&record.data, record.lsn) {
                Ok(batch) => {
                    memtable.apply(&batch, record.lsn);
                    ControlFlow::Continue(())
                }
                Err(e) => {
                    replay_failed = Some(e);
                    ControlFlow::Break(())
                }
            },
        );
        let (wal, mut replayed_after) = match opened {
            Ok((wal, _report)) => (wal, Some(guess)),
            // The log starts past the guess: replay below, with a reader.
            Err(WalError::Purged { .. }) => {
                memtable = Memtable::default();
                (
                    Wal::open_with(Arc::clone(&storage), options.log.clone())?.0,
                    None,
                )
            }
            Err(e) => return Err(e.into()),
        };
        if let Some(e) = replay_failed {
            return Err(e);
        }
        let manifest = Manifest::read(&*storage)?.unwrap_or(Manifest {
            checkpoint_lsn: 0,
            next_table_id: 1,
            levels: Vec::new(),
        });
        // Before anything in the directory changes: a refused open leaves
        // it as it was, for the user to restore what is missing.
        check_log_continues(&manifest, wal.first_lsn(), wal.appended_lsn() + 1)?;
        let cache = table::block_cache(options.block_cache_bytes);
        let levels: Levels = manifest
            .levels
            .iter()
            .map(|level| {
                level
                    .iter()
                    .map(|&id| Table::open(&*storage, id, Arc::clone(&cache)).map(Arc::new))
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<_, _>>()?;
        compaction::check(&levels).map_err(|e| KvError::corrupt(manifest::NAME, 0, e))?;
        if let Some(t) = levels
            .iter()
            .flatten()
            .find(|t| t.max_lsn > manifest.checkpoint_lsn)
        {
            return Err(KvError::corrupt(
                &t.name,
                0,
                format!(
                    "holds LSN {} above the checkpoint LSN {}",
                    t.max_lsn, manifest.checkpoint_lsn
                ),
            ));
        }
        // Leftovers of an interrupted checkpoint or compaction.
        for name in storage.list()? {
            let orphan =
                table::parse_name(&name).is_some_and(|id| !manifest.tables().any(|t| t == id));
            if orphan || name == manifest::TEMP_NAME {
                storage.remove(&name)?;
            }
        }
        let last = wal.appended_lsn();
        if replayed_after != Some(manifest.checkpoint_lsn) {
            // Another process checkpointed between the guess and the lock,
            // or the log starts past the guess: replay again from the truth.
            memtable = Memtable::default();
            replayed_after = None;
        }
        let from = (manifest.checkpoint_lsn + 1).max(wal.first_lsn());
        if replayed_after.is_none() && from <= last {
            for record in wal.reader(from)? {
                let record = record?;
                let batch = WriteBatch::decode(&record.data, record.lsn)?;
                memtable.apply(&batch, record.lsn);
            }
        }
        let visible = last.max(manifest.checkpoint_lsn);
        let mut tree = Tree {
            active: Arc::new(RwLock::new(memtable)),
            frozen: None,
            levels,
            manifest,
            view: Arc::new(View {
                mems: Vec::new(),
                levels: Vec::new(),
            }),
        };
        tree.refresh_view();
        let inner = Arc::new(Inner {
            wal,
            storage,
            options,
            cache,
            write_lock: Mutex::new(()),
            tree: RwLock::new(tree),
            visibility: Visibility::new(visible),
            snapshots: Mutex::new(BTreeMap::new()),
            work: Mutex::new(Work::default()),
            work_cv: Condvar::new(),
            done_cv: Condvar::new(),
            obsolete: Mutex::new(Vec::new()),
            user_bytes: AtomicU64::new(0),
            table_bytes_written: AtomicU64::new(0),
            gets: AtomicU64::new(0),
            probes: AtomicU64::new(0),
        });
        let worker_inner = Arc::clone(&inner);
        let worker = std::thread::Builder::new()
            .name("wal-kv-worker".into())
            .spawn(move || worker_inner.run_worker())
            .map_err(|e| KvError::Failed(format!("spawn worker: {e}")))?;
        Ok(Store {
            inner,
            worker: Mutex::new(Some(worker)),
        })
    }

    /// Applies `batch` atomically; returns its LSN.
    ///
    /// # Errors
    /// Limits ([`KvError::KeyTooLarge`], [`KvError::ValueTooLarge`],
    /// [`KvError::EmptyBatch`], [`KvError::BatchTooLarge`]); the log's
    /// errors (a failed write poisons the log: reopen); [`KvError::Failed`]
    /// after a background failure.
    pub fn write(&self, batch: &WriteBatch, durability: Durability) -> Result<u64, KvError> {
        let sync = durability == Durability::Sync;
        let lsn = self.inner.apply(batch, sync)?;
        if sync {
            // The wait rides on the log's group commit; the batch becomes
            // visible here (or earlier, by a later batch's durability).
            self.inner.wal.wait_durable(lsn)?;
            self.inner.visibility.durable(lsn);
        }
        Ok(lsn)
    }

    /// Applies `batch` at once and returns a future that resolves with its
    /// LSN once it is durable; it needs no particular async runtime.
    ///
    /// # Errors
    /// As [`Store::write`], for the apply; durability errors come from the future.
    pub fn write_async(&self, batch: &WriteBatch) -> Result<Commit, KvError> {
        let lsn = self.inner.apply(batch, true)?;
        // Visible once durable, whether or not the future is ever polled.
        let inner = Arc::clone(&self.inner);
        self.inner.wal.on_durable(lsn, move |result| {
            if result.is_ok() {
                inner.visibility.durable(lsn);
            }
        });
        Ok(Commit {
            lsn,
            durable: self.inner.wal.durable(lsn),
            inner: Arc::clone(&self.inner),
        })
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
        let done = lock(&self.inner.work).checkpoints;
        {
            let _w = lock(&self.inner.write_lock);
            if !self.inner.freeze()? {
                return Ok(()); // nothing to checkpoint
            }
        }
        self.inner.wait_work(|w| w.checkpoints > done)
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

    /// Figures about the store.
    pub fn stats(&self) -> Stats {
        let inner = &self.inner;
        let tree = inner.tree.read().unwrap_or_else(PoisonError::into_inner);
        let work = lock(&inner.work);
        let user = inner.user_bytes.load(Ordering::Relaxed);
        let tables_written = inner.table_bytes_written.load(Ordering::Relaxed);
        let log = inner.wal.stats().append_bytes;
        let gets = inner.gets.load(Ordering::Relaxed);
        Stats {
            memtable_bytes: tree
                .active
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .bytes(),
            frozen_bytes: tree.frozen.as_ref().map_or(0, |(m, _)| {
                m.read().unwrap_or_else(PoisonError::into_inner).bytes()
            }),
            tables: tree.tables().count(),
            levels: tree
                .levels
                .iter()
                .map(|l| LevelStats {
                    tables: l.len(),
                    bytes: l.iter().map(|t| t.size).sum(),
                })
                .collect(),
            table_bytes: tree.tables().map(|t| t.size).sum(),
            table_entries: tree.tables().map(|t| t.entries).sum(),
            checkpoints: work.checkpoints,
            checkpoint_time: work.checkpoint_time,
            compactions: work.compactions,
            compaction_time: work.compaction_time,
            user_bytes: user,
            table_bytes_written: tables_written,
            write_amplification: if user == 0 {
                0.0
            } else {
                (log + tables_written) as f64 / user as f64
            },
            gets,
            read_amplification: if gets == 0 {
                0.0
            } else {
                inner.probes.load(Ordering::Relaxed) as f64 / gets as f64
            },
            checkpoint_lsn: tree.manifest.checkpoint_lsn,
            block_reads: inner.cache.reads.load(Ordering::Relaxed),
        }
    }

    /// The log underneath (for its stats and watermarks).
    pub fn log(&self) -> &Wal {
        &self.inner.wal
    }

    /// Stops the background worker and closes the log. Everything written
    /// with [`Durability::Sync`] is durable already; buffered batches are
    /// synced first.
    ///
    /// # Errors
    /// A failed final sync.
    pub fn close(self) -> Result<(), KvError> {
        self.inner.wal.sync()?;
        Ok(())
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

    /// Logs and applies a batch; returns its LSN. With `sync` the batch is
    /// seen only once it is durable ([`Visibility`]); otherwise at once.
    fn apply(&self, batch: &WriteBatch, sync: bool) -> Result<u64, KvError> {
        self.check_failed()?;
        let record = batch.encode(self.options.key_bytes_max, self.options.value_bytes_max)?;
        let max = self.options.log.record_bytes_max;
        if record.len() > max {
            return Err(KvError::BatchTooLarge {
                bytes: record.len(),
                max,
            });
        }
        let _w = lock(&self.write_lock);
        let active = {
            let tree = self.tree.read().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(&tree.active)
        };
        if active
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .bytes()
            >= self.options.memtable_bytes_max
        {
            // Memory is full: freeze, which waits (bounded by one
            // checkpoint) while an earlier frozen memtable is being written.
            self.freeze()?;
        }
        let active = {
            let tree = self.tree.read().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(&tree.active)
        };
        let lsn = self.wal.append(&record)?;
        active
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .apply(batch, lsn);
        self.visibility.applied_batch(lsn, sync);
        self.user_bytes
            .fetch_add(record.len() as u64, Ordering::Relaxed);
        Ok(lsn)
    }

    /// Makes the active memtable the frozen one and wakes the worker. The
    /// caller holds the write lock. False when there is nothing to freeze.
    fn freeze(&self) -> Result<bool, KvError> {
        self.wait_work(|_| {
            self.tree
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .frozen
                .is_none()
        })?;
        let mut tree = self.tree.write().unwrap_or_else(PoisonError::into_inner);
        if tree
            .active
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
        {
            return Ok(false);
        }
        // Everything applied goes with the memtable, visible yet or not:
        // the checkpoint LSN must cover every LSN its table holds.
        let upto = self.visibility.applied();
        let full = std::mem::replace(&mut tree.active, Arc::new(RwLock::new(Memtable::default())));
        tree.frozen = Some((full, upto));
        tree.refresh_view();
        drop(tree);
        lock(&self.work).checkpoint = true;
        self.work_cv.notify_all();
        Ok(true)
    }

    /// Waits until `done` holds (re-checked on every worker completion), or
    /// the worker failed.
    fn wait_work(&self, done: impl Fn(&Work) -> bool) -> Result<(), KvError> {
        let mut work = lock(&self.work);
        loop {
            if let Some(e) = &work.failed {
                return Err(KvError::Failed(e.clone()));
            }
            if done(&work) {
                return Ok(());
            }
            work = self
                .done_cv
                .wait_timeout(work, Duration::from_millis(50))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// The oldest LSN a reader may still read at.
    fn oldest_view(&self) -> u64 {
        let snaps = lock(&self.snapshots);
        let visible = self.visibility.visible();
        snaps.keys().next().map_or(visible, |&s| s.min(visible))
    }

    fn sources(&self) -> Arc<View> {
        let tree = self.tree.read().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(&tree.view)
    }

    fn get_at(&self, key: &[u8], lsn: u64) -> Result<Option<Bytes>, KvError> {
        self.gets.fetch_add(1, Ordering::Relaxed);
        let view = self.sources();
        for m in &view.mems {
            if let Some(v) = m
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .get(key, lsn)
            {
                return Ok(v);
            }
        }
        let mut levels = view.levels.iter();
        let level0 = levels.next().map(Vec::as_slice).unwrap_or_default();
        // Level 0 tables overlap: any may know the key. Below, only the one
        // table of each level whose range holds it.
        let below = levels.filter_map(|level| {
            let at = level.partition_point(|t| t.key_range().is_some_and(|(_, last)| last < key));
            level
                .get(at)
                .filter(|t| t.key_range().is_some_and(|(first, _)| first <= key))
        });
        let hashes = table::bloom_hashes(key);
        for t in level0.iter().chain(below) {
            if t.may_contain(hashes) {
                self.probes.fetch_add(1, Ordering::Relaxed);
                if let Some(v) = t.get(key, lsn)? {
                    return Ok(v);
                }
            }
        }
        Ok(None)
    }

    /// The entries of every source within the bounds, merged in table
    /// order. The memtables' part is copied now (bounded by the memtable
    /// limit, and only versions at or below `lsn`); tables are read a block
    /// at a time as the merge goes.
    fn merge_at(&self, lo: Bound<&[u8]>, hi: Bound<&[u8]>, lsn: u64, rev: bool) -> Merge {
        let view = self.sources();
        let mut iters: Vec<Source> = Vec::new();
        for m in &view.mems {
            let mem = m.read().unwrap_or_else(PoisonError::into_inner);
            let range = mem.range(lo, hi).filter(|e| e.lsn <= lsn);
            let entries: Vec<Entry> = if rev {
                range.rev().collect()
            } else {
                range.collect()
            };
            if !entries.is_empty() {
                iters.push(Box::new(entries.into_iter().map(Ok)));
            }
        }
        let owned = |b: Bound<&[u8]>| match b {
            Bound::Included(k) => Bound::Included(Bytes::copy_from_slice(k)),
            Bound::Excluded(k) => Bound::Excluded(Bytes::copy_from_slice(k)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let mut levels = view.levels.iter();
        for t in levels.next().map(Vec::as_slice).unwrap_or_default() {
            iters.push(Box::new(t.iter(owned(lo), owned(hi), true, rev)));
        }
        for level in levels {
            iters.push(Box::new(LevelIter::new(
                level,
                owned(lo),
                owned(hi),
                true,
                rev,
            )));
        }
        Merge::new(iters, rev)
    }

    fn run_worker(self: &Arc<Self>) {
        // Per level, the last key a compaction step took out of it.
        let mut cursors: Vec<Option<Bytes>> = vec![None; LEVELS_MAX];
        loop {
            let (checkpoint, full) = {
                let mut work = lock(&self.work);
                while !(work.closing || work.checkpoint || work.compact || work.reshape) {
                    work = self
                        .work_cv
                        .wait(work)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                if work.closing {
                    return;
                }
                let todo = (work.checkpoint, work.compact);
                work.checkpoint = false;
                work.compact = false;
                work.reshape = false;
                work.busy = true;
                todo
            };
            let mut result = Ok(());
            if checkpoint {
                let start = Instant::now();
                result = self.run_checkpoint();
                let mut work = lock(&self.work);
                work.checkpoints += 1;
                work.checkpoint_time += start.elapsed();
            }
            // One step at a time: a checkpoint waiting for its turn (memory
            // full) waits for one step, never for a whole reshaping.
            if result.is_ok() {
                let job = {
                    let tree = self.tree.read().unwrap_or_else(PoisonError::into_inner);
                    if full {
                        compaction::full(&tree.levels)
                    } else {
                        compaction::pick(&tree.levels, &self.options, &mut cursors)
                    }
                };
                if let Some(job) = job {
                    let start = Instant::now();
                    result = self.run_compaction(&job);
                    let mut work = lock(&self.work);
                    work.compactions += 1;
                    work.compaction_time += start.elapsed();
                    work.reshape = true; // another step may be due
                }
                if full {
                    lock(&self.work).full_compactions += 1;
                }
            }
            self.remove_obsolete();
            let mut work = lock(&self.work);
            work.busy = false;
            if let Err(e) = result {
                work.failed = Some(e.to_string());
                work.reshape = false;
            }
            drop(work);
            self.done_cv.notify_all();
        }
    }

    fn run_checkpoint(&self) -> Result<(), KvError> {
        let (frozen, upto, id) = {
            let tree = self.tree.read().unwrap_or_else(PoisonError::into_inner);
            let Some((m, upto)) = &tree.frozen else {
                return Ok(());
            };
            (Arc::clone(m), *upto, tree.manifest.next_table_id)
        };
        // A table must never hold a batch the log could lose: the batch's
        // LSN would be handed out again after a crash.
        self.wal.wait_durable(upto)?;
        let keep_from = self.oldest_view();
        let mut out = Outputs::new(&*self.storage, &self.options, &self.cache, id, u64::MAX);
        {
            let mem = frozen.read().unwrap_or_else(PoisonError::into_inner);
            let entries = mem.range(Bound::Unbounded, Bound::Unbounded).map(Ok);
            compaction::write_pruned(&mut out, entries, keep_from, false)?;
        }
        let (tables, next_table_id) = out.finish()?;
        let written: u64 = tables.iter().map(|t| t.size).sum();
        self.table_bytes_written
            .fetch_add(written, Ordering::Relaxed);
        self.storage.sync_dir()?;
        let levels = {
            let tree = self.tree.read().unwrap_or_else(PoisonError::into_inner);
            let mut levels = tree.levels.clone();
            if levels.is_empty() {
                levels.push(Vec::new());
            }
            levels[0].splice(0..0, tables);
            levels
        };
        let manifest = manifest_of(&levels, upto, next_table_id);
        manifest.write(&*self.storage)?;
        {
            let mut tree = self.tree.write().unwrap_or_else(PoisonError::into_inner);
            tree.levels = levels;
            tree.frozen = None;
            tree.manifest = manifest;
            tree.refresh_view();
        }
        lock(&self.work).reshape = true;
        self.done_cv.notify_all();
        self.wal.truncate_front(upto + 1)?;
        Ok(())
    }

    fn run_compaction(&self, job: &Job) -> Result<(), KvError> {
        let (levels, first_id) = {
            let tree = self.tree.read().unwrap_or_else(PoisonError::into_inner);
            (tree.levels.clone(), tree.manifest.next_table_id)
        };
        let (outputs, next_table_id) = if job.is_move() {
            (
                job.inputs.iter().flat_map(|(_, t)| t.clone()).collect(),
                first_id,
            )
        } else {
            let keep_from = self.oldest_view();
            let mut out = Outputs::new(
                &*self.storage,
                &self.options,
                &self.cache,
                first_id,
                self.options.table_bytes_max,
            );
            let merge = Merge::new(job.sources(), false);
            compaction::write_pruned(&mut out, merge, keep_from, job.bottom)?;
            let (tables, next) = out.finish()?;
            let written: u64 = tables.iter().map(|t| t.size).sum();
            self.table_bytes_written
                .fetch_add(written, Ordering::Relaxed);
            self.storage.sync_dir()?;
            (tables, next)
        };
        let levels = compaction::install(&levels, job, outputs).map_err(KvError::Failed)?;
        let checkpoint_lsn = {
            let tree = self.tree.read().unwrap_or_else(PoisonError::into_inner);
            tree.manifest.checkpoint_lsn
        };
        let manifest = manifest_of(&levels, checkpoint_lsn, next_table_id);
        manifest.write(&*self.storage)?;
        {
            let mut tree = self.tree.write().unwrap_or_else(PoisonError::into_inner);
            tree.levels = levels;
            tree.manifest = manifest;
            tree.refresh_view();
        }
        if !job.is_move() {
            lock(&self.obsolete).extend(job.inputs.iter().flat_map(|(_, t)| t.clone()));
        }
        Ok(())
    }

    /// Removes the files of merged tables no reader holds any more.
    fn remove_obsolete(&self) {
        let mut obsolete = lock(&self.obsolete);
        obsolete.retain(|t| {
            if Arc::strong_count(t) > 1 {
                return true;
            }
            self.storage.remove(&t.name).is_err()
        });
    }
}

/// The manifest naming `levels`.
fn manifest_of(levels: &Levels, checkpoint_lsn: u64, next_table_id: u64) -> Manifest {
    Manifest {
        checkpoint_lsn,
        next_table_id,
        levels: levels
            .iter()
            .map(|l| l.iter().map(|t| t.id).collect())
            .collect(),
    }
}

/// Refuses a log that does not go on from the checkpoint: the tables hold
/// every LSN up to `checkpoint_lsn`, the log must hold the one after it (or
/// be about to assign it), and nothing between may be missing:
/// `first_lsn <= checkpoint_lsn + 1 <= next_lsn`.
fn check_log_continues(manifest: &Manifest, first_lsn: u64, next_lsn: u64) -> Result<(), KvError> {
    let after = manifest.checkpoint_lsn + 1;
    if first_lsn <= after && after <= next_lsn {
        return Ok(());
    }
    Err(KvError::LogBehindCheckpoint {
        checkpoint_lsn: manifest.checkpoint_lsn,
        first_lsn,
        next_lsn,
    })
}
