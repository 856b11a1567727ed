//! Golden fixtures lock the format: the encoder must reproduce each committed
//! file byte for byte, and the decoder must read each one as recorded here.
//! A change to the bytes is a format version bump with a reader for the old
//! version, never a silent edit: regenerate with `WAL_FORMAT_BLESS=1` only
//! together with that bump.
// Test sizes and counts are small: casts between integer widths cannot truncate.
#![allow(clippy::cast_possible_truncation)]

mod common;

use std::path::PathBuf;

use bytes::Bytes;
use common::{LOG_ID, SEGMENT_ID};
use wal_format::{
    Codec, Compression, DecodeError, FORMAT_VERSION, FrameEncoder, FrameKind, PADDED_BLOCK_BYTES,
    SegmentEnd, SegmentHeader, SegmentScanner, TERMINATOR_LEN, encode_seal,
};

/// The commit time the current version's frames carry (plus a small
/// offset per frame): 2025-12-05T02:00:00Z.
const T0: u64 = 1_764_900_000_000_000;

/// The current version's fixtures are at the top; each older version's stay
/// in their own folder, never regenerated, and must keep reading as they did.
fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn segment(frames: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = SegmentHeader::new(LOG_ID, SEGMENT_ID, 1)
        .unwrap()
        .encode()
        .to_vec();
    frames(&mut out);
    out
}

/// A recycled file: an earlier life of three frames (identity
/// `SEGMENT_ID + 1`), then a new header with the recycled flag and one new
/// frame over it, each write followed by its terminator.
fn recycled() -> Vec<u8> {
    let old_id = SEGMENT_ID + 1;
    let mut out = SegmentHeader::new(LOG_ID, old_id, 1)
        .unwrap()
        .encode()
        .to_vec();
    let mut enc = FrameEncoder::new(Compression::NONE);
    for i in 0..3u64 {
        let rec = format!("old life, frame {i}").into_bytes();
        enc.encode_timestamped(&mut out, old_id, 1 + i, i, T0 + i, [&rec[..]])
            .unwrap();
    }
    let header = SegmentHeader::new(LOG_ID, SEGMENT_ID, 1)
        .unwrap()
        .with_recycled(true)
        .encode();
    out[..header.len()].copy_from_slice(&header);
    let mut frame = Vec::new();
    enc.encode_timestamped(&mut frame, SEGMENT_ID, 1, 0, T0 + 10, plain_records())
        .unwrap();
    frame.resize(frame.len() + TERMINATOR_LEN, 0);
    out[header.len()..header.len() + frame.len()].copy_from_slice(&frame);
    out
}

/// A padded file: the header, then two writes of one frame each, every
/// write starting at a block boundary and zero-padded to the next one.
fn padded() -> Vec<u8> {
    let mut out = SegmentHeader::new(LOG_ID, SEGMENT_ID, 1)
        .unwrap()
        .with_padded(true)
        .encode()
        .to_vec();
    let mut enc = FrameEncoder::new(Compression::NONE);
    let second: [&[u8]; 1] = [b"after the padding"];
    for (first_lsn, durable, records) in [(1, 0, &plain_records()[..]), (4, 3, &second[..])] {
        out.resize(out.len().next_multiple_of(PADDED_BLOCK_BYTES), 0);
        enc.encode_timestamped(
            &mut out,
            SEGMENT_ID,
            first_lsn,
            durable,
            T0 + first_lsn,
            records.iter().copied(),
        )
        .unwrap();
        out.resize(out.len() + TERMINATOR_LEN, 0);
    }
    out.resize(out.len().next_multiple_of(PADDED_BLOCK_BYTES), 0);
    out
}

fn plain_records() -> [&'static [u8]; 3] {
    [b"hello", b"write-ahead log", b""]
}

fn compressible_records() -> Vec<Vec<u8>> {
    vec![
        b"abcd".repeat(64),
        b"0123456789".repeat(20),
        b"tail".to_vec(),
    ]
}

fn encode_compressed(out: &mut Vec<u8>, codec: Codec) {
    let recs = compressible_records();
    let s = FrameEncoder::new(Compression {
        codec,
        min_bytes: 0,
    })
    .encode_timestamped(out, SEGMENT_ID, 1, 0, T0, recs.iter().map(Vec::as_slice))
    .unwrap();
    assert_eq!(s.codec, codec);
}

