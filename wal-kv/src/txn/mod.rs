//! Optimistic transactions on the store's snapshots.
//!
//! A transaction reads from the snapshot taken when it began, plus its own
//! pending writes, and holds its writes in memory until commit. The commit
//! is checked and logged under the store's write lock: the keys it writes
//! (and, serializable, the keys and ranges it read) are looked up among the
//! writes committed after its snapshot ([`conflict::Recent`]); if none
//! touched them, its writes become one log record, applied and made durable
//! like a batch, so a transaction costs one record and one durable wait.
//! Reads take no lock a writer holds; validation holds the write lock only
//! for lookups in memory.
//!
//! Why this is serializable: a serializable commit at LSN `c` has read
//! nothing any commit in `(snapshot, c)` wrote, so its reads are what a
//! serial run in LSN order would read just before `c`. A transaction that
//! writes nothing commits at its snapshot's LSN, where its reads are exact.

pub(crate) mod conflict;
mod iter;
mod retry;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;

pub use iter::TxnIter;
pub use retry::TransactOptions;

use crate::locks::lock;
use crate::store::{Commit, Logged, Snapshot};
use crate::{Durability, Isolation, KvError, Store, WriteBatch};
use conflict::Reads;

/// Bytes of a commit record's header (version, count).
const RECORD_HEADER_BYTES: usize = 5;

/// A read-write transaction (see [`Store::transaction`]). Nothing it writes
/// is seen by anyone else before [`Transaction::commit`]; dropping it rolls
/// it back.
///
/// ```
/// use wal_kv::{Durability, Isolation, KvError, Options, Store};
///
/// let disk = wal_io::sim::SimDisk::new(7);
/// let store = Store::open_with(disk.storage(), Options::default())?;
/// store.put("alice", "10")?;
/// store.put("bob", "0")?;
///
/// // Move 3 from alice to bob: both or neither, or a conflict to retry.
/// let mut txn = store.transaction_with(Isolation::Serializable);
/// let alice: u64 = std::str::from_utf8(&txn.get(b"alice")?.unwrap()).unwrap().parse().unwrap();
/// let bob: u64 = std::str::from_utf8(&txn.get(b"bob")?.unwrap()).unwrap().parse().unwrap();
/// txn.put("alice", (alice - 3).to_string())?;
/// txn.put("bob", (bob + 3).to_string())?;
/// assert_eq!(txn.get(b"bob")?.as_deref(), Some(&b"3"[..]), "it reads its own writes");
/// assert_eq!(store.get(b"bob")?.as_deref(), Some(&b"0"[..]), "others do not, yet");
/// txn.commit(Durability::Sync)?;
/// assert_eq!(store.get(b"bob")?.as_deref(), Some(&b"3"[..]));
///
/// // Two transactions write one key: the first to commit wins.
/// let mut first = store.transaction();
/// let mut second = store.transaction();
/// first.put("bob", "4")?;
/// second.put("bob", "5")?;
/// first.commit(Durability::Sync)?;
/// let err = second.commit(Durability::Sync).unwrap_err();
/// assert!(matches!(err, KvError::Conflict { .. }) && err.is_retryable());
/// assert_eq!(store.get(b"bob")?.as_deref(), Some(&b"4"[..]));
/// # Ok::<(), KvError>(())
/// ```
///
/// Commit and rollback take the transaction, so using it after either does
/// not compile:
///
/// ```compile_fail
/// # use wal_kv::{Durability, Options, Store};
/// # let disk = wal_io::sim::SimDisk::new(8);
/// # let store = Store::open_with(disk.storage(), Options::default()).unwrap();
/// let mut txn = store.transaction();
/// txn.put("k", "v").unwrap();
/// txn.commit(Durability::Sync).unwrap();
/// txn.put("k", "w").unwrap(); // error: use of moved value
/// ```
pub struct Transaction<'a> {
    /// Registered with the store, so the versions it reads are kept.
    snapshot: Snapshot<'a>,
    isolation: Isolation,
    /// Pending writes: a value, or a deletion (`None`).
    writes: BTreeMap<Bytes, Option<Bytes>>,
    /// Bytes of the commit record the writes would make.
    record_bytes: usize,
    /// What it read from the store (serializable only).
    reads: RefCell<Reads>,
}

