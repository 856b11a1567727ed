//! `advise_huge_pages` maps nothing in and changes no byte: it only asks
//! for huge pages behind memory a later write faults in. Alone in its
//! binary: it measures the process's resident memory.
#![cfg(target_os = "linux")]

mod common;

use common::resident_bytes;

#[test]
fn huge_page_advice_maps_nothing_and_changes_no_byte() {
    const LEN_BYTES: usize = 8 << 20;
    let mut buf = vec![0u8; LEN_BYTES];
    buf[4097] = 7;
    let before = resident_bytes();
    let advised = wal_io::advise_huge_pages(&mut buf[1..]);
    assert!(
        resident_bytes().saturating_sub(before) < 1 << 20,
        "the advice alone maps nothing in"
    );
    assert_eq!(buf.iter().map(|&b| usize::from(b)).sum::<usize>(), 7);
    // Taken wherever the kernel hands out huge pages on request.
    let mode = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled");
    if mode.is_ok_and(|m| !m.contains("[never]")) {
        assert!(advised, "advice refused");
    }
    assert!(!wal_io::advise_huge_pages(&mut [1u8, 2, 3]));
}