/// Three frames of five records each, every frame recording the ones before
/// as durable.
fn three_frames(out: &mut Vec<u8>) -> Vec<usize> {
    let mut enc = FrameEncoder::new(Compression::NONE);
    (0..3u64)
        .map(|i| {
            let recs: Vec<Vec<u8>> = (0..5)
                .map(|j| format!("frame {i} record {j}").into_bytes())
                .collect();
            enc.encode_timestamped(
                out,
                SEGMENT_ID,
                1 + 5 * i,
                5 * i,
                T0 + i,
                recs.iter().map(Vec::as_slice),
            )
            .unwrap()
            .offset
        })
        .collect()
}

struct Fixture {
    name: &'static str,
    bytes: Vec<u8>,
}

fn fixtures() -> Vec<Fixture> {
    vec![
        Fixture {
            name: "records_none.seg",
            bytes: segment(|out| {
                FrameEncoder::new(Compression::NONE)
                    .encode_timestamped(out, SEGMENT_ID, 1, 0, T0, plain_records())
                    .unwrap();
            }),
        },
        Fixture {
            name: "records_lz4.seg",
            bytes: segment(|out| encode_compressed(out, Codec::Lz4)),
        },
        Fixture {
            name: "records_snappy.seg",
            bytes: segment(|out| encode_compressed(out, Codec::Snappy)),
        },
        Fixture {
            name: "sealed.seg",
            bytes: segment(|out| {
                FrameEncoder::new(Compression::NONE)
                    .encode_timestamped(out, SEGMENT_ID, 1, 0, T0, plain_records())
                    .unwrap();
                encode_seal(out, SEGMENT_ID, 4, 3).unwrap();
            }),
        },
        Fixture {
            name: "torn_tail.seg",
            bytes: segment(|out| {
                let starts = three_frames(out);
                // The last frame's write was interrupted halfway through its payload.
                out.truncate(starts[2] + 48 + 20);
            }),
        },
        Fixture {
            name: "corrupt_middle.seg",
            bytes: segment(|out| {
                let starts = three_frames(out);
                // One bit of the middle frame's payload rotted after it was acknowledged.
                out[starts[1] + 48 + 10] ^= 0x08;
            }),
        },
        Fixture {
            name: "recycled.seg",
            bytes: recycled(),
        },
        Fixture {
            name: "padded.seg",
            bytes: padded(),
        },
    ]
}

#[test]
fn the_encoder_reproduces_every_fixture() {
    let bless = std::env::var_os("WAL_FORMAT_BLESS").is_some();
    for fixture in fixtures() {
        let path = fixture_path(fixture.name);
        if bless {
            std::fs::write(&path, &fixture.bytes).unwrap();
        }
        let committed = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            committed == fixture.bytes,
            "{}: the encoder's bytes drifted from the committed fixture. A format change \
             needs a version bump and a reader for the old version; then regenerate with \
             WAL_FORMAT_BLESS=1.",
            fixture.name
        );
    }
}

type Read = (
    Vec<(u64, Vec<u8>)>,
    Vec<(FrameKind, Codec)>,
    wal_format::ScanSummary,
);

fn read(name: &str, version: u16) -> Read {
    let bytes = std::fs::read(fixture_path(name)).unwrap();
    let mut scan = SegmentScanner::new(Bytes::from(bytes)).unwrap();
    assert_eq!(scan.header().version(), version, "{name}");
    assert_eq!(scan.header().log_id(), LOG_ID);
    assert_eq!(scan.header().segment_id(), SEGMENT_ID);
    let mut records = Vec::new();
    let mut frames = Vec::new();
    for frame in scan.by_ref() {
        // Version 4's records frames carry their commit time; older ones none.
        let timed = version >= 4 && frame.kind() == FrameKind::Records;
        assert_eq!(
            frame
                .timestamp_us()
                .is_some_and(|t| (T0..T0 + 100).contains(&t)),
            timed,
            "{name}: {:?}",
            frame.timestamp_us()
        );
        frames.push((frame.kind(), frame.header().codec));
        records.extend(frame.records().map(|r| (r.lsn, r.data.to_vec())));
    }
    (records, frames, scan.finish())
}

