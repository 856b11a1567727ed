//! A store holding far more than its memory limits (memtable and block
//! cache): everything written reads back, by gets and by a streaming scan
//! whose table reads follow the iteration instead of preceding it.

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;
use wal_kv::{Durability, Options, Store, WriteBatch};

const KEYS: u32 = 6000;
const VALUE_BYTES: usize = 1024;

fn options() -> Options {
    let mut o = Options::default();
    o.memtable_bytes_max = 64 << 10;
    o.block_cache_bytes = 64 << 10;
    o.block_bytes = 4096;
    o
}

fn key(i: u32) -> Bytes {
    Bytes::from(format!("key{:08}", i.wrapping_mul(2_654_435_761) % KEYS))
}

fn value(i: u32, round: u32) -> Bytes {
    let mut v = format!("{i}:{round}:").into_bytes();
    v.resize(VALUE_BYTES, b'a' + (i % 26) as u8);
    Bytes::from(v)
}

#[test]
fn data_many_times_the_memory_limits_reads_back_and_scans_lazily() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = BTreeMap::new();
    {
        let store = Store::open(dir.path(), options()).unwrap();
        // Two rounds of overwrites and some deletes, so versions of one key
        // sit in several tables and the memtable.
        for round in 0..2 {
            for chunk in (0..KEYS).collect::<Vec<_>>().chunks(50) {
                let mut b = WriteBatch::new();
                for &i in chunk {
                    if round == 1 && i % 10 == 3 {
                        b.delete(key(i));
                        model.remove(&key(i));
                    } else if round == 0 || i % 2 == 0 {
                        b.put(key(i), value(i, round));
                        model.insert(key(i), value(i, round));
                    }
                }
                store.write(&b, Durability::Sync).unwrap();
            }
        }
        let stats = store.stats();
        let data_bytes = u64::from(KEYS) * VALUE_BYTES as u64;
        assert!(stats.checkpoints > 10, "{stats:?}");
        assert!(stats.table_bytes >= data_bytes / 2, "{stats:?}");
        assert!(stats.memtable_bytes <= 2 * (64 << 10), "{stats:?}");
        store.close().unwrap();
    }

    let store = Store::open(dir.path(), options()).unwrap();
    let tables = store.stats().tables as u64;
    assert!(tables >= 1);
    // The first few pairs of a full scan read about one block per table,
    // not the whole store.
    let before = store.stats().block_reads;
    let first: Vec<(Bytes, Bytes)> = store
        .iter(Bound::Unbounded, Bound::Unbounded)
        .take(3)
        .collect::<Result<_, _>>()
        .unwrap();
    let expected_first: Vec<(Bytes, Bytes)> = model
        .iter()
        .take(3)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(first, expected_first);
    let lazy_reads = store.stats().block_reads - before;
    assert!(
        lazy_reads <= tables,
        "3 pairs read {lazy_reads} blocks over {tables} tables"
    );

    // The whole scan, and a bounded one, match the model.
    let all: Vec<(Bytes, Bytes)> = store
        .iter(Bound::Unbounded, Bound::Unbounded)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(all.len(), model.len());
    assert!(
        all.iter()
            .zip(&model)
            .all(|((k, v), (mk, mv))| k == mk && v == mv)
    );
    assert!(
        store.stats().block_reads - before > 100,
        "the scan read the tables"
    );
    let (lo, hi) = (key(100), key(200));
    let (lo, hi) = if lo < hi { (lo, hi) } else { (hi, lo) };
    let some: Vec<(Bytes, Bytes)> = store
        .iter(Bound::Included(&lo[..]), Bound::Excluded(&hi[..]))
        .collect::<Result<_, _>>()
        .unwrap();
    let expected: Vec<(Bytes, Bytes)> = model
        .range(lo.clone()..hi.clone())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(some, expected);
    let rev = store
        .scan_rev(Bound::Included(&lo[..]), Bound::Excluded(&hi[..]))
        .unwrap();
    assert!(rev.iter().rev().eq(expected.iter()));

    // Every key by a get: the newest value, or absent once deleted.
    for i in 0..KEYS {
        assert_eq!(
            store.get(&key(i)).unwrap(),
            model.get(&key(i)).cloned(),
            "key {i}"
        );
    }
}
