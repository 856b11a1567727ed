//! Recovery: reading every segment back, deciding by the recovery mode what
//! the log is, and saying what was found.
//!
//! The data flows through the submodules in this order:
//!
//! - [`read`] reads one segment part by part and scans its frames;
//! - [`order`] runs those scans on threads and hands their parts over in
//!   LSN order;
//! - [`judge`] decides, segment by segment, what is kept, set aside or
//!   refused, and weighs the clean-close record as evidence of what was
//!   durable;
//! - [`replay`] hands records to a replaying open's consumer as soon as the
//!   judgement allows;
//! - [`report`] holds what the caller is told.
//!
//! Here, [`recover`] ties them together and applies what recovery changes
//! in the directory, only once the log is known to open.

mod judge;
mod order;
mod read;
mod replay;
mod report;

use wal_format::CleanClose;
use wal_io::{IoError, Storage};

pub(crate) use replay::Replay;
pub use replay::{ReplayFrom, Replayed};
pub use report::{Cut, RecoveryReport, SegmentReport};

use self::judge::decide;
use self::order::with_scans;
use self::read::{Pool, ScanJob};
use self::replay::wants;
use crate::segment::{SegMeta, parse_segment_name};
use crate::sync::Arc;
use crate::{RecoveryMode, WalError};

/// Segments a replaying recovery scans ahead of the one it hands out, at
/// most: each one ahead holds two of its parts in memory (one queued, one
/// read and waiting for room; `order.rs`).
const REPLAY_SEGMENTS_AHEAD_MAX: usize = 4;

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
    /// Recovery renamed or removed files.
    pub(crate) changed: bool,
}

impl Recovered {
    /// Whether the clean-close record `mark` is still exactly true of the
    /// log as recovered: same log, same last segment, its frames ending at
    /// the record's end with nothing to cut, the same next LSN, and no file
    /// renamed or removed. Then open may leave it in place until the first
    /// change.
    pub(crate) fn still_clean_closed(&self, mark: &CleanClose) -> bool {
        let last = self.segments.last();
        self.log_id == Some(mark.log_id)
            && last
                .is_some_and(|s| s.first_lsn == mark.segment_first_lsn && s.id == mark.segment_id)
            && self
                .tail
                .as_ref()
                .is_some_and(|t| t.clean && t.valid_end == mark.valid_end)
            && self.next_lsn == mark.next_lsn
            && self.report.cuts.is_empty()
            && self.report.gaps.is_empty()
            && !self.changed
    }
}

/// What recovery changes in the directory, done only after every segment
/// was scanned (a scan thread may still be reading a file the decision is
/// about) and only if the log opens.
#[derive(Default)]
struct Changes {
    renames: Vec<(String, String)>,
    removals: Vec<String>,
}

impl Changes {
    /// Renames and removes, then syncs the directory if anything changed;
    /// returns whether anything did.
    fn apply(&self, storage: &dyn Storage) -> Result<bool, IoError> {
        for (from, to) in &self.renames {
            storage.rename(from, to)?;
        }
        for name in &self.removals {
            storage.remove(name)?;
        }
        let changed = !self.renames.is_empty() || !self.removals.is_empty();
        if changed {
            storage.sync_dir()?;
        }
        Ok(changed)
    }
}

/// Recovers the log in `storage`. `clean_close` is the record a cleanly
/// closed writer left, if any: it lets the last segment be read only up to
/// where its frames end (if it names that segment), and it is evidence of
/// what was durable, whichever segment it names: a log that ends before its
/// next LSN lost acknowledged records, and the default and strict modes
/// refuse it. The caller removes the record only once this returns `Ok`.
/// A `replay` gets the records it asks for in LSN order while later
/// segments are still being scanned; if recovery then fails, the log does
/// not open and what it got is to be thrown away.
pub(crate) fn recover(
    storage: &dyn Storage,
    mode: RecoveryMode,
    clean_close: Option<CleanClose>,
    replay: Option<Replay<'_>>,
) -> Result<Recovered, WalError> {
    let (mut recovered, changes) = plan(storage, mode, clean_close, replay)?;
    recovered.changed = changes.apply(storage)?;
    Ok(recovered)
}

