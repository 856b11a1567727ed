//! A store whose log has a purge hold (archiving) keeps every segment the
//! hold has not released through its checkpoints, reopens from them, and
//! purges them once released.

use wal_engine::PurgeHold;
use wal_kv::{Options, Store};

fn segments(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name().into_string().unwrap();
            wal_engine::parse_segment_name(&name).is_some()
        })
        .count()
}

#[test]
fn checkpoints_purge_only_what_the_hold_released() {
    let dir = tempfile::tempdir().unwrap();
    let hold = PurgeHold::new();
    let options = || {
        let mut o = Options::default();
        o.log.segment_bytes = 64 << 10;
        o.log.queue_bytes_max = 8 << 10;
        o.log.record_bytes_max = 4 << 10;
        o.log.recycle_segments = false;
        o.log.purge_hold = Some(hold.clone());
        o
    };
    let store = Store::open(dir.path(), options()).unwrap();
    for i in 0..2000u32 {
        store.put(format!("key{i:05}"), vec![b'v'; 64]).unwrap();
    }
    let before = segments(dir.path());
    assert!(before >= 3, "{before}");
    store.checkpoint().unwrap();
    assert_eq!(
        segments(dir.path()),
        before,
        "a checkpoint purged unreleased segments"
    );
    store.close().unwrap();

    // They reopen, and the data is whole.
    let store = Store::open(dir.path(), options()).unwrap();
    assert_eq!(
        store.get(b"key00000").unwrap().as_deref(),
        Some(&[b'v'; 64][..])
    );
    hold.release_through(u64::MAX);
    store.put("one more", "write").unwrap();
    store.checkpoint().unwrap();
    assert!(segments(dir.path()) < before, "released segments stayed");
    assert_eq!(
        store.get(b"key01999").unwrap().as_deref(),
        Some(&[b'v'; 64][..])
    );
    store.close().unwrap();
}
