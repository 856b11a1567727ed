//! Model-based power-loss test of the store on the simulated disk: random
//! batches (durable and buffered), gets, scans, snapshots, checkpoints and
//! compactions (also triggered in the background by a tiny memtable), crashes
//! of every kind the simulator offers, reopens. After each reopen the store
//! must equal the model after some prefix of the batches that includes every
//! acknowledged one: nothing acknowledged lost, nothing half-applied.
//!
//! `WAL_KV_CRASHES` sets the number of crashes (default 3000), `WAL_KV_SEED`
//! one seed to rerun. Background work makes the timing of a crash relative to
//! a checkpoint vary between runs of one seed; the operations do not.
// Random numbers are reduced below small bounds: casts cannot truncate.
#![allow(clippy::cast_possible_truncation)]

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;
use wal_io::sim::{CrashMode, SimDisk};
use wal_kv::{Durability, Options, Store, TableCompression, WriteBatch};

type Model = BTreeMap<Bytes, Bytes>;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn options(seed: u64) -> Options {
    let mut o = Options::default();
    o.memtable_bytes_max = 4096;
    o.block_bytes = 256;
    o.compaction_trigger = 2;
    if seed % 2 == 1 {
        // Levels so small that data moves down to level 3 and beyond.
        o.table_bytes_max = 4096;
        o.level1_bytes_target = 4096;
        o.level_size_ratio = 2;
    }
    // No cache, one that keeps evicting, and one that holds everything.
    o.block_cache_bytes = [0, 2048, 1 << 20][(seed / 3 % 3) as usize];
    o.compression = match seed % 3 {
        0 => TableCompression::None,
        1 => TableCompression::Lz4,
        _ => TableCompression::Snappy,
    };
    o.log.queue_bytes_max = 16 << 10;
    o.log.record_bytes_max = 8 << 10;
    o.log.segment_bytes = 64 << 10;
    o.log.prepare_segments = seed.is_multiple_of(2);
    o.log.identity_seed = Some(seed);
    o
}

/// Few keys make many versions of each; more keys make the levels deep.
fn key_count(o: &Options) -> u64 {
    if o.level1_bytes_target == 4096 {
        400
    } else {
        40
    }
}

fn key(rng: &mut Rng, keys: u64) -> Bytes {
    Bytes::from(format!("key{:03}", rng.below(keys)))
}

fn apply(model: &mut Model, batch: &WriteBatch) {
    for op in batch.ops() {
        match op {
            wal_kv::Op::Put { key, value } => {
                model.insert(key.clone(), value.clone());
            }
            wal_kv::Op::Delete { key } => {
                model.remove(key);
            }
            _ => unreachable!("only puts and deletes exist"),
        }
    }
}

fn everything(store: &Store) -> Vec<(Bytes, Bytes)> {
    store.scan(Bound::Unbounded, Bound::Unbounded).unwrap()
}

