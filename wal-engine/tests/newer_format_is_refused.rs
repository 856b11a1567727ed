//! A segment written in a newer format version is refused in every
//! recovery mode, with an error naming it and both versions, and nothing
//! in the directory changes: the salvage modes must not set aside (and no
//! mode remove, as an interrupted creation) what a newer build wrote.

use std::collections::BTreeMap;
use std::path::Path;

mod common;

use common::{segment_names, small_segments};
use wal_engine::{RecoveryMode, Wal, WalError, segment_name};
use wal_format::FORMAT_VERSION;

const MODES: [RecoveryMode; 4] = [
    RecoveryMode::TolerateTornTail,
    RecoveryMode::AbsoluteConsistency,
    RecoveryMode::PointInTime,
    RecoveryMode::SkipCorrupted,
];

/// Every file's name and bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// Rewrites a segment header's version and first LSN, with a valid CRC:
/// what a newer build's header would look like to this one.
fn restamp(header: &mut [u8], version: u16, first_lsn: u64) {
    header[8..10].copy_from_slice(&version.to_le_bytes());
    header[32..40].copy_from_slice(&first_lsn.to_le_bytes());
    let crc = crc32c::crc32c(&header[..60]);
    header[60..64].copy_from_slice(&crc.to_le_bytes());
}

/// A log over several segments, closed.
fn build(dir: &Path) -> u64 {
    let (wal, _) = Wal::open(dir, small_segments()).unwrap();
    for i in 0..1000u32 {
        wal.commit(format!("record {i}").repeat(20).as_bytes())
            .unwrap();
    }
    let next = wal.appended_lsn() + 1;
    drop(wal);
    assert!(segment_names(dir).len() > 2);
    next
}

fn assert_refused(dir: &Path, segment: &str) {
    let before = snapshot(dir);
    for mode in MODES {
        let mut options = small_segments();
        options.recovery = mode;
        match Wal::open(dir, options) {
            Err(WalError::NewerFormat {
                segment: s,
                version,
                supported,
            }) => {
                assert_eq!(s, segment, "{mode:?}");
                assert_eq!(version, FORMAT_VERSION + 1, "{mode:?}");
                assert_eq!(supported, FORMAT_VERSION, "{mode:?}");
            }
            Err(e) => panic!("{mode:?}: {e}"),
            Ok(_) => panic!("{mode:?}: a newer segment was opened"),
        }
        assert_eq!(snapshot(dir), before, "{mode:?} changed the directory");
    }
}

#[test]
fn a_newer_segment_with_records_is_refused_and_left_alone() {
    for which in ["first", "last"] {
        let dir = tempfile::tempdir().unwrap();
        build(dir.path());
        let names = segment_names(dir.path());
        let name = if which == "first" {
            &names[0]
        } else {
            names.last().unwrap()
        };
        let path = dir.path().join(name);
        let mut bytes = std::fs::read(&path).unwrap();
        let first = u64::from_le_bytes(bytes[32..40].try_into().unwrap());
        restamp(&mut bytes[..64], FORMAT_VERSION + 1, first);
        std::fs::write(&path, &bytes).unwrap();
        assert_refused(dir.path(), name);
    }
}

#[test]
fn a_newer_empty_last_segment_is_not_removed_as_an_interrupted_creation() {
    let dir = tempfile::tempdir().unwrap();
    let next = build(dir.path());
    let first = std::fs::read(dir.path().join(segment_name(1))).unwrap();
    let mut header = first[..64].to_vec();
    restamp(&mut header, FORMAT_VERSION + 1, next);
    header.resize(4096, 0);
    std::fs::write(dir.path().join(segment_name(next)), &header).unwrap();
    assert_refused(dir.path(), &segment_name(next));
}

#[test]
fn a_newer_segment_after_damage_is_not_set_aside_by_a_point_in_time_cut() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let names = segment_names(dir.path());
    // Damage in the first segment (a point-in-time recovery would cut
    // there and set aside everything after)...
    let first = dir.path().join(&names[0]);
    let mut bytes = std::fs::read(&first).unwrap();
    bytes[200] ^= 0x40;
    std::fs::write(&first, &bytes).unwrap();
    // ...and a newer build's segment at the end.
    let last = names.last().unwrap();
    let path = dir.path().join(last);
    let mut bytes = std::fs::read(&path).unwrap();
    let lsn = u64::from_le_bytes(bytes[32..40].try_into().unwrap());
    restamp(&mut bytes[..64], FORMAT_VERSION + 1, lsn);
    std::fs::write(&path, &bytes).unwrap();
    assert_refused(dir.path(), last);
}

#[test]
fn a_flipped_version_is_damage_not_a_newer_format() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let names = segment_names(dir.path());
    let path = dir.path().join(&names[1]);
    let mut bytes = std::fs::read(&path).unwrap();
    // The version changed, the checksum not: a flipped bit.
    bytes[8..10].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    match Wal::open(dir.path(), small_segments()) {
        Err(WalError::Corrupt { segment, .. }) => assert_eq!(segment, names[1]),
        Err(e) => panic!("expected corruption, got {e}"),
        Ok(_) => panic!("a damaged header was opened"),
    }
    // A salvage mode may set it aside, as it does any damaged segment.
    let mut options = small_segments();
    options.recovery = RecoveryMode::SkipCorrupted;
    let (_, report) = Wal::open(dir.path(), options).unwrap();
    assert!(
        report.discarded.iter().any(|d| d.starts_with(&names[1])),
        "{report:?}"
    );
}
