//! What a commit is validated against: the keys written after the oldest
//! open transaction's snapshot, in LSN order.
//!
//! Every write (batch or transaction) records its keys here under the
//! store's write lock, right after its log append, so the record is in LSN
//! order and complete above its `floor`. A commit validates under the same
//! lock, so nothing commits between its validation and its append; it looks
//! only at the writes after its snapshot, a suffix of the record, so its
//! cost is the concurrency it raced with, not the size of the store. While
//! read-write transactions are open, a hash index gives each key's last
//! write; while none is, there is none to keep up, and a write costs a push
//! here and a pop when pruned (a sorted index kept always made a 1000-key
//! batch 30% slower). Entries
//! at or below the oldest snapshot any read-write transaction holds (or the
//! visible LSN, when none is open) can conflict with nothing and are pruned
//! as writes go; a read-only transaction or a snapshot holds nothing here.
//! A read-write transaction left open while writes go on would grow the
//! record without bound, so past `bytes_max` the oldest entries are dropped
//! and `floor` rises: a transaction whose snapshot is below it cannot be
//! validated and fails with [`KvError::TransactionTooOld`] (retryable).

use std::collections::{HashMap, VecDeque};
use std::ops::{Bound, RangeBounds};

use bytes::Bytes;

use crate::KvError;
use crate::error::ConflictKind;

/// Bytes charged per remembered key beyond its own (queue slot, LSN).
const ENTRY_OVERHEAD_BYTES: usize = 48;

/// Writes after a snapshot up to which point lookups scan them; beyond,
/// they use the index.
const SCAN_ENTRIES_MAX: usize = 16;

