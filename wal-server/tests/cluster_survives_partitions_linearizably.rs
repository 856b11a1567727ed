//! Three `walkv` processes on loopback, each behind a fault-injecting
//! proxy in front of its peer port: clients write and read while the test
//! cuts the leader off from the others, heals, cuts a follower off, and
//! the new leader. The majority side elects a leader and serves; the
//! cut-off node answers its clients with errors rather than holding them;
//! every acknowledged write is on every node afterwards; and each key's
//! recorded history is linearizable.

mod common;
#[path = "common/linearizable.rs"]
mod linearizable;
#[path = "common/procs.rs"]
mod procs;
#[path = "common/proxy.rs"]
mod proxy;
#[path = "common/workload.rs"]
mod workload;

use std::sync::Arc;
use std::time::Duration;

use procs::{Answer, Client, Cluster};
use proxy::Network;
use workload::Workload;

/// What a client of a cut-off node hears: an error naming why (no
/// majority, no leader, or the leader elsewhere), never silence.
fn assert_answers_with_an_error(cluster: &Cluster, id: u64, n: u64) {
    let mut c = Client::new(cluster.node(id).client_addr());
    for args in [
        vec!["GET".to_owned(), "k0".to_owned()],
        vec!["SET".to_owned(), format!("p{n}"), "x".to_owned()],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let answer = c.command(&args);
        assert!(
            matches!(&answer, Answer::Error(e)
                if e.starts_with("CLUSTERDOWN") || e.starts_with("NOTLEADER")
                    || e.starts_with("ERR no majority")),
            "a cut-off node answered {args:?} with {answer:?}"
        );
    }
}

#[test]
fn partitions_lose_no_acknowledged_write_and_histories_are_linearizable() {
    let dir = tempfile::tempdir().unwrap();
    let net = Arc::new(Network::default());
    let mut cluster = Cluster::start(dir.path(), 3, 300, |_, http| {
        proxy::start(http, Arc::clone(&net))
    });
    let workload = Workload::start(&cluster);
    let mut failovers = Vec::new();
    for round in 0..3 {
        std::thread::sleep(Duration::from_millis(1500));
        let leader = cluster.leader(Duration::from_secs(60));
        // The leader, then a follower, then the new leader.
        let victim = if round == 1 { leader % 3 + 1 } else { leader };
        net.isolate(cluster.node(victim).http.ip());
        let cut = workload.now_us();
        failovers.push(workload.next_ack_after(cut, "the cut"));
        assert_answers_with_an_error(&cluster, victim, round);
        if round != 1 {
            // The majority's new leader, which the cut-off node does not
            // know of yet.
            let others: Vec<u64> = (1..=3).filter(|&id| id != victim).collect();
            let new = (0..600)
                .find_map(|_| {
                    let l = others
                        .iter()
                        .find(|&&id| cluster.node(id).status("state").as_deref() == Some("Leader"));
                    l.copied().or_else(|| {
                        std::thread::sleep(Duration::from_millis(100));
                        None
                    })
                })
                .expect("the majority elected no leader");
            assert_ne!(new, victim);
        }
        std::thread::sleep(Duration::from_millis(1000));
        net.heal();
    }
    std::thread::sleep(Duration::from_millis(1500));
    eprintln!("first acknowledged write after each cut: {failovers:?}");
    // The cluster agrees on one leader again, the cut-off nodes included.
    cluster.leader(Duration::from_secs(60));
    workload.stop_and_verify(&cluster);
    for id in 1..=3 {
        assert!(
            cluster.node_mut(id).stop().success(),
            "node {id} did not stop cleanly"
        );
    }
}
