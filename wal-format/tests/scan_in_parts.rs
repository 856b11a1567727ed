//! A segment scanned in parts, each resumed where the last one stopped,
//! yields the same frames at the same offsets and the same verdict on its
//! end as one scan of the whole segment: damage, tears, padding and seals
//! included.

mod common;

use bytes::Bytes;
use proptest::prelude::*;
use wal_format::{
    Codec, Compression, FRAME_ALIGN, FRAME_HEADER_LEN, FrameEncoder, PADDED_BLOCK_BYTES,
    ScanSummary, SegmentEnd, SegmentHeader, SegmentScanner, TERMINATOR_LEN,
};

use common::{LOG_ID, SEGMENT_ID, all_durable, build, none_durable, text};

/// (offset, first LSN, records) of each frame, and the summary.
type Scan = (Vec<(u64, u64, u32)>, ScanSummary);

fn whole(bytes: &Bytes) -> Option<Scan> {
    let mut scanner = SegmentScanner::new(bytes.clone()).ok()?;
    let frames = scanner
        .by_ref()
        .map(|f| (f.offset(), f.first_lsn(), f.record_count()))
        .collect();
    Some((frames, scanner.finish()))
}

/// The way a reader of a segment in parts of `part` bytes uses the scanner:
/// each part after the first starts at the 4 KiB block the last one stopped
/// in; one that makes no progress is followed by the whole rest. With
/// `pausing`, every part but the last is scanned with `more_follows`, and a
/// part that ended inside a frame is followed by one holding all of it.
fn in_parts(bytes: &Bytes, part: usize, pausing: bool) -> Option<Scan> {
    let len = bytes.len();
    let mut end = part.min(len);
    let mut scanner = SegmentScanner::new(bytes.slice(..end)).ok()?;
    if pausing && end < len {
        scanner = scanner.more_follows();
    }
    let mut frames = Vec::new();
    let mut last_stop = None;
    loop {
        frames.extend(
            scanner
                .by_ref()
                .map(|f| (f.offset(), f.first_lsn(), f.record_count())),
        );
        let done = if pausing {
            scanner.end().is_some()
        } else {
            end == len || matches!(scanner.end(), Some(SegmentEnd::Sealed { .. }))
        };
        if done {
            return Some((frames, scanner.finish()));
        }
        let point = scanner.point();
        let stop = point.offset();
        let wanted = scanner
            .wanted_end()
            .map_or(0, |w| usize::try_from(w).unwrap());
        let base = usize::try_from(stop).unwrap() / 4096 * 4096;
        end = if last_stop == Some(stop) {
            len
        } else {
            (base + part).max(wanted).min(len)
        };
        last_stop = Some(stop);
        scanner = SegmentScanner::resume(bytes.slice(base..end), base as u64, &point).unwrap();
        if pausing && end < len {
            scanner = scanner.more_follows();
        }
    }
}

fn check(bytes: &[u8], part: usize) {
    let bytes = Bytes::copy_from_slice(bytes);
    let whole = whole(&bytes);
    for pausing in [false, true] {
        let parts = in_parts(&bytes, part, pausing);
        assert_eq!(whole, parts, "part of {part} bytes, pausing {pausing}");
    }
}

#[test]
fn the_fixtures_scan_the_same_in_parts() {
    for name in [
        "records_none.seg",
        "records_lz4.seg",
        "records_snappy.seg",
        "padded.seg",
        "recycled.seg",
        "corrupt_middle.seg",
    ] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        let bytes = std::fs::read(&path).unwrap();
        for part in [4096, 4096 + 1000, 8192, 3 * 4096 + 7] {
            check(&bytes, part);
        }
    }
}

#[test]
fn a_resume_point_outside_the_part_is_refused() {
    let built = build(
        SEGMENT_ID,
        1,
        &[vec![text(1, 100)]],
        Compression::NONE,
        all_durable,
        false,
    );
    let bytes = Bytes::from(built.bytes);
    let mut scanner = SegmentScanner::new(bytes.clone()).unwrap();
    scanner.by_ref().for_each(drop);
    let point = scanner.point();
    assert!(SegmentScanner::resume(bytes.slice(..8), 4096, &point).is_err());
    assert!(SegmentScanner::resume(bytes.slice(..8), 0, &point).is_err());
    assert!(SegmentScanner::resume(bytes.clone(), 0, &point).is_ok());
}

