//! A cluster node: one `openraft` Raft on a `wal-raft` log and state
//! machine in the data directory, talking to its peers over HTTP
//! ([`network`], [`http`]). Client writes become Raft entries (a request's
//! batch and guards) answered once a majority has them durably and this
//! node applied them; reads are linearizable by a read index through the
//! leader, or stale on request.
//!
//! A node's address in the membership is `PEER_ADDR CLIENT_ADDR` (its
//! HTTP address, then its Redis-protocol address): peers use the first,
//! redirects name the second.

pub(crate) mod admin;
pub(crate) mod db;
pub(crate) mod http;
mod network;
pub(crate) mod rpc;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use openraft::async_runtime::WatchReceiver;
use openraft::error::{ClientWriteError, RaftError};
use openraft::raft::ReadPolicy;
use openraft::storage::RaftLogStorage;
use openraft::{BasicNode, Raft, ServerState, SnapshotPolicy};
use wal_io::{BackendChoice, Storage};
use wal_raft::{LogReader, LogStore, Request, StateMachine, TypeConfig};

use crate::ServerError;

/// The Raft node type.
pub(crate) type RaftNode = Raft<TypeConfig, StateMachine>;

/// How a node joins a cluster.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClusterConfig {
    /// This node's id, unique in the cluster and never reused.
    pub id: u64,
    /// Where peers, the admin commands and `/metrics` reach this node
    /// (HTTP); port 0 picks a free one.
    pub peer_listen: SocketAddr,
    /// Entries between snapshots (then the log before the snapshot is
    /// purged, but for the last [`ClusterConfig::logs_kept`]).
    pub snapshot_every: u64,
    /// Entries kept in the log behind a snapshot, for followers a little
    /// behind to catch up without one.
    pub logs_kept: u64,
    /// How often the leader tells followers it is alive.
    pub heartbeat: Duration,
    /// A follower that hears nothing for this long (randomised up to
    /// twice as long) calls an election.
    pub election_timeout: Duration,
    /// The longest a client's read or write waits for a majority before
    /// it is answered with an error (a node cut off from the others
    /// answers rather than holding its clients forever).
    pub request_timeout: Duration,
    /// The HTTP address peers reach this node at (`HOST:PORT`), when it
    /// is not the one it binds (`0.0.0.0`, a NAT, a proxy).
    pub advertise_http: Option<String>,
    /// The address clients reach this node at, named in redirects, when
    /// it is not the one it binds.
    pub advertise_client: Option<String>,
}

impl ClusterConfig {
    /// Node `id` serving peers on `peer_listen`, with the defaults: a
    /// snapshot every 100,000 entries (etcd's), 1,000 entries kept behind
    /// it, a heartbeat every 200 ms, elections after 1 to 2 s of silence,
    /// clients answered within 5 s (etcd's request timeout, with room
    /// for two elections).
    pub fn new(id: u64, peer_listen: SocketAddr) -> ClusterConfig {
        ClusterConfig {
            id,
            peer_listen,
            snapshot_every: 100_000,
            logs_kept: 1000,
            heartbeat: Duration::from_millis(200),
            election_timeout: Duration::from_millis(1000),
            request_timeout: Duration::from_secs(5),
            advertise_http: None,
            advertise_client: None,
        }
    }
}

/// A node's two addresses, as the membership stores them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddr {
    /// Its HTTP address (peers, admin, metrics).
    pub peer: String,
    /// Its Redis-protocol address (clients).
    pub client: String,
}

impl NodeAddr {
    /// This node's addresses: the advertised ones, else the bound ones.
    ///
    /// # Errors
    /// An address that is not `HOST:PORT`, or a bound address nobody can
    /// reach (`0.0.0.0`, `[::]`) with no advertised one instead.
    pub(crate) fn advertised(
        config: &ClusterConfig,
        http: SocketAddr,
        client: SocketAddr,
    ) -> Result<NodeAddr, ServerError> {
        let pick = |advertised: &Option<String>, bound: SocketAddr, flag: &str| match advertised {
            Some(a) => check_host_port(a)
                .map(|()| a.clone())
                .map_err(|e| ServerError::Misconfigured(format!("{flag} {a:?}: {e}"))),
            None if bound.ip().is_unspecified() => Err(ServerError::Misconfigured(format!(
                "node {} listens on {bound}, which others cannot dial: \
                     give {flag} HOST:PORT, the address they reach it at",
                config.id
            ))),
            None => Ok(bound.to_string()),
        };
        Ok(NodeAddr {
            peer: pick(&config.advertise_http, http, "--advertise-http")?,
            client: pick(&config.advertise_client, client, "--advertise-client")?,
        })
    }

