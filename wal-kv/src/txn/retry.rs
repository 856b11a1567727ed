//! Running a transaction again on conflict: what users of optimistic
//! transactions reach for first.

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use super::Transaction;
use crate::{Durability, Isolation, KvError, Store};

/// How [`Store::transact`] runs a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransactOptions {
    /// Isolation of each attempt. Default [`Isolation::Snapshot`].
    pub isolation: Isolation,
    /// Durability of the commit. Default [`Durability::Sync`].
    pub durability: Durability,
    /// Attempts before the last conflict is returned. Default 16.
    pub attempts_max: u32,
}

impl Default for TransactOptions {
    fn default() -> Self {
        TransactOptions {
            isolation: Isolation::Snapshot,
            durability: Durability::Sync,
            attempts_max: 16,
        }
    }
}

impl TransactOptions {
    /// The defaults with `isolation`.
    pub fn with_isolation(isolation: Isolation) -> Self {
        TransactOptions {
            isolation,
            ..TransactOptions::default()
        }
    }
}

/// The longest pause between attempts.
const BACKOFF_MAX: Duration = Duration::from_millis(4);
/// The pause after the first conflict, doubled after each.
const BACKOFF_FIRST: Duration = Duration::from_micros(20);

impl Store {
    /// Runs `body` in a new transaction and commits it; on a conflict (or a
    /// transaction too old to check) from either, runs it again in a fresh
    /// transaction after a short randomized pause, up to
    /// [`TransactOptions::attempts_max`] times. `body` may run more than
    /// once, so it should have no effects outside the transaction. Returns
    /// what `body` returned and the commit's LSN.
    ///
    /// ```
    /// use wal_kv::{Isolation, Options, Store, TransactOptions};
    ///
    /// let disk = wal_io::sim::SimDisk::new(9);
    /// let store = Store::open_with(disk.storage(), Options::default())?;
    /// let options = TransactOptions::with_isolation(Isolation::Serializable);
    /// std::thread::scope(|s| {
    ///     for _ in 0..4 {
    ///         s.spawn(|| {
    ///             for _ in 0..25 {
    ///                 store.transact(options, |txn| {
    ///                     let n = txn.get(b"counter")?.map_or(0, |v| v[0]);
    ///                     txn.put("counter", vec![n + 1])
    ///                 })?;
    ///             }
    ///             Ok::<(), wal_kv::KvError>(())
    ///         });
    ///     }
    /// });
    /// assert_eq!(store.get(b"counter")?.as_deref(), Some(&[100u8][..]));
    /// # Ok::<(), wal_kv::KvError>(())
    /// ```
    ///
    /// # Errors
    /// [`KvError::InvalidOptions`] for zero attempts; the last conflict
    /// once the attempts are spent; any other error of `body` or of the
    /// commit at once (the transaction is rolled back).
    pub fn transact<T>(
        &self,
        options: TransactOptions,
        mut body: impl FnMut(&mut Transaction<'_>) -> Result<T, KvError>,
    ) -> Result<(T, u64), KvError> {
        if options.attempts_max == 0 {
            return Err(KvError::InvalidOptions(
                "attempts_max must be at least 1".into(),
            ));
        }
        let mut attempt = 1;
        loop {
            let mut txn = self.transaction_with(options.isolation);
            let result = match body(&mut txn) {
                Ok(value) => txn.commit(options.durability).map(|lsn| (value, lsn)),
                Err(e) => Err(e),
            };
            match result {
                Err(e) if e.is_retryable() && attempt < options.attempts_max => {
                    std::thread::sleep(backoff(attempt));
                    attempt += 1;
                }
                done => return done,
            }
        }
    }
}

/// A random pause in `[0, min(BACKOFF_FIRST * 2^(attempt-1), BACKOFF_MAX)]`:
/// random, so transactions that collided do not collide again in step.
fn backoff(attempt: u32) -> Duration {
    let ceiling = BACKOFF_FIRST
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(BACKOFF_MAX);
    let random = RandomState::new().hash_one(attempt);
    let ceiling_ns = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(random % ceiling_ns.max(1))
}
