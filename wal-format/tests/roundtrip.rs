//! Random batches survive encoding and scanning unchanged, through every codec.
// Test sizes and counts are small: casts between integer widths cannot truncate.
#![allow(clippy::cast_possible_truncation)]

mod common;

use bytes::Bytes;
use common::{SEGMENT_ID, all_durable, build, scan_checked};
use proptest::prelude::*;
use wal_format::{Codec, Compression, FrameExpect, SegmentEnd, decode_frame};

fn record() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // Small and incompressible.
        proptest::collection::vec(any::<u8>(), 0..200),
        // Larger and compressible: runs of a few distinct bytes.
        (1usize..6000, any::<u8>())
            .prop_map(|(len, b)| (0..len).map(|i| b ^ ((i / 7) as u8 & 3)).collect()),
    ]
}

fn batches() -> impl Strategy<Value = Vec<Vec<Vec<u8>>>> {
    proptest::collection::vec(proptest::collection::vec(record(), 1..20), 1..8)
}

fn compression() -> impl Strategy<Value = Compression> {
    (
        prop::sample::select(Codec::ALL.to_vec()),
        prop_oneof![Just(0usize), 0usize..10_000],
    )
        .prop_map(|(codec, min_bytes)| Compression { codec, min_bytes })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn batches_round_trip(batches in batches(), compression in compression(), first_lsn in 1u64..1 << 40, seal in any::<bool>()) {
        let built = build(SEGMENT_ID, first_lsn, &batches, compression, all_durable, seal);
        let written = built.records.len() as u64;
        let (seen, summary) = scan_checked(built.bytes.clone(), &built);
        prop_assert_eq!(seen, written);
        prop_assert_eq!(summary.records, written);
        prop_assert_eq!(summary.next_lsn, first_lsn + written);
        prop_assert_eq!(summary.valid_end, built.bytes.len() as u64);
        let end = if seal { SegmentEnd::Sealed { next_lsn: first_lsn + written } } else { SegmentEnd::Clean };
        prop_assert_eq!(summary.end, end);
        // A frame is stored compressed only when the policy asks and it pays.
        for f in &built.frames {
            if f.codec != Codec::None {
                prop_assert_eq!(f.codec, compression.codec);
                prop_assert!(f.raw_len >= compression.min_bytes);
                prop_assert!(f.stored_len < f.raw_len);
            }
        }
    }

    #[test]
    fn uncompressed_records_share_the_input_buffer(batch in proptest::collection::vec(record(), 1..20)) {
        let built = build(SEGMENT_ID, 1, std::slice::from_ref(&batch), Compression::NONE, all_durable, false);
        let bytes = Bytes::from(built.bytes);
        let frame = decode_frame(&bytes, 64, FrameExpect { segment_id: SEGMENT_ID, first_lsn: Some(1) }).unwrap();
        let range = bytes.as_ptr_range();
        for record in frame.records() {
            let p = record.data.as_ptr();
            prop_assert!(record.data.is_empty() || (range.start <= p && p < range.end), "record was copied");
        }
    }
}
