//! The segment header: the first [`SegmentHeader::LEN`] bytes of every segment file.

use crate::error::{DecodeError, EncodeError, Structure};
use crate::le::{array, u16_at, u32_at, u64_at, wide};
use crate::{FORMAT_VERSION, SEGMENT_MAGIC};

/// The identity and starting point of one segment file.
///
/// Both identities are non-zero so that zero-filled space can never pass for
/// them. `segment_id` must change whenever a file is created or reused
/// (recycled), so that frames left over from the file's previous life fail the
/// identity check instead of passing as records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SegmentHeader {
    log_id: u64,
    segment_id: u64,
    first_lsn: u64,
    recycled: bool,
    padded: bool,
    version: u16,
}

/// Header flag (version 2 on): the file had an earlier life, so the bytes
/// after its valid prefix are stale rather than zero, and every write into
/// it ends with a zeroed frame header (see [`crate::SegmentScanner`]).
pub const FLAG_RECYCLED: u32 = 1;

/// Header flag (version 3 on): every write into the file covers whole
/// [`PADDED_BLOCK_BYTES`] blocks, as O_DIRECT needs, and a zeroed frame
/// header is padding up to the first block boundary at or after its end
/// (see [`crate::SegmentScanner`] and docs/FORMAT.md, "Padded segments").
pub const FLAG_PADDED: u32 = 2;

/// The block size of a padded segment ([`FLAG_PADDED`]): 4096 bytes, a
/// multiple of every logical block size O_DIRECT asks alignment to.
pub const PADDED_BLOCK_BYTES: usize = 4096;

/// The oldest format version this crate reads.
pub const FORMAT_VERSION_READ_MIN: u16 = 1;

const OFF_MAGIC: usize = 0;
const OFF_VERSION: usize = 8;
const OFF_HEADER_LEN: usize = 10;
const OFF_FLAGS: usize = 12;
const OFF_LOG_ID: usize = 16;
const OFF_SEGMENT_ID: usize = 24;
const OFF_FIRST_LSN: usize = 32;
const OFF_RESERVED: usize = 40;
const OFF_CRC: usize = 60;
/// `SegmentHeader::LEN` as stored in the header (every version).
const HEADER_LEN_STORED: u16 = 64;
const _: () = assert!(SegmentHeader::LEN == HEADER_LEN_STORED as usize);

impl SegmentHeader {
    /// Encoded length in bytes; the first frame starts right after it.
    pub const LEN: usize = 64;

    /// A header for a segment of log `log_id` whose first record has `first_lsn`.
    ///
    /// # Errors
    /// [`EncodeError::ZeroIdentity`] if either identity is zero,
    /// [`EncodeError::InvalidLsn`] if `first_lsn` is zero.
    pub fn new(log_id: u64, segment_id: u64, first_lsn: u64) -> Result<Self, EncodeError> {
        if log_id == 0 || segment_id == 0 {
            return Err(EncodeError::ZeroIdentity);
        }
        if first_lsn == 0 {
            return Err(EncodeError::InvalidLsn { lsn: first_lsn });
        }
        Ok(SegmentHeader {
            log_id,
            segment_id,
            first_lsn,
            recycled: false,
            padded: false,
            version: FORMAT_VERSION,
        })
    }

    /// The same header, marking (or not) a padded file: one written in
    /// whole [`PADDED_BLOCK_BYTES`] blocks.
    #[must_use]
    pub fn with_padded(mut self, padded: bool) -> Self {
        self.padded = padded;
        self
    }

    /// Whether the file is written in whole blocks ([`FLAG_PADDED`]).
    pub fn padded(&self) -> bool {
        self.padded
    }

    /// The same header, marking (or not) a recycled file: one whose bytes
    /// past the valid prefix may be frames of an earlier life.
    #[must_use]
    pub fn with_recycled(mut self, recycled: bool) -> Self {
        self.recycled = recycled;
        self
    }

    /// Whether the file is recycled ([`FLAG_RECYCLED`]).
    pub fn recycled(&self) -> bool {
        self.recycled
    }

    /// The format version the header was decoded from ([`FORMAT_VERSION`]
    /// for a header made by [`SegmentHeader::new`], which is what
    /// [`SegmentHeader::encode`] always writes).
    pub fn version(&self) -> u16 {
        self.version
    }

    /// The identity of the log this segment belongs to.
    pub fn log_id(&self) -> u64 {
        self.log_id
    }

    /// The identity of this incarnation of the file; every frame repeats it.
    pub fn segment_id(&self) -> u64 {
        self.segment_id
    }

    /// The LSN of the first record in this segment.
    pub fn first_lsn(&self) -> u64 {
        self.first_lsn
    }

    /// The header's bytes.
    pub fn encode(&self) -> [u8; SegmentHeader::LEN] {
        let mut out = [0u8; SegmentHeader::LEN];
        let mut put = |at: usize, bytes: &[u8]| {
            out[at..at + bytes.len()].copy_from_slice(bytes);
        };
        put(OFF_MAGIC, &SEGMENT_MAGIC);
        put(OFF_VERSION, &FORMAT_VERSION.to_le_bytes());
        put(OFF_HEADER_LEN, &HEADER_LEN_STORED.to_le_bytes());
        let flags = if self.recycled { FLAG_RECYCLED } else { 0 }
            | if self.padded { FLAG_PADDED } else { 0 };
        put(OFF_FLAGS, &flags.to_le_bytes());
        put(OFF_LOG_ID, &self.log_id.to_le_bytes());
        put(OFF_SEGMENT_ID, &self.segment_id.to_le_bytes());
        put(OFF_FIRST_LSN, &self.first_lsn.to_le_bytes());
        let crc = crc32c::crc32c(&out[..OFF_CRC]);
        out[OFF_CRC..].copy_from_slice(&crc.to_le_bytes());
        debug_assert_eq!(
            SegmentHeader::decode(&out),
            Ok(SegmentHeader {
                version: FORMAT_VERSION,
                ..*self
            })
        );
        out
    }

