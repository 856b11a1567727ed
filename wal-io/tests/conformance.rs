//! One behaviour suite, run against every backend: portable, uring buffered,
//! uring O_DIRECT, and the simulated disk (buffered and with O_DIRECT rules).
//! Sizes are multiples of 4 KiB so that the same cases hold under O_DIRECT.
// Test sizes and counts are small: casts between integer widths cannot truncate.
#![allow(clippy::cast_possible_truncation)]

use std::sync::Arc;

use wal_io::sim::SimDisk;
use wal_io::{
    Backend, BackendChoice, Completion, DIRECT_IO_ALIGN, FileOptions, IoBuf, IoError, IoQueue,
    Storage,
};

const BLOCK: usize = DIRECT_IO_ALIGN;

/// A backend under test: a way to open the same directory again (for the
/// lock), and the file options its cases use.
struct Harness {
    storage: Arc<dyn Storage>,
    reopen: Box<dyn Fn() -> Arc<dyn Storage>>,
    options: FileOptions,
    _dir: Option<tempfile::TempDir>,
}

fn real_unchecked(choice: BackendChoice, options: FileOptions) -> Harness {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().to_path_buf();
    let storage = wal_io::open_dir(&path, choice).unwrap();
    Harness {
        storage,
        reopen: Box::new(move || wal_io::open_dir(&path, choice).unwrap()),
        options,
        _dir: Some(dir),
    }
}

fn real(choice: BackendChoice, options: FileOptions) -> Harness {
    let h = real_unchecked(choice, options);
    if choice == BackendChoice::Uring {
        match h.storage.fallback_reason() {
            // Say it, so a run on a machine without io_uring is not mistaken
            // for a pass of the uring backend.
            Some(reason) => {
                eprintln!(
                    "NOTE: io_uring unavailable, the uring cases ran on the portable backend: {reason}"
                );
                assert_eq!(h.storage.backend(), Backend::Portable);
            }
            None => assert_eq!(h.storage.backend(), Backend::Uring),
        }
    }
    h
}

fn sim(options: FileOptions) -> Harness {
    let disk = SimDisk::new(7);
    let storage = disk.storage();
    Harness {
        storage,
        reopen: Box::new(move || disk.storage()),
        options,
        _dir: None,
    }
}

fn block(fill: u8, blocks: usize) -> IoBuf {
    let mut buf = IoBuf::with_capacity(blocks * BLOCK);
    buf.resize(blocks * BLOCK, fill);
    buf
}

fn read(h: &Harness, name: &str, offset: u64, len: usize) -> Vec<u8> {
    let file = h.storage.open(name, h.options).unwrap();
    let mut buf = IoBuf::with_capacity(len);
    buf.resize(len, 0);
    file.read_at(offset, buf.as_mut_slice()).unwrap();
    if !h.options.direct {
        // Every buffered read checks `read_vec` against `read_at`.
        assert_eq!(file.read_vec(offset, len).unwrap(), buf.as_slice());
    }
    buf.as_slice().to_vec()
}

