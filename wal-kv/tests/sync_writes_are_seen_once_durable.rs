//! A batch written with `Durability::Sync` is seen by readers only once it
//! is durable, and never if its sync failed: no reader sees what a crash
//! can take back. `Durability::Buffered` batches are seen at once. Small
//! and large batches take different paths to the log (a large one is
//! handed to the log's owner thread before the memtable is filled), so
//! both are checked.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use wal_io::sim::{Fault, FaultError, SimDisk};
use wal_io::{Backend, DirLock, FileOptions, FileRef, IoError, IoQueue, Op, Storage, StorageFile};
use wal_kv::{Durability, Options, Store, WriteBatch};

/// Segment syncs wait at this gate while it is closed.
#[derive(Debug, Default)]
struct Gate {
    closed: AtomicBool,
    /// (a sync waits at the gate, the gate was opened)
    state: Mutex<(bool, bool)>,
    changed: Condvar,
}

impl Gate {
    fn wait_until(&self, ready: impl Fn(&(bool, bool)) -> bool) {
        let guard = self.state.lock().unwrap();
        let (state, timeout) = self
            .changed
            .wait_timeout_while(guard, Duration::from_secs(30), |s| !ready(s))
            .unwrap();
        drop(state);
        assert!(!timeout.timed_out(), "waited 30 s at the gate");
    }

    fn set(&self, f: impl FnOnce(&mut (bool, bool))) {
        f(&mut self.state.lock().unwrap());
        self.changed.notify_all();
    }
}

#[derive(Debug)]
struct GatedFile(FileRef, Arc<Gate>);

impl StorageFile for GatedFile {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn options(&self) -> FileOptions {
        self.0.options()
    }
    fn write_at(&self, offset: u64, bufs: &[&[u8]]) -> Result<(), IoError> {
        self.0.write_at(offset, bufs)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        self.0.read_at(offset, buf)
    }
    fn sync_data(&self) -> Result<(), IoError> {
        if self.0.name().ends_with(".wal") && self.1.closed.load(Ordering::SeqCst) {
            self.1.set(|s| s.0 = true);
            self.1.wait_until(|s| s.1);
        }
        self.0.sync_data()
    }
    fn allocate(&self, offset: u64, len: u64) -> Result<(), IoError> {
        self.0.allocate(offset, len)
    }
    fn set_len(&self, len: u64) -> Result<(), IoError> {
        self.0.set_len(len)
    }
    fn size(&self) -> Result<u64, IoError> {
        self.0.size()
    }
    fn drop_cache(&self) -> Result<(), IoError> {
        self.0.drop_cache()
    }
    fn close(&self) {
        self.0.close();
    }
}

#[derive(Debug)]
struct GatedDir(Arc<dyn Storage>, Arc<Gate>);

impl Storage for GatedDir {
    fn backend(&self) -> Backend {
        self.0.backend()
    }
    fn create(&self, name: &str, options: FileOptions) -> Result<FileRef, IoError> {
        Ok(Arc::new(GatedFile(
            self.0.create(name, options)?,
            self.1.clone(),
        )))
    }
    fn open(&self, name: &str, options: FileOptions) -> Result<FileRef, IoError> {
        Ok(Arc::new(GatedFile(
            self.0.open(name, options)?,
            self.1.clone(),
        )))
    }
    fn remove(&self, name: &str) -> Result<(), IoError> {
        self.0.remove(name)
    }
    fn rename(&self, from: &str, to: &str) -> Result<(), IoError> {
        self.0.rename(from, to)
    }
    fn list(&self) -> Result<Vec<String>, IoError> {
        self.0.list()
    }
    fn sync_dir(&self) -> Result<(), IoError> {
        self.0.sync_dir()
    }
    fn lock(&self) -> Result<DirLock, IoError> {
        self.0.lock()
    }
    fn queue(&self, depth: u32) -> Result<Box<dyn IoQueue>, IoError> {
        self.0.queue(depth)
    }
}

fn options() -> Options {
    let mut o = Options::default();
    o.log.prepare_segments = false;
    o
}

/// Operations in a batch large enough for the hand-off path.
const LARGE_OPS: usize = 200;

fn large_batch(name: &str) -> WriteBatch {
    let mut batch = WriteBatch::new();
    for i in 0..LARGE_OPS {
        batch.put(format!("{name}{i:04}"), format!("{i}"));
    }
    batch
}

#[test]
fn a_sync_write_is_seen_once_durable_and_what_follows_it_waits() {
    for large in [false, true] {
        sync_write_is_seen_once_durable(large);
    }
}

