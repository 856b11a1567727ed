//! raft-engine's key-value part: `LogBatch::put` into one region, written
//! with sync on; reads come from its in-memory table (it keeps every key in
//! memory and rewrites them into the log on purge).

use std::path::Path;

use raft_engine::{Engine, LogBatch};

use super::{KvContender, KvReader, KvStore, Pair, copy_found};
use crate::contenders::{Entrant, err};

/// The raft-engine peer.
pub static RAFT_ENGINE: RaftEngine = RaftEngine;

/// The raft-engine key-value contender.
#[derive(Debug)]
pub struct RaftEngine;

/// Every key lives in this one region.
const REGION: u64 = 1;

struct OpenEngine(Engine);

impl OpenEngine {
    fn write(&self, pairs: &mut dyn Iterator<Item = (&[u8], &[u8])>) -> Result<(), String> {
        let mut batch = LogBatch::default();
        for (k, v) in pairs {
            batch
                .put(REGION, k.to_vec(), v.to_vec())
                .map_err(err("put"))?;
        }
        self.0
            .write(&mut batch, true)
            .map(drop)
            .map_err(err("write"))
    }
}

impl KvStore for OpenEngine {
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), String> {
        self.write(&mut std::iter::once((key, value)))
    }

    fn put_batch(&self, pairs: &[Pair]) -> Result<(), String> {
        self.write(&mut pairs.iter().map(|(k, v)| (k.as_slice(), v.as_slice())))
    }

    fn reader(&self) -> Result<Box<dyn KvReader + '_>, String> {
        Ok(Box::new(Reader(&self.0)))
    }

    fn close(self: Box<Self>) -> Result<(), String> {
        Ok(()) // every write was synced
    }
}

/// raft-engine has no snapshots; its reads see the latest write.
struct Reader<'a>(&'a Engine);

impl KvReader for Reader<'_> {
    fn get(&mut self, key: &[u8], out: &mut Vec<u8>) -> Result<bool, String> {
        Ok(copy_found(out, self.0.get(REGION, key)))
    }
}

impl Entrant for RaftEngine {
    fn name(&self) -> &'static str {
        "raft-engine"
    }

    fn config(&self) -> &'static str {
        "defaults; every key in one region, LogBatch::put written with sync=true (a \
         batch of 1000 for the load); gets: Engine::get from its in-memory table (all \
         keys are held in memory)"
    }

    fn not_applicable(&self, workload: crate::Workload) -> Option<&'static str> {
        super::no_transactions(workload)
    }
}

impl KvContender for RaftEngine {
    fn open(&self, dir: &Path) -> Result<Box<dyn KvStore>, String> {
        Ok(Box::new(OpenEngine(crate::contenders::open_raft_engine(
            dir,
        )?)))
    }
}
