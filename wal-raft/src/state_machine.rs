//! openraft's state machine on a `wal-kv` store.
//!
//! Each applied entry is one batch: its operations, plus the last applied
//! log id and the membership under a reserved key, so the state the store
//! recovers is always described by the log id stored with it. The batch is
//! written `Buffered` to a store whose log never syncs on its own: the Raft
//! log is the durable record, so a node's write path has one fsync per
//! group of entries, not two. After a crash the store may be behind what
//! it applied; openraft applies again from the Raft log, and the log is
//! purged only after a snapshot, which is a synced file. Snapshots stream
//! from a consistent view of the store into that file; installing one
//! first copies it into this node's directory (verified), then loads it, so
//! a crash during the load is finished by loading again at restart (the
//! current snapshot is newer than what the store says it applied).

use std::io;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use futures_util::{FutureExt, Stream, TryStreamExt};
use openraft::storage::{ApplyResponder, EntryResponder, RaftStateMachine};
use openraft::type_config::TypeConfigExt;
use openraft::{RaftSnapshotBuilder, Snapshot};
use wal_io::Storage;
use wal_kv::{Durability, Op, Store, WriteBatch};

use crate::snapshot::{self, SnapshotFile};
use crate::{
    Guard, LogId, Payload, RaftStoreError, Response, SnapshotMeta, StoredMembership, TypeConfig,
    codec,
};

/// Keys under this prefix are the state machine's own; a request's
/// operations on them are skipped (on every node alike).
pub const RESERVED_PREFIX: &[u8] = b"\xffraft/";
const STATE_KEY: &[u8] = b"\xffraft/state";
/// Bytes of operations gathered into one batch when loading a snapshot,
/// at most: also at most half the store's log record limit.
const LOAD_BATCH_BYTES: usize = 256 << 10;

/// A snapshot as openraft hands it around.
pub type StoreSnapshot = Snapshot<crate::LeaderId, u64, openraft::BasicNode, SnapshotFile>;

/// The replicated store's state machine. See the module docs.
#[derive(Debug, Clone)]
pub struct StateMachine {
    shared: Arc<Shared>,
}

/// Builds snapshots of a [`StateMachine`] while it goes on applying.
#[derive(Debug, Clone)]
pub struct SnapshotBuilder {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    store: Store,
    storage: Arc<dyn Storage>,
    /// Bytes of operations per batch when loading a snapshot.
    load_batch_bytes: usize,
    /// Bytes of operations past which entries being applied are written.
    apply_batch_bytes: usize,
    /// The newest snapshot built or installed, and its file.
    current: Mutex<Option<(SnapshotMeta, SnapshotFile)>>,
    /// Held for a whole build or install: openraft builds in a task of its
    /// own while its worker may install, and each ends by removing every
    /// other snapshot file (the other's half-written one included) and
    /// naming itself current. A build that waited reads the installed
    /// data, so the newest snapshot is always the one left.
    snapshot_files: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn io_err(e: impl Into<RaftStoreError>) -> io::Error {
    io::Error::from(e.into())
}

impl StateMachine {
    /// Opens (creating) the state machine's store on `storage`, with
    /// `options` except the log's sync policy, which is
    /// [`wal_engine::SyncPolicy::Never`] (see the module docs), and finds
    /// its newest snapshot.
    ///
    /// # Errors
    /// The store's open errors; a corrupt snapshot file.
    pub fn open(
        storage: Arc<dyn Storage>,
        mut options: wal_kv::Options,
    ) -> Result<StateMachine, RaftStoreError> {
        options.log.sync = wal_engine::SyncPolicy::Never;
        let load_batch_bytes = LOAD_BATCH_BYTES.min(options.log.record_bytes_max / 2);
        let store = Store::open_with(Arc::clone(&storage), options)?;
        let mut names: Vec<String> = storage
            .list()?
            .into_iter()
            .filter(|n| n.starts_with(snapshot::PREFIX))
            .collect();
        names.sort();
        for tmp in names.iter().filter(|n| n.ends_with(".tmp")) {
            storage.remove(tmp)?;
        }
        let current = match names.iter().rev().find(|n| !n.ends_with(".tmp")) {
            Some(name) => {
                let file = snapshot::open(&storage, name)?;
                let (_, meta) = snapshot::Reader::open(&file)?;
                Some((meta, file))
            }
            None => None,
        };
        Ok(StateMachine {
            shared: Arc::new(Shared {
                store,
                storage,
                load_batch_bytes,
                apply_batch_bytes: load_batch_bytes / 2,
                current: Mutex::new(current),
                snapshot_files: Mutex::new(()),
            }),
        })
    }

