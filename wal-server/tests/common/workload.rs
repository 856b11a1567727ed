//! The cluster tests' workload: clients reading and writing a few shared
//! keys (each key's history recorded for the linearizability checker)
//! and keys of their own (each acknowledged write checked afterwards on
//! every node), following redirects and moving on from dead or cut-off
//! nodes.

#![allow(dead_code)] // each test file uses a part of it

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::linearizable::{Event, Op, check};
use crate::procs::{Answer, Client, Cluster};

pub const KEYS: u64 = 5;
pub const CLIENTS: u64 = 4;

/// Per-key histories and the unique keys whose writes were acknowledged.
#[derive(Default)]
pub struct Record {
    events: Vec<(String, Event)>,
    unique: Vec<(String, String)>,
}

pub struct Shared {
    start: Instant,
    pub stop: AtomicBool,
    /// Microseconds since the start of the last acknowledged write.
    pub last_ack_us: AtomicU64,
    pub record: Mutex<Record>,
}

impl Shared {
    pub fn now_us(&self) -> u64 {
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
pub fn client(w: u64, addrs: &[String], shared: &Shared) {
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
pub fn wait_for(cluster: &Cluster, id: u64, key: &str, want: &str) {
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

/// [`CLIENTS`] clients running [`client`] against a cluster.
pub struct Workload {
    shared: Arc<Shared>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Workload {
    pub fn start(cluster: &Cluster) -> Workload {
        let addrs: Vec<String> = cluster
            .nodes
            .iter()
            .map(crate::procs::Proc::client_addr)
            .collect();
        let shared = Arc::new(Shared {
            start: Instant::now(),
            stop: AtomicBool::new(false),
            last_ack_us: AtomicU64::new(0),
            record: Mutex::new(Record::default()),
        });
        let workers = (0..CLIENTS)
            .map(|w| {
                let (addrs, shared) = (addrs.clone(), Arc::clone(&shared));
                std::thread::spawn(move || client(w, &addrs, &shared))
            })
            .collect();
        Workload { shared, workers }
    }

    /// Microseconds since the workload started.
    pub fn now_us(&self) -> u64 {
        self.shared.now_us()
    }

    /// Waits for a write acknowledged after `t` (from [`Workload::now_us`])
    /// and says how long after `t` it was.
    ///
    /// # Panics
    /// If none is within 60 s: the cluster stopped serving.
    pub fn next_ack_after(&self, t: u64, what: &str) -> Duration {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.shared.last_ack_us.load(Ordering::Relaxed) <= t {
            assert!(
                Instant::now() < deadline,
                "no write acknowledged after {what}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Duration::from_micros(self.shared.last_ack_us.load(Ordering::Relaxed) - t)
    }

    /// Stops the clients, reads each shared key's final value through the
    /// leader, and checks: each shared key's history is linearizable;
    /// every acknowledged write of a client's own keys is on every node.
    pub fn stop_and_verify(self, cluster: &Cluster) {
        let shared = self.shared;
        shared.stop.store(true, Ordering::Relaxed);
        for w in self.workers {
            w.join().unwrap();
        }
        let leader = cluster.leader(Duration::from_secs(60));
        let mut c = Client::new(cluster.node(leader).client_addr());
        let mut record = shared.record.lock().unwrap();
        for k in 0..KEYS {
            let key = format!("k{k}");
            let invoked = shared.now_us();
            let Answer::Value(v) = c.command(&["GET", &key]) else {
                panic!("the leader did not answer a read");
            };
            let answered = Some(shared.now_us());
            let op = Op::Read(v);
            record.events.push((
                key,
                Event {
                    op,
                    invoked,
                    answered,
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
        assert!(!record.unique.is_empty());
        for (key, value) in &record.unique {
            assert_eq!(
                c.command(&["GET", key]),
                Answer::Value(Some(value.clone())),
                "{key} lost"
            );
        }
        let (last_key, last_value) = record.unique.last().unwrap();
        for p in &cluster.nodes {
            wait_for(cluster, p.id, last_key, last_value);
            let mut c = Client::new(p.client_addr());
            assert_eq!(c.command(&["READONLY"]), Answer::Status("OK".into()));
            for (key, value) in &record.unique {
                assert_eq!(
                    c.command(&["GET", key]),
                    Answer::Value(Some(value.clone())),
                    "{key} lost on node {}",
                    p.id
                );
            }
        }
    }
}
