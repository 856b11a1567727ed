//! Durable commits of 128-byte records through the log, against the disk's
//! one-at-a-time floor measured in the same run: a 128-byte `pwrite` plus
//! `fdatasync` into already-written blocks of a file, with nothing else.
//!
//! - `floor/pwrite+fdatasync`: the floor, one durable write at a time.
//! - `commit/1`: one thread, `Wal::commit` under `SyncPolicy::Always`.
//! - `commit/8`, `commit/64`: 8 or 64 threads committing at once (group
//!   commit); the throughput counts records.
//! - `commit4k/prepared` and `commit4k/fallocated`: one thread committing
//!   4 KiB records (each sync touches a new block) into 8 MiB segments,
//!   prepared ahead (zero-filled) or only preallocated.
//! - `checkpointed4k/recycled`, `/prepared` and `/fresh`: the same 4 KiB
//!   durable commits into a log kept short by `truncate_front` every 256
//!   commits; the next segment is a purged segment's file, a zero-filled
//!   spare, or a new preallocated file.
//! - `ingest/prepared` and `ingest/fallocated`: bulk ingest, 4 KiB records
//!   under `SyncPolicy::Never`, 64 MiB then one sync, into 8 MiB segments:
//!   what zero-filling segments ahead costs a bandwidth-bound writer.
//! - `inflight/64`: one thread keeping 64 commits in flight through
//!   `Wal::durable` futures (appending a new record as each resolves),
//!   driven by a minimal executor; compare with `commit/8`.
//! - `append/never`: one thread appending 128-byte records under
//!   `SyncPolicy::Never`, the log writing them as its queue fills: the
//!   cost of the append path, bounded by how fast the page cache takes writes.
//!   `append/never_unprepared` is the same without a spare segment prepared
//!   ahead, `append/never_direct` through the pipelined O_DIRECT writer.
//! - `append/plain_bufwriter`: the baseline for it, a `std::io::BufWriter`
//!   writing the same length-prefixed records to a file.
//! - `replay/reader`: reading a 256 MiB log of 128-byte records back with
//!   `Wal::reader`, warm page cache; `replay/pread` is the baseline: reading
//!   the same segment files in 1 MiB `pread`s, nothing decoded.
// Sizes are small constants: casts between integer widths cannot truncate.
#![allow(clippy::cast_possible_truncation, missing_docs)]

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wal_engine::{Options, Wal};
use wal_io::{BackendChoice, FileOptions};

const RECORD: [u8; 128] = [0x42; 128];
const REGION_BYTES: u64 = 16 << 20;

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

fn bench_floor(c: &mut Criterion) {
    let dir = tempdir();
    let storage = wal_io::open_dir(dir.path(), BackendChoice::Portable).unwrap();
    let file = storage.create("floor", FileOptions::BUFFERED).unwrap();
    file.write_at(0, &[&vec![0xa5; REGION_BYTES as usize]])
        .unwrap();
    file.sync_data().unwrap();
    let mut at = 0u64;
    let mut group = c.benchmark_group("floor");
    group.throughput(Throughput::Elements(1));
    group.bench_function("pwrite+fdatasync", |b| {
        b.iter(|| {
            file.write_at(at, &[&RECORD]).unwrap();
            file.sync_data().unwrap();
            at = (at + 128) % REGION_BYTES;
        })
    });
    group.finish();
}

fn bench_commit(c: &mut Criterion) {
    let mut group = c.benchmark_group("commit");
    group.throughput(Throughput::Elements(1));
    let dir = tempdir();
    let (wal, _) = Wal::open(dir.path(), Options::default()).unwrap();
    group.bench_function("1", |b| b.iter(|| wal.commit(&RECORD).unwrap()));
    drop(wal);

    for threads in [8u64, 64] {
        let dir = tempdir();
        let (wal, _) = Wal::open(dir.path(), Options::default()).unwrap();
        let wal = Arc::new(wal);
        group.bench_function(format!("{threads}"), |b| {
            b.iter_custom(|iters| {
                let per_thread = iters.div_ceil(threads);
                let barrier = Arc::new(Barrier::new(threads as usize + 1));
                let handles: Vec<_> = (0..threads)
                    .map(|_| {
                        let (wal, barrier) = (wal.clone(), barrier.clone());
                        std::thread::spawn(move || {
                            barrier.wait();
                            for _ in 0..per_thread {
                                wal.commit(&RECORD).unwrap();
                            }
                        })
                    })
                    .collect();
                barrier.wait();
                let start = Instant::now();
                for h in handles {
                    h.join().unwrap();
                }
                // Time per record: the elapsed time shared over all threads' records.
                start
                    .elapsed()
                    .mul_f64(iters as f64 / (per_thread * threads) as f64)
            })
        });
    }
    group.finish();
}

