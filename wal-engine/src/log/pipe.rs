//! The pipelined writer of [`Options::direct_io`](crate::Options::direct_io):
//! O_DIRECT writes of whole blocks through a queue, several in flight, each
//! durable on completion (`RWF_DSYNC`) when the policy syncs. The durable
//! LSN advances over the completed prefix of the queue, never past a write
//! that has not completed, nor past a plain write no completed sync covers.

use std::collections::VecDeque;
use std::time::Instant;

use wal_io::{Completion, FileRef, IoBuf, IoError, IoQueue};

use crate::stats::StatsCollector;
use crate::write_buf::WriteBuf;

/// Capacity of a new batch buffer when no completed write has handed one
/// back: most batches fit, and a buffer a larger batch grew is reused at its
/// grown size.
const PIPE_BUF_BYTES_MIN: usize = 64 << 10;

pub(crate) struct Pipe {
    queue: Box<dyn IoQueue>,
    /// The O_DIRECT handle of the active segment.
    file: FileRef,
    /// Writes and syncs in flight, in the order they were queued.
    flights: VecDeque<Flight>,
    /// Aligned buffers handed back by completed writes, for reuse.
    free: Vec<IoBuf>,
    next_token: u64,
    /// The last LSN of the last write queued.
    queued: u64,
    /// A write without `RWF_DSYNC` was queued after the last sync: a later
    /// durable write would not cover it, so a sync must follow instead.
    unsynced: bool,
    /// The same, for the completed prefix of `flights`.
    prefix_unsynced: bool,
    /// The first failure: nothing is queued after it, nothing after it
    /// counts, and it poisons the log once the queue is idle.
    pub(super) failed: Option<IoError>,
    completions: Vec<Completion>,
}

#[derive(Debug)]
struct Flight {
    token: u64,
    done: bool,
    started: Instant,
    kind: FlightKind,
}

#[derive(Debug)]
enum FlightKind {
    Write { last_lsn: u64, durable: bool },
    Sync { upto: u64 },
}

/// Watermarks a completion moved: (written, durable).
pub(super) type Moved = (Option<u64>, Option<u64>);

impl Pipe {
    /// A pipe writing `file`, everything up to `durable` durable already.
    pub(super) fn new(queue: Box<dyn IoQueue>, file: FileRef, durable: u64) -> Self {
        Pipe {
            queue,
            file,
            flights: VecDeque::new(),
            free: Vec::new(),
            next_token: 0,
            queued: durable,
            unsynced: false,
            prefix_unsynced: false,
            failed: None,
            completions: Vec::new(),
        }
    }

    /// Moves on to the segment `file`, everything up to `durable` durable
    /// by other means (a rotation's seal and sync, a truncation). Nothing
    /// may be in flight.
    pub(super) fn restart(&mut self, file: FileRef, durable: u64) {
        assert!(
            self.flights.is_empty(),
            "the pipe moves on with writes in flight"
        );
        self.file = file;
        self.queued = durable;
        self.unsynced = false;
        self.prefix_unsynced = false;
    }

    pub(super) fn into_queue(self) -> Box<dyn IoQueue> {
        self.queue
    }

    pub(super) fn is_idle(&self) -> bool {
        self.flights.is_empty()
    }

    pub(super) fn writes_in_flight(&self) -> usize {
        self.flights
            .iter()
            .filter(|f| matches!(f.kind, FlightKind::Write { .. }))
            .count()
    }

    /// Whether another round may be queued: no failure, and fewer than
    /// `depth` writes (and at most `depth` operations) in flight.
    pub(super) fn has_room(&self, depth: usize) -> bool {
        self.failed.is_none() && self.writes_in_flight() < depth && self.flights.len() <= depth
    }

    /// An empty buffer for the next batch, reused where one is free.
    pub(super) fn buffer(&mut self) -> WriteBuf {
        match self.free.pop() {
            Some(b) => WriteBuf::from_io_buf(b),
            None => WriteBuf::with_capacity(PIPE_BUF_BYTES_MIN),
        }
    }

    fn push(&mut self, kind: FlightKind) -> u64 {
        let token = self.next_token;
        self.next_token += 1;
        self.flights.push_back(Flight {
            token,
            done: false,
            started: Instant::now(),
            kind,
        });
        token
    }

