//! `docs/FORMAT.md` shows the bytes of an example segment; this test encodes
//! the same segment and fails if the document and the encoder disagree.
// Test sizes and counts are small: casts between integer widths cannot truncate.
#![allow(clippy::cast_possible_truncation)]

use std::path::PathBuf;

use bytes::Bytes;
use wal_format::{Compression, FrameEncoder, SegmentEnd, SegmentHeader, SegmentScanner};

const BEGIN: &str = "<!-- example-bytes:begin -->";
const END: &str = "<!-- example-bytes:end -->";

/// The example's commit time: 2025-12-05T02:00:00Z.
const TIME_US: u64 = 1_764_900_000_000_000;

/// The example of docs/FORMAT.md: log 1, segment identity 0x2a, first LSN 1,
/// one frame committed at [`TIME_US`] holding the records "hello" and "wal",
/// nothing durable yet.
fn example() -> Vec<u8> {
    let mut out = SegmentHeader::new(1, 0x2a, 1).unwrap().encode().to_vec();
    FrameEncoder::new(Compression::NONE)
        .encode_timestamped(&mut out, 0x2a, 1, 0, TIME_US, [&b"hello"[..], b"wal"])
        .unwrap();
    out
}

fn dump(bytes: &[u8]) -> String {
    bytes
        .chunks(16)
        .enumerate()
        .map(|(i, line)| {
            let hex: Vec<String> = line.iter().map(|b| format!("{b:02x}")).collect();
            format!("{:04x}: {}\n", i * 16, hex.join(" "))
        })
        .collect()
}

/// Parses the hex dump between the markers: `offset: byte byte ...`, and
/// checks that every line's offset is where its bytes are.
fn documented() -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/FORMAT.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let start = doc.find(BEGIN).expect("begin marker") + BEGIN.len();
    let end = doc.find(END).expect("end marker");
    let mut bytes = Vec::new();
    for line in doc[start..end].lines() {
        let line = line.trim();
        let Some((offset, hex)) = line.split_once(':') else {
            continue;
        };
        let Ok(offset) = usize::from_str_radix(offset.trim(), 16) else {
            continue;
        };
        assert_eq!(offset, bytes.len(), "offset of line `{line}`");
        for byte in hex.split_whitespace() {
            bytes
                .push(u8::from_str_radix(byte, 16).unwrap_or_else(|_| panic!("bad byte `{byte}`")));
        }
    }
    bytes
}

#[test]
fn the_documented_example_is_what_the_encoder_writes() {
    let encoded = example();
    assert!(
        documented() == encoded,
        "docs/FORMAT.md's example bytes are out of date; the encoder writes:\n{}",
        dump(&encoded)
    );
}

#[test]
fn the_documented_example_decodes() {
    let mut scan = SegmentScanner::new(Bytes::from(documented())).unwrap();
    let frames: Vec<_> = scan.by_ref().collect();
    assert_eq!(frames[0].timestamp_us(), Some(TIME_US));
    let records: Vec<_> = frames
        .iter()
        .flat_map(|f| f.records().collect::<Vec<_>>())
        .collect();
    assert_eq!(records.len(), 2);
    assert_eq!((records[0].lsn, &records[0].data[..]), (1, &b"hello"[..]));
    assert_eq!((records[1].lsn, &records[1].data[..]), (2, &b"wal"[..]));
    assert_eq!(scan.finish().end, SegmentEnd::Clean);
}
