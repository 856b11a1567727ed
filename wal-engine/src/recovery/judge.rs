//! Judging what the log is: segment by segment in LSN order, by the
//! recovery mode, from what the scans found. Each segment passes three
//! judgements in turn (its header, its place in the chain of segments, how
//! its valid prefix ends) and is kept, set aside, or makes the log refuse
//! to open; the clean-close record, when there is one, is weighed last.

use std::ops::ControlFlow;

use wal_format::{CleanClose, DecodeError, LaterFrame, ScanSummary, SegmentEnd, SegmentHeader};

use super::read::{Outcome, Part, Pool, Scanned};
use super::replay::{Incoming, Replay};
use super::report::{Cut, RecoveryReport, SegmentReport};
use super::{Changes, Recovered, Tail};
use crate::segment::{SegMeta, segment_name};
use crate::sync::Arc;
use crate::{RecoveryMode, WalError};

/// Decides, segment by segment in LSN order, what the log is, and what
/// recovery changes in the directory to make it so. `evidence` is the
/// clean-close record, whichever segment it names.
pub(super) fn decide(
    parts: &mut dyn Iterator<Item = Part>,
    names: &[(String, u64)],
    mode: RecoveryMode,
    evidence: Option<CleanClose>,
    mut replay: Option<&mut Replay<'_>>,
    pool: &Pool,
) -> Result<(Recovered, Changes), WalError> {
    let mut judge = Judge::new(mode, evidence, pool);
    for (i, (name, name_lsn)) in names.iter().enumerate() {
        let last = i + 1 == names.len();
        // Records below the next segment's first LSN are this segment's
        // whatever that one turns out to be.
        let limit = names.get(i + 1).map_or(u64::MAX, |&(_, lsn)| lsn);
        let mut incoming = Incoming::new(limit);
        let s = judge.receive(parts, name, *name_lsn, &mut incoming, replay.as_deref_mut())?;
        judge.segment(&s, last, incoming, replay.as_deref_mut())?;
    }
    judge.weigh_evidence()?;
    if let Some(replay) = replay {
        replay.finish(pool)?;
    }
    Ok(judge.finish())
}

/// The valid prefix of a segment whose header passed judgement.
struct Prefix {
    header: SegmentHeader,
    summary: ScanSummary,
    /// Sparse `(first_lsn, offset)` of its frames.
    index: Vec<(u64, u64)>,
}

/// The log as judged so far.
struct Judge<'j> {
    mode: RecoveryMode,
    /// The clean-close record, whichever segment it names: when the log
    /// was closed, every LSN below its next LSN was durable.
    evidence: Option<CleanClose>,
    pool: &'j Pool,
    report: RecoveryReport,
    /// The segments kept, in LSN order.
    segments: Vec<Arc<SegMeta>>,
    log_id: Option<u64>,
    /// The LSN after the last kept segment's valid prefix.
    next_lsn: Option<u64>,
    tail: Option<Tail>,
    /// A point-in-time cut was made: every later segment is set aside.
    stop: bool,
    changes: Changes,
}

impl<'j> Judge<'j> {
    fn new(mode: RecoveryMode, evidence: Option<CleanClose>, pool: &'j Pool) -> Self {
        Judge {
            mode,
            evidence,
            pool,
            report: RecoveryReport::default(),
            segments: Vec::new(),
            log_id: None,
            next_lsn: None,
            tail: None,
            stop: false,
            changes: Changes::default(),
        }
    }

    /// Takes the parts of segment `name` as its scan hands them over, up to
    /// its result; its records go out to `replay` early where they may.
    fn receive(
        &self,
        parts: &mut dyn Iterator<Item = Part>,
        name: &str,
        name_lsn: u64,
        incoming: &mut Incoming,
        mut replay: Option<&mut Replay<'_>>,
    ) -> Result<Scanned, WalError> {
        loop {
            match parts.next() {
                None => {
                    return Err(WalError::Internal {
                        detail: format!("a recovery scan of {name} ended without its result"),
                    });
                }
                Some(Part::Head(header)) => {
                    if let Some(replay) = replay.as_deref_mut()
                        && self.settled_by(name_lsn, &header)
                    {
                        incoming.start_early(replay, name_lsn, self.segments.last(), self.pool);
                    }
                }
                Some(Part::Frames(frames, part)) => {
                    incoming.take(frames, part, replay.as_deref_mut(), self.pool);
                }
                Some(Part::Done(scanned)) => return scanned.map(|s| *s),
            }
        }
    }

