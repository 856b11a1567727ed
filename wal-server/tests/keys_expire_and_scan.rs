//! Times to live and the keyspace commands through the `redis` client:
//! expired keys are gone for every command and from the store, and SCAN
//! returns every key once.

mod common;

use common::{Running, err_text, int};
use redis::Commands;

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
    assert_eq!(int(&mut c, &["TTL", "forever"]), -1);
    assert_eq!(int(&mut c, &["TTL", "none"]), -2);
    // INCR and APPEND keep the time to live; SET without KEEPTTL drops it.
    let _: () = redis::cmd("SET")
        .arg("n")
        .arg("1")
        .arg("EX")
        .arg(100)
        .query(&mut c)
        .unwrap();
    let _: i64 = c.incr("n", 1).unwrap();
    assert!(int(&mut c, &["TTL", "n"]) > 0);
    let _: () = redis::cmd("SET")
        .arg("n")
        .arg("5")
        .arg("KEEPTTL")
        .query(&mut c)
        .unwrap();
    assert!(int(&mut c, &["TTL", "n"]) > 0);
    let _: () = c.set("n", "6").unwrap();
    assert_eq!(int(&mut c, &["TTL", "n"]), -1);
    // EXPIRE, PERSIST.
    assert_eq!(int(&mut c, &["EXPIRE", "n", "50"]), 1);
    assert_eq!(int(&mut c, &["PERSIST", "n"]), 1);
    assert_eq!(int(&mut c, &["PERSIST", "n"]), 0);
    assert_eq!(int(&mut c, &["EXPIRE", "none", "5"]), 0);
    assert_eq!(int(&mut c, &["PEXPIRE", "n", "-1"]), 1);
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
    assert_eq!(int(&mut c, &["TTL", "short"]), -2);
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
    assert_eq!(keys, ["forever", "long"]);
    let scanned: Vec<String> = c.scan().unwrap().collect();
    assert_eq!(scanned, ["forever", "long"]);
    assert_eq!(int(&mut c, &["DBSIZE"]), 2);
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

/// A cursor is the server's, not its connection's: a client with a pool of
/// connections goes on with a scan on another one, and a call sent again
/// (after a timeout) answers the same page.
#[test]
fn a_scan_goes_on_on_any_connection_and_a_cursor_can_be_sent_again() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(&dir.path().join("data")).unwrap();
    let (mut first, mut second) = (server.client(), server.client());
    for i in 0..30 {
        let _: () = first.set(format!("k{i:02}"), i).unwrap();
    }
    let page = |c: &mut redis::Connection, cursor: u64| -> (u64, Vec<String>) {
        redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(10)
            .query(c)
            .unwrap()
    };
    let (cursor, one) = page(&mut first, 0);
    let (again, two) = page(&mut second, cursor);
    // Sent again, on either connection: the same page. Its cursor may be
    // a new number for the same place.
    let (resent, same) = page(&mut second, cursor);
    assert_eq!(same, two, "sent again");
    assert_eq!(page(&mut first, cursor).1, two, "on the first connection");
    let (end, three) = page(&mut first, again);
    assert_eq!(page(&mut second, resent).1, three, "from the resent cursor");
    // 30 keys in pages of 10: the third page is full, so a fourth, empty
    // one ends the scan with cursor 0.
    assert_ne!(end, 0);
    assert_eq!(page(&mut second, end), (0, Vec::new()), "the end");
    let mut all: Vec<String> = [one, two, three].concat();
    assert_eq!(all.len(), 30);
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 30, "every key once");
    server.stop();
}
