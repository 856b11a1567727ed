//! The records every contender writes: self-describing, so a replay can prove
//! that what came back is what went in, in order, with nothing missing.
//!
//! Layout: `seq: u64 LE | writer: u32 LE | len: u32 LE | filler`, where the
//! filler is a function of (writer, seq, position). A contender that drops,
//! duplicates, reorders or corrupts records fails [`Tally::record`].

use std::collections::BTreeMap;

/// Bytes of the record header; records are at least this long.
pub const HEADER_BYTES: usize = 16;

/// Fills `buf` as record `seq` (from 1) of writer `writer`.
pub fn fill(buf: &mut [u8], writer: u32, seq: u64) {
    assert!(buf.len() >= HEADER_BYTES, "records carry a 16-byte header");
    let len = u32::try_from(buf.len()).expect("records are far below 4 GiB");
    buf[..8].copy_from_slice(&seq.to_le_bytes());
    buf[8..12].copy_from_slice(&writer.to_le_bytes());
    buf[12..16].copy_from_slice(&len.to_le_bytes());
    let mut state = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(writer);
    for chunk in buf[HEADER_BYTES..].chunks_mut(8) {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        let bytes = state.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}

/// A fresh record of `len` bytes.
pub fn make(len: usize, writer: u32, seq: u64) -> Vec<u8> {
    let mut buf = vec![0; len];
    fill(&mut buf, writer, seq);
    buf
}

/// The sequence number a record carries (its first 8 bytes).
pub fn seq_of(rec: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(rec.get(..8)?.try_into().ok()?))
}

/// Counts replayed records and checks each against the pattern.
#[derive(Debug)]
pub struct Tally {
    /// Per writer: the last sequence number seen.
    last: BTreeMap<u32, u64>,
    records: u64,
    bytes: u64,
    len: usize,
    /// The expected record, rebuilt for each check: a replay is timed, so
    /// the check allocates nothing per record.
    expected: Vec<u8>,
}

impl Tally {
    /// A tally expecting records of `len` bytes.
    pub fn new(len: usize) -> Tally {
        Tally {
            last: BTreeMap::new(),
            records: 0,
            bytes: 0,
            len,
            expected: vec![0; len],
        }
    }

    /// Checks one record: right length, right content, and the next sequence
    /// number of its writer (each writer's records come back in order).
    pub fn record(&mut self, rec: &[u8]) -> Result<(), String> {
        if rec.len() != self.len {
            return Err(format!(
                "record of {} bytes, expected {}",
                rec.len(),
                self.len
            ));
        }
        let header = rec
            .get(..HEADER_BYTES)
            .ok_or_else(|| format!("record of {} bytes has no header", rec.len()))?;
        let seq = u64::from_le_bytes(header[..8].try_into().map_err(|_| "header")?);
        let writer = u32::from_le_bytes(header[8..12].try_into().map_err(|_| "header")?);
        fill(&mut self.expected, writer, seq);
        if self.expected != rec {
            return Err(format!("writer {writer} record {seq}: content differs"));
        }
        let last = self.last.entry(writer).or_insert(0);
        if seq != *last + 1 {
            return Err(format!(
                "writer {writer}: record {seq} follows record {last} (lost, repeated or reordered)"
            ));
        }
        *last = seq;
        self.records += 1;
        self.bytes += rec.len() as u64;
        Ok(())
    }

    /// Records checked so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Bytes checked so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_accepts_in_order_and_rejects_damage() {
        let mut tally = Tally::new(128);
        for seq in 1..=3 {
            tally.record(&make(128, 7, seq)).unwrap();
        }
        assert_eq!(tally.records(), 3);
        assert!(tally.record(&make(128, 7, 5)).is_err(), "a gap");
        assert!(tally.record(&make(128, 7, 3)).is_err(), "a repeat");
        let mut bad = make(128, 7, 4);
        bad[100] ^= 1;
        assert!(tally.record(&bad).is_err(), "a flipped bit");
        assert!(tally.record(&make(64, 7, 4)).is_err(), "a wrong length");
        tally.record(&make(128, 8, 1)).unwrap();
        assert_eq!(tally.records(), 4, "writers are counted apart");
        assert!(
            tally.record(&make(128, 9, 2)).is_err(),
            "a writer starts at 1"
        );
    }
}
