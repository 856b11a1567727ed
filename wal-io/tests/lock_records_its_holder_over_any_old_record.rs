//! The lock file names its holder whatever an earlier holder left in it:
//! the record is written in place (no truncation on every open), so a
//! longer or shorter old record must not survive around the new one.

use wal_io::portable::{LOCK_FILE_NAME, LockState, lock_state};
use wal_io::{BackendChoice, open_dir};

#[test]
fn the_lock_file_names_this_process_after_any_old_record() {
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
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.trim().parse::<u32>().ok(),
            Some(me),
            "after {:?}: {text:?}",
            String::from_utf8_lossy(old)
        );
        assert!(text.ends_with('\n') && text.len() <= 12, "{text:?}");
        assert_eq!(
            lock_state(dir.path()).unwrap(),
            LockState::Held { holder: Some(me) }
        );
        drop(lock);
        assert_eq!(lock_state(dir.path()).unwrap(), LockState::Free);
    }
}
