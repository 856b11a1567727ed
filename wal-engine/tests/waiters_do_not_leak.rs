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

mod common;
use common::hooked::{Hooks, hooked};

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
    // Every file's data sync passes the gate first.
    let held = gate.clone();
    let hooks = Hooks {
        sync_data: Some(Box::new(move |_| {
            held.pass();
            None
        })),
        ..Hooks::default()
    };
    let storage = hooked(SimDisk::new(SEED).storage(), hooks);
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
