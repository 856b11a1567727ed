//! `dump --follow` next to the process that holds the log: it shows the
//! records already there, then each new one as it is written, across
//! segment switches, in LSN order and exactly once.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{record, small_segments};

#[test]
fn new_records_appear_in_order_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = wal_engine::Wal::open(dir.path(), small_segments()).unwrap();
    for lsn in 1..=50 {
        wal.commit(&record(lsn)).unwrap();
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_walctl"))
        .args([
            "dump",
            dir.path().to_str().unwrap(),
            "--follow",
            "--json",
            "--from",
            "40",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let next = |rx: &mpsc::Receiver<String>, want: u64| {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no line for LSN {want}"));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["lsn"], want, "{line}");
        assert_eq!(v["bytes"], record(want).len(), "{line}");
    };
    // What was there when it started...
    for want in 40..=50 {
        next(&rx, want);
    }
    // ...then what is written while it follows: enough to fill several
    // 64 KiB segments.
    let last = 1200;
    let segments = common::segments(dir.path()).len();
    for lsn in 51..=last {
        wal.commit(&record(lsn)).unwrap();
    }
    assert!(common::segments(dir.path()).len() > segments + 2);
    let mut want = 51;
    while want <= last {
        next(&rx, want);
        want += 1;
    }
    // Nothing more, nothing twice.
    assert!(rx.recv_timeout(Duration::from_millis(500)).is_err());
    child.kill().unwrap();
    child.wait().unwrap();
    drop(wal);
}
