//! Commands: each request's name and arguments checked as Redis checks
//! them (its arity and its error texts), then run against the backend.
//! A read-modify-write (`INCR`, `APPEND`, `SET NX`, `GETDEL`, ...) reads,
//! then writes guarded by what it read, and reads again when the guard did
//! not hold: atomic on one node and, later, on many alike.

use bytes::Bytes;
use wal_kv::WriteBatch;
use wal_raft::{Guard, Request};

use wal_kv::{Durability, Isolation};

use crate::backend::{Db, Local, TxnDb};
use crate::scan::{self, Cursors};
use crate::{Protocol, Reply, ServerError};

/// A connection's state.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Session {
    /// Its protocol version.
    pub protocol: Protocol,
    /// Its id (`CLIENT ID`).
    pub id: u64,
    /// Its name (`CLIENT SETNAME`).
    pub name: Option<Bytes>,
    /// Set by `QUIT`: answer, then close.
    pub closing: bool,
    /// The commands queued since `MULTI`.
    multi: Option<Vec<Vec<Bytes>>>,
    /// A command queued since `MULTI` was refused: `EXEC` aborts.
    multi_refused: bool,
    /// Keys `WATCH`ed and their values then: `EXEC` aborts if one changed.
    watched: Vec<(Bytes, Option<Bytes>)>,
    /// `SCAN`'s cursors.
    cursors: Cursors,
}

impl Session {
    /// The state of a new connection numbered `id`.
    pub fn new(id: u64) -> Session {
        Session {
            id,
            ..Session::default()
        }
    }
}

/// Commands and their arity, Redis's convention: `n` exactly `n`
/// arguments with the name, `-n` at least `n`.
const COMMANDS: [(&str, i32); 30] = [
    ("SCAN", -2),
    ("KEYS", 2),
    ("MULTI", 1),
    ("EXEC", 1),
    ("DISCARD", 1),
    ("WATCH", -2),
    ("UNWATCH", 1),
    ("PING", -1),
    ("ECHO", 2),
    ("QUIT", -1),
    ("HELLO", -1),
    ("GET", 2),
    ("SET", -3),
    ("GETDEL", 2),
    ("DEL", -2),
    ("EXISTS", -2),
    ("MGET", -2),
    ("MSET", -3),
    ("INCR", 2),
    ("DECR", 2),
    ("INCRBY", 3),
    ("DECRBY", 3),
    ("APPEND", 3),
    ("STRLEN", 2),
    ("DBSIZE", 1),
    ("CLIENT", -2),
    ("COMMAND", -1),
    ("SELECT", 2),
    ("FLUSHDB", -1),
    ("INFO", -1),
];

/// How many times a read-modify-write is tried before giving up (each
/// failure means another client changed the key in between).
const RMW_ATTEMPTS_MAX: usize = 1000;

/// Runs one request.
///
/// # Errors
/// A failure of the store (the connection should then be closed); a
/// client's mistakes are error replies.
pub fn execute(db: &Local, session: &mut Session, args: &[Bytes]) -> Result<Reply, ServerError> {
    let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
    // A command refused before it could be queued makes the EXEC abort,
    // as in Redis.
    let in_multi = session.multi.is_some();
    let Some(&(_, arity)) = COMMANDS.iter().find(|(n, _)| *n == name) else {
        session.multi_refused |= in_multi;
        return Ok(unknown(args));
    };
    let n = i32::try_from(args.len()).unwrap_or(i32::MAX);
    if (arity > 0 && n != arity) || (arity < 0 && n < -arity) {
        session.multi_refused |= in_multi;
        return Ok(Reply::error(format!(
            "ERR wrong number of arguments for '{}' command",
            name.to_ascii_lowercase()
        )));
    }
    let a = &args[1..];
    // Inside MULTI, data commands are queued; connection commands
    // (PING, CLIENT, ...) run at once, as in Redis.
    if is_data(&name)
        && let Some(queue) = session.multi.as_mut()
    {
        queue.push(args.to_vec());
        return Ok(Reply::Simple("QUEUED".into()));
    }
    Ok(match name.as_str() {
        "PING" => match a {
            [] => Reply::Simple("PONG".into()),
            [msg] => Reply::Bulk(msg.clone()),
            _ => arity_error("ping"),
        },
        "ECHO" => Reply::Bulk(a[0].clone()),
        "QUIT" => {
            session.closing = true;
            Reply::ok()
        }
        "HELLO" => hello(session, a),
        "CLIENT" => client(session, a),
        "COMMAND" => command(a),
        "SELECT" => match &a[0][..] {
            b"0" => Reply::ok(),
            _ => Reply::error("ERR DB index is out of range"),
        },
        "INFO" => Reply::Bulk(Bytes::from(format!(
            "# Server\r\nredis_version:7.0.0\r\nwalkv_version:{}\r\n",
            env!("CARGO_PKG_VERSION")
        ))),
        "MULTI" if session.multi.is_some() => Reply::error("ERR MULTI calls can not be nested"),
        "MULTI" => {
            session.multi = Some(Vec::new());
            session.multi_refused = false;
            Reply::ok()
        }
        "DISCARD" => match session.multi.take() {
            Some(_) => {
                session.watched.clear();
                Reply::ok()
            }
            None => Reply::error("ERR DISCARD without MULTI"),
        },
        "EXEC" => exec(db, session)?,
        "WATCH" if session.multi.is_some() => Reply::error("ERR WATCH inside MULTI is not allowed"),
        "WATCH" => {
            for k in a {
                let now = db.get(k)?;
                session.watched.push((k.clone(), now));
            }
            Reply::ok()
        }
        "UNWATCH" => {
            session.watched.clear();
            Reply::ok()
        }
        "SCAN" => scan::scan(&mut &*db, &mut session.cursors, a)?,
        _ => data(&mut &*db, &name, a)?,
    })
}