    /// The store the state machine applies to (for reads).
    pub fn store(&self) -> &Store {
        &self.shared.store
    }
}

impl Shared {
    /// The last applied log id and membership, as the store holds them.
    fn state(
        &self,
        view: &wal_kv::Snapshot<'_>,
    ) -> Result<(Option<LogId>, StoredMembership), RaftStoreError> {
        match view.get(STATE_KEY)? {
            Some(bytes) => codec::decode_state(&bytes, "state machine state"),
            None => Ok((None, StoredMembership::default())),
        }
    }

    /// Removes every snapshot file but `keep`.
    fn remove_other_snapshots(&self, keep: &str) -> Result<(), RaftStoreError> {
        for name in self.storage.list()? {
            if name.starts_with(snapshot::PREFIX) && name != keep {
                self.storage.remove(&name)?;
            }
        }
        Ok(())
    }

    fn build(&self) -> Result<StoreSnapshot, RaftStoreError> {
        let _files = lock(&self.snapshot_files);
        let view = self.store.snapshot();
        let (last_log_id, last_membership) = self.state(&view)?;
        let meta = SnapshotMeta {
            last_log_id,
            last_membership,
        };
        let name = snapshot::name(meta.last_log_id.as_ref());
        let tmp = format!("{name}.tmp");
        let mut w = snapshot::Writer::create(&*self.storage, &tmp, &meta)?;
        for pair in view.iter(Bound::Unbounded, Bound::Unbounded) {
            let (k, v) = pair?;
            if !k.starts_with(RESERVED_PREFIX) {
                w.pair(&k, &v)?;
            }
        }
        let file = w.finish(&*self.storage, &tmp, &name)?;
        self.remove_other_snapshots(&name)?;
        *lock(&self.current) = Some((meta.clone(), file.clone()));
        Ok(Snapshot {
            meta,
            snapshot: file,
        })
    }

    /// Copies `data` here (verifying it end to end), then replaces the
    /// store's contents with it.
    fn install(&self, meta: &SnapshotMeta, data: &SnapshotFile) -> Result<(), RaftStoreError> {
        let _files = lock(&self.snapshot_files);
        let (mut from, their_meta) = snapshot::Reader::open(data)?;
        if &their_meta != meta {
            return Err(RaftStoreError::Misuse(format!(
                "a snapshot whose file says {their_meta:?} installed as {meta:?}"
            )));
        }
        let name = snapshot::name(meta.last_log_id.as_ref());
        let tmp = format!("{name}.tmp");
        let mut to = snapshot::Writer::create(&*self.storage, &tmp, meta)?;
        while let Some((k, v)) = from.next_pair()? {
            to.pair(&k, &v)?;
        }
        let local = to.finish(&*self.storage, &tmp, &name)?;
        self.load(meta, &local)?;
        self.remove_other_snapshots(&name)?;
        *lock(&self.current) = Some((meta.clone(), local));
        Ok(())
    }

