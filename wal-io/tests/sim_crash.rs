//! The simulated disk loses exactly what its crash modes say, reproducibly
//! from a seed, and injects the faults it is told to.
// Test sizes and counts are small: casts between integer widths cannot truncate.
#![allow(clippy::cast_possible_truncation)]

use std::collections::BTreeSet;

use wal_io::sim::{CrashMode, Fault, FaultError, SIM_SECTOR_BYTES, SimDisk};
use wal_io::{FileOptions, FileRef, IoError, Op, Storage};

const OPTS: FileOptions = FileOptions::BUFFERED;

/// A disk with one durable file `f` holding `base`.
fn disk_with(seed: u64, base: &[u8]) -> (SimDisk, std::sync::Arc<dyn Storage>, FileRef) {
    let disk = SimDisk::new(seed);
    let storage = disk.storage();
    let file = storage.create("f", OPTS).unwrap();
    storage.sync_dir().unwrap();
    file.write_at(0, &[base]).unwrap();
    file.sync_data().unwrap();
    (disk, storage, file)
}

fn content(disk: &SimDisk) -> Vec<u8> {
    let file = disk.storage().open("f", OPTS).unwrap();
    let mut buf = vec![0; file.size().unwrap() as usize];
    file.read_at(0, &mut buf).unwrap();
    buf
}

/// Appends `n` records of 100 bytes, record `i` filled with byte `i + 1`,
/// after `at`, without syncing.
fn unsynced_appends(file: &FileRef, at: usize, n: usize) {
    for i in 0..n {
        file.write_at((at + i * 100) as u64, &[&[i as u8 + 1; 100]])
            .unwrap();
    }
}

/// Which of the appended records survived whole; panics on a record that
/// survived in part (only the torn and garbage modes may do that).
fn surviving(content: &[u8], at: usize, n: usize) -> Vec<bool> {
    (0..n)
        .map(|i| {
            let rec = content.get(at + i * 100..at + (i + 1) * 100);
            match rec {
                Some(r) if r.iter().all(|&b| b == i as u8 + 1) => true,
                Some(r) if r.iter().all(|&b| b == 0) => false,
                None => false,
                Some(r) => panic!("record {i} survived in part: {r:?}"),
            }
        })
        .collect()
}

#[test]
fn lose_all_drops_every_unsynced_write() {
    let (disk, _s, file) = disk_with(1, b"durable");
    file.write_at(7, &[b" but not this"]).unwrap();
    file.write_at(0, &[b"DURABLE"]).unwrap();
    assert_eq!(
        content(&disk),
        b"DURABLE but not this",
        "reads see the page cache"
    );
    let report = disk.crash(CrashMode::LoseAll);
    assert_eq!(report.files[0].pending, 2);
    assert_eq!(report.files[0].kept, 0);
    assert_eq!(content(&disk), b"durable");
}

#[test]
fn synced_data_survives_every_mode() {
    for mode in CrashMode::CONCRETE.into_iter().chain([CrashMode::Any]) {
        for seed in 0..50 {
            let base: Vec<u8> = (0..2000usize).map(|i| (i % 200) as u8 + 1).collect();
            let (disk, _s, file) = disk_with(seed, &base);
            unsynced_appends(&file, 2000, 10);
            disk.crash(mode);
            let after = content(&disk);
            assert_eq!(
                &after[..2000],
                &base[..],
                "{mode:?} seed {seed}: synced bytes changed"
            );
        }
    }
}

#[test]
fn keep_prefix_keeps_a_prefix_and_varies_with_the_seed() {
    let mut lengths = BTreeSet::new();
    for seed in 0..200 {
        let (disk, _s, file) = disk_with(seed, b"h");
        unsynced_appends(&file, 1, 8);
        disk.crash(CrashMode::KeepPrefix);
        let kept = surviving(&content(&disk), 1, 8);
        let k = kept.iter().take_while(|&&k| k).count();
        assert!(
            kept[k..].iter().all(|&k| !k),
            "seed {seed}: not a prefix: {kept:?}"
        );
        lengths.insert(k);
    }
    assert_eq!(lengths, (0..=8).collect(), "every prefix length occurs");
}

