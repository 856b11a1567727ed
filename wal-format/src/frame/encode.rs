//! Writing frames: into a caller's buffer, record by record
//! ([`FrameBuilder`]) or a batch at a time ([`FrameEncoder`]), and seals.

use super::*;
use crate::codec::{self, Codec, Compression};
use crate::error::EncodeError;

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
