//! Helpers the engine's behaviour tests share. Each test file is its own
//! crate and uses some of them.
#![allow(dead_code)]

use std::path::Path;

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
