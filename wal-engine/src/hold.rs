//! A hold on purging: what an archiver (or a replica, or a backup) has not
//! copied yet stays in the log, whatever checkpoints ask to purge.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Shared between a log (through [`Options::purge_hold`](crate::Options::purge_hold))
/// and whoever copies its segments: [`Wal::truncate_front`](crate::Wal::truncate_front)
/// removes no segment holding an LSN above [`PurgeHold::released`], and
/// counts what it kept ([`Stats::segments_held`](crate::Stats::segments_held)),
/// as PostgreSQL keeps segments in `pg_wal` while `archive_command` fails.
///
/// ```
/// let hold = wal_engine::PurgeHold::new();
/// hold.release_through(41);
/// hold.release_through(7); // never moves back
/// assert_eq!(hold.released(), 41);
/// ```
#[derive(Debug, Clone, Default)]
pub struct PurgeHold(Arc<AtomicU64>);

impl PurgeHold {
    /// A hold that releases nothing yet.
    pub fn new() -> PurgeHold {
        PurgeHold::default()
    }

    /// Every LSN up to `lsn` is copied: segments wholly at or below it may
    /// go. The mark only moves forward.
    pub fn release_through(&self, lsn: u64) {
        self.0.fetch_max(lsn, Ordering::AcqRel);
    }

    /// The highest LSN released.
    pub fn released(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}
