//! Recovery: reading every segment back, deciding by the recovery mode what
//! the log is, and saying what was found.

use bytes::{Bytes, BytesMut};
use wal_format::{
    CleanClose, DecodeError, FRAME_ALIGN, FRAME_HEADER_LEN, FrameExpect, SegmentEnd, SegmentHeader,
    SegmentScanner, TERMINATOR_LEN, decode_frame,
};
use wal_io::{FileOptions, FileRef, IoError, Storage};

use crate::segment::{SegMeta, parse_segment_name};
use crate::sync::Arc;
use crate::{RecoveryMode, WalError};

/// Bytes read per call while loading a segment.
const READ_CHUNK_BYTES: usize = 4 << 20;

/// What recovery found in one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SegmentReport {
    /// The file's name.
    pub name: String,
    /// Its first LSN.
    pub first_lsn: u64,
    /// Valid frames read.
    pub frames: u64,
    /// Records kept from it.
    pub records: u64,
    /// Offset after its last valid frame.
    pub valid_end: u64,
    /// How its valid prefix ended.
    pub end: SegmentEnd,
}

/// Something recovery removed or set aside, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Cut {
    /// The segment.
    pub segment: String,
    /// Where in it the removed bytes start.
    pub offset: u64,
    /// How many bytes were removed from the file (0 when only set aside logically).
    pub bytes: u64,
    /// Why.
    pub reason: String,
    /// The decoder's verdict on the first removed frame, where one applies.
    pub error: Option<DecodeError>,
}

/// What [`Wal::open`](crate::Wal::open) found and did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// The segments kept, in LSN order.
    pub segments: Vec<SegmentReport>,
    /// Records in the log after recovery.
    pub records: u64,
    /// The first LSN in the log (the next LSN if it is empty).
    pub first_lsn: u64,
    /// The next LSN the log assigns; the last record is `next_lsn - 1`.
    pub next_lsn: u64,
    /// What was cut from the tail or set aside, and why.
    pub cuts: Vec<Cut>,
    /// Segment files renamed aside (`.discarded`) by a salvage mode.
    pub discarded: Vec<String>,
    /// LSN ranges (`start..end`) missing from the log after a salvage mode
    /// skipped damage.
    pub gaps: Vec<(u64, u64)>,
}

struct Scanned {
    name: String,
    first_lsn: u64,
    file: FileRef,
    size: u64,
    outcome: Outcome,
}

enum Outcome {
    BadHeader {
        error: DecodeError,
        /// No valid frame of any identity starting at or after the name's
        /// LSN is anywhere in the file: it never held a record.
        never_held_records: bool,
    },
    Scanned {
        header: SegmentHeader,
        summary: wal_format::ScanSummary,
        index: Vec<(u64, u64)>,
    },
}

/// Reads the first `len` bytes of `file` (of `size`) into `buf`, reusing its
/// memory: segments are mostly of one size, so after the first one a scan
/// thread neither allocates nor faults in fresh pages.
fn load(file: &FileRef, size: u64, len: u64, buf: &mut BytesMut) -> Result<(), IoError> {
    let len = usize::try_from(len.min(size)).map_err(|_| IoError::Unsupported {
        op: wal_io::Op::Read,
        path: file.name().into(),
        reason: format!("segment of {size} bytes does not fit in memory"),
    })?;
    if buf.capacity() < len {
        // A fresh zeroed allocation maps zero pages lazily; growing with
        // `resize` would write every byte first.
        *buf = BytesMut::zeroed(len);
    } else {
        buf.resize(len, 0);
    }
    for (i, chunk) in buf.chunks_mut(READ_CHUNK_BYTES).enumerate() {
        file.read_at((i * READ_CHUNK_BYTES) as u64, chunk)?;
    }
    Ok(())
}

/// Whether any valid frame (of whatever identity: the header that would
/// name it is unreadable) with an LSN at or past `first_lsn` is in `data`.
/// Frames are 8-aligned from the end of the header, and an identity is never
/// zero, so only candidates with a non-zero identity field are decoded.
fn holds_frames(data: &Bytes, first_lsn: u64) -> bool {
    (SegmentHeader::LEN..data.len().saturating_sub(FRAME_HEADER_LEN))
        .step_by(FRAME_ALIGN)
        .any(|pos| {
            let id = data
                .get(pos + 24..pos + 32)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map_or(0, u64::from_le_bytes);
            id != 0
                && decode_frame(
                    data,
                    pos,
                    FrameExpect {
                        segment_id: id,
                        first_lsn: None,
                    },
                )
                .is_ok_and(|f| f.first_lsn() >= first_lsn)
        })
}

