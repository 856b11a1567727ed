//! Three `walkv` processes on loopback: clients write and read while the
//! test `kill -9`s the leader several times, then a follower. A new leader
//! serves; every acknowledged write is readable afterwards on every node;
//! and each key's recorded history is linearizable. Also: a node killed
//! while the leader purged its log catches up by snapshot, and serves.

mod common;
#[path = "common/linearizable.rs"]
mod linearizable;
#[path = "common/procs.rs"]
mod procs;
#[path = "common/workload.rs"]
mod workload;

use std::time::{Duration, Instant};

use linearizable::{Event, Op, check};
use procs::{Answer, Client, Cluster};
use workload::{Workload, wait_for};

#[test]
fn leader_kills_lose_no_acknowledged_write_and_histories_are_linearizable() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), 3, 300, |_, http| http);
    let workload = Workload::start(&cluster);
    let mut failovers = Vec::new();
    for round in 0..4 {
        std::thread::sleep(Duration::from_millis(1500));
        let leader = cluster.leader(Duration::from_secs(60));
        // Three leader kills, then a follower's.
        let victim = if round < 3 { leader } else { leader % 3 + 1 };
        cluster.node_mut(victim).kill9();
        let killed = workload.now_us();
        failovers.push(workload.next_ack_after(killed, "the kill"));
        std::thread::sleep(Duration::from_millis(500));
        cluster.node_mut(victim).start();
    }
    std::thread::sleep(Duration::from_millis(1500));
    eprintln!("first acknowledged write after each kill: {failovers:?}");
    workload.stop_and_verify(&cluster);
    for id in 1..=3 {
        assert!(
            cluster.node_mut(id).stop().success(),
            "node {id} did not stop cleanly"
        );
    }
}

#[test]
fn a_node_behind_a_purged_log_catches_up_by_snapshot_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), 3, 50, |_, http| http);
    let leader = cluster.leader(Duration::from_secs(60));
    let behind = leader % 3 + 1;
    cluster.node_mut(behind).kill9();
    let mut c = Client::new(cluster.node(leader).client_addr());
    for i in 0..400 {
        let (k, v) = (format!("s{i}"), format!("v{i}"));
        assert_eq!(c.command(&["SET", &k, &v]), Answer::Status("OK".into()));
    }
    // Snapshots are built in the background; the purge follows them.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let purged = cluster.node(leader).status("purged");
        if purged
            .as_deref()
            .and_then(|p| p.parse::<u64>().ok())
            .is_some_and(|p| p > 100)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the leader purged only to {purged:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    cluster.node_mut(behind).start();
    wait_for(&cluster, behind, "s399", "v399");
    let installed = cluster.node(behind).status("snapshot").unwrap();
    assert_ne!(installed, "none", "caught up without a snapshot");
    // Its log says so, and names the leaders it saw.
    let logged = std::fs::read_to_string(cluster.node(behind).dir.with_extension("log")).unwrap();
    for said in ["installed a snapshot from the leader", "raft", "term="] {
        assert!(logged.contains(said), "{said:?} not in the log: {logged}");
    }
    let mut f = Client::new(cluster.node(behind).client_addr());
    assert_eq!(f.command(&["READONLY"]), Answer::Status("OK".into()));
    assert_eq!(f.command(&["DBSIZE"]), Answer::Int(400));
    // It serves as the leader too. A transfer is an offer: the target
    // takes it once it has the leader's last entry.
    let deadline = Instant::now() + Duration::from_secs(60);
    while cluster.leader(Duration::from_secs(60)) != behind {
        assert!(Instant::now() < deadline, "node {behind} never took over");
        let from = cluster.leader(Duration::from_secs(60));
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_walkv"))
            .args(["admin", "--node", &cluster.node(from).http.to_string()])
            .args(["transfer-leader", &behind.to_string()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let mut f = Client::new(cluster.node(behind).client_addr());
    assert_eq!(f.command(&["INCR", "counter"]), Answer::Int(1));
    assert_eq!(f.command(&["GET", "s0"]), Answer::Value(Some("v0".into())));
}

#[test]
fn the_checker_accepts_overlaps_and_rejects_stale_reads() {
    let ev = |op: Op, invoked: u64, answered: Option<u64>| Event {
        op,
        invoked,
        answered,
    };
    let w = |v: &str| Op::Write(v.to_owned());
    let r = |v: Option<&str>| Op::Read(v.map(str::to_owned));
    // A read overlapping a write may see either value.
    assert!(check(&[ev(w("a"), 0, Some(10)), ev(r(None), 5, Some(6))]));
    assert!(check(&[
        ev(w("a"), 0, Some(10)),
        ev(r(Some("a")), 5, Some(6))
    ]));
    // A read after an acknowledged write must see it (or a later one).
    assert!(!check(&[
        ev(w("a"), 0, Some(10)),
        ev(r(None), 11, Some(12))
    ]));
    assert!(!check(&[
        ev(w("a"), 0, Some(10)),
        ev(w("b"), 11, Some(20)),
        ev(r(Some("a")), 21, Some(22)),
    ]));
    // Once a read saw the new value, a later read may not see the old.
    assert!(!check(&[
        ev(w("a"), 0, Some(100)),
        ev(r(Some("a")), 10, Some(20)),
        ev(r(None), 30, Some(40)),
    ]));
    // A write with an unknown outcome may have happened, late, or never.
    assert!(check(&[
        ev(w("a"), 0, None),
        ev(r(Some("a")), 50, Some(60))
    ]));
    assert!(check(&[ev(w("a"), 0, None), ev(r(None), 50, Some(60))]));
    // But not twice: seen, then gone with nothing else written.
    assert!(!check(&[
        ev(w("a"), 0, None),
        ev(r(Some("a")), 50, Some(60)),
        ev(r(None), 70, Some(80)),
    ]));
    // A value nobody wrote.
    assert!(!check(&[ev(r(Some("z")), 0, Some(1))]));
}
