//! Placement: where a frame goes. Whether it fits the active segment, the
//! seal and rotation when it does not (with the switch of writers that a
//! new segment may bring), and the spare segment prepared ahead of need.
//! Both writers place frames here; they differ only in how they submit.

use std::time::Instant;

use wal_format::{
    FRAME_ALIGN, FRAME_HEADER_LEN, FrameBuf, FrameBuilder, FrameSummary, TERMINATOR_LEN,
    encode_seal,
};

use super::durability::{Failure, Woken};
use super::state::{Io, Shared, held};
use super::writer::drain;
use crate::segment::{self, Active, SpareFile};
use crate::sync::lock;

/// Room kept at the end of every segment for its seal frame.
const SEAL_SPACE_BYTES: u64 = FRAME_HEADER_LEN as u64;

/// The next segment is prepared once the active one is this fraction full:
/// early enough that zero-filling it (tens of milliseconds per 64 MiB) ends
/// before the rotation, late enough that a log opened only to be read, or
/// one that stays small, never writes a spare at all.
const SPARE_AT_FRACTION: u64 = 4;

/// A spare is zero-filled only while the active segment's frames average
/// less than this. Zero-filling saves each later sync the conversion of
/// never-written blocks, which pays for small commits (W1 writes about
/// 200 bytes per sync); it also writes the whole segment twice, which for
/// an ingest writing megabytes per sync is the larger cost (1 GiB of 4 KiB
/// records under the default policy: 0.73-0.76 of the naive writer with
/// it, 0.83-0.85 without).
const ZERO_FILL_FRAME_BYTES_MAX: u64 = 64 << 10;

/// Whether a frame of `encoded` bytes (before compression, which only
/// shrinks it) fits the active segment with its terminator and padding,
/// leaving room for the seal after it.
fn has_room(active: &Active, encoded: usize, segment_bytes: u64) -> bool {
    // The 8-byte alignment of a frame adds at most FRAME_ALIGN.
    let frame_max = encoded + FRAME_ALIGN;
    let end = if active.meta.padded {
        // The terminator and padding are the write's; the seal gets a block.
        active.write_at() + active.write_len(frame_max + TERMINATOR_LEN) as u64
    } else {
        // The terminator fits in the room kept for the seal.
        active.offset + frame_max as u64
    };
    end + SEAL_SPACE_BYTES <= segment_bytes
}

/// Makes room for the frame in `io.batch` (whose first LSN is `first_lsn`):
/// if it does not fit the active segment, waits for every write in flight,
/// seals the segment and moves to the next one, publishing the sealed
/// segment as durable. Then encodes the frame for the segment it lands in.
/// Returns where it goes and what it is.
pub(super) fn place(
    shared: &Shared,
    io: &mut Io,
    frame: FrameBuilder,
    durable: u64,
    woken: &mut Woken,
) -> Result<(u64, FrameSummary), Failure> {
    let first_lsn = frame.first_lsn();
    if !has_room(&io.active, io.batch.len(), shared.options.segment_bytes) {
        // The seal is written and synced through the segment's buffered
        // descriptor: nothing may be in flight meanwhile.
        drain(shared, io, woken)?;
        rotate(shared, io, first_lsn, durable)?;
        let sealed = first_lsn - 1;
        woken.extend(shared.publish(Ok((Some(sealed), Some(sealed)))));
    }
    let now = shared.options.clock.now_us();
    let summary = finish_write(io, frame, durable, now)?;
    Ok((io.active.write_at(), summary))
}

/// Notes a frame written at `at`: the sparse index, the end of the frames,
/// the spare's request, the counters.
pub(super) fn placed(shared: &Shared, io: &mut Io, at: u64, summary: &FrameSummary) {
    io.active.meta.index_frame(summary.first_lsn, at);
    io.active.offset = at + summary.encoded_len as u64;
    io.segment_frames += 1;
    io.segment_frame_bytes += summary.encoded_len as u64;
    let options = &shared.options;
    if !io.spare_requested && io.active.offset >= options.segment_bytes / SPARE_AT_FRACTION {
        io.spare_requested = true;
        let mean_frame_bytes = io.segment_frame_bytes / io.segment_frames;
        // A direct-I/O segment is always filled: each O_DIRECT write into
        // never-written blocks converts them, whatever its size.
        let zero_fill = segment::fills_with_zeros(options)
            && (options.direct_io || mean_frame_bytes < ZERO_FILL_FRAME_BYTES_MAX);
        request_spare(shared, zero_fill);
    }
    shared.stats.batch(
        u64::from(summary.record_count),
        summary.encoded_len as u64,
        io.writer.writes_in_flight(),
    );
}

