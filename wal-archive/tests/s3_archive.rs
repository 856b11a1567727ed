//! The archive model test against an S3-compatible server: an opt-in
//! suite, built with `--features s3` and run with `WAL_ARCHIVE_S3_URL`
//! (`s3://bucket[/prefix]`) and the AWS_* variables naming the server, as
//! `.ci/run` does with `moto_server` on loopback when it can start one.
#![cfg(feature = "s3")]

mod common;

#[test]
fn restores_from_s3_match_the_model() {
    let base = std::env::var("WAL_ARCHIVE_S3_URL").expect(
        "WAL_ARCHIVE_S3_URL=s3://bucket[/prefix] (and AWS_ENDPOINT, AWS_ALLOW_HTTP, \
         AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION for a local server)",
    );
    // A prefix of its own: runs never see each other's objects.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let url = format!(
        "{}/run-{}-{nanos}",
        base.trim_end_matches('/'),
        std::process::id()
    );
    let work = tempfile::tempdir().unwrap();
    common::restores_match_the_model(work.path(), &url);
}

#[test]
fn s3_takes_the_same_bytes_again_and_refuses_others() {
    let base = std::env::var("WAL_ARCHIVE_S3_URL").expect("WAL_ARCHIVE_S3_URL");
    let url = format!(
        "{}/conflict-{}",
        base.trim_end_matches('/'),
        std::process::id()
    );
    let archive = wal_archive::Archive::open(&url).unwrap();
    let name = wal_archive::segment_object("00000000000000000001.wal");
    let bytes = bytes::Bytes::from_static(b"segment bytes");
    archive.put_verified(&name, &bytes).unwrap();
    archive.put_verified(&name, &bytes).unwrap();
    assert!(matches!(
        archive.put_verified(&name, &bytes::Bytes::from_static(b"other bytes!!")),
        Err(wal_archive::ArchiveError::Conflict { .. })
    ));
    assert_eq!(archive.get(&name).unwrap(), bytes);
}
