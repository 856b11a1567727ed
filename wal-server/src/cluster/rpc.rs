//! The receiving side of the peer RPCs: decode the message, hand it to
//! this node's Raft, encode the answer. A snapshot is written to the
//! `incoming` directory as it arrives, then installed from there (the
//! state machine copies and verifies it) and removed.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::StatusCode;
use hyper::body::Incoming;
use wal_io::FileOptions;
use wal_raft::wire::{TransferLeaderAnswer, Wire};
use wal_raft::{LeaderId, SnapshotFile, StoreSnapshot, Vote};

use super::Node;
use super::http::read_body;
use super::network::{MESSAGE_BYTES_MAX, VOTE_HEADER};

/// A failed RPC: its status and why.
pub(crate) type Failure = (StatusCode, String);

fn bad_request(e: impl std::fmt::Display) -> Failure {
    (StatusCode::BAD_REQUEST, e.to_string())
}

/// Raft refused to handle it at all (stopping, or failed): as if down.
fn unavailable(e: impl std::fmt::Display) -> Failure {
    (StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

fn encoded(message: &impl Wire) -> Result<Bytes, Failure> {
    message
        .encode()
        .map(Bytes::from)
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// Answers the RPC at `path`.
pub(crate) async fn handle(
    node: &Node,
    path: &str,
    request: hyper::Request<Incoming>,
) -> Result<Bytes, Failure> {
    if path == "/raft/snapshot" {
        return receive_snapshot(node, request).await;
    }
    let body = read_body(request.into_body(), MESSAGE_BYTES_MAX)
        .await
        .map_err(bad_request)?;
    let raft = node.raft();
    match path {
        "/raft/append" => {
            let m = Wire::decode(&body).map_err(bad_request)?;
            encoded(&raft.append_entries(m).await.map_err(unavailable)?)
        }
        "/raft/vote" => {
            let m = Wire::decode(&body).map_err(bad_request)?;
            encoded(&raft.vote(m).await.map_err(unavailable)?)
        }
        "/raft/pre-vote" => {
            let m = Wire::decode(&body).map_err(bad_request)?;
            encoded(&raft.pre_vote(m).await.map_err(unavailable)?)
        }
        "/raft/transfer-leader" => {
            let m = Wire::decode(&body).map_err(bad_request)?;
            let answer = raft.handle_transfer_leader(m).await.map_err(unavailable)?;
            encoded(&TransferLeaderAnswer(answer))
        }
        _ => Err((StatusCode::NOT_FOUND, format!("no RPC {path}"))),
    }
}

fn parse_vote(text: &str) -> Option<Vote> {
    let mut parts = text.split(' ');
    let term = parts.next()?.parse().ok()?;
    let node_id = parts.next()?.parse().ok()?;
    let committed = match parts.next()? {
        "0" => false,
        "1" => true,
        _ => return None,
    };
    parts.next().is_none().then_some(Vote {
        leader_id: LeaderId { term, node_id },
        committed,
    })
}

/// Names of received snapshot files, unique within the process (the
/// directory is emptied at each start).
static RECEIVED: AtomicU64 = AtomicU64::new(0);

/// Bytes gathered before each write of a received snapshot.
const WRITE_BYTES: usize = 1 << 20;

async fn receive_snapshot(
    node: &Node,
    request: hyper::Request<Incoming>,
) -> Result<Bytes, Failure> {
    let vote = request
        .headers()
        .get(VOTE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_vote)
        .ok_or_else(|| bad_request(format!("no valid {VOTE_HEADER} header")))?;
    let storage = node.incoming().clone();
    let name = format!("snapshot-{}.recv", RECEIVED.fetch_add(1, Ordering::Relaxed));
    let failed = |e: &dyn std::fmt::Display| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("receive the snapshot: {e}"),
        )
    };
    let outcome = async {
        let file = storage
            .create(&name, FileOptions::BUFFERED)
            .map_err(|e| failed(&e))?;
        let mut body = request.into_body();
        let (mut buf, mut at) = (Vec::with_capacity(WRITE_BYTES), 0u64);
        let write = |buf: &mut Vec<u8>, at: &mut u64| {
            tokio::task::block_in_place(|| file.write_at(*at, &[buf])).map_err(|e| failed(&e))?;
            *at += buf.len() as u64;
            buf.clear();
            Ok::<(), Failure>(())
        };
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(bad_request)?;
            if let Ok(data) = frame.into_data() {
                buf.extend_from_slice(&data);
                if buf.len() >= WRITE_BYTES {
                    write(&mut buf, &mut at)?;
                }
            }
        }
        write(&mut buf, &mut at)?;
        let snap = SnapshotFile::open(&storage, &name).map_err(|e| failed(&e))?;
        let meta = snap.meta().map_err(bad_request)?;
        let last = meta.last_log_id.map(|l| l.index);
        let answer = node
            .raft()
            .install_full_snapshot(
                vote,
                StoreSnapshot {
                    meta,
                    snapshot: snap,
                },
            )
            .await
            .map_err(unavailable)?;
        tracing::info!(
            bytes = at,
            last_index = last,
            "installed a snapshot from the leader"
        );
        encoded(&answer)
    }
    .await;
    // Installed (copied) or refused: either way not needed again.
    let _ = storage.remove(&name);
    outcome
}
