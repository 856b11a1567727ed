//! Frames and headers that break one rule each, forged with valid checksums
//! so that the rule itself (not the CRC) must catch them; and an encoder that
//! refuses to write what a decoder would reject.
// Test sizes and counts are small: casts between integer widths cannot truncate.
#![allow(clippy::cast_possible_truncation)]

mod common;

use bytes::Bytes;
use common::{Forge, SEGMENT_ID, payload_of};
use wal_format::{
    Codec, Compression, DecodeError, EncodeError, FRAME_PAYLOAD_BYTES_MAX, FrameBuilder,
    FrameEncoder, FrameExpect, RECORD_BYTES_MAX, SegmentHeader, Structure, decode_frame,
    encode_seal,
};

const EXPECT: FrameExpect = FrameExpect {
    segment_id: SEGMENT_ID,
    first_lsn: Some(7),
};

fn decode(frame: Vec<u8>) -> Result<wal_format::Frame, DecodeError> {
    decode_frame(&Bytes::from(frame), 0, EXPECT)
}

fn two_records() -> Vec<u8> {
    payload_of(&[b"abc", b"defg"])
}

fn forge() -> Forge {
    Forge::records(two_records().len() as u32, 2, 7)
}

fn bad_field(result: Result<wal_format::Frame, DecodeError>) -> &'static str {
    match result {
        Err(DecodeError::BadLength { field, .. }) => field,
        other => panic!("expected BadLength, got {other:?}"),
    }
}

#[test]
fn the_forge_matches_the_encoder() {
    let mut out = Vec::new();
    FrameEncoder::new(Compression::NONE)
        .encode(&mut out, SEGMENT_ID, 7, 0, [&b"abc"[..], b"defg"])
        .unwrap();
    assert_eq!(out, forge().bytes(&two_records()));
    let frame = decode(out).unwrap();
    assert_eq!(
        frame.records().map(|r| r.data).collect::<Vec<_>>(),
        [&b"abc"[..], b"defg"]
    );
}

#[test]
fn header_field_violations_are_named() {
    let p = two_records();
    let f = forge();
    assert!(matches!(
        decode(Forge { kind: 9, ..f }.bytes(&p)),
        Err(DecodeError::UnknownKind { kind: 9, .. })
    ));
    assert!(matches!(
        decode(Forge { codec: 7, ..f }.bytes(&p)),
        Err(DecodeError::UnknownCodec { codec: 7, .. })
    ));
    // Bit 0 is the time flag (version 4); every other bit is reserved.
    assert!(matches!(
        decode(Forge { flags: 2, ..f }.bytes(&p)),
        Err(DecodeError::ReservedNonZero { field: "flags", .. })
    ));
    assert!(matches!(
        decode(Forge { reserved: 1, ..f }.bytes(&p)),
        Err(DecodeError::ReservedNonZero {
            field: "reserved",
            ..
        })
    ));
    assert!(matches!(
        decode(Forge { segment_id: SEGMENT_ID ^ 1, ..f }.bytes(&p)),
        Err(DecodeError::StaleIdentity { found, expected: SEGMENT_ID, .. }) if found == SEGMENT_ID ^ 1
    ));
    assert!(matches!(
        decode(Forge { first_lsn: 8, ..f }.bytes(&p)),
        Err(DecodeError::LsnMismatch {
            found: 8,
            expected: 7,
            ..
        })
    ));
    let any_lsn = FrameExpect {
        segment_id: SEGMENT_ID,
        first_lsn: None,
    };
    let zero = Forge { first_lsn: 0, ..f }.bytes(&p);
    assert!(matches!(
        decode_frame(&Bytes::from(zero), 0, any_lsn),
        Err(DecodeError::BadLength {
            field: "first_lsn",
            ..
        })
    ));
    assert_eq!(
        bad_field(decode(
            Forge {
                durable_lsn: 7,
                ..f
            }
            .bytes(&p)
        )),
        "durable_lsn"
    );
    assert_eq!(
        bad_field(decode(
            Forge {
                record_count: 0,
                ..f
            }
            .bytes(&p)
        )),
        "record_count"
    );
    let edge = Forge {
        first_lsn: u64::MAX - 2,
        ..f
    }
    .bytes(&p);
    assert_eq!(
        decode_frame(&Bytes::from(edge), 0, any_lsn)
            .unwrap()
            .next_lsn(),
        u64::MAX
    );
    let overflow = Forge {
        first_lsn: u64::MAX - 1,
        ..f
    }
    .bytes(&p);
    assert_eq!(
        bad_field(decode_frame(&Bytes::from(overflow), 0, any_lsn)),
        "record_count"
    );
    assert_eq!(
        bad_field(decode(Forge { raw_len: 99, ..f }.bytes(&p))),
        "raw_len"
    );
}

