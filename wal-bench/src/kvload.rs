//! K1 and K2, inside a child process: durable puts, a batched load, and
//! point reads of every loaded key. Keys and values are derived from
//! (writer, sequence), so every read checks what came back.

use std::time::{Duration, Instant};

use crate::record;
use crate::stores::{KEY_BYTES, KvContender, Pair, VALUE_BYTES};
use crate::workload::{Measured, Recorder, RunResult, RunSpec};

/// Keys per batch of the K2 load.
pub const LOAD_BATCH: usize = 1000;

/// Sequence numbers stay below 2^40, so (writer, seq) packs into a u64.
const SEQ_BITS: u32 = 40;

/// The key of record `seq` of `writer`: a hash of the pair first, so keys
/// arrive in random order, then the pair itself, so keys never collide.
pub fn key(writer: u32, seq: u64) -> [u8; KEY_BYTES] {
    assert!(seq < 1 << SEQ_BITS, "sequence numbers stay below 2^40");
    let id = (u64::from(writer) << SEQ_BITS) | seq;
    let mut key = [0; KEY_BYTES];
    key[..8].copy_from_slice(&mix(id).to_be_bytes());
    key[8..].copy_from_slice(&id.to_be_bytes());
    key
}

/// The value of record `seq` of `writer`: a self-checking record.
pub fn value(writer: u32, seq: u64) -> [u8; VALUE_BYTES] {
    let mut value = [0; VALUE_BYTES];
    record::fill(&mut value, writer, seq);
    value
}

/// A bijective 64-bit mixer (splitmix64's finaliser).
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// K1: `threads` writers put durably, one key at a time, until the time is up.
pub fn puts(contender: &dyn KvContender, spec: &RunSpec) -> Result<RunResult, String> {
    let store = contender.open(&spec.dir)?;
    let syncs_before = store.syncs();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(spec.seconds);
    let outcomes: Vec<Result<(Recorder, u64), String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..spec.threads)
            .map(|writer| {
                let store = &*store;
                scope.spawn(move || {
                    let mut recorder = Recorder::new();
                    let mut seq = 0;
                    while Instant::now() < deadline {
                        seq += 1;
                        let (k, v) = (key(writer, seq), value(writer, seq));
                        let t0 = Instant::now();
                        store.put(&k, &v)?;
                        recorder.op(t0.elapsed(), (KEY_BYTES + VALUE_BYTES) as u64);
                    }
                    Ok((recorder, seq))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("writer panicked".into())))
            .collect()
    });
    let elapsed = start.elapsed();
    let mut all = Recorder::new();
    let mut written = Vec::new();
    for outcome in outcomes {
        let (recorder, seqs) = outcome?;
        all.merge(&recorder);
        written.push(seqs);
    }
    let syncs = store.syncs().zip(syncs_before).map(|(a, b)| a - b);
    store.close()?;
    let mut measured = all.finish(elapsed);
    measured.syncs = syncs;

    // Reopen and read every acknowledged key, and the next one of each
    // writer, which was never written.
    let store = contender.open(&spec.dir)?;
    let mut verified = 0;
    {
        let mut reader = store.reader()?;
        let mut out = Vec::new();
        for (writer, &last) in (0..).zip(&written) {
            for seq in 1..=last {
                check(&mut *reader, writer, seq, &mut out)?;
                verified += 1;
            }
            if reader.get(&key(writer, last + 1), &mut out)? {
                return Err(format!(
                    "key {} of writer {writer} was never put but reads back",
                    last + 1
                ));
            }
        }
    }
    store.close()?;
    Ok(RunResult {
        peak_rss_bytes: None,
        measured,
        verified_records: verified,
        open_seconds: None,
        cold: None,
    })
}

/// Reads key `seq` of `writer` and checks its value.
fn check(
    reader: &mut dyn crate::stores::KvReader,
    writer: u32,
    seq: u64,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    if !reader.get(&key(writer, seq), out)? {
        return Err(format!("key {seq} of writer {writer} is missing"));
    }
    if out.as_slice() != value(writer, seq).as_slice() {
        return Err(format!("key {seq} of writer {writer} has a wrong value"));
    }
    Ok(())
}

