//! `walkv --config FILE`: the file's settings are used, flags win over
//! them, and a file that cannot be read, does not parse or names an
//! unknown setting stops `walkv` with one line saying so (exit code 2).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::free_port;

/// Starts walkv with `args`, waits for PONG on `port`, stops it.
fn serves(args: &[&str], port: u16) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_walkv"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let pong = loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(b"PING\r\n").unwrap();
            let mut buf = [0u8; 7];
            s.read_exact(&mut buf).unwrap();
            break buf;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("walkv {args:?} did not listen on {port}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(&pong, b"+PONG\r\n");
}

fn refuses(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_walkv"))
        .args(args)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn the_file_is_read_flags_win_and_bad_files_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (port, other) = (free_port(), free_port());
    let data = tmp.path().join("from-file");
    let file = tmp.path().join("walkv.toml");
    std::fs::write(
        &file,
        format!(
            "dir = {:?}\nbind = \"127.0.0.1\"\nport = {port}\nsync = \"everysec\"\n",
            data.to_str().unwrap()
        ),
    )
    .unwrap();
    let config = file.to_str().unwrap();
    serves(&["--config", config], port);
    assert!(data.is_dir(), "the file's data directory was used");
    serves(&["--config", config, "--port", &other.to_string()], other);

    let unknown = tmp.path().join("unknown.toml");
    std::fs::write(&unknown, "prot = 1\n").unwrap();
    let said = refuses(&["--config", unknown.to_str().unwrap()]);
    assert!(
        said.starts_with("walkv: ") && said.contains("prot"),
        "{said}"
    );
    let broken = tmp.path().join("broken.toml");
    std::fs::write(&broken, "port = \"many\"\n").unwrap();
    let said = refuses(&["--config", broken.to_str().unwrap()]);
    assert!(said.contains("broken.toml"), "{said}");
    let said = refuses(&["--config", tmp.path().join("none.toml").to_str().unwrap()]);
    assert!(said.contains("cannot read"), "{said}");
}
