//! K3, inside a child process: transactions that read two keys and write
//! both back, each key's counter plus one, committed durably, from one
//! thread or many. A conflict is retried with the same keys. Afterwards the
//! store is reopened and every counter read: their sum must be twice the
//! commits acknowledged (a lost update or a half-applied transaction shows).

use std::time::{Duration, Instant};

use crate::stores::{KEY_BYTES, KvContender, VALUE_BYTES};
use crate::workload::{Recorder, RunResult, RunSpec};

/// Keys the transactions pick from: few enough that 64 threads collide
/// now and then, so the conflict rate is a figure and not a zero.
pub const K3_KEYS: u64 = 10_000;

/// The key of account `i`.
pub fn key(i: u64) -> [u8; KEY_BYTES] {
    let mut key = [0; KEY_BYTES];
    key[..4].copy_from_slice(b"acct");
    key[8..].copy_from_slice(&i.to_be_bytes());
    key
}

/// A value holding `counter`: its 8 bytes, then padding to [`VALUE_BYTES`].
pub fn value(counter: u64) -> [u8; VALUE_BYTES] {
    let mut v = [b'.'; VALUE_BYTES];
    v[..8].copy_from_slice(&counter.to_le_bytes());
    v
}

/// The counter a value holds; an absent key holds 0.
pub fn counter(value: Option<&[u8]>) -> Result<u64, String> {
    let Some(v) = value else {
        return Ok(0);
    };
    let bytes: [u8; 8] = v
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .filter(|_| v.len() == VALUE_BYTES)
        .ok_or_else(|| format!("a counter value of {} bytes", v.len()))?;
    Ok(u64::from_le_bytes(bytes))
}

/// A small random-number generator per thread (xorshift64).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// One thread's tally.
struct Tally {
    recorder: Recorder,
    commits: u64,
    conflicts: u64,
}

/// K3: `threads` clients run transactions until the time is up.
pub fn transactions(contender: &dyn KvContender, spec: &RunSpec) -> Result<RunResult, String> {
    let store = contender.open_txn(&spec.dir).ok_or("no transactions")??;
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(spec.seconds);
    let outcomes: Vec<Result<Tally, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..spec.threads)
            .map(|t| {
                let store = &*store;
                scope.spawn(move || {
                    let mut rng = Rng((u64::from(t) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                    let mut tally = Tally {
                        recorder: Recorder::new(),
                        commits: 0,
                        conflicts: 0,
                    };
                    while Instant::now() < deadline {
                        let a = rng.below(K3_KEYS);
                        let b = (a + 1 + rng.below(K3_KEYS - 1)) % K3_KEYS;
                        let t0 = Instant::now();
                        // Retried with the same keys until it commits.
                        while !store.increment_pair(&key(a), &key(b))? {
                            tally.conflicts += 1;
                        }
                        tally.commits += 1;
                        tally
                            .recorder
                            .op(t0.elapsed(), 2 * (KEY_BYTES + VALUE_BYTES) as u64);
                    }
                    Ok(tally)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("client panicked".into())))
            .collect()
    });
    let elapsed = start.elapsed();
    let mut all = Recorder::new();
    let (mut commits, mut conflicts) = (0, 0);
    for outcome in outcomes {
        let tally = outcome?;
        all.merge(&tally.recorder);
        commits += tally.commits;
        conflicts += tally.conflicts;
    }
    store.close()?;
    let mut measured = all.finish(elapsed);
    measured.conflicts = Some(conflicts);

    // Reopen: every commit added one to each of two counters.
    let store = contender.open_txn(&spec.dir).ok_or("no transactions")??;
    let mut sum = 0;
    {
        let mut reader = store.reader()?;
        let mut out = Vec::new();
        for i in 0..K3_KEYS {
            let found = reader.get(&key(i), &mut out)?;
            sum += counter(found.then_some(out.as_slice()))?;
        }
    }
    store.close()?;
    if sum != 2 * commits {
        return Err(format!(
            "the counters sum to {sum} after {commits} acknowledged transactions, not {}",
            2 * commits
        ));
    }
    Ok(RunResult {
        peak_rss_bytes: None,
        measured,
        verified_records: K3_KEYS,
        open_seconds: None,
        cold: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_round_trip_and_bad_values_are_refused() {
        assert_eq!(counter(Some(&value(41))), Ok(41));
        assert_eq!(counter(None), Ok(0));
        assert!(counter(Some(b"short")).is_err());
        assert_ne!(key(1), key(2));
    }
}
