//! A cleanly closed log leaves a clean-close record, so the next open reads
//! its last segment only up to where the frames end. The record is only a
//! hint: it goes, durably, before the first write, cut or purge after an
//! open (an open that changes nothing leaves it as it is), a damaged or
//! mismatched one is ignored, and a poisoned log writes none.
// Test sizes and counts are small: casts between integer widths cannot truncate.
#![allow(clippy::cast_possible_truncation)]

use wal_engine::{CLEAN_CLOSE_NAME, Options, Wal, WalError};
use wal_io::sim::{CrashMode, Fault, FaultError, SimDisk};
use wal_io::{FileOptions, Op};

fn options() -> Options {
    let mut o = Options::default();
    // Several read chunks (4 MiB) per segment, so a whole read shows.
    o.segment_bytes = 16 << 20;
    o.prepare_segments = false;
    o
}

fn record(i: u64) -> Vec<u8> {
    format!("[{i}]").repeat(10 + (i % 7) as usize).into_bytes()
}

fn has_record(disk: &SimDisk) -> bool {
    disk.storage()
        .list()
        .unwrap()
        .iter()
        .any(|n| n == CLEAN_CLOSE_NAME)
}

fn check(wal: &Wal, next: u64) {
    let mut lsn = 1;
    for r in wal.reader(1).unwrap() {
        let r = r.unwrap();
        assert_eq!((r.lsn, &r.data[..]), (lsn, &record(lsn)[..]));
        lsn += 1;
    }
    assert_eq!(lsn, next);
}

fn fill(wal: &Wal, from: u64, to: u64) {
    for i in from..to {
        assert_eq!(wal.commit(&record(i)).unwrap(), i);
    }
}

/// A log of records `1..next`, closed cleanly.
fn closed_log(seed: u64, next: u64) -> SimDisk {
    let disk = SimDisk::new(seed);
    let (wal, _) = Wal::open_with(disk.storage(), options()).unwrap();
    fill(&wal, 1, next);
    wal.close().unwrap();
    disk
}

/// Reads the open makes, and what it recovered.
fn reopen(disk: &SimDisk) -> (Wal, u64, wal_engine::RecoveryReport) {
    let before = disk.op_count(Op::Read);
    let (wal, report) = Wal::open_with(disk.storage(), options()).unwrap();
    (wal, disk.op_count(Op::Read) - before, report)
}

#[test]
fn after_a_clean_close_open_reads_only_what_the_frames_cover() {
    let disk = closed_log(21, 200);
    assert!(has_record(&disk));
    let (wal, clean_reads, report) = reopen(&disk);
    assert!(has_record(&disk), "an open that changes nothing keeps it");
    assert!(report.cuts.is_empty(), "{report:?}");
    assert_eq!(report.next_lsn, 200);
    check(&wal, 200);

    // The same log as a writer that did not close cleanly leaves it (the
    // power went, nothing lost): no record, so the whole segment is read.
    disk.crash(CrashMode::LoseAll);
    drop(wal);
    let storage = disk.storage();
    storage.remove(CLEAN_CLOSE_NAME).unwrap();
    storage.sync_dir().unwrap();
    drop(storage);
    let (wal, full_reads, report) = reopen(&disk);
    assert_eq!(report.next_lsn, 200);
    check(&wal, 200);
    assert!(
        clean_reads < full_reads,
        "{clean_reads} reads after a clean close, {full_reads} after a crash"
    );
}

/// Open removes the record before anything is written: a record left in
/// place would vouch for an end that later writes moved, and damage at that
/// old end would then pass for a clean end, losing acknowledged records.
#[test]
fn the_record_is_gone_before_later_writes_so_damage_after_them_is_caught() {
    let disk = closed_log(22, 50);
    let name = wal_engine::segment_name(1);
    let storage = disk.storage();
    let file = storage.open(&name, FileOptions::BUFFERED).unwrap();
    let (wal, _) = Wal::open_with(disk.storage(), options()).unwrap();
    let old_end = wal_end(&file);
    fill(&wal, 50, 80);
    // Power loss (everything was committed), so no new record is written.
    disk.crash(CrashMode::LoseAll);
    drop(wal);
    drop(file);
    // The first frame written after the reopen loses its header; the
    // frames after it record that its LSN was durable.
    let storage = disk.storage();
    let file = storage.open(&name, FileOptions::BUFFERED).unwrap();
    file.write_at(old_end, &[&[0u8; 48]]).unwrap();
    file.sync_data().unwrap();
    drop((file, storage));
    match Wal::open_with(disk.storage(), options()) {
        Err(WalError::Corrupt { offset, .. }) => assert_eq!(offset, old_end),
        other => panic!("{:?}", other.map(|(_, r)| r)),
    }
}

