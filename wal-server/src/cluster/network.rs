//! openraft's network over HTTP: each RPC is a `POST` of the message's
//! bytes (`wal_raft::wire`) to the peer's HTTP address, answered with the
//! response's bytes; a snapshot is its file's bytes, streamed.

use std::future::Future;

use hyper::{Method, StatusCode};
use openraft::BasicNode;
use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::v2::RaftNetworkV2;
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use tokio::sync::mpsc;
use wal_raft::wire::{TransferLeaderAnswer, Wire};
use wal_raft::{SnapshotFile, StoreSnapshot, TypeConfig, Vote};

use super::NodeAddr;
use super::http::{Body, Conn};

/// The Raft log's record limit, set explicitly so that the message limit
/// below follows from it.
pub(crate) const RECORD_BYTES_MAX: usize = 1 << 20;
/// Entries in one append message, at most.
pub(crate) const ENTRIES_PER_MESSAGE_MAX: usize = 256;
/// The largest message a node accepts from a peer: a full append of the
/// largest entries, with room for the headers. Anything larger is refused
/// before it is read whole.
pub(crate) const MESSAGE_BYTES_MAX: usize =
    ENTRIES_PER_MESSAGE_MAX * (RECORD_BYTES_MAX + 64) + 4096;
/// A reply to a message is small.
const REPLY_BYTES_MAX: usize = 4096;
/// Bytes of a snapshot file per chunk sent.
const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;
/// The header carrying a snapshot's vote: `TERM NODE COMMITTED(0|1)`.
pub(crate) const VOTE_HEADER: &str = "walkv-vote";

/// Makes a [`Peer`] for each node this one sends to.
#[derive(Debug, Clone)]
pub(crate) struct Net {
    /// The address connections to peers leave from: the one this node
    /// serves its peers on, when that is one address (not `0.0.0.0`).
    pub(crate) source: Option<std::net::IpAddr>,
}

impl RaftNetworkFactory<TypeConfig> for Net {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Peer {
        // A node address that does not parse fails every call (and says
        // why), rather than reaching somewhere unintended.
        let addr = NodeAddr::parse(&node.addr);
        let mut conn = Conn::new(addr.as_ref().map_or("", |a| a.peer.as_str()));
        if let Some(ip) = self.source {
            conn = conn.leaving_from(ip);
        }
        Peer {
            target,
            conn,
            bad_addr: addr.err(),
        }
    }
}

/// The connection to one peer.
#[derive(Debug)]
pub(crate) struct Peer {
    target: u64,
    conn: Conn,
    bad_addr: Option<String>,
}

fn unreachable<E: std::error::Error + 'static>(e: &E) -> Unreachable<TypeConfig> {
    Unreachable::new(e)
}

fn network<E: std::error::Error + 'static>(e: &E) -> NetworkError<TypeConfig> {
    NetworkError::new(e)
}

/// The peer's answer: the response message, or why there is none (the
/// RPCs' and the snapshot's error types both take either failure).
fn answer<R, E>(status: StatusCode, body: &bytes::Bytes) -> Result<R, E>
where
    R: Wire,
    E: From<Unreachable<TypeConfig>> + From<NetworkError<TypeConfig>>,
{
    let refused = || std::io::Error::other(format!("{status}: {}", String::from_utf8_lossy(body)));
    match status {
        StatusCode::OK => R::decode(body).map_err(|e| network(&e).into()),
        // Stopping, or its Raft failed: as good as down.
        StatusCode::SERVICE_UNAVAILABLE => Err(unreachable(&refused()).into()),
        _ => Err(network(&refused()).into()),
    }
}

impl Peer {
    fn check_addr(&self) -> Result<(), Unreachable<TypeConfig>> {
        match &self.bad_addr {
            Some(e) => Err(unreachable(&std::io::Error::other(format!(
                "node {}: {e}",
                self.target
            )))),
            None => Ok(()),
        }
    }

    async fn call<Req: Wire, Resp: Wire>(
        &mut self,
        path: &str,
        message: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<TypeConfig>> {
        self.check_addr()?;
        let body = message.encode().map_err(|e| network(&e))?;
        let (status, bytes) = self
            .conn
            .send(
                Method::POST,
                path,
                &[],
                Body::full(body),
                REPLY_BYTES_MAX,
                Some(option.hard_ttl()),
            )
            .await
            .map_err(|e| unreachable(&e))?;
        answer(status, &bytes)
    }
}

impl RaftNetworkV2<TypeConfig> for Peer {
    type SnapshotData = SnapshotFile;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call("/raft/append", &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call("/raft/vote", &rpc, &option).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call("/raft/pre-vote", &rpc, &option).await
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        let answer: TransferLeaderAnswer =
            self.call("/raft/transfer-leader", &req, &option).await?;
        Ok(answer.0)
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: StoreSnapshot,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        self.check_addr()?;
        let (tx, rx) = mpsc::channel(4);
        let file = snapshot.snapshot;
        // The file is read on a blocking thread, a chunk ahead of the
        // socket; a send that fails means the request was dropped.
        let reader = tokio::task::spawn_blocking(move || stream_file(&file, &tx));
        let header = format!(
            "{} {} {}",
            vote.leader_id.term,
            vote.leader_id.node_id,
            u8::from(vote.committed)
        );
        let headers = [(VOTE_HEADER, header)];
        let sent = tokio::select! {
            sent = self.conn.send(
                Method::POST,
                "/raft/snapshot",
                &headers,
                Body::Stream(rx),
                REPLY_BYTES_MAX,
                None,
            ) => sent,
            closed = cancel => {
                reader.abort();
                return Err(StreamingError::Closed(closed));
            }
        };
        let (status, bytes) = sent.map_err(|e| unreachable(&e))?;
        answer(status, &bytes)
    }
}

fn stream_file(file: &SnapshotFile, tx: &mpsc::Sender<Result<bytes::Bytes, std::io::Error>>) {
    let mut at = 0;
    while at < file.len() {
        let n = usize::try_from(file.len() - at)
            .map_or(SNAPSHOT_CHUNK_BYTES, |left| left.min(SNAPSHOT_CHUNK_BYTES));
        let mut buf = vec![0; n];
        let chunk = file
            .read_at(at, &mut buf)
            .map(|()| bytes::Bytes::from(buf))
            .map_err(std::io::Error::other);
        let failed = chunk.is_err();
        if tx.blocking_send(chunk).is_err() || failed {
            return;
        }
        at += n as u64;
    }
}
