//! Point reads after a reopen, the way the benchmark's K2 reads them, for
//! profiling the read path alone:
//!
//! ```text
//! cargo run --release -p wal-kv --example point_reads -- DIR load KEYS
//! cargo run --release -p wal-kv --example point_reads -- DIR get KEYS CACHE_MIB [PASSES [THREADS]]
//! ```
//!
//! `load` writes KEYS keys (16 bytes, in random order) with 100-byte values
//! in durable batches of 1000 into a new store in DIR (which it empties)
//! and closes it. `get` reopens it with a block cache of CACHE_MIB MiB and
//! reads every key once per pass, in an order that jumps across the key
//! space, checking each value; it prints gets/s and blocks read per pass.
//! The first pass fills the block cache; later ones find it warm. With
//! THREADS, each of that many threads reads every key once per pass, each
//! from its own place in the order, and the rate is of all their gets.

use std::time::Instant;

use wal_kv::{Durability, Options, Store, WriteBatch};

const LOAD_BATCH: usize = 1000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: point_reads DIR (load KEYS | get KEYS CACHE_MIB [PASSES [THREADS]])";
    let (Some(dir), Some(mode), Some(keys)) = (args.first(), args.get(1), args.get(2)) else {
        return Err(usage.into());
    };
    let keys: u64 = keys.parse()?;
    let mut options = Options::default();
    match mode.as_str() {
        "load" => {
            let _ = std::fs::remove_dir_all(dir);
            std::fs::create_dir_all(dir)?;
            let store = Store::open(dir, options)?;
            let start = Instant::now();
            for first in (1..=keys).step_by(LOAD_BATCH) {
                let mut batch = WriteBatch::new();
                for seq in first..(first + LOAD_BATCH as u64).min(keys + 1) {
                    batch.put(key(seq).to_vec(), value(seq).to_vec());
                }
                store.write(&batch, Durability::Sync)?;
            }
            println!("{:.0} keys/s", rate(keys, start));
            store.close()?;
        }
        "get" => {
            let cache_mib: u64 = args.get(3).ok_or(usage)?.parse()?;
            let passes: u32 = args.get(4).map_or(Ok(1), |p| p.parse())?;
            let threads: u64 = args.get(5).map_or(Ok(1), |t| t.parse())?;
            options.block_cache_bytes = cache_mib << 20;
            let store = Store::open(dir, options)?;
            // A step coprime with the key count visits every key once.
            let stride = (keys * 5 / 8..).find(|&s| gcd(s, keys) == 1).ok_or(usage)?;
            for _ in 0..passes {
                let reads = store.stats().block_reads;
                let start = Instant::now();
                std::thread::scope(|s| {
                    let readers: Vec<_> = (0..threads)
                        .map(|t| {
                            let store = &store;
                            s.spawn(move || read_all(store, keys, stride, t * keys / threads))
                        })
                        .collect();
                    readers
                        .into_iter()
                        .try_for_each(|r| r.join().map_err(|_| "a reader panicked")?)
                })?;
                let read = store.stats().block_reads - reads;
                println!(
                    "{:.0} gets/s, {read} blocks read",
                    rate(keys * threads, start)
                );
            }
            store.close()?;
        }
        _ => return Err(usage.into()),
    }
    Ok(())
}

/// Reads every key once through one snapshot, starting `from` keys into
/// the order, and checks each value.
fn read_all(store: &Store, keys: u64, stride: u64, from: u64) -> Result<(), String> {
    let snapshot = store.snapshot();
    for i in from..from + keys {
        let seq = i % keys * stride % keys + 1;
        let got = snapshot.get(&key(seq)).map_err(|e| e.to_string())?;
        if got.as_deref() != Some(value(seq).as_slice()) {
            return Err(format!("key {seq} is missing or wrong"));
        }
    }
    Ok(())
}

/// Key `seq`: a hash of it first (random order), then itself (unique).
fn key(seq: u64) -> [u8; 16] {
    let mut x = seq;
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    let mut key = [0; 16];
    key[..8].copy_from_slice(&x.to_be_bytes());
    key[8..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// The value of key `seq`: its number, repeated.
fn value(seq: u64) -> [u8; 100] {
    let mut value = [0; 100];
    for (i, b) in value.iter_mut().enumerate() {
        *b = seq.to_le_bytes()[i % 8];
    }
    value
}

fn rate(ops: u64, start: Instant) -> f64 {
    u32::try_from(ops).map_or(f64::NAN, f64::from) / start.elapsed().as_secs_f64()
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}
