//! Segment files: names, identities, creation, and what readers need of them.

use std::hash::{BuildHasher, Hasher};

use wal_format::{CleanClose, PADDED_BLOCK_BYTES, SegmentHeader, TERMINATOR_LEN};
use wal_io::{FileOptions, FileRef, IoError, Storage};

use crate::Options;
use crate::sync::{Arc, AtomicU64, Mutex, Ordering, lock};

/// Suffix of segment files.
pub const SEGMENT_SUFFIX: &str = ".wal";

/// The file that becomes the next segment at rotation: prepared ahead of
/// need by a background thread (see
/// [`Options::prepare_segments`](crate::Options::prepare_segments)), or a
/// purged segment's file (see
/// [`Options::recycle_segments`](crate::Options::recycle_segments)).
/// Not a segment: open takes a leftover one over as a recycled file.
pub const SPARE_NAME: &str = "next-segment.spare";

/// The file a cleanly closed log leaves (a [`CleanClose`] record), so that
/// the next open verifies the last segment only up to where its frames end.
/// It is also evidence: it says every LSN below its next LSN was durable, so
/// recovery refuses (in the default and strict modes) a log that holds fewer.
/// Open reads it and recovers; an open that refuses leaves it for the next
/// one. If the log is exactly as the record says, it stays until the first
/// write, cut or purge, which removes it durably first (so an open that
/// changes nothing removes and rewrites nothing); otherwise open removes it
/// at once.
pub const CLEAN_CLOSE_NAME: &str = "clean-close";

/// Writes the clean-close record, durably.
pub(crate) fn write_clean_close(storage: &dyn Storage, mark: &CleanClose) -> Result<(), IoError> {
    remove_if_present(storage, CLEAN_CLOSE_NAME)?;
    let file = storage.create(CLEAN_CLOSE_NAME, FileOptions::BUFFERED)?;
    file.write_at(0, &[&mark.encode()])?;
    file.sync_data()?;
    storage.sync_dir()
}

/// Reads the clean-close record, if there is one, and leaves it in place
/// (see [`remove_clean_close`]). An unreadable record is only a lost hint
/// (and lost evidence): `None`.
pub(crate) fn read_clean_close(storage: &dyn Storage) -> Result<Option<CleanClose>, IoError> {
    let Some(file) = open_if_present(storage, CLEAN_CLOSE_NAME)? else {
        return Ok(None);
    };
    if file.size()? != CleanClose::LEN as u64 {
        return Ok(None);
    }
    let mut buf = [0u8; CleanClose::LEN];
    file.read_at(0, &mut buf)?;
    Ok(CleanClose::decode(&buf)
        .inspect_err(|error| tracing::warn!(%error, "ignoring a damaged clean-close record"))
        .ok())
}

/// Removes the clean-close record if it is there, durably: once recovery
/// has accepted the log and before anything is written (at open, or before
/// the first change when the record is still true of the log), since a
/// record left in place would describe an end that later writes move. The
/// directory is synced even when there was nothing to remove: an earlier
/// open may have removed the record without its removal reaching the disk,
/// and it must not come back after a power loss to vouch for records a
/// later `truncate_back` took away.
pub(crate) fn remove_clean_close(storage: &dyn Storage) -> Result<(), IoError> {
    remove_if_present(storage, CLEAN_CLOSE_NAME)?;
    storage.sync_dir()
}

/// The file under [`SPARE_NAME`], ready for the next rotation.
#[derive(Debug)]
pub(crate) struct SpareFile {
    pub(crate) file: FileRef,
    /// A purged segment's file, its old frames still in it; otherwise zeros.
    pub(crate) recycled: bool,
}

/// Bytes of zeros written per call while preparing a spare.
const ZERO_FILL_CHUNK_BYTES: usize = 1 << 20;

/// Bytes of file offset between two entries of a segment's sparse frame
/// index: a reader seeking an LSN decodes at most this much to find it.
const INDEX_STRIDE_BYTES: u64 = 64 << 10;

/// The file name of the segment whose first LSN is `first_lsn`: zero-padded
/// so names sort as LSNs do.
pub fn segment_name(first_lsn: u64) -> String {
    format!("{first_lsn:020}{SEGMENT_SUFFIX}")
}

/// The first LSN named by a segment file name, if it is one.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Draws segment identities: non-zero, and different for every file the log
/// creates or restamps.
#[derive(Debug)]
pub(crate) struct Ids {
    state: u64,
}

