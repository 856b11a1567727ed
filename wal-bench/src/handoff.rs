//! The hand-off probe: how many times per second this machine can park a
//! thread and have another wake it, with `threads` threads doing nothing
//! else. A durable commit from many threads (W2, K1 and K3 with many
//! threads) parks its thread until a sync covers it and is woken by
//! whoever did the sync: whatever the disk, no such design completes more
//! commits per second than this (on two cores the context switches, not
//! the disk, are the limit there).
//!
//! The design is the plainest: each thread registers and parks; one
//! releaser takes everything registered and unparks it, round after round.
//! No I/O, no encoding, no sync: the releaser's round costs only the wakes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use crate::workload::Measured;

/// One parked thread: released once `done` is set.
struct Parked {
    done: AtomicBool,
    thread: Thread,
}

/// What the threads share.
#[derive(Default)]
struct Board {
    registered: Mutex<Vec<Arc<Parked>>>,
    stop: AtomicBool,
    handoffs: AtomicU64,
}

impl Board {
    /// Swaps the registered threads into `batch` (empty, its capacity kept
    /// from round to round, so the releaser allocates nothing).
    fn take(&self, batch: &mut Vec<Arc<Parked>>) {
        debug_assert!(batch.is_empty());
        std::mem::swap(
            &mut *self
                .registered
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
            batch,
        );
    }

    fn release(batch: &[Arc<Parked>]) {
        for p in batch {
            p.done.store(true, Ordering::Release);
            p.thread.unpark();
        }
    }
}

/// Runs the probe for about `budget`: hand-offs completed per second.
///
/// # Errors
/// A thread that could not be started.
pub fn probe(threads: u32, budget: Duration) -> Result<Measured, String> {
    let board = Arc::new(Board::default());
    let mut handles = Vec::new();
    for _ in 0..threads.max(1) {
        let mine = board.clone();
        let handle = thread::Builder::new()
            .name("handoff".into())
            .spawn(move || park_loop(&mine))
            .map_err(|e| format!("start a thread: {e}"));
        match handle {
            Ok(h) => handles.push(h),
            Err(e) => {
                stop(&board, handles);
                return Err(e);
            }
        }
    }
    let start = Instant::now();
    let counted_from = board.handoffs.load(Ordering::Relaxed);
    let mut batch = Vec::with_capacity(threads as usize);
    while start.elapsed() < budget {
        board.take(&mut batch);
        if batch.is_empty() {
            thread::yield_now();
        }
        Board::release(&batch);
        batch.clear();
    }
    let seconds = start.elapsed().as_secs_f64();
    let ops = board.handoffs.load(Ordering::Relaxed) - counted_from;
    stop(&board, handles);
    Ok(Measured {
        ops,
        seconds,
        ..Measured::default()
    })
}

/// A thread's life: register, park until released, count, again. One
/// registration serves every round: nothing is allocated per hand-off.
fn park_loop(board: &Board) {
    let me = Arc::new(Parked {
        done: AtomicBool::new(false),
        thread: thread::current(),
    });
    while !board.stop.load(Ordering::Acquire) {
        me.done.store(false, Ordering::Relaxed);
        board
            .registered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(me.clone());
        while !me.done.load(Ordering::Acquire) {
            thread::park();
        }
        board.handoffs.fetch_add(1, Ordering::Relaxed);
    }
}

/// Stops the threads: releases whoever registers until all have ended.
fn stop(board: &Board, handles: Vec<thread::JoinHandle<()>>) {
    board.stop.store(true, Ordering::Release);
    let mut batch = Vec::new();
    while !handles.iter().all(thread::JoinHandle::is_finished) {
        board.take(&mut batch);
        Board::release(&batch);
        batch.clear();
        thread::sleep(Duration::from_millis(1));
    }
    for h in handles {
        let _ = h.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-offs complete, and the probe returns: every thread it started
    /// was released and joined.
    #[test]
    fn hand_offs_complete_and_every_thread_stops() {
        let m = probe(4, Duration::from_millis(50)).unwrap();
        assert!(m.ops > 0, "no hand-off completed");
    }
}
