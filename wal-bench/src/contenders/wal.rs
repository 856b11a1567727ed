//! This project's log, through each `wal-io` backend.

use std::future::Future;
use std::ops::ControlFlow;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake};
use std::time::{Duration, Instant};

use wal_engine::{Options, ReplayFrom, SyncPolicy, Wal};
use wal_io::{Backend, BackendChoice};

use super::{Contender, Entrant, Log, Purpose, err};
use crate::Workload;
use crate::workload::{Measured, Recorder};

/// `wal/portable`: pwrite + fdatasync.
pub static PORTABLE: WalContender = WalContender {
    name: "wal/portable",
    config: "portable backend (pwrite, fdatasync); commits: SyncPolicy::Always; \
             ingest: SyncPolicy::Never + Wal::sync; replay: Wal::open_with_replaying",
    choice: BackendChoice::Portable,
    expect: Backend::Portable,
    direct: false,
    defaults: false,
};

/// `wal/uring`: the io_uring backend, buffered writes.
pub static URING: WalContender = WalContender {
    name: "wal/uring",
    config: "io_uring backend, buffered (one write and one fdatasync per round, as \
             system calls); commits: SyncPolicy::Always; ingest: SyncPolicy::Never + Wal::sync; \
             replay: Wal::open_with_replaying",
    choice: BackendChoice::Uring,
    expect: Backend::Uring,
    direct: false,
    defaults: false,
};

/// `wal/direct`: the pipelined O_DIRECT writer through io_uring.
pub static DIRECT: WalContender = WalContender {
    name: "wal/direct",
    config: "io_uring backend, Options::direct_io (O_DIRECT writes of whole 4 KiB blocks, \
             RWF_DSYNC, up to 8 in flight); commits: SyncPolicy::Always; ingest: \
             SyncPolicy::Never + Wal::sync; replay: Wal::open_with_replaying",
    choice: BackendChoice::Uring,
    expect: Backend::Uring,
    direct: true,
    defaults: false,
};

/// `wal/defaults`: what a user who sets nothing gets, ingest included.
pub static DEFAULTS: WalContender = WalContender {
    name: "wal/defaults",
    config: "Options::default() throughout: ingest under SyncPolicy::Always too (the owner \
             writes and syncs appends as they come) + Wal::sync; replay: \
             Wal::open_with_replaying. W3 and W4 only: its commits are wal/uring's",
    choice: BackendChoice::Uring,
    expect: Backend::Uring,
    direct: false,
    defaults: true,
};

/// One configuration of this project's log.
#[derive(Debug)]
pub struct WalContender {
    name: &'static str,
    config: &'static str,
    choice: BackendChoice,
    expect: Backend,
    direct: bool,
    /// Ingests with the default policy instead of `SyncPolicy::Never`.
    defaults: bool,
}

impl WalContender {
    fn open_wal(&self, dir: &Path, sync: SyncPolicy) -> Result<Wal, String> {
        let (storage, options) = self.prepare(dir, sync)?;
        let (wal, _report) = Wal::open_with(storage, options).map_err(err("open"))?;
        Ok(wal)
    }

    fn prepare(
        &self,
        dir: &Path,
        sync: SyncPolicy,
    ) -> Result<(Arc<dyn wal_io::Storage>, Options), String> {
        let storage = wal_io::open_dir(dir, self.choice).map_err(err("open directory"))?;
        if storage.backend() != self.expect {
            return Err(format!(
                "backend {:?} unavailable: {}",
                self.expect,
                storage.fallback_reason().unwrap_or("refused")
            ));
        }
        let options = Options::builder()
            .sync(sync)
            .direct_io(self.direct)
            .build()
            .map_err(err("options"))?;
        Ok((storage, options))
    }
}

struct OpenWal(Wal);

impl Log for OpenWal {
    fn commit(&self, _writer: u32, _seq: u64, rec: &[u8]) -> Result<(), String> {
        self.0.commit(rec).map(drop).map_err(err("commit"))
    }

