//! Scanning a whole segment: the valid prefix of frames, then a verdict on
//! how the segment ends (clean, sealed, torn tail, or corrupt).

use bytes::Bytes;

use crate::error::DecodeError;
use crate::frame::{
    FRAME_ALIGN, FRAME_HEADER_LEN, Frame, FrameExpect, FrameKind, OFF_SEGMENT_ID, decode_frame,
};
use crate::le::{u64_at, wide};
use crate::segment::{PADDED_BLOCK_BYTES, SegmentHeader};

/// A valid frame found after the point where a segment's valid prefix broke off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LaterFrame {
    /// Where it starts.
    pub offset: u64,
    /// Its first LSN (higher than any LSN of the valid prefix).
    pub first_lsn: u64,
    /// The durable watermark its writer recorded in it.
    pub durable_lsn: u64,
}

/// How a segment's valid prefix ends.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SegmentEnd {
    /// The bytes end with the last valid frame, or everything after it is zero
    /// (preallocated, never written), or, in a recycled segment, a zeroed
    /// frame header follows it and no valid frame of this segment comes later.
    Clean,
    /// A seal frame ends the segment; the bytes after it are not read.
    Sealed {
        /// The LSN the next segment starts at.
        next_lsn: u64,
    },
    /// The prefix breaks off at `error.offset()` and nothing after that point
    /// shows that a durable write was lost: an interrupted, unacknowledged
    /// write. Safe to cut at the break.
    TornTail {
        /// Why the frame at the break was rejected.
        error: DecodeError,
        /// Valid frames found after the break; none of them records the
        /// break's LSN as durable, so they belong to writes that were still in
        /// flight (never acknowledged) when the writer stopped.
        later_frames: u64,
    },
    /// The prefix breaks off at `error.offset()`, and a later valid frame of
    /// this segment records that the LSN at the break was already durable when
    /// it was written: acknowledged data is damaged. Cutting here would lose it.
    Corrupt {
        /// Why the frame at the break was rejected.
        error: DecodeError,
        /// The first later frame that proves the break's LSN was durable.
        evidence: LaterFrame,
    },
}

/// What a completed scan found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScanSummary {
    /// The segment's header.
    pub header: SegmentHeader,
    /// Valid frames in the prefix (a seal counts).
    pub frames: u64,
    /// Records in those frames.
    pub records: u64,
    /// The LSN after the prefix's last record.
    pub next_lsn: u64,
    /// Offset just past the prefix's last frame: where a writer would resume.
    pub valid_end: u64,
    /// The highest durable watermark recorded by a frame of the prefix (0 if none).
    pub durable_lsn_recorded: u64,
    /// The latest commit time a frame of the prefix carries (version 4 on).
    pub last_timestamp_us: Option<u64>,
    /// How the prefix ends.
    pub end: SegmentEnd,
}

/// Where a scan stands, to go on with it over bytes read later
/// ([`SegmentScanner::point`], [`SegmentScanner::resume`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanPoint {
    header: SegmentHeader,
    offset: u64,
    next_lsn: u64,
    frames: u64,
    records: u64,
    durable_lsn_recorded: u64,
    last_timestamp_us: Option<u64>,
}

impl ScanPoint {
    /// The segment's header.
    pub fn header(&self) -> &SegmentHeader {
        &self.header
    }

    /// The offset in the segment where the scan goes on.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The LSN the next frame must start at.
    pub fn next_lsn(&self) -> u64 {
        self.next_lsn
    }
}

/// Iterates the valid prefix of a segment's frames, then classifies its end.
///
/// ```
/// use bytes::Bytes;
/// use wal_format::{Compression, FrameEncoder, SegmentEnd, SegmentHeader, SegmentScanner};
///
/// let header = SegmentHeader::new(7, 42, 1)?;
/// let mut seg = header.encode().to_vec();
/// let mut enc = FrameEncoder::new(Compression::NONE);
/// enc.encode(&mut seg, 42, 1, 0, [&b"hello"[..], b"world"])?;
/// seg.resize(seg.len() + 4096, 0); // preallocated space
///
/// let mut scan = SegmentScanner::new(Bytes::from(seg))?;
/// let records: Vec<_> = scan.by_ref().flat_map(|f| f.records().collect::<Vec<_>>()).collect();
/// assert_eq!(records[1].lsn, 2);
/// assert_eq!(&records[1].data[..], b"world");
/// assert_eq!(scan.finish().end, SegmentEnd::Clean);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct SegmentScanner {
    data: Bytes,
    /// Where `data` starts in the segment: every offset reported is `base`
    /// plus an offset in `data`.
    base: u64,
    header: SegmentHeader,
    offset: usize,
    next_lsn: u64,
    frames: u64,
    records: u64,
    durable_lsn_recorded: u64,
    last_timestamp_us: Option<u64>,
    end: Option<SegmentEnd>,
    /// The bytes are a prefix of what is to be scanned (see
    /// [`SegmentScanner::more_follows`]).
    more_follows: bool,
    /// A scan with more to follow stopped at a frame it could not take.
    paused: bool,
    /// Where the frame it stopped in ends, if the bytes ended inside it.
    wanted_end: Option<u64>,
}

