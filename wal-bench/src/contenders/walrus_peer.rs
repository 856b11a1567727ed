//! walrus-rust: topics over shared block files. Its data directory comes from
//! the `WALRUS_DATA_DIR` environment variable and its fsync schedule is
//! process-global, which is why every run is a child process of its own.

use std::path::Path;
use std::time::Instant;

use walrus_rust::{FsyncSchedule, ReadConsistency, Walrus};

use super::{Contender, Entrant, Log, Purpose, err};

/// The walrus-rust peer.
pub static WALRUS: WalrusPeer = WalrusPeer;

/// The walrus-rust peer's contender.
#[derive(Debug)]
pub struct WalrusPeer;

/// The environment variable walrus reads its data directory from.
pub const DATA_DIR_VAR: &str = "WALRUS_DATA_DIR";

/// walrus refuses batches of more entries than this.
const BATCH_ENTRIES_MAX: usize = 2000;

fn topic(writer: u32) -> String {
    format!("w{writer}")
}

fn open(dir: &Path, schedule: FsyncSchedule) -> Result<Walrus, String> {
    let configured = std::env::var_os(DATA_DIR_VAR);
    if configured.as_deref() != Some(dir.as_os_str()) {
        return Err(format!(
            "walrus takes its directory from {DATA_DIR_VAR}, which must name {}",
            dir.display()
        ));
    }
    // Read positions are persisted only rarely: a replay reads each record once.
    let reads = ReadConsistency::AtLeastOnce {
        persist_every: u32::MAX,
    };
    Walrus::with_consistency_and_schedule(reads, schedule).map_err(err("open"))
}

struct OpenWalrus {
    walrus: Walrus,
    topics: Vec<String>,
}

impl Log for OpenWalrus {
    fn commit(&self, writer: u32, _seq: u64, rec: &[u8]) -> Result<(), String> {
        let topic = self
            .topics
            .get(writer as usize)
            .ok_or("writer out of range")?;
        self.walrus
            .append_for_topic(topic, rec)
            .map_err(err("append"))
    }

    /// Batches of 2000 records through `batch_append_for_topic`, each
    /// written with O_SYNC: walrus has no sync call to end a bulk load with.
    fn ingest(&self, count: u64, len: usize) -> Result<(), String> {
        let topic = self.topics.first().ok_or("no writer")?;
        let mut seq = 0u64;
        while seq < count {
            let n = (count - seq).min(BATCH_ENTRIES_MAX as u64);
            let records: Vec<Vec<u8>> = (1..=n)
                .map(|i| crate::record::make(len, 0, seq + i))
                .collect();
            let batch: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
            self.walrus
                .batch_append_for_topic(topic, &batch)
                .map_err(err("batch append"))?;
            seq += n;
        }
        Ok(())
    }

    fn append(&self, _writer: u32, _seq: u64, _rec: &[u8]) -> Result<(), String> {
        Err("walrus has no sync call, so no append-then-sync".into())
    }

    fn sync(&self) -> Result<(), String> {
        Ok(()) // every append is written with O_SYNC
    }

    fn close(self: Box<Self>) -> Result<(), String> {
        Ok(())
    }
}

impl Entrant for WalrusPeer {
    fn name(&self) -> &'static str {
        "walrus-rust"
    }

    fn config(&self) -> &'static str {
        "FsyncSchedule::SyncEach (files opened O_SYNC, flushed per append), fd backend; \
         one topic per writer thread; ingest: batch appends of 2000"
    }
}

impl Contender for WalrusPeer {
    /// No: walrus takes its directory from the environment, and keeps the
    /// files it opened, by path, for the life of the process.
    fn replays_a_copy_apart(&self) -> bool {
        false
    }

    fn open(&self, dir: &Path, writers: u32, _purpose: Purpose) -> Result<Box<dyn Log>, String> {
        Ok(Box::new(OpenWalrus {
            walrus: open(dir, FsyncSchedule::SyncEach)?,
            topics: (0..writers).map(topic).collect(),
        }))
    }

    fn replay(
        &self,
        dir: &Path,
        writers: u32,
        each: &mut dyn FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<f64, String> {
        let start = Instant::now();
        let walrus = open(dir, FsyncSchedule::SyncEach)?;
        let ready = start.elapsed().as_secs_f64();
        for writer in 0..writers {
            let topic = topic(writer);
            loop {
                let entries = walrus
                    .batch_read_for_topic(&topic, 4 << 20, true)
                    .map_err(err("read"))?;
                if entries.is_empty() {
                    break;
                }
                for entry in &entries {
                    each(&entry.data)?;
                }
            }
        }
        Ok(ready)
    }
}