#[test]
fn keep_subset_keeps_more_than_prefixes() {
    let mut non_prefix = 0;
    for seed in 0..200 {
        let (disk, _s, file) = disk_with(seed, b"h");
        unsynced_appends(&file, 1, 8);
        disk.crash(CrashMode::KeepSubset);
        let kept = surviving(&content(&disk), 1, 8);
        let k = kept.iter().take_while(|&&k| k).count();
        if kept[k..].iter().any(|&k| k) {
            non_prefix += 1;
        }
    }
    assert!(
        non_prefix > 50,
        "a later write survives an earlier lost one ({non_prefix} of 200)"
    );
}

/// A torn write lands whole sectors of itself, any subset of them: sometimes
/// a later sector without an earlier one, never half a sector.
#[test]
fn torn_writes_land_whole_sectors_in_any_subset() {
    let sectors = 8;
    let mut later_without_earlier = 0;
    let mut torn = 0;
    for seed in 0..300 {
        let (disk, _s, file) = disk_with(seed, &vec![0xee; sectors * SIM_SECTOR_BYTES]);
        let new: Vec<u8> = (0..sectors * SIM_SECTOR_BYTES)
            .map(|i| (i / SIM_SECTOR_BYTES) as u8 + 1)
            .collect();
        file.write_at(0, &[&new]).unwrap();
        let report = disk.crash(CrashMode::TornWrite);
        let after = content(&disk);
        let landed: Vec<bool> = after
            .chunks(SIM_SECTOR_BYTES)
            .enumerate()
            .map(|(s, chunk)| {
                if chunk.iter().all(|&b| b == s as u8 + 1) {
                    true
                } else {
                    assert!(
                        chunk.iter().all(|&b| b == 0xee),
                        "seed {seed}: sector {s} is half new"
                    );
                    false
                }
            })
            .collect();
        if report.files[0].kept == 0 {
            // The write itself was the one torn.
            torn += 1;
            let first_lost = landed.iter().position(|&l| !l);
            if let Some(first) = first_lost {
                assert_eq!(
                    report.files[0].damaged_sector,
                    Some((first * SIM_SECTOR_BYTES) as u64)
                );
                if landed[first..].iter().any(|&l| l) {
                    later_without_earlier += 1;
                }
            }
        }
    }
    assert!(torn > 100, "{torn}");
    assert!(later_without_earlier > 20, "{later_without_earlier}");
}

#[test]
fn a_garbage_sector_lies_inside_the_last_kept_write() {
    let mut garbled = 0;
    for seed in 0..100 {
        let (disk, _s, file) = disk_with(seed, &[0xee; 4096]);
        file.write_at(0, &[&[0x11; 4096]]).unwrap();
        let report = disk.crash(CrashMode::GarbageSector);
        let after = content(&disk);
        match report.files[0].damaged_sector {
            Some(at) => {
                garbled += 1;
                let at = at as usize;
                let sector = &after[at..at + SIM_SECTOR_BYTES];
                assert!(
                    sector.iter().any(|&b| b != 0x11 && b != 0xee),
                    "seed {seed}: not garbage"
                );
                assert!(
                    after[..at]
                        .iter()
                        .chain(&after[at + SIM_SECTOR_BYTES..])
                        .all(|&b| b == 0x11)
                );
            }
            None => assert!(
                after.iter().all(|&b| b == 0xee),
                "seed {seed}: nothing kept, nothing changed"
            ),
        }
    }
    assert!(garbled > 20, "{garbled}");
}

