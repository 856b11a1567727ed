//! Commands' reads and writes on a cluster node. A command's first read
//! waits for a read index confirmed by a majority (so it sees every write
//! answered before it began), unless the connection asked for stale reads
//! (`READONLY`); writes are Raft entries. `EXEC` reads one consistent view
//! of the store and commits its writes as one entry guarded by every value
//! it read: if any changed meanwhile, nothing is written and the commands
//! run again.

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;
use wal_kv::WriteBatch;
use wal_raft::{Guard, RESERVED_PREFIX, Request};

use super::Node;
use crate::ServerError;
use crate::backend::{Db, Txn, each_write};

/// Runs `f` to completion from a command, which runs on a runtime thread
/// given over to blocking (`block_in_place`).
fn block<F: Future>(f: F) -> F::Output {
    tokio::runtime::Handle::current().block_on(f)
}

pub(crate) fn reserved(key: &[u8]) -> bool {
    key.starts_with(RESERVED_PREFIX)
}

fn lower(after: Option<&[u8]>) -> Bound<&[u8]> {
    after.map_or(Bound::Unbounded, Bound::Excluded)
}

/// One command's access to a cluster node's data.
#[derive(Debug)]
pub(crate) struct ClusterDb<'a> {
    node: &'a Node,
    stale: bool,
    fresh: bool,
}

impl<'a> ClusterDb<'a> {
    /// Reads linearizable unless `stale`.
    pub(crate) fn new(node: &'a Node, stale: bool) -> ClusterDb<'a> {
        ClusterDb {
            node,
            stale,
            fresh: false,
        }
    }

    fn barrier(&mut self) -> Result<(), ServerError> {
        if !self.stale && !self.fresh {
            block(self.node.read_barrier())?;
            self.fresh = true;
        }
        Ok(())
    }
}

impl Db for ClusterDb<'_> {
    fn get(&mut self, key: &[u8]) -> Result<Option<Bytes>, ServerError> {
        if reserved(key) {
            return Ok(None);
        }
        self.barrier()?;
        Ok(self.node.store().get(key)?)
    }

    fn pairs(&mut self) -> Result<Vec<(Bytes, Bytes)>, ServerError> {
        self.barrier()?;
        let mut pairs = self.node.store().scan(Bound::Unbounded, Bound::Unbounded)?;
        pairs.retain(|(k, _)| !reserved(k));
        Ok(pairs)
    }

    fn write(&mut self, request: &Request) -> Result<Option<Bytes>, ServerError> {
        // Applied here before it returns: later reads of this command see
        // it without another barrier.
        block(self.node.write(request.clone()))
    }

    fn pairs_after(
        &mut self,
        after: Option<&[u8]>,
        count: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, ServerError> {
        self.barrier()?;
        let view = self.node.store().snapshot();
        view.iter(lower(after), Bound::Unbounded)
            .filter(|pair| pair.as_ref().map_or(true, |(k, _)| !reserved(k)))
            .take(count)
            .map(|pair| Ok(pair?))
            .collect()
    }
}

/// The commands of one `EXEC` on a cluster node.
pub(crate) struct ClusterTxn<'a> {
    node: &'a Node,
    view: wal_kv::Snapshot<'a>,
    /// Each key read from the view and what it held: the commit's guards.
    reads: BTreeMap<Bytes, Option<Bytes>>,
    /// The transaction's writes (`None`: deleted), seen by its own reads.
    writes: BTreeMap<Bytes, Option<Bytes>>,
}

impl std::fmt::Debug for ClusterTxn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterTxn")
            .field("reads", &self.reads.len())
            .field("writes", &self.writes.len())
            .finish_non_exhaustive()
    }
}

impl<'a> ClusterTxn<'a> {
    /// Starts after a read barrier, on a view of the store then.
    pub(crate) fn begin(node: &'a Node) -> Result<ClusterTxn<'a>, ServerError> {
        block(node.read_barrier())?;
        Ok(ClusterTxn {
            node,
            view: node.store().snapshot(),
            reads: BTreeMap::new(),
            writes: BTreeMap::new(),
        })
    }

    /// The view's pairs in `(after, ..)` with the transaction's writes
    /// laid over them, at most `count` (all with `usize::MAX`).
    fn merged(
        &self,
        after: Option<&[u8]>,
        count: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, ServerError> {
        // The writes can hide at most as many pairs as they hold.
        let want = count.saturating_add(self.writes.len());
        let mut out: BTreeMap<Bytes, Bytes> = BTreeMap::new();
        for pair in self.view.iter(lower(after), Bound::Unbounded).take(want) {
            let (k, v) = pair?;
            if !reserved(&k) {
                out.insert(k, v);
            }
        }
        let base_complete = out.len() < want;
        let last_base = out.keys().next_back().cloned();
        for (k, v) in self
            .writes
            .range::<[u8], _>((lower(after), Bound::Unbounded))
        {
            // Past the last pair read, the view may hold pairs not read:
            // only a complete read may be extended.
            if !base_complete && last_base.as_ref().is_some_and(|last| k > last) {
                break;
            }
            match v {
                Some(v) => out.insert(k.clone(), v.clone()),
                None => out.remove(k),
            };
        }
        Ok(out.into_iter().take(count).collect())
    }
}

impl Db for ClusterTxn<'_> {
    fn get(&mut self, key: &[u8]) -> Result<Option<Bytes>, ServerError> {
        if reserved(key) {
            return Ok(None);
        }
        if let Some(v) = self.writes.get(key) {
            return Ok(v.clone());
        }
        let v = self.view.get(key)?;
        self.reads
            .entry(Bytes::copy_from_slice(key))
            .or_insert_with(|| v.clone());
        Ok(v)
    }

    fn pairs(&mut self) -> Result<Vec<(Bytes, Bytes)>, ServerError> {
        self.merged(None, usize::MAX)
    }

    fn write(&mut self, request: &Request) -> Result<Option<Bytes>, ServerError> {
        for g in &request.guards {
            if self.get(&g.key)? != g.expect {
                return Ok(Some(g.key.clone()));
            }
        }
        each_write(&request.batch, |key, value| {
            if reserved(key) {
                return Err(ServerError::ReservedKey);
            }
            self.writes.insert(key.clone(), value.cloned());
            Ok(())
        })?;
        Ok(None)
    }

    fn pairs_after(
        &mut self,
        after: Option<&[u8]>,
        count: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, ServerError> {
        self.merged(after, count)
    }
}

impl Txn for ClusterTxn<'_> {
    /// One entry: the writes, guarded by every value read and every
    /// watched value. Read-only: nothing to write; the view was taken
    /// after a read barrier, so its reads were current then.
    fn commit(self: Box<Self>, watched: &[(Bytes, Option<Bytes>)]) -> Result<bool, ServerError> {
        if self.writes.is_empty() {
            return Ok(true);
        }
        let mut guards: Vec<Guard> = self
            .reads
            .into_iter()
            .map(|(key, expect)| Guard { key, expect })
            .collect();
        guards.extend(watched.iter().map(|(key, expect)| Guard {
            key: key.clone(),
            expect: expect.clone(),
        }));
        let mut batch = WriteBatch::new();
        for (k, v) in self.writes {
            match v {
                Some(v) => batch.put(k, v),
                None => batch.delete(k),
            };
        }
        Ok(block(self.node.write(Request::guarded(guards, batch)))?.is_none())
    }
}
