//! A small `Sync` batch is written and synced by its own thread when it
//! waits (no other thread is woken: the log's quiet commit). A large one is
//! handed to the log's owner thread as soon as it is appended, so the
//! write and the sync overlap the memtable's insertion (the K2 load, 1000
//! keys a batch, ran some 20% faster so). Both are durable and visible when
//! `write` returns.

use wal_kv::{Durability, Options, Store, WriteBatch};

/// Wakes allowed over the small batches: a condition variable may wake
/// spuriously, and handing every batch over costs one per batch.
const SPURIOUS_MAX: u64 = 5;

fn batch(name: &str, ops: usize) -> WriteBatch {
    let mut b = WriteBatch::new();
    for i in 0..ops {
        b.put(format!("{name}/{i:04}"), format!("{i}"));
    }
    b
}

#[test]
fn small_batches_wake_no_thread_and_large_ones_hand_over() {
    let disk = wal_io::sim::SimDisk::new(11);
    let mut options = Options::default();
    options.log.identity_seed = Some(11);
    let store = Store::open_with(disk.storage(), options).unwrap();
    store.put("warm-up", "0").unwrap();

    let before = store.log().stats();
    for i in 0..100 {
        let lsn = store
            .write(&batch(&format!("small{i}"), 2), Durability::Sync)
            .unwrap();
        assert!(store.log().durable_lsn() >= lsn);
    }
    let wakes = store.log().stats().owner_wakes - before.owner_wakes;
    assert!(
        wakes <= SPURIOUS_MAX,
        "100 small batches woke the owner {wakes} times"
    );

    let before = store.log().stats();
    for i in 0..20 {
        let lsn = store
            .write(&batch(&format!("large{i}"), 500), Durability::Sync)
            .unwrap();
        assert!(
            store.log().durable_lsn() >= lsn,
            "durable when write returns"
        );
        let key = format!("large{i}/0499");
        assert_eq!(
            store.get(key.as_bytes()).unwrap().as_deref(),
            Some(&b"499"[..])
        );
    }
    // Not one wake per batch: a notify finds the owner not yet waiting
    // when it is still busy with the previous batch, and counts nothing.
    let wakes = store.log().stats().owner_wakes - before.owner_wakes;
    assert!(
        wakes > SPURIOUS_MAX,
        "20 large batches woke the owner {wakes} times: not handed over"
    );
    store.close().unwrap();
}

/// Under a policy whose owner does not sync on its own, handing a batch
/// over would cost the switches and overlap nothing: large batches take the
/// quiet commit too.
#[test]
fn under_a_policy_that_syncs_only_when_asked_large_batches_wake_no_thread() {
    let disk = wal_io::sim::SimDisk::new(12);
    let mut options = Options::default();
    options.log.identity_seed = Some(12);
    options.log.sync = wal_engine::SyncPolicy::Never;
    let store = Store::open_with(disk.storage(), options).unwrap();
    store.put("warm-up", "0").unwrap();
    let before = store.log().stats();
    for i in 0..20 {
        let lsn = store
            .write(&batch(&format!("large{i}"), 500), Durability::Sync)
            .unwrap();
        assert!(
            store.log().durable_lsn() >= lsn,
            "durable when write returns"
        );
    }
    let wakes = store.log().stats().owner_wakes - before.owner_wakes;
    assert!(
        wakes <= SPURIOUS_MAX,
        "20 large batches under Never woke the owner {wakes} times"
    );
    store.close().unwrap();
}
