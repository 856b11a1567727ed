//! The metadata file beside the Raft log: the vote and the last purged log
//! id, which must survive a crash and can be neither appended to the log
//! (a front truncation would take them away) nor lost. Replaced whole:
//! written to a temporary name, synced, renamed over, directory synced.

use wal_io::{FileOptions, Storage};

use crate::RaftStoreError;
use crate::codec::Meta;

/// The file's name in the log's directory.
pub(crate) const NAME: &str = "raft-meta";
const TEMP_NAME: &str = "raft-meta.tmp";
/// Larger than any metadata file this version writes.
const META_BYTES_MAX: u64 = 4096;

/// Reads the metadata; the default for a log that never wrote any.
pub(crate) fn read(storage: &dyn Storage) -> Result<Meta, RaftStoreError> {
    if !storage.list()?.iter().any(|n| n == NAME) {
        return Ok(Meta::default());
    }
    let file = storage.open(NAME, FileOptions::BUFFERED)?;
    let size = file.size()?;
    if size > META_BYTES_MAX {
        return Err(RaftStoreError::corrupt(
            "raft metadata",
            format!("{size} bytes, more than any version writes"),
        ));
    }
    let mut data = vec![0u8; usize::try_from(size).unwrap_or(0)];
    file.read_at(0, &mut data)?;
    file.close();
    Meta::decode(&data)
}

/// Replaces the metadata atomically and durably.
pub(crate) fn write(storage: &dyn Storage, meta: &Meta) -> Result<(), RaftStoreError> {
    Ok(wal_io::replace_file(
        storage,
        NAME,
        TEMP_NAME,
        &meta.encode(),
    )?)
}
