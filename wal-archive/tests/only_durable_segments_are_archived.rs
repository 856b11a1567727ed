//! The archiver ships a sealed segment only once the log has moved on to
//! the next one: the seal is synced before the next segment is made, so a
//! sealed segment without a successor may still be lost to a power loss
//! (and its LSNs written again otherwise), and must not reach the archive.

use wal_archive::{Archive, Archiver};
use wal_engine::PurgeHold;

#[test]
fn a_sealed_segment_without_a_successor_waits() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("log");
    std::fs::create_dir(&dir).unwrap();
    let mut options = wal_engine::Options::default();
    options.segment_bytes = 64 << 10;
    options.queue_bytes_max = 8 << 10;
    options.record_bytes_max = 4 << 10;
    let (wal, _) = wal_engine::Wal::open(&dir, options).unwrap();
    for i in 0..1600u32 {
        wal.commit(format!("record {i} ").repeat(10).as_bytes())
            .unwrap();
    }
    wal.close().unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| wal_engine::parse_segment_name(n).is_some())
        .collect();
    names.sort();
    assert!(names.len() >= 4, "{names:?}");
    // As if the seal of the second-last segment was written but the next
    // segment not yet made.
    std::fs::remove_file(dir.join(names.last().unwrap())).unwrap();
    let unfollowed = &names[names.len() - 2];

    let archive_dir = work.path().join("archive");
    let archive = Archive::open(archive_dir.to_str().unwrap()).unwrap();
    let hold = PurgeHold::new();
    let mut archiver = Archiver::new(&dir, archive, hold.clone(), 2).unwrap();
    let round = archiver.round().unwrap();
    let archived = Archive::open(archive_dir.to_str().unwrap())
        .unwrap()
        .segments()
        .unwrap();
    assert_eq!(archived, names[..names.len() - 2], "{round:?}");
    let unfollowed_first = wal_engine::parse_segment_name(unfollowed).unwrap();
    assert_eq!(round.archived_through, unfollowed_first - 1);
    assert_eq!(hold.released(), unfollowed_first - 1);
}
