//! T2 on real segment files: damage at the tail is cut to the exact
//! expected prefix and never comes back; damage in the middle is refused in
//! the default mode and salvaged only when asked.
// Test sizes and counts are small: casts between integer widths cannot truncate.
#![allow(clippy::cast_possible_truncation)]

use std::path::Path;

mod common;

use common::{frame_ends, records, segment_names, small_segments};
use wal_engine::{RecoveryMode, Wal, WalError, segment_name};

fn record(i: u64) -> Vec<u8> {
    format!("<{i}>").repeat(20 + (i % 13) as usize).into_bytes()
}

/// A log of `n` records, one frame each, all durable; returns the
/// (unpadded, padded) end offsets of every frame in the first segment.
fn build(dir: &Path, n: u64) -> Vec<(u64, u64)> {
    let (wal, _) = Wal::open(dir, small_segments()).unwrap();
    for i in 1..=n {
        wal.commit(&record(i)).unwrap();
    }
    drop(wal);
    frame_ends(&std::fs::read(dir.join(segment_name(1))).unwrap())
}

fn check_prefix(wal: &Wal, n: u64) {
    let got = records(wal);
    assert_eq!(got.len() as u64, n);
    for (lsn, data) in got {
        assert_eq!(data, record(lsn), "LSN {lsn}");
    }
}

/// Truncate the segment at every byte of its last three frames: recovery
/// keeps exactly the whole frames, and the log goes on from there.
#[test]
fn truncation_at_every_byte_of_the_tail_keeps_exactly_the_whole_frames() {
    let template = tempfile::tempdir().unwrap();
    let ends = build(template.path(), 12);
    let seg = segment_name(1);
    let original = std::fs::read(template.path().join(&seg)).unwrap();
    let from = ends[ends.len() - 4].1;
    let to = ends[ends.len() - 1].1;
    for cut in from..=to {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(&seg), &original[..cut as usize]).unwrap();
        let whole = ends.iter().filter(|&&(body, _)| body <= cut).count() as u64;
        let (wal, report) =
            Wal::open(dir.path(), small_segments()).unwrap_or_else(|e| panic!("cut {cut}: {e}"));
        assert_eq!(report.next_lsn, whole + 1, "cut {cut}");
        check_prefix(&wal, whole);
        // Cut on a frame boundary or inside a frame's zero padding: clean.
        // So is a cut that leaves only zero bytes of the next frame (its CRC
        // may start with a zero byte: identities are random, so CRCs vary).
        let kept = ends
            .iter()
            .filter(|&&(body, _)| body <= cut)
            .map(|&(body, _)| body)
            .max()
            .unwrap_or(64);
        let boundary = original[kept as usize..cut as usize]
            .iter()
            .all(|&b| b == 0);
        assert_eq!(
            report.cuts.is_empty(),
            boundary,
            "cut {cut}: {:?}",
            report.cuts
        );
        // The log continues right after the kept prefix, and stays consistent.
        assert_eq!(wal.commit(&record(whole + 1)).unwrap(), whole + 1);
        drop(wal);
        let (wal, report) = Wal::open(dir.path(), small_segments()).unwrap();
        assert!(report.cuts.is_empty(), "cut {cut}: {:?}", report.cuts);
        check_prefix(&wal, whole + 1);
    }
}

/// A hole in the last write followed by a frame of a write that was in
/// flight: a torn tail. The later frame is cut away for good: appending
/// records of the same sizes again must never resurrect it.
#[test]
fn frames_after_a_torn_write_are_cut_and_never_resurrected() {
    let dir = tempfile::tempdir().unwrap();
    let ends = build(dir.path(), 10);
    // A crash, not a clean close: the clean-close record would vouch for
    // frame 9 (tests/clean_close_evidence.rs).
    std::fs::remove_file(dir.path().join(wal_engine::CLEAN_CLOSE_NAME)).unwrap();
    let path = dir.path().join(segment_name(1));
    let mut bytes = std::fs::read(&path).unwrap();
    // Frames 9 and 10 were in flight together; 9's first sector never
    // landed. Frame 10 records LSN 8 as durable, as a writer with both in
    // flight would (re-encoded here: these frames were written one by one).
    let nine = ends[7].1 as usize;
    let ten = ends[8].1 as usize;
    let segment_id = u64::from_le_bytes(bytes[24..32].try_into().unwrap());
    // The frame's commit time, right after its header, kept as it was.
    let time = u64::from_le_bytes(bytes[ten + 48..ten + 56].try_into().unwrap());
    let mut frame = Vec::new();
    wal_format::FrameEncoder::new(wal_format::Compression::NONE)
        .encode_timestamped(&mut frame, segment_id, 10, 8, time, [&record(10)[..]])
        .unwrap();
    assert_eq!(frame.len(), ends[9].1 as usize - ten);
    bytes[ten..ten + frame.len()].copy_from_slice(&frame);
    bytes[nine..nine + 48].fill(0);
    std::fs::write(&path, &bytes).unwrap();
    let (wal, report) = Wal::open(dir.path(), small_segments()).unwrap();
    assert_eq!(report.next_lsn, 9);
    assert_eq!(report.cuts.len(), 1);
    assert_eq!(report.cuts[0].offset, nine as u64);
    // The same record sizes again: LSN 9 lands where the old 9 was, so an
    // old frame 10 left in place would pass for the next one.
    assert_eq!(wal.commit(&record(9)).unwrap(), 9);
    drop(wal);
    let (wal, report) = Wal::open(dir.path(), small_segments()).unwrap();
    assert_eq!(report.next_lsn, 10, "{report:?}");
    check_prefix(&wal, 9);
}