    /// Deletes every key, writes the snapshot's pairs, then its state.
    fn load(&self, meta: &SnapshotMeta, file: &SnapshotFile) -> Result<(), RaftStoreError> {
        let mut batch = WriteBatch::new();
        let mut bytes = 0;
        let flush = |batch: &mut WriteBatch, bytes: &mut usize| -> Result<(), RaftStoreError> {
            if !batch.is_empty() {
                self.store.write(batch, Durability::Buffered)?;
            }
            *batch = WriteBatch::new();
            *bytes = 0;
            Ok(())
        };
        {
            let view = self.store.snapshot();
            for pair in view.iter(Bound::Unbounded, Bound::Unbounded) {
                let (k, _) = pair?;
                bytes += k.len() + 8;
                batch.delete(k);
                if bytes >= self.load_batch_bytes {
                    flush(&mut batch, &mut bytes)?;
                }
            }
        }
        flush(&mut batch, &mut bytes)?;
        let (mut r, _) = snapshot::Reader::open(file)?;
        while let Some((k, v)) = r.next_pair()? {
            bytes += k.len() + v.len() + 16;
            batch.put(k, v);
            if bytes >= self.load_batch_bytes {
                flush(&mut batch, &mut bytes)?;
            }
        }
        flush(&mut batch, &mut bytes)?;
        let mut last = WriteBatch::new();
        last.put(
            STATE_KEY,
            codec::encode_state(meta.last_log_id.as_ref(), &meta.last_membership)?,
        );
        self.store.write(&last, Durability::Buffered)?;
        Ok(())
    }
}

/// Entries applied and not yet written to the store: their writes in one
/// batch, the state after the last of them, and the answers to send once
/// the batch is written.
struct Pending {
    batch: WriteBatch,
    last: Option<LogId>,
    membership: StoredMembership,
    answers: Vec<(ApplyResponder<TypeConfig>, Response)>,
}

impl Pending {
    fn new(membership: StoredMembership) -> Pending {
        Pending {
            batch: WriteBatch::new(),
            last: None,
            membership,
            answers: Vec::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.last.is_none()
    }

    /// Writes the batch with the state (one atomic write of the store:
    /// the state always describes the data beside it), then answers.
    fn write(&mut self, shared: &Shared) -> Result<(), RaftStoreError> {
        let Some(last) = self.last.take() else {
            return Ok(());
        };
        let state = codec::encode_state(Some(&last), &self.membership)?;
        self.batch.put(STATE_KEY, state);
        shared
            .store
            .write(&std::mem::take(&mut self.batch), Durability::Buffered)?;
        for (responder, response) in self.answers.drain(..) {
            responder.send(response);
        }
        Ok(())
    }
}

/// Adds a request's writes to `batch`, but for those on the state
/// machine's own keys, which no request may touch.
fn add_writes(batch: &mut WriteBatch, request: &WriteBatch) -> Result<(), RaftStoreError> {
    for op in request.ops() {
        match op {
            Op::Put { key, .. } | Op::Delete { key } if key.starts_with(RESERVED_PREFIX) => {}
            Op::Put { key, value } => {
                batch.put(key.clone(), value.clone());
            }
            Op::Delete { key } => {
                batch.delete(key.clone());
            }
            _ => {
                return Err(RaftStoreError::Misuse(format!(
                    "an unknown operation {op:?}"
                )));
            }
        }
    }
    Ok(())
}

impl Shared {
    /// The key of the first guard that does not hold against the data as
    /// applied so far (every node has the same data at this index).
    fn refused(&self, guards: &[Guard]) -> Result<Option<Bytes>, RaftStoreError> {
        for g in guards {
            if g.key.starts_with(RESERVED_PREFIX) || self.store.get(&g.key)? != g.expect {
                return Ok(Some(g.key.clone()));
            }
        }
        Ok(None)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotFile;

    /// On a blocking thread: it reads the whole store, and openraft's
    /// runtime threads carry every node's Raft loop.
    async fn build_snapshot(&mut self) -> Result<StoreSnapshot, io::Error> {
        let shared = Arc::clone(&self.shared);
        TypeConfig::spawn_blocking(move || shared.build())
            .await?
            .map_err(io_err)
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotFile;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let view = self.shared.store.snapshot();
        self.shared.state(&view).map_err(io_err)
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + Send,
    {
        let (_, membership) = {
            let view = self.shared.store.snapshot();
            self.shared.state(&view).map_err(io_err)?
        };
        let mut pending = Pending::new(membership);
        loop {
            // Entries already at hand join one store batch; the batch is
            // written as soon as the stream has to wait.
            let next = if pending.is_empty() {
                entries.try_next().await?
            } else if let Some(next) = entries.try_next().now_or_never() {
                next?
            } else {
                pending.write(&self.shared).map_err(io_err)?;
                continue;
            };
            let Some((entry, responder)) = next else {
                break;
            };
            let mut refused = None;
            match entry.payload {
                Payload::Blank => {}
                Payload::Normal(request) => {
                    if !request.guards.is_empty() {
                        // Guards see the data as of the entry before.
                        pending.write(&self.shared).map_err(io_err)?;
                        refused = self.shared.refused(&request.guards).map_err(io_err)?;
                    }
                    if refused.is_none() {
                        add_writes(&mut pending.batch, &request.batch).map_err(io_err)?;
                    }
                }
                Payload::Membership(m) => {
                    pending.membership = StoredMembership::new(Some(entry.log_id), m);
                }
            }
            pending.last = Some(entry.log_id);
            let response = Response {
                index: entry.log_id.index,
                refused,
            };
            pending.answers.extend(responder.map(|r| (r, response)));
            if pending.batch.payload_bytes() >= self.shared.apply_batch_bytes {
                pending.write(&self.shared).map_err(io_err)?;
            }
        }
        pending.write(&self.shared).map_err(io_err)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            shared: Arc::clone(&self.shared),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotFile,
    ) -> Result<(), io::Error> {
        // On a blocking thread, as a build; openraft awaits it, so no
        // entry applies meanwhile.
        let (shared, meta) = (Arc::clone(&self.shared), meta.clone());
        TypeConfig::spawn_blocking(move || shared.install(&meta, &snapshot))
            .await?
            .map_err(io_err)
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<StoreSnapshot>, io::Error> {
        Ok(lock(&self.shared.current)
            .clone()
            .map(|(meta, file)| Snapshot {
                meta,
                snapshot: file,
            }))
    }
}
