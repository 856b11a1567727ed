//! okaywal: every entry commit fsyncs (batched across threads); there is no
//! non-durable append.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use okaywal::{Configuration, Entry, EntryId, LogManager, SegmentReader, WriteAheadLog};

use super::{Contender, Entrant, Log, Purpose, err};

/// The okaywal peer.
pub static OKAYWAL: Okaywal = Okaywal;

/// The okaywal peer's contender.
#[derive(Debug)]
pub struct Okaywal;

/// Checkpointing would hand entries to the manager and recycle the segment;
/// the benchmark keeps every entry readable, as the other logs do.
const NEVER_CHECKPOINT_BYTES: u64 = u64::MAX / 2;

/// Receives recovered entries; checkpoints keep nothing (there is nothing to
/// move entries to).
#[derive(Debug, Clone, Default)]
struct Manager {
    gathered: Option<Arc<Mutex<Vec<Vec<u8>>>>>,
}

impl LogManager for Manager {
    fn recover(&mut self, entry: &mut Entry<'_>) -> std::io::Result<()> {
        let Some(gathered) = &self.gathered else {
            return Ok(());
        };
        // An aborted entry (a crash mid-write) has no chunks to give.
        if let Some(chunks) = entry.read_all_chunks()? {
            gathered
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(chunks);
        }
        Ok(())
    }

    fn checkpoint_to(
        &mut self,
        _last_checkpointed_id: EntryId,
        _checkpointed_entries: &mut SegmentReader,
        _wal: &WriteAheadLog,
    ) -> std::io::Result<()> {
        Ok(())
    }
}

fn open(dir: &Path, manager: Manager) -> Result<WriteAheadLog, String> {
    Configuration::default_for(dir)
        .checkpoint_after_bytes(NEVER_CHECKPOINT_BYTES)
        .open(manager)
        .map_err(err("open"))
}

struct OpenLog(WriteAheadLog);

impl Log for OpenLog {
    fn commit(&self, _writer: u32, _seq: u64, rec: &[u8]) -> Result<(), String> {
        let mut entry = self.0.begin_entry().map_err(err("begin entry"))?;
        entry.write_chunk(rec).map_err(err("write chunk"))?;
        entry.commit().map(drop).map_err(err("commit"))
    }

    /// One entry of `count` chunks and one commit: okaywal's only way to
    /// append many records with one fsync.
    fn ingest(&self, count: u64, len: usize) -> Result<(), String> {
        let mut buf = vec![0; len];
        let mut entry = self.0.begin_entry().map_err(err("begin entry"))?;
        for seq in 1..=count {
            crate::record::fill(&mut buf, 0, seq);
            entry.write_chunk(&buf).map_err(err("write chunk"))?;
        }
        entry.commit().map(drop).map_err(err("commit"))
    }

    fn append(&self, _writer: u32, _seq: u64, _rec: &[u8]) -> Result<(), String> {
        Err("okaywal has no non-durable append".into())
    }

    fn sync(&self) -> Result<(), String> {
        Ok(()) // every commit is durable when it returns
    }

    fn close(self: Box<Self>) -> Result<(), String> {
        self.0.shutdown().map_err(err("shutdown"))
    }
}

impl Entrant for Okaywal {
    fn name(&self) -> &'static str {
        "okaywal"
    }

    fn config(&self) -> &'static str {
        "defaults, no checkpointing; each commit is one entry of one chunk (fsync \
         before return, batched across threads); ingest: one entry of N chunks, one commit"
    }
}

impl Contender for Okaywal {
    fn open(&self, dir: &Path, _writers: u32, _purpose: Purpose) -> Result<Box<dyn Log>, String> {
        Ok(Box::new(OpenLog(open(dir, Manager::default())?)))
    }

    fn replay(
        &self,
        dir: &Path,
        _writers: u32,
        each: &mut dyn FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<f64, String> {
        // okaywal replays inside `open`, through the manager, which gathers
        // the records; they are checked once open returns.
        let gathered: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let start = Instant::now();
        let log = open(
            dir,
            Manager {
                gathered: Some(Arc::clone(&gathered)),
            },
        )?;
        let ready = start.elapsed().as_secs_f64();
        let records = std::mem::take(&mut *gathered.lock().unwrap_or_else(|p| p.into_inner()));
        for rec in &records {
            each(rec)?;
        }
        log.shutdown().map_err(err("shutdown"))?;
        Ok(ready)
    }
}
