//! Any bytes as a segment: the scanner never panics, yields frames with
//! dense, increasing LSNs, and its summary agrees with what it yielded.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use wal_format::{SegmentHeader, SegmentScanner};

fuzz_target!(|input: (bool, Vec<u8>)| {
    let (with_header, tail) = input;
    // Half the inputs get a valid header, so the fuzzer spends its time on frames.
    let mut data = Vec::new();
    if with_header {
        data.extend_from_slice(&SegmentHeader::new(1, 0x2a, 1).map(|h| h.encode()).unwrap_or([0; 64]));
    }
    data.extend_from_slice(&tail);
    let Ok(mut scan) = SegmentScanner::new(Bytes::from(data)) else { return };
    let mut next = scan.header().first_lsn();
    let mut records = 0u64;
    for frame in scan.by_ref() {
        assert_eq!(frame.first_lsn(), next);
        for record in frame.records() {
            assert_eq!(record.lsn, next);
            next += 1;
            records += 1;
        }
    }
    let summary = scan.finish();
    assert_eq!(summary.next_lsn, next);
    assert_eq!(summary.records, records);
});
