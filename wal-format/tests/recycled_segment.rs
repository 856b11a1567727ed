//! A recycled segment: a new header and new frames written over the frames
//! of the file's earlier life. Every write ends with a zeroed frame header
//! (the terminator), so a clean end reads as clean although stale bytes
//! follow it, a torn write reads as a torn tail, and damage to acknowledged
//! frames still reads as corruption.
// Test sizes and counts are small: casts between integer widths cannot truncate.
#![allow(clippy::cast_possible_truncation)]

mod common;

use common::{Built, SEGMENT_ID, all_durable, build, none_durable, scan_checked, text};
use wal_format::{
    Compression, FRAME_HEADER_LEN, SegmentEnd, SegmentHeader, SegmentScanner, TERMINATOR_LEN,
};

const NEW_ID: u64 = SEGMENT_ID ^ 0xffff;

/// The earlier life: a full file of frames of another identity.
fn old_life() -> Vec<u8> {
    let batches: Vec<Vec<Vec<u8>>> = (0..60).map(|i| vec![text(i, 90)]).collect();
    let mut bytes = build(
        SEGMENT_ID,
        1,
        &batches,
        Compression::NONE,
        all_durable,
        false,
    )
    .bytes;
    bytes.resize(bytes.len() + 1024, 0xa5);
    bytes
}

/// The new life's frames, as a writer would produce them, and the bytes of
/// each write: (offset, header-or-frame bytes followed by a terminator).
fn new_life(durable: common::Durable) -> (Built, Vec<(usize, Vec<u8>)>) {
    let batches: Vec<Vec<Vec<u8>>> = (0..8)
        .map(|i| (0..=i % 3).map(|j| text(500 + i * 10 + j, 37)).collect())
        .collect();
    let mut built = build(NEW_ID, 61, &batches, Compression::NONE, durable, false);
    let header = SegmentHeader::new(common::LOG_ID, NEW_ID, 61)
        .unwrap()
        .with_recycled(true)
        .encode();
    built.bytes[..SegmentHeader::LEN].copy_from_slice(&header);
    let mut writes = vec![(0, terminated(&header))];
    for f in &built.frames {
        let at = f.offset;
        writes.push((at, terminated(&built.bytes[at..at + f.encoded_len])));
    }
    (built, writes)
}

fn terminated(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out.resize(bytes.len() + TERMINATOR_LEN, 0);
    out
}

fn apply(disk: &mut [u8], (at, bytes): &(usize, Vec<u8>)) {
    disk[*at..*at + bytes.len()].copy_from_slice(bytes);
}

#[test]
fn a_clean_end_reads_clean_only_with_the_flag_and_the_terminator() {
    let (built, writes) = new_life(all_durable);
    let mut disk = old_life();
    writes.iter().for_each(|w| apply(&mut disk, w));
    let (seen, summary) = scan_checked(disk.clone(), &built);
    assert_eq!(seen, built.records.len() as u64);
    assert_eq!(summary.end, SegmentEnd::Clean);
    assert!(summary.header.recycled());

    // The same bytes under a header without the flag: stale bytes after the
    // terminator are a torn tail, as in any file not known to be recycled.
    let mut unflagged = disk.clone();
    let plain = SegmentHeader::new(common::LOG_ID, NEW_ID, 61)
        .unwrap()
        .encode();
    unflagged[..SegmentHeader::LEN].copy_from_slice(&plain);
    let (_, summary) = scan_checked(unflagged, &built);
    assert!(
        matches!(summary.end, SegmentEnd::TornTail { .. }),
        "{:?}",
        summary.end
    );

    // Without the terminator the stale bytes start right at the end.
    let mut bare = disk;
    let end = summary.valid_end as usize;
    bare[end..end + TERMINATOR_LEN].copy_from_slice(&old_life()[end..end + TERMINATOR_LEN]);
    let (_, summary) = scan_checked(bare, &built);
    assert!(
        matches!(summary.end, SegmentEnd::TornTail { .. }),
        "{:?}",
        summary.end
    );
}