fn os_error(result: Result<impl std::fmt::Debug, IoError>) -> i32 {
    match result {
        Err(e) => e
            .raw_os_error()
            .unwrap_or_else(|| panic!("not an OS error: {e}")),
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

fn writes_read_back(h: &Harness) {
    let file = h.storage.create("a", h.options).unwrap();
    file.write_at(0, &[block(b'x', 2).as_slice()]).unwrap();
    assert_eq!(file.size().unwrap(), 2 * BLOCK as u64);
    assert_eq!(read(h, "a", 0, 2 * BLOCK), vec![b'x'; 2 * BLOCK]);
    // Overwrite in place, then write past the end.
    file.write_at(BLOCK as u64, &[block(b'y', 1).as_slice()])
        .unwrap();
    file.write_at(3 * BLOCK as u64, &[block(b'z', 1).as_slice()])
        .unwrap();
    let all = read(h, "a", 0, 4 * BLOCK);
    assert_eq!(&all[..BLOCK], &[b'x'; BLOCK][..]);
    assert_eq!(&all[BLOCK..2 * BLOCK], &[b'y'; BLOCK][..]);
    assert_eq!(
        &all[2 * BLOCK..3 * BLOCK],
        &[0; BLOCK][..],
        "a hole reads as zeros"
    );
    assert_eq!(&all[3 * BLOCK..], &[b'z'; BLOCK][..]);
    file.sync_data().unwrap();
}

/// Dropping the cache loses nothing written, synced or not: only clean
/// pages go, and they read back from the device.
fn dropping_the_cache_keeps_what_was_written(h: &Harness) {
    let file = h.storage.create("d", h.options).unwrap();
    file.write_at(0, &[block(b's', 1).as_slice()]).unwrap();
    file.sync_data().unwrap();
    file.write_at(BLOCK as u64, &[block(b'u', 1).as_slice()])
        .unwrap();
    file.drop_cache().unwrap();
    let all = read(h, "d", 0, 2 * BLOCK);
    assert_eq!(&all[..BLOCK], &[b's'; BLOCK][..], "synced");
    assert_eq!(&all[BLOCK..], &[b'u'; BLOCK][..], "written, not synced");
}

fn vectored_writes_land_in_order(h: &Harness) {
    let file = h.storage.create("v", h.options).unwrap();
    let (a, b, c) = (block(1, 1), block(2, 2), block(3, 1));
    file.write_at(BLOCK as u64, &[a.as_slice(), b.as_slice(), c.as_slice()])
        .unwrap();
    let all = read(h, "v", BLOCK as u64, 4 * BLOCK);
    let expected: Vec<u8> = [a.as_slice(), b.as_slice(), c.as_slice()].concat();
    assert_eq!(all, expected);
    // More slices than one pwritev call takes (IOV_MAX is 1024).
    let many: Vec<IoBuf> = (0..1100usize).map(|i| block((i % 251) as u8, 1)).collect();
    let slices: Vec<&[u8]> = many.iter().map(IoBuf::as_slice).collect();
    file.write_at(0, &slices).unwrap();
    let back = read(h, "v", 0, 1100 * BLOCK);
    for (i, chunk) in back.chunks(BLOCK).enumerate() {
        assert!(chunk.iter().all(|&x| x == (i % 251) as u8), "slice {i}");
    }
}

fn allocate_keeps_bytes_and_reads_zeros(h: &Harness) {
    let file = h.storage.create("p", h.options).unwrap();
    file.write_at(0, &[block(b'k', 1).as_slice()]).unwrap();
    file.allocate(0, 64 * BLOCK as u64).unwrap();
    assert_eq!(file.size().unwrap(), 64 * BLOCK as u64);
    let all = read(h, "p", 0, 64 * BLOCK);
    assert_eq!(&all[..BLOCK], &[b'k'; BLOCK][..]);
    assert!(all[BLOCK..].iter().all(|&b| b == 0));
    // Allocating inside the file never shrinks or changes it.
    file.allocate(0, BLOCK as u64).unwrap();
    assert_eq!(file.size().unwrap(), 64 * BLOCK as u64);
    assert_eq!(read(h, "p", 0, BLOCK), vec![b'k'; BLOCK]);
    file.sync_data().unwrap();
}

fn set_len_truncates_and_extends(h: &Harness) {
    let file = h.storage.create("t", h.options).unwrap();
    file.write_at(0, &[block(b'q', 4).as_slice()]).unwrap();
    file.set_len(BLOCK as u64).unwrap();
    assert_eq!(file.size().unwrap(), BLOCK as u64);
    file.set_len(3 * BLOCK as u64).unwrap();
    let all = read(h, "t", 0, 3 * BLOCK);
    assert_eq!(&all[..BLOCK], &[b'q'; BLOCK][..]);
    assert!(
        all[BLOCK..].iter().all(|&b| b == 0),
        "extension reads as zeros"
    );
}

fn reading_past_the_end_is_an_error(h: &Harness) {
    let file = h.storage.create("r", h.options).unwrap();
    file.write_at(0, &[block(1, 1).as_slice()]).unwrap();
    let mut buf = block(0, 2);
    match file.read_at(0, buf.as_mut_slice()) {
        Err(IoError::ReadPastEnd { file_len, len, .. }) => {
            assert_eq!(file_len, BLOCK as u64);
            assert_eq!(len, 2 * BLOCK);
        }
        other => panic!("expected ReadPastEnd, got {other:?}"),
    }
    if !h.options.direct {
        match file.read_vec(BLOCK as u64 / 2, BLOCK) {
            Err(IoError::ReadPastEnd { file_len, len, .. }) => {
                assert_eq!(file_len, BLOCK as u64);
                assert_eq!(len, BLOCK);
            }
            other => panic!("expected ReadPastEnd, got {other:?}"),
        }
        let tail = file.read_vec(BLOCK as u64 / 2, BLOCK / 2).unwrap();
        assert_eq!(tail, vec![1; BLOCK / 2]);
        assert!(file.read_vec(BLOCK as u64, 0).unwrap().is_empty());
    }
}

fn names_create_open_rename_remove_list(h: &Harness) {
    let s = &h.storage;
    s.create("one", h.options).unwrap();
    s.create("two", h.options).unwrap();
    let exist = rustix::io::Errno::EXIST.raw_os_error();
    let noent = rustix::io::Errno::NOENT.raw_os_error();
    assert_eq!(os_error(s.create("one", h.options)), exist);
    assert_eq!(os_error(s.open("nope", h.options)), noent);
    s.rename("one", "three").unwrap();
    assert_eq!(s.list().unwrap(), ["three", "two"]);
    // Rename replaces an existing name atomically.
    let three = s.open("three", h.options).unwrap();
    three.write_at(0, &[block(9, 1).as_slice()]).unwrap();
    s.rename("three", "two").unwrap();
    assert_eq!(s.list().unwrap(), ["two"]);
    assert_eq!(read(h, "two", 0, BLOCK), vec![9; BLOCK]);
    s.sync_dir().unwrap();
    s.remove("two").unwrap();
    assert!(s.list().unwrap().is_empty());
    assert_eq!(os_error(s.remove("two")), noent);
    // An unlinked file stays usable through a handle opened before.
    three
        .write_at(BLOCK as u64, &[block(8, 1).as_slice()])
        .unwrap();
    let mut buf = block(0, 1);
    three.read_at(BLOCK as u64, buf.as_mut_slice()).unwrap();
    assert_eq!(buf.as_slice(), &[8; BLOCK][..]);
    s.sync_dir().unwrap();
}

fn bad_names_are_refused(h: &Harness) {
    for name in ["", ".", "..", "a/b", "../escape", "LOCK"] {
        assert!(
            matches!(
                h.storage.create(name, h.options),
                Err(IoError::InvalidName { .. })
            ),
            "{name:?}"
        );
    }
}

fn the_lock_is_exclusive_and_named(h: &Harness) {
    let lock = h.storage.lock().unwrap();
    for other in [h.storage.clone(), (h.reopen)()] {
        match other.lock() {
            Err(IoError::Locked {
                lock_file, holder, ..
            }) => {
                assert!(lock_file.ends_with("LOCK"), "{}", lock_file.display());
                let err = other.lock().unwrap_err().to_string();
                assert!(
                    err.contains("LOCK"),
                    "the message names the lock file: {err}"
                );
                if h.storage.backend() != Backend::Sim {
                    assert_eq!(holder, Some(std::process::id()));
                }
            }
            other => panic!("expected Locked, got {other:?}"),
        }
    }
    assert!(
        !h.storage.list().unwrap().iter().any(|n| n == "LOCK"),
        "the lock file is not listed"
    );
    drop(lock);
    let _again = (h.reopen)().lock().unwrap();
}

fn a_closed_file_refuses_everything(h: &Harness) {
    let file = h.storage.create("c", h.options).unwrap();
    file.close();
    let mut buf = block(0, 1);
    let closed = |r: Result<(), IoError>| matches!(r, Err(IoError::Closed { .. }));
    assert!(closed(file.write_at(0, &[buf.as_slice()])));
    assert!(closed(file.read_at(0, buf.as_mut_slice())));
    // A vector is not aligned for O_DIRECT: `read_vec` is for buffered files.
    if !h.options.direct {
        for len in [0, 1] {
            let read = file.read_vec(0, len);
            assert!(matches!(read, Err(IoError::Closed { .. })), "{read:?}");
        }
    }
    assert!(closed(file.sync_data()));
    assert!(closed(file.allocate(0, 1)));
    assert!(closed(file.set_len(0)));
    assert!(closed(file.drop_cache()));
    assert!(matches!(file.size(), Err(IoError::Closed { .. })));
    let mut queue = h.storage.queue(2).unwrap();
    let queued = queue
        .push_write(1, &file, 0, block(1, 1), false)
        .and_then(|()| {
            let mut done = Vec::new();
            queue.wait(1, &mut done)?;
            done.pop().map_or(Ok(()), |c| c.result)
        });
    assert!(
        matches!(queued, Err(IoError::Closed { .. })),
        "a closed file cannot be queued: {queued:?}"
    );
}

fn wait_all(queue: &mut dyn IoQueue, n: usize) -> Vec<Completion> {
    let mut done = Vec::new();
    while done.len() < n {
        let before = done.len();
        queue.wait(n - done.len(), &mut done).unwrap();
        assert!(
            done.len() > before || queue.in_flight() > 0,
            "wait returned nothing with nothing in flight"
        );
    }
    assert_eq!(queue.in_flight(), 0);
    done
}

fn a_queued_batch_completes_every_operation(h: &Harness) {
    let file = h.storage.create("q", h.options).unwrap();
    file.allocate(0, 16 * BLOCK as u64).unwrap();
    let mut queue = h.storage.queue(4).unwrap();
    // More writes than the depth: pushing waits for room.
    for i in 0..8u64 {
        let buf = block(i as u8 + 1, 1);
        queue
            .push_write(i, &file, i * BLOCK as u64, buf, false)
            .unwrap();
    }
    queue.push_sync(100, &file).unwrap();
    for i in 8..12u64 {
        let buf = block(i as u8 + 1, 1);
        queue
            .push_write(i, &file, i * BLOCK as u64, buf, true)
            .unwrap();
    }
    queue.submit().unwrap();
    let done = wait_all(&mut *queue, 13);
    let mut tokens: Vec<u64> = done.iter().map(|c| c.token).collect();
    tokens.sort_unstable();
    assert_eq!(tokens, (0..12).chain([100]).collect::<Vec<_>>());
    for c in &done {
        assert!(c.result.is_ok(), "token {}: {:?}", c.token, c.result);
        assert_eq!(
            c.buf.is_some(),
            c.token != 100,
            "writes hand their buffer back"
        );
    }
    let all = read(h, "q", 0, 12 * BLOCK);
    for (i, chunk) in all.chunks(BLOCK).enumerate() {
        assert!(chunk.iter().all(|&b| b == i as u8 + 1), "block {i}");
    }
}

fn dropping_a_queue_finishes_its_writes(h: &Harness) {
    let file = h.storage.create("d", h.options).unwrap();
    {
        let mut queue = h.storage.queue(8).unwrap();
        for i in 0..8u64 {
            let buf = block(0xa0 + i as u8, 1);
            queue
                .push_write(i, &file, i * BLOCK as u64, buf, false)
                .unwrap();
        }
        queue.submit().unwrap();
    }
    let all = read(h, "d", 0, 8 * BLOCK);
    for (i, chunk) in all.chunks(BLOCK).enumerate() {
        assert!(chunk.iter().all(|&b| b == 0xa0 + i as u8), "block {i}");
    }
}

fn misaligned_io_follows_the_open_mode(h: &Harness) {
    let file = h.storage.create("m", h.options).unwrap();
    let data = block(5, 2);
    let odd = &data.as_slice()[1..BLOCK + 1];
    let short = &data.as_slice()[..100];
    let attempts = [
        file.write_at(1, &[block(5, 1).as_slice()]),
        file.write_at(0, &[short]),
        file.write_at(0, &[odd]),
    ];
    let mut queue = h.storage.queue(2).unwrap();
    let queued = queue.push_write(1, &file, 512, block(5, 1), false);
    if h.options.direct {
        for (i, attempt) in attempts.into_iter().enumerate() {
            assert!(
                matches!(attempt, Err(IoError::Misaligned { .. })),
                "attempt {i}: {attempt:?}"
            );
        }
        assert!(
            matches!(queued, Err(IoError::Misaligned { .. })),
            "{queued:?}"
        );
        let mut buf = vec![0u8; 100];
        assert!(matches!(
            file.read_at(0, &mut buf),
            Err(IoError::Misaligned { .. })
        ));
    } else {
        for (i, attempt) in attempts.into_iter().enumerate() {
            attempt.unwrap_or_else(|e| panic!("attempt {i}: {e}"));
        }
        queued.unwrap();
        let done = wait_all(&mut *queue, 1);
        assert!(done[0].result.is_ok());
    }
}

macro_rules! conformance {
    ($($backend:ident => $make:expr;)*) => {
        $(
            mod $backend {
                use super::*;

                fn harness() -> Harness {
                    $make
                }

                #[test]
                fn writes_read_back() {
                    super::writes_read_back(&harness())
                }
                #[test]
                fn dropping_the_cache_keeps_what_was_written() {
                    super::dropping_the_cache_keeps_what_was_written(&harness())
                }
                #[test]
                fn vectored_writes_land_in_order() {
                    super::vectored_writes_land_in_order(&harness())
                }
                #[test]
                fn allocate_keeps_bytes_and_reads_zeros() {
                    super::allocate_keeps_bytes_and_reads_zeros(&harness())
                }
                #[test]
                fn set_len_truncates_and_extends() {
                    super::set_len_truncates_and_extends(&harness())
                }
                #[test]
                fn reading_past_the_end_is_an_error() {
                    super::reading_past_the_end_is_an_error(&harness())
                }
                #[test]
                fn names_create_open_rename_remove_list() {
                    super::names_create_open_rename_remove_list(&harness())
                }
                #[test]
                fn bad_names_are_refused() {
                    super::bad_names_are_refused(&harness())
                }
                #[test]
                fn the_lock_is_exclusive_and_named() {
                    super::the_lock_is_exclusive_and_named(&harness())
                }
                #[test]
                fn a_closed_file_refuses_everything() {
                    super::a_closed_file_refuses_everything(&harness())
                }
                #[test]
                fn a_queued_batch_completes_every_operation() {
                    super::a_queued_batch_completes_every_operation(&harness())
                }
                #[test]
                fn dropping_a_queue_finishes_its_writes() {
                    super::dropping_a_queue_finishes_its_writes(&harness())
                }
                #[test]
                fn misaligned_io_follows_the_open_mode() {
                    super::misaligned_io_follows_the_open_mode(&harness())
                }
            }
        )*
    };
}

conformance! {
    portable => real(BackendChoice::Portable, FileOptions::BUFFERED);
    portable_direct => real(BackendChoice::Portable, FileOptions::DIRECT);
    uring_buffered => real(BackendChoice::Uring, FileOptions::BUFFERED);
    uring_direct => real(BackendChoice::Uring, FileOptions::DIRECT);
    sim_buffered => sim(FileOptions::BUFFERED);
    sim_direct => sim(FileOptions::DIRECT);
}

/// A refused io_uring falls back to portable and says why. The refusal is
/// forced with the environment variable, in a child process so that no other
/// test sees it.
#[test]
fn a_refused_uring_falls_back_and_says_why() {
    const NAME: &str = "a_refused_uring_falls_back_and_says_why";
    if std::env::var_os(wal_io::uring::DISABLE_ENV).is_none() {
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", NAME, "--nocapture"])
            .env(wal_io::uring::DISABLE_ENV, "1")
            .status()
            .unwrap();
        assert!(status.success(), "the child run failed");
        return;
    }
    let h = real_unchecked(BackendChoice::Uring, FileOptions::BUFFERED);
    assert_eq!(h.storage.backend(), Backend::Portable);
    let reason = h
        .storage
        .fallback_reason()
        .expect("a fallback names its reason");
    assert!(reason.contains(wal_io::uring::DISABLE_ENV), "{reason}");
    // The fallback is a working backend.
    a_queued_batch_completes_every_operation(&h);
}