#[test]
fn unsynced_directory_operations_can_vanish() {
    let disk = SimDisk::new(3);
    let storage = disk.storage();
    let created = storage.create("new", OPTS).unwrap();
    created.write_at(0, &[b"data"]).unwrap();
    created.sync_data().unwrap();
    disk.crash(CrashMode::LoseAll);
    assert!(
        disk.storage().list().unwrap().is_empty(),
        "a file whose directory was never synced is gone"
    );

    let storage = disk.storage();
    let file = storage.create("old", OPTS).unwrap();
    file.write_at(0, &[b"x"]).unwrap();
    file.sync_data().unwrap();
    storage.sync_dir().unwrap();
    storage.rename("old", "renamed").unwrap();
    disk.crash(CrashMode::LoseAll);
    assert_eq!(
        disk.storage().list().unwrap(),
        ["old"],
        "an unsynced rename is undone"
    );

    let storage = disk.storage();
    storage.rename("old", "renamed").unwrap();
    storage.sync_dir().unwrap();
    disk.crash(CrashMode::Any);
    assert_eq!(disk.storage().list().unwrap(), ["renamed"]);
    assert_eq!(disk.durable_content("renamed").unwrap(), b"x");
}

#[test]
fn unsynced_directory_operations_survive_as_a_prefix() {
    let mut outcomes = BTreeSet::new();
    for seed in 0..100 {
        let disk = SimDisk::new(seed);
        let storage = disk.storage();
        for name in ["a", "b", "c"] {
            storage.create(name, OPTS).unwrap();
        }
        disk.crash(CrashMode::KeepPrefix);
        let names = disk.storage().list().unwrap();
        let expected: Vec<&str> = ["a", "b", "c"][..names.len()].to_vec();
        assert_eq!(names, expected, "seed {seed}");
        outcomes.insert(names.len());
    }
    assert_eq!(outcomes.len(), 4);
}

/// The same seed and the same operations give the same disk; other seeds differ.
#[test]
fn crashes_are_reproducible_from_the_seed() {
    let run = |seed: u64| {
        let (disk, _s, file) = disk_with(seed, b"base");
        unsynced_appends(&file, 4, 20);
        let report = disk.crash(CrashMode::Any);
        (report, content(&disk))
    };
    for seed in [0, 1, 99, u64::MAX] {
        assert_eq!(run(seed), run(seed), "seed {seed}");
    }
    let distinct: BTreeSet<Vec<u8>> = (0..20).map(|s| run(s).1).collect();
    assert!(distinct.len() > 5, "seeds lead to different outcomes");
}

#[test]
fn handles_of_a_crashed_process_are_dead_and_the_lock_is_freed() {
    let (disk, storage, file) = disk_with(5, b"x");
    let lock = storage.lock().unwrap();
    disk.crash(CrashMode::LoseAll);
    assert!(matches!(
        file.write_at(0, &[b"y"]),
        Err(IoError::Crashed { .. })
    ));
    assert!(matches!(storage.list(), Err(IoError::Crashed { .. })));
    let fresh = disk.storage();
    let _lock = fresh.lock().expect("the crash released the lock");
    drop(lock);
    assert!(
        matches!(fresh.lock(), Err(IoError::Locked { .. })),
        "a dead guard does not unlock the new holder"
    );
}

#[test]
fn faults_hit_the_nth_operation_once_or_from_then_on() {
    let (disk, _s, file) = disk_with(9, b"");
    let before = disk.op_count(Op::Write);
    disk.inject(Fault::once(Op::Write, before + 2, FaultError::Eio));
    file.write_at(0, &[b"1"]).unwrap();
    let err = file.write_at(1, &[b"2"]).unwrap_err();
    assert_eq!(
        err.raw_os_error(),
        Some(rustix::io::Errno::IO.raw_os_error())
    );
    file.write_at(1, &[b"3"]).unwrap();
    assert_eq!(
        disk.op_count(Op::Write),
        before + 3,
        "failed operations count too"
    );
    let mut buf = [0; 2];
    file.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"13", "a failed write changes nothing");

    let syncs = disk.op_count(Op::SyncData);
    disk.inject(Fault::from_then_on(
        Op::SyncData,
        syncs + 1,
        FaultError::Enospc,
    ));
    for _ in 0..3 {
        let err = file.sync_data().unwrap_err();
        assert_eq!(
            err.raw_os_error(),
            Some(rustix::io::Errno::NOSPC.raw_os_error())
        );
    }
    disk.clear_faults();
    file.sync_data().unwrap();
}

