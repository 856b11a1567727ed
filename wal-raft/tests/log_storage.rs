//! The Raft log store on its own: entries are readable as soon as `append`
//! returns, the flush callback fires once they are durable, and every
//! index, the vote, the purge point and the committed id come back after a
//! reopen and after a power loss on the simulated disk.

use std::sync::Arc;

use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, RaftLogStorage, RaftLogStorageExt};
use openraft::type_config::TypeConfigExt;
use openraft::{LogState, RaftLogReader};
use wal_io::Storage;
use wal_io::sim::{CrashMode, SimDisk};
use wal_raft::{Entry, LeaderId, LogId, LogStore, Payload, Request, TypeConfig, Vote};

fn id(term: u64, index: u64) -> LogId {
    LogId::new(LeaderId { term, node_id: 1 }, index)
}

fn entry(term: u64, index: u64) -> Entry {
    let mut batch = wal_kv::WriteBatch::new();
    batch.put(format!("k{index}"), format!("t{term}"));
    Entry::new(id(term, index), Payload::Normal(Request::new(batch)))
}

/// Small segments: the simulated disk keeps every byte in memory.
fn open(storage: Arc<dyn Storage>) -> LogStore {
    let mut options = wal_engine::Options::default();
    options.queue_bytes_max = 16 << 10;
    options.record_bytes_max = 8 << 10;
    options.segment_bytes = 64 << 10;
    LogStore::open(storage, options).unwrap()
}

fn run<F: Future<Output = ()> + Send + 'static>(f: F) {
    TypeConfig::run(f);
}

async fn indexes(log: &mut LogStore, range: std::ops::Range<u64>) -> Vec<(u64, u64)> {
    log.get_log_reader()
        .await
        .try_get_log_entries(range)
        .await
        .unwrap()
        .iter()
        .map(|e| (e.log_id.leader_id.term, e.log_id.index))
        .collect()
}

#[test]
fn entries_are_readable_at_once_and_flushed_by_the_group_commit() {
    let disk = SimDisk::new(1);
    let storage = disk.storage();
    run(async move {
        let mut log = open(storage);
        // No cache of durable entries: what is not yet durable is still
        // read from memory.
        log.set_cache_bytes_max(0);
        let mut reader = log.get_log_reader().await;
        // The first entry may have any index.
        let (tx, rx) = TypeConfig::oneshot();
        log.append((5..9).map(|i| entry(1, i)), IOFlushed::signal(tx))
            .await
            .unwrap();
        let read = reader.try_get_log_entries(5..9).await.unwrap();
        assert_eq!(read.len(), 4, "readable when append returns");
        assert_eq!(read[0].payload, entry(1, 5).payload);
        rx.await.unwrap().unwrap();
        assert!(
            log.wal().durable_lsn() >= 4,
            "durable when the callback fires"
        );
        assert_eq!(
            log.get_log_state().await.unwrap(),
            LogState {
                last_purged_log_id: None,
                last_log_id: Some(id(1, 8)),
            }
        );
        // A gap is refused.
        let (tx, _rx) = TypeConfig::oneshot();
        assert!(
            log.append([entry(1, 10)], IOFlushed::signal(tx))
                .await
                .is_err()
        );
    });
}

/// The newest entries are served from memory and older ones from the
/// log's files: with a cache of a few entries (most reads from the files,
/// across truncations and purges) and with none, the entries read are the
/// entries written.
#[test]
fn entries_read_alike_from_memory_and_from_the_files() {
    for cache_bytes in [0, 300, wal_raft::CACHE_BYTES_MAX] {
        let disk = SimDisk::new(3);
        run(async move {
            let mut log = open(disk.storage());
            log.set_cache_bytes_max(cache_bytes);
            log.blocking_append((1..=40).map(|i| entry(1, i)))
                .await
                .unwrap();
            log.truncate_after(Some(id(1, 30))).await.unwrap();
            log.blocking_append((31..=60).map(|i| entry(2, i)))
                .await
                .unwrap();
            log.purge(id(1, 10)).await.unwrap();
            let want: Vec<(u64, u64)> = (11..=30)
                .map(|i| (1, i))
                .chain((31..=60).map(|i| (2, i)))
                .collect();
            assert_eq!(indexes(&mut log, 0..100).await, want, "cache {cache_bytes}");
            assert_eq!(
                indexes(&mut log, 25..35).await,
                want[14..24],
                "cache {cache_bytes}"
            );
            let read = log
                .get_log_reader()
                .await
                .try_get_log_entries(40..41)
                .await
                .unwrap();
            assert_eq!(read[0].payload, entry(2, 40).payload);
        });
    }
}

