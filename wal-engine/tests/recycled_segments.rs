//! Recycling: a segment purged by `truncate_front` becomes the next segment
//! (same file, new identity), and its stale bytes never pass as records.
//! The T2 cases on real files: a recycled segment torn at every byte of its
//! last writes, damaged in the middle, or left under a segment's name without
//! a new header.
// Test sizes and counts are small: casts between integer widths cannot truncate.
#![allow(clippy::cast_possible_truncation)]

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

mod common;

use common::records;
use wal_engine::{Options, RecoveryMode, Wal, WalError, segment_name};
use wal_io::sim::SimDisk;

fn options() -> Options {
    let mut o = Options::default();
    o.segment_bytes = 64 << 10;
    o.queue_bytes_max = 8 << 10;
    o.record_bytes_max = 4 << 10;
    // Spares come only from recycling here.
    o.prepare_segments = false;
    o
}

fn record(i: u64) -> Vec<u8> {
    format!("<{i}>").repeat(20 + (i % 13) as usize).into_bytes()
}

/// Every record from the first LSN on is the one written, densely.
fn check(wal: &Wal, first: u64, next: u64) {
    let got = records(wal);
    assert_eq!(got.first().map(|r| r.0), Some(first));
    assert_eq!(got.len() as u64, next - first);
    for (lsn, data) in got {
        assert_eq!(data, record(lsn), "LSN {lsn}");
    }
}

/// Commits records until the log has rotated `rotations` times in total.
fn commit_until_rotations(wal: &Wal, rotations: u64) {
    while wal.stats().rotations < rotations {
        wal.commit(&record(wal.appended_lsn() + 1)).unwrap();
    }
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    v.sort();
    v
}

/// A log in `dir` whose active segment is the recycled file of its first
/// segment, holding `tail` records of its own. Returns the active segment's
/// path, its bytes before the last 3 commits, and the log's next LSN.
fn recycled_log(dir: &Path, tail: u64) -> (PathBuf, Vec<u8>, u64) {
    let (wal, _) = Wal::open(dir, options()).unwrap();
    commit_until_rotations(&wal, 2);
    let first = segments(dir);
    assert_eq!(first.len(), 3);
    let inode = std::fs::metadata(&first[0]).unwrap().ino();
    let active_first = wal.appended_lsn();
    assert_eq!(wal.truncate_front(active_first).unwrap(), 2);
    assert_eq!(segments(dir).len(), 1, "one purged file is the spare");
    commit_until_rotations(&wal, 3);
    let stats = wal.stats();
    assert_eq!(stats.rotations_recycled, 1, "{stats:?}");
    let active = segments(dir).pop().unwrap();
    assert_eq!(
        std::fs::metadata(&active).unwrap().ino(),
        inode,
        "the new segment is the purged one's file"
    );
    for _ in 0..tail - 3 {
        wal.commit(&record(wal.appended_lsn() + 1)).unwrap();
    }
    let before = std::fs::read(&active).unwrap();
    for _ in 0..3 {
        wal.commit(&record(wal.appended_lsn() + 1)).unwrap();
    }
    let next = wal.appended_lsn() + 1;
    drop(wal);
    (active, before, next)
}

/// Frame ends (unpadded body end, padded end) of the segment's own frames:
/// they stop where the identity at offset 24 of a frame header is not the
/// segment's, which in a recycled file is the terminator or a stale frame.
fn own_frame_ends(bytes: &[u8]) -> Vec<(usize, usize)> {
    let id = &bytes[24..32];
    let mut ends = Vec::new();
    let mut at = 64usize;
    while at + 48 <= bytes.len() && &bytes[at + 24..at + 32] == id {
        let stored = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        let body = at + 48 + stored;
        at = body.div_ceil(8) * 8;
        ends.push((body, at));
    }
    ends
}

#[test]
fn a_purged_segment_is_reused_and_a_clean_log_reopens_strictly() {
    let dir = tempfile::tempdir().unwrap();
    let (active, _, next) = recycled_log(dir.path(), 40);
    let bytes = std::fs::read(&active).unwrap();
    assert_eq!(bytes[12], 1, "the header carries the recycled flag");
    let ends = own_frame_ends(&bytes);
    let end = ends.last().unwrap().1;
    assert!(
        bytes[end + 48..].iter().any(|&b| b != 0),
        "stale bytes of the file's first life follow the terminator"
    );
    // The strictest mode reads the clean end of a recycled file as clean.
    let mut strict = options();
    strict.recovery = RecoveryMode::AbsoluteConsistency;
    let (wal, report) = Wal::open(dir.path(), strict).unwrap();
    assert!(report.cuts.is_empty(), "{report:?}");
    assert_eq!(report.next_lsn, next);
    check(&wal, report.first_lsn, next);
}

