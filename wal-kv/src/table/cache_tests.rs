//! The block cache's bound and eviction order, through a table's reads.

use std::sync::atomic::Ordering;

use super::*;

/// Table `id` of 2000 keys in blocks of about 512 bytes (over a hundred
/// blocks), uncompressed, each key's value naming it.
fn table(storage: &dyn Storage, id: u64, cache: &Arc<BlockCache>) -> Table {
    let mut b = TableBuilder::create(storage, id, TableCompression::None, 512).unwrap();
    for i in 0..2000u64 {
        b.add(&Entry {
            key: key(i),
            lsn: 1,
            value: Some(Bytes::from(format!("value {i}"))),
        })
        .unwrap();
    }
    b.finish(id, Arc::clone(cache)).unwrap()
}

fn key(i: u64) -> Bytes {
    Bytes::from(format!("key{i:08}"))
}

/// Reads key `i`, checks its value, and says whether it read a block.
fn read(t: &Table, cache: &BlockCache, i: u64) -> bool {
    let before = cache.reads.load(Ordering::Relaxed);
    let k = key(i);
    let v = t.get(&k, bloom::key_hash(&k), 1).unwrap();
    assert_eq!(v, Some(Some(Bytes::from(format!("value {i}")))));
    cache.reads.load(Ordering::Relaxed) > before
}

/// The weight of one of the table's blocks (all are about alike).
fn block_weight(t: &Table) -> u64 {
    t.read_and_keep(1, false).unwrap().weight()
}

/// A key of each block: the first key of block `b` is key `first[b]`.
fn first_keys(t: &Table) -> Vec<u64> {
    let mut firsts = Vec::new();
    let mut block = usize::MAX;
    for i in 0..2000 {
        let b = t.block_for(&key(i));
        if b != block {
            firsts.push(i);
            block = b;
        }
    }
    assert_eq!(firsts.len(), t.block_count());
    firsts
}

/// A simulated disk with table 2 of [`table`] on it, and the cache it
/// reads through, of `capacity` (given one block's weight) bytes.
struct Setup {
    /// Holds the files.
    storage: Arc<dyn Storage>,
    cache: Arc<BlockCache>,
    t: Table,
    capacity: u64,
}

fn setup(seed: u64, capacity: impl FnOnce(u64) -> u64) -> Setup {
    let storage = wal_io::sim::SimDisk::new(seed).storage();
    let weight = block_weight(&table(&*storage, 1, &block_cache(0)));
    let capacity = capacity(weight);
    let cache = block_cache(capacity);
    let t = table(&*storage, 2, &cache);
    Setup {
        storage,
        cache,
        t,
        capacity,
    }
}

#[test]
fn the_cache_holds_no_more_than_its_bytes() {
    let Setup {
        storage,
        cache,
        t,
        capacity,
    } = setup(21, |block| 10 * block);
    let tables = [t, table(&*storage, 3, &cache)];
    let mut most = 0;
    for i in (0..2000).step_by(7) {
        for t in &tables {
            read(t, &cache, i);
            let bytes = cache.audit(&[&tables[0].slots, &tables[1].slots]);
            assert!(bytes <= capacity, "{bytes} cached, capacity {capacity}");
            most = most.max(bytes);
        }
    }
    assert!(
        most > capacity / 2,
        "the cache is used: {most} of {capacity}"
    );
}

#[test]
fn a_scan_does_not_evict_the_blocks_reads_come_back_to() {
    let Setup { cache, t, .. } = setup(22, |block| 20 * block);
    let t = Arc::new(t);
    let firsts = first_keys(&t);
    assert!(firsts.len() > 100, "{} blocks", firsts.len());
    // Five hot blocks, read and then found in the cache.
    let hot: Vec<u64> = firsts.iter().step_by(20).take(5).copied().collect();
    for _ in 0..2 {
        for &k in &hot {
            read(&t, &cache, k);
        }
    }
    // A scan through every block, each read once, five times the cache.
    let scanned = t
        .iter(Bound::Unbounded, Bound::Unbounded, true, false)
        .count();
    assert_eq!(scanned, 2000);
    for &k in &hot {
        assert!(!read(&t, &cache, k), "hot key {k} was evicted by the scan");
    }
    cache.audit(&[&t.slots]);
}

#[test]
fn a_block_evicted_early_and_read_again_is_kept_over_a_scan() {
    let Setup { cache, t, .. } = setup(23, |block| 20 * block);
    let firsts = first_keys(&t);
    // Read once, then pushed out of the small queue by 30 other blocks:
    // a ghost. Read again, it goes to the main queue, which a scan of
    // blocks read once leaves alone.
    let (ghost, others) = (firsts[0], &firsts[1..31]);
    assert!(read(&t, &cache, ghost));
    for &k in others {
        read(&t, &cache, k);
    }
    assert!(read(&t, &cache, ghost), "evicted by 30 blocks into 20");
    for &k in &firsts[40..] {
        read(&t, &cache, k);
    }
    assert!(!read(&t, &cache, ghost), "a ghost read again is kept");
    cache.audit(&[&t.slots]);
}

