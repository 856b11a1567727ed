//! The version set: the memtables and the tables per level a read consults,
//! and reads across them at an LSN.

use std::ops::Bound;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use bytes::Bytes;

use super::Inner;
use crate::KvError;
use crate::bloom;
use crate::compaction::{LevelIter, Levels, Merge, Source};
use crate::locks::{lock, read};
use crate::manifest::Manifest;
use crate::memtable::{Entry, Memtable};
use crate::table::Table;

/// The memtables and tables of the store, and the view reads take of them.
pub(super) struct Tree {
    pub(super) active: Arc<RwLock<Memtable>>,
    /// A memtable being checkpointed, and the last LSN it holds.
    pub(super) frozen: Option<(Arc<RwLock<Memtable>>, u64)>,
    /// The live tables by level (see [`crate::compaction`]).
    pub(super) levels: Levels,
    pub(super) manifest: Manifest,
    /// What a read consults, newest first; rebuilt by every change above,
    /// so a read takes one `Arc` rather than copying the lists.
    pub(super) view: Arc<View>,
}

/// The sources of a read, newest first.
pub(super) struct View {
    pub(super) mems: Vec<Arc<RwLock<Memtable>>>,
    pub(super) levels: Levels,
}

impl Tree {
    pub(super) fn refresh_view(&mut self) {
        let mut mems = vec![Arc::clone(&self.active)];
        if let Some((m, _)) = &self.frozen {
            mems.push(Arc::clone(m));
        }
        self.view = Arc::new(View {
            mems,
            levels: self.levels.clone(),
        });
    }

    pub(super) fn tables(&self) -> impl Iterator<Item = &Arc<Table>> {
        self.levels.iter().flatten()
    }
}

impl Inner {
    /// The oldest LSN a reader may still read at.
    pub(super) fn oldest_view(&self) -> u64 {
        let snaps = lock(&self.snapshots);
        let visible = self.visibility.visible();
        snaps.keys().next().map_or(visible, |&s| s.min(visible))
    }

    pub(super) fn sources(&self) -> Arc<View> {
        let tree = read(&self.tree);
        Arc::clone(&tree.view)
    }

    pub(super) fn get_at(&self, key: &[u8], lsn: u64) -> Result<Option<Bytes>, KvError> {
        self.gets.fetch_add(1, Ordering::Relaxed);
        let view = self.sources();
        let hashes = bloom::hashes(key);
        for m in &view.mems {
            if let Some(v) = read(m).get(key, hashes, lsn) {
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
        for t in level0.iter().chain(below) {
            if t.may_contain(hashes) {
                self.probes.fetch_add(1, Ordering::Relaxed);
                if let Some(v) = t.get(key, hashes.0, lsn)? {
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
    pub(super) fn merge_at(
        &self,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
        lsn: u64,
        rev: bool,
    ) -> Merge {
        let view = self.sources();
        let mut iters: Vec<Source> = Vec::new();
        for m in &view.mems {
            let mem = read(m);
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
}

/// The manifest naming `levels`.
pub(super) fn manifest_of(levels: &Levels, checkpoint_lsn: u64, next_table_id: u64) -> Manifest {
    Manifest {
        checkpoint_lsn,
        next_table_id,
        levels: levels
            .iter()
            .map(|l| l.iter().map(|t| t.id).collect())
            .collect(),
    }
}