#[test]
fn with_recycling_off_purged_segments_are_deleted() {
    let disk = SimDisk::new(11);
    let mut o = options();
    o.recycle_segments = false;
    let (wal, _) = Wal::open_with(disk.storage(), o).unwrap();
    commit_until_rotations(&wal, 2);
    wal.truncate_front(wal.appended_lsn()).unwrap();
    commit_until_rotations(&wal, 4);
    assert_eq!(wal.stats().rotations_recycled, 0);
    let names = disk.storage().list().unwrap();
    assert!(
        !names.iter().any(|n| n == wal_engine::SPARE_NAME),
        "{names:?}"
    );
}

/// A spare left by a run that closed (or crashed) before its next rotation
/// is taken over at open, not deleted and refilled.
#[test]
fn a_spare_left_at_close_is_reused_after_reopen() {
    let disk = SimDisk::new(12);
    let (wal, _) = Wal::open_with(disk.storage(), options()).unwrap();
    commit_until_rotations(&wal, 2);
    wal.truncate_front(wal.appended_lsn()).unwrap();
    let next = wal.appended_lsn() + 1;
    drop(wal);
    let (wal, report) = Wal::open_with(disk.storage(), options()).unwrap();
    assert_eq!(report.next_lsn, next);
    commit_until_rotations(&wal, 1);
    assert_eq!(wal.stats().rotations_recycled, 1);
    let first = wal.first_lsn();
    let next = wal.appended_lsn() + 1;
    drop(wal);
    let (wal, report) = Wal::open_with(disk.storage(), options()).unwrap();
    assert!(report.cuts.is_empty(), "{report:?}");
    check(&wal, first, next);
}

/// A reader inside a segment that is purged and recycled under it gets
/// `Purged`, never a record of the file's new life or a corruption error.
#[test]
fn a_reader_in_a_recycled_segment_gets_purged() {
    let disk = SimDisk::new(13);
    let (wal, _) = Wal::open_with(disk.storage(), options()).unwrap();
    commit_until_rotations(&wal, 2);
    let mut reader = wal.reader(1).unwrap();
    assert_eq!(reader.next().unwrap().unwrap().lsn, 1);
    wal.truncate_front(wal.appended_lsn()).unwrap();
    commit_until_rotations(&wal, 3);
    assert_eq!(wal.stats().rotations_recycled, 1);
    match reader.next() {
        Some(Err(WalError::Purged { lsn: 2, first })) => assert!(first > 2),
        other => panic!("{other:?}"),
    }
}

