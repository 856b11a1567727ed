//! The background worker: checkpoints (memtable -> level-0 table, manifest,
//! log cut) and compaction steps, one at a time.

use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::Inner;
use super::version::manifest_of;
use crate::KvError;
use crate::compaction::{self, Job, Merge, Outputs};
use crate::locks::{lock, read, wait, write};
use crate::manifest::LEVELS_MAX;

/// What the worker is asked to do, and what it has done.
#[derive(Default)]
pub(super) struct Work {
    pub(super) checkpoint: bool,
    /// A full compaction was asked for.
    pub(super) compact: bool,
    /// The shape of the levels may call for a compaction step.
    pub(super) reshape: bool,
    /// The worker is doing any of the above.
    pub(super) busy: bool,
    pub(super) closing: bool,
    pub(super) failed: Option<String>,
    pub(super) checkpoints: u64,
    /// The LSN the last finished checkpoint covers, its log cut included.
    pub(super) checkpointed_upto: u64,
    /// The LSN the last memtable frozen covers.
    pub(super) frozen_upto: u64,
    pub(super) compactions: u64,
    pub(super) full_compactions: u64,
    pub(super) checkpoint_time: Duration,
    pub(super) compaction_time: Duration,
}

impl Inner {
    /// Waits until `done` holds (re-checked on every worker completion), or
    /// the worker failed.
    pub(super) fn wait_work(&self, done: impl Fn(&Work) -> bool) -> Result<(), KvError> {
        let mut work = lock(&self.work);
        loop {
            if let Some(e) = &work.failed {
                return Err(KvError::Failed(e.clone()));
            }
            if done(&work) {
                return Ok(());
            }
            work = wait(&self.done_cv, work, Some(Duration::from_millis(50)));
        }
    }

    pub(super) fn run_worker(self: &Arc<Self>) {
        // A panic here would otherwise leave whoever waits for the worker
        // (a checkpoint, a close) waiting forever.
        let _guard = PanicGuard(self);
        // Per level, the last key a compaction step took out of it.
        let mut cursors: Vec<Option<Bytes>> = vec![None; LEVELS_MAX];
        loop {
            let (checkpoint, full) = {
                let mut work = lock(&self.work);
                while !(work.closing || work.checkpoint || work.compact || work.reshape) {
                    work = wait(&self.work_cv, work, None);
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
                let written = self.run_checkpoint();
                let mut work = lock(&self.work);
                if let Ok(Some(upto)) = written {
                    work.checkpointed_upto = work.checkpointed_upto.max(upto);
                }
                result = written.map(drop);
                work.checkpoints += 1;
                work.checkpoint_time += start.elapsed();
            }
            // One step at a time: a checkpoint waiting for its turn (memory
            // full) waits for one step, never for a whole reshaping.
            if result.is_ok() {
                let job = {
                    let tree = read(&self.tree);
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

    /// Writes the frozen memtable as a table, installs it and cuts the log
    /// in front of it; returns the LSN it covers (`None`: nothing frozen).
    fn run_checkpoint(&self) -> Result<Option<u64>, KvError> {
        let (frozen, upto, id) = {
            let tree = read(&self.tree);
            let Some((m, upto)) = &tree.frozen else {
                return Ok(None);
            };
            (Arc::clone(m), *upto, tree.manifest.next_table_id)
        };
        // A table must never hold a batch the log could lose: the batch's
        // LSN would be handed out again after a crash.
        self.wal.wait_durable(upto)?;
        let keep_from = self.oldest_view();
        let mut out = Outputs::new(&*self.storage, &self.options, &self.cache, id, u64::MAX);
        {
            let mem = read(&frozen);
            let entries = mem.range(Bound::Unbounded, Bound::Unbounded).map(Ok);
            compaction::write_pruned(&mut out, entries, keep_from, false)?;
        }
        let (tables, next_table_id) = out.finish()?;
        let written: u64 = tables.iter().map(|t| t.size).sum();
        self.table_bytes_written
            .fetch_add(written, Ordering::Relaxed);
        self.storage.sync_dir()?;
        let levels = {
            let tree = read(&self.tree);
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
            let mut tree = write(&self.tree);
            tree.levels = levels;
            tree.frozen = None;
            tree.manifest = manifest;
            tree.refresh_view();
        }
        lock(&self.work).reshape = true;
        self.done_cv.notify_all();
        self.wal.truncate_front(upto + 1)?;
        Ok(Some(upto))
    }

    fn run_compaction(&self, job: &Job) -> Result<(), KvError> {
        let (levels, first_id) = {
            let tree = read(&self.tree);
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
            let tree = read(&self.tree);
            tree.manifest.checkpoint_lsn
        };
        let manifest = manifest_of(&levels, checkpoint_lsn, next_table_id);
        manifest.write(&*self.storage)?;
        {
            let mut tree = write(&self.tree);
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

/// Marks the store failed if the worker thread unwinds.
struct PanicGuard<'a>(&'a Inner);

impl Drop for PanicGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            lock(&self.0.work).failed = Some("the background worker panicked".to_owned());
            self.0.done_cv.notify_all();
        }
    }
}
