//! Options, sync policies and recovery modes.

use std::time::Duration;

use wal_format::{
    Compression, FRAME_ALIGN, FRAME_HEADER_LEN, FRAME_PAYLOAD_BYTES_MAX, PADDED_BLOCK_BYTES,
    SegmentHeader, TERMINATOR_LEN, TIMESTAMP_LEN,
};

use crate::WalError;

/// The most writes [`Options::writes_in_flight_max`] allows: beyond a few
/// dozen the device gains nothing, and each holds a buffer.
pub const WRITES_IN_FLIGHT_MAX: u32 = 256;

/// The longest delay a [`SyncPolicy`] may name (`Group`'s `max_delay`,
/// `Interval`'s interval): an hour. Longer ones are refused rather than
/// overflowing the clock; a log that should not sync on a timer uses
/// [`SyncPolicy::Never`].
pub const SYNC_DELAY_MAX: Duration = Duration::from_secs(3600);

/// The most bytes batches that arrive together share one frame with (see
/// [`Options::frame_fill_bytes`]): 2 MiB.
///
/// Why: a replay hands out no record of a frame before the frame's
/// checksum is verified, and reads the log in parts that hold whole
/// frames. Frames of up to the whole queue (8 MiB) made a bulk ingest's
/// log a handful of frames, which recovery read in parts of several MiB
/// of fresh memory, and its consumer waited for each whole frame. Frames
/// of 2 MiB measured faster to ingest and to replay, in a quarter of the
/// memory (DECISIONS.md).
pub const FRAME_FILL_BYTES_MAX: usize = 2 << 20;

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
        /// Pending bytes that end the wait at once. Batches share a frame
        /// only up to [`Options::frame_fill_bytes`] (2 MiB by default), and
        /// an appender that finds the frame full ends the wait too, so a
        /// larger value acts as that.
        max_batch_bytes: usize,
    },
    /// Records are written promptly and synced at most every interval; a
    /// commit returns at once, so up to one interval of acknowledged records
    /// can be lost (Redis `everysec`).
    Interval(Duration),
    /// Records are written once half of [`Options::frame_fill_bytes`] is
    /// pending or on request, and synced only
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
    /// Longest record. Default 1 MiB; at least 1; at most `queue_bytes_max`
    /// less a frame header, its time, its padding and the record's 4-byte
    /// prefix (68 bytes).
    pub record_bytes_max: usize,
    /// Encoded bytes waiting for the writer, at most: a full queue makes
    /// appenders wait (backpressure), it never grows. It also bounds one
    /// write, one frame and one atomic batch. Default 8 MiB; at most 64 MiB.
    /// Batches that arrive together share a frame only up to
    /// [`Options::frame_fill_bytes`]; a batch larger than that still goes
    /// whole into a frame of its own.
    pub queue_bytes_max: usize,
    /// What recovery may repair. Default [`RecoveryMode::TolerateTornTail`].
    pub recovery: RecoveryMode,
    /// Per-frame compression. Default none.
    pub compression: Compression,
    /// Preallocate segments when they are created, so a full disk shows at
    /// rotation and never inside a record. Default true.
    pub preallocate: bool,
    /// Prepare the next segment ahead of need on a background thread, so
    /// that rotation only renames and stamps it. Under `Always` and `Group`
    /// the spare is zero-filled and synced, so durable writes land in blocks
    /// that were written before (which costs less than writing preallocated,
    /// never-written blocks: see docs/DECISIONS.md), at the price of one
    /// segment of extra writes per rotation; under `Interval` and `Never`,
    /// whose appends are bandwidth-bound and whose syncs are rare, it is only
    /// preallocated. Costs one segment of extra disk space. Default true.
    pub prepare_segments: bool,
    /// Reuse the file of a segment that [`Wal::truncate_front`](crate::Wal::truncate_front)
    /// purges as the next segment (renamed and stamped with a new identity),
    /// instead of deleting it and filling a new one: its blocks were written
    /// before, so the durable writes into it are as cheap as into a prepared
    /// segment, without the extra segment of zeros. Only a file of exactly
    /// `segment_bytes` is reused. Recovery then reads a zeroed frame header
    /// after a recycled file's last frame as a clean end, so in those files
    /// [`RecoveryMode::AbsoluteConsistency`] cannot report a torn write whose
    /// first bytes never reached the disk (docs/FORMAT.md, "Recycled
    /// segments"); turn this off where that report matters. Default true.
    pub recycle_segments: bool,
    /// Write segments with O_DIRECT, several durable writes in flight at
    /// once (`RWF_DSYNC` through `io_uring`): the I/O owner does not wait
    /// for one batch's write to finish before writing the next, and the
    /// durable LSN advances over the prefix of writes that completed. New
    /// segments are then padded (docs/FORMAT.md, "Padded segments"): every
    /// write covers whole 4 KiB blocks, so a small batch takes a block of the
    /// segment, and under `Always` and `Group` a segment created on demand
    /// is zero-filled first (each write lands in new blocks, which cost more
    /// to write durably when never written before). A segment written before the option was
    /// turned on is finished with buffered writes. On the portable and simulated backends
    /// the queue runs its writes one after another. The file system must
    /// accept O_DIRECT; open fails otherwise. Default false.
    pub direct_io: bool,
    /// With [`Options::direct_io`], writes in flight at most. Default 8; at
    /// least 1, at most 256.
    pub writes_in_flight_max: u32,
    /// Seed for segment identities. `None` (the default) draws them from the
    /// operating system's randomness; a seed makes a run reproducible (for
    /// simulation tests).
    pub identity_seed: Option<u64>,
    /// Where each frame's commit time comes from (format version 4: every
    /// frame carries the time it was written, microseconds since the Unix
    /// epoch, never below an earlier frame's, even across reopens).
    /// Default [`Clock::system`].
    pub clock: crate::Clock,
    /// Segments [`Wal::truncate_front`](crate::Wal::truncate_front) must
    /// keep until they are released (archiving). Default none.
    pub purge_hold: Option<crate::PurgeHold>,
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
            recycle_segments: true,
            direct_io: false,
            writes_in_flight_max: 8,
            identity_seed: None,
            clock: crate::Clock::system(),
            purge_hold: None,
        }
    }
}

