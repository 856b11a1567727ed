//! The archiver: ships a log's sealed segments, and a store's base backups
//! when its checkpoint moves, then releases the log's purge hold over what
//! the archive holds. It reads the directory read-only, beside the process
//! that writes it; a failed round changes nothing and is tried again.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use wal_engine::PurgeHold;
use wal_format::{SegmentEnd, SegmentScanner};
use wal_io::{FileOptions, Storage};
use wal_kv::inspect::{MANIFEST_NAME, read_manifest, table_name};

use crate::archive::{Archive, base_object, segment_object};
use crate::error::ArchiveError;

/// How often a waiting archiver thread looks for a stop.
const STOP_CHECK: Duration = Duration::from_millis(10);

/// Where the archiver reads the log.
enum Source {
    /// A directory, opened read-only each round.
    Dir(PathBuf),
    /// A storage handle.
    Storage(Arc<dyn Storage>),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Dir(d) => write!(f, "Dir({})", d.display()),
            Source::Storage(_) => f.write_str("Storage"),
        }
    }
}

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Round {
    /// Segments uploaded this round.
    pub segments: usize,
    /// The base backup taken this round (its checkpoint LSN).
    pub base: Option<u64>,
    /// Every LSN up to this one is archived (the hold is released to it).
    pub archived_through: u64,
    /// Base backups and segments removed by retention.
    pub pruned: usize,
}

/// Archives one directory into one archive.
#[derive(Debug)]
pub struct Archiver {
    source: Source,
    archive: Archive,
    hold: PurgeHold,
    keep_bases: usize,
    /// Segments known to be in the archive.
    archived: BTreeSet<String>,
    /// The newest base backup's checkpoint LSN.
    last_base: Option<u64>,
}

impl Archiver {
    /// An archiver for the log or store in `dir`, releasing `hold` (the
    /// one in the log's options) and keeping `keep_bases` base backups
    /// (at least 1) with the segments they need.
    ///
    /// # Errors
    /// The archive's errors, listing what it holds.
    pub fn new(
        dir: &Path,
        archive: Archive,
        hold: PurgeHold,
        keep_bases: usize,
    ) -> Result<Archiver, ArchiveError> {
        Archiver::with_source(Source::Dir(dir.to_owned()), archive, hold, keep_bases)
    }

    /// As [`Archiver::new`], for a log or store on `storage` (the
    /// simulated disk, in tests; the archiver only reads from it).
    ///
    /// # Errors
    /// As [`Archiver::new`].
    pub fn on_storage(
        storage: Arc<dyn Storage>,
        archive: Archive,
        hold: PurgeHold,
        keep_bases: usize,
    ) -> Result<Archiver, ArchiveError> {
        Archiver::with_source(Source::Storage(storage), archive, hold, keep_bases)
    }

    fn with_source(
        source: Source,
        archive: Archive,
        hold: PurgeHold,
        keep_bases: usize,
    ) -> Result<Archiver, ArchiveError> {
        let archived = archive.segments()?.into_iter().collect();
        let last_base = archive.bases()?.last().copied();
        Ok(Archiver {
            source,
            archive,
            hold,
            keep_bases: keep_bases.max(1),
            archived,
            last_base,
        })
    }

    /// One round: upload what is sealed and new, take a base backup if the
    /// checkpoint moved, release the hold, apply retention.
    ///
    /// # Errors
    /// The directory's and the archive's errors; nothing is released past
    /// what was uploaded and verified.
    pub fn round(&mut self) -> Result<Round, ArchiveError> {
        let storage = match &self.source {
            Source::Dir(dir) => wal_io::open_dir_read_only(dir)?,
            Source::Storage(storage) => Arc::clone(storage),
        };
        let mut round = Round::default();
        let mut names: Vec<(u64, String)> = storage
            .list()?
            .into_iter()
            .filter_map(|n| wal_engine::parse_segment_name(&n).map(|l| (l, n)))
            .collect();
        names.sort();
        for (k, (_, name)) in names.iter().enumerate() {
            // A seal is synced before the next segment is made: a sealed
            // segment with no successor yet may hold bytes a power loss
            // would take back (and the log then write again otherwise).
            // Only one that was followed when listed is durable, and whole.
            let Some((successor, _)) = names.get(k + 1) else {
                break;
            };
            if self.archived.contains(name) {
                // Not read again (a checkpoint may purge it meanwhile): it
                // ends at or after where its successor starts.
                round.archived_through = successor - 1;
                continue;
            }
            let bytes = read(&*storage, name)?;
            let Some(next_lsn) = sealed_next(&bytes) else {
                break;
            };
            self.archive.put_verified(&segment_object(name), &bytes)?;
            self.archived.insert(name.clone());
            round.segments += 1;
            tracing::debug!(segment = %name, "archived");
            round.archived_through = next_lsn - 1;
        }
        self.hold.release_through(round.archived_through);
        // Segments archived in earlier rounds may be purged by now.
        round.archived_through = self.hold.released();
        round.base = self.base_backup(&*storage)?;
        round.pruned = self.retention()?;
        Ok(round)
    }

