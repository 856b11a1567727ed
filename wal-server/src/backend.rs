//! Where commands read and write: one local `wal-kv` store, or a cluster
//! node ([`crate::cluster`]). Writes are requests of `wal-raft`, a batch
//! and its guards, so a command's read-modify-write is written the same way
//! on one node and on many: read, then write guarded by what was read, and
//! read again if a guard did not hold.

use std::path::Path;

use bytes::Bytes;
use wal_kv::{Commit, Durability, Isolation, Op, Options, Store, Transaction};
use wal_raft::Request;

use crate::ServerError;

/// What commands read and write through: the store itself, or a
/// transaction (`MULTI`/`EXEC`) that sees its own writes and commits them
/// together.
pub trait Db {
    /// The value of `key`.
    ///
    /// # Errors
    /// The store's read errors.
    fn get(&mut self, key: &[u8]) -> Result<Option<Bytes>, ServerError>;

    /// Every key and its stored bytes, in order.
    ///
    /// # Errors
    /// The store's read errors.
    fn pairs(&mut self) -> Result<Vec<(Bytes, Bytes)>, ServerError>;

    /// Writes the request's batch if every guard holds; otherwise the key
    /// of the first that does not, and nothing is written.
    ///
    /// # Errors
    /// The store's write errors.
    fn write(&mut self, request: &Request) -> Result<Option<Bytes>, ServerError>;

    /// Up to `count` keys and their stored bytes after `after` (from the
    /// first without it), in order.
    ///
    /// # Errors
    /// The store's read errors.
    fn pairs_after(
        &mut self,
        after: Option<&[u8]>,
        count: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, ServerError>;
}

fn lower(after: Option<&[u8]>) -> std::ops::Bound<&[u8]> {
    after.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded)
}

impl Db for &Local {
    fn get(&mut self, key: &[u8]) -> Result<Option<Bytes>, ServerError> {
        Local::get(self, key)
    }

    fn pairs(&mut self) -> Result<Vec<(Bytes, Bytes)>, ServerError> {
        Ok(self
            .store
            .scan(std::ops::Bound::Unbounded, std::ops::Bound::Unbounded)?)
    }

    fn write(&mut self, request: &Request) -> Result<Option<Bytes>, ServerError> {
        Local::write(self, request)
    }

    fn pairs_after(
        &mut self,
        after: Option<&[u8]>,
        count: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, ServerError> {
        let view = self.store.snapshot();
        view.iter(lower(after), std::ops::Bound::Unbounded)
            .take(count)
            .map(|pair| Ok(pair?))
            .collect()
    }
}

/// The commands of one `EXEC`: reads see the transaction's own writes;
/// nothing is visible to others before the commit.
pub(crate) trait Txn: Db {
    /// Commits the writes, if nothing the transaction read (nor any
    /// `watched` key) changed since; `false` if something did (nothing
    /// was written: run the commands again).
    ///
    /// # Errors
    /// The store's or the cluster's write errors.
    fn commit(self: Box<Self>, watched: &[(Bytes, Option<Bytes>)]) -> Result<bool, ServerError>;
}

/// A local `EXEC`: one serializable transaction of the store; a `Sync`
/// commit's durability goes to the connection's [`Pending`] slot when it
/// has one.
pub(crate) struct TxnDb<'a>(
    pub Transaction<'a>,
    pub Durability,
    pub Option<&'a mut Pending>,
);

