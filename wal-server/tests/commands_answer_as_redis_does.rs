//! The single-node server through a real client library (`redis`) and
//! through raw sockets for exact bytes: every command's answers and error
//! texts as Redis gives them, RESP3 after `HELLO 3`, pipelining, a bad
//! request answered and the connection closed, read-modify-writes that
//! lose no update under concurrency, data that survives a restart, and a
//! second server on the same directory refused.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use redis::{Commands, RedisResult};
use wal_server::{Config, Server, ServerError};

struct Running {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), ServerError>>>,
}

impl Running {
    fn start(dir: &Path) -> Result<Running, ServerError> {
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
                let bound = Server::bind(Config::new(dir, "127.0.0.1:0".parse().unwrap())).await;
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

    fn client(&self) -> redis::Connection {
        redis::Client::open(format!("redis://{}/", self.addr))
            .unwrap()
            .get_connection()
            .unwrap()
    }

    fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.thread.take().unwrap().join().unwrap().unwrap();
    }
}

/// Sends raw bytes, reads until `want` bytes came or the server closed.
fn raw(addr: SocketAddr, send: &[u8], want: usize) -> (Vec<u8>, bool) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s.write_all(send).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.len() < want {
        match s.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("read: {e} after {:?}", String::from_utf8_lossy(&got)),
        }
    }
    // Closed right after?
    s.set_read_timeout(Some(std::time::Duration::from_millis(300)))
        .unwrap();
    let closed = matches!(s.read(&mut buf), Ok(0));
    (got, closed)
}

/// Sends raw bytes, reads until what came ends with `suffix`.
fn raw_until(addr: SocketAddr, send: &[u8], suffix: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s.write_all(send).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(suffix) {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("read: {e} after {:?}", String::from_utf8_lossy(&got)),
        }
    }
    got
}

fn err_text<T: std::fmt::Debug>(r: RedisResult<T>) -> String {
    let e = r.unwrap_err();
    format!("{} {}", e.code().unwrap_or(""), e.detail().unwrap_or(""))
}

