//! The harness of the cluster tests: `Raft` instances in one process, each
//! on simulated disks of its own, connected by an in-memory network that
//! can cut any pair, lose and delay messages; nodes that crash (their
//! disks lose what was not synced, as the crash mode says) and restart;
//! and a check on every entry any node applies, that no two nodes (or one
//! node before and after a crash) apply different entries at one index.

#![allow(dead_code)] // each test file uses a part of the harness

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io;
use std::ops::Bound;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use openraft::async_runtime::WatchReceiver;
use openraft::error::{ClientWriteError, RPCError, RaftError, StreamingError, Unreachable};
use openraft::network::v2::RaftNetworkV2;
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::type_config::TypeConfigExt;
use openraft::{BasicNode, Config, Raft, ServerState, SnapshotPolicy};
use wal_io::sim::{CrashMode, SimDisk};
use wal_raft::{
    LogId, LogStore, RESERVED_PREFIX, Request, SnapshotBuilder, SnapshotFile, SnapshotMeta,
    StateMachine, StoreSnapshot, StoredMembership, TypeConfig, Vote,
};

pub type Node = Raft<TypeConfig, Recorder>;

/// Every entry applied anywhere, by index: its log id and payload. Two
/// different entries at one index is a broken Raft (or storage) safety
/// property; the violations are collected, since a panic inside `apply`
/// would only end openraft's task.
#[derive(Default)]
pub struct Applied {
    entries: Mutex<BTreeMap<u64, (LogId, String)>>,
    violations: Mutex<Vec<String>>,
}

impl Applied {
    fn record(&self, node: u64, log_id: LogId, payload: String) {
        let mut entries = self.entries.lock().unwrap();
        match entries.get(&log_id.index) {
            Some((id, p)) if (*id, p) != (log_id, &payload) => {
                self.violations.lock().unwrap().push(format!(
                    "node {node} applied {log_id} {payload} at {} where {id} {p} was applied",
                    log_id.index
                ));
            }
            Some(_) => {}
            None => {
                entries.insert(log_id.index, (log_id, payload));
            }
        }
    }

    pub fn count(&self) -> usize {
        self.entries.lock().unwrap().len()
    }

    pub fn violations(&self) -> Vec<String> {
        self.violations.lock().unwrap().clone()
    }
}

/// The state machine under test, recording what it applies.
#[derive(Clone)]
pub struct Recorder {
    pub sm: StateMachine,
    node: u64,
    applied: Arc<Applied>,
}

impl RaftStateMachine<TypeConfig> for Recorder {
    type SnapshotData = SnapshotFile;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        self.sm.applied_state().await
    }

    async fn apply<Strm>(&mut self, entries: Strm) -> Result<(), io::Error>
    where
        Strm: futures_util::Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>>
            + Unpin
            + Send,
    {
        let (node, applied) = (self.node, Arc::clone(&self.applied));
        let seen = entries.inspect(move |item| {
            if let Ok((entry, _)) = item {
                applied.record(node, entry.log_id, format!("{:?}", entry.payload));
            }
        });
        self.sm.apply(seen).await
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        self.sm.get_snapshot_builder().await
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotFile,
    ) -> Result<(), io::Error> {
        self.sm.install_snapshot(meta, snapshot).await
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<StoreSnapshot>, io::Error> {
        self.sm.get_current_snapshot().await
    }
}

/// The running nodes (each with the incarnation it was started as), which
/// pairs cannot reach each other, and how lossy and slow the links are.
#[derive(Default)]
pub struct Router {
    nodes: Mutex<BTreeMap<u64, (u64, Node)>>,
    cut: Mutex<BTreeSet<(u64, u64)>>,
    faults: Mutex<Faults>,
}

/// Message loss and delay on every link, from a seeded generator.
#[derive(Default)]
struct Faults {
    /// Out of 1000 messages (requests and answers alike), how many are lost.
    drop_per_mille: u64,
    /// Each message waits a uniform time up to this.
    delay_ms_max: u64,
    rng: u64,
}

