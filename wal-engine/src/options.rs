//! Options, sync policies and recovery modes.

use std::time::Duration;

use wal_format::{
    Compression, FRAME_ALIGN, FRAME_HEADER_LEN, FRAME_PAYLOAD_BYTES_MAX, SegmentHeader,
};

use crate::WalError;

/// When appended records are made durable, and when a commit returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyncPolicy {
    /// Every batch the writer takes is synced; [`Wal::commit`](crate::Wal::commit)
    /// returns once its record is durable. Group commit still merges
    /// concurrent commits into one write and one sync.
    Always,
    /// Like `Always`, but the writer waits up to `max_delay` after the first
    /// pending record for more to arrive, unless `max_batch_bytes` are pending
    /// (PostgreSQL's `commit_delay`).
    Group {
        /// Longest wait for a batch to fill.
        max_delay: Duration,
        /// Pending bytes that end the wait at once.
        max_batch_bytes: usize,
    },
    /// Records are written promptly and synced at most every interval; a
    /// commit returns at once, so up to one interval of acknowledged records
    /// can be lost (Redis `everysec`).
    Interval(Duration),
    /// Records are written when the queue fills or on request, and synced only
    /// on request ([`Wal::wait_durable`](crate::Wal::wait_durable), [`Wal::sync`](crate::Wal::sync)).
    Never,
}

impl SyncPolicy {
    /// Whether [`Wal::commit`](crate::Wal::commit) waits for durability.
    pub fn commit_waits(&self) -> bool {
        matches!(self, SyncPolicy::Always | SyncPolicy::Group { .. })
    }
}

/// What recovery may repair on open (RocksDB's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RecoveryMode {
    /// Cut a torn or zero-filled tail (never acknowledged) and report it;
    /// refuse to open on damage anywhere else (C4, C5).
    #[default]
    TolerateTornTail,
    /// Refuse to open on any damage, a torn tail included.
    AbsoluteConsistency,
    /// Keep everything before the first damage, discard the rest (the
    /// discarded segment files are renamed with a `.discarded` suffix, never
    /// deleted). Acknowledged records after the damage are lost: opt-in salvage.
    PointInTime,
    /// Keep every valid prefix: a damaged segment's records after the damage
    /// are skipped and the log goes on with the next segment, leaving a gap
    /// in the LSNs that readers see. Opt-in salvage.
    SkipCorrupted,
}

/// Options of a log. Every limit has a documented default and minimum;
/// [`Options::validate`] checks them and [`Wal::open`](crate::Wal::open) calls it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// Size of a segment file, preallocated. Default 64 MiB; at least
    /// [`Options::segment_bytes_min`] for the chosen `queue_bytes_max`.
    pub segment_bytes: u64,
    /// When records become durable. Default [`SyncPolicy::Always`].
    pub sync: SyncPolicy,
    /// Longest record. Default 1 MiB; at least 1; at most `queue_bytes_max - 4`.
    pub record_bytes_max: usize,
    /// Encoded bytes waiting for the writer, at most: a full queue makes
    /// appenders wait (backpressure), it never grows. It also bounds one
    /// write, one frame and one atomic batch. Default 8 MiB; at most 64 MiB.
    pub queue_bytes_max: usize,
    /// What recovery may repair. Default [`RecoveryMode::TolerateTornTail`].
    pub recovery: RecoveryMode,
    /// Per-frame compression. Default none.
    pub compression: Compression,
    /// Preallocate segments when they are created, so a full disk shows at
    /// rotation and never inside a record. Default true.
    pub preallocate: bool,
    /// Prepare the next segment ahead of need on a background thread, zero-
    /// filled and synced, so that rotation only renames and stamps it, and
    /// durable writes land in blocks that were written before (which costs
    /// less than writing preallocated, never-written blocks: see
    /// docs/ARCHITECTURE.md). Costs one segment of extra disk space and one
    /// segment of extra writes per rotation, which slows a bandwidth-bound
    /// bulk loader (by about a tenth where it was measured). Default true.
    pub prepare_segments: bool,
    /// Seed for segment identities. `None` (the default) draws them from the
    /// operating system's randomness; a seed makes a run reproducible (for
    /// simulation tests).
    pub identity_seed: Option<u64>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            segment_bytes: 64 << 20,
            sync: SyncPolicy::Always,
            record_bytes_max: 1 << 20,
            queue_bytes_max: 8 << 20,
            recovery: RecoveryMode::TolerateTornTail,
            compression: Compression::NONE,
            preallocate: true,
            prepare_segments: true,
            identity_seed: None,
        }
    }
}

impl Options {
    /// The smallest segment that holds a header, the largest frame the queue
    /// can produce and a seal.
    pub fn segment_bytes_min(&self) -> u64 {
        (SegmentHeader::LEN
            + FRAME_HEADER_LEN
            + self.queue_bytes_max
            + FRAME_ALIGN
            + FRAME_HEADER_LEN) as u64
    }

    /// Checks every limit.
    ///
    /// # Errors
    /// [`WalError::InvalidOptions`] naming the first option out of range.
    pub fn validate(&self) -> Result<(), WalError> {
        let bad =
            |field: &'static str, reason: String| Err(WalError::InvalidOptions { field, reason });
        if self.queue_bytes_max < 64 || self.queue_bytes_max > FRAME_PAYLOAD_BYTES_MAX {
            return bad(
                "queue_bytes_max",
                format!(
                    "{} is outside 64..={FRAME_PAYLOAD_BYTES_MAX}",
                    self.queue_bytes_max
                ),
            );
        }
        if self.record_bytes_max == 0 || self.record_bytes_max > self.queue_bytes_max - 4 {
            return bad(
                "record_bytes_max",
                format!(
                    "{} is outside 1..=queue_bytes_max - 4",
                    self.record_bytes_max
                ),
            );
        }
        if self.segment_bytes < self.segment_bytes_min() {
            return bad(
                "segment_bytes",
                format!(
                    "{} is below the minimum {} for this queue_bytes_max",
                    self.segment_bytes,
                    self.segment_bytes_min()
                ),
            );
        }
        match self.sync {
            SyncPolicy::Interval(d) if d.is_zero() => {
                bad("sync", "an interval of zero; use Always".to_owned())
            }
            SyncPolicy::Group {
                max_batch_bytes: 0, ..
            } => bad("sync", "max_batch_bytes of zero".to_owned()),
            _ => Ok(()),
        }
    }
}
