//! Running the scans: one segment per thread, on as many threads as the
//! machine has, at most a bounded number of segments ahead, with every
//! segment's parts handed to the deciding thread in LSN order.

#[cfg(not(loom))]
use std::collections::{BTreeMap, VecDeque};

use super::read::{Part, ScanJob, scan};

/// Parts of one segment read ahead of the consumer, at most: a scan waits
/// for the consumer to take one before it reads more, so the buffers the
/// consumer hands back are reused instead of new memory faulted in, and a
/// segment is never all in memory just because the consumer is slower.
/// One is enough to keep a fast consumer busy: W4 replayed as fast with
/// one as with two (alternating runs), and three parts in memory per
/// segment scanned (the consumer's, the queued one, the one being read)
/// instead of four.
#[cfg(not(loom))]
const PARTS_QUEUED_MAX: usize = 1;

/// Under loom the scan runs on the calling thread, lazily: the models are
/// about the group-commit hand-off, and real threads have no place in a loom
/// model.
#[cfg(loom)]
pub(super) fn with_scans<R>(
    job: &ScanJob<'_>,
    names: &[(String, u64)],
    keep: &(dyn Fn(usize) -> bool + Sync),
    _ahead: usize,
    consume: impl FnOnce(&mut dyn Iterator<Item = Part>) -> R,
) -> R {
    let mut parts = names.iter().enumerate().flat_map(|(k, (name, lsn))| {
        let mut parts = Vec::new();
        let scanned = scan(job, name.clone(), *lsn, keep(k), &mut |p| parts.push(p));
        parts.push(Part::Done(scanned.map(Box::new)));
        parts
    });
    consume(&mut parts)
}

/// Scans segments on as many threads as the machine has and hands their
/// parts to `consume` in LSN order as they are ready, so a segment is
/// decided on (and its records handed out) while later ones, and the rest
/// of it, are still read. Scans run at most `ahead` segments past the one
/// `consume` is at.
#[cfg(not(loom))]
pub(super) fn with_scans<R>(
    job: &ScanJob<'_>,
    names: &[(String, u64)],
    keep: &(dyn Fn(usize) -> bool + Sync),
    ahead: usize,
    consume: impl FnOnce(&mut dyn Iterator<Item = Part>) -> R,
) -> R {
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(ahead)
        .min(names.len())
        .max(1);
    let feed = Feed::default();
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                // Unblocks the consumer if this thread panics: it must not
                // wait for a segment that will never come.
                let _guard = feed.guard();
                loop {
                    let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((name, lsn)) = names.get(k) else {
                        break;
                    };
                    if !feed.wait_turn(k, ahead) {
                        break;
                    }
                    let scanned = scan(job, name.clone(), *lsn, keep(k), &mut |p| feed.put(k, p));
                    feed.put(k, Part::Done(scanned.map(Box::new)));
                }
            });
        }
        let mut parts = InOrder {
            feed: &feed,
            next: 0,
            count: names.len(),
        };
        consume(&mut parts)
    })
}

/// Parts handed from the scan threads to the consumer.
#[cfg(not(loom))]
#[derive(Default)]
struct Feed {
    state: std::sync::Mutex<FeedState>,
    changed: std::sync::Condvar,
}

#[cfg(not(loom))]
#[derive(Default)]
struct FeedState {
    parts: BTreeMap<usize, VecDeque<Part>>,
    /// Segments the consumer has taken whole.
    taken: usize,
    /// The consumer is gone: scan no more.
    stop: bool,
    /// A scan thread died.
    panicked: bool,
}

#[cfg(not(loom))]
impl Feed {
    fn lock(&self) -> std::sync::MutexGuard<'_, FeedState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits until segment `k` is within `ahead` of the consumer; false if
    /// the consumer is gone.
    fn wait_turn(&self, k: usize, ahead: usize) -> bool {
        let mut st = self.lock();
        while !st.stop && k >= st.taken.saturating_add(ahead) {
            st = self
                .changed
                .wait(st)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        !st.stop
    }

    /// Queues segment `k`'s next part, once fewer than
    /// [`PARTS_QUEUED_MAX`] of its parts wait for the consumer (or the
    /// consumer is gone: then the part is dropped).
    fn put(&self, k: usize, part: Part) {
        let mut st = self.lock();
        while !st.stop
            && st
                .parts
                .get(&k)
                .is_some_and(|q| q.len() >= PARTS_QUEUED_MAX)
        {
            st = self
                .changed
                .wait(st)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        if st.stop {
            return;
        }
        st.parts.entry(k).or_default().push_back(part);
        drop(st);
        self.changed.notify_all();
    }

    fn guard(&self) -> FeedGuard<'_> {
        FeedGuard(self)
    }
}

/// Marks the feed as broken when a scan thread unwinds.
#[cfg(not(loom))]
struct FeedGuard<'a>(&'a Feed);

#[cfg(not(loom))]
impl Drop for FeedGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.lock().panicked = true;
            self.0.changed.notify_all();
        }
    }
}

/// The consumer's side of a [`Feed`]: parts in segment order.
#[cfg(not(loom))]
struct InOrder<'a> {
    feed: &'a Feed,
    next: usize,
    count: usize,
}

#[cfg(not(loom))]
impl Iterator for InOrder<'_> {
    type Item = Part;

    fn next(&mut self) -> Option<Part> {
        if self.next >= self.count {
            return None;
        }
        let mut st = self.feed.lock();
        loop {
            if let Some(part) = st.parts.get_mut(&self.next).and_then(VecDeque::pop_front) {
                if matches!(part, Part::Done(_)) {
                    st.parts.remove(&self.next);
                    self.next += 1;
                    st.taken = self.next;
                }
                // A scan may be waiting for room in its queue, or its turn.
                drop(st);
                self.feed.changed.notify_all();
                return Some(part);
            }
            // The scope re-raises the scan thread's panic after this one.
            assert!(!st.panicked, "a recovery scan thread panicked");
            st = self
                .feed
                .changed
                .wait(st)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

#[cfg(not(loom))]
impl Drop for InOrder<'_> {
    fn drop(&mut self) {
        self.feed.lock().stop = true;
        self.feed.changed.notify_all();
    }
}
