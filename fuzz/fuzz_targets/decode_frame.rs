//! Any bytes at any offset: `decode_frame` returns a frame or an error, never
//! panics, and a frame it returns iterates exactly `record_count` records that
//! tile its payload.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use wal_format::{FrameExpect, RECORD_PREFIX_LEN, decode_frame};

fuzz_target!(|input: (u64, u8, Vec<u8>)| {
    let (segment_id, offset, data) = input;
    let data = Bytes::from(data);
    let expect = FrameExpect { segment_id, first_lsn: None };
    if let Ok(frame) = decode_frame(&data, usize::from(offset), expect) {
        let records: Vec<_> = frame.records().collect();
        assert_eq!(records.len(), frame.record_count() as usize);
        let tiled: usize = records.iter().map(|r| RECORD_PREFIX_LEN + r.data.len()).sum();
        assert_eq!(tiled, frame.payload().len());
    }
});
