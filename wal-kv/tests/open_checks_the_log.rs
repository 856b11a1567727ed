//! The store opens only on a log that goes on from the manifest's
//! checkpoint (`first_lsn <= checkpoint + 1 <= next_lsn`). A log that ends
//! at or below the checkpoint would reuse LSNs the tables hold; one that
//! starts after `checkpoint + 1` has lost the records between. Both are
//! refused, naming the numbers, and the directory is left as it was.

use std::path::Path;

use wal_kv::{KvError, Options, Store};

fn options() -> Options {
    let mut o = Options::default();
    o.log.segment_bytes = 64 << 10;
    o.log.queue_bytes_max = 16 << 10;
    o.log.record_bytes_max = 8 << 10;
    o
}

fn value(i: u64) -> Vec<u8> {
    format!("value {i} ").repeat(20).into_bytes()
}

/// The log's segment files in `dir`, oldest first.
fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    names.sort();
    names
}

/// Everything in `dir`, names and sizes, to show a refused open changed nothing.
fn listing(dir: &Path) -> Vec<(String, u64)> {
    let mut all: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    all.sort();
    all
}

#[test]
fn a_log_that_ends_below_the_checkpoint_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    for i in 0..200u64 {
        store.put(format!("k{i:04}"), value(i)).unwrap();
    }
    store.checkpoint().unwrap();
    let checkpoint = store.stats().checkpoint_lsn;
    assert!(checkpoint >= 200);
    store.close().unwrap();
    // The log's segments are lost (and, as after a crash, there is no
    // clean-close record to tell the log so): a fresh log would start again
    // at LSN 1.
    for seg in segments(dir.path()) {
        std::fs::remove_file(seg).unwrap();
    }
    std::fs::remove_file(dir.path().join(wal_engine::CLEAN_CLOSE_NAME)).unwrap();
    let before = listing(dir.path());
    match Store::open(dir.path(), options()) {
        Err(KvError::LogBehindCheckpoint {
            checkpoint_lsn,
            first_lsn: 1,
            next_lsn: 1,
        }) => assert_eq!(checkpoint_lsn, checkpoint),
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(_) => panic!("a log behind the checkpoint was opened"),
    }
    // Opening the log created a fresh segment (the log's own files are its
    // business); nothing of the store's changed: tables and manifest.
    let store_files = |all: Vec<(String, u64)>| -> Vec<(String, u64)> {
        all.into_iter()
            .filter(|(n, _)| n.ends_with(".sst") || n == "MANIFEST")
            .collect()
    };
    let (before, after) = (store_files(before), store_files(listing(dir.path())));
    assert!(!before.is_empty());
    assert_eq!(before, after);
}

#[test]
fn a_log_that_starts_after_the_checkpoint_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    let mut i = 0;
    while segments(dir.path()).len() < 3 {
        store.put(format!("k{i:04}"), value(i)).unwrap();
        i += 1;
    }
    // Dropped, not closed: a close would checkpoint.
    drop(store);
    // No checkpoint (LSN 0): the log must start at LSN 1. Its first
    // segment is lost.
    std::fs::remove_file(&segments(dir.path())[0]).unwrap();
    match Store::open(dir.path(), options()) {
        Err(e @ KvError::LogBehindCheckpoint { .. }) => {
            let KvError::LogBehindCheckpoint {
                checkpoint_lsn,
                first_lsn,
                next_lsn,
            } = e
            else {
                unreachable!()
            };
            assert_eq!(checkpoint_lsn, 0);
            assert!(first_lsn > 1 && next_lsn > first_lsn, "{e}");
            let message = e.to_string();
            assert!(message.contains("missing"), "{message}");
        }
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(_) => panic!("a log with a gap after the checkpoint was opened"),
    }
}

#[test]
fn a_log_that_goes_on_from_the_checkpoint_opens() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    for i in 0..300u64 {
        store.put(format!("k{i:04}"), value(i)).unwrap();
    }
    store.checkpoint().unwrap();
    store.close().unwrap();
    // Right after a checkpoint: the log's next LSN is the checkpoint's + 1.
    let store = Store::open(dir.path(), options()).unwrap();
    assert_eq!(store.get(b"k0007").unwrap().as_deref(), Some(&value(7)[..]));
    store.put("after", "it").unwrap();
    store.close().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    assert_eq!(store.get(b"after").unwrap().as_deref(), Some(&b"it"[..]));
}
