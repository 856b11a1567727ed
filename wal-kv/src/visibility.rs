//! Which applied batches readers see. A batch written with
//! [`Durability::Sync`](crate::Durability::Sync) is applied to the memtable
//! when it is logged, but becomes visible only once the log has made it
//! durable, and never if its sync failed: no reader sees what a crash can
//! take back. A [`Durability::Buffered`](crate::Durability::Buffered) batch
//! is visible at once, unless a `Sync` batch before it still waits, because
//! visibility is a prefix of the log: a reader at LSN `v` sees every batch
//! up to `v` and none after.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::locks::lock;

/// The visible and applied LSNs, and the `Sync` batches not yet durable.
#[derive(Debug)]
pub(crate) struct Visibility {
    /// Readers see every batch up to this LSN.
    visible: AtomicU64,
    /// The last batch applied to the memtable (visible or not).
    applied: AtomicU64,
    /// `Sync` batches applied and not yet durable.
    pending: Mutex<BTreeSet<u64>>,
}

impl Visibility {
    /// Everything up to `lsn` applied and visible (at open).
    pub(crate) fn new(lsn: u64) -> Self {
        Visibility {
            visible: AtomicU64::new(lsn),
            applied: AtomicU64::new(lsn),
            pending: Mutex::new(BTreeSet::new()),
        }
    }

    /// The LSN readers see up to.
    pub(crate) fn visible(&self) -> u64 {
        self.visible.load(Ordering::Acquire)
    }

    /// The last LSN applied to the memtable.
    pub(crate) fn applied(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    /// Batch `lsn` was applied (under the store's write lock, in LSN order);
    /// with `sync`, it waits for durability before it is seen.
    pub(crate) fn applied_batch(&self, lsn: u64, sync: bool) {
        let mut pending = lock(&self.pending);
        debug_assert!(lsn > self.applied(), "batches are applied in LSN order");
        self.applied.store(lsn, Ordering::Release);
        if sync {
            pending.insert(lsn);
        }
        self.publish(&pending);
    }

    /// The log made everything up to `lsn` durable.
    pub(crate) fn durable(&self, lsn: u64) {
        let mut pending = lock(&self.pending);
        let later = pending.split_off(&(lsn + 1));
        *pending = later;
        self.publish(&pending);
    }

    /// Moves the visible LSN to just before the first pending `Sync` batch,
    /// or to the last applied; it never moves back.
    fn publish(&self, pending: &BTreeSet<u64>) {
        let upto = pending
            .first()
            .map_or_else(|| self.applied(), |&first| first - 1);
        self.visible.fetch_max(upto, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sync_batch_is_seen_once_durable_and_holds_back_what_follows() {
        let v = Visibility::new(10);
        v.applied_batch(11, false);
        assert_eq!(v.visible(), 11, "buffered: visible at once");
        v.applied_batch(12, true);
        assert_eq!(v.visible(), 11, "sync: not before it is durable");
        v.applied_batch(13, false);
        assert_eq!(v.visible(), 11, "visibility is a prefix");
        v.applied_batch(14, true);
        v.durable(12);
        assert_eq!(v.visible(), 13);
        v.durable(14);
        assert_eq!((v.visible(), v.applied()), (14, 14));
        // Durability reported late (an old LSN) moves nothing back.
        v.durable(12);
        assert_eq!(v.visible(), 14);
    }
}
