//! Where `truncate_back` cuts among a segment's frames. A segment that
//! starts inside the one before it cuts that one there, logically; its
//! frames past the cut stay in the file. Two rules keep them from ever
//! coming back:
//!
//! - every segment starts at a frame boundary of the one before it: a cut
//!   that falls inside a frame starts the new segment at that frame's first
//!   LSN, carrying the frame's records up to the cut re-encoded ([`split`]);
//! - before a later truncation removes the segment that covers such frames,
//!   they are cut off in the file ([`cut_stale`]), so a crash that leaves the
//!   segment before it last never finds them.

use bytes::Bytes;
use wal_format::{
    DecodeError, FRAME_HEADER_LEN, Frame, FrameEncoder, FrameExpect, FrameKind, PADDED_BLOCK_BYTES,
    Record, SegmentHeader, TERMINATOR_LEN, decode_frame,
};
use wal_io::{FileRef, IoError};

use super::durability::Failure;
use crate::Options;
use crate::segment::{SegMeta, write_bytes, write_start};

/// Bytes read at a time while looking for a frame.
const FIND_CHUNK_BYTES: usize = 1 << 20;

/// The frame of `seg` holding `lsn`, with its offset. `None` if the
/// segment's valid frames end before `lsn` (a seal, zeros, damage).
fn frame_holding(seg: &SegMeta, lsn: u64) -> Result<Option<(u64, Frame)>, IoError> {
    let size = seg.file.size()?;
    let expect = FrameExpect {
        segment_id: seg.id,
        first_lsn: None,
    };
    let block = PADDED_BLOCK_BYTES as u64;
    let mut pos = seg.seek(lsn);
    let (mut chunk, mut chunk_at) = (Bytes::new(), pos);
    loop {
        let at = usize::try_from(pos - chunk_at).unwrap_or(usize::MAX);
        let frame = match decode_frame(&chunk, at, expect) {
            Ok(frame) => frame,
            Err(DecodeError::Incomplete { needed, .. }) => {
                let left = usize::try_from(size.saturating_sub(pos)).unwrap_or(usize::MAX);
                let want = usize::try_from(needed)
                    .unwrap_or(usize::MAX)
                    .max(FIND_CHUNK_BYTES)
                    .min(left);
                if want == 0 || (chunk_at == pos && want <= chunk.len()) {
                    return Ok(None);
                }
                let mut buf = vec![0u8; want];
                seg.file.read_at(pos, &mut buf)?;
                (chunk, chunk_at) = (Bytes::from(buf), pos);
                continue;
            }
            // Padding after a frame in a padded segment (docs/FORMAT.md).
            Err(DecodeError::Zeroed { .. }) if seg.padded && !pos.is_multiple_of(block) => {
                pos = (pos + FRAME_HEADER_LEN as u64).next_multiple_of(block);
                continue;
            }
            Err(_) => return Ok(None),
        };
        if frame.kind() == FrameKind::Seal || frame.first_lsn() > lsn {
            return Ok(None);
        }
        if lsn < frame.next_lsn() {
            return Ok(Some((pos, frame)));
        }
        pos += frame.encoded_len() as u64;
    }
}

/// Where the segment staged by `truncate_back(lsn)` starts, and the records
/// it carries: `lsn + 1` and none, unless `lsn + 1` falls inside a frame of
/// `seg` (the segment holding `lsn`); then that frame's first LSN and its
/// records up to `lsn`.
pub(super) fn split(seg: Option<&SegMeta>, lsn: u64) -> Result<Carried, IoError> {
    let none = Carried {
        first: lsn + 1,
        records: Vec::new(),
        time_us: None,
    };
    let Some(seg) = seg else {
        return Ok(none);
    };
    match frame_holding(seg, lsn + 1)? {
        Some((_, frame)) if frame.first_lsn() <= lsn => {
            let first = frame.first_lsn();
            let time_us = frame.timestamp_us();
            let records = frame.into_iter().take_while(|r| r.lsn <= lsn).collect();
            Ok(Carried {
                first,
                records,
                time_us,
            })
        }
        _ => Ok(none),
    }
}

/// The records a cut carries into the new segment: from `first`, with the
/// commit time of the frame they came from, if it had one.
pub(super) struct Carried {
    pub(super) first: u64,
    pub(super) records: Vec<Record>,
    pub(super) time_us: Option<u64>,
}

/// Cuts off, in the file, the frames of `seg` from `end` (the first LSN of
/// the segment after it, where it ends) on, and syncs: the removals that
/// follow leave `seg` last for a moment. A frame holding LSNs on both sides
/// of `end` (a log cut by an older version) is cut off only if what it holds
/// before `end` is past `lsn` too, which the truncation drops anyway.
pub(super) fn cut_stale(
    seg: &SegMeta,
    end: u64,
    lsn: u64,
    options: &Options,
) -> Result<(), IoError> {
    let Some((at, frame)) = frame_holding(seg, end)? else {
        return Ok(());
    };
    if frame.first_lsn() < end && frame.first_lsn() <= lsn {
        tracing::warn!(segment = %seg.name, end, "a cut inside a frame (an older version's) stays a logical one");
        return Ok(());
    }
    seg.file.set_len(at)?;
    if options.preallocate {
        seg.file.allocate(0, options.segment_bytes)?;
    }
    seg.file.sync_data()
}

/// Writes `records` (LSNs from `first`) as the first frame of the staged
/// segment `file` (identity `id`), with its terminator and padding, and
/// syncs. Returns where the frame went and where it ends.
pub(super) fn write_carried(
    file: &FileRef,
    id: u64,
    carried: &Carried,
    options: &Options,
) -> Result<(u64, u64), Failure> {
    let mut buf = Vec::new();
    let first = carried.first;
    let records = carried.records.iter().map(|r| &r.data[..]);
    let mut encoder = FrameEncoder::new(options.compression);
    // The records keep the commit time they had.
    let summary = match carried.time_us {
        Some(t) => encoder.encode_timestamped(&mut buf, id, first, first - 1, t, records),
        None => encoder.encode(&mut buf, id, first, first - 1, records),
    }
    .map_err(|e| Failure::Internal(format!("re-encoding records a cut splits: {e}")))?;
    // Where a new segment's first write goes, as the writer would put it.
    let padded = options.direct_io;
    let at = write_start(padded, SegmentHeader::LEN as u64);
    buf.resize(write_bytes(padded, buf.len() + TERMINATOR_LEN), 0);
    file.write_at(at, &[&buf])?;
    file.sync_data()?;
    Ok((at, at + summary.encoded_len as u64))
}