impl Options {
    /// Bytes past which a frame takes no further batch: the next one waits
    /// for the writer and starts a new frame. The smaller of
    /// `queue_bytes_max` and [`FRAME_FILL_BYTES_MAX`].
    pub fn frame_fill_bytes(&self) -> usize {
        self.queue_bytes_max.min(FRAME_FILL_BYTES_MAX)
    }

    /// The smallest segment that holds a header, the largest frame the queue
    /// can produce and a seal; with [`Options::direct_io`], each in whole
    /// blocks.
    pub fn segment_bytes_min(&self) -> u64 {
        let frame_max = FRAME_HEADER_LEN + self.queue_bytes_max + FRAME_ALIGN;
        if self.direct_io {
            let block = PADDED_BLOCK_BYTES;
            (block + (frame_max + TERMINATOR_LEN).next_multiple_of(block) + block) as u64
        } else {
            (SegmentHeader::LEN + frame_max + FRAME_HEADER_LEN) as u64
        }
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
        // A record must fit one frame of the queue: header, time, padding,
        // prefix.
        let record_fits =
            self.queue_bytes_max - (FRAME_HEADER_LEN + TIMESTAMP_LEN + FRAME_ALIGN + 4);
        if self.record_bytes_max == 0 || self.record_bytes_max > record_fits {
            return bad(
                "record_bytes_max",
                format!(
                    "{} is outside 1..={record_fits} (a record, its 4-byte prefix and a frame header must fit queue_bytes_max)",
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
        if self.direct_io && !self.segment_bytes.is_multiple_of(PADDED_BLOCK_BYTES as u64) {
            return bad(
                "segment_bytes",
                format!(
                    "{} is not a multiple of {PADDED_BLOCK_BYTES}, which direct_io needs",
                    self.segment_bytes
                ),
            );
        }
        if !(1..=WRITES_IN_FLIGHT_MAX).contains(&self.writes_in_flight_max) {
            return bad(
                "writes_in_flight_max",
                format!(
                    "{} is outside 1..={WRITES_IN_FLIGHT_MAX}",
                    self.writes_in_flight_max
                ),
            );
        }
        match self.sync {
            SyncPolicy::Interval(d) if d.is_zero() => {
                bad("sync", "an interval of zero; use Always".to_owned())
            }
            SyncPolicy::Interval(d) | SyncPolicy::Group { max_delay: d, .. }
                if d > SYNC_DELAY_MAX =>
            {
                bad(
                    "sync",
                    format!(
                        "a delay of {d:?} is longer than SYNC_DELAY_MAX ({SYNC_DELAY_MAX:?}); use Never"
                    ),
                )
            }
            SyncPolicy::Group {
                max_batch_bytes: 0, ..
            } => bad("sync", "max_batch_bytes of zero".to_owned()),
            _ => Ok(()),
        }
    }
}

impl Options {
    /// A builder starting from the defaults.
    ///
    /// ```
    /// use std::time::Duration;
    /// use wal_engine::{Options, SyncPolicy};
    ///
    /// let options = Options::builder()
    ///     .segment_bytes(16 << 20)
    ///     .queue_bytes_max(256 << 10) // record_bytes_max follows unless set
    ///     .sync(SyncPolicy::Group { max_delay: Duration::from_micros(200), max_batch_bytes: 64 << 10 })
    ///     .build()?;
    /// assert!(options.record_bytes_max < options.queue_bytes_max);
    /// # Ok::<(), wal_engine::WalError>(())
    /// ```
    pub fn builder() -> OptionsBuilder {
        OptionsBuilder {
            options: Options::default(),
            record_bytes_max_set: false,
        }
    }
}

/// Builds [`Options`], checking them at the end. Every setter documents the
/// option it sets on [`Options`].
#[derive(Debug, Clone)]
#[must_use = "call build() to get the options"]
pub struct OptionsBuilder {
    options: Options,
    record_bytes_max_set: bool,
}

impl OptionsBuilder {
    /// [`Options::segment_bytes`].
    pub fn segment_bytes(mut self, bytes: u64) -> Self {
        self.options.segment_bytes = bytes;
        self
    }

    /// [`Options::sync`].
    pub fn sync(mut self, policy: SyncPolicy) -> Self {
        self.options.sync = policy;
        self
    }

    /// [`Options::record_bytes_max`].
    pub fn record_bytes_max(mut self, bytes: usize) -> Self {
        self.options.record_bytes_max = bytes;
        self.record_bytes_max_set = true;
        self
    }

    /// [`Options::queue_bytes_max`]. Unless `record_bytes_max` is set too, it
    /// follows: the default, or the largest record one frame of this queue
    /// holds, whichever is smaller.
    pub fn queue_bytes_max(mut self, bytes: usize) -> Self {
        self.options.queue_bytes_max = bytes;
        self
    }

    /// [`Options::recovery`].
    pub fn recovery(mut self, mode: RecoveryMode) -> Self {
        self.options.recovery = mode;
        self
    }

    /// [`Options::compression`].
    pub fn compression(mut self, compression: Compression) -> Self {
        self.options.compression = compression;
        self
    }

    /// [`Options::preallocate`].
    pub fn preallocate(mut self, on: bool) -> Self {
        self.options.preallocate = on;
        self
    }

    /// [`Options::prepare_segments`].
    pub fn prepare_segments(mut self, on: bool) -> Self {
        self.options.prepare_segments = on;
        self
    }

    /// [`Options::recycle_segments`].
    pub fn recycle_segments(mut self, on: bool) -> Self {
        self.options.recycle_segments = on;
        self
    }

    /// [`Options::direct_io`].
    pub fn direct_io(mut self, on: bool) -> Self {
        self.options.direct_io = on;
        self
    }

    /// [`Options::writes_in_flight_max`].
    pub fn writes_in_flight_max(mut self, writes: u32) -> Self {
        self.options.writes_in_flight_max = writes;
        self
    }

    /// [`Options::identity_seed`].
    pub fn identity_seed(mut self, seed: u64) -> Self {
        self.options.identity_seed = Some(seed);
        self
    }

    /// The options, checked.
    ///
    /// # Errors
    /// [`WalError::InvalidOptions`] naming the first option out of range.
    pub fn build(self) -> Result<Options, WalError> {
        let mut options = self.options;
        if !self.record_bytes_max_set {
            // One record, its prefix and a frame header (with padding) fit the queue.
            let fits = options
                .queue_bytes_max
                .saturating_sub(FRAME_HEADER_LEN + TIMESTAMP_LEN + FRAME_ALIGN + 4)
                .max(1);
            options.record_bytes_max = options.record_bytes_max.min(fits);
        }
        options.validate()?;
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        Options::default().validate().unwrap();
        Options::builder().build().unwrap();
    }

    #[test]
    fn the_record_limit_follows_a_smaller_queue_unless_set() {
        let o = Options::builder()
            .queue_bytes_max(4096)
            .segment_bytes(1 << 20)
            .build()
            .unwrap();
        assert!(
            o.record_bytes_max + 4 + FRAME_HEADER_LEN + TIMESTAMP_LEN + FRAME_ALIGN <= 4096,
            "{o:?}"
        );
        let err = Options::builder()
            .queue_bytes_max(4096)
            .record_bytes_max(4096)
            .segment_bytes(1 << 20)
            .build()
            .unwrap_err();
        assert!(matches!(
            err,
            WalError::InvalidOptions {
                field: "record_bytes_max",
                ..
            }
        ));
    }

    #[test]
    fn out_of_range_options_are_named() {
        let err = Options::builder().segment_bytes(1024).build().unwrap_err();
        assert!(matches!(
            err,
            WalError::InvalidOptions {
                field: "segment_bytes",
                ..
            }
        ));
        let err = Options::builder()
            .sync(SyncPolicy::Interval(Duration::ZERO))
            .build()
            .unwrap_err();
        assert!(matches!(
            err,
            WalError::InvalidOptions { field: "sync", .. }
        ));
        for policy in [
            SyncPolicy::Interval(SYNC_DELAY_MAX + Duration::from_nanos(1)),
            SyncPolicy::Group {
                max_delay: Duration::MAX,
                max_batch_bytes: 1,
            },
        ] {
            let err = Options::builder().sync(policy).build().unwrap_err();
            assert!(
                matches!(err, WalError::InvalidOptions { field: "sync", .. }),
                "{policy:?}: {err}"
            );
        }
        Options::builder()
            .sync(SyncPolicy::Interval(SYNC_DELAY_MAX))
            .build()
            .unwrap();
        let err = Options::builder().queue_bytes_max(10).build().unwrap_err();
        assert!(matches!(
            err,
            WalError::InvalidOptions {
                field: "queue_bytes_max",
                ..
            }
        ));
    }
}
