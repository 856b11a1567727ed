//! Point-in-time restore: the newest base backup before the target, then
//! the archived segments from its checkpoint on, the log cut at the target.
//! The result opens as a normal store (or log). A segment missing from the
//! chain is an error naming it, never a restore that stops short. Segments
//! are read one at a time, twice for those copied (once to index the
//! archive, once to copy), so a restore holds one segment in memory however
//! long the archive.

use std::path::Path;

use bytes::Bytes;
use wal_format::{FrameKind, SegmentScanner};

use crate::archive::{Archive, base_object, segment_object};
use crate::archiver::sealed_next;
use crate::error::ArchiveError;

/// Where to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Everything the archive holds.
    Latest,
    /// Up to an LSN: that record included, or not.
    Lsn {
        /// The LSN.
        lsn: u64,
        /// Whether the record at `lsn` is kept.
        inclusive: bool,
    },
    /// Up to a commit time (microseconds since the Unix epoch): commits at
    /// exactly that time included, or not.
    Time {
        /// The time.
        us: u64,
        /// Whether commits at exactly `us` are kept.
        inclusive: bool,
    },
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Restored {
    /// The base backup used (its checkpoint LSN), for a store.
    pub base: Option<u64>,
    /// Segments copied.
    pub segments: usize,
    /// The last LSN the restored log holds.
    pub last_lsn: u64,
}

/// One archived segment: its name, first LSN and next LSN, and its
/// length and CRC32C when the archive was indexed.
struct Archived {
    name: String,
    first: u64,
    next: u64,
    len: usize,
    crc: u32,
}

/// Restores `archive` into `to` (absent or empty) up to `target`.
///
/// # Errors
/// [`ArchiveError::Target`] for a target the archive cannot reach (before
/// its oldest base backup or first commit); [`ArchiveError::Missing`]
/// naming the first segment missing from the chain; the archive's, the
/// directory's, the log's and the store's errors.
pub fn restore(archive: &Archive, to: &Path, target: Target) -> Result<Restored, ArchiveError> {
    if to.exists()
        && std::fs::read_dir(to)
            .map_err(ArchiveError::io(format!("read {}", to.display())))?
            .next()
            .is_some()
    {
        return Err(ArchiveError::Target(format!(
            "{} is not empty: restore writes only into a new directory",
            to.display()
        )));
    }
    let (segments, by_time) = index_segments(archive, target)?;
    let bases = archive.bases()?;
    // A base backup is a whole state on its own: the archive reaches its
    // checkpoint even before the segments after it are archived.
    let reach = segments
        .last()
        .map_or(0, |s| s.next - 1)
        .max(bases.last().copied().unwrap_or(0));
    let last = resolve(target, reach, by_time)?;
    let base = bases.iter().rev().find(|&&b| b <= last).copied();
    if base.is_none() && !bases.is_empty() {
        return Err(ArchiveError::Target(format!(
            "the oldest base backup is at LSN {}, after the target LSN {last}",
            bases[0]
        )));
    }
    std::fs::create_dir_all(to).map_err(ArchiveError::io(format!("create {}", to.display())))?;
    if let Some(b) = base {
        for file in archive.base_files(b)? {
            let bytes = archive.get(&base_object(b, &file))?;
            write(to, &file, &bytes)?;
        }
    }
    let chain = chain(&segments, base.map_or(1, |b| b + 1), last)?;
    for s in &chain {
        copy_segment(archive, s, to)?;
    }
    if chain.is_empty()
        && let Some(b) = base
    {
        // No archived segment reaches the checkpoint yet: a segment that
        // starts right after it, with nothing in it, tells the log where
        // to go on.
        let header = empty_segment_header(b + 1)?;
        write(to, &wal_engine::segment_name(b + 1), &header)?;
    }
    sync_dir(to)?;
    // Cut the log at the target; its later records were copied with the
    // segment that holds it.
    let (wal, report) = wal_engine::Wal::open(to, wal_engine::Options::default())?;
    if report.next_lsn > last + 1 {
        wal.truncate_back(last)?;
    }
    wal.close()?;
    if base.is_some() {
        // Opened to check that the log goes on from the base's checkpoint;
        // dropped, not closed, so the restore leaves the log as archived
        // (a close would checkpoint it into a table).
        drop(wal_kv::Store::open(to, wal_kv::Options::default())?);
    }
    Ok(Restored {
        base,
        segments: chain.len(),
        last_lsn: last,
    })
}