/// Encodes the round's frame for the active segment into `io.batch`, as
/// the bytes of one write: the frame, then its terminator (docs/FORMAT.md:
/// in a recycled segment it marks the end of the frames when stale bytes
/// follow; it fits in the room kept for the seal, and the next write
/// overwrites it), then in a padded segment zeros to the block boundary.
fn finish_write(
    io: &mut Io,
    mut frame: FrameBuilder,
    durable: u64,
    now_us: u64,
) -> Result<FrameSummary, Failure> {
    frame
        .set_segment_id(io.active.meta.id)
        .map_err(|e| internal("binding a frame to its segment", &e))?;
    // Monotonic within the log: a clock stepped back stamps the last
    // frame's time again rather than an earlier one.
    io.last_time_us = io.last_time_us.max(now_us);
    frame
        .set_time(&mut io.batch, io.last_time_us)
        .map_err(|e| internal("stamping a frame's time", &e))?;
    let summary = io
        .encoder
        .finish(frame, &mut io.batch, durable)
        .map_err(|e| internal("finishing a frame", &e))?;
    let len = io.active.write_len(io.batch.len() + TERMINATOR_LEN);
    io.batch.resize(len, 0);
    Ok(summary)
}

fn internal(what: &str, e: &wal_format::EncodeError) -> Failure {
    // Every length and LSN was checked when the records were appended.
    Failure::Internal(format!("{what} failed after the append checked it: {e}"))
}

/// Seals the active segment (durably: everything in it becomes durable),
/// starts the next one at `next_lsn`, and switches to the writer it needs.
fn rotate(shared: &Shared, io: &mut Io, next_lsn: u64, durable: u64) -> Result<(), Failure> {
    io.seal.clear();
    let seal = encode_seal(&mut io.seal, io.active.meta.id, next_lsn, durable)
        .map_err(|e| internal("encoding a seal", &e))?;
    let old = &io.active.meta;
    let at = io.active.write_at();
    old.file.write_at(at, &[io.seal.as_slice()])?;
    io.active.offset = at + seal.encoded_len as u64;
    let start = Instant::now();
    old.file.sync_data()?;
    shared.stats.synced(start.elapsed());
    let id = io.ids.next();
    // The spare's name stays taken until the rename: the preparer, which
    // would remove and refill that name, waits on this lock to see the slot
    // empty, and must not see it empty while the spare still goes by it.
    let mut slot = lock(&shared.spare);
    let spare = slot.ready.take();
    shared.stats.rotated(spare.as_ref().map(|s| s.recycled));
    let (storage, options, log_id) = (&*shared.storage, &shared.options, shared.log_id);
    let next = match spare {
        Some(file) => {
            let next = segment::from_spare(storage, options, file, log_id, id, next_lsn);
            drop(slot);
            next?
        }
        None => {
            drop(slot);
            segment::create(storage, options, log_id, id, next_lsn)?
        }
    };
    io.spare_requested = false;
    shared.segments_write().push(next.meta.clone());
    tracing::debug!(segment = %next.meta.name, "rotated to a new segment");
    start_segment(shared, io, next, next_lsn - 1)
}

/// Makes `next` the active segment, everything before it durable up to
/// `durable`, with the writer it needs: the one explicit transition between
/// writers. Nothing may be in flight.
pub(super) fn start_segment(
    shared: &Shared,
    io: &mut Io,
    next: Active,
    durable: u64,
) -> Result<(), Failure> {
    io.writer
        .switch_to(&next.meta, &*shared.storage, &shared.options, durable)?;
    io.active = next;
    io.segment_frames = 0;
    io.segment_frame_bytes = 0;
    Ok(())
}

/// Asks the preparer for a spare segment (when preparation is on),
/// written with zeros or only preallocated.
fn request_spare(shared: &Shared, zero_fill: bool) {
    if shared.options.prepare_segments {
        let mut spare = lock(&shared.spare);
        spare.wanted = true;
        spare.zero_fill = zero_fill;
        drop(spare);
        shared.spare_cv.notify_one();
    }
}

/// The preparer thread: keeps one spare segment ready. A spare it could
/// not create or fill costs only speed (rotation then creates the segment
/// itself), so that is logged and the next rotation asks again. A failed
/// sync is another matter: the directory descriptor is the log's too, and
/// a sync that failed once may pass later without the changes it lost
/// (fsyncgate), so it stops the log.
pub(super) fn run_preparer(shared: &Shared) {
    loop {
        let zero_fill = {
            let mut spare = lock(&shared.spare);
            while !(spare.closing || (spare.wanted && spare.ready.is_none())) {
                spare = shared
                    .spare_cv
                    .wait(spare)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            if spare.closing {
                return;
            }
            spare.wanted = false;
            spare.filling = true;
            spare.zero_fill
        };
        let prepared = segment::prepare_spare(&*shared.storage, &shared.options, zero_fill);
        // The spare's directory entry: a failed sync poisons the log
        // before the owner can publish a sync that passed meanwhile.
        let dir_synced = prepared.is_err() || shared.sync_dir_aside();
        let mut spare = lock(&shared.spare);
        spare.filling = false;
        if !dir_synced {
            return;
        }
        match prepared {
            Ok(file) => {
                if zero_fill {
                    shared.stats.spare_zero_filled();
                }
                spare.ready = Some(SpareFile {
                    file,
                    recycled: false,
                });
            }
            Err(error) if error.is_sync() => {
                drop(spare);
                held::none();
                let mut st = shared.state();
                let woken = shared.poison(&mut st, Failure::Io(error));
                drop(st);
                woken.fire();
                return;
            }
            Err(error) => tracing::warn!(%error, "could not prepare the next segment ahead"),
        }
    }
}
