//! Frames: the unit of atomicity on disk. A frame holds one or more records
//! written together; after a crash a frame is either entirely valid or rejected.

use bytes::Bytes;

use crate::codec::{self, Codec, Compression};
use crate::error::{DecodeError, EncodeError, Structure};
use crate::le::{u8_at, u16_at, u32_at, u64_at, wide};

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

/// A buffer that frames are encoded into: what [`FrameBuilder`],
/// [`FrameEncoder`] and [`encode_seal`] need of it. `Vec<u8>` is one; a
/// writer implements it for its own buffer type so records are encoded once,
/// straight where they will be written from (for example memory aligned for
/// O_DIRECT), instead of being copied there afterwards.
///
/// An implementation behaves like `Vec<u8>`: every method either does what
/// it says or panics (on allocation failure, as `Vec` does); growing it
/// never loses bytes already in it.
///
/// ```
/// use wal_format::{Compression, FrameBuf, FrameEncoder};
///
/// /// A writer's own buffer type (here a plain wrapper).
/// struct Staging(Vec<u8>);
///
/// impl FrameBuf for Staging {
///     fn len(&self) -> usize { self.0.len() }
///     fn as_bytes(&self) -> &[u8] { &self.0 }
///     fn as_bytes_mut(&mut self) -> &mut [u8] { &mut self.0 }
///     fn extend_from_slice(&mut self, bytes: &[u8]) { self.0.extend_from_slice(bytes) }
///     fn resize(&mut self, len: usize, fill: u8) { self.0.resize(len, fill) }
///     fn truncate(&mut self, len: usize) { self.0.truncate(len) }
/// }
///
/// let mut encoder = FrameEncoder::new(Compression::NONE);
/// let (mut staging, mut plain) = (Staging(Vec::new()), Vec::new());
/// encoder.encode(&mut staging, 0x5eed, 1, 0, [&b"record"[..]])?;
/// encoder.encode(&mut plain, 0x5eed, 1, 0, [&b"record"[..]])?;
/// assert_eq!(staging.0, plain); // the same bytes, wherever they are encoded
/// # Ok::<(), wal_format::EncodeError>(())
/// ```
pub trait FrameBuf {
    /// Bytes in the buffer.
    fn len(&self) -> usize;
    /// The bytes in the buffer.
    fn as_bytes(&self) -> &[u8];
    /// The bytes in the buffer, mutably.
    fn as_bytes_mut(&mut self) -> &mut [u8];
    /// Appends `bytes`, growing the buffer as needed.
    fn extend_from_slice(&mut self, bytes: &[u8]);
    /// Sets the length to `len`, filling new bytes with `fill`.
    fn resize(&mut self, len: usize, fill: u8);
    /// Shortens the buffer to `len` bytes (no effect if it is shorter).
    fn truncate(&mut self, len: usize);

    /// Whether the buffer holds no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl FrameBuf for Vec<u8> {
    #[inline]
    fn len(&self) -> usize {
        Vec::len(self)
    }
    #[inline]
    fn as_bytes(&self) -> &[u8] {
        self
    }
    #[inline]
    fn as_bytes_mut(&mut self) -> &mut [u8] {
        self
    }
    #[inline]
    fn extend_from_slice(&mut self, bytes: &[u8]) {
        Vec::extend_from_slice(self, bytes);
    }
    #[inline]
    fn resize(&mut self, len: usize, fill: u8) {
        Vec::resize(self, len, fill);
    }
    #[inline]
    fn truncate(&mut self, len: usize) {
        Vec::truncate(self, len);
    }
}

/// Builds one records frame in place at the end of a caller's buffer, one
/// record at a time, so a writer can append records as they arrive without
/// an allocation per record. Finish it with [`FrameEncoder::finish`].
///
/// The builder does not borrow the buffer between calls (a group-commit
/// writer keeps it beside the buffer under a lock); instead every call checks
/// that the buffer is exactly as the builder left it.
#[derive(Debug)]
#[must_use = "a frame builder must be finished or abandoned"]
pub struct FrameBuilder {
    start: usize,
    len_expected: usize,
    segment_id: u64,
    first_lsn: u64,
    record_count: u32,
    /// The payload starts with a time ([`FRAME_FLAG_TIMESTAMP`]).
    timestamped: bool,
}

