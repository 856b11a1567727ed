//! Model-based power-loss test of the store on the simulated disk: random
//! batches (durable and buffered), transactions (both isolation levels,
//! sometimes with a write between their reads and their commit that they
//! must or must not conflict with), gets, scans, snapshots, checkpoints and
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
use wal_kv::{Durability, Isolation, KvError, Options, Store, TableCompression, WriteBatch};

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

/// The model after the last batch known durable, every batch since, and
/// the model after all of them.
#[derive(Default)]
struct History {
    durable: Model,
    since: Vec<WriteBatch>,
    current: Model,
}

impl History {
    fn record(&mut self, batch: WriteBatch, durability: Durability) {
        apply(&mut self.current, &batch);
        if durability == Durability::Sync {
            // Everything before a durable batch is durable too.
            self.durable = self.current.clone();
            self.since.clear();
        } else {
            self.since.push(batch);
        }
    }
}

fn durability(rng: &mut Rng) -> Durability {
    if rng.below(3) == 0 {
        Durability::Buffered
    } else {
        Durability::Sync
    }
}

fn value(rng: &mut Rng, seed: u64, value_seq: &mut u64) -> Vec<u8> {
    *value_seq += 1;
    let len = rng.below(120) as usize;
    let mut v = format!("{seed}-{value_seq}-").into_bytes();
    v.resize(v.len() + len, b'v');
    v
}

/// One transaction: its reads checked against the model with its own
/// writes merged in, then (sometimes) a plain write before its commit,
/// which must fail exactly when that write touched a key it wrote or
/// (serializable) read or scanned.
fn transaction_step(
    store: &Store,
    rng: &mut Rng,
    keys: u64,
    h: &mut History,
    seed: u64,
    seq: &mut u64,
) {
    let serializable = rng.below(2) == 0;
    let isolation = if serializable {
        Isolation::Serializable
    } else {
        Isolation::Snapshot
    };
    let mut txn = store.transaction_with(isolation);
    let mut pending: BTreeMap<Bytes, Option<Bytes>> = BTreeMap::new();
    let mut read = Vec::new();
    let view = |pending: &BTreeMap<Bytes, Option<Bytes>>, k: &Bytes| match pending.get(k) {
        Some(v) => v.clone(),
        None => h.current.get(k).cloned(),
    };
    for step in 0..2 + rng.below(4) {
        let k = key(rng, keys);
        if step % 2 == 0 {
            assert_eq!(
                txn.get(&k).unwrap(),
                view(&pending, &k),
                "seed {seed}: txn get {k:?}"
            );
            if !pending.contains_key(&k) {
                read.push(k);
            }
        } else if rng.below(4) == 0 {
            txn.delete(k.clone()).unwrap();
            pending.insert(k, None);
        } else {
            let v = Bytes::from(value(rng, seed, seq));
            txn.put(k.clone(), v.clone()).unwrap();
            pending.insert(k, Some(v));
        }
    }
    let (a, b) = (key(rng, keys), key(rng, keys));
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut merged = h.current.clone();
    for (k, v) in &pending {
        match v {
            Some(v) => merged.insert(k.clone(), v.clone()),
            None => merged.remove(k),
        };
    }
    let want: Vec<_> = merged
        .range(lo.clone()..hi.clone())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let got = txn
        .scan(Bound::Included(&lo), Bound::Excluded(&hi))
        .unwrap();
    assert_eq!(got, want, "seed {seed}: txn scan merges its writes");
    let mut rev = txn
        .scan_rev(Bound::Included(&lo), Bound::Excluded(&hi))
        .unwrap();
    rev.reverse();
    assert_eq!(rev, want, "seed {seed}: txn reverse scan");
    let mut expect_conflict = false;
    if rng.below(3) == 0 {
        let k = key(rng, keys);
        let mut between = WriteBatch::new();
        between.put(k.clone(), "between");
        let mode = durability(rng);
        store.write(&between, mode).unwrap();
        h.record(between, mode);
        expect_conflict = pending.contains_key(&k)
            || (serializable && (read.contains(&k) || (lo <= k && k < hi)));
    }
    let mode = durability(rng);
    match txn.commit(mode) {
        Ok(_) => {
            assert!(
                !expect_conflict,
                "seed {seed}: a conflicting transaction committed"
            );
            if !pending.is_empty() {
                let mut batch = WriteBatch::new();
                for (k, v) in pending {
                    match v {
                        Some(v) => batch.put(k, v),
                        None => batch.delete(k),
                    };
                }
                h.record(batch, mode);
            }
        }
        Err(KvError::Conflict { .. }) if expect_conflict => {}
        Err(e) => panic!("seed {seed}: commit: {e} (conflict expected: {expect_conflict})"),
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
    let mut h = History::default();
    let mut value_seq = 0u64;
    let mut levels_max = 0;
    for crash in 0..crashes {
        let steps = 5 + rng.below(30);
        for _ in 0..steps {
            match rng.below(100) {
                0..=44 => {
                    let mut batch = WriteBatch::new();
                    for _ in 0..1 + rng.below(4) {
                        if rng.below(5) == 0 {
                            batch.delete(key(&mut rng, keys));
                        } else {
                            let v = value(&mut rng, seed, &mut value_seq);
                            batch.put(key(&mut rng, keys), v);
                        }
                    }
                    let mode = durability(&mut rng);
                    store.write(&batch, mode).unwrap();
                    h.record(batch, mode);
                }
                45..=54 => transaction_step(&store, &mut rng, keys, &mut h, seed, &mut value_seq),
                55..=69 => {
                    let k = key(&mut rng, keys);
                    assert_eq!(
                        store.get(&k).unwrap(),
                        h.current.get(&k).cloned(),
                        "seed {seed} crash {crash}: get {k:?}"
                    );
                }
                70..=79 => {
                    let (a, b) = (key(&mut rng, keys), key(&mut rng, keys));
                    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
                    let got = store
                        .scan(Bound::Included(&lo), Bound::Excluded(&hi))
                        .unwrap();
                    let want: Vec<_> = h
                        .current
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
                    let frozen = h.current.clone();
                    let mut batch = WriteBatch::new();
                    batch
                        .put(key(&mut rng, keys), "later")
                        .delete(key(&mut rng, keys));
                    store.write(&batch, Durability::Buffered).unwrap();
                    h.record(batch, Durability::Buffered);
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
        let mut candidate = h.durable.clone();
        let mut matched = (got == as_vec(&candidate)).then_some(0);
        for (i, batch) in h.since.iter().enumerate() {
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
                h.durable.len(),
                h.since.len()
            );
        };
        let mut model = h.durable.clone();
        for batch in &h.since[..kept] {
            apply(&mut model, batch);
        }
        h = History {
            durable: model.clone(),
            since: Vec::new(),
            current: model,
        };
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
