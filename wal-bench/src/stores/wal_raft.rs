//! R1's replicated store: three `wal-raft` nodes in this process, each
//! with a Raft log and a store directory of its own under the run's
//! directory, connected by direct calls (no sockets: the figure is the
//! storage and consensus path, not a network). A put goes through the
//! leader and returns once the entry is durable on a majority and applied
//! on the leader.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use openraft::async_runtime::WatchReceiver;
use openraft::error::{ClientWriteError, RPCError, RaftError, StreamingError, Unreachable};
use openraft::network::v2::RaftNetworkV2;
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, ReadPolicy, SnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::storage::RaftLogStorage;
use openraft::{BasicNode, Config, Raft, ServerState, SnapshotPolicy};
use wal_io::BackendChoice;
use wal_kv::{Snapshot, WriteBatch};
use wal_raft::{
    LogReader, LogStore, Request, SnapshotFile, StateMachine, StoreSnapshot, TypeConfig, Vote,
};

use super::{KvContender, KvReader, KvStore, Pair, copy_found};
use crate::contenders::{Entrant, err};

/// `wal/raft-3`.
pub static WAL_RAFT: WalRaft = WalRaft;

/// Three replicated nodes.
#[derive(Debug)]
pub struct WalRaft;

type Node = Raft<TypeConfig, StateMachine>;

/// Node ids.
const IDS: [u64; 3] = [1, 2, 3];

/// How long a leader may take to appear after a start.
const ELECTION_WAIT: Duration = Duration::from_secs(30);

type Peers = Arc<RwLock<BTreeMap<u64, Node>>>;

#[derive(Clone)]
struct Net {
    peers: Peers,
}

struct Peer {
    peers: Peers,
    to: u64,
}

impl Peer {
    fn node(&self) -> Result<Node, Unreachable<TypeConfig>> {
        let peers = self.peers.read().unwrap_or_else(|e| e.into_inner());
        peers
            .get(&self.to)
            .cloned()
            .ok_or_else(|| Unreachable::new(&std::io::Error::other(format!("no node {}", self.to))))
    }
}

fn unreachable<E: std::error::Error + 'static>(e: &E) -> Unreachable<TypeConfig> {
    Unreachable::new(e)
}

impl RaftNetworkFactory<TypeConfig> for Net {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, _node: &BasicNode) -> Peer {
        Peer {
            peers: Arc::clone(&self.peers),
            to: target,
        }
    }
}

impl RaftNetworkV2<TypeConfig> for Peer {
    type SnapshotData = SnapshotFile;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let node = self.node()?;
        Ok(node
            .append_entries(rpc)
            .await
            .map_err(|e| unreachable(&e))?)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let node = self.node()?;
        Ok(node.vote(rpc).await.map_err(|e| unreachable(&e))?)
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: StoreSnapshot,
        _cancel: impl Future<Output = openraft::error::ReplicationClosed> + Send + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let node = self.node()?;
        Ok(node
            .install_full_snapshot(vote, snapshot)
            .await
            .map_err(|e| unreachable(&e))?)
    }
}

/// The running cluster.
struct Cluster {
    rt: tokio::runtime::Runtime,
    peers: Peers,
    machines: BTreeMap<u64, StateMachine>,
    logs: BTreeMap<u64, LogReader>,
    leader: AtomicU64,
}