#[test]
fn string_commands_answer_as_redis_does() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(&dir.path().join("data")).unwrap();
    let mut c = server.client();
    let pong: String = redis::cmd("PING").query(&mut c).unwrap();
    assert_eq!(pong, "PONG");
    let echo: String = redis::cmd("ECHO").arg("hi there").query(&mut c).unwrap();
    assert_eq!(echo, "hi there");

    let _: () = c.set("k", "v").unwrap();
    assert_eq!(
        c.get::<_, Option<String>>("k").unwrap().as_deref(),
        Some("v")
    );
    assert_eq!(c.get::<_, Option<String>>("missing").unwrap(), None);
    // NX / XX / GET.
    let nx: Option<String> = redis::cmd("SET")
        .arg("k")
        .arg("w")
        .arg("NX")
        .query(&mut c)
        .unwrap();
    assert_eq!(nx, None);
    let xx: String = redis::cmd("SET")
        .arg("k")
        .arg("w")
        .arg("XX")
        .query(&mut c)
        .unwrap();
    assert_eq!(xx, "OK");
    let old: Option<String> = redis::cmd("SET")
        .arg("k")
        .arg("x")
        .arg("GET")
        .query(&mut c)
        .unwrap();
    assert_eq!(old.as_deref(), Some("w"));
    let none: Option<String> = redis::cmd("SET")
        .arg("new")
        .arg("1")
        .arg("XX")
        .query(&mut c)
        .unwrap();
    assert_eq!(none, None);
    assert_eq!(
        err_text(
            redis::cmd("SET")
                .arg("k")
                .arg("v")
                .arg("NX")
                .arg("XX")
                .query::<()>(&mut c)
        ),
        "ERR syntax error"
    );
    // GETDEL, DEL, EXISTS.
    let got: Option<String> = redis::cmd("GETDEL").arg("k").query(&mut c).unwrap();
    assert_eq!(got.as_deref(), Some("x"));
    assert_eq!(c.exists::<_, i64>("k").unwrap(), 0);
    let _: () = redis::cmd("MSET")
        .arg(&["a", "1", "b", "2", "c", "3"])
        .query(&mut c)
        .unwrap();
    let many: Vec<Option<String>> = redis::cmd("MGET")
        .arg(&["a", "zz", "c"])
        .query(&mut c)
        .unwrap();
    assert_eq!(many, [Some("1".to_owned()), None, Some("3".to_owned())]);
    let exists: i64 = redis::cmd("EXISTS")
        .arg(&["a", "a", "zz"])
        .query(&mut c)
        .unwrap();
    assert_eq!(exists, 2);
    assert_eq!(redis::cmd("DBSIZE").query::<i64>(&mut c).unwrap(), 3);
    let deleted: i64 = redis::cmd("DEL")
        .arg(&["a", "b", "zz"])
        .query(&mut c)
        .unwrap();
    assert_eq!(deleted, 2);
    // Counters.
    assert_eq!(c.incr::<_, _, i64>("n", 1).unwrap(), 1);
    assert_eq!(
        redis::cmd("INCRBY")
            .arg("n")
            .arg(41)
            .query::<i64>(&mut c)
            .unwrap(),
        42
    );
    assert_eq!(
        redis::cmd("DECR").arg("n").query::<i64>(&mut c).unwrap(),
        41
    );
    assert_eq!(
        redis::cmd("DECRBY")
            .arg("n")
            .arg(50)
            .query::<i64>(&mut c)
            .unwrap(),
        -9
    );
    assert_eq!(
        err_text(redis::cmd("INCR").arg("c").arg("x").query::<i64>(&mut c)),
        "ERR wrong number of arguments for 'incr' command"
    );
    let _: () = c.set("s", "abc").unwrap();
    assert_eq!(
        err_text(redis::cmd("INCR").arg("s").query::<i64>(&mut c)),
        "ERR value is not an integer or out of range"
    );
    let _: () = c.set("max", i64::MAX).unwrap();
    assert_eq!(
        err_text(redis::cmd("INCR").arg("max").query::<i64>(&mut c)),
        "ERR increment or decrement would overflow"
    );
    // APPEND, STRLEN.
    assert_eq!(
        redis::cmd("APPEND")
            .arg("s")
            .arg("de")
            .query::<i64>(&mut c)
            .unwrap(),
        5
    );
    assert_eq!(
        redis::cmd("STRLEN").arg("s").query::<i64>(&mut c).unwrap(),
        5
    );
    assert_eq!(
        redis::cmd("STRLEN")
            .arg("none")
            .query::<i64>(&mut c)
            .unwrap(),
        0
    );
    // Connection commands.
    let _: () = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("me")
        .query(&mut c)
        .unwrap();
    let name: String = redis::cmd("CLIENT").arg("GETNAME").query(&mut c).unwrap();
    assert_eq!(name, "me");
    assert!(redis::cmd("CLIENT").arg("ID").query::<i64>(&mut c).unwrap() > 0);
    assert_eq!(
        err_text(redis::cmd("NOSUCH").arg("a").arg("b").query::<()>(&mut c)),
        "ERR unknown command 'NOSUCH', with args beginning with: 'a' 'b' "
    );
    server.stop();
}

