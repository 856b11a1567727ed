//! fjall as a key-value store: one keyspace, a put synced through
//! `Database::persist(SyncData)`, batches through its atomic write batch.

use std::path::Path;

use fjall::{
    Database, Keyspace, KeyspaceCreateOptions, OptimisticTxDatabase, OptimisticTxKeyspace,
    PersistMode, Readable, Snapshot,
};

use super::{KvContender, KvReader, KvStore, Pair, TxnStore, copy_found};
use crate::contenders::{Entrant, err};
use crate::txnload;

/// The fjall peer.
pub static FJALL: Fjall = Fjall;

/// The fjall key-value contender.
#[derive(Debug)]
pub struct Fjall;

struct OpenFjall {
    db: Database,
    keyspace: Keyspace,
}

impl KvStore for OpenFjall {
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), String> {
        self.keyspace.insert(key, value).map_err(err("insert"))?;
        self.db
            .persist(PersistMode::SyncData)
            .map_err(err("persist"))
    }

    fn put_batch(&self, pairs: &[Pair]) -> Result<(), String> {
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncData));
        for (k, v) in pairs {
            batch.insert(&self.keyspace, k.as_slice(), v.as_slice());
        }
        batch.commit().map_err(err("commit batch"))
    }

    fn reader(&self) -> Result<Box<dyn KvReader + '_>, String> {
        Ok(Box::new(Reader {
            snapshot: self.db.snapshot(),
            keyspace: &self.keyspace,
        }))
    }

    fn close(self: Box<Self>) -> Result<(), String> {
        self.db
            .persist(PersistMode::SyncData)
            .map_err(err("persist"))
    }
}

/// fjall's optimistic transactional database (serializable snapshot
/// isolation: reads are checked at commit).
struct OpenTx {
    db: OptimisticTxDatabase,
    keyspace: OptimisticTxKeyspace,
}

impl TxnStore for OpenTx {
    fn increment_pair(&self, a: &[u8], b: &[u8]) -> Result<bool, String> {
        let mut tx = self
            .db
            .write_tx()
            .map_err(err("begin"))?
            .durability(Some(PersistMode::SyncData));
        for k in [a, b] {
            let found = tx.get(&self.keyspace, k).map_err(err("get"))?;
            let n = txnload::counter(found.as_deref())?;
            tx.insert(&self.keyspace, k, txnload::value(n + 1).as_slice());
        }
        Ok(tx.commit().map_err(err("commit"))?.is_ok())
    }

    fn reader(&self) -> Result<Box<dyn KvReader + '_>, String> {
        Ok(Box::new(Reader {
            snapshot: self.db.read_tx(),
            keyspace: self.keyspace.inner(),
        }))
    }

    fn close(self: Box<Self>) -> Result<(), String> {
        self.db
            .persist(PersistMode::SyncData)
            .map_err(err("persist"))
    }
}

struct Reader<'a> {
    snapshot: Snapshot,
    keyspace: &'a Keyspace,
}

impl KvReader for Reader<'_> {
    fn get(&mut self, key: &[u8], out: &mut Vec<u8>) -> Result<bool, String> {
        Ok(copy_found(
            out,
            self.snapshot.get(self.keyspace, key).map_err(err("get"))?,
        ))
    }
}

impl Entrant for Fjall {
    fn name(&self) -> &'static str {
        "fjall"
    }

    fn config(&self) -> &'static str {
        "defaults (LZ4); one keyspace; put: insert then Database::persist(SyncData); \
         load: a write batch per 1000 keys with durability SyncData; gets: one snapshot; \
         transactions: OptimisticTxDatabase write transactions with durability SyncData"
    }
}

impl KvContender for Fjall {
    fn open(&self, dir: &Path) -> Result<Box<dyn KvStore>, String> {
        let db = Database::builder(dir).open().map_err(err("open"))?;
        let keyspace = db
            .keyspace("kv", KeyspaceCreateOptions::default)
            .map_err(err("keyspace"))?;
        Ok(Box::new(OpenFjall { db, keyspace }))
    }

    fn open_txn(&self, dir: &Path) -> Option<Result<Box<dyn TxnStore>, String>> {
        let open = || -> Result<Box<dyn TxnStore>, String> {
            let db = OptimisticTxDatabase::builder(dir)
                .open()
                .map_err(err("open"))?;
            let keyspace = db
                .keyspace("kv", KeyspaceCreateOptions::default)
                .map_err(err("keyspace"))?;
            Ok(Box::new(OpenTx { db, keyspace }))
        };
        Some(open())
    }
}
