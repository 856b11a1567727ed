//! The crash tests' writes: batch `s` (at LSN `s`: the store's log holds
//! nothing else) sets one of [`KEYS`] keys and the counter, so the store's
//! whole contents after any batch are known.

use std::ops::Bound;

use wal_engine::PurgeHold;
use wal_kv::{Options, Store, WriteBatch};

pub const KEYS: u64 = 32;

/// Small segments and memtable: segments seal, checkpoints (so purges
/// and base backups) come often; purges wait for `hold`.
pub fn options(hold: &PurgeHold) -> Options {
    let mut o = Options::default();
    o.memtable_bytes_max = 16 << 10;
    o.log.segment_bytes = 64 << 10;
    o.log.queue_bytes_max = 8 << 10;
    o.log.record_bytes_max = 4 << 10;
    o.log.purge_hold = Some(hold.clone());
    o
}

pub fn value(s: u64) -> Vec<u8> {
    format!("{s}:")
        .repeat(16 + usize::try_from(s % 20).unwrap())
        .into_bytes()
}

pub fn batch(s: u64) -> WriteBatch {
    let mut b = WriteBatch::new();
    b.put(format!("k{:02}", s % KEYS), value(s));
    b.put("last", s.to_string());
    b
}

/// The store's contents once batches 1..=`last` are applied.
pub fn expected(last: u64) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = (last.saturating_sub(KEYS - 1).max(1)..=last)
        .map(|s| (format!("k{:02}", s % KEYS).into_bytes(), value(s)))
        .collect();
    if last > 0 {
        out.push((b"last".to_vec(), last.to_string().into_bytes()));
    }
    out.sort();
    out
}

pub fn contents(store: &Store) -> Vec<(Vec<u8>, Vec<u8>)> {
    store
        .scan(Bound::Unbounded, Bound::Unbounded)
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect()
}

pub fn last_of(store: &Store) -> u64 {
    store
        .get(b"last")
        .unwrap()
        .map_or(0, |v| std::str::from_utf8(&v).unwrap().parse().unwrap())
}
