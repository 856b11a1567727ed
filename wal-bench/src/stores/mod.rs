//! The key-value contenders of K1 and K2: this project's store and the peers
//! that can express durable puts, atomic batches and point reads, behind one
//! small trait.

use std::path::Path;

use crate::contenders::Entrant;

mod fjall_store;
mod raft_engine_store;
mod redb_store;
#[cfg(feature = "rocksdb")]
mod rocksdb_store;
mod sqlite_store;
mod wal_kv;
mod wal_raft;

/// Bytes of every key (K1, K2).
pub const KEY_BYTES: usize = 16;
/// Bytes of every value (K1, K2).
pub const VALUE_BYTES: usize = 100;

/// One key and its value.
pub type Pair = ([u8; KEY_BYTES], [u8; VALUE_BYTES]);

/// An open store of one contender.
pub trait KvStore: Send + Sync {
    /// Sets `key` to `value`; returns once durable.
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), String>;

    /// Sets every pair atomically (all or none after a crash); returns once
    /// durable.
    fn put_batch(&self, pairs: &[Pair]) -> Result<(), String>;

    /// A reader over a consistent view, as each store offers it for a run of
    /// point reads (a read transaction or a snapshot).
    fn reader(&self) -> Result<Box<dyn KvReader + '_>, String>;

    /// fsyncs done so far (for a replicated store, by its leader), where
    /// the store counts them.
    fn syncs(&self) -> Option<u64> {
        None
    }

    /// Closes the store cleanly.
    fn close(self: Box<Self>) -> Result<(), String>;
}

/// Point reads over one view.
pub trait KvReader {
    /// Copies the value of `key` into `out`; false when the key is absent.
    fn get(&mut self, key: &[u8], out: &mut Vec<u8>) -> Result<bool, String>;
}

/// An open store of a contender with transactions (K3).
pub trait TxnStore: Send + Sync {
    /// One attempt: in one transaction, reads `a` and `b` and writes each
    /// back holding its counter plus one (see `txnload`), committed durably.
    /// False when the commit was refused for a conflict (nothing written).
    fn increment_pair(&self, a: &[u8], b: &[u8]) -> Result<bool, String>;

    /// A reader over a consistent view.
    fn reader(&self) -> Result<Box<dyn KvReader + '_>, String>;

    /// Closes the store cleanly.
    fn close(self: Box<Self>) -> Result<(), String>;
}

/// One key-value contender: how to open its store.
pub trait KvContender: Entrant {
    /// Opens (creating) the store in `dir`.
    fn open(&self, dir: &Path) -> Result<Box<dyn KvStore>, String>;

    /// Opens (creating) the store in `dir` for transactions, if it has them
    /// (its `not_applicable` says so for K3 otherwise).
    fn open_txn(&self, dir: &Path) -> Option<Result<Box<dyn TxnStore>, String>> {
        let _ = dir;
        None
    }
}

/// Why a store without transactions cannot run K3.
pub(crate) fn no_transactions(workload: crate::Workload) -> Option<&'static str> {
    matches!(workload, crate::Workload::K3 | crate::Workload::K3Many)
        .then_some("no multi-key read-write transactions")
}

/// Every key-value contender, ours first.
pub fn all() -> Vec<&'static dyn KvContender> {
    vec![
        &wal_kv::WAL_KV,
        &raft_engine_store::RAFT_ENGINE,
        &fjall_store::FJALL,
        &sqlite_store::SQLITE,
        &redb_store::REDB,
        #[cfg(feature = "rocksdb")]
        &rocksdb_store::ROCKSDB,
    ]
}

/// The replicated stores (R1 only).
pub fn replicated() -> Vec<&'static dyn KvContender> {
    vec![&wal_raft::WAL_RAFT]
}

/// The contenders of a key-value workload: for R1, this project's store
/// (the one-node baseline) and the replicated ones; otherwise every store
/// but those.
pub fn entrants(workload: crate::Workload) -> Vec<&'static dyn KvContender> {
    if workload.is_replicated() {
        let mut out: Vec<&'static dyn KvContender> = vec![&wal_kv::WAL_KV];
        out.extend(replicated());
        out
    } else {
        all()
    }
}

/// The key-value contender named `name`.
pub fn by_name(name: &str) -> Option<&'static dyn KvContender> {
    all()
        .into_iter()
        .chain(replicated())
        .find(|c| c.name() == name)
}

/// Copies a found value into `out`, reusing its allocation; false when
/// there was none.
pub(crate) fn copy_found<V: AsRef<[u8]>>(out: &mut Vec<u8>, value: Option<V>) -> bool {
    let Some(value) = value else {
        return false;
    };
    out.clear();
    out.extend_from_slice(value.as_ref());
    true
}