impl SegmentScanner {
    /// Validates the segment header at the start of `data` and positions the
    /// scanner at the first frame.
    ///
    /// # Errors
    /// The header's [`DecodeError`].
    pub fn new(data: Bytes) -> Result<Self, DecodeError> {
        let header = SegmentHeader::decode(&data)?;
        Ok(SegmentScanner {
            data,
            base: 0,
            header,
            offset: SegmentHeader::LEN,
            next_lsn: header.first_lsn(),
            frames: 0,
            records: 0,
            durable_lsn_recorded: 0,
            last_timestamp_us: None,
            end: None,
            more_follows: false,
            paused: false,
            wanted_end: None,
        })
    }

    /// Says that the bytes handed over are a prefix of the segment with
    /// more to follow, to be scanned by a [`SegmentScanner::resume`] from
    /// [`SegmentScanner::point`]: where a frame does not decode (it runs
    /// past the bytes, or the bytes there are damaged or zero), the scan
    /// stops without judging the end, which would take every byte after
    /// that point. [`SegmentScanner::end`] then stays `None`, and
    /// [`SegmentScanner::wanted_end`] says how far the bytes must reach
    /// for the frame that ran past them. A seal still ends the scan.
    #[must_use]
    pub fn more_follows(mut self) -> Self {
        self.more_follows = true;
        self
    }

    /// Where, in the segment, the frame a scan with more to follow stopped
    /// at ends, when the bytes ended inside it: a resume over bytes reaching
    /// at least that far can take it. Read from the frame's unverified
    /// header (bounded by [`crate::FRAME_PAYLOAD_BYTES_MAX`]): a hint for how
    /// much to read, never evidence.
    pub fn wanted_end(&self) -> Option<u64> {
        self.wanted_end
    }

    /// The segment's header.
    pub fn header(&self) -> &SegmentHeader {
        &self.header
    }

    /// The LSN the next frame must start at.
    pub fn next_lsn(&self) -> u64 {
        self.next_lsn
    }

    /// How the prefix ended, once the scan has stopped (`None` while more
    /// frames may follow). A scan of part of a segment that stopped short
    /// of a seal goes on with [`SegmentScanner::resume`]; this verdict is
    /// the segment's only if the part ran to the segment's end.
    pub fn end(&self) -> Option<&SegmentEnd> {
        self.end.as_ref()
    }

    /// Where the scan is: after the frames it has yielded, or at the break
    /// once it stopped there. [`SegmentScanner::resume`] goes on from it.
    pub fn point(&self) -> ScanPoint {
        ScanPoint {
            header: self.header,
            offset: self.base.saturating_add(wide(self.offset)),
            next_lsn: self.next_lsn,
            frames: self.frames,
            records: self.records,
            durable_lsn_recorded: self.durable_lsn_recorded,
            last_timestamp_us: self.last_timestamp_us,
        }
    }

