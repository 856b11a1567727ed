//! `walctl dump`: one line per record, and `--follow` to tail a live log.

mod follow;

use std::collections::HashMap;
use std::io::Write;
use std::ops::ControlFlow;

use serde::Serialize;
use wal_format::{Frame, Record, SegmentEnd, SegmentHeader};
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
    let existing = print_existing(target, follow, &mut p)?;
    if follow && !existing.past && !p.done() {
        follow::follow_from(target, &mut p, existing)?;
    }
    p.out.flush().map_err(CliError::io("write the dump"))
}

/// What the first pass saw.
struct Existing {
    /// It went past the range.
    past: bool,
    /// Every segment's header, by name.
    seen: HashMap<String, SegmentHeader>,
}

/// The first pass: the records in the segments listed when the target was
/// opened.
fn print_existing<W: Write>(
    target: &Target,
    follow: bool,
    p: &mut Printer<W>,
) -> Result<Existing, CliError> {
    let mut past = false;
    let mut seen = HashMap::new();
    scan::each(target, |seg| {
        p.segment.clone_from(&seg.name);
        if let Ok(header) = &seg.header {
            seen.insert(seg.name.clone(), *header);
        }
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
    Ok(Existing { past, seen })
}
