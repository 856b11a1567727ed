//! `prefault` makes a fresh buffer's pages resident in one call, so a read
//! into it does not fault them in one at a time, and changes no byte.
//! Alone in its binary: it measures the process's resident memory.
#![cfg(target_os = "linux")]

mod common;

use common::resident_bytes;

#[test]
fn a_fresh_buffer_becomes_resident_and_keeps_its_bytes() {
    const LEN_BYTES: usize = 64 << 20;
    // Past the allocator's largest mmap threshold (32 MiB): fresh from the
    // kernel, no page resident until written.
    let mut buf = vec![0u8; LEN_BYTES];
    let before = resident_bytes();
    // Unaligned at both ends: only the whole pages inside are advised.
    // Needs Linux 5.14 (MADV_POPULATE_WRITE).
    assert!(
        wal_io::prefault(&mut buf[3..LEN_BYTES - 5]),
        "not populated"
    );
    let grown = resident_bytes().saturating_sub(before);
    assert!(
        grown >= LEN_BYTES - (8 << 20),
        "{grown} bytes became resident"
    );
    assert!(buf.iter().all(|&b| b == 0));
}

#[test]
fn written_bytes_stay_and_slices_without_a_whole_page_are_left_alone() {
    let mut written = vec![0u8; 3 << 20];
    written[5] = 1;
    written[(2 << 20) + 7] = 9;
    wal_io::prefault(&mut written[1..]);
    assert_eq!(written.iter().map(|&b| usize::from(b)).sum::<usize>(), 10);
    assert_eq!((written[5], written[(2 << 20) + 7]), (1, 9));
    let mut small = vec![1u8, 2, 3];
    assert!(!wal_io::prefault(&mut small), "no whole page inside");
    assert!(!wal_io::prefault(&mut []));
    assert_eq!(small, [1, 2, 3]);
}
