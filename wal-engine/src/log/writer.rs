//! The writers and the rounds they do. One round takes the pending frame
//! out of the shared state, places it (placement.rs), and submits it: the
//! buffered writer with `pwrite` and `fdatasync`, the pipelined one
//! ([`Pipe`]) as an O_DIRECT write in flight among others. The owner thread
//! does rounds nobody waits on; a committer that finds the writer idle
//! leads its own round instead of waking the owner and waiting to be woken
//! back.

use std::time::Instant;

use wal_format::{FrameBuf, FrameBuilder};
use wal_io::{FileOptions, IoError, IoQueue, Storage};

use super::durability::{Failure, Woken};
use super::pipe::Pipe;
use super::placement::{place, placed};
use super::policy::{Decision, decide};
use super::state::{Io, IoGuard, Shared};
use crate::Options;
use crate::segment::SegMeta;
use crate::sync::Ordering;

/// How the active segment is written: the one source of that truth.
pub(crate) enum Writer {
    /// `pwrite` and `fdatasync` through the segment's own descriptor, one
    /// round at a time. `queue` is the pipelined writer's queue, kept for
    /// when a log with [`Options::direct_io`] moves on from a segment
    /// written without it.
    Buffered { queue: Option<Box<dyn IoQueue>> },
    /// O_DIRECT writes of padded segments, several in flight.
    Pipelined(Box<Pipe>),
}

impl Writer {
    /// The writer for a log opened with `options`, before its first segment.
    pub(super) fn new(storage: &dyn Storage, options: &Options) -> Result<Writer, IoError> {
        let queue = if options.direct_io {
            // One more slot than writes, for the sync a policy may add.
            Some(storage.queue(options.writes_in_flight_max + 1)?)
        } else {
            None
        };
        Ok(Writer::Buffered { queue })
    }

    /// Switches to the writer segment `meta` needs: pipelined for a padded
    /// segment of a log with [`Options::direct_io`], buffered otherwise.
    /// Everything up to `durable` is durable. Nothing may be in flight.
    pub(super) fn switch_to(
        &mut self,
        meta: &SegMeta,
        storage: &dyn Storage,
        options: &Options,
        durable: u64,
    ) -> Result<(), IoError> {
        let pipelined = meta.padded && options.direct_io;
        let old = std::mem::replace(self, Writer::Buffered { queue: None });
        *self = match (old, pipelined) {
            (Writer::Pipelined(mut pipe), true) => {
                pipe.restart(storage.open(&meta.name, FileOptions::DIRECT)?, durable);
                Writer::Pipelined(pipe)
            }
            (Writer::Buffered { queue: Some(queue) }, true) => {
                let file = storage.open(&meta.name, FileOptions::DIRECT)?;
                Writer::Pipelined(Box::new(Pipe::new(queue, file, durable)))
            }
            (Writer::Pipelined(pipe), false) => Writer::Buffered {
                queue: Some(pipe.into_queue()),
            },
            (Writer::Buffered { queue }, _) => Writer::Buffered { queue },
        };
        Ok(())
    }

    pub(super) fn writes_in_flight(&self) -> usize {
        match self {
            Writer::Buffered { .. } => 0,
            Writer::Pipelined(pipe) => pipe.writes_in_flight(),
        }
    }

    fn is_idle(&self) -> bool {
        match self {
            Writer::Buffered { .. } => true,
            Writer::Pipelined(pipe) => pipe.is_idle(),
        }
    }
}

/// What the owner decided to do in one round.
struct Round {
    frame: Option<FrameBuilder>,
    sync: bool,
    /// The durable LSN when the round was taken (frames record it).
    durable: u64,
}

/// Takes the next round if the policy has one: the pending frame moves out
/// of the shared state into `io.batch`, so appenders fill a fresh one
/// meanwhile.
fn take_round(shared: &Shared, io: &mut Io) -> Option<Round> {
    let mut st = shared.state();
    let Decision::Round { write, sync } = decide(&st.view(), &shared.options, Instant::now())
    else {
        return None;
    };
    let frame = if write { st.frame.take() } else { None };
    if frame.is_some() {
        std::mem::swap(&mut st.buf, &mut io.batch);
        st.pending_since = None;
        if st.space_waiters > 0 {
            shared.space.notify_all();
        }
    }
    Some(Round {
        frame,
        sync,
        durable: st.durable,
    })
}

