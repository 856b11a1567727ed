//! A directory opened read-only can be listed and read, and refuses every
//! change; the lock probe tells a held directory from a free one without
//! creating or writing the lock file.

use wal_io::portable::{LockState, lock_state};
use wal_io::{FileOptions, IoError, open_dir, open_dir_read_only};

fn unsupported<T: std::fmt::Debug>(r: Result<T, IoError>) {
    assert!(
        matches!(r, Err(IoError::Unsupported { .. })),
        "expected a refusal, got {r:?}"
    );
}

#[test]
fn a_read_only_directory_reads_and_refuses_every_change() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a"), b"hello").unwrap();
    let before = std::fs::read_dir(dir.path()).unwrap().count();

    let storage = open_dir_read_only(dir.path()).unwrap();
    assert_eq!(storage.list().unwrap(), ["a"]);
    let file = storage.open("a", FileOptions::BUFFERED).unwrap();
    let mut buf = [0u8; 5];
    file.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"hello");
    assert_eq!(file.size().unwrap(), 5);
    // The descriptor itself cannot write.
    assert!(file.write_at(0, &[b"x"]).is_err());

    unsupported(storage.create("b", FileOptions::BUFFERED));
    unsupported(storage.remove("a"));
    unsupported(storage.rename("a", "b"));
    unsupported(storage.sync_dir());
    unsupported(storage.lock());
    assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), b"hello");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), before);
}

#[test]
fn the_lock_probe_sees_a_holder_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(lock_state(dir.path()).unwrap(), LockState::Free);
    assert!(
        !dir.path().join("LOCK").exists(),
        "the probe created the lock file"
    );

    let storage = open_dir(dir.path(), wal_io::BackendChoice::Portable).unwrap();
    let held = storage.lock().unwrap();
    assert_eq!(
        lock_state(dir.path()).unwrap(),
        LockState::Held {
            holder: Some(std::process::id())
        }
    );
    // The holder keeps it: the probe's shared lock was dropped.
    assert!(matches!(storage.lock(), Err(IoError::Locked { .. })));
    drop(held);
    assert_eq!(lock_state(dir.path()).unwrap(), LockState::Free);
    storage.lock().unwrap();
}

#[test]
fn a_probe_never_makes_a_process_taking_the_lock_fail() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open_dir(dir.path(), wal_io::BackendChoice::Portable).unwrap();
    drop(storage.lock().unwrap()); // the lock file exists from here on
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probes = {
        let (stop, path) = (std::sync::Arc::clone(&stop), dir.path().to_owned());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = lock_state(&path).unwrap();
                n += 1;
            }
            n
        })
    };
    for i in 0..2000 {
        let held = storage
            .lock()
            .unwrap_or_else(|e| panic!("take {i}: refused while only probed: {e}"));
        drop(held);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(probes.join().unwrap() > 0);
}