    /// Whether a segment named `name_lsn` with this header will be kept
    /// unless the log refuses to open: no point-in-time cut came before it,
    /// it chains on to the segment before it, and its header matches its
    /// name and the log.
    fn settled_by(&self, name_lsn: u64, header: &SegmentHeader) -> bool {
        let chained = match (self.segments.last(), self.next_lsn) {
            (Some(_), Some(expected)) => name_lsn <= expected,
            _ => true,
        };
        !self.stop
            && chained
            && header.first_lsn() == name_lsn
            && self.log_id.is_none_or(|id| id == header.log_id())
    }

    /// Judges one scanned segment: keeps it, sets it aside, or refuses.
    fn segment(
        &mut self,
        s: &Scanned,
        last: bool,
        incoming: Incoming,
        replay: Option<&mut Replay<'_>>,
    ) -> Result<(), WalError> {
        if self.stop {
            self.discard(s, "after the point-in-time cut".to_owned());
            return Ok(());
        }
        let Some(prefix) = self.judge_header(s, last)? else {
            return Ok(());
        };
        if self.judge_chain(s)?.is_break() {
            return Ok(());
        }
        self.judge_end(s, &prefix.summary, last)?;
        self.keep(s, prefix, incoming, replay)
    }

    /// The header judgement. An unreadable header is an interrupted
    /// creation if the segment is the last and never held a record (and the
    /// clean-close record does not say it did); otherwise it is damage. A
    /// header whose first LSN differs from the name, or that belongs to
    /// another log, is corruption. `None`: the segment goes no further.
    fn judge_header(&mut self, s: &Scanned, last: bool) -> Result<Option<Prefix>, WalError> {
        let prefix = match &s.outcome {
            Outcome::BadHeader {
                never_held_records: true,
                ..
            } if last && self.vouched(s.first_lsn, s.first_lsn).is_none() => {
                self.interrupted_creation(s);
                return Ok(None);
            }
            Outcome::BadHeader { error, .. } => {
                self.bad_header(s, error)?;
                return Ok(None);
            }
            Outcome::Scanned {
                header,
                summary,
                index,
            } => Prefix {
                header: *header,
                summary: summary.clone(),
                index: index.clone(),
            },
        };
        let header = &prefix.header;
        if header.first_lsn() != s.first_lsn {
            return Err(corrupt(
                &s.name,
                0,
                format!(
                    "header says first LSN {}, the name says {}",
                    header.first_lsn(),
                    s.first_lsn
                ),
                None,
            ));
        }
        match self.log_id {
            None => self.log_id = Some(header.log_id()),
            Some(id) if id != header.log_id() => {
                return Err(corrupt(
                    &s.name,
                    0,
                    format!("belongs to log {:#x}, not {id:#x}", header.log_id()),
                    None,
                ));
            }
            Some(_) => {}
        }
        Ok(Some(prefix))
    }

    /// A creation interrupted before its header was synced (a segment gets
    /// records only after that): it never held one, and goes.
    fn interrupted_creation(&mut self, s: &Scanned) {
        self.changes.removals.push(s.name.clone());
        self.report.cuts.push(Cut {
            segment: s.name.clone(),
            offset: 0,
            bytes: s.size,
            reason: "segment creation was interrupted (no valid header, no records); removed"
                .to_owned(),
            error: None,
        });
    }

