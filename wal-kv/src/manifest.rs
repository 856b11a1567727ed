//! The manifest: which tables are live and which LSN the checkpoint covers.
//! Replaced atomically: written to `MANIFEST.tmp`, synced, renamed over
//! `MANIFEST`, directory synced.
//!
//! Layout (little-endian): `"WALKVMAN" | version u32 | checkpoint_lsn u64 |
//! next_table_id u64 | level_count u32 | (count u32 | table ids u64*) per
//! level | crc32c u32`. Level 0 lists its tables newest first; deeper
//! levels list theirs in key order. Version 1 had one list (`count u32 |
//! ids u64*`), read as level 0.

use wal_io::{FileOptions, Storage};

use crate::KvError;

pub(crate) const NAME: &str = "MANIFEST";
pub(crate) const TEMP_NAME: &str = "MANIFEST.tmp";
const MAGIC: &[u8; 8] = b"WALKVMAN";
const VERSION: u32 = 2;
const VERSION_ONE_LEVEL: u32 = 1;
/// More levels than any store reaches: each is 10x the one above.
pub(crate) const LEVELS_MAX: usize = 8;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Manifest {
    /// Every batch at or below this LSN is in the tables.
    pub checkpoint_lsn: u64,
    pub next_table_id: u64,
    /// Live tables per level: level 0 newest first, deeper levels in key
    /// order. Trailing empty levels are not stored.
    pub levels: Vec<Vec<u64>>,
}

impl Manifest {
    fn encode(&self) -> Vec<u8> {
        let ids: usize = self.levels.iter().map(Vec::len).sum();
        let mut out = Vec::with_capacity(40 + 4 * self.levels.len() + 8 * ids);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&self.checkpoint_lsn.to_le_bytes());
        out.extend_from_slice(&self.next_table_id.to_le_bytes());
        assert!(self.levels.len() <= LEVELS_MAX, "levels above the maximum");
        let level_count = u32::try_from(self.levels.len()).expect("at most LEVELS_MAX");
        out.extend_from_slice(&level_count.to_le_bytes());
        for level in &self.levels {
            let count = u32::try_from(level.len()).expect("far fewer than 2^32 tables");
            out.extend_from_slice(&count.to_le_bytes());
            for id in level {
                out.extend_from_slice(&id.to_le_bytes());
            }
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    fn decode(data: &[u8]) -> Result<Manifest, KvError> {
        let bad = |detail: &str| KvError::corrupt(NAME, 0, detail);
        let split = data.len().checked_sub(4).ok_or_else(|| bad("too short"))?;
        let (body, crc) = data.split_at(split);
        if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().unwrap_or_default()) {
            return Err(bad("checksum mismatch"));
        }
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<&[u8], KvError> {
            let field = body
                .get(at..at.saturating_add(n))
                .ok_or_else(|| bad("truncated"))?;
            at += n;
            Ok(field)
        };
        if take(8)? != MAGIC.as_slice() {
            return Err(bad("not a manifest (magic)"));
        }
        let u32_of = |b: &[u8]| u32::from_le_bytes(b.try_into().unwrap_or_default());
        let u64_of = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or_default());
        let version = u32_of(take(4)?);
        let checkpoint_lsn = u64_of(take(8)?);
        let next_table_id = u64_of(take(8)?);
        let level_count = match version {
            VERSION => u32_of(take(4)?) as usize,
            VERSION_ONE_LEVEL => 1,
            _ => return Err(bad("unknown manifest version")),
        };
        if level_count > LEVELS_MAX {
            return Err(bad("more levels than the maximum"));
        }
        let mut levels = Vec::with_capacity(level_count);
        for _ in 0..level_count {
            let count = u32_of(take(4)?) as usize;
            let ids = take(count.checked_mul(8).ok_or_else(|| bad("huge count"))?)?;
            levels.push(ids.chunks_exact(8).map(u64_of).collect::<Vec<u64>>());
        }
        if at != body.len() {
            return Err(bad("bytes after the last level"));
        }
        let mut seen = std::collections::HashSet::new();
        for &id in levels.iter().flatten() {
            if id >= next_table_id {
                return Err(bad("a table id at or above next_table_id"));
            }
            if !seen.insert(id) {
                return Err(bad("a table listed twice"));
            }
        }
        Ok(Manifest {
            checkpoint_lsn,
            next_table_id,
            levels,
        })
    }

    /// Every live table's id.
    pub fn tables(&self) -> impl Iterator<Item = u64> + '_ {
        self.levels.iter().flatten().copied()
    }

    /// Reads the manifest; `None` for a store that never checkpointed.
    pub fn read(storage: &dyn Storage) -> Result<Option<Manifest>, KvError> {
        if !storage.list()?.iter().any(|n| n == NAME) {
            return Ok(None);
        }
        let file = storage.open(NAME, FileOptions::BUFFERED)?;
        let size = usize::try_from(file.size()?).map_err(|_| KvError::corrupt(NAME, 0, "huge"))?;
        let mut data = vec![0u8; size];
        file.read_at(0, &mut data)?;
        file.close();
        Manifest::decode(&data).map(Some)
    }

    /// Replaces the manifest atomically and durably.
    pub fn write(&self, storage: &dyn Storage) -> Result<(), KvError> {
        Ok(wal_io::replace_file(
            storage,
            NAME,
            TEMP_NAME,
            &self.encode(),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/KV_FORMAT.md shows these bytes: the document and the encoder agree.
    #[test]
    fn the_documented_example_is_what_the_encoder_writes() {
        let m = Manifest {
            checkpoint_lsn: 7,
            next_table_id: 4,
            levels: vec![vec![3], vec![1, 2]],
        };
        let bytes = m.encode();
        assert_eq!(
            crate::documented_bytes("manifest"),
            bytes,
            "docs/KV_FORMAT.md should show:\n{}",
            crate::dump(&bytes)
        );
        assert_eq!(Manifest::decode(&bytes).unwrap(), m);
    }

    #[test]
    fn round_trip_and_every_bit_flip_is_caught() {
        let m = Manifest {
            checkpoint_lsn: 77,
            next_table_id: 9,
            levels: vec![vec![8, 3], vec![], vec![1, 2, 5]],
        };
        let bytes = m.encode();
        assert_eq!(Manifest::decode(&bytes).unwrap(), m);
        for bit in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(Manifest::decode(&b).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn a_version_one_manifest_is_read_as_level_zero() {
        let mut v1 = Vec::new();
        v1.extend_from_slice(MAGIC);
        v1.extend_from_slice(&1u32.to_le_bytes());
        v1.extend_from_slice(&77u64.to_le_bytes());
        v1.extend_from_slice(&9u64.to_le_bytes());
        v1.extend_from_slice(&2u32.to_le_bytes());
        v1.extend_from_slice(&8u64.to_le_bytes());
        v1.extend_from_slice(&3u64.to_le_bytes());
        let crc = crc32c::crc32c(&v1);
        v1.extend_from_slice(&crc.to_le_bytes());
        let m = Manifest::decode(&v1).unwrap();
        assert_eq!(m.levels, vec![vec![8, 3]]);
        assert_eq!(m.checkpoint_lsn, 77);
    }

    #[test]
    fn duplicate_and_out_of_range_ids_are_refused() {
        for levels in [vec![vec![3], vec![3]], vec![vec![9]]] {
            let m = Manifest {
                checkpoint_lsn: 1,
                next_table_id: 9,
                levels,
            };
            assert!(Manifest::decode(&m.encode()).is_err(), "{m:?}");
        }
    }
}
