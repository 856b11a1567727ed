//! `walctl verify`: a full read of the log (and a store's tables), and
//! what opening it would do in each recovery mode.

use std::ops::ControlFlow;

use serde::Serialize;
use wal_engine::{RecoveryMode, RecoveryReport};
use wal_kv::WriteBatch;
use wal_kv::inspect::{ManifestInfo, TableSummary, parse_table_name, verify_table};

use crate::error::CliError;
use crate::scan;
use crate::target::{Kind, Target};

/// The verdicts, worst first.
pub const CLEAN: u8 = 0;
/// Opening would repair something (cut a torn tail, remove leftovers).
pub const REPAIRABLE: u8 = 1;
/// Opening would refuse (corruption; the manifest damaged), or data does
/// not read back (a table block: opening checks only a table's footer,
/// index and filter, so the store would open and fail on reads).
pub const REFUSED: u8 = 2;

/// What each recovery mode would do.
#[derive(Debug, Serialize)]
pub struct ModeVerdict {
    pub mode: &'static str,
    /// Whether the log would open.
    pub opens: bool,
    pub records: Option<u64>,
    pub next_lsn: Option<u64>,
    /// What it would cut or remove, and why.
    pub would_cut: Vec<String>,
    /// Segments it would rename aside.
    pub would_discard: Vec<String>,
    /// LSN ranges it would skip.
    pub gaps: Vec<(u64, u64)>,
    /// Why it would refuse.
    pub refusal: Option<String>,
}

/// The whole verdict.
#[derive(Debug, Serialize)]
pub struct Verdict {
    pub dir: String,
    pub kind: &'static str,
    pub modes: Vec<ModeVerdict>,
    pub tables: Vec<TableVerdict>,
    /// The store's own findings (beyond the log and each table).
    pub store: Vec<Finding>,
    /// 0 clean, 1 repairable, 2 refused (the default mode's and the
    /// store's verdicts together).
    pub verdict: u8,
}

/// One table.
#[derive(Debug, Serialize)]
pub struct TableVerdict {
    pub id: u64,
    pub level: usize,
    pub ok: bool,
    pub entries: Option<u64>,
    pub bytes: Option<u64>,
    pub error: Option<String>,
}

/// Something about the store as a whole.
#[derive(Debug, Serialize)]
pub struct Finding {
    /// `REPAIRABLE` or `REFUSED`.
    pub severity: u8,
    pub what: String,
}

const MODES: [(RecoveryMode, &str); 4] = [
    (
        RecoveryMode::TolerateTornTail,
        "tolerate-torn-tail (default)",
    ),
    (RecoveryMode::AbsoluteConsistency, "absolute-consistency"),
    (RecoveryMode::PointInTime, "point-in-time"),
    (RecoveryMode::SkipCorrupted, "skip-corrupted"),
];

fn mode_verdict(
    mode: &'static str,
    outcome: Result<RecoveryReport, wal_engine::WalError>,
) -> ModeVerdict {
    match outcome {
        Ok(r) => ModeVerdict {
            mode,
            opens: true,
            records: Some(r.records),
            next_lsn: Some(r.next_lsn),
            would_cut: r
                .cuts
                .iter()
                .map(|c| {
                    format!(
                        "{} at offset {} ({} bytes): {}",
                        c.segment, c.offset, c.bytes, c.reason
                    )
                })
                .collect(),
            would_discard: r.discarded.clone(),
            gaps: r.gaps.clone(),
            refusal: None,
        },
        Err(e) => ModeVerdict {
            mode,
            opens: false,
            records: None,
            next_lsn: None,
            would_cut: Vec::new(),
            would_discard: Vec::new(),
            gaps: Vec::new(),
            refusal: Some(e.to_string()),
        },
    }
}

/// Reads everything and judges.
///
/// # Errors
/// The storage's read errors.
pub fn verify(target: &Target) -> Result<Verdict, CliError> {
    let mut reports = Vec::new();
    let mut modes = Vec::new();
    for (mode, name) in MODES {
        let outcome = wal_engine::inspect(&*target.storage, mode);
        reports.push(outcome.as_ref().ok().cloned());
        modes.push(mode_verdict(name, outcome));
    }
    let default = &modes[0];
    let mut verdict = if !default.opens {
        REFUSED
    } else if default.would_cut.is_empty() {
        CLEAN
    } else {
        REPAIRABLE
    };
    let (mut tables, mut store) = (Vec::new(), Vec::new());
    if let Kind::Store(manifest) = &target.kind {
        let empty = ManifestInfo::default();
        let m = manifest.as_ref().unwrap_or(&empty);
        tables = check_tables(target, m, &mut store)?;
        check_log_against(target, m, reports[0].as_ref(), &mut store)?;
    }
    for f in &store {
        verdict = verdict.max(f.severity);
    }
    if tables.iter().any(|t| !t.ok) {
        verdict = REFUSED;
    }
    Ok(Verdict {
        dir: target.path.display().to_string(),
        kind: target.kind.name(),
        modes,
        tables,
        store,
        verdict,
    })
}

