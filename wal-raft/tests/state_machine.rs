//! The state machine: replication is logical (a node whose tables are
//! compressed another way applies the same entries to the same data), a
//! snapshot carries the data and installs whole, and a crash during an
//! install is finished by installing the current snapshot again.

use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;
use openraft::RaftSnapshotBuilder;
use openraft::entry::RaftEntry;
use openraft::storage::RaftStateMachine;
use openraft::type_config::TypeConfigExt;
use wal_io::Storage;
use wal_io::sim::{CrashMode, SimDisk};
use wal_kv::TableCompression;
use wal_raft::{
    Entry, Guard, LeaderId, LogId, Payload, RESERVED_PREFIX, Request, StateMachine, TypeConfig,
};

fn options(compression: TableCompression) -> wal_kv::Options {
    let mut o = wal_kv::Options::default();
    o.log.queue_bytes_max = 64 << 10;
    o.log.record_bytes_max = 32 << 10;
    o.log.segment_bytes = 256 << 10;
    o.memtable_bytes_max = 16 << 10; // checkpoints to tables as entries apply
    o.compression = compression;
    o
}

fn open(storage: Arc<dyn Storage>, compression: TableCompression) -> StateMachine {
    StateMachine::open(storage, options(compression)).unwrap()
}

/// Entries `from..to`, each putting two keys and deleting one.
fn entries(from: u64, to: u64) -> Vec<Entry> {
    (from..to)
        .map(|i| {
            let mut batch = wal_kv::WriteBatch::new();
            batch
                .put(
                    format!("key{:04}", i % 300),
                    format!("value {i} {}", "x".repeat(40)),
                )
                .put(format!("other{i:05}"), "o")
                .delete(format!("other{:05}", i.saturating_sub(7)));
            if i % 50 == 0 {
                // A request may not touch the state machine's own keys.
                batch.put(RESERVED_PREFIX.to_vec(), "spoof");
            }
            Entry::new(
                LogId::new(
                    LeaderId {
                        term: 1,
                        node_id: 1,
                    },
                    i,
                ),
                Payload::Normal(Request::new(batch)),
            )
        })
        .collect()
}

async fn apply(sm: &mut StateMachine, batch: Vec<Entry>) {
    let stream = futures_util::stream::iter(batch.into_iter().map(|e| Ok((e, None))));
    sm.apply(stream).await.unwrap();
}

fn contents(sm: &StateMachine) -> Vec<(Bytes, Bytes)> {
    sm.store()
        .scan(Bound::Unbounded, Bound::Unbounded)
        .unwrap()
        .into_iter()
        .filter(|(k, _)| !k.starts_with(RESERVED_PREFIX))
        .collect()
}

#[test]
fn nodes_with_other_table_formats_apply_the_same_entries_to_the_same_data() {
    let (a, b) = (SimDisk::new(1), SimDisk::new(2));
    TypeConfig::run(async move {
        let mut lz4 = open(a.storage(), TableCompression::Lz4);
        let mut plain = open(b.storage(), TableCompression::None);
        for chunk in 0..4 {
            apply(&mut lz4, entries(1 + chunk * 250, 1 + (chunk + 1) * 250)).await;
            apply(&mut plain, entries(1 + chunk * 250, 1 + (chunk + 1) * 250)).await;
        }
        assert!(lz4.store().stats().checkpoints > 0, "tables were written");
        assert_eq!(contents(&lz4), contents(&plain));
        assert_eq!(contents(&lz4).len(), 300 + 7);
        let (applied, _) = lz4.applied_state().await.unwrap();
        assert_eq!(applied.map(|l| l.index), Some(1000));
        assert!(
            lz4.store().get(RESERVED_PREFIX).unwrap().is_none(),
            "no spoofed state"
        );
    });
}

