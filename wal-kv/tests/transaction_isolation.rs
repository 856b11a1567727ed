//! What each isolation level allows and refuses: lost updates (never),
//! write skew (snapshot isolation only), phantoms (snapshot isolation
//! only); reads of its own writes; rollback; the conflict error; limits;
//! what an open transaction keeps.

use std::future::Future;
use std::ops::Bound;

use bytes::Bytes;
use wal_io::Op;
use wal_io::sim::{Fault, FaultError, SimDisk};
use wal_kv::{
    ConflictKind, Durability, Isolation, KvError, Options, Store, TransactOptions, WriteBatch,
};

fn store(seed: u64) -> (SimDisk, Store) {
    let disk = SimDisk::new(seed);
    let store = Store::open_with(disk.storage(), Options::default()).unwrap();
    (disk, store)
}

fn number(v: Option<Bytes>) -> u64 {
    v.map_or(0, |v| std::str::from_utf8(&v).unwrap().parse().unwrap())
}

const BOTH: [Isolation; 2] = [Isolation::Snapshot, Isolation::Serializable];

/// Read-modify-write increments of one counter from many threads, each
/// attempt committed or refused: the counter ends at the number of commits.
#[test]
fn no_update_is_lost_under_either_level() {
    for isolation in BOTH {
        let (_disk, store) = store(1);
        let mut commits = 0u64;
        let mut conflicts = 0u64;
        std::thread::scope(|s| {
            let threads: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        let (mut ok, mut refused) = (0u64, 0u64);
                        for _ in 0..100 {
                            let mut txn = store.transaction_with(isolation);
                            let n = number(txn.get(b"counter").unwrap());
                            txn.put("counter", (n + 1).to_string()).unwrap();
                            std::thread::yield_now();
                            match txn.commit(Durability::Buffered) {
                                Ok(_) => ok += 1,
                                Err(KvError::Conflict { key, kind, .. }) => {
                                    assert_eq!(key, "counter");
                                    assert_eq!(
                                        kind,
                                        ConflictKind::Write,
                                        "the write is checked first"
                                    );
                                    refused += 1;
                                }
                                Err(e) => panic!("{e}"),
                            }
                        }
                        (ok, refused)
                    })
                })
                .collect();
            for t in threads {
                let (ok, refused) = t.join().unwrap();
                commits += ok;
                conflicts += refused;
            }
        });
        assert_eq!(
            number(store.get(b"counter").unwrap()),
            commits,
            "{isolation:?}"
        );
        assert_eq!(commits + conflicts, 800);
    }
}

#[test]
fn the_retry_helper_counts_every_increment_once() {
    let (_disk, store) = store(2);
    let mut options = TransactOptions::with_isolation(Isolation::Snapshot);
    options.attempts_max = 1_000;
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..50 {
                    store
                        .transact(options, |txn| {
                            let n = number(txn.get(b"counter")?);
                            txn.put("counter", (n + 1).to_string())
                        })
                        .unwrap();
                }
            });
        }
    });
    assert_eq!(number(store.get(b"counter").unwrap()), 200);
}

#[test]
fn the_retry_helper_stops_after_its_attempts_with_the_conflict() {
    let (_disk, store) = store(3);
    let mut runs = 0;
    let mut options = TransactOptions::default();
    options.attempts_max = 3;
    let err = store
        .transact(options, |txn| {
            runs += 1;
            txn.put("k", "mine")?;
            store.put("k", "theirs")?; // someone always gets in between
            Ok(())
        })
        .unwrap_err();
    assert_eq!(runs, 3);
    assert!(
        matches!(err, KvError::Conflict { ref key, .. } if key == "k"),
        "{err}"
    );
    assert_eq!(store.get(b"k").unwrap().as_deref(), Some(&b"theirs"[..]));
    let mut zero = TransactOptions::default();
    zero.attempts_max = 0;
    assert!(matches!(
        store.transact(zero, |_| Ok(())),
        Err(KvError::InvalidOptions(_))
    ));
    // Errors that a retry cannot cure are returned at once.
    let mut runs = 0;
    let err = store
        .transact(TransactOptions::default(), |txn| {
            runs += 1;
            txn.put(vec![b'k'; 70_000], "v")
        })
        .unwrap_err();
    assert!(matches!(err, KvError::KeyTooLarge { .. }), "{err}");
    assert_eq!(runs, 1);
}

