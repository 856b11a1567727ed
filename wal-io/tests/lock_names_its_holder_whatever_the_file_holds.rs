//! The lock names its holder whatever an earlier holder left in the lock
//! file. Where the kernel lists its locks (Linux) the holder comes from
//! that list, and taking the lock writes nothing (a write cost an open up
//! to 2 ms after a cold start), so an old record must neither be trusted
//! nor rewritten.

use wal_io::portable::{LOCK_FILE_NAME, LockState, lock_state};
use wal_io::{BackendChoice, IoError, open_dir};

#[test]
fn the_lock_names_this_process_after_any_old_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(LOCK_FILE_NAME);
    let me = std::process::id();
    for old in [
        &b""[..],
        b"7\n",
        b"4294967295\n",
        b"123456789012345678901234567890\nleft by something else\n",
    ] {
        std::fs::write(&path, old).unwrap();
        let storage = open_dir(dir.path(), BackendChoice::Portable).unwrap();
        let lock = storage.lock().unwrap();
        assert_eq!(
            lock_state(dir.path()).unwrap(),
            LockState::Held { holder: Some(me) },
            "after {:?}",
            String::from_utf8_lossy(old)
        );
        // A second opener is refused, naming the holder.
        let other = open_dir(dir.path(), BackendChoice::Portable).unwrap();
        match other.lock() {
            Err(IoError::Locked { holder, .. }) => assert_eq!(holder, Some(me)),
            other => panic!("expected Locked, got {other:?}"),
        }
        if std::path::Path::new("/proc/locks").exists() {
            assert_eq!(std::fs::read(&path).unwrap(), old, "nothing written");
        }
        drop(lock);
        assert_eq!(lock_state(dir.path()).unwrap(), LockState::Free);
    }
}