/// Makes the disk's next data sync fail with EIO, once.
fn fail_next_sync(disk: &SimDisk) {
    disk.inject(Fault::once(
        Op::SyncData,
        disk.op_count(Op::SyncData) + 1,
        FaultError::Eio,
    ));
}

/// Linux after a failed fsync: the data stays readable, a later fsync
/// succeeds, and yet the data is not durable.
#[test]
fn a_failed_sync_loses_its_data_for_good() {
    let (disk, _s, file) = disk_with(11, b"old");
    file.write_at(0, &[b"new"]).unwrap();
    fail_next_sync(&disk);
    assert!(file.sync_data().is_err());
    let mut buf = [0; 3];
    file.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"new", "still in the page cache");
    file.sync_data().expect("the retry succeeds");
    disk.crash(CrashMode::KeepPrefix);
    assert_eq!(
        content(&disk),
        b"old",
        "but what the failed sync covered never reached the disk"
    );
}

/// Dropping the cache after a failed sync: reads then return what the
/// device holds (the lost bytes are gone), while writes not synced yet
/// (dirty pages) stay readable.
#[test]
fn dropping_the_cache_shows_what_a_failed_sync_lost() {
    let (disk, _s, file) = disk_with(12, b"old");
    file.write_at(0, &[b"new"]).unwrap();
    fail_next_sync(&disk);
    assert!(file.sync_data().is_err());
    file.write_at(3, &[b"+dirty"]).unwrap();
    let mut buf = [0; 9];
    file.read_at(0, &mut buf).unwrap();
    assert_eq!(
        &buf, b"new+dirty",
        "before: the lost bytes are still cached"
    );
    file.drop_cache().unwrap();
    file.read_at(0, &mut buf).unwrap();
    assert_eq!(
        &buf, b"old+dirty",
        "after: the device's bytes, and the dirty ones"
    );
    file.sync_data().unwrap();
    disk.crash(CrashMode::KeepPrefix);
    assert_eq!(content(&disk), b"old+dirty", "which is what survives");
}

