//! The single-node server through a real client library (`redis`) and
//! through raw sockets for exact bytes: the string commands' answers and
//! error texts as Redis gives them, RESP3 after `HELLO 3`, pipelining (and
//! replies larger than the output buffer), a bad request answered and the
//! connection closed, read-modify-writes that lose no update under
//! concurrency, data that survives a restart, and a second server on the
//! same directory refused.

mod common;

use common::{Running, err_text, int, raw, raw_until};
use redis::Commands;

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
    assert_eq!(int(&mut c, &["DBSIZE"]), 3);
    let deleted: i64 = redis::cmd("DEL")
        .arg(&["a", "b", "zz"])
        .query(&mut c)
        .unwrap();
    assert_eq!(deleted, 2);
    // Counters.
    assert_eq!(c.incr::<_, _, i64>("n", 1).unwrap(), 1);
    assert_eq!(int(&mut c, &["INCRBY", "n", "41"]), 42);
    assert_eq!(int(&mut c, &["DECR", "n"]), 41);
    assert_eq!(int(&mut c, &["DECRBY", "n", "50"]), -9);
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
    assert_eq!(int(&mut c, &["APPEND", "s", "de"]), 5);
    assert_eq!(int(&mut c, &["STRLEN", "s"]), 5);
    assert_eq!(int(&mut c, &["STRLEN", "none"]), 0);
    // Connection commands.
    let _: () = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("me")
        .query(&mut c)
        .unwrap();
    let name: String = redis::cmd("CLIENT").arg("GETNAME").query(&mut c).unwrap();
    assert_eq!(name, "me");
    assert!(int(&mut c, &["CLIENT", "ID"]) > 0);
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
    assert_eq!(int(&mut c, &["STRLEN", "log"]), 200);
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
    let e = second.expect_err("a second server on the same directory fails");
    assert!(e.to_string().contains("locked"), "{e}");
    drop(c);
    server.stop();
    let server = Running::start(&data).unwrap();
    let mut c = server.client();
    assert_eq!(c.get::<_, String>("durable").unwrap(), "yes");
    server.stop();
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

/// INFO tells an operator what the server is doing: its clients, the
/// commands run, the log's appends and fsyncs, the store's tables; one
/// section when asked for one.
#[test]
fn info_reports_clients_commands_and_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(&dir.path().join("data")).unwrap();
    let mut c = server.client();
    let mut other = server.client();
    // Served, so counted, before INFO looks.
    let _: String = redis::cmd("PING").query(&mut other).unwrap();
    for i in 0..10 {
        let _: () = c.set(format!("k{i}"), i).unwrap();
    }
    let text: String = redis::cmd("INFO").query(&mut c).unwrap();
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(field("connected_clients"), 2);
    assert!(field("total_commands_processed") >= 10);
    assert!(field("wal_fsyncs") >= 1);
    assert!(field("wal_appends") >= 10);
    assert_eq!(field("tcp_port"), u64::from(server.addr.port()));
    let one: String = redis::cmd("INFO").arg("persistence").query(&mut c).unwrap();
    assert!(one.starts_with("# Persistence"), "{one}");
    assert!(!one.contains("# Server"), "{one}");
    let none: String = redis::cmd("INFO").arg("nosuch").query(&mut c).unwrap();
    assert_eq!(none, "");
    server.stop();
}

/// `--sync no` (Redis's `appendfsync no`): writes are answered without an
/// fsync of their own; `always` (the default) syncs before answering.
#[test]
fn sync_mode_decides_whether_a_write_waits_for_its_fsync() {
    let fsyncs = |mode: wal_server::SyncMode| {
        let dir = tempfile::tempdir().unwrap();
        let server = Running::start_with(&dir.path().join("data"), move |c| c.sync = mode).unwrap();
        let mut c = server.client();
        for i in 0..20 {
            let _: () = c.set(format!("k{i}"), i).unwrap();
        }
        assert_eq!(c.get::<_, i64>("k19").unwrap(), 19);
        let text: String = redis::cmd("INFO").arg("persistence").query(&mut c).unwrap();
        server.stop();
        text.lines()
            .find_map(|l| l.strip_prefix("wal_fsyncs:"))
            .unwrap()
            .trim()
            .parse::<u64>()
            .unwrap()
    };
    assert!(fsyncs(wal_server::SyncMode::Always) >= 20);
    assert_eq!(fsyncs(wal_server::SyncMode::No), 0);
}