/// xorshift64*: enough for test choices, and deterministic per seed.
pub fn next_random(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

impl Router {
    pub fn isolate(&self, id: u64, ids: &[u64]) {
        let mut cut = self.cut.lock().unwrap();
        for &other in ids.iter().filter(|&&o| o != id) {
            cut.insert((id, other));
            cut.insert((other, id));
        }
    }

    pub fn heal(&self) {
        self.cut.lock().unwrap().clear();
    }

    pub fn lossy(&self, seed: u64, drop_per_mille: u64, delay_ms_max: u64) {
        *self.faults.lock().unwrap() = Faults {
            drop_per_mille,
            delay_ms_max,
            rng: seed | 1,
        };
    }

    /// The node `to`, if `from` (as incarnation `incarnation`: a crashed
    /// process sends nothing more) can reach it.
    fn reach(&self, from: u64, incarnation: u64, to: u64) -> Result<Node, Unreachable<TypeConfig>> {
        let unreachable = || Unreachable::new(&io::Error::other(format!("{from} -/-> {to}")));
        if self.cut.lock().unwrap().contains(&(from, to)) {
            return Err(unreachable());
        }
        let nodes = self.nodes.lock().unwrap();
        if nodes.get(&from).map(|(i, _)| *i) != Some(incarnation) {
            return Err(unreachable());
        }
        nodes
            .get(&to)
            .map(|(_, n)| n.clone())
            .ok_or_else(unreachable)
    }

    /// The running node `id`.
    pub fn get(&self, id: u64) -> Option<Node> {
        self.nodes.lock().unwrap().get(&id).map(|(_, n)| n.clone())
    }

    pub fn ids(&self) -> Vec<u64> {
        self.nodes.lock().unwrap().keys().copied().collect()
    }

    /// The running leader of the newest term among `among`, if any (a
    /// leader that was cut off keeps calling itself one until it hears of
    /// the newer term).
    pub fn newest_leader(&self, among: &[u64]) -> Option<u64> {
        among
            .iter()
            .filter_map(|&id| {
                self.get(id)
                    .map(|n| (id, n.metrics().borrow_watched().clone()))
            })
            .filter(|(_, m)| m.state == ServerState::Leader)
            .max_by_key(|(_, m)| m.current_term)
            .map(|(id, _)| id)
    }

    /// One attempt to commit `batch` through node `via`: the index it
    /// committed at, or why not (`Err(Some(leader))` names a node to try).
    pub async fn try_write(
        &self,
        via: u64,
        batch: &wal_kv::WriteBatch,
        timeout: Duration,
    ) -> Result<u64, Option<u64>> {
        let Some(node) = self.get(via) else {
            return Err(None);
        };
        match TypeConfig::timeout(timeout, node.client_write(Request::new(batch.clone()))).await {
            Ok(Ok(response)) => Ok(response.log_id.index),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                // A new leader forwards until its first entry commits.
                TypeConfig::sleep(Duration::from_millis(10)).await;
                Err(f.leader_id)
            }
            Ok(Err(_)) | Err(_) => Err(None),
        }
    }

    /// One message crossing a link: delayed, then lost or delivered.
    async fn cross(
        &self,
        from: u64,
        incarnation: u64,
        to: u64,
    ) -> Result<(), Unreachable<TypeConfig>> {
        let (lost, delay) = {
            let mut f = self.faults.lock().unwrap();
            let drop = f.drop_per_mille;
            let delay_max = f.delay_ms_max;
            let lost = drop > 0 && next_random(&mut f.rng) % 1000 < drop;
            let delay = if delay_max > 0 {
                next_random(&mut f.rng) % (delay_max + 1)
            } else {
                0
            };
            (lost, delay)
        };
        if delay > 0 {
            TypeConfig::sleep(Duration::from_millis(delay)).await;
        }
        if lost {
            return Err(Unreachable::new(&io::Error::other(format!(
                "{from} -> {to}: lost"
            ))));
        }
        self.reach(from, incarnation, to).map(drop)
    }

    /// The answer to `from`'s request crosses back from `to`.
    async fn answer(
        &self,
        from: u64,
        incarnation: u64,
        to: u64,
    ) -> Result<(), Unreachable<TypeConfig>> {
        self.cross(from, incarnation, to).await?;
        // The asker may have crashed meanwhile: then nobody hears it.
        self.reach(from, incarnation, from).map(drop)
    }
}

#[derive(Clone)]
pub struct Net {
    router: Arc<Router>,
    from: u64,
    incarnation: u64,
}

pub struct Client {
    net: Net,
    to: u64,
}

impl RaftNetworkFactory<TypeConfig> for Net {
    type Network = Client;

    async fn new_client(&mut self, target: u64, _node: &BasicNode) -> Client {
        Client {
            net: self.clone(),
            to: target,
        }
    }
}

