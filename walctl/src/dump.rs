//! `walctl dump`: one line per record, and `--follow` to tail a live log.

use std::io::Write;
use std::ops::ControlFlow;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use wal_format::{Frame, FrameKind, Record, ScanPoint, SegmentEnd, SegmentScanner};
use wal_kv::{Op, WriteBatch};

use crate::error::CliError;
use crate::scan::{self, codec_name};
use crate::show;
use crate::target::{Kind, Target};

/// Which records, and how.
#[derive(Debug, Clone, Copy)]
pub struct Range {
    pub from: u64,
    pub to: u64,
    pub limit: u64,
    pub json: bool,
}

/// How often `--follow` looks for new records.
const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// Bytes of a segment `--follow` reads past where it stopped, at first
/// (doubled while a frame does not fit).
const FOLLOW_WINDOW_BYTES: usize = 1 << 20;

#[derive(Serialize)]
struct Line<'a> {
    lsn: u64,
    segment: &'a str,
    frame_offset: u64,
    frame_first_lsn: u64,
    bytes: usize,
    codec: &'static str,
    /// The commit time, microseconds since the Unix epoch, and as RFC 3339
    /// (format version 4 on).
    #[serde(skip_serializing_if = "Option::is_none")]
    time_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ops: Option<Vec<JsonOp>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    undecodable: Option<String>,
}

#[derive(Serialize)]
struct JsonOp {
    op: &'static str,
    key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_bytes: Option<usize>,
}

/// Prints records, counting them.
struct Printer<W: Write> {
    out: W,
    range: Range,
    store: bool,
    printed: u64,
    /// The LSN after the last record offered, printed or not: `--follow`
    /// goes on from here, so a record written between the first pass and
    /// the follow is neither skipped nor printed twice.
    next_lsn: u64,
    /// The segment the records come from.
    segment: String,
}

impl<W: Write> Printer<W> {
    fn done(&self) -> bool {
        self.printed >= self.range.limit
    }

    /// Prints `r` if it is in range; `Break` once past the range.
    fn record(&mut self, f: &Frame, r: &Record) -> Result<ControlFlow<()>, CliError> {
        if r.lsn > self.range.to || self.done() {
            return Ok(ControlFlow::Break(()));
        }
        self.next_lsn = self.next_lsn.max(r.lsn + 1);
        if r.lsn < self.range.from {
            return Ok(ControlFlow::Continue(()));
        }
        let batch = self.store.then(|| WriteBatch::from_record(&r.data));
        let codec = codec_name(f.header().codec);
        let text = if self.range.json {
            let (ops, undecodable) = match &batch {
                None => (None, None),
                Some(Ok(b)) => (Some(json_ops(b)), None),
                Some(Err(e)) => (None, Some(e.to_string())),
            };
            let line = Line {
                lsn: r.lsn,
                segment: &self.segment,
                frame_offset: f.offset(),
                frame_first_lsn: f.first_lsn(),
                bytes: r.data.len(),
                codec,
                time_us: f.timestamp_us(),
                time: f.timestamp_us().map(show::time),
                ops,
                undecodable,
            };
            serde_json::to_string(&line).map_err(|e| CliError::Io {
                what: "encode JSON".into(),
                source: e.into(),
            })?
        } else {
            let ops = match &batch {
                None => String::new(),
                Some(Ok(b)) => format!("  {}", show::batch(b).join("; ")),
                Some(Err(e)) => format!("  undecodable batch: {e}"),
            };
            let time = f
                .timestamp_us()
                .map_or(String::new(), |t| format!("  {}", show::time(t)));
            format!(
                "{}  {}@{}  {} B  {codec}{time}{ops}",
                r.lsn,
                self.segment,
                f.offset(),
                r.data.len()
            )
        };
        writeln!(self.out, "{text}").map_err(CliError::io("write the dump"))?;
        self.printed += 1;
        Ok(ControlFlow::Continue(()))
    }
}

fn json_ops(b: &WriteBatch) -> Vec<JsonOp> {
    b.ops()
        .iter()
        .map(|op| match op {
            Op::Put { key, value } => JsonOp {
                op: "put",
                key: show::escape(key),
                value_bytes: Some(value.len()),
            },
            Op::Delete { key } => JsonOp {
                op: "del",
                key: show::escape(key),
                value_bytes: None,
            },
            _ => JsonOp {
                op: "other",
                key: String::new(),
                value_bytes: None,
            },
        })
        .collect()
}

/// Prints the records in `range`, then, with `follow`, new ones as they
/// are written, until the range or limit is reached (or forever).
///
/// # Errors
/// The storage's read errors, a failed write to `out`.
pub fn dump(target: &Target, range: Range, follow: bool, out: impl Write) -> Result<(), CliError> {
    let mut p = Printer {
        out,
        range,
        store: matches!(target.kind, Kind::Store(_)),
        printed: 0,
        next_lsn: 0,
        segment: String::new(),
    };
    let past = print_existing(target, follow, &mut p)?;
    if follow && !past && !p.done() {
        follow_from(target, &mut p)?;
    }
    p.out.flush().map_err(CliError::io("write the dump"))
}