impl FrameBuilder {
    /// Starts a frame at the end of `out` for segment `segment_id`, whose first
    /// record will get `first_lsn`. `out.len()` must be a multiple of
    /// [`FRAME_ALIGN`] when `out` is laid out as a segment, so that decoders
    /// find the frame.
    ///
    /// # Errors
    /// [`EncodeError::ZeroIdentity`] or [`EncodeError::InvalidLsn`].
    pub fn begin<B: FrameBuf + ?Sized>(
        out: &mut B,
        segment_id: u64,
        first_lsn: u64,
    ) -> Result<Self, EncodeError> {
        if segment_id == 0 {
            return Err(EncodeError::ZeroIdentity);
        }
        if first_lsn == 0 {
            return Err(EncodeError::InvalidLsn { lsn: first_lsn });
        }
        let start = out.len();
        out.resize(start + FRAME_HEADER_LEN, 0);
        Ok(FrameBuilder {
            start,
            len_expected: out.len(),
            segment_id,
            first_lsn,
            record_count: 0,
            timestamped: false,
        })
    }

    /// As [`FrameBuilder::begin`], for a frame that carries the commit's
    /// wall-clock time (microseconds since the Unix epoch) before its
    /// records; [`FrameBuilder::set_time`] changes it until the frame is
    /// finished.
    ///
    /// # Errors
    /// As [`FrameBuilder::begin`].
    pub fn begin_timestamped<B: FrameBuf + ?Sized>(
        out: &mut B,
        segment_id: u64,
        first_lsn: u64,
        time_us: u64,
    ) -> Result<Self, EncodeError> {
        let mut b = FrameBuilder::begin(out, segment_id, first_lsn)?;
        out.extend_from_slice(&time_us.to_le_bytes());
        b.len_expected = out.len();
        b.timestamped = true;
        Ok(b)
    }

    /// Sets the time a timestamped frame carries (the writer's clock when
    /// it writes the frame, rather than when the first record came).
    ///
    /// # Errors
    /// [`EncodeError::BufferMismatch`]; [`EncodeError::NotTimestamped`] for
    /// a frame begun without a time.
    pub fn set_time<B: FrameBuf + ?Sized>(
        &mut self,
        out: &mut B,
        time_us: u64,
    ) -> Result<(), EncodeError> {
        self.check(out.as_bytes())?;
        if !self.timestamped {
            return Err(EncodeError::NotTimestamped);
        }
        let at = self.start + FRAME_HEADER_LEN;
        out.as_bytes_mut()[at..at + TIMESTAMP_LEN].copy_from_slice(&time_us.to_le_bytes());
        Ok(())
    }

    /// Whether the frame carries a time.
    pub fn is_timestamped(&self) -> bool {
        self.timestamped
    }

    fn check(&self, out: &[u8]) -> Result<(), EncodeError> {
        if out.len() == self.len_expected {
            Ok(())
        } else {
            Err(EncodeError::BufferMismatch {
                expected: self.len_expected,
                found: out.len(),
            })
        }
    }

    /// Appends one record and returns the LSN it will have.
    ///
    /// # Errors
    /// [`EncodeError::RecordTooLarge`], [`EncodeError::FrameTooLarge`] (the
    /// frame is unchanged: finish it and start another), [`EncodeError::InvalidLsn`]
    /// when LSNs would overflow, [`EncodeError::BufferMismatch`].
    pub fn push<B: FrameBuf + ?Sized>(
        &mut self,
        out: &mut B,
        record: &[u8],
    ) -> Result<u64, EncodeError> {
        self.check(out.as_bytes())?;
        if record.len() > RECORD_BYTES_MAX {
            return Err(EncodeError::RecordTooLarge {
                len: record.len(),
                max: RECORD_BYTES_MAX,
            });
        }
        let raw_len = self.raw_len() + RECORD_PREFIX_LEN + record.len();
        if raw_len > FRAME_PAYLOAD_BYTES_MAX {
            return Err(EncodeError::FrameTooLarge {
                len: raw_len,
                max: FRAME_PAYLOAD_BYTES_MAX,
            });
        }
        let lsn = self
            .first_lsn
            .checked_add(u64::from(self.record_count))
            .filter(|lsn| *lsn < u64::MAX)
            .ok_or(EncodeError::InvalidLsn {
                lsn: self.first_lsn,
            })?;
        // The payload limit keeps the count far below u32::MAX.
        let len = u32::try_from(record.len()).map_err(|_| EncodeError::RecordTooLarge {
            len: record.len(),
            max: RECORD_BYTES_MAX,
        })?;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(record);
        self.record_count += 1;
        self.len_expected = out.len();
        Ok(lsn)
    }

