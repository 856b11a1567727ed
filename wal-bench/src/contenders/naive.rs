//! The naive baseline: a mutex-and-condvar batching writer over one file,
//! `write_all` + `fdatasync`. It shows what plain group commit gives without
//! any of the engine's machinery (no preallocation, no framing, no CRC).

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::Path;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use super::{Contender, Entrant, Log, Purpose, err};

/// The naive baseline.
pub static NAIVE: Naive = Naive;

/// The naive baseline's contender.
#[derive(Debug)]
pub struct Naive;

const FILE_NAME: &str = "naive.log";
/// Buffered appends are written out at this size even without a sync.
const FLUSH_BYTES: usize = 1 << 20;

struct State {
    file: File,
    /// Length-prefixed records not yet written.
    pending: Vec<u8>,
    /// Records appended, and records made durable.
    appended: u64,
    durable: u64,
    /// A writer is writing and syncing; the others wait for it.
    flushing: bool,
    failed: Option<String>,
}

struct NaiveLog {
    state: Mutex<State>,
    synced: Condvar,
}

impl NaiveLog {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn push(state: &mut State, rec: &[u8]) -> u64 {
        let len = u32::try_from(rec.len()).expect("bench records are small");
        state.pending.extend_from_slice(&len.to_le_bytes());
        state.pending.extend_from_slice(rec);
        state.appended += 1;
        state.appended
    }

    /// Waits until record `upto` is durable, leading a write+sync when nobody is.
    fn wait_durable(&self, upto: u64) -> Result<(), String> {
        let mut state = self.lock();
        loop {
            if let Some(e) = &state.failed {
                return Err(e.clone());
            }
            if state.durable >= upto {
                return Ok(());
            }
            if state.flushing {
                state = self.synced.wait(state).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            state.flushing = true;
            let batch = std::mem::take(&mut state.pending);
            let covers = state.appended;
            let file = state.file.try_clone().map_err(err("clone fd"));
            drop(state);
            let result = file.and_then(|mut f| {
                f.write_all(&batch).map_err(err("write"))?;
                f.sync_data().map_err(err("fdatasync"))
            });
            state = self.lock();
            state.flushing = false;
            match result {
                Ok(()) => state.durable = state.durable.max(covers),
                Err(e) => state.failed = Some(e),
            }
            self.synced.notify_all();
        }
    }
}

impl Log for NaiveLog {
    fn commit(&self, _writer: u32, _seq: u64, rec: &[u8]) -> Result<(), String> {
        let upto = Self::push(&mut self.lock(), rec);
        self.wait_durable(upto)
    }

    fn append(&self, _writer: u32, _seq: u64, rec: &[u8]) -> Result<(), String> {
        let mut state = self.lock();
        Self::push(&mut state, rec);
        if state.pending.len() >= FLUSH_BYTES && !state.flushing {
            let batch = std::mem::take(&mut state.pending);
            state.file.write_all(&batch).map_err(err("write"))?;
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), String> {
        let upto = self.lock().appended;
        self.wait_durable(upto)
    }

    fn close(self: Box<Self>) -> Result<(), String> {
        self.sync()
    }
}

impl Entrant for Naive {
    fn name(&self) -> &'static str {
        "naive"
    }

    fn config(&self) -> &'static str {
        "one file, Mutex+Condvar: the first waiter writes everything pending \
         (write_all) and fdatasyncs it for all"
    }

    fn is_baseline(&self) -> bool {
        true
    }
}

impl Contender for Naive {
    fn open(&self, dir: &Path, _writers: u32, _purpose: Purpose) -> Result<Box<dyn Log>, String> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(FILE_NAME))
            .map_err(err("open"))?;
        // The new file's directory entry must be durable before the first ack.
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(err("sync dir"))?;
        Ok(Box::new(NaiveLog {
            state: Mutex::new(State {
                file,
                pending: Vec::new(),
                appended: 0,
                durable: 0,
                flushing: false,
                failed: None,
            }),
            synced: Condvar::new(),
        }))
    }

    fn replay(
        &self,
        dir: &Path,
        _writers: u32,
        each: &mut dyn FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<f64, String> {
        let start = Instant::now();
        let file = File::open(dir.join(FILE_NAME)).map_err(err("open"))?;
        let ready = start.elapsed().as_secs_f64();
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut rec = Vec::new();
        loop {
            let mut len = [0u8; 4];
            match reader.read_exact(&mut len) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(format!("read: {e}")),
            }
            rec.resize(u32::from_le_bytes(len) as usize, 0);
            reader.read_exact(&mut rec).map_err(err("read record"))?;
            each(&rec)?;
        }
        Ok(ready)
    }
}