impl Txn for TxnDb<'_> {
    /// The watched keys were read inside the transaction, so the
    /// serializable commit checks them with its other reads.
    fn commit(self: Box<Self>, _watched: &[(Bytes, Option<Bytes>)]) -> Result<bool, ServerError> {
        let TxnDb(txn, durability, pending) = *self;
        let outcome = match pending {
            Some(slot) if durability == Durability::Sync => {
                txn.commit_async().map(|commit| slot.defer(commit))
            }
            _ => txn.commit(durability).map(|_| ()),
        };
        match outcome {
            Ok(()) => Ok(true),
            Err(e) if e.is_retryable() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// A connection's latest write that is applied but not yet known durable:
/// the connection waits for it (off the runtime's threads, as a future)
/// before it answers or runs its next command, so no answer says a write
/// is done before it is durable, and no thread is held while it syncs.
#[derive(Debug, Default)]
pub(crate) struct Pending(Option<Commit>);

impl Pending {
    /// Waits for `commit` too. Durability follows the log's order, so the
    /// latest commit stands for every earlier one.
    fn defer(&mut self, commit: Commit) {
        if self.0.as_ref().is_none_or(|c| c.lsn() < commit.lsn()) {
            self.0 = Some(commit);
        }
    }

    /// The write to wait for, if any.
    pub(crate) fn take(&mut self) -> Option<Commit> {
        self.0.take()
    }
}

impl std::fmt::Debug for TxnDb<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxnDb").finish_non_exhaustive()
    }
}

impl Db for TxnDb<'_> {
    fn get(&mut self, key: &[u8]) -> Result<Option<Bytes>, ServerError> {
        Ok(self.0.get(key)?)
    }

    fn pairs(&mut self) -> Result<Vec<(Bytes, Bytes)>, ServerError> {
        Ok(self
            .0
            .scan(std::ops::Bound::Unbounded, std::ops::Bound::Unbounded)?)
    }

    fn write(&mut self, request: &Request) -> Result<Option<Bytes>, ServerError> {
        for g in &request.guards {
            if self.0.get(&g.key)? != g.expect {
                return Ok(Some(g.key.clone()));
            }
        }
        apply(&mut self.0, &request.batch)?;
        Ok(None)
    }

    fn pairs_after(
        &mut self,
        after: Option<&[u8]>,
        count: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, ServerError> {
        self.0
            .iter(lower(after), std::ops::Bound::Unbounded)
            .take(count)
            .map(|pair| Ok(pair?))
            .collect()
    }
}

fn apply(txn: &mut Transaction<'_>, batch: &wal_kv::WriteBatch) -> Result<(), ServerError> {
    each_write(batch, |key, value| match value {
        Some(value) => Ok(txn.put(key.clone(), value.clone())?),
        None => Ok(txn.delete(key.clone())?),
    })
}

/// Calls `f` with each write of `batch`: its key and new value (`None`:
/// deleted). A batch with another kind of operation is refused.
///
/// # Errors
/// [`ServerError::UnknownOperation`], and `f`'s errors.
pub(crate) fn each_write<'b>(
    batch: &'b wal_kv::WriteBatch,
    mut f: impl FnMut(&'b Bytes, Option<&'b Bytes>) -> Result<(), ServerError>,
) -> Result<(), ServerError> {
    for op in batch.ops() {
        match op {
            Op::Put { key, value } => f(key, Some(value))?,
            Op::Delete { key } => f(key, None)?,
            _ => return Err(ServerError::UnknownOperation),
        }
    }
    Ok(())
}

/// When a write is durable, as Redis's `appendfsync` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SyncMode {
    /// Before it is answered (`appendfsync always`; the default).
    #[default]
    Always,
    /// Within about a second of being answered (`everysec`): a crash may
    /// lose the last second of answered writes.
    EverySec,
    /// When the store's log fills a batch or checkpoints (`no`): a crash
    /// may lose every write since.
    No,
}

/// The store's durability for `sync`, with its log's sync policy set.
fn durability(options: &mut Options, sync: SyncMode) -> Durability {
    match sync {
        SyncMode::Always => Durability::Sync,
        SyncMode::EverySec => {
            options.log.sync = wal_engine::SyncPolicy::Interval(std::time::Duration::from_secs(1));
            Durability::Buffered
        }
        SyncMode::No => {
            options.log.sync = wal_engine::SyncPolicy::Never;
            Durability::Buffered
        }
    }
}

/// One local store.
#[derive(Debug)]
pub struct Local {
    store: Store,
    durability: Durability,
}

