//! Snapshot files: a consistent view of the state machine's store, streamed
//! to a file a bounded buffer at a time (never the whole data set in
//! memory), verified by a checksum over the whole file.
//!
//! Layout (`docs/RAFT_FORMAT.md`): `magic "WALSNAP1" | state_len u32 |
//! state | (key_len u32 | key | value_len u32 | value)* | u32::MAX |
//! pairs u64 | crc u32`, the CRC32C over every byte before it.

use std::sync::Arc;

use bytes::Bytes;
use wal_io::{FileOptions, FileRef, Storage};

use crate::codec;
use crate::{LogId, RaftStoreError, SnapshotMeta};

const MAGIC: &[u8; 8] = b"WALSNAP1";
const END: u32 = u32::MAX;
/// Bytes gathered before each write, and read at a time.
const CHUNK_BYTES: usize = 1 << 20;
/// Longest state header.
const STATE_BYTES_MAX: u32 = 1 << 20;
/// A finished snapshot's name starts so; a temporary one ends in `.tmp`.
pub(crate) const PREFIX: &str = "raft-snapshot-";

/// A snapshot's bytes: a file, readable by whoever holds it (the handle
/// keeps it readable after a newer snapshot replaces its name).
#[derive(Debug, Clone)]
pub struct SnapshotFile {
    file: FileRef,
    len: u64,
}

impl SnapshotFile {
    /// Opens the snapshot file `name` of `storage` (one received from
    /// another node, for instance) to install it.
    ///
    /// # Errors
    /// I/O errors.
    pub fn open(storage: &Arc<dyn Storage>, name: &str) -> Result<SnapshotFile, RaftStoreError> {
        open(storage, name)
    }

    /// The file's length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file is empty (never for a snapshot this crate wrote).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// What the snapshot covers, read from the file's header (a file
    /// received from another node names its own meta).
    ///
    /// # Errors
    /// I/O errors; a file that does not start as a snapshot does.
    pub fn meta(&self) -> Result<SnapshotMeta, RaftStoreError> {
        Ok(Reader::open(self)?.1)
    }

    /// Reads `buf.len()` bytes at `offset`.
    ///
    /// # Errors
    /// I/O errors, and a read past the end.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), RaftStoreError> {
        if offset.saturating_add(buf.len() as u64) > self.len {
            return Err(RaftStoreError::Misuse(format!(
                "a read of {} bytes at {offset} in a snapshot of {}",
                buf.len(),
                self.len
            )));
        }
        Ok(self.file.read_at(offset, buf)?)
    }
}

/// The name of the snapshot covering up to `last`.
pub(crate) fn name(last: Option<&LogId>) -> String {
    match last {
        Some(id) => format!(
            "{PREFIX}{:020}-{:020}-{:020}",
            id.index, id.leader_id.term, id.leader_id.node_id
        ),
        None => format!("{PREFIX}none"),
    }
}

/// Writes a snapshot file under a temporary name, a chunk at a time.
pub(crate) struct Writer {
    file: FileRef,
    buf: Vec<u8>,
    at: u64,
    crc: u32,
    pairs: u64,
}

impl Writer {
    pub fn create(
        storage: &dyn Storage,
        tmp: &str,
        meta: &SnapshotMeta,
    ) -> Result<Writer, RaftStoreError> {
        if storage.list()?.iter().any(|n| n == tmp) {
            storage.remove(tmp)?;
        }
        let file = storage.create(tmp, FileOptions::BUFFERED)?;
        let state = codec::encode_state(meta.last_log_id.as_ref(), &meta.last_membership)?;
        let mut w = Writer {
            file,
            buf: Vec::with_capacity(CHUNK_BYTES + 64),
            at: 0,
            crc: 0,
            pairs: 0,
        };
        w.put(MAGIC)?;
        w.put(&u32::try_from(state.len()).unwrap_or(u32::MAX).to_le_bytes())?;
        w.put(&state)?;
        Ok(w)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), RaftStoreError> {
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= CHUNK_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), RaftStoreError> {
        self.file.write_at(self.at, &[&self.buf])?;
        self.at += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    pub fn pair(&mut self, key: &[u8], value: &[u8]) -> Result<(), RaftStoreError> {
        let len = |n: usize| u32::try_from(n).ok().filter(|&n| n != END);
        let (Some(k), Some(v)) = (len(key.len()), len(value.len())) else {
            return Err(RaftStoreError::Misuse("a pair of 4 GiB".into()));
        };
        self.put(&k.to_le_bytes())?;
        self.put(key)?;
        self.put(&v.to_le_bytes())?;
        self.put(value)?;
        self.pairs += 1;
        Ok(())
    }

    /// Ends the file, syncs it and renames it to `name`, durably.
    pub fn finish(
        mut self,
        storage: &dyn Storage,
        tmp: &str,
        name: &str,
    ) -> Result<SnapshotFile, RaftStoreError> {
        self.put(&END.to_le_bytes())?;
        let pairs = self.pairs;
        self.put(&pairs.to_le_bytes())?;
        let crc = self.crc;
        self.buf.extend_from_slice(&crc.to_le_bytes());
        self.flush()?;
        self.file.sync_data()?;
        storage.rename(tmp, name)?;
        storage.sync_dir()?;
        Ok(SnapshotFile {
            file: self.file,
            len: self.at,
        })
    }
}

/// Reads a snapshot file a chunk at a time, checking every length.
pub(crate) struct Reader<'a> {
    snap: &'a SnapshotFile,
    buf: Vec<u8>,
    pos: usize,
    at: u64,
    crc: u32,
    pairs: u64,
}

