//! `walctl stat`: what a log or store holds, in figures.

use std::ops::ControlFlow;

use serde::Serialize;
use wal_format::FrameKind;
use wal_io::portable::LockState;

use crate::error::CliError;
use crate::scan::{self, codec_name};
use crate::target::{Kind, Target};

/// The figures.
#[derive(Debug, Default, Serialize)]
pub struct Stat {
    pub dir: String,
    pub kind: &'static str,
    /// The pid holding the directory, if a process does (0: unknown pid).
    pub held_by: Option<u32>,
    pub segments: usize,
    pub first_segment: Option<String>,
    pub last_segment: Option<String>,
    /// What the log holds as recovery would open it (none if recovery
    /// would refuse it: see `damage`).
    pub first_lsn: Option<u64>,
    pub last_lsn: Option<u64>,
    pub records: Option<u64>,
    /// Frames read, seals included.
    pub frames: u64,
    pub frames_by_codec: std::collections::BTreeMap<&'static str, u64>,
    pub bytes_on_disk: u64,
    /// Payload bytes as stored (compressed) and as written (raw).
    pub stored_bytes: u64,
    pub raw_bytes: u64,
    pub compression_ratio: Option<f64>,
    /// The first and last commit times the frames carry (version 4 on).
    pub first_time: Option<String>,
    pub last_time: Option<String>,
    /// How the last segment's valid prefix ends.
    pub tail: Option<String>,
    /// Why the default recovery would refuse the log, if it would.
    pub damage: Option<String>,
    pub checkpoint_lsn: Option<u64>,
    pub levels: Vec<Level>,
}

/// One level of a store's tables.
#[derive(Debug, Serialize)]
pub struct Level {
    pub level: usize,
    pub tables: usize,
    pub bytes: u64,
}

/// Gathers the figures.
///
/// # Errors
/// The storage's read errors.
pub fn stat(target: &Target) -> Result<Stat, CliError> {
    let mut s = Stat {
        dir: target.path.display().to_string(),
        kind: target.kind.name(),
        held_by: match target.lock {
            LockState::Held { holder } => Some(holder.unwrap_or(0)),
            _ => None,
        },
        segments: target.segments.len(),
        first_segment: target.segments.first().map(|x| x.name.clone()),
        last_segment: target.segments.last().map(|x| x.name.clone()),
        ..Stat::default()
    };
    match wal_engine::inspect(&*target.storage, wal_engine::RecoveryMode::default()) {
        Ok(report) => {
            s.records = Some(report.records);
            s.first_lsn = Some(report.first_lsn).filter(|_| report.records > 0);
            s.last_lsn = Some(report.next_lsn - 1).filter(|_| report.records > 0);
        }
        Err(e) => s.damage = Some(e.to_string()),
    }
    let (mut first_time, mut last_time) = (None, None);
    scan::each(target, |seg| {
        s.bytes_on_disk += seg.size;
        for f in &seg.frames {
            s.frames += 1;
            if f.kind() == FrameKind::Records {
                *s.frames_by_codec
                    .entry(codec_name(f.header().codec))
                    .or_default() += 1;
            }
            if let Some(t) = f.timestamp_us() {
                first_time.get_or_insert(t);
                last_time = Some(last_time.map_or(t, |l: u64| l.max(t)));
            }
            s.stored_bytes += u64::from(f.header().stored_len);
            s.raw_bytes += u64::from(f.header().raw_len);
        }
        s.tail = Some(scan::describe_end(seg));
        Ok(ControlFlow::Continue(()))
    })?;
    s.first_time = first_time.map(crate::show::time);
    s.last_time = last_time.map(crate::show::time);
    s.compression_ratio = (s.stored_bytes > 0).then(|| s.raw_bytes as f64 / s.stored_bytes as f64);
    if let Kind::Store(Some(m)) = &target.kind {
        s.checkpoint_lsn = Some(m.checkpoint_lsn);
        for (level, ids) in m.levels.iter().enumerate() {
            let mut bytes = 0;
            for id in ids {
                let name = wal_kv::inspect::table_name(*id);
                bytes += target
                    .storage
                    .open(&name, wal_io::FileOptions::BUFFERED)
                    .and_then(|f| f.size())
                    .unwrap_or(0);
            }
            s.levels.push(Level {
                level,
                tables: ids.len(),
                bytes,
            });
        }
    }
    Ok(s)
}

/// The figures as lines of text.
pub fn render(s: &Stat) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let opt = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
    let _ = writeln!(out, "directory     {} ({})", s.dir, s.kind);
    let held = match s.held_by {
        None => "no".to_owned(),
        Some(0) => "yes, by a process that left no pid".to_owned(),
        Some(p) => format!("yes, by process {p} (figures may move as it writes)"),
    };
    let _ = writeln!(out, "held          {held}");
    let _ = writeln!(
        out,
        "segments      {} ({} .. {})",
        s.segments,
        s.first_segment.as_deref().unwrap_or("-"),
        s.last_segment.as_deref().unwrap_or("-")
    );
    let _ = writeln!(
        out,
        "lsn           {} .. {} ({} records)",
        opt(s.first_lsn),
        opt(s.last_lsn),
        opt(s.records)
    );
    let codecs: Vec<String> = s
        .frames_by_codec
        .iter()
        .map(|(c, n)| format!("{n} {c}"))
        .collect();
    let _ = writeln!(out, "frames        {} ({})", s.frames, codecs.join(", "));
    let _ = writeln!(
        out,
        "bytes         {} on disk, {} stored, {} raw, ratio {}",
        s.bytes_on_disk,
        s.stored_bytes,
        s.raw_bytes,
        s.compression_ratio
            .map_or("-".to_owned(), |r| format!("{r:.2}"))
    );
    if let (Some(a), Some(b)) = (&s.first_time, &s.last_time) {
        let _ = writeln!(out, "commits       {a} .. {b}");
    }
    let _ = writeln!(out, "tail          {}", s.tail.as_deref().unwrap_or("-"));
    if let Some(d) = &s.damage {
        let _ = writeln!(out, "damage        {d}");
    }
    if s.kind == "store" {
        let _ = writeln!(
            out,
            "checkpoint    {}",
            s.checkpoint_lsn
                .map_or("none yet".to_owned(), |c| format!("LSN {c}"))
        );
        for l in &s.levels {
            let _ = writeln!(
                out,
                "level {}       {} tables, {} bytes",
                l.level, l.tables, l.bytes
            );
        }
    }
    out
}
