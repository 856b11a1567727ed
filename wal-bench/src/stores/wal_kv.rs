//! This project's key-value store, `wal-kv`, with its default options.

use std::path::Path;

use wal_kv::{Durability, Isolation, KvError, Options, Snapshot, Store, WriteBatch};

use super::{KvContender, KvReader, KvStore, Pair, TxnStore, copy_found};
use crate::contenders::{Entrant, err};
use crate::txnload;

/// `wal/kv`.
pub static WAL_KV: WalKv = WalKv;

/// This project's store.
#[derive(Debug)]
pub struct WalKv;

struct OpenStore(Store);

impl KvStore for OpenStore {
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), String> {
        let mut batch = WriteBatch::new();
        batch.put(key.to_vec(), value.to_vec());
        self.0
            .write(&batch, Durability::Sync)
            .map(drop)
            .map_err(err("put"))
    }

    fn put_batch(&self, pairs: &[Pair]) -> Result<(), String> {
        let mut batch = WriteBatch::new();
        for (k, v) in pairs {
            batch.put(k.to_vec(), v.to_vec());
        }
        self.0
            .write(&batch, Durability::Sync)
            .map(drop)
            .map_err(err("write batch"))
    }

    fn reader(&self) -> Result<Box<dyn KvReader + '_>, String> {
        Ok(Box::new(Reader(self.0.snapshot())))
    }

    fn syncs(&self) -> Option<u64> {
        Some(self.0.log().stats().syncs)
    }

    fn close(self: Box<Self>) -> Result<(), String> {
        self.0.close().map_err(err("close"))
    }
}

impl TxnStore for OpenStore {
    fn increment_pair(&self, a: &[u8], b: &[u8]) -> Result<bool, String> {
        let mut txn = self.0.transaction_with(Isolation::Serializable);
        for k in [a, b] {
            let n = txnload::counter(txn.get(k).map_err(err("get"))?.as_deref())?;
            txn.put(k.to_vec(), txnload::value(n + 1).to_vec())
                .map_err(err("put"))?;
        }
        match txn.commit(Durability::Sync) {
            Ok(_) => Ok(true),
            Err(KvError::Conflict { .. }) => Ok(false),
            Err(e) => Err(format!("commit: {e}")),
        }
    }

    fn reader(&self) -> Result<Box<dyn KvReader + '_>, String> {
        KvStore::reader(self)
    }

    fn close(self: Box<Self>) -> Result<(), String> {
        self.0.close().map_err(err("close"))
    }
}

struct Reader<'a>(Snapshot<'a>);

impl KvReader for Reader<'_> {
    fn get(&mut self, key: &[u8], out: &mut Vec<u8>) -> Result<bool, String> {
        Ok(copy_found(out, self.0.get(key).map_err(err("get"))?))
    }
}

impl Entrant for WalKv {
    fn name(&self) -> &'static str {
        "wal/kv"
    }

    fn config(&self) -> &'static str {
        "wal-kv defaults (32 MiB memtable, 16 KiB blocks, no compression, io_uring \
         backend where available); put: a one-put batch with Durability::Sync; load: \
         one batch per 1000 keys, Durability::Sync; gets: one snapshot; transactions: \
         Isolation::Serializable, committed with Durability::Sync"
    }

    fn is_ours(&self) -> bool {
        true
    }
}

impl KvContender for WalKv {
    fn open(&self, dir: &Path) -> Result<Box<dyn KvStore>, String> {
        let store = Store::open(dir, Options::default()).map_err(err("open"))?;
        Ok(Box::new(OpenStore(store)))
    }

    fn open_txn(&self, dir: &Path) -> Option<Result<Box<dyn TxnStore>, String>> {
        let store = Store::open(dir, Options::default()).map_err(err("open"));
        Some(store.map(|s| Box::new(OpenStore(s)) as Box<dyn TxnStore>))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_printed_configuration_matches_the_defaults() {
        let defaults = Options::default();
        let config = WalKv.config();
        let memtable = format!("{} MiB memtable", defaults.memtable_bytes_max >> 20);
        let blocks = format!("{} KiB blocks", defaults.block_bytes >> 10);
        assert!(config.contains(&memtable), "{config:?} lacks {memtable:?}");
        assert!(config.contains(&blocks), "{config:?} lacks {blocks:?}");
    }
}