/// Two on-call doctors: each transaction checks that the other is on call,
/// then takes itself off. Snapshot isolation lets both commit (write skew);
/// serializable refuses the second.
#[test]
fn write_skew_is_allowed_by_snapshot_isolation_and_refused_by_serializable() {
    for isolation in BOTH {
        let (_disk, store) = store(4);
        store.put("alice", "on").unwrap();
        store.put("bob", "on").unwrap();
        let mut a = store.transaction_with(isolation);
        let mut b = store.transaction_with(isolation);
        for txn in [&a, &b] {
            assert_eq!(txn.get(b"alice").unwrap().as_deref(), Some(&b"on"[..]));
            assert_eq!(txn.get(b"bob").unwrap().as_deref(), Some(&b"on"[..]));
        }
        a.put("alice", "off").unwrap();
        b.put("bob", "off").unwrap();
        a.commit(Durability::Sync).unwrap();
        let second = b.commit(Durability::Sync);
        match isolation {
            Isolation::Snapshot => {
                second.unwrap();
                assert_eq!(store.get(b"alice").unwrap().as_deref(), Some(&b"off"[..]));
                assert_eq!(store.get(b"bob").unwrap().as_deref(), Some(&b"off"[..]));
            }
            _ => {
                let err = second.unwrap_err();
                assert!(
                    matches!(&err, KvError::Conflict { key, kind: ConflictKind::Read, .. } if key == "alice"),
                    "{err}"
                );
                assert_eq!(
                    store.get(b"bob").unwrap().as_deref(),
                    Some(&b"on"[..]),
                    "nothing written"
                );
            }
        }
    }
}

/// A serializable transaction that scanned a range fails if another commits
/// a key inside it, and not for one outside it; under snapshot isolation
/// neither fails.
#[test]
fn a_key_committed_into_a_scanned_range_is_a_phantom() {
    for isolation in BOTH {
        for (inserted, inside) in [("job:5", true), ("jobz", false), ("job:", true)] {
            let (_disk, store) = store(5);
            store.put("job:1", "todo").unwrap();
            let mut txn = store.transaction_with(isolation);
            let jobs = txn
                .scan(Bound::Included(b"job:"), Bound::Excluded(b"job;"))
                .unwrap();
            assert_eq!(jobs.len(), 1);
            txn.put("count", jobs.len().to_string()).unwrap();
            store.put(inserted, "todo").unwrap();
            let result = txn.commit(Durability::Sync);
            if isolation == Isolation::Serializable && inside {
                let err = result.unwrap_err();
                assert!(
                    matches!(&err, KvError::Conflict { key, kind: ConflictKind::Range, .. } if key == inserted),
                    "{err}"
                );
                assert_eq!(store.get(b"count").unwrap(), None);
            } else {
                result.unwrap_or_else(|e| panic!("{isolation:?} {inserted}: {e}"));
            }
        }
    }
}

/// An iteration stopped early read only up to its last key: a key committed
/// beyond it is no phantom; one before it is.
#[test]
fn a_partial_scan_guards_only_what_it_read() {
    for (inserted, conflict) in [("c5", false), ("a5", true)] {
        for rev in [false, true] {
            let (_disk, store) = store(6);
            for k in ["a", "b", "c", "d"] {
                store.put(k, "v").unwrap();
            }
            let mut txn = store.transaction_with(Isolation::Serializable);
            let first_two: Vec<_> = if rev {
                txn.iter_rev(Bound::Unbounded, Bound::Unbounded)
                    .take(2)
                    .collect()
            } else {
                txn.iter(Bound::Unbounded, Bound::Unbounded)
                    .take(2)
                    .collect()
            };
            assert_eq!(first_two.len(), 2);
            txn.put("seen", "2").unwrap();
            // Reversed, the keys read are d and c: the other side is guarded.
            let inserted = if rev {
                if conflict { "c5" } else { "a5" }
            } else {
                inserted
            };
            store.put(inserted, "v").unwrap();
            let result = txn.commit(Durability::Sync);
            assert_eq!(
                result.is_err(),
                conflict,
                "rev {rev}, {inserted}: {result:?}"
            );
        }
    }
}

