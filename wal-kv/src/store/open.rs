//! Opening the store: the log (replaying after the checkpoint), the
//! manifest and its tables, and the check that the two go on from each other.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Condvar, Mutex, RwLock};

use wal_engine::{ReplayFrom, Wal, WalError};
use wal_io::{BackendChoice, Storage};

use super::version::{Tree, View};
use super::worker::Work;
use super::{Inner, Store};
use crate::batch::WriteBatch;
use crate::compaction::{self, Levels};
use crate::manifest::{self, Manifest};
use crate::memtable::Memtable;
use crate::table::{self, Table};
use crate::txn::conflict::Recent;
use crate::visibility::Visibility;
use crate::{KvError, Options};

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
        let (wal, mut memtable, replayed_after) = open_log(&storage, &options)?;
        let manifest = Manifest::read(&*storage)?.unwrap_or(Manifest {
            checkpoint_lsn: 0,
            next_table_id: 1,
            levels: Vec::new(),
        });
        // Before anything in the directory changes: a refused open leaves
        // it as it was, for the user to restore what is missing.
        check_log_continues(&manifest, wal.first_lsn(), wal.appended_lsn() + 1)?;
        let cache = table::block_cache(options.block_cache_bytes);
        let levels = open_tables(&*storage, &manifest, &cache)?;
        if replayed_after != Some(manifest.checkpoint_lsn) {
            // Another process checkpointed between the guess and the lock,
            // or the log starts past the guess: replay again from the truth.
            memtable = Memtable::new(options.memtable_bytes_max);
            let from = (manifest.checkpoint_lsn + 1).max(wal.first_lsn());
            if from <= wal.appended_lsn() {
                for record in wal.reader(from)? {
                    let record = record?;
                    let batch = WriteBatch::decode(&record.data, record.lsn)?;
                    memtable.apply(&batch, record.lsn);
                }
            }
        }
        let visible = wal.appended_lsn().max(manifest.checkpoint_lsn);
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
        let window_bytes_max = options.conflict_window_bytes_max;
        let inner = Arc::new(Inner {
            wal,
            storage,
            options,
            cache,
            write_lock: Mutex::new(Recent::new(visible, window_bytes_max)),
            txns: Mutex::new(BTreeMap::new()),
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
}

/// Opens the log, replaying its records into a memtable while recovery
/// reads them (one pass over the log). Where the replay starts comes from
/// the manifest read before the log's lock is held: a guess, returned as
/// the LSN the memtable holds everything after (`None`: nothing replayed,
/// the log starts past the guess), for the caller to check.
fn open_log(
    storage: &Arc<dyn Storage>,
    options: &Options,
) -> Result<(Wal, Memtable, Option<u64>), KvError> {
    let guess = Manifest::read(&**storage)?.map_or(0, |m| m.checkpoint_lsn);
    let mut memtable = Memtable::new(options.memtable_bytes_max);
    let mut replay_failed = None;
    let opened = Wal::open_with_replaying(
        Arc::clone(storage),
        options.log.clone(),
        ReplayFrom::Lsn(guess + 1),
        |record| match WriteBatch::decode(&record.to_bytes(), record.lsn) {
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
    match opened {
        Ok((wal, _report)) => match replay_failed {
            Some(e) => Err(e),
            None => Ok((wal, memtable, Some(guess))),
        },
        // The log starts past the guess: the caller replays with a reader.
        Err(WalError::Purged { .. }) => {
            let (wal, _report) = Wal::open_with(Arc::clone(storage), options.log.clone())?;
            Ok((wal, Memtable::new(options.memtable_bytes_max), None))
        }
        Err(e) => Err(e.into()),
    }
}

/// Opens the manifest's tables, checks them against it, and removes the
/// leftovers of an interrupted checkpoint or compaction.
fn open_tables(
    storage: &dyn Storage,
    manifest: &Manifest,
    cache: &Arc<table::BlockCache>,
) -> Result<Levels, KvError> {
    let levels: Levels = manifest
        .levels
        .iter()
        .map(|level| {
            level
                .iter()
                .map(|&id| Table::open(storage, id, Arc::clone(cache)).map(Arc::new))
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
    for name in storage.list()? {
        let orphan = table::parse_name(&name).is_some_and(|id| !manifest.tables().any(|t| t == id));
        if orphan || name == manifest::TEMP_NAME {
            storage.remove(&name)?;
        }
    }
    Ok(levels)
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
