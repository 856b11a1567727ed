//! The clean-close record: where the log's last segment ended when the
//! writer closed it with everything synced, so that the next open can verify
//! the segment up to there and skip reading the rest.

use crate::error::{DecodeError, Structure};
use crate::le::{array, u16_at, u32_at, u64_at, wide};
use crate::segment::SegmentHeader;

/// The eight bytes a clean-close record starts with.
pub const CLEAN_CLOSE_MAGIC: [u8; 8] = *b"WALCLEAN";

/// The clean-close record's own version (it is a separate file, so it is
/// versioned apart from segments).
const CLEAN_CLOSE_VERSION: u16 = 1;

const OFF_MAGIC: usize = 0;
const OFF_VERSION: usize = 8;
const OFF_LEN: usize = 10;
const OFF_RESERVED_A: usize = 12;
const OFF_LOG_ID: usize = 16;
const OFF_SEGMENT_FIRST_LSN: usize = 24;
const OFF_SEGMENT_ID: usize = 32;
const OFF_VALID_END: usize = 40;
const OFF_NEXT_LSN: usize = 48;
const OFF_RESERVED_B: usize = 56;
const OFF_CRC: usize = 60;
const LEN_STORED: u16 = 64;
const _: () = assert!(CleanClose::LEN == LEN_STORED as usize);

/// What a writer that closed cleanly knew about its last segment: every
/// record up to `next_lsn - 1` was durable, its frames end at `valid_end`,
/// and nothing was written past that.
///
/// It is a hint that saves reading the rest of the segment at the next open,
/// never a source of truth for what the segment holds: a reader skips bytes
/// on its word only if the segment it names (identity and first LSN) scans
/// cleanly to exactly `valid_end` and `next_lsn`. It is also evidence: every
/// LSN below `next_lsn` was durable, so a log that recovers fewer has lost
/// acknowledged records. The writer must remove it durably before it writes
/// again.
///
/// ```
/// use wal_format::CleanClose;
///
/// let mark = CleanClose::new(7, 1, 42, 4096, 100)?;
/// assert_eq!(CleanClose::decode(&mark.encode())?, mark);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CleanClose {
    /// The log's identity.
    pub log_id: u64,
    /// The first LSN of the last segment (its name).
    pub segment_first_lsn: u64,
    /// The identity of the last segment.
    pub segment_id: u64,
    /// Offset just past the last segment's last frame.
    pub valid_end: u64,
    /// The LSN the log would assign next.
    pub next_lsn: u64,
}

impl CleanClose {
    /// Encoded length in bytes.
    pub const LEN: usize = 64;

    /// A record, checked as [`CleanClose::decode`] checks one.
    ///
    /// # Errors
    /// The [`DecodeError`] that decoding the same fields would give.
    pub fn new(
        log_id: u64,
        segment_first_lsn: u64,
        segment_id: u64,
        valid_end: u64,
        next_lsn: u64,
    ) -> Result<Self, DecodeError> {
        let mark = CleanClose {
            log_id,
            segment_first_lsn,
            segment_id,
            valid_end,
            next_lsn,
        };
        mark.check()?;
        Ok(mark)
    }

    fn check(&self) -> Result<(), DecodeError> {
        let bad = |field: &'static str, value: u64, reason: &'static str| DecodeError::BadLength {
            offset: 0,
            what: Structure::CleanClose,
            field,
            value,
            reason,
        };
        if self.log_id == 0 {
            return Err(bad("log_id", 0, "identities are non-zero"));
        }
        if self.segment_id == 0 {
            return Err(bad("segment_id", 0, "identities are non-zero"));
        }
        if self.segment_first_lsn == 0 {
            return Err(bad("segment_first_lsn", 0, "LSNs start at 1"));
        }
        if self.valid_end < wide(SegmentHeader::LEN) {
            return Err(bad(
                "valid_end",
                self.valid_end,
                "frames start after the segment header",
            ));
        }
        if self.next_lsn < self.segment_first_lsn {
            return Err(bad(
                "next_lsn",
                self.next_lsn,
                "below the segment's first LSN",
            ));
        }
        Ok(())
    }