impl Ids {
    /// From the seed if there is one, else from the operating system's
    /// randomness; `salt` (the next LSN at open) separates runs of a seeded log.
    pub(crate) fn new(seed: Option<u64>, salt: u64) -> Self {
        let base = seed.unwrap_or_else(|| {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos()),
            );
            h.write_u32(std::process::id());
            h.finish()
        });
        Ids {
            state: base ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        }
    }

    pub(crate) fn next(&mut self) -> u64 {
        loop {
            // splitmix64
            self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            if z != 0 {
                return z;
            }
        }
    }
}

/// A live segment, as readers and the writer share it.
#[derive(Debug)]
pub(crate) struct SegMeta {
    pub(crate) first_lsn: u64,
    pub(crate) name: String,
    pub(crate) file: FileRef,
    pub(crate) id: u64,
    /// Written in whole blocks (docs/FORMAT.md, "Padded segments").
    pub(crate) padded: bool,
    /// The LSN this segment's records stop at: the next segment's first LSN
    /// (records at or past it in this file are stale), `u64::MAX` while open.
    end_lsn: AtomicU64,
    /// Sparse `(first_lsn, offset)` of frames, increasing.
    index: Mutex<Vec<(u64, u64)>>,
}

impl SegMeta {
    pub(crate) fn new(
        first_lsn: u64,
        name: String,
        file: FileRef,
        id: u64,
        padded: bool,
        index: Vec<(u64, u64)>,
    ) -> Self {
        SegMeta {
            first_lsn,
            name,
            file,
            id,
            padded,
            end_lsn: AtomicU64::new(u64::MAX),
            index: Mutex::new(index),
        }
    }

    pub(crate) fn end_lsn(&self) -> u64 {
        self.end_lsn.load(Ordering::Acquire)
    }

    pub(crate) fn set_end_lsn(&self, lsn: u64) {
        self.end_lsn.store(lsn, Ordering::Release);
    }

    /// Records a frame written at `offset` if it is far enough from the last entry.
    pub(crate) fn index_frame(&self, first_lsn: u64, offset: u64) {
        let mut index = lock(&self.index);
        let far = index
            .last()
            .is_none_or(|&(_, last)| offset >= last + INDEX_STRIDE_BYTES);
        if far {
            index.push((first_lsn, offset));
        }
    }

    /// The offset of the last indexed frame starting at or before `lsn`.
    pub(crate) fn seek(&self, lsn: u64) -> u64 {
        let index = lock(&self.index);
        let at = index.partition_point(|&(first, _)| first <= lsn);
        at.checked_sub(1)
            .and_then(|i| index.get(i))
            .map_or(SegmentHeader::LEN as u64, |&(_, offset)| offset)
    }

    /// Whether a frame index entry at `offset` should be added (for recovery's scan).
    pub(crate) fn sparse(index: &mut Vec<(u64, u64)>, first_lsn: u64, offset: u64) {
        if index
            .last()
            .is_none_or(|&(_, last)| offset >= last + INDEX_STRIDE_BYTES)
        {
            index.push((first_lsn, offset));
        }
    }
}

/// Where the next write starts in a segment whose frames end at `offset`:
/// right there, or in a padded segment at the first block boundary after
/// the terminator.
pub(crate) fn write_start(padded: bool, offset: u64) -> u64 {
    if padded {
        (offset + TERMINATOR_LEN as u64).next_multiple_of(PADDED_BLOCK_BYTES as u64)
    } else {
        offset
    }
}

/// The bytes a write of `len` bytes (frames and a terminator) takes: a
/// padded segment's writes take whole blocks.
pub(crate) fn write_bytes(padded: bool, len: usize) -> usize {
    if padded {
        len.next_multiple_of(PADDED_BLOCK_BYTES)
    } else {
        len
    }
}

/// The segment being appended to. (Which writer writes it, and through
/// which descriptor, is the writer's to know.)
#[derive(Debug)]
pub(crate) struct Active {
    pub(crate) meta: Arc<SegMeta>,
    /// Where the last frame ends (where the next one goes, unless padded).
    pub(crate) offset: u64,
}

impl Active {
    /// Where the next write starts: right after the last frame, or in a
    /// padded segment at the first block boundary after its terminator.
    pub(crate) fn write_at(&self) -> u64 {
        write_start(self.meta.padded, self.offset)
    }

    /// The bytes a write of `len` bytes (a frame and its terminator) takes
    /// in this segment: padded segments take whole blocks.
    pub(crate) fn write_len(&self, len: usize) -> usize {
        write_bytes(self.meta.padded, len)
    }

    /// The active segment `meta`, whose frames end at `offset`.
    pub(crate) fn new(meta: Arc<SegMeta>, offset: u64) -> Active {
        Active { meta, offset }
    }
}