    /// Records pushed so far.
    pub fn record_count(&self) -> u32 {
        self.record_count
    }

    /// LSN of the first record.
    pub fn first_lsn(&self) -> u64 {
        self.first_lsn
    }

    /// LSN the next pushed record would get.
    pub fn next_lsn(&self) -> u64 {
        self.first_lsn + u64::from(self.record_count)
    }

    /// The identity of the segment the frame will be written to.
    pub fn segment_id(&self) -> u64 {
        self.segment_id
    }

    /// Changes the segment the frame will be written to. A group-commit
    /// writer collects records before it knows which segment their write will
    /// land in (it rotates segments when it writes); the identity is bound into
    /// the CRC only when the frame is finished.
    ///
    /// # Errors
    /// [`EncodeError::ZeroIdentity`].
    pub fn set_segment_id(&mut self, segment_id: u64) -> Result<(), EncodeError> {
        if segment_id == 0 {
            return Err(EncodeError::ZeroIdentity);
        }
        self.segment_id = segment_id;
        Ok(())
    }

    /// Raw payload bytes so far (the time, if any, and length prefixes
    /// included).
    pub fn raw_len(&self) -> usize {
        self.len_expected - self.start - FRAME_HEADER_LEN
    }

    /// Removes the unfinished frame from `out`, leaving it as before [`FrameBuilder::begin`].
    pub fn abandon<B: FrameBuf + ?Sized>(self, out: &mut B) {
        out.truncate(self.start);
    }
}

/// Finishes frames: compresses (by policy), pads, writes the header and the
/// CRC. Holds the scratch buffer compression needs, so reusing one encoder
/// allocates nothing in the steady state.
#[derive(Debug, Default)]
pub struct FrameEncoder {
    compression: Compression,
    scratch: Vec<u8>,
}

impl FrameEncoder {
    /// An encoder that compresses by `compression`.
    pub fn new(compression: Compression) -> Self {
        FrameEncoder {
            compression,
            scratch: Vec::new(),
        }
    }

    /// The compression policy in force.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Encodes `records` as one frame at the end of `out`.
    ///
    /// `durable_lsn` is the writer's durable watermark (0 if nothing is
    /// durable yet); it must be below `first_lsn`. On error `out` is left as it was.
    ///
    /// # Errors
    /// Any [`EncodeError`]; [`EncodeError::EmptyFrame`] for no records.
    pub fn encode<'r, B, I>(
        &mut self,
        out: &mut B,
        segment_id: u64,
        first_lsn: u64,
        durable_lsn: u64,
        records: I,
    ) -> Result<FrameSummary, EncodeError>
    where
        B: FrameBuf + ?Sized,
        I: IntoIterator<Item = &'r [u8]>,
    {
        let builder = FrameBuilder::begin(out, segment_id, first_lsn)?;
        self.fill_and_finish(builder, out, durable_lsn, records)
    }

    /// As [`FrameEncoder::encode`], for a frame carrying the commit's
    /// wall-clock time, `time_us` microseconds since the Unix epoch.
    ///
    /// # Errors
    /// As [`FrameEncoder::encode`].
    pub fn encode_timestamped<'r, B, I>(
        &mut self,
        out: &mut B,
        segment_id: u64,
        first_lsn: u64,
        durable_lsn: u64,
        time_us: u64,
        records: I,
    ) -> Result<FrameSummary, EncodeError>
    where
        B: FrameBuf + ?Sized,
        I: IntoIterator<Item = &'r [u8]>,
    {
        let builder = FrameBuilder::begin_timestamped(out, segment_id, first_lsn, time_us)?;
        self.fill_and_finish(builder, out, durable_lsn, records)
    }

    /// Pushes `records` into `builder`'s frame and finishes it; on error
    /// the frame is removed from `out`.
    fn fill_and_finish<'r, B, I>(
        &mut self,
        mut builder: FrameBuilder,
        out: &mut B,
        durable_lsn: u64,
        records: I,
    ) -> Result<FrameSummary, EncodeError>
    where
        B: FrameBuf + ?Sized,
        I: IntoIterator<Item = &'r [u8]>,
    {
        for record in records {
            if let Err(e) = builder.push(out, record) {
                builder.abandon(out);
                return Err(e);
            }
        }
        self.finish(builder, out, durable_lsn)
    }

    /// Finishes a frame built with `builder` in `out`. On error the partial
    /// frame is removed from `out`.
    ///
    /// # Errors
    /// [`EncodeError::EmptyFrame`], [`EncodeError::InvalidLsn`] when
    /// `durable_lsn` is not below the frame's first LSN,
    /// [`EncodeError::BufferMismatch`].
    pub fn finish<B: FrameBuf + ?Sized>(
        &mut self,
        builder: FrameBuilder,
        out: &mut B,
        durable_lsn: u64,
    ) -> Result<FrameSummary, EncodeError> {
        // If the buffer is not what the builder left, touching it could
        // destroy someone else's bytes: return without truncating.
        builder.check(out.as_bytes())?;
        let checked = if builder.record_count == 0 {
            Err(EncodeError::EmptyFrame)
        } else if durable_lsn >= builder.first_lsn {
            Err(EncodeError::InvalidLsn { lsn: durable_lsn })
        } else {
            Ok(())
        };
        if let Err(e) = checked {
            builder.abandon(out);
            return Err(e);
        }
        let payload_at = builder.start + FRAME_HEADER_LEN;
        let raw_len = builder.raw_len();
        let mut codec = self.compression.codec_for(raw_len);
        if codec != Codec::None {
            if codec::compress(codec, &out.as_bytes()[payload_at..], &mut self.scratch) {
                out.truncate(payload_at);
                out.extend_from_slice(&self.scratch);
            } else {
                codec = Codec::None;
            }
        }
        Ok(seal_header(
            out,
            builder.start,
            HeaderFields {
                kind: FrameKind::Records,
                codec,
                flags: if builder.timestamped {
                    FRAME_FLAG_TIMESTAMP
                } else {
                    0
                },
                record_count: builder.record_count,
                first_lsn: builder.first_lsn,
                segment_id: builder.segment_id,
                durable_lsn,
                raw_len,
            },
        ))
    }
}

