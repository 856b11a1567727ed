//! What a commit is validated against: the keys written after the oldest
//! open transaction's snapshot, each with the LSN that last wrote it.
//!
//! Every write (batch or transaction) records its keys here under the
//! store's write lock, right after its log append, so the index is in LSN
//! order and complete above its `floor`. A commit validates under the same
//! lock, so nothing commits between its validation and its append. Entries
//! at or below the oldest snapshot any read-write transaction holds (or the
//! visible LSN, when none is open) can conflict with nothing and are pruned
//! as writes go; a read-only transaction or a snapshot holds nothing here.
//! A read-write transaction left open while writes go on would grow the
//! index without bound, so past `bytes_max` the oldest entries are dropped
//! and `floor` rises: a transaction whose snapshot is below it cannot be
//! validated and fails with [`KvError::TransactionTooOld`] (retryable).

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;

use bytes::Bytes;

use crate::KvError;
use crate::error::ConflictKind;
use crate::memtable::is_empty_range;

/// Bytes charged per remembered key beyond its own (map node, LSN, queue).
const ENTRY_OVERHEAD_BYTES: usize = 64;

/// The keys written above `floor`, newest LSN each.
#[derive(Debug)]
pub(crate) struct Recent {
    /// Key -> the last LSN that wrote it (above `floor`).
    latest: BTreeMap<Bytes, u64>,
    /// The same writes in LSN order, for pruning from the oldest.
    order: VecDeque<(u64, Vec<Bytes>)>,
    /// Every write above this LSN is remembered.
    floor: u64,
    bytes: usize,
    bytes_max: usize,
}

/// What a serializable transaction read from the store (not its own writes).
#[derive(Debug, Default)]
pub(crate) struct Reads {
    /// Keys read by `get`.
    pub keys: Vec<Bytes>,
    /// Ranges iterated: each iteration's slot, `None` if it read nothing.
    pub ranges: Vec<Option<(Bound<Bytes>, Bound<Bytes>)>>,
}

impl Reads {
    /// Entries recorded (each counts toward the transaction's operations).
    pub fn len(&self) -> usize {
        self.keys.len() + self.ranges.len()
    }
}

impl Recent {
    /// Remembers nothing yet: every write up to `floor` is applied.
    pub fn new(floor: u64, bytes_max: usize) -> Recent {
        Recent {
            latest: BTreeMap::new(),
            order: VecDeque::new(),
            floor,
            bytes: 0,
            bytes_max,
        }
    }

    /// Remembers that commit `lsn` wrote `keys` (called in LSN order).
    pub fn record(&mut self, lsn: u64, keys: Vec<Bytes>) {
        debug_assert!(
            self.order.back().is_none_or(|&(last, _)| last < lsn),
            "writes are recorded in LSN order"
        );
        debug_assert!(lsn > self.floor, "a write at or below the floor");
        for key in &keys {
            if self.latest.insert(key.clone(), lsn).is_none() {
                self.bytes += key.len() + ENTRY_OVERHEAD_BYTES;
            }
        }
        self.order.push_back((lsn, keys));
        if self.bytes > self.bytes_max {
            // Keep the newest half: the transactions this fails are the
            // oldest ones, and they fail once rather than on every write.
            while self.bytes > self.bytes_max / 2 {
                let Some(&(lsn, _)) = self.order.front() else {
                    break;
                };
                self.forget_through(lsn);
            }
        }
    }

    /// Forgets every write at or below `lsn`: no open transaction's
    /// snapshot is below it.
    pub fn prune(&mut self, lsn: u64) {
        if lsn > self.floor {
            self.forget_through(lsn);
        }
    }

    fn forget_through(&mut self, lsn: u64) {
        while let Some((at, _)) = self.order.front() {
            if *at > lsn {
                break;
            }
            let Some((at, keys)) = self.order.pop_front() else {
                break;
            };
            for key in keys {
                // A newer write of the key keeps it.
                if self.latest.get(&key) == Some(&at) {
                    self.latest.remove(&key);
                    self.bytes -= key.len() + ENTRY_OVERHEAD_BYTES;
                }
            }
        }
        self.floor = self.floor.max(lsn);
    }

    /// Keys remembered (for tests and stats).
    pub fn len(&self) -> usize {
        self.latest.len()
    }