/// Damage in the middle, vouched for by later frames: refused by default,
/// naming segment and offset; salvaged by the opt-in modes.
#[test]
fn corruption_in_the_middle_is_refused_then_salvaged_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let ends = build(dir.path(), 30);
    let seg = segment_name(1);
    let path = dir.path().join(&seg);
    let mut bytes = std::fs::read(&path).unwrap();
    let victim = ends[9].1 as usize; // frame of LSN 11
    bytes[victim + 60] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();

    for mode in [
        RecoveryMode::TolerateTornTail,
        RecoveryMode::AbsoluteConsistency,
    ] {
        let mut o = small_segments();
        o.recovery = mode;
        match Wal::open(dir.path(), o) {
            Err(WalError::Corrupt {
                segment, offset, ..
            }) => {
                assert_eq!(segment, seg);
                assert_eq!(offset, victim as u64);
            }
            other => panic!("{mode:?}: expected corruption, got {other:?}"),
        }
    }
    // Refusing changed nothing: the bytes are as they were.
    assert_eq!(std::fs::read(&path).unwrap(), bytes);

    let copy = tempfile::tempdir().unwrap();
    std::fs::write(copy.path().join(&seg), &bytes).unwrap();
    let mut o = small_segments();
    o.recovery = RecoveryMode::SkipCorrupted;
    let (wal, report) = Wal::open(copy.path(), o).unwrap();
    // In the last segment the skipped rest is the tail: cut, and the log
    // continues after the last good record.
    assert_eq!(report.next_lsn, 11, "{report:?}");
    assert!(report.cuts[0].reason.contains("skipped"), "{report:?}");
    drop(wal);

    let mut o = small_segments();
    o.recovery = RecoveryMode::PointInTime;
    let (wal, report) = Wal::open(dir.path(), o).unwrap();
    assert_eq!(report.next_lsn, 11);
    check_prefix(&wal, 10);
    assert_eq!(wal.commit(b"after salvage").unwrap(), 11);
    drop(wal);
    // After point-in-time salvage the default mode opens cleanly.
    let (wal, report) = Wal::open(dir.path(), small_segments()).unwrap();
    assert!(report.cuts.is_empty(), "{report:?}");
    assert_eq!(report.next_lsn, 12);
    drop(wal);
}

/// A missing segment in the middle of the log is corruption, not a tail.
#[test]
fn a_missing_segment_in_the_middle_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), small_segments()).unwrap();
    for i in 1..=2000u64 {
        wal.append(&record(i)).unwrap();
    }
    wal.sync().unwrap();
    drop(wal);
    let segs = segment_names(dir.path());
    assert!(segs.len() >= 3, "{segs:?}");
    std::fs::remove_file(dir.path().join(&segs[1])).unwrap();
    match Wal::open(dir.path(), small_segments()) {
        Err(WalError::Corrupt {
            segment, detail, ..
        }) => {
            assert_eq!(segment, segs[2]);
            assert!(detail.contains("missing"), "{detail}");
        }
        other => panic!("expected corruption, got {other:?}"),
    }
}