fn numbered(records: &[&[u8]]) -> Vec<(u64, Vec<u8>)> {
    records
        .iter()
        .zip(1..)
        .map(|(r, lsn)| (lsn, r.to_vec()))
        .collect()
}

#[test]
fn every_fixture_reads_as_recorded() {
    check_version(FORMAT_VERSION, "");
    check_version(3, "v3/");
    check_version(2, "v2/");
    check_version(1, "v1/");

    for (name, version) in [
        ("recycled.seg", FORMAT_VERSION),
        ("v3/recycled.seg", 3),
        ("v2/recycled.seg", 2),
    ] {
        let (records, frames, summary) = read(name, version);
        assert_eq!(records, numbered(&plain_records()), "{name}");
        assert_eq!(frames, [(FrameKind::Records, Codec::None)], "{name}");
        assert_eq!(summary.end, SegmentEnd::Clean, "{name}");
    }

    // The second write's frame: header, (a time from version 4 on), the
    // record's prefix and 17 bytes, aligned to 8.
    for (name, version, end) in [
        ("padded.seg", FORMAT_VERSION, 48 + 8 + 24),
        ("v3/padded.seg", 3, 48 + 24),
    ] {
        let (records, frames, summary) = read(name, version);
        let mut expected = plain_records().to_vec();
        expected.push(b"after the padding");
        assert_eq!(records, numbered(&expected), "{name}");
        assert_eq!(frames, [(FrameKind::Records, Codec::None); 2], "{name}");
        assert_eq!(summary.end, SegmentEnd::Clean, "{name}");
        assert!(summary.header.padded(), "{name}");
        assert_eq!(
            summary.valid_end % PADDED_BLOCK_BYTES as u64,
            end,
            "{name}: the prefix ends inside the second block, before its padding"
        );
    }
}

/// The fixtures every version has, read from `dir`.
fn check_version(version: u16, dir: &str) {
    let read = |name: &str| read(&format!("{dir}{name}"), version);
    let (records, frames, summary) = read("records_none.seg");
    assert_eq!(records, numbered(&plain_records()));
    assert_eq!(frames, [(FrameKind::Records, Codec::None)]);
    assert_eq!(summary.end, SegmentEnd::Clean);

    for (name, codec) in [
        ("records_lz4.seg", Codec::Lz4),
        ("records_snappy.seg", Codec::Snappy),
    ] {
        let (records, frames, summary) = read(name);
        let expected = compressible_records();
        let expected: Vec<&[u8]> = expected.iter().map(Vec::as_slice).collect();
        assert_eq!(records, numbered(&expected), "{name}");
        assert_eq!(frames, [(FrameKind::Records, codec)], "{name}");
        assert_eq!(summary.end, SegmentEnd::Clean, "{name}");
    }

    let (records, frames, summary) = read("sealed.seg");
    assert_eq!(records, numbered(&plain_records()));
    assert_eq!(
        frames,
        [
            (FrameKind::Records, Codec::None),
            (FrameKind::Seal, Codec::None)
        ]
    );
    assert_eq!(summary.end, SegmentEnd::Sealed { next_lsn: 4 });

    let (records, _, summary) = read("torn_tail.seg");
    assert_eq!(records.len(), 10);
    assert_eq!(records[9].1, b"frame 1 record 4");
    assert!(matches!(
        summary.end,
        SegmentEnd::TornTail {
            error: DecodeError::Incomplete { .. },
            later_frames: 0
        }
    ));

    let (records, _, summary) = read("corrupt_middle.seg");
    assert_eq!(records.len(), 5);
    match summary.end {
        SegmentEnd::Corrupt { error, evidence } => {
            assert!(matches!(error, DecodeError::ChecksumMismatch { .. }));
            assert_eq!(error.offset(), summary.valid_end);
            assert_eq!((evidence.first_lsn, evidence.durable_lsn), (11, 10));
        }
        other => panic!("corrupt_middle.seg: {other:?}"),
    }
}
