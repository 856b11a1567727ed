//! Commands: each request's name and arguments checked as Redis checks
//! them (its arity and its error texts), then run against the backend.
//! A read-modify-write (`INCR`, `APPEND`, `SET NX`, `GETDEL`, ...) reads,
//! then writes guarded by what it read, and reads again when the guard did
//! not hold: atomic on one node and, later, on many alike.

use bytes::Bytes;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::backend::{Backend, Db, Pending};
use crate::info::{Counters, info};
use crate::scan::{self, Cursors};
use crate::strings::{self, RMW_ATTEMPTS_MAX, len_i64};
use crate::{Protocol, Reply, ServerError};

/// A connection's state.
#[derive(Debug)]
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
    /// `SCAN`'s cursors: the server's, shared by its connections.
    cursors: Arc<Cursors>,
    /// The latest write applied for it but not yet known durable: awaited
    /// before its answer is sent or its next command runs.
    pub(crate) pending: Pending,
    /// `READONLY`: on a cluster follower, reads answer from its own data
    /// (possibly behind the leader's) instead of redirecting.
    stale: bool,
}

impl Session {
    /// The state of a new connection numbered `id`, resuming scans
    /// through `cursors` (the server's).
    pub fn new(id: u64, cursors: Arc<Cursors>) -> Session {
        Session {
            protocol: Protocol::default(),
            id,
            name: None,
            closing: false,
            multi: None,
            multi_refused: false,
            watched: Vec::new(),
            cursors,
            pending: Pending::default(),
            stale: false,
        }
    }
}

/// Commands and their arity, Redis's convention: `n` exactly `n`
/// arguments with the name, `-n` at least `n`.
const COMMANDS: [(&str, i32); 37] = [
    ("READONLY", 1),
    ("READWRITE", 1),
    ("TTL", 2),
    ("PTTL", 2),
    ("EXPIRE", 3),
    ("PEXPIRE", 3),
    ("PERSIST", 2),
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

/// Runs one request.
///
/// # Errors
/// A failure of the store (the connection should then be closed); a
/// client's mistakes are error replies.
pub(crate) fn execute(
    backend: &Backend,
    counters: &Counters,
    session: &mut Session,
    args: &[Bytes],
) -> Result<Reply, ServerError> {
    counters.commands.fetch_add(1, Ordering::Relaxed);
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
        "INFO" => {
            let section = a.first().map(|s| String::from_utf8_lossy(s).into_owned());
            Reply::Bulk(Bytes::from(info(backend, counters, section.as_deref())))
        }
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
        "EXEC" => exec(backend, session)?,
        "READONLY" => {
            session.stale = true;
            Reply::ok()
        }
        "READWRITE" => {
            session.stale = false;
            Reply::ok()
        }
        "WATCH" if session.multi.is_some() => Reply::error("ERR WATCH inside MULTI is not allowed"),
        "WATCH" => {
            let mut db = backend.db(session.stale, None);
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
        "SCAN" => scan::scan(&mut backend.db(session.stale, None), &session.cursors, a)?,
        _ => strings::data(
            &mut backend.db(session.stale, Some(&mut session.pending)),
            &name,
            a,
        )?,
    })
}

/// The commands that read or write data: queued inside `MULTI`.
fn is_data(name: &str) -> bool {
    matches!(
        name,
        "GET"
            | "KEYS"
            | "TTL"
            | "PTTL"
            | "EXPIRE"
            | "PEXPIRE"
            | "PERSIST"
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

/// `EXEC`: the queued commands in one transaction, committed together
/// (durably on one node, as one Raft entry on a cluster); aborted (a null
/// reply) if a watched key no longer holds the value it had at `WATCH`. A
/// commit that loses to a concurrent write runs the commands again, as if
/// they had all run at the commit.
fn exec(backend: &Backend, session: &mut Session) -> Result<Reply, ServerError> {
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
        let mut txn = backend.begin(Some(&mut session.pending))?;
        for (key, then) in &watched {
            if txn.get(key)? != *then {
                return Ok(Reply::NullArray);
            }
        }
        let mut replies = Vec::with_capacity(queue.len());
        for args in &queue {
            let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
            replies.push(strings::data(&mut *txn, &name, &args[1..])?);
        }
        if txn.commit(&watched)? {
            return Ok(Reply::Array(replies));
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
