//! A history checker: threads run random transactions (both levels) and
//! plain batches on a few hot keys; every commit is recorded with its reads,
//! scans and writes, in the order the transaction did them, and its LSN.
//! Replayed serially in LSN order against a `BTreeMap`, every read of a
//! serializable transaction must match the model just before its commit
//! (or, if it wrote nothing, at its snapshot), and every read of a snapshot
//! transaction the model at its snapshot; the store must end equal to the
//! model.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Mutex;

use bytes::Bytes;
use wal_io::sim::SimDisk;
use wal_kv::{Durability, Isolation, KvError, Options, Store, WriteBatch};

type Model = BTreeMap<Bytes, Bytes>;

#[derive(Debug, Clone)]
enum Step {
    Get(Bytes, Option<Bytes>),
    Scan(Bytes, Bytes, Vec<(Bytes, Bytes)>),
    Put(Bytes, Bytes),
    Delete(Bytes),
}

#[derive(Debug, Clone)]
struct Committed {
    isolation: Option<Isolation>, // None: a plain batch
    snapshot_lsn: u64,
    commit_lsn: u64,
    steps: Vec<Step>,
}

impl Committed {
    fn wrote(&self) -> bool {
        self.steps
            .iter()
            .any(|s| matches!(s, Step::Put(..) | Step::Delete(_)))
    }
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

const KEYS: u64 = 10;

fn key(rng: &mut Rng) -> Bytes {
    Bytes::from(format!("k{}", rng.below(KEYS)))
}

/// One thread's work: transactions and batches, the committed ones returned.
fn run(store: &Store, seed: u64, rounds: usize) -> Vec<Committed> {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut out = Vec::new();
    for round in 0..rounds {
        let value = Bytes::from(format!("{seed}-{round}"));
        if rng.below(6) == 0 {
            let mut batch = WriteBatch::new();
            let k = key(&mut rng);
            batch.put(k.clone(), value.clone());
            let lsn = store.write(&batch, Durability::Buffered).unwrap();
            out.push(Committed {
                isolation: None,
                snapshot_lsn: lsn,
                commit_lsn: lsn,
                steps: vec![Step::Put(k, value)],
            });
            continue;
        }
        let isolation = if rng.below(4) == 0 {
            Isolation::Snapshot
        } else {
            Isolation::Serializable
        };
        let mut txn = store.transaction_with(isolation);
        let mut steps = Vec::new();
        for n in 0..1 + rng.below(5) {
            let k = key(&mut rng);
            match rng.below(7) {
                0..=2 => steps.push(Step::Get(k.clone(), txn.get(&k).unwrap())),
                3 => {
                    let other = key(&mut rng);
                    let (lo, hi) = if k <= other { (k, other) } else { (other, k) };
                    let got = txn
                        .scan(Bound::Included(&lo[..]), Bound::Excluded(&hi[..]))
                        .unwrap();
                    steps.push(Step::Scan(lo, hi, got));
                }
                4 => {
                    txn.delete(k.clone()).unwrap();
                    steps.push(Step::Delete(k));
                }
                _ => {
                    let v = Bytes::from(format!("{seed}-{round}-{n}"));
                    txn.put(k.clone(), v.clone()).unwrap();
                    steps.push(Step::Put(k, v));
                }
            }
            if rng.below(3) == 0 {
                std::thread::yield_now(); // let others commit in between
            }
        }
        let snapshot_lsn = txn.snapshot_lsn();
        match txn.commit(Durability::Buffered) {
            Ok(commit_lsn) => out.push(Committed {
                isolation: Some(isolation),
                snapshot_lsn,
                commit_lsn,
                steps,
            }),
            Err(KvError::Conflict { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    out
}

/// Checks one transaction's reads against `model` with its own earlier
/// writes laid over it.
fn check_reads(model: &Model, c: &Committed) {
    let mut own: BTreeMap<Bytes, Option<Bytes>> = BTreeMap::new();
    let view = |own: &BTreeMap<Bytes, Option<Bytes>>| {
        let mut m = model.clone();
        for (k, v) in own {
            match v {
                Some(v) => m.insert(k.clone(), v.clone()),
                None => m.remove(k),
            };
        }
        m
    };
    for step in &c.steps {
        match step {
            Step::Get(k, got) => {
                assert_eq!(got, &view(&own).get(k).cloned(), "get {k:?} in {c:?}");
            }
            Step::Scan(lo, hi, got) => {
                let want: Vec<_> = view(&own)
                    .range(lo.clone()..hi.clone())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                assert_eq!(got, &want, "scan in {c:?}");
            }
            Step::Put(k, v) => {
                own.insert(k.clone(), Some(v.clone()));
            }
            Step::Delete(k) => {
                own.insert(k.clone(), None);
            }
        }
    }
}

fn apply(model: &mut Model, c: &Committed) {
    for step in &c.steps {
        match step {
            Step::Put(k, v) => {
                model.insert(k.clone(), v.clone());
            }
            Step::Delete(k) => {
                model.remove(k);
            }
            _ => {}
        }
    }
}

#[test]
fn every_serializable_read_matches_a_serial_replay_in_lsn_order() {
    for seed in 1..=3u64 {
        let disk = SimDisk::new(seed);
        let mut options = Options::default();
        options.memtable_bytes_max = 8192; // checkpoints amid the history
        let store = Store::open_with(disk.storage(), options).unwrap();
        let history = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for t in 0..4 {
                let (store, history) = (&store, &history);
                s.spawn(move || {
                    let mine = run(store, seed * 100 + t, 300);
                    history.lock().unwrap().extend(mine);
                });
            }
        });
        let history = history.into_inner().unwrap();
        // Events in LSN order: at one LSN, a writer's check comes before
        // its writes; a check at a snapshot comes after the writes at it.
        let mut events: Vec<(u64, u8, &Committed)> = Vec::new();
        let mut serializable_writers = 0;
        for c in &history {
            match c.isolation {
                Some(Isolation::Serializable) if c.wrote() => {
                    serializable_writers += 1;
                    events.push((c.commit_lsn, 0, c));
                }
                Some(_) => events.push((c.snapshot_lsn, 2, c)),
                None => {}
            }
            if c.wrote() {
                events.push((c.commit_lsn, 1, c));
            }
        }
        events.sort_by_key(|&(lsn, order, _)| (lsn, order));
        let mut model = Model::new();
        for (_, order, c) in events {
            match order {
                1 => apply(&mut model, c),
                _ => check_reads(&model, c),
            }
        }
        let all = store.scan(Bound::Unbounded, Bound::Unbounded).unwrap();
        let want: Vec<_> = model.into_iter().collect();
        assert_eq!(all, want, "seed {seed}: the store ends as the replay");
        assert!(
            serializable_writers > 100,
            "seed {seed}: {serializable_writers}"
        );
    }
}
