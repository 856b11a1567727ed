//! The manifest: which tables are live and which LSN the checkpoint covers.
//! Replaced atomically: written to `MANIFEST.tmp`, synced, renamed over
//! `MANIFEST`, directory synced.
//!
//! Layout: `"WALKVMAN" | version u32 | checkpoint_lsn u64 | next_table_id u64
//! | count u32 | table ids u64* (newest first) | crc32c u32`.

use wal_io::{FileOptions, Storage};

use crate::KvError;

pub(crate) const NAME: &str = "MANIFEST";
pub(crate) const TEMP_NAME: &str = "MANIFEST.tmp";
const MAGIC: &[u8; 8] = b"WALKVMAN";
const VERSION: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Manifest {
    /// Every batch at or below this LSN is in the tables.
    pub checkpoint_lsn: u64,
    pub next_table_id: u64,
    /// Live tables, newest first.
    pub tables: Vec<u64>,
}

impl Manifest {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(36 + 8 * self.tables.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&self.checkpoint_lsn.to_le_bytes());
        out.extend_from_slice(&self.next_table_id.to_le_bytes());
        let count = u32::try_from(self.tables.len()).expect("far fewer than 2^32 tables");
        out.extend_from_slice(&count.to_le_bytes());
        for id in &self.tables {
            out.extend_from_slice(&id.to_le_bytes());
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
        let u64_at = |at: usize| -> Option<u64> {
            Some(u64::from_le_bytes(body.get(at..at + 8)?.try_into().ok()?))
        };
        if body.get(..8) != Some(MAGIC.as_slice())
            || body.get(8..12) != Some(VERSION.to_le_bytes().as_slice())
        {
            return Err(bad("not a manifest (magic or version)"));
        }
        let checkpoint_lsn = u64_at(12).ok_or_else(|| bad("truncated"))?;
        let next_table_id = u64_at(20).ok_or_else(|| bad("truncated"))?;
        let count = body
            .get(28..32)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
            .ok_or_else(|| bad("truncated"))?;
        if body.len() != 32 + 8 * count as usize {
            return Err(bad("length does not match the table count"));
        }
        let tables: Vec<u64> = (0..count as usize)
            .map(|i| u64_at(32 + 8 * i).ok_or_else(|| bad("truncated")))
            .collect::<Result<_, _>>()?;
        if tables.iter().any(|&id| id >= next_table_id) {
            return Err(bad("a table id at or above next_table_id"));
        }
        Ok(Manifest {
            checkpoint_lsn,
            next_table_id,
            tables,
        })
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
        let _ = storage.remove(TEMP_NAME);
        let file = storage.create(TEMP_NAME, FileOptions::BUFFERED)?;
        file.write_at(0, &[&self.encode()])?;
        file.sync_data()?;
        file.close();
        storage.rename(TEMP_NAME, NAME)?;
        storage.sync_dir()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_bit_flip_is_caught() {
        let m = Manifest {
            checkpoint_lsn: 77,
            next_table_id: 9,
            tables: vec![8, 3],
        };
        let bytes = m.encode();
        assert_eq!(Manifest::decode(&bytes).unwrap(), m);
        for bit in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(Manifest::decode(&b).is_err(), "bit {bit}");
        }
    }
}