fn bench_commit_4k(c: &mut Criterion) {
    let mut group = c.benchmark_group("commit4k");
    group.throughput(Throughput::Elements(1));
    let record = vec![0x42u8; 4096 - 4];
    for (name, prepare) in [("prepared", true), ("fallocated", false)] {
        let dir = tempdir();
        let mut options = Options::default();
        options.segment_bytes = 8 << 20;
        options.queue_bytes_max = 1 << 20;
        options.record_bytes_max = 64 << 10;
        options.prepare_segments = prepare;
        let (wal, _) = Wal::open(dir.path(), options).unwrap();
        // Past the first segment, which open creates without preparation.
        while wal.stats().rotations == 0 {
            wal.append(&record).unwrap();
        }
        wal.sync().unwrap();
        group.bench_function(name, |b| b.iter(|| wal.commit(&record).unwrap()));
        let stats = wal.stats();
        assert!(
            !prepare || stats.rotations_prepared + 1 >= stats.rotations,
            "{stats:?}"
        );
    }
    group.finish();
}

/// Durable 4 KiB commits into a log that a checkpointer keeps short: every
/// 256 commits, `truncate_front` drops the segments before the active one.
/// Where the next segment comes from is what differs: a purged segment's
/// file (recycled), a file zero-filled ahead by the preparer (prepared), or
/// a new file only preallocated at rotation (fresh).
fn bench_checkpointed(c: &mut Criterion) {
    let mut group = c.benchmark_group("checkpointed4k");
    group.throughput(Throughput::Elements(1));
    let record = vec![0x42u8; 4096 - 4];
    for (name, prepare, recycle) in [
        ("recycled", false, true),
        ("prepared", true, false),
        ("fresh", false, false),
    ] {
        let dir = tempdir();
        let mut options = Options::default();
        options.segment_bytes = 8 << 20;
        options.queue_bytes_max = 1 << 20;
        options.record_bytes_max = 64 << 10;
        options.prepare_segments = prepare;
        options.recycle_segments = recycle;
        let (wal, _) = Wal::open(dir.path(), options).unwrap();
        // Two rotations first, so that the first purge has a file to recycle.
        while wal.stats().rotations < 2 {
            wal.append(&record).unwrap();
        }
        wal.sync().unwrap();
        wal.truncate_front(wal.durable_lsn()).unwrap();
        group.bench_function(name, |b| {
            b.iter(|| {
                let lsn = wal.commit(&record).unwrap();
                if lsn % 256 == 0 {
                    wal.truncate_front(lsn).unwrap();
                }
            });
        });
        let stats = wal.stats();
        let from_spares = stats.rotations_recycled + stats.rotations_prepared;
        match (prepare, recycle) {
            (false, true) => assert!(stats.rotations_recycled + 2 >= stats.rotations, "{stats:?}"),
            (true, false) => assert!(stats.rotations_prepared + 2 >= stats.rotations, "{stats:?}"),
            _ => assert_eq!(from_spares, 0, "{stats:?}"),
        }
    }
    group.finish();
}

fn bench_ingest(c: &mut Criterion) {
    const INGEST_BYTES: u64 = 64 << 20;
    let mut group = c.benchmark_group("ingest");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(INGEST_BYTES));
    let record = vec![0x42u8; 4096 - 4];
    for (name, prepare) in [("prepared", true), ("fallocated", false)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = tempdir();
                    let mut options = Options::default();
                    options.segment_bytes = 8 << 20;
                    options.queue_bytes_max = 1 << 20;
                    options.record_bytes_max = 64 << 10;
                    options.sync = wal_engine::SyncPolicy::Never;
                    options.prepare_segments = prepare;
                    let (wal, _) = Wal::open(dir.path(), options).unwrap();
                    let start = Instant::now();
                    for _ in 0..INGEST_BYTES / 4096 {
                        wal.append(&record).unwrap();
                    }
                    wal.sync().unwrap();
                    total += start.elapsed();
                }
                total
            })
        });
    }
    group.finish();
}