/// The header was stamped (with its terminator) and nothing else landed.
#[test]
fn a_freshly_stamped_recycled_segment_is_empty_and_clean() {
    let (built, writes) = new_life(all_durable);
    let mut disk = old_life();
    apply(&mut disk, &writes[0]);
    let (seen, summary) = scan_checked(disk, &built);
    assert_eq!(seen, 0);
    assert_eq!(summary.next_lsn, 61);
    assert_eq!(summary.end, SegmentEnd::Clean);
}

/// The last write torn at every byte: the whole frames before the cut and
/// nothing else, never corruption; a cut on a write boundary is a clean end,
/// and one that leaves a partial frame header or stale bytes at the break is
/// a torn tail.
#[test]
fn a_write_torn_at_every_byte_keeps_exactly_the_whole_frames() {
    let (built, writes) = new_life(all_durable);
    let mut before = old_life();
    apply(&mut before, &writes[0]);
    let mut torn_tails = 0;
    for (k, write) in writes.iter().enumerate().skip(1) {
        let (at, bytes) = write;
        let frame = &built.frames[k - 1];
        let kept_before: usize = built.frames[..k - 1]
            .iter()
            .map(|f| f.record_count as usize)
            .sum();
        for cut in *at..=at + bytes.len() {
            let mut disk = before.clone();
            apply(&mut disk, &(*at, bytes[..cut - at].to_vec()));
            let (seen, summary) = scan_checked(disk.clone(), &built);
            // Whole once its last byte landed, or when the stale byte under
            // the missing ones happens to be the same (a 1 in 42 chance here).
            let body = FRAME_HEADER_LEN + frame.stored_len;
            let whole = disk[*at..at + body] == bytes[..body];
            let expected = kept_before
                + if whole {
                    frame.record_count as usize
                } else {
                    0
                };
            assert_eq!(seen as usize, expected, "write {k} cut at {cut}");
            let end = summary.valid_end as usize;
            let at_break = &disk[end..end + FRAME_HEADER_LEN];
            if cut == *at || cut == at + bytes.len() {
                assert_eq!(summary.end, SegmentEnd::Clean, "write {k} cut at {cut}");
            } else if at_break.iter().all(|&b| b == 0) {
                // Only zeros of this write (or the terminator before it) at
                // the break: nothing of it that matters landed.
                assert_eq!(summary.end, SegmentEnd::Clean, "write {k} cut at {cut}");
            } else {
                torn_tails += 1;
                assert!(
                    matches!(
                        summary.end,
                        SegmentEnd::TornTail {
                            later_frames: 0,
                            ..
                        }
                    ),
                    "write {k} cut at {cut}: {:?}",
                    summary.end
                );
            }
        }
        apply(&mut before, write);
    }
    assert!(torn_tails > 100, "only {torn_tails} torn tails were tried");
}

/// Writes in flight land out of order: a later write survives, an earlier one
/// does not, leaving the earlier terminator (a zero header) at the break.
/// Unacknowledged: a torn tail, so the writer cuts the later frames away.
/// Acknowledged (a later frame vouches for it): corruption, as in any file.
#[test]
fn a_lost_write_before_a_landed_one_is_never_a_clean_end() {
    for (durable, acknowledged) in [
        (none_durable as common::Durable, false),
        (all_durable, true),
    ] {
        let (built, writes) = new_life(durable);
        let mut disk = old_life();
        for (k, w) in writes.iter().enumerate() {
            if k != 4 {
                apply(&mut disk, w);
            }
        }
        // The write before the lost one left its terminator where the lost
        // frame should start.
        let lost = built.frames[3].offset;
        disk[lost..lost + TERMINATOR_LEN].fill(0);
        let mut scanner = SegmentScanner::new(bytes::Bytes::from(disk)).unwrap();
        scanner.by_ref().for_each(drop);
        let summary = scanner.finish();
        assert_eq!(summary.valid_end, lost as u64);
        match (summary.end, acknowledged) {
            (SegmentEnd::TornTail { later_frames, .. }, false) => assert!(later_frames >= 1),
            (SegmentEnd::Corrupt { evidence, .. }, true) => {
                assert!(evidence.durable_lsn >= built.frames[3].first_lsn);
            }
            (other, _) => panic!("acknowledged {acknowledged}: {other:?}"),
        }
    }
}
