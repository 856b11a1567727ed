//! The clean-close record is evidence (defect 9): a log closed cleanly says
//! that every LSN below the record's next LSN was durable. Recovery that
//! then finds fewer records lost acknowledged ones, which is corruption
//! (C5), not a torn tail: the default and strict modes refuse to open and
//! name the evidence, the refusal leaves the record for the next open, and
//! the salvage modes open with a cut that names it. Without the record (a
//! writer that stopped without closing), a torn tail is still cut (C4).
// Test sizes and counts are small: casts between integer widths cannot truncate.
#![allow(clippy::cast_possible_truncation)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod common;

use common::{frame_ends, records, segment_names, small_segments};
use wal_engine::{
    CLEAN_CLOSE_NAME, Options, RecoveryMode, Wal, WalError, parse_segment_name, segment_name,
};

/// Records in the single-segment logs these tests build.
const RECORDS: u64 = 30;

const REFUSING: [RecoveryMode; 2] = [
    RecoveryMode::TolerateTornTail,
    RecoveryMode::AbsoluteConsistency,
];

fn record(i: u64) -> Vec<u8> {
    format!("<{i}>").repeat(20 + (i % 13) as usize).into_bytes()
}

fn with_mode(mode: RecoveryMode) -> Options {
    let mut o = small_segments();
    o.recovery = mode;
    o
}

/// Commits records `1..=n`, one frame each, and closes the log cleanly.
fn build_closed(dir: &Path, n: u64) {
    let (wal, _) = Wal::open(dir, small_segments()).unwrap();
    for i in 1..=n {
        assert_eq!(wal.commit(&record(i)).unwrap(), i);
    }
    wal.close().unwrap();
    assert!(has_record(dir), "a clean close leaves the record");
}

fn has_record(dir: &Path) -> bool {
    dir.join(CLEAN_CLOSE_NAME).exists()
}

fn check_prefix(wal: &Wal, n: u64) {
    let got = records(wal);
    assert_eq!(got.len() as u64, n);
    for (k, (lsn, data)) in got.into_iter().enumerate() {
        assert_eq!(lsn, k as u64 + 1);
        assert_eq!(data, record(lsn), "LSN {lsn}");
    }
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    /// The last frame's 48-byte header is zeroed; its payload stays.
    Header,
    /// A 512-byte sector of zeros from the last frame's start: the frame
    /// is gone and only zeros follow the one before it.
    Sector,
}

/// Damages the last frame of the first segment; returns where it starts.
fn damage_last_frame(dir: &Path, damage: Damage) -> u64 {
    let path = dir.join(segment_name(1));
    let mut bytes = std::fs::read(&path).unwrap();
    let ends = frame_ends(&bytes);
    assert_eq!(ends.len() as u64, RECORDS, "one frame per commit");
    let start = ends[ends.len() - 2].1 as usize;
    let len = match damage {
        Damage::Header => 48,
        Damage::Sector => 512,
    };
    let end = (start + len).min(bytes.len());
    bytes[start..end].fill(0);
    std::fs::write(&path, &bytes).unwrap();
    start as u64
}

/// The bytes of every segment file and of the clean-close record.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files: Vec<String> = segment_names(dir);
    files.push(CLEAN_CLOSE_NAME.to_owned());
    files
        .into_iter()
        .filter_map(|name| {
            let bytes = std::fs::read(dir.join(&name)).ok()?;
            Some((name, bytes))
        })
        .collect()
}

/// Opens in `mode`, expecting a refusal as corruption whose detail names
/// the clean-close record; returns the segment and offset it names, and
/// the detail.
fn refused_naming_the_evidence(dir: &Path, mode: RecoveryMode) -> (String, u64, String) {
    match Wal::open(dir, with_mode(mode)) {
        Err(WalError::Corrupt {
            segment,
            offset,
            detail,
            ..
        }) => {
            assert!(
                detail.contains("clean-close") && detail.contains("durable"),
                "{mode:?}: the refusal does not name the evidence: {detail}"
            );
            (segment, offset, detail)
        }
        other => panic!(
            "{mode:?}: expected corruption, got {:?}",
            other.map(|(_, report)| report)
        ),
    }
}

