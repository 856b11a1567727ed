//! Extreme durations never panic or hang: `Instant + Duration` overflows
//! (and panics) for `Duration::MAX`, so a sync policy's delay or interval,
//! and a tail's wait timeout, must be bounded or saturated before use.
//!
//! For the policies, either outcome is right: `Options::validate` (and so
//! `Wal::open`) refuses the duration with `WalError::InvalidOptions` naming
//! field "sync", or the log works (appends, a sync, a clean close). A panic
//! in the owner thread surfaces at close; every case runs on its own thread
//! under `catch_unwind` with a bounded wait, so a panic or a hang fails the
//! test instead of aborting or stalling the run.

use std::any::Any;
use std::mem::ManuallyDrop;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use wal_engine::{Options, Reader, Record, SyncPolicy, Wal, WalError};
use wal_io::sim::SimDisk;

const SEED: u64 = 61;
/// Bound on every wait for another thread.
const BOUND: Duration = Duration::from_secs(30);
/// Time for a waiting thread to reach its wait before the main thread acts;
/// only makes the case under test likelier, never asserted on.
const SETTLE: Duration = Duration::from_millis(50);
const YEAR_SECS: u64 = 365 * 24 * 3600;

fn options() -> Options {
    let mut o = Options::default();
    o.segment_bytes = 64 << 10;
    o.queue_bytes_max = 8 << 10;
    o.record_bytes_max = 1 << 10;
    o.prepare_segments = false;
    o.identity_seed = Some(SEED);
    o
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(not a string)".to_owned())
}

#[derive(Debug)]
enum Outcome {
    Refused(String),
    Worked,
}

/// Opens a log with `policy`, appends ten records (the last as a commit),
/// syncs and closes.
fn exercise(policy: SyncPolicy) -> Result<Outcome, String> {
    let mut o = options();
    o.sync = policy;
    let checked = o.validate();
    let opened = Wal::open_with(SimDisk::new(SEED).storage(), o);
    let wal = match (checked, opened) {
        (
            Err(WalError::InvalidOptions {
                field: "sync",
                reason,
            }),
            Err(WalError::InvalidOptions { field: "sync", .. }),
        ) => return Ok(Outcome::Refused(reason)),
        (Ok(()), Ok((wal, _))) => wal,
        (checked, opened) => {
            return Err(format!(
                "validate and open disagree, or refuse another field: validate {checked:?}, open {:?}",
                opened.map(|_| ())
            ));
        }
    };
    // Never dropped while unwinding: dropping a log whose owner panicked
    // raises that panic again, and a panic while unwinding aborts the run.
    let wal = ManuallyDrop::new(wal);
    for i in 1..=10u64 {
        let record = format!("record {i}");
        let lsn = if i == 10 {
            wal.commit(record.as_bytes())
        } else {
            wal.append(record.as_bytes())
        }
        .map_err(|e| format!("append {i}: {e}"))?;
        if lsn != i {
            return Err(format!("append {i} got LSN {lsn}"));
        }
    }
    wal.sync().map_err(|e| format!("sync: {e}"))?;
    if wal.durable_lsn() != 10 {
        return Err(format!("durable LSN {} after sync", wal.durable_lsn()));
    }
    ManuallyDrop::into_inner(wal)
        .close()
        .map_err(|e| format!("close: {e}"))?;
    Ok(Outcome::Worked)
}

fn refused_or_working(policy: SyncPolicy) {
    let (tx, rx) = mpsc::channel();
    let handle = thread::spawn(move || {
        let outcome = catch_unwind(AssertUnwindSafe(|| exercise(policy)));
        let _ = tx.send(outcome.map_err(|p| panic_message(&*p)));
    });
    match rx.recv_timeout(BOUND) {
        Ok(Ok(Ok(Outcome::Refused(reason)))) => {
            assert!(!reason.is_empty(), "{policy:?}: refused without a reason");
        }
        Ok(Ok(Ok(Outcome::Worked))) => {}
        Ok(Ok(Err(failure))) => panic!("{policy:?}: {failure}"),
        Ok(Err(panic)) => panic!("{policy:?}: panicked: {panic}"),
        Err(_) => panic!("{policy:?}: open, append, sync or close hung"),
    }
    handle.join().unwrap();
}

#[test]
fn an_interval_of_duration_max_is_refused_or_works() {
    refused_or_working(SyncPolicy::Interval(Duration::MAX));
}

#[test]
fn huge_intervals_are_refused_or_work() {
    for secs in [u64::MAX, u64::MAX >> 1, 100 * YEAR_SECS] {
        refused_or_working(SyncPolicy::Interval(Duration::from_secs(secs)));
    }
}

#[test]
fn a_group_delay_of_duration_max_is_refused_or_works() {
    refused_or_working(SyncPolicy::Group {
        max_delay: Duration::MAX,
        max_batch_bytes: 64 << 10,
    });
}

#[test]
fn huge_group_delays_are_refused_or_work() {
    for secs in [u64::MAX, u64::MAX >> 1, 100 * YEAR_SECS] {
        refused_or_working(SyncPolicy::Group {
            max_delay: Duration::from_secs(secs),
            max_batch_bytes: 64 << 10,
        });
    }
}

type Waited = Result<Option<Record>, WalError>;

/// `reader.next_wait(Some(Duration::MAX))` on a thread of its own.
fn wait_forever_on_thread(mut reader: Reader) -> (mpsc::Receiver<Waited>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel();
    let handle = thread::spawn(move || {
        let _ = tx.send(reader.next_wait(Some(Duration::MAX)));
    });
    (rx, handle)
}

/// The wait's result; a panic or a hang of the waiting thread fails.
fn waited(rx: &mpsc::Receiver<Waited>, handle: JoinHandle<()>, what: &str) -> Waited {
    match rx.recv_timeout(BOUND) {
        Ok(result) => {
            handle.join().unwrap();
            result
        }
        Err(RecvTimeoutError::Disconnected) => {
            let message = handle
                .join()
                .err()
                .map(|p| panic_message(&*p))
                .unwrap_or_default();
            panic!("{what}: the waiting reader panicked: {message}")
        }
        Err(RecvTimeoutError::Timeout) => panic!("{what}: the wait never returned"),
    }
}

#[test]
fn a_tail_waiting_for_duration_max_gets_the_next_commit() {
    let (wal, _) = Wal::open_with(SimDisk::new(SEED).storage(), options()).unwrap();
    let (rx, handle) = wait_forever_on_thread(wal.reader(1).unwrap());
    thread::sleep(SETTLE);
    assert_eq!(wal.commit(b"worth the wait").unwrap(), 1);
    let got = waited(&rx, handle, "a commit while waiting").unwrap();
    let record = got.expect("a wait without a deadline does not time out");
    assert_eq!((record.lsn, &record.data[..]), (1, &b"worth the wait"[..]));
}

#[test]
fn a_tail_waiting_for_duration_max_is_ended_by_close() {
    let (wal, _) = Wal::open_with(SimDisk::new(SEED).storage(), options()).unwrap();
    let (rx, handle) = wait_forever_on_thread(wal.reader(1).unwrap());
    thread::sleep(SETTLE);
    wal.close().unwrap();
    let got = waited(&rx, handle, "close while waiting");
    assert!(matches!(got, Err(WalError::Closed)), "{got:?}");
}
