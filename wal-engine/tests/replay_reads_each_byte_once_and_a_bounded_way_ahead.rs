//! A replaying open reads each byte of a segment about once, however the
//! writer's frames fall across the parts it reads (a part that ends inside a
//! frame is followed by one that holds all of that frame, and the bytes after
//! the frame are not read twice), and it reads only a bounded number of parts
//! ahead of a slow consumer instead of the whole segment.

mod common;

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::hooked::{Hooks, hooked};
use wal_engine::{Options, ReplayFrom, SyncPolicy, Wal};
use wal_io::Storage;
use wal_io::sim::SimDisk;

/// Bytes the scan of a 64 MiB segment reads at a time, at most.
const PART_BYTES: u64 = wal_engine::FRAME_FILL_BYTES_MAX as u64;

/// A storage over `disk` that counts the bytes read from segment files.
fn counting(disk: &SimDisk) -> (Arc<dyn Storage>, Arc<AtomicU64>) {
    let read = Arc::new(AtomicU64::new(0));
    let count = read.clone();
    let hooks = Hooks {
        read: Some(Box::new(move |name, len| {
            if name.ends_with(".wal") {
                count.fetch_add(len as u64, Ordering::SeqCst);
            }
        })),
        ..Hooks::default()
    };
    (hooked(disk.storage(), hooks), read)
}

/// Writes `batches` batches of `per` records of `len` bytes under `sync`,
/// each waited for if `wait` (one frame each), closes cleanly, and returns
/// the log's valid bytes (its one segment's valid end) and its records.
fn write(
    disk: &SimDisk,
    sync: SyncPolicy,
    wait: bool,
    (batches, per, len): (usize, usize, usize),
) -> (u64, u64) {
    let options = Options::builder().sync(sync).build().unwrap();
    let (wal, _) = Wal::open_with(disk.storage(), options).unwrap();
    for b in 0..batches {
        let records: Vec<Vec<u8>> = (0..per)
            .map(|i| vec![u8::try_from((b * per + i) % 251).unwrap(); len])
            .collect();
        let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        let lsns = wal.append_batch(&refs).unwrap();
        if wait {
            wal.wait_durable(lsns.end - 1).unwrap();
        }
    }
    wal.sync().unwrap();
    wal.close().unwrap();
    let report = wal_engine::inspect(&*disk.storage(), Default::default()).unwrap();
    assert_eq!(report.segments.len(), 1, "the test wants one segment");
    (report.segments[0].valid_end, report.records)
}

#[test]
fn a_replay_reads_each_byte_about_once_whatever_the_frame_sizes() {
    // Under `Never` the owner writes when half a frame's 2 MiB fill is
    // queued, so frames are a megabyte or more: each part of 2 MiB ends
    // inside one.
    let disk = SimDisk::new(7);
    let (valid_end, records) = write(&disk, SyncPolicy::Never, false, (1200, 32, 1000));
    assert!(valid_end > 4 * PART_BYTES, "the log spans several parts");
    let (storage, read) = counting(&disk);
    let mut got = 0u64;
    let (wal, _) = Wal::open_with_replaying(storage, Options::default(), ReplayFrom::Start, |_| {
        got += 1;
        ControlFlow::Continue(())
    })
    .unwrap();
    wal.close().unwrap();
    assert_eq!(got, records);
    let read = read.load(Ordering::SeqCst);
    // Each part after the first starts at the 4 KiB block its predecessor
    // stopped in, and a part is sized by the large frame it must hold: a
    // few blocks and part of the short first part are read twice. (Parts
    // of a fixed length read this log 1.2 times over.)
    assert!(
        read <= valid_end + valid_end / 20,
        "read {read} bytes of a log of {valid_end}: {:.2} times over",
        read as f64 / valid_end as f64
    );
}

#[test]
fn a_replay_reads_a_bounded_way_ahead_of_a_slow_consumer() {
    // Small frames: every part is 2 MiB and the log is many of them.
    let disk = SimDisk::new(8);
    let (valid_end, records) = write(&disk, SyncPolicy::Always, true, (900, 4, 16 << 10));
    assert!(valid_end > 7 * PART_BYTES);
    let (storage, read) = counting(&disk);
    let mut got = 0u64;
    let mut read_while_held = 0;
    let (wal, _) = Wal::open_with_replaying(storage, Options::default(), ReplayFrom::Start, |_| {
        if got == 0 {
            // Hold the first record long enough for an unbounded scan to read
            // the whole segment (the simulated disk reads at memory speed).
            std::thread::sleep(Duration::from_millis(300));
            read_while_held = read.load(Ordering::SeqCst);
        }
        got += 1;
        ControlFlow::Continue(())
    })
    .unwrap();
    wal.close().unwrap();
    assert_eq!(got, records);
    // The part being handed out, one queued, and the one read next, which
    // waits for room in the queue.
    assert!(
        read_while_held <= 3 * PART_BYTES + 4 * 4096,
        "read {read_while_held} bytes ahead of a consumer still at its first record"
    );
}
