//! The spare segment is written with zeros only while the log's frames are
//! small: small commits' syncs then find blocks already written (cheaper
//! than converting never-written ones), while a bulk ingest, writing
//! megabytes per sync, would only pay for writing every segment twice.

use wal_engine::{Options, Wal};
use wal_io::sim::SimDisk;

/// Rotations through prepared spares each case waits for.
const PREPARED: u64 = 2;
/// Gives up after this many records (the cases need far fewer).
const RECORDS_MAX: u64 = 200_000;

fn open(seed: u64) -> Wal {
    let mut o = Options::default(); // SyncPolicy::Always
    o.segment_bytes = 4 << 20;
    o.queue_bytes_max = 1 << 20;
    o.record_bytes_max = 256 << 10;
    o.recycle_segments = false;
    o.identity_seed = Some(seed);
    Wal::open_with(SimDisk::new(seed).storage(), o).unwrap().0
}

#[test]
fn small_commits_get_zero_filled_spares() {
    let wal = open(11);
    let record = [7u8; 2048];
    let mut n = 0;
    while wal.stats().rotations_prepared < PREPARED {
        n += 1;
        assert!(n < RECORDS_MAX, "no prepared rotation: {:?}", wal.stats());
        wal.commit(&record).unwrap();
    }
    let stats = wal.stats();
    assert!(stats.spares_zero_filled >= PREPARED, "{stats:?}");
}

#[test]
fn a_bulk_ingest_gets_preallocated_spares() {
    let wal = open(12);
    let record = vec![9u8; 128 << 10];
    let mut n = 0;
    while wal.stats().rotations_prepared < PREPARED {
        n += 1;
        assert!(n < RECORDS_MAX, "no prepared rotation: {:?}", wal.stats());
        // Six records per frame: 768 KiB writes, as an ingest makes.
        let batch: Vec<&[u8]> = (0..6).map(|_| &record[..]).collect();
        wal.append_batch(&batch).unwrap();
    }
    wal.sync().unwrap();
    let stats = wal.stats();
    assert_eq!(stats.spares_zero_filled, 0, "{stats:?}");
    // Every record reads back all the same.
    let read = wal.reader(1).unwrap().count() as u64;
    assert_eq!(read, wal.appended_lsn());
}
