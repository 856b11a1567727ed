//! `truncate_back` never loses the log's position. Truncating every record
//! (`truncate_back(first_lsn - 1)`, as a Raft log does when a new leader's
//! log diverges from its first entry) leaves a log that goes on at
//! `first_lsn`, whatever operation fails and whatever a power loss then
//! keeps: never an empty directory that reopens at LSN 1 with a new log
//! identity, which would hand out LSNs a Raft log has used.

use wal_engine::{Options, Wal};
use wal_io::Op;
use wal_io::sim::{CrashMode, Fault, FaultError, SimDisk};

fn options() -> Options {
    let mut o = Options::default();
    o.segment_bytes = 16 << 10;
    o.queue_bytes_max = 4 << 10;
    o.record_bytes_max = 512;
    o.identity_seed = Some(3);
    o
}

fn record(lsn: u64) -> Vec<u8> {
    format!("#{lsn}").repeat(20).into_bytes()
}

/// A log of a few segments whose first one was purged, so it starts past
/// LSN 1. Returns it with its first and next LSN.
fn build(disk: &SimDisk) -> (Wal, u64, u64) {
    let (wal, _) = Wal::open_with(disk.storage(), options()).unwrap();
    let mut lsn = 0;
    while wal.stats().rotations < 3 {
        lsn += 1;
        wal.commit(&record(lsn)).unwrap();
    }
    wal.truncate_front(lsn).unwrap();
    let first = wal.first_lsn();
    assert!(first > 1, "the log must start past LSN 1");
    (wal, first, lsn + 1)
}

/// What a reopen after the crash must find: the truncation done (the log
/// goes on at `first`), or not done (a prefix of the old log that still
/// holds everything up to `first - 1`, which is nothing, and starts at
/// `first`), never a log that starts anywhere else.
fn check(disk: &SimDisk, first: u64, next: u64, what: &str) {
    let (wal, report) = Wal::open_with(disk.storage(), options())
        .unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"));
    assert_eq!(
        report.first_lsn, first,
        "{what}: the log's position moved: {report:?}"
    );
    assert!(
        (first..=next).contains(&report.next_lsn),
        "{what}: the log goes on at {}, outside {first}..={next}",
        report.next_lsn
    );
    for r in wal.reader(first).unwrap() {
        let r = r.unwrap();
        assert_eq!(&r.data[..], &record(r.lsn)[..], "{what}: LSN {}", r.lsn);
    }
    // New appends follow the recovered position.
    assert_eq!(wal.commit(b"after").unwrap(), report.next_lsn, "{what}");
}

#[test]
fn truncating_every_record_keeps_the_position_through_every_failure_and_crash() {
    let ops = [
        Op::Create,
        Op::Allocate,
        Op::Write,
        Op::SyncData,
        Op::Remove,
        Op::SyncDir,
        Op::Rename,
    ];
    let mut cases = 0;
    for op in ops {
        for nth in 1..=4u64 {
            for (m, mode) in CrashMode::CONCRETE.into_iter().enumerate() {
                let disk = SimDisk::new(nth * 31 + m as u64);
                let (wal, first, next) = build(&disk);
                disk.inject(Fault::once(op, disk.op_count(op) + nth, FaultError::Eio));
                let result = wal.truncate_back(first - 1);
                disk.crash(mode);
                drop(wal);
                disk.clear_faults();
                let what = format!("{op:?} #{nth} failing ({result:?}), then {mode:?}");
                check(&disk, first, next, &what);
                cases += 1;
            }
        }
    }
    assert_eq!(cases, 7 * 4 * CrashMode::CONCRETE.len());
}

#[test]
fn truncating_every_record_then_crashing_goes_on_at_the_first_lsn() {
    for (m, mode) in CrashMode::CONCRETE.into_iter().enumerate() {
        let disk = SimDisk::new(m as u64);
        let (wal, first, _) = build(&disk);
        wal.truncate_back(first - 1).unwrap();
        assert_eq!(wal.durable_lsn(), first - 1);
        disk.crash(mode);
        drop(wal);
        let (wal, report) = Wal::open_with(disk.storage(), options()).unwrap();
        assert_eq!(
            (report.first_lsn, report.next_lsn),
            (first, first),
            "{mode:?}: {report:?}"
        );
        assert_eq!(wal.commit(b"again").unwrap(), first);
    }
}

/// What the log holds before the second truncation of
/// `a_second_truncation_never_brings_back_what_the_first_cut`: the old
/// records up to the first cut, then the new ones.
fn second_history(lsn: u64, first_cut: u64) -> Vec<u8> {
    if lsn <= first_cut {
        record(lsn)
    } else {
        format!("new {lsn}").into_bytes()
    }
}

/// A truncation cuts a segment short only logically when it starts a new
/// segment inside it; a second truncation to before the first one removes
/// that new segment. Whatever fails and whatever a crash keeps, the log must
/// not come back holding the records the first truncation cut (the old
/// history past it): only a prefix of the log as it was before the call. The
/// records go in one by one (cuts at frame boundaries) or in batches of ten
/// (cuts inside frames, the second one inside the frame the first split).
#[test]
fn a_second_truncation_never_brings_back_what_the_first_cut() {
    let ops = [
        Op::Remove,
        Op::SyncDir,
        Op::Create,
        Op::Write,
        Op::Rename,
        Op::SetLen,
    ];
    let mut cases = 0;
    for (batch, second_cut) in [(1usize, 5u64), (10, 5), (10, 12)] {
        for op in ops {
            for nth in 1..=3u64 {
                for (m, mode) in CrashMode::CONCRETE.into_iter().enumerate() {
                    let disk = SimDisk::new(batch as u64 * 1000 + nth * 31 + m as u64);
                    let mut o = options();
                    o.segment_bytes = 64 << 10;
                    o.prepare_segments = false;
                    let (wal, _) = Wal::open_with(disk.storage(), o.clone()).unwrap();
                    for start in (1..=30u64).step_by(batch) {
                        let recs: Vec<Vec<u8>> =
                            (start..start + batch as u64).map(record).collect();
                        let refs: Vec<&[u8]> = recs.iter().map(Vec::as_slice).collect();
                        wal.append_batch(&refs).unwrap();
                        wal.sync().unwrap();
                    }
                    let first_cut = 15;
                    wal.truncate_back(first_cut).unwrap();
                    for lsn in first_cut + 1..=25 {
                        assert_eq!(wal.commit(&second_history(lsn, first_cut)).unwrap(), lsn);
                    }
                    disk.inject(Fault::once(op, disk.op_count(op) + nth, FaultError::Eio));
                    let result = wal.truncate_back(second_cut);
                    disk.crash(mode);
                    drop(wal);
                    disk.clear_faults();
                    let what = format!(
                        "batches of {batch}, {op:?} #{nth} failing ({result:?}), then {mode:?}"
                    );
                    let (wal, report) = Wal::open_with(disk.storage(), o)
                        .unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"));
                    assert!(
                        (second_cut + 1..=26).contains(&report.next_lsn),
                        "{what}: {report:?}"
                    );
                    for r in wal.reader(1).unwrap() {
                        let r = r.unwrap();
                        assert_eq!(
                            &r.data[..],
                            &second_history(r.lsn, first_cut)[..],
                            "{what}: LSN {} is not what the log held before the call",
                            r.lsn
                        );
                    }
                    cases += 1;
                }
            }
        }
    }
    assert_eq!(cases, 3 * 6 * 3 * CrashMode::CONCRETE.len());
}
