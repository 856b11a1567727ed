//! `walctl dump --follow`: polls a live log for new records, across
//! rotations, and says when a cut or a purge takes records back or away.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use wal_format::{Frame, FrameKind, ScanPoint, SegmentEnd, SegmentHeader, SegmentScanner};

use super::{Existing, Printer};
use crate::error::CliError;
use crate::target::{Target, refuse_newer, segments_named};

/// How often `--follow` looks for new records.
const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// Bytes of a segment `--follow` reads past where it stopped, at first
/// (doubled while a frame does not fit).
const FOLLOW_WINDOW_BYTES: usize = 1 << 20;

/// What `--follow` says between records.
enum Note {
    /// Records from `from` on were taken back by a `truncate_back`; what
    /// follows from `from` on replaces them.
    CutBack { from: u64 },
    /// Records from `from` to before `to` were purged before they were read.
    Purged { from: u64, to: u64 },
}

impl<W: Write> Printer<W> {
    /// Prints `note`: a JSON object (`{"cut_back_from": N}`,
    /// `{"purged_from": N, "purged_to": M}`) or a line starting with `#`.
    fn note(&mut self, note: Note) -> Result<(), CliError> {
        let text = match (note, self.range.json) {
            (Note::CutBack { from }, true) => format!("{{\"cut_back_from\":{from}}}"),
            (Note::CutBack { from }, false) => format!(
                "# the log was truncated back: records from LSN {from} on follow again \
                 (those shown before may be gone)"
            ),
            (Note::Purged { from, to }, true) => {
                format!("{{\"purged_from\":{from},\"purged_to\":{to}}}")
            }
            (Note::Purged { from, to }, false) => format!(
                "# records from LSN {from} to before {to} were purged before they were read"
            ),
        };
        writeln!(self.out, "{text}").map_err(CliError::io("write the dump"))
    }
}

/// Where `--follow` reads: a segment and the scan's place in it.
struct Cursor {
    name: String,
    point: ScanPoint,
}

/// Tails the log: polls the last segment from where its valid frames end,
/// and moves to the next segment when one is sealed (or a newer one
/// starts where this one ended). A `truncate_back` that takes back records
/// already shown, or a purge of records not yet shown, is said in a line of
/// its own ([`Printer::note`]) before the records that follow it.
pub(super) fn follow_from<W: Write>(
    target: &Target,
    p: &mut Printer<W>,
    existing: Existing,
) -> Result<(), CliError> {
    let Some(last) = target.segments.last() else {
        return Ok(());
    };
    let mut seen = existing.seen;
    // The last segment is read again from its start: it may have grown
    // since the first pass, or been cut (records already offered are
    // skipped by LSN).
    let point = match seen.get(&last.name) {
        Some(header) => SegmentScanner::new(Bytes::copy_from_slice(&header.encode())),
        None => SegmentScanner::new(target.read(&last.name)?),
    }
    .map_err(|e| CliError::Wal(corrupt(&last.name, &e)))?
    .point();
    seen.insert(last.name.clone(), *point.header());
    let mut next_lsn = p.next_lsn.max(point.next_lsn());
    let mut cursor = Cursor {
        name: last.name.clone(),
        point,
    };
    // Where the cursor's segment ends: a later segment's start, past which
    // its frames are ones an earlier cut left in the file.
    let mut ends_at = segments_named(&target.storage.list()?)
        .iter()
        .find(|s| s.first_lsn > cursor.point.header().first_lsn())
        .map(|s| s.first_lsn);
    let mut window = FOLLOW_WINDOW_BYTES;
    loop {
        p.out.flush().map_err(CliError::io("write the dump"))?;
        // A segment that went away (purged) reads as nothing new.
        let (frames, end, point) =
            read_more(target, &cursor, window).unwrap_or((Vec::new(), None, cursor.point));
        let moved = point.offset() != cursor.point.offset();
        cursor.point = point;
        p.segment.clone_from(&cursor.name);
        // A segment starts at a frame boundary of the one before it, so a
        // frame is either all before the next segment or all cut.
        for f in frames
            .iter()
            .filter(|f| ends_at.is_none_or(|e| f.first_lsn() < e))
        {
            for r in f.records().filter(|r| r.lsn >= next_lsn) {
                if p.record(f, &r)?.is_break() {
                    return Ok(());
                }
            }
            next_lsn = next_lsn.max(f.next_lsn());
        }
        let sealed = frames.iter().any(|f| f.kind() == FrameKind::Seal)
            || matches!(end, Some(SegmentEnd::Sealed { .. }));
        if moved {
            window = FOLLOW_WINDOW_BYTES;
        } else if matches!(end, Some(SegmentEnd::TornTail { .. })) {
            // Perhaps a frame longer than the window: look further.
            window = (window * 2).min(1 << 30);
        }
        if (sealed || !moved)
            && let Some(to) = look_further(target, &cursor, next_lsn, &seen)?
        {
            if let Some(note) = to.note {
                p.note(note)?;
            }
            next_lsn = to.cursor.point.next_lsn();
            seen.insert(to.cursor.name.clone(), *to.cursor.point.header());
            cursor = to.cursor;
            ends_at = to.ends_at;
            window = FOLLOW_WINDOW_BYTES;
            continue;
        }
        if frames.is_empty() {
            std::thread::sleep(FOLLOW_POLL);
        }
    }
}