#[test]
fn a_dropped_table_takes_its_blocks_out_of_the_cache() {
    let Setup {
        storage,
        cache,
        t: kept,
        ..
    } = setup(24, |_| 1 << 20);
    let dropped = table(&*storage, 3, &cache);
    for i in (0..2000).step_by(50) {
        read(&kept, &cache, i);
        read(&dropped, &cache, i);
    }
    let both = cache.audit(&[&kept.slots, &dropped.slots]);
    drop(dropped);
    let left = cache.audit(&[&kept.slots]);
    assert!(left > 0 && left < both, "{left} of {both} bytes left");
    // The kept table's blocks are all still cached.
    for i in (0..2000).step_by(50) {
        assert!(!read(&kept, &cache, i));
    }
}

#[test]
fn the_main_queue_keeps_blocks_with_hits_over_blocks_without() {
    let Setup { cache, t, .. } = setup(26, |block| 20 * block);
    let firsts = first_keys(&t);
    let (kept, others) = (&firsts[..10], &firsts[10..40]);
    // Ten blocks with hits, moved to the main queue as thirty others
    // pass through the small one; twenty of those become ghosts.
    for &k in kept.iter().chain(kept) {
        read(&t, &cache, k);
    }
    for &k in others {
        read(&t, &cache, k);
    }
    // Hit again, then ten ghosts read again go to the main queue behind
    // them and fill it: the main queue must now evict, and the two it
    // evicts are ghosts read again (no hits), not the blocks ahead of
    // them, whose hits buy each one more turn.
    for &k in kept {
        assert!(!read(&t, &cache, k), "moved to the main queue, not evicted");
    }
    for &k in &others[..10] {
        assert!(read(&t, &cache, k), "a ghost, read again");
    }
    for &k in kept {
        assert!(!read(&t, &cache, k), "block {k} had a hit and was evicted");
    }
    cache.audit(&[&t.slots]);
}

#[test]
fn a_block_heavier_than_the_cache_is_not_kept() {
    let Setup { cache, t, .. } = setup(27, |block| block / 2);
    for _ in 0..3 {
        assert!(read(&t, &cache, 0), "read from the file every time");
    }
    assert_eq!(cache.audit(&[&t.slots]), 0);
}

#[test]
fn eviction_passes_over_a_block_being_read() {
    let Setup {
        cache, t, capacity, ..
    } = setup(28, |block| 10 * block);
    let firsts = first_keys(&t);
    read(&t, &cache, firsts[0]);
    let i = t.block_for(&key(firsts[0]));
    // While this thread holds block 0, its own reads push 50 blocks
    // through a cache of 10. Waiting for block 0 would never end, so the
    // reads run on a thread of their own, watched by a deadline.
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        let held = t.slots.with_cached(i, |_| {
            let (t, cache, firsts) = (&t, &cache, &firsts);
            let reader = s.spawn(move || {
                for &k in &firsts[1..51] {
                    read(t, cache, k);
                }
                done.send(()).expect("the test waits");
            });
            let ended = finished.recv_timeout(std::time::Duration::from_secs(30));
            assert!(ended.is_ok(), "eviction waited for a block being read");
            reader.join().expect("the reads end");
        });
        assert!(held.is_some(), "block 0 was cached");
    });
    assert!(cache.audit(&[&t.slots]) <= capacity);
}

#[test]
fn readers_racing_evictions_read_every_value_right() {
    let Setup {
        cache, t, capacity, ..
    } = setup(25, |block| 8 * block);
    std::thread::scope(|s| {
        for thread in 0..4u64 {
            let (t, cache) = (&t, &cache);
            s.spawn(move || {
                for n in 0..3000u64 {
                    // Each thread walks the keys in its own order.
                    read(t, cache, (n * (thread * 2 + 7) + thread) % 2000);
                }
            });
        }
    });
    assert!(cache.audit(&[&t.slots]) <= capacity);
}

/// Two readers that miss the same block both read it and both offer it.
#[test]
fn a_block_offered_twice_is_cached_and_weighed_once() {
    let Setup { cache, t, .. } = setup(29, |_| 1 << 20);
    let (first, second) = (
        t.read_and_keep(3, false).unwrap(),
        t.read_and_keep(3, false).unwrap(),
    );
    cache.insert(&t.slots, 3, &first);
    let once = cache.audit(&[&t.slots]);
    cache.insert(&t.slots, 3, &second);
    assert_eq!(cache.audit(&[&t.slots]), once);
    let cached = t.slots.cached(3).expect("cached");
    assert!(Arc::ptr_eq(&cached, &first), "the first one offered stays");
}
