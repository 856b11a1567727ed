//! Encode and decode throughput of frames, against CRC32C over the same bytes.
//!
//! `crc32c` is the ceiling: decoding a plain frame has to checksum every byte,
//! so the ratio decode/crc32c says how much the rest of decoding costs.
// Test sizes and counts are small: casts between integer widths cannot truncate.
#![allow(clippy::cast_possible_truncation)]
#![allow(missing_docs)]

use std::hint::black_box;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use wal_format::{
    Codec, Compression, FrameEncoder, FrameExpect, SegmentHeader, SegmentScanner, decode_frame,
};

const SEGMENT_ID: u64 = 0xfeed;
/// Bytes of records per frame: a typical group-commit batch.
const FRAME_BYTES: usize = 64 << 10;
const SEGMENT_BYTES: usize = 8 << 20;

/// Deterministic records that look like application log lines (words from a
/// small vocabulary and numbers), so the codecs meet realistic redundancy:
/// LZ4 and Snappy shrink them to a third or so.
fn records(record_bytes: usize, count: usize) -> Vec<Vec<u8>> {
    const WORDS: [&str; 16] = [
        "user",
        "order",
        "created",
        "updated",
        "payment",
        "id=",
        "status=ok",
        "amount=",
        "region=eu",
        "shard=",
        "retry",
        "latency_ms=",
        "commit",
        "txn",
        "key=",
        "value=",
    ];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..count)
        .map(|_| {
            let mut r = Vec::with_capacity(record_bytes + 16);
            while r.len() < record_bytes {
                let n = next();
                r.extend_from_slice(WORDS[(n % 16) as usize].as_bytes());
                r.extend_from_slice(format!("{} ", (n >> 8) % 10_000).as_bytes());
            }
            r.truncate(record_bytes);
            r
        })
        .collect()
}

fn codecs() -> [(Codec, &'static str); 3] {
    [
        (Codec::None, "none"),
        (Codec::Lz4, "lz4"),
        (Codec::Snappy, "snappy"),
    ]
}

fn bench_frames(c: &mut Criterion) {
    let raw = records(FRAME_BYTES, 1).remove(0);
    let mut crc = c.benchmark_group("crc32c");
    crc.throughput(Throughput::Bytes(raw.len() as u64));
    crc.bench_function("64KiB", |b| b.iter(|| crc32c::crc32c(black_box(&raw))));
    crc.finish();

    for record_bytes in [128usize, 4096] {
        let recs = records(record_bytes, FRAME_BYTES / record_bytes);
        let raw_bytes: usize = recs.iter().map(|r| r.len() + 4).sum();
        let label = if record_bytes == 128 { "128B" } else { "4KiB" };
        for (codec, name) in codecs() {
            let mut encoder = FrameEncoder::new(Compression {
                codec,
                min_bytes: 0,
            });
            let mut out = Vec::with_capacity(2 * FRAME_BYTES);

            let mut group = c.benchmark_group(format!("encode/{name}"));
            group.throughput(Throughput::Bytes(raw_bytes as u64));
            group.bench_function(BenchmarkId::from_parameter(label), |b| {
                b.iter(|| {
                    out.clear();
                    encoder
                        .encode(&mut out, SEGMENT_ID, 1, 0, recs.iter().map(Vec::as_slice))
                        .unwrap()
                })
            });
            group.finish();

            out.clear();
            let summary = encoder
                .encode(&mut out, SEGMENT_ID, 1, 0, recs.iter().map(Vec::as_slice))
                .unwrap();
            assert_eq!(summary.codec, codec, "the bench data must be compressible");
            let frame = Bytes::from(out.clone());
            let expect = FrameExpect {
                segment_id: SEGMENT_ID,
                first_lsn: Some(1),
            };
            let mut group = c.benchmark_group(format!("decode/{name}"));
            group.throughput(Throughput::Bytes(raw_bytes as u64));
            group.bench_function(BenchmarkId::from_parameter(label), |b| {
                b.iter(|| {
                    let frame = decode_frame(black_box(&frame), 0, expect).unwrap();
                    frame.records().map(|r| r.data.len()).sum::<usize>()
                })
            });
            group.bench_function(BenchmarkId::new("borrowed", label), |b| {
                b.iter(|| {
                    let frame = decode_frame(black_box(&frame), 0, expect).unwrap();
                    frame.record_slices().map(|(_, r)| r.len()).sum::<usize>()
                })
            });
            group.finish();
        }
    }
}

fn bench_scan(c: &mut Criterion) {
    let recs = records(128, FRAME_BYTES / 128);
    let header = SegmentHeader::new(1, SEGMENT_ID, 1).unwrap();
    let mut seg = header.encode().to_vec();
    let mut encoder = FrameEncoder::new(Compression::NONE);
    let mut lsn = 1;
    while seg.len() + 2 * FRAME_BYTES < SEGMENT_BYTES {
        let s = encoder
            .encode(
                &mut seg,
                SEGMENT_ID,
                lsn,
                lsn - 1,
                recs.iter().map(Vec::as_slice),
            )
            .unwrap();
        lsn = s.next_lsn();
    }
    let used = seg.len() as u64;
    seg.resize(SEGMENT_BYTES, 0);
    let seg = Bytes::from(seg);
    let mut group = c.benchmark_group("scan/none");
    group.throughput(Throughput::Bytes(used));
    group.bench_function("128B", |b| {
        b.iter(|| {
            let mut scan = SegmentScanner::new(seg.clone()).unwrap();
            let n: usize = scan
                .by_ref()
                .map(|f| f.record_slices().map(|(_, r)| r.len()).sum::<usize>())
                .sum();
            (n, scan.finish().end)
        })
    });
    group.finish();
}

criterion_group!(benches, bench_frames, bench_scan);
criterion_main!(benches);