/// Whether a scan of only the bytes a clean-close record covers confirms it:
/// the same segment, frames to exactly its end, nothing but a zero header
/// (or the end of the file) after them, and the same next LSN.
fn confirms(outcome: &Outcome, mark: &CleanClose) -> bool {
    match outcome {
        Outcome::Scanned {
            header, summary, ..
        } => {
            header.log_id() == mark.log_id
                && header.segment_id() == mark.segment_id
                && summary.end == SegmentEnd::Clean
                && summary.valid_end == mark.valid_end
                && summary.next_lsn == mark.next_lsn
        }
        Outcome::BadHeader { .. } => false,
    }
}

/// Scans one segment, reading it into `buf` (see [`load`]). With a
/// clean-close record for it, reads only up to the record's end (and a frame
/// header's worth after it) first, and the whole file only if that scan does
/// not confirm the record.
fn scan(
    storage: &dyn Storage,
    name: String,
    first_lsn: u64,
    clean_close: Option<CleanClose>,
    buf: &mut BytesMut,
) -> Result<Scanned, IoError> {
    let file = storage.open(&name, FileOptions::BUFFERED)?;
    let size = file.size()?;
    let mut confirmed = None;
    if let Some(mark) = clean_close.filter(|m| m.segment_first_lsn == first_lsn) {
        let covered = mark.valid_end.saturating_add(TERMINATOR_LEN as u64);
        load(&file, size, covered, buf)?;
        let outcome = scan_loaded(buf, first_lsn);
        if confirms(&outcome, &mark) {
            confirmed = Some(outcome);
        } else {
            tracing::warn!(segment = %name, "the clean-close record does not match the segment; reading it whole");
        }
    }
    let outcome = match confirmed {
        Some(outcome) => outcome,
        None => {
            load(&file, size, size, buf)?;
            scan_loaded(buf, first_lsn)
        }
    };
    Ok(Scanned {
        name,
        first_lsn,
        file,
        size,
        outcome,
    })
}

/// Scans the bytes in `buf`, then hands its memory back for the next segment.
fn scan_loaded(buf: &mut BytesMut, first_lsn: u64) -> Outcome {
    let data = std::mem::take(buf).freeze();
    let outcome = match SegmentScanner::new(data.clone()) {
        Err(error) => Outcome::BadHeader {
            error,
            never_held_records: !holds_frames(&data, first_lsn),
        },
        Ok(mut scanner) => {
            let header = *scanner.header();
            let mut index = Vec::new();
            for frame in scanner.by_ref() {
                SegMeta::sparse(&mut index, frame.first_lsn(), frame.offset());
            }
            Outcome::Scanned {
                header,
                summary: scanner.finish(),
                index,
            }
        }
    };
    // Nothing holds the bytes any more: take the memory back for the next
    // segment (if something did, the next scan simply allocates).
    if let Ok(mem) = data.try_into_mut() {
        *buf = mem;
    }
    outcome
}

/// Under loom the scan runs on the calling thread: the models are about the
/// group-commit hand-off, and real threads have no place in a loom model.
#[cfg(loom)]
fn scan_all(
    storage: &dyn Storage,
    names: Vec<(String, u64)>,
    clean_close: Option<CleanClose>,
) -> Result<Vec<Scanned>, IoError> {
    let mut buf = BytesMut::new();
    names
        .into_iter()
        .map(|(name, lsn)| scan(storage, name, lsn, clean_close, &mut buf))
        .collect()
}

