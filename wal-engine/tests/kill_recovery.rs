//! T4: a child process commits records through a real backend (portable,
//! uring, and uring with the pipelined O_DIRECT writer) and reports
//! each acknowledged LSN to its parent, which kills it with SIGKILL at a
//! random moment, reopens the log and checks C1 and C2: every acknowledged
//! record is there, the log is a dense prefix of what was appended, and
//! every record holds exactly its bytes. The child is this test binary,
//! re-run with an environment variable naming its role.
// Test sizes and counts are small: casts between integer widths cannot truncate.
#![allow(clippy::cast_possible_truncation)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use wal_engine::{Options, Wal};
use wal_io::BackendChoice;

const CHILD_ENV: &str = "WAL_KILL_TEST_CHILD";
const CYCLES_ENV: &str = "WAL_KILL_CYCLES";
/// Kill cycles per backend in a default run (the CI size).
const CYCLES_DEFAULT: u64 = 200;

fn options(backend: &str) -> Options {
    let mut o = Options::default();
    // Small segments so kills land in rotations too.
    o.segment_bytes = 256 << 10;
    o.queue_bytes_max = 64 << 10;
    o.record_bytes_max = 4 << 10;
    // The pipelined O_DIRECT writer, several RWF_DSYNC writes in flight.
    o.direct_io = backend == "uring_direct";
    o
}

/// The record with LSN `lsn`: its length and bytes follow from the LSN, so
/// the parent knows what every LSN must hold.
fn record(lsn: u64) -> Vec<u8> {
    let len = (lsn * 7919 % 700) as usize;
    let seed = lsn.to_le_bytes();
    (0..len)
        .map(|i| seed[i % 8].wrapping_add(i as u8))
        .collect()
}

fn choice(name: &str) -> BackendChoice {
    match name {
        "uring" | "uring_direct" => BackendChoice::Uring,
        _ => BackendChoice::Portable,
    }
}

fn open(dir: &Path, backend: &str) -> (Wal, wal_engine::RecoveryReport) {
    let storage = wal_io::open_dir(dir, choice(backend)).unwrap();
    Wal::open_with(storage, options(backend)).unwrap()
}

/// The child: commit from several threads until killed, printing each
/// acknowledged LSN. Records are appended in LSN order under one lock so
/// each gets the bytes its LSN calls for.
fn child(dir: &Path, backend: &str) {
    let (wal, _) = open(dir, backend);
    let wal = Arc::new(wal);
    let next = Arc::new(std::sync::Mutex::new(()));
    let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    for _ in 0..4 {
        let (wal, next, out) = (wal.clone(), next.clone(), out.clone());
        std::thread::spawn(move || {
            // A failure must end the child, not just this thread.
            let fail = |what: String| -> ! {
                eprintln!("child: {what}");
                std::process::exit(1)
            };
            loop {
                let lsn = {
                    let _order = next.lock().unwrap();
                    let lsn = wal.appended_lsn() + 1;
                    match wal.append(&record(lsn)) {
                        Ok(got) if got == lsn => lsn,
                        other => fail(format!("append {lsn}: {other:?}")),
                    }
                };
                if let Err(e) = wal.wait_durable(lsn) {
                    fail(format!("wait {lsn}: {e}"));
                }
                let mut out = out.lock().unwrap();
                if writeln!(out, "{lsn}").and_then(|()| out.flush()).is_err() {
                    fail("stdout closed".to_owned());
                }
            }
        });
    }
    // Runs until the parent kills the process.
    loop {
        std::thread::park();
    }
}

fn kill_cycles(backend: &str) {
    let cycles = std::env::var(CYCLES_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CYCLES_DEFAULT);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut acked = 0u64;
    let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ cycles;
    for cycle in 0..cycles {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                &format!("{backend}_survives_kill_9"),
                "--nocapture",
            ])
            .env(CHILD_ENV, format!("{}|{backend}", dir.path().display()))
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
        });
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(5 + rng % 40));
        child.kill().unwrap();
        child.wait().unwrap();
        if let Some(max) = reader.join().unwrap() {
            acked = acked.max(max);
        }
        let (wal, report) = open(dir.path(), backend);
        let at = format!("{backend}, cycle {cycle}");
        assert!(
            report.next_lsn > acked,
            "{at}: acknowledged {acked}, recovered to {}",
            report.next_lsn - 1
        );
        let mut expect = report.first_lsn;
        for r in wal.reader(report.first_lsn).unwrap() {
            let r = r.unwrap();
            assert_eq!(r.lsn, expect, "{at}: not dense");
            assert!(
                r.data[..] == record(r.lsn)[..],
                "{at}: LSN {} holds other bytes",
                r.lsn
            );
            expect += 1;
        }
        assert_eq!(expect, report.next_lsn, "{at}");
        // Whatever survived counts as acknowledged from now on.
        acked = report.next_lsn - 1;
        drop(wal);
    }
    assert!(acked > cycles, "the children committed ({acked} records)");
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
fn portable_survives_kill_9() {
    run("portable");
}

#[test]
fn uring_survives_kill_9() {
    run("uring");
}

#[test]
fn uring_direct_survives_kill_9() {
    run("uring_direct");
}
