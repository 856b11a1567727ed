//! The sync policy as a pure function: what the next round of I/O does,
//! from a snapshot of the state and the clock. No threads, no locks.

use std::time::{Duration, Instant};

use crate::{Options, SyncPolicy};

/// What the policy needs to know of the state.
#[derive(Debug, Clone, Copy)]
pub(super) struct View {
    /// The first LSN of the pending frame, if one is pending.
    pub(super) first_pending: Option<u64>,
    /// Bytes pending in it.
    pub(super) pending_bytes: usize,
    /// When its first record arrived.
    pub(super) pending_since: Option<Instant>,
    pub(super) written: u64,
    pub(super) durable: u64,
    /// The highest LSN a caller asked to make durable.
    pub(super) sync_upto: u64,
    pub(super) last_sync: Instant,
    pub(super) closing: bool,
    pub(super) poisoned: bool,
    /// An appender waits for room in the frame: what is pending must go
    /// out, whatever the policy's threshold (a batch that does not fit the
    /// frame would otherwise wait for ever under `Never`).
    pub(super) space_wanted: bool,
}

/// What the next round does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decision {
    /// Write the pending frame (if `write`), sync (if `sync`).
    Round { write: bool, sync: bool },
    /// Nothing yet; look again after this long, or when notified.
    Wait(Option<Duration>),
    /// Closing, and everything is written and synced; or poisoned.
    Stop,
}

/// `since + delay`, or `None` when that is past what the clock can hold: a
/// delay that long never comes due.
fn due(since: Instant, delay: Duration) -> Option<Instant> {
    since.checked_add(delay)
}

/// Whether the policy writes the pending frame now.
fn writes(v: &View, options: &Options, now: Instant) -> bool {
    let Some(first) = v.first_pending else {
        return false;
    };
    v.closing
        || v.space_wanted
        || v.sync_upto >= first
        || match options.sync {
            SyncPolicy::Always | SyncPolicy::Interval(_) => true,
            SyncPolicy::Group {
                max_delay,
                max_batch_bytes,
            } => {
                v.pending_bytes >= max_batch_bytes
                    || v.pending_since
                        .and_then(|t| due(t, max_delay))
                        .is_some_and(|d| now >= d)
            }
            SyncPolicy::Never => v.pending_bytes >= options.frame_fill_bytes() / 2,
        }
}

