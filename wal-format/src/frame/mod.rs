//! Frames: the unit of atomicity on disk. A frame holds one or more records
//! written together; after a crash a frame is either entirely valid or rejected.
//!
//! Here: the header's layout and the types both sides share; `encode.rs`
//! writes frames, `decode.rs` checks and reads them.

mod decode;
mod encode;

pub use decode::{
    Frame, FrameExpect, IntoRecords, Record, RecordSlices, Records, decode_frame,
    peek_frame_segment_id,
};
pub use encode::{FrameBuf, FrameBuilder, FrameEncoder, encode_seal};

use crate::codec::Codec;

/// Length in bytes of a frame header.
pub const FRAME_HEADER_LEN: usize = 48;
/// Frames start at offsets that are multiples of this, counted from the start
/// of the segment; the bytes between a payload's end and the next frame are zero.
pub const FRAME_ALIGN: usize = 8;
/// Upper bound on a frame's payload, stored or decompressed. It bounds what a
/// decoder allocates for a frame, whatever its header claims.
pub const FRAME_PAYLOAD_BYTES_MAX: usize = 64 << 20;
/// Bytes in front of every record: its length, `u32` little-endian.
pub const RECORD_PREFIX_LEN: usize = 4;
/// Upper bound on one record's length: it must fit in one frame.
pub const RECORD_BYTES_MAX: usize = FRAME_PAYLOAD_BYTES_MAX - RECORD_PREFIX_LEN;
/// A decompressed payload is never more than this many times its stored
/// length (LZ4 cannot expand more than 255:1, Snappy less), so a header that
/// claims more is rejected before anything is allocated.
pub const COMPRESSION_RATIO_MAX: usize = 255;
/// Frame header flag (bit 0 of `flags`, format version 4 on): the payload
/// starts with the commit's wall-clock time, a `u64` little-endian count of
/// microseconds since the Unix epoch, before the first record. Only records
/// frames carry it.
pub const FRAME_FLAG_TIMESTAMP: u16 = 1;
/// Bytes of that time at the start of the payload.
pub const TIMESTAMP_LEN: usize = 8;

/// Offset of the segment-identity field (`segment_id`, a `u64`
/// little-endian) within a frame header (docs/FORMAT.md, "Frames"). A
/// scanner looking for frames in bytes it cannot otherwise trust can compare
/// this one field before it pays for a full decode: an identity is never
/// zero, so zeros and most foreign bytes fail at once.
pub const FRAME_SEGMENT_ID_OFFSET: usize = 24;

const OFF_CRC: usize = 0;
const OFF_STORED_LEN: usize = 4;
const OFF_KIND: usize = 8;
const OFF_CODEC: usize = 9;
const OFF_FLAGS: usize = 10;
const OFF_RECORD_COUNT: usize = 12;
const OFF_FIRST_LSN: usize = 16;
pub(crate) const OFF_SEGMENT_ID: usize = FRAME_SEGMENT_ID_OFFSET;
const OFF_DURABLE_LSN: usize = 32;
const OFF_RAW_LEN: usize = 40;
const OFF_RESERVED: usize = 44;

/// What a frame holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FrameKind {
    /// One or more records with consecutive LSNs from the frame's first LSN.
    Records,
    /// The end of a segment: no record follows in this file, and the log
    /// continues in the segment whose first LSN is this frame's first LSN.
    /// Carries no payload.
    Seal,
}

impl FrameKind {
    /// The byte that names this kind in a frame header.
    pub const fn to_byte(self) -> u8 {
        match self {
            FrameKind::Records => 1,
            FrameKind::Seal => 2,
        }
    }

    /// The kind named by a frame header byte, if this version knows it.
    pub const fn from_byte(byte: u8) -> Option<FrameKind> {
        match byte {
            1 => Some(FrameKind::Records),
            2 => Some(FrameKind::Seal),
            _ => None,
        }
    }
}

/// A validated frame header, as decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FrameHeader {
    /// CRC32C over header bytes 4..48 followed by the stored payload.
    pub crc: u32,
    /// Payload bytes as stored (compressed, if `codec` is not `None`).
    pub stored_len: u32,
    /// What the frame holds.
    pub kind: FrameKind,
    /// How the payload is stored.
    pub codec: Codec,
    /// Number of records; zero only for a seal.
    pub record_count: u32,
    /// LSN of the first record (for a seal: the LSN that comes next).
    pub first_lsn: u64,
    /// Identity of the segment the frame was written to.
    pub segment_id: u64,
    /// The writer's durable watermark when it encoded this frame: every LSN
    /// up to and including it was already durable. Always below `first_lsn`.
    pub durable_lsn: u64,
    /// Payload bytes after decompression.
    pub raw_len: u32,
}

impl FrameHeader {
    /// The LSN after this frame's last record.
    pub fn next_lsn(&self) -> u64 {
        // Validated at decode time: cannot overflow.
        self.first_lsn.saturating_add(u64::from(self.record_count))
    }
}

/// Rounds a frame's end up to where the next frame starts.
pub(crate) const fn align_up(n: usize) -> usize {
    n.div_ceil(FRAME_ALIGN) * FRAME_ALIGN
}

/// Summary of one encoded frame, returned by the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FrameSummary {
    /// Where the frame starts in the output buffer.
    pub offset: usize,
    /// Bytes the frame occupies, padding included.
    pub encoded_len: usize,
    /// What the frame holds.
    pub kind: FrameKind,
    /// The codec actually used (`None` when compression did not pay).
    pub codec: Codec,
    /// LSN of the first record.
    pub first_lsn: u64,
    /// Number of records.
    pub record_count: u32,
    /// Payload length before compression.
    pub raw_len: usize,
    /// Payload length as stored.
    pub stored_len: usize,
}

impl FrameSummary {
    /// The LSN after this frame's last record.
    pub fn next_lsn(&self) -> u64 {
        self.first_lsn + u64::from(self.record_count)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::codec::Compression;

    /// The identity field a scanner peeks at is the one an encoded frame
    /// carries and a decoded frame reports, wherever the frame starts, and
    /// a buffer too short for the field yields nothing.
    #[test]
    fn the_peeked_segment_id_is_the_encoded_frames_identity() {
        let segment_id = 0x0123_4567_89ab_cdef;
        // After a segment header's worth of bytes, as in a segment.
        let mut out = vec![0u8; 64];
        let mut encoder = FrameEncoder::new(Compression::NONE);
        let first = encoder
            .encode(&mut out, segment_id, 7, 6, [&b"peek"[..], b"me"])
            .unwrap();
        let second = encode_seal(&mut out, segment_id, 9, 8).unwrap();
        let data = Bytes::from(out);
        for at in [first.offset, second.offset] {
            let expect = FrameExpect {
                segment_id,
                first_lsn: None,
            };
            let frame = decode_frame(&data, at, expect).unwrap();
            assert_eq!(frame.header().segment_id, segment_id);
            assert_eq!(peek_frame_segment_id(&data, at), Some(segment_id));
        }
        let short = &data[..second.offset + FRAME_SEGMENT_ID_OFFSET + 7];
        assert_eq!(peek_frame_segment_id(short, second.offset), None);
        assert_eq!(peek_frame_segment_id(&data, usize::MAX), None);
    }
}
