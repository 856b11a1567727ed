//! With a purge hold, `truncate_front` removes no segment holding an LSN
//! the hold has not released, says how many it kept, and removes them once
//! they are released.

mod common;

use common::{segment_names, small_segments};
use wal_engine::{PurgeHold, Wal};

#[test]
fn segments_stay_until_released() {
    let dir = tempfile::tempdir().unwrap();
    let hold = PurgeHold::new();
    let mut options = small_segments();
    options.purge_hold = Some(hold.clone());
    options.recycle_segments = false;
    let (wal, _) = Wal::open(dir.path(), options).unwrap();
    for i in 0..1000u32 {
        wal.commit(format!("record {i}").repeat(20).as_bytes())
            .unwrap();
    }
    let names = segment_names(dir.path());
    assert!(names.len() >= 4, "{names:?}");
    let starts: Vec<u64> = names
        .iter()
        .map(|n| wal_engine::parse_segment_name(n).unwrap())
        .collect();

    // Nothing released: a checkpoint covering everything purges nothing.
    assert_eq!(wal.truncate_front(1000).unwrap(), 0);
    assert_eq!(segment_names(dir.path()), names);
    assert_eq!(wal.stats().segments_held, names.len() as u64 - 1);

    // The first segment released, up to its last LSN: it alone goes.
    hold.release_through(starts[1] - 1);
    assert_eq!(wal.truncate_front(1000).unwrap(), 1);
    assert_eq!(segment_names(dir.path()), names[1..]);
    assert_eq!(wal.stats().segments_held, names.len() as u64 - 2);

    // Released short of a segment's end: that segment stays.
    hold.release_through(starts[2] + 1);
    assert_eq!(wal.truncate_front(1000).unwrap(), 1);
    assert_eq!(segment_names(dir.path()), names[2..]);

    // Everything released: the purge goes as far as it was asked.
    hold.release_through(u64::MAX);
    assert_eq!(wal.truncate_front(starts[3]).unwrap(), 1);
    assert_eq!(segment_names(dir.path()), names[3..]);
    assert_eq!(wal.stats().segments_held, 0);
    assert_eq!(wal.first_lsn(), starts[3]);
}
