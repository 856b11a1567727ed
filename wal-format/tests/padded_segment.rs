//! A padded segment (format version 3): every write covers whole 4 KiB
//! blocks, as O_DIRECT needs, so each frame starts at a block boundary and is
//! followed by zeros up to the next one. Several such writes may be in flight
//! at once and land in any order. The scanner must read across the padding,
//! keep exactly the whole frames of a torn write's predecessors, tell a lost
//! unacknowledged write from lost acknowledged data, and read a clean end as
//! clean even when a recycled file's stale bytes follow it.
// Test sizes and counts are small: casts between integer widths cannot truncate.
#![allow(clippy::cast_possible_truncation)]

mod common;

use bytes::Bytes;
use common::{LOG_ID, SEGMENT_ID, text};
use wal_format::{
    Compression, FrameEncoder, PADDED_BLOCK_BYTES, SegmentEnd, SegmentHeader, SegmentScanner,
    TERMINATOR_LEN,
};

const BLOCK: usize = PADDED_BLOCK_BYTES;

/// The writes of a padded segment, as a writer issues them.
struct Writes {
    /// (offset, bytes): the header's block first, then one frame per write.
    writes: Vec<(usize, Vec<u8>)>,
    /// Records of each frame write, in order.
    records: Vec<Vec<Vec<u8>>>,
    first_lsn: u64,
}

/// Eight writes of one to three records each; frame `i` records as durable
/// what `durable(i, first_lsn)` says.
fn writes(header: SegmentHeader, durable: fn(usize, u64) -> u64) -> Writes {
    let mut block0 = header.encode().to_vec();
    block0.resize(BLOCK, 0);
    let mut out = Writes {
        writes: vec![(0, block0)],
        records: Vec::new(),
        first_lsn: header.first_lsn(),
    };
    let mut enc = FrameEncoder::new(Compression::NONE);
    let mut lsn = header.first_lsn();
    let mut at = BLOCK;
    for i in 0..8usize {
        // Sizes chosen so that some frames fill most of a block and one
        // spans three: padding of every length from 48 bytes up shows.
        let len = [90, 3900, 10, 700, 9000, 4000, 1, 2500][i];
        let recs: Vec<Vec<u8>> = (0..=i % 3)
            .map(|j| text(lsn + j as u64, len / (1 + i % 3)))
            .collect();
        let mut bytes = Vec::new();
        enc.encode(
            &mut bytes,
            header.segment_id(),
            lsn,
            durable(i, lsn),
            recs.iter().map(Vec::as_slice),
        )
        .unwrap();
        bytes.resize((bytes.len() + TERMINATOR_LEN).next_multiple_of(BLOCK), 0);
        let n = bytes.len();
        lsn += recs.len() as u64;
        out.writes.push((at, bytes));
        out.records.push(recs);
        at += n;
    }
    out
}

fn header(recycled: bool) -> SegmentHeader {
    SegmentHeader::new(LOG_ID, SEGMENT_ID, 100)
        .unwrap()
        .with_padded(true)
        .with_recycled(recycled)
}

fn all_durable(_: usize, first_lsn: u64) -> u64 {
    first_lsn - 1
}

/// Eight writes in flight at once: none knew of another's completion.
fn in_flight(_: usize, _: u64) -> u64 {
    99
}

/// A disk of `len` bytes filled with `fill`, then the chosen writes applied.
fn disk(w: &Writes, keep: impl Fn(usize) -> bool, fill: &[u8]) -> Vec<u8> {
    let end = w.writes.last().map_or(0, |(at, b)| at + b.len());
    let mut disk: Vec<u8> = fill.iter().copied().cycle().take(end + 2 * BLOCK).collect();
    for (i, (at, bytes)) in w.writes.iter().enumerate() {
        if i == 0 || keep(i - 1) {
            disk[*at..*at + bytes.len()].copy_from_slice(bytes);
        }
    }
    disk
}

/// Scans, checking every record read against what was written; returns
/// how many records were read and the summary.
fn scan(w: &Writes, disk: Vec<u8>) -> (usize, wal_format::ScanSummary) {
    let expected: Vec<&Vec<u8>> = w.records.iter().flatten().collect();
    let mut scan = SegmentScanner::new(Bytes::from(disk)).unwrap();
    let mut n = 0;
    for frame in scan.by_ref() {
        for r in frame.records() {
            assert_eq!(r.lsn, w.first_lsn + n as u64, "LSNs are dense");
            assert_eq!(&r.data[..], &expected[n][..], "LSN {}", r.lsn);
            n += 1;
        }
    }
    (n, scan.finish())
}

fn records_in_writes(w: &Writes, writes: usize) -> usize {
    w.records.iter().take(writes).map(Vec::len).sum()
}

/// Stale bytes of a recycled file's earlier life: not zeros, not frames of
/// this identity.
const STALE: &[u8] = b"stale bytes of an earlier life of this file ";