#[test]
fn extreme_lengths_are_rejected_before_anything_is_allocated() {
    let p = two_records();
    let f = forge();
    let huge = Forge {
        stored_len: u32::MAX,
        ..f
    }
    .bytes(&p);
    assert_eq!(bad_field(decode(huge)), "stored_len");
    // A stored length past the end of the bytes is a torn frame.
    let long = Forge {
        stored_len: 1 << 20,
        raw_len: 1 << 20,
        ..f
    }
    .bytes(&p);
    assert!(matches!(
        decode(long),
        Err(DecodeError::Incomplete { what: Structure::FramePayload, needed, .. }) if needed == 48 + (1 << 20)
    ));
    // Compressed payloads may not claim more than the limit, nor more than
    // 255 times what is stored.
    let lz4 = Forge {
        codec: 1,
        raw_len: (FRAME_PAYLOAD_BYTES_MAX + 1) as u32,
        ..f
    }
    .bytes(&p);
    assert_eq!(bad_field(decode(lz4)), "raw_len");
    let ratio = Forge {
        codec: 1,
        raw_len: p.len() as u32 * 255 + 1,
        ..f
    }
    .bytes(&p);
    assert_eq!(bad_field(decode(ratio)), "raw_len");
    // More records than four-byte prefixes fit in the payload.
    assert_eq!(
        bad_field(decode(
            Forge {
                record_count: u32::MAX,
                ..f
            }
            .bytes(&p)
        )),
        "record_count"
    );
}

/// Forges a plain frame around `payload` and expects a record-layout error.
fn assert_record_error(f: Forge, payload: &[u8]) {
    let len = payload.len() as u32;
    let frame = Forge {
        stored_len: len,
        raw_len: len,
        ..f
    }
    .bytes(payload);
    assert!(matches!(
        decode(frame),
        Err(DecodeError::BadLength {
            what: Structure::Record,
            ..
        })
    ));
}

#[test]
fn record_layout_violations_are_caught() {
    let f = forge();
    // Record length runs past the payload.
    let mut p = two_records();
    p[4 + 3] = 200;
    assert_record_error(f, &p);
    // Bytes after the last record.
    let mut p = two_records();
    p.extend_from_slice(b"junk");
    assert_record_error(f, &p);
    // Fewer bytes than the count needs.
    assert!(matches!(
        decode(
            Forge {
                record_count: 3,
                ..f
            }
            .bytes(&two_records())
        ),
        Err(DecodeError::BadLength {
            what: Structure::Record,
            ..
        })
    ));
}

#[test]
fn payloads_that_do_not_decompress_are_errors() {
    let garbage = [0xffu8; 40];
    let f = Forge {
        codec: 1,
        stored_len: 40,
        raw_len: 100,
        ..forge()
    };
    assert!(matches!(
        decode(f.bytes(&garbage)),
        Err(DecodeError::Decompress {
            codec: Codec::Lz4,
            ..
        })
    ));
    // Snappy's own length prefix must agree with the frame header.
    let raw = two_records();
    let stored = snap::raw::Encoder::new().compress_vec(&raw).unwrap();
    let f = Forge {
        codec: 2,
        stored_len: stored.len() as u32,
        raw_len: raw.len() as u32 + 1,
        ..forge()
    };
    assert!(matches!(
        decode(f.bytes(&stored)),
        Err(DecodeError::Decompress {
            codec: Codec::Snappy,
            ..
        })
    ));
    let f = Forge {
        codec: 2,
        stored_len: stored.len() as u32,
        raw_len: raw.len() as u32,
        ..forge()
    };
    assert_eq!(decode(f.bytes(&stored)).unwrap().record_count(), 2);
}

#[test]
fn a_seal_carries_nothing() {
    let seal = Forge {
        kind: 2,
        record_count: 0,
        stored_len: 0,
        raw_len: 0,
        ..forge()
    };
    assert_eq!(decode(seal.bytes(&[])).unwrap().next_lsn(), 7);
    let p = two_records();
    let with_payload = Forge {
        kind: 2,
        record_count: 0,
        ..forge()
    };
    assert!(matches!(
        decode(with_payload.bytes(&p)),
        Err(DecodeError::BadLength { .. })
    ));
}

#[test]
fn short_and_zero_headers() {
    assert!(matches!(
        decode(vec![]),
        Err(DecodeError::Incomplete { available: 0, .. })
    ));
    assert!(matches!(
        decode(vec![0; 20]),
        Err(DecodeError::Zeroed { offset: 0 })
    ));
    assert!(matches!(
        decode(vec![0; 48]),
        Err(DecodeError::Zeroed { offset: 0 })
    ));
    assert!(matches!(
        decode(vec![1; 20]),
        Err(DecodeError::Incomplete {
            what: Structure::FrameHeader,
            ..
        })
    ));
    let mut flipped = forge().bytes(&two_records());
    flipped[30] ^= 1;
    assert!(matches!(
        decode(flipped),
        Err(DecodeError::ChecksumMismatch { .. })
    ));
}

