//! The directory a command is about: what it is (a log, or a store with
//! its log in the same directory), whether a process holds it, and its
//! segments. Opened read-only: nothing here writes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use wal_format::{FORMAT_VERSION, SegmentHeader};
use wal_io::portable::{LockState, lock_state};
use wal_io::{FileOptions, Storage};
use wal_kv::inspect::{MANIFEST_NAME, ManifestInfo, read_manifest};

use crate::error::CliError;

/// What a directory holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A bare log: records are opaque bytes.
    Log,
    /// A store: its records are write batches. `None`: it never
    /// checkpointed, so it has no manifest yet.
    Store(Option<ManifestInfo>),
}

impl Kind {
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Log => "log",
            Kind::Store(_) => "store",
        }
    }
}

/// How the caller wants the directory taken (`--as`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AsKind {
    /// Decide by the manifest, or by whether the records decode as batches.
    Auto,
    /// A bare log.
    Log,
    /// A store.
    Store,
}

/// One segment file.
#[derive(Debug, Clone)]
pub struct Segment {
    pub name: String,
    /// The first LSN its name gives.
    pub first_lsn: u64,
}

/// An opened directory.
pub struct Target {
    pub path: PathBuf,
    pub storage: Arc<dyn Storage>,
    pub kind: Kind,
    pub lock: LockState,
    /// In LSN order.
    pub segments: Vec<Segment>,
}

/// The segments among a directory's `names`, in LSN order.
pub fn segments_named(names: &[String]) -> Vec<Segment> {
    let mut segments: Vec<Segment> = names
        .iter()
        .filter_map(|n| {
            wal_engine::parse_segment_name(n).map(|first_lsn| Segment {
                name: n.clone(),
                first_lsn,
            })
        })
        .collect();
    segments.sort_by_key(|s| s.first_lsn);
    segments
}

impl Target {
    /// Opens `path` read-only and tells what it is.
    ///
    /// # Errors
    /// Not a directory; neither segments nor a manifest; a segment of a
    /// newer format; an unreadable manifest.
    pub fn open(path: &Path, as_kind: AsKind) -> Result<Target, CliError> {
        if !path.is_dir() {
            return Err(CliError::NotADirectory(path.to_owned()));
        }
        let storage = wal_io::open_dir_read_only(path)?;
        let names = storage.list()?;
        let segments = segments_named(&names);
        let has_manifest = names.iter().any(|n| n == MANIFEST_NAME);
        if segments.is_empty() && !has_manifest {
            return Err(CliError::NotALog(path.to_owned()));
        }
        for s in &segments {
            refuse_newer(&*storage, &s.name)?;
        }
        let manifest = read_manifest(&*storage).map_err(|e| CliError::BadManifest {
            dir: path.to_owned(),
            detail: e.to_string(),
        })?;
        let kind = match (as_kind, manifest) {
            (AsKind::Log, _) => Kind::Log,
            (_, Some(m)) => Kind::Store(Some(m)),
            (AsKind::Store, None) => Kind::Store(None),
            (AsKind::Auto, None) if first_records_are_batches(&*storage, &segments) => {
                Kind::Store(None)
            }
            (AsKind::Auto, None) => Kind::Log,
        };
        Ok(Target {
            path: path.to_owned(),
            storage,
            kind,
            lock: lock_state(path)?,
            segments,
        })
    }

    /// Refuses a directory a process holds, for a command that needs it
    /// still.
    ///
    /// # Errors
    /// [`CliError::Locked`].
    pub fn require_idle(&self, hint: &'static str) -> Result<(), CliError> {
        match self.lock {
            LockState::Held { holder } => Err(CliError::Locked {
                dir: self.path.clone(),
                holder,
                hint,
            }),
            _ => Ok(()),
        }
    }

    /// A segment's bytes.
    ///
    /// # Errors
    /// The storage's read errors.
    pub fn read(&self, name: &str) -> Result<Bytes, CliError> {
        read_whole(&*self.storage, name)
    }
}

pub fn read_whole(storage: &dyn Storage, name: &str) -> Result<Bytes, CliError> {
    let file = storage.open(name, FileOptions::BUFFERED)?;
    let size = usize::try_from(file.size()?).unwrap_or(usize::MAX);
    let mut buf = vec![0u8; size];
    file.read_at(0, &mut buf)?;
    Ok(Bytes::from(buf))
}

/// A segment whose header says a newer format is refused before anything
/// reads its frames under rules that do not apply to it.
pub fn refuse_newer(storage: &dyn Storage, name: &str) -> Result<(), CliError> {
    let file = storage.open(name, FileOptions::BUFFERED)?;
    let mut header = [0u8; SegmentHeader::LEN];
    if file.size()? < SegmentHeader::LEN as u64 {
        return Ok(()); // an interrupted creation: recovery's to judge
    }
    file.read_at(0, &mut header)?;
    match SegmentHeader::newer_version(&header) {
        Some(version) => Err(CliError::NewerFormat {
            segment: name.to_owned(),
            version,
            supported: FORMAT_VERSION,
        }),
        None => Ok(()),
    }
}

/// Whether the first segment's first records decode as write batches (a
/// store that never checkpointed). Opaque records rarely do: a batch has a
/// version byte, a count and exact lengths.
fn first_records_are_batches(storage: &dyn Storage, segments: &[Segment]) -> bool {
    let Some(first) = segments.first() else {
        return false;
    };
    let Ok(data) = read_whole(storage, &first.name) else {
        return false;
    };
    let Ok(scanner) = wal_format::SegmentScanner::new(data) else {
        return false;
    };
    let records: Vec<_> = scanner.flat_map(IntoIterator::into_iter).take(16).collect();
    !records.is_empty()
        && records
            .iter()
            .all(|r| wal_kv::WriteBatch::from_record(&r.data).is_ok())
}