    /// A segment whose header is unreadable, though it held records: set
    /// aside by a salvage mode, refused by the others.
    fn bad_header(&mut self, s: &Scanned, error: &DecodeError) -> Result<(), WalError> {
        let mut detail = format!("unreadable segment header: {error}");
        if let Some(mark) = self.vouched(s.first_lsn, s.first_lsn) {
            detail = format!("{}; {detail}", lost(&mark, self.found().1));
        }
        match self.mode {
            RecoveryMode::PointInTime => {
                self.stop = true;
                self.discard(s, detail);
                Ok(())
            }
            RecoveryMode::SkipCorrupted => {
                self.discard(s, detail);
                Ok(())
            }
            _ => Err(corrupt(&s.name, 0, detail, Some(error.clone()))),
        }
    }

    /// The chain judgement: this segment must start at or before where the
    /// previous one ends. Missing LSNs before it are a gap: refused, or
    /// salvaged by the mode. `Break`: the segment was set aside.
    fn judge_chain(&mut self, s: &Scanned) -> Result<ControlFlow<()>, WalError> {
        let (Some(prev), Some(expected)) = (self.segments.last(), self.next_lsn) else {
            return Ok(ControlFlow::Continue(()));
        };
        if s.first_lsn <= expected {
            // Readers move on to this segment at its first LSN. One that
            // starts inside the previous one was made by truncate_back:
            // the previous one logically ends there.
            prev.set_end_lsn(s.first_lsn);
            if let Some(r) = self.report.segments.last_mut() {
                r.records = s.first_lsn.saturating_sub(r.first_lsn);
            }
            return Ok(ControlFlow::Continue(()));
        }
        prev.set_end_lsn(expected);
        let detail = format!(
            "LSNs {expected}..{} are missing before this segment",
            s.first_lsn
        );
        match self.mode {
            RecoveryMode::PointInTime => {
                self.stop = true;
                self.discard(s, detail);
                Ok(ControlFlow::Break(()))
            }
            RecoveryMode::SkipCorrupted => {
                self.report.gaps.push((expected, s.first_lsn));
                Ok(ControlFlow::Continue(()))
            }
            _ => Err(corrupt(&s.name, 0, detail, None)),
        }
    }

    /// The end judgement: how the valid prefix ends, by the mode. A clean
    /// or sealed end is fine, unless the clean-close record says records
    /// past it were durable; a torn tail is cut (reported only in the last
    /// segment) except in the strict mode; corruption is refused unless a
    /// salvage mode keeps the prefix before it.
    fn judge_end(
        &mut self,
        s: &Scanned,
        summary: &ScanSummary,
        last: bool,
    ) -> Result<(), WalError> {
        self.refuse_lost_end(s, summary)?;
        match &summary.end {
            SegmentEnd::TornTail {
                error,
                later_frames,
            } => self.torn_tail(s, summary, last, error, *later_frames),
            SegmentEnd::Corrupt { error, evidence } => {
                self.corrupt_end(s, summary, last, error, evidence)
            }
            // Clean, sealed, or an end this version does not know.
            _ => Ok(()),
        }
    }

    /// Refuses a segment the clean-close record names whose valid prefix
    /// ends before the LSN the record says was durable (C5): what looks
    /// like a torn or clean end lost acknowledged records. The salvage
    /// modes go on; [`Judge::weigh_evidence`] reports the loss for them.
    fn refuse_lost_end(&self, s: &Scanned, summary: &ScanSummary) -> Result<(), WalError> {
        if self.salvages() {
            return Ok(());
        }
        let Some(mark) = self.vouched(s.first_lsn, summary.next_lsn) else {
            return Ok(());
        };
        let (what, cause) = match &summary.end {
            SegmentEnd::TornTail { error, .. } => (
                format!(
                    "its frames break off at offset {}: {error}",
                    summary.valid_end
                ),
                Some(error.clone()),
            ),
            // Refused below with the later frame as its evidence.
            SegmentEnd::Corrupt { .. } => return Ok(()),
            _ => (
                format!("its frames end at offset {}", summary.valid_end),
                None,
            ),
        };
        let detail = format!("{}; {what}", lost(&mark, summary.next_lsn));
        Err(corrupt(&s.name, summary.valid_end, detail, cause))
    }