impl Cluster {
    fn start(dir: &Path) -> Result<Cluster, String> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(err("runtime"))?;
        let config = Arc::new(
            Config {
                cluster_name: "r1".into(),
                heartbeat_interval: 100,
                election_timeout_min: 500,
                election_timeout_max: 1000,
                // etcd's default. A snapshot copies the whole store; at
                // openraft's 5000 entries, 64 clients made each node build
                // several a second (40% of R1's CPU in a profile).
                snapshot_policy: SnapshotPolicy::LogsSinceLast(100_000),
                ..Config::default()
            }
            .validate()
            .map_err(err("raft config"))?,
        );
        let peers = Peers::default();
        let (mut machines, mut logs) = (BTreeMap::new(), BTreeMap::new());
        let mut fresh = true;
        for id in IDS {
            let node_dir = dir.join(format!("node{id}"));
            for sub in ["raft-log", "store"] {
                std::fs::create_dir_all(node_dir.join(sub)).map_err(err("create directory"))?;
            }
            let log_dir = wal_io::open_dir(node_dir.join("raft-log"), BackendChoice::Auto)
                .map_err(err("raft log directory"))?;
            let mut log =
                LogStore::open(log_dir, wal_engine::Options::default()).map_err(err("raft log"))?;
            fresh &= log.wal().appended_lsn() < log.wal().first_lsn();
            let sm_dir = wal_io::open_dir(node_dir.join("store"), BackendChoice::Auto)
                .map_err(err("store directory"))?;
            let sm = StateMachine::open(sm_dir, wal_kv::Options::default())
                .map_err(err("state machine"))?;
            let net = Net {
                peers: Arc::clone(&peers),
            };
            let raft = rt.block_on(async {
                logs.insert(id, log.get_log_reader().await);
                Raft::new(id, Arc::clone(&config), net, log, sm.clone()).await
            });
            let raft = raft.map_err(err("start node"))?;
            peers
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id, raft);
            machines.insert(id, sm);
        }
        let cluster = Cluster {
            rt,
            peers,
            machines,
            logs,
            leader: AtomicU64::new(1),
        };
        if fresh {
            let members: BTreeMap<u64, BasicNode> = IDS
                .iter()
                .map(|&id| (id, BasicNode::new(format!("node{id}"))))
                .collect();
            cluster
                .rt
                .block_on(cluster.node(1)?.initialize(members))
                .map_err(err("initialize"))?;
        }
        cluster.find_leader()?;
        Ok(cluster)
    }

    fn node(&self, id: u64) -> Result<Node, String> {
        let peers = self.peers.read().unwrap_or_else(|e| e.into_inner());
        peers.get(&id).cloned().ok_or(format!("no node {id}"))
    }

    /// Waits for a leader that has committed in its term, and remembers it.
    fn find_leader(&self) -> Result<u64, String> {
        let deadline = Instant::now() + ELECTION_WAIT;
        while Instant::now() < deadline {
            for id in IDS {
                let node = self.node(id)?;
                let m = node.metrics().borrow_watched().clone();
                if m.state == ServerState::Leader
                    && self
                        .rt
                        .block_on(node.ensure_linearizable(ReadPolicy::ReadIndex))
                        .is_ok()
                {
                    self.leader.store(id, Ordering::Relaxed);
                    return Ok(id);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("no leader within {ELECTION_WAIT:?}"))
    }

    /// Commits `batch` through the leader (finding a new one if leadership
    /// moved).
    fn write(&self, batch: WriteBatch) -> Result<(), String> {
        let request = Request::new(batch);
        for _attempt in 0..3 {
            let leader = self.node(self.leader.load(Ordering::Relaxed))?;
            match self.rt.block_on(leader.client_write(request.clone())) {
                Ok(_) => return Ok(()),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                    self.find_leader()?;
                }
                Err(e) => return Err(format!("client write: {e}")),
            }
        }
        Err("leadership kept moving".into())
    }

    fn shutdown(self) -> Result<(), String> {
        for id in IDS {
            self.rt
                .block_on(self.node(id)?.shutdown())
                .map_err(err("shutdown"))?;
        }
        Ok(())
    }
}

impl KvStore for Cluster {
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), String> {
        let mut batch = WriteBatch::new();
        batch.put(key.to_vec(), value.to_vec());
        self.write(batch)
    }

    fn put_batch(&self, pairs: &[Pair]) -> Result<(), String> {
        let mut batch = WriteBatch::new();
        for (k, v) in pairs {
            batch.put(k.to_vec(), v.to_vec());
        }
        self.write(batch)
    }

    /// The leader's data, once it has applied everything committed.
    fn reader(&self) -> Result<Box<dyn KvReader + '_>, String> {
        let leader = self.find_leader()?;
        let store = self.machines[&leader].store();
        Ok(Box::new(Reader(store.snapshot())))
    }

    /// The leader's fsyncs: its Raft log's and its store's.
    fn syncs(&self) -> Option<u64> {
        let leader = self.leader.load(Ordering::Relaxed);
        let raft_log = self.logs[&leader].log_stats().syncs;
        let store = self.machines[&leader].store().log().stats().syncs;
        Some(raft_log + store)
    }

    fn close(self: Box<Self>) -> Result<(), String> {
        self.shutdown()
    }
}

struct Reader<'a>(Snapshot<'a>);

impl KvReader for Reader<'_> {
    fn get(&mut self, key: &[u8], out: &mut Vec<u8>) -> Result<bool, String> {
        Ok(copy_found(out, self.0.get(key).map_err(err("get"))?))
    }
}

impl Entrant for WalRaft {
    fn name(&self) -> &'static str {
        "wal/raft-3"
    }

    fn config(&self) -> &'static str {
        "three wal-raft nodes in one process (openraft 0.10.0-alpha.37, direct calls, \
         no sockets, a snapshot every 100k entries), each a wal-engine Raft log and a \
         wal-kv state machine with defaults; put: a one-put request through the leader, answered once durable \
         on a majority and applied"
    }

    fn is_ours(&self) -> bool {
        true
    }

    fn not_applicable(&self, workload: crate::Workload) -> Option<&'static str> {
        (!workload.is_replicated()).then_some("replicated: measured in R1")
    }
}

impl KvContender for WalRaft {
    fn open(&self, dir: &Path) -> Result<Box<dyn KvStore>, String> {
        Ok(Box::new(Cluster::start(dir)?))
    }
}
