//! Three (and four) `Raft` instances in one process on the log store and
//! the state machine, over the harness's in-memory network: writes commit
//! with a majority, a cut-off leader cannot commit and follows once
//! healed, writes commit over a network that loses and delays messages, a
//! node that missed writes catches up by log and by snapshot, and
//! membership changes keep every committed write, and guarded requests
//! (replicated optimistic transactions) lose no update. Every test also checks
//! that no two nodes apply different entries at one index.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Cluster, members, want};
use openraft::async_runtime::WatchReceiver;
use openraft::type_config::TypeConfigExt;
use openraft::{BasicNode, ServerState};
use wal_raft::{Guard, Request, TypeConfig};

#[test]
fn a_majority_commits_and_a_cut_off_leader_follows_once_healed() {
    TypeConfig::run(async {
        let ids = [1, 2, 3];
        let cluster = Cluster::start(&ids, 10_000).await;
        cluster.node(1).initialize(members(&ids)).await.unwrap();
        let first = cluster.leader(&ids).await;
        cluster.write(first, 0, 20).await;

        // The leader is cut off: the other two elect one and go on.
        cluster.router.isolate(first, &ids);
        let rest: Vec<u64> = ids.iter().copied().filter(|&i| i != first).collect();
        let second = cluster.leader(&rest).await;
        let last = cluster.write(second, 20, 40).await;
        // The old leader cannot commit: its write fails or never returns.
        let stale = {
            let mut batch = wal_kv::WriteBatch::new();
            batch.put("stale", "never committed");
            TypeConfig::timeout(
                Duration::from_secs(2),
                cluster.node(first).client_write(Request::new(batch)),
            )
            .await
        };
        assert!(
            !matches!(stale, Ok(Ok(_))),
            "a cut-off leader committed a write"
        );

        cluster.router.heal();
        for id in ids {
            cluster.applied(id, last).await;
        }
        assert_ne!(
            cluster.node(first).metrics().borrow_watched().state,
            ServerState::Leader
        );
        for id in ids {
            assert_eq!(cluster.keys(id), want(40), "node {id}");
        }
        cluster.stop().await;
    });
}

#[test]
fn writes_commit_over_a_network_that_drops_and_delays_messages() {
    TypeConfig::run(async {
        let ids = [1, 2, 3];
        let cluster = Cluster::start(&ids, 40).await;
        cluster.router.lossy(0x5eed_0001, 100, 15);
        cluster.node(1).initialize(members(&ids)).await.unwrap();
        let leader = cluster.leader(&ids).await;
        let last = cluster.write(leader, 0, 100).await;
        // Drops stop; the slowest follower catches up, by log or by the
        // snapshots the leader took meanwhile.
        cluster.router.lossy(1, 0, 0);
        for id in ids {
            cluster.applied(id, last).await;
            assert_eq!(cluster.keys(id), want(100), "node {id}");
        }
        cluster.stop().await;
    });
}

#[test]
fn a_node_that_missed_writes_catches_up_by_log_and_by_snapshot() {
    TypeConfig::run(async {
        let ids = [1, 2, 3];
        let cluster = Cluster::start(&ids, 50).await;
        cluster.node(1).initialize(members(&ids)).await.unwrap();
        let leader = cluster.leader(&ids).await;
        let lagging = ids.iter().copied().find(|&i| i != leader).unwrap();

        // A short absence: the log still holds what it missed.
        cluster.router.isolate(lagging, &ids);
        let last = cluster.write(leader, 0, 20).await;
        cluster.router.heal();
        cluster.applied(lagging, last).await;
        assert_eq!(cluster.keys(lagging), want(20));

        // A long one: the leader snapshots and purges its log meanwhile,
        // past the lagging node's last entry, so only a snapshot can bring
        // it up to date.
        cluster.router.isolate(lagging, &ids);
        let last = cluster.write(leader, 20, 300).await;
        let behind = cluster
            .node(lagging)
            .metrics()
            .borrow_watched()
            .last_log_index;
        // Snapshots are built off the Raft loop, and the purge follows.
        let mut purged = None;
        for _ in 0..400 {
            purged = cluster.node(leader).metrics().borrow_watched().purged;
            if purged.is_some_and(|p| Some(p.index) > behind) {
                break;
            }
            TypeConfig::sleep(Duration::from_millis(25)).await;
        }
        assert!(
            purged.is_some_and(|p| Some(p.index) > behind),
            "the leader purged past {behind:?}: {purged:?}"
        );
        cluster.router.heal();
        cluster.applied(lagging, last).await;
        assert_eq!(cluster.keys(lagging), want(300));
        cluster.stop().await;
    });
}