    /// Checks a commit of `writes` (and, for a serializable transaction,
    /// its `reads`) by a transaction that read at `snapshot_lsn`: no write
    /// after the snapshot may touch what it writes, nor what it read.
    pub fn validate<'k>(
        &self,
        snapshot_lsn: u64,
        writes: impl Iterator<Item = &'k Bytes>,
        reads: Option<&Reads>,
    ) -> Result<(), KvError> {
        if snapshot_lsn < self.floor {
            return Err(KvError::TransactionTooOld {
                snapshot_lsn,
                oldest_lsn: self.floor,
            });
        }
        let conflict = |key: &Bytes, lsn: u64, kind| KvError::Conflict {
            key: key.clone(),
            kind,
            lsn,
            snapshot_lsn,
        };
        let newer = |key: &Bytes| self.latest.get(key).copied().filter(|&l| l > snapshot_lsn);
        for key in writes {
            if let Some(lsn) = newer(key) {
                return Err(conflict(key, lsn, ConflictKind::Write));
            }
        }
        let Some(reads) = reads else {
            return Ok(());
        };
        for key in &reads.keys {
            if let Some(lsn) = newer(key) {
                return Err(conflict(key, lsn, ConflictKind::Read));
            }
        }
        for (lo, hi) in reads.ranges.iter().flatten() {
            let bounds = (lo.as_ref().map(|b| &b[..]), hi.as_ref().map(|b| &b[..]));
            if is_empty_range(bounds.0, bounds.1) {
                continue;
            }
            let found = self
                .latest
                .range::<[u8], _>(bounds)
                .find(|&(_, &lsn)| lsn > snapshot_lsn);
            if let Some((key, &lsn)) = found {
                return Err(conflict(key, lsn, ConflictKind::Range));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(ks: &[&'static str]) -> Vec<Bytes> {
        ks.iter()
            .map(|k| Bytes::from_static(k.as_bytes()))
            .collect()
    }

    #[test]
    fn a_write_after_the_snapshot_conflicts_and_one_before_does_not() {
        let mut r = Recent::new(10, 1 << 20);
        r.record(11, keys(&["a"]));
        r.record(12, keys(&["b"]));
        let w = keys(&["a"]);
        assert!(r.validate(11, w.iter(), None).is_ok());
        let err = r.validate(10, w.iter(), None).unwrap_err();
        assert!(matches!(
            err,
            KvError::Conflict {
                lsn: 11,
                kind: ConflictKind::Write,
                ..
            }
        ));
        let reads = Reads {
            keys: Vec::new(),
            ranges: vec![Some((Bound::Excluded(Bytes::from("a")), Bound::Unbounded))],
        };
        let err = r
            .validate(11, std::iter::empty(), Some(&reads))
            .unwrap_err();
        assert!(
            matches!(&err, KvError::Conflict { key, lsn: 12, kind: ConflictKind::Range, .. } if key == "b")
        );
        assert!(r.validate(12, std::iter::empty(), Some(&reads)).is_ok());
    }

    #[test]
    fn pruning_keeps_newer_writes_of_a_key_and_raises_the_floor() {
        let mut r = Recent::new(0, 1 << 20);
        r.record(1, keys(&["a", "b"]));
        r.record(2, keys(&["a"]));
        r.prune(1);
        assert_eq!(r.len(), 1, "b is forgotten, a was written again at 2");
        let a = keys(&["a"]);
        assert!(matches!(
            r.validate(1, a.iter(), None),
            Err(KvError::Conflict { lsn: 2, .. })
        ));
        assert!(matches!(
            r.validate(0, a.iter(), None),
            Err(KvError::TransactionTooOld { oldest_lsn: 1, .. })
        ));
    }

    #[test]
    fn the_size_bound_forgets_the_oldest_and_fails_only_older_snapshots() {
        let mut r = Recent::new(0, 4 * (ENTRY_OVERHEAD_BYTES + 2));
        for lsn in 1..=20u64 {
            r.record(lsn, vec![Bytes::from(format!("{lsn:02}"))]);
        }
        assert!(r.bytes <= r.bytes_max);
        assert!(r.floor > 10, "the oldest were forgotten: floor {}", r.floor);
        let k = keys(&["zz"]);
        assert!(matches!(
            r.validate(1, k.iter(), None),
            Err(KvError::TransactionTooOld { .. })
        ));
        assert!(r.validate(20, k.iter(), None).is_ok());
    }
}