/// The commands that read or write data: queued inside `MULTI`.
fn is_data(name: &str) -> bool {
    matches!(
        name,
        "GET"
            | "KEYS"
            | "SET"
            | "GETDEL"
            | "DEL"
            | "EXISTS"
            | "MGET"
            | "MSET"
            | "INCR"
            | "DECR"
            | "INCRBY"
            | "DECRBY"
            | "APPEND"
            | "STRLEN"
            | "DBSIZE"
            | "FLUSHDB"
    )
}

/// Runs a data command (arity checked) against `db`.
fn data(db: &mut dyn Db, name: &str, a: &[Bytes]) -> Result<Reply, ServerError> {
    Ok(match name {
        "GET" => db.get(&a[0])?.map_or(Reply::Null, Reply::Bulk),
        "SET" => set(db, a)?,
        "GETDEL" => rmw(db, &a[0], |old| match old {
            Some(v) => (Some(None), Reply::Bulk(v.clone())),
            None => (None, Reply::Null),
        })?,
        "DEL" | "EXISTS" => count_keys(db, name, a)?,
        "MGET" => Reply::Array(
            a.iter()
                .map(|k| Ok(db.get(k)?.map_or(Reply::Null, Reply::Bulk)))
                .collect::<Result<_, ServerError>>()?,
        ),
        "MSET" => mset(db, a)?,
        "INCR" => incr_by(db, &a[0], Ok(1))?,
        "DECR" => incr_by(db, &a[0], Ok(-1))?,
        "INCRBY" => incr_by(db, &a[0], integer(&a[1]))?,
        "DECRBY" => incr_by(db, &a[0], integer(&a[1]).and_then(negate))?,
        "APPEND" => {
            let tail = a[1].clone();
            rmw(db, &a[0], move |old| {
                let mut v = old.map(|o| o.to_vec()).unwrap_or_default();
                v.extend_from_slice(&tail);
                let len = i64::try_from(v.len()).unwrap_or(i64::MAX);
                (Some(Some(Bytes::from(v))), Reply::Integer(len))
            })?
        }
        "STRLEN" => Reply::Integer(db.get(&a[0])?.map_or(0, |v| len_i64(v.len()))),
        "DBSIZE" => Reply::Integer(len_i64(db.keys()?.len())),
        "FLUSHDB" => flush(db)?,
        "KEYS" => scan::keys(db, &a[0])?,
        _ => Reply::error(format!("ERR unknown command '{name}'")),
    })
}