/// A zeroed last frame after a clean close is not an interrupted write: the
/// record says it was durable. Both refusing modes refuse, naming the
/// segment and where its valid prefix ends, every time (the refusal leaves
/// the record and every byte as it was).
#[test]
fn a_damaged_last_frame_after_a_clean_close_is_refused_as_lost_acknowledged_records() {
    for damage in [Damage::Header, Damage::Sector] {
        let dir = tempfile::tempdir().unwrap();
        build_closed(dir.path(), RECORDS);
        let start = damage_last_frame(dir.path(), damage);
        let before = snapshot(dir.path());
        for mode in REFUSING {
            for attempt in 0..2 {
                let (segment, offset, detail) = refused_naming_the_evidence(dir.path(), mode);
                assert_eq!(segment, segment_name(1), "{damage:?}, {mode:?}");
                assert_eq!(offset, start, "{damage:?}, {mode:?}");
                assert!(
                    detail.contains(&format!("up to {RECORDS}")),
                    "{damage:?}, {mode:?}: {detail}"
                );
                assert!(
                    has_record(dir.path()),
                    "{damage:?}, {mode:?}, attempt {attempt}: the refused open consumed the record"
                );
            }
        }
        assert_eq!(
            snapshot(dir.path()),
            before,
            "{damage:?}: refusing changed the directory"
        );
    }
}

/// The salvage modes open past the same damage, keeping what is intact,
/// and their report names the evidence of what was lost.
#[test]
fn the_salvage_modes_open_past_lost_acknowledged_records_and_report_the_evidence() {
    for mode in [RecoveryMode::PointInTime, RecoveryMode::SkipCorrupted] {
        let dir = tempfile::tempdir().unwrap();
        build_closed(dir.path(), RECORDS);
        let start = damage_last_frame(dir.path(), Damage::Sector);
        let (wal, report) = Wal::open(dir.path(), with_mode(mode))
            .unwrap_or_else(|e| panic!("{mode:?}: a salvage mode refused: {e}"));
        assert_eq!(report.next_lsn, RECORDS, "{mode:?}: {report:?}");
        let cut = report
            .cuts
            .iter()
            .find(|c| c.reason.contains("clean-close"))
            .unwrap_or_else(|| panic!("{mode:?}: no cut names the evidence: {report:?}"));
        assert_eq!(cut.segment, segment_name(1), "{mode:?}");
        assert_eq!(cut.offset, start, "{mode:?}");
        check_prefix(&wal, RECORDS - 1);
        // The salvage is accepted: the evidence of the lost records goes
        // with it, whether or not anything is written before the close,
        // so the default mode opens the salvaged log afterwards.
        assert!(!has_record(dir.path()), "{mode:?}: the old record stays");
        wal.close().unwrap();
        let (wal, report) = Wal::open(dir.path(), with_mode(RecoveryMode::default()))
            .unwrap_or_else(|e| panic!("{mode:?}: refused after the salvage: {e}"));
        assert_eq!(report.next_lsn, RECORDS, "{mode:?}: {report:?}");
        drop(wal);
    }
}

/// What happens to the last segment of a cleanly closed log.
#[derive(Debug, Clone, Copy)]
enum Loss {
    /// Truncated to 0 bytes.
    Emptied,
    /// Deleted.
    Deleted,
}

/// A cleanly closed log whose last segment held about 170 records, then
/// was emptied or deleted: not an interrupted segment creation (the record
/// says the segment held records), so both refusing modes refuse, every
/// time, and leave the segment file as it is.
#[test]
fn an_emptied_or_deleted_last_segment_after_a_clean_close_is_refused_and_left_alone() {
    for loss in [Loss::Emptied, Loss::Deleted] {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path(), small_segments()).unwrap();
        let mut i = 0;
        while segment_names(dir.path()).len() < 2 {
            i += 1;
            wal.commit(&record(i)).unwrap();
        }
        for _ in 0..169 {
            i += 1;
            wal.commit(&record(i)).unwrap();
        }
        wal.close().unwrap();
        let names = segment_names(dir.path());
        let last_name = names.last().unwrap().clone();
        let first_of_last = parse_segment_name(&last_name).unwrap();
        assert!(first_of_last > 1, "{names:?}");
        assert!(i + 1 - first_of_last >= 170, "{names:?}, {i} records");
        let last: PathBuf = dir.path().join(&last_name);
        match loss {
            Loss::Emptied => std::fs::OpenOptions::new()
                .write(true)
                .open(&last)
                .unwrap()
                .set_len(0)
                .unwrap(),
            Loss::Deleted => std::fs::remove_file(&last).unwrap(),
        }
        let before = snapshot(dir.path());
        for mode in REFUSING {
            for _ in 0..2 {
                let (segment, offset, detail) = refused_naming_the_evidence(dir.path(), mode);
                assert_eq!(segment, last_name, "{loss:?}, {mode:?}");
                assert_eq!(offset, 0, "{loss:?}, {mode:?}");
                assert!(
                    detail.contains(&format!("up to {i}")),
                    "{loss:?}, {mode:?}: {detail}"
                );
            }
        }
        assert_eq!(
            snapshot(dir.path()),
            before,
            "{loss:?}: refusing changed the directory"
        );
        assert!(has_record(dir.path()), "{loss:?}");
        if let Loss::Emptied = loss {
            assert_eq!(
                std::fs::metadata(&last).unwrap().len(),
                0,
                "the emptied segment was removed"
            );
        }
    }
}

