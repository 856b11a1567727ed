//! Three (and four) `Raft` instances in one process on the log store and
//! the state machine, each on simulated disks of its own, connected by an
//! in-memory network that can cut any pair: writes commit with a majority,
//! a cut-off leader stops accepting writes and follows once healed, a node
//! that missed writes catches up by log and by snapshot, and membership
//! changes keep every committed write.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::ops::Bound;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use openraft::async_runtime::WatchReceiver;
use openraft::error::{ClientWriteError, RPCError, RaftError, StreamingError, Unreachable};
use openraft::network::v2::RaftNetworkV2;
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::type_config::TypeConfigExt;
use openraft::{BasicNode, Config, Raft, ServerState, SnapshotPolicy};
use wal_io::sim::SimDisk;
use wal_raft::{
    LogStore, RESERVED_PREFIX, Request, SnapshotFile, StateMachine, StoreSnapshot, TypeConfig, Vote,
};

type Node = Raft<TypeConfig, StateMachine>;

/// The nodes, which pairs cannot reach each other, and how lossy and slow
/// the links between the others are.
#[derive(Default)]
struct Router {
    nodes: Mutex<BTreeMap<u64, Node>>,
    cut: Mutex<BTreeSet<(u64, u64)>>,
    faults: Mutex<Faults>,
}

/// Message loss and delay on every link, from a seeded generator so a
/// failing run can be told apart from a lucky one by its seed.
#[derive(Default)]
struct Faults {
    /// Out of 1000 messages (requests and answers alike), how many are lost.
    drop_per_mille: u64,
    /// Each message waits a uniform time up to this.
    delay_ms_max: u64,
    rng: u64,
}

impl Faults {
    fn next(&mut self) -> u64 {
        // xorshift64*: enough for fault choices, and deterministic.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

impl Router {
    fn isolate(&self, id: u64, ids: &[u64]) {
        let mut cut = self.cut.lock().unwrap();
        for &other in ids.iter().filter(|&&o| o != id) {
            cut.insert((id, other));
            cut.insert((other, id));
        }
    }

    fn heal(&self) {
        self.cut.lock().unwrap().clear();
    }

    fn lossy(&self, seed: u64, drop_per_mille: u64, delay_ms_max: u64) {
        *self.faults.lock().unwrap() = Faults {
            drop_per_mille,
            delay_ms_max,
            rng: seed | 1,
        };
    }

    /// One message crossing a link: delayed, then lost or delivered.
    async fn cross(&self, from: u64, to: u64) -> Result<(), Unreachable<TypeConfig>> {
        let (lost, delay) = {
            let mut f = self.faults.lock().unwrap();
            let lost = f.drop_per_mille > 0 && f.next() % 1000 < f.drop_per_mille;
            let delay = if f.delay_ms_max > 0 {
                f.next() % (f.delay_ms_max + 1)
            } else {
                0
            };
            (lost, delay)
        };
        if delay > 0 {
            TypeConfig::sleep(Duration::from_millis(delay)).await;
        }
        if lost {
            return Err(Unreachable::new(&std::io::Error::other(format!(
                "{from} -> {to}: lost"
            ))));
        }
        self.reach(from, to).map(drop)
    }

    fn reach(&self, from: u64, to: u64) -> Result<Node, Unreachable<TypeConfig>> {
        let unreachable = || Unreachable::new(&std::io::Error::other(format!("{from} -/-> {to}")));
        if self.cut.lock().unwrap().contains(&(from, to)) {
            return Err(unreachable());
        }
        self.nodes
            .lock()
            .unwrap()
            .get(&to)
            .cloned()
            .ok_or_else(unreachable)
    }
}

#[derive(Clone)]
struct Net {
    router: Arc<Router>,
    from: u64,
}

struct Client {
    router: Arc<Router>,
    from: u64,
    to: u64,
}

impl RaftNetworkFactory<TypeConfig> for Net {
    type Network = Client;

    async fn new_client(&mut self, target: u64, _node: &BasicNode) -> Client {
        Client {
            router: Arc::clone(&self.router),
            from: self.from,
            to: target,
        }
    }
}

fn lost<E: std::error::Error + 'static>(e: &E) -> Unreachable<TypeConfig> {
    Unreachable::new(e)
}

impl RaftNetworkV2<TypeConfig> for Client {
    type SnapshotData = SnapshotFile;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.router.cross(self.from, self.to).await?;
        let node = self.router.reach(self.from, self.to)?;
        let response = node.append_entries(rpc).await.map_err(|e| lost(&e))?;
        // The answer crosses the network too, and may be the one lost.
        self.router.cross(self.to, self.from).await?;
        Ok(response)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.router.cross(self.from, self.to).await?;
        let node = self.router.reach(self.from, self.to)?;
        let response = node.vote(rpc).await.map_err(|e| lost(&e))?;
        self.router.cross(self.to, self.from).await?;
        Ok(response)
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: StoreSnapshot,
        _cancel: impl Future<Output = openraft::error::ReplicationClosed> + Send + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        self.router.cross(self.from, self.to).await?;
        let node = self.router.reach(self.from, self.to)?;
        let response = node
            .install_full_snapshot(vote, snapshot)
            .await
            .map_err(|e| lost(&e))?;
        self.router.cross(self.to, self.from).await?;
        Ok(response)
    }
}

fn small_log() -> wal_engine::Options {
    let mut o = wal_engine::Options::default();
    o.queue_bytes_max = 64 << 10;
    o.record_bytes_max = 32 << 10;
    o.segment_bytes = 256 << 10;
    o
}

