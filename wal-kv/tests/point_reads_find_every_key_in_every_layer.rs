//! A point read finds every key wherever it lives: in the memtable (filled
//! by writes, or by the replay after a reopen), in a frozen memtable's
//! table, in tables merged by compaction, and it finds nothing for keys
//! never written. The memtables and tables each answer through a Bloom
//! filter first; a filter that turned away a key it holds would lose it
//! here. The budget is the default, so the memtable's filter is far from
//! full and does say "no".

use wal_kv::{Durability, Options, Store, WriteBatch};

const KEYS: u64 = 20_000;

fn key(i: u64) -> String {
    // An odd multiplier is a bijection on u64: scattered, never repeated.
    format!("key{:016x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

fn value(i: u64) -> String {
    format!("value of {i}")
}

fn check(store: &Store, upto: u64) {
    for i in 0..upto {
        let got = store.get(key(i).as_bytes()).unwrap();
        assert_eq!(got.as_deref(), Some(value(i).as_bytes()), "key {i}");
    }
    for i in 0..2_000u64 {
        assert_eq!(store.get(format!("absent{i}").as_bytes()).unwrap(), None);
    }
}

#[test]
fn keys_are_found_in_the_memtable_tables_and_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let write = |from: u64, to: u64| {
        let mut batch = WriteBatch::new();
        for i in from..to {
            batch.put(key(i), value(i));
        }
        store.write(&batch, Durability::Sync).unwrap();
    };
    // The first half goes into tables (two checkpoints, so compaction has
    // overlapping tables to merge); the second stays in the memtable.
    write(0, KEYS / 4);
    store.checkpoint().unwrap();
    write(KEYS / 4, KEYS / 2);
    store.checkpoint().unwrap();
    write(KEYS / 2, KEYS);
    check(&store, KEYS);
    // Dropped, not closed: a close would checkpoint the memtable, and this
    // wants the replay to refill it (and its filter) from the log.
    drop(store);

    let store = Store::open(dir.path(), Options::default()).unwrap();
    assert!(
        store.stats().memtable_bytes > 0,
        "the reopened memtable holds the log's tail"
    );
    check(&store, KEYS);
    store.close().unwrap();
}
