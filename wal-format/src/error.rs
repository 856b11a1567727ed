//! Typed errors for encoding and decoding.

use crate::Codec;

/// Which on-disk structure a [`DecodeError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Structure {
    /// The fixed-size header at the start of every segment file.
    SegmentHeader,
    /// The fixed-size header in front of every frame.
    FrameHeader,
    /// The (possibly compressed) bytes that follow a frame header.
    FramePayload,
    /// One length-prefixed record inside a frame's payload.
    Record,
    /// The record a cleanly closed log leaves beside its segments.
    CleanClose,
}

impl std::fmt::Display for Structure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Structure::SegmentHeader => "segment header",
            Structure::FrameHeader => "frame header",
            Structure::FramePayload => "frame payload",
            Structure::Record => "record",
            Structure::CleanClose => "clean-close record",
        })
    }
}

/// Why bytes read from disk were rejected.
///
/// Every variant carries the byte offset, within the buffer handed to the
/// decoder (for a segment: within the segment file), of the structure that
/// was rejected, so a report can name the exact place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The bytes end before the structure does: the classic torn tail.
    #[error("incomplete {what} at offset {offset}: needs {needed} bytes, {available} remain")]
    Incomplete {
        /// Where the structure starts.
        offset: u64,
        /// What was being decoded.
        what: Structure,
        /// Bytes the structure needs from `offset`.
        needed: u64,
        /// Bytes that remain from `offset`.
        available: u64,
    },
    /// A frame header made only of zero bytes: preallocated or never written space.
    #[error("zero-filled frame header at offset {offset}")]
    Zeroed {
        /// Where the zero-filled header starts.
        offset: u64,
    },
    /// The segment does not start with the segment magic.
    #[error("bad magic at offset {offset}: found {found:02x?}")]
    BadMagic {
        /// Where the magic was expected.
        offset: u64,
        /// The eight bytes found there.
        found: [u8; 8],
    },
    /// The segment was written by a format version this reader does not know.
    #[error("unknown format version {version} at offset {offset} (this reader knows versions {oldest} to {newest})", oldest = crate::FORMAT_VERSION_READ_MIN, newest = crate::FORMAT_VERSION)]
    UnknownVersion {
        /// Where the segment header starts.
        offset: u64,
        /// The version found.
        version: u16,
    },
    /// The stored CRC32C does not match the bytes it covers.
    #[error(
        "checksum mismatch in {what} at offset {offset}: stored {stored:#010x}, computed {computed:#010x}"
    )]
    ChecksumMismatch {
        /// Where the structure starts.
        offset: u64,
        /// What was being decoded.
        what: Structure,
        /// The checksum found on disk.
        stored: u32,
        /// The checksum of the bytes as read.
        computed: u32,
    },
    /// A frame with a valid checksum that belongs to another segment (a
    /// recycled file's old contents, or a misdirected write).
    #[error(
        "stale frame at offset {offset}: segment identity {found:#018x}, expected {expected:#018x}"
    )]
    StaleIdentity {
        /// Where the frame starts.
        offset: u64,
        /// The identity stored in the frame.
        found: u64,
        /// The identity of the segment being read.
        expected: u64,
    },
    /// A frame with a valid checksum whose first LSN does not continue the log.
    #[error("LSN gap at offset {offset}: frame starts at LSN {found}, expected {expected}")]
    LsnMismatch {
        /// Where the frame starts.
        offset: u64,
        /// The first LSN stored in the frame.
        found: u64,
        /// The LSN that the previous frame (or the segment header) says comes next.
        expected: u64,
    },
    /// A length or count field is out of range or disagrees with another.
    #[error("bad length in {what} at offset {offset}: {field} = {value} ({reason})")]
    BadLength {
        /// Where the structure starts.
        offset: u64,
        /// What was being decoded.
        what: Structure,
        /// The field at fault.
        field: &'static str,
        /// Its value.
        value: u64,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// A frame type this reader does not know.
    #[error("unknown frame type {kind} at offset {offset}")]
    UnknownKind {
        /// Where the frame starts.
        offset: u64,
        /// The type byte found.
        kind: u8,
    },
    /// A compression codec this reader does not know.
    #[error("unknown codec {codec} at offset {offset}")]
    UnknownCodec {
        /// Where the frame starts.
        offset: u64,
        /// The codec byte found.
        codec: u8,
    },
    /// A field that must be zero in this version is not.
    #[error("reserved field {field} at offset {offset} is {value:#x}, must be zero")]
    ReservedNonZero {
        /// Where the structure starts.
        offset: u64,
        /// The field at fault.
        field: &'static str,
        /// Its value.
        value: u64,
    },
    /// A frame's payload passed its checksum but does not decompress to the
    /// length its header states.
    #[error("{codec:?} payload at offset {offset} does not decompress: {reason}")]
    Decompress {
        /// Where the frame starts.
        offset: u64,
        /// The codec named by the frame header.
        codec: Codec,
        /// What the decompressor reported.
        reason: String,
    },
}