/// A copy of `sent` in a disk of its own, as a transport would write it.
fn received(sent: &SnapshotFile) -> Result<SnapshotFile, wal_raft::RaftStoreError> {
    const NAME: &str = "received-snapshot";
    let mut bytes = vec![0; usize::try_from(sent.len()).expect("a test snapshot fits memory")];
    sent.read_at(0, &mut bytes)?;
    let storage = SimDisk::new(0).storage();
    let file = storage.create(NAME, wal_io::FileOptions::BUFFERED)?;
    file.write_at(0, &[&bytes])?;
    SnapshotFile::open(&storage, NAME)
}

fn lost<E: std::error::Error + 'static>(e: &E) -> Unreachable<TypeConfig> {
    Unreachable::new(e)
}

impl Client {
    async fn send(&self) -> Result<Node, Unreachable<TypeConfig>> {
        let n = &self.net;
        n.router.cross(n.from, n.incarnation, self.to).await?;
        n.router.reach(n.from, n.incarnation, self.to)
    }

    async fn back(&self) -> Result<(), Unreachable<TypeConfig>> {
        let n = &self.net;
        n.router.answer(n.from, n.incarnation, self.to).await
    }
}

impl RaftNetworkV2<TypeConfig> for Client {
    type SnapshotData = SnapshotFile;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let node = self.send().await?;
        let response = node.append_entries(rpc).await.map_err(|e| lost(&e))?;
        // The answer crosses the network too, and may be the one lost.
        self.back().await?;
        Ok(response)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let node = self.send().await?;
        let response = node.vote(rpc).await.map_err(|e| lost(&e))?;
        self.back().await?;
        Ok(response)
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: StoreSnapshot,
        _cancel: impl Future<Output = openraft::error::ReplicationClosed> + Send + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let node = self.send().await?;
        // As over a real network, the bytes land on the receiver's side
        // before it installs them: a sender that crashes meanwhile fails
        // the transfer, not the receiver's storage (the sender's file
        // handle dies with its simulated process).
        let snapshot = StoreSnapshot {
            meta: snapshot.meta,
            snapshot: received(&snapshot.snapshot).map_err(|e| lost(&e))?,
        };
        let response = node
            .install_full_snapshot(vote, snapshot)
            .await
            .map_err(|e| lost(&e))?;
        self.back().await?;
        Ok(response)
    }
}

pub fn small_log() -> wal_engine::Options {
    let mut o = wal_engine::Options::default();
    o.queue_bytes_max = 64 << 10;
    o.record_bytes_max = 32 << 10;
    o.segment_bytes = 256 << 10;
    o
}

/// One node's two disks: its Raft log's and its store's (one machine:
/// they crash together).
struct Disks {
    log: SimDisk,
    sm: SimDisk,
}

pub struct Cluster {
    pub router: Arc<Router>,
    pub applied: Arc<Applied>,
    disks: BTreeMap<u64, Disks>,
    machines: BTreeMap<u64, StateMachine>,
    snapshot_every: u64,
    incarnations: u64,
}

impl Cluster {
    pub async fn start(ids: &[u64], snapshot_every: u64) -> Cluster {
        let mut cluster = Cluster {
            router: Arc::new(Router::default()),
            applied: Arc::new(Applied::default()),
            disks: BTreeMap::new(),
            machines: BTreeMap::new(),
            snapshot_every,
            incarnations: 0,
        };
        for &id in ids {
            cluster.add(id).await;
        }
        cluster
    }

    /// Starts node `id` on new disks.
    pub async fn add(&mut self, id: u64) {
        let disks = Disks {
            log: SimDisk::new(id * 10),
            sm: SimDisk::new(id * 10 + 1),
        };
        self.disks.insert(id, disks);
        self.boot(id).await;
    }

