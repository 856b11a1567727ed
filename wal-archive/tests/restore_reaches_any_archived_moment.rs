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