/// The keys written above `floor`, in LSN order.
#[derive(Debug)]
pub(crate) struct Recent {
    /// (LSN, key) of every write above `floor`, a key each, oldest first.
    order: VecDeque<(u64, Bytes)>,
    /// Key -> its last write in `order`; built by the first validation
    /// that needs it, kept while transactions are open.
    latest: Option<HashMap<Bytes, u64>>,
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
            order: VecDeque::new(),
            latest: None,
            floor,
            bytes: 0,
            bytes_max,
        }
    }

    /// Remembers that commit `lsn` wrote `keys` (called in LSN order).
    pub fn record<'k>(&mut self, lsn: u64, keys: impl Iterator<Item = &'k Bytes>) {
        debug_assert!(
            self.order.back().is_none_or(|&(last, _)| last < lsn),
            "writes are recorded in LSN order"
        );
        debug_assert!(lsn > self.floor, "a write at or below the floor");
        for key in keys {
            self.bytes += key.len() + ENTRY_OVERHEAD_BYTES;
            self.order.push_back((lsn, key.clone()));
            if let Some(latest) = &mut self.latest {
                latest.insert(key.clone(), lsn);
            }
        }
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
    /// snapshot is below it. With none `open`, drops the index too.
    pub fn prune(&mut self, lsn: u64, open: bool) {
        if lsn > self.floor {
            self.forget_through(lsn);
        }
        if !open {
            self.latest = None;
            // Give back what a long transaction's window grew.
            if self.order.capacity() > 4 * self.order.len().max(1024) {
                self.order.shrink_to_fit();
            }
        }
    }

    fn forget_through(&mut self, lsn: u64) {
        while let Some((at, _)) = self.order.front() {
            if *at > lsn {
                break;
            }
            let Some((at, key)) = self.order.pop_front() else {
                break;
            };
            self.bytes -= key.len() + ENTRY_OVERHEAD_BYTES;
            // A later write of the key keeps its entry.
            if let Some(latest) = &mut self.latest
                && latest.get(&key) == Some(&at)
            {
                latest.remove(&key);
            }
        }
        self.floor = self.floor.max(lsn);
    }

    /// Keys remembered, one per write of each (for stats and tests).
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Checks a commit of `writes` (and, for a serializable transaction,
    /// its `reads`) by a transaction that read at `snapshot_lsn`: no write
    /// after the snapshot may touch what it writes, nor what it read.
    pub fn validate<'k>(
        &mut self,
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
        let start = self.order.partition_point(|&(lsn, _)| lsn <= snapshot_lsn);
        if start == self.order.len() {
            return Ok(());
        }
        let scan = self.order.len() - start <= SCAN_ENTRIES_MAX;
        if !scan && self.latest.is_none() {
            let index = self
                .order
                .iter()
                .map(|(lsn, k)| (k.clone(), *lsn))
                .collect();
            self.latest = Some(index);
        }
        let newer = self.order.range(start..);
        // The last write of a key after the snapshot, if any.
        let written = |key: &Bytes| match (&self.latest, scan) {
            (Some(latest), false) => latest.get(key).copied().filter(|&l| l > snapshot_lsn),
            _ => newer
                .clone()
                .rev()
                .find(|(_, k)| k == key)
                .map(|&(lsn, _)| lsn),
        };
        let conflict = |key: &Bytes, lsn: u64, kind| KvError::Conflict {
            key: key.clone(),
            kind,
            lsn,
            snapshot_lsn,
        };
        for key in writes {
            if let Some(lsn) = written(key) {
                return Err(conflict(key, lsn, ConflictKind::Write));
            }
        }
        let Some(reads) = reads else {
            return Ok(());
        };
        for key in &reads.keys {
            if let Some(lsn) = written(key) {
                return Err(conflict(key, lsn, ConflictKind::Read));
            }
        }
        if reads.ranges.is_empty() {
            return Ok(());
        }
        // Each range against the writes after the snapshot: a scan for a
        // few, else sorted once and searched (ranges x writes would hold
        // the write lock for long).
        let few = reads.ranges.len() * newer.len() <= SCAN_ENTRIES_MAX * SCAN_ENTRIES_MAX;
        let sorted: Vec<&(u64, Bytes)> = if few {
            Vec::new()
        } else {
            let mut v: Vec<_> = newer.clone().collect();
            v.sort_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)));
            v
        };
        for (lo, hi) in reads.ranges.iter().flatten() {
            let bounds = (lo.as_ref().map(|b| &b[..]), hi.as_ref().map(|b| &b[..]));
            let inside = |k: &Bytes| RangeBounds::<[u8]>::contains(&bounds, &k[..]);
            let found = if few {
                // The newest write in the range.
                newer.clone().rev().find(|(_, k)| inside(k))
            } else {
                let first = sorted.partition_point(|(_, k)| match bounds.0 {
                    Bound::Included(lo) => &k[..] < lo,
                    Bound::Excluded(lo) => &k[..] <= lo,
                    Bound::Unbounded => false,
                });
                sorted.get(first).copied().filter(|(_, k)| inside(k))
            };
            if let Some((lsn, key)) = found {
                return Err(conflict(key, *lsn, ConflictKind::Range));
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
        let r = &mut r;
        r.record(11, keys(&["a"]).iter());
        r.record(12, keys(&["b"]).iter());
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
    fn many_writes_after_the_snapshot_are_hashed_with_the_same_answers() {
        let mut r = Recent::new(0, 1 << 20);
        for lsn in 1..=100u64 {
            r.record(lsn, [Bytes::from(format!("k{:03}", lsn % 60))].iter());
        }
        for snapshot in [0, 50, 90, 99] {
            let k = keys(&["k030"]);
            let want = [30u64, 90].into_iter().find(|&l| l > snapshot);
            match r.validate(snapshot, k.iter(), None) {
                Err(KvError::Conflict { lsn, .. }) => assert_eq!(Some(lsn), want.map(|_| 90)),
                Ok(()) => assert_eq!(want, None, "snapshot {snapshot}"),
                Err(e) => panic!("{e}"),
            }
            let absent = keys(&["zzz"]);
            assert!(r.validate(snapshot, absent.iter(), None).is_ok());
        }
    }

    #[test]
    fn ranges_are_checked_alike_by_scan_and_by_sorted_search() {
        let mut r = Recent::new(0, 1 << 20);
        for lsn in 1..=100u64 {
            r.record(lsn, [Bytes::from(format!("k{:03}", lsn - 1))].iter());
        }
        let range = |lo: Bound<&'static str>, hi: Bound<&'static str>| {
            Some((lo.map(Bytes::from), hi.map(Bytes::from)))
        };
        let reads = |ranges| Reads {
            keys: Vec::new(),
            ranges,
        };
        // Three ranges against 100 writes: sorted; against 5: scanned.
        for snapshot in [0u64, 95] {
            let hit = reads(vec![
                range(Bound::Excluded("k099"), Bound::Unbounded),
                range(Bound::Included("a"), Bound::Excluded("b")),
                range(Bound::Included("k097"), Bound::Included("k097")),
            ]);
            match r.validate(snapshot, std::iter::empty(), Some(&hit)) {
                Err(KvError::Conflict {
                    key,
                    lsn: 98,
                    kind: ConflictKind::Range,
                    ..
                }) => {
                    assert_eq!(key, "k097");
                }
                other => panic!("snapshot {snapshot}: {other:?}"),
            }
            let miss = reads(vec![
                range(Bound::Excluded("k099"), Bound::Unbounded),
                range(Bound::Unbounded, Bound::Excluded("k000")),
                range(Bound::Excluded("k050"), Bound::Excluded("k051")),
            ]);
            assert!(
                r.validate(snapshot, std::iter::empty(), Some(&miss))
                    .is_ok()
            );
        }
        // Below the snapshot nothing counts.
        let low = reads(vec![range(Bound::Unbounded, Bound::Included("k090"))]);
        assert!(r.validate(95, std::iter::empty(), Some(&low)).is_ok());
        assert!(r.validate(90, std::iter::empty(), Some(&low)).is_err());
    }

    #[test]
    fn pruning_keeps_newer_writes_of_a_key_and_raises_the_floor() {
        let mut r = Recent::new(0, 1 << 20);
        r.record(1, keys(&["a", "b"]).iter());
        r.record(2, keys(&["a"]).iter());
        r.prune(1, true);
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
            r.record(lsn, [Bytes::from(format!("{lsn:02}"))].iter());
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