impl Local {
    /// Opens (creating) the store in `dir`.
    ///
    /// # Errors
    /// The store's open errors: a directory another process holds, a
    /// corrupt or newer-format store.
    pub fn open(dir: &Path, mut options: Options, sync: SyncMode) -> Result<Local, ServerError> {
        std::fs::create_dir_all(dir).map_err(ServerError::io(format!(
            "create the data directory {}",
            dir.display()
        )))?;
        if let Ok(id) = std::fs::read_to_string(dir.join(crate::cluster::ID_FILE)) {
            let (dir, id) = (dir.display(), id.trim());
            return Err(ServerError::Misconfigured(format!(
                "{dir} holds cluster node {id}'s data: start walkv with --node-id {id}"
            )));
        }
        let durability = durability(&mut options, sync);
        Ok(Local {
            store: Store::open(dir, options)?,
            durability,
        })
    }

    /// Opens (creating) the store on `storage`.
    ///
    /// # Errors
    /// As [`Local::open`].
    pub fn open_on(
        storage: std::sync::Arc<dyn wal_io::Storage>,
        mut options: Options,
        sync: SyncMode,
    ) -> Result<Local, ServerError> {
        let durability = durability(&mut options, sync);
        Ok(Local {
            store: Store::open_with(storage, options)?,
            durability,
        })
    }

    /// The value of `key`.
    ///
    /// # Errors
    /// The store's read errors.
    pub fn get(&self, key: &[u8]) -> Result<Option<Bytes>, ServerError> {
        Ok(self.store.get(key)?)
    }

    /// Writes the request's batch durably if every guard holds; otherwise
    /// the key of the first guard that did not, and nothing is written.
    ///
    /// # Errors
    /// The store's write errors.
    pub fn write(&self, request: &Request) -> Result<Option<Bytes>, ServerError> {
        if request.guards.is_empty() {
            self.store.write(&request.batch, self.durability)?;
            return Ok(None);
        }
        self.write_guarded(request, |txn| txn.commit(self.durability).map(|_| ()))
    }

    /// As [`Local::write`], but a `Sync` write's durability is left in
    /// `pending` to be awaited, rather than waited for here.
    ///
    /// # Errors
    /// The store's write errors.
    pub(crate) fn write_deferred(
        &self,
        request: &Request,
        pending: &mut Pending,
    ) -> Result<Option<Bytes>, ServerError> {
        if self.durability != Durability::Sync {
            return self.write(request);
        }
        if request.guards.is_empty() {
            pending.defer(self.store.write_async(&request.batch)?);
            return Ok(None);
        }
        self.write_guarded(request, |txn| txn.commit_async().map(|c| pending.defer(c)))
    }