fn sync_write_is_seen_once_durable(large: bool) {
    let disk = SimDisk::new(3);
    let gate = Arc::new(Gate::default());
    let storage = Arc::new(GatedDir(disk.storage(), gate.clone()));
    let store = Arc::new(Store::open_with(storage, options()).unwrap());
    store.put("before", "1").unwrap();
    let mut buffered = WriteBatch::new();
    buffered.put("buffered", "2");
    store.write(&buffered, Durability::Buffered).unwrap();
    assert!(
        store.get(b"buffered").unwrap().is_some(),
        "buffered: seen at once"
    );
    // The log is idle and everything durable: the first sync the gate holds
    // is the next batch's, logged before its sync starts.
    store.put("flush", "0").unwrap();

    gate.closed.store(true, Ordering::SeqCst);
    let writer = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || {
            if large {
                let mut batch = large_batch("synced");
                batch.put("synced", "3");
                store.write(&batch, Durability::Sync)
            } else {
                store.put("synced", "3")
            }
        })
    };
    // The sync write is logged and its sync is held. A large batch's
    // owner may reach the sync before the writer has filled the memtable:
    // wait until it has, so that a wrongly early "seen" cannot hide.
    gate.wait_until(|s| s.0);
    let applied_bytes = if large { 4096 } else { 0 };
    let start = std::time::Instant::now();
    while store.stats().memtable_bytes < applied_bytes {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the batch never reached the memtable"
        );
        std::thread::yield_now();
    }
    assert_eq!(
        store.get(b"synced").unwrap(),
        None,
        "seen before it was durable"
    );
    let mut after = WriteBatch::new();
    after.put("after", "4");
    store.write(&after, Durability::Buffered).unwrap();
    assert_eq!(
        store.get(b"after").unwrap(),
        None,
        "a buffered batch after a waiting sync batch is seen before it"
    );
    // The buffered write took the store's write lock, which the sync
    // batch held until it was fully applied: it is surely applied now.
    for key in ["synced", "synced0000"] {
        let seen = store.get(key.as_bytes()).unwrap();
        assert_eq!(seen, None, "{key} seen before it was durable");
    }
    gate.closed.store(false, Ordering::SeqCst);
    gate.set(|s| s.1 = true);
    writer.join().unwrap().unwrap();
    assert_eq!(store.get(b"synced").unwrap().as_deref(), Some(&b"3"[..]));
    assert_eq!(store.get(b"after").unwrap().as_deref(), Some(&b"4"[..]));
    if large {
        assert_eq!(
            store.get(b"synced0199").unwrap().as_deref(),
            Some(&b"199"[..])
        );
    }
}

#[test]
fn a_sync_write_whose_sync_failed_is_never_seen() {
    for large in [false, true] {
        let disk = SimDisk::new(4);
        let store = Store::open_with(disk.storage(), options()).unwrap();
        store.put("kept", "1").unwrap();
        disk.inject(Fault::once(
            Op::SyncData,
            disk.op_count(Op::SyncData) + 1,
            FaultError::Eio,
        ));
        let mut batch = if large {
            large_batch("lost")
        } else {
            WriteBatch::new()
        };
        batch.put("lost", "2");
        assert!(store.write(&batch, Durability::Sync).is_err());
        for key in ["lost", "lost0000"] {
            assert_eq!(
                store.get(key.as_bytes()).unwrap(),
                None,
                "a failed write is seen"
            );
        }
        assert_eq!(store.get(b"kept").unwrap().as_deref(), Some(&b"1"[..]));
        let snapshot = store.snapshot();
        assert_eq!(snapshot.get(b"lost").unwrap(), None);
    }
}

#[test]
fn an_async_sync_write_is_seen_once_durable_even_if_never_awaited() {
    let disk = SimDisk::new(5);
    let store = Store::open_with(disk.storage(), options()).unwrap();
    let mut batch = WriteBatch::new();
    batch.put("async", "1");
    let commit = store.write_async(&batch).unwrap();
    drop(commit);
    // Nothing else is written: the log's own durability must make it seen.
    let start = std::time::Instant::now();
    while store.get(b"async").unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "a durable batch whose future was dropped was never seen"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Batches applied but not yet seen (their syncs still running) go into a
/// checkpoint with the memtable that holds them: its checkpoint LSN covers
/// every LSN its table holds, so the store reopens with everything.
#[test]
fn checkpoints_amid_waiting_sync_writes_cover_what_they_hold() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = Options::default();
    o.memtable_bytes_max = 16 << 10;
    let store = Arc::new(Store::open(dir.path(), o.clone()).unwrap());
    let writers: Vec<_> = (0..8u64)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for i in 0..150u64 {
                    store
                        .put(format!("t{t}-{i:04}"), format!("value {t} {i} ").repeat(8))
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    assert!(store.stats().checkpoints > 0, "no checkpoint ran");
    Arc::into_inner(store).unwrap().close().unwrap();
    let store = Store::open(dir.path(), o).unwrap();
    for t in 0..8u64 {
        for i in (0..150u64).step_by(7) {
            let got = store.get(format!("t{t}-{i:04}").as_bytes()).unwrap();
            assert_eq!(
                got.as_deref(),
                Some(format!("value {t} {i} ").repeat(8).as_bytes())
            );
        }
    }
}