#[test]
fn resp3_pipelining_and_bad_requests_on_the_wire() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(&dir.path().join("data")).unwrap();
    // Three pipelined requests, three replies; RESP3 nulls after HELLO 3.
    let got = raw_until(
        server.addr,
        b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\nGET nothing\r\nPING\r\n",
        b"+PONG\r\n",
    );
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("%7\r\n"), "{text}");
    assert!(text.ends_with("_\r\n+PONG\r\n"), "{text}");
    // An unsupported version.
    let (got, _) = raw(server.addr, b"HELLO 4\r\n", 39);
    assert_eq!(&got[..], b"-NOPROTO unsupported protocol version\r\n");
    // A bulk length of 2^40: answered, then closed.
    let want = b"-ERR Protocol error: invalid bulk length\r\n";
    let (got, closed) = raw(server.addr, b"*1\r\n$1099511627776\r\nab", want.len());
    assert_eq!(&got[..], want);
    assert!(closed, "the connection is closed after a protocol error");
    // Binary garbage.
    let (got, closed) = raw(server.addr, b"*\x00\xff\r\n", 10);
    assert!(got.starts_with(b"-ERR Protocol error"), "{got:?}");
    assert!(closed);
    server.stop();
}

#[test]
fn concurrent_increments_lose_no_update() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(&dir.path().join("data")).unwrap();
    std::thread::scope(|s| {
        for _ in 0..8 {
            let mut c = server.client();
            s.spawn(move || {
                for _ in 0..25 {
                    let _: i64 = c.incr("counter", 1).unwrap();
                    let _: i64 = redis::cmd("APPEND")
                        .arg("log")
                        .arg("x")
                        .query(&mut c)
                        .unwrap();
                }
            });
        }
    });
    let mut c = server.client();
    assert_eq!(c.get::<_, i64>("counter").unwrap(), 200);
    assert_eq!(
        redis::cmd("STRLEN")
            .arg("log")
            .query::<i64>(&mut c)
            .unwrap(),
        200
    );
    server.stop();
}

#[test]
fn data_survives_a_restart_and_a_second_server_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Running::start(&data).unwrap();
    let mut c = server.client();
    let _: () = c.set("durable", "yes").unwrap();
    let second = Running::start(&data);
    let e = second
        .err()
        .expect("a second server on the same directory fails");
    assert!(e.to_string().contains("locked"), "{e}");
    drop(c);
    server.stop();
    let server = Running::start(&data).unwrap();
    let mut c = server.client();
    assert_eq!(c.get::<_, String>("durable").unwrap(), "yes");
    server.stop();
}

#[test]
fn multi_exec_is_atomic_and_watch_aborts_on_a_change() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(&dir.path().join("data")).unwrap();
    let mut c = server.client();
    let mut other = server.client();
    // Queued, then run together; replies in order.
    let replies: (String, i64, i64, Option<String>) = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg("a")
        .arg("1")
        .cmd("INCR")
        .arg("a")
        .cmd("APPEND")
        .arg("b")
        .arg("xy")
        .cmd("GET")
        .arg("a")
        .query(&mut c)
        .unwrap();
    assert_eq!(replies, ("OK".into(), 2, 2, Some("2".into())));
    // WATCH: a change by another client between WATCH and EXEC aborts.
    let _: () = redis::cmd("WATCH").arg("a").query(&mut c).unwrap();
    let _: () = other.set("a", "changed").unwrap();
    let _: () = redis::cmd("MULTI").query(&mut c).unwrap();
    let queued: String = redis::cmd("SET")
        .arg("a")
        .arg("mine")
        .query(&mut c)
        .unwrap();
    assert_eq!(queued, "QUEUED");
    let aborted: Option<Vec<String>> = redis::cmd("EXEC").query(&mut c).unwrap();
    assert_eq!(aborted, None);
    assert_eq!(other.get::<_, String>("a").unwrap(), "changed");
    // Unchanged: it runs.
    let _: () = redis::cmd("WATCH").arg("a").query(&mut c).unwrap();
    let _: () = redis::cmd("MULTI").query(&mut c).unwrap();
    let _: String = redis::cmd("SET")
        .arg("a")
        .arg("mine")
        .query(&mut c)
        .unwrap();
    let ran: Option<Vec<String>> = redis::cmd("EXEC").query(&mut c).unwrap();
    assert_eq!(ran, Some(vec!["OK".to_owned()]));
    // A command refused while queueing aborts the EXEC; nothing runs.
    let _: () = redis::cmd("MULTI").query(&mut c).unwrap();
    let _: String = redis::cmd("SET").arg("z").arg("1").query(&mut c).unwrap();
    assert_eq!(
        err_text(redis::cmd("GET").query::<()>(&mut c)),
        "ERR wrong number of arguments for 'get' command"
    );
    assert_eq!(
        err_text(redis::cmd("EXEC").query::<()>(&mut c)),
        "EXECABORT Transaction discarded because of previous errors."
    );
    assert_eq!(c.exists::<_, i64>("z").unwrap(), 0);
    // Misuse.
    assert_eq!(
        err_text(redis::cmd("EXEC").query::<()>(&mut c)),
        "ERR EXEC without MULTI"
    );
    assert_eq!(
        err_text(redis::cmd("DISCARD").query::<()>(&mut c)),
        "ERR DISCARD without MULTI"
    );
    let _: () = redis::cmd("MULTI").query(&mut c).unwrap();
    assert_eq!(
        err_text(redis::cmd("MULTI").query::<()>(&mut c)),
        "ERR MULTI calls can not be nested"
    );
    let _: String = redis::cmd("SET").arg("d").arg("1").query(&mut c).unwrap();
    let _: () = redis::cmd("DISCARD").query(&mut c).unwrap();
    assert_eq!(c.exists::<_, i64>("d").unwrap(), 0);
    server.stop();
}

