//! A log written without `direct_io` and reopened with it goes on through
//! the pipelined O_DIRECT writer from its next segment, under every sync
//! policy: syncs return (no writer left waiting for a write nobody queued)
//! and a durable commit covers every record before it (C1), although the
//! simulated disk makes a durable O_DIRECT write (`RWF_DSYNC`) durable for
//! its own range only, as Linux does. And the other way round.

use std::sync::mpsc;
use std::time::Duration;

use wal_engine::{Options, SyncPolicy, Wal};
use wal_io::sim::{CrashMode, SimDisk};

/// Bound on a run that would hang if a sync were never done.
const BOUND: Duration = Duration::from_secs(60);

fn options(sync: SyncPolicy, direct_io: bool) -> Options {
    let mut o = Options::default();
    o.segment_bytes = 16 << 10;
    o.queue_bytes_max = 4 << 10;
    o.record_bytes_max = 512;
    o.sync = sync;
    o.direct_io = direct_io;
    o.identity_seed = Some(7);
    o
}

fn record(lsn: u64) -> Vec<u8> {
    format!("<{lsn}>")
        .repeat(1 + (lsn % 23) as usize)
        .into_bytes()
}

/// Writes a log with `first` direct I/O, reopens it with the other, and
/// appends across several rotations: bursts nobody waits for, each ended by
/// a durable commit. Then the power goes and every record up to the last
/// durable commit must come back. Returns how many records that was.
fn switch_and_crash(seed: u64, sync: SyncPolicy, first: bool) -> u64 {
    let disk = SimDisk::new(seed);
    let (wal, _) = Wal::open_with(disk.storage(), options(sync, first)).unwrap();
    for lsn in 1..=5 {
        wal.append(&record(lsn)).unwrap();
    }
    wal.sync().unwrap();
    drop(wal);
    let (wal, report) = Wal::open_with(disk.storage(), options(sync, !first)).unwrap();
    assert_eq!(report.next_lsn, 6);
    let mut lsn = 5;
    let mut acked = 5;
    for burst in 0..60u64 {
        for _ in 0..(5 + burst % 17) {
            lsn += 1;
            assert_eq!(wal.append(&record(lsn)).unwrap(), lsn);
        }
        lsn += 1;
        assert_eq!(wal.commit_durable(&record(lsn)).unwrap(), lsn);
        acked = lsn;
    }
    assert!(
        wal.stats().rotations >= 3,
        "the test must cross several segments"
    );
    // More that is not waited for, then a sync from another caller.
    for _ in 0..20 {
        lsn += 1;
        wal.append(&record(lsn)).unwrap();
    }
    wal.sync().unwrap();
    acked = acked.max(lsn);
    disk.crash(CrashMode::LoseAll);
    drop(wal);
    let (wal, report) = Wal::open_with(disk.storage(), options(sync, !first)).unwrap();
    assert!(
        report.next_lsn > acked,
        "{sync:?}, direct_io {first} then {}: acknowledged LSNs {}..={acked} lost",
        !first,
        report.next_lsn
    );
    for r in wal.reader(1).unwrap() {
        let r = r.unwrap();
        assert_eq!(&r.data[..], &record(r.lsn)[..], "LSN {}", r.lsn);
    }
    acked
}

fn policies() -> [SyncPolicy; 4] {
    [
        SyncPolicy::Always,
        SyncPolicy::Group {
            max_delay: Duration::from_micros(200),
            max_batch_bytes: 2 << 10,
        },
        SyncPolicy::Interval(Duration::from_millis(2)),
        SyncPolicy::Never,
    ]
}

/// Runs `f` on a thread and fails the test if it does not end in `BOUND`.
fn bounded(what: String, f: impl FnOnce() -> u64 + Send + 'static) -> u64 {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(f()).unwrap());
    match rx.recv_timeout(BOUND) {
        Ok(n) => n,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: hung for {BOUND:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: panicked"),
    }
}

#[test]
fn switching_direct_io_on_keeps_every_durable_commit_under_every_policy() {
    for (i, sync) in policies().into_iter().enumerate() {
        for seed in 0..3u64 {
            let acked = bounded(format!("{sync:?}, seed {seed}"), move || {
                switch_and_crash(seed * 10 + i as u64, sync, false)
            });
            assert!(acked > 100);
        }
    }
}

#[test]
fn switching_direct_io_off_keeps_every_durable_commit_under_every_policy() {
    for (i, sync) in policies().into_iter().enumerate() {
        let acked = bounded(format!("{sync:?}"), move || {
            switch_and_crash(100 + i as u64, sync, true)
        });
        assert!(acked > 100);
    }
}
