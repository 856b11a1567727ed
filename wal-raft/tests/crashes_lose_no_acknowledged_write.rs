//! Nodes of a three-node cluster crash at random points while clients
//! write: one node at a time (the leader as often as not), the whole
//! cluster at once, or a node when its disks have done a few more
//! operations of one kind (writes, syncs, renames, removals: inside an
//! append, a vote, a truncation, a purge, a snapshot install or an apply);
//! the disks keep what each crash mode leaves of what was not synced. A
//! node is also cut off now and then, so it catches up by log or by
//! snapshot. After it all, every write the cluster acknowledged is on every
//! node, the nodes agree, and no node ever applied another entry at an
//! index than another node (or itself before a crash) did.
//!
//! `WAL_RAFT_CRASHES` sets the number of crash events (12 by default; the
//! torture profile runs more) and `WAL_RAFT_SEED` the seed of the plan.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::{Cluster, Router, members, next_random};
use openraft::type_config::TypeConfigExt;
use wal_io::sim::CrashMode;
use wal_raft::TypeConfig;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One client: writes its own keys one after another, each with a value
/// only it writes, and returns those the cluster acknowledged.
async fn client(router: Arc<Router>, c: u64, stop: Arc<AtomicBool>) -> Vec<(Bytes, Bytes)> {
    let mut acked = Vec::new();
    let mut via = 1;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let (key, value) = (format!("c{c}-{n:05}"), format!("v{c}-{n}"));
        let mut batch = wal_kv::WriteBatch::new();
        batch.put(key.clone(), value.clone());
        for _attempt in 0..5 {
            match router.try_write(via, &batch, Duration::from_secs(2)).await {
                Ok(_) => {
                    acked.push((Bytes::from(key), Bytes::from(value)));
                    break;
                }
                Err(Some(leader)) => via = leader,
                Err(None) => {
                    TypeConfig::sleep(Duration::from_millis(20)).await;
                    via = router.newest_leader(&router.ids()).unwrap_or(via);
                }
            }
        }
    }
    acked
}

/// Waits until node `id`'s disks did `more` operations of kind `op` (or a
/// second passed), so the crash that follows lands inside what they do.
async fn after_ops(cluster: &Cluster, id: u64, op: wal_io::Op, more: u64) {
    let at = cluster.disk_ops(id, op) + more;
    for _ in 0..1000 {
        if cluster.disk_ops(id, op) >= at {
            return;
        }
        TypeConfig::sleep(Duration::from_millis(1)).await;
    }
}

const OPS: [wal_io::Op; 4] = [
    wal_io::Op::Write,
    wal_io::Op::SyncData,
    wal_io::Op::Rename,
    wal_io::Op::Remove,
];

#[test]
fn no_crash_loses_an_acknowledged_write_or_applies_two_entries_at_one_index() {
    let events = env_u64("WAL_RAFT_CRASHES", 12);
    let mut rng = env_u64("WAL_RAFT_SEED", 0x00c0_ffee) | 1;
    TypeConfig::run(async move {
        let ids = [1, 2, 3];
        // Small snapshots: purges, and installs on nodes that fell behind.
        let mut cluster = Cluster::start(&ids, 20).await;
        cluster.node(1).initialize(members(&ids)).await.unwrap();
        cluster.leader(&ids).await;

        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..4)
            .map(|c| {
                let (router, stop) = (Arc::clone(&cluster.router), Arc::clone(&stop));
                TypeConfig::spawn(client(router, c, stop))
            })
            .collect();

        let mut crashes = 0;
        for event in 0..events {
            let pause = 50 + next_random(&mut rng) % 250;
            TypeConfig::sleep(Duration::from_millis(pause)).await;
            let mode = CrashMode::CONCRETE[(next_random(&mut rng) % 5) as usize];
            let leader = cluster.router.newest_leader(&ids);
            let victim = match (next_random(&mut rng) % 2, leader) {
                (0, Some(l)) => l,
                _ => ids[(next_random(&mut rng) % 3) as usize],
            };
            match next_random(&mut rng) % 6 {
                0 => {
                    eprintln!("event {event}: the whole cluster loses power ({mode:?})");
                    for id in ids {
                        cluster.crash(id, mode).await;
                    }
                    crashes += 3;
                    for id in ids {
                        cluster.restart(id).await;
                    }
                }
                1 => {
                    let pause = 300 + next_random(&mut rng) % 700;
                    eprintln!("event {event}: node {victim} is cut off for {pause} ms");
                    cluster.router.isolate(victim, &ids);
                    TypeConfig::sleep(Duration::from_millis(pause)).await;
                    cluster.router.heal();
                }
                kind => {
                    if kind >= 4 {
                        let op = OPS[(next_random(&mut rng) % 4) as usize];
                        let more = 1 + next_random(&mut rng) % 8;
                        after_ops(&cluster, victim, op, more).await;
                        eprintln!(
                            "event {event}: node {victim} crashes after {more} more {op:?} ({mode:?})"
                        );
                    } else {
                        eprintln!("event {event}: node {victim} crashes ({mode:?})");
                    }
                    cluster.crash(victim, mode).await;
                    crashes += 1;
                    let down = next_random(&mut rng) % 500;
                    TypeConfig::sleep(Duration::from_millis(down)).await;
                    cluster.restart(victim).await;
                }
            }
        }

        // Everyone up, connected, and on the leader's last entry.
        cluster.router.heal();
        let leader = cluster.leader(&ids).await;
        stop.store(true, Ordering::Relaxed);
        let mut acked = Vec::new();
        for c in clients {
            acked.extend(c.await.unwrap());
        }
        let last = cluster.write(leader, 0, 1).await;
        for id in ids {
            cluster.applied(id, last).await;
        }

        let reference: BTreeMap<Bytes, Bytes> = cluster.keys(ids[0]).into_iter().collect();
        for id in ids {
            let data: BTreeMap<Bytes, Bytes> = cluster.keys(id).into_iter().collect();
            assert_eq!(data, reference, "node {id} and node {} differ", ids[0]);
            for (k, v) in &acked {
                assert_eq!(data.get(k), Some(v), "node {id} lost an acknowledged write");
            }
        }
        eprintln!(
            "{crashes} crashes, {} writes acknowledged, {} entries applied",
            acked.len(),
            cluster.applied.count()
        );
        assert!(
            crashes >= events / 2,
            "{crashes} crashes of {events} events"
        );
        assert!(
            acked.len() >= 20,
            "only {} writes acknowledged",
            acked.len()
        );
        cluster.stop().await;
    });
}
