//! A checkpoint returns once the background worker has written its table,
//! not before, and at once when there is nothing to write; a worker that
//! panics fails the store instead of leaving its waiters waiting, and
//! loses nothing acknowledged.

#[path = "../../wal-engine/tests/common/hooked.rs"]
mod hooked;

use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use hooked::{Hooks, hooked};
use wal_io::Storage;
use wal_kv::{KvError, Options, Store};

/// Longer than any checkpoint of these tests takes: a wait past it is a
/// hang.
const HANG_SECS: u64 = 60;

/// What a table's creation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tables {
    Pass,
    /// Waits until set to `Pass`.
    Wait,
    Panic,
}

/// A switch on the creation of table files (`*.sst`), which only the
/// background worker creates.
#[derive(Debug)]
struct Switch {
    tables: Mutex<Tables>,
    changed: Condvar,
}

impl Switch {
    fn set(&self, to: Tables) {
        *self.tables.lock().unwrap() = to;
        self.changed.notify_all();
    }

    /// What a table's creation meets: it passes, waits, or panics.
    fn meet(&self) {
        let mut tables = self.tables.lock().unwrap();
        while *tables == Tables::Wait {
            tables = self.changed.wait(tables).unwrap();
        }
        if *tables == Tables::Panic {
            drop(tables);
            panic!("a bug in the worker, injected");
        }
    }
}

/// The simulated disk with the switch on its table creations.
fn switched(seed: u64) -> (Arc<dyn Storage>, Arc<Switch>) {
    let switch = Arc::new(Switch {
        tables: Mutex::new(Tables::Pass),
        changed: Condvar::new(),
    });
    let on_create = Arc::clone(&switch);
    let hooks = Hooks {
        create: Some(Box::new(move |name| {
            if name.ends_with(".sst") {
                on_create.meet();
            }
            None
        })),
        ..Hooks::default()
    };
    (
        hooked(wal_io::sim::SimDisk::new(seed).storage(), hooks),
        switch,
    )
}

/// Lets table creations pass again when dropped: declared after the store,
/// it drops first, so a failing test does not leave the store's drop
/// joining a worker that waits forever.
struct PassOnDrop(Arc<Switch>);

impl Drop for PassOnDrop {
    fn drop(&mut self) {
        self.0.set(Tables::Pass);
    }
}

fn open(storage: &Arc<dyn Storage>) -> Store {
    Store::open_with(Arc::clone(storage), Options::default()).unwrap()
}

/// Runs `f` on a thread of its own; its result, or `None` if it has not
/// returned within `secs`.
fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs)).ok()
}

#[test]
fn a_checkpoint_with_nothing_to_write_returns_at_once_and_writes_nothing() {
    let (storage, switch) = switched(41);
    let store = Arc::new(open(&storage));
    let _pass = PassOnDrop(Arc::clone(&switch));
    // Any table written would wait forever, and this checkpoint with it.
    switch.set(Tables::Wait);
    let s = Arc::clone(&store);
    let done = within(HANG_SECS, move || s.checkpoint());
    assert!(matches!(done, Some(Ok(()))), "{done:?}");
    assert_eq!((store.stats().tables, store.stats().checkpoints), (0, 0));
    switch.set(Tables::Pass);
    store.put("k", "v").unwrap();
    store.checkpoint().unwrap();
    let (tables, checkpoints) = (store.stats().tables, store.stats().checkpoints);
    assert_eq!(tables, 1);
    // Nothing new since: no second table.
    switch.set(Tables::Wait);
    let s = Arc::clone(&store);
    let done = within(HANG_SECS, move || s.checkpoint());
    assert!(matches!(done, Some(Ok(()))), "{done:?}");
    assert_eq!(store.stats().tables, tables);
    assert_eq!(store.stats().checkpoints, checkpoints);
    switch.set(Tables::Pass);
}

#[test]
fn a_checkpoint_returns_only_once_its_table_is_written() {
    let (storage, switch) = switched(42);
    let store = Arc::new(open(&storage));
    let _pass = PassOnDrop(Arc::clone(&switch));
    for i in 0..100u32 {
        store.put(format!("key{i:03}"), "v").unwrap();
    }
    switch.set(Tables::Wait);
    let (tx, rx) = mpsc::channel();
    let s = Arc::clone(&store);
    std::thread::spawn(move || {
        let _ = tx.send(s.checkpoint());
    });
    // The worker is held at the table's creation: the checkpoint waits.
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "the checkpoint returned before its table was written"
    );
    switch.set(Tables::Pass);
    let done = rx.recv_timeout(Duration::from_secs(HANG_SECS));
    assert!(matches!(done, Ok(Ok(()))), "{done:?}");
    let stats = store.stats();
    assert_eq!((stats.tables, stats.memtable_bytes), (1, 0));
    assert!(stats.checkpoint_lsn >= 100, "{}", stats.checkpoint_lsn);
}

#[test]
fn a_panicking_worker_fails_the_store_and_loses_nothing_acknowledged() {
    let (storage, switch) = switched(43);
    let store = Arc::new(open(&storage));
    let _pass = PassOnDrop(Arc::clone(&switch));
    for i in 0..100u32 {
        store
            .put(format!("key{i:03}"), format!("value{i}"))
            .unwrap();
    }
    switch.set(Tables::Panic);
    let s = Arc::clone(&store);
    let done = within(HANG_SECS, move || s.checkpoint());
    match done {
        Some(Err(KvError::Failed(why))) => assert!(why.contains("panicked"), "{why}"),
        other => panic!("a checkpoint whose worker panicked ended in {other:?}"),
    }
    // The store is stopped: writes and checkpoints fail, and say why.
    assert!(matches!(store.put("after", "x"), Err(KvError::Failed(_))));
    assert!(matches!(store.checkpoint(), Err(KvError::Failed(_))));
    // Closing it neither hangs nor panics, and a reopen finds every put
    // that was acknowledged.
    let store = Arc::into_inner(store).expect("the only holder");
    let closed = within(HANG_SECS, move || store.close());
    assert!(
        matches!(closed, Some(Err(KvError::Failed(_)))),
        "{closed:?}"
    );
    switch.set(Tables::Pass);
    let store = open(&storage);
    for i in 0..100u32 {
        let got = store.get(format!("key{i:03}").as_bytes()).unwrap();
        assert_eq!(got.as_deref(), Some(format!("value{i}").as_bytes()));
    }
    assert_eq!(store.get(b"after").unwrap(), None);
}
