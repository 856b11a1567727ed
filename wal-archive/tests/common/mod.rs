//! The archive model test, shared by the local-directory run and the S3
//! run (an opt-in suite against a server on loopback).
#![allow(dead_code)]

pub mod batches;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use wal_archive::{Archive, ArchiveError, Archiver, Target, restore, segment_object};
use wal_engine::{Clock, PurgeHold};
use wal_kv::{Durability, Options, Store, WriteBatch};

type State = BTreeMap<Vec<u8>, Vec<u8>>;

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

/// What the store held after each batch: (LSN, commit time, state).
struct History(Vec<(u64, u64, State)>);

impl History {
    /// The state once every batch up to `last` is applied.
    fn at(&self, last: u64) -> State {
        self.0
            .iter()
            .rev()
            .find(|(lsn, _, _)| *lsn <= last)
            .map(|(_, _, s)| s.clone())
            .unwrap_or_default()
    }
}

fn contents(dir: &std::path::Path) -> State {
    let store = Store::open(dir, Options::default()).unwrap();
    let all = store
        .scan(Bound::Unbounded, Bound::Unbounded)
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect();
    store.close().unwrap();
    all
}

/// A store written under an injected clock and archived into
/// `archive_url` (empty), then restored at random targets from it, each
/// compared with the model; a segment removed from the chain is named.
pub fn restores_match_the_model(work: &std::path::Path, archive_url: &str) {
    let src = work.join("src");
    std::fs::create_dir(&src).unwrap();
    let hold = PurgeHold::new();
    let now = Arc::new(AtomicU64::new(1_700_000_000_000_000));
    let mut options = Options::default();
    options.log.segment_bytes = 64 << 10;
    options.log.queue_bytes_max = 8 << 10;
    options.log.record_bytes_max = 4 << 10;
    options.log.purge_hold = Some(hold.clone());
    let clock = Arc::clone(&now);
    options.log.clock = Clock::new(move || clock.load(Ordering::SeqCst));
    let store = Store::open(&src, options).unwrap();
    let mut archiver = Archiver::new(&src, Archive::open(archive_url).unwrap(), hold, 3).unwrap();

    let mut rng = 0x5eed_u64;
    let mut model = State::new();
    let mut history = History(Vec::new());
    for b in 0..900u64 {
        // Time moves by 0, 500 or 1000 µs: some batches share a time.
        now.fetch_add((xorshift(&mut rng) % 3) * 500, Ordering::SeqCst);
        let mut batch = WriteBatch::new();
        let mut applied = model.clone();
        for i in 0..1 + xorshift(&mut rng) % 3 {
            let key = format!("k{:02}", xorshift(&mut rng) % 40).into_bytes();
            if xorshift(&mut rng).is_multiple_of(5) {
                batch.delete(Bytes::from(key.clone()));
                applied.remove(&key);
            } else {
                let value = format!("{b}-{i}-").repeat(40).into_bytes();
                batch.put(Bytes::from(key.clone()), Bytes::from(value.clone()));
                applied.insert(key, value);
            }
        }
        let lsn = store.write(&batch, Durability::Sync).unwrap();
        model = applied;
        history
            .0
            .push((lsn, now.load(Ordering::SeqCst), model.clone()));
        if b % 200 == 199 {
            store.checkpoint().unwrap();
        }
        if b % 50 == 49 {
            archiver.round().unwrap();
        }
    }
    let round = archiver.round().unwrap();
    store.close().unwrap();
    let archived = round.archived_through;
    let archive = Archive::open(archive_url).unwrap();
    let bases = archive.bases().unwrap();
    assert!(
        !bases.is_empty() && bases.len() <= 3,
        "retention: {bases:?}"
    );
    let lo = bases[0];
    assert!(
        archived > lo + 100,
        "archived through {archived}, oldest base {lo}"
    );

    for k in 0..24 {
        let to = work.join(format!("restored-{k}"));
        let inclusive = k % 2 == 0;
        let (target, last) = if k % 4 < 2 {
            let lsn = lo + 1 + xorshift(&mut rng) % (archived - lo);
            let last = if inclusive { lsn } else { lsn - 1 };
            (Target::Lsn { lsn, inclusive }, last)
        } else {
            // A commit time inside the restorable range.
            let pick = history
                .0
                .iter()
                .filter(|(lsn, _, _)| *lsn > lo + 1 && *lsn <= archived)
                .nth(usize::try_from(xorshift(&mut rng) % 100).unwrap())
                .unwrap();
            let us = pick.1;
            let last = history
                .0
                .iter()
                .filter(|(lsn, t, _)| *lsn <= archived && (*t < us || (inclusive && *t == us)))
                .map(|(lsn, _, _)| *lsn)
                .max()
                .unwrap();
            if last < lo {
                continue;
            }
            (Target::Time { us, inclusive }, last)
        };
        let done = restore(&archive, &to, target).unwrap_or_else(|e| panic!("{target:?}: {e}"));
        assert_eq!(done.last_lsn, last, "{target:?}");
        assert_eq!(
            contents(&to),
            history.at(last),
            "{target:?}: the restored state differs"
        );
    }

    // The latest restorable moment.
    let to = work.join("latest");
    let done = restore(&archive, &to, Target::Latest).unwrap();
    let latest = archived.max(*bases.last().unwrap());
    assert_eq!(done.last_lsn, latest);
    assert_eq!(contents(&to), history.at(latest));

    // Past what the archive holds, or before its oldest base: refused.
    let too_far = Target::Lsn {
        lsn: latest + 1,
        inclusive: true,
    };
    assert!(matches!(
        restore(&archive, &work.join("far"), too_far),
        Err(ArchiveError::Target(_))
    ));

    // A segment gone from the chain: named, not skipped. Take a base
    // backup whose next LSN lies in a segment that is not the last, and a
    // target past that segment but before the next base backup.
    let segments = archive.segments().unwrap();
    let starts: Vec<u64> = segments
        .iter()
        .map(|n| wal_engine::parse_segment_name(n).unwrap())
        .collect();
    let (k, base, target) = bases
        .iter()
        .enumerate()
        .find_map(|(i, &b)| {
            let k = starts.iter().rposition(|&s| s <= b + 1)?;
            let next_start = *starts.get(k + 1)?;
            let before_next_base = bases.get(i + 1).map_or(archived, |n| (n - 1).min(archived));
            (before_next_base >= next_start).then_some((k, b, before_next_base))
        })
        .expect("a base backup whose chain spans two segments");
    archive.delete(&segment_object(&segments[k])).unwrap();
    let target = Target::Lsn {
        lsn: target,
        inclusive: true,
    };
    match restore(&archive, &work.join("gap"), target) {
        Err(ArchiveError::Missing(what)) => {
            assert!(what.contains(&format!("LSN {}", base + 1)), "{what}");
        }
        other => panic!("a gap restored as {other:?}"),
    }
}