/// Appends a seal frame to `out`: segment `segment_id` ends here, and the log
/// continues at `next_lsn`.
///
/// # Errors
/// [`EncodeError::ZeroIdentity`], or [`EncodeError::InvalidLsn`] when
/// `next_lsn` is zero or `durable_lsn` is not below it.
pub fn encode_seal<B: FrameBuf + ?Sized>(
    out: &mut B,
    segment_id: u64,
    next_lsn: u64,
    durable_lsn: u64,
) -> Result<FrameSummary, EncodeError> {
    if segment_id == 0 {
        return Err(EncodeError::ZeroIdentity);
    }
    if next_lsn == 0 || durable_lsn >= next_lsn {
        return Err(EncodeError::InvalidLsn {
            lsn: if next_lsn == 0 { 0 } else { durable_lsn },
        });
    }
    let start = out.len();
    out.resize(start + FRAME_HEADER_LEN, 0);
    Ok(seal_header(
        out,
        start,
        HeaderFields {
            kind: FrameKind::Seal,
            codec: Codec::None,
            flags: 0,
            record_count: 0,
            first_lsn: next_lsn,
            segment_id,
            durable_lsn,
            raw_len: 0,
        },
    ))
}

struct HeaderFields {
    kind: FrameKind,
    codec: Codec,
    flags: u16,
    record_count: u32,
    first_lsn: u64,
    segment_id: u64,
    durable_lsn: u64,
    raw_len: usize,
}

