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

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use linearizable::{Event, Op, check};
use procs::{Answer, Client, Cluster};

const KEYS: u64 = 5;
const CLIENTS: u64 = 4;

/// Per-key histories and the unique keys whose writes were acknowledged.
#[derive(Default)]
struct Record {
    events: Vec<(String, Event)>,
    unique: Vec<(String, String)>,
}

struct Shared {
    start: Instant,
    stop: AtomicBool,
    /// Microseconds since the start of the last acknowledged write.
    last_ack_us: AtomicU64,
    record: Mutex<Record>,
}

impl Shared {
    fn now_us(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_micros()).unwrap()
    }
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// One client: random reads and writes of a few shared keys, and writes
/// of keys of its own, following redirects and moving on from dead
/// nodes. Every answered operation is recorded; a write whose outcome is
/// unknown is recorded without an answer.
fn client(w: u64, addrs: &[String], shared: &Shared) {
    let mut rng = 0x9e37_79b9_7f4a_7c15 ^ (w + 1);
    let mut at = usize::try_from(w).unwrap() % addrs.len();
    let mut c = Client::new(addrs[at].clone());
    let mut n = 0;
    while !shared.stop.load(Ordering::Relaxed) {
        n += 1;
        let roll = xorshift(&mut rng) % 10;
        let (key, op) = if roll == 0 {
            (format!("u{w}-{n}"), Op::Write(format!("{w}-{n}")))
        } else {
            let key = format!("k{}", xorshift(&mut rng) % KEYS);
            if roll < 6 {
                (key, Op::Write(format!("{w}-{n}")))
            } else {
                (key, Op::Read(None))
            }
        };
        let invoked = shared.now_us();
        let answer = match &op {
            Op::Write(v) => c.command(&["SET", &key, v]),
            Op::Read(_) => c.command(&["GET", &key]),
        };
        let answered = shared.now_us();
        let event = match (&op, answer) {
            (Op::Write(_), Answer::Status(s)) if s == "OK" => {
                shared.last_ack_us.fetch_max(answered, Ordering::Relaxed);
                Some(Event {
                    op: op.clone(),
                    invoked,
                    answered: Some(answered),
                })
            }
            (Op::Read(_), Answer::Value(v)) => Some(Event {
                op: Op::Read(v),
                invoked,
                answered: Some(answered),
            }),
            (_, Answer::Error(e)) if e.starts_with("NOTLEADER ") => {
                // Refused before it was proposed: nothing happened.
                c = Client::new(e["NOTLEADER ".len()..].to_owned());
                None
            }
            (_, Answer::Error(e)) if e.starts_with("CLUSTERDOWN no leader") => {
                std::thread::sleep(Duration::from_millis(20));
                None
            }
            (op, answer) => {
                // Lost, or failed mid-way: a write may or may not have
                // happened; a read tells nothing. Try another node.
                assert!(
                    matches!(answer, Answer::Lost | Answer::Error(_)),
                    "{op:?}: {answer:?}"
                );
                at = (at + 1) % addrs.len();
                c = Client::new(addrs[at].clone());
                std::thread::sleep(Duration::from_millis(20));
                matches!(op, Op::Write(_)).then(|| Event {
                    op: op.clone(),
                    invoked,
                    answered: None,
                })
            }
        };
        let Some(event) = event else { continue };
        let mut record = shared.record.lock().unwrap();
        if key.starts_with('u') {
            if let (Op::Write(v), Some(_)) = (&event.op, event.answered) {
                record.unique.push((key, v.clone()));
            }
        } else {
            record.events.push((key, event));
        }
    }
}

/// Reads `key` on node `id` alone (`READONLY`) until it holds `want`.
fn wait_for(cluster: &Cluster, id: u64, key: &str, want: &str) {
    let mut c = Client::new(cluster.node(id).client_addr());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if c.command(&["READONLY"]) == Answer::Status("OK".into())
            && c.command(&["GET", key]) == Answer::Value(Some(want.to_owned()))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {id} never showed {key} = {want}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn leader_kills_lose_no_acknowledged_write_and_histories_are_linearizable() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), 3, 300, |_, http| http);
    let addrs: Vec<String> = cluster.nodes.iter().map(procs::Proc::client_addr).collect();
    let shared = Arc::new(Shared {
        start: Instant::now(),
        stop: AtomicBool::new(false),
        last_ack_us: AtomicU64::new(0),
        record: Mutex::new(Record::default()),
    });
    let workers: Vec<_> = (0..CLIENTS)
        .map(|w| {
            let (addrs, shared) = (addrs.clone(), Arc::clone(&shared));
            std::thread::spawn(move || client(w, &addrs, &shared))
        })
        .collect();
    let mut failovers = Vec::new();
    for round in 0..4 {
        std::thread::sleep(Duration::from_millis(1500));
        let leader = cluster.leader(Duration::from_secs(60));
        // Three leader kills, then a follower's.
        let victim = if round < 3 { leader } else { leader % 3 + 1 };
        cluster.node_mut(victim).kill9();
        let killed = shared.now_us();
        let deadline = Instant::now() + Duration::from_secs(60);
        while shared.last_ack_us.load(Ordering::Relaxed) <= killed {
            assert!(
                Instant::now() < deadline,
                "no write acknowledged after the kill"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        failovers.push(Duration::from_micros(
            shared.last_ack_us.load(Ordering::Relaxed) - killed,
        ));
        std::thread::sleep(Duration::from_millis(500));
        cluster.node_mut(victim).start();
    }
    std::thread::sleep(Duration::from_millis(1500));
    shared.stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    eprintln!("first acknowledged write after each kill: {failovers:?}");

    // The final value of each key, read through the leader.
    let leader = cluster.leader(Duration::from_secs(60));
    let mut c = Client::new(cluster.node(leader).client_addr());
    let mut record = shared.record.lock().unwrap();
    for k in 0..KEYS {
        let key = format!("k{k}");
        let invoked = shared.now_us();
        let Answer::Value(v) = c.command(&["GET", &key]) else {
            panic!("the leader did not answer a read");
        };
        record.events.push((
            key,
            Event {
                op: Op::Read(v),
                invoked,
                answered: Some(shared.now_us()),
            },
        ));
    }
    let answered = record
        .events
        .iter()
        .filter(|(_, e)| e.answered.is_some())
        .count();
    assert!(answered > 100, "only {answered} operations were answered");
    for k in 0..KEYS {
        let key = format!("k{k}");
        let history: Vec<Event> = record
            .events
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, e)| e.clone())
            .collect();
        assert!(
            check(&history),
            "{key}'s history is not linearizable: {history:#?}"
        );
    }
    // Every acknowledged write of a key of its own, on every node.
    assert!(!record.unique.is_empty());
    for (key, value) in &record.unique {
        assert_eq!(
            c.command(&["GET", key]),
            Answer::Value(Some(value.clone())),
            "{key} lost"
        );
    }
    let (last_key, last_value) = record.unique.last().unwrap();
    for id in 1..=3 {
        wait_for(&cluster, id, last_key, last_value);
        let mut c = Client::new(cluster.node(id).client_addr());
        assert_eq!(c.command(&["READONLY"]), Answer::Status("OK".into()));
        for (key, value) in &record.unique {
            assert_eq!(
                c.command(&["GET", key]),
                Answer::Value(Some(value.clone())),
                "{key} lost on node {id}"
            );
        }
    }
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
            .args([
                "admin",
                "--node",
                &format!("127.0.0.1:{}", cluster.node(from).http),
            ])
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
