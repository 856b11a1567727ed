//! The log's public behaviour on real files and on the simulated disk:
//! policies, watermarks, readers, truncation, waiting forms, limits.
// Test sizes and counts are small: casts between integer widths cannot truncate.
#![allow(clippy::cast_possible_truncation)]

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wal_engine::{Options, RecoveryMode, SyncPolicy, Wal, WalError};
use wal_io::sim::SimDisk;

fn small() -> Options {
    let mut o = Options::default();
    o.segment_bytes = 16 << 10;
    o.queue_bytes_max = 4 << 10;
    o.record_bytes_max = 1 << 10;
    o.identity_seed = Some(1);
    o
}

fn record(i: u64) -> Vec<u8> {
    format!("record {i} ")
        .repeat(1 + (i % 7) as usize)
        .into_bytes()
}

fn read_all(wal: &Wal, from: u64) -> Vec<(u64, Vec<u8>)> {
    wal.reader(from)
        .unwrap()
        .map(|r| r.map(|r| (r.lsn, r.data.to_vec())))
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn records_survive_reopen_across_many_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), small()).unwrap();
    for i in 1..=500u64 {
        assert_eq!(wal.commit(&record(i)).unwrap(), i);
    }
    assert_eq!(wal.durable_lsn(), 500);
    let segments = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".wal")
        })
        .count();
    assert!(segments > 3, "rotation happened ({segments} segments)");
    let all = read_all(&wal, 1);
    assert_eq!(all.len(), 500);
    assert!(all.iter().all(|(lsn, data)| *data == record(*lsn)));
    drop(wal);
    let (wal, report) = Wal::open(dir.path(), small()).unwrap();
    assert_eq!(report.records, 500);
    assert_eq!(report.next_lsn, 501);
    assert!(report.cuts.is_empty(), "{:?}", report.cuts);
    assert_eq!(read_all(&wal, 250).len(), 251);
    assert_eq!(wal.commit(b"after").unwrap(), 501);
}

#[test]
fn a_second_open_is_refused_naming_the_lock_file() {
    let dir = tempfile::tempdir().unwrap();
    let (_wal, _) = Wal::open(dir.path(), small()).unwrap();
    let err = Wal::open(dir.path(), small()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("LOCK"), "{text}");
}

#[test]
fn invalid_options_are_named() {
    let disk = SimDisk::new(1);
    let mut o = small();
    o.segment_bytes = 1000;
    match Wal::open_with(disk.storage(), o) {
        Err(WalError::InvalidOptions { field, .. }) => assert_eq!(field, "segment_bytes"),
        other => panic!("{other:?}"),
    }
    let mut o = small();
    o.record_bytes_max = o.queue_bytes_max;
    assert!(matches!(
        Wal::open_with(disk.storage(), o),
        Err(WalError::InvalidOptions {
            field: "record_bytes_max",
            ..
        })
    ));
}

#[test]
fn limits_are_enforced_with_clear_errors() {
    let disk = SimDisk::new(2);
    let (wal, _) = Wal::open_with(disk.storage(), small()).unwrap();
    assert!(matches!(
        wal.append(&[0; 2000]),
        Err(WalError::RecordTooLarge {
            len: 2000,
            max: 1024
        })
    ));
    let big = [0u8; 1000];
    let batch: Vec<&[u8]> = (0..5).map(|_| &big[..]).collect();
    assert!(matches!(
        wal.append_batch(&batch),
        Err(WalError::BatchTooLarge { .. })
    ));
    assert!(matches!(wal.append_batch(&[]), Err(WalError::EmptyBatch)));
    assert!(matches!(
        wal.wait_durable(5),
        Err(WalError::BeyondEnd { lsn: 5, next: 1 })
    ));
    assert_eq!(wal.append(b"ok").unwrap(), 1, "failed calls assign no LSN");
}

#[test]
fn batches_are_contiguous_and_read_back_in_order() {
    let disk = SimDisk::new(3);
    let (wal, _) = Wal::open_with(disk.storage(), small()).unwrap();
    let a = wal.append_batch(&[b"a1", b"a2", b"a3"]).unwrap();
    let b = wal.append_batch(&[b"b1"]).unwrap();
    assert_eq!((a, b.clone()), (1..4, 4..5));
    wal.wait_durable(4).unwrap();
    let got: Vec<Vec<u8>> = read_all(&wal, 2).into_iter().map(|(_, d)| d).collect();
    assert_eq!(got, [&b"a2"[..], b"a3", b"b1"]);
}

