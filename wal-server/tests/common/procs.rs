//! A cluster of `walkv` processes on loopback for the tests: start, kill
//! -9, restart, find the leader, and a small Redis-protocol client that
//! classifies every answer (done, refused, unknown outcome).

#![allow(dead_code)] // each test file uses a part of it

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::free_port;

/// One node: its ports, its directory, its process while it runs.
pub struct Proc {
    pub id: u64,
    pub dir: PathBuf,
    pub port: u16,
    /// Its HTTP address: each node has a loopback address of its own
    /// (127.0.0.10 + id), which its connections to peers leave from, so
    /// a proxy can tell who is talking.
    pub http: SocketAddr,
    /// The address peers use for it (its own, or a proxy's).
    pub advertised_http: SocketAddr,
    pub snapshot_every: u64,
    child: Option<Child>,
}

impl Proc {
    pub fn client_addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "node {} runs already", self.id);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.with_extension("log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_walkv"))
            .args(["--dir", self.dir.to_str().unwrap()])
            .args(["--port", &self.port.to_string()])
            .args(["--node-id", &self.id.to_string()])
            .args(["--http", &self.http.to_string()])
            .args(["--snapshot-every", &self.snapshot_every.to_string()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// `kill -9`: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        child.wait().unwrap()
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// `GET path` on its HTTP port: status and body.
    pub fn http_get(&self, path: &str) -> Option<(u16, String)> {
        http_get_at(self.http, path)
    }

    /// Its Raft status as `field value` lines.
    pub fn status(&self, field: &str) -> Option<String> {
        let (code, body) = self.http_get("/admin/status")?;
        (code == 200).then_some(())?;
        body.lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(' ').map(str::to_owned))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    http_get_at(SocketAddr::from(([127, 0, 0, 1], port)), path)
}

pub fn http_get_at(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_owned();
    Some((code, body))
}

/// A cluster's nodes, all in one directory.
pub struct Cluster {
    pub nodes: Vec<Proc>,
}

impl Cluster {
    /// Starts `n` nodes and makes them one cluster. `advertise(i, http)`
    /// picks the HTTP address node `i` is known to its peers by (a
    /// proxy's, say).
    pub fn start(
        dir: &Path,
        n: u64,
        snapshot_every: u64,
        advertise: impl Fn(u64, SocketAddr) -> SocketAddr,
    ) -> Cluster {
        let nodes: Vec<Proc> = (1..=n)
            .map(|id| {
                let ip = [127, 0, 0, 10 + u8::try_from(id).unwrap()];
                let http = SocketAddr::from((ip, free_port()));
                Proc {
                    id,
                    dir: dir.join(format!("node{id}")),
                    port: free_port(),
                    http,
                    advertised_http: advertise(id, http),
                    snapshot_every,
                    child: None,
                }
            })
            .collect();
        let mut cluster = Cluster { nodes };
        for p in &mut cluster.nodes {
            p.start();
        }
        let members: Vec<String> = cluster
            .nodes
            .iter()
            .map(|p| format!("{}={},127.0.0.1:{}", p.id, p.advertised_http, p.port))
            .collect();
        let first = cluster.nodes[0].http.to_string();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = Command::new(env!("CARGO_BIN_EXE_walkv"))
                .args(["admin", "--node", &first, "init"])
                .args(&members)
                .output()
                .unwrap();
            if out.status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "init: {}\nnode 1's log:\n{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(cluster.nodes[0].dir.with_extension("log"))
                    .unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        cluster.leader(Duration::from_secs(30));
        cluster
    }

    /// The node every running node agrees leads, once they do.
    pub fn leader(&self, within: Duration) -> u64 {
        let deadline = Instant::now() + within;
        loop {
            let leaders: Vec<Option<String>> = self
                .nodes
                .iter()
                .filter(|p| p.running())
                .map(|p| p.status("leader"))
                .collect();
            if let Some(Some(l)) = leaders.first()
                && l != "none"
                && leaders.iter().all(|x| x.as_deref() == Some(l.as_str()))
            {
                let id: u64 = l.parse().unwrap();
                if self.node(id).running()
                    && self.node(id).status("state").as_deref() == Some("Leader")
                {
                    return id;
                }
            }
            assert!(Instant::now() < deadline, "no leader: {leaders:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn node(&self, id: u64) -> &Proc {
        &self.nodes[usize::try_from(id - 1).unwrap()]
    }

    pub fn node_mut(&mut self, id: u64) -> &mut Proc {
        &mut self.nodes[usize::try_from(id - 1).unwrap()]
    }
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `+...`: a status.
    Status(String),
    /// `$...`: a value, or none.
    Value(Option<String>),
    /// `:n`.
    Int(i64),
    /// `-...`: an error reply.
    Error(String),
    /// No answer: the connection failed or timed out; the command may or
    /// may not have taken effect.
    Lost,
}

/// A connection to one node, reopened after a failure.
pub struct Client {
    pub addr: String,
    conn: Option<(BufReader<TcpStream>, TcpStream)>,
}

impl Client {
    pub fn new(addr: impl Into<String>) -> Client {
        Client {
            addr: addr.into(),
            conn: None,
        }
    }

    pub fn command(&mut self, args: &[&str]) -> Answer {
        let answer = self.try_command(args);
        if answer == Answer::Lost {
            self.conn = None;
        }
        answer
    }

    fn try_command(&mut self, args: &[&str]) -> Answer {
        if self.conn.is_none() {
            let Ok(s) = TcpStream::connect(&self.addr) else {
                return Answer::Lost;
            };
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = s.set_nodelay(true);
            let Ok(w) = s.try_clone() else {
                return Answer::Lost;
            };
            self.conn = Some((BufReader::new(s), w));
        }
        let Some((r, w)) = self.conn.as_mut() else {
            return Answer::Lost;
        };
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        if w.write_all(out.as_bytes()).is_err() {
            return Answer::Lost;
        }
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 || !line.ends_with("\r\n") {
            return Answer::Lost;
        }
        let line = line.trim_end();
        let (kind, rest) = line.split_at(1);
        match kind {
            "+" => Answer::Status(rest.to_owned()),
            "-" => Answer::Error(rest.to_owned()),
            ":" => rest.parse().map_or(Answer::Lost, Answer::Int),
            "$" if rest == "-1" => Answer::Value(None),
            "$" => {
                let Ok(n) = rest.parse::<usize>() else {
                    return Answer::Lost;
                };
                let mut buf = vec![0; n + 2];
                if r.read_exact(&mut buf).is_err() {
                    return Answer::Lost;
                }
                buf.truncate(n);
                Answer::Value(Some(String::from_utf8_lossy(&buf).into_owned()))
            }
            _ => Answer::Lost,
        }
    }
}
