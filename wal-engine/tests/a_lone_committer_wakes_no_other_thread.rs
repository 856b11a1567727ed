//! One thread committing alone costs one write and one sync and wakes no
//! other thread: `commit` and `begin_commit` lead their own rounds, and
//! the owner thread sleeps through them (W1 paid two context switches per
//! commit more than raft-engine when every append woke it). A plain
//! `append` still wakes the owner, which must write what nobody waits on.

use wal_engine::{Options, Wal};
use wal_io::sim::SimDisk;

const COMMITS: u64 = 200;
/// Wakes allowed for the whole run: a condition variable may wake
/// spuriously, and the mutation this guards against costs one per commit.
const SPURIOUS_MAX: u64 = 5;

fn open() -> Wal {
    let mut o = Options::default();
    o.identity_seed = Some(7);
    Wal::open_with(SimDisk::new(7).storage(), o).unwrap().0
}

#[test]
fn commits_from_one_thread_leave_the_owner_asleep() {
    let wal = open();
    wal.commit(b"warm-up").unwrap();
    let before = wal.stats();
    for i in 0..COMMITS {
        let lsn = wal.commit(format!("commit {i}").as_bytes()).unwrap();
        assert!(wal.durable_lsn() >= lsn);
    }
    for i in 0..COMMITS {
        let commit = wal
            .begin_commit(&[format!("batch {i}").as_bytes()])
            .unwrap();
        let lsns = commit.wait().unwrap();
        assert!(wal.durable_lsn() >= lsns.end - 1);
    }
    let after = wal.stats();
    assert_eq!(
        after.syncs - before.syncs,
        2 * COMMITS,
        "one sync per commit"
    );
    assert_eq!(
        after.batches - before.batches,
        2 * COMMITS,
        "one write per commit"
    );
    assert!(
        after.owner_wakes - before.owner_wakes <= SPURIOUS_MAX,
        "the owner woke {} times for {} lone commits",
        after.owner_wakes - before.owner_wakes,
        2 * COMMITS
    );
    wal.close().unwrap();
}

#[test]
fn appends_nobody_waits_on_wake_the_owner() {
    let wal = open();
    let before = wal.stats().owner_wakes;
    let mut tail = wal.reader(1).unwrap();
    for i in 0..20u64 {
        let lsn = wal.append(format!("append {i}").as_bytes()).unwrap();
        // A tail's wait asks for no sync: only the owner writes the record.
        let record = tail.next_wait(None).unwrap().unwrap();
        assert_eq!(record.lsn, lsn);
    }
    assert!(
        wal.stats().owner_wakes > before,
        "plain appends were written without the owner waking"
    );
}

#[test]
fn an_append_into_a_frame_a_held_commit_opened_is_written_all_the_same() {
    let wal = open();
    // The owner thread settles into its wait (else it may find the frame
    // on its first look and prove nothing).
    wal.commit(b"warm-up").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    let held = wal.begin_commit(&[b"held"]).unwrap();
    let lsn = wal.append(b"plain").unwrap();
    // The plain append wakes the owner, which writes the whole frame (the
    // held commit's record with it): a tail sees both while it is held.
    let mut tail = wal.reader(2).unwrap();
    let bound = Some(std::time::Duration::from_secs(30));
    let first = tail
        .next_wait(bound)
        .unwrap()
        .expect("the held frame was never written");
    let second = tail
        .next_wait(bound)
        .unwrap()
        .expect("the plain append was never written");
    assert_eq!((first.lsn, second.lsn), (2, lsn));
    assert_eq!(held.wait().unwrap(), 2..3);
}