/// Where the frames of the only segment end: the first zero frame header.
fn wal_end(file: &wal_io::FileRef) -> u64 {
    *frame_starts(file).last().unwrap()
}

/// Where each frame starts, and (last) where the frames end.
fn frame_starts(file: &wal_io::FileRef) -> Vec<u64> {
    let mut bytes = vec![0u8; 1 << 20];
    file.read_at(0, &mut bytes).unwrap();
    let mut at = 64usize;
    let mut starts = vec![64];
    while bytes[at..at + 48].iter().any(|&b| b != 0) {
        let stored = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        at = (at + 48 + stored).div_ceil(8) * 8;
        starts.push(at as u64);
    }
    starts
}

/// The record's bytes, if there is one.
fn record_bytes(disk: &SimDisk) -> Option<Vec<u8>> {
    has_record(disk).then(|| {
        let file = disk
            .storage()
            .open(CLEAN_CLOSE_NAME, FileOptions::BUFFERED)
            .unwrap();
        let mut bytes = vec![0u8; 64];
        file.read_at(0, &mut bytes).unwrap();
        bytes
    })
}

/// An open that only reads (a replay, a check) changes nothing, so the
/// record stays true of the log: open leaves it in place and close leaves
/// it as it was, and the next open still reads only what the frames cover.
#[test]
fn an_open_that_changes_nothing_keeps_the_record_as_it_was() {
    let disk = closed_log(25, 100);
    let written = record_bytes(&disk).expect("a clean close leaves a record");
    let counts = |disk: &SimDisk| {
        [Op::Remove, Op::Create, Op::SyncData, Op::SyncDir].map(|op| disk.op_count(op))
    };
    let before = counts(&disk);
    let (wal, first_reads, _) = reopen(&disk);
    check(&wal, 100);
    wal.close().unwrap();
    assert_eq!(record_bytes(&disk).as_ref(), Some(&written));
    // Every write was synced before the record was: nothing to sync, and
    // no record removed or written.
    assert_eq!(
        counts(&disk),
        before,
        "removals, creations, data and directory syncs of the open and close"
    );
    let (wal, reads, report) = reopen(&disk);
    assert!(report.cuts.is_empty(), "{report:?}");
    assert_eq!(reads, first_reads, "the record is still used");
    // The first write takes it away first; close writes a new one.
    fill(&wal, 100, 101);
    assert!(!has_record(&disk), "gone before the first write");
    wal.close().unwrap();
    let rewritten = record_bytes(&disk).expect("a clean close leaves a record");
    assert_ne!(rewritten, written);
}

/// A log of records `1..next`, closed cleanly and opened again: the open
/// changed nothing, so it kept the record.
fn reopened_with_the_record(seed: u64, next: u64) -> (SimDisk, Wal) {
    let disk = closed_log(seed, next);
    let (wal, _) = Wal::open_with(disk.storage(), options()).unwrap();
    assert!(has_record(&disk));
    (disk, wal)
}

/// The record goes before the first write reaches a segment: if removing
/// it fails, nothing is written, the log is poisoned, and the record that
/// stays is still true of the log, which reopens as it was.
#[test]
fn a_failed_removal_of_a_kept_record_writes_nothing() {
    let (disk, wal) = reopened_with_the_record(27, 30);
    let writes = disk.op_count(Op::Write);
    disk.inject(Fault::once(
        Op::Remove,
        disk.op_count(Op::Remove) + 1,
        FaultError::Eio,
    ));
    assert!(wal.commit(&record(30)).is_err());
    assert_eq!(disk.op_count(Op::Write), writes, "a frame was written");
    drop(wal);
    disk.crash(CrashMode::LoseAll);
    let (wal, report) = Wal::open_with(disk.storage(), options()).unwrap();
    assert!(report.cuts.is_empty(), "{report:?}");
    check(&wal, 30);
}

/// Segment files in the directory.
fn segment_count(disk: &SimDisk) -> usize {
    let names = disk.storage().list().unwrap();
    names
        .iter()
        .filter(|n| wal_engine::parse_segment_name(n).is_some())
        .count()
}