/// What opening the log in `storage` in `mode` would find, cut and set
/// aside, without changing anything: it only lists and reads files, so a
/// read-only storage (`wal_io::open_dir_read_only`) serves, and a live
/// log's directory can be inspected next to the process that holds it
/// (what that process appends meanwhile may show as a torn tail, and a
/// `truncate_back` it makes meanwhile, just after an open that kept the
/// clean-close record, as records lost against that record).
///
/// The report is the one [`Wal::open`](crate::Wal::open) would return:
/// `cuts` holds the torn tail it would cut and the interrupted segment it
/// would remove, `discarded` the segments a salvage mode would rename
/// aside.
///
/// ```
/// let disk = wal_io::sim::SimDisk::new(1);
/// let (wal, _) = wal_engine::Wal::open_with(disk.storage(), wal_engine::Options::default())?;
/// wal.commit(b"hello")?;
/// drop(wal);
/// let report = wal_engine::inspect(&*disk.storage(), wal_engine::RecoveryMode::default())?;
/// assert_eq!(report.next_lsn, 2);
/// assert!(report.cuts.is_empty());
/// # Ok::<(), wal_engine::WalError>(())
/// ```
///
/// # Errors
/// What [`Wal::open`](crate::Wal::open) would fail with in `mode`:
/// [`WalError::Corrupt`] naming segment and offset,
/// [`WalError::NewerFormat`]; and the storage's read errors.
pub fn inspect(storage: &dyn Storage, mode: RecoveryMode) -> Result<RecoveryReport, WalError> {
    let clean_close = crate::segment::read_clean_close(storage)?;
    let (recovered, _unapplied) = plan(storage, mode, clean_close, None)?;
    Ok(recovered.report)
}

/// Refuses the log if any segment is of a newer format, before anything
/// is judged: no mode may set aside, cut or remove what a newer build wrote
/// (a point-in-time cut earlier in the log would otherwise discard it).
fn refuse_newer(storage: &dyn Storage, names: &[(String, u64)]) -> Result<(), WalError> {
    for (name, _) in names {
        let file = storage.open(name, wal_io::FileOptions::BUFFERED)?;
        let mut head = [0u8; wal_format::SegmentHeader::LEN];
        if file.size()? < head.len() as u64 {
            continue;
        }
        file.read_at(0, &mut head)?;
        if let Some(version) = wal_format::SegmentHeader::newer_version(&head) {
            return Err(WalError::NewerFormat {
                segment: name.clone(),
                version,
                supported: wal_format::FORMAT_VERSION,
            });
        }
    }
    Ok(())
}

/// Recovery's decision, and the directory changes it implies, not yet
/// applied.
fn plan(
    storage: &dyn Storage,
    mode: RecoveryMode,
    clean_close: Option<CleanClose>,
    mut replay: Option<Replay<'_>>,
) -> Result<(Recovered, Changes), WalError> {
    let mut names: Vec<(String, u64)> = storage
        .list()?
        .into_iter()
        .filter_map(|n| parse_segment_name(&n).map(|lsn| (n, lsn)))
        .collect();
    names.sort_by_key(|(_, lsn)| *lsn);
    refuse_newer(storage, &names)?;
    let last = names.last().map(|&(_, lsn)| lsn);
    let job = ScanJob {
        storage,
        clean_close: clean_close.filter(|m| Some(m.segment_first_lsn) == last),
        last,
        pool: Pool::default(),
    };
    let replay_from = replay.as_ref().map(|r| r.asked_from());
    let keep = |k: usize| replay_from.is_some_and(|from| wants(from, &names, k));
    // Without a replay a scan holds no segment in memory once it is done.
    let ahead = if replay.is_some() {
        REPLAY_SEGMENTS_AHEAD_MAX
    } else {
        usize::MAX
    };
    with_scans(&job, &names, &keep, ahead, |scans| {
        decide(scans, &names, mode, clean_close, replay.as_mut(), &job.pool)
    })
}