#[test]
fn frames_are_read_across_the_padding_and_only_with_the_flag() {
    for (recycled, fill) in [(false, &[0u8][..]), (true, STALE)] {
        let w = writes(header(recycled), all_durable);
        let bytes = disk(&w, |_| true, fill);
        let (n, summary) = scan(&w, bytes.clone());
        assert_eq!(n, records_in_writes(&w, 8), "recycled: {recycled}");
        assert_eq!(summary.end, SegmentEnd::Clean, "recycled: {recycled}");
        let (last_at, last) = w.writes.last().unwrap();
        assert!(summary.valid_end > *last_at as u64);
        assert!(summary.valid_end + TERMINATOR_LEN as u64 <= (last_at + last.len()) as u64);

        // The same bytes without the flag: the first padding ends the
        // prefix, and the later frames prove it was no clean end.
        let mut unflagged = bytes;
        let plain = header(recycled).with_padded(false).encode();
        unflagged[..SegmentHeader::LEN].copy_from_slice(&plain);
        let (n, summary) = scan(&w, unflagged);
        assert_eq!(n, 0);
        assert!(
            matches!(summary.end, SegmentEnd::Corrupt { .. }),
            "{:?}",
            summary.end
        );
    }
}

#[test]
fn a_write_torn_at_every_byte_keeps_exactly_the_whole_frames_before_it() {
    for (recycled, fill) in [(false, &[0u8][..]), (true, STALE)] {
        let w = writes(header(recycled), all_durable);
        let complete = disk(&w, |i| i < 7, fill);
        let (at, last) = w.writes.last().unwrap();
        let before = records_in_writes(&w, 7);
        for cut in 0..=last.len() {
            let mut bytes = complete.clone();
            bytes[*at..*at + cut].copy_from_slice(&last[..cut]);
            let (n, summary) = scan(&w, bytes);
            let whole = n == records_in_writes(&w, 8);
            assert!(
                n == before || whole,
                "cut at {cut}: {n} records, recycled: {recycled}"
            );
            match summary.end {
                SegmentEnd::Clean | SegmentEnd::TornTail { .. } => {}
                other => panic!("cut at {cut}, recycled: {recycled}: {other:?}"),
            }
            if !whole {
                // The cut falls after the prefix of the last whole write.
                assert!(summary.valid_end < *at as u64, "cut at {cut}");
            }
        }
    }
}

#[test]
fn a_lost_write_before_landed_ones_is_a_torn_tail_never_a_clean_end() {
    for (recycled, fill) in [(false, &[0u8][..]), (true, STALE)] {
        let w = writes(header(recycled), in_flight);
        for lost in 0..7 {
            let bytes = disk(&w, |i| i != lost, fill);
            let (n, summary) = scan(&w, bytes);
            assert_eq!(n, records_in_writes(&w, lost), "lost write {lost}");
            match summary.end {
                SegmentEnd::TornTail { later_frames, .. } => {
                    assert_eq!(later_frames, 7 - lost as u64, "lost write {lost}");
                }
                other => panic!("lost write {lost}, recycled: {recycled}: {other:?}"),
            }
        }
    }
}

#[test]
fn acknowledged_data_zeroed_under_a_later_frame_is_corruption() {
    for (recycled, fill) in [(false, &[0u8][..]), (true, STALE)] {
        let w = writes(header(recycled), all_durable);
        for damaged in 0..7 {
            // A sector of zeros over the start of an acknowledged write:
            // its frame header reads as padding, which the later frames,
            // recording it as durable, disprove.
            let mut bytes = disk(&w, |_| true, fill);
            let at = w.writes[damaged + 1].0;
            bytes[at..at + 512].fill(0);
            let (n, summary) = scan(&w, bytes);
            assert_eq!(n, records_in_writes(&w, damaged));
            match summary.end {
                SegmentEnd::Corrupt { evidence, .. } => {
                    assert_eq!(evidence.offset, w.writes[damaged + 2].0 as u64);
                }
                other => panic!("damaged write {damaged}, recycled: {recycled}: {other:?}"),
            }
        }
    }
}

#[test]
fn version_2_refuses_the_padded_flag() {
    let mut bytes = header(false).encode();
    bytes[8..10].copy_from_slice(&2u16.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[..60]);
    bytes[60..].copy_from_slice(&crc.to_le_bytes());
    assert!(matches!(
        SegmentHeader::decode(&bytes),
        Err(wal_format::DecodeError::ReservedNonZero { field: "flags", .. })
    ));
}

#[test]
fn a_frame_ending_on_a_block_boundary_is_followed_by_a_whole_block_of_padding() {
    // One record whose frame is exactly a block: it ends on a boundary, so
    // its write's terminator takes the whole next block, and the next write
    // (in flight with it) starts after that.
    let header = header(false);
    let mut disk = header.encode().to_vec();
    disk.resize(BLOCK, 0);
    let mut enc = FrameEncoder::new(Compression::NONE);
    let first = vec![7u8; BLOCK - 48 - 4];
    let s = enc
        .encode(&mut disk, SEGMENT_ID, 100, 99, [&first[..]])
        .unwrap();
    assert_eq!(s.encoded_len, BLOCK);
    disk.resize(3 * BLOCK, 0);
    enc.encode(&mut disk, SEGMENT_ID, 101, 99, [&b"next"[..]])
        .unwrap();
    disk.resize(4 * BLOCK, 0);
    let mut scan = SegmentScanner::new(Bytes::from(disk)).unwrap();
    let lsns: Vec<u64> = scan
        .by_ref()
        .flat_map(|f| f.records().map(|r| r.lsn).collect::<Vec<_>>())
        .collect();
    assert_eq!(lsns, [100, 101]);
    assert_eq!(scan.finish().end, SegmentEnd::Clean);
}
