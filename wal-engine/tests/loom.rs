//! T7: loom models of the group-commit hand-off, the durable-watermark
//! publication and the wake-ups. They run the engine's real code (its
//! synchronisation comes from one shim module that switches to loom), on the
//! simulated disk. Built only with `--cfg loom`: `cargo xtask loom`.
#![cfg(loom)]

use loom::sync::Arc;
use wal_engine::{Options, Wal};
use wal_io::sim::SimDisk;

fn open() -> Wal {
    open_with(false)
}

/// With `direct`, commits go through the pipelined O_DIRECT writer, whose
/// simulated queue completes writes in an order drawn from the disk's seed.
fn open_with(direct: bool) -> Wal {
    let mut o = Options::default();
    o.direct_io = direct;
    o.segment_bytes = 16 << 10;
    o.queue_bytes_max = 4 << 10;
    o.record_bytes_max = 256;
    o.identity_seed = Some(1);
    // Deterministic operation counts: no background preparation.
    o.prepare_segments = false;
    Wal::open_with(SimDisk::new(1).storage(), o).unwrap().0
}

/// Commits from `appenders` threads: every commit returns with its record
/// durable, LSNs are dense and unique, and no waiter is left asleep (loom
/// reports a deadlock if one is).
fn commits(appenders: u8, direct: bool) {
    let wal = Arc::new(open_with(direct));
    let threads: Vec<_> = (0..appenders)
        .map(|i| {
            let wal = wal.clone();
            loom::thread::spawn(move || {
                let lsn = wal.commit(&[i]).unwrap();
                assert!(
                    wal.durable_lsn() >= lsn,
                    "commit returned before its record was durable"
                );
                lsn
            })
        })
        .collect();
    let mut lsns: Vec<u64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    lsns.sort_unstable();
    assert_eq!(lsns, (1..=u64::from(appenders)).collect::<Vec<_>>());
    assert_eq!(wal.durable_lsn(), u64::from(appenders));
    assert_eq!(
        wal.stats().writes_in_flight_peak > 0,
        direct,
        "the commits ran through the writer the model names"
    );
}

/// Runs a model with at most `bound` preemptions per execution (`None`:
/// every interleaving).
fn model(bound: Option<usize>, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = bound;
    builder.check(f);
}

#[test]
fn two_appenders_and_the_owner() {
    model(Some(3), || commits(2, false));
}

#[test]
fn three_appenders_with_a_preemption_bound() {
    model(Some(1), || commits(3, false));
}

/// The pipelined writer: a committer that finds the `io` lock free leads
/// (queues once, waits for what it queued), the owner keeps the queue full,
/// and the lock is let go only with nothing in flight.
#[test]
fn two_appenders_and_the_owner_through_the_direct_writer() {
    model(Some(3), || commits(2, true));
}

#[test]
fn three_appenders_through_the_direct_writer_with_a_preemption_bound() {
    model(Some(1), || commits(3, true));
}

/// A reader that sees the durable watermark at an LSN finds the record
/// there: the watermark is published only after the write and the sync.
fn watermark_behind_data(direct: bool) {
    let wal = Arc::new(open_with(direct));
    let writer = {
        let wal = wal.clone();
        loom::thread::spawn(move || {
            wal.append_batch(&[b"one", b"two"]).unwrap();
            wal.sync().unwrap();
        })
    };
    let seen = wal.durable_lsn();
    let records: Vec<_> = wal.reader(1).unwrap().map(|r| r.unwrap()).collect();
    assert!(
        records.len() as u64 >= seen,
        "durable {seen}, readable {}",
        records.len()
    );
    writer.join().unwrap();
}

#[test]
fn the_durable_watermark_never_runs_ahead_of_the_data() {
    model(Some(2), || watermark_behind_data(false));
}

/// The same through the pipelined writer, which publishes the completed
/// prefix of its queue.
#[test]
fn the_durable_watermark_of_the_direct_writer_never_runs_ahead_of_the_data() {
    model(Some(2), || watermark_behind_data(true));
}

