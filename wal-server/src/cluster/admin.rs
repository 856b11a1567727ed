//! The admin API (HTTP, plain text) and the `walkv admin` commands that
//! call it: initialise a cluster, add a learner, change the voters,
//! remove a node, transfer leadership, show a node's status. A change
//! sent to a follower is answered `421` with the leader's HTTP address,
//! which the command follows.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use openraft::ChangeMembers;
use openraft::error::{ClientWriteError, RaftError};

use super::http::{Body, Conn};
use super::rpc::Failure;
use super::{Node, NodeAddr};

/// The largest admin request or answer.
pub(crate) const ADMIN_BYTES_MAX: usize = 1 << 20;

fn bad_request(e: impl std::fmt::Display) -> Failure {
    (StatusCode::BAD_REQUEST, e.to_string())
}

fn parse_id(text: &str) -> Result<u64, Failure> {
    text.parse()
        .map_err(|_| bad_request(format!("a node id is a number, not {text:?}")))
}

/// `ID PEER_ADDR CLIENT_ADDR`.
fn parse_member(line: &str) -> Result<(u64, NodeAddr), Failure> {
    let (id, addr) = line.split_once(' ').ok_or_else(|| {
        bad_request(format!(
            "a member is `ID PEER_ADDR CLIENT_ADDR`, not {line:?}"
        ))
    })?;
    Ok((parse_id(id)?, NodeAddr::parse(addr).map_err(bad_request)?))
}

/// A change refused because this node does not lead: where to send it.
fn misdirected(node: &Node, f: &openraft::error::ForwardToLeader<wal_raft::TypeConfig>) -> Failure {
    misdirected_to(node, f.leader_node.as_ref())
}

fn misdirected_to(node: &Node, leader: Option<&openraft::BasicNode>) -> Failure {
    let peer = leader
        .and_then(|n| NodeAddr::parse(&n.addr).ok())
        .map(|a| a.peer);
    match peer {
        Some(peer) => (StatusCode::MISDIRECTED_REQUEST, peer),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("node {} knows no leader yet; try again", node.id()),
        ),
    }
}