    /// Goes on with a scan from `point` over `data`, the bytes of the same
    /// segment from offset `base` on, so a segment can be read and scanned
    /// in parts: frames, the summary and errors report offsets in the
    /// segment. A part that ends inside a frame ends the scan there as a
    /// torn tail would; resuming from [`SegmentScanner::point`] over a part
    /// that holds the whole frame goes on past it. The verdict on the end
    /// looks only at the bytes after the break, so a scan resumed over every
    /// byte from at or before the break to the end of the segment gives the
    /// same verdict as one scan of the whole segment.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use wal_format::{Compression, FrameEncoder, SegmentEnd, SegmentHeader, SegmentScanner};
    ///
    /// let mut seg = SegmentHeader::new(7, 42, 1)?.encode().to_vec();
    /// let mut enc = FrameEncoder::new(Compression::NONE);
    /// enc.encode(&mut seg, 42, 1, 0, [&[1u8; 100][..]])?;
    /// enc.encode(&mut seg, 42, 2, 0, [&[2u8; 1000][..]])?;
    /// seg.resize(8192, 0); // preallocated space
    /// let seg = Bytes::from(seg);
    ///
    /// // The first part ends inside the second frame: the scan stops before it.
    /// let mut first = SegmentScanner::new(seg.slice(..600))?;
    /// assert_eq!(first.by_ref().count(), 1);
    /// let point = first.point();
    /// // The rest of the segment, from the start of the 4 KiB block the break is in.
    /// let mut rest = SegmentScanner::resume(seg.slice(0..), 0, &point)?;
    /// let lsns: Vec<u64> = rest.by_ref().map(|f| f.first_lsn()).collect();
    /// assert_eq!(lsns, [2]);
    /// assert_eq!(rest.finish().end, SegmentEnd::Clean);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`DecodeError::BadLength`] if `point` is not within `data`.
    pub fn resume(data: Bytes, base: u64, point: &ScanPoint) -> Result<Self, DecodeError> {
        let offset = point
            .offset
            .checked_sub(base)
            .and_then(|o| usize::try_from(o).ok())
            .filter(|&o| o <= data.len())
            .ok_or(DecodeError::BadLength {
                offset: point.offset,
                what: crate::Structure::FrameHeader,
                field: "resume offset",
                value: base,
                reason: "the scan point is not within the bytes handed over",
            })?;
        Ok(SegmentScanner {
            data,
            base,
            header: point.header,
            offset,
            next_lsn: point.next_lsn,
            frames: point.frames,
            records: point.records,
            durable_lsn_recorded: point.durable_lsn_recorded,
            last_timestamp_us: point.last_timestamp_us,
            end: None,
            more_follows: false,
            paused: false,
            wanted_end: None,
        })
    }

    /// Reads the rest of the prefix, classifies the end and returns the summary.
    ///
    /// A scan with more to follow has no verdict unless a seal ended it:
    /// finish the scan of the last part instead.
    pub fn finish(mut self) -> ScanSummary {
        self.by_ref().for_each(drop);
        debug_assert!(
            !self.paused,
            "a scan with more to follow has no verdict: finish the last part's"
        );
        ScanSummary {
            header: self.header,
            frames: self.frames,
            records: self.records,
            next_lsn: self.next_lsn,
            valid_end: self.base.saturating_add(wide(self.offset)),
            durable_lsn_recorded: self.durable_lsn_recorded,
            last_timestamp_us: self.last_timestamp_us,
            end: self.end.take().unwrap_or(SegmentEnd::Clean),
        }
    }

    /// In a padded segment, the frame after the padding that starts at the
    /// current offset, if there is padding there (a zeroed frame header)
    /// and a frame continuing the prefix at the first block boundary at or
    /// after the end of that header. (A frame that ends on a boundary is
    /// followed by a whole block of padding: its write's terminator.) Without such a frame, the end is classified from the
    /// zeroed header: it is the terminator of the last write.
    fn after_padding(&self, expect: FrameExpect) -> Option<(usize, Frame)> {
        let boundary = self.padding_boundary()?;
        let frame = decode_frame(&self.data, boundary, expect).ok()?;
        Some((boundary, frame))
    }

    /// In a padded segment with a zeroed frame header at the current
    /// offset, the first block boundary at or after the end of that header,
    /// as an offset in `data` (possibly past its end): where the next
    /// write's first frame would start.
    fn padding_boundary(&self) -> Option<usize> {
        if !self.header.padded() {
            return None;
        }
        let head = self
            .data
            .get(self.offset..self.offset.checked_add(FRAME_HEADER_LEN)?)?;
        if head.iter().any(|&b| b != 0) {
            return None;
        }
        // The zeroed header is the write's terminator, and the write ends at
        // the first boundary after it.
        // Blocks are counted from the start of the segment, not of `data`.
        let end_abs = self
            .base
            .checked_add(wide(self.offset.checked_add(FRAME_HEADER_LEN)?))?;
        let boundary_abs = end_abs.next_multiple_of(PADDED_BLOCK_BYTES as u64);
        usize::try_from(boundary_abs.checked_sub(self.base)?).ok()
    }

