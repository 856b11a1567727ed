//! The bytes on disk of the write-ahead log: segment headers, frames,
//! records, CRC32C (Castagnoli) and per-frame LZ4/Snappy compression.
//!
//! This crate does no I/O and has no `unsafe`. Encoders write into a
//! caller's reusable buffer (a `Vec<u8>`, or the caller's own type through
//! [`FrameBuf`]); decoders take [`bytes::Bytes`], hand records out
//! without copying when a frame is not compressed, treat every byte as
//! hostile (no panic, no unchecked indexing, no allocation driven by an
//! unchecked length) and return a typed [`DecodeError`] with the offset.
//! `docs/FORMAT.md` in the repository describes every byte.
//!
//! A segment file is a [`SegmentHeader`] followed by frames. A frame holds
//! one or more records with consecutive LSNs and is the unit of atomicity:
//! after a crash it is either valid as a whole or rejected. Its CRC32C binds
//! its length, type, codec, LSNs, record count and the identity of the
//! segment it was written to, so bytes of a recycled file or a misdirected
//! write cannot pass as current records.
//!
//! ```
//! use bytes::Bytes;
//! use wal_format::{Codec, Compression, FrameBuilder, FrameEncoder, FrameExpect, decode_frame};
//!
//! let segment_id = 0x5eed;
//! let mut buf = Vec::new();
//! let mut encoder = FrameEncoder::new(Compression { codec: Codec::Lz4, min_bytes: 64 });
//!
//! // Records can be pushed one by one into a frame under construction...
//! let mut frame = FrameBuilder::begin(&mut buf, segment_id, 1)?;
//! assert_eq!(frame.push(&mut buf, b"first")?, 1);
//! assert_eq!(frame.push(&mut buf, &[b'x'; 100])?, 2);
//! let summary = encoder.finish(frame, &mut buf, 0)?;
//! assert_eq!(summary.codec, Codec::Lz4); // 100 repeated bytes compress
//!
//! // ...and decoded from shared bytes.
//! let bytes = Bytes::from(buf);
//! let frame = decode_frame(&bytes, 0, FrameExpect { segment_id, first_lsn: Some(1) })?;
//! let records: Vec<_> = frame.records().collect();
//! assert_eq!(&records[0].data[..], b"first");
//! assert_eq!(records[1].lsn, 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

mod clean;
mod codec;
mod error;
mod frame;
mod le;
mod scan;
mod segment;

pub use clean::{CLEAN_CLOSE_MAGIC, CleanClose};
pub use codec::{Codec, Compression};
pub use error::{DecodeError, EncodeError, Structure};
pub use frame::{
    COMPRESSION_RATIO_MAX, FRAME_ALIGN, FRAME_FLAG_TIMESTAMP, FRAME_HEADER_LEN,
    FRAME_PAYLOAD_BYTES_MAX, FRAME_SEGMENT_ID_OFFSET, Frame, FrameBuf, FrameBuilder, FrameEncoder,
    FrameExpect, FrameHeader, FrameKind, FrameSummary, IntoRecords, RECORD_BYTES_MAX,
    RECORD_PREFIX_LEN, Record, RecordSlices, Records, TIMESTAMP_LEN, decode_frame, encode_seal,
    peek_frame_segment_id,
};
pub use scan::{LaterFrame, ScanPoint, ScanSummary, SegmentEnd, SegmentScanner};
pub use segment::{
    FLAG_PADDED, FLAG_RECYCLED, FORMAT_VERSION_READ_MIN, PADDED_BLOCK_BYTES, SegmentHeader,
};

/// The eight bytes every segment file starts with. The high first byte and the
/// CR LF, SUB, LF sequence catch files mangled by text-mode transfers, as PNG's do.
pub const SEGMENT_MAGIC: [u8; 8] = *b"\x89WAL\r\n\x1a\n";

/// The format version this crate writes; it reads every version from
/// [`FORMAT_VERSION_READ_MIN`] up to this one.
///
/// Version 2 added the [`FLAG_RECYCLED`] segment-header flag and the rule
/// that every write into a recycled segment ends with a zeroed frame header
/// ([`TERMINATOR_LEN`] bytes). Version 3 added the [`FLAG_PADDED`] flag:
/// a segment written in whole blocks, for O_DIRECT, where a zeroed frame
/// header is padding up to the next block boundary. Version 4 added the
/// [`FRAME_FLAG_TIMESTAMP`] frame flag: a records frame's payload may start
/// with the commit's wall-clock time.
pub const FORMAT_VERSION: u16 = 4;

/// Bytes of zeros a writer puts right after the last frame of every write
/// into a recycled segment (and after a recycled segment's header): a zeroed
/// frame header that the next write overwrites. In a recycled file it is what
/// tells a clean end from a torn one, since the bytes past the end are stale
/// rather than zero.
pub const TERMINATOR_LEN: usize = FRAME_HEADER_LEN;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checksum_is_crc32c_castagnoli() {
        // The standard check value of CRC-32C (iSCSI) over "123456789".
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn type_bytes_round_trip_and_unknown_ones_are_refused() {
        for codec in Codec::ALL {
            assert_eq!(Codec::from_byte(codec.to_byte()), Some(codec));
        }
        for kind in [FrameKind::Records, FrameKind::Seal] {
            assert_eq!(FrameKind::from_byte(kind.to_byte()), Some(kind));
        }
        assert_eq!(Codec::from_byte(3), None);
        assert_eq!(FrameKind::from_byte(0), None);
        assert_eq!(FrameKind::from_byte(3), None);
    }

    #[test]
    fn compression_is_skipped_below_the_threshold_and_when_it_does_not_pay() {
        let policy = Compression::with(Codec::Lz4);
        let mut enc = FrameEncoder::new(policy);
        let small = [b'a'; 100];
        let mut out = Vec::new();
        assert_eq!(
            enc.encode(&mut out, 1, 1, 0, [&small[..]]).unwrap().codec,
            Codec::None
        );
        let big = vec![b'a'; Compression::MIN_BYTES_DEFAULT];
        assert_eq!(
            enc.encode(&mut out, 1, 2, 0, [&big[..]]).unwrap().codec,
            Codec::Lz4
        );
        // Bytes that do not compress are stored plain even above the threshold.
        let mut state = 1u32;
        let noise: Vec<u8> = (0..8192)
            .map(|_| {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                state.to_le_bytes()[2]
            })
            .collect();
        for codec in [Codec::Lz4, Codec::Snappy] {
            let mut enc = FrameEncoder::new(Compression {
                codec,
                min_bytes: 0,
            });
            assert_eq!(
                enc.encode(&mut out, 1, 3, 0, [&noise[..]]).unwrap().codec,
                Codec::None
            );
        }
    }
}