impl std::fmt::Debug for Transaction<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("snapshot_lsn", &self.snapshot.lsn)
            .field("isolation", &self.isolation)
            .field("writes", &self.writes.len())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Begins a read-write transaction with [`Isolation::Snapshot`].
    pub fn transaction(&self) -> Transaction<'_> {
        self.transaction_with(Isolation::Snapshot)
    }

    /// Begins a read-write transaction with the given isolation.
    pub fn transaction_with(&self, isolation: Isolation) -> Transaction<'_> {
        // The snapshot is taken and registered under the transactions'
        // lock, which the pruning of the conflict index also takes: no
        // write this transaction must be checked against is forgotten.
        let mut txns = lock(&self.inner.txns);
        let snapshot = self.snapshot();
        *txns.entry(snapshot.lsn).or_insert(0) += 1;
        drop(txns);
        Transaction {
            snapshot,
            isolation,
            writes: BTreeMap::new(),
            record_bytes: RECORD_HEADER_BYTES,
            reads: RefCell::new(Reads::default()),
        }
    }

    /// Begins a read-only transaction: a [`Snapshot`]. It reads as of one
    /// LSN, never conflicts, takes no lock a writer waits for and holds no
    /// memory in the conflict index; it keeps the versions it can see
    /// (only those: newer ones are never pruned anyway) until dropped.
    pub fn read_transaction(&self) -> Snapshot<'_> {
        self.snapshot()
    }
}

impl<'a> Transaction<'a> {
    /// The LSN its reads are as of.
    pub fn snapshot_lsn(&self) -> u64 {
        self.snapshot.lsn
    }

    /// Its isolation level.
    pub fn isolation(&self) -> Isolation {
        self.isolation
    }

    /// Keys it has written (or deleted), pending commit.
    pub fn pending_writes(&self) -> usize {
        self.writes.len()
    }

    /// The value of `key`: its own pending write if any, else the snapshot's.
    ///
    /// # Errors
    /// A table read failed; serializable: [`KvError::TransactionTooLarge`]
    /// when recording the read would pass the operations limit.
    pub fn get(&self, key: &[u8]) -> Result<Option<Bytes>, KvError> {
        if let Some(pending) = self.writes.get(key) {
            return Ok(pending.clone());
        }
        if key.len() > self.snapshot.store.inner.options.key_bytes_max {
            // No such key can exist, nor be written: nothing to guard.
            return Ok(None);
        }
        if self.isolation == Isolation::Serializable {
            self.check_ops(1, self.record_bytes)?;
            self.reads
                .borrow_mut()
                .keys
                .push(Bytes::copy_from_slice(key));
        }
        self.snapshot.get(key)
    }

    /// Sets `key` to `value` when the transaction commits.
    ///
    /// # Errors
    /// [`KvError::KeyTooLarge`], [`KvError::ValueTooLarge`],
    /// [`KvError::TransactionTooLarge`]; the transaction is unchanged.
    pub fn put(&mut self, key: impl Into<Bytes>, value: impl Into<Bytes>) -> Result<(), KvError> {
        self.stage(key.into(), Some(value.into()))
    }

    /// Removes `key` when the transaction commits.
    ///
    /// # Errors
    /// As [`Transaction::put`].
    pub fn delete(&mut self, key: impl Into<Bytes>) -> Result<(), KvError> {
        self.stage(key.into(), None)
    }

