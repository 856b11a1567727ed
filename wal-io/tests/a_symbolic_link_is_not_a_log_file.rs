//! The log's files are regular files: a listing leaves a symbolic link out,
//! and an open by name refuses one, so no name the log opens can be one a
//! later listing would not show.

use wal_io::{BackendChoice, FileOptions, IoError};

#[test]
fn a_symbolic_link_is_neither_listed_nor_opened() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    std::fs::write(dir.path().join("real"), b"data").unwrap();
    std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join("link")).unwrap();
    for choice in [BackendChoice::Portable, BackendChoice::Auto] {
        for storage in [
            wal_io::open_dir(dir.path(), choice).unwrap(),
            wal_io::open_dir_read_only(dir.path()).unwrap(),
        ] {
            assert_eq!(storage.list().unwrap(), ["real"]);
            assert!(storage.open("real", FileOptions::BUFFERED).is_ok());
            let refused = storage.open("link", FileOptions::BUFFERED).unwrap_err();
            assert!(
                matches!(&refused, IoError::Unsupported { reason, .. } if reason.contains("symbolic link")),
                "{refused:?}"
            );
        }
    }
}
