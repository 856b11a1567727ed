//! What recovery tells the caller: the public report of what it found in
//! each segment, and what it cut or set aside, and why.

use wal_format::{DecodeError, SegmentEnd};

/// What recovery found in one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SegmentReport {
    /// The file's name.
    pub name: String,
    /// Its first LSN.
    pub first_lsn: u64,
    /// Valid frames read.
    pub frames: u64,
    /// Records kept from it.
    pub records: u64,
    /// Offset after its last valid frame.
    pub valid_end: u64,
    /// How its valid prefix ended.
    pub end: SegmentEnd,
}

/// Something recovery removed or set aside, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Cut {
    /// The segment.
    pub segment: String,
    /// Where in it the removed bytes start.
    pub offset: u64,
    /// How many bytes were removed from the file (0 when only set aside logically).
    pub bytes: u64,
    /// Why.
    pub reason: String,
    /// The decoder's verdict on the first removed frame, where one applies.
    pub error: Option<DecodeError>,
}

/// What [`Wal::open`](crate::Wal::open) found and did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// The segments kept, in LSN order.
    pub segments: Vec<SegmentReport>,
    /// Records in the log after recovery.
    pub records: u64,
    /// The first LSN in the log (the next LSN if it is empty).
    pub first_lsn: u64,
    /// The next LSN the log assigns; the last record is `next_lsn - 1`.
    pub next_lsn: u64,
    /// What was cut from the tail or set aside, and why.
    pub cuts: Vec<Cut>,
    /// Segment files renamed aside (`.discarded`) by a salvage mode.
    pub discarded: Vec<String>,
    /// LSN ranges (`start..end`) missing from the log after a salvage mode
    /// skipped damage.
    pub gaps: Vec<(u64, u64)>,
    /// The latest commit time a kept frame carries (format version 4 on),
    /// microseconds since the Unix epoch: the log's next frames are stamped
    /// no earlier.
    pub last_timestamp_us: Option<u64>,
}
