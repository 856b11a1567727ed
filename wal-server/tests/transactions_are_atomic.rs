//! MULTI/EXEC/DISCARD and WATCH through the `redis` client: queued
//! commands run together, WATCH aborts on a change, a refused command
//! aborts the EXEC, and concurrent transfers keep a sum.

mod common;

use common::{Running, err_text};
use redis::Commands;

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
