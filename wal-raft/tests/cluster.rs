//! Three (and four) `Raft` instances in one process on the log store and
//! the state machine, over the harness's in-memory network: writes commit
//! with a majority, a cut-off leader cannot commit and follows once
//! healed, writes commit over a network that loses and delays messages, a
//! node that missed writes catches up by log and by snapshot, and
//! membership changes keep every committed write. Every test also checks
//! that no two nodes apply different entries at one index.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Cluster, members, want};
use openraft::async_runtime::WatchReceiver;
use openraft::type_config::TypeConfigExt;
use openraft::{BasicNode, ServerState};
use wal_raft::{Request, TypeConfig};

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
                cluster.node(first).client_write(Request(batch)),
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
        let purged = cluster.node(leader).metrics().borrow_watched().purged;
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