/// Pads the frame that starts at `start` and runs to the end of `out`, then
/// writes its header and CRC.
fn seal_header<B: FrameBuf + ?Sized>(out: &mut B, start: usize, f: HeaderFields) -> FrameSummary {
    let payload_at = start + FRAME_HEADER_LEN;
    let stored_len = out.len() - payload_at;
    debug_assert!(stored_len <= FRAME_PAYLOAD_BYTES_MAX && f.raw_len <= FRAME_PAYLOAD_BYTES_MAX);
    debug_assert!(f.durable_lsn < f.first_lsn);
    // Both lengths are bounded by FRAME_PAYLOAD_BYTES_MAX, far below u32::MAX.
    let stored_u32 = u32::try_from(stored_len).unwrap_or(u32::MAX);
    let raw_u32 = u32::try_from(f.raw_len).unwrap_or(u32::MAX);
    {
        let h = &mut out.as_bytes_mut()[start..payload_at];
        h[OFF_STORED_LEN..OFF_STORED_LEN + 4].copy_from_slice(&stored_u32.to_le_bytes());
        h[OFF_KIND] = f.kind.to_byte();
        h[OFF_CODEC] = f.codec.to_byte();
        h[OFF_FLAGS..OFF_FLAGS + 2].copy_from_slice(&f.flags.to_le_bytes());
        h[OFF_RECORD_COUNT..OFF_RECORD_COUNT + 4].copy_from_slice(&f.record_count.to_le_bytes());
        h[OFF_FIRST_LSN..OFF_FIRST_LSN + 8].copy_from_slice(&f.first_lsn.to_le_bytes());
        h[OFF_SEGMENT_ID..OFF_SEGMENT_ID + 8].copy_from_slice(&f.segment_id.to_le_bytes());
        h[OFF_DURABLE_LSN..OFF_DURABLE_LSN + 8].copy_from_slice(&f.durable_lsn.to_le_bytes());
        h[OFF_RAW_LEN..OFF_RAW_LEN + 4].copy_from_slice(&raw_u32.to_le_bytes());
        h[OFF_RESERVED..OFF_RESERVED + 4].copy_from_slice(&0u32.to_le_bytes());
    }
    let bytes = out.as_bytes();
    let crc = crc32c::crc32c_append(
        crc32c::crc32c(&bytes[start + OFF_STORED_LEN..payload_at]),
        &bytes[payload_at..],
    );
    out.as_bytes_mut()[start + OFF_CRC..start + OFF_CRC + 4].copy_from_slice(&crc.to_le_bytes());
    let end = align_up(out.len() - start) + start;
    out.resize(end, 0);
    FrameSummary {
        offset: start,
        encoded_len: end - start,
        kind: f.kind,
        codec: f.codec,
        first_lsn: f.first_lsn,
        record_count: f.record_count,
        raw_len: f.raw_len,
        stored_len,
    }
}

/// One record handed out by a decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The record's LSN.
    pub lsn: u64,
    /// Its bytes: a slice of the input buffer when the frame is not compressed.
    pub data: Bytes,
}

/// A frame that passed every check; its records can be iterated without
/// further failure.
#[derive(Debug, Clone)]
pub struct Frame {
    header: FrameHeader,
    offset: u64,
    encoded_len: usize,
    /// The decompressed payload's records (after the time, if any).
    payload: Bytes,
    /// The commit's wall-clock time, for a frame that carries one.
    timestamp_us: Option<u64>,
}

impl Frame {
    /// The decoded header.
    pub fn header(&self) -> &FrameHeader {
        &self.header
    }

    /// What the frame holds.
    pub fn kind(&self) -> FrameKind {
        self.header.kind
    }

    /// Where the frame starts in the decoded buffer (in the segment, for a
    /// frame from a [`SegmentScanner`](crate::SegmentScanner)).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Moves the frame's offset on by `by` (a scanner of part of a segment
    /// reports offsets in the segment).
    pub(crate) fn shift(&mut self, by: u64) {
        self.offset = self.offset.saturating_add(by);
    }

    /// Bytes the frame occupies, padding included: the next frame starts
    /// this far after this one, even where the buffer ends inside the padding
    /// (a writer resuming there must keep frames aligned).
    pub fn encoded_len(&self) -> usize {
        self.encoded_len
    }

    /// LSN of the first record (for a seal, the LSN that comes next).
    pub fn first_lsn(&self) -> u64 {
        self.header.first_lsn
    }

    /// The LSN after the last record.
    pub fn next_lsn(&self) -> u64 {
        self.header.next_lsn()
    }

    /// Number of records.
    pub fn record_count(&self) -> u32 {
        self.header.record_count
    }

    /// The decompressed payload's records: length-prefixed, after the
    /// frame's time if it carries one.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// The commit's wall-clock time, microseconds since the Unix epoch, for
    /// a frame that carries one (format version 4 on; a seal carries none).
    /// Informational: monotonic within a log, but only as true as the
    /// writer's clock.
    pub fn timestamp_us(&self) -> Option<u64> {
        self.timestamp_us
    }

    /// The records, in LSN order, each an owned [`Bytes`] that shares the
    /// frame's buffer (no copy). Each one costs a reference-count update;
    /// [`Frame::record_slices`] avoids that when borrowing is enough.
    pub fn records(&self) -> Records<'_> {
        Records {
            payload: &self.payload,
            cursor: Cursor::new(&self.header),
        }
    }

    /// The records, in LSN order, as slices borrowed from the frame: the
    /// cheapest way to replay records that are copied elsewhere anyway.
    pub fn record_slices(&self) -> RecordSlices<'_> {
        RecordSlices {
            payload: &self.payload,
            cursor: Cursor::new(&self.header),
        }
    }
}