    /// Starts node `id` on its disks as they are.
    async fn boot(&mut self, id: u64) {
        let config = Config {
            heartbeat_interval: 50,
            election_timeout_min: 200,
            election_timeout_max: 400,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every),
            max_in_snapshot_log_to_keep: 5,
            purge_batch_size: 1,
            ..Config::default()
        }
        .validate()
        .unwrap();
        let disks = &self.disks[&id];
        let log = LogStore::open(disks.log.storage(), small_log()).unwrap();
        let mut kv = wal_kv::Options::default();
        kv.log = small_log();
        kv.memtable_bytes_max = 64 << 10;
        let sm = StateMachine::open(disks.sm.storage(), kv).unwrap();
        self.incarnations += 1;
        let net = Net {
            router: Arc::clone(&self.router),
            from: id,
            incarnation: self.incarnations,
        };
        let recorder = Recorder {
            sm: sm.clone(),
            node: id,
            applied: Arc::clone(&self.applied),
        };
        let raft = Raft::new(id, Arc::new(config), net, log, recorder)
            .await
            .unwrap();
        self.router
            .nodes
            .lock()
            .unwrap()
            .insert(id, (self.incarnations, raft));
        self.machines.insert(id, sm);
    }

    /// Node `id` loses power: its disks keep what `mode` says of what was
    /// not synced, and the process is gone (its handles fail, it sends
    /// nothing more).
    pub async fn crash(&mut self, id: u64, mode: CrashMode) {
        let (_, node) = self
            .router
            .nodes
            .lock()
            .unwrap()
            .remove(&id)
            .expect("running");
        let disks = &self.disks[&id];
        disks.log.crash(mode);
        disks.sm.crash(mode);
        self.machines.remove(&id);
        // Its tasks fail on the dead handles; whatever they report is moot.
        let _ = TypeConfig::timeout(Duration::from_secs(10), node.shutdown()).await;
    }

    /// Node `id`, crashed, starts again on what its disks kept.
    pub async fn restart(&mut self, id: u64) {
        assert!(!self.is_up(id), "node {id} is running");
        self.boot(id).await;
    }

    pub fn is_up(&self, id: u64) -> bool {
        self.router.nodes.lock().unwrap().contains_key(&id)
    }

    pub fn node(&self, id: u64) -> Node {
        self.router.get(id).expect("node is running")
    }

    pub fn ids(&self) -> Vec<u64> {
        self.router.ids()
    }

    /// Operations of kind `op` node `id`'s disks did so far.
    pub fn disk_ops(&self, id: u64, op: wal_io::Op) -> u64 {
        let d = &self.disks[&id];
        d.log.op_count(op) + d.sm.op_count(op)
    }

    /// Waits for a leader among `among` and returns it.
    pub async fn leader(&self, among: &[u64]) -> u64 {
        for _ in 0..800 {
            if let Some(id) = self.router.newest_leader(among) {
                return id;
            }
            TypeConfig::sleep(Duration::from_millis(25)).await;
        }
        self.report();
        panic!("no leader among {among:?}");
    }

    pub fn report(&self) {
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
    pub async fn write(&self, via: u64, from: u64, to: u64) -> u64 {
        let mut via = via;
        let mut last = 0;
        for i in from..to {
            let mut batch = wal_kv::WriteBatch::new();
            batch.put(format!("key{i:05}"), format!("value{i}"));
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if Instant::now() > deadline {
                    self.report();
                    panic!("write {i} did not commit in 60 s");
                }
                match self
                    .router
                    .try_write(via, &batch, Duration::from_secs(3))
                    .await
                {
                    Ok(index) => {
                        last = index;
                        break;
                    }
                    Err(Some(leader)) => via = leader,
                    Err(None) => via = self.leader(&self.ids()).await,
                }
            }
        }
        last
    }

    /// Waits until node `id` applied at least `index`.
    pub async fn applied(&self, id: u64, index: u64) {
        let waited = self
            .node(id)
            .wait(Some(Duration::from_secs(30)))
            .applied_index_at_least(Some(index), format!("node {id} applies {index}"))
            .await;
        if let Err(e) = waited {
            self.report();
            panic!("{e}");
        }
    }

    /// The store of node `id`'s state machine.
    pub fn store(&self, id: u64) -> &wal_kv::Store {
        self.machines[&id].store()
    }

    /// The data of node `id`, without the state machine's own keys.
    pub fn keys(&self, id: u64) -> Vec<(Bytes, Bytes)> {
        self.machines[&id]
            .store()
            .scan(Bound::Unbounded, Bound::Unbounded)
            .unwrap()
            .into_iter()
            .filter(|(k, _)| !k.starts_with(RESERVED_PREFIX))
            .collect()
    }

    pub async fn stop(self) {
        let nodes: Vec<Node> = self
            .router
            .nodes
            .lock()
            .unwrap()
            .values()
            .map(|(_, n)| n.clone())
            .collect();
        for node in nodes {
            node.shutdown().await.unwrap();
        }
        let violations = self.applied.violations();
        assert!(violations.is_empty(), "{violations:#?}");
    }
}

pub fn members(ids: &[u64]) -> BTreeMap<u64, BasicNode> {
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

pub fn want(n: u64) -> Vec<(Bytes, Bytes)> {
    (0..n)
        .map(|i| {
            (
                Bytes::from(format!("key{i:05}")),
                Bytes::from(format!("value{i}")),
            )
        })
        .collect()
}