/// A guarded request writes its batch only where every guard holds against
/// the data as of its index (the writes of the entry before it included),
/// and all of the batch or none of it; nodes decide alike.
#[test]
fn guarded_requests_write_only_where_their_guards_hold() {
    let (a, b) = (SimDisk::new(11), SimDisk::new(12));
    TypeConfig::run(async move {
        let put = |k: &str, v: &str| {
            let mut batch = wal_kv::WriteBatch::new();
            batch
                .put(k.to_owned(), v.to_owned())
                .put(format!("{k}-too"), v.to_owned());
            batch
        };
        let requests = [
            Request::new(put("a", "1")),
            Request::guarded(vec![Guard::equals("a", "1")], put("b", "2")),
            Request::guarded(vec![Guard::equals("a", "2")], put("c", "3")),
            Request::guarded(vec![Guard::absent("x")], put("x", "4")),
            Request::guarded(vec![Guard::absent("x")], put("x", "5")),
            Request::guarded(
                vec![
                    Guard::equals("b", "2"),
                    Guard::absent("nothing"),
                    Guard::equals("a", "0"),
                ],
                put("d", "6"),
            ),
            Request::guarded(vec![Guard::absent(RESERVED_PREFIX.to_vec())], put("e", "7")),
        ];
        let entries: Vec<Entry> = requests
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let id = LogId::new(
                    LeaderId {
                        term: 1,
                        node_id: 1,
                    },
                    i as u64 + 1,
                );
                Entry::new(id, Payload::Normal(r))
            })
            .collect();
        let mut one = open(a.storage(), TableCompression::Lz4);
        let mut other = open(b.storage(), TableCompression::None);
        apply(&mut one, entries.clone()).await;
        for e in entries {
            apply(&mut other, vec![e]).await; // one at a time: the same result
        }
        let b = |s: &str| Bytes::from(s.to_owned());
        let want: Vec<(Bytes, Bytes)> = [
            ("a", "1"),
            ("a-too", "1"),
            ("b", "2"),
            ("b-too", "2"),
            ("x", "4"),
            ("x-too", "4"),
        ]
        .into_iter()
        .map(|(k, v)| (b(k), b(v)))
        .collect();
        assert_eq!(contents(&one), want);
        assert_eq!(contents(&other), want);
        assert_eq!(
            one.applied_state().await.unwrap().0.map(|l| l.index),
            Some(7)
        );
    });
}

#[test]
fn a_snapshot_carries_the_data_and_installs_whole_on_another_format() {
    let (a, b) = (SimDisk::new(3), SimDisk::new(4));
    TypeConfig::run(async move {
        let mut leader = open(a.storage(), TableCompression::Lz4);
        apply(&mut leader, entries(1, 600)).await;
        let snap = leader
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        assert_eq!(snap.meta.last_log_id.map(|l| l.index), Some(599));
        // Writes after the snapshot's view are not in it.
        apply(&mut leader, entries(600, 700)).await;

        let mut follower = open(b.storage(), TableCompression::Snappy);
        apply(&mut follower, entries(1, 40)).await; // stale state, replaced whole
        follower
            .install_snapshot(&snap.meta, snap.snapshot.clone())
            .await
            .unwrap();
        assert_eq!(
            follower.applied_state().await.unwrap().0,
            snap.meta.last_log_id
        );
        apply(&mut follower, entries(600, 700)).await;
        assert_eq!(contents(&follower), contents(&leader));
        let current = follower.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, snap.meta);
        // A damaged snapshot is refused before anything changes.
        let before = contents(&follower);
        let mut bytes = vec![0u8; usize::try_from(snap.snapshot.len()).unwrap()];
        snap.snapshot.read_at(0, &mut bytes).unwrap();
        let damaged_disk = SimDisk::new(5);
        let file = damaged_disk
            .storage()
            .create("damaged", wal_io::FileOptions::BUFFERED)
            .unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        file.write_at(0, &[&bytes]).unwrap();
        let damaged = wal_raft::SnapshotFile::open(&damaged_disk.storage(), "damaged").unwrap();
        assert!(
            follower
                .install_snapshot(&snap.meta, damaged)
                .await
                .is_err()
        );
        assert_eq!(contents(&follower), before);
    });
}

