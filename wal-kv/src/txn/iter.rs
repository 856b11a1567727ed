//! A transaction's iteration: its snapshot's pairs with its pending writes
//! merged in (a pending write shadows the snapshot's version of its key, a
//! pending deletion hides it), and, serializable, the record of how far it
//! read, which the commit checks for phantoms.

use std::iter::Peekable;
use std::ops::Bound;

use bytes::Bytes;

use super::Transaction;
use crate::memtable::is_empty_range;
use crate::store::Iter;
use crate::{Isolation, KvError};

/// The pairs of a transaction's view within bounds (see
/// [`Transaction::iter`]). An error ends the iteration.
pub struct TxnIter<'t> {
    txn: &'t Transaction<'t>,
    store: Peekable<Iter<'t>>,
    pending: Peekable<std::vec::IntoIter<(Bytes, Option<Bytes>)>>,
    rev: bool,
    /// Serializable: the index of this iteration's range among the
    /// transaction's reads, narrowed to what was read when dropped.
    range: Option<usize>,
    lo: Bound<Bytes>,
    hi: Bound<Bytes>,
    /// The last key returned.
    last: Option<Bytes>,
    /// Every pair in the bounds was returned (or an error ended it).
    exhausted: bool,
    /// An error to return first (the read could not be recorded).
    error: Option<KvError>,
}

impl std::fmt::Debug for TxnIter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxnIter")
            .field("rev", &self.rev)
            .field("exhausted", &self.exhausted)
            .finish_non_exhaustive()
    }
}

fn owned(b: Bound<&[u8]>) -> Bound<Bytes> {
    b.map(Bytes::copy_from_slice)
}

impl<'t> TxnIter<'t> {
    pub(super) fn new(
        txn: &'t Transaction<'t>,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
        rev: bool,
    ) -> TxnIter<'t> {
        let empty = is_empty_range(lo, hi);
        let mut pending: Vec<(Bytes, Option<Bytes>)> = if empty {
            Vec::new()
        } else {
            txn.writes
                .range::<[u8], _>((lo, hi))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        if rev {
            pending.reverse();
        }
        let mut range = None;
        let mut error = None;
        let max = txn.snapshot.store.inner.options.key_bytes_max;
        let too_long = [lo, hi].into_iter().find_map(|b| match b {
            Bound::Included(k) | Bound::Excluded(k) => (k.len() > max).then_some(k.len()),
            Bound::Unbounded => None,
        });
        if txn.isolation == Isolation::Serializable && !empty {
            // The bounds are kept until the commit: no longer than a key.
            let checked = match too_long {
                Some(len) => Err(KvError::KeyTooLarge { len, max }),
                None => txn.check_ops(1, txn.record_bytes),
            };
            match checked {
                Ok(()) => {
                    let mut reads = txn.reads.borrow_mut();
                    range = Some(reads.ranges.len());
                    reads.ranges.push(Some((owned(lo), owned(hi))));
                }
                Err(e) => error = Some(e),
            }
        }
        let store = if rev {
            txn.snapshot.iter_rev(lo, hi)
        } else {
            txn.snapshot.iter(lo, hi)
        };
        TxnIter {
            txn,
            store: store.peekable(),
            pending: pending.into_iter().peekable(),
            rev,
            range,
            lo: owned(lo),
            hi: owned(hi),
            last: None,
            exhausted: false,
            error,
        }
    }

    /// Whether the next pair comes from the pending writes rather than the
    /// snapshot (`None`: both are done).
    fn pending_first(&mut self) -> Option<bool> {
        let store = match self.store.peek() {
            Some(Ok((k, _))) => Some(k),
            Some(Err(_)) => return Some(false),
            None => None,
        };
        match (store, self.pending.peek()) {
            (None, None) => None,
            (Some(_), None) => Some(false),
            (None, Some(_)) => Some(true),
            (Some(s), Some((p, _))) => Some(if self.rev { p >= s } else { p <= s }),
        }
    }
}

impl Iterator for TxnIter<'_> {
    type Item = Result<(Bytes, Bytes), KvError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.error.take() {
            self.exhausted = true;
            return Some(Err(e));
        }
        while !self.exhausted {
            let Some(pending_first) = self.pending_first() else {
                self.exhausted = true;
                break;
            };
            let (key, value) = if pending_first {
                let (key, value) = self.pending.next()?;
                // Its own write shadows the snapshot's version of the key.
                if let Some(Ok((k, _))) = self.store.peek()
                    && *k == key
                {
                    self.store.next();
                }
                match value {
                    Some(v) => (key, v),
                    None => continue,
                }
            } else {
                match self.store.next()? {
                    Ok(pair) => pair,
                    Err(e) => {
                        self.exhausted = true;
                        return Some(Err(e));
                    }
                }
            };
            self.last = Some(key.clone());
            return Some(Ok((key, value)));
        }
        None
    }
}

impl Drop for TxnIter<'_> {
    /// Narrows the recorded range to what was read: all of it once
    /// exhausted, else up to the last key returned (the keys beyond were
    /// never seen, so a write among them changes nothing this read).
    fn drop(&mut self) {
        let Some(at) = self.range else {
            return;
        };
        let read = if self.exhausted {
            Some((self.lo.clone(), self.hi.clone()))
        } else {
            self.last.clone().map(|last| {
                if self.rev {
                    (Bound::Included(last), self.hi.clone())
                } else {
                    (self.lo.clone(), Bound::Included(last))
                }
            })
        };
        if let Some(slot) = self.txn.reads.borrow_mut().ranges.get_mut(at) {
            *slot = read;
        }
    }
}