/// Creates, preallocates and stamps a new segment, durably: the header and
/// the directory entry are synced before any record goes in.
pub(crate) fn create(
    storage: &dyn Storage,
    options: &Options,
    log_id: u64,
    id: u64,
    first_lsn: u64,
) -> Result<Active, IoError> {
    let name = segment_name(first_lsn);
    let (file, stamp) = new_file(storage, options, &name, log_id, id, first_lsn)?;
    storage.sync_dir()?;
    Ok(active(file, name, &stamp))
}

/// Creates `name`, preallocated (and zero-filled where the writer needs
/// it), and stamps it as a new segment starting at `first_lsn`, its header
/// synced. The directory is the caller's to sync.
fn new_file(
    storage: &dyn Storage,
    options: &Options,
    name: &str,
    log_id: u64,
    id: u64,
    first_lsn: u64,
) -> Result<(FileRef, Stamp), IoError> {
    let file = storage.create(name, FileOptions::BUFFERED)?;
    if options.preallocate {
        file.allocate(0, options.segment_bytes)?;
        if options.direct_io && fills_with_zeros(options) {
            // Padded writes take a new block each while others are in
            // flight; into preallocated, never-written blocks every one of
            // them would also pay the extent conversion. Zeros written now
            // (and synced with the header below) spare them that.
            zero_fill(&file, options.segment_bytes)?;
        }
    }
    let stamp = Stamp {
        log_id,
        id,
        first_lsn,
        recycled: false,
        padded: options.direct_io,
    };
    write_header(&file, name, &stamp)?;
    Ok((file, stamp))
}

/// The name `truncate_back` stamps its new segment under before the
/// segment takes its place: not a segment's name, so recovery never reads
/// it, and open removes a leftover one.
pub const STAGED_NAME: &str = "truncate-back.staged";

/// A new segment, stamped and synced under [`STAGED_NAME`].
#[derive(Debug)]
pub(crate) struct Staged {
    file: FileRef,
    stamp: Stamp,
}

impl Staged {
    /// The staged file.
    pub(crate) fn file(&self) -> &FileRef {
        &self.file
    }

    /// Its identity.
    pub(crate) fn id(&self) -> u64 {
        self.stamp.id
    }
}

/// Creates the segment starting at `first_lsn` under [`STAGED_NAME`]:
/// preallocated, its header synced, as [`create`] would, but not yet in
/// the log. [`commit_staged`] puts it there.
pub(crate) fn stage(
    storage: &dyn Storage,
    options: &Options,
    log_id: u64,
    id: u64,
    first_lsn: u64,
) -> Result<Staged, IoError> {
    remove_staged(storage)?;
    let (file, stamp) = new_file(storage, options, STAGED_NAME, log_id, id, first_lsn)?;
    Ok(Staged { file, stamp })
}

/// Renames a staged segment to its segment's name (replacing a file of that
/// name, atomically) and syncs the directory: from then on it is in the log.
pub(crate) fn commit_staged(storage: &dyn Storage, staged: Staged) -> Result<Active, IoError> {
    let name = segment_name(staged.stamp.first_lsn);
    storage.rename(STAGED_NAME, &name)?;
    storage.sync_dir()?;
    Ok(active(staged.file, name, &staged.stamp))
}

/// Removes a staged segment a crash left behind, if there is one.
pub(crate) fn remove_staged(storage: &dyn Storage) -> Result<(), IoError> {
    if open_if_present(storage, STAGED_NAME)?.is_some() {
        storage.remove(STAGED_NAME)?;
        storage.sync_dir()?;
    }
    Ok(())
}

/// Creates the spare segment file (replacing a leftover), its data synced,
/// with zeros over its whole length if `zeros` (the writer decides, by
/// [`fills_with_zeros`] and the size of its writes), and otherwise only
/// preallocated (as [`create`] would). The caller syncs the directory: the
/// preparer does it so that the owner's syncs meanwhile are held back until
/// it passes (`Shared::sync_dir_aside`).
pub(crate) fn prepare_spare(
    storage: &dyn Storage,
    options: &Options,
    zeros: bool,
) -> Result<FileRef, IoError> {
    remove_if_present(storage, SPARE_NAME)?;
    let file = storage.create(SPARE_NAME, FileOptions::BUFFERED)?;
    if zeros {
        zero_fill(&file, options.segment_bytes)?;
    } else if options.preallocate {
        file.allocate(0, options.segment_bytes)?;
    }
    file.sync_data()?;
    Ok(file)
}