impl<'a> Reader<'a> {
    fn bad(&self, detail: &str) -> RaftStoreError {
        RaftStoreError::corrupt("snapshot", format!("{detail} near byte {}", self.at))
    }

    fn take(&mut self, n: usize) -> Result<Bytes, RaftStoreError> {
        if (self.buf.len() - self.pos) < n {
            let left = self.snap.len - self.at;
            let want = n
                .max(CHUNK_BYTES)
                .min(usize::try_from(left).unwrap_or(usize::MAX));
            if (self.buf.len() - self.pos) + want < n {
                return Err(self.bad("truncated"));
            }
            self.buf.drain(..self.pos);
            self.pos = 0;
            let old = self.buf.len();
            self.buf.resize(old + want, 0);
            self.snap.read_at(self.at, &mut self.buf[old..])?;
            self.at += want as u64;
        }
        let out = Bytes::copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, RaftStoreError> {
        let b = self.take(4)?;
        self.crc = crc32c::crc32c_append(self.crc, &b);
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn bytes(&mut self, n: u32) -> Result<Bytes, RaftStoreError> {
        if u64::from(n) > self.snap.len {
            return Err(self.bad(&format!("a length of {n}")));
        }
        let b = self.take(n as usize)?;
        self.crc = crc32c::crc32c_append(self.crc, &b);
        Ok(b)
    }

    /// Opens `snap`: checks its magic and returns its meta.
    pub fn open(snap: &'a SnapshotFile) -> Result<(Reader<'a>, SnapshotMeta), RaftStoreError> {
        let mut r = Reader {
            snap,
            buf: Vec::new(),
            pos: 0,
            at: 0,
            crc: 0,
            pairs: 0,
        };
        if r.bytes(8)?[..] != MAGIC[..] {
            return Err(r.bad("no snapshot magic"));
        }
        let len = r.u32()?;
        if len > STATE_BYTES_MAX {
            return Err(r.bad(&format!("a state of {len} bytes")));
        }
        let state = r.bytes(len)?;
        let (last_log_id, last_membership) = codec::decode_state(&state, "snapshot state")?;
        Ok((
            r,
            SnapshotMeta {
                last_log_id,
                last_membership,
            },
        ))
    }

    /// The next pair; `None` after the last, once the count and checksum
    /// are verified.
    pub fn next_pair(&mut self) -> Result<Option<(Bytes, Bytes)>, RaftStoreError> {
        let klen = self.u32()?;
        if klen == END {
            let count = self.bytes(8)?;
            let crc = self.crc;
            let stored = self.take(4)?;
            if crc != u32::from_le_bytes([stored[0], stored[1], stored[2], stored[3]]) {
                return Err(self.bad("checksum mismatch"));
            }
            let count = u64::from_le_bytes(count[..].try_into().unwrap_or([0xff; 8]));
            if count != self.pairs {
                return Err(self.bad(&format!("{count} pairs said, {} read", self.pairs)));
            }
            if self.at - (self.buf.len() - self.pos) as u64 != self.snap.len {
                return Err(self.bad("bytes after the end"));
            }
            return Ok(None);
        }
        let key = self.bytes(klen)?;
        let vlen = self.u32()?;
        let value = self.bytes(vlen)?;
        self.pairs += 1;
        Ok(Some((key, value)))
    }
}

/// Opens the finished snapshot file `name`.
pub(crate) fn open(storage: &Arc<dyn Storage>, name: &str) -> Result<SnapshotFile, RaftStoreError> {
    let file = storage.open(name, FileOptions::BUFFERED)?;
    let len = file.size()?;
    Ok(SnapshotFile { file, len })
}