    /// The membership's form: `PEER CLIENT`.
    pub fn to_node(&self) -> BasicNode {
        BasicNode::new(format!("{} {}", self.peer, self.client))
    }

    /// Parses the membership's form.
    ///
    /// # Errors
    /// A text that is not two addresses separated by one space.
    pub fn parse(text: &str) -> Result<NodeAddr, String> {
        match text.split(' ').collect::<Vec<_>>()[..] {
            [peer, client] if !peer.is_empty() && !client.is_empty() => Ok(NodeAddr {
                peer: peer.to_owned(),
                client: client.to_owned(),
            }),
            _ => Err(format!(
                "a node address is `PEER_ADDR CLIENT_ADDR`, not {text:?}"
            )),
        }
    }
}

/// Whether `text` is `HOST:PORT` with a port of 1 to 65535.
fn check_host_port(text: &str) -> Result<(), String> {
    let (host, port) = text
        .rsplit_once(':')
        .ok_or("an address is HOST:PORT".to_owned())?;
    if host.is_empty() || text.contains(char::is_whitespace) {
        return Err("an address is HOST:PORT, with no spaces".into());
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("{port:?} is not a port")),
    }
}

/// What the state machine's file in the data directory names: the node id
/// it belongs to, so a directory is never served as another node.
pub(crate) const ID_FILE: &str = "node-id";

/// Bytes of a Raft log record besides the request: tag, log id, kind.
const ENTRY_OVERHEAD_BYTES: usize = 64;

/// A running cluster node.
#[derive(Debug)]
pub struct Node {
    id: u64,
    raft: RaftNode,
    machine: StateMachine,
    me: NodeAddr,
    /// Where received snapshots are written before they are installed.
    incoming: Arc<dyn Storage>,
    log: LogReader,
    request_timeout: Duration,
    pub(crate) metrics: Metrics,
}

/// What a node counts for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    /// Read barriers asked for.
    pub reads: crate::metrics::Counter,
    /// Replicated writes' latencies.
    pub writes: crate::metrics::Histogram,
}