/// Whether segments prepared ahead (and direct-I/O segments created on
/// demand) are written with zeros before use. A durable write into blocks
/// written before costs less than one into preallocated, never-written
/// blocks, which each sync must first convert (docs/DECISIONS.md has the
/// figures); that pays only where commits wait for a sync each. Under
/// `Interval` and `Never` syncs are rare and appends are bandwidth-bound, and
/// writing every segment twice cost them more than the conversions.
pub(crate) fn fills_with_zeros(options: &Options) -> bool {
    options.sync.commit_waits()
}

/// Writes zeros over `len` bytes of `file` (not synced).
fn zero_fill(file: &FileRef, len: u64) -> Result<(), IoError> {
    let zeros = vec![0u8; ZERO_FILL_CHUNK_BYTES];
    let mut at = 0;
    while at < len {
        let n = usize::try_from(len - at)
            .unwrap_or(usize::MAX)
            .min(zeros.len());
        file.write_at(at, &[zeros.get(..n).unwrap_or_default()])?;
        at += n as u64;
    }
    Ok(())
}

/// Makes a purged segment's file the spare, if it can be reused: it has
/// exactly the size a new segment would be preallocated to. The caller has
/// retired the segment (no reader hands out its records any more) and syncs
/// the directory. A crash after the rename leaves a spare, which the next
/// open takes over; before it, a segment in front of the log, which is still
/// a prefix-consistent log.
pub(crate) fn recycle(
    storage: &dyn Storage,
    options: &Options,
    seg: &SegMeta,
) -> Result<Option<SpareFile>, IoError> {
    if seg.file.size()? != options.segment_bytes {
        return Ok(None);
    }
    storage.rename(&seg.name, SPARE_NAME)?;
    Ok(Some(SpareFile {
        file: seg.file.clone(),
        recycled: true,
    }))
}

/// Takes over the spare an earlier run left, as a recycled file, when
/// recycling is on and it has a segment's size; removes it otherwise.
///
/// Treating it as recycled is right whatever it holds: a half-filled zero
/// spare, a purged segment, or one stamped by a rotation that a crash
/// interrupted before its rename. Its next stamp gives it a new identity and
/// the recycled flag, under which no byte already in the file can pass as a
/// frame, and a zero header after the last frame reads as a clean end.
pub(crate) fn reclaim_spare(
    storage: &dyn Storage,
    options: &Options,
) -> Result<Option<SpareFile>, IoError> {
    if !options.recycle_segments {
        remove_if_present(storage, SPARE_NAME)?;
        return Ok(None);
    }
    let Some(file) = open_if_present(storage, SPARE_NAME)? else {
        return Ok(None);
    };
    if file.size()? == options.segment_bytes {
        return Ok(Some(SpareFile {
            file,
            recycled: true,
        }));
    }
    drop(file);
    remove_if_present(storage, SPARE_NAME)?;
    Ok(None)
}

/// The file `name`, if it is there.
///
/// Opened by name rather than looked up in a listing: recovery lists the
/// directory once, and each lookup of a side file (the clean-close record,
/// the spare, a staged segment) listed it again. A name's lookup also
/// stays cached where the directory's blocks may not: after
/// `drop_caches`, a listing read the disk for 2 ms on this project's test
/// machine, an open by name nothing. (After a reboot either reads the
/// directory's block once.) A symbolic link is refused as the listing
/// leaves it out (`wal_io`).
fn open_if_present(storage: &dyn Storage, name: &str) -> Result<Option<FileRef>, IoError> {
    match storage.open(name, FileOptions::BUFFERED) {
        Err(e) if is_not_found(&e) => Ok(None),
        other => other.map(Some),
    }
}

/// Removes `name` if it is there.
fn remove_if_present(storage: &dyn Storage, name: &str) -> Result<(), IoError> {
    match storage.remove(name) {
        Err(e) if is_not_found(&e) => Ok(()),
        other => other,
    }
}

