//! Storage for [openraft](https://docs.rs/openraft) on this workspace's
//! write-ahead log: the Raft log of a node is one `wal-engine` log
//! ([`LogStore`]), so appends from many client writes share one group
//! commit, and the vote and the purge point live in a small metadata file
//! replaced atomically; the state machine is a `wal-kv` store
//! ([`StateMachine`]) that applies each entry as one batch with the log id
//! it reached, and snapshots stream from a consistent view of it.
//!
//! Every entry is one record of the log; its Raft log id travels inside
//! the record, so a log whose front was purged, or which starts after an
//! installed snapshot, keeps its indexes. The layouts are in
//! `docs/RAFT_FORMAT.md`.
//!
//! ```
//! use openraft::storage::RaftLogStorage;
//! use wal_raft::{LogStore, TypeConfig};
//! use openraft::type_config::TypeConfigExt;
//!
//! let disk = wal_io::sim::SimDisk::new(1);
//! let mut log = LogStore::open(disk.storage(), Default::default())?;
//! TypeConfig::run(async move {
//!     let state = log.get_log_state().await.unwrap();
//!     assert_eq!(state.last_log_id, None);
//! });
//! # Ok::<(), wal_raft::RaftStoreError>(())
//! ```
#![forbid(unsafe_code)]

mod codec;
mod error;
mod log_store;
mod meta;
mod snapshot;
mod state_machine;
pub mod wire;

use std::fmt;

use bytes::Bytes;

pub use error::RaftStoreError;
pub use log_store::{CACHE_BYTES_MAX, LogReader, LogStore};
pub use snapshot::SnapshotFile;
pub use state_machine::{RESERVED_PREFIX, SnapshotBuilder, StateMachine, StoreSnapshot};

/// What a client asks the replicated store to do: one batch of writes,
/// applied whole on every node, and only if every guard holds when the
/// entry applies (a replicated optimistic transaction: read at the leader,
/// then commit the writes guarded by what was read). Guards are checked
/// against the state every node has at the entry's index, so all nodes
/// decide alike.
///
/// A request is one record of the Raft log: one larger than the log's
/// record limit (`wal_engine::Options::record_bytes_max`) is refused by the
/// leader's log, which stops the node; check [`Request::encoded_bytes`]
/// before submitting one from an untrusted client.
///
/// ```
/// use wal_raft::{Guard, Request};
///
/// let mut batch = wal_kv::WriteBatch::new();
/// batch.put("balance", "90");
/// // Only if nobody changed the balance since it was read as 100.
/// let request = Request::guarded(vec![Guard::equals("balance", "100")], batch);
/// assert_eq!(request.guards.len(), 1);
/// assert!(request.encoded_bytes() > 0);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    /// Conditions on the data; if one fails, nothing of the batch is
    /// written (on any node) and the response names it.
    pub guards: Vec<Guard>,
    /// The writes, applied atomically.
    pub batch: wal_kv::WriteBatch,
}

impl Request {
    /// The writes of `batch`, unconditionally.
    pub fn new(batch: wal_kv::WriteBatch) -> Request {
        Request {
            guards: Vec::new(),
            batch,
        }
    }

    /// The writes of `batch`, if every guard holds.
    pub fn guarded(guards: Vec<Guard>, batch: wal_kv::WriteBatch) -> Request {
        Request { guards, batch }
    }

    /// The size of the request's payload in its log record.
    pub fn encoded_bytes(&self) -> usize {
        codec::request_bytes(self)
    }
}

impl From<wal_kv::WriteBatch> for Request {
    fn from(batch: wal_kv::WriteBatch) -> Request {
        Request::new(batch)
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "batch of {} operations, {} guards",
            self.batch.len(),
            self.guards.len()
        )
    }
}

/// A condition on one key: its value when the entry applies is `expect`
/// (`None`: the key is absent). A guard on the state machine's own keys
/// ([`RESERVED_PREFIX`]) never holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guard {
    /// The key.
    pub key: Bytes,
    /// Its expected value, or `None` for absent.
    pub expect: Option<Bytes>,
}

impl Guard {
    /// `key` holds exactly `value`.
    pub fn equals(key: impl Into<Bytes>, value: impl Into<Bytes>) -> Guard {
        Guard {
            key: key.into(),
            expect: Some(value.into()),
        }
    }

    /// `key` is absent.
    pub fn absent(key: impl Into<Bytes>) -> Guard {
        Guard {
            key: key.into(),
            expect: None,
        }
    }
}

/// What applying a [`Request`] answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The entry's Raft index.
    pub index: u64,
    /// The key of the first guard that did not hold, if one did not: then
    /// nothing of the batch was written.
    pub refused: Option<Bytes>,
}

impl Response {
    /// Whether the batch was written.
    pub fn applied(&self) -> bool {
        self.refused.is_none()
    }
}

openraft::declare_raft_types!(
    /// The Raft types of the replicated store: `u64` node ids and terms,
    /// nodes with an address, entries carrying [`Request`]s.
    pub TypeConfig:
        D = Request,
        R = Response,
        Node = openraft::BasicNode,
);

/// The leader id: term and node (several candidates may lead in a term).
pub type LeaderId = openraft::impls::leader_id_adv::LeaderId<u64, u64>;
/// An entry's Raft log id.
pub type LogId = openraft::LogId<LeaderId>;
/// A node's vote.
pub type Vote = openraft::impls::Vote<LeaderId>;
/// A Raft log entry.
pub type Entry = openraft::Entry<LeaderId, Payload>;
/// What an entry carries.
pub type Payload = openraft::EntryPayload<Request, u64, openraft::BasicNode>;
/// A cluster membership.
pub type Membership = openraft::Membership<u64, openraft::BasicNode>;
/// A membership and the log id of the entry that set it.
pub type StoredMembership = openraft::StoredMembership<LeaderId, u64, openraft::BasicNode>;
/// What a snapshot is of: the last log id it covers and the membership.
pub type SnapshotMeta = openraft::SnapshotMeta<LeaderId, u64, openraft::BasicNode>;
