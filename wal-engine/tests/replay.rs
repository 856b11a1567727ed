//! A replay during open (`Wal::open_replaying`) hands out exactly the
//! records a reader would, in LSN order, and keeps every refusal of
//! recovery: damage in the middle still stops the log from opening (C5).
// Test sizes and counts are small: casts between integer widths cannot truncate.
#![allow(clippy::cast_possible_truncation)]

use std::ops::ControlFlow;
use std::path::Path;

mod common;

use common::{frame_ends, segment_names, small_segments};
use wal_engine::{
    Codec, Compression, Options, RecoveryMode, ReplayFrom, Wal, WalError, segment_name,
};

/// Distinct bytes per LSN that barely compress, so compressed logs span
/// segments too.
fn record(i: u64) -> Vec<u8> {
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..60 + i % 97)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn replay(dir: &Path, options: Options, from: ReplayFrom) -> Result<Vec<(u64, Vec<u8>)>, WalError> {
    let mut got = Vec::new();
    let (wal, _) = Wal::open_replaying(dir, options, from, |r| {
        got.push((r.lsn, r.data.to_vec()));
        ControlFlow::Continue(())
    })?;
    // What a reader from the same start yields on the log as it opened.
    let start = match from {
        ReplayFrom::Start => wal.first_lsn(),
        ReplayFrom::Lsn(lsn) => lsn,
    };
    let read: Vec<(u64, Vec<u8>)> = wal
        .reader(start)?
        .map(|r| r.map(|r| (r.lsn, r.data.to_vec())))
        .collect::<Result<_, _>>()?;
    assert_eq!(
        got, read,
        "the replay from {from:?} differs from a reader's"
    );
    Ok(got)
}

/// Many segments, compressed and plain frames, batches, a truncated front
/// and a `truncate_back` whose new segment starts inside an older one (the
/// older one's later records are stale and must not be replayed).
#[test]
fn a_replay_gets_what_a_reader_gets_from_any_start() {
    for codec in [Codec::None, Codec::Lz4] {
        let dir = tempfile::tempdir().unwrap();
        let mut o = small_segments();
        o.compression = Compression {
            codec,
            min_bytes: 0,
        };
        let (wal, _) = Wal::open(dir.path(), o.clone()).unwrap();
        let mut expected: Vec<Vec<u8>> = Vec::new();
        for i in 1..=3000u64 {
            if i % 7 == 0 {
                let batch = [record(i), record(i + 1_000_000)];
                wal.append_batch(&[&batch[0], &batch[1]]).unwrap();
                expected.extend(batch);
            } else {
                wal.append(&record(i)).unwrap();
                expected.push(record(i));
            }
        }
        wal.sync().unwrap();
        let back = 2500u64;
        wal.truncate_back(back).unwrap();
        expected.truncate(back as usize);
        for i in 0..400u64 {
            let r = record(i + 7_000_000);
            wal.append(&r).unwrap();
            expected.push(r);
        }
        wal.sync().unwrap();
        assert!(wal.truncate_front(1000).unwrap() >= 1);
        let first = wal.first_lsn();
        let next = wal.appended_lsn() + 1;
        drop(wal);
        let names = segment_names(dir.path());
        assert!(names.len() >= 4, "{names:?}");

        let all = replay(dir.path(), o.clone(), ReplayFrom::Start).unwrap();
        let lsns: Vec<u64> = all.iter().map(|r| r.0).collect();
        assert_eq!(lsns, (first..next).collect::<Vec<_>>(), "{codec:?}");
        for (lsn, data) in &all {
            assert_eq!(data, &expected[(*lsn - 1) as usize], "{codec:?} LSN {lsn}");
        }
        for from in [first, first + 1, back, back + 1, next - 1, next, next + 10] {
            let got = replay(dir.path(), o.clone(), from.into()).unwrap();
            assert_eq!(
                got.len() as u64,
                next.saturating_sub(from),
                "{codec:?} from {from}"
            );
        }
    }
}