/// Transfers between two counters in MULTI/EXEC from many clients: the
/// sum never changes, so EXEC is atomic against the others.
#[test]
fn concurrent_transactions_keep_a_sum() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(&dir.path().join("data")).unwrap();
    let mut c = server.client();
    let _: () = redis::cmd("MSET")
        .arg(&["x", "1000", "y", "1000"])
        .query(&mut c)
        .unwrap();
    std::thread::scope(|s| {
        for t in 0..6 {
            let mut c = server.client();
            s.spawn(move || {
                for i in 0..20 {
                    let (from, to) = if (t + i) % 2 == 0 {
                        ("x", "y")
                    } else {
                        ("y", "x")
                    };
                    let _: (i64, i64) = redis::pipe()
                        .atomic()
                        .cmd("DECRBY")
                        .arg(from)
                        .arg(7)
                        .cmd("INCRBY")
                        .arg(to)
                        .arg(7)
                        .query(&mut c)
                        .unwrap();
                }
            });
        }
        // Meanwhile, every atomic read of both sees the same sum.
        let mut r = server.client();
        for _ in 0..50 {
            let (x, y): (i64, i64) = redis::pipe()
                .atomic()
                .cmd("GET")
                .arg("x")
                .cmd("GET")
                .arg("y")
                .query(&mut r)
                .unwrap();
            assert_eq!(x + y, 2000);
        }
    });
    let (x, y): (i64, i64) = (c.get("x").unwrap(), c.get("y").unwrap());
    assert_eq!(x + y, 2000);
    server.stop();
}

