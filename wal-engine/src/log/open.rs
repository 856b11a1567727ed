//! Opening: the directory lock, the clean-close record, recovery, the
//! repair of the last segment's tail, the writer, and the threads.

use std::sync::Arc as StdArc;

use wal_format::{FRAME_HEADER_LEN, FrameEncoder};
use wal_io::{IoError, Storage};

use super::Wal;
use super::placement::run_preparer;
use super::state::{Io, Parts, Shared};
use super::writer::{Writer, run_owner};
use crate::recovery::{Recovered, RecoveryReport, Replay, Tail, recover};
use crate::segment::{self, Active, Ids, SegMeta};
use crate::sync::thread;
use crate::sync::{Arc, Mutex};
use crate::write_buf::WriteBuf;
use crate::{Options, WalError};

/// Opens the log on `storage`: recovers it (handing records to `replay`
/// as it goes, if given), repairs the tail and starts the threads.
pub(super) fn open(
    storage: StdArc<dyn Storage>,
    options: Options,
    replay: Option<Replay<'_>>,
) -> Result<(Wal, RecoveryReport), WalError> {
    options.validate()?;
    let dir_lock = storage.lock()?;
    // The clean-close record is evidence for recovery (it names the LSNs
    // that were durable), and is removed, durably, only once recovery has
    // accepted the log and before anything is written (below: at once, or
    // before the first change): a record left in place would describe an
    // end that later writes moved. A refused open leaves it, so the next
    // open refuses too.
    let clean_close = segment::read_clean_close(&*storage)?;
    let recovered = recover(&*storage, options.recovery, clean_close, replay)?;
    // A record still exactly true of the log stays until the first change
    // to it (`Io::retire_clean_close`), so an open that changes nothing
    // (a replay, a read) removes and rewrites nothing. Any other goes now.
    // (`resume` may still preallocate the last segment: zeros past its
    // frames' end, which the record allows.)
    let clean_close_kept = clean_close.is_some_and(|m| recovered.still_clean_closed(&m));
    if !clean_close_kept {
        segment::remove_clean_close(&*storage)?;
    }
    let spare = segment::reclaim_spare(&*storage, &options)?;
    segment::remove_staged(&*storage)?;
    let Recovered {
        log_id,
        mut segments,
        next_lsn,
        tail,
        report,
        ..
    } = recovered;
    // A seeded generator (tests) repeats its identities for a repeated
    // salt, and a recycled file stamped with an identity it had before would
    // let its old frames pass as new ones (C3). The identities of the
    // segments recovered make the salt new whenever the directory is.
    let salt = segments
        .iter()
        .fold(next_lsn, |acc, s| acc.rotate_left(17) ^ s.id);
    let mut ids = Ids::new(options.identity_seed, salt);
    let log_id = log_id.unwrap_or_else(|| ids.next());
    // A kept record shows the last writer closed with every write synced
    // and the log has not changed since: nothing recovered needs a sync.
    if !clean_close_kept {
        sync_recovered(&*storage, &segments)?;
    }
    let active = match (segments.last(), tail) {
        (Some(last), Some(tail)) => resume(&options, last, tail)?,
        _ => {
            let active = segment::create(&*storage, &options, log_id, ids.next(), next_lsn)?;
            segments.push(active.meta.clone());
            active
        }
    };
    let durable = next_lsn - 1;
    let mut writer = Writer::new(&*storage, &options)?;
    writer.switch_to(&active.meta, &*storage, &options, durable)?;
    let shared = Arc::new(Shared::new(Parts {
        io: Io {
            batch: WriteBuf::for_queue(options.queue_bytes_max),
            active,
            writer,
            ids,
            encoder: FrameEncoder::new(options.compression),
            seal: Vec::with_capacity(FRAME_HEADER_LEN),
            spare_requested: false,
            segment_frames: 0,
            segment_frame_bytes: 0,
            last_time_us: report.last_timestamp_us.unwrap_or(0),
            clean_close_kept,
        },
        storage,
        options,
        log_id,
        durable,
        segments,
        spare,
        lock: dir_lock,
    }));
    let wal = start(shared)?;
    tracing::info!(
        backend = %wal.shared.storage.backend(),
        first_lsn = report.first_lsn,
        next_lsn = report.next_lsn,
        cuts = report.cuts.len(),
        "write-ahead log opened"
    );
    Ok((wal, report))
}

/// Syncs what recovery kept. What it read may live only in the page cache:
/// the process before may have been killed with records written and never
/// synced. They become durable here, before the log calls them so
/// (PostgreSQL syncs its data directory after a crash for the same reason).
/// A file with nothing dirty syncs at little cost, and an open that keeps a
/// clean-close record skips it. (Pages a failed sync left clean are another
/// matter: recovery read the last segment from the device.)
fn sync_recovered(storage: &dyn Storage, segments: &[Arc<SegMeta>]) -> Result<(), IoError> {
    for seg in segments {
        seg.file.sync_data()?;
    }
    storage.sync_dir()
}

/// The last segment, made ready for appending after its valid prefix.
///
/// Whatever follows the valid prefix (a torn tail, frames of unacknowledged
/// writes) goes before anything is appended after it: stale frames of this
/// segment must never follow new ones. Zeros after it are left as they are:
/// a prepared segment's written blocks stay written, which keeps syncs cheap.
fn resume(options: &Options, last: &Arc<SegMeta>, tail: Tail) -> Result<Active, IoError> {
    let file = &last.file;
    let mut changed = false;
    if !tail.clean && file.size()? > tail.valid_end {
        file.set_len(tail.valid_end)?;
        changed = true;
    }
    if options.preallocate && file.size()? < options.segment_bytes {
        file.allocate(0, options.segment_bytes)?;
        changed = true;
    }
    if changed {
        file.sync_data()?;
    }
    Ok(Active::new(last.clone(), tail.valid_end))
}

/// Starts the owner thread, and the preparer where segments are prepared
/// ahead. If a thread cannot be started, the log is closed again (the
/// owner stopped, the directory unlocked) and the error returned.
fn start(shared: Arc<Shared>) -> Result<Wal, WalError> {
    let spawn_error = |name: &str, source| {
        WalError::io(IoError::Os {
            op: wal_io::Op::Queue,
            path: format!("{name} thread").into(),
            source,
        })
    };
    let owner_shared = shared.clone();
    let owner = thread::spawn_named("wal-owner", move || run_owner(&owner_shared))
        .map_err(|e| spawn_error("wal-owner", e))?;
    let wal = Wal {
        shared,
        owner: Mutex::new(Some(owner)),
        preparer: Mutex::new(None),
    };
    if wal.shared.options.prepare_segments {
        let preparer_shared = wal.shared.clone();
        let preparer = thread::spawn_named("wal-preparer", move || run_preparer(&preparer_shared))
            // Dropping the log stops the owner and releases the lock.
            .map_err(|e| spawn_error("wal-preparer", e))?;
        *crate::sync::lock(&wal.preparer) = Some(preparer);
    }
    Ok(wal)
}