/// A scan told that more follows stops where a frame runs past its bytes,
/// or where they are zero, without a verdict, and says where that frame
/// ends; without being told, it judges the end there.
#[test]
fn a_scan_with_more_to_follow_pauses_without_a_verdict() {
    let built = build(
        SEGMENT_ID,
        1,
        &[vec![text(1, 100)], vec![text(2, 3000)]],
        Compression::NONE,
        all_durable,
        false,
    );
    let mut bytes = built.bytes;
    let second = built.frames[1].offset;
    let second_len = second + built.frames[1].encoded_len;
    let second_end = second_len as u64;
    bytes.resize(bytes.len() + 8192, 0);
    let bytes = Bytes::from(bytes);

    // The part ends inside the second frame.
    let cut = bytes.slice(..second + 1000);
    let mut paused = SegmentScanner::new(cut.clone()).unwrap().more_follows();
    assert_eq!(paused.by_ref().count(), 1);
    assert_eq!(paused.end(), None);
    // The frame's end before the padding that aligns the next one.
    let wanted = paused.wanted_end().unwrap();
    assert!(wanted > second_end - FRAME_ALIGN as u64 && wanted <= second_end);
    assert_eq!(paused.point().offset(), second as u64);
    let mut judged = SegmentScanner::new(cut).unwrap();
    assert_eq!(judged.by_ref().count(), 1);
    assert!(matches!(judged.end(), Some(SegmentEnd::TornTail { .. })));

    // The part ends in the zeros after the last frame, or exactly at a
    // frame's end: no verdict either, and no frame to ask for.
    for end in [second_len + 100, second_len] {
        let mut paused = SegmentScanner::new(bytes.slice(..end))
            .unwrap()
            .more_follows();
        assert_eq!(paused.by_ref().count(), 2);
        assert_eq!(paused.end(), None);
        assert_eq!(paused.wanted_end(), None);
    }
}

/// A padded segment as O_DIRECT writes lay it out: each frame at a 4 KiB
/// boundary, after the zeroed terminator header and padding of the last.
fn padded() -> Vec<u8> {
    let header = SegmentHeader::new(LOG_ID, SEGMENT_ID, 1)
        .unwrap()
        .with_padded(true);
    let mut bytes = header.encode().to_vec();
    bytes.resize(PADDED_BLOCK_BYTES, 0);
    let mut encoder = FrameEncoder::new(Compression::NONE);
    for (i, len) in [3000, 9000, 200, 5000].into_iter().enumerate() {
        let lsn = i as u64 + 1;
        encoder
            .encode(&mut bytes, SEGMENT_ID, lsn, lsn - 1, [&text(lsn, len)[..]])
            .unwrap();
        bytes.resize(
            (bytes.len() + TERMINATOR_LEN).next_multiple_of(PADDED_BLOCK_BYTES),
            0,
        );
    }
    bytes
}

/// Over every frame of a plain and a padded segment: a part that
/// ends inside a frame pauses before it and asks for bytes up to its end,
/// also where padding (a zeroed terminator header) comes first.
#[test]
fn a_pause_asks_for_the_end_of_the_frame_it_stopped_in() {
    let built = build(
        SEGMENT_ID,
        1,
        &[
            vec![text(1, 3000)],
            vec![text(2, 5000), text(3, 10)],
            vec![text(4, 4000)],
        ],
        Compression::NONE,
        all_durable,
        false,
    );
    for (name, bytes) in [("built", built.bytes), ("padded", padded())] {
        let bytes = Bytes::from(bytes);
        let mut whole = SegmentScanner::new(bytes.clone()).unwrap();
        let frames: Vec<(u64, u64)> = whole
            .by_ref()
            .map(|f| (f.offset(), f.offset() + f.encoded_len() as u64))
            .collect();
        assert!(frames.len() > 1, "{name}: {frames:?}");
        for &(start, end) in &frames {
            if end - start <= 2 * FRAME_HEADER_LEN as u64 {
                continue;
            }
            let cut = usize::try_from(start).unwrap() + FRAME_HEADER_LEN + 1;
            let mut paused = SegmentScanner::new(bytes.slice(..cut))
                .unwrap()
                .more_follows();
            paused.by_ref().for_each(drop);
            assert_eq!(paused.end(), None, "{name}: frame at {start}");
            let wanted = paused.wanted_end();
            assert!(
                wanted.is_some_and(|w| w > end - FRAME_ALIGN as u64 && w <= end),
                "{name}: frame at {start}..{end}, asked for {wanted:?}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn damaged_segments_scan_the_same_in_parts(
        sizes in proptest::collection::vec((1usize..6, 0usize..3000), 1..40),
        lz4 in any::<bool>(),
        seal in any::<bool>(),
        acked in any::<bool>(),
        zeros in 0usize..20_000,
        damage in 0u8..4,
        at in any::<prop::sample::Index>(),
        span in 1usize..5000,
        part in 4096usize..20_000,
    ) {
        let batches: Vec<Vec<Vec<u8>>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &(n, len))| (0..n).map(|j| text((i * 7 + j) as u64, len)).collect())
            .collect();
        let compression = if lz4 {
            Compression { codec: Codec::Lz4, min_bytes: 0 }
        } else {
            Compression::NONE
        };
        let durable = if acked { all_durable } else { none_durable };
        let mut bytes = build(SEGMENT_ID, 1, &batches, compression, durable, seal).bytes;
        bytes.resize(bytes.len() + zeros, 0);
        let i = 64 + at.index(bytes.len() - 64);
        let j = (i + span).min(bytes.len());
        match damage {
            0 => bytes.truncate(i),
            1 => bytes[i] ^= 0x5a,
            2 => bytes[i..j].fill(0),
            _ => {}
        }
        check(&bytes, part);
    }
}