/// Scans segments on as many threads as the machine has, at most one
/// segment in memory per thread.
#[cfg(not(loom))]
fn scan_all(
    storage: &dyn Storage,
    names: Vec<(String, u64)>,
    clean_close: Option<CleanClose>,
) -> Result<Vec<Scanned>, IoError> {
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(names.len())
        .max(1);
    let mut slots: Vec<Option<Result<Scanned, IoError>>> = (0..names.len()).map(|_| None).collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let mine: Vec<(usize, (String, u64))> = names
                    .iter()
                    .cloned()
                    .enumerate()
                    .filter(|(i, _)| i % threads == t)
                    .collect();
                s.spawn(move || {
                    let mut buf = BytesMut::new();
                    mine.into_iter()
                        .map(|(i, (name, lsn))| {
                            (i, scan(storage, name, lsn, clean_close, &mut buf))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for handle in handles {
            // A panic in a scan thread is a bug; surface it as one.
            let results = handle
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
            for (i, r) in results {
                if let Some(slot) = slots.get_mut(i) {
                    *slot = Some(r);
                }
            }
        }
    });
    slots.into_iter().flatten().collect()
}

/// Where the last segment's valid prefix ends.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tail {
    pub(crate) valid_end: u64,
    /// Nothing but zeros follows (or the file ends there): nothing to cut.
    pub(crate) clean: bool,
}

/// The log as recovery leaves it.
pub(crate) struct Recovered {
    pub(crate) log_id: Option<u64>,
    pub(crate) segments: Vec<Arc<SegMeta>>,
    pub(crate) next_lsn: u64,
    /// Where appending resumes in the last segment, unless it is sealed.
    pub(crate) tail: Option<Tail>,
    pub(crate) report: RecoveryReport,
}

fn corrupt(segment: &str, offset: u64, detail: String, cause: Option<DecodeError>) -> WalError {
    WalError::Corrupt {
        segment: segment.to_owned(),
        offset,
        detail,
        cause,
    }
}

/// Sets a segment aside under a `.discarded` name (salvage modes only).
fn discard(
    storage: &dyn Storage,
    s: &Scanned,
    report: &mut RecoveryReport,
    reason: String,
) -> Result<(), IoError> {
    let aside = format!("{}.discarded", s.name);
    storage.rename(&s.name, &aside)?;
    report.discarded.push(aside);
    report.cuts.push(Cut {
        segment: s.name.clone(),
        offset: 0,
        bytes: 0,
        reason,
        error: None,
    });
    Ok(())
}

/// Recovers the log in `storage`. `clean_close` is the record a cleanly
/// closed writer left, if any: it applies only to the last segment.
pub(crate) fn recover(
    storage: &dyn Storage,
    mode: RecoveryMode,
    clean_close: Option<CleanClose>,
) -> Result<Recovered, WalError> {
    let mut names: Vec<(String, u64)> = storage
        .list()?
        .into_iter()
        .filter_map(|n| parse_segment_name(&n).map(|lsn| (n, lsn)))
        .collect();
    names.sort_by_key(|(_, lsn)| *lsn);
    let last = names.last().map(|&(_, lsn)| lsn);
    let clean_close = clean_close.filter(|m| Some(m.segment_first_lsn) == last);
    let scanned = scan_all(storage, names, clean_close)?;
    let count = scanned.len();
    let mut report = RecoveryReport::default();
    let mut segments: Vec<Arc<SegMeta>> = Vec::new();
    let mut log_id = None;
    let mut next_lsn: Option<u64> = None;
    let mut tail = None;
    let mut stop = false;
    let mut changed_dir = false;
    for (i, s) in scanned.iter().enumerate() {
        let last = i + 1 == count;
        if stop {
            discard(
                storage,
                s,
                &mut report,
                "after the point-in-time cut".to_owned(),
            )?;
            changed_dir = true;
            continue;
        }
        let (header, summary, index) = match &s.outcome {
            Outcome::BadHeader {
                never_held_records: true,
                ..
            } if last => {
                // A creation interrupted before its header was synced (a
                // segment gets records only after that): it never held one.
                storage.remove(&s.name)?;
                changed_dir = true;
                report.cuts.push(Cut {
                    segment: s.name.clone(),
                    offset: 0,
                    bytes: s.size,
                    reason:
                        "segment creation was interrupted (no valid header, no records); removed"
                            .to_owned(),
                    error: None,
                });
                continue;
            }
            Outcome::BadHeader { error, .. } => {
                let detail = format!("unreadable segment header: {error}");
                match mode {
                    RecoveryMode::PointInTime => {
                        stop = true;
                        discard(storage, s, &mut report, detail)?;
                        changed_dir = true;
                        continue;
                    }
                    RecoveryMode::SkipCorrupted => {
                        discard(storage, s, &mut report, detail)?;
                        changed_dir = true;
                        continue;
                    }
                    _ => return Err(corrupt(&s.name, 0, detail, Some(error.clone()))),
                }
            }
            Outcome::Scanned {
                header,
                summary,
                index,
            } => (header, summary, index),
        };
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
        match log_id {
            None => log_id = Some(header.log_id()),
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
        // Chain: this segment must start at or before where the previous ends.
        if let (Some(prev), Some(expected)) = (segments.last(), next_lsn) {
            if s.first_lsn <= expected {
                // Readers move on to this segment at its first LSN. One that
                // starts inside the previous one was made by truncate_back:
                // the previous one logically ends there.
                prev.set_end_lsn(s.first_lsn);
                if let Some(r) = report.segments.last_mut() {
                    r.records = s.first_lsn.saturating_sub(r.first_lsn);
                }
            } else {
                prev.set_end_lsn(expected);
                let detail = format!(
                    "LSNs {expected}..{} are missing before this segment",
                    s.first_lsn
                );
                match mode {
                    RecoveryMode::PointInTime => {
                        stop = true;
                        discard(storage, s, &mut report, detail)?;
                        changed_dir = true;
                        continue;
                    }
                    RecoveryMode::SkipCorrupted => report.gaps.push((expected, s.first_lsn)),
                    _ => return Err(corrupt(&s.name, 0, detail, None)),
                }
            }
        }
        let mut keep_end = summary.valid_end;
        let seg_report = |records: u64| SegmentReport {
            name: s.name.clone(),
            first_lsn: s.first_lsn,
            frames: summary.frames,
            records,
            valid_end: summary.valid_end,
            end: summary.end.clone(),
        };
        match &summary.end {
            SegmentEnd::Clean | SegmentEnd::Sealed { .. } => {}
            SegmentEnd::TornTail {
                error,
                later_frames,
            } => {
                if mode == RecoveryMode::AbsoluteConsistency {
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
                    report.cuts.push(Cut {
                        segment: s.name.clone(),
                        offset: summary.valid_end,
                        bytes: s.size.saturating_sub(summary.valid_end),
                        reason: format!(
                            "torn tail: an interrupted, unacknowledged write ({later_frames} later frames, none vouching for it)"
                        ),
                        error: Some(error.clone()),
                    });
                }
            }
            SegmentEnd::Corrupt { error, evidence } => {
                let detail = format!(
                    "{error}; the frame at offset {} (LSN {}) records LSN {} as durable, so acknowledged data was lost",
                    evidence.offset, evidence.first_lsn, evidence.durable_lsn
                );
                match mode {
                    RecoveryMode::PointInTime => {
                        stop = true;
                        report.cuts.push(Cut {
                            segment: s.name.clone(),
                            offset: summary.valid_end,
                            bytes: s.size.saturating_sub(summary.valid_end),
                            reason: format!("point-in-time cut at corruption: {detail}"),
                            error: Some(error.clone()),
                        });
                        keep_end = summary.valid_end;
                    }
                    RecoveryMode::SkipCorrupted => {
                        // The rest of this segment is skipped. In the last
                        // segment that is the tail, cut before appending; in
                        // an earlier one the chain check records the gap.
                        report.cuts.push(Cut {
                            segment: s.name.clone(),
                            offset: summary.valid_end,
                            bytes: if last {
                                s.size.saturating_sub(summary.valid_end)
                            } else {
                                0
                            },
                            reason: format!(
                                "skipped the rest of the segment after corruption: {detail}"
                            ),
                            error: Some(error.clone()),
                        });
                    }
                    _ => {
                        return Err(corrupt(
                            &s.name,
                            summary.valid_end,
                            detail,
                            Some(error.clone()),
                        ));
                    }
                }
            }
            _ => {}
        }
        report.segments.push(seg_report(summary.records));
        segments.push(Arc::new(SegMeta::new(
            s.first_lsn,
            s.name.clone(),
            s.file.clone(),
            header.segment_id(),
            header.padded(),
            index.clone(),
        )));
        next_lsn = Some(summary.next_lsn);
        tail = match summary.end {
            SegmentEnd::Sealed { .. } => None,
            SegmentEnd::Clean => Some(Tail {
                valid_end: keep_end,
                clean: true,
            }),
            // Torn, or damage salvaged by a point-in-time or skipping mode:
            // what follows the kept prefix must go before appending.
            _ => Some(Tail {
                valid_end: keep_end,
                clean: false,
            }),
        };
    }
    if changed_dir {
        storage.sync_dir()?;
    }
    let first_lsn = segments.first().map_or(1, |s| s.first_lsn);
    let next = next_lsn.unwrap_or(first_lsn);
    report.first_lsn = first_lsn;
    report.next_lsn = next;
    report.records = report.segments.iter().map(|s| s.records).sum();
    Ok(Recovered {
        log_id,
        segments,
        next_lsn: next,
        tail,
        report,
    })
}
