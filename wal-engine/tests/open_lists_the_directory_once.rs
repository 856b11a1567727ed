//! An open lists the log's directory once, for recovery: the clean-close
//! record, a spare segment and a staged one are opened (or removed) by name.
//! After a restart the directory's blocks are often not cached where the
//! names' lookups are, and each listing then waits on the disk.

use wal_engine::{CLEAN_CLOSE_NAME, Options, SPARE_NAME, STAGED_NAME, Wal};
use wal_io::sim::SimDisk;
use wal_io::{FileOptions, Op, Storage};

fn options() -> Options {
    let mut o = Options::default();
    o.segment_bytes = 16 << 20;
    o.prepare_segments = false;
    o
}

/// A log of 50 records, closed cleanly.
fn closed_log(seed: u64) -> SimDisk {
    let disk = SimDisk::new(seed);
    let (wal, _) = Wal::open_with(disk.storage(), options()).unwrap();
    for i in 0..50u32 {
        wal.commit(&i.to_le_bytes()).unwrap();
    }
    wal.close().unwrap();
    disk
}

/// Opens the log and returns how many listings the open made.
fn listings_of_open(disk: &SimDisk) -> (Wal, u64) {
    let before = disk.op_count(Op::List);
    let (wal, report) = Wal::open_with(disk.storage(), options()).unwrap();
    assert_eq!(report.next_lsn, 51, "{report:?}");
    (wal, disk.op_count(Op::List) - before)
}

fn leave(storage: &dyn Storage, name: &str, bytes: &[u8]) {
    let file = storage.create(name, FileOptions::default()).unwrap();
    file.write_at(0, &[bytes]).unwrap();
    file.sync_data().unwrap();
    storage.sync_dir().unwrap();
}

#[test]
fn an_open_with_a_clean_close_record_or_without_one_lists_once() {
    for with_record in [true, false] {
        let disk = closed_log(1);
        let storage = disk.storage();
        assert!(
            storage
                .list()
                .unwrap()
                .iter()
                .any(|n| n == CLEAN_CLOSE_NAME)
        );
        if !with_record {
            storage.remove(CLEAN_CLOSE_NAME).unwrap();
            storage.sync_dir().unwrap();
        }
        let (wal, listings) = listings_of_open(&disk);
        assert_eq!(listings, 1, "with a record: {with_record}");
        wal.close().unwrap();
    }
}

/// A staged segment a crash left goes; so does a spare that cannot serve
/// (not a segment's size), and neither takes a listing to find.
#[test]
fn an_open_that_clears_leftovers_lists_once_and_clears_them() {
    let disk = closed_log(3);
    let storage = disk.storage();
    leave(&*storage, STAGED_NAME, b"a staged segment a crash left");
    leave(&*storage, SPARE_NAME, b"a spare cut short");
    let (wal, listings) = listings_of_open(&disk);
    assert_eq!(listings, 1);
    let names = storage.list().unwrap();
    assert!(!names.iter().any(|n| n == STAGED_NAME), "{names:?}");
    assert!(!names.iter().any(|n| n == SPARE_NAME), "{names:?}");
    wal.commit(b"after").unwrap();
    wal.close().unwrap();
}