impl DecodeError {
    /// The byte offset of the rejected structure.
    pub fn offset(&self) -> u64 {
        match self {
            DecodeError::Incomplete { offset, .. }
            | DecodeError::Zeroed { offset }
            | DecodeError::BadMagic { offset, .. }
            | DecodeError::UnknownVersion { offset, .. }
            | DecodeError::ChecksumMismatch { offset, .. }
            | DecodeError::StaleIdentity { offset, .. }
            | DecodeError::LsnMismatch { offset, .. }
            | DecodeError::BadLength { offset, .. }
            | DecodeError::UnknownKind { offset, .. }
            | DecodeError::UnknownCodec { offset, .. }
            | DecodeError::ReservedNonZero { offset, .. }
            | DecodeError::Decompress { offset, .. } => *offset,
        }
    }

    /// The same error with its offset moved on by `by`: what a decoder
    /// handed the part of a segment that starts at `by` reports about the
    /// whole segment.
    #[must_use]
    pub fn shifted(mut self, by: u64) -> Self {
        match &mut self {
            DecodeError::Incomplete { offset, .. }
            | DecodeError::Zeroed { offset }
            | DecodeError::BadMagic { offset, .. }
            | DecodeError::UnknownVersion { offset, .. }
            | DecodeError::ChecksumMismatch { offset, .. }
            | DecodeError::StaleIdentity { offset, .. }
            | DecodeError::LsnMismatch { offset, .. }
            | DecodeError::BadLength { offset, .. }
            | DecodeError::UnknownKind { offset, .. }
            | DecodeError::UnknownCodec { offset, .. }
            | DecodeError::ReservedNonZero { offset, .. }
            | DecodeError::Decompress { offset, .. } => *offset = offset.saturating_add(by),
        }
        self
    }
}

/// Why a frame could not be encoded. Encoding never writes a frame that the
/// decoder would reject: every limit the decoder enforces is checked here first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A record longer than [`RECORD_BYTES_MAX`](crate::RECORD_BYTES_MAX).
    #[error("record of {len} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge {
        /// The record's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The frame's payload would exceed [`FRAME_PAYLOAD_BYTES_MAX`](crate::FRAME_PAYLOAD_BYTES_MAX).
    #[error("frame payload of {len} bytes would exceed the limit of {max} bytes")]
    FrameTooLarge {
        /// The payload length the frame would reach.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A records frame needs at least one record.
    #[error("a records frame needs at least one record")]
    EmptyFrame,
    /// LSN 0 is not a valid LSN, and LSNs must not overflow `u64`.
    #[error("invalid LSN {lsn}: LSNs start at 1 and must not overflow")]
    InvalidLsn {
        /// The offending LSN.
        lsn: u64,
    },
    /// Identity 0 is reserved: zero-filled space must never match a segment.
    #[error("segment and log identities must be non-zero")]
    ZeroIdentity,
    /// The output buffer changed between the calls of a [`FrameBuilder`](crate::FrameBuilder).
    #[error("the output buffer was {found} bytes long, the frame builder expected {expected}")]
    BufferMismatch {
        /// Length the builder left the buffer at.
        expected: usize,
        /// Length found.
        found: usize,
    },
    /// A time set on a frame begun without one
    /// ([`FrameBuilder::begin_timestamped`](crate::FrameBuilder::begin_timestamped) reserves it).
    #[error("the frame was begun without a time")]
    NotTimestamped,
}
