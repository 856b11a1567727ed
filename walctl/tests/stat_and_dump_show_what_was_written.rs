//! `stat` and `dump` report what the libraries wrote: a log's records by
//! LSN with their segment and frame, a store's batches with keys and value
//! lengths, its checkpoint and tables; `--from`, `--to`, `--limit` and
//! `--json` do what they say, and nothing in the directory changes.

mod common;

use common::{log, record, segments, snapshot, stdout, walctl};
use serde_json::Value;

#[test]
fn a_log_s_figures_and_records_are_reported_exactly() {
    let dir = tempfile::tempdir().unwrap();
    log(dir.path(), 1000);
    let before = snapshot(dir.path());
    let d = dir.path().to_str().unwrap();

    let out = walctl(&["stat", d, "--json"]);
    assert!(out.status.success(), "{out:?}");
    let s: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(s["kind"], "log");
    assert_eq!(s["records"], 1000);
    assert_eq!(s["first_lsn"], 1);
    assert_eq!(s["last_lsn"], 1000);
    assert_eq!(s["segments"], segments(dir.path()).len());
    assert!(
        segments(dir.path()).len() > 2,
        "the test wants several segments"
    );
    // One frame per commit: its time (8 bytes), then the record and its
    // length prefix.
    let raw: u64 = (1..=1000).map(|l| 8 + record(l).len() as u64 + 4).sum();
    assert_eq!(
        s["raw_bytes"], raw,
        "payload bytes: records and their length prefixes"
    );
    assert!(s["held_by"].is_null());
    // Commit times (format version 4): the frames were written just now.
    let first = s["first_time"].as_str().unwrap();
    let last = s["last_time"].as_str().unwrap();
    assert!(first.ends_with('Z') && first <= last, "{first} .. {last}");

    let out = walctl(&["dump", d, "--json"]);
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1000);
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros();
    let now_us = u64::try_from(now_us).unwrap();
    let mut previous = 0;
    for (i, l) in lines.iter().enumerate() {
        let lsn = i as u64 + 1;
        let t = l["time_us"].as_u64().unwrap();
        assert!(
            previous <= t && t <= now_us && now_us - t < 3_600_000_000,
            "{l}"
        );
        previous = t;
        assert_eq!(l["lsn"], lsn);
        assert_eq!(l["bytes"], record(lsn).len());
        assert_eq!(l["codec"], "none");
        let seg = l["segment"].as_str().unwrap();
        assert!(wal_engine::parse_segment_name(seg).unwrap() <= lsn);
    }
    // Each record in the segment its line names, at the frame offset given.
    let l = &lines[900];
    let seg = std::fs::read(dir.path().join(l["segment"].as_str().unwrap())).unwrap();
    let at = usize::try_from(l["frame_offset"].as_u64().unwrap()).unwrap() + 48 + 8 + 4;
    assert_eq!(&seg[at..at + record(901).len()], &record(901)[..]);

    let out = walctl(&["dump", d, "--from", "100", "--to", "120", "--limit", "5"]);
    let text = stdout(&out);
    let lsns: Vec<&str> = text
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(lsns, ["100", "101", "102", "103", "104"]);
    let out = walctl(&["dump", d, "--from", "998"]);
    assert_eq!(stdout(&out).lines().count(), 3);

    assert_eq!(
        snapshot(dir.path()),
        before,
        "walctl wrote to the directory"
    );
}

#[test]
fn a_store_s_batches_checkpoint_and_tables_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store = wal_kv::Store::open(dir.path(), wal_kv::Options::default()).unwrap();
    for i in 0..100u32 {
        store
            .put(format!("key{i:03}"), vec![b'v'; 10 + i as usize])
            .unwrap();
    }
    store.checkpoint().unwrap();
    let mut b = wal_kv::WriteBatch::new();
    b.put(&b"\xffbinary"[..], &b"x"[..]);
    b.delete(&b"key007"[..]);
    store.write(&b, wal_kv::Durability::Sync).unwrap();
    // Dropped, not closed: a close would checkpoint the last batch, which
    // stays in the log here.
    drop(store);
    let before = snapshot(dir.path());
    let d = dir.path().to_str().unwrap();

    let out = walctl(&["stat", d, "--json"]);
    assert!(out.status.success(), "{out:?}");
    let s: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(s["kind"], "store");
    assert_eq!(s["checkpoint_lsn"], 100);
    let tables: u64 = s["levels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["tables"].as_u64().unwrap())
        .sum();
    assert!(tables >= 1, "{s}");
    assert_eq!(s["last_lsn"], 101);

    let out = walctl(&["dump", d, "--from", "101"]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.contains(r#"put "\xffbinary" (1 B); del "key007""#),
        "{text}"
    );
    let out = walctl(&["dump", d, "--from", "101", "--json"]);
    let l: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(l["ops"][0]["op"], "put");
    assert_eq!(l["ops"][0]["key"], r"\xffbinary");
    assert_eq!(l["ops"][0]["value_bytes"], 1);
    assert_eq!(l["ops"][1]["op"], "del");

    let out = walctl(&["stat", d]);
    let text = stdout(&out);
    assert!(text.contains("checkpoint    LSN 100"), "{text}");
    assert_eq!(
        snapshot(dir.path()),
        before,
        "walctl wrote to the directory"
    );
}

#[test]
fn records_a_truncation_replaced_are_not_shown() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = wal_engine::Wal::open(dir.path(), common::small_segments()).unwrap();
    for lsn in 1..=1000 {
        wal.commit(&record(lsn)).unwrap();
    }
    // A new history from LSN 501 on: the log starts a segment inside the
    // one that held the old 501.., whose bytes stay on disk.
    wal.truncate_back(500).unwrap();
    for lsn in 501..=600u64 {
        wal.commit(format!("rewritten {lsn}").as_bytes()).unwrap();
    }
    wal.close().unwrap();
    let out = walctl(&["dump", dir.path().to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let lsns: Vec<u64> = lines.iter().map(|l| l["lsn"].as_u64().unwrap()).collect();
    assert_eq!(lsns, (1..=600).collect::<Vec<_>>());
    for l in &lines[500..] {
        let lsn = l["lsn"].as_u64().unwrap();
        assert_eq!(l["bytes"], format!("rewritten {lsn}").len(), "{l}");
    }
}