/// K2 load: `records` keys of writer 0 in durable batches of [`LOAD_BATCH`].
pub fn load(contender: &dyn KvContender, spec: &RunSpec) -> Result<RunResult, String> {
    let store = contender.open(&spec.dir)?;
    // Built before the clock starts: the load measures the store.
    let pairs: Vec<Pair> = (1..=spec.records)
        .map(|s| (key(0, s), value(0, s)))
        .collect();
    let start = Instant::now();
    for batch in pairs.chunks(LOAD_BATCH) {
        store.put_batch(batch)?;
    }
    let elapsed = start.elapsed();
    store.close()?;
    Ok(RunResult {
        peak_rss_bytes: None,
        measured: Measured {
            ops: spec.records,
            bytes: spec.records * (KEY_BYTES + VALUE_BYTES) as u64,
            seconds: elapsed.as_secs_f64(),
            ..Measured::default()
        },
        // The gets that follow (K2 get) read every key back.
        verified_records: 0,
        open_seconds: None,
        cold: None,
    })
}

/// K2 get: reopens the store and reads every loaded key once, in an order
/// that jumps across the key space, checking each value.
pub fn gets(contender: &dyn KvContender, spec: &RunSpec) -> Result<RunResult, String> {
    let n = spec.records;
    let opened = Instant::now();
    let store = contender.open(&spec.dir)?;
    let open_seconds = opened.elapsed().as_secs_f64();
    let mut recorder = Recorder::new();
    let mut out = Vec::with_capacity(VALUE_BYTES);
    let stride = stride_for(n);
    let start = Instant::now();
    let measured = {
        let mut reader = store.reader()?;
        for i in 0..n {
            // i -> i * stride mod n visits every index once.
            let seq = nth(i, stride, n) + 1;
            let k = key(0, seq);
            let t0 = Instant::now();
            let found = reader.get(&k, &mut out)?;
            recorder.op(t0.elapsed(), (KEY_BYTES + VALUE_BYTES) as u64);
            if !found || out.as_slice() != value(0, seq).as_slice() {
                return Err(format!("loaded key {seq} is missing or wrong"));
            }
        }
        let measured = recorder.finish(start.elapsed());
        if reader.get(&key(0, n + 1), &mut out)? {
            return Err("a key that was never loaded reads back".into());
        }
        measured
    };
    store.close()?;
    Ok(RunResult {
        peak_rss_bytes: None,
        measured,
        verified_records: n,
        open_seconds: Some(open_seconds),
        cold: None,
    })
}

/// A step coprime with `n` near the golden ratio of it, so consecutive reads
/// land far apart and every index is visited once.
fn stride_for(n: u64) -> u64 {
    if n <= 2 {
        return 1;
    }
    // n times the golden ratio's fraction, 0x9e37...15 / 2^64.
    let golden = (u128::from(n) * 0x9e37_79b9_7f4a_7c15) >> 64;
    let mut s = u64::try_from(golden).unwrap_or(1) | 1;
    while gcd(s, n) != 1 {
        s += 2;
    }
    s
}

/// The `i`-th index of the walk over `0..n` with step `stride`.
fn nth(i: u64, stride: u64, n: u64) -> u64 {
    let j = u128::from(i) * u128::from(stride) % u128::from(n);
    u64::try_from(j).expect("a remainder of n is below n")
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stride_visits_every_index_once() {
        for n in [1u64, 2, 3, 10, 1000, 1024, 999_983] {
            let s = stride_for(n);
            let mut seen = vec![false; usize::try_from(n).unwrap()];
            for i in 0..n {
                let j = usize::try_from(nth(i, s, n)).unwrap();
                assert!(!seen[j], "n {n}: index {j} twice");
                seen[j] = true;
            }
        }
    }

    #[test]
    fn keys_are_distinct_and_values_check_themselves() {
        assert_ne!(key(0, 1), key(0, 2));
        assert_ne!(key(0, 1), key(1, 1));
        assert_eq!(record::seq_of(&value(3, 7)), Some(7));
        assert_ne!(value(3, 7), value(3, 8));
        assert_ne!(value(3, 7), value(4, 7));
    }
}
