//! Reading frames: every check on hostile bytes before a record is handed
//! out ([`decode_frame`]), and the records of a frame that passed.

use bytes::Bytes;

use super::*;
use crate::codec::{self, Codec};
use crate::error::{DecodeError, Structure};
use crate::le::{u8_at, u16_at, u32_at, u64_at, wide};

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
