//! The disk's physical limit under the benchmark directory, measured first so
//! every workload can be read as a fraction of what the hardware allows.

use std::path::Path;
use std::time::{Duration, Instant};

use wal_io::{BackendChoice, FileOptions, FileRef, IoBuf, Storage};

use crate::workload::{Measured, Recorder};

/// One probe's result, named `limit/<probe>` in the tables.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The probe's name (without the `limit/` prefix).
    pub name: &'static str,
    /// What it does, for the table.
    pub config: String,
    /// Its figures, or why it could not run.
    pub outcome: Result<Measured, String>,
}

/// 4 KiB durable writes, one at a time, into already-written blocks.
pub const SYNC_4K_WRITTEN: &str = "4k-sync-written";
/// 4 KiB durable writes, one at a time, extending a fresh file.
pub const SYNC_4K_FRESH: &str = "4k-sync-fresh";
/// O_DIRECT + RWF_DSYNC 4 KiB writes through io_uring, one at a time.
pub const DIRECT_4K_QD1: &str = "4k-direct-dsync-qd1";
/// The same with 8 writes in flight.
pub const DIRECT_4K_QD8: &str = "4k-direct-dsync-qd8";
/// 1 MiB buffered writes, each followed by fdatasync.
pub const SYNC_1M_BUFFERED: &str = "1m-sync-buffered";
/// 1 MiB O_DIRECT writes, each followed by fdatasync.
pub const SYNC_1M_DIRECT: &str = "1m-sync-direct";
/// Cold sequential reads, 1 MiB at a time, through the page cache.
pub const READ_BUFFERED: &str = "read-cold-buffered";
/// Cold sequential reads, 1 MiB at a time, O_DIRECT.
pub const READ_DIRECT: &str = "read-cold-direct";
/// Blocking hand-offs with no I/O: the CPU's limit for commits that each
/// park a thread until another wakes it.
pub const HANDOFF: &str = "handoff";

const SMALL: usize = 4096;
const LARGE: usize = 1 << 20;

/// Runs every probe in `dir` (created and emptied by the caller), each for
/// about `seconds`; `region_bytes` is the size of the files written and read,
/// `threads` the committers of the many-thread workloads.
pub fn probe_all(dir: &Path, seconds: f64, region_bytes: u64, threads: u32) -> Vec<Probe> {
    let budget = Duration::from_secs_f64(seconds);
    let portable = wal_io::open_dir(dir, BackendChoice::Portable);
    let uring = wal_io::open_dir(dir, BackendChoice::Uring);
    let mut probes = Vec::new();
    let mut add = |name, config: &str, outcome| {
        probes.push(Probe {
            name,
            config: config.to_owned(),
            outcome,
        })
    };
    match &portable {
        Ok(storage) => {
            add(
                SYNC_4K_WRITTEN,
                "pwrite 4 KiB + fdatasync, already-written blocks",
                sync_writes(&**storage, SMALL, true, false, region_bytes, budget),
            );
            add(
                SYNC_4K_FRESH,
                "pwrite 4 KiB + fdatasync, extending a new file",
                sync_writes(&**storage, SMALL, false, false, region_bytes, budget),
            );
            add(
                SYNC_1M_BUFFERED,
                "pwrite 1 MiB + fdatasync, already-written blocks",
                sync_writes(&**storage, LARGE, true, false, region_bytes, budget),
            );
            add(
                SYNC_1M_DIRECT,
                "O_DIRECT pwrite 1 MiB + fdatasync, already-written blocks",
                sync_writes(&**storage, LARGE, true, true, region_bytes, budget),
            );
            add(
                READ_BUFFERED,
                "sequential 1 MiB pread, page cache dropped",
                cold_read(&**storage, dir, false, region_bytes),
            );
            add(
                READ_DIRECT,
                "sequential 1 MiB O_DIRECT pread, page cache dropped",
                cold_read(&**storage, dir, true, region_bytes),
            );
        }
        Err(e) => add(SYNC_4K_WRITTEN, "", Err(format!("open directory: {e}"))),
    }
    let refused = |e: &dyn std::fmt::Display| Err(format!("io_uring: {e}"));
    match &uring {
        Ok(storage) if storage.backend() == wal_io::Backend::Uring => {
            for (name, depth) in [(DIRECT_4K_QD1, 1), (DIRECT_4K_QD8, 8)] {
                let config = format!(
                    "io_uring O_DIRECT 4 KiB writes with RWF_DSYNC, {depth} in flight, \
                     already-written blocks"
                );
                add(
                    name,
                    &config,
                    queued_writes(&**storage, depth, region_bytes, budget),
                );
            }
        }
        Ok(storage) => {
            let reason = storage.fallback_reason().unwrap_or("refused").to_owned();
            add(DIRECT_4K_QD1, "", refused(&reason));
            add(DIRECT_4K_QD8, "", refused(&reason));
        }
        Err(e) => {
            add(DIRECT_4K_QD1, "", refused(e));
            add(DIRECT_4K_QD8, "", refused(e));
        }
    }
    add(
        HANDOFF,
        &format!(
            "{threads} threads each park until a releaser thread unparks it, in rounds, no I/O"
        ),
        crate::handoff::probe(threads, budget),
    );
    for name in ["written", "fresh", "read"] {
        if let Ok(storage) = &portable {
            let _ = storage.remove(name);
        }
    }
    probes
}

fn error(context: &'static str) -> impl Fn(wal_io::IoError) -> String {
    move |e| format!("{context}: {e}")
}

