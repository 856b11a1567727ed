//! Helpers shared by the behaviour tests: building segments from batches and
//! forging frames field by field from the documented layout.
#![allow(dead_code)]

use bytes::Bytes;
use wal_format::{
    Compression, FrameEncoder, FrameSummary, ScanSummary, SegmentHeader, SegmentScanner,
    encode_seal,
};

pub const LOG_ID: u64 = 0x1057_c0de_0000_0001;
pub const SEGMENT_ID: u64 = 0x5e67_0000_0000_00a1;

/// A segment built from batches, with what was written.
pub struct Built {
    pub bytes: Vec<u8>,
    /// Every record written, indexed by `lsn - first_lsn`.
    pub records: Vec<Vec<u8>>,
    pub frames: Vec<FrameSummary>,
    pub first_lsn: u64,
}

impl Built {
    pub fn record(&self, lsn: u64) -> Option<&[u8]> {
        let i = usize::try_from(lsn.checked_sub(self.first_lsn)?).ok()?;
        self.records.get(i).map(Vec::as_slice)
    }
}

/// Durable watermark each frame records, as a function of the frame's index
/// and the LSN it starts at.
pub type Durable = fn(usize, u64) -> u64;

/// The writer had everything before the frame durable.
pub fn all_durable(_: usize, first_lsn: u64) -> u64 {
    first_lsn - 1
}

/// The writer never made anything durable.
pub fn none_durable(_: usize, _: u64) -> u64 {
    0
}

pub fn build(
    segment_id: u64,
    first_lsn: u64,
    batches: &[Vec<Vec<u8>>],
    compression: Compression,
    durable: Durable,
    seal: bool,
) -> Built {
    let header = SegmentHeader::new(LOG_ID, segment_id, first_lsn).unwrap();
    let mut bytes = header.encode().to_vec();
    let mut encoder = FrameEncoder::new(compression);
    let mut lsn = first_lsn;
    let mut frames = Vec::new();
    let mut records = Vec::new();
    for (i, batch) in batches.iter().enumerate() {
        let summary = encoder
            .encode(
                &mut bytes,
                segment_id,
                lsn,
                durable(i, lsn),
                batch.iter().map(Vec::as_slice),
            )
            .unwrap();
        assert_eq!(summary.offset % wal_format::FRAME_ALIGN, 0);
        lsn = summary.next_lsn();
        frames.push(summary);
        records.extend(batch.iter().cloned());
    }
    if seal {
        frames.push(encode_seal(&mut bytes, segment_id, lsn, durable(batches.len(), lsn)).unwrap());
    }
    Built {
        bytes,
        records,
        frames,
        first_lsn,
    }
}

/// Scans `bytes` and checks every record it yields is the one written at
/// that LSN. Returns the records seen and the summary.
pub fn scan_checked(bytes: Vec<u8>, written: &Built) -> (u64, ScanSummary) {
    let mut scanner = SegmentScanner::new(Bytes::from(bytes)).unwrap();
    let mut seen = 0;
    let mut expect_lsn = written.first_lsn;
    for frame in scanner.by_ref() {
        let owned: Vec<_> = frame.records().map(|r| (r.lsn, r.data)).collect();
        let borrowed: Vec<_> = frame.record_slices().collect();
        let consumed: Vec<_> = frame.clone().into_iter().map(|r| (r.lsn, r.data)).collect();
        assert_eq!(owned, consumed, "records() and into_iter() agree");
        assert_eq!(owned.len(), borrowed.len());
        for ((lsn, data), (lsn_b, data_b)) in owned.iter().zip(&borrowed) {
            assert_eq!((lsn, &data[..]), (lsn_b, *data_b), "both iterators agree");
        }
        for record in frame.records() {
            assert_eq!(
                record.lsn, expect_lsn,
                "records come in LSN order without gaps"
            );
            assert_eq!(
                Some(&record.data[..]),
                written.record(record.lsn),
                "record {} differs from what was written",
                record.lsn
            );
            expect_lsn += 1;
            seen += 1;
        }
    }
    let summary = scanner.finish();
    assert_eq!(
        summary.valid_end % wal_format::FRAME_ALIGN as u64,
        0,
        "a writer resuming at the valid end must stay aligned"
    );
    (seen, summary)
}

/// Fields of a frame header, to forge frames the encoder would refuse to write.
#[derive(Clone, Copy)]
pub struct Forge {
    pub stored_len: u32,
    pub kind: u8,
    pub codec: u8,
    pub flags: u16,
    pub record_count: u32,
    pub first_lsn: u64,
    pub segment_id: u64,
    pub durable_lsn: u64,
    pub raw_len: u32,
    pub reserved: u32,
}

impl Forge {
    pub fn records(payload_len: u32, record_count: u32, first_lsn: u64) -> Self {
        Forge {
            stored_len: payload_len,
            kind: 1,
            codec: 0,
            flags: 0,
            record_count,
            first_lsn,
            segment_id: SEGMENT_ID,
            durable_lsn: 0,
            raw_len: payload_len,
            reserved: 0,
        }
    }

    /// The frame's bytes laid out as docs/FORMAT.md says, with a valid CRC.
    pub fn bytes(&self, payload: &[u8]) -> Vec<u8> {
        let mut h = Vec::with_capacity(48 + payload.len());
        h.extend_from_slice(&[0; 4]);
        h.extend_from_slice(&self.stored_len.to_le_bytes());
        h.push(self.kind);
        h.push(self.codec);
        h.extend_from_slice(&self.flags.to_le_bytes());
        h.extend_from_slice(&self.record_count.to_le_bytes());
        h.extend_from_slice(&self.first_lsn.to_le_bytes());
        h.extend_from_slice(&self.segment_id.to_le_bytes());
        h.extend_from_slice(&self.durable_lsn.to_le_bytes());
        h.extend_from_slice(&self.raw_len.to_le_bytes());
        h.extend_from_slice(&self.reserved.to_le_bytes());
        assert_eq!(h.len(), 48);
        h.extend_from_slice(payload);
        let crc = crc32c::crc32c(&h[4..]);
        h[..4].copy_from_slice(&crc.to_le_bytes());
        while h.len() % 8 != 0 {
            h.push(0);
        }
        h
    }
}

/// Length-prefixed records, as a frame's raw payload.
pub fn payload_of(records: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        out.extend_from_slice(&u32::try_from(r.len()).unwrap().to_le_bytes());
        out.extend_from_slice(r);
    }
    out
}

/// Deterministic bytes with no zero byte (so zero-filling is always visible).
pub fn text(seed: u64, len: usize) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            b"the quick brown fox jumps over a lazy dog "[(s % 42) as usize]
        })
        .collect()
}