/// A full SCAN returns every key present throughout exactly once, with
/// MATCH and COUNT; KEYS filters by the same patterns; a bad cursor is
/// an error.
#[test]
fn scan_returns_every_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(&dir.path().join("data")).unwrap();
    let mut c = server.client();
    for i in 0..95 {
        let _: () = c.set(format!("user:{i:03}"), i).unwrap();
    }
    for i in 0..7 {
        let _: () = c.set(format!("other:{i}"), i).unwrap();
    }
    let mut all: Vec<String> = c.scan().unwrap().collect();
    all.sort();
    assert_eq!(all.len(), 102);
    all.dedup();
    assert_eq!(all.len(), 102, "no key twice");
    let mut users: Vec<String> = c.scan_match("user:0[0-4]?").unwrap().collect();
    users.sort();
    assert_eq!(users.len(), 50);
    assert_eq!(users[0], "user:000");
    // COUNT bounds the keys examined per call; the cursor goes on.
    let (cursor, page): (u64, Vec<String>) = redis::cmd("SCAN")
        .arg(0)
        .arg("COUNT")
        .arg(5)
        .query(&mut c)
        .unwrap();
    assert_eq!(page.len(), 5);
    assert_ne!(cursor, 0);
    let (_, next): (u64, Vec<String>) = redis::cmd("SCAN")
        .arg(cursor)
        .arg("COUNT")
        .arg(5)
        .query(&mut c)
        .unwrap();
    assert!(next[0] > page[4], "{next:?} after {page:?}");
    let keys: Vec<String> = redis::cmd("KEYS").arg("other:*").query(&mut c).unwrap();
    assert_eq!(keys.len(), 7);
    assert_eq!(
        err_text(redis::cmd("SCAN").arg(123456).query::<()>(&mut c)),
        "ERR invalid cursor"
    );
    assert_eq!(
        err_text(
            redis::cmd("SCAN")
                .arg(0)
                .arg("COUNT")
                .arg(0)
                .query::<()>(&mut c)
        ),
        "ERR value is not an integer or out of range"
    );
    server.stop();
}

/// Times to live: SET's EX/PX/EXAT/PXAT/KEEPTTL, TTL/PTTL, EXPIRE,
/// PEXPIRE, PERSIST; an expired key is gone for every command at once,
/// and the sweeper removes it from the store.
#[test]
fn keys_expire_as_redis_keys_do() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Running::start(&data).unwrap();
    let mut c = server.client();
    let _: () = redis::cmd("SET")
        .arg("short")
        .arg("v")
        .arg("PX")
        .arg(150)
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("long")
        .arg("v")
        .arg("EX")
        .arg(100)
        .query(&mut c)
        .unwrap();
    let _: () = c.set("forever", "v").unwrap();
    let pttl: i64 = redis::cmd("PTTL").arg("short").query(&mut c).unwrap();
    assert!((1..=150).contains(&pttl), "{pttl}");
    let ttl: i64 = redis::cmd("TTL").arg("long").query(&mut c).unwrap();
    assert!((99..=100).contains(&ttl), "{ttl}");
    assert_eq!(
        redis::cmd("TTL")
            .arg("forever")
            .query::<i64>(&mut c)
            .unwrap(),
        -1
    );
    assert_eq!(
        redis::cmd("TTL").arg("none").query::<i64>(&mut c).unwrap(),
        -2
    );
    // INCR and APPEND keep the time to live; SET without KEEPTTL drops it.
    let _: () = redis::cmd("SET")
        .arg("n")
        .arg("1")
        .arg("EX")
        .arg(100)
        .query(&mut c)
        .unwrap();
    let _: i64 = c.incr("n", 1).unwrap();
    assert!(redis::cmd("TTL").arg("n").query::<i64>(&mut c).unwrap() > 0);
    let _: () = redis::cmd("SET")
        .arg("n")
        .arg("5")
        .arg("KEEPTTL")
        .query(&mut c)
        .unwrap();
    assert!(redis::cmd("TTL").arg("n").query::<i64>(&mut c).unwrap() > 0);
    let _: () = c.set("n", "6").unwrap();
    assert_eq!(redis::cmd("TTL").arg("n").query::<i64>(&mut c).unwrap(), -1);
    // EXPIRE, PERSIST.
    assert_eq!(
        redis::cmd("EXPIRE")
            .arg("n")
            .arg(50)
            .query::<i64>(&mut c)
            .unwrap(),
        1
    );
    assert_eq!(
        redis::cmd("PERSIST").arg("n").query::<i64>(&mut c).unwrap(),
        1
    );
    assert_eq!(
        redis::cmd("PERSIST").arg("n").query::<i64>(&mut c).unwrap(),
        0
    );
    assert_eq!(
        redis::cmd("EXPIRE")
            .arg("none")
            .arg(5)
            .query::<i64>(&mut c)
            .unwrap(),
        0
    );
    assert_eq!(
        redis::cmd("PEXPIRE")
            .arg("n")
            .arg(-1)
            .query::<i64>(&mut c)
            .unwrap(),
        1
    );
    assert_eq!(c.exists::<_, i64>("n").unwrap(), 0);
    // Bad times.
    for bad in ["0", "-5", "x"] {
        assert_eq!(
            err_text(
                redis::cmd("SET")
                    .arg("k")
                    .arg("v")
                    .arg("EX")
                    .arg(bad)
                    .query::<()>(&mut c)
            ),
            "ERR invalid expire time in 'set' command",
            "{bad}"
        );
    }
    assert_eq!(
        err_text(
            redis::cmd("SET")
                .arg("k")
                .arg("v")
                .arg("EX")
                .arg(1)
                .arg("KEEPTTL")
                .query::<()>(&mut c)
        ),
        "ERR syntax error"
    );
    // Past its time, the key is absent to every command.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(c.get::<_, Option<String>>("short").unwrap(), None);
    assert_eq!(c.exists::<_, i64>("short").unwrap(), 0);
    assert_eq!(
        redis::cmd("TTL").arg("short").query::<i64>(&mut c).unwrap(),
        -2
    );
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
    assert_eq!(keys, ["forever", "long"]);
    let scanned: Vec<String> = c.scan().unwrap().collect();
    assert_eq!(scanned, ["forever", "long"]);
    assert_eq!(redis::cmd("DBSIZE").query::<i64>(&mut c).unwrap(), 2);
    let set_nx: String = redis::cmd("SET")
        .arg("short")
        .arg("again")
        .arg("NX")
        .query(&mut c)
        .unwrap();
    assert_eq!(set_nx, "OK", "an expired key does not block NX");
    // The sweeper deletes expired keys from the store itself.
    for i in 0..30 {
        let _: () = redis::cmd("SET")
            .arg(format!("gone{i}"))
            .arg("v")
            .arg("PX")
            .arg(20)
            .query(&mut c)
            .unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(600));
    drop(c);
    server.stop();
    let store = wal_kv::Store::open(&data, wal_kv::Options::default()).unwrap();
    let left: Vec<_> = store
        .scan(std::ops::Bound::Unbounded, std::ops::Bound::Unbounded)
        .unwrap()
        .into_iter()
        .map(|(k, _)| String::from_utf8(k.to_vec()).unwrap())
        .collect();
    assert_eq!(left, ["forever", "long", "short"]);
    store.close().unwrap();
}

