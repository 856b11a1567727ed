//! T3: simulated power loss, driven by a model. Random appends, batches,
//! commits, syncs, rotations and truncations run on the simulated disk; it
//! crashes in every mode it has; the log reopens; an oracle of what was
//! appended and what was acknowledged checks C1 to C4 after every reopen.
//! Half the reopens replay the log during recovery, and the replay must get
//! exactly what a reader gets. Some cycles end in a failed sync instead of
//! a crash, and the log reopens in the same boot, its lost pages still
//! cached (fsyncgate): a later crash must not take anything that reopen
//! called durable.
//!
//! Every failure names its seed and crash number; rerun one seed with
//! `WAL_TORTURE_SEED=<seed> WAL_TORTURE_CRASHES=<n> cargo test -p wal-engine
//! --test crash_recovery`. `cargo xtask torture` runs a million crashes.
// Test sizes and counts are small: casts between integer widths cannot truncate.
#![allow(clippy::cast_possible_truncation)]

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wal_engine::{Options, ReplayFrom, SyncPolicy, Wal};
use wal_io::Op;
use wal_io::sim::{CrashMode, Fault, FaultError, SimDisk};

/// Crashes in a default run, over all seeds: the CI size.
const CRASHES_DEFAULT: u64 = 10_000;
const SEEDS_DEFAULT: u64 = 8;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// What the oracle knows.
struct Model {
    /// Every record appended and not truncated away, at index `lsn - 1`.
    records: Vec<Vec<u8>>,
    /// The highest LSN acknowledged durable.
    acked: u64,
    /// `truncate_front` was called with this: records below may be gone.
    front: u64,
}

fn policy(seed: u64) -> SyncPolicy {
    match seed % 4 {
        0 => SyncPolicy::Always,
        1 => SyncPolicy::Never,
        2 => SyncPolicy::Group {
            max_delay: Duration::from_micros(200),
            max_batch_bytes: 2048,
        },
        _ => SyncPolicy::Interval(Duration::from_millis(1)),
    }
}

fn record(rng: &mut Rng, lsn_hint: u64) -> Vec<u8> {
    let len = rng.range(0, 300) as usize;
    let fill = lsn_hint.to_le_bytes();
    (0..len).map(|i| fill[i % 8] ^ (i as u8)).collect()
}

/// Reads the log from `first` and checks it is the dense run of LSNs up to
/// `next` (exclusive), each record exactly what `appended` says was
/// appended at its LSN (C2 and C3).
fn read_back<'a>(
    wal: &Wal,
    first: u64,
    next: u64,
    at: &dyn Fn(&str) -> String,
    appended: impl Fn(u64) -> Option<&'a [u8]>,
) {
    let mut expect = first;
    for r in wal.reader(first).unwrap() {
        let r = r.unwrap_or_else(|e| panic!("{}", at(&format!("read failed: {e}"))));
        assert_eq!(r.lsn, expect, "{}", at("LSNs not dense"));
        assert!(
            appended(r.lsn).is_some_and(|d| d == &r.data[..]),
            "{}",
            at(&format!("LSN {} differs from what was appended", r.lsn))
        );
        expect += 1;
    }
    assert_eq!(expect, next, "{}", at("the reader stopped early"));
}

