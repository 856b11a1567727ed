//! `Store::close` checkpoints the memtable (and waits for a checkpoint
//! already under way), so the next open finds every key in tables and has
//! nothing of the log to replay into memory. Dropping the store instead
//! skips that, as a crash would, and the next open replays.

use wal_kv::{Durability, Options, Store, WriteBatch};

const KEYS: u64 = 6_000;

fn key(i: u64) -> String {
    format!("key{:016x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// A store with a small memtable, written with enough keys that a frozen
/// memtable's checkpoint may still be pending when the writes end.
fn filled(dir: &std::path::Path) -> (Store, Options) {
    let mut options = Options::default();
    options.memtable_bytes_max = 64 << 10;
    let store = Store::open(dir, options.clone()).unwrap();
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(100) {
        let mut batch = WriteBatch::new();
        for &i in chunk {
            batch.put(key(i), format!("value {i}"));
        }
        store.write(&batch, Durability::Sync).unwrap();
    }
    (store, options)
}

fn check(store: &Store) {
    for i in 0..KEYS {
        let got = store.get(key(i).as_bytes()).unwrap();
        assert_eq!(
            got.as_deref(),
            Some(format!("value {i}").as_bytes()),
            "key {i}"
        );
    }
}

#[test]
fn a_closed_store_reopens_with_an_empty_memtable() {
    let dir = tempfile::tempdir().unwrap();
    let (store, options) = filled(dir.path());
    let last = store.log().durable_lsn();
    assert!(store.stats().memtable_bytes > 0);
    store.close().unwrap();

    let store = Store::open(dir.path(), options).unwrap();
    let stats = store.stats();
    assert_eq!(stats.memtable_bytes, 0, "the reopen replayed the log");
    assert_eq!(stats.frozen_bytes, 0);
    assert_eq!(stats.checkpoint_lsn, last, "the tables hold every write");
    check(&store);
    store.close().unwrap();
}

#[test]
fn a_dropped_store_replays_its_log_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let (store, options) = filled(dir.path());
    drop(store);

    let store = Store::open(dir.path(), options).unwrap();
    assert!(store.stats().memtable_bytes > 0, "nothing was replayed");
    check(&store);
    store.close().unwrap();
}