    fn torn_tail(
        &mut self,
        s: &Scanned,
        summary: &ScanSummary,
        last: bool,
        error: &DecodeError,
        later_frames: u64,
    ) -> Result<(), WalError> {
        if self.mode == RecoveryMode::AbsoluteConsistency {
            return Err(corrupt(
                &s.name,
                summary.valid_end,
                format!(
                    "torn tail ({later_frames} unacknowledged frames after it) and the mode is AbsoluteConsistency"
                ),
                Some(error.clone()),
            ));
        }
        if last {
            self.report.cuts.push(Cut {
                segment: s.name.clone(),
                offset: summary.valid_end,
                bytes: s.size.saturating_sub(summary.valid_end),
                reason: format!(
                    "torn tail: an interrupted, unacknowledged write ({later_frames} later frames, none vouching for it)"
                ),
                error: Some(error.clone()),
            });
        }
        Ok(())
    }

    fn corrupt_end(
        &mut self,
        s: &Scanned,
        summary: &ScanSummary,
        last: bool,
        error: &DecodeError,
        later: &LaterFrame,
    ) -> Result<(), WalError> {
        let detail = format!(
            "{error}; the frame at offset {} (LSN {}) records LSN {} as durable, so acknowledged data was lost",
            later.offset, later.first_lsn, later.durable_lsn
        );
        let tail_bytes = s.size.saturating_sub(summary.valid_end);
        let (reason, bytes) = match self.mode {
            RecoveryMode::PointInTime => {
                self.stop = true;
                (
                    format!("point-in-time cut at corruption: {detail}"),
                    tail_bytes,
                )
            }
            // The rest of this segment is skipped. In the last segment that
            // is the tail, cut before appending; in an earlier one the chain
            // check records the gap.
            RecoveryMode::SkipCorrupted => (
                format!("skipped the rest of the segment after corruption: {detail}"),
                if last { tail_bytes } else { 0 },
            ),
            _ => {
                return Err(corrupt(
                    &s.name,
                    summary.valid_end,
                    detail,
                    Some(error.clone()),
                ));
            }
        };
        self.report.cuts.push(Cut {
            segment: s.name.clone(),
            offset: summary.valid_end,
            bytes,
            reason,
            error: Some(error.clone()),
        });
        Ok(())
    }

    /// Keeps a judged segment in the log, up to the end of its valid prefix.
    fn keep(
        &mut self,
        s: &Scanned,
        prefix: Prefix,
        incoming: Incoming,
        replay: Option<&mut Replay<'_>>,
    ) -> Result<(), WalError> {
        let Prefix {
            header,
            summary,
            index,
        } = prefix;
        if let Some(t) = summary.last_timestamp_us {
            let last = self.report.last_timestamp_us.get_or_insert(t);
            *last = (*last).max(t);
        }
        self.report.segments.push(SegmentReport {
            name: s.name.clone(),
            first_lsn: s.first_lsn,
            frames: summary.frames,
            records: summary.records,
            valid_end: summary.valid_end,
            end: summary.end.clone(),
        });
        let meta = Arc::new(SegMeta::new(
            s.first_lsn,
            s.name.clone(),
            s.file.clone(),
            header.segment_id(),
            header.padded(),
            index,
        ));
        if let Some(replay) = replay {
            replay.kept(meta.clone(), incoming, summary.next_lsn, self.pool)?;
        }
        self.segments.push(meta);
        self.next_lsn = Some(summary.next_lsn);
        self.tail = match summary.end {
            SegmentEnd::Sealed { .. } => None,
            SegmentEnd::Clean => Some(Tail {
                valid_end: summary.valid_end,
                clean: true,
            }),
            // Torn, or damage salvaged by a point-in-time or skipping mode:
            // what follows the kept prefix must go before appending.
            _ => Some(Tail {
                valid_end: summary.valid_end,
                clean: false,
            }),
        };
        Ok(())
    }

