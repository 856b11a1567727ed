//! Raw backend figures: what one durable write costs, and what durable
//! bandwidth each path reaches, so the engine can pick its path by
//! measurement. Every case writes through the public `wal-io` API into a
//! temporary directory under the target directory (the disk under test).
//!
//! - `durable_4k/*`: latency of one 4 KiB write made durable, one at a time:
//!   the floor of a single-threaded durable commit. Variants differ in the
//!   path (portable `pwrite` + `fdatasync`, `io_uring` write with an ordered
//!   `fdatasync`, `io_uring` with `RWF_DSYNC`, O_DIRECT) and in the state of
//!   the blocks written: `written` (preallocated and already written, as in a
//!   recycled segment), `fallocated` (reserved, never written: unwritten
//!   extents that each write must convert), `extending` (past the end).
//! - `durable_1m/*`: bandwidth of 1 MiB durable writes.
//! - `inflight_4k/*`: 4 KiB O_DIRECT `RWF_DSYNC` writes with 8 in flight.
// Sizes are small constants: casts between integer widths cannot truncate.
#![allow(clippy::cast_possible_truncation, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wal_io::{Backend, BackendChoice, Completion, FileOptions, FileRef, IoBuf, IoQueue, Storage};

const REGION_BYTES: u64 = 32 << 20;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Blocks {
    /// Preallocated and already written once.
    Written,
    /// Preallocated with fallocate, never written.
    Fallocated,
    /// Each write goes past the end of the file.
    Extending,
}

#[derive(Clone, Copy)]
enum Path {
    /// `write_at` then `sync_data`.
    WriteThenSync,
    /// One queue submission: a write, then an `fdatasync` ordered after it.
    QueueWriteSync,
    /// One queue submission: a write with `RWF_DSYNC`.
    QueueDsync,
}

struct Target {
    _dir: tempfile::TempDir,
    storage: Arc<dyn Storage>,
    file: FileRef,
    queue: Box<dyn IoQueue>,
    blocks: Blocks,
    pos: u64,
    buf: Option<IoBuf>,
    done: Vec<Completion>,
}

impl Target {
    fn new(
        choice: BackendChoice,
        options: FileOptions,
        blocks: Blocks,
        write_bytes: usize,
    ) -> Self {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let storage = wal_io::open_dir(dir.path(), choice).unwrap();
        if choice == BackendChoice::Uring {
            assert_eq!(
                storage.backend(),
                Backend::Uring,
                "io_uring is not available here"
            );
        }
        let file = storage.create("bench", options).unwrap();
        let queue = storage.queue(16).unwrap();
        let mut buf = IoBuf::with_capacity(write_bytes);
        buf.resize(write_bytes, 0x5a);
        let mut target = Target {
            _dir: dir,
            storage,
            file,
            queue,
            blocks,
            pos: 0,
            buf: Some(buf),
            done: Vec::new(),
        };
        target.reset();
        target
    }

    /// Puts the file back in its starting state (untimed).
    fn reset(&mut self) {
        self.pos = 0;
        self.file.set_len(0).unwrap();
        match self.blocks {
            Blocks::Written => {
                self.file.allocate(0, REGION_BYTES).unwrap();
                let mut chunk = IoBuf::with_capacity(1 << 20);
                chunk.resize(1 << 20, 0xa5);
                for at in (0..REGION_BYTES).step_by(1 << 20) {
                    self.file.write_at(at, &[chunk.as_slice()]).unwrap();
                }
            }
            Blocks::Fallocated => self.file.allocate(0, REGION_BYTES).unwrap(),
            Blocks::Extending => {}
        }
        self.file.sync_data().unwrap();
        self.storage.sync_dir().unwrap();
    }

    /// One durable write at the next position; returns its duration.
    fn durable_write(&mut self, path: Path) -> Duration {
        let len = self.buf.as_ref().map_or(0, IoBuf::len) as u64;
        if self.pos + len > REGION_BYTES {
            self.reset();
        }
        let at = self.pos;
        self.pos += len;
        let start = Instant::now();
        match path {
            Path::WriteThenSync => {
                let buf = self.buf.as_ref().unwrap();
                self.file.write_at(at, &[buf.as_slice()]).unwrap();
                self.file.sync_data().unwrap();
            }
            Path::QueueWriteSync | Path::QueueDsync => {
                let dsync = matches!(path, Path::QueueDsync);
                let buf = self.buf.take().unwrap();
                self.queue
                    .push_write(1, &self.file, at, buf, dsync)
                    .unwrap();
                if !dsync {
                    self.queue.push_sync(2, &self.file).unwrap();
                }
                let want = if dsync { 1 } else { 2 };
                while self.done.len() < want {
                    self.queue
                        .wait(want - self.done.len(), &mut self.done)
                        .unwrap();
                }
                for c in self.done.drain(..) {
                    c.result.unwrap();
                    if let Some(buf) = c.buf {
                        self.buf = Some(buf);
                    }
                }
            }
        }
        start.elapsed()
    }