fn is_not_found(e: &IoError) -> bool {
    matches!(e, IoError::Os { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
}

/// Turns the spare into the segment starting at `first_lsn`, durably:
/// stamped (header synced) while still named as the spare, then renamed and
/// the directory synced, before any record goes in. A crash before the
/// rename leaves the spare, which the next open takes over; after it, a segment with
/// a valid header of its own and no records. A recycled file's old header
/// never stands under a segment's name.
pub(crate) fn from_spare(
    storage: &dyn Storage,
    options: &Options,
    spare: SpareFile,
    log_id: u64,
    id: u64,
    first_lsn: u64,
) -> Result<Active, IoError> {
    let name = segment_name(first_lsn);
    let stamp = Stamp {
        log_id,
        id,
        first_lsn,
        recycled: spare.recycled,
        padded: options.direct_io,
    };
    write_header(&spare.file, &name, &stamp)?;
    storage.rename(SPARE_NAME, &name)?;
    storage.sync_dir()?;
    Ok(active(spare.file, name, &stamp))
}

/// What a new incarnation of a segment file is stamped with.
#[derive(Debug)]
struct Stamp {
    log_id: u64,
    id: u64,
    first_lsn: u64,
    recycled: bool,
    padded: bool,
}

/// Writes and syncs the header of a new incarnation of `file`, followed by a
/// terminator (docs/FORMAT.md): in a recycled file it is what makes a
/// segment with no frames yet read as cleanly empty, and in a padded one it
/// is the padding that puts the first frame at the second block.
fn write_header(file: &FileRef, name: &str, stamp: &Stamp) -> Result<(), IoError> {
    let header = SegmentHeader::new(stamp.log_id, stamp.id, stamp.first_lsn)
        .map_err(|e| IoError::Unsupported {
            op: wal_io::Op::Write,
            path: name.into(),
            reason: e.to_string(),
        })?
        .with_recycled(stamp.recycled)
        .with_padded(stamp.padded);
    let mut bytes = [0u8; SegmentHeader::LEN + TERMINATOR_LEN];
    bytes[..SegmentHeader::LEN].copy_from_slice(&header.encode());
    file.write_at(0, &[&bytes])?;
    file.sync_data()
}

fn active(file: FileRef, name: String, stamp: &Stamp) -> Active {
    let meta = Arc::new(SegMeta::new(
        stamp.first_lsn,
        name,
        file,
        stamp.id,
        stamp.padded,
        vec![(stamp.first_lsn, SegmentHeader::LEN as u64)],
    ));
    Active::new(meta, SegmentHeader::LEN as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Zeros are written over a spare only where commits wait for a sync
    /// each; otherwise it is preallocated, and reads as zeros all the same.
    #[test]
    fn spares_are_zero_filled_only_where_commits_wait_for_syncs() {
        use crate::SyncPolicy;
        use std::time::Duration;
        let policies = [
            (SyncPolicy::Always, true),
            (
                SyncPolicy::Group {
                    max_delay: Duration::from_micros(100),
                    max_batch_bytes: 1 << 10,
                },
                true,
            ),
            (SyncPolicy::Interval(Duration::from_millis(1)), false),
            (SyncPolicy::Never, false),
        ];
        for (policy, fills) in policies {
            let disk = wal_io::sim::SimDisk::new(7);
            let storage = disk.storage();
            let options = Options {
                sync: policy,
                segment_bytes: 3 << 20,
                ..Options::default()
            };
            let file = prepare_spare(&*storage, &options, fills_with_zeros(&options)).unwrap();
            // Its directory entry is the caller's to sync (the preparer's).
            storage.sync_dir().unwrap();
            let writes = disk.op_count(wal_io::Op::Write);
            assert_eq!(writes > 0, fills, "{policy:?}: {writes} writes");
            if fills {
                assert_eq!(writes, 3, "{policy:?}: one write per MiB of zeros");
            }
            assert_eq!(file.size().unwrap(), options.segment_bytes, "{policy:?}");
            let content = disk.durable_content(SPARE_NAME).unwrap();
            assert_eq!(content.len() as u64, options.segment_bytes, "{policy:?}");
            assert!(content.iter().all(|&b| b == 0), "{policy:?}");
        }
    }

    #[test]
    fn names_sort_as_lsns_and_parse_back() {
        let names: Vec<String> = [1u64, 9, 10, 12345, u64::MAX]
            .iter()
            .map(|&l| segment_name(l))
            .collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        for (name, lsn) in names.iter().zip([1u64, 9, 10, 12345, u64::MAX]) {
            assert_eq!(parse_segment_name(name), Some(lsn));
        }
        for bad in [
            "1.wal",
            "0000000000000000000x.wal",
            "00000000000000000001.log",
            "LOCK",
        ] {
            assert_eq!(parse_segment_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn identities_are_non_zero_distinct_and_seeded() {
        let mut a = Ids::new(Some(1), 5);
        let mut b = Ids::new(Some(1), 5);
        let xs: Vec<u64> = (0..1000).map(|_| a.next()).collect();
        assert!(xs.iter().all(|&x| x != 0));
        assert_eq!(xs, (0..1000).map(|_| b.next()).collect::<Vec<_>>());
        let distinct: std::collections::BTreeSet<u64> = xs.iter().copied().collect();
        assert_eq!(distinct.len(), xs.len());
        assert_ne!(
            Ids::new(Some(1), 6).next(),
            xs[0],
            "the salt separates runs"
        );
    }
}