#[test]
fn a_transaction_reads_its_own_writes_merged_in_order() {
    let (_disk, store) = store(7);
    let mut batch = WriteBatch::new();
    batch.put("a", "1").put("c", "3").put("e", "5");
    store.write(&batch, Durability::Sync).unwrap();
    store.checkpoint().unwrap(); // some versions in a table
    store.put("g", "7").unwrap();
    let mut txn = store.transaction();
    txn.put("b", "2").unwrap();
    txn.delete("c").unwrap();
    txn.put("e", "five").unwrap();
    txn.delete("nothing").unwrap();
    txn.put("h", "8").unwrap();
    let want: Vec<(Bytes, Bytes)> = [
        ("a", "1"),
        ("b", "2"),
        ("e", "five"),
        ("g", "7"),
        ("h", "8"),
    ]
    .iter()
    .map(|(k, v)| (Bytes::from(*k), Bytes::from(*v)))
    .collect();
    assert_eq!(txn.scan(Bound::Unbounded, Bound::Unbounded).unwrap(), want);
    let mut rev = txn.scan_rev(Bound::Unbounded, Bound::Unbounded).unwrap();
    rev.reverse();
    assert_eq!(rev, want);
    let some = txn
        .scan(Bound::Excluded(b"a"), Bound::Included(b"g"))
        .unwrap();
    assert_eq!(some, want[1..4]);
    assert_eq!(txn.get(b"c").unwrap(), None);
    assert_eq!(txn.get(b"e").unwrap().as_deref(), Some(&b"five"[..]));
    // Inverted bounds hold nothing, as for a snapshot.
    assert!(
        txn.scan(Bound::Included(b"z"), Bound::Excluded(b"a"))
            .unwrap()
            .is_empty()
    );
    // Nobody else sees any of it until the commit.
    assert_eq!(store.get(b"b").unwrap(), None);
    let lsn = txn.commit(Durability::Sync).unwrap();
    assert_eq!(store.get(b"b").unwrap().as_deref(), Some(&b"2"[..]));
    assert_eq!(store.get(b"c").unwrap(), None);
    assert_eq!(
        store.log().appended_lsn(),
        lsn,
        "one record for the whole transaction"
    );
}

#[test]
fn rollback_and_drop_write_nothing() {
    let (_disk, store) = store(8);
    let before = store.log().appended_lsn();
    let mut txn = store.transaction();
    txn.put("a", "1").unwrap();
    txn.rollback();
    {
        let mut txn = store.transaction_with(Isolation::Serializable);
        txn.put("b", "1").unwrap();
    }
    assert_eq!(store.get(b"a").unwrap(), None);
    assert_eq!(store.get(b"b").unwrap(), None);
    assert_eq!(store.log().appended_lsn(), before, "nothing logged");
    assert_eq!(store.stats().open_transactions, 0);
    // A transaction that wrote nothing commits at its snapshot, logging nothing.
    let txn = store.transaction();
    assert_eq!(txn.commit(Durability::Sync).unwrap(), before);
    assert_eq!(store.log().appended_lsn(), before);
}

