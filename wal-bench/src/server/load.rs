//! The loads: `redis-benchmark` for the Redis-protocol servers, and a
//! closed-loop put generator of our own that speaks both RESP and etcd's
//! HTTP/JSON gateway, so that `walkv` and `etcd` are driven by the same
//! client code.

use std::process::Command;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use http_body_util::BodyExt;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::services::{Protocol, Service};

/// What one run measured.
#[derive(Debug, Clone, Copy)]
pub struct Figures {
    pub ops: u64,
    pub ops_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Bytes of a put's key and value: K1's.
pub const KEY_BYTES: usize = 16;
pub const VALUE_BYTES: usize = 100;

/// `redis-benchmark -t TEST -c CLIENTS -n REQUESTS -P 1 -d 100` against
/// `addr`, keys drawn from 100,000.
///
/// # Errors
/// If it cannot run, or the server answered any request with an error
/// (redis-benchmark counts those as done).
pub fn redis_benchmark(
    addr: &str,
    test: &str,
    clients: u32,
    requests: u64,
) -> Result<Figures, String> {
    let (host, port) = addr.rsplit_once(':').ok_or("bad address")?;
    let out = Command::new("redis-benchmark")
        .args(["-h", host, "-p", port, "-t", test, "-P", "1"])
        .args(["-c", &clients.to_string(), "-n", &requests.to_string()])
        .args(["-d", &VALUE_BYTES.to_string(), "-r", "100000"])
        .args(["-e", "--csv"])
        .output()
        .map_err(|e| format!("run redis-benchmark: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!("redis-benchmark failed: {stderr}"));
    }
    if let Some(line) = stdout
        .lines()
        .chain(stderr.lines())
        .find(|l| l.contains("Error from server"))
    {
        return Err(format!("the server refused requests: {line}"));
    }
    // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",
    // "p95_latency_ms","p99_latency_ms","max_latency_ms"
    let row = stdout
        .lines()
        .find(|l| l.starts_with(&format!("\"{}\"", test.to_uppercase())))
        .ok_or_else(|| format!("no result in redis-benchmark's output: {stdout}"))?;
    let cells: Vec<f64> = row
        .split(',')
        .skip(1)
        .map(|c| c.trim_matches('"').parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("redis-benchmark's row {row}: {e}"))?;
    let [ops_per_s, _avg, _min, p50_ms, _p95, p99_ms, ..] = cells[..] else {
        return Err(format!("redis-benchmark's row {row}: too few columns"));
    };
    Ok(Figures {
        ops: requests,
        ops_per_s,
        p50_ms,
        p99_ms,
    })
}

/// `clients` connections each putting new keys one at a time (a put is
/// sent when the previous one is answered) for `seconds`.
///
/// # Errors
/// A connection that fails, or a put that is refused.
pub fn puts(service: &Service, clients: u32, seconds: f64) -> Result<Figures, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let histograms = runtime.block_on(async {
        let tasks: Vec<_> = (0..clients)
            .map(|c| {
                let (addr, protocol) = (service.addr.clone(), service.protocol);
                tokio::spawn(async move {
                    match protocol {
                        Protocol::Resp => resp_puts(&addr, c, deadline).await,
                        Protocol::EtcdHttp => etcd_puts(&addr, c, deadline).await,
                    }
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.push(t.await.map_err(|e| format!("client task: {e}"))??);
        }
        Ok::<_, String>(all)
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    let mut merged = new_histogram();
    for h in &histograms {
        merged.add(h).map_err(|e| e.to_string())?;
    }
    let ops = merged.len();
    Ok(Figures {
        ops,
        ops_per_s: ops as f64 / elapsed,
        p50_ms: merged.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: merged.value_at_quantile(0.99) as f64 / 1000.0,
    })
}

fn new_histogram() -> Histogram<u64> {
    // Microseconds, up to a minute.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

fn key(client: u32, seq: u64) -> String {
    let key = format!("{client:04x}{seq:012x}");
    debug_assert_eq!(key.len(), KEY_BYTES);
    key
}

async fn resp_puts(addr: &str, client: u32, deadline: Instant) -> Result<Histogram<u64>, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let value = "v".repeat(VALUE_BYTES);
    let mut h = new_histogram();
    let mut line = String::new();
    let mut seq = 0;
    while Instant::now() < deadline {
        let k = key(client, seq);
        seq += 1;
        let frame = format!(
            "*3\r\n$3\r\nSET\r\n${}\r\n{k}\r\n${}\r\n{value}\r\n",
            k.len(),
            value.len()
        );
        let sent = Instant::now();
        write
            .write_all(frame.as_bytes())
            .await
            .map_err(|e| format!("send to {addr}: {e}"))?;
        line.clear();
        read.read_line(&mut line)
            .await
            .map_err(|e| format!("read from {addr}: {e}"))?;
        if line != "+OK\r\n" {
            return Err(format!("{addr} answered a SET with {line:?}"));
        }
        record(&mut h, sent)?;
    }
    Ok(h)
}

/// A put through etcd's gateway: keys and values travel base64-encoded in
/// JSON. Any string of base64 digits with its padding encodes some bytes,
/// so the key is 20 hex digits and `AA==` (16 bytes) and the value 136
/// `A`s ending in `==` (100 bytes), the same sizes as the RESP puts, with
/// no encoder needed.
async fn etcd_puts(addr: &str, client: u32, deadline: Instant) -> Result<Histogram<u64>, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
    tokio::spawn(conn);
    let value = format!("{}AA==", "A".repeat(132));
    let mut h = new_histogram();
    let mut seq = 0u64;
    while Instant::now() < deadline {
        let body = format!("{{\"key\":\"{client:04x}{seq:016x}AA==\",\"value\":\"{value}\"}}");
        seq += 1;
        let request = hyper::Request::post("/v3/kv/put")
            .header(hyper::header::HOST, addr)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let sent = Instant::now();
        sender.ready().await.map_err(|e| format!("{addr}: {e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("put to {addr}: {e}"))?;
        let status = response.status();
        let answer = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("read from {addr}: {e}"))?
            .to_bytes();
        if status != hyper::StatusCode::OK {
            return Err(format!(
                "{addr} answered a put with {status}: {}",
                String::from_utf8_lossy(&answer)
            ));
        }
        record(&mut h, sent)?;
    }
    Ok(h)
}

fn record(h: &mut Histogram<u64>, sent: Instant) -> Result<(), String> {
    let us = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
    h.record(us.max(1)).map_err(|e| e.to_string())
}