struct Cluster {
    router: Arc<Router>,
    machines: BTreeMap<u64, StateMachine>,
}

impl Cluster {
    async fn start(ids: &[u64], snapshot_every: u64) -> Cluster {
        let mut cluster = Cluster {
            router: Arc::new(Router::default()),
            machines: BTreeMap::new(),
        };
        for &id in ids {
            cluster.add(id, snapshot_every).await;
        }
        cluster
    }

    async fn add(&mut self, id: u64, snapshot_every: u64) {
        let config = Config {
            heartbeat_interval: 50,
            election_timeout_min: 200,
            election_timeout_max: 400,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(snapshot_every),
            max_in_snapshot_log_to_keep: 5,
            purge_batch_size: 1,
            ..Config::default()
        }
        .validate()
        .unwrap();
        let log = LogStore::open(SimDisk::new(id * 10).storage(), small_log()).unwrap();
        let mut kv = wal_kv::Options::default();
        kv.log = small_log();
        kv.memtable_bytes_max = 64 << 10;
        let sm = StateMachine::open(SimDisk::new(id * 10 + 1).storage(), kv).unwrap();
        let net = Net {
            router: Arc::clone(&self.router),
            from: id,
        };
        let raft = Raft::new(id, Arc::new(config), net, log, sm.clone())
            .await
            .unwrap();
        self.router.nodes.lock().unwrap().insert(id, raft);
        self.machines.insert(id, sm);
    }

    fn node(&self, id: u64) -> Node {
        self.router.nodes.lock().unwrap()[&id].clone()
    }

    /// Waits for a leader among `among` and returns it: the one of the
    /// highest term, since a leader that was cut off keeps calling itself
    /// one until it hears of the newer term.
    async fn leader(&self, among: &[u64]) -> u64 {
        for _ in 0..400 {
            let newest = among
                .iter()
                .map(|&id| (id, self.node(id).metrics().borrow_watched().clone()))
                .filter(|(_, m)| m.state == ServerState::Leader)
                .max_by_key(|(_, m)| m.current_term);
            if let Some((id, _)) = newest {
                return id;
            }
            TypeConfig::sleep(Duration::from_millis(25)).await;
        }
        panic!("no leader among {among:?}");
    }

    fn ids(&self) -> Vec<u64> {
        self.router.nodes.lock().unwrap().keys().copied().collect()
    }

    fn report(&self) {
        for id in self.ids() {
            let m = self.node(id).metrics().borrow_watched().clone();
            eprintln!(
                "node {id}: {:?} term {} last_log {:?} applied {:?} running {:?}",
                m.state,
                m.current_term,
                m.last_log_index,
                m.last_applied.map(|l| l.index),
                m.running_state
            );
        }
    }

    /// Writes keys `from..to` through node `via`, one entry each, and
    /// returns the index the last one committed at. As a client would, a
    /// write that is refused for want of leadership or not answered within
    /// a few seconds goes again to the leader of the newest term; the keys
    /// are rewritten with the same values, so a first attempt that did
    /// commit after all changes nothing.
    async fn write(&self, via: u64, from: u64, to: u64) -> u64 {
        let mut via = via;
        let mut last = 0;
        for i in from..to {
            let mut batch = wal_kv::WriteBatch::new();
            batch.put(format!("key{i:05}"), format!("value{i}"));
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            loop {
                if std::time::Instant::now() > deadline {
                    self.report();
                    panic!("write {i} did not commit in 60 s");
                }
                let written = TypeConfig::timeout(
                    Duration::from_secs(3),
                    self.node(via).client_write(Request(batch.clone())),
                )
                .await;
                match written {
                    Ok(Ok(response)) => {
                        last = response.log_id.index;
                        break;
                    }
                    Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                        // A new leader forwards until its first entry commits.
                        TypeConfig::sleep(Duration::from_millis(10)).await;
                        via = match f.leader_id {
                            Some(leader) => leader,
                            None => self.leader(&self.ids()).await,
                        };
                    }
                    Ok(Err(e)) => panic!("write {i}: {e}"),
                    Err(_timeout) => via = self.leader(&self.ids()).await,
                }
            }
        }
        last
    }

    /// Waits until node `id` applied at least `index`.
    async fn applied(&self, id: u64, index: u64) {
        self.node(id)
            .wait(Some(Duration::from_secs(20)))
            .applied_index_at_least(Some(index), format!("node {id} applies {index}"))
            .await
            .unwrap();
    }

    fn keys(&self, id: u64) -> Vec<(Bytes, Bytes)> {
        self.machines[&id]
            .store()
            .scan(Bound::Unbounded, Bound::Unbounded)
            .unwrap()
            .into_iter()
            .filter(|(k, _)| !k.starts_with(RESERVED_PREFIX))
            .collect()
    }

    async fn stop(self) {
        let nodes: Vec<Node> = self
            .router
            .nodes
            .lock()
            .unwrap()
            .values()
            .cloned()
            .collect();
        for node in nodes {
            node.shutdown().await.unwrap();
        }
    }
}

fn members(ids: &[u64]) -> BTreeMap<u64, BasicNode> {
    ids.iter()
        .map(|&id| {
            (
                id,
                BasicNode {
                    addr: format!("node{id}"),
                },
            )
        })
        .collect()
}

fn want(n: u64) -> Vec<(Bytes, Bytes)> {
    (0..n)
        .map(|i| {
            (
                Bytes::from(format!("key{i:05}")),
                Bytes::from(format!("value{i}")),
            )
        })
        .collect()
}

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

        cluster.add(4, 10_000).await;
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