/// Every archived segment's LSNs, in LSN order, each read and dropped in
/// turn; with a time target, also the last LSN committed by it (`None`:
/// no commit is that early).
fn index_segments(
    archive: &Archive,
    target: Target,
) -> Result<(Vec<Archived>, Option<u64>), ArchiveError> {
    let mut out = Vec::new();
    let (mut by_time, mut passed) = (None, false);
    for name in archive.segments()? {
        let bytes = archive.get(&segment_object(&name))?;
        let first = wal_engine::parse_segment_name(&name).unwrap_or(0);
        let next = sealed_next(&bytes).ok_or_else(|| ArchiveError::Corrupt {
            name: segment_object(&name),
            detail: "not a sealed segment".into(),
        })?;
        let (len, crc) = (bytes.len(), crc32c::crc32c(&bytes));
        if let Target::Time { us, inclusive } = target
            && !passed
        {
            passed = last_by_time(bytes, us, inclusive, &mut by_time);
        }
        out.push(Archived {
            name,
            first,
            next,
            len,
            crc,
        });
    }
    Ok((out, by_time))
}

/// Moves `last` to the last LSN of each commit in `segment` up to time
/// `us`; true once a later commit shows the target passed.
fn last_by_time(segment: Bytes, us: u64, inclusive: bool, last: &mut Option<u64>) -> bool {
    let Ok(scan) = SegmentScanner::new(segment) else {
        return false;
    };
    for f in scan.filter(|f| f.kind() == FrameKind::Records) {
        let Some(t) = f.timestamp_us() else { continue };
        if t > us || (t == us && !inclusive) {
            return true;
        }
        *last = Some(f.next_lsn() - 1);
    }
    false
}

/// The last LSN the restored log keeps; `by_time` is what
/// [`index_segments`] found for a time target.
fn resolve(target: Target, end: u64, by_time: Option<u64>) -> Result<u64, ArchiveError> {
    match target {
        Target::Latest => Ok(end),
        Target::Lsn { lsn, inclusive } => {
            let last = if inclusive {
                lsn
            } else {
                lsn.saturating_sub(1)
            };
            if last > end {
                return Err(ArchiveError::Target(format!(
                    "the archive holds LSNs up to {end}, not {last}"
                )));
            }
            Ok(last)
        }
        Target::Time { us, inclusive } => by_time.ok_or_else(|| {
            ArchiveError::Target(format!(
                "no archived commit is {} {us} µs",
                if inclusive { "at or before" } else { "before" }
            ))
        }),
    }
}

/// Reads segment `s` again and writes it into `to`, if its bytes are
/// still those the archive was indexed with (the chain and the target's
/// LSN were worked out from them).
fn copy_segment(archive: &Archive, s: &Archived, to: &Path) -> Result<(), ArchiveError> {
    let bytes = archive.get(&segment_object(&s.name))?;
    if bytes.len() != s.len || crc32c::crc32c(&bytes) != s.crc {
        return Err(ArchiveError::Corrupt {
            name: segment_object(&s.name),
            detail: "changed while the restore read the archive".into(),
        });
    }
    write(to, &s.name, &bytes)
}

