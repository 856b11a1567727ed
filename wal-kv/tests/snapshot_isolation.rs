//! Many writers and readers at once, with checkpoints and compactions running
//! underneath (a tiny memtable): a snapshot never sees half a batch, and never
//! a write made after it was taken.

use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use wal_kv::{Durability, Options, Store, WriteBatch};

#[test]
fn snapshots_see_whole_batches_and_nothing_later() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = Options::default();
    options.memtable_bytes_max = 8 << 10;
    options.block_bytes = 512;
    options.compaction_trigger = 3;
    let store = Arc::new(Store::open(dir.path(), options).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    const WRITERS: u32 = 4;
    const ROUNDS: u32 = 300;
    std::thread::scope(|s| {
        for w in 0..WRITERS {
            let store = Arc::clone(&store);
            s.spawn(move || {
                for n in 1..=ROUNDS {
                    // One batch sets both halves of a pair to the same value.
                    let value = format!("{n:08}");
                    let mut batch = WriteBatch::new();
                    batch
                        .put(format!("w{w}/a"), value.clone())
                        .put(format!("w{w}/b"), value);
                    let durability = if n % 4 == 0 {
                        Durability::Sync
                    } else {
                        Durability::Buffered
                    };
                    store.write(&batch, durability).unwrap();
                }
            });
        }
        for _ in 0..2 {
            let store = Arc::clone(&store);
            let stop = Arc::clone(&stop);
            s.spawn(move || {
                let mut checks = 0;
                while !stop.load(Ordering::Relaxed) || checks < 10 {
                    let snap = store.snapshot();
                    let first = snap.scan(Bound::Unbounded, Bound::Unbounded).unwrap();
                    for pair in first.chunks(2) {
                        let [(ka, va), (kb, vb)] = pair else {
                            panic!("half a pair visible: {pair:?}");
                        };
                        assert!(ka.ends_with(b"/a") && kb.ends_with(b"/b"), "{ka:?} {kb:?}");
                        assert_eq!(va, vb, "half a batch visible in {ka:?}");
                    }
                    // Writers went on; the snapshot did not move.
                    std::thread::yield_now();
                    let again = snap.scan(Bound::Unbounded, Bound::Unbounded).unwrap();
                    assert_eq!(first, again, "a snapshot saw a later write");
                    for (k, v) in &first {
                        assert_eq!(snap.get(k).unwrap().as_ref(), Some(v));
                    }
                    checks += 1;
                }
            });
        }
        // Stop the readers once every writer is done.
        let store = Arc::clone(&store);
        let stop = Arc::clone(&stop);
        s.spawn(move || {
            while store.log().appended_lsn() < u64::from(WRITERS * ROUNDS) {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            stop.store(true, Ordering::Relaxed);
        });
    });
    let stats = store.stats();
    assert!(stats.checkpoints >= 3, "{stats:?}");
    assert!(stats.compactions >= 1, "{stats:?}");
    for w in 0..WRITERS {
        let last = format!("{ROUNDS:08}");
        assert_eq!(
            store.get(format!("w{w}/a").as_bytes()).unwrap().unwrap(),
            last.as_bytes()
        );
    }
}