/// The first pass: the records in the segments listed when the target was
/// opened. True once past the range.
fn print_existing<W: Write>(
    target: &Target,
    follow: bool,
    p: &mut Printer<W>,
) -> Result<bool, CliError> {
    let mut past = false;
    scan::each(target, |seg| {
        p.segment.clone_from(&seg.name);
        for (f, r) in seg.records() {
            if p.record(f, &r)?.is_break() {
                past = true;
                return Ok(ControlFlow::Break(()));
            }
        }
        if !follow && !matches!(seg.end, Some(SegmentEnd::Clean | SegmentEnd::Sealed { .. })) {
            eprintln!("# {}: {}", seg.name, scan::describe_end(seg));
        }
        Ok(ControlFlow::Continue(()))
    })?;
    Ok(past)
}

/// Where `--follow` reads: a segment and the scan's place in it.
struct Cursor {
    name: String,
    point: ScanPoint,
}

/// Tails the log: polls the last segment from where its valid frames end,
/// and moves to the next segment when one is sealed (or a newer one
/// starts where this one ended).
fn follow_from<W: Write>(target: &Target, p: &mut Printer<W>) -> Result<(), CliError> {
    let Some(last) = target.segments.last() else {
        return Ok(());
    };
    // Scan the last segment again for a place to poll from. It may have
    // grown since the first pass: print what it added (records already
    // offered are skipped by LSN).
    let data = target.read(&last.name)?;
    let mut scanner =
        SegmentScanner::new(data).map_err(|e| CliError::Wal(corrupt(&last.name, &e)))?;
    let mut next_lsn = p.next_lsn.max(last.first_lsn);
    p.segment.clone_from(&last.name);
    for f in scanner.by_ref() {
        for r in f.records().filter(|r| r.lsn >= next_lsn) {
            if p.record(&f, &r)?.is_break() {
                return Ok(());
            }
        }
        next_lsn = next_lsn.max(f.next_lsn());
    }
    let mut cursor = Cursor {
        name: last.name.clone(),
        point: scanner.point(),
    };
    let mut window = FOLLOW_WINDOW_BYTES;
    loop {
        p.out.flush().map_err(CliError::io("write the dump"))?;
        // A segment that went away (purged) reads as nothing new.
        let (frames, end, point) =
            read_more(target, &cursor, window).unwrap_or((Vec::new(), None, cursor.point));
        let moved = point.offset() != cursor.point.offset();
        cursor.point = point;
        p.segment.clone_from(&cursor.name);
        for f in &frames {
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
            && let Some(next) = next_segment(target, &cursor.name, next_lsn)?
            && let Ok(s) = SegmentScanner::new(target.read(&next)?)
        {
            cursor = Cursor {
                name: next,
                point: s.point(),
            };
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

/// The segment after `current` that starts at or before `next_lsn`, once
/// it exists.
fn next_segment(target: &Target, current: &str, next_lsn: u64) -> Result<Option<String>, CliError> {
    let current_lsn = wal_engine::parse_segment_name(current).unwrap_or(0);
    Ok(target
        .storage
        .list()?
        .into_iter()
        .filter_map(|n| wal_engine::parse_segment_name(&n).map(|l| (l, n)))
        .filter(|(l, _)| *l > current_lsn && *l <= next_lsn)
        .max_by_key(|(l, _)| *l)
        .map(|(_, n)| n))
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
    use super::*;
    use crate::target::AsKind;

    fn record(lsn: u64) -> Vec<u8> {
        format!("record {lsn} ").repeat(20).into_bytes()
    }

    /// Records written after the first pass read the last segment, but
    /// before `--follow` took its place there, are printed once, in order.
    #[test]
    fn follow_prints_what_was_written_after_the_first_pass() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = wal_engine::Options::default();
        o.segment_bytes = 64 << 10;
        o.queue_bytes_max = 8 << 10;
        o.record_bytes_max = 4 << 10;
        let (wal, _) = wal_engine::Wal::open(dir.path(), o).unwrap();
        for lsn in 1..=50 {
            wal.commit(&record(lsn)).unwrap();
        }
        let target = Target::open(dir.path(), AsKind::Log).unwrap();
        let range = Range {
            from: 40,
            to: 65,
            limit: u64::MAX,
            json: true,
        };
        let mut p = Printer {
            out: Vec::new(),
            range,
            store: false,
            printed: 0,
            next_lsn: 0,
            segment: String::new(),
        };
        assert!(!print_existing(&target, true, &mut p).unwrap());
        // Between the passes.
        for lsn in 51..=60 {
            wal.commit(&record(lsn)).unwrap();
        }
        let follower = std::thread::spawn(move || {
            follow_from(&target, &mut p).unwrap();
            p.out
        });
        for lsn in 61..=70 {
            wal.commit(&record(lsn)).unwrap();
        }
        let out = follower.join().unwrap();
        let lsns: Vec<u64> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["lsn"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(lsns, (40..=65).collect::<Vec<_>>());
    }
}