/// The frames of the cursor's segment after its point, within `window`
/// bytes, the scan's end and its new point.
fn read_more(
    target: &Target,
    cursor: &Cursor,
    window: usize,
) -> Result<(Vec<Frame>, Option<SegmentEnd>, ScanPoint), CliError> {
    let file = target
        .storage
        .open(&cursor.name, wal_io::FileOptions::BUFFERED)?;
    let size = file.size()?;
    // Scans resume from the start of the 4 KiB block the point is in.
    let base = cursor.point.offset() & !4095;
    let len = usize::try_from(size.saturating_sub(base))
        .unwrap_or(usize::MAX)
        .min(window);
    let mut buf = vec![0u8; len];
    file.read_at(base, &mut buf)?;
    let mut scanner = SegmentScanner::resume(Bytes::from(buf), base, &cursor.point)
        .map_err(|e| CliError::Wal(corrupt(&cursor.name, &e)))?;
    let frames: Vec<Frame> = scanner.by_ref().collect();
    let point = scanner.point();
    let end = scanner.finish().end;
    Ok((frames, Some(end), point))
}

/// Where the follower goes once its segment has nothing new.
struct Move {
    /// The segment to read, from its start (the next LSN to print).
    cursor: Cursor,
    /// Where that segment ends, if a later one is listed: its frames from
    /// there on are ones an earlier cut left in the file.
    ends_at: Option<u64>,
    /// What to say first: a cut or a purge.
    note: Option<Note>,
}

