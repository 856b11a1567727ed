//! Replaying records to a consumer while recovery reads them: which
//! segments a replay wants, handing a segment's records out early once it
//! is sure to be kept, and holding back those a later segment may still
//! cut short (`truncate_back`) until that one is known.

use std::ops::ControlFlow;

use bytes::Bytes;
use wal_format::{Frame, Record};

use super::read::Pool;
use crate::WalError;
use crate::segment::SegMeta;
use crate::sync::Arc;

/// Where a replay during open starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayFrom {
    /// The first record the log holds, wherever that is.
    Start,
    /// This LSN: [`WalError::Purged`] if the log starts after it.
    Lsn(u64),
}

impl From<u64> for ReplayFrom {
    fn from(lsn: u64) -> Self {
        ReplayFrom::Lsn(lsn)
    }
}

/// A record lent to a replay's consumer: its bytes are borrowed from the
/// part of the segment recovery read, so handing it out costs nothing per
/// record. [`Replayed::to_bytes`] keeps them without a copy.
#[derive(Clone, Copy)]
pub struct Replayed<'a> {
    /// The record's LSN.
    pub lsn: u64,
    /// Its bytes.
    pub data: &'a [u8],
    /// The frame's payload `data` is a slice of.
    payload: &'a Bytes,
}

impl std::fmt::Debug for Replayed<'_> {
    // Not the payload: it is a whole frame.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replayed")
            .field("lsn", &self.lsn)
            .field("len", &self.data.len())
            .finish()
    }
}

impl Replayed<'_> {
    /// The bytes as an owned [`Bytes`] that shares the buffer recovery read
    /// them into: no copy, one reference-count update. A kept slice keeps
    /// that whole buffer in memory (2 to 4 MiB resident for a segment's
    /// usual part), and the buffer is not reused for later parts; copy
    /// small records that are kept long.
    pub fn to_bytes(&self) -> Bytes {
        self.payload.slice_ref(self.data)
    }

    /// The record as an owned [`Record`] (see [`Replayed::to_bytes`]).
    pub fn to_record(&self) -> Record {
        Record {
            lsn: self.lsn,
            data: self.to_bytes(),
        }
    }
}

/// A replay of records to its consumer while recovery reads them.
pub(crate) struct Replay<'a> {
    from: ReplayFrom,
    each: &'a mut dyn FnMut(Replayed<'_>) -> ControlFlow<()>,
    /// The consumer asked for no more records.
    stopped: bool,
    /// Where the replay starts, once the log's first segment is known.
    start: Option<u64>,
    /// The last segment kept, whose records wait for the next one.
    pending: Option<Undelivered>,
}

impl<'a> Replay<'a> {
    pub(crate) fn new(
        from: ReplayFrom,
        each: &'a mut dyn FnMut(Replayed<'_>) -> ControlFlow<()>,
    ) -> Self {
        Replay {
            from,
            each,
            stopped: false,
            start: None,
            pending: None,
        }
    }
}

/// Whether segment `k` of `names` (sorted by first LSN) may hold a record a
/// replay from `from` wants: it holds none at or past the next one's first
/// LSN.
pub(super) fn wants(from: ReplayFrom, names: &[(String, u64)], k: usize) -> bool {
    match from {
        ReplayFrom::Start => true,
        ReplayFrom::Lsn(from) => names.get(k + 1).is_none_or(|&(_, next)| next > from),
    }
}

/// A segment kept in the log whose records a replay has yet to hand out:
/// those at or past the first LSN of the segment after it are handed out
/// once that one is known, as it may cut this one short (`truncate_back`).
struct Undelivered {
    meta: Arc<SegMeta>,
    frames: Vec<Frame>,
    /// The parts `frames` are slices of, to reuse once they are handed out.
    parts: Vec<Bytes>,
    /// The LSN after its valid prefix's last record.
    next_lsn: u64,
    /// Records below this LSN were handed out already.
    floor: u64,
}

/// One segment's record frames as its scan hands them over, until the
/// segment is judged.
pub(super) struct Incoming {
    /// Frames whose records are not handed out yet.
    frames: Vec<Frame>,
    /// The parts `frames` are slices of.
    parts: Vec<Bytes>,
    /// Records below the next segment's first LSN are this segment's
    /// whatever that one turns out to be (`u64::MAX` for the last segment).
    limit: u64,
    /// Whether (and from where) this segment's records go out as its parts
    /// arrive: once its header shows it will be kept unless the log refuses
    /// to open, the segment before it is settled too. Then only those at or
    /// past `limit` are held.
    early: Option<u64>,
}

impl Incoming {
    /// Nothing received yet of a segment whose records end below `limit`.
    pub(super) fn new(limit: u64) -> Self {
        Incoming {
            frames: Vec::new(),
            parts: Vec::new(),
            limit,
            early: None,
        }
    }

    /// The segment's header shows it will be kept unless the log refuses to
    /// open: `prev`, the segment kept before it, ends at its first LSN, and
    /// records go out from here on as they arrive, if the replay wants them.
    pub(super) fn start_early(
        &mut self,
        replay: &mut Replay<'_>,
        first_lsn: u64,
        prev: Option<&Arc<SegMeta>>,
        pool: &Pool,
    ) {
        if replay.stopped {
            return;
        }
        let from = match (replay.start, replay.from) {
            (Some(from), _) => from,
            (None, ReplayFrom::Start) => first_lsn,
            (None, ReplayFrom::Lsn(lsn)) if lsn >= first_lsn => lsn,
            // Before this segment: whether that is an error is for the
            // judgement of the whole segment to say.
            (None, ReplayFrom::Lsn(_)) => return,
        };
        replay.start = Some(from);
        if let Some(prev) = prev {
            prev.set_end_lsn(first_lsn);
        }
        if let Some(seg) = replay.pending.take() {
            replay.deliver(seg, from, pool);
        }
        self.early = Some(from);
    }