/// Decides the next round.
pub(super) fn decide(v: &View, options: &Options, now: Instant) -> Decision {
    if v.poisoned {
        return Decision::Stop;
    }
    let write = writes(v, options, now);
    let unsynced = v.written > v.durable || write;
    let sync = unsynced
        && (v.closing
            || v.sync_upto > v.durable
            || match options.sync {
                SyncPolicy::Always | SyncPolicy::Group { .. } => true,
                SyncPolicy::Interval(d) => due(v.last_sync, d).is_some_and(|d| now >= d),
                SyncPolicy::Never => false,
            });
    if write || sync {
        return Decision::Round { write, sync };
    }
    if v.closing {
        return Decision::Stop;
    }
    let until = |since: Instant, delay: Duration| {
        due(since, delay).map(|d| d.saturating_duration_since(now))
    };
    Decision::Wait(match options.sync {
        SyncPolicy::Group { max_delay, .. } => v.pending_since.and_then(|t| until(t, max_delay)),
        SyncPolicy::Interval(d) if v.written > v.durable => until(v.last_sync, d),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idle(now: Instant) -> View {
        View {
            first_pending: None,
            pending_bytes: 0,
            pending_since: None,
            written: 10,
            durable: 10,
            sync_upto: 10,
            last_sync: now,
            closing: false,
            poisoned: false,
            space_wanted: false,
        }
    }

    fn options(sync: SyncPolicy) -> Options {
        Options {
            sync,
            ..Options::default()
        }
    }

    fn pending(now: Instant, bytes: usize) -> View {
        View {
            first_pending: Some(11),
            pending_bytes: bytes,
            pending_since: Some(now),
            ..idle(now)
        }
    }

    /// Under `Never` a frame below half the fill size waits for more, unless an
    /// appender waits for space: then it is written (not synced).
    #[test]
    fn never_writes_a_small_frame_once_an_appender_waits_for_space() {
        let now = Instant::now();
        let o = options(SyncPolicy::Never);
        assert_eq!(decide(&pending(now, 100), &o, now), Decision::Wait(None));
        let wanted = View {
            space_wanted: true,
            ..pending(now, 100)
        };
        let write = Decision::Round {
            write: true,
            sync: false,
        };
        assert_eq!(decide(&wanted, &o, now), write);
    }

    #[test]
    fn always_writes_and_syncs_what_is_pending_and_waits_otherwise() {
        let now = Instant::now();
        let o = options(SyncPolicy::Always);
        assert_eq!(decide(&idle(now), &o, now), Decision::Wait(None));
        assert_eq!(
            decide(&pending(now, 100), &o, now),
            Decision::Round {
                write: true,
                sync: true
            }
        );
    }

    #[test]
    fn group_waits_for_the_delay_or_the_size() {
        let now = Instant::now();
        let delay = Duration::from_millis(5);
        let o = options(SyncPolicy::Group {
            max_delay: delay,
            max_batch_bytes: 1000,
        });
        assert_eq!(
            decide(&pending(now, 100), &o, now),
            Decision::Wait(Some(delay))
        );
        let round = Decision::Round {
            write: true,
            sync: true,
        };
        assert_eq!(decide(&pending(now, 1000), &o, now), round);
        assert_eq!(decide(&pending(now, 100), &o, now + delay), round);
        // A caller waiting for the pending frame ends the delay.
        let asked = View {
            sync_upto: 11,
            ..pending(now, 100)
        };
        assert_eq!(decide(&asked, &o, now), round);
    }

    #[test]
    fn interval_writes_at_once_and_syncs_when_due() {
        let now = Instant::now();
        let d = Duration::from_secs(1);
        let o = options(SyncPolicy::Interval(d));
        assert_eq!(
            decide(&pending(now, 10), &o, now),
            Decision::Round {
                write: true,
                sync: false
            }
        );
        let unsynced = View {
            written: 12,
            ..idle(now)
        };
        assert_eq!(decide(&unsynced, &o, now), Decision::Wait(Some(d)));
        assert_eq!(
            decide(&unsynced, &o, now + d),
            Decision::Round {
                write: false,
                sync: true
            }
        );
    }

    #[test]
    fn never_writes_half_a_frame_and_syncs_only_on_request_or_close() {
        let now = Instant::now();
        let o = options(SyncPolicy::Never);
        let half = o.frame_fill_bytes() / 2;
        assert_eq!(decide(&pending(now, 10), &o, now), Decision::Wait(None));
        assert_eq!(
            decide(&pending(now, half), &o, now),
            Decision::Round {
                write: true,
                sync: false
            }
        );
        let unsynced = View {
            written: 12,
            ..idle(now)
        };
        assert_eq!(decide(&unsynced, &o, now), Decision::Wait(None));
        let asked = View {
            sync_upto: 12,
            ..unsynced
        };
        assert_eq!(
            decide(&asked, &o, now),
            Decision::Round {
                write: false,
                sync: true
            }
        );
        let closing = View {
            closing: true,
            ..unsynced
        };
        assert_eq!(
            decide(&closing, &o, now),
            Decision::Round {
                write: false,
                sync: true
            }
        );
        assert_eq!(
            decide(
                &View {
                    closing: true,
                    ..idle(now)
                },
                &o,
                now
            ),
            Decision::Stop
        );
    }

    /// A delay past what the clock can hold never comes due, and never
    /// panics (`Instant + Duration::MAX` overflows).
    #[test]
    fn delays_past_the_clock_never_come_due() {
        let now = Instant::now();
        let group = options(SyncPolicy::Group {
            max_delay: Duration::MAX,
            max_batch_bytes: 1 << 20,
        });
        assert_eq!(decide(&pending(now, 10), &group, now), Decision::Wait(None));
        let interval = options(SyncPolicy::Interval(Duration::MAX));
        let unsynced = View {
            written: 12,
            ..idle(now)
        };
        assert_eq!(decide(&unsynced, &interval, now), Decision::Wait(None));
    }

    #[test]
    fn a_poisoned_log_stops() {
        let now = Instant::now();
        let v = View {
            poisoned: true,
            ..pending(now, 100)
        };
        assert_eq!(
            decide(&v, &options(SyncPolicy::Always), now),
            Decision::Stop
        );
    }
}