/// Runs `crashes` crash cycles; returns how many rotations took a recycled
/// file and how many queued writes completed out of order, so the caller
/// can check that recycling and the pipelined writer's prefix rule were
/// exercised.
fn torture(seed: u64, crashes: u64) -> (u64, u64) {
    let disk = SimDisk::new(seed);
    let mut rng = Rng(seed ^ 0x5eed);
    let mut options = Options::default();
    options.segment_bytes = 16 << 10;
    options.queue_bytes_max = 4 << 10;
    options.record_bytes_max = 512;
    options.sync = policy(seed);
    if (seed >> 2) & 1 == 1 {
        // Half the seeds compress every frame, so crashes tear compressed ones too.
        options.compression = wal_engine::Compression {
            codec: wal_engine::Codec::Lz4,
            min_bytes: 0,
        };
    }
    options.preallocate = rng.range(0, 1) == 0;
    // Half the seeds write through the pipelined O_DIRECT writer, into
    // padded segments.
    options.direct_io = rng.range(0, 1) == 0;
    options.identity_seed = Some(seed);
    let mut model = Model {
        records: Vec::new(),
        acked: 0,
        front: 1,
    };
    let (mut cuts, mut lost, mut recycled, mut failed_syncs) = (0u64, 0u64, 0u64, 0u64);
    let mut switches = 0u64;
    let mut crash = 0;
    while crash < crashes {
        if rng.range(0, 4) == 0 {
            // A reopen with the writer switched: a log written buffered goes
            // on with O_DIRECT (its next segment padded and pipelined, the
            // current one finished buffered), or the other way round.
            options.direct_io = !options.direct_io;
            switches += 1;
        }
        let at = |what: &str| format!("seed {seed}, crash {crash}, {:?}: {what}", options.sync);
        // Half the reopens replay the log while recovering it, from its
        // start or from an LSN at or past the truncated front.
        let replay_from = match rng.range(0, 3) {
            0 => Some(ReplayFrom::Start),
            1 => {
                let front = model.front.max(1);
                let end = model.records.len() as u64 + 1;
                Some(ReplayFrom::Lsn(rng.range(front, end.max(front))))
            }
            _ => None,
        };
        let mut replayed = Vec::new();
        let (wal, report) = match replay_from {
            None => Wal::open_with(disk.storage(), options.clone()),
            Some(from) => Wal::open_with_replaying(disk.storage(), options.clone(), from, |r| {
                replayed.push(r.to_record());
                ControlFlow::Continue(())
            }),
        }
        .unwrap_or_else(|e| panic!("{}", at(&format!("reopen failed: {e}"))));
        // C1 and C4: everything acknowledged is there; only the tail was lost.
        let last = report.next_lsn - 1;
        assert!(
            last >= model.acked,
            "{}",
            at(&format!(
                "lost acknowledged LSNs {}..={}",
                last + 1,
                model.acked
            ))
        );
        assert!(
            last <= model.records.len() as u64,
            "{}",
            at("the log holds LSNs never appended")
        );
        assert!(
            report.first_lsn <= model.front.max(1),
            "{}",
            at("records vanished from the front")
        );
        // C2 and C3: a dense prefix of exactly what was appended.
        read_back(&wal, report.first_lsn, report.next_lsn, &at, |lsn| {
            model.records.get((lsn - 1) as usize).map(Vec::as_slice)
        });
        // A replay got exactly the records a reader from its start yields.
        if let Some(from) = replay_from {
            let from = match from {
                ReplayFrom::Start => report.first_lsn,
                ReplayFrom::Lsn(lsn) => lsn,
            };
            let expected: Vec<(u64, &[u8])> = (from..report.next_lsn)
                .map(|lsn| (lsn, model.records[(lsn - 1) as usize].as_slice()))
                .collect();
            let got: Vec<(u64, &[u8])> = replayed.iter().map(|r| (r.lsn, &r.data[..])).collect();
            assert!(
                got == expected,
                "{}",
                at(&format!(
                    "replay from {from} got LSNs {:?}, a reader yields {from}..{}",
                    got.iter().map(|r| r.0).collect::<Vec<_>>(),
                    report.next_lsn
                ))
            );
        }
        cuts += report.cuts.len() as u64;
        lost += model.records.len() as u64 - last;
        // The unacknowledged tail past the recovered end is gone for good.
        model.records.truncate(last as usize);
        model.acked = last;

        for _ in 0..rng.range(0, 12) {
            let next = model.records.len() as u64 + 1;
            match rng.range(0, 21) {
                19..=21 => {
                    // A burst that is not waited for: under every policy the
                    // owner is likely to be writing or syncing it at the crash.
                    for _ in 0..rng.range(5, 40) {
                        let next = model.records.len() as u64 + 1;
                        let r = record(&mut rng, next);
                        assert_eq!(wal.append(&r).unwrap(), next, "{}", at("burst"));
                        model.records.push(r);
                    }
                }
                0..=8 => {
                    let r = record(&mut rng, next);
                    assert_eq!(wal.append(&r).unwrap(), next, "{}", at("append"));
                    model.records.push(r);
                }
                9..=11 => {
                    let batch: Vec<Vec<u8>> = (0..rng.range(1, 5))
                        .map(|_| record(&mut rng, next))
                        .collect();
                    let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
                    let lsns = wal.append_batch(&refs).unwrap();
                    assert_eq!(lsns.start, next, "{}", at("batch"));
                    model.records.extend(batch);
                }
                12..=14 => {
                    let r = record(&mut rng, next);
                    let lsn = wal.commit_durable(&r).unwrap();
                    model.records.push(r);
                    model.acked = lsn;
                }
                15 => {
                    wal.sync().unwrap();
                    model.acked = model.records.len() as u64;
                }
                16 if model.acked >= 1 => {
                    let lsn = rng.range(wal.first_lsn(), model.acked.max(wal.first_lsn()));
                    wal.truncate_front(lsn).unwrap();
                    model.front = model.front.max(lsn);
                }
                17 => {
                    let first = wal.first_lsn();
                    let lsn = rng.range(first - 1, model.records.len() as u64);
                    wal.truncate_back(lsn).unwrap();
                    model.records.truncate(lsn as usize);
                    model.acked = lsn;
                }
                _ => {
                    // Whatever is durable now counts as acknowledged.
                    model.acked = model.acked.max(wal.durable_lsn());
                }
            }
        }
        if rng.range(0, 1) == 0 {
            // Let the owner get into the middle of a write or a sync.
            std::thread::sleep(Duration::from_micros(rng.range(0, 300)));
        }
        model.acked = model.acked.max(wal.durable_lsn());
        recycled += wal.stats().rotations_recycled;
        if rng.range(0, 7) == 0 {
            // A failing disk instead of a power loss: the next data sync
            // fails, which poisons the log with a record written whose pages
            // Linux now keeps clean and never writes. The log reopens in the
            // same boot; the model calls what it recovers acknowledged (open
            // syncs it), so the next crash checks that none of it was a
            // lost page read from the cache.
            let next = model.records.len() as u64 + 1;
            let r = record(&mut rng, next);
            assert_eq!(
                wal.append(&r).unwrap(),
                next,
                "{}",
                at("append before a failed sync")
            );
            model.records.push(r);
            disk.inject(Fault::once(
                Op::SyncData,
                disk.op_count(Op::SyncData) + 1,
                FaultError::Eio,
            ));
            if wal.sync().is_ok() {
                // The fault hit a sync of something else (a spare segment).
                model.acked = model.records.len() as u64;
            } else {
                failed_syncs += 1;
            }
            model.acked = model.acked.max(wal.durable_lsn());
            drop(wal);
            disk.clear_faults();
            // Not a crash: the cycles counted are crashes.
            continue;
        }
        let mode = CrashMode::CONCRETE[rng.range(0, CrashMode::CONCRETE.len() as u64 - 1) as usize];
        if rng.range(0, 7) == 0 {
            // A clean close first: the next open trusts the clean-close
            // record it leaves, which must hold up whatever the crash does.
            drop(wal);
            disk.crash(mode);
        } else {
            disk.crash(mode);
            drop(wal);
        }
        crash += 1;
    }
    let reorders = disk.queue_reorders();
    eprintln!(
        "seed {seed}, {:?}, {:?}: {crashes} crashes, {switches} reopens switching direct_io, {failed_syncs} reopens after a failed sync, {cuts} tails cut, {lost} unacknowledged records lost, {recycled} rotations into recycled files, {reorders} writes completed out of order",
        options.sync, options.compression.codec
    );
    (recycled, reorders)
}

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn acknowledged_records_survive_every_simulated_crash() {
    let crashes = env("WAL_TORTURE_CRASHES").unwrap_or(CRASHES_DEFAULT);
    let seeds: Vec<u64> = match env("WAL_TORTURE_SEED") {
        Some(seed) => vec![seed],
        None => (0..SEEDS_DEFAULT).map(|i| 0xc0ff_ee00 + i).collect(),
    };
    let per_seed = crashes.div_ceil(seeds.len() as u64);
    let threads: Vec<_> = seeds
        .into_iter()
        .map(|seed| std::thread::spawn(move || torture(seed, per_seed)))
        .collect();
    let (mut recycled, mut reorders) = (0, 0);
    for t in threads {
        match t.join() {
            Ok((r, o)) => {
                recycled += r;
                reorders += o;
            }
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
    if crashes >= 1000 {
        assert!(
            recycled >= crashes / 100,
            "only {recycled} rotations into recycled segments: recycling is barely exercised"
        );
        // The simulated queue completes writes in flight in any order: the
        // pipelined writer (direct_io is switched on and off between
        // reopens) must have met that, or its prefix rule went untested.
        assert!(reorders > 0, "no write completed out of order");
    }
}

/// Crashes of the concurrent run in a default run, over all its seeds.
const CONCURRENT_CRASHES_DEFAULT: u64 = 2000;

/// Committers crashed while their writes are in flight, on the pipelined
/// O_DIRECT writer (`direct`) or the buffered one. The simulated queue
/// completes O_DIRECT writes in any order, so a crash can find a later write
/// durable and an earlier one missing: the durable LSN must never have
/// passed the earlier one. The buffered writer's rounds are led by
/// committers and the owner in turn. Returns how many writes completed out
/// of order.
fn concurrent_torture(seed: u64, crashes: u64, direct: bool) -> u64 {
    const THREADS: usize = 6;
    let disk = SimDisk::new(seed);
    let mut rng = Rng(seed ^ 0xc0c0);
    let mut options = Options::default();
    options.segment_bytes = 64 << 10;
    options.queue_bytes_max = 4 << 10;
    options.record_bytes_max = 512;
    options.sync = policy(seed);
    options.direct_io = direct;
    options.identity_seed = Some(seed);
    // Every record appended and not cut by a crash, by LSN.
    let appended: Arc<Mutex<BTreeMap<u64, Vec<u8>>>> = Arc::default();
    let mut acked = 0u64;
    for crash in 0..crashes {
        let at = |what: &str| format!("concurrent seed {seed}, crash {crash}: {what}");
        let (wal, report) = Wal::open_with(disk.storage(), options.clone())
            .unwrap_or_else(|e| panic!("{}", at(&format!("reopen failed: {e}"))));
        let last = report.next_lsn - 1;
        assert!(
            last >= acked,
            "{}",
            at(&format!("lost acknowledged LSNs {}..={acked}", last + 1))
        );
        {
            let mut appended = appended.lock().unwrap();
            read_back(&wal, wal.first_lsn(), report.next_lsn, &at, |lsn| {
                appended.get(&lsn).map(Vec::as_slice)
            });
            // The cut tail is gone for good.
            appended.retain(|&lsn, _| lsn <= last);
        }
        acked = last;
        // Keep the log small: what was checked may go (recycling the files).
        wal.truncate_front(last.max(1)).unwrap();
        let first = wal.first_lsn();
        appended.lock().unwrap().retain(|&lsn, _| lsn >= first);

        let wal = Arc::new(wal);
        let stop = Arc::new(AtomicBool::new(false));
        let high = Arc::new(AtomicU64::new(acked));
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let (wal, stop, high, appended) =
                    (wal.clone(), stop.clone(), high.clone(), appended.clone());
                let len = 20 + 40 * t;
                std::thread::spawn(move || {
                    for i in 0..500u64 {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let record: Vec<u8> =
                            (0..len).map(|j| (i as usize ^ j ^ t) as u8).collect();
                        // Appending under the map's lock keeps the map and
                        // the log in step whenever the crash comes.
                        let lsn = {
                            let mut appended = appended.lock().unwrap();
                            let Ok(lsn) = wal.append(&record) else { break };
                            appended.insert(lsn, record);
                            lsn
                        };
                        if wal.wait_durable(lsn).is_err() {
                            break;
                        }
                        high.fetch_max(lsn, Ordering::AcqRel);
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_micros(rng.range(0, 1500)));
        let mode = CrashMode::CONCRETE[rng.range(0, CrashMode::CONCRETE.len() as u64 - 1) as usize];
        // Whatever is durable before the crash counts as acknowledged.
        high.fetch_max(wal.durable_lsn(), Ordering::AcqRel);
        disk.crash(mode);
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        }
        acked = high.load(Ordering::Acquire);
        drop(wal);
    }
    let reorders = disk.queue_reorders();
    eprintln!(
        "concurrent seed {seed}, {:?}, direct {direct}: {crashes} crashes, \
         {reorders} writes completed out of order",
        options.sync
    );
    reorders
}

/// The seeds of a concurrent run (`WAL_TORTURE_SEED`, or four from `base`)
/// and the crashes for each, out of `default` (or `WAL_TORTURE_CRASHES`).
fn concurrent_seeds(default: u64, base: u64) -> (Vec<u64>, u64) {
    let crashes = env("WAL_TORTURE_CRASHES").map_or(default, |c| c / 25);
    let seeds: Vec<u64> = match env("WAL_TORTURE_SEED") {
        Some(seed) => vec![seed],
        None => (0..4).map(|i| base + i).collect(),
    };
    let per_seed = crashes.div_ceil(seeds.len() as u64).max(1);
    (seeds, per_seed)
}

#[test]
fn acknowledged_commits_survive_crashes_amid_writes_completing_out_of_order() {
    let (seeds, per_seed) = concurrent_seeds(CONCURRENT_CRASHES_DEFAULT, 0xacc0_0000);
    let mut reorders = 0;
    for seed in seeds {
        reorders += concurrent_torture(seed, per_seed, true);
    }
    assert!(
        reorders >= per_seed,
        "only {reorders} writes completed out of order: the pipeline barely ran deep"
    );
}

/// Crashes of the buffered concurrent run in a default run, over all its
/// seeds.
const CONCURRENT_BUFFERED_CRASHES_DEFAULT: u64 = 800;

#[test]
fn acknowledged_commits_survive_crashes_amid_concurrent_buffered_rounds() {
    let (seeds, per_seed) = concurrent_seeds(CONCURRENT_BUFFERED_CRASHES_DEFAULT, 0xb0f0_0000);
    for seed in seeds {
        concurrent_torture(seed, per_seed, false);
    }
}