fn write_failed(
    node: &Node,
    e: RaftError<wal_raft::TypeConfig, ClientWriteError<wal_raft::TypeConfig>>,
) -> Failure {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => misdirected(node, &f),
        RaftError::APIError(e) => (StatusCode::CONFLICT, e.to_string()),
        RaftError::Fatal(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// Answers the admin request at `path` with body `body`; a change is
/// logged with its outcome.
pub(crate) async fn handle(
    node: &Node,
    method: &Method,
    path: &str,
    body: &[u8],
) -> Result<Bytes, Failure> {
    let outcome = answer(node, method, path, body).await;
    if method == Method::POST {
        let asked = String::from_utf8_lossy(body);
        match &outcome {
            Ok(said) => tracing::info!(
                path,
                body = %asked.trim(),
                "admin: {}",
                String::from_utf8_lossy(said).trim()
            ),
            Err((status, why)) => {
                tracing::warn!(path, body = %asked.trim(), %status, "admin refused: {why}");
            }
        }
    }
    outcome
}

async fn answer(node: &Node, method: &Method, path: &str, body: &[u8]) -> Result<Bytes, Failure> {
    let text = std::str::from_utf8(body).map_err(bad_request)?.trim();
    let raft = node.raft();
    match (method, path) {
        (&Method::GET, "/admin/status") => Ok(Bytes::from(status(node))),
        (&Method::POST, "/admin/init") => {
            let mut members = BTreeMap::new();
            if text.is_empty() {
                members.insert(node.id(), node.addr().to_node());
            }
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let (id, addr) = parse_member(line.trim())?;
                members.insert(id, addr.to_node());
            }
            raft.initialize(members)
                .await
                .map_err(|e| (StatusCode::CONFLICT, e.to_string()))?;
            Ok(Bytes::from("initialized\n"))
        }
        (&Method::POST, "/admin/add-learner") => {
            let (id, addr) = parse_member(text)?;
            raft.add_learner(id, addr.to_node(), true)
                .await
                .map_err(|e| write_failed(node, e))?;
            Ok(Bytes::from(format!("node {id} is a learner\n")))
        }
        (&Method::POST, "/admin/change-membership") => {
            let voters = text
                .split_whitespace()
                .map(parse_id)
                .collect::<Result<BTreeSet<u64>, _>>()?;
            if voters.is_empty() {
                return Err(bad_request("a membership needs at least one voter"));
            }
            raft.change_membership(voters.clone(), false)
                .await
                .map_err(|e| write_failed(node, e))?;
            Ok(Bytes::from(format!("voters are {voters:?}\n")))
        }
        (&Method::POST, "/admin/remove-node") => {
            let id = parse_id(text)?;
            let membership = node.raft_metrics().membership_config.membership().clone();
            let voters: BTreeSet<u64> = membership.voter_ids().filter(|v| *v != id).collect();
            let change = if membership.voter_ids().any(|v| v == id) {
                if voters.is_empty() {
                    return Err(bad_request("cannot remove the last voter"));
                }
                ChangeMembers::ReplaceAllVoters(voters)
            } else if membership.get_node(&id).is_some() {
                ChangeMembers::RemoveNodes(BTreeSet::from([id]))
            } else {
                return Err(bad_request(format!("node {id} is not a member")));
            };
            raft.change_membership(change, false)
                .await
                .map_err(|e| write_failed(node, e))?;
            Ok(Bytes::from(format!("node {id} removed\n")))
        }
        (&Method::POST, "/admin/transfer-leader") => {
            let to = parse_id(text)?;
            if !node.is_leader() {
                let leader = node.raft_metrics().current_leader;
                return Err(misdirected_to(node, leader_node(node, leader).as_ref()));
            }
            raft.trigger()
                .transfer_leader(to)
                .await
                .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
            Ok(Bytes::from(format!("leadership offered to node {to}\n")))
        }
        _ => Err((
            StatusCode::NOT_FOUND,
            format!("no admin call {method} {path}"),
        )),
    }
}

fn leader_node(node: &Node, leader: Option<u64>) -> Option<openraft::BasicNode> {
    let m = node.raft_metrics();
    m.membership_config.membership().get_node(&leader?).cloned()
}

/// `field value` lines: the node's Raft state and the membership.
pub(crate) fn status(node: &Node) -> String {
    let m = node.raft_metrics();
    let index = |id: Option<&wal_raft::LogId>| id.map_or("none".into(), |i| i.index.to_string());
    let mut out = String::new();
    let _ = writeln!(out, "id {}", node.id());
    let _ = writeln!(out, "state {:?}", m.state);
    let _ = writeln!(out, "term {}", m.current_term);
    let _ = writeln!(
        out,
        "leader {}",
        m.current_leader.map_or("none".into(), |l| l.to_string())
    );
    let _ = writeln!(
        out,
        "last_log {}",
        m.last_log_index.map_or("none".into(), |i| i.to_string())
    );
    let _ = writeln!(out, "committed {}", index(m.local_committed.as_ref()));
    let _ = writeln!(out, "applied {}", index(m.last_applied.as_ref()));
    let _ = writeln!(out, "snapshot {}", index(m.snapshot.as_ref()));
    let _ = writeln!(out, "purged {}", index(m.purged.as_ref()));
    let membership = m.membership_config.membership();
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    for (id, n) in membership.nodes() {
        let role = if voters.contains(id) {
            "voter"
        } else {
            "learner"
        };
        let _ = writeln!(out, "member {id} {role} {}", n.addr);
    }
    out
}

/// How long an admin call may take (a learner catching up is waited for).
const ADMIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Sends an admin call to the node at `addr` (its HTTP address): a `GET`
/// of `path` without a body, a `POST` with one. A redirect to the leader
/// is followed (a few times at most); the answer's text.
///
/// # Errors
/// The node unreachable, or its refusal (the text says why).
pub async fn call(addr: &str, path: &str, body: Option<String>) -> Result<String, String> {
    let method = if body.is_some() {
        Method::POST
    } else {
        Method::GET
    };
    let body = body.unwrap_or_default();
    let mut addr = addr.to_owned();
    for _ in 0..3 {
        let mut conn = Conn::new(addr.clone());
        let (status, answer) = conn
            .send(
                method.clone(),
                path,
                &[],
                Body::full(body.clone()),
                ADMIN_BYTES_MAX,
                Some(ADMIN_TIMEOUT),
            )
            .await
            .map_err(|e| format!("{}: {e}", conn.addr()))?;
        let text = String::from_utf8_lossy(&answer).into_owned();
        match status {
            StatusCode::OK => return Ok(text),
            StatusCode::MISDIRECTED_REQUEST => addr = text,
            _ => return Err(format!("{addr}: {status}: {}", text.trim_end())),
        }
    }
    Err(format!("{addr}: redirected too many times"))
}
