//! The servers the server benchmark measures, as processes on loopback:
//! `walkv` alone and as a three-node cluster, `redis-server` in its
//! durable mode (`appendonly yes`, `appendfsync always`), and a three-node
//! `etcd` cluster. Each is started in a directory of its own, checked to
//! answer, and killed when dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The protocol a service's clients speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Redis's (RESP).
    Resp,
    /// etcd's HTTP/JSON gateway.
    EtcdHttp,
}

/// A running server (one process or a cluster's).
#[derive(Debug)]
pub struct Service {
    /// The contender's name in the tables.
    pub name: &'static str,
    /// How it is configured, for the tables.
    pub config: &'static str,
    pub protocol: Protocol,
    /// Where clients send writes: the leader's address on a cluster.
    pub addr: String,
    children: Vec<Child>,
    dir: PathBuf,
}

impl Drop for Service {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port on 127.0.0.1 nobody listens on now.
/// A port nobody listens on now, for a service started next.
///
/// Not one `bind(0)` hands out: that range is the kernel's ephemeral one,
/// where the services already started connect to each other from, and a
/// port from it can be taken between this check and the service's bind
/// (`Address already in use`; the server's tests saw it). Ports come from
/// below it instead, walked from a start that differs between processes,
/// each checked free by a bind.
fn free_port() -> Result<u16, String> {
    use std::sync::atomic::{AtomicU32, Ordering};
    /// Ports handed out from here: 10000 up to the ephemeral range.
    const FIRST_PORT: u32 = 10_000;
    const PORTS: u32 = 22_000;
    static TAKEN: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(2_654_435_761) % PORTS;
    loop {
        let n = TAKEN.fetch_add(1, Ordering::Relaxed);
        if n >= PORTS {
            return Err("find a free port: none free below the ephemeral range".into());
        }
        let port = u16::try_from(FIRST_PORT + (start + n) % PORTS)
            .map_err(|_| "find a free port: out of range".to_owned())?;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
}

fn spawn(program: &Path, args: &[String], log: &Path) -> Result<Child, String> {
    let log = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("start {}: {e}", program.display()))
}

fn fresh_dir(dir: &Path) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))
}

/// One RESP command on a new connection; the reply's first line.
pub fn resp_command(addr: &str, args: &[&str]) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut out = format!("*{}\r\n", args.len());
    for a in args {
        out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(out.as_bytes()).ok()?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).ok()?;
    Some(line.trim_end().to_owned())
}

/// One HTTP/1.0 request on a new connection: status and body.
pub fn http(addr: &str, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split(' ').nth(1)?.parse().ok()?;
    Some((code, text.split_once("\r\n\r\n")?.1.to_owned()))
}

