//! `walctl restore` rebuilds a store from an archive at an LSN, at a
//! commit time (RFC 3339), or at the latest archived moment, and refuses a
//! time it cannot parse in one line.

mod common;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::{stderr, stdout, walctl};

type State = BTreeMap<Vec<u8>, Vec<u8>>;

fn contents(dir: &std::path::Path) -> State {
    let store = wal_kv::Store::open(dir, wal_kv::Options::default()).unwrap();
    let all = store
        .scan(Bound::Unbounded, Bound::Unbounded)
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect();
    store.close().unwrap();
    all
}

#[test]
fn restore_by_lsn_time_and_latest() {
    let work = tempfile::tempdir().unwrap();
    let (src, archive) = (work.path().join("src"), work.path().join("archive"));
    std::fs::create_dir(&src).unwrap();
    let hold = wal_engine::PurgeHold::new();
    // 2025-12-05T02:00:00Z, one second per batch.
    let now = Arc::new(AtomicU64::new(1_764_900_000_000_000));
    let mut options = wal_kv::Options::default();
    options.log.segment_bytes = 64 << 10;
    options.log.queue_bytes_max = 8 << 10;
    options.log.record_bytes_max = 4 << 10;
    options.log.purge_hold = Some(hold.clone());
    let clock = Arc::clone(&now);
    options.log.clock = wal_engine::Clock::new(move || clock.load(Ordering::SeqCst));
    let store = wal_kv::Store::open(&src, options).unwrap();
    let mut archiver = wal_archive::Archiver::new(
        &src,
        wal_archive::Archive::open(archive.to_str().unwrap()).unwrap(),
        hold,
        2,
    )
    .unwrap();
    let mut history: Vec<(u64, State)> = Vec::new();
    let mut model = State::new();
    for b in 0..600u64 {
        now.fetch_add(1_000_000, Ordering::SeqCst);
        let (k, v) = (format!("k{:02}", b % 30), format!("{b}-").repeat(60));
        let lsn = store.put(k.clone(), v.clone()).unwrap();
        model.insert(k.into_bytes(), v.into_bytes());
        history.push((lsn, model.clone()));
        if b == 199 {
            store.checkpoint().unwrap();
        }
        if b % 50 == 49 {
            archiver.round().unwrap();
        }
    }
    let archived = archiver.round().unwrap().archived_through;
    store.close().unwrap();
    assert!(archived > 300, "{archived}");
    let at = |lsn: u64| {
        history
            .iter()
            .rev()
            .find(|(l, _)| *l <= lsn)
            .unwrap()
            .1
            .clone()
    };
    let a = archive.to_str().unwrap();

    let to = work.path().join("by-lsn");
    let out = walctl(&[
        "restore",
        "--archive",
        a,
        "--to",
        to.to_str().unwrap(),
        "--lsn",
        "250",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("up to LSN 250"), "{}", stdout(&out));
    assert_eq!(contents(&to), at(250));

    // Batch b (LSN b + 1) committed at 02:00:00 + (b + 1) s: LSN 281 at
    // 02:04:41; exclusive leaves it out.
    for (flag, want) in [("", 281), ("--inclusive", 281), ("--exclusive", 280)] {
        let to = work.path().join(format!("by-time{flag}"));
        let mut args = vec!["restore", "--archive", a, "--to", to.to_str().unwrap()];
        args.extend(["--time", "2025-12-05T02:04:41Z"]);
        if !flag.is_empty() {
            args.push(flag);
        }
        let out = walctl(&args);
        assert!(out.status.success(), "{out:?}");
        assert_eq!(contents(&to), at(want), "{flag}");
    }

    let to = work.path().join("latest");
    let out = walctl(&[
        "restore",
        "--archive",
        a,
        "--to",
        to.to_str().unwrap(),
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    // The archived segments' end, or the newest base backup's checkpoint.
    let newest_base = wal_archive::Archive::open(a)
        .unwrap()
        .bases()
        .unwrap()
        .last()
        .copied()
        .unwrap_or(0);
    let latest = archived.max(newest_base);
    assert_eq!(report["last_lsn"], latest);
    assert_eq!(contents(&to), at(latest));

    let out = walctl(&[
        "restore",
        "--archive",
        a,
        "--to",
        "/tmp/x",
        "--time",
        "noon",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("RFC 3339"), "{}", stderr(&out));
    assert_eq!(stderr(&out).trim().lines().count(), 1);
}