impl Node {
    /// Opens (creating) node `config.id`'s log and state machine under
    /// `dir` and starts its Raft. `client` is the address clients reach it
    /// on, and `peer` the one peers reach it on, as advertised.
    ///
    /// # Errors
    /// A directory of another node or of a single-node store; the log's
    /// and the store's open errors.
    pub(crate) async fn open(
        dir: &Path,
        config: &ClusterConfig,
        me: NodeAddr,
        store: wal_kv::Options,
    ) -> Result<Node, ServerError> {
        claim(dir, config.id)?;
        let open_dir = |name: &str| {
            let path = dir.join(name);
            std::fs::create_dir_all(&path)
                .map_err(ServerError::io(format!("create {}", path.display())))?;
            wal_io::open_dir(&path, BackendChoice::Auto)
                .map_err(|e| ServerError::Raft(format!("open {}: {e}", path.display())))
        };
        let mut log_options = wal_engine::Options::default();
        log_options.record_bytes_max = network::RECORD_BYTES_MAX;
        let mut log = LogStore::open(open_dir("raft-log")?, log_options)
            .map_err(|e| ServerError::Raft(format!("open the Raft log: {e}")))?;
        let machine = StateMachine::open(open_dir("store")?, store)
            .map_err(|e| ServerError::Raft(format!("open the state machine: {e}")))?;
        let incoming = open_dir("incoming")?;
        for name in incoming
            .list()
            .map_err(|e| ServerError::Raft(e.to_string()))?
        {
            // Snapshots a crash left half received.
            let _ = incoming.remove(&name);
        }
        let raft_config = openraft::Config {
            cluster_name: "walkv".into(),
            heartbeat_interval: millis(config.heartbeat),
            election_timeout_min: millis(config.election_timeout),
            election_timeout_max: millis(config.election_timeout) * 2,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every),
            max_in_snapshot_log_to_keep: config.logs_kept,
            max_payload_entries: network::ENTRIES_PER_MESSAGE_MAX as u64,
            ..openraft::Config::default()
        }
        .validate()
        .map_err(|e| ServerError::Raft(format!("Raft configuration: {e}")))?;
        let reader = log.get_log_reader().await;
        // Leaving from the address peers know this node by keeps a
        // firewall's (or a test's fault-injecting proxy's) view of who is
        // talking true on hosts with several addresses.
        // Not when it advertises another address (a NAT, a proxy): the
        // bound one may not even route to its peers.
        let source = config.peer_listen.ip();
        let net = network::Net {
            source: (config.advertise_http.is_none() && !source.is_unspecified()).then_some(source),
        };
        let raft = Raft::new(config.id, Arc::new(raft_config), net, log, machine.clone())
            .await
            .map_err(|e| ServerError::Raft(format!("start Raft: {e}")))?;
        tokio::spawn(log_leadership(config.id, raft.metrics()));
        tokio::spawn(warn_if_moved(config.id, me.clone(), raft.metrics()));
        Ok(Node {
            id: config.id,
            raft,
            machine,
            me,
            incoming,
            log: reader,
            request_timeout: config.request_timeout,
            metrics: Metrics::default(),
        })
    }

    /// This node's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// This node's addresses.
    pub fn addr(&self) -> &NodeAddr {
        &self.me
    }

    pub(crate) fn raft(&self) -> &RaftNode {
        &self.raft
    }

    pub(crate) fn store(&self) -> &wal_kv::Store {
        self.machine.store()
    }

    pub(crate) fn incoming(&self) -> &Arc<dyn Storage> {
        &self.incoming
    }

    /// The Raft log's counters.
    pub(crate) fn log_stats(&self) -> wal_engine::Stats {
        self.log.log_stats()
    }

    /// The Raft's state now.
    pub(crate) fn raft_metrics(&self) -> openraft::RaftMetrics<TypeConfig> {
        self.raft.metrics().borrow_watched().clone()
    }

    /// Whether this node leads now.
    pub(crate) fn is_leader(&self) -> bool {
        self.raft.metrics().borrow_watched().state == ServerState::Leader
    }

    /// The leader's client address, if a leader is known.
    pub(crate) fn leader_client(&self) -> Option<String> {
        let m = self.raft_metrics();
        let leader = m.current_leader?;
        let node = m.membership_config.membership().get_node(&leader)?;
        NodeAddr::parse(&node.addr).ok().map(|a| a.client)
    }

    fn not_leader(&self, leader: Option<&BasicNode>) -> ServerError {
        let client = leader
            .and_then(|n| NodeAddr::parse(&n.addr).ok())
            .map(|a| a.client)
            .or_else(|| self.leader_client());
        ServerError::NotLeader { leader: client }
    }

    /// Waits until this node's state machine holds every write a client
    /// was answered for before the call (a read index confirmed by a
    /// majority); on a follower, the leader's address as an error.
    pub(crate) async fn read_barrier(&self) -> Result<(), ServerError> {
        self.metrics.reads.inc();
        let waited = self.request_timeout;
        let read = self.raft.ensure_linearizable(ReadPolicy::ReadIndex);
        let Ok(outcome) = tokio::time::timeout(waited, read).await else {
            return Err(ServerError::NoQuorum { waited });
        };
        match outcome {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(openraft::error::LinearizableReadError::ForwardToLeader(
                f,
            ))) => Err(self.not_leader(f.leader_node.as_ref())),
            Err(e) => Err(ServerError::Raft(e.to_string())),
        }
    }

    /// Replicates `request` and applies it: `Ok(None)` once it is durable
    /// on a majority and applied here, the key of a guard that failed (and
    /// nothing written), or an error: on a follower, the leader's address
    /// (nothing written); after a leader change mid-write, an unknown
    /// outcome (it may have been written).
    pub(crate) async fn write(&self, request: Request) -> Result<Option<Bytes>, ServerError> {
        let bytes = request.encoded_bytes();
        if bytes + ENTRY_OVERHEAD_BYTES > network::RECORD_BYTES_MAX {
            return Err(ServerError::RequestTooLarge {
                bytes,
                max: network::RECORD_BYTES_MAX - ENTRY_OVERHEAD_BYTES,
            });
        }
        crate::backend::each_write(&request.batch, |key, _| {
            if db::reserved(key) {
                return Err(ServerError::ReservedKey);
            }
            Ok(())
        })?;
        let started = std::time::Instant::now();
        let waited = self.request_timeout;
        let write = self.raft.client_write(request);
        let Ok(outcome) = tokio::time::timeout(waited, write).await else {
            return Err(ServerError::WriteTimedOut { waited });
        };
        self.metrics.writes.observe(started.elapsed());
        match outcome {
            Ok(response) => Ok(response.data.refused),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(self.not_leader(f.leader_node.as_ref()))
            }
            Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(_))) => {
                Err(ServerError::OutcomeUnknown)
            }
            Err(e) => Err(ServerError::Raft(e.to_string())),
        }
    }

    /// Stops the Raft (which closes its log), then checkpoints the store
    /// so the next start replays little. Nothing depends on the
    /// checkpoint: the Raft log holds every applied entry.
    pub(crate) async fn shutdown(self) -> Result<(), ServerError> {
        self.raft
            .shutdown()
            .await
            .map_err(|e| ServerError::Raft(format!("stop Raft: {e}")))?;
        drop(self.raft);
        let machine = self.machine;
        tokio::task::spawn_blocking(move || machine.store().checkpoint())
            .await
            .map_err(|e| ServerError::Raft(format!("checkpoint the store: {e}")))??;
        Ok(())
    }
}

