//! The `walkv` binary as an operator runs it, with `redis-cli` (Debian's
//! `redis-tools`) as the client: commands, `--scan`, a pipe of many
//! commands; SIGTERM finishes cleanly and keeps every write; a second
//! `walkv` on the same directory exits with an error naming the lock.
//!
//! Without `redis-cli` on the PATH the test says so and passes, unless
//! `WAL_REQUIRE_REDIS_CLI=1` (which `.ci/run` sets after installing it).

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::free_port;

fn redis_cli_present() -> bool {
    let found = Command::new("redis-cli")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("WAL_REQUIRE_REDIS_CLI").as_deref() != Ok("1"),
            "redis-cli is required here: apt-get install redis-tools"
        );
        eprintln!("redis-cli not found (apt-get install redis-tools): skipped");
    }
    found
}

/// A running `walkv`, killed if the test fails before it is stopped (it
/// would otherwise outlive the test and hold its output open).
struct Walkv(Option<Child>);

impl Drop for Walkv {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn walkv(dir: &Path, port: u16) -> Walkv {
    let child = Command::new(env!("CARGO_BIN_EXE_walkv"))
        .args(["--dir", dir.to_str().unwrap(), "--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Walkv(Some(child))
}

fn wait_ready(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "walkv did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn terminate(mut server: Walkv) -> Output {
    let child = server.0.take().unwrap();
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn redis_cli_commands_scan_pipe_and_a_clean_sigterm() {
    if !redis_cli_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let server = walkv(&data, port);
    wait_ready(port);

    assert_eq!(cli(port, &["PING"]), "PONG\n");
    assert_eq!(cli(port, &["SET", "greeting", "hello world"]), "OK\n");
    assert_eq!(cli(port, &["GET", "greeting"]), "hello world\n");
    assert_eq!(cli(port, &["INCRBY", "n", "5"]), "5\n");
    assert_eq!(cli(port, &["MSET", "a", "1", "b", "2"]), "OK\n");
    assert_eq!(cli(port, &["MGET", "a", "missing", "b"]), "1\n\n2\n");
    assert_eq!(
        cli(port, &["NOSUCH"]).trim_end(),
        "ERR unknown command 'NOSUCH', with args beginning with:"
    );
    // A thousand commands through --pipe, then --scan sees every key.
    let mut pipe = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "--pipe"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let stdin = pipe.stdin.as_mut().unwrap();
        for i in 0..1000 {
            let (k, v) = (format!("bulk:{i:04}"), format!("{i}"));
            write!(
                stdin,
                "*3\r\n$3\r\nSET\r\n${}\r\n{k}\r\n${}\r\n{v}\r\n",
                k.len(),
                v.len()
            )
            .unwrap();
        }
    }
    let piped = pipe.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&piped.stdout);
    assert!(report.contains("errors: 0, replies: 1000"), "{report}");
    let scanned = cli(port, &["--scan", "--pattern", "bulk:*"]);
    assert_eq!(scanned.lines().count(), 1000);

    // A second server on the same directory: one clear line, non-zero.
    let second = walkv(&data, free_port())
        .0
        .take()
        .unwrap()
        .wait_with_output()
        .unwrap();
    assert!(!second.status.success());
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(said.contains("locked"), "{said}");

    // SIGTERM: a clean exit, and everything is there after a restart.
    let out = terminate(server);
    assert!(out.status.success(), "{out:?}");
    // The log says where it served, and that it stopped cleanly.
    let logged = String::from_utf8_lossy(&out.stderr);
    for said in ["serving", &format!("127.0.0.1:{port}"), "stopped cleanly"] {
        assert!(logged.contains(said), "{said:?} not in the log: {logged}");
    }
    let server = walkv(&data, port);
    wait_ready(port);
    assert_eq!(cli(port, &["GET", "bulk:0999"]), "999\n");
    assert_eq!(cli(port, &["DBSIZE"]), "1004\n");
    let out = terminate(server);
    assert!(out.status.success(), "{out:?}");
}
