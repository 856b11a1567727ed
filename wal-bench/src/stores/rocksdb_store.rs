//! RocksDB (through the `rocksdb` crate), behind the `rocksdb` cargo feature:
//! it builds RocksDB's C++ sources, which takes minutes. Every write is a
//! `WriteBatch` written with `sync = true`, so it is durable on return.

use std::path::Path;

use rocksdb::{
    DB, ErrorKind, OptimisticTransactionDB, OptimisticTransactionOptions, Options,
    SnapshotWithThreadMode, WriteBatch, WriteOptions,
};

use super::{KvContender, KvReader, KvStore, Pair, TxnStore, copy_found};
use crate::contenders::{Entrant, err};
use crate::txnload;

/// The RocksDB peer.
pub static ROCKSDB: RocksDb = RocksDb;

/// The RocksDB key-value contender.
#[derive(Debug)]
pub struct RocksDb;

struct OpenDb {
    db: DB,
    sync: WriteOptions,
}

impl KvStore for OpenDb {
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), String> {
        self.db.put_opt(key, value, &self.sync).map_err(err("put"))
    }

    fn put_batch(&self, pairs: &[Pair]) -> Result<(), String> {
        let mut batch = WriteBatch::default();
        for (k, v) in pairs {
            batch.put(k, v);
        }
        self.db.write_opt(batch, &self.sync).map_err(err("write"))
    }

    fn reader(&self) -> Result<Box<dyn KvReader + '_>, String> {
        Ok(Box::new(Reader(self.db.snapshot())))
    }

    fn close(self: Box<Self>) -> Result<(), String> {
        Ok(()) // every write was synced
    }
}

struct Reader<'a>(SnapshotWithThreadMode<'a, DB>);

impl KvReader for Reader<'_> {
    fn get(&mut self, key: &[u8], out: &mut Vec<u8>) -> Result<bool, String> {
        Ok(copy_found(out, self.0.get_pinned(key).map_err(err("get"))?))
    }
}

/// RocksDB's optimistic transactions: each reads at a snapshot taken when
/// it begins, with `get_for_update`, so the commit fails if a key it read
/// or wrote changed since.
struct OpenTxDb {
    db: OptimisticTransactionDB,
    sync: WriteOptions,
    txn: OptimisticTransactionOptions,
}

impl TxnStore for OpenTxDb {
    fn increment_pair(&self, a: &[u8], b: &[u8]) -> Result<bool, String> {
        let txn = self.db.transaction_opt(&self.sync, &self.txn);
        for k in [a, b] {
            let found = txn.get_for_update(k, true).map_err(err("get"))?;
            let n = txnload::counter(found.as_deref())?;
            txn.put(k, txnload::value(n + 1)).map_err(err("put"))?;
        }
        match txn.commit() {
            Ok(()) => Ok(true),
            Err(e) if matches!(e.kind(), ErrorKind::Busy | ErrorKind::TryAgain) => Ok(false),
            Err(e) => Err(format!("commit: {e}")),
        }
    }

    fn reader(&self) -> Result<Box<dyn KvReader + '_>, String> {
        Ok(Box::new(TxReader(&self.db)))
    }

    fn close(self: Box<Self>) -> Result<(), String> {
        Ok(()) // every commit was synced
    }
}

/// Reads of the latest values (K3 reads after a reopen, with no writer).
struct TxReader<'a>(&'a OptimisticTransactionDB);

impl KvReader for TxReader<'_> {
    fn get(&mut self, key: &[u8], out: &mut Vec<u8>) -> Result<bool, String> {
        Ok(copy_found(out, self.0.get_pinned(key).map_err(err("get"))?))
    }
}

impl Entrant for RocksDb {
    fn name(&self) -> &'static str {
        "rocksdb"
    }

    fn config(&self) -> &'static str {
        "rocksdb crate, defaults (built without compression libraries); every write a \
         WriteBatch with WriteOptions sync=true; put: one key; load: 1000 keys; gets \
         through one snapshot; transactions: OptimisticTransactionDB, a snapshot per \
         transaction, get_for_update, commits with sync=true"
    }
}

impl KvContender for RocksDb {
    fn open(&self, dir: &Path) -> Result<Box<dyn KvStore>, String> {
        let mut options = Options::default();
        options.create_if_missing(true);
        let db = DB::open(&options, dir).map_err(err("open"))?;
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        Ok(Box::new(OpenDb { db, sync }))
    }

    fn open_txn(&self, dir: &Path) -> Option<Result<Box<dyn TxnStore>, String>> {
        let mut options = Options::default();
        options.create_if_missing(true);
        let db = match OptimisticTransactionDB::open(&options, dir) {
            Ok(db) => db,
            Err(e) => return Some(Err(format!("open: {e}"))),
        };
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        let mut txn = OptimisticTransactionOptions::default();
        txn.set_snapshot(true);
        Some(Ok(Box::new(OpenTxDb { db, sync, txn })))
    }
}
