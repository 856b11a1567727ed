//! C6 fail-stop reaches every waiter, including an appender that waits for
//! queue space (backpressure): when a truncation's directory sync fails and
//! poisons the log, that appender's blocked `append` returns
//! `WalError::Poisoned` at once, instead of sleeping on a wake-up that the
//! owner thread, which stops on the poison without publishing, never sends.
//!
//! How the appender gets stuck: `truncate_front` holds the log's I/O lock
//! while it syncs the directory, so the owner cannot take frames and the
//! queue fills. A `Storage` wrapper holds that one directory sync until the
//! appender has stopped making progress, then fails it with `EIO`. Every
//! wait is bounded: a hang fails the test instead of hanging CI.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use wal_engine::{Options, Wal, WalError};
use wal_io::sim::SimDisk;
use wal_io::{IoError, Op};

mod common;
use common::hooked::{Hooks, hooked};

const SEED: u64 = 41;
/// Bound on every wait for another thread.
const BOUND: Duration = Duration::from_secs(30);
/// How long the appender's count must stand still to count as blocked.
const STILL: Duration = Duration::from_millis(200);
/// The held directory sync fails after this long even if the appender
/// never blocked, so the test ends either way.
const HOLD_MAX: Duration = Duration::from_secs(10);
/// The appender gives up after this many appends (it blocks long before).
const APPENDS_MAX: u64 = 1_000_000;

/// The hook that holds the next directory sync of one chosen thread until
/// the appender stalls, then fails it with `EIO`; every other call passes
/// through to the simulated disk.
#[derive(Debug)]
struct FailingDirSync {
    /// The thread whose next directory sync is held and failed.
    armed_for: Mutex<Option<ThreadId>>,
    /// Set once the held sync has begun.
    entered: AtomicBool,
    /// Appends the appender has made so far.
    appends: Arc<AtomicU64>,
}

impl FailingDirSync {
    /// Returns once the appender has appended at least once and then not
    /// moved for `STILL` (it waits for queue space), or after `HOLD_MAX`.
    fn hold_until_the_appender_blocks(&self) {
        self.entered.store(true, Ordering::SeqCst);
        common::wait_for_stall(&self.appends, STILL, HOLD_MAX);
    }
}

impl FailingDirSync {
    /// The directory sync hook: `None` passes the call through.
    fn sync_dir(&self) -> Option<IoError> {
        let armed = {
            let mut armed_for = self.armed_for.lock().unwrap();
            let mine = *armed_for == Some(thread::current().id());
            if mine {
                *armed_for = None;
            }
            mine
        };
        if !armed {
            return None;
        }
        self.hold_until_the_appender_blocks();
        Some(IoError::Os {
            op: Op::SyncDir,
            path: PathBuf::from("sim:/"),
            source: std::io::Error::from_raw_os_error(rustix::io::Errno::IO.raw_os_error()),
        })
    }
}

/// Small segments and a small queue (4 KiB), so a few hundred records span
/// several segments and a hundred fill the queue. No preparer thread and
/// no recycling: the truncation only removes files, then syncs the
/// directory, and that sync is the only one on its thread.
fn options() -> Options {
    let mut o = Options::default();
    o.segment_bytes = 16 << 10;
    o.queue_bytes_max = 4 << 10;
    o.record_bytes_max = 1 << 10;
    o.prepare_segments = false;
    o.recycle_segments = false;
    o.identity_seed = Some(SEED);
    o
}

fn record(i: u64) -> Vec<u8> {
    format!("record {i:>8}").into_bytes()
}

/// Polls `done` until it holds, failing after `BOUND`.
fn wait_until(done: impl Fn() -> bool, what: &str) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < BOUND, "timed out waiting until {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_failed_truncation_wakes_appenders_waiting_for_queue_space() {
    let appends = Arc::new(AtomicU64::new(0));
    let storage = Arc::new(FailingDirSync {
        armed_for: Mutex::new(None),
        entered: AtomicBool::new(false),
        appends: appends.clone(),
    });
    let hook = storage.clone();
    let hooks = Hooks {
        sync_dir: Some(Box::new(move || hook.sync_dir())),
        ..Hooks::default()
    };
    let dyn_storage = hooked(SimDisk::new(SEED).storage(), hooks);
    let (wal, _) = Wal::open_with(dyn_storage, options()).unwrap();
    let wal = Arc::new(wal);

    // Three segments or more, everything durable: the truncation below has
    // whole segments to remove, so it syncs the directory.
    let mut i = 0;
    while wal.stats().rotations < 2 {
        i += 1;
        assert!(i < 100_000, "the log never rotated twice");
        wal.append(&record(i)).unwrap();
    }
    wal.sync().unwrap();
    let upto = wal.appended_lsn();

    // Thread A truncates; its directory sync is held, with the I/O lock.
    let (a_tx, a_rx) = mpsc::channel();
    let a = {
        let wal = wal.clone();
        let storage = storage.clone();
        thread::spawn(move || {
            *storage.armed_for.lock().unwrap() = Some(thread::current().id());
            let _ = a_tx.send(wal.truncate_front(upto));
        })
    };
    wait_until(
        || storage.entered.load(Ordering::SeqCst),
        "the truncation reached its directory sync",
    );

    // Thread B appends until an append fails: the owner cannot take frames
    // while A holds the I/O lock, so B soon waits for queue space.
    let (b_tx, b_rx) = mpsc::channel();
    let b = {
        let wal = wal.clone();
        let appends = appends.clone();
        thread::spawn(move || {
            for i in 0..APPENDS_MAX {
                match wal.append(&record(i)) {
                    Ok(_) => {
                        appends.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => {
                        let _ = b_tx.send(Some(e));
                        return;
                    }
                }
            }
            let _ = b_tx.send(None);
        })
    };

    let truncated = a_rx
        .recv_timeout(BOUND)
        .expect("truncate_front never returned");
    assert!(
        matches!(truncated, Err(WalError::Io(_))),
        "the failed directory sync is the truncation's error: {truncated:?}"
    );
    a.join().unwrap();

    // The poison must reach B's wait for space: it fails now, not never.
    let blocked = b_rx.recv_timeout(BOUND).unwrap_or_else(|_| {
        panic!(
            "an appender waiting for queue space was never woken by the poison \
             (it made {} appends, then hung)",
            appends.load(Ordering::SeqCst)
        )
    });
    match &blocked {
        Some(WalError::Poisoned(_)) => {}
        other => panic!("the blocked append should fail with Poisoned, got {other:?}"),
    }
    b.join().unwrap();

    // Fail-stop: every later call fails at once.
    assert!(matches!(wal.append(b"late"), Err(WalError::Poisoned(_))));
    assert!(matches!(wal.commit(b"late"), Err(WalError::Poisoned(_))));
    assert!(matches!(
        wal.truncate_front(upto),
        Err(WalError::Poisoned(_))
    ));
    assert!(wal.sync().is_err(), "a sync after the poison succeeded");
    let wal = Arc::try_unwrap(wal).expect("every other thread has ended");
    assert!(
        matches!(wal.close(), Err(WalError::Poisoned(_))),
        "close reports the poison"
    );
}