/// Submits one round: places its frame and writes it with the active
/// segment's writer, then syncs by the round. The buffered writer publishes
/// what it did; the pipelined one queues it, to be published as it
/// completes. Returns false if the round needed nothing done: a sync that
/// what is in flight already gives.
fn submit(shared: &Shared, io: &mut Io, round: Round, woken: &mut Woken) -> Result<bool, Failure> {
    let Some(frame) = round.frame else {
        return sync_only(shared, io, woken);
    };
    // The first write since open takes a kept clean-close record away first.
    io.retire_clean_close(&*shared.storage)?;
    let span = tracing::debug_span!(
        "wal.batch",
        first_lsn = frame.first_lsn(),
        records = frame.record_count(),
        bytes = io.batch.len()
    );
    let _enter = span.enter();
    let (at, summary) = place(shared, io, frame, round.durable, woken)?;
    let last_lsn = summary.next_lsn() - 1;
    match &mut io.writer {
        Writer::Buffered { .. } => {
            io.active.meta.file.write_at(at, &[io.batch.as_slice()])?;
            placed(shared, io, at, &summary);
            let durable = if round.sync {
                sync_active(shared, io)?;
                Some(last_lsn)
            } else {
                None
            };
            woken.extend(shared.publish(Ok((Some(last_lsn), durable))));
        }
        Writer::Pipelined(pipe) => {
            // The batch's own buffer is the write: appenders fill a free
            // one next. Every write starts a block of its own: two writes
            // in flight must never share one (whichever lands last would
            // undo the other), and a write must never rewrite a block
            // holding acknowledged frames, which a torn or damaged write of
            // that block would take with it.
            let buf = std::mem::replace(&mut io.batch, pipe.buffer()).into_io_buf();
            pipe.queue_write(at, buf, last_lsn, round.sync)?;
            placed(shared, io, at, &summary);
        }
    }
    Ok(true)
}

/// A round with nothing to write and a sync to do.
fn sync_only(shared: &Shared, io: &mut Io, woken: &mut Woken) -> Result<bool, Failure> {
    match &mut io.writer {
        Writer::Buffered { .. } => {
            sync_active(shared, io)?;
            let written = shared.written.load(Ordering::Acquire);
            woken.extend(shared.publish(Ok((None, Some(written)))));
            Ok(true)
        }
        Writer::Pipelined(pipe) => Ok(pipe.queue_sync_if_owed()?),
    }
}

fn sync_active(shared: &Shared, io: &Io) -> Result<(), IoError> {
    let start = Instant::now();
    io.active.meta.file.sync_data()?;
    shared.stats.synced(start.elapsed());
    Ok(())
}

/// Queues (pipelined) or does (buffered) rounds while the policy has some
/// and the pipe has room; returns how many it took. A buffered round is
/// done when this returns, so it does one at a time: its waiters are woken
/// before the next. A round that needed nothing done ends the filling: the
/// policy would decide the same again until something completes.
fn fill(shared: &Shared, io: &mut Io, woken: &mut Woken) -> usize {
    let depth = shared.options.writes_in_flight_max as usize;
    let mut taken = 0;
    loop {
        let room = match &io.writer {
            Writer::Buffered { .. } => taken == 0,
            Writer::Pipelined(pipe) => pipe.has_room(depth),
        };
        if !room {
            return taken;
        }
        let Some(round) = take_round(shared, io) else {
            return taken;
        };
        let result = submit(shared, io, round, woken);
        // The frame is in the write's buffer now, or was written, or the
        // round failed: the next round swaps an empty buffer in.
        io.batch.clear();
        match result {
            Ok(true) => taken += 1,
            Ok(false) => return taken,
            Err(failure) => {
                fail(shared, io, failure, woken);
                return taken + 1;
            }
        }
    }
}

/// A round failed. The buffered writer poisons the log now; the pipelined
/// one once what is in flight has finished (nothing after the failure is
/// counted).
fn fail(shared: &Shared, io: &mut Io, failure: Failure, woken: &mut Woken) {
    match (&mut io.writer, failure) {
        (Writer::Pipelined(pipe), Failure::Io(e)) => {
            pipe.failed.get_or_insert(e);
        }
        (Writer::Pipelined(pipe), failure) => {
            pipe.wait_all();
            woken.extend(shared.publish(Err(failure)));
        }
        (Writer::Buffered { .. }, failure) => woken.extend(shared.publish(Err(failure))),
    }
}

/// Submits what the pipe has queued and reaps one set of completions,
/// publishing the completed prefix, or, after a failure, waits for
/// everything in flight and poisons the log.
fn reap(shared: &Shared, io: &mut Io, woken: &mut Woken) {
    let Writer::Pipelined(pipe) = &mut io.writer else {
        return;
    };
    pipe.submit();
    if pipe.failed.is_none() && !pipe.is_idle() {
        let moved = pipe.reap(&shared.stats);
        if pipe.failed.is_none() && (moved.0.is_some() || moved.1.is_some()) {
            woken.extend(shared.publish(Ok(moved)));
        }
    }
    if let Some(e) = pipe.failed.take() {
        pipe.wait_all();
        woken.extend(shared.publish(Err(Failure::Io(e))));
    }
}