/// T2: the last write into a recycled segment torn at every byte of the last
/// three frames (the bytes past the cut are what was there before: the
/// previous terminator, then stale frames). Recovery keeps exactly the whole
/// frames, never an old one, and appending again never resurrects anything.
/// The strict mode opens only where the end reads clean, else refuses.
#[test]
fn a_recycled_segment_torn_at_every_byte_keeps_exactly_the_whole_frames() {
    let template = tempfile::tempdir().unwrap();
    let (active, before, next) = recycled_log(template.path(), 12);
    let name = active.file_name().unwrap().to_owned();
    let after = std::fs::read(&active).unwrap();
    let ends = own_frame_ends(&after);
    let from = ends[ends.len() - 4].1;
    let to = ends[ends.len() - 1].1 + 48;
    let first_of_segment: u64 = name.to_str().unwrap()[..20].parse().unwrap();
    let mut strict_opened = 0;
    for cut in from..=to {
        // The disk as the write holding `cut` found it: every earlier write
        // landed, with its terminator after it, over the older bytes.
        let landed = ends
            .iter()
            .map(|&(_, padded)| padded)
            .filter(|&padded| padded >= from && padded <= cut)
            .max()
            .unwrap_or(from);
        let mut found = after[..landed].to_vec();
        found.extend_from_slice(&[0u8; 48]);
        found.extend_from_slice(&before[landed + 48..]);
        let mut bytes = after[..cut].to_vec();
        bytes.extend_from_slice(&found[cut..]);
        // Whole frames: those whose bytes all landed (a stale byte may equal
        // the missing one).
        let whole = ends
            .iter()
            .filter(|&&(body, _)| body <= cut || bytes[..body] == after[..body])
            .count() as u64;
        let expected_next = first_of_segment + whole;
        // The salvage modes treat a torn tail as the default mode does;
        // every seventh cut is enough to show it.
        let modes: &[RecoveryMode] = if cut % 7 == 0 {
            &[
                RecoveryMode::TolerateTornTail,
                RecoveryMode::AbsoluteConsistency,
                RecoveryMode::PointInTime,
                RecoveryMode::SkipCorrupted,
            ]
        } else {
            &[
                RecoveryMode::TolerateTornTail,
                RecoveryMode::AbsoluteConsistency,
            ]
        };
        for &mode in modes {
            let dir = tempfile::tempdir().unwrap();
            for entry in std::fs::read_dir(template.path()).unwrap() {
                let p = entry.unwrap().path();
                if p.extension().is_some_and(|e| e == "wal") {
                    std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
                }
            }
            std::fs::write(dir.path().join(&name), &bytes).unwrap();
            let mut o = options();
            o.recovery = mode;
            let (wal, report) = match Wal::open(dir.path(), o.clone()) {
                Ok(opened) => opened,
                Err(WalError::Corrupt { .. }) if mode == RecoveryMode::AbsoluteConsistency => {
                    continue;
                }
                Err(e) => panic!("cut {cut}, {mode:?}: {e}"),
            };
            if mode == RecoveryMode::AbsoluteConsistency {
                strict_opened += 1;
            }
            assert_eq!(report.next_lsn, expected_next, "cut {cut}, {mode:?}");
            check(&wal, report.first_lsn, expected_next);
            assert_eq!(wal.commit(&record(expected_next)).unwrap(), expected_next);
            drop(wal);
            let (wal, report) = Wal::open(dir.path(), o).unwrap();
            assert!(report.cuts.is_empty(), "cut {cut}: {:?}", report.cuts);
            check(&wal, report.first_lsn, expected_next + 1);
        }
    }
    assert!(next > first_of_segment);
    // A cut on each of the four write boundaries leaves a terminator: clean.
    assert!(
        strict_opened >= 4,
        "strict mode opened {strict_opened} times"
    );
}

/// T2: a zeroed or garbage sector over acknowledged frames in the middle of
/// a recycled segment is corruption, as in any segment, not a clean end.
#[test]
fn damage_in_the_middle_of_a_recycled_segment_is_refused() {
    let template = tempfile::tempdir().unwrap();
    let (active, _, _) = recycled_log(template.path(), 40);
    let after = std::fs::read(&active).unwrap();
    let ends = own_frame_ends(&after);
    let start = ends[10].1;
    for fill in [0x00u8, 0x5a] {
        let mut bytes = after.clone();
        bytes[start..start + 512].fill(fill);
        std::fs::write(&active, &bytes).unwrap();
        match Wal::open(template.path(), options()) {
            Err(WalError::Corrupt {
                segment, offset, ..
            }) => {
                assert_eq!(segment, active.file_name().unwrap().to_str().unwrap());
                assert_eq!(offset, start as u64);
            }
            other => panic!("fill {fill:#x}: {:?}", other.map(|(_, r)| r)),
        }
    }
}

/// T2: a stale segment under a newer segment's name (its old header, never
/// restamped): no mode takes its records for the log's.
#[test]
fn a_stale_file_under_a_segment_name_is_never_read_as_records() {
    let template = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(template.path(), options()).unwrap();
    commit_until_rotations(&wal, 1);
    let next = wal.appended_lsn() + 1;
    drop(wal);
    let stale = std::fs::read(template.path().join(segment_name(1))).unwrap();
    for mode in [
        RecoveryMode::TolerateTornTail,
        RecoveryMode::AbsoluteConsistency,
        RecoveryMode::PointInTime,
        RecoveryMode::SkipCorrupted,
    ] {
        let dir = tempfile::tempdir().unwrap();
        for p in segments(template.path()) {
            std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
        }
        std::fs::write(dir.path().join(segment_name(next + 5)), &stale).unwrap();
        let mut o = options();
        o.recovery = mode;
        match Wal::open(dir.path(), o) {
            Err(WalError::Corrupt { segment, .. }) => assert_eq!(segment, segment_name(next + 5)),
            Ok((wal, report)) => {
                // A salvage mode set it aside; what is left is the real log.
                assert!(report.next_lsn <= next, "{mode:?}: {report:?}");
                check(&wal, 1, report.next_lsn);
            }
            Err(e) => panic!("{mode:?}: {e}"),
        }
    }
}