    /// A base backup when the store's checkpoint moved: its tables, then
    /// its manifest (an interrupted backup has no manifest and does not
    /// count).
    fn base_backup(&mut self, storage: &dyn Storage) -> Result<Option<u64>, ArchiveError> {
        if !storage.list()?.iter().any(|n| n == MANIFEST_NAME) {
            return Ok(None);
        }
        let raw = read(storage, MANIFEST_NAME)?;
        let Some(m) = read_manifest(storage)? else {
            return Ok(None);
        };
        // A checkpoint between the two reads: next round.
        if read(storage, MANIFEST_NAME)? != raw || self.last_base >= Some(m.checkpoint_lsn) {
            return Ok(None);
        }
        for id in m.levels.iter().flatten() {
            let name = table_name(*id);
            // Compaction may have removed it since: next round.
            let Ok(bytes) = read(storage, &name) else {
                return Ok(None);
            };
            self.archive
                .put_verified(&base_object(m.checkpoint_lsn, &name), &bytes)?;
        }
        self.archive
            .put_verified(&base_object(m.checkpoint_lsn, MANIFEST_NAME), &raw)?;
        self.last_base = Some(m.checkpoint_lsn);
        tracing::info!(checkpoint_lsn = m.checkpoint_lsn, "base backup archived");
        Ok(Some(m.checkpoint_lsn))
    }

    /// Keeps the newest `keep_bases` base backups and the segments they
    /// need: those holding LSNs after the oldest kept checkpoint.
    fn retention(&mut self) -> Result<usize, ArchiveError> {
        let bases = self.archive.bases()?;
        if bases.len() <= self.keep_bases {
            return Ok(0);
        }
        let (old, kept) = bases.split_at(bases.len() - self.keep_bases);
        let mut pruned = 0;
        for &lsn in old {
            // The manifest first: a half-removed backup must not count.
            self.archive.delete(&base_object(lsn, MANIFEST_NAME))?;
            for file in self.archive.base_files(lsn)? {
                self.archive.delete(&base_object(lsn, &file))?;
            }
            pruned += 1;
        }
        let oldest = kept[0];
        let segments = self.archive.segments()?;
        for pair in segments.windows(2) {
            let next_first = wal_engine::parse_segment_name(&pair[1]).unwrap_or(0);
            if next_first > oldest + 1 {
                break;
            }
            self.archive.delete(&segment_object(&pair[0]))?;
            self.archived.remove(&pair[0]);
            pruned += 1;
        }
        Ok(pruned)
    }

    /// Runs rounds every `every` on a thread of its own until stopped; a
    /// failed round is logged and tried again.
    pub fn spawn(mut self, every: Duration) -> Running {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("wal-archiver".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    if let Err(e) = self.round() {
                        tracing::warn!(error = %e, "archiving round failed; trying again");
                    }
                    // Waits `every`, but a stop ends the wait.
                    let until = std::time::Instant::now() + every;
                    while !flag.load(Ordering::Relaxed) && std::time::Instant::now() < until {
                        std::thread::sleep(STOP_CHECK.min(every));
                    }
                }
                // A last round, so that a clean stop leaves nothing behind
                // that was sealed.
                self.round()
            })
            .expect("spawn the archiver thread");
        Running {
            stop,
            thread: Some(thread),
        }
    }
}

/// An archiver running on its own thread.
#[derive(Debug)]
pub struct Running {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<Round, ArchiveError>>>,
}

impl Running {
    /// Stops after a last round, and says how that round went.
    ///
    /// # Errors
    /// The last round's error.
    pub fn stop(mut self) -> Result<Round, ArchiveError> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(outcome)) => outcome,
            _ => Err(ArchiveError::Unsupported(
                "the archiver thread panicked".into(),
            )),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read(storage: &dyn Storage, name: &str) -> Result<Bytes, ArchiveError> {
    let file = storage.open(name, FileOptions::BUFFERED)?;
    let mut buf = vec![0u8; usize::try_from(file.size()?).unwrap_or(usize::MAX)];
    file.read_at(0, &mut buf)?;
    Ok(Bytes::from(buf))
}

/// The next LSN of a sealed segment; `None` for one still being written
/// (or damaged: recovery's to judge).
pub(crate) fn sealed_next(bytes: &Bytes) -> Option<u64> {
    let mut scan = SegmentScanner::new(bytes.clone()).ok()?;
    scan.by_ref().for_each(drop);
    match scan.finish().end {
        SegmentEnd::Sealed { next_lsn } => Some(next_lsn),
        _ => None,
    }
}
