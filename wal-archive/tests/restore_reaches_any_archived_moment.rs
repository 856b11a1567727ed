//! A store writes batches under an injected clock while an archiver ships
//! its sealed segments and base backups; restoring to random targets (by
//! LSN and by time, inclusive and exclusive) gives exactly the model's
//! state at that target. A segment missing from the archive is an error
//! naming it; other bytes under an archived name are refused.

mod common;

use bytes::Bytes;
use wal_archive::{Archive, ArchiveError, segment_object};

#[test]
fn restores_match_the_model_at_every_target() {
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("archive");
    common::restores_match_the_model(work.path(), archive.to_str().unwrap());
}

#[test]
fn an_archived_name_takes_the_same_bytes_again_and_refuses_others() {
    let work = tempfile::tempdir().unwrap();
    let archive = Archive::open(work.path().to_str().unwrap()).unwrap();
    let name = segment_object("00000000000000000001.wal");
    let bytes = Bytes::from_static(b"segment bytes");
    archive.put_verified(&name, &bytes).unwrap();
    archive.put_verified(&name, &bytes).unwrap();
    assert!(matches!(
        archive.put_verified(&name, &Bytes::from_static(b"other bytes!!")),
        Err(ArchiveError::Conflict { .. })
    ));
    assert_eq!(archive.get(&name).unwrap(), bytes);
}

#[test]
fn a_store_opened_with_archiving_restores_from_its_archive() {
    let work = tempfile::tempdir().unwrap();
    let url = work.path().join("archive").to_str().unwrap().to_owned();
    let mut options = wal_kv::Options::default();
    options.log.segment_bytes = 64 << 10;
    options.log.queue_bytes_max = 8 << 10;
    options.log.record_bytes_max = 4 << 10;
    options.memtable_bytes_max = 32 << 10;
    let dir = work.path().join("store");
    let store = wal_archive::ArchivedStore::open(
        &dir,
        options,
        Archive::open(&url).unwrap(),
        2,
        std::time::Duration::from_secs(3600),
    )
    .unwrap();
    for i in 0..2000u32 {
        store
            .store()
            .put(format!("key{i:05}"), format!("{i} ").repeat(20))
            .unwrap();
    }
    let round = store.close().unwrap();
    // Nothing purged before the one last round took it.
    let archive = Archive::open(&url).unwrap();
    assert_eq!(archive.segments().unwrap()[0], wal_engine::segment_name(1));
    let to = work.path().join("restored");
    let done = wal_archive::restore(&archive, &to, wal_archive::Target::Latest).unwrap();
    // The latest moment: the archived segments' end, or the newest base
    // backup's checkpoint if that is further (a whole state on its own).
    let newest_base = archive.bases().unwrap().last().copied().unwrap_or(0);
    assert_eq!(done.last_lsn, round.archived_through.max(newest_base));
    let restored = wal_kv::Store::open(&to, wal_kv::Options::default()).unwrap();
    let last = done.last_lsn - 1;
    assert_eq!(
        restored
            .get(format!("key{last:05}").as_bytes())
            .unwrap()
            .as_deref(),
        Some(format!("{last} ").repeat(20).as_bytes())
    );
    restored.close().unwrap();
}
