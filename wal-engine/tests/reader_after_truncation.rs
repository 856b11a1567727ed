//! A reader never hands out records that a truncation cut (C2, C3 as a
//! reader sees them): after `truncate_back(3)`, a reader that had already
//! decoded a frame of ten records must not go on yielding that frame's old
//! records 4..10, nor jump from them to the new history's 11. Every record
//! it yields after the truncation is the one the log now holds at that LSN,
//! in dense order; an error is an acceptable way to stop, a mixed history
//! is not.

use wal_engine::{Options, Reader, Wal, WalError};
use wal_io::sim::SimDisk;

/// The last LSN the truncation keeps.
const CUT: u64 = 3;
/// Records in the frame the reader is inside, and in the new history.
const RECORDS: u64 = 10;

fn options() -> Options {
    let mut o = Options::default();
    o.segment_bytes = 16 << 10;
    o.queue_bytes_max = 4 << 10;
    o.record_bytes_max = 1 << 10;
    o.identity_seed = Some(5);
    o
}

fn old(lsn: u64) -> Vec<u8> {
    format!("old history, record {lsn}").into_bytes()
}

fn new(lsn: u64) -> Vec<u8> {
    format!("new history after the cut, record {lsn}").into_bytes()
}

/// The bytes the log holds at `lsn` after the truncation.
fn now_at(lsn: u64) -> Vec<u8> {
    if lsn <= CUT { old(lsn) } else { new(lsn) }
}

fn append_all(wal: &Wal, records: &[Vec<u8>]) -> std::ops::Range<u64> {
    let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
    wal.append_batch(&refs).unwrap()
}

/// A log of one frame of ten old records, all durable, and a reader that
/// has decoded that frame and handed out LSNs 1 and 2 of it.
fn reader_inside_a_frame(seed: u64) -> (Wal, Reader) {
    let (wal, _) = Wal::open_with(SimDisk::new(seed).storage(), options()).unwrap();
    let olds: Vec<Vec<u8>> = (1..=RECORDS).map(old).collect();
    assert_eq!(append_all(&wal, &olds), 1..RECORDS + 1);
    wal.sync().unwrap();
    assert_eq!(wal.stats().batches, 1, "the ten records are one frame");
    let mut reader = wal.reader(1).unwrap();
    for lsn in 1..=2 {
        let r = reader.next().expect("a durable record").unwrap();
        assert_eq!((r.lsn, &r.data[..]), (lsn, &old(lsn)[..]));
    }
    (wal, reader)
}

/// What a reader yields from here on, until it ends or fails (at most
/// `max` records): (LSN, bytes) of each record, and whether it failed.
fn read_on(reader: &mut Reader, max: u64) -> (Vec<(u64, Vec<u8>)>, bool) {
    let mut got = Vec::new();
    for _ in 0..max {
        match reader.next() {
            Some(Ok(r)) => got.push((r.lsn, r.data.to_vec())),
            Some(Err(_)) => return (got, true),
            None => return (got, false),
        }
    }
    (got, false)
}

/// Every record is the one the log now holds at its LSN, one after the
/// other from the reader's position (LSN 3).
fn check_one_history(got: &[(u64, Vec<u8>)]) {
    let mut prev = 2;
    for (lsn, data) in got {
        assert_eq!(
            *lsn,
            prev + 1,
            "after LSN {prev} the reader yielded LSN {lsn}: a mixed history ({got:?})"
        );
        assert_eq!(
            data,
            &now_at(*lsn),
            "LSN {lsn} came back with bytes the truncation cut"
        );
        prev = *lsn;
    }
}

#[test]
fn a_reader_inside_a_cut_frame_goes_on_with_the_new_history() {
    let (wal, mut reader) = reader_inside_a_frame(51);
    wal.truncate_back(CUT).unwrap();
    let news: Vec<Vec<u8>> = (CUT + 1..=CUT + RECORDS).map(new).collect();
    assert_eq!(append_all(&wal, &news), CUT + 1..CUT + RECORDS + 1);
    wal.sync().unwrap();
    let last = CUT + RECORDS;

    let (got, failed) = read_on(&mut reader, 4 * RECORDS);
    check_one_history(&got);
    let reached = got.last().map_or(2, |(lsn, _)| *lsn);
    assert!(
        failed || reached == last,
        "the reader stopped at LSN {reached} without an error; the log holds up to {last}"
    );

    // The log itself holds one history: a new reader sees it whole.
    let all: Vec<(u64, Vec<u8>)> = wal
        .reader(1)
        .unwrap()
        .map(|r| r.map(|r| (r.lsn, r.data.to_vec())))
        .collect::<Result<_, _>>()
        .unwrap();
    let expect: Vec<(u64, Vec<u8>)> = (1..=last).map(|lsn| (lsn, now_at(lsn))).collect();
    assert_eq!(all, expect);
}

#[test]
fn a_reader_inside_a_cut_frame_stops_at_the_cut() {
    let (wal, mut reader) = reader_inside_a_frame(52);
    wal.truncate_back(CUT).unwrap();
    // Nothing new yet: LSN 3 is the last record there is.
    let (got, failed) = read_on(&mut reader, 4 * RECORDS);
    check_one_history(&got);
    assert!(
        got.iter().all(|&(lsn, _)| lsn <= CUT),
        "the reader yielded records past the cut at {CUT}: {got:?}"
    );
    assert!(
        failed || got.last().is_some_and(|&(lsn, _)| lsn == CUT),
        "the reader neither yielded LSN {CUT} nor failed: {got:?}"
    );
    assert_eq!(wal.append(b"next").unwrap(), CUT + 1);
}

/// A reader that handed out records a `truncate_back` then removed does
/// not go on in the new history: it fails, naming what was kept, and a new
/// reader from there reads the new records.
#[test]
fn a_reader_past_the_cut_fails_instead_of_mixing_histories() {
    let disk = SimDisk::new(11);
    let (wal, _) = Wal::open_with(disk.storage(), Options::default()).unwrap();
    let old: Vec<Vec<u8>> = (1..=10u8).map(|i| vec![b'o', i]).collect();
    let refs: Vec<&[u8]> = old.iter().map(Vec::as_slice).collect();
    wal.append_batch(&refs).unwrap();
    wal.sync().unwrap();
    let mut reader = wal.reader(1).unwrap();
    for lsn in 1..=6 {
        assert_eq!(reader.next().unwrap().unwrap().lsn, lsn);
    }
    wal.truncate_back(3).unwrap();
    for i in 4..=12u8 {
        wal.commit(&[b'n', i]).unwrap();
    }
    match reader.next() {
        Some(Err(WalError::Truncated { lsn: 6, kept: 3 })) => {}
        other => panic!("the reader went on after the cut: {other:?}"),
    }
    let again: Vec<Vec<u8>> = wal
        .reader(4)
        .unwrap()
        .map(|r| r.unwrap().data.to_vec())
        .collect();
    assert_eq!(again.first().map(Vec::as_slice), Some(&[b'n', 4][..]));
    assert_eq!(again.len(), 9);
}
