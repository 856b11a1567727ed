//! RocksDB (through the `rocksdb` crate), behind the `rocksdb` cargo feature:
//! it builds RocksDB's C++ sources, which takes minutes. Every write is a
//! `WriteBatch` written with `sync = true`, so it is durable on return.

use std::path::Path;

use rocksdb::{DB, Options, SnapshotWithThreadMode, WriteBatch, WriteOptions};

use super::{KvContender, KvReader, KvStore, Pair, copy_found};
use crate::contenders::{Entrant, err};

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

impl Entrant for RocksDb {
    fn name(&self) -> &'static str {
        "rocksdb"
    }

    fn config(&self) -> &'static str {
        "rocksdb crate, defaults (built without compression libraries); every write a \
         WriteBatch with WriteOptions sync=true; put: one key; load: 1000 keys; gets \
         through one snapshot"
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
}
