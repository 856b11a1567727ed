//! `walctl salvage DIR --to NEW_DIR`: what can be recovered, copied into a
//! new directory (the source is never written), with what was lost.

use std::path::Path;

use serde::Serialize;
use wal_engine::RecoveryMode;
use wal_kv::inspect::{ManifestInfo, table_name, verify_table, write_manifest};

use crate::error::CliError;
use crate::target::{Kind, Target};

/// What the salvage kept and lost.
#[derive(Debug, Default, Serialize)]
pub struct Salvage {
    pub to: String,
    pub kind: &'static str,
    /// Records in the salvaged log, and its next LSN.
    pub records: u64,
    pub next_lsn: u64,
    /// Bytes cut from segments, and why.
    pub cut: Vec<String>,
    /// Segments set aside whole (kept in the new directory as
    /// `*.discarded` for a closer look).
    pub discarded: Vec<String>,
    /// LSN ranges skipped.
    pub gaps: Vec<(u64, u64)>,
    /// Tables left out because they are damaged (their keys fall back to
    /// older versions, or to none).
    pub tables_dropped: Vec<String>,
}

/// Copies `target` into `to` and opens the copy in `mode` (which cuts and
/// sets aside what it must); the report says what that cost.
///
/// # Errors
/// A held source, a destination that is not new and empty, a copy that
/// fails, a copy that still does not open.
pub fn salvage(target: &Target, to: &Path, mode: RecoveryMode) -> Result<Salvage, CliError> {
    target.require_idle("; salvage copies a directory nothing writes to")?;
    if to.exists()
        && std::fs::read_dir(to)
            .map_err(CliError::io(format!("read {}", to.display())))?
            .next()
            .is_some()
    {
        return Err(CliError::NotEmpty(to.to_owned()));
    }
    std::fs::create_dir_all(to).map_err(CliError::io(format!("create {}", to.display())))?;
    let mut report = Salvage {
        to: to.display().to_string(),
        kind: target.kind.name(),
        ..Salvage::default()
    };
    for name in target.storage.list()? {
        let keep =
            wal_engine::parse_segment_name(&name).is_some() || name == wal_engine::CLEAN_CLOSE_NAME;
        if keep {
            copy(target, &name, to)?;
        }
    }
    // A process that opened the source while it was copied may have cut,
    // recycled or compacted files under the copy: the copy proves nothing.
    if let wal_io::portable::LockState::Held { holder } =
        wal_io::portable::lock_state(&target.path)?
    {
        return Err(CliError::Locked {
            dir: target.path.clone(),
            holder,
            hint: "; it was opened during the salvage: salvage again into a new directory",
        });
    }
    sync_dir(to)?;
    match &target.kind {
        Kind::Log => {
            let mut options = wal_engine::Options::default();
            options.recovery = mode;
            let (wal, r) = wal_engine::Wal::open(to, options)?;
            wal.close()?;
            fill(&mut report, &r);
        }
        Kind::Store(manifest) => {
            if let Some(m) = manifest {
                let kept = copy_tables(target, m, to, &mut report)?;
                sync_dir(to)?;
                let storage = wal_io::open_dir(to, wal_io::BackendChoice::Portable)?;
                write_manifest(&*storage, &kept)?;
            }
            let mut options = wal_kv::Options::default();
            options.log.recovery = mode;
            // The store's own open reports nothing of the log's recovery:
            // open the log alone first (it leaves the log as the store
            // then finds it).
            let (wal, r) = wal_engine::Wal::open(to, options.log.clone())?;
            wal.close()?;
            fill(&mut report, &r);
            wal_kv::Store::open(to, options)?.close()?;
        }
    }
    Ok(report)
}

fn fill(report: &mut Salvage, r: &wal_engine::RecoveryReport) {
    report.records = r.records;
    report.next_lsn = r.next_lsn;
    report.cut = r
        .cuts
        .iter()
        .map(|c| {
            format!(
                "{} at offset {} ({} bytes): {}",
                c.segment, c.offset, c.bytes, c.reason
            )
        })
        .collect();
    report.discarded.clone_from(&r.discarded);
    report.gaps.clone_from(&r.gaps);
}

/// Copies one file, durably: the copy is what the new directory's log and
/// manifest will vouch for.
fn copy(target: &Target, name: &str, to: &Path) -> Result<(), CliError> {
    use std::io::Write as _;
    let bytes = target.read(name)?;
    let path = to.join(name);
    let what = format!("write {}", path.display());
    let mut file = std::fs::File::create(&path).map_err(CliError::io(what.clone()))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .map_err(CliError::io(what))
}

/// Makes the copies' names durable in `to`.
fn sync_dir(to: &Path) -> Result<(), CliError> {
    std::fs::File::open(to)
        .and_then(|d| d.sync_all())
        .map_err(CliError::io(format!("sync {}", to.display())))
}

/// Copies the tables that read back whole; the manifest to write, without
/// the others.
fn copy_tables(
    target: &Target,
    m: &ManifestInfo,
    to: &Path,
    report: &mut Salvage,
) -> Result<ManifestInfo, CliError> {
    let mut kept = m.clone();
    for ids in &mut kept.levels {
        let mut good = Vec::new();
        for &id in ids.iter() {
            match verify_table(&*target.storage, id) {
                Ok(_) => {
                    copy(target, &table_name(id), to)?;
                    good.push(id);
                }
                Err(e) => report
                    .tables_dropped
                    .push(format!("{}: {e}", table_name(id))),
            }
        }
        *ids = good;
    }
    Ok(kept)
}

/// The report as lines of text.
pub fn render(s: &Salvage) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "salvaged into {} ({}): {} records, next LSN {}",
        s.to, s.kind, s.records, s.next_lsn
    );
    if s.cut.is_empty()
        && s.discarded.is_empty()
        && s.gaps.is_empty()
        && s.tables_dropped.is_empty()
    {
        let _ = writeln!(out, "lost: nothing");
    }
    for c in &s.cut {
        let _ = writeln!(out, "lost: cut {c}");
    }
    for d in &s.discarded {
        let _ = writeln!(
            out,
            "lost: set aside {d} (kept in the new directory as {d}.discarded)"
        );
    }
    for (a, b) in &s.gaps {
        let _ = writeln!(out, "lost: LSNs {a}..{b}");
    }
    for t in &s.tables_dropped {
        let _ = writeln!(out, "lost: table {t}");
    }
    out
}
