//! A large `IoBuf` (a log's write buffer is sized for its largest batch)
//! costs resident memory only for the bytes written into it: its pages are
//! mapped zero and faulted in as used, not zeroed up front.
#![cfg(target_os = "linux")]

mod common;

use common::resident_bytes;
use wal_io::{DIRECT_IO_ALIGN, IoBuf};

#[test]
fn a_large_buffer_is_resident_only_where_written() {
    const CAPACITY_BYTES: usize = 64 << 20;
    const WRITTEN_BYTES: usize = 1 << 20;
    let before = resident_bytes();
    let mut buf = IoBuf::with_capacity(CAPACITY_BYTES);
    assert_eq!(buf.capacity(), CAPACITY_BYTES);
    assert_eq!(buf.as_slice().as_ptr().align_offset(DIRECT_IO_ALIGN), 0);
    let allocated = resident_bytes().saturating_sub(before);
    assert!(
        allocated < 4 << 20,
        "allocating {CAPACITY_BYTES} bytes made {allocated} resident"
    );
    buf.extend_from_slice(&vec![7u8; WRITTEN_BYTES]);
    let written = resident_bytes().saturating_sub(before);
    assert!(
        written < WRITTEN_BYTES + (4 << 20),
        "writing {WRITTEN_BYTES} bytes made {written} resident"
    );
    // Every byte up to the capacity is usable, and what was written stays.
    buf.resize(CAPACITY_BYTES, 1);
    assert!(buf.as_slice()[..WRITTEN_BYTES].iter().all(|&b| b == 7));
    assert!(buf.as_slice()[WRITTEN_BYTES..].iter().all(|&b| b == 1));
    drop(buf);
}
