//! Every frame carries the time it was written (format version 4), from the
//! log's clock, and the times never go backwards within a log: not when the
//! clock steps back, not across a reopen.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

mod common;

use common::{segment_names, small_segments};
use wal_engine::{Clock, Wal};

/// (first LSN, time) of every records frame, in order.
fn frame_times(dir: &Path) -> Vec<(u64, Option<u64>)> {
    let mut out = Vec::new();
    for name in segment_names(dir) {
        let data = bytes::Bytes::from(std::fs::read(dir.join(name)).unwrap());
        for f in wal_format::SegmentScanner::new(data).unwrap() {
            if f.kind() == wal_format::FrameKind::Records {
                out.push((f.first_lsn(), f.timestamp_us()));
            }
        }
    }
    out
}

#[test]
fn times_follow_the_clock_but_never_go_back() {
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicU64::new(1_000));
    let options = || {
        let mut o = small_segments();
        let now = Arc::clone(&now);
        o.clock = Clock::new(move || now.load(Ordering::SeqCst));
        o
    };
    let (wal, _) = Wal::open(dir.path(), options()).unwrap();
    wal.commit(b"one").unwrap();
    now.store(2_000, Ordering::SeqCst);
    wal.commit(b"two").unwrap();
    // The clock steps back: the frame keeps the last time.
    now.store(500, Ordering::SeqCst);
    wal.commit(b"three").unwrap();
    wal.close().unwrap();

    // Reopened with a clock further back still.
    now.store(100, Ordering::SeqCst);
    let (wal, report) = Wal::open(dir.path(), options()).unwrap();
    assert_eq!(report.last_timestamp_us, Some(2_000));
    wal.commit(b"four").unwrap();
    now.store(3_000, Ordering::SeqCst);
    wal.commit(b"five").unwrap();
    wal.close().unwrap();

    assert_eq!(
        frame_times(dir.path()),
        [
            (1, Some(1_000)),
            (2, Some(2_000)),
            (3, Some(2_000)),
            (4, Some(2_000)),
            (5, Some(3_000)),
        ]
    );
}

#[test]
fn the_default_clock_is_the_system_s() {
    let dir = tempfile::tempdir().unwrap();
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros();
    let (wal, _) = Wal::open(dir.path(), small_segments()).unwrap();
    wal.commit(b"now").unwrap();
    wal.close().unwrap();
    let after = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros();
    let times = frame_times(dir.path());
    let t = u128::from(times[0].1.unwrap());
    assert!(
        (before..=after).contains(&t),
        "{t} not in {before}..={after}"
    );
}

#[test]
fn records_a_truncation_carries_keep_their_time() {
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicU64::new(5_000));
    let mut options = small_segments();
    let seen = Arc::clone(&now);
    options.clock = Clock::new(move || seen.load(Ordering::SeqCst));
    let (wal, _) = Wal::open(dir.path(), options).unwrap();
    wal.commit(b"before").unwrap();
    wal.append_batch(&[&b"a"[..], b"b", b"c"]).unwrap();
    wal.wait_durable(4).unwrap();
    now.store(9_000, Ordering::SeqCst);
    // Cut inside the batch's frame: a and b are carried into a new segment.
    wal.truncate_back(3).unwrap();
    wal.close().unwrap();
    let times = frame_times(dir.path());
    assert_eq!(times.last(), Some(&(2, Some(5_000))), "{times:?}");
}