fn as_vec(model: &Model) -> Vec<(Bytes, Bytes)> {
    model.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn run_seed(seed: u64, crashes: u64) {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let disk = SimDisk::new(seed);
    let opts = options(seed);
    let keys = key_count(&opts);
    let mut store = Store::open_with(disk.storage(), opts.clone()).unwrap();
    // The model after the last batch known durable, and every batch since.
    let mut durable: Model = Model::new();
    let mut since: Vec<WriteBatch> = Vec::new();
    let mut current: Model = Model::new();
    let mut value_seq = 0u64;
    let mut levels_max = 0;
    for crash in 0..crashes {
        let steps = 5 + rng.below(30);
        for _ in 0..steps {
            match rng.below(100) {
                0..=54 => {
                    let mut batch = WriteBatch::new();
                    for _ in 0..1 + rng.below(4) {
                        if rng.below(5) == 0 {
                            batch.delete(key(&mut rng, keys));
                        } else {
                            value_seq += 1;
                            let len = rng.below(120) as usize;
                            let mut v = format!("{seed}-{value_seq}-").into_bytes();
                            v.resize(v.len() + len, b'v');
                            batch.put(key(&mut rng, keys), v);
                        }
                    }
                    let sync = rng.below(3) != 0;
                    let mode = if sync {
                        Durability::Sync
                    } else {
                        Durability::Buffered
                    };
                    store.write(&batch, mode).unwrap();
                    apply(&mut current, &batch);
                    if sync {
                        durable = current.clone();
                        since.clear();
                    } else {
                        since.push(batch);
                    }
                }
                55..=69 => {
                    let k = key(&mut rng, keys);
                    assert_eq!(
                        store.get(&k).unwrap(),
                        current.get(&k).cloned(),
                        "seed {seed} crash {crash}: get {k:?}"
                    );
                }
                70..=79 => {
                    let (a, b) = (key(&mut rng, keys), key(&mut rng, keys));
                    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
                    let got = store
                        .scan(Bound::Included(&lo), Bound::Excluded(&hi))
                        .unwrap();
                    let want: Vec<_> = current
                        .range(lo.clone()..hi.clone())
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    assert_eq!(got, want, "seed {seed} crash {crash}: scan");
                    let rev = store
                        .scan_rev(Bound::Included(&lo), Bound::Excluded(&hi))
                        .unwrap();
                    assert_eq!(rev, want.into_iter().rev().collect::<Vec<_>>());
                }
                80..=89 => {
                    // A snapshot holds its view while writes go on.
                    let snap = store.snapshot();
                    let frozen = current.clone();
                    let mut batch = WriteBatch::new();
                    batch
                        .put(key(&mut rng, keys), "later")
                        .delete(key(&mut rng, keys));
                    store.write(&batch, Durability::Buffered).unwrap();
                    apply(&mut current, &batch);
                    since.push(batch);
                    let got = snap.scan(Bound::Unbounded, Bound::Unbounded).unwrap();
                    assert_eq!(got, as_vec(&frozen), "seed {seed} crash {crash}: snapshot");
                    let mut rev = snap.scan_rev(Bound::Unbounded, Bound::Unbounded).unwrap();
                    rev.reverse();
                    assert_eq!(rev, got, "seed {seed} crash {crash}: snapshot reversed");
                }
                90..=95 => store.checkpoint().unwrap(),
                _ => store.compact().unwrap(),
            }
        }
        levels_max = levels_max.max(store.stats().levels.len());
        let mode = CrashMode::CONCRETE[rng.below(CrashMode::CONCRETE.len() as u64) as usize];
        disk.crash(mode);
        drop(store);
        store = Store::open_with(disk.storage(), opts.clone())
            .unwrap_or_else(|e| panic!("seed {seed} crash {crash} ({mode:?}): reopen: {e}"));
        // The store must be the model after some prefix of the batches.
        let got = everything(&store);
        let mut candidate = durable.clone();
        let mut matched = (got == as_vec(&candidate)).then_some(0);
        for (i, batch) in since.iter().enumerate() {
            apply(&mut candidate, batch);
            if got == as_vec(&candidate) {
                matched = Some(i + 1);
            }
        }
        let Some(kept) = matched else {
            panic!(
                "seed {seed} crash {crash} ({mode:?}): the store after reopen is no prefix \
                 of the batches ({} keys; durable model {} keys, {} buffered batches)",
                got.len(),
                durable.len(),
                since.len()
            );
        };
        let mut model = durable.clone();
        for batch in &since[..kept] {
            apply(&mut model, batch);
        }
        durable = model.clone();
        current = model;
        since.clear();
    }
    if opts.level1_bytes_target == 4096 && crashes >= 100 {
        assert!(levels_max >= 3, "seed {seed}: data never reached level 2");
    }
}

#[test]
fn acknowledged_batches_survive_every_crash_whole() {
    let crashes: u64 = std::env::var("WAL_KV_CRASHES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000);
    let seeds: Vec<u64> = match std::env::var("WAL_KV_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(seed) => vec![seed],
        None => (1..=6).collect(),
    };
    let per_seed = crashes.div_ceil(seeds.len() as u64);
    for seed in seeds {
        run_seed(seed, per_seed);
    }
}