#[test]
fn every_kind_of_operation_can_fail() {
    let disk = SimDisk::new(13);
    let storage = disk.storage();
    let file = storage.create("f", OPTS).unwrap();
    type Attempt = Box<dyn Fn() -> Result<(), IoError>>;
    let attempts: Vec<(Op, Attempt)> = vec![
        (
            Op::Create,
            Box::new({
                let s = storage.clone();
                move || s.create("g", OPTS).map(drop)
            }),
        ),
        (
            Op::Open,
            Box::new({
                let s = storage.clone();
                move || s.open("f", OPTS).map(drop)
            }),
        ),
        (
            Op::Rename,
            Box::new({
                let s = storage.clone();
                move || s.rename("f", "f2").and_then(|()| s.rename("f2", "f"))
            }),
        ),
        (
            Op::List,
            Box::new({
                let s = storage.clone();
                move || s.list().map(drop)
            }),
        ),
        (
            Op::SyncDir,
            Box::new({
                let s = storage.clone();
                move || s.sync_dir()
            }),
        ),
        (
            Op::Lock,
            Box::new({
                let s = storage.clone();
                move || s.lock().map(drop)
            }),
        ),
        (
            Op::Write,
            Box::new({
                let f = file.clone();
                move || f.write_at(0, &[b"w"])
            }),
        ),
        (
            Op::Read,
            Box::new({
                let f = file.clone();
                move || f.read_at(0, &mut [0])
            }),
        ),
        (
            Op::SyncData,
            Box::new({
                let f = file.clone();
                move || f.sync_data()
            }),
        ),
        (
            Op::Allocate,
            Box::new({
                let f = file.clone();
                move || f.allocate(0, 10)
            }),
        ),
        (
            Op::SetLen,
            Box::new({
                let f = file.clone();
                move || f.set_len(10)
            }),
        ),
        (
            Op::Len,
            Box::new({
                let f = file.clone();
                move || f.size().map(drop)
            }),
        ),
        (
            Op::DropCache,
            Box::new({
                let f = file.clone();
                move || f.drop_cache()
            }),
        ),
    ];
    for (op, attempt) in &attempts {
        disk.inject(Fault::once(*op, disk.op_count(*op) + 1, FaultError::Eio));
        let err = attempt().expect_err(&format!("{op} did not fail"));
        assert_eq!(
            err.raw_os_error(),
            Some(rustix::io::Errno::IO.raw_os_error()),
            "{op}"
        );
        attempt().unwrap_or_else(|e| panic!("{op} failed twice: {e}"));
    }
    let g = storage.open("g", OPTS);
    assert!(g.is_ok(), "the retried create made the file");
    storage.remove("g").unwrap();
    disk.inject(Fault::once(
        Op::Remove,
        disk.op_count(Op::Remove) + 1,
        FaultError::Eio,
    ));
    storage.create("g", OPTS).unwrap();
    assert!(storage.remove("g").is_err());
    storage.remove("g").unwrap();
}

/// The simulator refuses sizes it could not hold instead of allocating them.
#[test]
fn hostile_offsets_are_refused() {
    let (_disk, _s, file) = disk_with(17, b"");
    let efbig = rustix::io::Errno::FBIG.raw_os_error();
    assert_eq!(
        file.write_at(u64::MAX - 1, &[b"x"])
            .unwrap_err()
            .raw_os_error(),
        Some(efbig)
    );
    assert_eq!(
        file.set_len(1 << 40).unwrap_err().raw_os_error(),
        Some(efbig)
    );
    assert_eq!(
        file.allocate(1 << 40, 1).unwrap_err().raw_os_error(),
        Some(efbig)
    );
}

fn filled(fill: u8, len: usize) -> wal_io::IoBuf {
    let mut buf = wal_io::IoBuf::with_capacity(len);
    buf.resize(len, fill);
    buf
}

/// Pushes writes 0..4 of 100 bytes, a sync (token 4), then writes 5 and 6,
/// and waits for all of them; returns the tokens in completion order.
fn queued_order(disk: &SimDisk, file: &FileRef) -> Vec<u64> {
    let mut queue = disk.storage().queue(8).unwrap();
    for token in 0..7u64 {
        if token == 4 {
            queue.push_sync(token, file).unwrap();
        } else {
            let buf = filled(token as u8 + 1, 100);
            queue
                .push_write(token, file, 100 * token, buf, false)
                .unwrap();
        }
    }
    queue.submit().unwrap();
    let mut done = Vec::new();
    queue.wait(usize::MAX, &mut done).unwrap();
    assert_eq!(queue.in_flight(), 0);
    done.iter()
        .map(|c| {
            assert!(c.result.is_ok(), "token {}: {:?}", c.token, c.result);
            c.token
        })
        .collect()
}