    /// Queues `buf` (a frame whose last LSN is `last_lsn`) at `at`, durable
    /// on completion if `sync`. With a plain write not yet synced in front,
    /// `RWF_DSYNC` on this one would not cover that one: it is written
    /// plainly and a sync follows both.
    pub(super) fn queue_write(
        &mut self,
        at: u64,
        buf: IoBuf,
        last_lsn: u64,
        sync: bool,
    ) -> Result<(), IoError> {
        let dsync = sync && !self.unsynced;
        let token = self.push(FlightKind::Write {
            last_lsn,
            durable: dsync,
        });
        self.queue.push_write(token, &self.file, at, buf, dsync)?;
        self.queued = last_lsn;
        if !dsync {
            self.unsynced = true;
            if sync {
                self.queue_sync()?;
            }
        }
        Ok(())
    }

    /// Queues a sync of everything queued, where a sync is still owed: a
    /// plain write was queued since the last one, or (with nothing in
    /// flight) the caller knows of written records no sync covered.
    /// Otherwise every write queued is durable when it completes, and
    /// waiting for the completions is all there is to do. Returns whether it
    /// queued one.
    pub(super) fn queue_sync_if_owed(&mut self) -> Result<bool, IoError> {
        if !self.unsynced && !self.flights.is_empty() {
            return Ok(false);
        }
        self.queue_sync()?;
        Ok(true)
    }

    fn queue_sync(&mut self) -> Result<(), IoError> {
        let upto = self.queued;
        let token = self.push(FlightKind::Sync { upto });
        self.queue.push_sync(token, &self.file)?;
        self.unsynced = false;
        Ok(())
    }

    /// Submits what is queued; a failure to submit is the pipe's failure.
    pub(super) fn submit(&mut self) {
        if let Err(e) = self.queue.submit() {
            self.failed.get_or_insert(e);
        }
    }

    /// Waits for at least one completion (submitting what is queued) and
    /// marks what completed. Returns the new written and durable watermarks
    /// of the completed prefix, if they moved.
    pub(super) fn reap(&mut self, stats: &StatsCollector) -> Moved {
        self.completions.clear();
        if let Err(e) = self.queue.wait(1, &mut self.completions) {
            // Waiting itself failed: what is in flight is unknown.
            self.failed.get_or_insert(e);
            self.wait_all();
            return (None, None);
        }
        for c in self.completions.drain(..) {
            if let Some(buf) = c.buf {
                self.free.push(buf);
            }
            if let Some(f) = self.flights.iter_mut().find(|f| f.token == c.token) {
                f.done = true;
                if let Err(e) = c.result {
                    self.failed.get_or_insert(e);
                }
            }
        }
        if self.failed.is_some() {
            return (None, None);
        }
        self.pop_completed(stats)
    }

    /// Takes the completed prefix of the flights off the queue.
    fn pop_completed(&mut self, stats: &StatsCollector) -> Moved {
        let (mut written, mut durable) = (None, None);
        while let Some(f) = self.flights.pop_front() {
            if !f.done {
                self.flights.push_front(f);
                break;
            }
            match f.kind {
                FlightKind::Write {
                    last_lsn,
                    durable: dsync,
                } => {
                    written = Some(last_lsn);
                    if dsync && !self.prefix_unsynced {
                        durable = Some(last_lsn);
                        stats.synced(f.started.elapsed());
                    } else if !dsync {
                        self.prefix_unsynced = true;
                    }
                }
                FlightKind::Sync { upto } => {
                    durable = Some(upto);
                    self.prefix_unsynced = false;
                    stats.synced(f.started.elapsed());
                }
            }
        }
        (written, durable)
    }

    /// After a failure: waits for everything in flight, counting nothing.
    pub(super) fn wait_all(&mut self) {
        while !self.flights.is_empty() {
            self.completions.clear();
            if self.queue.wait(usize::MAX, &mut self.completions).is_err()
                || self.queue.in_flight() == 0
            {
                break;
            }
            for c in self.completions.drain(..) {
                self.flights.retain(|f| f.token != c.token);
            }
        }
        self.flights.clear();
    }
}