fn forged_segment_header(edit: impl FnOnce(&mut [u8; 64])) -> [u8; 64] {
    let mut h = SegmentHeader::new(1, 2, 3).unwrap().encode();
    edit(&mut h);
    let crc = crc32c::crc32c(&h[..60]);
    h[60..].copy_from_slice(&crc.to_le_bytes());
    h
}

#[test]
fn segment_header_violations_are_named() {
    let good = SegmentHeader::new(1, 2, 3).unwrap();
    assert_eq!(SegmentHeader::decode(&good.encode()), Ok(good));
    assert!(matches!(
        SegmentHeader::decode(&good.encode()[..63]),
        Err(DecodeError::Incomplete { .. })
    ));
    let magic = forged_segment_header(|h| h[0] = b'X');
    assert!(matches!(
        SegmentHeader::decode(&magic),
        Err(DecodeError::BadMagic { .. })
    ));
    for unknown in [0u8, 5] {
        let version = forged_segment_header(|h| h[8] = unknown);
        assert!(
            matches!(
                SegmentHeader::decode(&version),
                Err(DecodeError::UnknownVersion { version, .. }) if version == u16::from(unknown)
            ),
            "version {unknown}"
        );
    }
    // Version 1 still reads, and defines no flag.
    let v1 = forged_segment_header(|h| h[8] = 1);
    let decoded = SegmentHeader::decode(&v1).unwrap();
    assert_eq!((decoded.version(), decoded.recycled()), (1, false));
    let v1_flagged = forged_segment_header(|h| (h[8], h[12]) = (1, 1));
    assert!(matches!(
        SegmentHeader::decode(&v1_flagged),
        Err(DecodeError::ReservedNonZero { field: "flags", .. })
    ));
    let recycled = good.with_recycled(true);
    assert_eq!(SegmentHeader::decode(&recycled.encode()), Ok(recycled));
    assert_eq!(
        recycled.encode()[12],
        1,
        "the recycled flag is bit 0 of flags"
    );
    let mut crc = good.encode();
    crc[40] = 1;
    assert!(matches!(
        SegmentHeader::decode(&crc),
        Err(DecodeError::ChecksumMismatch {
            what: Structure::SegmentHeader,
            ..
        })
    ));
    let len = forged_segment_header(|h| h[10] = 65);
    assert!(matches!(
        SegmentHeader::decode(&len),
        Err(DecodeError::BadLength {
            field: "header_len",
            ..
        })
    ));
    let padded = good.with_padded(true).with_recycled(true);
    assert_eq!(SegmentHeader::decode(&padded.encode()), Ok(padded));
    assert_eq!(padded.encode()[12], 3, "the padded flag is bit 1 of flags");
    let flags = forged_segment_header(|h| h[12] = 4);
    assert!(matches!(
        SegmentHeader::decode(&flags),
        Err(DecodeError::ReservedNonZero { field: "flags", .. })
    ));
    let reserved = forged_segment_header(|h| h[50] = 1);
    assert!(matches!(
        SegmentHeader::decode(&reserved),
        Err(DecodeError::ReservedNonZero {
            field: "reserved",
            ..
        })
    ));
    for (at, field) in [(16, "log_id"), (24, "segment_id"), (32, "first_lsn")] {
        let zero = forged_segment_header(|h| h[at..at + 8].fill(0));
        assert!(
            matches!(SegmentHeader::decode(&zero), Err(DecodeError::BadLength { field: f, .. }) if f == field),
            "{field}"
        );
    }
    assert_eq!(SegmentHeader::new(0, 1, 1), Err(EncodeError::ZeroIdentity));
    assert_eq!(SegmentHeader::new(1, 0, 1), Err(EncodeError::ZeroIdentity));
    assert_eq!(
        SegmentHeader::new(1, 1, 0),
        Err(EncodeError::InvalidLsn { lsn: 0 })
    );
}