    /// The version of a header a newer format wrote: this format's magic,
    /// a version above [`FORMAT_VERSION`], and a matching checksum (every
    /// version keeps magic, version and the header checksum where version 1
    /// put them), so the version is not a flipped bit. `None` for anything
    /// else: a header this build reads, or a damaged one.
    ///
    /// ```
    /// use wal_format::SegmentHeader;
    ///
    /// let mut header = SegmentHeader::new(7, 42, 1)?.encode();
    /// assert_eq!(SegmentHeader::newer_version(&header), None);
    /// header[8..10].copy_from_slice(&9u16.to_le_bytes());
    /// // A version changed without its checksum: damage, not a newer format.
    /// assert_eq!(SegmentHeader::newer_version(&header), None);
    /// let crc = crc32c::crc32c(&header[..60]);
    /// header[60..64].copy_from_slice(&crc.to_le_bytes());
    /// assert_eq!(SegmentHeader::newer_version(&header), Some(9));
    /// # Ok::<(), wal_format::EncodeError>(())
    /// ```
    pub fn newer_version(buf: &[u8]) -> Option<u16> {
        let head = buf.get(..SegmentHeader::LEN)?;
        let magic: [u8; 8] = array(head, OFF_MAGIC)?;
        let version = u16_at(head, OFF_VERSION)?;
        let stored = u32_at(head, OFF_CRC)?;
        let sound = magic == SEGMENT_MAGIC && stored == crc32c::crc32c(head.get(..OFF_CRC)?);
        (sound && version > FORMAT_VERSION).then_some(version)
    }

    /// Decodes and validates a header from the start of `buf`.
    ///
    /// # Errors
    /// A [`DecodeError`] at offset 0 naming the first rule the bytes break.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        #![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
        let incomplete = || DecodeError::Incomplete {
            offset: 0,
            what: Structure::SegmentHeader,
            needed: wide(SegmentHeader::LEN),
            available: wide(buf.len()),
        };
        let head = buf.get(..SegmentHeader::LEN).ok_or_else(incomplete)?;
        let magic: [u8; 8] = array(head, OFF_MAGIC).ok_or_else(incomplete)?;
        if magic != SEGMENT_MAGIC {
            return Err(DecodeError::BadMagic {
                offset: 0,
                found: magic,
            });
        }
        let version = u16_at(head, OFF_VERSION).ok_or_else(incomplete)?;
        if !(FORMAT_VERSION_READ_MIN..=FORMAT_VERSION).contains(&version) {
            return Err(DecodeError::UnknownVersion { offset: 0, version });
        }
        let stored = u32_at(head, OFF_CRC).ok_or_else(incomplete)?;
        let computed = crc32c::crc32c(head.get(..OFF_CRC).ok_or_else(incomplete)?);
        if stored != computed {
            return Err(DecodeError::ChecksumMismatch {
                offset: 0,
                what: Structure::SegmentHeader,
                stored,
                computed,
            });
        }
        let header_len = u16_at(head, OFF_HEADER_LEN).ok_or_else(incomplete)?;
        if usize::from(header_len) != SegmentHeader::LEN {
            return Err(DecodeError::BadLength {
                offset: 0,
                what: Structure::SegmentHeader,
                field: "header_len",
                value: u64::from(header_len),
                reason: "segment headers are 64 bytes",
            });
        }
        let flags = u32_at(head, OFF_FLAGS).ok_or_else(incomplete)?;
        // Version 1 defines no flag; version 2 the recycled one; version 3
        // the padded one.
        let known = match version {
            1 => 0,
            2 => FLAG_RECYCLED,
            _ => FLAG_RECYCLED | FLAG_PADDED,
        };
        if flags & !known != 0 {
            return Err(DecodeError::ReservedNonZero {
                offset: 0,
                field: "flags",
                value: u64::from(flags),
            });
        }
        let reserved = head.get(OFF_RESERVED..OFF_CRC).ok_or_else(incomplete)?;
        if let Some(&byte) = reserved.iter().find(|&&b| b != 0) {
            return Err(DecodeError::ReservedNonZero {
                offset: 0,
                field: "reserved",
                value: u64::from(byte),
            });
        }
        let log_id = u64_at(head, OFF_LOG_ID).ok_or_else(incomplete)?;
        let segment_id = u64_at(head, OFF_SEGMENT_ID).ok_or_else(incomplete)?;
        let first_lsn = u64_at(head, OFF_FIRST_LSN).ok_or_else(incomplete)?;
        let bad = |field: &'static str, value: u64, reason: &'static str| DecodeError::BadLength {
            offset: 0,
            what: Structure::SegmentHeader,
            field,
            value,
            reason,
        };
        if log_id == 0 {
            return Err(bad("log_id", 0, "identities are non-zero"));
        }
        if segment_id == 0 {
            return Err(bad("segment_id", 0, "identities are non-zero"));
        }
        if first_lsn == 0 {
            return Err(bad("first_lsn", 0, "LSNs start at 1"));
        }
        Ok(SegmentHeader {
            log_id,
            segment_id,
            first_lsn,
            recycled: flags & FLAG_RECYCLED != 0,
            padded: flags & FLAG_PADDED != 0,
            version,
        })
    }
}
