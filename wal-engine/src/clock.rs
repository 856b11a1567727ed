//! The wall clock a log stamps each frame with (format version 4): the
//! commit's time in microseconds since the Unix epoch, informational and
//! never going backwards within a log, whatever the clock does.

use std::sync::Arc;

/// Where a log reads the time. [`Clock::system`] by default; tests inject
/// their own (a clock that jumps, or goes backwards).
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::sync::Arc;
///
/// let now = Arc::new(AtomicU64::new(1_000));
/// let seen = Arc::clone(&now);
/// let clock = wal_engine::Clock::new(move || seen.load(Ordering::Relaxed));
/// assert_eq!(clock.now_us(), 1_000);
/// ```
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> u64 + Send + Sync>);

impl Clock {
    /// The system's real-time clock (0 if it reads before the epoch).
    pub fn system() -> Clock {
        Clock(Arc::new(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        }))
    }

    /// A clock that reads `now` (microseconds since the Unix epoch).
    pub fn new(now: impl Fn() -> u64 + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(now))
    }

    /// The time now, in microseconds since the Unix epoch.
    pub fn now_us(&self) -> u64 {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}
