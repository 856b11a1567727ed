//! Counters and histograms, cheap enough to keep always on.

use std::time::Duration;

use crate::sync::{Mutex, lock};

/// Buckets of a [`Histogram`]: bucket `i` counts values in `[2^i, 2^(i+1))`
/// (bucket 0 also holds 0).
pub const HISTOGRAM_BUCKETS: usize = 40;

/// A base-2 histogram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    /// Counts per power-of-two bucket.
    pub buckets: [u64; HISTOGRAM_BUCKETS],
    /// Values recorded.
    pub count: u64,
    /// Their sum.
    pub sum: u64,
    /// The largest.
    pub max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: [0; HISTOGRAM_BUCKETS],
            count: 0,
            sum: 0,
            max: 0,
        }
    }
}

impl Histogram {
    fn record(&mut self, value: u64) {
        let bucket = (63 - value.max(1).leading_zeros()) as usize;
        if let Some(b) = self.buckets.get_mut(bucket.min(HISTOGRAM_BUCKETS - 1)) {
            *b += 1;
        }
        self.count += 1;
        self.sum = self.sum.saturating_add(value);
        self.max = self.max.max(value);
    }

    /// The upper bound of the bucket holding quantile `q` (0.0 to 1.0), or 0
    /// if empty: accurate to a factor of two.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        // Counts stay far below 2^52, where f64 is exact.
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return (2u64 << i).saturating_sub(1).min(self.max);
            }
        }
        self.max
    }
}

/// A snapshot of the log's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Records appended.
    pub appends: u64,
    /// Encoded bytes appended (record prefixes included).
    pub append_bytes: u64,
    /// Waiters registered right now (blocked commits, pending futures,
    /// callbacks, tails waiting for new records): a count that only grows
    /// points at a leak.
    pub waiters: u64,
    /// Frames written (one per group-commit batch).
    pub batches: u64,
    /// Bytes written in frames.
    pub written_bytes: u64,
    /// Data syncs.
    pub syncs: u64,
    /// Segment rotations.
    pub rotations: u64,
    /// Rotations that took a segment prepared ahead instead of creating one.
    pub rotations_prepared: u64,
    /// Rotations that took the file of a purged segment
    /// ([`Options::recycle_segments`](crate::Options::recycle_segments)).
    pub rotations_recycled: u64,
    /// Spares the preparer wrote with zeros (only while the log's writes
    /// are small: their syncs then find blocks already written); the
    /// others it only preallocated.
    pub spares_zero_filled: u64,
    /// With [`Options::direct_io`](crate::Options::direct_io): the most
    /// writes that were in flight at once.
    pub writes_in_flight_peak: u64,
    /// Records per batch.
    pub batch_records: Histogram,
    /// Data sync latency in microseconds.
    pub sync_micros: Histogram,
    /// Segments the last [`Wal::truncate_front`](crate::Wal::truncate_front)
    /// kept because [`Options::purge_hold`](crate::Options::purge_hold) had
    /// not released them (0 when nothing waits).
    pub segments_held: u64,
    /// Times the owner thread woke to look for work. A thread committing
    /// alone writes its own rounds and wakes it not at all; this grows
    /// with appends nobody waits on, group commits and timed policies.
    pub owner_wakes: u64,
}

#[derive(Debug, Default)]
pub(crate) struct StatsCollector {
    inner: Mutex<Stats>,
}

impl StatsCollector {
    fn with(&self, f: impl FnOnce(&mut Stats)) {
        f(&mut lock(&self.inner));
    }

    /// A batch written (or queued, with `in_flight` writes then in flight).
    pub(crate) fn batch(&self, records: u64, bytes: u64, in_flight: usize) {
        self.with(|s| {
            s.batches += 1;
            s.written_bytes += bytes;
            s.batch_records.record(records);
            s.writes_in_flight_peak = s.writes_in_flight_peak.max(in_flight as u64);
        });
    }

    pub(crate) fn synced(&self, took: Duration) {
        self.with(|s| {
            s.syncs += 1;
            s.sync_micros
                .record(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
        });
    }

    pub(crate) fn spare_zero_filled(&self) {
        self.with(|s| s.spares_zero_filled += 1);
    }

    pub(crate) fn held(&self, segments: u64) {
        self.with(|s| s.segments_held = segments);
    }

    pub(crate) fn rotated(&self, spare: Option<bool>) {
        self.with(|s| {
            s.rotations += 1;
            match spare {
                Some(true) => s.rotations_recycled += 1,
                Some(false) => s.rotations_prepared += 1,
                None => {}
            }
        });
    }

    pub(crate) fn snapshot(&self) -> Stats {
        lock(&self.inner).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_bucket_bounds() {
        let mut h = Histogram::default();
        for v in [0, 1, 3, 100, 1000] {
            h.record(v);
        }
        assert_eq!(h.count, 5);
        assert_eq!(h.max, 1000);
        assert_eq!(h.quantile(0.0), 1);
        assert_eq!(h.quantile(0.6), 3);
        assert_eq!(h.quantile(1.0), 1000);
        assert_eq!(Histogram::default().quantile(0.5), 0);
    }
}