/// Every table the manifest lists, read whole; levels past 0 in key order
/// and apart; tables past the checkpoint; leftovers open would remove.
fn check_tables(
    target: &Target,
    m: &ManifestInfo,
    findings: &mut Vec<Finding>,
) -> Result<Vec<TableVerdict>, CliError> {
    let mut tables = Vec::new();
    for (level, ids) in m.levels.iter().enumerate() {
        let mut previous: Option<TableSummary> = None;
        for &id in ids {
            match verify_table(&*target.storage, id) {
                Ok(t) => {
                    if t.max_lsn > m.checkpoint_lsn {
                        findings.push(Finding {
                            severity: REFUSED,
                            what: format!(
                                "table {id} holds LSN {}, past the checkpoint at LSN {}",
                                t.max_lsn, m.checkpoint_lsn
                            ),
                        });
                    }
                    if level > 0
                        && let (Some(p), Some((first, _))) = (&previous, &t.key_range)
                        && p.key_range.as_ref().is_some_and(|(_, last)| last >= first)
                    {
                        findings.push(Finding {
                            severity: REFUSED,
                            what: format!(
                                "level {level}: table {id} overlaps table {} or is out of key order",
                                p.id
                            ),
                        });
                    }
                    tables.push(TableVerdict {
                        id,
                        level,
                        ok: true,
                        entries: Some(t.entries),
                        bytes: Some(t.size),
                        error: None,
                    });
                    previous = Some(t);
                }
                Err(e) => tables.push(TableVerdict {
                    id,
                    level,
                    ok: false,
                    entries: None,
                    bytes: None,
                    error: Some(e.to_string()),
                }),
            }
        }
    }
    let listed: Vec<u64> = m.levels.iter().flatten().copied().collect();
    for name in target.storage.list()? {
        if let Some(id) = parse_table_name(&name)
            && !listed.contains(&id)
        {
            findings.push(Finding {
                severity: REPAIRABLE,
                what: format!(
                    "{name} is not in the manifest (a compaction's leftover): open removes it"
                ),
            });
        }
        if name == "MANIFEST.tmp" {
            findings.push(Finding {
                severity: REPAIRABLE,
                what: "MANIFEST.tmp is an interrupted manifest write: open removes it".into(),
            });
        }
    }
    Ok(tables)
}

/// The log must continue the checkpoint, and every record after it must
/// be a batch (open replays them).
fn check_log_against(
    target: &Target,
    m: &ManifestInfo,
    report: Option<&RecoveryReport>,
    findings: &mut Vec<Finding>,
) -> Result<(), CliError> {
    let Some(r) = report else {
        return Ok(()); // the log itself is refused: said already
    };
    let resume = m.checkpoint_lsn + 1;
    if r.first_lsn > resume || r.next_lsn < resume {
        findings.push(Finding {
            severity: REFUSED,
            what: format!(
                "the log holds LSNs {}..{} but the checkpoint needs it to continue from LSN {resume}",
                r.first_lsn, r.next_lsn
            ),
        });
        return Ok(());
    }
    scan::each(target, |seg| {
        for (_, rec) in seg.records() {
            if rec.lsn < resume || rec.lsn >= r.next_lsn {
                continue;
            }
            if let Err(e) = WriteBatch::from_record(&rec.data) {
                findings.push(Finding {
                    severity: REFUSED,
                    what: format!("LSN {} in {} is not a write batch: {e}", rec.lsn, seg.name),
                });
                return Ok(ControlFlow::Break(()));
            }
        }
        Ok(ControlFlow::Continue(()))
    })
}

/// The verdict as lines of text.
pub fn render(v: &Verdict) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "{} ({})", v.dir, v.kind);
    for m in &v.modes {
        match &m.refusal {
            Some(why) => {
                let _ = writeln!(out, "  {:<30} refuses: {why}", m.mode);
            }
            None => {
                let _ = writeln!(
                    out,
                    "  {:<30} opens: {} records, next LSN {}",
                    m.mode,
                    m.records.unwrap_or(0),
                    m.next_lsn.unwrap_or(0)
                );
                for c in &m.would_cut {
                    let _ = writeln!(out, "  {:<30}   cuts {c}", "");
                }
                for d in &m.would_discard {
                    let _ = writeln!(out, "  {:<30}   sets aside {d}", "");
                }
                for (a, b) in &m.gaps {
                    let _ = writeln!(out, "  {:<30}   skips LSNs {a}..{b}", "");
                }
            }
        }
    }
    for t in &v.tables {
        match &t.error {
            None => {
                let _ = writeln!(
                    out,
                    "  table {} (level {}): ok, {} entries, {} bytes",
                    t.id,
                    t.level,
                    t.entries.unwrap_or(0),
                    t.bytes.unwrap_or(0)
                );
            }
            Some(e) => {
                let _ = writeln!(out, "  table {} (level {}): DAMAGED: {e}", t.id, t.level);
            }
        }
    }
    for f in &v.store {
        let _ = writeln!(out, "  store: {}", f.what);
    }
    let _ = writeln!(
        out,
        "verdict: {}",
        match v.verdict {
            CLEAN => "clean",
            REPAIRABLE => "damage that opening repairs (exit 1)",
            _ => "damage that opening refuses or that loses data (exit 2)",
        }
    );
    out
}
