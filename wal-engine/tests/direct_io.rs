//! The pipelined O_DIRECT writer (`Options::direct_io`) on real files:
//! several durable writes in flight, padded segments, every record back
//! after a reopen, and logs that switch between buffered and direct writes.
// Test sizes and counts are small: casts between integer widths cannot truncate.
#![allow(clippy::cast_possible_truncation)]

use std::path::Path;
use std::sync::Arc;

use wal_engine::{Options, SyncPolicy, Wal, parse_segment_name};
use wal_format::SegmentHeader;
use wal_io::{Backend, BackendChoice};

fn options(direct: bool) -> Options {
    let mut o = Options::default();
    o.segment_bytes = 256 << 10;
    o.queue_bytes_max = 32 << 10;
    o.record_bytes_max = 2 << 10;
    o.direct_io = direct;
    o
}

fn record(lsn: u64) -> Vec<u8> {
    format!("[{lsn}]")
        .repeat(1 + (lsn % 40) as usize)
        .into_bytes()
}

fn open(dir: &Path, options: Options) -> (Wal, wal_engine::RecoveryReport) {
    let storage = wal_io::open_dir(dir, BackendChoice::Uring).unwrap();
    Wal::open_with(storage, options).unwrap()
}

/// Every record from the first LSN, checked against `record`.
fn check_all(wal: &Wal, expect: u64) {
    let mut n = 0;
    for r in wal.reader(wal.first_lsn()).unwrap() {
        let r = r.unwrap();
        assert_eq!(r.lsn, n + 1, "LSNs are dense");
        assert_eq!(&r.data[..], &record(r.lsn)[..], "LSN {}", r.lsn);
        n += 1;
    }
    assert_eq!(n, expect);
}

/// (first LSN, padded) of every segment file, in LSN order.
fn segments(dir: &Path) -> Vec<(u64, bool)> {
    let mut out: Vec<(u64, bool)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            let lsn = parse_segment_name(&name)?;
            let bytes = std::fs::read(dir.join(&name)).unwrap();
            Some((lsn, SegmentHeader::decode(&bytes).unwrap().padded()))
        })
        .collect();
    out.sort_unstable();
    out
}

/// Commits `per_thread` records from each of `threads` threads; LSNs are
/// assigned in append order, so each record is made from the LSN it got
/// under a lock that keeps append order and record order the same.
fn commit_from_threads(wal: &Arc<Wal>, threads: usize, per_thread: usize) {
    let order = Arc::new(std::sync::Mutex::new(()));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let wal = wal.clone();
            let order = order.clone();
            std::thread::spawn(move || {
                for _ in 0..per_thread {
                    let lsn = {
                        let _g = order.lock().unwrap();
                        let lsn = wal.appended_lsn() + 1;
                        assert_eq!(wal.append(&record(lsn)).unwrap(), lsn);
                        lsn
                    };
                    wal.wait_durable(lsn).unwrap();
                    assert!(wal.durable_lsn() >= lsn);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn committers_keep_several_writes_in_flight_and_everything_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open(dir.path(), options(true));
    assert_eq!(wal.backend(), Backend::Uring, "this test needs io_uring");
    let wal = Arc::new(wal);
    commit_from_threads(&wal, 16, 300);
    let stats = wal.stats();
    assert!(
        stats.writes_in_flight_peak > 1,
        "writes never overlapped: {stats:?}"
    );
    assert!(
        stats.writes_in_flight_peak <= 8,
        "more in flight than allowed"
    );
    assert!(stats.rotations > 0, "the test should cross segments");
    check_all(&wal, 4800);
    drop(wal);
    let (wal, report) = open(dir.path(), options(true));
    assert!(report.cuts.is_empty(), "{:?}", report.cuts);
    assert_eq!(report.next_lsn, 4801);
    check_all(&wal, 4800);
    // A segment opened for O_DIRECT is padded; every one here was.
    assert!(segments(dir.path()).iter().all(|&(_, padded)| padded));
}

#[test]
fn a_log_switches_between_buffered_and_direct_writes_at_its_next_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut lsn = 0;
    let mut commit = |wal: &Wal, n: u64| {
        for _ in 0..n {
            lsn += 1;
            assert_eq!(wal.commit(&record(lsn)).unwrap(), lsn);
        }
    };
    for (direct, n) in [(false, 500), (true, 900), (false, 700), (true, 300)] {
        // Small segments, so every phase rotates at least once.
        let mut o = options(direct);
        o.segment_bytes = 64 << 10;
        o.queue_bytes_max = 8 << 10;
        let (wal, report) = open(dir.path(), o);
        assert!(report.cuts.is_empty(), "{:?}", report.cuts);
        commit(&wal, n);
        check_all(&wal, report.next_lsn - 1 + n);
    }
    let segs = segments(dir.path());
    // The active segment keeps the way it was written until it rotates, so
    // each switch shows at the next segment.
    assert!(segs.first().is_some_and(|&(_, padded)| !padded));
    let switches = segs.windows(2).filter(|w| w[0].1 != w[1].1).count();
    assert_eq!(switches, 3, "{segs:?}");
    let (wal, _) = open(dir.path(), options(false));
    check_all(&wal, lsn);
}

#[test]
fn every_policy_makes_commits_durable_and_syncs_cover_plain_writes() {
    let policies = [
        SyncPolicy::Always,
        SyncPolicy::Group {
            max_delay: std::time::Duration::from_micros(100),
            max_batch_bytes: 4096,
        },
        SyncPolicy::Interval(std::time::Duration::from_millis(2)),
        SyncPolicy::Never,
    ];
    for policy in policies {
        let dir = tempfile::tempdir().unwrap();
        let mut o = options(true);
        o.sync = policy;
        let (wal, _) = open(dir.path(), o.clone());
        for lsn in 1..=2000 {
            assert_eq!(wal.append(&record(lsn)).unwrap(), lsn);
            if lsn % 97 == 0 {
                // More durability than the policy gives, on request.
                wal.wait_durable(lsn).unwrap();
                assert!(wal.durable_lsn() >= lsn, "{policy:?}");
            }
        }
        wal.sync().unwrap();
        assert_eq!(wal.durable_lsn(), 2000, "{policy:?}");
        check_all(&wal, 2000);
        drop(wal);
        let (wal, report) = open(dir.path(), o);
        assert_eq!(report.next_lsn, 2001, "{policy:?}");
        check_all(&wal, 2000);
    }
}
