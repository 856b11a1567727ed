//! `salvage` copies what recovery can keep into a new directory that then
//! opens normally, says what was lost, and leaves the source as it was; it
//! refuses a destination that holds anything.

mod common;

use std::path::Path;

use common::{crashed, frame_ends, log, record, segments, snapshot, stdout, walctl};
use serde_json::Value;

/// Flips a byte inside the `k`th frame of the first segment.
fn corrupt_frame(dir: &Path, k: usize) {
    let first = segments(dir)[0].clone();
    let path = dir.join(first);
    let ends = frame_ends(&path);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[usize::try_from(ends[k]).unwrap() - 30] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
}

fn salvage(from: &Path, to: &Path, extra: &[&str]) -> Value {
    let mut args = vec![
        "salvage",
        from.to_str().unwrap(),
        "--to",
        to.to_str().unwrap(),
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = walctl(&args);
    assert!(out.status.success(), "{out:?}");
    serde_json::from_str(&stdout(&out)).unwrap()
}

#[test]
fn a_corrupt_log_is_salvaged_to_its_prefix_or_past_the_damage() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    log(&src, 1000);
    crashed(&src);
    corrupt_frame(&src, 9);
    let before = snapshot(&src);

    let to = dir.path().join("prefix");
    let s = salvage(&src, &to, &[]);
    assert_eq!(s["records"], 9, "{s}");
    assert!(
        !s["discarded"].as_array().unwrap().is_empty() || !s["cut"].as_array().unwrap().is_empty(),
        "{s}"
    );
    let (wal, report) = wal_engine::Wal::open(&to, common::small_segments()).unwrap();
    assert_eq!(report.next_lsn, 10);
    let got: Vec<_> = wal.reader(1).unwrap().map(|r| r.unwrap()).collect();
    for r in &got {
        assert_eq!(&r.data[..], &record(r.lsn)[..]);
    }
    drop(wal);

    let to = dir.path().join("skip");
    let s = salvage(&src, &to, &["--skip-corrupted"]);
    let gaps = s["gaps"].as_array().unwrap();
    assert_eq!(gaps.len(), 1, "{s}");
    assert_eq!(gaps[0][0], 10, "{s}");
    // Everything but the skipped LSNs.
    let skipped = gaps[0][1].as_u64().unwrap() - 10;
    assert_eq!(s["records"].as_u64().unwrap() + skipped, 1000, "{s}");
    assert_eq!(s["next_lsn"], 1001, "{s}");
    let text = stdout(&walctl(&[
        "salvage",
        src.to_str().unwrap(),
        "--to",
        dir.path().join("t").to_str().unwrap(),
    ]));
    assert!(text.contains("lost:"), "{text}");

    assert_eq!(snapshot(&src), before, "salvage wrote to its source");
    let out = walctl(&[
        "salvage",
        src.to_str().unwrap(),
        "--to",
        to.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(common::stderr(&out).contains("not empty"), "{out:?}");
}

#[test]
fn a_store_with_a_damaged_table_is_salvaged_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let store = wal_kv::Store::open(&src, wal_kv::Options::default()).unwrap();
    for i in 0..500u32 {
        store.put(format!("old{i:04}"), "v").unwrap();
    }
    store.checkpoint().unwrap();
    for i in 0..10u32 {
        store.put(format!("new{i:04}"), "w").unwrap();
    }
    // Dropped, not closed: a close would checkpoint the new keys into a
    // second table, and the damaged table below must be the only one.
    drop(store);
    let table = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .find(|n| n.ends_with(".sst"))
        .unwrap();
    let path = src.join(&table);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[50] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();

    let to = dir.path().join("to");
    let s = salvage(&src, &to, &[]);
    let dropped = s["tables_dropped"].as_array().unwrap();
    assert_eq!(dropped.len(), 1, "{s}");
    assert!(dropped[0].as_str().unwrap().contains(&table), "{s}");
    let store = wal_kv::Store::open(&to, wal_kv::Options::default()).unwrap();
    // The log after the checkpoint is whole; the table's keys are lost.
    assert_eq!(store.get(b"new0009").unwrap().as_deref(), Some(&b"w"[..]));
    assert_eq!(store.get(b"old0001").unwrap(), None);
    store.close().unwrap();
    assert_eq!(
        walctl(&["verify", to.to_str().unwrap()]).status.code(),
        Some(0)
    );
}