#[test]
fn a_crash_during_an_install_is_finished_by_installing_again() {
    let mut interrupted = 0;
    for (i, mode) in CrashMode::CONCRETE.into_iter().enumerate() {
        for reads in [1u64, 2, 3, 4, 6, 8] {
            let (a, b) = (SimDisk::new(6), SimDisk::new(7 + i as u64));
            interrupted += TypeConfig::run(async move {
                let mut leader = open(a.storage(), TableCompression::None);
                apply(&mut leader, entries(1, 400)).await;
                let snap = leader
                    .get_snapshot_builder()
                    .await
                    .build_snapshot()
                    .await
                    .unwrap();
                let mut follower = open(b.storage(), TableCompression::None);
                apply(&mut follower, entries(1, 100)).await;
                // Reads on the follower's disk fail part way through the
                // load (the copy reads the leader's disk only).
                b.inject(wal_io::sim::Fault::from_then_on(
                    wal_io::Op::Read,
                    b.op_count(wal_io::Op::Read) + reads,
                    wal_io::sim::FaultError::Eio,
                ));
                let failed = follower
                    .install_snapshot(&snap.meta, snap.snapshot.clone())
                    .await;
                if failed.is_ok() {
                    return 0; // fewer reads than that: nothing interrupted
                }
                b.crash(mode);
                b.clear_faults();
                drop(follower);
                let mut follower = open(b.storage(), TableCompression::None);
                // What openraft does at start: the current snapshot is newer
                // than what the store says it applied, so it is installed
                // again.
                let current = follower.get_current_snapshot().await.unwrap().unwrap();
                assert_eq!(current.meta, snap.meta);
                let (applied, _) = follower.applied_state().await.unwrap();
                assert!(applied < snap.meta.last_log_id, "{mode:?} {reads}");
                follower
                    .install_snapshot(&current.meta, current.snapshot)
                    .await
                    .unwrap();
                assert_eq!(contents(&follower), contents(&leader), "{mode:?} {reads}");
                1
            });
        }
    }
    assert!(
        interrupted >= 2 * CrashMode::CONCRETE.len(),
        "{interrupted}"
    );
}

/// The Raft log is the durable record: applying entries makes the store's
/// own log sync nothing (one fsync per group of entries on a node's write
/// path, the Raft log's, not two).
#[test]
fn applying_entries_syncs_nothing_of_the_store() {
    let disk = SimDisk::new(20);
    TypeConfig::run(async move {
        let mut o = options(TableCompression::None);
        o.memtable_bytes_max = 64 << 20; // no checkpoint in between
        let mut sm = StateMachine::open(disk.storage(), o).unwrap();
        let before = sm.store().log().stats().syncs;
        for chunk in 0..10 {
            apply(&mut sm, entries(1 + chunk * 20, 1 + (chunk + 1) * 20)).await;
        }
        assert_eq!(sm.store().log().stats().syncs, before);
        assert_eq!(
            sm.applied_state().await.unwrap().0.map(|l| l.index),
            Some(200)
        );
    });
}

/// openraft builds snapshots in a task of its own while its state machine
/// worker may install one: the two must not remove each other's files,
/// and the newest snapshot stays the current one whichever finishes last.
#[test]
fn a_snapshot_built_while_one_is_installed_leaves_the_newest() {
    for round in 0..12u64 {
        let (a, b) = (SimDisk::new(40 + round), SimDisk::new(60 + round));
        TypeConfig::run(async move {
            let mut leader = open(a.storage(), TableCompression::None);
            apply(&mut leader, entries(1, 400)).await;
            let snap = leader
                .get_snapshot_builder()
                .await
                .build_snapshot()
                .await
                .unwrap();
            let mut follower = open(b.storage(), TableCompression::None);
            apply(&mut follower, entries(1, 150)).await;
            let mut builder = follower.get_snapshot_builder().await;
            let (built, installed) = futures_util::join!(
                builder.build_snapshot(),
                follower.install_snapshot(&snap.meta, snap.snapshot.clone())
            );
            let built = built.unwrap();
            installed.unwrap();
            assert!(built.meta.last_log_id <= snap.meta.last_log_id);
            let current = follower.get_current_snapshot().await.unwrap().unwrap();
            assert_eq!(current.meta, snap.meta, "round {round}");
            let files: Vec<String> = b
                .storage()
                .list()
                .unwrap()
                .into_iter()
                .filter(|n| n.starts_with("raft-snapshot"))
                .collect();
            assert_eq!(files.len(), 1, "round {round}: {files:?}");
            assert_eq!(contents(&follower), contents(&leader), "round {round}");
        });
    }
}
