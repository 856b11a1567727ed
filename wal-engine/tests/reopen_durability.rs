//! C1 across a reopen: what a reopened log reports durable survives a
//! power loss after the reopen, even when the process before it died (a
//! `kill -9`, or a failed write) with records written but never synced.
//! Those records are dirty pages in the page cache, recovery reads them, and
//! the log must sync them before it calls them durable, as PostgreSQL syncs
//! its data directory after a crash.
//!
//! And after a failed sync: Linux keeps the pages it could not write as
//! clean, so a reopen in the same boot would read records the disk never
//! got, and no sync would ever write them. Recovery drops the last
//! segment's clean cached pages before reading it.
// Test sizes and counts are small: casts between integer widths cannot truncate.
#![allow(clippy::cast_possible_truncation)]

mod common;

use common::records;
use wal_engine::{Options, SyncPolicy, Wal};
use wal_io::Op;
use wal_io::sim::{CrashMode, Fault, FaultError, SimDisk};

/// Small queues, so the owner writes often; segments of `segment_bytes`.
fn options(sync: SyncPolicy, segment_bytes: u64) -> Options {
    let mut options = Options::default();
    options.sync = sync;
    options.segment_bytes = segment_bytes;
    options.queue_bytes_max = 4 << 10;
    options.record_bytes_max = 512;
    options
}

fn record(i: u64) -> Vec<u8> {
    format!("record {i}").repeat(8).into_bytes()
}

/// Writes records without syncing them, then dies the way a killed process
/// does, its dirty pages left behind: a write fails, which poisons the log,
/// so neither a sync nor the close follows. Returns the disk and the last
/// LSN written before the failure.
fn died_with_unsynced_records(seed: u64, options: &Options, n: u64) -> (SimDisk, u64) {
    let disk = SimDisk::new(seed);
    let (wal, _) = Wal::open_with(disk.storage(), options.clone()).unwrap();
    // Appends past the queue's bound make the owner write what it holds.
    for i in 1..=n {
        wal.append(&record(i)).unwrap();
    }
    disk.inject(Fault::from_then_on(
        Op::Write,
        disk.op_count(Op::Write) + 1,
        FaultError::Eio,
    ));
    // One more record, so the sync below has something to write even if
    // the owner wrote all the others already: that write fails, poisoning
    // the log, and the records before it sit in the page cache only.
    let _ = wal.append(&record(n + 1));
    assert!(wal.sync().is_err());
    let written = wal.written_lsn();
    drop(wal);
    disk.clear_faults();
    (disk, written)
}

#[test]
fn records_a_reopen_reports_durable_survive_a_power_loss_after_it() {
    for (seed, segment_bytes) in [(1, 64 << 20), (2, 16 << 10)] {
        let options = options(SyncPolicy::Never, segment_bytes);
        let (disk, written) = died_with_unsynced_records(seed, &options, 500);
        assert!(
            written >= 100,
            "seed {seed}: only {written} records were written"
        );
        let (wal, report) = Wal::open_with(disk.storage(), options.clone()).unwrap();
        // The unsynced records were in the "page cache" and were recovered.
        assert!(report.next_lsn > written, "seed {seed}");
        let durable = wal.durable_lsn();
        assert_eq!(durable, report.next_lsn - 1, "seed {seed}");
        drop(wal);

        disk.crash(CrashMode::LoseAll);
        let (wal, report) = Wal::open_with(disk.storage(), options.clone()).unwrap();
        assert!(
            report.next_lsn > durable,
            "seed {seed}: reported durable up to {durable} after the reopen, {} left after a power loss",
            report.next_lsn - 1
        );
        let got = records(&wal);
        assert!(
            got.iter()
                .zip(1..)
                .all(|((lsn, data), i)| *lsn == i && *data == record(i))
        );
    }
}

/// Commits `n` records from `from` one at a time, each durable before the next.
fn commit_all(wal: &Wal, from: u64, n: u64) {
    for i in from..from + n {
        wal.commit(&record(i)).unwrap();
    }
}

#[test]
fn a_reopen_after_a_failed_sync_reads_what_the_disk_holds() {
    for (seed, segment_bytes) in [(3, 64 << 20), (4, 16 << 10)] {
        let options = options(SyncPolicy::Always, segment_bytes);
        let disk = SimDisk::new(seed);
        let (wal, _) = Wal::open_with(disk.storage(), options.clone()).unwrap();
        commit_all(&wal, 1, 300);
        disk.inject(Fault::once(
            Op::SyncData,
            disk.op_count(Op::SyncData) + 1,
            FaultError::Eio,
        ));
        // Its write lands in the "page cache", its sync fails: never durable.
        assert!(wal.commit(&record(301)).is_err(), "seed {seed}");
        drop(wal);

        // The same boot: no power loss, the failed pages still cached.
        let (wal, report) = Wal::open_with(disk.storage(), options.clone()).unwrap();
        assert_eq!(
            report.next_lsn, 301,
            "seed {seed}: the record whose sync failed was recovered from the page cache"
        );
        commit_all(&wal, 301, 50);
        drop(wal);

        disk.crash(CrashMode::LoseAll);
        let (wal, report) = Wal::open_with(disk.storage(), options.clone())
            .unwrap_or_else(|e| panic!("seed {seed}: the log no longer opens: {e}"));
        assert_eq!(report.next_lsn, 351, "seed {seed}");
        let got = records(&wal);
        assert_eq!(got.len(), 350, "seed {seed}");
        assert!(
            got.iter()
                .zip(1..)
                .all(|((lsn, data), i)| *lsn == i && *data == record(i))
        );
    }
}
