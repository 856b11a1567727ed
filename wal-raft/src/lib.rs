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

use std::fmt;

pub use error::RaftStoreError;
pub use log_store::{LogReader, LogStore};
pub use snapshot::SnapshotFile;
pub use state_machine::{RESERVED_PREFIX, SnapshotBuilder, StateMachine, StoreSnapshot};

/// What a client asks the replicated store to do: one atomic batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request(pub wal_kv::WriteBatch);

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "batch of {} operations", self.0.len())
    }
}

/// What applying a [`Request`] answers: the Raft index it was applied at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    /// The entry's Raft index.
    pub index: u64,
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