/// Polls the futures in `slots` until every one is done, appending a new
/// record for each that resolves until `total` have been issued; returns how
/// many records were committed.
fn run_inflight(wal: &Wal, depth: usize, total: u64) -> u64 {
    use std::future::Future;
    use std::task::{Context, Poll, Wake};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    let mut issued = 0u64;
    let mut done = 0u64;
    let mut slots: Vec<Option<wal_engine::DurableFuture>> = (0..depth).map(|_| None).collect();
    while done < total {
        let mut progressed = false;
        for slot in &mut slots {
            if slot.is_none() && issued < total {
                let lsn = wal.append(&RECORD).unwrap();
                *slot = Some(wal.durable(lsn));
                issued += 1;
            }
            if let Some(fut) = slot
                && let Poll::Ready(r) = std::pin::Pin::new(fut).poll(&mut cx)
            {
                r.unwrap();
                *slot = None;
                done += 1;
                progressed = true;
            }
        }
        if !progressed {
            std::thread::park_timeout(Duration::from_millis(1));
        }
    }
    done
}

fn bench_inflight(c: &mut Criterion) {
    let mut group = c.benchmark_group("inflight");
    group.throughput(Throughput::Elements(1));
    let dir = tempdir();
    let (wal, _) = Wal::open(dir.path(), Options::default()).unwrap();
    group.bench_function("64", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            let n = run_inflight(&wal, 64, iters.max(64));
            start.elapsed().mul_f64(iters as f64 / n as f64)
        })
    });
    group.finish();
}

fn bench_append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");
    group.throughput(Throughput::Elements(1));
    // Without a spare prepared ahead: what preparing one costs a
    // bandwidth-bound appender. Through the pipelined O_DIRECT writer: no
    // copy into the page cache.
    for (name, prepare, direct) in [
        ("never", true, false),
        ("never_unprepared", false, false),
        ("never_direct", true, true),
    ] {
        let dir = tempdir();
        let mut options = Options::default();
        options.sync = wal_engine::SyncPolicy::Never;
        options.prepare_segments = prepare;
        options.direct_io = direct;
        let (wal, _) = Wal::open(dir.path(), options).unwrap();
        group.bench_function(name, |b| b.iter(|| wal.append(&RECORD).unwrap()));
    }

    let dir = tempdir();
    let file = std::fs::File::create(dir.path().join("plain")).unwrap();
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, file);
    let prefix = (RECORD.len() as u32).to_le_bytes();
    group.bench_function("plain_bufwriter", |b| {
        b.iter(|| {
            use std::io::Write;
            writer.write_all(&prefix).unwrap();
            writer.write_all(&RECORD).unwrap();
        })
    });
    group.finish();
}

/// The log the replay group reads: 256 MiB of 128 B records, the open log
/// and its segment files.
struct ReplayFixture {
    _dir: tempfile::TempDir,
    wal: Wal,
    last: u64,
    files: Vec<std::path::PathBuf>,
}

const REPLAY_LOG_BYTES: u64 = 256 << 20;

fn replay_fixture() -> ReplayFixture {
    let dir = tempdir();
    let mut options = Options::default();
    options.sync = wal_engine::SyncPolicy::Never;
    let (wal, _) = Wal::open(dir.path(), options.clone()).unwrap();
    for _ in 0..REPLAY_LOG_BYTES / 132 {
        wal.append(&RECORD).unwrap();
    }
    wal.sync().unwrap();
    let last = wal.appended_lsn();
    drop(wal);
    let (wal, _) = Wal::open(dir.path(), options).unwrap();
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    files.sort();
    ReplayFixture {
        _dir: dir,
        wal,
        last,
        files,
    }
}

fn bench_replay(c: &mut Criterion) {
    // Built on first use: criterion calls a benchmark's closure only when
    // the filter selects it, so profiling another group writes nothing here.
    let fixture = std::cell::OnceCell::new();
    let mut group = c.benchmark_group("replay");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(REPLAY_LOG_BYTES));
    group.bench_function("pread", |b| {
        let files = &fixture.get_or_init(replay_fixture).files;
        b.iter(|| {
            use std::os::unix::fs::FileExt;
            let mut buf = vec![0u8; 1 << 20];
            let mut total = 0u64;
            for path in files {
                let file = std::fs::File::open(path).unwrap();
                let len = file.metadata().unwrap().len();
                let mut at = 0;
                while at < len {
                    let n = file.read_at(&mut buf, at).unwrap();
                    at += n as u64;
                    total += n as u64;
                }
            }
            total
        })
    });
    group.bench_function("reader", |b| {
        let f = fixture.get_or_init(replay_fixture);
        b.iter(|| {
            let mut n = 0u64;
            for r in f.wal.reader(1).unwrap() {
                n += r.unwrap().data.len() as u64;
            }
            assert_eq!(n, f.last * 128);
            n
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = bench_floor, bench_commit, bench_commit_4k, bench_checkpointed, bench_ingest, bench_inflight, bench_append, bench_replay
}
criterion_main!(benches);