#[test]
fn queued_writes_complete_in_any_order_but_never_past_a_sync() {
    let mut orders = BTreeSet::new();
    for seed in 0..64 {
        let (disk, _s, file) = disk_with(seed, b"");
        let order = queued_order(&disk, &file);
        let pos = |t: u64| order.iter().position(|&x| x == t).unwrap();
        assert_eq!(order.len(), 7, "seed {seed}: {order:?}");
        for write in 0..4 {
            assert!(pos(write) < pos(4), "seed {seed}: {order:?}");
        }
        assert!(pos(4) < pos(5) && pos(4) < pos(6), "seed {seed}: {order:?}");
        if order[..4] != [0, 1, 2, 3] {
            assert!(disk.queue_reorders() > 0, "seed {seed}: uncounted reorder");
        }
        // Reproducible from the seed.
        let (again, _s, file) = disk_with(seed, b"");
        assert_eq!(queued_order(&again, &file), order, "seed {seed}");
        orders.insert(order);
    }
    assert!(
        orders.len() > 20,
        "64 seeds gave only {} completion orders",
        orders.len()
    );
}

/// Two writes in flight, the later one durable by itself: a crash between
/// their completions keeps the later one and never the earlier one.
#[test]
fn a_crash_can_keep_a_later_durable_write_without_an_earlier_one() {
    let base = [0u8; 200];
    let seed = (0..64)
        .find(|&seed| {
            let (disk, _s, file) = disk_with(seed, &base);
            let mut queue = disk.storage().queue(2).unwrap();
            queue
                .push_write(0, &file, 0, filled(1, 100), false)
                .unwrap();
            queue
                .push_write(1, &file, 100, filled(2, 100), true)
                .unwrap();
            let mut done = Vec::new();
            queue.wait(1, &mut done).unwrap();
            if done.len() != 1 || done[0].token != 1 {
                return false;
            }
            assert!(done[0].result.is_ok());
            // The crash kills the process with write 0 never started; the
            // queue's drop then finds its handles dead.
            disk.crash(CrashMode::LoseAll);
            drop(queue);
            let after = content(&disk);
            assert_eq!(surviving(&after, 0, 2), [false, true], "seed {seed}");
            true
        })
        .expect("no seed in 64 completed the later write first");
    eprintln!("seed {seed} completed the later write first");
}

#[test]
fn operations_queued_before_a_crash_fail_as_crashed() {
    let (disk, storage, file) = disk_with(3, b"");
    let mut queue = storage.queue(2).unwrap();
    queue.push_write(0, &file, 0, filled(1, 100), true).unwrap();
    queue.submit().unwrap();
    disk.crash(CrashMode::LoseAll);
    let mut done = Vec::new();
    queue.wait(1, &mut done).unwrap();
    assert!(
        matches!(done[0].result, Err(IoError::Crashed { .. })),
        "{:?}",
        done[0].result
    );
    assert!(content(&disk).is_empty(), "nothing was written");
    assert!(
        matches!(storage.queue(2), Err(IoError::Crashed { .. })),
        "a crashed process cannot make a queue"
    );
}

/// A queued durable write (`RWF_DSYNC`) makes its own pages durable and
/// nothing else: another unsynced write of the same file is still lost by a
/// power cut. (A caller that took it for a whole-file sync is caught here,
/// as on Linux it would lose data.)
#[test]
fn a_durable_queued_write_makes_only_its_own_pages_durable() {
    let (disk, storage, file) = disk_with(5, &[7u8; 100]);
    file.write_at(3 * 4096, &[&[9u8; 100]]).unwrap();
    let mut queue = storage.queue(4).unwrap();
    let mut buf = wal_io::IoBuf::with_capacity(4096);
    buf.resize(4096, 0);
    buf.as_mut_slice()[..5].copy_from_slice(b"dsync");
    queue.push_write(1, &file, 4096, buf, true).unwrap();
    let mut done = Vec::new();
    queue.wait(1, &mut done).unwrap();
    assert!(done.iter().all(|c| c.result.is_ok()));
    drop(queue);
    disk.crash(CrashMode::LoseAll);
    let after = content(&disk);
    assert_eq!(&after[..100], &[7u8; 100], "the synced base is kept");
    assert_eq!(&after[4096..4101], b"dsync", "the durable write is kept");
    assert_eq!(
        after.len(),
        2 * 4096,
        "the other unsynced write (and the length it set) is lost"
    );
}