#[test]
fn membership_changes_keep_every_committed_write() {
    TypeConfig::run(async {
        let ids = [1, 2, 3];
        let mut cluster = Cluster::start(&ids, 10_000).await;
        cluster.node(1).initialize(members(&ids)).await.unwrap();
        let leader = cluster.leader(&ids).await;
        cluster.write(leader, 0, 30).await;

        cluster.add(4).await;
        let node = cluster.node(leader);
        node.add_learner(
            4,
            BasicNode {
                addr: "node4".into(),
            },
            true,
        )
        .await
        .unwrap();
        let gone = ids.iter().copied().find(|&i| i != leader).unwrap();
        let voters: BTreeSet<u64> = ids
            .iter()
            .copied()
            .filter(|&i| i != gone)
            .chain([4])
            .collect();
        node.change_membership(voters.clone(), false).await.unwrap();
        let last = cluster.write(leader, 30, 60).await;
        for &id in &voters {
            cluster.applied(id, last).await;
            assert_eq!(cluster.keys(id), want(60), "node {id}");
        }
        let membership = node.metrics().borrow_watched().membership_config.clone();
        let now: BTreeSet<u64> = membership.voter_ids().collect();
        assert_eq!(now, voters);
        cluster.stop().await;
    });
}

/// Two clients read a counter at the leader (a linearizable read) and
/// write it back incremented, guarded by what they read: the second to
/// commit is refused, reads again and retries, so no increment is lost
/// and every node ends with the same count.
#[test]
fn guarded_read_modify_writes_lose_no_update() {
    TypeConfig::run(async {
        let ids = [1, 2, 3];
        let cluster = Cluster::start(&ids, 10_000).await;
        cluster.node(1).initialize(members(&ids)).await.unwrap();
        let leader = cluster.leader(&ids).await;
        let node = cluster.node(leader);
        let read = || async {
            node.ensure_linearizable(openraft::raft::ReadPolicy::ReadIndex)
                .await
                .unwrap();
            cluster.store(leader).get(b"counter").unwrap()
        };
        let increment = |seen: Option<bytes::Bytes>| {
            let n: u64 = seen
                .as_deref()
                .map_or(0, |v| std::str::from_utf8(v).unwrap().parse().unwrap());
            let mut batch = wal_kv::WriteBatch::new();
            batch.put("counter", (n + 1).to_string());
            let guard = match seen {
                Some(v) => Guard::equals("counter", v),
                None => Guard::absent("counter"),
            };
            Request::guarded(vec![guard], batch)
        };
        let (mut refused, mut last) = (0, 0);
        for _round in 0..10 {
            // Both read before either writes: the classic lost update.
            let (a, b) = (read().await, read().await);
            let first = node.client_write(increment(a)).await.unwrap();
            assert!(first.data.applied());
            let mut second = node.client_write(increment(b)).await.unwrap();
            while !second.data.applied() {
                assert_eq!(second.data.refused.as_deref(), Some(&b"counter"[..]));
                refused += 1;
                second = node.client_write(increment(read().await)).await.unwrap();
            }
            last = second.log_id.index;
        }
        assert_eq!(refused, 10);
        for id in ids {
            cluster.applied(id, last).await;
            assert_eq!(
                cluster.store(id).get(b"counter").unwrap().as_deref(),
                Some(&b"20"[..]),
                "node {id}"
            );
        }
        cluster.stop().await;
    });
}