/// Waits for everything in flight and publishes it (before a rotation or a
/// truncation replaces the active segment).
pub(super) fn drain(shared: &Shared, io: &mut Io, woken: &mut Woken) -> Result<(), Failure> {
    let Writer::Pipelined(pipe) = &mut io.writer else {
        return Ok(());
    };
    pipe.submit();
    while pipe.failed.is_none() && !pipe.is_idle() {
        let moved = pipe.reap(&shared.stats);
        if pipe.failed.is_none() && (moved.0.is_some() || moved.1.is_some()) {
            woken.extend(shared.publish(Ok(moved)));
        }
    }
    match pipe.failed.take() {
        Some(e) => {
            pipe.wait_all();
            Err(Failure::Io(e))
        }
        None => Ok(()),
    }
}

/// Does rounds with the `io` lock, waking what each one decides with the
/// lock released. The owner (`lead` false) keeps going until nothing is in
/// flight and nothing is due; a committer leading (`lead` true) takes one
/// round (or fills the pipe once) and then waits for what is in flight.
///
/// The pipelined writer lets the lock go between two reaps to wake what the
/// first decided, then takes it back if it is free. If it is not, whoever
/// holds it reaps what is in flight: every holder of the `io` lock drives
/// or drains the pipe before it lets go ([`Shared::io_drained`]), so writes
/// in flight are never left without one. Returns whether it took a round.
fn drive<'a>(shared: &'a Shared, mut io: IoGuard<'a>, lead: bool) -> bool {
    let mut took = false;
    let mut first = true;
    loop {
        let mut woken = Woken::none();
        let taken = if first || !lead {
            fill(shared, &mut io, &mut woken)
        } else {
            0
        };
        first = false;
        took |= taken > 0;
        reap(shared, &mut io, &mut woken);
        let idle = io.writer.is_idle();
        let buffered = matches!(io.writer, Writer::Buffered { .. });
        if idle && (lead || buffered || taken == 0) {
            if buffered {
                // Committers unparked while this round still holds `io` find
                // the writer busy when they commit again, append and park:
                // the next round takes them all. Unparked after it lets go,
                // the first of them leads a round of its own and batches
                // shrink (W2 with 64 threads: 0.79 to 0.95 as fast). An
                // unpark runs no code of the caller's; callbacks and task
                // wakers still run with no lock held.
                woken.unpark_threads();
            }
            drop(io);
            woken.fire();
            if lead {
                wake_owner_if_owed(shared);
            }
            return took;
        }
        if !woken.is_empty() {
            drop(io);
            woken.fire();
            match shared.try_io() {
                Some(again) => io = again,
                None => return took,
            }
        }
    }
}

/// After a leader lets go of `io`: wakes the owner if a round is due that
/// no one was told of. A round can write without syncing (`Interval`,
/// `Never`), and a committer whose record it wrote may have woken the owner
/// while the leader held `io`, when the owner found nothing to do and went
/// back to sleep; that committer would wait for ever (a loom model found
/// it). A frame still pending was told of when the round published.
fn wake_owner_if_owed(shared: &Shared) {
    let st = shared.state();
    let owed = st.frame.is_none()
        && matches!(
            decide(&st.view(), &shared.options, Instant::now()),
            Decision::Round { .. }
        );
    drop(st);
    if owed {
        shared.work.notify_one();
    }
}

impl Shared {
    /// Takes the `io` lock with nothing in flight: what the pipelined
    /// writer has in flight is reaped and published first. For everything
    /// that takes the lock to do other than rounds (truncation, closing).
    /// The waiters returned are to be woken once the lock is released.
    pub(super) fn io_drained(&self) -> (IoGuard<'_>, Woken, Result<(), Failure>) {
        let mut io = self.io();
        let mut woken = Woken::none();
        let drained = drain(self, &mut io, &mut woken);
        (io, woken, drained)
    }

    /// Does the next round on the calling thread if no one else is doing
    /// I/O. Returns whether it did one.
    pub(super) fn try_lead(&self) -> bool {
        match self.try_io() {
            Some(io) => drive(self, io, true),
            None => false,
        }
    }
}

/// The owner thread: waits for work, then does rounds, until the log closes
/// (after writing and syncing everything) or is poisoned.
pub(super) fn run_owner(shared: &Shared) {
    loop {
        {
            let mut st = shared.state();
            loop {
                match decide(&st.view(), &shared.options, Instant::now()) {
                    Decision::Round { .. } => break,
                    Decision::Stop => return,
                    Decision::Wait(timeout) => {
                        st = st.wait(&shared.work, timeout);
                        st.owner_wakes += 1;
                    }
                }
            }
        }
        // A leader may have taken the round meanwhile; then there is
        // nothing left to do.
        drive(shared, shared.io(), false);
    }
}