    /// The clean-close record's last word, once every segment is judged:
    /// every LSN below its next LSN was durable when the log was closed, so
    /// a log that now ends before it lost acknowledged records (C5),
    /// wherever they went (a damaged, emptied or missing last segment). The
    /// default and strict modes refuse; the salvage modes say so in a cut.
    fn weigh_evidence(&mut self) -> Result<(), WalError> {
        let (_, found) = self.found();
        let Some(mark) = self.evidence().filter(|m| m.next_lsn > found) else {
            return Ok(());
        };
        let segment = segment_name(mark.segment_first_lsn);
        let kept_end = self
            .report
            .segments
            .iter()
            .find(|r| r.first_lsn == mark.segment_first_lsn)
            .map(|r| r.valid_end);
        let mut detail = lost(&mark, found);
        if kept_end.is_none() {
            detail.push_str("; the segment it names is not in the log");
        }
        let offset = kept_end.unwrap_or(0);
        if !self.salvages() {
            return Err(corrupt(&segment, offset, detail, None));
        }
        self.report.cuts.push(Cut {
            segment,
            offset,
            bytes: 0,
            reason: format!("{detail}; salvaged what remains"),
            error: None,
        });
        Ok(())
    }

    /// The clean-close record, if it speaks for this log: it names the log
    /// the segments kept so far belong to, or none was kept yet.
    fn evidence(&self) -> Option<CleanClose> {
        self.evidence
            .filter(|m| self.log_id.is_none_or(|id| id == m.log_id))
    }

    /// The clean-close record, if it names the segment starting at
    /// `first_lsn` and says records at or past `found_next` were durable.
    fn vouched(&self, first_lsn: u64, found_next: u64) -> Option<CleanClose> {
        self.evidence()
            .filter(|m| m.segment_first_lsn == first_lsn && m.next_lsn > found_next)
    }

    /// Whether the mode salvages what it can rather than refuse.
    fn salvages(&self) -> bool {
        matches!(
            self.mode,
            RecoveryMode::PointInTime | RecoveryMode::SkipCorrupted
        )
    }

    /// The first and next LSN of the log as judged so far.
    fn found(&self) -> (u64, u64) {
        let first_lsn = self.segments.first().map_or(1, |s| s.first_lsn);
        (first_lsn, self.next_lsn.unwrap_or(first_lsn))
    }

    /// Sets a segment aside under a `.discarded` name (salvage modes only):
    /// recorded now, renamed once every scan is done.
    fn discard(&mut self, s: &Scanned, reason: String) {
        let aside = format!("{}.discarded", s.name);
        self.changes.renames.push((s.name.clone(), aside.clone()));
        self.report.discarded.push(aside);
        self.report.cuts.push(Cut {
            segment: s.name.clone(),
            offset: 0,
            bytes: 0,
            reason,
            error: None,
        });
    }

    /// The log as judged, and the changes to the directory that make it so.
    fn finish(mut self) -> (Recovered, Changes) {
        let (first_lsn, next) = self.found();
        self.report.first_lsn = first_lsn;
        self.report.next_lsn = next;
        self.report.records = self.report.segments.iter().map(|s| s.records).sum();
        let recovered = Recovered {
            log_id: self.log_id,
            segments: self.segments,
            next_lsn: next,
            tail: self.tail,
            report: self.report,
            changed: false,
        };
        (recovered, self.changes)
    }
}

fn corrupt(segment: &str, offset: u64, detail: String, cause: Option<DecodeError>) -> WalError {
    WalError::Corrupt {
        segment: segment.to_owned(),
        offset,
        detail,
        cause,
    }
}

/// What the clean-close record proves lost when recovery found the log to
/// end before `found_next`.
fn lost(mark: &CleanClose, found_next: u64) -> String {
    format!(
        "acknowledged records were lost: the clean-close record says LSNs up to {} were durable, recovery found only up to {}",
        mark.next_lsn.saturating_sub(1),
        found_next.saturating_sub(1)
    )
}
