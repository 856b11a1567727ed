//! A linearizability checker for one register (a key): Wing and Gong's
//! search with Lowe's memoisation, as Knossos and Porcupine do it. An
//! operation is a write of a value or a read that saw a value (or none),
//! with the times it was invoked and answered; an operation whose outcome
//! is unknown (the connection died, the server said the outcome is
//! unknown) has no answer time: it may take effect at any point after its
//! invocation, or never.

#![allow(dead_code)] // each test file uses a part of it

use std::collections::HashSet;

/// What an operation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `SET key value`.
    Write(String),
    /// `GET key` answered this.
    Read(Option<String>),
}

/// One operation on the key.
#[derive(Debug, Clone)]
pub struct Event {
    pub op: Op,
    /// When it was sent (any monotonic clock, the same for every event).
    pub invoked: u64,
    /// When it was answered; `None`: unknown whether it took effect.
    pub answered: Option<u64>,
}

/// Whether some order of the operations, each taking effect at one point
/// between its invocation and its answer, explains every read, starting
/// from an absent key. Operations with unknown outcomes may be left out.
///
/// Write values must be unique (each write is told apart by its value).
///
/// # Panics
/// Histories of more than 4096 operations (the search is per key), and
/// searches past [`STATES_MAX`] states rather than running for hours.
pub fn check(events: &[Event]) -> bool {
    assert!(
        events.len() <= 4096,
        "{} operations on one key",
        events.len()
    );
    // A write with an unknown outcome whose value no read saw changes
    // nothing either way: leaving it out is one of its possibilities, and
    // any history it explains is explained without it. Without this, each
    // one doubles the search.
    let seen_values: HashSet<&str> = events
        .iter()
        .filter_map(|e| match &e.op {
            Op::Read(Some(v)) => Some(v.as_str()),
            _ => None,
        })
        .collect();
    let events: Vec<Event> = events
        .iter()
        .filter(|e| match &e.op {
            Op::Write(v) => e.answered.is_some() || seen_values.contains(v.as_str()),
            Op::Read(_) => true,
        })
        .cloned()
        .collect();
    let mut done = vec![0u64; events.len().div_ceil(64)];
    let mut seen = HashSet::new();
    search(&events, &mut done, None, &mut seen)
}

/// The most states a search may visit.
pub const STATES_MAX: usize = 20_000_000;

fn is_done(done: &[u64], i: usize) -> bool {
    done[i / 64] & (1 << (i % 64)) != 0
}

fn flip(done: &mut [u64], i: usize) {
    done[i / 64] ^= 1 << (i % 64);
}

/// Places the operations not yet placed (`done`, a bit set) after a
/// state holding `value`.
fn search(
    events: &[Event],
    done: &mut [u64],
    value: Option<String>,
    seen: &mut HashSet<(Vec<u64>, Option<String>)>,
) -> bool {
    // Every operation that was answered must be placed; unknown ones may
    // stay out.
    let Some(deadline) = (0..events.len())
        .filter(|&i| !is_done(done, i))
        .filter_map(|i| events[i].answered)
        .min()
    else {
        return true;
    };
    if !seen.insert((done.to_vec(), value.clone())) {
        return false;
    }
    assert!(
        seen.len() <= STATES_MAX,
        "the search is too large to finish"
    );
    // The next to take effect may be any operation not yet placed that
    // was invoked before the earliest answer of those not yet placed.
    for i in 0..events.len() {
        if is_done(done, i) || events[i].invoked > deadline {
            continue;
        }
        let next = match &events[i].op {
            Op::Write(v) => Some(v.clone()),
            Op::Read(saw) if *saw == value => value.clone(),
            Op::Read(_) => continue,
        };
        flip(done, i);
        if search(events, done, next, seen) {
            return true;
        }
        flip(done, i);
    }
    false
}