/// Position within a validated payload, shared by both record iterators.
#[derive(Debug, Clone)]
struct Cursor {
    pos: usize,
    lsn: u64,
    remaining: u32,
}

impl Cursor {
    fn new(header: &FrameHeader) -> Self {
        Cursor {
            pos: 0,
            lsn: header.first_lsn,
            remaining: header.record_count,
        }
    }

    /// The next record's LSN and byte range in `payload`.
    fn next(&mut self, payload: &[u8]) -> Option<(u64, std::ops::Range<usize>)> {
        #![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
        if self.remaining == 0 {
            return None;
        }
        // The layout was validated when the frame was decoded; the checked
        // reads only guard against a bug, they never fire on valid frames.
        let len = usize::try_from(u32_at(payload, self.pos)?).ok()?;
        let start = self.pos.checked_add(RECORD_PREFIX_LEN)?;
        let end = start.checked_add(len)?;
        if end > payload.len() {
            return None;
        }
        let lsn = self.lsn;
        self.pos = end;
        self.lsn += 1;
        self.remaining -= 1;
        Some((lsn, start..end))
    }

    fn len(&self) -> usize {
        usize::try_from(self.remaining).unwrap_or(usize::MAX)
    }
}

/// Iterator over a frame's records as owned [`Record`]s.
#[derive(Debug, Clone)]
pub struct Records<'a> {
    payload: &'a Bytes,
    cursor: Cursor,
}

impl Iterator for Records<'_> {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        let (lsn, range) = self.cursor.next(self.payload)?;
        Some(Record {
            lsn,
            data: self.payload.slice(range),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.cursor.len(), Some(self.cursor.len()))
    }
}

impl ExactSizeIterator for Records<'_> {}

/// Iterator over the records of a frame it owns: a reader can keep it
/// between calls instead of copying the records out first.
#[derive(Debug, Clone)]
pub struct IntoRecords {
    payload: Bytes,
    cursor: Cursor,
}

impl Iterator for IntoRecords {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        let (lsn, range) = self.cursor.next(&self.payload)?;
        Some(Record {
            lsn,
            data: self.payload.slice(range),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.cursor.len(), Some(self.cursor.len()))
    }
}

impl ExactSizeIterator for IntoRecords {}

impl IntoIterator for Frame {
    type Item = Record;
    type IntoIter = IntoRecords;

    fn into_iter(self) -> IntoRecords {
        IntoRecords {
            cursor: Cursor::new(&self.header),
            payload: self.payload,
        }
    }
}

/// Iterator over a frame's records as `(lsn, bytes)` borrowed from the frame.
#[derive(Debug, Clone)]
pub struct RecordSlices<'a> {
    payload: &'a [u8],
    cursor: Cursor,
}

impl<'a> Iterator for RecordSlices<'a> {
    type Item = (u64, &'a [u8]);

    fn next(&mut self) -> Option<(u64, &'a [u8])> {
        let (lsn, range) = self.cursor.next(self.payload)?;
        Some((lsn, self.payload.get(range)?))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.cursor.len(), Some(self.cursor.len()))
    }
}

impl ExactSizeIterator for RecordSlices<'_> {}

/// What a decoder expects of the frame at an offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameExpect {
    /// The identity of the segment being read.
    pub segment_id: u64,
    /// The LSN the frame must start at, if known.
    pub first_lsn: Option<u64>,
}

/// The segment identity named by the would-be frame header at `pos` in
/// `data`, read from [`FRAME_SEGMENT_ID_OFFSET`] without checking anything
/// else: a cheap filter before [`decode_frame`], never a verdict (a header's
/// bytes are trusted only once its checksum matches). `None` if `data` ends
/// before the field does.
pub fn peek_frame_segment_id(data: &[u8], pos: usize) -> Option<u64> {
    u64_at(data, pos.checked_add(OFF_SEGMENT_ID)?)
}

