//! A segment cut or zero-filled anywhere after its header scans to exactly
//! the frames that are whole, and ends as a clean end or a torn tail, never
//! as corruption.
// Test sizes and counts are small: casts between integer widths cannot truncate.
#![allow(clippy::cast_possible_truncation)]

mod common;

use common::{SEGMENT_ID, all_durable, build, scan_checked, text};
use wal_format::{Codec, Compression, DecodeError, SegmentEnd, SegmentHeader};

fn batches() -> Vec<Vec<Vec<u8>>> {
    (0..6u64)
        .map(|i| {
            (0..=i % 3)
                .map(|j| text(i * 10 + j, 17 + 31 * j as usize))
                .collect()
        })
        .collect()
}

/// Frames whose header and payload lie wholly below `cut`, and whether `cut`
/// falls on a frame boundary (or inside a frame's zero padding).
fn expected(built: &common::Built, cut: usize) -> (u64, bool) {
    let mut records = 0;
    let mut boundary = cut == SegmentHeader::LEN;
    for f in &built.frames {
        let body_end = f.offset + 48 + f.stored_len;
        if body_end <= cut {
            records += u64::from(f.record_count);
            boundary = cut >= body_end && cut <= f.offset + f.encoded_len;
        }
    }
    (records, boundary)
}

fn check_every_cut(compression: Compression) {
    let built = build(SEGMENT_ID, 1, &batches(), compression, all_durable, false);
    let len = built.bytes.len();
    for cut in SegmentHeader::LEN..=len {
        let (records, boundary) = expected(&built, cut);

        // Truncated file.
        let (seen, summary) = scan_checked(built.bytes[..cut].to_vec(), &built);
        assert_eq!(seen, records, "truncated at {cut}");
        if boundary {
            assert_eq!(summary.end, SegmentEnd::Clean, "truncated at {cut}");
        } else {
            assert!(
                matches!(
                    summary.end,
                    SegmentEnd::TornTail {
                        error: DecodeError::Incomplete { .. },
                        later_frames: 0
                    }
                ),
                "truncated at {cut}: {:?}",
                summary.end
            );
        }

        // Preallocated file whose tail was never written (or lost) as zeros.
        let mut zeroed = built.bytes.clone();
        zeroed[cut..].fill(0);
        zeroed.resize(len + 4096, 0);
        let (seen, summary) = scan_checked(zeroed, &built);
        assert_eq!(seen, records, "zeroed from {cut}");
        if boundary {
            assert_eq!(summary.end, SegmentEnd::Clean, "zeroed from {cut}");
        } else {
            assert!(
                matches!(
                    summary.end,
                    SegmentEnd::TornTail {
                        later_frames: 0,
                        ..
                    }
                ),
                "zeroed from {cut}: {:?}",
                summary.end
            );
        }
    }
}

#[test]
fn every_truncation_and_zero_fill_of_the_tail_keeps_the_whole_frames() {
    check_every_cut(Compression::NONE);
}

#[test]
fn every_cut_of_compressed_frames_keeps_the_whole_frames() {
    check_every_cut(Compression {
        codec: Codec::Lz4,
        min_bytes: 0,
    });
    check_every_cut(Compression {
        codec: Codec::Snappy,
        min_bytes: 0,
    });
}

/// A write torn at 512-byte sectors where a later sector survived and an
/// earlier one did not: the frames after the hole were never acknowledged
/// (none records the hole's LSN as durable), so it is a torn tail.
#[test]
fn a_hole_followed_by_unacknowledged_frames_is_a_torn_tail() {
    let batches: Vec<Vec<Vec<u8>>> = (0..40).map(|i| vec![text(i, 100)]).collect();
    // Frames 0..10 were durable before the last write; frames 10.. were in flight.
    let built = build(
        SEGMENT_ID,
        1,
        &batches,
        Compression::NONE,
        |i, lsn| if i < 10 { lsn - 1 } else { 10 },
        false,
    );
    let hole = built.frames[10].offset.div_ceil(512) * 512;
    let mut bytes = built.bytes.clone();
    bytes[hole..hole + 512].fill(0);
    let (seen, summary) = scan_checked(bytes, &built);
    let broken = built
        .frames
        .iter()
        .position(|f| f.offset + f.encoded_len > hole)
        .unwrap();
    assert_eq!(seen, broken as u64);
    match summary.end {
        SegmentEnd::TornTail { later_frames, .. } => {
            assert!(later_frames > 0, "the frames after the hole were found")
        }
        other => panic!("expected a torn tail, got {other:?}"),
    }
}

/// The same hole, but later frames record the hole's LSN as durable: the
/// damaged bytes had been acknowledged, so the scan reports corruption with
/// the evidence, and the prefix stops at the damaged frame.
#[test]
fn a_hole_in_acknowledged_data_is_corruption() {
    let batches: Vec<Vec<Vec<u8>>> = (0..40).map(|i| vec![text(i, 100)]).collect();
    let built = build(
        SEGMENT_ID,
        1,
        &batches,
        Compression::NONE,
        all_durable,
        false,
    );
    let victim = 10;
    let at = built.frames[victim].offset + 60;
    let mut bytes = built.bytes.clone();
    bytes[at] ^= 0x40;
    let (seen, summary) = scan_checked(bytes, &built);
    assert_eq!(seen, victim as u64);
    assert_eq!(summary.valid_end, built.frames[victim].offset as u64);
    match summary.end {
        SegmentEnd::Corrupt { error, evidence } => {
            assert!(
                matches!(error, DecodeError::ChecksumMismatch { .. }),
                "{error:?}"
            );
            assert_eq!(error.offset(), built.frames[victim].offset as u64);
            assert_eq!(evidence.offset, built.frames[victim + 1].offset as u64);
            assert_eq!(evidence.first_lsn, victim as u64 + 2);
            assert!(evidence.durable_lsn >= built.frames[victim].first_lsn);
        }
        other => panic!("expected corruption, got {other:?}"),
    }
}

/// A recycled file: a new header and a few new frames over the old
/// incarnation's frames. The old frames pass their own CRC but carry the old
/// identity, so none of them is taken for a record of the new segment.
#[test]
fn frames_of_a_recycled_file_never_pass_as_records() {
    let old_batches: Vec<Vec<Vec<u8>>> = (0..30).map(|i| vec![text(i, 80)]).collect();
    let old = build(
        SEGMENT_ID,
        1,
        &old_batches,
        Compression::NONE,
        all_durable,
        false,
    );
    let new_id = SEGMENT_ID + 1;
    let new_batches: Vec<Vec<Vec<u8>>> = (0..5).map(|i| vec![text(1000 + i, 80)]).collect();
    let new = build(
        new_id,
        31,
        &new_batches,
        Compression::NONE,
        all_durable,
        false,
    );
    let mut bytes = old.bytes.clone();
    bytes[..new.bytes.len()].copy_from_slice(&new.bytes);
    let (seen, summary) = scan_checked(bytes, &new);
    assert_eq!(seen, 5);
    assert_eq!(summary.next_lsn, 36);
    assert!(
        matches!(
            summary.end,
            SegmentEnd::TornTail {
                later_frames: 0,
                ..
            }
        ),
        "{:?}",
        summary.end
    );
}