#[test]
fn a_replay_from_below_the_first_lsn_is_purged_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), small_segments()).unwrap();
    for i in 1..=2000u64 {
        wal.append(&record(i)).unwrap();
    }
    wal.sync().unwrap();
    wal.truncate_front(1500).unwrap();
    let first = wal.first_lsn();
    assert!(first > 1);
    drop(wal);
    let before = segment_names(dir.path());
    let mut seen = 0;
    let result = Wal::open_replaying(dir.path(), small_segments(), 1.into(), |_| {
        seen += 1;
        ControlFlow::Continue(())
    });
    match result {
        Err(WalError::Purged { lsn: 1, first: f }) => assert_eq!(f, first),
        other => panic!("expected Purged, got {other:?}"),
    }
    assert_eq!(seen, 0);
    assert_eq!(segment_names(dir.path()), before);
    // LSN 0 was never assigned: an empty log starts at 1.
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        Wal::open_replaying(empty.path(), small_segments(), 0.into(), |_| {
            ControlFlow::Continue(())
        }),
        Err(WalError::Purged { lsn: 0, first: 1 })
    ));
    assert!(
        replay(empty.path(), small_segments(), ReplayFrom::Start)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_replay_that_breaks_gets_no_more_and_the_log_still_opens() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), small_segments()).unwrap();
    for i in 1..=2000u64 {
        wal.append(&record(i)).unwrap();
    }
    drop(wal);
    let mut got = Vec::new();
    let (wal, report) = Wal::open_replaying(dir.path(), small_segments(), ReplayFrom::Start, |r| {
        got.push(r.lsn);
        if got.len() == 10 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .unwrap();
    assert_eq!(got, (1..=10).collect::<Vec<_>>());
    assert_eq!(report.next_lsn, 2001);
    assert_eq!(wal.reader(1).unwrap().count(), 2000);
    assert_eq!(wal.commit(b"more").unwrap(), 2001);
}

/// C5 holds for a replaying open: damage in an earlier segment followed by
/// later records refuses the open (the replay may have handed out the
/// records before it), and the salvage modes replay what readers read.
#[test]
fn damage_in_the_middle_refuses_a_replaying_open() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), small_segments()).unwrap();
    for i in 1..=600u64 {
        wal.commit(&record(i)).unwrap();
    }
    drop(wal);
    let path = dir.path().join(segment_name(1));
    let mut bytes = std::fs::read(&path).unwrap();
    // The frame of LSN 101 (one per commit) starts where the 100th ends.
    let at = frame_ends(&bytes)[99].1 as usize;
    bytes[at + 60] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let names = segment_names(dir.path());
    assert!(names.len() >= 2);

    for mode in [
        RecoveryMode::TolerateTornTail,
        RecoveryMode::AbsoluteConsistency,
    ] {
        let mut o = small_segments();
        o.recovery = mode;
        let mut seen = Vec::new();
        match Wal::open_replaying(dir.path(), o, ReplayFrom::Start, |r| {
            seen.push(r.lsn);
            ControlFlow::Continue(())
        }) {
            Err(WalError::Corrupt {
                segment, offset, ..
            }) => {
                assert_eq!(segment, segment_name(1), "{mode:?}");
                assert_eq!(offset, at as u64, "{mode:?}");
            }
            other => panic!("{mode:?}: expected corruption, got {other:?}"),
        }
        // Whatever it handed out before refusing was intact and in order.
        assert!(seen.iter().copied().eq(1..=seen.len() as u64), "{mode:?}");
        assert!(seen.len() <= 100, "{mode:?}: replayed past the damage");
    }
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    assert_eq!(segment_names(dir.path()), names);

    let mut o = small_segments();
    o.recovery = RecoveryMode::SkipCorrupted;
    let got = replay(dir.path(), o, ReplayFrom::Start).unwrap();
    assert!(got.iter().all(|(lsn, data)| *data == record(*lsn)));
    assert_eq!(got.first().map(|r| r.0), Some(1));
    assert_eq!(got.last().map(|r| r.0), Some(600));
    assert!(!got.iter().any(|r| r.0 == 101));

    let mut o = small_segments();
    o.recovery = RecoveryMode::PointInTime;
    let got = replay(dir.path(), o, ReplayFrom::Start).unwrap();
    assert_eq!(got.len(), 100);
}

/// A newest segment whose creation was interrupted before its header was
/// synced never held a record and is removed: it must not cut the segment
/// before it short, as a `truncate_back` segment would.
#[test]
fn an_interrupted_segment_creation_does_not_shorten_the_replay() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), small_segments()).unwrap();
    let mut i = 0;
    while segment_names(dir.path()).len() < 2 {
        i += 1;
        wal.commit(&record(i)).unwrap();
    }
    let last = wal.appended_lsn();
    drop(wal);
    // A crash, not a clean close: the clean-close record would vouch for
    // the newest segment's records.
    std::fs::remove_file(dir.path().join(wal_engine::CLEAN_CLOSE_NAME)).unwrap();
    let names = segment_names(dir.path());
    let newest = dir.path().join(&names[1]);
    // Roll the newest segment back to its creation, then lose its header.
    let mut bytes = std::fs::read(&newest).unwrap();
    bytes[64..].fill(0);
    bytes[..64].fill(0x3c);
    std::fs::write(&newest, &bytes).unwrap();
    let got = replay(dir.path(), small_segments(), ReplayFrom::Start).unwrap();
    let lsns: Vec<u64> = got.iter().map(|r| r.0).collect();
    let first_of_newest: u64 = names[1].trim_end_matches(".wal").parse().unwrap();
    assert_eq!(lsns, (1..first_of_newest).collect::<Vec<_>>());
    assert!(first_of_newest <= last + 1);
}
