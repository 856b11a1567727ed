//! Batches that arrive together share a frame only up to
//! `FRAME_FILL_BYTES_MAX`, so a bulk ingest's log is frames that a replay
//! reads in small parts; a single batch larger than that still goes whole
//! into one frame of its own (a batch stays atomic), up to the queue.

mod common;

use common::{frame_ends, segment_names};
use std::time::Duration;

use wal_engine::{FRAME_FILL_BYTES_MAX, Options, SyncPolicy, Wal};

#[test]
fn batches_share_a_frame_up_to_the_fill_size_and_a_large_batch_stays_whole() {
    const SMALL_RECORDS: usize = 20_000;
    const BIG_RECORD_BYTES: usize = (1 << 20) - 100;
    let dir = tempfile::tempdir().unwrap();
    let mut o = Options::default();
    // The writer takes a frame only when an appender waits for room (or at
    // a full queue's bytes, which a frame of batches never reaches): frame
    // sizes then depend on the fill size alone, not on timing.
    o.sync = SyncPolicy::Group {
        max_delay: Duration::from_secs(3600),
        max_batch_bytes: o.queue_bytes_max,
    };
    let (wal, _) = Wal::open(dir.path(), o.clone()).unwrap();
    // About 20 MB appended without waiting.
    for i in 0..SMALL_RECORDS {
        wal.append(&[u8::try_from(i % 251).unwrap(); 1000]).unwrap();
    }
    // One batch of about 5 MiB: more than the fill size, less than the queue.
    let big: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; BIG_RECORD_BYTES]).collect();
    let refs: Vec<&[u8]> = big.iter().map(Vec::as_slice).collect();
    let first_big = wal.append_batch(&refs).unwrap().start;
    wal.sync().unwrap();
    drop(wal);

    let mut frames = Vec::new();
    for name in segment_names(dir.path()) {
        let bytes = std::fs::read(dir.path().join(name)).unwrap();
        let mut start = 64;
        for (end, padded) in frame_ends(&bytes) {
            frames.push(end - start);
            start = padded;
        }
    }
    let fill = u64::try_from(FRAME_FILL_BYTES_MAX).unwrap();
    let over: Vec<u64> = frames.iter().copied().filter(|&len| len > fill).collect();
    assert_eq!(
        over.len(),
        1,
        "only the big batch's frame passes the fill size: {over:?}"
    );
    assert!(
        over[0] >= 5 * BIG_RECORD_BYTES as u64,
        "the big batch is one frame: {over:?}"
    );
    assert!(
        frames.len() >= 10,
        "20 MB in frames of at most 2 MiB: {frames:?}"
    );

    // Everything reads back, the big batch whole.
    let (wal, _) = Wal::open(dir.path(), o).unwrap();
    let all = common::records(&wal);
    assert_eq!(all.len(), SMALL_RECORDS + 5);
    for (k, (lsn, data)) in all[SMALL_RECORDS..].iter().enumerate() {
        assert_eq!(*lsn, first_big + k as u64);
        assert_eq!(data, &big[k]);
    }
}
