//! A fault-injecting TCP proxy for partition tests: one in front of each
//! node's peer port, all sharing one [`Network`] that says which
//! addresses are cut off. A connection between a cut-off address and any
//! other stops carrying bytes (in both directions) until the cut heals,
//! as a network that drops packets would, with TCP resending them
//! afterwards: nothing is lost, only late. A sender that gives up closes
//! its connection, and the stale bytes go nowhere.

#![allow(dead_code)] // each test file uses a part of it

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Which addresses are cut off from the rest.
#[derive(Debug, Default)]
pub struct Network {
    cut: Mutex<HashSet<IpAddr>>,
}

impl Network {
    /// Cuts `ip` off from every other address.
    pub fn isolate(&self, ip: IpAddr) {
        self.cut.lock().unwrap().insert(ip);
    }

    /// Joins everything again.
    pub fn heal(&self) {
        self.cut.lock().unwrap().clear();
    }

    /// Whether bytes flow between `a` and `b` now.
    pub fn connected(&self, a: IpAddr, b: IpAddr) -> bool {
        let cut = self.cut.lock().unwrap();
        a == b || !(cut.contains(&a) || cut.contains(&b))
    }
}

/// Listens on a free port of 127.0.0.1 and forwards every connection to
/// `target`, while `net` lets the connecting address and the target's
/// talk. Runs until the test process ends.
pub fn start(target: SocketAddr, net: Arc<Network>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for inbound in listener.incoming() {
            let Ok(inbound) = inbound else { continue };
            let Ok(from) = inbound.peer_addr() else {
                continue;
            };
            let Ok(outbound) = TcpStream::connect(target) else {
                continue; // the node is down: the connection just closes
            };
            let (a, b) = (from.ip(), target.ip());
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            for (src, dst) in [
                (inbound.try_clone(), outbound.try_clone()),
                (outbound.try_clone(), inbound.try_clone()),
            ] {
                let (Ok(src), Ok(dst)) = (src, dst) else {
                    continue;
                };
                let net = Arc::clone(&net);
                std::thread::spawn(move || pump(src, dst, a, b, &net));
            }
        }
    });
    addr
}

/// Copies `src` to `dst` while `a` and `b` are connected; holds what it
/// read while they are not.
fn pump(mut src: TcpStream, mut dst: TcpStream, a: IpAddr, b: IpAddr, net: &Network) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        while !net.connected(a, b) {
            std::thread::sleep(Duration::from_millis(10));
        }
        if dst.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = dst.shutdown(Shutdown::Write);
    let _ = src.shutdown(Shutdown::Read);
}
