//! A directory walctl cannot work on is refused with one line and exit 3:
//! not a directory, not a log, a newer format, held by a process (for
//! verify and salvage; stat reads it and says so); `--help` has examples.

mod common;

use common::{log, segments, stderr, stdout, walctl};

fn refused(args: &[&str], says: &str) {
    let out = walctl(args);
    assert_eq!(out.status.code(), Some(3), "{args:?}: {out:?}");
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    assert!(err.contains(says), "{args:?}: {err}");
}

#[test]
fn paths_that_hold_no_log_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    refused(&["stat", d], "not a log or a store");
    let missing = dir.path().join("missing");
    refused(&["verify", missing.to_str().unwrap()], "not a directory");
    std::fs::write(dir.path().join("notes.txt"), "hello").unwrap();
    refused(&["dump", d], "not a log or a store");
}

#[test]
fn a_newer_format_is_refused_naming_the_segment() {
    let dir = tempfile::tempdir().unwrap();
    log(dir.path(), 50);
    let first = segments(dir.path())[0].clone();
    let path = dir.path().join(&first);
    let mut bytes = std::fs::read(&path).unwrap();
    let newer = wal_format::FORMAT_VERSION + 1;
    bytes[8..10].copy_from_slice(&newer.to_le_bytes());
    let crc = crc32c(&bytes[..60]);
    bytes[60..64].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let d = dir.path().to_str().unwrap();
    for cmd in ["stat", "dump", "verify"] {
        refused(&[cmd, d], &format!("{first}: format version {newer}"));
    }
}

/// CRC32C (Castagnoli), bit by bit: the test's own, so it does not lean on
/// the code under test.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn a_held_directory_is_read_but_not_verified_or_salvaged() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = wal_engine::Wal::open(dir.path(), common::small_segments()).unwrap();
    wal.commit(b"live").unwrap();
    let d = dir.path().to_str().unwrap();
    let pid = std::process::id().to_string();

    let out = walctl(&["stat", d]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout(&out).contains(&format!("by process {pid}")),
        "{}",
        stdout(&out)
    );
    refused(&["verify", d], &format!("held by process {pid}"));
    let to = dir.path().join("rescue");
    refused(
        &["salvage", d, "--to", to.to_str().unwrap()],
        &format!("held by process {pid}"),
    );
    assert!(!to.exists(), "a refused salvage made its destination");
    let out = walctl(&["verify", d, "--live"]);
    assert!(out.status.code().is_some_and(|c| c <= 1), "{out:?}");
    drop(wal);
    assert_eq!(walctl(&["verify", d]).status.code(), Some(0));
}

#[test]
fn bad_arguments_exit_3_not_verify_s_2() {
    for args in [
        &["verify"][..],
        &["verify", "/tmp", "--bogus"],
        &["frobnicate"],
    ] {
        let out = walctl(args);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {out:?}");
        assert!(!stderr(&out).is_empty());
    }
}

#[test]
fn help_shows_examples_and_exit_codes() {
    let out = walctl(&["--help"]);
    assert!(out.status.success());
    let text = stdout(&out);
    for said in [
        "walctl stat",
        "walctl salvage",
        "Exit codes",
        "1 damage that opening repairs",
    ] {
        assert!(text.contains(said), "{said:?} not in: {text}");
    }
}