#[test]
fn the_encoder_refuses_what_the_decoder_would_reject() {
    let mut enc = FrameEncoder::new(Compression::NONE);
    let mut out = b"keep".to_vec();
    let none: [&[u8]; 0] = [];
    assert_eq!(
        enc.encode(&mut out, SEGMENT_ID, 1, 0, none),
        Err(EncodeError::EmptyFrame)
    );
    assert_eq!(
        enc.encode(&mut out, 0, 1, 0, [&b"x"[..]]),
        Err(EncodeError::ZeroIdentity)
    );
    assert_eq!(
        enc.encode(&mut out, SEGMENT_ID, 0, 0, [&b"x"[..]]),
        Err(EncodeError::InvalidLsn { lsn: 0 })
    );
    assert_eq!(
        enc.encode(&mut out, SEGMENT_ID, 5, 5, [&b"x"[..]]),
        Err(EncodeError::InvalidLsn { lsn: 5 })
    );
    assert_eq!(
        enc.encode(&mut out, SEGMENT_ID, u64::MAX - 1, 0, [&b"x"[..], b"y"]),
        Err(EncodeError::InvalidLsn { lsn: u64::MAX - 1 })
    );
    let last = enc
        .encode(&mut Vec::new(), SEGMENT_ID, u64::MAX - 1, 0, [&b"x"[..]])
        .unwrap();
    assert_eq!(
        last.next_lsn(),
        u64::MAX,
        "the last assignable LSN is u64::MAX - 1"
    );
    assert_eq!(
        encode_seal(&mut out, SEGMENT_ID, 4, 4),
        Err(EncodeError::InvalidLsn { lsn: 4 })
    );
    assert_eq!(out, b"keep", "a refused frame leaves the buffer as it was");

    let big = vec![7u8; RECORD_BYTES_MAX + 1];
    assert!(matches!(
        enc.encode(&mut out, SEGMENT_ID, 1, 0, [&big[..]]),
        Err(EncodeError::RecordTooLarge { .. })
    ));
    let half = vec![7u8; FRAME_PAYLOAD_BYTES_MAX / 2];
    assert!(matches!(
        enc.encode(&mut out, SEGMENT_ID, 1, 0, [&half[..], &half[..]]),
        Err(EncodeError::FrameTooLarge { .. })
    ));
    assert_eq!(out, b"keep");
}

#[test]
fn a_builder_refuses_a_buffer_that_changed_under_it() {
    let mut out = Vec::new();
    let mut builder = FrameBuilder::begin(&mut out, SEGMENT_ID, 1).unwrap();
    builder.push(&mut out, b"one").unwrap();
    out.push(0);
    assert!(matches!(
        builder.push(&mut out, b"two"),
        Err(EncodeError::BufferMismatch { .. })
    ));
    let len = out.len();
    let mut enc = FrameEncoder::new(Compression::NONE);
    assert!(matches!(
        enc.finish(builder, &mut out, 0),
        Err(EncodeError::BufferMismatch { .. })
    ));
    assert_eq!(out.len(), len, "a mismatched buffer is not touched");
}

#[test]
fn a_full_frame_stays_valid_after_a_refused_push() {
    let mut out = Vec::new();
    let mut builder = FrameBuilder::begin(&mut out, SEGMENT_ID, 7).unwrap();
    let half = vec![1u8; FRAME_PAYLOAD_BYTES_MAX / 2];
    assert_eq!(builder.push(&mut out, &half).unwrap(), 7);
    assert!(matches!(
        builder.push(&mut out, &half),
        Err(EncodeError::FrameTooLarge { .. })
    ));
    assert_eq!(builder.next_lsn(), 8);
    FrameEncoder::new(Compression::NONE)
        .finish(builder, &mut out, 6)
        .unwrap();
    let frame = decode(out).unwrap();
    assert_eq!(frame.records().next().unwrap().data.len(), half.len());
}

/// Version 4's time flag: the payload starts with the commit's time, which
/// the frame reports; the flag on a seal, or a payload too short for the
/// time and the records' prefixes, is refused.
#[test]
fn the_time_flag_is_read_and_checked() {
    let time: u64 = 1_764_900_000_123_456;
    let mut p = time.to_le_bytes().to_vec();
    p.extend_from_slice(&two_records());
    let timed = Forge {
        flags: 1,
        ..Forge::records(p.len() as u32, 2, 7)
    };
    let frame = decode(timed.bytes(&p)).unwrap();
    assert_eq!(frame.timestamp_us(), Some(time));
    let records: Vec<Vec<u8>> = frame.records().map(|r| r.data.to_vec()).collect();
    assert_eq!(records, [b"abc".to_vec(), b"defg".to_vec()]);
    assert_eq!(
        frame.payload().len(),
        two_records().len(),
        "the payload is the records'"
    );
    // Without the flag the same payload is records only: the time's bytes
    // do not parse as records.
    assert!(decode(Forge { flags: 0, ..timed }.bytes(&p)).is_err());
    // A payload with room for the prefixes but not the time.
    let short = two_records();
    assert!(
        decode(
            Forge {
                flags: 1,
                ..Forge::records(short.len() as u32, 2, 7)
            }
            .bytes(&short)
        )
        .is_err()
    );
    // A frame without the flag reports no time.
    let plain = decode(forge().bytes(&two_records())).unwrap();
    assert_eq!(plain.timestamp_us(), None);
}