#[test]
fn an_async_commit_resolves_once_durable_and_conflicts_at_once() {
    let (_disk, store) = store(9);
    let mut txn = store.transaction();
    txn.put("k", "v").unwrap();
    let mut loser = store.transaction();
    loser.put("k", "w").unwrap();
    let commit = txn.commit_async().unwrap();
    let lsn = commit.lsn();
    assert!(matches!(
        loser.commit_async(),
        Err(KvError::Conflict { .. })
    ));
    let done = block_on(commit).unwrap();
    assert_eq!(done, lsn);
    assert!(store.log().durable_lsn() >= lsn);
    assert_eq!(store.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
}

/// Polls a future to completion on this thread (no runtime needed).
fn block_on<F: Future>(f: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

#[test]
fn limits_refuse_with_typed_errors_and_leave_the_transaction_usable() {
    let disk = SimDisk::new(10);
    let mut options = Options::default();
    options.transaction_ops_max = 3;
    options.log.record_bytes_max = 4096;
    let store = Store::open_with(disk.storage(), options).unwrap();
    let mut txn = store.transaction_with(Isolation::Serializable);
    txn.put("a", "1").unwrap();
    txn.put("a", "2").unwrap(); // the same key again: still one operation
    txn.get(b"x").unwrap();
    txn.put("b", "1").unwrap();
    // A key longer than any key can be is absent, and nothing to guard.
    assert_eq!(txn.get(&vec![0u8; 70_000]).unwrap(), None);
    let long = vec![0u8; 70_000];
    let err = txn
        .scan(Bound::Included(&long[..]), Bound::Unbounded)
        .unwrap_err();
    assert!(matches!(err, KvError::KeyTooLarge { .. }), "{err}");
    let err = txn.put("c", "1").unwrap_err();
    assert!(
        matches!(
            err,
            KvError::TransactionTooLarge {
                ops: 4,
                ops_max: 3,
                ..
            }
        ),
        "{err}"
    );
    let err = txn.get(b"y").unwrap_err();
    assert!(matches!(err, KvError::TransactionTooLarge { .. }), "{err}");
    let err = txn.scan(Bound::Unbounded, Bound::Unbounded).unwrap_err();
    assert!(matches!(err, KvError::TransactionTooLarge { .. }), "{err}");
    let err = txn.put("b", vec![0u8; 5000]).unwrap_err();
    assert!(
        matches!(
            err,
            KvError::TransactionTooLarge {
                bytes_max: 4096,
                ..
            }
        ),
        "{err}"
    );
    assert!(matches!(
        txn.put(vec![0u8; 70_000], "v"),
        Err(KvError::KeyTooLarge { .. })
    ));
    assert!(matches!(
        txn.put("k", vec![0u8; 600 << 10]),
        Err(KvError::ValueTooLarge { .. })
    ));
    assert_eq!(
        txn.pending_writes(),
        2,
        "refused writes left nothing behind"
    );
    txn.commit(Durability::Sync).unwrap();
    assert_eq!(store.get(b"a").unwrap().as_deref(), Some(&b"2"[..]));
}

/// A long read-only transaction keeps nothing for commits to be checked
/// against and blocks no writer; a long read-write one keeps what was
/// written since its snapshot, up to the window, and is then refused.
#[test]
fn what_open_transactions_keep_and_for_how_long() {
    let disk = SimDisk::new(11);
    let mut options = Options::default();
    options.conflict_window_bytes_max = 8192;
    let store = Store::open_with(disk.storage(), options).unwrap();
    let reader = store.read_transaction();
    for i in 0..500 {
        store.put(format!("k{i:03}"), "v").unwrap();
    }
    let stats = store.stats();
    assert_eq!(stats.open_transactions, 0);
    // With no read-write transaction open, only what is not yet visible
    // (at most the last write, as it was applied) is kept.
    assert!(stats.conflict_keys <= 1, "{}", stats.conflict_keys);
    assert_eq!(
        reader.get(b"k000").unwrap(),
        None,
        "the reader still sees its snapshot"
    );

    let mut old = store.transaction();
    old.put("mine", "v").unwrap();
    for i in 0..20 {
        store.put(format!("k{i:03}"), "w").unwrap();
    }
    let kept = store.stats().conflict_keys;
    assert!((20..=21).contains(&kept), "kept while open: {kept}");
    for i in 0..500 {
        store.put(format!("k{i:03}"), "x").unwrap();
    }
    assert!(store.stats().conflict_keys < 200, "bounded by the window");
    let err = old.commit(Durability::Sync).unwrap_err();
    assert!(
        matches!(err, KvError::TransactionTooOld { .. }) && err.is_retryable(),
        "{err}"
    );
    assert_eq!(store.get(b"mine").unwrap(), None);
    store.put("after", "v").unwrap();
    assert!(
        store.stats().conflict_keys <= 1,
        "forgotten once none is open"
    );
}

/// A commit that loses to a write not yet durable would lose again on
/// every retry until that write is seen; if its sync failed it never is:
/// the commit reports the log's failure, not a conflict to retry forever.
#[test]
fn losing_to_a_write_whose_sync_failed_reports_the_failure() {
    let (disk, store) = store(12);
    store.put("k", "0").unwrap();
    let mut txn = store.transaction();
    txn.put("k", "mine").unwrap();
    disk.inject(Fault::once(
        Op::SyncData,
        disk.op_count(Op::SyncData) + 1,
        FaultError::Eio,
    ));
    assert!(store.put("k", "lost").is_err());
    let err = txn.commit(Durability::Sync).unwrap_err();
    assert!(matches!(err, KvError::Log(_)), "{err}");
    assert!(!err.is_retryable());
}

/// A transaction refused as too old because a write above what readers see
/// outgrew the window would be refused again on every retry until that
/// write is seen; if its sync failed it never is: the commit reports the
/// failure. A transaction that wrote nothing still commits: what it read
/// was durable.
#[test]
fn an_old_transaction_behind_a_failed_write_reports_the_failure() {
    let disk = SimDisk::new(13);
    let mut options = Options::default();
    options.conflict_window_bytes_max = 8192;
    let store = Store::open_with(disk.storage(), options).unwrap();
    store.put("k", "0").unwrap();
    let mut old = store.transaction();
    old.put("mine", "v").unwrap();
    let reader = store.transaction_with(Isolation::Serializable);
    assert!(reader.get(b"k").unwrap().is_some());
    disk.inject(Fault::once(
        Op::SyncData,
        disk.op_count(Op::SyncData) + 1,
        FaultError::Eio,
    ));
    let mut big = WriteBatch::new();
    for i in 0..300 {
        big.put(format!("big{i:04}"), "v");
    }
    assert!(store.write(&big, Durability::Sync).is_err());
    let err = old.commit(Durability::Sync).unwrap_err();
    assert!(matches!(err, KvError::Log(_)), "{err}");
    let at = reader.snapshot_lsn();
    assert_eq!(reader.commit(Durability::Sync).unwrap(), at);
}