/// Where the log goes on after the cursor's segment, which has nothing new
/// past `next_lsn` (the LSN after the last record read). `seen` holds the
/// header of every segment this follower has looked at, by name.
///
/// `truncate_back` starts a new segment at or before the cut (carrying the
/// records of the cut frame that stay), removes the segments after it,
/// newest first, and renames the new one into place, replacing a segment
/// of the same name; the segment holding the cut keeps its frames past it
/// in the file. `truncate_front` removes segments oldest first. So the
/// newest segment at or before the cursor's that still has the header seen
/// (the anchor) is where the log is unchanged; the first segment after it
/// is a rotation if it starts at `next_lsn`, a cut if it starts before. A
/// cut whose new segment is not there yet, or a segment whose header does
/// not read now, is looked at again at the next poll.
fn look_further(
    target: &Target,
    cursor: &Cursor,
    next_lsn: u64,
    seen: &HashMap<String, SegmentHeader>,
) -> Result<Option<Move>, CliError> {
    let current_lsn = cursor.point.header().first_lsn();
    let listed = segments_named(&target.storage.list()?);
    let mut anchor = None;
    for (i, seg) in listed.iter().enumerate().rev() {
        if seg.first_lsn > current_lsn {
            continue;
        }
        // A name never seen is new: a cut's segment.
        let Some(header) = seen.get(&seg.name) else {
            continue;
        };
        match segment_start(target, &seg.name) {
            None => return Ok(None),
            Some(p) if p.header() == header => {
                anchor = Some(i);
                break;
            }
            // Replaced by a cut.
            Some(_) => {}
        }
    }
    let after = anchor.map_or(0, |i| i + 1);
    let Some(seg) = listed.get(after) else {
        return Ok(None);
    };
    // A newer engine writing here: stop, as opening the directory would.
    refuse_newer(&*target.storage, &seg.name)?;
    let Some(point) = segment_start(target, &seg.name) else {
        return Ok(None);
    };
    let from = seg.first_lsn;
    let at_cursor = anchor.is_some_and(|i| listed[i].name == cursor.name);
    let note = if from == next_lsn {
        None
    } else if from < next_lsn && (at_cursor || from <= current_lsn || anchor.is_none()) {
        Some(Note::CutBack { from })
    } else if anchor.is_none() && from > next_lsn {
        Some(Note::Purged {
            from: next_lsn,
            to: from,
        })
    } else {
        // Past the cursor with an older anchor: a cut not finished yet.
        return Ok(None);
    };
    Ok(Some(Move {
        cursor: Cursor {
            name: seg.name.clone(),
            point,
        },
        ends_at: listed.get(after + 1).map(|s| s.first_lsn),
        note,
    }))
}

/// Where a scan of segment `name` starts, from its header alone; `None` if
/// the header cannot be read or decoded now.
fn segment_start(target: &Target, name: &str) -> Option<ScanPoint> {
    let file = target
        .storage
        .open(name, wal_io::FileOptions::BUFFERED)
        .ok()?;
    let mut header = vec![0u8; SegmentHeader::LEN];
    file.read_at(0, &mut header).ok()?;
    SegmentScanner::new(Bytes::from(header))
        .ok()
        .map(|s| s.point())
}