#[test]
fn many_threads_commit_and_every_commit_is_durable_when_it_returns() {
    let disk = SimDisk::new(4);
    let (wal, _) = Wal::open_with(disk.storage(), small()).unwrap();
    let wal = Arc::new(wal);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let wal = wal.clone();
            std::thread::spawn(move || {
                (0..100)
                    .map(|i| {
                        let lsn = wal.commit(format!("t{t} i{i}").as_bytes()).unwrap();
                        assert!(
                            wal.durable_lsn() >= lsn,
                            "commit returned before durability"
                        );
                        lsn
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut lsns: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    lsns.sort_unstable();
    assert_eq!(
        lsns,
        (1..=800).collect::<Vec<_>>(),
        "LSNs are dense and unique"
    );
    let stats = wal.stats();
    assert_eq!(stats.appends, 800);
    assert!(stats.batches <= 800 && stats.syncs >= 1);
    assert_eq!(read_all(&wal, 1).len(), 800);
}

#[test]
fn policies_decide_when_commits_return_and_syncs_happen() {
    // Never: commits return at once and nothing becomes durable unless asked.
    let disk = SimDisk::new(5);
    let mut o = small();
    o.sync = SyncPolicy::Never;
    let (wal, _) = Wal::open_with(disk.storage(), o).unwrap();
    let lsn = wal.commit(b"x").unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(wal.durable_lsn(), 0);
    assert_eq!(wal.stats().syncs, 0);
    // One caller can ask for more durability than the policy gives.
    wal.commit_durable(b"y").unwrap();
    assert!(wal.durable_lsn() > lsn);
    drop(wal);

    // Interval: a commit returns at once, a sync follows within the interval.
    let disk = SimDisk::new(6);
    let mut o = small();
    o.sync = SyncPolicy::Interval(Duration::from_millis(10));
    let (wal, _) = Wal::open_with(disk.storage(), o).unwrap();
    let lsn = wal.commit(b"z").unwrap();
    let start = std::time::Instant::now();
    while wal.durable_lsn() < lsn {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the interval sync never came"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(wal);

    // Group: the writer waits for the batch to fill, up to max_delay.
    let disk = SimDisk::new(7);
    let mut o = small();
    o.sync = SyncPolicy::Group {
        max_delay: Duration::from_millis(5),
        max_batch_bytes: 1 << 20,
    };
    let (wal, _) = Wal::open_with(disk.storage(), o).unwrap();
    let lsn = wal.commit(b"g").unwrap();
    assert!(wal.durable_lsn() >= lsn);
}

#[test]
fn futures_and_callbacks_resolve_on_durability() {
    let disk = SimDisk::new(8);
    let mut o = small();
    o.sync = SyncPolicy::Never;
    let (wal, _) = Wal::open_with(disk.storage(), o).unwrap();
    let lsn = wal.append(b"f").unwrap();
    let seen = Arc::new(Mutex::new(None));
    let s = seen.clone();
    wal.on_durable(lsn, move |r| *s.lock().unwrap() = Some(r.is_ok()));
    // The future asks for the sync the Never policy would not make.
    block_on(wal.durable(lsn)).unwrap();
    assert!(wal.durable_lsn() >= lsn);
    assert_eq!(*seen.lock().unwrap(), Some(true));
    // Already durable: the callback runs at once.
    let again = Arc::new(Mutex::new(false));
    let a = again.clone();
    wal.on_durable(lsn, move |r| *a.lock().unwrap() = r.is_ok());
    assert!(*again.lock().unwrap());
}

/// A minimal executor: the future is woken by the log's owner thread, so
/// no runtime is needed.
fn block_on<F: Future>(fut: F) -> F::Output {
    use std::task::{Context, Poll, Wake};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

#[test]
fn a_tailing_reader_sees_records_as_they_become_durable() {
    let disk = SimDisk::new(9);
    let (wal, _) = Wal::open_with(disk.storage(), small()).unwrap();
    let wal = Arc::new(wal);
    let mut reader = wal.reader(1).unwrap();
    assert!(reader.next().is_none());
    assert_eq!(
        reader.next_wait(Some(Duration::from_millis(5))).unwrap(),
        None
    );
    let writer = {
        let wal = wal.clone();
        std::thread::spawn(move || {
            for i in 1..=300u64 {
                wal.commit(&record(i)).unwrap();
            }
        })
    };
    for i in 1..=300u64 {
        let r = reader
            .next_wait(Some(Duration::from_secs(10)))
            .unwrap()
            .expect("tail timed out");
        assert_eq!((r.lsn, r.data.to_vec()), (i, record(i)));
    }
    writer.join().unwrap();
}

#[test]
fn truncate_front_removes_whole_segments_only() {
    let disk = SimDisk::new(10);
    let (wal, _) = Wal::open_with(disk.storage(), small()).unwrap();
    for i in 1..=1500u64 {
        wal.append(&record(i)).unwrap();
    }
    wal.sync().unwrap();
    let removed = wal.truncate_front(1000).unwrap();
    assert!(removed > 0);
    let first = wal.first_lsn();
    assert!(first > 1 && first <= 1000, "first LSN {first}");
    assert!(matches!(
        wal.reader(first - 1),
        Err(WalError::Purged { .. })
    ));
    assert_eq!(read_all(&wal, 1000).len(), 501);
    drop(wal);
    let (wal, report) = Wal::open_with(disk.storage(), small()).unwrap();
    assert_eq!(report.first_lsn, first);
    assert_eq!(report.next_lsn, 1501);
    assert_eq!(read_all(&wal, first).len() as u64, 1501 - first);
}

#[test]
fn truncate_back_cuts_the_tail_and_appends_continue_after_it() {
    for cut in [399u64, 250, 1, 0] {
        let disk = SimDisk::new(11 + cut);
        let (wal, _) = Wal::open_with(disk.storage(), small()).unwrap();
        for i in 1..=400u64 {
            wal.append(&record(i)).unwrap();
        }
        wal.truncate_back(cut).unwrap();
        assert_eq!(wal.durable_lsn(), cut);
        assert_eq!(wal.append(b"new").unwrap(), cut + 1);
        wal.sync().unwrap();
        let all = read_all(&wal, 1);
        assert_eq!(all.len() as u64, cut + 1, "cut {cut}");
        assert_eq!(all.last().unwrap().1, b"new");
        drop(wal);
        let (wal, report) = Wal::open_with(disk.storage(), small()).unwrap();
        assert_eq!(report.next_lsn, cut + 2, "cut {cut}");
        let all = read_all(&wal, 1);
        assert!(
            all[..cut as usize]
                .iter()
                .all(|(lsn, d)| *d == record(*lsn))
        );
        assert_eq!(all.last().unwrap().1, b"new");
    }
}

#[test]
fn close_makes_everything_durable_and_later_calls_fail() {
    let disk = SimDisk::new(12);
    let mut o = small();
    o.sync = SyncPolicy::Never;
    let (wal, _) = Wal::open_with(disk.storage(), o.clone()).unwrap();
    for i in 1..=50u64 {
        wal.append(&record(i)).unwrap();
    }
    wal.close().unwrap();
    disk.crash(wal_io::sim::CrashMode::LoseAll);
    let (_wal, report) = Wal::open_with(disk.storage(), o).unwrap();
    assert_eq!(report.records, 50, "close synced everything");
}

#[test]
fn absolute_consistency_refuses_a_torn_tail_that_the_default_cuts() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), small()).unwrap();
    for i in 1..=20u64 {
        wal.commit(&record(i)).unwrap();
    }
    drop(wal);
    // Garbage where the next frame would go: an interrupted write.
    let name = dir.path().join(wal_engine::segment_name(1));
    let mut bytes = std::fs::read(&name).unwrap();
    let end = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
    let at = end.div_ceil(8) * 8;
    bytes[at..at + 30].fill(0x5a);
    std::fs::write(&name, &bytes).unwrap();
    let mut strict = small();
    strict.recovery = RecoveryMode::AbsoluteConsistency;
    assert!(matches!(
        Wal::open(dir.path(), strict),
        Err(WalError::Corrupt { .. })
    ));
    let (wal, report) = Wal::open(dir.path(), small()).unwrap();
    assert_eq!(report.records, 20);
    assert_eq!(report.cuts.len(), 1, "{report:?}");
    assert_eq!(report.cuts[0].offset, at as u64);
    drop(wal);
    let (_, report) = Wal::open(dir.path(), small()).unwrap();
    assert!(
        report.cuts.is_empty(),
        "the cut was made durable: {report:?}"
    );
}

#[test]
fn an_async_tail_awaits_records_without_forcing_syncs() {
    let disk = SimDisk::new(13);
    let mut o = small();
    o.sync = SyncPolicy::Never;
    let (wal, _) = Wal::open_with(disk.storage(), o).unwrap();
    let wal = Arc::new(wal);
    let mut reader = wal.reader(1).unwrap();
    let writer = {
        let wal = wal.clone();
        std::thread::spawn(move || {
            for i in 1..=50u64 {
                wal.append(&record(i)).unwrap();
            }
            std::thread::sleep(Duration::from_millis(20));
            // The tail asked for nothing: under Never nothing is durable yet.
            assert_eq!(wal.durable_lsn(), 0);
            assert_eq!(wal.stats().syncs, 0);
            wal.sync().unwrap();
        })
    };
    for i in 1..=50u64 {
        let r = block_on(reader.next_async()).unwrap();
        assert_eq!((r.lsn, r.data.to_vec()), (i, record(i)));
    }
    writer.join().unwrap();
}

/// Frames far larger than a reader's read size (one batch of many large
/// records) read back whole.
#[test]
fn frames_larger_than_a_read_come_back_whole() {
    let disk = SimDisk::new(14);
    let mut o = Options::default();
    o.sync = SyncPolicy::Never;
    o.queue_bytes_max = 8 << 20;
    o.record_bytes_max = 1 << 20;
    o.segment_bytes = 32 << 20;
    o.identity_seed = Some(14);
    let (wal, _) = Wal::open_with(disk.storage(), o).unwrap();
    let big: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i; 900 << 10]).collect();
    let refs: Vec<&[u8]> = big.iter().map(Vec::as_slice).collect();
    wal.append_batch(&refs).unwrap();
    wal.sync().unwrap();
    assert_eq!(wal.stats().batches, 1, "one frame of 5.4 MB");
    let got = read_all(&wal, 1);
    assert_eq!(got.len(), 6);
    assert!(got.iter().zip(&big).all(|((_, a), b)| a == b));
}

/// Rotation takes the segment the preparer zero-filled ahead; a spare left
/// by an earlier run is replaced, never taken for a segment.
#[test]
fn rotation_takes_the_prepared_segment() {
    let disk = SimDisk::new(15);
    let storage = disk.storage();
    let leftover = storage
        .create(wal_engine::SPARE_NAME, wal_io::FileOptions::default())
        .unwrap();
    leftover
        .write_at(0, &[b"half-filled spare of an earlier run"])
        .unwrap();
    drop(leftover);
    let (wal, _) = Wal::open_with(storage, small()).unwrap();
    let mut i = 0u64;
    while wal.stats().rotations < 5 {
        i += 1;
        wal.commit(&record(i)).unwrap();
        if i.is_multiple_of(50) {
            // Give the preparer a moment, as an idle writer would.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let stats = wal.stats();
    assert!(stats.rotations_prepared >= 3, "{stats:?}");
    assert_eq!(read_all(&wal, 1).len() as u64, i);
    drop(wal);
    let (wal, report) = Wal::open_with(disk.storage(), small()).unwrap();
    assert_eq!(report.next_lsn, i + 1);
    assert!(report.cuts.is_empty(), "{report:?}");
    assert!(read_all(&wal, 1).iter().all(|(lsn, d)| *d == record(*lsn)));
}

/// The largest record the options allow can be appended: the limit and the
/// queue agree at the boundary.
#[test]
fn a_record_of_exactly_record_bytes_max_fits() {
    let disk = SimDisk::new(16);
    let o = Options::builder()
        .queue_bytes_max(4096)
        .segment_bytes(64 << 10)
        .identity_seed(16)
        .build()
        .unwrap();
    let max = o.record_bytes_max;
    let (wal, _) = Wal::open_with(disk.storage(), o).unwrap();
    let lsn = wal.commit(&vec![7u8; max]).unwrap();
    assert!(matches!(
        wal.append(&vec![7u8; max + 1]),
        Err(WalError::RecordTooLarge { .. })
    ));
    assert_eq!(read_all(&wal, lsn)[0].1.len(), max);
}

/// Compressed frames go through the whole path: written, read back, and
/// recovered after a reopen, for both codecs.
#[test]
fn compressed_logs_read_back_and_recover() {
    for codec in [wal_engine::Codec::Lz4, wal_engine::Codec::Snappy] {
        let disk = SimDisk::new(17);
        let o = Options::builder()
            .queue_bytes_max(64 << 10)
            .segment_bytes(256 << 10)
            .compression(wal_engine::Compression {
                codec,
                min_bytes: 0,
            })
            .identity_seed(17)
            .build()
            .unwrap();
        let (wal, _) = Wal::open_with(disk.storage(), o.clone()).unwrap();
        for chunk in 0..40u64 {
            let batch: Vec<Vec<u8>> = (0..10).map(|i| record(chunk * 10 + i + 1)).collect();
            let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
            wal.append_batch(&refs).unwrap();
        }
        wal.sync().unwrap();
        let stats = wal.stats();
        assert!(
            stats.written_bytes < stats.append_bytes,
            "{codec:?} did not compress: {stats:?}"
        );
        assert!(read_all(&wal, 1).iter().all(|(lsn, d)| *d == record(*lsn)));
        drop(wal);
        let (wal, report) = Wal::open_with(disk.storage(), o).unwrap();
        assert_eq!(report.next_lsn, 401, "{codec:?}");
        assert!(read_all(&wal, 1).iter().all(|(lsn, d)| *d == record(*lsn)));
    }
}