/// `EXEC`: the queued commands in one serializable transaction of the
/// store, committed durably together; aborted (a null reply) if a watched
/// key no longer holds the value it had at `WATCH`. A commit that loses to
/// a concurrent write runs the commands again, as if they had all run at
/// the commit.
fn exec(local: &Local, session: &mut Session) -> Result<Reply, ServerError> {
    let Some(queue) = session.multi.take() else {
        return Ok(Reply::error("ERR EXEC without MULTI"));
    };
    let watched = std::mem::take(&mut session.watched);
    if std::mem::take(&mut session.multi_refused) {
        return Ok(Reply::error(
            "EXECABORT Transaction discarded because of previous errors.",
        ));
    }
    for _ in 0..RMW_ATTEMPTS_MAX {
        let mut txn = TxnDb(local.store().transaction_with(Isolation::Serializable));
        for (key, then) in &watched {
            if txn.get(key)? != *then {
                return Ok(Reply::NullArray);
            }
        }
        let mut replies = Vec::with_capacity(queue.len());
        for args in &queue {
            let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
            replies.push(data(&mut txn, &name, &args[1..])?);
        }
        match txn.0.commit(Durability::Sync) {
            Ok(_) => return Ok(Reply::Array(replies)),
            Err(e) if e.is_retryable() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Reply::error(
        "ERR the transaction kept conflicting; nothing was applied",
    ))
}

fn arity_error(name: &str) -> Reply {
    Reply::error(format!(
        "ERR wrong number of arguments for '{name}' command"
    ))
}

/// Redis's text: the name and the first arguments, quoted.
fn unknown(args: &[Bytes]) -> Reply {
    let shown: String = args[1..]
        .iter()
        .take(20)
        .map(|a| format!("'{}' ", String::from_utf8_lossy(a)))
        .collect();
    Reply::error(format!(
        "ERR unknown command '{}', with args beginning with: {shown}",
        String::from_utf8_lossy(&args[0])
    ))
}

fn len_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

const NOT_AN_INTEGER: &str = "ERR value is not an integer or out of range";

fn integer(b: &[u8]) -> Result<i64, Reply> {
    std::str::from_utf8(b)
        .ok()
        .filter(|s| !(s.starts_with('+') || (s.len() > 1 && s.starts_with('0'))))
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| Reply::error(NOT_AN_INTEGER))
}

fn negate(n: i64) -> Result<i64, Reply> {
    n.checked_neg()
        .ok_or_else(|| Reply::error("ERR decrement would overflow"))
}

/// Reads `key`, lets `change` decide (`Some(None)` deletes, `Some(Some(v))`
/// writes `v`, `None` writes nothing) and what to answer, and writes the
/// change guarded by the value read, again from the read if another client
/// changed the key in between.
fn rmw(
    db: &mut dyn Db,
    key: &Bytes,
    mut change: impl FnMut(Option<&Bytes>) -> (Option<Option<Bytes>>, Reply),
) -> Result<Reply, ServerError> {
    for _ in 0..RMW_ATTEMPTS_MAX {
        let old = db.get(key)?;
        let (new, reply) = change(old.as_ref());
        let Some(new) = new else {
            return Ok(reply);
        };
        let mut batch = WriteBatch::new();
        match new {
            Some(v) => batch.put(key.clone(), v),
            None => batch.delete(key.clone()),
        };
        let guard = Guard {
            key: key.clone(),
            expect: old,
        };
        if db.write(&Request::guarded(vec![guard], batch))?.is_none() {
            return Ok(reply);
        }
    }
    Ok(Reply::error(
        "ERR the key kept changing; the command was not applied",
    ))
}

fn incr_by(db: &mut dyn Db, key: &Bytes, by: Result<i64, Reply>) -> Result<Reply, ServerError> {
    let by = match by {
        Ok(n) => n,
        Err(reply) => return Ok(reply),
    };
    rmw(db, key, |old| {
        let n = match old.map(|v| integer(v)) {
            None => 0,
            Some(Ok(n)) => n,
            Some(Err(reply)) => return (None, reply),
        };
        match n.checked_add(by) {
            Some(sum) => (
                Some(Some(Bytes::from(sum.to_string()))),
                Reply::Integer(sum),
            ),
            None => (
                None,
                Reply::error("ERR increment or decrement would overflow"),
            ),
        }
    })
}

/// `SET key value [NX | XX] [GET]`. Expiry options are refused with a
/// clear error until keys can expire.
fn set(db: &mut dyn Db, a: &[Bytes]) -> Result<Reply, ServerError> {
    let (key, value) = (&a[0], &a[1]);
    let (mut nx, mut xx, mut get) = (false, false, false);
    for opt in &a[2..] {
        match opt.to_ascii_uppercase().as_slice() {
            b"NX" if !xx => nx = true,
            b"XX" if !nx => xx = true,
            b"GET" => get = true,
            b"EX" | b"PX" | b"EXAT" | b"PXAT" | b"KEEPTTL" => {
                return Ok(Reply::error("ERR expiring keys are not supported yet"));
            }
            _ => return Ok(Reply::error("ERR syntax error")),
        }
    }
    if !(nx || xx || get) {
        let mut batch = WriteBatch::new();
        batch.put(key.clone(), value.clone());
        db.write(&Request::new(batch))?;
        return Ok(Reply::ok());
    }
    rmw(db, key, |old| {
        let exists = old.is_some();
        let answer = if get {
            old.cloned().map_or(Reply::Null, Reply::Bulk)
        } else {
            Reply::ok()
        };
        if (nx && exists) || (xx && !exists) {
            let skipped = if get { answer } else { Reply::Null };
            return (None, skipped);
        }
        (Some(Some(value.clone())), answer)
    })
}