    fn append(&self, _writer: u32, _seq: u64, rec: &[u8]) -> Result<(), String> {
        self.0.append(rec).map(drop).map_err(err("append"))
    }

    fn sync(&self) -> Result<(), String> {
        self.0.sync().map_err(err("sync"))
    }

    fn close(self: Box<Self>) -> Result<(), String> {
        self.0.close().map_err(err("close"))
    }
}

impl Entrant for WalContender {
    fn name(&self) -> &'static str {
        self.name
    }

    fn config(&self) -> &'static str {
        self.config
    }

    fn is_ours(&self) -> bool {
        true
    }

    fn not_applicable(&self, workload: Workload) -> Option<&'static str> {
        let ingest = matches!(
            workload,
            Workload::W3Big | Workload::W3Small | Workload::W4Big | Workload::W4Small
        );
        (self.defaults && !ingest).then_some("the same as wal/uring outside ingest and replay")
    }
}

impl Contender for WalContender {
    fn open(&self, dir: &Path, _writers: u32, purpose: Purpose) -> Result<Box<dyn Log>, String> {
        let sync = match purpose {
            Purpose::Ingest if !self.defaults => SyncPolicy::Never,
            Purpose::Commits | Purpose::Ingest => Options::default().sync,
        };
        Ok(Box::new(OpenWal(self.open_wal(dir, sync)?)))
    }

    fn replay(
        &self,
        dir: &Path,
        _writers: u32,
        each: &mut dyn FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<f64, String> {
        // The log reads itself once: records are handed out while recovery
        // verifies them, as a store replaying at startup would take them.
        let start = Instant::now();
        let (storage, options) = self.prepare(dir, SyncPolicy::Never)?;
        let mut failed = None;
        let (wal, _report) =
            Wal::open_with_replaying(storage, options, ReplayFrom::Start, |record| {
                match each(record.data) {
                    Ok(()) => ControlFlow::Continue(()),
                    Err(e) => {
                        failed = Some(e);
                        ControlFlow::Break(())
                    }
                }
            })
            .map_err(err("open"))?;
        let ready = start.elapsed().as_secs_f64();
        if let Some(e) = failed {
            return Err(e);
        }
        wal.close().map_err(err("close"))?;
        Ok(ready)
    }

    fn inflight(
        &self,
        dir: &Path,
        depth: usize,
        seconds: f64,
        len: usize,
    ) -> Result<Measured, String> {
        let wal = self.open_wal(dir, SyncPolicy::Always)?;
        let measured = run_inflight(&wal, depth, seconds, len)?;
        wal.close().map_err(err("close"))?;
        Ok(measured)
    }
}

/// Wakes the bench thread when a commit future can make progress.
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// One thread, `depth` commits in flight through `Wal::durable` futures,
/// polled by a minimal executor: a new record is appended as each resolves.
fn run_inflight(wal: &Wal, depth: usize, seconds: f64, len: usize) -> Result<Measured, String> {
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    let mut recorder = Recorder::new();
    let mut slots: Vec<Option<(Instant, wal_engine::DurableFuture)>> =
        (0..depth).map(|_| None).collect();
    let mut buf = vec![0; len];
    let mut seq = 0u64;
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let mut stopping = false;
    loop {
        let mut progressed = false;
        let mut busy = false;
        for slot in &mut slots {
            if slot.is_none() && !stopping {
                seq += 1;
                crate::record::fill(&mut buf, 0, seq);
                let lsn = wal.append(&buf).map_err(err("append"))?;
                *slot = Some((Instant::now(), wal.durable(lsn)));
            }
            if let Some((issued, fut)) = slot {
                busy = true;
                if let Poll::Ready(result) = Pin::new(fut).poll(&mut cx) {
                    result.map_err(err("durable"))?;
                    recorder.op(issued.elapsed(), len as u64);
                    *slot = None;
                    progressed = true;
                }
            }
        }
        if !busy {
            break;
        }
        stopping = stopping || Instant::now() >= deadline;
        if !progressed {
            std::thread::park_timeout(Duration::from_millis(1));
        }
    }
    Ok(recorder.finish(start.elapsed()))
}