    /// For a scan with more to follow that stopped at `error`: where, in
    /// the segment, the frame the bytes ended inside ends (after padding,
    /// the frame at the next boundary), if they did.
    fn wanted_end_after(&self, error: &DecodeError) -> Option<u64> {
        let (at, needed) = match *error {
            DecodeError::Incomplete { offset, needed, .. } => (offset, needed),
            DecodeError::Zeroed { .. } => {
                let boundary = self.padding_boundary()?;
                let expect = FrameExpect {
                    segment_id: self.header.segment_id(),
                    first_lsn: Some(self.next_lsn),
                };
                match decode_frame(&self.data, boundary, expect) {
                    Err(DecodeError::Incomplete { offset, needed, .. }) => (offset, needed),
                    _ => return None,
                }
            }
            _ => return None,
        };
        Some(self.base.saturating_add(at.saturating_add(needed)))
    }

    fn classify(&self, error: DecodeError) -> SegmentEnd {
        #![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
        let rest = self.data.get(self.offset..).unwrap_or_default();
        let zeroed = matches!(error, DecodeError::Zeroed { .. });
        if zeroed && rest.iter().all(|&b| b == 0) {
            return SegmentEnd::Clean;
        }
        // Look for valid frames of this segment past the break. Frames start
        // at aligned offsets, and a frame's segment identity is non-zero, so a
        // cheap compare of that one field skips zeros and foreign bytes, and
        // the full decode (checksum first) runs only on real candidates.
        let segment_id = self.header.segment_id();
        let mut later_frames = 0;
        let mut pos = self.offset.saturating_add(FRAME_ALIGN);
        while pos.saturating_add(FRAME_HEADER_LEN) <= self.data.len() {
            if u64_at(&self.data, pos.saturating_add(OFF_SEGMENT_ID)) != Some(segment_id) {
                pos = pos.saturating_add(FRAME_ALIGN);
                continue;
            }
            let expect = FrameExpect {
                segment_id,
                first_lsn: None,
            };
            match decode_frame(&self.data, pos, expect) {
                Ok(frame) if frame.first_lsn() >= self.next_lsn => {
                    let evidence = LaterFrame {
                        offset: self.base.saturating_add(frame.offset()),
                        first_lsn: frame.first_lsn(),
                        durable_lsn: frame.header().durable_lsn,
                    };
                    if evidence.durable_lsn >= self.next_lsn {
                        return SegmentEnd::Corrupt { error, evidence };
                    }
                    later_frames += 1;
                    pos = pos.saturating_add(frame.encoded_len().max(FRAME_ALIGN));
                }
                _ => pos = pos.saturating_add(FRAME_ALIGN),
            }
        }
        // In a recycled file every write ends with a zeroed frame header and
        // the bytes after it are stale, so a zero header at the break is a
        // clean end, unless valid frames of this incarnation follow it (a
        // write that never landed, with later ones that did). Checked only
        // after the search above, because a zeroed sector over an
        // acknowledged frame reads as a zero header too.
        if zeroed && self.header.recycled() && later_frames == 0 {
            return SegmentEnd::Clean;
        }
        SegmentEnd::TornTail {
            error,
            later_frames,
        }
    }
}

impl Iterator for SegmentScanner {
    type Item = Frame;

    fn next(&mut self) -> Option<Frame> {
        if self.end.is_some() || self.paused {
            return None;
        }
        if self.offset >= self.data.len() {
            if self.more_follows {
                self.paused = true;
            } else {
                self.end = Some(SegmentEnd::Clean);
            }
            return None;
        }
        let expect = FrameExpect {
            segment_id: self.header.segment_id(),
            first_lsn: Some(self.next_lsn),
        };
        let decoded = match decode_frame(&self.data, self.offset, expect) {
            Err(error) => self.after_padding(expect).ok_or(error),
            Ok(frame) => Ok((self.offset, frame)),
        };
        match decoded {
            Ok((start, mut frame)) => {
                self.offset = start.saturating_add(frame.encoded_len());
                frame.shift(self.base);
                self.next_lsn = frame.next_lsn();
                self.frames += 1;
                self.records += u64::from(frame.record_count());
                self.durable_lsn_recorded =
                    self.durable_lsn_recorded.max(frame.header().durable_lsn);
                if let Some(t) = frame.timestamp_us() {
                    self.last_timestamp_us = Some(self.last_timestamp_us.map_or(t, |l| l.max(t)));
                }
                if frame.kind() == FrameKind::Seal {
                    self.end = Some(SegmentEnd::Sealed {
                        next_lsn: frame.first_lsn(),
                    });
                }
                Some(frame)
            }
            Err(error) if self.more_follows => {
                self.paused = true;
                self.wanted_end = self.wanted_end_after(&error);
                None
            }
            Err(error) => {
                self.end = Some(self.classify(error.shifted(self.base)));
                None
            }
        }
    }
}