/// Small segments, so that a purge removes files.
fn small_segments() -> Options {
    let mut o = options();
    o.segment_bytes = o.segment_bytes_min();
    o
}

/// A cut after an open that kept the record takes the record away first:
/// left in place, it would say the log holds records the cut removed, and
/// the next recovery would refuse the log as having lost them. A purge
/// that removes files does too; one that removes none leaves it.
#[test]
fn a_cut_or_a_purge_after_a_kept_record_takes_it_away_first() {
    let (disk, wal) = reopened_with_the_record(26, 60);
    wal.truncate_back(40).unwrap();
    assert!(!has_record(&disk), "gone before the cut");
    // The power goes before any close.
    disk.crash(CrashMode::LoseAll);
    drop(wal);
    let (wal, report) = Wal::open_with(disk.storage(), options()).unwrap();
    assert_eq!(report.next_lsn, 41, "{report:?}");
    check(&wal, 41);
    wal.close().unwrap();

    let disk = SimDisk::new(28);
    let (wal, _) = Wal::open_with(disk.storage(), small_segments()).unwrap();
    let mut next = 1;
    while segment_count(&disk) < 4 {
        fill(&wal, next, next + 50);
        next += 50;
    }
    wal.close().unwrap();
    let (wal, _) = Wal::open_with(disk.storage(), small_segments()).unwrap();
    assert_eq!(wal.truncate_front(1).unwrap(), 0);
    assert!(has_record(&disk), "a purge of nothing leaves it");
    assert!(wal.truncate_front(next - 1).unwrap() > 0);
    assert!(!has_record(&disk), "gone before the purge");
    disk.crash(CrashMode::LoseAll);
    drop(wal);
    let (wal, report) = Wal::open_with(disk.storage(), small_segments()).unwrap();
    assert_eq!(report.next_lsn, next, "{report:?}");
    drop(wal);
}

#[test]
fn a_damaged_or_mismatched_record_is_ignored() {
    let disk = closed_log(23, 30);
    let storage = disk.storage();
    let file = storage
        .open(CLEAN_CLOSE_NAME, FileOptions::BUFFERED)
        .unwrap();
    let mut bytes = [0u8; 64];
    file.read_at(0, &mut bytes).unwrap();
    let mark = wal_format::CleanClose::decode(&bytes).unwrap();

    // A valid record that claims the segment ends before its last frame:
    // trusted, it would have the last record cut as a torn tail.
    let segment = storage
        .open(&wal_engine::segment_name(1), FileOptions::BUFFERED)
        .unwrap();
    let starts = frame_starts(&segment);
    assert_eq!(*starts.last().unwrap(), mark.valid_end);
    let wrong = wal_format::CleanClose::new(
        mark.log_id,
        mark.segment_first_lsn,
        mark.segment_id,
        starts[starts.len() - 2],
        mark.next_lsn - 1,
    )
    .unwrap();
    file.write_at(0, &[&wrong.encode()]).unwrap();
    file.sync_data().unwrap();
    drop(file);
    let (wal, report) = Wal::open_with(disk.storage(), options()).unwrap();
    assert!(report.cuts.is_empty(), "{report:?}");
    check(&wal, 30);
    drop(wal);

    // Garbage.
    storage.remove(CLEAN_CLOSE_NAME).unwrap();
    let file = storage
        .create(CLEAN_CLOSE_NAME, FileOptions::BUFFERED)
        .unwrap();
    file.write_at(0, &[&[0x5a; 64]]).unwrap();
    file.sync_data().unwrap();
    drop((file, storage));
    let (wal, report) = Wal::open_with(disk.storage(), options()).unwrap();
    assert!(report.cuts.is_empty(), "{report:?}");
    assert!(!has_record(&disk));
    check(&wal, 30);
}

#[test]
fn a_poisoned_log_leaves_no_record() {
    let disk = SimDisk::new(24);
    let (wal, _) = Wal::open_with(disk.storage(), options()).unwrap();
    fill(&wal, 1, 10);
    disk.inject(Fault::once(
        Op::SyncData,
        disk.op_count(Op::SyncData) + 1,
        FaultError::Eio,
    ));
    assert!(wal.commit(&record(10)).is_err());
    assert!(wal.close().is_err());
    assert!(!has_record(&disk));
}
