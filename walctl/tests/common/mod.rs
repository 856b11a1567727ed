//! What walctl's tests share: logs and stores made with the libraries,
//! the binary run on them, and a directory's bytes to check nothing was
//! written.
#![allow(dead_code)] // each test file uses a part of it

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use wal_engine::{Options, Wal};

/// Small segments (64 KiB), so a few hundred records span several.
pub fn small_segments() -> Options {
    let mut o = Options::default();
    o.segment_bytes = 64 << 10;
    o.queue_bytes_max = 8 << 10;
    o.record_bytes_max = 4 << 10;
    o
}

/// The record written at `lsn`.
pub fn record(lsn: u64) -> Vec<u8> {
    format!("record {lsn} ")
        .repeat(10 + usize::try_from(lsn % 7).unwrap())
        .into_bytes()
}

/// A log of `n` records (one frame each) over several segments, closed.
pub fn log(dir: &Path, n: u64) {
    let (wal, _) = Wal::open(dir, small_segments()).unwrap();
    for lsn in 1..=n {
        assert_eq!(wal.commit(&record(lsn)).unwrap(), lsn);
    }
    wal.close().unwrap();
}

/// As after a crash: the record a clean close leaves (which vouches for
/// every record up to it) removed.
pub fn crashed(dir: &Path) {
    std::fs::remove_file(dir.join(wal_engine::CLEAN_CLOSE_NAME)).unwrap();
}

/// The segment files in LSN order.
pub fn segments(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| wal_engine::parse_segment_name(n).is_some())
        .collect();
    names.sort();
    names
}

/// Every file's name and bytes (the lock file left out).
pub fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() != "LOCK")
        .map(|e| {
            (
                e.file_name().into_string().unwrap(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// Runs walctl.
pub fn walctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_walctl"))
        .args(args)
        .output()
        .unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The (unpadded) end offsets of the frames of a segment file, read by
/// the format's own scanner.
pub fn frame_ends(path: &Path) -> Vec<u64> {
    let data = bytes::Bytes::from(std::fs::read(path).unwrap());
    wal_format::SegmentScanner::new(data)
        .unwrap()
        .map(|f| f.offset() + u64::try_from(f.encoded_len()).unwrap())
        .collect()
}
