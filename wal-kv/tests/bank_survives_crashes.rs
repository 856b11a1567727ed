//! A bank on the simulated disk: threads move money between accounts in
//! serializable transactions (each also writes a receipt), a reader sums
//! the accounts in read-only transactions, and the disk crashes while they
//! run; then the store is reopened. The total never changes (while running
//! and after every reopen), and every transfer acknowledged before a crash
//! is there after it.
//!
//! `WAL_KV_BANK_CRASHES` sets the number of crashes (default 100).

// Random numbers are reduced below small bounds: casts cannot truncate.
#![allow(clippy::cast_possible_truncation)]

use std::ops::Bound;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::Bytes;
use wal_io::sim::{CrashMode, SimDisk};
use wal_kv::{Durability, Isolation, KvError, Options, Store, TransactOptions, WriteBatch};

const ACCOUNTS: u64 = 8;
const OPENING_BALANCE: u64 = 100;

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn account(i: u64) -> Bytes {
    Bytes::from(format!("acct:{i}"))
}

fn balance(v: Option<Bytes>) -> u64 {
    let v = v.expect("every account exists");
    std::str::from_utf8(&v).unwrap().parse().unwrap()
}

fn total(accounts: &[(Bytes, Bytes)]) -> u64 {
    assert_eq!(accounts.len() as u64, ACCOUNTS);
    accounts.iter().map(|(_, v)| balance(Some(v.clone()))).sum()
}

fn accounts_range() -> (Bound<&'static [u8]>, Bound<&'static [u8]>) {
    (Bound::Included(b"acct:"), Bound::Excluded(b"acct;"))
}

fn options(seed: u64) -> Options {
    let mut o = Options::default();
    o.memtable_bytes_max = 4096; // checkpoints while transfers run
    o.log.queue_bytes_max = 16 << 10;
    o.log.record_bytes_max = 8 << 10;
    o.log.segment_bytes = 64 << 10;
    o.log.identity_seed = Some(seed);
    o
}

/// Moves money until told to stop or the store fails (the crash); returns
/// the receipts of the transfers acknowledged.
fn teller(store: &Store, seed: u64, stop: &AtomicBool, acked: &AtomicUsize) -> Vec<Bytes> {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut receipts = Vec::new();
    let mut options = TransactOptions::with_isolation(Isolation::Serializable);
    options.attempts_max = 1_000;
    for n in 0.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let (from, to) = (rng.below(ACCOUNTS), rng.below(ACCOUNTS));
        let amount = 1 + rng.below(20);
        let receipt = Bytes::from(format!("receipt:{seed}:{n}"));
        let result = store.transact(options, |txn| {
            let a = balance(txn.get(&account(from))?);
            if a < amount || from == to {
                return Ok(false);
            }
            let b = balance(txn.get(&account(to))?);
            txn.put(account(from), (a - amount).to_string())?;
            txn.put(account(to), (b + amount).to_string())?;
            txn.put(receipt.clone(), amount.to_string())?;
            Ok(true)
        });
        match result {
            Ok((false, _)) => {}
            Ok((true, _)) => {
                receipts.push(receipt);
                acked.fetch_add(1, Ordering::Relaxed);
            }
            // The crash: the log or the worker failed.
            Err(KvError::Log(_) | KvError::Io(_) | KvError::Failed(_)) => break,
            Err(e) => panic!("teller {seed}: {e}"),
        }
    }
    receipts
}

/// Sums the accounts in read-only transactions until told to stop.
fn auditor(store: &Store, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let view = store.read_transaction();
        let (lo, hi) = accounts_range();
        match view.scan(lo, hi) {
            Ok(accounts) => assert_eq!(total(&accounts), ACCOUNTS * OPENING_BALANCE),
            Err(_) => break, // a table read failed in the crash
        }
    }
}

#[test]
fn the_total_never_changes_and_acknowledged_transfers_survive_crashes() {
    let crashes: u64 = std::env::var("WAL_KV_BANK_CRASHES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let seed = 7;
    let disk = SimDisk::new(seed);
    let mut rng = Rng(seed);
    {
        let store = Store::open_with(disk.storage(), options(seed)).unwrap();
        let mut batch = WriteBatch::new();
        for i in 0..ACCOUNTS {
            batch.put(account(i), OPENING_BALANCE.to_string());
        }
        store.write(&batch, Durability::Sync).unwrap();
    }
    let mut acknowledged: Vec<Bytes> = Vec::new();
    for crash in 0..crashes {
        let store = Store::open_with(disk.storage(), options(seed))
            .unwrap_or_else(|e| panic!("crash {crash}: reopen: {e}"));
        let (lo, hi) = accounts_range();
        let accounts = store.scan(lo, hi).unwrap();
        assert_eq!(
            total(&accounts),
            ACCOUNTS * OPENING_BALANCE,
            "crash {crash}"
        );
        for receipt in &acknowledged {
            assert!(
                store.get(receipt).unwrap().is_some(),
                "crash {crash}: acknowledged transfer {receipt:?} lost"
            );
        }
        let target = 5 + rng.below(40) as usize;
        let stop = AtomicBool::new(false);
        let acked = AtomicUsize::new(0);
        let receipts = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for t in 0..3 {
                let (store, stop, acked, receipts) = (&store, &stop, &acked, &receipts);
                s.spawn(move || {
                    let mine = teller(store, crash * 10 + t, stop, acked);
                    receipts.lock().unwrap().extend(mine);
                });
            }
            s.spawn(|| auditor(&store, &stop));
            while acked.load(Ordering::Relaxed) < target {
                std::thread::yield_now();
            }
            // Crash while the tellers are in the middle of their work.
            let mode = CrashMode::CONCRETE[rng.below(CrashMode::CONCRETE.len() as u64) as usize];
            disk.crash(mode);
            stop.store(true, Ordering::Relaxed);
        });
        acknowledged.extend(receipts.into_inner().unwrap());
        drop(store);
    }
    assert!(acknowledged.len() as u64 >= crashes * 5);
}