fn corrupt(segment: &str, e: &wal_format::DecodeError) -> wal_engine::WalError {
    wal_engine::WalError::Corrupt {
        segment: segment.to_owned(),
        offset: e.offset(),
        detail: e.to_string(),
        cause: Some(e.clone()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;
    use crate::dump::{Range, print_existing};
    use crate::target::AsKind;

    fn record(lsn: u64) -> Vec<u8> {
        format!("record {lsn} ").repeat(20).into_bytes()
    }

    /// What replaces a record after a cut: another length.
    fn replacement(lsn: u64) -> Vec<u8> {
        format!("replacement {lsn} ").repeat(30).into_bytes()
    }

    fn open_log(dir: &std::path::Path) -> wal_engine::Wal {
        let mut o = wal_engine::Options::default();
        o.segment_bytes = 64 << 10;
        o.queue_bytes_max = 8 << 10;
        o.record_bytes_max = 4 << 10;
        wal_engine::Wal::open(dir, o).unwrap().0
    }

    /// A log holding `record(1..=n)`, open.
    fn written_log(n: u64) -> (tempfile::TempDir, wal_engine::Wal) {
        let dir = tempfile::tempdir().unwrap();
        let wal = open_log(dir.path());
        for lsn in 1..=n {
            wal.commit(&record(lsn)).unwrap();
        }
        (dir, wal)
    }

    /// A JSON printer of the records from `from` on, `limit` of them.
    fn printer(from: u64, limit: u64) -> Printer<Vec<u8>> {
        Printer {
            out: Vec::new(),
            range: Range {
                from,
                to: u64::MAX,
                limit,
                json: true,
            },
            store: false,
            printed: 0,
            next_lsn: 0,
            segment: String::new(),
        }
    }

    /// Runs the first pass over `dir` now, then follows in a thread; the
    /// output arrives on the receiver once the follower stops (after its
    /// limit, when one more record comes).
    fn follow(dir: &std::path::Path, mut p: Printer<Vec<u8>>) -> mpsc::Receiver<Vec<u8>> {
        let target = Target::open(dir, AsKind::Log).unwrap();
        let existing = print_existing(&target, true, &mut p).unwrap();
        assert!(!existing.past);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            follow_from(&target, &mut p, existing).unwrap();
            let _ = tx.send(p.out);
        });
        rx
    }

    /// A line of the output.
    #[derive(Debug, PartialEq)]
    enum Shown {
        /// A record: its LSN and length.
        Record(u64, u64),
        CutBack(u64),
        Purged(u64, u64),
    }

    /// The output, line by line; a follower that never stops fails.
    fn lines(rx: &mpsc::Receiver<Vec<u8>>) -> Vec<Shown> {
        lines_of(
            rx.recv_timeout(Duration::from_secs(60))
                .expect("the follower stopped"),
        )
    }

    /// The output as in [`lines`].
    fn lines_of(out: Vec<u8>) -> Vec<Shown> {
        let n = |v: &serde_json::Value, field: &str| v[field].as_u64().unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                if v.get("cut_back_from").is_some() {
                    Shown::CutBack(n(&v, "cut_back_from"))
                } else if v.get("purged_from").is_some() {
                    Shown::Purged(n(&v, "purged_from"), n(&v, "purged_to"))
                } else {
                    Shown::Record(n(&v, "lsn"), n(&v, "bytes"))
                }
            })
            .collect()
    }

    fn shown(lsns: std::ops::RangeInclusive<u64>, f: fn(u64) -> Vec<u8>) -> Vec<Shown> {
        lsns.map(|l| Shown::Record(l, f(l).len() as u64)).collect()
    }

    /// Records `1..=written`, a cut back to `from`, then the replacements
    /// from `from` to `upto`.
    fn cut_shown(written: u64, from: u64, upto: u64) -> Vec<Shown> {
        let mut want = shown(1..=written, record);
        want.push(Shown::CutBack(from));
        want.extend(shown(from..=upto, replacement));
        want
    }

    /// Records written after the first pass read the last segment, but
    /// before `--follow` took its place there, are printed once, in order.
    #[test]
    fn follow_prints_what_was_written_after_the_first_pass() {
        let (dir, wal) = written_log(50);
        let target = Target::open(dir.path(), AsKind::Log).unwrap();
        let mut p = printer(40, 26);
        let existing = print_existing(&target, true, &mut p).unwrap();
        // Between the passes.
        for lsn in 51..=60 {
            wal.commit(&record(lsn)).unwrap();
        }
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            follow_from(&target, &mut p, existing).unwrap();
            let _ = tx.send(p.out);
        });
        for lsn in 61..=70 {
            wal.commit(&record(lsn)).unwrap();
        }
        assert_eq!(lines(&rx), shown(40..=65, record));
    }

    /// Shows `1..=written` and follows while `wal` is cut back to `kept`
    /// and replacements are written up to `rewritten`; stops after
    /// `replaced` of them.
    fn follow_across_a_cut(written: u64, kept: u64, rewritten: u64, replaced: u64) -> Vec<Shown> {
        let (dir, wal) = written_log(written);
        let rx = follow(dir.path(), printer(1, written + replaced));
        wal.truncate_back(kept).unwrap();
        for lsn in kept + 1..=rewritten {
            wal.commit(&replacement(lsn)).unwrap();
        }
        lines(&rx)
    }

    #[test]
    fn follow_says_when_records_it_showed_are_cut_back() {
        // Within the segment being followed.
        assert_eq!(follow_across_a_cut(50, 30, 50, 15), cut_shown(50, 31, 45));
    }

    #[test]
    fn follow_says_when_the_segment_it_follows_is_cut_away() {
        assert_eq!(
            follow_across_a_cut(1200, 100, 150, 20),
            cut_shown(1200, 101, 120)
        );
    }

    #[test]
    fn follow_says_when_the_segment_it_follows_is_replaced() {
        // Cut just before the last segment: a new one takes its name.
        let (dir, wal) = written_log(1200);
        let target = Target::open(dir.path(), AsKind::Log).unwrap();
        let last = target.segments.last().unwrap().first_lsn;
        assert!(last > 1, "the log spans segments");
        let rx = follow(dir.path(), printer(1, 1200 + 11));
        wal.truncate_back(last - 1).unwrap();
        for lsn in last..=last + 20 {
            wal.commit(&replacement(lsn)).unwrap();
        }
        assert_eq!(lines(&rx), cut_shown(1200, last, last + 10));
    }

    /// A follower that reaches a segment an earlier cut ended early does
    /// not show the frames the cut left in its file.
    #[test]
    fn follow_skips_the_frames_a_cut_left_in_a_segment() {
        let (dir, wal) = written_log(1200);
        let mut target = Target::open(dir.path(), AsKind::Log).unwrap();
        assert!(target.segments.len() >= 3, "the log spans segments");
        let second = target.segments[1].first_lsn;
        let kept = second + 20;
        wal.truncate_back(kept).unwrap();
        for lsn in kept + 1..=kept + 30 {
            wal.commit(&replacement(lsn)).unwrap();
        }
        // A follower still in the first segment: it reads the second one,
        // cut after `kept`, on its way.
        target.segments.truncate(1);
        let mut p = printer(1, kept + 20);
        let existing = print_existing(&target, true, &mut p).unwrap();
        follow_from(&target, &mut p, existing).unwrap();
        let mut want = shown(1..=kept, record);
        want.extend(shown(kept + 1..=kept + 20, replacement));
        assert_eq!(lines_of(p.out), want);
    }

    /// A segment of a newer format appearing while the log is followed
    /// stops the follower with the error opening the directory gives.
    #[test]
    fn a_newer_segment_stops_the_follower() {
        let (dir, wal) = written_log(50);
        wal.close().unwrap();
        let target = Target::open(dir.path(), AsKind::Log).unwrap();
        let mut p = printer(1, u64::MAX);
        let existing = print_existing(&target, true, &mut p).unwrap();
        // The next segment, as a newer engine would start it.
        let first = &target.segments[0].name;
        let mut header = std::fs::read(dir.path().join(first)).unwrap();
        header.truncate(SegmentHeader::LEN);
        let newer = wal_format::FORMAT_VERSION + 1;
        header[8..10].copy_from_slice(&newer.to_le_bytes());
        let crc = crc32c::crc32c(&header[..60]);
        header[60..64].copy_from_slice(&crc.to_le_bytes());
        let next = wal_engine::segment_name(51);
        std::fs::write(dir.path().join(&next), &header).unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(follow_from(&target, &mut p, existing).map_err(|e| e.to_string()));
        });
        let err = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the follower stopped")
            .unwrap_err();
        assert!(
            err.contains(&format!("{next}: format version {newer}")),
            "{err}"
        );
    }

    /// A follower still in a segment when it and the next are purged says
    /// which records it never saw, and goes on with the oldest segment left.
    #[test]
    fn a_purge_of_segments_not_yet_read_is_said_and_skipped() {
        let (dir, wal) = written_log(1200);
        let mut target = Target::open(dir.path(), AsKind::Log).unwrap();
        assert!(target.segments.len() >= 3, "the log spans segments");
        let (second, third) = (target.segments[1].first_lsn, target.segments[2].first_lsn);
        // A follower in the first segment, at its end.
        target.segments.truncate(1);
        let mut p = printer(1, second - 1 + 10);
        let existing = print_existing(&target, true, &mut p).unwrap();
        assert_eq!(wal.truncate_front(third).unwrap(), 2);
        follow_from(&target, &mut p, existing).unwrap();
        let mut want = shown(1..=second - 1, record);
        want.push(Shown::Purged(second, third));
        want.extend(shown(third..=third + 9, record));
        assert_eq!(lines_of(p.out), want);
    }
}