    /// The record's bytes.
    pub fn encode(&self) -> [u8; CleanClose::LEN] {
        let mut out = [0u8; CleanClose::LEN];
        let mut put = |at: usize, bytes: &[u8]| {
            out[at..at + bytes.len()].copy_from_slice(bytes);
        };
        put(OFF_MAGIC, &CLEAN_CLOSE_MAGIC);
        put(OFF_VERSION, &CLEAN_CLOSE_VERSION.to_le_bytes());
        put(OFF_LEN, &LEN_STORED.to_le_bytes());
        put(OFF_LOG_ID, &self.log_id.to_le_bytes());
        put(OFF_SEGMENT_FIRST_LSN, &self.segment_first_lsn.to_le_bytes());
        put(OFF_SEGMENT_ID, &self.segment_id.to_le_bytes());
        put(OFF_VALID_END, &self.valid_end.to_le_bytes());
        put(OFF_NEXT_LSN, &self.next_lsn.to_le_bytes());
        let crc = crc32c::crc32c(&out[..OFF_CRC]);
        out[OFF_CRC..].copy_from_slice(&crc.to_le_bytes());
        debug_assert_eq!(CleanClose::decode(&out), Ok(*self));
        out
    }

    /// Decodes and validates a record; `buf` must be exactly the record.
    ///
    /// # Errors
    /// A [`DecodeError`] naming the first rule the bytes break.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        #![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
        let incomplete = || DecodeError::Incomplete {
            offset: 0,
            what: Structure::CleanClose,
            needed: wide(CleanClose::LEN),
            available: wide(buf.len()),
        };
        if buf.len() != CleanClose::LEN {
            return Err(incomplete());
        }
        let magic: [u8; 8] = array(buf, OFF_MAGIC).ok_or_else(incomplete)?;
        if magic != CLEAN_CLOSE_MAGIC {
            return Err(DecodeError::BadMagic {
                offset: 0,
                found: magic,
            });
        }
        let version = u16_at(buf, OFF_VERSION).ok_or_else(incomplete)?;
        if version != CLEAN_CLOSE_VERSION {
            return Err(DecodeError::UnknownVersion { offset: 0, version });
        }
        let stored = u32_at(buf, OFF_CRC).ok_or_else(incomplete)?;
        let computed = crc32c::crc32c(buf.get(..OFF_CRC).ok_or_else(incomplete)?);
        if stored != computed {
            return Err(DecodeError::ChecksumMismatch {
                offset: 0,
                what: Structure::CleanClose,
                stored,
                computed,
            });
        }
        let len = u16_at(buf, OFF_LEN).ok_or_else(incomplete)?;
        if len != LEN_STORED {
            return Err(DecodeError::BadLength {
                offset: 0,
                what: Structure::CleanClose,
                field: "len",
                value: u64::from(len),
                reason: "clean-close records are 64 bytes",
            });
        }
        for (at, field) in [(OFF_RESERVED_A, "reserved"), (OFF_RESERVED_B, "reserved")] {
            let value = u32_at(buf, at).ok_or_else(incomplete)?;
            if value != 0 {
                return Err(DecodeError::ReservedNonZero {
                    offset: wide(at),
                    field,
                    value: u64::from(value),
                });
            }
        }
        let field = |at: usize| u64_at(buf, at).ok_or_else(incomplete);
        let mark = CleanClose {
            log_id: field(OFF_LOG_ID)?,
            segment_first_lsn: field(OFF_SEGMENT_FIRST_LSN)?,
            segment_id: field(OFF_SEGMENT_ID)?,
            valid_end: field(OFF_VALID_END)?,
            next_lsn: field(OFF_NEXT_LSN)?,
        };
        mark.check()?;
        Ok(mark)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_damaged_byte_is_refused_and_bad_fields_are_named() {
        let mark = CleanClose::new(7, 10, 42, 4096, 100).unwrap();
        let bytes = mark.encode();
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut flipped = bytes;
                flipped[i] ^= 1 << bit;
                assert!(CleanClose::decode(&flipped).is_err(), "byte {i} bit {bit}");
            }
        }
        assert!(CleanClose::decode(&bytes[..63]).is_err());
        let mut long = bytes.to_vec();
        long.push(0);
        assert!(CleanClose::decode(&long).is_err());
        for (fields, name) in [
            ((0, 10, 42, 4096, 100), "log_id"),
            ((7, 0, 42, 4096, 100), "segment_first_lsn"),
            ((7, 10, 0, 4096, 100), "segment_id"),
            ((7, 10, 42, 63, 100), "valid_end"),
            ((7, 10, 42, 4096, 9), "next_lsn"),
        ] {
            let (a, b, c, d, e) = fields;
            assert!(
                matches!(CleanClose::new(a, b, c, d, e), Err(DecodeError::BadLength { field, .. }) if field == name),
                "{name}"
            );
        }
    }
}