    /// `count` O_DIRECT `RWF_DSYNC` writes kept `depth` in flight; returns the total time.
    fn inflight(&mut self, count: u64, depth: usize) -> Duration {
        let len = self.buf.as_ref().map_or(0, IoBuf::len);
        let mut free: Vec<IoBuf> = (0..depth)
            .map(|_| {
                let mut b = IoBuf::with_capacity(len);
                b.resize(len, 0x5a);
                b
            })
            .collect();
        let start = Instant::now();
        let mut issued = 0;
        let mut completed = 0;
        while completed < count {
            while issued < count {
                let Some(buf) = free.pop() else { break };
                if self.pos + len as u64 > REGION_BYTES {
                    self.pos = 0;
                }
                self.queue
                    .push_write(issued, &self.file, self.pos, buf, true)
                    .unwrap();
                self.pos += len as u64;
                issued += 1;
            }
            self.queue.wait(1, &mut self.done).unwrap();
            for c in self.done.drain(..) {
                c.result.unwrap();
                free.extend(c.buf);
                completed += 1;
            }
        }
        start.elapsed()
    }
}

fn bench_latency(c: &mut Criterion) {
    let mut group = c.benchmark_group("durable_4k");
    group.throughput(Throughput::Elements(1));
    let buffered = FileOptions::BUFFERED;
    let direct = FileOptions::DIRECT;
    let cases = [
        (
            "portable/pwrite+fdatasync/written",
            BackendChoice::Portable,
            buffered,
            Blocks::Written,
            Path::WriteThenSync,
        ),
        (
            "portable/pwrite+fdatasync/fallocated",
            BackendChoice::Portable,
            buffered,
            Blocks::Fallocated,
            Path::WriteThenSync,
        ),
        (
            "portable/pwrite+fdatasync/extending",
            BackendChoice::Portable,
            buffered,
            Blocks::Extending,
            Path::WriteThenSync,
        ),
        (
            "portable/direct+fdatasync/written",
            BackendChoice::Portable,
            direct,
            Blocks::Written,
            Path::WriteThenSync,
        ),
        (
            "uring/write+fdatasync/written",
            BackendChoice::Uring,
            buffered,
            Blocks::Written,
            Path::QueueWriteSync,
        ),
        (
            "uring/write_dsync/written",
            BackendChoice::Uring,
            buffered,
            Blocks::Written,
            Path::QueueDsync,
        ),
        (
            "uring/direct_dsync/written",
            BackendChoice::Uring,
            direct,
            Blocks::Written,
            Path::QueueDsync,
        ),
        (
            "uring/direct_dsync/fallocated",
            BackendChoice::Uring,
            direct,
            Blocks::Fallocated,
            Path::QueueDsync,
        ),
    ];
    for (name, choice, options, blocks, path) in cases {
        let mut target = Target::new(choice, options, blocks, 4096);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| (0..iters).map(|_| target.durable_write(path)).sum())
        });
    }
    group.finish();
}

fn bench_bandwidth(c: &mut Criterion) {
    let mut group = c.benchmark_group("durable_1m");
    group.throughput(Throughput::Bytes(1 << 20));
    group.sample_size(20);
    let cases = [
        (
            "portable/pwrite+fdatasync",
            BackendChoice::Portable,
            FileOptions::BUFFERED,
            Path::WriteThenSync,
        ),
        (
            "portable/direct+fdatasync",
            BackendChoice::Portable,
            FileOptions::DIRECT,
            Path::WriteThenSync,
        ),
        (
            "uring/write+fdatasync",
            BackendChoice::Uring,
            FileOptions::BUFFERED,
            Path::QueueWriteSync,
        ),
        (
            "uring/direct_dsync",
            BackendChoice::Uring,
            FileOptions::DIRECT,
            Path::QueueDsync,
        ),
    ];
    for (name, choice, options, path) in cases {
        let mut target = Target::new(choice, options, Blocks::Written, 1 << 20);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| (0..iters).map(|_| target.durable_write(path)).sum())
        });
    }
    group.finish();
}

fn bench_inflight(c: &mut Criterion) {
    let mut group = c.benchmark_group("inflight_4k");
    group.throughput(Throughput::Elements(1));
    for depth in [1usize, 8] {
        let mut target = Target::new(
            BackendChoice::Uring,
            FileOptions::DIRECT,
            Blocks::Written,
            4096,
        );
        group.bench_function(format!("uring/direct_dsync/depth{depth}"), |b| {
            b.iter_custom(|iters| target.inflight(iters, depth))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_latency, bench_bandwidth, bench_inflight);
criterion_main!(benches);
