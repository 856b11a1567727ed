//! T6 and C6: every write and sync site fails once with EIO on the simulated
//! disk. The log poisons itself within that call, makes no further sync,
//! refuses every later call, and a reopen holds everything acknowledged
//! before the error. A full disk at rotation is a clean error too.
// Test sizes and counts are small: casts between integer widths cannot truncate.
#![allow(clippy::cast_possible_truncation)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use wal_engine::{Options, Wal, WalError};
use wal_io::Op;
use wal_io::sim::{CrashMode, Fault, FaultError, SimDisk};

mod common;
use common::hooked::{Hooks, hooked};

const SEED: u64 = 77;

fn options() -> Options {
    options_with(false)
}

/// With `direct`, through the pipelined O_DIRECT writer into padded
/// segments: its queued writes and syncs are sites of their own.
fn options_with(direct: bool) -> Options {
    let mut o = Options::default();
    o.segment_bytes = if direct { 16 << 10 } else { 8 << 10 };
    o.direct_io = direct;
    o.queue_bytes_max = 2 << 10;
    o.record_bytes_max = 512;
    o.identity_seed = Some(SEED);
    // Deterministic operation counts: no background preparation.
    o.prepare_segments = false;
    o
}

fn record(i: u64) -> Vec<u8> {
    format!("{i:>6}|").repeat(1 + (i % 9) as usize).into_bytes()
}

/// A fixed workload touching every write and sync site: single commits,
/// batches with an explicit sync, rotations, and both truncations. Records
/// the highest acknowledged LSN as it goes; stops at the first error.
fn workload(wal: &Wal, acked: &mut u64) -> Result<(), WalError> {
    for i in 1..=60u64 {
        *acked = wal.commit(&record(i))?;
    }
    for chunk in 0..10u64 {
        let recs: Vec<Vec<u8>> = (0..6).map(|j| record(100 + chunk * 6 + j)).collect();
        let refs: Vec<&[u8]> = recs.iter().map(Vec::as_slice).collect();
        let lsns = wal.append_batch(&refs)?;
        wal.sync()?;
        *acked = lsns.end - 1;
    }
    // Everything before the active segment goes; one file becomes the spare.
    wal.truncate_front(*acked)?;
    let keep = *acked - 5;
    wal.truncate_back(keep)?;
    *acked = keep;
    // On into the recycled file: its stamp is a write and sync site too.
    for tries in 0.. {
        if wal.stats().rotations_recycled > 0 {
            break;
        }
        assert!(tries < 10_000, "the log never rotated into a recycled file");
        *acked = wal.commit(&record(*acked + 1))?;
    }
    for i in 0..5u64 {
        *acked = wal.commit(&record(500 + i))?;
    }
    Ok(())
}

fn reference_counts(options: &Options) -> Vec<(Op, u64)> {
    let disk = SimDisk::new(SEED);
    let (wal, _) = Wal::open_with(disk.storage(), options.clone()).unwrap();
    let mut acked = 0;
    workload(&wal, &mut acked).unwrap();
    assert_eq!(
        wal.stats().writes_in_flight_peak > 0,
        options.direct_io,
        "the workload runs through the writer the options name"
    );
    drop(wal);
    [
        Op::Create,
        Op::Write,
        Op::SyncData,
        Op::SyncDir,
        Op::Allocate,
        Op::Remove,
        Op::Rename,
        Op::SetLen,
    ]
    .into_iter()
    .map(|op| (op, disk.op_count(op)))
    .collect()
}

/// Everything acknowledged is there after a power loss and a reopen.
fn check_reopen(disk: &SimDisk, options: &Options, acked: u64, what: &str) {
    disk.clear_faults();
    disk.crash(CrashMode::LoseAll);
    let (wal, report) = Wal::open_with(disk.storage(), options.clone())
        .unwrap_or_else(|e| panic!("{what}: reopen: {e}"));
    assert!(
        report.next_lsn > acked,
        "{what}: acknowledged up to {acked}, recovered up to {}",
        report.next_lsn - 1
    );
    for r in wal.reader(wal.first_lsn()).unwrap() {
        let r = r.unwrap();
        assert!(!r.data.is_empty(), "{what}: LSN {}", r.lsn);
    }
}

#[test]
fn every_write_and_sync_site_fails_stop() {
    every_site_fails_stop(&options());
}

#[test]
fn every_write_and_sync_site_of_the_direct_io_writer_fails_stop() {
    every_site_fails_stop(&options_with(true));
}

