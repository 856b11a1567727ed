//! Helpers the engine's behaviour tests share. Each test file is its own
//! crate and uses some of them.
#![allow(dead_code)]

pub mod hooked;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wal_engine::{Options, Wal};

/// Small segments (64 KiB), queue (8 KiB) and records (4 KiB), so a test
/// of a few hundred records spans several segments.
pub fn small_segments() -> Options {
    let mut o = Options::default();
    o.segment_bytes = 64 << 10;
    o.queue_bytes_max = 8 << 10;
    o.record_bytes_max = 4 << 10;
    o
}

/// The names of the segment files in `dir`, in LSN order.
pub fn segment_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".wal"))
        .collect();
    names.sort();
    names
}

/// Every record of the log from its first LSN, as (LSN, bytes).
pub fn records(wal: &Wal) -> Vec<(u64, Vec<u8>)> {
    wal.reader(wal.first_lsn())
        .unwrap()
        .map(|r| r.map(|r| (r.lsn, r.data.to_vec())))
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Frame boundaries, from the format's own layout (header, then 48-byte
/// frame headers with the stored length at offset 4, 8-byte alignment):
/// the (unpadded, padded) end of every frame, up to a zeroed header.
pub fn frame_ends(bytes: &[u8]) -> Vec<(u64, u64)> {
    let mut ends = Vec::new();
    let mut at = 64usize;
    while at + 48 <= bytes.len() && bytes[at..at + 48].iter().any(|&b| b != 0) {
        let stored = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        let body = at + 48 + stored;
        at = body.div_ceil(8) * 8;
        ends.push((body as u64, at as u64));
    }
    ends
}

/// Returns true once `count` has moved at least once and then stood still
/// for `still` (the thread counting has blocked), or false after `max`.
pub fn wait_for_stall(count: &AtomicU64, still: Duration, max: Duration) -> bool {
    let start = Instant::now();
    let mut seen = count.load(Ordering::SeqCst);
    let mut since = Instant::now();
    while start.elapsed() < max {
        std::thread::sleep(Duration::from_millis(5));
        let now = count.load(Ordering::SeqCst);
        if now != seen {
            seen = now;
            since = Instant::now();
        } else if now > 0 && since.elapsed() >= still {
            return true;
        }
    }
    false
}
