//! raft-engine: Raft entries per group. Each writer thread is its own group
//! (entries of a group need contiguous indexes), and each entry is a
//! protobuf `BytesValue` holding the record; its index is the record's
//! sequence number.

use std::path::Path;
use std::time::Instant;

use protobuf::well_known_types::BytesValue;
use raft_engine::{Config, Engine, LogBatch, MessageExt};

use super::{Contender, Entrant, Log, Purpose, err};

/// The raft-engine peer.
pub static RAFT_ENGINE: RaftEngine = RaftEngine;

/// The raft-engine peer's contender.
#[derive(Debug)]
pub struct RaftEngine;

/// The entry type: the record in a `BytesValue`, its index its sequence number.
#[derive(Debug)]
struct Entries;

impl MessageExt for Entries {
    type Entry = BytesValue;

    fn index(e: &BytesValue) -> u64 {
        crate::record::seq_of(&e.value).unwrap_or(0)
    }
}

/// Group ids start at 1; the group holding the sync marker is apart from them.
const SYNC_GROUP: u64 = u64::MAX;

fn group_of(writer: u32) -> u64 {
    u64::from(writer) + 1
}

/// Opens (creating) an engine with default settings in `dir`.
pub(crate) fn open(dir: &Path) -> Result<Engine, String> {
    let config = Config {
        dir: dir
            .to_str()
            .ok_or("raft-engine needs a UTF-8 path")?
            .to_owned(),
        ..Config::default()
    };
    Engine::open(config).map_err(err("open"))
}

struct OpenEngine(Engine);

impl OpenEngine {
    fn write(&self, writer: u32, rec: &[u8], sync: bool) -> Result<(), String> {
        let entry = BytesValue {
            value: rec.to_vec(),
            ..BytesValue::default()
        };
        let mut batch = LogBatch::default();
        batch
            .add_entries::<Entries>(group_of(writer), &[entry])
            .map_err(err("add entries"))?;
        self.0
            .write(&mut batch, sync)
            .map(drop)
            .map_err(err("write"))
    }
}

impl Log for OpenEngine {
    fn commit(&self, writer: u32, _seq: u64, rec: &[u8]) -> Result<(), String> {
        self.write(writer, rec, true)
    }

    fn append(&self, writer: u32, _seq: u64, rec: &[u8]) -> Result<(), String> {
        self.write(writer, rec, false)
    }

    /// `Engine::sync` in 0.4 writes an empty batch, which returns before
    /// syncing; a one-item batch written with sync on does sync.
    fn sync(&self) -> Result<(), String> {
        let mut batch = LogBatch::default();
        batch
            .put(SYNC_GROUP, b"sync".to_vec(), Vec::new())
            .map_err(err("put"))?;
        self.0
            .write(&mut batch, true)
            .map(drop)
            .map_err(err("sync"))
    }

    fn close(self: Box<Self>) -> Result<(), String> {
        Ok(()) // every write was synced or followed by a sync
    }
}

impl Entrant for RaftEngine {
    fn name(&self) -> &'static str {
        "raft-engine"
    }

    fn config(&self) -> &'static str {
        "defaults (128 MiB files, LZ4 for batches over 8 KiB); one raft group per \
         writer thread; commit: one-entry batch written with sync=true; ingest: \
         sync=false per entry, then a one-item batch with sync=true"
    }
}

impl Contender for RaftEngine {
    fn open(&self, dir: &Path, _writers: u32, _purpose: Purpose) -> Result<Box<dyn Log>, String> {
        Ok(Box::new(OpenEngine(open(dir)?)))
    }

    fn replay(
        &self,
        dir: &Path,
        _writers: u32,
        each: &mut dyn FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<f64, String> {
        let start = Instant::now();
        let engine = open(dir)?;
        let ready = start.elapsed().as_secs_f64();
        let mut groups = engine.raft_groups();
        groups.retain(|&g| g != SYNC_GROUP);
        groups.sort_unstable();
        let mut entries = Vec::new();
        for group in groups {
            let (Some(first), Some(last)) = (engine.first_index(group), engine.last_index(group))
            else {
                continue;
            };
            // Read in slices so memory stays bounded for large logs.
            let mut at = first;
            while at <= last {
                let end = (at + 4096).min(last + 1);
                entries.clear();
                engine
                    .fetch_entries_to::<Entries>(group, at, end, None, &mut entries)
                    .map_err(err("fetch entries"))?;
                for entry in &entries {
                    each(&entry.value)?;
                }
                at = end;
            }
        }
        Ok(ready)
    }
}