fn every_site_fails_stop(options: &Options) {
    let counts = reference_counts(options);
    let mut faults = 0;
    for (op, count) in counts {
        for nth in 1..=count {
            let what = format!("direct_io {}, {op} #{nth}", options.direct_io);
            let disk = SimDisk::new(SEED);
            disk.inject(Fault::once(op, nth, FaultError::Eio));
            let wal = match Wal::open_with(disk.storage(), options.clone()) {
                Ok((wal, _)) => wal,
                // The fault hit recovery or the first segment's creation: an
                // error, and nothing was acknowledged yet.
                Err(WalError::Io(_)) => {
                    check_reopen(&disk, options, 0, &what);
                    continue;
                }
                Err(e) => panic!("{what}: open failed oddly: {e}"),
            };
            let mut acked = 0;
            let Err(error) = workload(&wal, &mut acked) else {
                // This site is not reached by the workload with this fault (the
                // counts include recovery's own operations).
                continue;
            };
            faults += 1;
            assert!(
                matches!(error, WalError::Io(_) | WalError::Poisoned(_)),
                "{what}: {error}"
            );
            let syncs = disk.op_count(Op::SyncData);
            // Fail-stop: every later call fails at once, and none syncs.
            assert!(
                matches!(wal.append(b"late"), Err(WalError::Poisoned(_))),
                "{what}"
            );
            assert!(
                matches!(wal.commit(b"late"), Err(WalError::Poisoned(_))),
                "{what}"
            );
            // Later calls say the log is poisoned; only the call whose own
            // write or sync failed gets the I/O error itself.
            assert!(matches!(wal.sync(), Err(WalError::Poisoned(_))), "{what}");
            assert!(wal.truncate_back(1).is_err(), "{what}");
            assert!(wal.close().is_err(), "{what}: close reports the poison");
            assert_eq!(
                disk.op_count(Op::SyncData),
                syncs,
                "{what}: a sync followed the failure"
            );
            check_reopen(&disk, options, acked, &what);
        }
    }
    assert!(faults > 100, "the workload met {faults} faults");
}

#[test]
fn a_full_disk_at_rotation_is_a_clean_error() {
    full_disk_at_rotation(&options());
}

#[test]
fn a_full_disk_at_rotation_of_the_direct_io_writer_is_a_clean_error() {
    // Each commit takes a block of its own: a larger segment holds more
    // than ten before the rotation that meets the full disk.
    let mut options = options_with(true);
    options.segment_bytes = 64 << 10;
    full_disk_at_rotation(&options);
}

fn full_disk_at_rotation(options: &Options) {
    let disk = SimDisk::new(SEED);
    let (wal, _) = Wal::open_with(disk.storage(), options.clone()).unwrap();
    // From the next preallocation on, the disk is full.
    disk.inject(Fault::from_then_on(
        Op::Allocate,
        disk.op_count(Op::Allocate) + 1,
        FaultError::Enospc,
    ));
    let mut acked = 0;
    let error = (1..=1000u64)
        .find_map(|i| match wal.commit(&record(i)) {
            Ok(lsn) => {
                acked = lsn;
                None
            }
            Err(e) => Some(e),
        })
        .expect("rotation never happened");
    match &error {
        WalError::Io(io) => assert_eq!(
            io.raw_os_error(),
            Some(rustix::io::Errno::NOSPC.raw_os_error()),
            "{error}"
        ),
        other => panic!("expected the ENOSPC, got {other}"),
    }
    assert!(
        acked > 10,
        "records before the full disk were committed ({acked})"
    );
    assert!(error.to_string().contains("No space left"), "{error}");
    drop(wal);
    check_reopen(&disk, options, acked, "ENOSPC at rotation");
}