#[test]
fn indexes_vote_purge_and_committed_survive_a_reopen() {
    let disk = SimDisk::new(2);
    let d = disk.clone();
    run(async move {
        let mut log = open(d.storage());
        log.blocking_append((3..=10).map(|i| entry(1, i)))
            .await
            .unwrap();
        log.save_vote(&Vote::new(2, 1)).await.unwrap();
        log.truncate_after(Some(id(1, 7))).await.unwrap();
        log.blocking_append((8..=12).map(|i| entry(2, i)))
            .await
            .unwrap();
        log.save_committed(Some(id(2, 9))).await.unwrap();
        log.purge(id(1, 5)).await.unwrap();
        log.blocking_append([entry(2, 13)]).await.unwrap();
        drop(log);

        let mut log = open(d.storage());
        assert_eq!(
            log.get_log_state().await.unwrap(),
            LogState {
                last_purged_log_id: Some(id(1, 5)),
                last_log_id: Some(id(2, 13)),
            }
        );
        let want: Vec<(u64, u64)> = [(1, 6), (1, 7)]
            .into_iter()
            .chain((8..=13).map(|i| (2, i)))
            .collect();
        assert_eq!(indexes(&mut log, 0..100).await, want);
        assert_eq!(
            log.get_log_reader().await.read_vote().await.unwrap(),
            Some(Vote::new(2, 1))
        );
        assert_eq!(log.read_committed().await.unwrap(), Some(id(2, 9)));

        // Purging past the last entry: the log goes on after the purge point.
        log.purge(id(3, 20)).await.unwrap();
        assert!(indexes(&mut log, 0..100).await.is_empty());
        log.blocking_append([entry(3, 21)]).await.unwrap();
        drop(log);
        let mut log = open(d.storage());
        assert_eq!(indexes(&mut log, 0..100).await, [(3, 21)]);
        assert_eq!(
            log.get_log_state().await.unwrap().last_purged_log_id,
            Some(id(3, 20))
        );
        // Truncating everything leaves the purge point as the last log id.
        log.truncate_after(None).await.unwrap();
        assert_eq!(
            log.get_log_state().await.unwrap().last_log_id,
            Some(id(3, 20))
        );
    });
}

/// Saving the committed id writes nothing by itself (openraft saves it
/// after every commit: a record and an fsync of its own would double a
/// node's fsyncs); it rides in front of the next append's entries and is
/// durable with them.
#[test]
fn the_committed_id_rides_with_the_next_append() {
    let disk = SimDisk::new(9);
    let d = disk.clone();
    run(async move {
        let mut log = open(d.storage());
        log.blocking_append((1..=4).map(|i| entry(1, i)))
            .await
            .unwrap();
        let before = log.wal().stats();
        log.save_committed(Some(id(1, 3))).await.unwrap();
        assert_eq!(log.read_committed().await.unwrap(), Some(id(1, 3)));
        let after = log.wal().stats();
        assert_eq!(
            (after.appends, after.syncs),
            (before.appends, before.syncs),
            "saving the committed id wrote or synced"
        );
        log.blocking_append([entry(1, 5)]).await.unwrap();
        assert_eq!(log.wal().stats().appends, before.appends + 2);
        drop(log);
        d.crash(CrashMode::LoseAll);
        let mut log = open(d.storage());
        assert_eq!(log.read_committed().await.unwrap(), Some(id(1, 3)));
        assert_eq!(indexes(&mut log, 0..100).await.len(), 5);
    });
}

/// A leader that restarts does not lead again in its old term (its last
/// entries may be on the followers and not on its own disk, and leading on
/// would give their log ids to other entries): the committed vote it saved
/// comes back as the same vote, not committed, so openraft starts it as a
/// follower; a vote saved after that is read as saved.
#[test]
fn a_restarted_leader_must_be_elected_again() {
    let disk = SimDisk::new(8);
    let d = disk.clone();
    run(async move {
        let mut log = open(d.storage());
        let leading = Vote::new_committed(3, 1);
        log.save_vote(&leading).await.unwrap();
        assert_eq!(
            log.get_log_reader().await.read_vote().await.unwrap(),
            Some(leading)
        );
        drop(log);
        let mut log = open(d.storage());
        let read = log.get_log_reader().await.read_vote().await.unwrap();
        assert_eq!(read, Some(Vote::new(3, 1)));
        let next = Vote::new_committed(4, 2);
        log.save_vote(&next).await.unwrap();
        assert_eq!(
            log.get_log_reader().await.read_vote().await.unwrap(),
            Some(next)
        );
    });
}

