//! Reads at a snapshot: point reads and lazy iteration, both directions.

use std::ops::Bound;

use bytes::Bytes;

use super::Store;
use crate::KvError;
use crate::compaction::Merge;
use crate::locks::lock;
use crate::memtable::Entry;

/// A consistent view as of one LSN; writers go on meanwhile.
#[derive(Debug)]
pub struct Snapshot<'a> {
    pub(crate) store: &'a Store,
    pub(crate) lsn: u64,
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
    pub(super) fn new(
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