/// A file of `bytes` written and synced, so later writes find blocks that are
/// allocated and initialised (no metadata to journal on each sync).
fn written_file(storage: &dyn Storage, bytes: u64, direct: bool) -> Result<FileRef, String> {
    let _ = storage.remove("written");
    let file = storage
        .create("written", FileOptions::BUFFERED)
        .map_err(error("create"))?;
    let chunk = vec![0xa5u8; LARGE];
    let mut at = 0;
    while at < bytes {
        file.write_at(at, &[&chunk]).map_err(error("fill"))?;
        at += LARGE as u64;
    }
    file.sync_data().map_err(error("sync"))?;
    storage.sync_dir().map_err(error("sync dir"))?;
    file.close();
    let options = if direct {
        FileOptions::DIRECT
    } else {
        FileOptions::BUFFERED
    };
    storage.open("written", options).map_err(error("open"))
}

/// One write of `size` then `fdatasync`, repeated for `budget`.
fn sync_writes(
    storage: &dyn Storage,
    size: usize,
    written: bool,
    direct: bool,
    region_bytes: u64,
    budget: Duration,
) -> Result<Measured, String> {
    let region = region_bytes.max(size as u64 * 4);
    let file = if written {
        written_file(storage, region, direct)?
    } else {
        let _ = storage.remove("fresh");
        let file = storage
            .create("fresh", FileOptions::BUFFERED)
            .map_err(error("create"))?;
        storage.sync_dir().map_err(error("sync dir"))?;
        file
    };
    let mut buf = IoBuf::with_capacity(size);
    buf.resize(size, 0x5a);
    let mut recorder = Recorder::new();
    let mut at = 0u64;
    let start = Instant::now();
    while start.elapsed() < budget {
        let t0 = Instant::now();
        file.write_at(at, &[buf.as_slice()])
            .map_err(error("write"))?;
        file.sync_data().map_err(error("fdatasync"))?;
        recorder.op(t0.elapsed(), size as u64);
        at += size as u64;
        if written && at + size as u64 > region {
            at = 0;
        }
    }
    let measured = recorder.finish(start.elapsed());
    file.close();
    Ok(measured)
}

/// O_DIRECT `RWF_DSYNC` writes of 4 KiB with `depth` in flight.
fn queued_writes(
    storage: &dyn Storage,
    depth: usize,
    region_bytes: u64,
    budget: Duration,
) -> Result<Measured, String> {
    let region = region_bytes.max(SMALL as u64 * 64);
    let file = written_file(storage, region, true)?;
    let mut queue = storage
        .queue(u32::try_from(depth).unwrap_or(u32::MAX))
        .map_err(error("queue"))?;
    let mut spare: Vec<IoBuf> = (0..depth)
        .map(|_| {
            let mut buf = IoBuf::with_capacity(SMALL);
            buf.resize(SMALL, 0x5a);
            buf
        })
        .collect();
    let mut issued_at = vec![Instant::now(); depth];
    let mut free_slots: Vec<usize> = (0..depth).collect();
    let mut recorder = Recorder::new();
    let mut completions = Vec::new();
    let mut at = 0u64;
    let start = Instant::now();
    loop {
        let stopping = start.elapsed() >= budget;
        while !stopping && let (Some(slot), Some(buf)) = (free_slots.pop(), spare.pop()) {
            issued_at[slot] = Instant::now();
            queue
                .push_write(slot as u64, &file, at, buf, true)
                .map_err(error("push"))?;
            at = (at + SMALL as u64) % (region - SMALL as u64);
        }
        if queue.in_flight() == 0 {
            break;
        }
        completions.clear();
        queue.wait(1, &mut completions).map_err(error("wait"))?;
        for done in completions.drain(..) {
            done.result.map_err(error("write"))?;
            let slot = usize::try_from(done.token).map_err(|_| "unknown token")?;
            let issued = issued_at.get(slot).ok_or("unknown token")?;
            recorder.op(issued.elapsed(), SMALL as u64);
            free_slots.push(slot);
            spare.push(done.buf.ok_or("the queue kept a write buffer")?);
        }
    }
    let measured = recorder.finish(start.elapsed());
    file.close();
    Ok(measured)
}

/// Sequential 1 MiB reads of a file of `region_bytes` after emptying the
/// page cache.
fn cold_read(
    storage: &dyn Storage,
    dir: &Path,
    direct: bool,
    region_bytes: u64,
) -> Result<Measured, String> {
    let region = region_bytes.div_ceil(LARGE as u64) * LARGE as u64;
    let _ = storage.remove("read");
    let file = storage
        .create("read", FileOptions::BUFFERED)
        .map_err(error("create"))?;
    let chunk = vec![0x3cu8; LARGE];
    let mut at = 0;
    while at < region {
        file.write_at(at, &[&chunk]).map_err(error("fill"))?;
        at += LARGE as u64;
    }
    file.sync_data().map_err(error("sync"))?;
    file.close();
    crate::workload::drop_page_cache(dir);
    let options = if direct {
        FileOptions::DIRECT
    } else {
        FileOptions::BUFFERED
    };
    let file = storage.open("read", options).map_err(error("open"))?;
    let mut buf = IoBuf::with_capacity(LARGE);
    buf.resize(LARGE, 0);
    let start = Instant::now();
    let mut at = 0;
    while at < region {
        file.read_at(at, buf.as_mut_slice())
            .map_err(error("read"))?;
        at += LARGE as u64;
    }
    let elapsed = start.elapsed();
    file.close();
    Ok(Measured {
        ops: region / LARGE as u64,
        bytes: region,
        seconds: elapsed.as_secs_f64(),
        ..Measured::default()
    })
}