    /// Key-value pairs within the bounds, ascending, as of its snapshot with
    /// its own writes merged in, read lazily. Serializable: the part of the
    /// range iterated (up to the last key returned, or all of it once the
    /// iterator is exhausted) is checked at commit for keys written since.
    pub fn iter(&self, lo: Bound<&[u8]>, hi: Bound<&[u8]>) -> TxnIter<'_> {
        TxnIter::new(self, lo, hi, false)
    }

    /// As [`Transaction::iter`], descending.
    pub fn iter_rev(&self, lo: Bound<&[u8]>, hi: Bound<&[u8]>) -> TxnIter<'_> {
        TxnIter::new(self, lo, hi, true)
    }

    /// As [`Transaction::iter`], collected.
    ///
    /// # Errors
    /// As [`Transaction::get`].
    pub fn scan(&self, lo: Bound<&[u8]>, hi: Bound<&[u8]>) -> Result<Vec<(Bytes, Bytes)>, KvError> {
        self.iter(lo, hi).collect()
    }

    /// As [`Transaction::iter_rev`], collected.
    ///
    /// # Errors
    /// As [`Transaction::get`].
    pub fn scan_rev(
        &self,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
    ) -> Result<Vec<(Bytes, Bytes)>, KvError> {
        self.iter_rev(lo, hi).collect()
    }

    /// Checks the transaction against the commits since its snapshot and,
    /// if none conflicts, writes it as one log record; returns its LSN once
    /// `durability` holds (a `Sync` commit is seen by others only once
    /// durable). A transaction that wrote nothing commits at its snapshot's
    /// LSN (with `Sync`, once everything it read is durable).
    ///
    /// # Errors
    /// [`KvError::Conflict`] or [`KvError::TransactionTooOld`] (nothing was
    /// written: run it again, see [`Store::transact`]); the log's errors,
    /// as [`Store::write`]. As for a batch, a log error on a `Sync` commit
    /// (a failed sync) does not say it was not written: the log may hold it
    /// after a reopen, so check before running it again.
    pub fn commit(self, durability: Durability) -> Result<u64, KvError> {
        let logged = self.log(durability == Durability::Sync)?;
        let inner = &self.snapshot.store.inner;
        if self.writes.is_empty() && logged.lsn() <= inner.wal.durable_lsn() {
            // Nothing written, everything read durable: nothing to wait for
            // (even on a log that failed since).
            return Ok(logged.lsn());
        }
        inner.settle(logged, durability)
    }

    /// As [`Transaction::commit`] with [`Durability::Sync`], returning once
    /// logged a future that resolves once the commit is durable.
    ///
    /// # Errors
    /// As [`Transaction::commit`], for the check and the append; durability
    /// errors come from the future.
    pub fn commit_async(self) -> Result<Commit, KvError> {
        let lsn = self.log(true)?.lsn();
        Ok(Commit::new(&self.snapshot.store.inner, lsn))
    }

    /// Discards the transaction's writes (as dropping it does).
    pub fn rollback(self) {}

    /// Checks and logs the writes; the LSN the transaction commits at.
    fn log(&self, sync: bool) -> Result<Logged<'_>, KvError> {
        if self.writes.is_empty() {
            return Ok(Logged::At(self.snapshot.lsn));
        }
        let mut batch = WriteBatch::new();
        for (key, value) in &self.writes {
            match value {
                Some(v) => batch.put(key.clone(), v.clone()),
                None => batch.delete(key.clone()),
            };
        }
        let reads = self.reads.borrow();
        let reads = (self.isolation == Isolation::Serializable).then_some(&*reads);
        let inner = &self.snapshot.store.inner;
        let result = inner.apply(&batch, sync, |recent| {
            recent.validate(self.snapshot.lsn, self.writes.keys(), reads)
        });
        // A winner not visible yet (or writes forgotten above what readers
        // see): a retry now would read at the same snapshot and lose again.
        // Wait until it is durable (the retry then sees it), or report why
        // it never will be.
        let blocker = match &result {
            Err(KvError::Conflict { lsn, .. }) => Some(*lsn),
            Err(KvError::TransactionTooOld { oldest_lsn, .. }) => Some(*oldest_lsn),
            _ => None,
        };
        if let Some(lsn) = blocker.filter(|&l| l > inner.visibility.visible()) {
            inner.wal.wait_durable(lsn)?;
            inner.visibility.durable(lsn);
        }
        result
    }

    /// Records a pending write, within the limits.
    fn stage(&mut self, key: Bytes, value: Option<Bytes>) -> Result<(), KvError> {
        let options = &self.snapshot.store.inner.options;
        if key.len() > options.key_bytes_max {
            return Err(KvError::KeyTooLarge {
                len: key.len(),
                max: options.key_bytes_max,
            });
        }
        if let Some(v) = &value
            && v.len() > options.value_bytes_max
        {
            return Err(KvError::ValueTooLarge {
                len: v.len(),
                max: options.value_bytes_max,
            });
        }
        let old = self.writes.get(&key).map(|v| op_bytes(&key, v.as_ref()));
        let bytes = self.record_bytes - old.unwrap_or(0) + op_bytes(&key, value.as_ref());
        self.check_ops(usize::from(old.is_none()), bytes)?;
        self.record_bytes = bytes;
        self.writes.insert(key, value);
        Ok(())
    }

    /// Fails if `more` operations, and a record of `bytes`, pass the limits.
    fn check_ops(&self, more: usize, bytes: usize) -> Result<(), KvError> {
        let options = &self.snapshot.store.inner.options;
        let ops = self.writes.len() + self.reads.borrow().len() + more;
        let (ops_max, bytes_max) = (options.transaction_ops_max, options.log.record_bytes_max);
        if ops > ops_max || bytes > bytes_max {
            return Err(KvError::TransactionTooLarge {
                ops,
                bytes,
                ops_max,
                bytes_max,
            });
        }
        Ok(())
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        let mut txns = lock(&self.snapshot.store.inner.txns);
        if let Some(n) = txns.get_mut(&self.snapshot.lsn) {
            *n -= 1;
            if *n == 0 {
                txns.remove(&self.snapshot.lsn);
            }
        }
    }
}

/// Bytes one write adds to the commit record (see `batch.rs`).
fn op_bytes(key: &Bytes, value: Option<&Bytes>) -> usize {
    match value {
        Some(v) => 9 + key.len() + v.len(),
        None => 5 + key.len(),
    }
}
