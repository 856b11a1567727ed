//! A wait that ends leaves nothing behind: a tail that times out, a tail
//! future dropped before it resolves, a durability future dropped before
//! its LSN is durable. Registered on every call or poll and never removed,
//! such waiters grow without limit under a tailer polling an idle log.
//! `Stats::waiters` counts the waiters registered right now; it stays at
//! most 1 through a thousand ended waits, and is 0 once everything
//! appended is durable.

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use wal_engine::{Options, SyncPolicy, Wal};
use wal_io::sim::SimDisk;
use wal_io::{Backend, DirLock, FileOptions, FileRef, IoError, IoQueue, Storage, StorageFile};

const SEED: u64 = 71;
/// Ended waits per test.
const WAITS: usize = 1000;
/// Bound on a held data sync: a failing test must not hang.
const BOUND: Duration = Duration::from_secs(30);

fn options() -> Options {
    let mut o = Options::default();
    o.segment_bytes = 64 << 10;
    o.queue_bytes_max = 8 << 10;
    o.record_bytes_max = 1 << 10;
    // No background thread syncs a spare while the gate below is closed.
    o.prepare_segments = false;
    o.identity_seed = Some(SEED);
    o
}

#[test]
fn tail_waits_that_time_out_leave_no_waiters() {
    let (wal, _) = Wal::open_with(SimDisk::new(SEED).storage(), options()).unwrap();
    let mut reader = wal.reader(1).unwrap();
    for i in 0..WAITS {
        let got = reader.next_wait(Some(Duration::from_millis(1))).unwrap();
        assert!(got.is_none(), "wait {i}: the log is idle");
    }
    let waiters = wal.stats().waiters;
    assert!(
        waiters <= 1,
        "{WAITS} timed-out waits left {waiters} waiters"
    );
    wal.commit(b"everything durable").unwrap();
    assert_eq!(wal.stats().waiters, 0);
}

#[test]
fn dropped_tail_futures_leave_no_waiters() {
    let (wal, _) = Wal::open_with(SimDisk::new(SEED).storage(), options()).unwrap();
    let mut reader = wal.reader(1).unwrap();
    let mut cx = Context::from_waker(Waker::noop());
    for i in 0..WAITS {
        let mut next = pin!(reader.next_async());
        assert!(
            next.as_mut().poll(&mut cx).is_pending(),
            "poll {i}: the log is idle"
        );
    }
    let waiters = wal.stats().waiters;
    assert!(
        waiters <= 1,
        "{WAITS} dropped tail futures left {waiters} waiters"
    );
    wal.commit(b"everything durable").unwrap();
    assert_eq!(wal.stats().waiters, 0);
}

#[test]
fn dropped_durability_futures_leave_no_waiters() {
    let gate = Arc::new(Gate::default());
    let storage: Arc<dyn Storage> = Arc::new(GatedStorage {
        inner: SimDisk::new(SEED).storage(),
        gate: gate.clone(),
    });
    let mut o = options();
    o.sync = SyncPolicy::Never;
    let (wal, _) = Wal::open_with(storage, o).unwrap();
    // From here every data sync is held: the LSN below stays not durable
    // (the first poll asks for a sync, which then waits at the gate).
    gate.set_closed(true);
    let lsn = wal.append(b"not durable while the gate is closed").unwrap();
    let mut cx = Context::from_waker(Waker::noop());
    for i in 0..WAITS {
        let mut durable = pin!(wal.durable(lsn));
        assert!(
            durable.as_mut().poll(&mut cx).is_pending(),
            "poll {i}: LSN {lsn} cannot be durable while syncs are held"
        );
    }
    let waiters = wal.stats().waiters;
    gate.set_closed(false);
    assert!(
        waiters <= 1,
        "{WAITS} dropped durability futures left {waiters} waiters"
    );
    wal.sync().unwrap();
    assert_eq!(wal.durable_lsn(), lsn);
    assert_eq!(wal.stats().waiters, 0);
}

/// Holds data syncs while closed (at most `BOUND` each).
#[derive(Debug, Default)]
struct Gate {
    closed: Mutex<bool>,
    changed: Condvar,
}

impl Gate {
    fn set_closed(&self, closed: bool) {
        *self.closed.lock().unwrap() = closed;
        self.changed.notify_all();
    }

    fn pass(&self) {
        let deadline = Instant::now() + BOUND;
        let mut closed = self.closed.lock().unwrap();
        while *closed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            closed = self.changed.wait_timeout(closed, left).unwrap().0;
        }
    }
}

/// The simulated disk, with every file's data sync passing the gate first.
#[derive(Debug)]
struct GatedStorage {
    inner: Arc<dyn Storage>,
    gate: Arc<Gate>,
}

impl GatedStorage {
    fn wrap(&self, file: FileRef) -> FileRef {
        Arc::new(GatedFile {
            inner: file,
            gate: self.gate.clone(),
        })
    }
}

impl Storage for GatedStorage {
    fn backend(&self) -> Backend {
        self.inner.backend()
    }

    fn create(&self, name: &str, options: FileOptions) -> Result<FileRef, IoError> {
        self.inner.create(name, options).map(|f| self.wrap(f))
    }

    fn open(&self, name: &str, options: FileOptions) -> Result<FileRef, IoError> {
        self.inner.open(name, options).map(|f| self.wrap(f))
    }

    fn remove(&self, name: &str) -> Result<(), IoError> {
        self.inner.remove(name)
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), IoError> {
        self.inner.rename(from, to)
    }

    fn list(&self) -> Result<Vec<String>, IoError> {
        self.inner.list()
    }

    fn sync_dir(&self) -> Result<(), IoError> {
        self.inner.sync_dir()
    }

    fn lock(&self) -> Result<DirLock, IoError> {
        self.inner.lock()
    }

    fn queue(&self, depth: u32) -> Result<Box<dyn IoQueue>, IoError> {
        self.inner.queue(depth)
    }
}

#[derive(Debug)]
struct GatedFile {
    inner: FileRef,
    gate: Arc<Gate>,
}

impl StorageFile for GatedFile {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn options(&self) -> FileOptions {
        self.inner.options()
    }

    fn write_at(&self, offset: u64, bufs: &[&[u8]]) -> Result<(), IoError> {
        self.inner.write_at(offset, bufs)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        self.inner.read_at(offset, buf)
    }

    fn sync_data(&self) -> Result<(), IoError> {
        self.gate.pass();
        self.inner.sync_data()
    }

    fn allocate(&self, offset: u64, len: u64) -> Result<(), IoError> {
        self.inner.allocate(offset, len)
    }

    fn set_len(&self, len: u64) -> Result<(), IoError> {
        self.inner.set_len(len)
    }

    fn size(&self) -> Result<u64, IoError> {
        self.inner.size()
    }

    fn drop_cache(&self) -> Result<(), IoError> {
        self.inner.drop_cache()
    }

    fn close(&self) {
        self.inner.close();
    }
}
