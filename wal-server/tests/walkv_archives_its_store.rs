//! A single-node server with `archive` set ships its store's sealed
//! segments and base backups while it serves; after a clean stop the
//! archive restores to a store holding every write up to what it reached.
//! Archiving a cluster node, or `--archive-keep` without `--archive`, is
//! refused in one line.

mod common;

use std::process::Command;

use common::Running;
use wal_server::{ArchiveConfig, ClusterConfig};

#[test]
fn a_served_store_restores_from_its_archive() {
    let work = tempfile::tempdir().unwrap();
    let (dir, archive) = (work.path().join("data"), work.path().join("archive"));
    let url = archive.to_str().unwrap().to_owned();
    let server = Running::start_with(&dir, move |c| {
        // Small segments and memtable: segments seal and checkpoints come
        // within a few thousand writes.
        c.store.log.segment_bytes = 64 << 10;
        c.store.log.queue_bytes_max = 8 << 10;
        c.store.log.record_bytes_max = 4 << 10;
        c.store.memtable_bytes_max = 64 << 10;
        // No round but the first and the last: every segment sealed
        // meanwhile must wait for the last one, whatever the checkpoints
        // purge.
        let mut a = ArchiveConfig::new(url);
        a.every = std::time::Duration::from_secs(3600);
        c.archive = Some(a);
    })
    .unwrap();
    let mut c = server.client();
    for i in 0..3000 {
        let _: () = redis::cmd("SET")
            .arg(format!("key{i:05}"))
            .arg(format!("value {i} ").repeat(8))
            .query(&mut c)
            .unwrap();
    }
    drop(c);
    server.stop();

    let archive = wal_archive::Archive::open(archive.to_str().unwrap()).unwrap();
    assert!(!archive.bases().unwrap().is_empty(), "no base backup");
    // Nothing was purged before the archive took it: the archive starts at
    // the log's first LSN.
    let segments = archive.segments().unwrap();
    assert!(segments.len() >= 3, "{segments:?}");
    assert_eq!(segments[0], wal_engine::segment_name(1), "{segments:?}");
    let to = work.path().join("restored");
    let done = wal_archive::restore(&archive, &to, wal_archive::Target::Latest).unwrap();
    assert!(done.last_lsn > 1000, "{done:?}");
    let store = wal_kv::Store::open(&to, wal_kv::Options::default()).unwrap();
    // Each SET is one batch: LSN i + 1 wrote key i (walkv's value: a tag
    // byte, then the bytes).
    for i in [0, 500, done.last_lsn - 1] {
        let mut want = vec![0u8];
        want.extend_from_slice(format!("value {i} ").repeat(8).as_bytes());
        assert_eq!(
            store
                .get(format!("key{i:05}").as_bytes())
                .unwrap()
                .as_deref(),
            Some(&want[..]),
            "key {i}"
        );
    }
    assert_eq!(
        store
            .get(format!("key{:05}", done.last_lsn).as_bytes())
            .unwrap(),
        None
    );
    store.close().unwrap();
}

#[test]
fn archiving_what_cannot_be_archived_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let http = format!("127.0.0.1:{}", common::free_port())
        .parse()
        .unwrap();
    let url = work.path().join("archive").to_str().unwrap().to_owned();
    let err = Running::start_with(&work.path().join("node"), move |c| {
        c.http = Some(http);
        c.cluster = Some(ClusterConfig::new(1, http));
        c.archive = Some(ArchiveConfig::new(url));
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("single-node"), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_walkv"))
        .args(["--archive-keep", "3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("--archive-keep needs --archive"), "{said}");
}