/// Preparing the next segment ahead is an optimisation: a spare that could
/// not be created costs speed, never the log. Rotation then creates the
/// segment itself.
#[test]
fn a_failed_preparation_does_not_poison_the_log() {
    let disk = SimDisk::new(SEED);
    // Opening an empty log creates the first segment (create #1); the
    // preparer's spare is create #2, asked for once a quarter of the segment
    // is written.
    disk.inject(Fault::once(Op::Create, 2, FaultError::Eio));
    let mut o = options();
    o.prepare_segments = true;
    let (wal, _) = Wal::open_with(disk.storage(), o.clone()).unwrap();
    let mut acked = wal.commit(&record(1)).unwrap();
    // A log that is only opened, or stays small, writes no spare.
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(disk.op_count(Op::Create), 1, "a spare was prepared at open");
    let mut written = 0;
    while written < o.segment_bytes / 4 {
        acked = wal.commit(&record(acked + 1)).unwrap();
        written += record(acked).len() as u64 + 4;
    }
    // Wait for the preparer's (failing) attempt, before any rotation.
    let start = std::time::Instant::now();
    while disk.op_count(Op::Create) < 2 {
        assert!(start.elapsed().as_secs() < 10, "the preparer never tried");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(wal.stats().rotations, 0);
    while wal.stats().rotations < 3 {
        acked = wal.commit(&record(acked + 1)).unwrap();
    }
    let stats = wal.stats();
    assert!(stats.rotations_prepared < stats.rotations, "{stats:?}");
    drop(wal);
    disk.crash(CrashMode::LoseAll);
    let (_, report) = Wal::open_with(disk.storage(), o).unwrap();
    assert_eq!(report.next_lsn, acked + 1);
}

/// What the preparer-failure tests share: the simulated disk, with the
/// preparer's directory syncs failing, each once a segment's data sync is
/// under way (segment syncs are held, once the preparer has begun its spare,
/// until then): so the failure lands while a round is in its sync.
#[derive(Debug, Default)]
struct Flags {
    /// The preparer has created the spare: segment syncs now wait.
    armed: AtomicBool,
    state: Mutex<(bool, bool)>, // (a segment sync waits, the preparer failed)
    changed: Condvar,
}

impl Flags {
    fn wait(&self, ready: impl Fn(&(bool, bool)) -> bool) {
        let guard = self.state.lock().unwrap();
        drop(
            self.changed
                .wait_timeout_while(guard, Duration::from_secs(10), |s| !ready(s))
                .unwrap(),
        );
    }

    fn set(&self, f: impl FnOnce(&mut (bool, bool))) {
        f(&mut self.state.lock().unwrap());
        self.changed.notify_all();
    }
}

/// `disk`'s storage with the preparer's directory syncs failing (`Flags`).
fn preparer_fails(disk: &SimDisk, flags: &Arc<Flags>) -> Arc<dyn wal_io::Storage> {
    let (on_create, on_sync, on_dir) = (flags.clone(), flags.clone(), flags.clone());
    let hooks = Hooks {
        create: Some(Box::new(move |name| {
            if name == wal_engine::SPARE_NAME {
                on_create.armed.store(true, Ordering::SeqCst);
            }
            None
        })),
        sync_data: Some(Box::new(move |name| {
            if name.ends_with(".wal") && on_sync.armed.load(Ordering::SeqCst) {
                on_sync.set(|s| s.0 = true);
                on_sync.wait(|s| s.1);
            }
            None
        })),
        sync_dir: Some(Box::new(move || {
            if std::thread::current().name() != Some("wal-preparer") {
                return None;
            }
            // Fail only once a segment's sync is under way.
            on_dir.wait(|s| s.0);
            on_dir.set(|s| s.1 = true);
            // The segment's sync now returns while the failure is still on
            // its way back to the preparer: the window in which a passed
            // sync could be published before the log is poisoned.
            std::thread::sleep(Duration::from_millis(20));
            Some(wal_io::IoError::Os {
                op: Op::SyncDir,
                path: "sim:/".into(),
                source: std::io::Error::from_raw_os_error(5),
            })
        })),
        read: None,
    };
    hooked(disk.storage(), hooks)
}

/// A failed sync is another matter, even the preparer's: the directory's
/// descriptor is the log's too, and after a failed sync a later one can
/// pass without what the failed one lost (fsyncgate). It poisons the log.
#[test]
fn a_failed_sync_of_the_preparer_poisons_the_log() {
    let disk = SimDisk::new(SEED);
    let storage = preparer_fails(&disk, &Arc::default());
    let mut o = options();
    o.prepare_segments = true;
    let (wal, _) = Wal::open_with(storage, o.clone()).unwrap();
    let mut acked = 0;
    let mut error = None;
    // The preparer is asked for a spare once a quarter of the first segment
    // is written; commits go on until its failure stops the log (or three
    // rotations went by without it, which fails the test).
    for lsn in 1..=10_000u64 {
        match wal.commit(&record(lsn)) {
            Ok(l) => acked = l,
            Err(e) => {
                error = Some(e);
                break;
            }
        }
        if wal.stats().rotations >= 3 {
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let error = error.expect("the preparer's failed directory sync did not stop the log");
    assert!(
        matches!(&error, WalError::Poisoned(e) | WalError::Io(e) if e.is_sync()),
        "{error}"
    );
    assert!(matches!(wal.commit(b"late"), Err(WalError::Poisoned(_))));
    drop(wal);
    disk.crash(CrashMode::LoseAll);
    let (_, report) = Wal::open_with(disk.storage(), o).unwrap();
    assert!(report.next_lsn > acked, "{report:?}");
}

/// The preparer's failed directory sync stops the log while a round is in
/// its data sync: that sync passing afterwards proves nothing (the failed
/// one may have lost the directory entry of the segment it wrote to), so
/// the round's records are never published as durable.
#[test]
fn a_round_that_ends_after_the_preparer_failed_is_not_counted() {
    let disk = SimDisk::new(SEED);
    let flags = Arc::new(Flags::default());
    let mut o = options();
    o.prepare_segments = true;
    let (wal, _) = Wal::open_with(preparer_fails(&disk, &flags), o).unwrap();
    let mut acked = 0;
    for lsn in 1..=10_000u64 {
        match wal.commit(&record(lsn)) {
            Ok(l) => acked = l,
            Err(_) => break,
        }
    }
    assert!(flags.state.lock().unwrap().1, "the preparer never failed");
    assert!(matches!(wal.commit(b"late"), Err(WalError::Poisoned(_))));
    assert!(
        wal.durable_lsn() <= acked,
        "LSN {} was published durable after the log was poisoned (last acknowledged {acked})",
        wal.durable_lsn()
    );
}
