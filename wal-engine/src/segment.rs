//! Segment files: names, identities, creation, and what readers need of them.

use std::hash::{BuildHasher, Hasher};

use wal_format::SegmentHeader;
use wal_io::{FileOptions, FileRef, IoError, Storage};

use crate::Options;
use crate::sync::{Arc, AtomicU64, Mutex, Ordering, lock};

/// Suffix of segment files.
pub const SEGMENT_SUFFIX: &str = ".wal";

/// The file a background thread zero-fills ahead of need, to become the next
/// segment (see [`Options::prepare_segments`](crate::Options::prepare_segments)).
/// Not a segment: recovery removes a leftover one.
pub const SPARE_NAME: &str = "next-segment.spare";

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
        index: Vec<(u64, u64)>,
    ) -> Self {
        SegMeta {
            first_lsn,
            name,
            file,
            id,
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

/// The segment being appended to.
#[derive(Debug)]
pub(crate) struct Active {
    pub(crate) meta: Arc<SegMeta>,
    /// Where the next frame goes.
    pub(crate) offset: u64,
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
    let file = storage.create(&name, FileOptions::BUFFERED)?;
    if options.preallocate {
        file.allocate(0, options.segment_bytes)?;
    }
    stamp(storage, file, name, log_id, id, first_lsn)
}

/// Creates the spare segment file (replacing a leftover) and writes zeros
/// over its whole length, durably: a durable write into blocks written
/// before costs less than one into preallocated, never-written blocks,
/// which each write must first convert (docs/ARCHITECTURE.md has the figures).
pub(crate) fn prepare_spare(storage: &dyn Storage, options: &Options) -> Result<FileRef, IoError> {
    remove_spare(storage)?;
    let file = storage.create(SPARE_NAME, FileOptions::BUFFERED)?;
    let zeros = vec![0u8; ZERO_FILL_CHUNK_BYTES];
    let mut at = 0;
    while at < options.segment_bytes {
        let n = usize::try_from(options.segment_bytes - at)
            .unwrap_or(usize::MAX)
            .min(zeros.len());
        file.write_at(at, &[zeros.get(..n).unwrap_or_default()])?;
        at += n as u64;
    }
    file.sync_data()?;
    storage.sync_dir()?;
    Ok(file)
}

/// Removes a spare left by an earlier run, if there is one.
pub(crate) fn remove_spare(storage: &dyn Storage) -> Result<(), IoError> {
    match storage.remove(SPARE_NAME) {
        Err(IoError::Os { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Turns a prepared spare into the segment starting at `first_lsn`, durably:
/// renamed, stamped, header and directory synced before any record goes in.
/// A crash half-way leaves either the spare or a segment with no valid
/// header and no records, which recovery removes.
pub(crate) fn from_spare(
    storage: &dyn Storage,
    spare: FileRef,
    log_id: u64,
    id: u64,
    first_lsn: u64,
) -> Result<Active, IoError> {
    let name = segment_name(first_lsn);
    storage.rename(SPARE_NAME, &name)?;
    stamp(storage, spare, name, log_id, id, first_lsn)
}

fn stamp(
    storage: &dyn Storage,
    file: FileRef,
    name: String,
    log_id: u64,
    id: u64,
    first_lsn: u64,
) -> Result<Active, IoError> {
    let header = SegmentHeader::new(log_id, id, first_lsn).map_err(|e| IoError::Unsupported {
        op: wal_io::Op::Write,
        path: name.clone().into(),
        reason: e.to_string(),
    })?;
    file.write_at(0, &[&header.encode()])?;
    file.sync_data()?;
    storage.sync_dir()?;
    Ok(Active {
        meta: Arc::new(SegMeta::new(
            first_lsn,
            name,
            file,
            id,
            vec![(first_lsn, SegmentHeader::LEN as u64)],
        )),
        offset: SegmentHeader::LEN as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
