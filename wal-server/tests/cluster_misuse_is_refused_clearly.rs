//! Misuse of cluster mode is refused with one clear line: a node without
//! an HTTP address, a data directory of the other mode or of another node,
//! an admin call to nowhere or with a malformed member, a write to the
//! state machine's own keys.

mod common;
#[path = "common/procs.rs"]
mod procs;

use std::process::Command;

use common::{Running, free_port};
use wal_server::ClusterConfig;

fn walkv(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_walkv"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn node(dir: &std::path::Path, id: u64) -> Result<Running, wal_server::ServerError> {
    let http = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    Running::start_with(dir, move |config| {
        config.http = Some(http);
        config.cluster = Some(ClusterConfig::new(id, http));
    })
}

#[test]
fn flags_and_admin_calls_that_cannot_work_are_refused() {
    let (code, err) = walkv(&["--node-id", "1"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--http"), "{err}");
    let (code, err) = walkv(&[
        "--node-id",
        "1",
        "--http",
        "127.0.0.1:1",
        "--snapshot-every",
        "0",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--snapshot-every"), "{err}");
    let dead = format!("127.0.0.1:{}", free_port());
    let (code, err) = walkv(&["admin", "--node", &dead, "status"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&dead), "{err}");
    let (code, err) = walkv(&["admin", "--node", &dead, "init", "1=nocomma"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("ID=PEER_ADDR,CLIENT_ADDR"), "{err}");
}

#[test]
fn a_directory_serves_one_mode_and_one_node() {
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("local");
    Running::start(&local).unwrap().stop();
    let err = node(&local, 1).unwrap_err().to_string();
    assert!(err.contains("holds no cluster node"), "{err}");

    let clustered = dir.path().join("node");
    node(&clustered, 1).unwrap().stop();
    let err = node(&clustered, 2).unwrap_err().to_string();
    assert!(err.contains("node 1's data, not node 2's"), "{err}");
    let err = Running::start(&clustered).unwrap_err().to_string();
    assert!(err.contains("--node-id 1"), "{err}");
    // Its own node id opens it again.
    node(&clustered, 1).unwrap().stop();
}

#[test]
fn a_single_node_cluster_serves_and_guards_its_own_keys() {
    let dir = tempfile::tempdir().unwrap();
    let http = free_port();
    let addr = format!("127.0.0.1:{http}").parse().unwrap();
    let server = Running::start_with(dir.path(), move |config| {
        config.http = Some(addr);
        config.cluster = Some(ClusterConfig::new(7, addr));
    })
    .unwrap();
    let (code, err) = walkv(&["admin", "--node", &format!("127.0.0.1:{http}"), "init"]);
    assert_eq!(code, 0, "{err}");
    let mut c = server.client();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query::<String>(&mut c)
        .is_err()
    {
        assert!(std::time::Instant::now() < deadline, "the node never led");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let err = common::err_text(
        redis::cmd("SET")
            .arg(b"\xffraft/state")
            .arg("x")
            .query::<String>(&mut c),
    );
    assert!(err.contains("reserved"), "{err}");
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
    assert_eq!(keys, ["k"], "the state machine's own keys are not data");
    let size: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(size, 1);
    // Observability: health, and the Raft and log figures in /metrics.
    let (code, body) = procs::http_get(http, "/health").unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("Leader"), "{body}");
    let (code, body) = procs::http_get(http, "/metrics").unwrap();
    assert_eq!(code, 200);
    for line in [
        "walkv_raft_is_leader 1",
        "walkv_raft_leader 7",
        "walkv_commands_total ",
    ] {
        assert!(body.contains(line), "{line} missing from {body}");
    }
    let fsyncs = body
        .lines()
        .find_map(|l| l.strip_prefix("walkv_wal_fsyncs_total "))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap();
    assert!(fsyncs > 0, "a durable write without an fsync");
    assert!(body.contains("walkv_raft_write_seconds_count "), "{body}");
    server.stop();
}

#[test]
fn a_node_bound_to_every_address_names_the_one_others_dial() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let any_http = format!("0.0.0.0:{}", free_port());
    let (code, err) = walkv(&[
        "--dir",
        data.to_str().unwrap(),
        "--node-id",
        "1",
        "--http",
        &any_http,
    ]);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("--advertise-http"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let (code, err) = walkv(&["--advertise-client", "example:1"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--node-id"), "{err}");

    let start = |http_port: u16, advertise_http: &str| {
        let (advertise_http, data) = (advertise_http.to_owned(), data.clone());
        Running::start_with(&data, move |config| {
            let http = format!("0.0.0.0:{http_port}").parse().unwrap();
            config.listen = "0.0.0.0:0".parse().unwrap();
            config.http = Some(http);
            let mut cluster = ClusterConfig::new(1, http);
            cluster.advertise_http = Some(advertise_http);
            cluster.advertise_client = Some("walkv.example:6379".into());
            config.cluster = Some(cluster);
        })
    };
    let port = free_port();
    let err = start(port, "no-port").unwrap_err().to_string();
    assert!(err.contains("--advertise-http"), "{err}");
    let server = start(port, &format!("127.0.0.1:{port}")).unwrap();
    let (code, err) = walkv(&["admin", "--node", &format!("127.0.0.1:{port}"), "init"]);
    assert_eq!(code, 0, "{err}");
    let want = format!("member 1 voter 127.0.0.1:{port} walkv.example:6379");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, status) = procs::http_get(port, "/admin/status").unwrap();
        if status.contains(&want) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{status}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    server.stop();
}

#[test]
fn a_node_restarted_with_other_addresses_is_told_the_cluster_knows_the_old() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("n1");
    let (port, http) = (free_port(), free_port());
    let http_addr = format!("127.0.0.1:{http}");
    let start = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_walkv"))
            .args(["--dir", data.to_str().unwrap(), "--port", &port.to_string()])
            .args(["--node-id", "1", "--http", &http_addr])
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let stop = |mut child: std::process::Child| {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        child.wait().unwrap();
        err
    };
    let first = start(&[]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while walkv(&["admin", "--node", &http_addr, "init"]).0 != 0 {
        assert!(std::time::Instant::now() < deadline, "init never succeeded");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    while !procs::http_get(http, "/admin/status").is_some_and(|(_, b)| b.contains("member 1 voter"))
    {
        assert!(std::time::Instant::now() < deadline, "no membership");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let said = stop(first);
    assert!(!said.contains("other addresses"), "{said}");
    let second = start(&["--advertise-client", "moved.example:6379"]);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let said = stop(second);
    assert!(
        said.contains("the cluster knows this node by other addresses"),
        "{said}"
    );
}