/// Salvage of damage in an earlier segment leaves a gap that the report
/// names and readers step over, every record they return being intact.
#[test]
fn skip_corrupted_leaves_a_named_gap_that_readers_step_over() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), small_segments()).unwrap();
    for i in 1..=600u64 {
        wal.commit(&record(i)).unwrap();
    }
    drop(wal);
    let path = dir.path().join(segment_name(1));
    let mut bytes = std::fs::read(&path).unwrap();
    let ends = frame_ends(&bytes);
    let victim = ends[99].1 as usize; // the frame of LSN 101
    bytes[victim + 60] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        Wal::open(dir.path(), small_segments()),
        Err(WalError::Corrupt { .. })
    ));

    let mut o = small_segments();
    o.recovery = RecoveryMode::SkipCorrupted;
    let (wal, report) = Wal::open(dir.path(), o).unwrap();
    let second = report.segments[1].first_lsn;
    assert_eq!(report.gaps, vec![(101, second)], "{report:?}");
    assert_eq!(report.next_lsn, 601);
    let got: Vec<(u64, Vec<u8>)> = wal
        .reader(1)
        .unwrap()
        .map(|r| r.map(|r| (r.lsn, r.data.to_vec())))
        .collect::<Result<_, _>>()
        .unwrap();
    let lsns: Vec<u64> = got.iter().map(|(l, _)| *l).collect();
    let expected: Vec<u64> = (1..=100).chain(second..=600).collect();
    assert_eq!(lsns, expected);
    assert!(got.iter().all(|(lsn, data)| *data == record(*lsn)));
}

/// The newest segment's header lost to a crash during its creation: if it
/// never held a record it is removed and reported; if records are in it,
/// the header's loss is corruption.
#[test]
fn a_lost_header_of_the_newest_segment_is_told_apart_from_corruption() {
    for with_records in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path(), small_segments()).unwrap();
        let mut i = 0;
        // Fill the first segment until the log rotates.
        while segment_names(dir.path()).len() < 2 {
            i += 1;
            wal.commit(&record(i)).unwrap();
        }
        let last = wal.appended_lsn();
        let names = segment_names(dir.path());
        let newest = dir.path().join(&names[1]);
        drop(wal);
        // A crash, not a clean close: the clean-close record would vouch
        // for the records of the newest segment either way.
        std::fs::remove_file(dir.path().join(wal_engine::CLEAN_CLOSE_NAME)).unwrap();
        if !with_records {
            // Roll the newest segment back to just after its creation.
            let mut bytes = std::fs::read(&newest).unwrap();
            bytes[64..].fill(0);
            std::fs::write(&newest, &bytes).unwrap();
        }
        let mut bytes = std::fs::read(&newest).unwrap();
        bytes[..64].fill(0x3c); // garbage where the header was
        std::fs::write(&newest, &bytes).unwrap();
        match Wal::open(dir.path(), small_segments()) {
            Ok((wal, report)) => {
                assert!(
                    !with_records,
                    "a segment holding records lost its header: {report:?}"
                );
                assert!(
                    report.cuts.iter().any(|c| c.reason.contains("interrupted")),
                    "{report:?}"
                );
                assert!(report.next_lsn <= last + 1);
                check_prefix(&wal, report.next_lsn - 1);
            }
            Err(e) => {
                assert!(with_records, "an interrupted creation was refused: {e}");
                assert!(matches!(e, WalError::Corrupt { .. }), "{e}");
            }
        }
    }
}

/// A clean reopen leaves the active segment's zero tail alone (a prepared
/// segment's written blocks stay written); only damage is cut.
#[test]
fn a_clean_reopen_cuts_nothing() {
    use wal_io::Op;
    use wal_io::sim::SimDisk;
    let disk = SimDisk::new(3);
    let (wal, _) = Wal::open_with(disk.storage(), small_segments()).unwrap();
    for i in 1..=20u64 {
        wal.commit(&record(i)).unwrap();
    }
    drop(wal);
    let cuts = disk.op_count(Op::SetLen);
    let (wal, report) = Wal::open_with(disk.storage(), small_segments()).unwrap();
    assert!(report.cuts.is_empty(), "{report:?}");
    assert_eq!(disk.op_count(Op::SetLen), cuts, "a clean tail was cut");
    let end = wal.reader(1).unwrap().count();
    assert_eq!(end, 20);
    drop(wal);

    // Junk after the valid end (an interrupted write): cut.
    let storage = disk.storage();
    let file = storage
        .open(&segment_name(1), wal_io::FileOptions::default())
        .unwrap();
    let mut bytes = vec![0u8; file.size().unwrap() as usize];
    file.read_at(0, &mut bytes).unwrap();
    let valid_end = frame_ends(&bytes).last().unwrap().1;
    file.write_at(valid_end, &[&[0x77; 100]]).unwrap();
    file.sync_data().unwrap();
    drop((file, storage));
    let (_wal, report) = Wal::open_with(disk.storage(), small_segments()).unwrap();
    assert_eq!(report.cuts.len(), 1, "{report:?}");
    assert_eq!(
        disk.op_count(Op::SetLen),
        cuts + 1,
        "a torn tail was not cut"
    );
}
