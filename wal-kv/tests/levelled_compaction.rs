//! Levelled compaction keeps the store's shape: level 0 at most
//! `compaction_trigger` tables, each deeper level within its byte target
//! (the deepest excepted) and cut into tables of about `table_bytes_max`,
//! while every read still sees the newest version. A store that merged all
//! tables into one, or never pushed data below level 1, fails these checks.

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;
use wal_kv::{Options, Stats, Store};

const TABLE_BYTES_MAX: u64 = 8 << 10;
const LEVEL1_BYTES: u64 = 32 << 10;
const RATIO: u32 = 4;

fn options() -> Options {
    let mut o = Options::default();
    o.memtable_bytes_max = 16 << 10;
    o.block_bytes = 1024;
    o.compaction_trigger = 3;
    o.table_bytes_max = TABLE_BYTES_MAX;
    o.level1_bytes_target = LEVEL1_BYTES;
    o.level_size_ratio = RATIO;
    o.block_cache_bytes = 64 << 10;
    o
}

fn key(i: u64) -> Bytes {
    // Spread over the key space, so every step overlaps the next level.
    Bytes::from(format!("{:016x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
}

fn check_shape(stats: &Stats, o: &Options) {
    let levels = &stats.levels;
    assert!(
        levels.first().map_or(0, |l| l.tables) <= o.compaction_trigger,
        "level 0 over its trigger: {levels:?}"
    );
    let mut target = LEVEL1_BYTES;
    for (i, level) in levels.iter().enumerate().skip(1) {
        if i + 1 < levels.len() {
            assert!(
                level.bytes <= target,
                "level {i} over {target} B: {levels:?}"
            );
        }
        if level.tables > 0 {
            // A table is cut at the first key after the limit: one entry
            // plus index and filter more at most.
            let per_table = level.bytes / level.tables as u64;
            assert!(per_table <= 2 * TABLE_BYTES_MAX, "level {i}: {levels:?}");
        }
        target *= u64::from(RATIO);
    }
    assert_eq!(
        stats.tables,
        levels.iter().map(|l| l.tables).sum::<usize>(),
        "the total counts every level"
    );
}

#[test]
fn levels_keep_their_shape_and_reads_their_values() {
    let dir = tempfile::tempdir().unwrap();
    let o = options();
    let store = Store::open(dir.path(), o.clone()).unwrap();
    let mut model: BTreeMap<Bytes, Bytes> = BTreeMap::new();
    let value = |i: u64, round: u64| Bytes::from(format!("{round}:{i}:{}", "v".repeat(80)));
    // Three rounds over the same keys: overwrites and deletes must shadow
    // versions in deeper levels.
    for round in 0..3u64 {
        for i in 0..3000u64 {
            if round == 2 && i % 7 == 0 {
                store.delete(key(i)).unwrap();
                model.remove(&key(i));
            } else if round == 0 || i % 3 == round {
                store.put(key(i), value(i, round)).unwrap();
                model.insert(key(i), value(i, round));
            }
        }
        store.wait_idle().unwrap();
        check_shape(&store.stats(), &o);
    }
    let stats = store.stats();
    assert!(
        stats.levels.len() >= 3,
        "data reached level 2 at least: {:?}",
        stats.levels
    );
    assert!(stats.compactions >= 5, "many small steps: {stats:?}");
    let check = |store: &Store| {
        for i in 0..3000u64 {
            assert_eq!(store.get(&key(i)).unwrap(), model.get(&key(i)).cloned());
        }
        let want: Vec<(Bytes, Bytes)> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let all = store.scan(Bound::Unbounded, Bound::Unbounded).unwrap();
        assert_eq!(all, want);
        let rev = store.scan_rev(Bound::Unbounded, Bound::Unbounded).unwrap();
        assert_eq!(rev, want.iter().rev().cloned().collect::<Vec<_>>());
        let (lo, hi) = (Bytes::from("4"), Bytes::from("b8"));
        let part = store
            .scan_rev(Bound::Excluded(&lo), Bound::Included(&hi))
            .unwrap();
        let want_part: Vec<_> = model
            .range::<Bytes, _>((Bound::Excluded(&lo), Bound::Included(&hi)))
            .rev()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert!(!want_part.is_empty());
        assert_eq!(part, want_part);
    };
    check(&store);
    drop(store);
    // The manifest records every level; reopening checks their order.
    let store = Store::open(dir.path(), o.clone()).unwrap();
    assert_eq!(store.stats().levels, stats.levels);
    check(&store);
    // A full compaction leaves one sorted run without tombstones.
    store.checkpoint().unwrap();
    store.compact().unwrap();
    store.wait_idle().unwrap();
    let after = store.stats();
    let used: Vec<usize> = (0..after.levels.len())
        .filter(|&i| after.levels[i].tables > 0)
        .collect();
    assert_eq!(used.len(), 1, "one level in use: {:?}", after.levels);
    assert_eq!(
        after.table_entries,
        model.len() as u64,
        "one version per live key"
    );
    check(&store);
}

#[test]
fn a_table_that_overlaps_nothing_below_moves_down_unwritten() {
    // Ascending keys: every table of level 1 is disjoint from level 2, so
    // pushing it down needs no rewrite.
    let dir = tempfile::tempdir().unwrap();
    let o = options();
    let store = Store::open(dir.path(), o.clone()).unwrap();
    for i in 0..6000u64 {
        store.put(format!("{i:08}"), "x".repeat(100)).unwrap();
    }
    store.wait_idle().unwrap();
    let stats = store.stats();
    check_shape(&stats, &o);
    assert!(stats.levels.len() >= 3, "{:?}", stats.levels);
    // Moves write nothing, so tables written stay near what checkpoints
    // and level-0 merges write, about twice the data.
    let written = stats.table_bytes_written as f64 / stats.table_bytes as f64;
    assert!(written < 3.0, "table bytes written / live: {written:.2}");
    let all = store.scan(Bound::Unbounded, Bound::Unbounded).unwrap();
    assert_eq!(all.len(), 6000);
}

#[test]
fn level_options_out_of_range_are_refused_by_name() {
    type Spoil = fn(&mut Options);
    let cases: [(&str, Spoil); 4] = [
        ("level_size_ratio", |o| o.level_size_ratio = 1),
        ("table_bytes_max", |o| o.table_bytes_max = 100),
        ("level1_bytes_target", |o| o.level1_bytes_target = 4096),
        ("compaction_trigger", |o| o.compaction_trigger = 1),
    ];
    for (field, spoil) in cases {
        let mut o = options();
        spoil(&mut o);
        let disk = wal_io::sim::SimDisk::new(1);
        match Store::open_with(disk.storage(), o) {
            Err(wal_kv::KvError::InvalidOptions(msg)) => {
                assert!(msg.contains(field), "{field}: {msg}");
            }
            other => panic!("{field}: expected InvalidOptions, got {other:?}"),
        }
    }
}