/// A waiter for a later LSN is woken by the batch that covers it, whether
/// the owner takes both records in one batch or in two.
#[test]
fn a_waiter_is_woken_by_the_batch_that_covers_it() {
    model(Some(2), || {
        let wal = Arc::new(open());
        let first = wal.append(b"a").unwrap();
        let second = wal.append(b"b").unwrap();
        let waiter = {
            let wal = wal.clone();
            loom::thread::spawn(move || wal.wait_durable(second))
        };
        wal.wait_durable(first).unwrap();
        waiter.join().unwrap().unwrap();
        assert!(wal.durable_lsn() >= second);
    });
}

/// A committer leads its own round and wakes no one; one that finds the
/// I/O taken by something that is not a round (here a front truncation)
/// wakes the owner, which writes its record once the I/O is free. Were it
/// to park without waking the owner, it would wait for ever.
#[test]
fn a_committer_that_finds_the_io_taken_wakes_the_owner() {
    model(Some(2), || {
        let wal = Arc::new(open());
        wal.commit(b"a").unwrap();
        let committer = {
            let wal = wal.clone();
            loom::thread::spawn(move || wal.commit(b"b"))
        };
        wal.truncate_front(1).unwrap();
        let lsn = committer.join().unwrap().unwrap();
        assert!(wal.durable_lsn() >= lsn);
    });
}

/// Records of a commit begun and dropped unwaited are handed to the owner,
/// which writes them under the policy (`Always`: written and synced) with
/// no one asking: a tail sees them.
#[test]
fn a_commit_dropped_unwaited_is_written_by_the_owner() {
    model(Some(2), || {
        let wal = open();
        let commit = wal.begin_commit(&[b"a"]).unwrap();
        assert_eq!(commit.lsns(), 1..2);
        drop(commit);
        let mut tail = wal.reader(1).unwrap();
        let record = tail.next_wait(None).unwrap().unwrap();
        assert_eq!(record.lsn, 1);
    });
}

/// Two commits dropped unwaited, each announcing its frame to the owner:
/// the owner may see the first commit's frame before that commit's
/// notification arrives, so the notification lands while the owner is on
/// its way to sleep. Whatever the owner makes of a notification it did not
/// need, the second commit's must still wake it.
#[test]
fn two_commits_dropped_unwaited_are_both_written() {
    model(Some(2), || {
        let wal = Arc::new(open());
        let other = {
            let wal = wal.clone();
            loom::thread::spawn(move || drop(wal.begin_commit(&[b"b"]).unwrap()))
        };
        drop(wal.begin_commit(&[b"a"]).unwrap());
        other.join().unwrap();
        let mut tail = wal.reader(1).unwrap();
        for lsn in 1..=2 {
            assert_eq!(tail.next_wait(None).unwrap().unwrap().lsn, lsn);
        }
    });
}

/// Under `SyncPolicy::Interval` a round may write without syncing. A
/// committer whose record such a round wrote, and which woke the owner
/// while another thread held the I/O, must not be left parked: whoever lets
/// go of the I/O with a sync still owed wakes the owner.
#[test]
fn a_sync_owed_after_a_write_only_round_is_not_lost() {
    model(Some(3), || {
        let mut o = Options::default();
        o.sync = wal_engine::SyncPolicy::Interval(std::time::Duration::from_secs(3600));
        o.segment_bytes = 16 << 10;
        o.queue_bytes_max = 4 << 10;
        o.record_bytes_max = 256;
        o.identity_seed = Some(1);
        o.prepare_segments = false;
        let wal = Arc::new(Wal::open_with(SimDisk::new(1).storage(), o).unwrap().0);
        let threads: Vec<_> = (0..2u8)
            .map(|i| {
                let wal = wal.clone();
                loom::thread::spawn(move || wal.commit_durable(&[i]).unwrap())
            })
            .collect();
        let mine = wal.commit_durable(&[9]).unwrap();
        for t in threads {
            let lsn = t.join().unwrap();
            assert!(wal.durable_lsn() >= lsn);
        }
        assert!(wal.durable_lsn() >= mine);
    });
}