    /// Writes the request's batch in a serializable transaction if every
    /// guard holds, committing with `commit`; otherwise the key of the first
    /// guard that did not, and nothing is written. The guards' reads are
    /// validated at commit, so a write in between makes the commit fail and
    /// the guards are checked again.
    fn write_guarded(
        &self,
        request: &Request,
        mut commit: impl FnMut(Transaction<'_>) -> Result<(), wal_kv::KvError>,
    ) -> Result<Option<Bytes>, ServerError> {
        loop {
            let mut txn = self.store.transaction_with(Isolation::Serializable);
            for g in &request.guards {
                if txn.get(&g.key)? != g.expect {
                    return Ok(Some(g.key.clone()));
                }
            }
            apply(&mut txn, &request.batch)?;
            match commit(txn) {
                Ok(()) => return Ok(None),
                Err(e) if e.is_retryable() => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The store, for transactions.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// How durable a write is when it is answered.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// Closes the store cleanly.
    ///
    /// # Errors
    /// The store's close errors.
    pub fn close(self) -> Result<(), ServerError> {
        Ok(self.store.close()?)
    }
}

/// What a server serves: one local store, or a cluster node.
#[derive(Debug)]
pub(crate) enum Backend {
    /// A single-node store.
    Local(Local),
    /// A node of a replicated cluster (boxed: it is several times the
    /// size of a local store's handle).
    Cluster(Box<crate::cluster::Node>),
}

/// One command's access to the data.
#[derive(Debug)]
pub(crate) enum Handle<'a> {
    /// The store, and where a `Sync` write's durability is left to be
    /// awaited (`None`: waited for in the call).
    Local(&'a Local, Option<&'a mut Pending>),
    Cluster(crate::cluster::db::ClusterDb<'a>),
}

impl Backend {
    /// A command's access; `stale` allows reads a follower answers alone;
    /// `pending`, where a local write's durability is left to be awaited.
    pub(crate) fn db<'a>(&'a self, stale: bool, pending: Option<&'a mut Pending>) -> Handle<'a> {
        match self {
            Backend::Local(local) => Handle::Local(local, pending),
            Backend::Cluster(node) => {
                Handle::Cluster(crate::cluster::db::ClusterDb::new(node, stale))
            }
        }
    }

    /// Starts an `EXEC`.
    ///
    /// # Errors
    /// On a cluster, a follower's redirect or a failed read barrier.
    pub(crate) fn begin<'a>(
        &'a self,
        pending: Option<&'a mut Pending>,
    ) -> Result<Box<dyn Txn + 'a>, ServerError> {
        Ok(match self {
            Backend::Local(local) => Box::new(TxnDb(
                local.store().transaction_with(Isolation::Serializable),
                local.durability(),
                pending,
            )),
            Backend::Cluster(node) => Box::new(crate::cluster::db::ClusterTxn::begin(node)?),
        })
    }

    /// Whether a command may wait long: a cluster's waits for its majority;
    /// a local one only while the store's memory is full and a checkpoint
    /// runs (its sync is deferred, see [`Pending`]). Such a command runs off
    /// the runtime's threads, so that other connections, `/health` and the
    /// wake-ups of finished syncs go on meanwhile.
    pub(crate) fn commands_block(&self) -> bool {
        match self {
            Backend::Local(local) => local.store().write_may_wait(),
            Backend::Cluster(_) => true,
        }
    }

    /// The store data is read from.
    pub(crate) fn store(&self) -> &Store {
        match self {
            Backend::Local(local) => local.store(),
            Backend::Cluster(node) => node.store(),
        }
    }

    /// The cluster node, if this is one.
    pub(crate) fn node(&self) -> Option<&crate::cluster::Node> {
        match self {
            Backend::Local(_) => None,
            Backend::Cluster(node) => Some(node),
        }
    }

    /// Closes the store (and stops the node's Raft) cleanly.
    ///
    /// # Errors
    /// The store's close errors.
    pub(crate) async fn close(self) -> Result<(), ServerError> {
        match self {
            Backend::Local(local) => tokio::task::spawn_blocking(move || local.close())
                .await
                .map_err(|e| ServerError::io("close the store")(std::io::Error::other(e)))?,
            Backend::Cluster(node) => node.shutdown().await,
        }
    }
}

impl Db for Handle<'_> {
    fn get(&mut self, key: &[u8]) -> Result<Option<Bytes>, ServerError> {
        match self {
            Handle::Local(l, _) => l.get(key),
            Handle::Cluster(c) => c.get(key),
        }
    }

    fn pairs(&mut self) -> Result<Vec<(Bytes, Bytes)>, ServerError> {
        match self {
            Handle::Local(l, _) => l.pairs(),
            Handle::Cluster(c) => c.pairs(),
        }
    }

    fn write(&mut self, request: &Request) -> Result<Option<Bytes>, ServerError> {
        match self {
            Handle::Local(l, Some(pending)) => l.write_deferred(request, pending),
            Handle::Local(l, None) => Local::write(l, request),
            Handle::Cluster(c) => c.write(request),
        }
    }

    fn pairs_after(
        &mut self,
        after: Option<&[u8]>,
        count: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, ServerError> {
        match self {
            Handle::Local(l, _) => l.pairs_after(after, count),
            Handle::Cluster(c) => c.pairs_after(after, count),
        }
    }
}