/// Control: a cleanly closed log without damage opens in every mode with
/// every record and nothing cut.
#[test]
fn a_clean_close_without_damage_opens_with_every_record() {
    let dir = tempfile::tempdir().unwrap();
    build_closed(dir.path(), RECORDS);
    for mode in [
        RecoveryMode::AbsoluteConsistency,
        RecoveryMode::TolerateTornTail,
        RecoveryMode::PointInTime,
        RecoveryMode::SkipCorrupted,
    ] {
        let (wal, report) =
            Wal::open(dir.path(), with_mode(mode)).unwrap_or_else(|e| panic!("{mode:?}: {e}"));
        assert!(report.cuts.is_empty(), "{mode:?}: {report:?}");
        assert_eq!(report.next_lsn, RECORDS + 1, "{mode:?}");
        check_prefix(&wal, RECORDS);
        wal.close().unwrap();
    }
}

/// Control (C4 unchanged): without a clean-close record, as a writer that
/// stopped without closing leaves the log, a damaged last frame is a torn
/// tail, cut and reported, and no evidence is claimed.
#[test]
fn without_a_clean_close_a_torn_last_frame_is_still_cut() {
    for damage in [Damage::Header, Damage::Sector] {
        let dir = tempfile::tempdir().unwrap();
        build_closed(dir.path(), RECORDS);
        std::fs::remove_file(dir.path().join(CLEAN_CLOSE_NAME)).unwrap();
        let start = damage_last_frame(dir.path(), damage);
        let (wal, report) =
            Wal::open(dir.path(), small_segments()).unwrap_or_else(|e| panic!("{damage:?}: {e}"));
        assert_eq!(report.next_lsn, RECORDS, "{damage:?}: {report:?}");
        assert!(
            report
                .cuts
                .iter()
                .all(|c| !c.reason.contains("clean-close")),
            "{damage:?}: {report:?}"
        );
        if let Damage::Header = damage {
            // Payload bytes follow the zeroed header: cut from the file.
            assert_eq!(report.cuts.len(), 1, "{report:?}");
            assert_eq!(report.cuts[0].offset, start);
        }
        check_prefix(&wal, RECORDS - 1);
    }
}

/// Control: a clean-close record left by another log (another identity)
/// says nothing about this one, even where it claims more records.
#[test]
fn a_clean_close_record_of_another_log_is_no_evidence() {
    let other = tempfile::tempdir().unwrap();
    build_closed(other.path(), RECORDS + 10);
    let dir = tempfile::tempdir().unwrap();
    build_closed(dir.path(), RECORDS);
    std::fs::copy(
        other.path().join(CLEAN_CLOSE_NAME),
        dir.path().join(CLEAN_CLOSE_NAME),
    )
    .unwrap();
    for mode in REFUSING {
        let (wal, report) =
            Wal::open(dir.path(), with_mode(mode)).unwrap_or_else(|e| panic!("{mode:?}: {e}"));
        assert!(report.cuts.is_empty(), "{mode:?}: {report:?}");
        assert_eq!(report.next_lsn, RECORDS + 1, "{mode:?}");
        check_prefix(&wal, RECORDS);
        drop(wal);
        // Dropping the log left its own record; put the other one back.
        std::fs::copy(
            other.path().join(CLEAN_CLOSE_NAME),
            dir.path().join(CLEAN_CLOSE_NAME),
        )
        .unwrap();
    }
}
