//! A wait that a publication decided and a `truncate_back` then undid is
//! decided again, never left without a registration: a wait for an LSN the
//! truncation took away ends with `BeyondEnd`, and a tail waiting for the
//! next record is woken when the new history reaches it.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use wal_engine::{Options, SyncPolicy, Wal, WalError};
use wal_io::sim::SimDisk;

/// A waker that counts its wake-ups.
struct Count(AtomicUsize);

impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn never() -> Options {
    let mut o = Options::default();
    o.sync = SyncPolicy::Never;
    o
}

#[test]
fn a_durability_wait_for_a_truncated_lsn_ends_beyond_the_end() {
    let disk = SimDisk::new(1);
    let (wal, _) = Wal::open_with(disk.storage(), never()).unwrap();
    let records: Vec<[u8; 1]> = (1..=10u8).map(|i| [i]).collect();
    let refs: Vec<&[u8]> = records.iter().map(|r| &r[..]).collect();
    wal.append_batch(&refs).unwrap();
    let count = Arc::new(Count(AtomicUsize::new(0)));
    let waker = Waker::from(count.clone());
    let mut cx = Context::from_waker(&waker);
    let mut durable = pin!(wal.durable(10));
    assert!(durable.as_mut().poll(&mut cx).is_pending());
    // The sync decides the wait (and wakes it); before the future looks
    // again, the LSN is truncated away.
    wal.sync().unwrap();
    assert!(count.0.load(Ordering::SeqCst) >= 1);
    wal.truncate_back(5).unwrap();
    match durable.as_mut().poll(&mut cx) {
        Poll::Ready(Err(WalError::BeyondEnd { lsn: 10, next: 6 })) => {}
        other => panic!("the wait for a truncated LSN did not end: {other:?}"),
    }
}

#[test]
fn a_tail_woken_by_a_record_the_truncation_took_back_waits_for_the_new_one() {
    let disk = SimDisk::new(2);
    let (wal, _) = Wal::open_with(disk.storage(), never()).unwrap();
    for i in 1..=5u8 {
        wal.append(&[i]).unwrap();
    }
    wal.sync().unwrap();
    let mut reader = wal.reader(6).unwrap();
    let count = Arc::new(Count(AtomicUsize::new(0)));
    let waker = Waker::from(count.clone());
    let mut cx = Context::from_waker(&waker);
    let mut next = pin!(reader.next_async());
    assert!(next.as_mut().poll(&mut cx).is_pending());
    for i in 6..=10u8 {
        wal.append(&[b'o', i]).unwrap();
    }
    wal.sync().unwrap();
    let woken = count.0.load(Ordering::SeqCst);
    assert!(woken >= 1, "the tail was not woken by LSN 6");
    wal.truncate_back(5).unwrap();
    // Looks, finds nothing (LSN 6 is gone), and must wait again.
    assert!(next.as_mut().poll(&mut cx).is_pending());
    wal.append(&[b'n', 6]).unwrap();
    wal.sync().unwrap();
    assert!(
        count.0.load(Ordering::SeqCst) > woken,
        "the tail was never woken for the new LSN 6"
    );
    match next.as_mut().poll(&mut cx) {
        Poll::Ready(Ok(record)) => {
            assert_eq!((record.lsn, &record.data[..]), (6, &[b'n', 6][..]));
        }
        other => panic!("the tail did not get the new LSN 6: {other:?}"),
    }
}