/// Pipelined reads whose replies outgrow the connection's output buffer
/// (10 MiB of them) all arrive, whole and in order; a value over the
/// store's limit is refused and the connection goes on.
#[test]
fn large_pipelined_replies_arrive_whole() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(&dir.path().join("data")).unwrap();
    let mut c = server.client();
    let too_big = vec![b'x'; 1 << 20];
    let refused = c.set::<_, _, ()>("huge", too_big.as_slice()).unwrap_err();
    assert!(
        refused.detail().unwrap_or("").contains("over the limit"),
        "{refused}"
    );
    let big: Vec<u8> = (0..256u32 << 10)
        .map(|i| u8::try_from(i % 251).unwrap())
        .collect();
    let _: () = c.set("big", big.as_slice()).unwrap();
    let _: () = c.set("small", "s").unwrap();
    let mut pipe = redis::pipe();
    for i in 0..40 {
        pipe.get(if i % 2 == 0 { "big" } else { "small" });
    }
    let replies: Vec<Vec<u8>> = pipe.query(&mut c).unwrap();
    assert_eq!(replies.len(), 40);
    for (i, r) in replies.iter().enumerate() {
        if i % 2 == 0 {
            assert!(r == &big, "reply {i}");
        } else {
            assert_eq!(r, b"s");
        }
    }
    server.stop();
}
