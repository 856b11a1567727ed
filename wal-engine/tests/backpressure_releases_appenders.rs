//! Backpressure ends: an appender waiting for queue space is woken when the
//! owner takes the queued frame, not only by a failure or a close. The
//! space condition variable is notified only while someone waits on it
//! (a notification is a system call either way), so an appender that did
//! not count itself as waiting would sleep for ever here.
//!
//! How the appender gets stuck: the owner's first data sync is held until
//! the appender has stopped making progress, so the owner cannot take the
//! next frame and the small queue fills. Every wait is bounded.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use wal_engine::{Options, Wal};
use wal_io::sim::SimDisk;

mod common;
use common::hooked::{Hooks, hooked};

const SEED: u64 = 43;
/// Bound on every wait for another thread.
const BOUND: Duration = Duration::from_secs(30);
/// How long the appender's count must stand still to count as blocked.
const STILL: Duration = Duration::from_millis(200);
/// The held sync passes after this long even if the appender never blocked.
const HOLD_MAX: Duration = Duration::from_secs(10);
/// Records appended: many times what the 4 KiB queue holds.
const APPENDS: u64 = 2_000;

/// Holds the first data sync after an append until the appender stalls, then lets it pass.
struct HoldFirstSync {
    used: AtomicBool,
    appends: Arc<AtomicU64>,
    /// Whether the appender was seen stalled (else the test proves nothing).
    stalled: AtomicBool,
}

impl HoldFirstSync {
    fn sync_data(&self) {
        // The syncs of opening the log come before any append: not those.
        if self.appends.load(Ordering::SeqCst) == 0 || self.used.swap(true, Ordering::SeqCst) {
            return;
        }
        if common::wait_for_stall(&self.appends, STILL, HOLD_MAX) {
            self.stalled.store(true, Ordering::SeqCst);
        }
    }
}

fn record(i: u64) -> Vec<u8> {
    format!("record {i:>8}").into_bytes()
}

#[test]
fn an_appender_waiting_for_queue_space_goes_on_once_the_owner_takes_the_frame() {
    let appends = Arc::new(AtomicU64::new(0));
    let hold = Arc::new(HoldFirstSync {
        used: AtomicBool::new(false),
        appends: appends.clone(),
        stalled: AtomicBool::new(false),
    });
    let hook = hold.clone();
    let hooks = Hooks {
        sync_data: Some(Box::new(move |_name| {
            hook.sync_data();
            None
        })),
        ..Hooks::default()
    };
    let mut o = Options::default();
    o.queue_bytes_max = 4 << 10;
    o.record_bytes_max = 1 << 10;
    o.prepare_segments = false;
    o.identity_seed = Some(SEED);
    let (wal, _) = Wal::open_with(hooked(SimDisk::new(SEED).storage(), hooks), o).unwrap();
    let wal = Arc::new(wal);

    let (tx, rx) = mpsc::channel();
    let appender = {
        let wal = wal.clone();
        thread::spawn(move || {
            for i in 0..APPENDS {
                if let Err(e) = wal.append(&record(i)) {
                    let _ = tx.send(Err(e));
                    return;
                }
                appends.fetch_add(1, Ordering::SeqCst);
            }
            let _ = tx.send(Ok(()));
        })
    };
    let done = rx.recv_timeout(BOUND).unwrap_or_else(|_| {
        panic!(
            "an appender waiting for queue space was never woken (stalled: {})",
            hold.stalled.load(Ordering::SeqCst)
        )
    });
    done.unwrap();
    appender.join().unwrap();
    assert!(
        hold.stalled.load(Ordering::SeqCst),
        "the appender never waited for space: the test proved nothing"
    );

    wal.sync().unwrap();
    let read: Vec<Vec<u8>> = wal
        .reader(1)
        .unwrap()
        .map(|r| r.unwrap().data.to_vec())
        .collect();
    assert_eq!(read.len() as u64, APPENDS);
    assert!(read.iter().enumerate().all(|(i, r)| *r == record(i as u64)));
}

/// Under `SyncPolicy::Never` the owner writes only once half the queue is
/// pending. A batch larger than half the queue, arriving behind a smaller
/// frame, fits only once that frame is written: the appender's wait for
/// space makes the owner write it, else it would wait for ever.
#[test]
fn a_batch_larger_than_half_the_queue_is_taken_under_never() {
    let mut o = Options::default();
    o.sync = wal_engine::SyncPolicy::Never;
    o.queue_bytes_max = 8 << 10;
    o.record_bytes_max = 4 << 10;
    o.prepare_segments = false;
    o.identity_seed = Some(SEED);
    let (wal, _) = Wal::open_with(SimDisk::new(SEED).storage(), o).unwrap();
    let wal = Arc::new(wal);
    wal.append(&[1u8; 1024]).unwrap();
    let (tx, rx) = mpsc::channel();
    let appender = {
        let wal = wal.clone();
        thread::spawn(move || {
            let big = vec![2u8; 3584];
            let _ = tx.send(wal.append_batch(&[&big, &big]));
        })
    };
    let lsns = rx
        .recv_timeout(BOUND)
        .expect("a batch waiting for queue space was never taken")
        .unwrap();
    appender.join().unwrap();
    assert_eq!(lsns, 2..4);
    wal.sync().unwrap();
    assert_eq!(wal.reader(1).unwrap().count(), 3);
}