/// The membership keeps the addresses a node had when it joined: a node
/// restarted with others is told how to change them, rather than being
/// silently unreachable at the old ones.
async fn warn_if_moved(
    id: u64,
    me: NodeAddr,
    mut metrics: openraft::type_config::alias::WatchReceiverOf<
        TypeConfig,
        openraft::RaftMetrics<TypeConfig>,
    >,
) {
    // The membership is known once the log is read: look at it then, once.
    loop {
        let known = {
            let m = metrics.borrow_watched();
            m.membership_config
                .membership()
                .get_node(&id)
                .map(|n| n.addr.clone())
        };
        if let Some(known) = known {
            if NodeAddr::parse(&known).ok().as_ref() != Some(&me) {
                tracing::warn!(
                    node = id,
                    %known,
                    now = %me.to_node().addr,
                    "the cluster knows this node by other addresses; peers and redirects use \
                     those until it is removed (remove-node) and added again (add-learner, \
                     change-membership)"
                );
            }
            return;
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// Logs each change of term or leader, until the Raft stops.
async fn log_leadership(
    id: u64,
    mut metrics: openraft::type_config::alias::WatchReceiverOf<
        TypeConfig,
        openraft::RaftMetrics<TypeConfig>,
    >,
) {
    let mut last = None;
    loop {
        let now = {
            let m = metrics.borrow_watched();
            (m.current_term, m.current_leader, m.state)
        };
        if last != Some(now) {
            let (term, leader, state) = now;
            tracing::info!(node = id, term, leader, ?state, "raft");
            last = Some(now);
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Makes `dir` node `id`'s, or checks that it is: a directory holding a
/// single-node store, or another node's data, is refused.
fn claim(dir: &Path, id: u64) -> Result<(), ServerError> {
    std::fs::create_dir_all(dir).map_err(ServerError::io(format!(
        "create the data directory {}",
        dir.display()
    )))?;
    let path = dir.join(ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if text.trim() == id.to_string() => Ok(()),
        Ok(text) => Err(ServerError::Misconfigured(format!(
            "{} holds node {}'s data, not node {id}'s",
            dir.display(),
            text.trim()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let entries = std::fs::read_dir(dir)
                .map_err(ServerError::io(format!("read {}", dir.display())))?;
            if entries.count() > 0 {
                return Err(ServerError::Misconfigured(format!(
                    "{} is not empty and holds no cluster node (a single-node store?)",
                    dir.display()
                )));
            }
            let tmp = dir.join(format!("{ID_FILE}.tmp"));
            std::fs::write(&tmp, format!("{id}\n"))
                .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
                .and_then(|()| std::fs::rename(&tmp, &path))
                .and_then(|()| std::fs::File::open(dir)?.sync_all())
                .map_err(ServerError::io(format!("write {}", path.display())))
        }
        Err(e) => Err(ServerError::io(format!("read {}", path.display()))(e)),
    }
}