/// Decodes and fully validates the frame at `offset` in `data` (a segment's
/// bytes, or any buffer laid out the same way).
///
/// Records of an uncompressed frame are slices of `data` (no copy). A
/// compressed payload is decompressed into one new buffer, and only after
/// its checksum, its declared length ([`FRAME_PAYLOAD_BYTES_MAX`]) and its
/// ratio to the stored length ([`COMPRESSION_RATIO_MAX`]) have been checked.
///
/// # Errors
/// The first rule the bytes break, as a [`DecodeError`] with `offset`.
pub fn decode_frame(
    data: &Bytes,
    offset: usize,
    expect: FrameExpect,
) -> Result<Frame, DecodeError> {
    #![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
    let at = wide(offset);
    let rest = data.get(offset..).unwrap_or_default();
    let incomplete = |what: Structure, needed: usize| DecodeError::Incomplete {
        offset: at,
        what,
        needed: wide(needed),
        available: wide(rest.len()),
    };
    let Some(head) = rest.get(..FRAME_HEADER_LEN) else {
        if !rest.is_empty() && rest.iter().all(|&b| b == 0) {
            return Err(DecodeError::Zeroed { offset: at });
        }
        return Err(incomplete(Structure::FrameHeader, FRAME_HEADER_LEN));
    };
    if head.iter().all(|&b| b == 0) {
        return Err(DecodeError::Zeroed { offset: at });
    }
    let field =
        |v: Option<u64>| v.ok_or_else(|| incomplete(Structure::FrameHeader, FRAME_HEADER_LEN));
    let stored_len = field(u32_at(head, OFF_STORED_LEN).map(u64::from))?;
    let bad = |what: Structure, field: &'static str, value: u64, reason: &'static str| {
        DecodeError::BadLength {
            offset: at,
            what,
            field,
            value,
            reason,
        }
    };
    if stored_len > wide(FRAME_PAYLOAD_BYTES_MAX) {
        return Err(bad(
            Structure::FrameHeader,
            "stored_len",
            stored_len,
            "exceeds FRAME_PAYLOAD_BYTES_MAX",
        ));
    }
    // Bounded by FRAME_PAYLOAD_BYTES_MAX just above.
    let stored = usize::try_from(stored_len).unwrap_or(usize::MAX);
    let frame_len = FRAME_HEADER_LEN + stored;
    let Some(stored_bytes) = rest.get(FRAME_HEADER_LEN..frame_len) else {
        return Err(incomplete(Structure::FramePayload, frame_len));
    };
    let computed = crc32c::crc32c_append(
        crc32c::crc32c(head.get(OFF_STORED_LEN..).unwrap_or_default()),
        stored_bytes,
    );
    let crc = field(u32_at(head, OFF_CRC).map(u64::from))?;
    if u64::from(computed) != crc {
        return Err(DecodeError::ChecksumMismatch {
            offset: at,
            what: Structure::FrameHeader,
            stored: u32::try_from(crc).unwrap_or(u32::MAX),
            computed,
        });
    }
    // From here the header is what a writer wrote: remaining failures mean a
    // stale or misplaced frame, a newer writer, or a writer bug.
    let kind_byte = u8_at(head, OFF_KIND).unwrap_or_default();
    let codec_byte = u8_at(head, OFF_CODEC).unwrap_or_default();
    let flags = field(u16_at(head, OFF_FLAGS).map(u64::from))?;
    let record_count = field(u32_at(head, OFF_RECORD_COUNT).map(u64::from))?;
    let first_lsn = field(u64_at(head, OFF_FIRST_LSN))?;
    let segment_id = field(u64_at(head, OFF_SEGMENT_ID))?;
    let durable_lsn = field(u64_at(head, OFF_DURABLE_LSN))?;
    let raw_len = field(u32_at(head, OFF_RAW_LEN).map(u64::from))?;
    let reserved = field(u32_at(head, OFF_RESERVED).map(u64::from))?;
    if segment_id != expect.segment_id {
        return Err(DecodeError::StaleIdentity {
            offset: at,
            found: segment_id,
            expected: expect.segment_id,
        });
    }
    let kind = FrameKind::from_byte(kind_byte).ok_or(DecodeError::UnknownKind {
        offset: at,
        kind: kind_byte,
    })?;
    let codec = Codec::from_byte(codec_byte).ok_or(DecodeError::UnknownCodec {
        offset: at,
        codec: codec_byte,
    })?;
    let timestamped = kind == FrameKind::Records && flags == u64::from(FRAME_FLAG_TIMESTAMP);
    if flags != 0 && !timestamped {
        return Err(DecodeError::ReservedNonZero {
            offset: at,
            field: "flags",
            value: flags,
        });
    }
    let records_at = if timestamped { wide(TIMESTAMP_LEN) } else { 0 };
    if reserved != 0 {
        return Err(DecodeError::ReservedNonZero {
            offset: at,
            field: "reserved",
            value: reserved,
        });
    }
    if let Some(expected) = expect.first_lsn
        && first_lsn != expected
    {
        return Err(DecodeError::LsnMismatch {
            offset: at,
            found: first_lsn,
            expected,
        });
    }
    let hdr = Structure::FrameHeader;
    if first_lsn == 0 {
        return Err(bad(hdr, "first_lsn", 0, "LSNs start at 1"));
    }
    if durable_lsn >= first_lsn {
        return Err(bad(
            hdr,
            "durable_lsn",
            durable_lsn,
            "must be below first_lsn",
        ));
    }
    // The encoder never assigns LSN u64::MAX, so a frame's next LSN is at most u64::MAX.
    if first_lsn.checked_add(record_count).is_none() {
        return Err(bad(
            hdr,
            "record_count",
            record_count,
            "LSNs would overflow",
        ));
    }
    match kind {
        FrameKind::Seal => {
            if record_count != 0 || raw_len != 0 || stored_len != 0 || codec != Codec::None {
                return Err(bad(
                    hdr,
                    "record_count",
                    record_count,
                    "a seal carries nothing",
                ));
            }
        }
        FrameKind::Records => {
            if record_count == 0 {
                return Err(bad(
                    hdr,
                    "record_count",
                    0,
                    "a records frame holds at least one",
                ));
            }
            if codec == Codec::None && raw_len != stored_len {
                return Err(bad(
                    hdr,
                    "raw_len",
                    raw_len,
                    "must equal stored_len when not compressed",
                ));
            }
            if raw_len > wide(FRAME_PAYLOAD_BYTES_MAX) {
                return Err(bad(
                    hdr,
                    "raw_len",
                    raw_len,
                    "exceeds FRAME_PAYLOAD_BYTES_MAX",
                ));
            }
            if raw_len > stored_len.saturating_mul(wide(COMPRESSION_RATIO_MAX)) {
                return Err(bad(
                    hdr,
                    "raw_len",
                    raw_len,
                    "exceeds COMPRESSION_RATIO_MAX times stored_len",
                ));
            }
            if record_count
                .saturating_mul(wide(RECORD_PREFIX_LEN))
                .saturating_add(records_at)
                > raw_len
            {
                return Err(bad(
                    hdr,
                    "record_count",
                    record_count,
                    "more records than the payload can hold",
                ));
            }
        }
    }
    let payload_at = offset.saturating_add(FRAME_HEADER_LEN);
    let payload = match codec {
        Codec::None => data.slice(payload_at..payload_at.saturating_add(stored)),
        _ => {
            let raw = usize::try_from(raw_len).unwrap_or(usize::MAX);
            let bytes = codec::decompress(codec, stored_bytes, raw).map_err(|reason| {
                DecodeError::Decompress {
                    offset: at,
                    codec,
                    reason,
                }
            })?;
            Bytes::from(bytes)
        }
    };
    // The checks above keep the time inside the payload.
    let timestamp_us = timestamped.then(|| u64_at(&payload, 0)).flatten();
    let payload = payload.slice(usize::try_from(records_at).unwrap_or(0).min(payload.len())..);
    validate_records(&payload, record_count, at)?;
    let header = FrameHeader {
        crc: u32::try_from(crc).unwrap_or_default(),
        stored_len: u32::try_from(stored_len).unwrap_or_default(),
        kind,
        codec,
        record_count: u32::try_from(record_count).unwrap_or_default(),
        first_lsn,
        segment_id,
        durable_lsn,
        raw_len: u32::try_from(raw_len).unwrap_or_default(),
    };
    Ok(Frame {
        header,
        offset: at,
        encoded_len: align_up(frame_len),
        payload,
        timestamp_us,
    })
}

/// Checks that `payload` is exactly `count` length-prefixed records.
fn validate_records(payload: &[u8], count: u64, at: u64) -> Result<(), DecodeError> {
    #![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
    let bad = |value: u64, reason: &'static str| DecodeError::BadLength {
        offset: at,
        what: Structure::Record,
        field: "record_len",
        value,
        reason,
    };
    let mut pos = 0usize;
    for _ in 0..count {
        let len = u32_at(payload, pos)
            .ok_or_else(|| bad(wide(pos), "record prefix runs past the payload"))?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| pos.checked_add(RECORD_PREFIX_LEN)?.checked_add(len))
            .filter(|&end| end <= payload.len())
            .ok_or_else(|| bad(u64::from(len), "record runs past the payload"))?;
        pos = end;
    }
    if pos != payload.len() {
        return Err(bad(
            wide(payload.len() - pos),
            "bytes left over after the last record",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