/// The segments holding LSNs `from..=last`, each starting where the one
/// before ends.
fn chain(segments: &[Archived], from: u64, last: u64) -> Result<Vec<&Archived>, ArchiveError> {
    let mut out = Vec::new();
    let mut want = from;
    while want <= last {
        let Some(s) = segments
            .iter()
            .rev()
            .find(|s| s.first <= want && want < s.next)
        else {
            return Err(ArchiveError::Missing(format!(
                "the segment holding LSN {want} ({} or one starting before it)",
                wal_engine::segment_name(want)
            )));
        };
        out.push(s);
        want = s.next;
    }
    if out.is_empty() {
        // Nothing after the base: a segment that starts where it ends
        // tells the log where to go on.
        if let Some(s) = segments.iter().find(|s| s.first <= from && from <= s.next) {
            out.push(s);
        }
    }
    Ok(out)
}

/// The header of a new, empty segment starting at `first_lsn`, with
/// identities of its own (never zero).
fn empty_segment_header(first_lsn: u64) -> Result<Vec<u8>, ArchiveError> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let log_id = nanos | 1;
    let segment_id = (nanos.rotate_left(29) ^ u64::from(std::process::id())) | 1;
    let header = wal_format::SegmentHeader::new(log_id, segment_id, first_lsn).map_err(|e| {
        ArchiveError::Corrupt {
            name: wal_engine::segment_name(first_lsn),
            detail: e.to_string(),
        }
    })?;
    Ok(header.encode().to_vec())
}

fn write(to: &Path, name: &str, bytes: &[u8]) -> Result<(), ArchiveError> {
    use std::io::Write as _;
    let path = to.join(name);
    let what = format!("write {}", path.display());
    let mut f = std::fs::File::create(&path).map_err(ArchiveError::io(what.clone()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(ArchiveError::io(what))
}

fn sync_dir(dir: &Path) -> Result<(), ArchiveError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(ArchiveError::io(format!("sync {}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sealed segments of a closed log of small segments: names and
    /// bytes.
    fn sealed_segments(dir: &Path) -> Vec<(String, Bytes)> {
        let mut options = wal_engine::Options::default();
        options.segment_bytes = 64 << 10;
        options.queue_bytes_max = 8 << 10;
        options.record_bytes_max = 4 << 10;
        let (wal, _) = wal_engine::Wal::open(dir, options).unwrap();
        for i in 0..2000u32 {
            wal.append(format!("record {i:0100}").as_bytes()).unwrap();
        }
        wal.close().unwrap();
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if wal_engine::parse_segment_name(&name).is_some() {
                let bytes = Bytes::from(std::fs::read(dir.join(&name)).unwrap());
                if sealed_next(&bytes).is_some() {
                    out.push((name, bytes));
                }
            }
        }
        assert!(out.len() >= 2, "{} sealed segments", out.len());
        out
    }

    #[test]
    fn a_segment_that_changed_since_it_was_indexed_is_refused() {
        let work = tempfile::tempdir().unwrap();
        let (log, archived, to) = (
            work.path().join("log"),
            work.path().join("archive"),
            work.path().join("to"),
        );
        for d in [&log, &archived, &to] {
            std::fs::create_dir(d).unwrap();
        }
        let (name, bytes) = sealed_segments(&log).swap_remove(0);
        let archive = Archive::open(archived.to_str().unwrap()).unwrap();
        archive
            .put_verified(&segment_object(&name), &bytes)
            .unwrap();
        let first = wal_engine::parse_segment_name(&name).unwrap();
        let next = sealed_next(&bytes).unwrap();
        // Indexed with other bytes: another segment under its name now.
        let (len, crc) = (bytes.len(), crc32c::crc32c(&bytes));
        let moved = Archived {
            name: name.clone(),
            first,
            next,
            len,
            crc: crc ^ 1,
        };
        match copy_segment(&archive, &moved, &to) {
            Err(ArchiveError::Corrupt { detail, .. }) => assert!(detail.contains("changed")),
            other => panic!("{other:?}"),
        }
        assert!(!to.join(&name).exists(), "nothing written");
        let same = Archived {
            name: name.clone(),
            first,
            next,
            len,
            crc,
        };
        copy_segment(&archive, &same, &to).unwrap();
        assert_eq!(std::fs::read(to.join(&name)).unwrap(), bytes);
    }
}
