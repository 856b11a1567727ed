//! redb: a copy-on-write B-tree; every write transaction commits with
//! `Durability::Immediate` (its default), so it is durable on return.

use std::path::Path;

use redb::{Database, ReadOnlyTable, ReadableDatabase, ReadableTable, TableDefinition, TableError};

use super::{KvContender, KvReader, KvStore, Pair, TxnStore, copy_found};
use crate::contenders::{Entrant, err};
use crate::txnload;

/// The redb peer.
pub static REDB: Redb = Redb;

/// The redb key-value contender.
#[derive(Debug)]
pub struct Redb;

const TABLE: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("kv");
const FILE_NAME: &str = "kv.redb";

struct OpenRedb(Database);

impl OpenRedb {
    fn write(&self, pairs: &mut dyn Iterator<Item = (&[u8], &[u8])>) -> Result<(), String> {
        let tx = self.0.begin_write().map_err(err("begin write"))?;
        {
            let mut table = tx.open_table(TABLE).map_err(err("open table"))?;
            for (k, v) in pairs {
                table.insert(k, v).map_err(err("insert"))?;
            }
        }
        tx.commit().map_err(err("commit"))
    }
}

impl KvStore for OpenRedb {
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), String> {
        self.write(&mut std::iter::once((key, value)))
    }

    fn put_batch(&self, pairs: &[Pair]) -> Result<(), String> {
        self.write(&mut pairs.iter().map(|(k, v)| (k.as_slice(), v.as_slice())))
    }

    fn reader(&self) -> Result<Box<dyn KvReader + '_>, String> {
        let tx = self.0.begin_read().map_err(err("begin read"))?;
        let table = match tx.open_table(TABLE) {
            Ok(t) => Some(t),
            Err(TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(format!("open table: {e}")),
        };
        Ok(Box::new(Reader(table)))
    }

    fn close(self: Box<Self>) -> Result<(), String> {
        Ok(()) // every write transaction was durable on commit
    }
}

impl TxnStore for OpenRedb {
    /// redb has one writer at a time: a write transaction never conflicts.
    fn increment_pair(&self, a: &[u8], b: &[u8]) -> Result<bool, String> {
        let tx = self.0.begin_write().map_err(err("begin write"))?;
        {
            let mut table = tx.open_table(TABLE).map_err(err("open table"))?;
            for k in [a, b] {
                let n = {
                    let found = table.get(k).map_err(err("get"))?;
                    txnload::counter(found.as_ref().map(|v| v.value()))?
                };
                table
                    .insert(k, txnload::value(n + 1).as_slice())
                    .map_err(err("insert"))?;
            }
        }
        tx.commit().map_err(err("commit"))?;
        Ok(true)
    }

    fn reader(&self) -> Result<Box<dyn KvReader + '_>, String> {
        KvStore::reader(self)
    }

    fn close(self: Box<Self>) -> Result<(), String> {
        Ok(())
    }
}

/// No table yet means no keys yet.
struct Reader(Option<ReadOnlyTable<&'static [u8], &'static [u8]>>);

impl KvReader for Reader {
    fn get(&mut self, key: &[u8], out: &mut Vec<u8>) -> Result<bool, String> {
        let Some(table) = &self.0 else {
            return Ok(false);
        };
        let found = table.get(key).map_err(err("get"))?;
        Ok(copy_found(out, found.as_ref().map(|v| v.value())))
    }
}

impl Entrant for Redb {
    fn name(&self) -> &'static str {
        "redb"
    }

    fn config(&self) -> &'static str {
        "defaults (Durability::Immediate); one table; put: one write transaction; load: \
         one write transaction per 1000 keys; gets: one read transaction; transactions: \
         a write transaction (one writer at a time, so never a conflict)"
    }
}

impl KvContender for Redb {
    fn open(&self, dir: &Path) -> Result<Box<dyn KvStore>, String> {
        let db = Database::create(dir.join(FILE_NAME)).map_err(err("open"))?;
        Ok(Box::new(OpenRedb(db)))
    }

    fn open_txn(&self, dir: &Path) -> Option<Result<Box<dyn TxnStore>, String>> {
        let db = Database::create(dir.join(FILE_NAME)).map_err(err("open"));
        Some(db.map(|db| Box::new(OpenRedb(db)) as Box<dyn TxnStore>))
    }
}
