//! A child process writes batches to the store through a real backend and
//! reports each acknowledged one to its parent, which kills it with SIGKILL at
//! a random moment, reopens the store and checks that every acknowledged
//! batch is there, whole, and nothing after the last one that survived. The
//! memtable is tiny, so kills also land in checkpoints and compactions. The
//! child is this test binary, re-run with an environment variable naming
//! its role.

use std::io::{BufRead, BufReader, Write};
use std::ops::Bound;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wal_io::BackendChoice;
use wal_kv::{Durability, Options, Store, WriteBatch};

const CHILD_ENV: &str = "WAL_KV_KILL_TEST_CHILD";
const CYCLES_ENV: &str = "WAL_KV_KILL_CYCLES";
/// Kill cycles per backend in a default run (the CI size).
const CYCLES_DEFAULT: u64 = 60;
const WRITERS: u32 = 3;
/// Keys per writer; batch `s` sets keys 3s, 3s+1 and 3s+2 (mod this).
const KEYS: u64 = 64;

fn options() -> Options {
    let mut o = Options::default();
    o.memtable_bytes_max = 16 << 10;
    o.block_bytes = 1024;
    o.compaction_trigger = 2;
    o.block_cache_bytes = 64 << 10;
    o.log.segment_bytes = 256 << 10;
    o.log.queue_bytes_max = 64 << 10;
    o.log.record_bytes_max = 16 << 10;
    o
}

fn open(dir: &Path, backend: &str) -> Store {
    let choice = match backend {
        "uring" => BackendChoice::Uring,
        _ => BackendChoice::Portable,
    };
    Store::open_with(wal_io::open_dir(dir, choice).unwrap(), options()).unwrap()
}

fn last_key(w: u32) -> Vec<u8> {
    format!("w{w}/last").into_bytes()
}

fn key(w: u32, i: u64) -> Vec<u8> {
    format!("w{w}/k{i:02}").into_bytes()
}

/// What batch `s` of writer `w` puts in key slot `j` (0..3).
fn value(w: u32, s: u64, j: u64) -> Vec<u8> {
    format!("{w}:{s}:{j}:{}", "x".repeat((s % 50) as usize)).into_bytes()
}

fn batch(w: u32, s: u64) -> WriteBatch {
    let mut b = WriteBatch::new();
    for j in 0..3 {
        b.put(key(w, (3 * s + j) % KEYS), value(w, s, j));
    }
    b.put(last_key(w), s.to_string());
    b
}

/// The value key slot `i` of writer `w` must hold once batches 1..=`last`
/// are applied: the newest batch that set it.
fn expected(w: u32, i: u64, last: u64) -> Option<Vec<u8>> {
    (last.saturating_sub(KEYS).max(1)..=last)
        .rev()
        .find_map(|s| {
            let j = (i + KEYS - (3 * s) % KEYS) % KEYS;
            (j < 3).then(|| value(w, s, j))
        })
}

fn last_of(store: &Store, w: u32) -> u64 {
    store
        .get(&last_key(w))
        .unwrap()
        .map_or(0, |v| std::str::from_utf8(&v).unwrap().parse().unwrap())
}

/// The child: each writer thread goes on from its last batch in the store,
/// writing durably and printing `writer seq` once acknowledged.
fn child(dir: &Path, backend: &str) {
    let store = Arc::new(open(dir, backend));
    let out = Arc::new(Mutex::new(std::io::stdout()));
    for w in 0..WRITERS {
        let (store, out) = (store.clone(), out.clone());
        std::thread::spawn(move || {
            let fail = |what: String| -> ! {
                eprintln!("child: {what}");
                std::process::exit(1)
            };
            let mut s = last_of(&store, w);
            loop {
                s += 1;
                if let Err(e) = store.write(&batch(w, s), Durability::Sync) {
                    fail(format!("write {w} {s}: {e}"));
                }
                let mut out = out.lock().unwrap();
                if writeln!(out, "{w} {s}").and_then(|()| out.flush()).is_err() {
                    fail("stdout closed".to_owned());
                }
            }
        });
    }
    loop {
        std::thread::park();
    }
}

fn check(store: &Store, acked: &mut [u64], at: &str) {
    for w in 0..WRITERS {
        let last = last_of(store, w);
        let wi = w as usize;
        assert!(
            last >= acked[wi],
            "{at}: writer {w} acknowledged {}, store holds {last}",
            acked[wi]
        );
        let mut want = Vec::new();
        for i in 0..KEYS {
            let got = store.get(&key(w, i)).unwrap();
            let exp = expected(w, i, last);
            assert_eq!(
                got.as_deref(),
                exp.as_deref(),
                "{at}: writer {w} key {i} after batch {last}"
            );
            if let Some(v) = exp {
                want.push((key(w, i), v));
            }
        }
        let lo = format!("w{w}/k").into_bytes();
        let hi = format!("w{w}/l").into_bytes();
        let scanned: Vec<(Vec<u8>, Vec<u8>)> = store
            .scan(Bound::Included(&lo[..]), Bound::Excluded(&hi[..]))
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        assert_eq!(scanned, want, "{at}: writer {w} scan");
        // Whatever survived counts as acknowledged from now on.
        acked[wi] = last;
    }
}

fn kill_cycles(backend: &str) {
    let cycles = std::env::var(CYCLES_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CYCLES_DEFAULT);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut acked = vec![0u64; WRITERS as usize];
    let mut rng = 0x2545_f491_4f6c_dd1du64 ^ cycles;
    let mut checkpoints = 0;
    for cycle in 0..cycles {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                &format!("{backend}_store_survives_kill_9"),
                "--nocapture",
            ])
            .env(CHILD_ENV, format!("{}|{backend}", dir.path().display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut max = vec![0u64; WRITERS as usize];
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut parts = line.split_whitespace();
                if let (Some(Ok(w)), Some(Ok(s))) = (
                    parts.next().map(str::parse::<usize>),
                    parts.next().map(str::parse::<u64>),
                ) && w < max.len()
                {
                    max[w] = max[w].max(s);
                }
            }
            max
        });
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(10 + rng % 60));
        child.kill().unwrap();
        child.wait().unwrap();
        for (a, m) in acked.iter_mut().zip(reader.join().unwrap()) {
            *a = (*a).max(m);
        }
        let store = open(dir.path(), backend);
        check(&store, &mut acked, &format!("{backend}, cycle {cycle}"));
        checkpoints = checkpoints.max(store.stats().checkpoint_lsn);
        store.close().unwrap();
    }
    let total: u64 = acked.iter().sum();
    assert!(total > cycles, "the children wrote ({total} batches)");
    assert!(checkpoints > 0, "no checkpoint ever survived a kill");
}

fn run(backend: &str) {
    match std::env::var(CHILD_ENV) {
        Ok(spec) => {
            let (dir, which) = spec.split_once('|').unwrap();
            if which == backend {
                child(Path::new(dir), backend);
            }
        }
        Err(_) => kill_cycles(backend),
    }
}

#[test]
fn portable_store_survives_kill_9() {
    run("portable");
}

#[test]
fn uring_store_survives_kill_9() {
    run("uring");
}
