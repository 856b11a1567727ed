//! Bytes read back from disk are hostile: whatever they are, decoding never
//! panics and never yields a record that was not written.
// Test sizes and counts are small: casts between integer widths cannot truncate.
#![allow(clippy::cast_possible_truncation)]

mod common;

use bytes::Bytes;
use common::{SEGMENT_ID, all_durable, build, scan_checked, text};
use proptest::prelude::*;
use wal_format::{
    Codec, Compression, FrameExpect, SegmentEnd, SegmentHeader, SegmentScanner, decode_frame,
};

/// A small segment with one frame per codec, a multi-record frame and a seal.
fn sample() -> common::Built {
    let batches = [
        vec![b"alpha".to_vec(), b"".to_vec(), text(1, 40)],
        vec![text(2, 30).repeat(10)],
        vec![text(3, 20).repeat(6), text(4, 90)],
    ];
    let mut built = build(
        SEGMENT_ID,
        10,
        &batches[..1],
        Compression::NONE,
        all_durable,
        false,
    );
    for (i, codec) in [Codec::Lz4, Codec::Snappy].into_iter().enumerate() {
        let more = build(
            SEGMENT_ID,
            10 + built.records.len() as u64,
            &batches[i + 1..i + 2],
            Compression {
                codec,
                min_bytes: 0,
            },
            all_durable,
            i == 1,
        );
        assert_ne!(
            more.frames[0].codec,
            Codec::None,
            "sample frames must exercise {codec:?}"
        );
        let shift = built.bytes.len() - SegmentHeader::LEN;
        built
            .bytes
            .extend_from_slice(&more.bytes[SegmentHeader::LEN..]);
        built.records.extend(more.records);
        built.frames.extend(more.frames.into_iter().map(|mut f| {
            f.offset += shift;
            f
        }));
    }
    built
}

#[test]
fn the_sample_scans_whole() {
    let built = sample();
    let (seen, summary) = scan_checked(built.bytes.clone(), &built);
    assert_eq!(seen, 6);
    assert_eq!(summary.end, SegmentEnd::Sealed { next_lsn: 16 });
}

/// Every single-bit flip anywhere in the segment: the scan never panics,
/// every record it yields is the one written, and a flip inside a frame stops
/// the valid prefix at that frame (CRC32C catches every single-bit error).
#[test]
fn every_single_bit_flip_is_caught() {
    let built = sample();
    let frame_starts: Vec<usize> = built.frames.iter().map(|f| f.offset).collect();
    for bit in 0..built.bytes.len() * 8 {
        let mut bytes = built.bytes.clone();
        bytes[bit / 8] ^= 1 << (bit % 8);
        let byte = bit / 8;
        if byte < SegmentHeader::LEN {
            assert!(
                SegmentScanner::new(Bytes::from(bytes)).is_err(),
                "flip of header bit {bit} went unnoticed"
            );
            continue;
        }
        let (_, summary) = scan_checked(bytes, &built);
        let hit = built
            .frames
            .iter()
            .position(|f| byte >= f.offset && byte < f.offset + 48 + f.stored_len);
        match hit {
            Some(i) => {
                assert_eq!(
                    summary.valid_end, frame_starts[i] as u64,
                    "flip at bit {bit}"
                );
                assert_eq!(summary.frames, i as u64, "flip at bit {bit}");
                assert!(
                    matches!(
                        summary.end,
                        SegmentEnd::Corrupt { .. } | SegmentEnd::TornTail { .. }
                    ),
                    "flip at bit {bit}: {:?}",
                    summary.end
                );
            }
            // Padding is not covered by the CRC: a flip there changes no record.
            None => assert_eq!(summary.records, 6, "flip in padding at bit {bit}"),
        }
    }
}

fn segment_prefix() -> Vec<u8> {
    SegmentHeader::new(common::LOG_ID, SEGMENT_ID, 1)
        .unwrap()
        .encode()
        .to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048), offset in 0usize..2100) {
        let data = Bytes::from(data);
        let _ = SegmentHeader::decode(&data);
        let _ = decode_frame(&data, offset, FrameExpect { segment_id: SEGMENT_ID, first_lsn: None });
        if let Ok(scan) = SegmentScanner::new(data) {
            let _ = scan.finish();
        }
    }

    /// Past a valid header, arbitrary bytes yield no records (a frame would
    /// need a matching identity and CRC32C by chance) and the scan ends.
    #[test]
    fn arbitrary_frames_behind_a_valid_header_yield_nothing(tail in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let mut data = segment_prefix();
        data.extend_from_slice(&tail);
        let mut scan = SegmentScanner::new(Bytes::from(data)).unwrap();
        prop_assert_eq!(scan.by_ref().count(), 0);
        let _ = scan.finish();
    }

    /// Random overwrites of a valid segment: no panic, no wrong record.
    #[test]
    fn random_damage_never_yields_a_wrong_record(hits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let built = sample();
        let mut bytes = built.bytes.clone();
        for (at, value) in hits {
            let at = SegmentHeader::LEN + at % (bytes.len() - SegmentHeader::LEN);
            bytes[at] = value;
        }
        let _ = scan_checked(bytes, &built);
    }
}