    /// Takes a part's record frames: hands out those it may already (see
    /// `early`), holds the rest with the part they are slices of.
    pub(super) fn take(
        &mut self,
        frames: Vec<Frame>,
        part: Bytes,
        replay: Option<&mut Replay<'_>>,
        pool: &Pool,
    ) {
        match (self.early, replay) {
            (Some(from), Some(replay)) if !replay.stopped => {
                let rest: Vec<Frame> = frames
                    .iter()
                    .filter(|f| f.next_lsn() > self.limit)
                    .cloned()
                    .collect();
                replay.hand_out(frames, from, self.limit);
                if rest.is_empty() {
                    pool.give(part);
                } else {
                    self.frames.extend(rest);
                    self.parts.push(part);
                }
            }
            // The consumer broke off: nothing more goes out.
            (_, Some(replay)) if replay.stopped => {
                // The frames share the part: let go of them first.
                drop(frames);
                pool.give(part);
            }
            _ => {
                self.frames.extend(frames);
                self.parts.push(part);
            }
        }
    }
}

impl Replay<'_> {
    /// Where the caller asked the replay to start.
    pub(super) fn asked_from(&self) -> ReplayFrom {
        self.from
    }

    /// Takes a segment judged to be kept, whose valid prefix ends before
    /// `next_lsn`: what is left of the one kept before it goes out, and this
    /// one's records wait for the next segment (or the end of recovery).
    pub(super) fn kept(
        &mut self,
        meta: Arc<SegMeta>,
        incoming: Incoming,
        next_lsn: u64,
        pool: &Pool,
    ) -> Result<(), WalError> {
        // The segment before this one now ends where it must.
        let from = match self.start {
            Some(from) => from,
            None => {
                let from = match self.from {
                    ReplayFrom::Start => meta.first_lsn,
                    ReplayFrom::Lsn(lsn) if lsn < meta.first_lsn => {
                        return Err(WalError::Purged {
                            lsn,
                            first: meta.first_lsn,
                        });
                    }
                    ReplayFrom::Lsn(lsn) => lsn,
                };
                *self.start.insert(from)
            }
        };
        if let Some(seg) = self.pending.take() {
            self.deliver(seg, from, pool);
        }
        self.pending = Some(Undelivered {
            meta,
            frames: incoming.frames,
            parts: incoming.parts,
            next_lsn,
            floor: incoming.early.map_or(0, |_| incoming.limit),
        });
        Ok(())
    }

    /// Hands out the records of the last segment kept, once every segment
    /// is judged.
    pub(super) fn finish(&mut self, pool: &Pool) -> Result<(), WalError> {
        match (self.start, self.from) {
            (Some(from), _) => {
                if let Some(seg) = self.pending.take() {
                    self.deliver(seg, from, pool);
                }
            }
            // An empty log starts at LSN 1.
            (None, ReplayFrom::Lsn(lsn)) if lsn < 1 => {
                return Err(WalError::Purged { lsn, first: 1 });
            }
            (None, _) => {}
        }
        Ok(())
    }

    /// Hands out the records of `frames` in `from..end`, in order, unless
    /// the consumer broke off.
    fn hand_out(&mut self, frames: Vec<Frame>, from: u64, end: u64) {
        'frames: for frame in frames {
            if self.stopped || frame.first_lsn() >= end {
                break;
            }
            if frame.next_lsn() <= from {
                continue;
            }
            let payload = frame.payload();
            for (lsn, data) in frame.record_slices() {
                if lsn >= end {
                    break 'frames;
                }
                let record = Replayed { lsn, data, payload };
                if lsn >= from && (self.each)(record).is_break() {
                    self.stopped = true;
                    break 'frames;
                }
            }
        }
    }

    /// Hands out what is left of `seg` from the replay's start up to where
    /// the segment ends, then gives its memory back to `pool`.
    fn deliver(&mut self, seg: Undelivered, from: u64, pool: &Pool) {
        let end = seg.meta.end_lsn().min(seg.next_lsn);
        self.hand_out(seg.frames, from.max(seg.floor), end);
        for part in seg.parts {
            pool.give(part);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_arriving_after_the_consumer_broke_off_go_back_to_the_pool() {
        let mut each = |_: Replayed<'_>| ControlFlow::Break(());
        let mut replay = Replay::new(ReplayFrom::Start, &mut each);
        replay.stopped = true;
        let pool = Pool::default();
        let mut incoming = Incoming::new(u64::MAX);
        let part = bytes::BytesMut::zeroed(4096).freeze();
        let at = part.as_ptr();
        incoming.take(Vec::new(), part, Some(&mut replay), &pool);
        assert!(
            incoming.parts.is_empty(),
            "no part kept for a stopped replay"
        );
        assert_eq!(pool.take_any().map(|b| b.as_ptr()), Some(at));
    }

    #[test]
    fn a_lent_record_is_kept_without_a_copy() {
        let payload = Bytes::from_static(b"..record..");
        let data = payload.get(2..8).unwrap();
        let lent = Replayed {
            lsn: 9,
            data,
            payload: &payload,
        };
        let kept = lent.to_record();
        assert_eq!((kept.lsn, &kept.data[..]), (9, &b"record"[..]));
        assert_eq!(kept.data.as_ptr(), data.as_ptr(), "shares the part");
    }
}