/// Waits until `ready` says yes, or says why not after [`START_TIMEOUT`].
fn wait_until<T>(what: &str, mut ready: impl FnMut() -> Option<T>) -> Result<T, String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(v) = ready() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(format!("{what} did not answer within {START_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `walkv` alone, `--sync always`: every write fsynced before its answer.
pub fn walkv_single(walkv: &Path, dir: &Path) -> Result<Service, String> {
    fresh_dir(dir)?;
    let port = free_port()?;
    let args: Vec<String> = [
        "--dir",
        &dir.join("data").to_string_lossy(),
        "--port",
        &port.to_string(),
        "--sync",
        "always",
    ]
    .map(str::to_owned)
    .to_vec();
    let child = spawn(walkv, &args, &dir.join("walkv.log"))?;
    let addr = format!("127.0.0.1:{port}");
    let service = Service {
        name: "walkv/1",
        config: "one node, --sync always",
        protocol: Protocol::Resp,
        addr: addr.clone(),
        children: vec![child],
        dir: dir.to_owned(),
    };
    wait_until("walkv", || {
        (resp_command(&addr, &["SET", "ready", "1"])? == "+OK").then_some(())
    })?;
    Ok(service)
}

/// Three `walkv` nodes on loopback, made one cluster; writes go to the
/// leader.
pub fn walkv_cluster(walkv: &Path, dir: &Path) -> Result<Service, String> {
    fresh_dir(dir)?;
    let mut children = Vec::new();
    let mut members = Vec::new();
    let mut https = Vec::new();
    for id in 1..=3 {
        let (port, http_port) = (free_port()?, free_port()?);
        let http_addr = format!("127.0.0.1:{http_port}");
        let args: Vec<String> = [
            "--dir",
            &dir.join(format!("node{id}")).to_string_lossy(),
            "--port",
            &port.to_string(),
            "--node-id",
            &id.to_string(),
            "--http",
            &http_addr,
        ]
        .map(str::to_owned)
        .to_vec();
        children.push(spawn(walkv, &args, &dir.join(format!("node{id}.log")))?);
        members.push(format!("{id}={http_addr},127.0.0.1:{port}"));
        https.push(http_addr);
    }
    let mut service = Service {
        name: "walkv/3",
        config: "three nodes (Raft), fsync before every acknowledgement",
        protocol: Protocol::Resp,
        addr: String::new(),
        children,
        dir: dir.to_owned(),
    };
    wait_until("walkv admin init", || {
        let out = Command::new(walkv)
            .args(["admin", "--node", &https[0], "init"])
            .args(&members)
            .output()
            .ok()?;
        out.status.success().then_some(())
    })?;
    let leader: usize = wait_until("a walkv leader", || {
        let (_, body) = http(&https[0], "GET", "/admin/status", "")?;
        let id = body.lines().find_map(|l| l.strip_prefix("leader "))?;
        id.parse::<usize>().ok().filter(|&i| (1..=3).contains(&i))
    })?;
    let addr = members[leader - 1]
        .rsplit(',')
        .next()
        .unwrap_or_default()
        .to_owned();
    wait_until("the walkv leader", || {
        (resp_command(&addr, &["SET", "ready", "1"])? == "+OK").then_some(())
    })?;
    service.addr = addr;
    Ok(service)
}

/// `redis-server` with only its append-only file, fsynced before every
/// answer (`appendfsync always`), as Redis's durable mode.
pub fn redis_always(dir: &Path) -> Result<Service, String> {
    fresh_dir(dir)?;
    let port = free_port()?;
    let args: Vec<String> = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--dir",
        &dir.to_string_lossy(),
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--save",
        "",
        "--daemonize",
        "no",
    ]
    .map(str::to_owned)
    .to_vec();
    let child = spawn(
        Path::new("redis-server"),
        &args,
        &dir.join("redis-server.log"),
    )?;
    let addr = format!("127.0.0.1:{port}");
    let service = Service {
        name: "redis",
        config: "redis-server, appendonly yes, appendfsync always",
        protocol: Protocol::Resp,
        addr: addr.clone(),
        children: vec![child],
        dir: dir.to_owned(),
    };
    wait_until("redis-server", || {
        (resp_command(&addr, &["SET", "ready", "1"])? == "+OK").then_some(())
    })?;
    Ok(service)
}

/// Three `etcd` members on loopback (etcd fsyncs its log before it
/// answers a put); puts go to the leader's HTTP/JSON gateway.
pub fn etcd_cluster(dir: &Path) -> Result<Service, String> {
    fresh_dir(dir)?;
    let ports: Vec<(u16, u16)> = (0..3)
        .map(|_| Ok((free_port()?, free_port()?)))
        .collect::<Result<_, String>>()?;
    let initial: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, (_, peer))| format!("e{}=http://127.0.0.1:{peer}", i + 1))
        .collect();
    let mut children = Vec::new();
    for (i, (client, peer)) in ports.iter().enumerate() {
        let name = format!("e{}", i + 1);
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let args: Vec<String> = vec![
            format!("--name={name}"),
            format!("--data-dir={}", dir.join(&name).display()),
            format!("--listen-client-urls={client_url}"),
            format!("--advertise-client-urls={client_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster={}", initial.join(",")),
            "--initial-cluster-state=new".into(),
            "--initial-cluster-token=wal-bench".into(),
        ];
        children.push(spawn(
            Path::new("etcd"),
            &args,
            &dir.join(format!("{name}.log")),
        )?);
    }
    let mut service = Service {
        name: "etcd/3",
        config: "three etcd members, HTTP/JSON gateway",
        protocol: Protocol::EtcdHttp,
        addr: String::new(),
        children,
        dir: dir.to_owned(),
    };
    // The member whose own id is the leader's.
    service.addr = wait_until("an etcd leader", || {
        ports.iter().find_map(|(client, _)| {
            let addr = format!("127.0.0.1:{client}");
            let (code, body) = http(&addr, "POST", "/v3/maintenance/status", "{}")?;
            let v: serde_json::Value = serde_json::from_str(&body).ok()?;
            let me = v.get("header")?.get("member_id")?.as_str()?;
            let leader = v.get("leader")?.as_str()?;
            (code == 200 && me == leader).then_some(addr)
        })
    })?;
    Ok(service)
}

/// Whether `program` runs here (`--version` answers).
pub fn installed(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_free_and_below_the_ephemeral_range() {
        let ports: Vec<u16> = (0..50).map(|_| free_port().unwrap()).collect();
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len(), "a port handed out twice");
        for port in ports {
            assert!((10_000..32_000).contains(&port), "port {port}");
            TcpListener::bind(("127.0.0.1", port)).expect("still free");
        }
    }
}