fn count_keys(db: &mut dyn Db, name: &str, keys: &[Bytes]) -> Result<Reply, ServerError> {
    let mut found = 0;
    let mut batch = WriteBatch::new();
    for k in keys {
        if db.get(k)?.is_some() {
            found += 1;
            batch.delete(k.clone());
        }
    }
    if name == "DEL" && !batch.is_empty() {
        db.write(&Request::new(batch))?;
    }
    Ok(Reply::Integer(found))
}

fn mset(db: &mut dyn Db, a: &[Bytes]) -> Result<Reply, ServerError> {
    if !a.len().is_multiple_of(2) {
        return Ok(arity_error("mset"));
    }
    let mut batch = WriteBatch::new();
    for pair in a.chunks(2) {
        batch.put(pair[0].clone(), pair[1].clone());
    }
    db.write(&Request::new(batch))?;
    Ok(Reply::ok())
}

fn flush(db: &mut dyn Db) -> Result<Reply, ServerError> {
    let keys = db.keys()?;
    for chunk in keys.chunks(1000) {
        let mut batch = WriteBatch::new();
        for k in chunk {
            batch.delete(k.clone());
        }
        db.write(&Request::new(batch))?;
    }
    Ok(Reply::ok())
}

/// `HELLO [protover [SETNAME name]]`: switches the protocol and answers
/// with the server's description.
fn hello(session: &mut Session, a: &[Bytes]) -> Reply {
    let mut i = 0;
    if let Some(v) = a.first() {
        match &v[..] {
            b"2" => session.protocol = Protocol::Resp2,
            b"3" => session.protocol = Protocol::Resp3,
            _ => return Reply::error("NOPROTO unsupported protocol version"),
        }
        i = 1;
    }
    while i < a.len() {
        match a[i].to_ascii_uppercase().as_slice() {
            b"SETNAME" if i + 1 < a.len() => {
                session.name = Some(a[i + 1].clone());
                i += 2;
            }
            b"AUTH" => return Reply::error("ERR AUTH is not supported"),
            _ => return Reply::error("ERR syntax error"),
        }
    }
    let proto = match session.protocol {
        Protocol::Resp2 => 2,
        Protocol::Resp3 => 3,
    };
    let text = |s: &str| Reply::Bulk(Bytes::from(s.to_owned()));
    Reply::Map(vec![
        (text("server"), text("walkv")),
        (text("version"), text(env!("CARGO_PKG_VERSION"))),
        (text("proto"), Reply::Integer(proto)),
        (
            text("id"),
            Reply::Integer(i64::try_from(session.id).unwrap_or(0)),
        ),
        (text("mode"), text("standalone")),
        (text("role"), text("master")),
        (text("modules"), Reply::Array(Vec::new())),
    ])
}

fn client(session: &mut Session, a: &[Bytes]) -> Reply {
    match (a[0].to_ascii_uppercase().as_slice(), &a[1..]) {
        (b"ID", []) => Reply::Integer(i64::try_from(session.id).unwrap_or(0)),
        (b"GETNAME", []) => session.name.clone().map_or(Reply::Null, Reply::Bulk),
        (b"SETNAME", [name]) => {
            if name.iter().any(|b| *b <= b' ' || *b > b'~') {
                return Reply::error(
                    "ERR Client names cannot contain spaces, newlines or special characters.",
                );
            }
            session.name = (!name.is_empty()).then(|| name.clone());
            Reply::ok()
        }
        (b"SETINFO", [_, _]) => Reply::ok(),
        _ => Reply::error(format!(
            "ERR unknown subcommand or wrong number of arguments for '{}'. Try CLIENT HELP.",
            String::from_utf8_lossy(&a[0])
        )),
    }
}

/// `COMMAND`, `COMMAND COUNT`, `COMMAND DOCS`: as much as clients ask at
/// connect (names and arities; no docs).
fn command(a: &[Bytes]) -> Reply {
    match a.first().map(|s| s.to_ascii_uppercase()) {
        None => Reply::Array(
            COMMANDS
                .iter()
                .map(|(name, arity)| {
                    Reply::Array(vec![
                        Reply::Bulk(Bytes::from(name.to_ascii_lowercase())),
                        Reply::Integer(i64::from(*arity)),
                    ])
                })
                .collect(),
        ),
        Some(sub) if sub == b"COUNT" => Reply::Integer(len_i64(COMMANDS.len())),
        Some(sub) if sub == b"DOCS" => Reply::Map(Vec::new()),
        Some(sub) => Reply::error(format!(
            "ERR unknown subcommand '{}'. Try COMMAND HELP.",
            String::from_utf8_lossy(&sub)
        )),
    }
}
