//! `on_durable` callbacks (and wakers) run with no lock of the log held, so
//! a callback may call back into the log: commit durably, sync, wait for
//! durability, truncate the front or the back. Fired while the thread that
//! did the I/O still holds the log's I/O lock, any of these deadlocks: the
//! call needs I/O (or that lock) that only the callback's own thread could
//! do or release.
//!
//! Each call is tried under `SyncPolicy::Never` (the callback's
//! registration and a `sync()` on another thread ask for the round) and
//! `Always` (the owner's own round), with buffered and with O_DIRECT writes
//! on the simulated disk (the pipelined writer publishes on a path of its
//! own). The callback sends its call's result over a channel; every wait is
//! bounded (30 s), so a deadlock fails the test instead of hanging CI.

use std::sync::Arc;
use std::sync::mpsc::{self, TryRecvError};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use wal_engine::{Options, SyncPolicy, Wal, WalError};
use wal_io::sim::SimDisk;

const SEED: u64 = 31;
/// Bound on every wait for another thread.
const BOUND: Duration = Duration::from_secs(30);
/// Under `Always` a record may be durable before its callback is
/// registered; the callback then runs at once on the registering thread,
/// under no lock, which proves nothing. A new record is tried until one's
/// callback runs on the thread that did the I/O.
const ATTEMPTS: usize = 1000;

/// What the callback calls.
#[derive(Debug, Clone, Copy)]
enum Call {
    CommitDurable,
    Sync,
    WaitDurable,
    TruncateFront,
    TruncateBack,
}

fn call_into(wal: &Wal, call: Call) -> Result<(), WalError> {
    match call {
        Call::CommitDurable => wal.commit_durable(b"committed from a callback").map(|_| ()),
        // Something new to sync: a sync of what is already durable returns
        // without any I/O, and would not show the deadlock.
        Call::Sync => {
            wal.append(b"synced from a callback")?;
            wal.sync()
        }
        Call::WaitDurable => {
            let lsn = wal.append(b"awaited from a callback")?;
            wal.wait_durable(lsn)
        }
        // One segment: nothing to remove, but the call takes the I/O lock.
        Call::TruncateFront => wal.truncate_front(wal.appended_lsn()).map(|_| ()),
        // Truncating at the last LSN removes nothing; it syncs and takes
        // the I/O lock all the same.
        Call::TruncateBack => wal.truncate_back(wal.appended_lsn()),
    }
}

fn options(policy: SyncPolicy, direct: bool) -> Options {
    let mut o = Options::default();
    // A multiple of 4 KiB, as direct_io needs.
    o.segment_bytes = 64 << 10;
    o.queue_bytes_max = 4 << 10;
    o.record_bytes_max = 1 << 10;
    o.sync = policy;
    o.direct_io = direct;
    o.prepare_segments = false;
    o.identity_seed = Some(SEED);
    o
}

/// The thread a callback ran on, and its call's result.
type Sent = (ThreadId, Result<(), WalError>);

fn a_callback_may_call(call: Call) {
    for policy in [SyncPolicy::Never, SyncPolicy::Always] {
        for direct in [false, true] {
            callback_calls(call, policy, direct);
        }
    }
}

fn callback_calls(call: Call, policy: SyncPolicy, direct: bool) {
    let case = format!("{call:?} from a callback, {policy:?}, direct_io {direct}");
    let (wal, _) = Wal::open_with(SimDisk::new(SEED).storage(), options(policy, direct))
        .unwrap_or_else(|e| panic!("{case}: open: {e}"));
    let wal = Arc::new(wal);
    let me = thread::current().id();
    for _ in 0..ATTEMPTS {
        let lsn = wal.append(b"watched").unwrap();
        let (tx, rx) = mpsc::channel::<Sent>();
        let inside = wal.clone();
        wal.on_durable(lsn, move |durable| {
            let result = durable.and_then(|()| call_into(&inside, call));
            // The callback's handle goes first: the test's must be the last,
            // so the log never closes on the thread doing its I/O.
            drop(inside);
            let _ = tx.send((thread::current().id(), result));
        });
        let early = match rx.try_recv() {
            // Already durable: it ran here, under no lock. Try again.
            Ok((on, _)) if on == me => continue,
            Ok(sent) => Some(sent),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => panic!("{case}: the callback was dropped unrun"),
        };
        // Under Never this sync (with the registration's own request) is
        // what makes the record durable; under Always it joins the round.
        let (sync_tx, sync_rx) = mpsc::channel();
        let syncer = {
            let wal = wal.clone();
            thread::spawn(move || {
                let _ = sync_tx.send(wal.sync());
            })
        };
        let sent = match early {
            Some(sent) => sent,
            None => match rx.recv_timeout(BOUND) {
                Ok(sent) => sent,
                Err(_) => {
                    // Stuck threads hold the log: never drop it here.
                    std::mem::forget(wal);
                    panic!(
                        "{case}: the call inside the callback never returned: \
                         the callback runs while the I/O lock is held"
                    );
                }
            },
        };
        let (_, result) = sent;
        result.unwrap_or_else(|e| panic!("{case}: the call inside the callback failed: {e}"));
        match sync_rx.recv_timeout(BOUND) {
            Ok(synced) => synced.unwrap_or_else(|e| panic!("{case}: sync: {e}")),
            Err(_) => {
                std::mem::forget(wal);
                panic!("{case}: sync() on another thread never returned");
            }
        }
        syncer.join().unwrap();
        close_unshared(wal, &case);
        return;
    }
    panic!("{case}: in {ATTEMPTS} tries every callback ran at once on the registering thread");
}

/// Closes the log once every other handle (the callback's, the syncer's)
/// is gone; close reports no error.
fn close_unshared(mut wal: Arc<Wal>, case: &str) {
    let start = Instant::now();
    loop {
        match Arc::try_unwrap(wal) {
            Ok(wal) => {
                wal.close().unwrap_or_else(|e| panic!("{case}: close: {e}"));
                return;
            }
            Err(shared) => {
                assert!(start.elapsed() < BOUND, "{case}: the log stayed shared");
                wal = shared;
                thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

#[test]
fn a_callback_may_commit_durably() {
    a_callback_may_call(Call::CommitDurable);
}

#[test]
fn a_callback_may_sync() {
    a_callback_may_call(Call::Sync);
}

#[test]
fn a_callback_may_wait_for_durability() {
    a_callback_may_call(Call::WaitDurable);
}

#[test]
fn a_callback_may_truncate_the_front() {
    a_callback_may_call(Call::TruncateFront);
}

#[test]
fn a_callback_may_truncate_the_back_at_its_end() {
    a_callback_may_call(Call::TruncateBack);
}
