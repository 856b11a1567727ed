//! A single-node server on a simulated disk: clients write while the
//! disk loses power (every unsynced change lost); every write answered
//! `OK` is there after a restart on what the disk kept. And a write whose
//! sync fails is never answered `OK`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Running;
use wal_io::Op;
use wal_io::sim::{CrashMode, Fault, FaultError, SimDisk};

const CLIENTS: usize = 8;

/// `SET key value` on a raw connection: the reply's first line, or
/// `None` if the connection failed.
fn set(conn: &mut (BufReader<TcpStream>, TcpStream), key: &str, value: &str) -> Option<String> {
    let frame = format!(
        "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{value}\r\n",
        key.len(),
        value.len()
    );
    conn.1.write_all(frame.as_bytes()).ok()?;
    let mut line = String::new();
    (conn.0.read_line(&mut line).ok()? > 0).then_some(line)
}

fn connect(addr: SocketAddr) -> (BufReader<TcpStream>, TcpStream) {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    (BufReader::new(s.try_clone().unwrap()), s)
}

/// Writes from [`CLIENTS`] connections until the disk is crashed under
/// them; the keys answered `OK`.
fn write_until_crash(server: &Running, disk: &SimDisk, mode: CrashMode) -> Vec<(String, String)> {
    let acked = Arc::new(Mutex::new(Vec::new()));
    let crashed = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|w| {
            let (acked, crashed, addr) = (Arc::clone(&acked), Arc::clone(&crashed), server.addr);
            std::thread::spawn(move || {
                let mut conn = connect(addr);
                for n in 0.. {
                    let (key, value) = (format!("k{w}-{n}"), format!("v{w}-{n}"));
                    match set(&mut conn, &key, &value).as_deref() {
                        Some("+OK\r\n") => acked.lock().unwrap().push((key, value)),
                        // The disk is gone: errors and closed connections.
                        _ if crashed.load(Ordering::SeqCst) => return,
                        other => panic!("SET {key} before the crash: {other:?}"),
                    }
                }
            })
        })
        .collect();
    // Crash with writes in flight, after enough were answered.
    while acked.lock().unwrap().len() < 300 {
        std::thread::sleep(Duration::from_millis(1));
    }
    crashed.store(true, Ordering::SeqCst);
    disk.crash(mode);
    for c in clients {
        c.join().unwrap();
    }
    std::mem::take(&mut *acked.lock().unwrap())
}

#[test]
fn every_write_answered_ok_survives_a_power_loss() {
    for (seed, mode) in [
        (1, CrashMode::LoseAll),
        (2, CrashMode::KeepPrefix),
        (3, CrashMode::TornWrite),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let disk = SimDisk::new(seed);
        let storage = disk.storage();
        let server = Running::start_with(dir.path(), move |c| c.storage = Some(storage)).unwrap();
        let acked = write_until_crash(&server, &disk, mode);
        // The server stops on its failed disk; how it ends is its own.
        let _ = server.stop_outcome();

        let storage = disk.storage();
        let server = Running::start_with(dir.path(), move |c| c.storage = Some(storage)).unwrap();
        let mut c = server.client();
        for (key, value) in &acked {
            let got: Option<String> = redis::cmd("GET").arg(key).query(&mut c).unwrap();
            assert_eq!(
                got.as_deref(),
                Some(value.as_str()),
                "{mode:?}: {key} was answered OK and then lost"
            );
        }
        server.stop();
    }
}

#[test]
fn a_write_whose_sync_fails_is_not_answered_ok() {
    let dir = tempfile::tempdir().unwrap();
    let disk = SimDisk::new(7);
    let storage = disk.storage();
    let server = Running::start_with(dir.path(), move |c| c.storage = Some(storage)).unwrap();
    let mut conn = connect(server.addr);
    assert_eq!(set(&mut conn, "before", "1").as_deref(), Some("+OK\r\n"));
    let next = disk.op_count(Op::SyncData) + 1;
    disk.inject(Fault::from_then_on(Op::SyncData, next, FaultError::Eio));
    let answer = set(&mut conn, "after", "2");
    assert!(
        answer.as_deref().is_none_or(|a| a.starts_with('-')),
        "a write whose sync failed was answered {answer:?}"
    );
    let _ = server.stop_outcome();
}
