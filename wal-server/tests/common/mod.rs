//! What the server's tests share: a server on a thread of its own, raw
//! socket helpers, and reply helpers.

#![allow(dead_code)] // each test file uses a part of it

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use redis::RedisResult;
use wal_server::{Config, Server, ServerError};

#[derive(Debug)]
pub struct Running {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), ServerError>>>,
}

impl Running {
    pub fn start(dir: &Path) -> Result<Running, ServerError> {
        Running::start_with(dir, |_| {})
    }

    /// A server whose configuration `adjust` changed first.
    pub fn start_with(
        dir: &Path,
        adjust: impl FnOnce(&mut Config) + Send + 'static,
    ) -> Result<Running, ServerError> {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let dir: PathBuf = dir.to_owned();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut config = Config::new(dir, "127.0.0.1:0".parse().unwrap());
                adjust(&mut config);
                let bound = Server::bind(config).await;
                let server = match bound {
                    Ok(s) => s,
                    Err(e) => {
                        addr_tx.send(Err(e.to_string())).unwrap();
                        return Err(e);
                    }
                };
                addr_tx.send(Ok(server.local_addr()?)).unwrap();
                server
                    .run(async {
                        let _ = stopped.await;
                    })
                    .await
            })
        });
        match addr_rx.recv().unwrap() {
            Ok(addr) => Ok(Running {
                addr,
                stop: Some(stop),
                thread: Some(thread),
            }),
            Err(_) => Err(thread.join().unwrap().unwrap_err()),
        }
    }

    pub fn client(&self) -> redis::Connection {
        redis::Client::open(format!("redis://{}/", self.addr))
            .unwrap()
            .get_connection()
            .unwrap()
    }

    pub fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.thread.take().unwrap().join().unwrap().unwrap();
    }

    /// Stops it and returns how its run ended (a server whose disk failed
    /// ends with the error).
    pub fn stop_outcome(mut self) -> Result<(), ServerError> {
        let _ = self.stop.take().unwrap().send(());
        self.thread.take().unwrap().join().unwrap()
    }
}

/// Sends raw bytes and reads until `done` says what came is enough or the
/// server closed; true when it closed (then, or within 300 ms after).
fn exchange(addr: SocketAddr, send: &[u8], done: impl Fn(&[u8]) -> bool) -> (Vec<u8>, bool) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s.write_all(send).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !done(&got) {
        match s.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("read: {e} after {:?}", String::from_utf8_lossy(&got)),
        }
    }
    s.set_read_timeout(Some(std::time::Duration::from_millis(300)))
        .unwrap();
    let closed = matches!(s.read(&mut buf), Ok(0));
    (got, closed)
}

/// Sends raw bytes, reads until `want` bytes came or the server closed;
/// whether it closed the connection.
pub fn raw(addr: SocketAddr, send: &[u8], want: usize) -> (Vec<u8>, bool) {
    exchange(addr, send, |got| got.len() >= want)
}

/// Sends raw bytes, reads until what came ends with `suffix`.
pub fn raw_until(addr: SocketAddr, send: &[u8], suffix: &[u8]) -> Vec<u8> {
    exchange(addr, send, |got| got.ends_with(suffix)).0
}

/// Runs a command whose reply is an integer.
pub fn int(c: &mut redis::Connection, args: &[&str]) -> i64 {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(c).unwrap()
}

pub fn err_text<T: std::fmt::Debug>(r: RedisResult<T>) -> String {
    let e = r.unwrap_err();
    format!("{} {}", e.code().unwrap_or(""), e.detail().unwrap_or(""))
}

/// A port nobody listens on now, for a server the test starts next.
///
/// Not one `bind(0)` hands out: that range is the kernel's ephemeral one,
/// where the tests running at the same time bind and connect, and a port
/// from it can be taken again between this check and the server's bind
/// (CI saw `Address already in use`). Ports come from below it instead,
/// each test process walking its own stretch, starting at a hash of its id.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    /// Ports handed out from here: 10000 up to the ephemeral range.
    const FIRST_PORT: u32 = 10_000;
    const PORTS: u32 = 22_000;
    static TAKEN: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(2_654_435_761) % PORTS;
    loop {
        let n = TAKEN.fetch_add(1, Ordering::Relaxed);
        assert!(n < PORTS, "no free port below the ephemeral range");
        let port = u16::try_from(FIRST_PORT + (start + n) % PORTS).unwrap();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