/// Power losses after acknowledged steps: what was acknowledged (a flush
/// callback, a returned `save_vote`, `truncate_after` or `purge`) is there,
/// entries keep their indexes, and the log is a prefix of what was appended.
#[test]
fn acknowledged_steps_survive_power_loss() {
    for seed in 1..=20u64 {
        for mode in CrashMode::CONCRETE {
            let disk = SimDisk::new(seed);
            let d = disk.clone();
            run(async move {
                let mut log = open(d.storage());
                log.blocking_append((1..=6).map(|i| entry(1, i)))
                    .await
                    .unwrap();
                log.save_vote(&Vote::new(2, 2)).await.unwrap();
                log.truncate_after(Some(id(1, 4))).await.unwrap();
                log.purge(id(1, 2)).await.unwrap();
                log.blocking_append((5..=7).map(|i| entry(2, i)))
                    .await
                    .unwrap();
                // Not waited for: may or may not survive, never half.
                let (tx, _rx) = TypeConfig::oneshot();
                log.append((8..=9).map(|i| entry(2, i)), IOFlushed::signal(tx))
                    .await
                    .unwrap();
                // Power goes while the log is open (a drop would close it).
                d.crash(mode);
                drop(log);
            });
            let d = disk.clone();
            run(async move {
                let mut log = open(d.storage());
                assert_eq!(
                    log.get_log_reader().await.read_vote().await.unwrap(),
                    Some(Vote::new(2, 2)),
                    "seed {seed} {mode:?}"
                );
                let state = log.get_log_state().await.unwrap();
                assert_eq!(
                    state.last_purged_log_id,
                    Some(id(1, 2)),
                    "seed {seed} {mode:?}"
                );
                let got = indexes(&mut log, 0..100).await;
                let full: Vec<(u64, u64)> = [(1, 3), (1, 4)]
                    .into_iter()
                    .chain((5..=9).map(|i| (2, i)))
                    .collect();
                assert!(
                    got.len() >= 5 && full.starts_with(&got),
                    "seed {seed} {mode:?}: {got:?}"
                );
            });
        }
    }
}

/// Raft's writes are ordered, the vote's included: a vote saved after
/// entries whose flush was not waited for is never on disk without them.
#[test]
fn a_vote_is_never_durable_ahead_of_the_entries_before_it() {
    for seed in 1..=20u64 {
        let disk = SimDisk::new(seed);
        let d = disk.clone();
        run(async move {
            let mut log = open(d.storage());
            let (tx, _rx) = TypeConfig::oneshot();
            log.append((1..=3).map(|i| entry(1, i)), IOFlushed::signal(tx))
                .await
                .unwrap();
            log.save_vote(&Vote::new(2, 2)).await.unwrap();
            d.crash(CrashMode::LoseAll);
            drop(log);
        });
        let d = disk.clone();
        run(async move {
            let mut log = open(d.storage());
            assert_eq!(
                log.get_log_reader().await.read_vote().await.unwrap(),
                Some(Vote::new(2, 2))
            );
            assert_eq!(
                indexes(&mut log, 0..10).await,
                [(1, 1), (1, 2), (1, 3)],
                "seed {seed}"
            );
        });
    }
}

/// The purge point is recorded before the log drops a segment: a purge
/// whose metadata write fails drops nothing.
#[test]
fn a_purge_that_fails_to_record_its_point_drops_nothing() {
    let disk = SimDisk::new(7);
    let d = disk.clone();
    run(async move {
        let mut log = open(d.storage());
        // Enough entries for several 64 KiB segments.
        for chunk in 0..40u64 {
            log.blocking_append((chunk * 100 + 1..=chunk * 100 + 100).map(|i| entry(1, i)))
                .await
                .unwrap();
        }
        let segments = d
            .storage()
            .list()
            .unwrap()
            .iter()
            .filter(|n| n.ends_with(".wal"))
            .count();
        assert!(segments > 2, "{segments} segments");
        // Every file creation fails from now on: the log's segment
        // preparer may create one in the background, and a fault that only
        // the next creation sees could be spent there instead of on the
        // metadata file.
        d.inject(wal_io::sim::Fault::from_then_on(
            wal_io::Op::Create,
            d.op_count(wal_io::Op::Create) + 1,
            wal_io::sim::FaultError::Eio,
        ));
        assert!(log.purge(id(1, 3000)).await.is_err());
        drop(log);
        d.clear_faults();
    });
    let d = disk.clone();
    run(async move {
        let mut log = open(d.storage());
        assert_eq!(log.get_log_state().await.unwrap().last_purged_log_id, None);
        assert_eq!(
            indexes(&mut log, 0..5000).await.len(),
            4000,
            "every entry is still there"
        );
    });
}
