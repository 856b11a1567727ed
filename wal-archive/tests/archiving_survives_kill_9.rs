//! A child process writes a store while an archiver ships it; the parent
//! kills it with SIGKILL at random moments, over and over, the store and
//! the archive carrying on from where they were. After each kill: nothing
//! was purged that the archive does not hold (the local log and the archive
//! together cover every LSN since the oldest base backup), and a restore
//! of the archive's latest moment holds exactly what the writes up to it
//! put. The child is this test binary, re-run with an environment
//! variable naming its role.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::batches::{batch, contents, expected, last_of, options};
use wal_archive::{Archive, Archiver, Target, restore};
use wal_engine::PurgeHold;
use wal_kv::{Durability, Options, Store};

const CHILD_ENV: &str = "WAL_ARCHIVE_KILL_CHILD";
const CYCLES_ENV: &str = "WAL_ARCHIVE_KILL_CYCLES";
const CYCLES_DEFAULT: u64 = 12;

/// The child: archives while it writes, printing each acknowledged batch.
fn child(dir: &Path, archive: &str) {
    let hold = PurgeHold::new();
    let store = Store::open(dir, options(&hold)).unwrap();
    let archiver = Archiver::new(dir, Archive::open(archive).unwrap(), hold, 2).unwrap();
    let _running = archiver.spawn(Duration::from_millis(5));
    let mut s = last_of(&store);
    let mut out = std::io::stdout();
    loop {
        s += 1;
        store.write(&batch(s), Durability::Sync).unwrap();
        if writeln!(out, "{s}").and_then(|()| out.flush()).is_err() {
            std::process::exit(1);
        }
    }
}

/// LSN ranges `first..next` of the segments in `names`, given each one's
/// successor: a segment ends where the next begins (the last: at `end`).
fn covered(mut starts: Vec<u64>, end: u64) -> Vec<(u64, u64)> {
    starts.sort_unstable();
    starts.dedup();
    let mut out = Vec::new();
    for (i, &s) in starts.iter().enumerate() {
        out.push((s, starts.get(i + 1).copied().unwrap_or(end)));
    }
    out
}

#[test]
fn archiving_survives_kill_9() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        let (dir, archive) = spec.split_once('|').unwrap();
        child(Path::new(dir), archive);
        return;
    }
    let cycles = std::env::var(CYCLES_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CYCLES_DEFAULT);
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (dir, archive_dir) = (work.path().join("store"), work.path().join("archive"));
    std::fs::create_dir(&dir).unwrap();
    let archive_url = archive_dir.to_str().unwrap().to_owned();
    let mut acked = 0;
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64 ^ cycles;
    let mut restored_any = false;
    for cycle in 0..cycles {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "archiving_survives_kill_9", "--nocapture"])
            .env(CHILD_ENV, format!("{}|{archive_url}", dir.display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| l.trim().parse::<u64>().ok())
                .max()
                .unwrap_or(0)
        });
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(50 + rng % 250));
        child.kill().unwrap();
        child.wait().unwrap();
        acked = acked.max(reader.join().unwrap());
        let at = format!("cycle {cycle}");

        // The store: everything acknowledged, nothing half.
        let hold = PurgeHold::new();
        let store = Store::open(&dir, options(&hold)).unwrap();
        let last = last_of(&store);
        assert!(
            last >= acked,
            "{at}: acknowledged {acked}, the store holds {last}"
        );
        assert_eq!(contents(&store), expected(last), "{at}: the store");
        let local_first = store.log().first_lsn();
        let local_next = store.log().appended_lsn() + 1;
        store.close().unwrap();
        acked = last;

        // Nothing purged unarchived: from the oldest base backup on, every
        // LSN is in the local log or in the archive.
        let archive = Archive::open(&archive_url).unwrap();
        let bases = archive.bases().unwrap();
        let segments: Vec<u64> = archive
            .segments()
            .unwrap()
            .iter()
            .map(|n| wal_engine::parse_segment_name(n).unwrap())
            .collect();
        if let Some(&oldest) = bases.first() {
            let mut want = oldest + 1;
            if want < local_first {
                for (first, next) in covered(segments.clone(), local_first) {
                    if first <= want && want < next {
                        want = next;
                    }
                }
            }
            assert!(
                want >= local_first,
                "{at}: LSNs {want}..{local_first} are neither archived nor local \
                 (base {oldest}, archived segments {segments:?})"
            );
        } else {
            assert!(
                local_first == 1 || segments.first() == Some(&1),
                "{at}: the log starts at {local_first} without a base backup or archive"
            );
        }

        // The archive's latest moment restores exactly.
        if !bases.is_empty() && !segments.is_empty() {
            let to = work.path().join(format!("restored-{cycle}"));
            match restore(&archive, &to, Target::Latest) {
                Ok(done) => {
                    assert!(done.last_lsn < local_next, "{at}: {done:?}");
                    let store = Store::open(&to, Options::default()).unwrap();
                    assert_eq!(contents(&store), expected(done.last_lsn), "{at}: restored");
                    store.close().unwrap();
                    restored_any = true;
                }
                // The newest segments may not reach past the newest base yet.
                Err(wal_archive::ArchiveError::Target(_)) => {}
                Err(e) => panic!("{at}: restore: {e}"),
            }
        }
    }
    assert!(acked > 500, "only {acked} batches in {cycles} cycles");
    assert!(restored_any, "no cycle had an archive to restore");
}
