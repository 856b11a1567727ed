//! The commands on strings, with their times to live (stored as
//! `value.rs` says). A read-modify-write reads the stored bytes, lets the
//! command decide, and writes guarded by those bytes, reading again when
//! another client changed the key in between.

use bytes::Bytes;
use wal_kv::WriteBatch;
use wal_raft::{Guard, Request};

use crate::backend::Db;
use crate::value::{Value, now_ms};
use crate::{Reply, ServerError};

/// How many times a read-modify-write is tried before giving up (each
/// failure means another client changed the key in between).
pub(crate) const RMW_ATTEMPTS_MAX: usize = 1000;

const NOT_AN_INTEGER: &str = "ERR value is not an integer or out of range";

/// Runs a data command (arity checked) against `db`.
pub(crate) fn data(db: &mut dyn Db, name: &str, a: &[Bytes]) -> Result<Reply, ServerError> {
    let now = now_ms();
    Ok(match name {
        "GET" => live(db, &a[0], now)?.map_or(Reply::Null, |v| Reply::Bulk(v.data)),
        "SET" => set(db, a, now)?,
        "GETDEL" => rmw(db, &a[0], now, |old| match old {
            Some(v) => (Some(None), Reply::Bulk(v.data.clone())),
            None => (None, Reply::Null),
        })?,
        "DEL" | "EXISTS" => count_keys(db, name, a, now)?,
        "MGET" => Reply::Array(
            a.iter()
                .map(|k| Ok(live(db, k, now)?.map_or(Reply::Null, |v| Reply::Bulk(v.data))))
                .collect::<Result<_, ServerError>>()?,
        ),
        "MSET" => mset(db, a)?,
        "INCR" => incr_by(db, &a[0], Ok(1), now)?,
        "DECR" => incr_by(db, &a[0], Ok(-1), now)?,
        "INCRBY" => incr_by(db, &a[0], integer(&a[1]), now)?,
        "DECRBY" => incr_by(db, &a[0], integer(&a[1]).and_then(negate), now)?,
        "APPEND" => {
            let tail = a[1].clone();
            rmw(db, &a[0], now, move |old| {
                let mut v = old.cloned().unwrap_or(Value::plain(Bytes::new()));
                let mut data = v.data.to_vec();
                data.extend_from_slice(&tail);
                let len = len_i64(data.len());
                v.data = Bytes::from(data);
                (Some(Some(v)), Reply::Integer(len))
            })?
        }
        "STRLEN" => Reply::Integer(live(db, &a[0], now)?.map_or(0, |v| len_i64(v.data.len()))),
        "DBSIZE" => Reply::Integer(len_i64(live_pairs(db.pairs()?, now)?.len())),
        "FLUSHDB" => flush(db)?,
        "KEYS" => crate::scan::keys(live_pairs(db.pairs()?, now)?, &a[0]),
        "TTL" | "PTTL" => ttl(db, &a[0], name == "TTL", now)?,
        "EXPIRE" | "PEXPIRE" => expire(db, &a[0], &a[1], name == "EXPIRE", now)?,
        "PERSIST" => rmw(db, &a[0], now, |old| match old {
            Some(v) if v.expires_at_ms.is_some() => {
                (Some(Some(Value::plain(v.data.clone()))), Reply::Integer(1))
            }
            _ => (None, Reply::Integer(0)),
        })?,
        _ => Reply::error(format!("ERR unknown command '{name}'")),
    })
}

/// The live keys of `pairs`, in order.
pub(crate) fn live_pairs(pairs: Vec<(Bytes, Bytes)>, now: u64) -> Result<Vec<Bytes>, ServerError> {
    let mut keys = Vec::with_capacity(pairs.len());
    for (k, raw) in pairs {
        if Value::decode(&k, &raw)?.live(now) {
            keys.push(k);
        }
    }
    Ok(keys)
}

fn live(db: &mut dyn Db, key: &[u8], now: u64) -> Result<Option<Value>, ServerError> {
    match db.get(key)? {
        Some(raw) => Ok(Some(Value::decode(key, &raw)?).filter(|v| v.live(now))),
        None => Ok(None),
    }
}

pub(crate) fn len_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

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

/// Reads `key`, lets `change` decide from its live value (`Some(None)`
/// deletes, `Some(Some(v))` writes `v`, `None` writes nothing) and what to
/// answer, and writes the change guarded by the stored bytes read.
fn rmw(
    db: &mut dyn Db,
    key: &Bytes,
    now: u64,
    mut change: impl FnMut(Option<&Value>) -> (Option<Option<Value>>, Reply),
) -> Result<Reply, ServerError> {
    for _ in 0..RMW_ATTEMPTS_MAX {
        let raw = db.get(key)?;
        let old = match &raw {
            Some(r) => Some(Value::decode(key, r)?).filter(|v| v.live(now)),
            None => None,
        };
        let (new, reply) = change(old.as_ref());
        let Some(new) = new else {
            return Ok(reply);
        };
        let mut batch = WriteBatch::new();
        match new {
            Some(v) => batch.put(key.clone(), v.encode()),
            None => batch.delete(key.clone()),
        };
        let guard = Guard {
            key: key.clone(),
            expect: raw,
        };
        if db.write(&Request::guarded(vec![guard], batch))?.is_none() {
            return Ok(reply);
        }
    }
    Ok(Reply::error(
        "ERR the key kept changing; the command was not applied",
    ))
}

fn incr_by(
    db: &mut dyn Db,
    key: &Bytes,
    by: Result<i64, Reply>,
    now: u64,
) -> Result<Reply, ServerError> {
    let by = match by {
        Ok(n) => n,
        Err(reply) => return Ok(reply),
    };
    rmw(db, key, now, |old| {
        let n = match old.map(|v| integer(&v.data)) {
            None => 0,
            Some(Ok(n)) => n,
            Some(Err(reply)) => return (None, reply),
        };
        let Some(sum) = n.checked_add(by) else {
            return (
                None,
                Reply::error("ERR increment or decrement would overflow"),
            );
        };
        // The time to live stays, as in Redis.
        let value = Value {
            data: Bytes::from(sum.to_string()),
            expires_at_ms: old.and_then(|v| v.expires_at_ms),
        };
        (Some(Some(value)), Reply::Integer(sum))
    })
}

/// A time to live given in seconds or milliseconds, relative or absolute,
/// as milliseconds since the epoch; `None` for an invalid one.
fn expiry(option: &[u8], n: &[u8], now: u64) -> Option<u64> {
    let n: i64 = integer(n).ok().filter(|&n| n > 0)?;
    let n = u64::try_from(n).ok()?;
    match option {
        b"EX" => now.checked_add(n.checked_mul(1000)?),
        b"PX" => now.checked_add(n),
        b"EXAT" => n.checked_mul(1000),
        b"PXAT" => Some(n),
        _ => None,
    }
}

/// `SET key value [NX | XX] [GET] [EX s | PX ms | EXAT t | PXAT t | KEEPTTL]`.
fn set(db: &mut dyn Db, a: &[Bytes], now: u64) -> Result<Reply, ServerError> {
    let (key, value) = (&a[0], &a[1]);
    let (mut nx, mut xx, mut get, mut keep) = (false, false, false, false);
    let mut expires_at_ms = None;
    let mut i = 2;
    while i < a.len() {
        let opt = a[i].to_ascii_uppercase();
        match opt.as_slice() {
            b"NX" if !xx => nx = true,
            b"XX" if !nx => xx = true,
            b"GET" => get = true,
            b"KEEPTTL" if expires_at_ms.is_none() => keep = true,
            b"EX" | b"PX" | b"EXAT" | b"PXAT" if !keep && expires_at_ms.is_none() => {
                let Some(n) = a.get(i + 1) else {
                    return Ok(Reply::error("ERR syntax error"));
                };
                match expiry(&opt, n, now) {
                    Some(at) => expires_at_ms = Some(at),
                    None => return Ok(Reply::error("ERR invalid expire time in 'set' command")),
                }
                i += 1;
            }
            _ => return Ok(Reply::error("ERR syntax error")),
        }
        i += 1;
    }
    let fresh = Value {
        data: value.clone(),
        expires_at_ms,
    };
    if !(nx || xx || get || keep) {
        let mut batch = WriteBatch::new();
        batch.put(key.clone(), fresh.encode());
        db.write(&Request::new(batch))?;
        return Ok(Reply::ok());
    }
    rmw(db, key, now, |old| {
        let answer = if get {
            old.map_or(Reply::Null, |v| Reply::Bulk(v.data.clone()))
        } else {
            Reply::ok()
        };
        if (nx && old.is_some()) || (xx && old.is_none()) {
            return (None, if get { answer } else { Reply::Null });
        }
        let mut new = fresh.clone();
        if keep {
            new.expires_at_ms = old.and_then(|v| v.expires_at_ms);
        }
        (Some(Some(new)), answer)
    })
}

fn count_keys(db: &mut dyn Db, name: &str, keys: &[Bytes], now: u64) -> Result<Reply, ServerError> {
    let mut found = 0;
    let mut batch = WriteBatch::new();
    for k in keys {
        if let Some(raw) = db.get(k)? {
            if Value::decode(k, &raw)?.live(now) {
                found += 1;
            }
            // An expired key goes too, quietly.
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
        return Ok(Reply::error(
            "ERR wrong number of arguments for 'mset' command",
        ));
    }
    let mut batch = WriteBatch::new();
    for pair in a.chunks(2) {
        batch.put(pair[0].clone(), Value::plain(pair[1].clone()).encode());
    }
    db.write(&Request::new(batch))?;
    Ok(Reply::ok())
}

fn flush(db: &mut dyn Db) -> Result<Reply, ServerError> {
    let pairs = db.pairs()?;
    for chunk in pairs.chunks(1000) {
        let mut batch = WriteBatch::new();
        for (k, _) in chunk {
            batch.delete(k.clone());
        }
        db.write(&Request::new(batch))?;
    }
    Ok(Reply::ok())
}

/// `TTL`/`PTTL`: -2 for a missing key, -1 for one without expiry.
fn ttl(db: &mut dyn Db, key: &[u8], seconds: bool, now: u64) -> Result<Reply, ServerError> {
    Ok(Reply::Integer(match live(db, key, now)? {
        None => -2,
        Some(Value {
            expires_at_ms: None,
            ..
        }) => -1,
        Some(Value {
            expires_at_ms: Some(at),
            ..
        }) => {
            let ms = at.saturating_sub(now);
            let left = if seconds { ms.div_ceil(1000) } else { ms };
            i64::try_from(left).unwrap_or(i64::MAX)
        }
    }))
}

/// `EXPIRE`/`PEXPIRE key n`: 1 if the key exists (a time in the past
/// deletes it), 0 if not.
fn expire(
    db: &mut dyn Db,
    key: &Bytes,
    n: &[u8],
    seconds: bool,
    now: u64,
) -> Result<Reply, ServerError> {
    let n = match integer(n) {
        Ok(n) => n,
        Err(reply) => return Ok(reply),
    };
    let ms = if seconds {
        n.checked_mul(1000)
    } else {
        Some(n)
    };
    let Some(ms) = ms else {
        return Ok(Reply::error("ERR invalid expire time in 'expire' command"));
    };
    rmw(db, key, now, |old| {
        let Some(v) = old else {
            return (None, Reply::Integer(0));
        };
        if ms <= 0 {
            return (Some(None), Reply::Integer(1));
        }
        let at = now.saturating_add(u64::try_from(ms).unwrap_or(u64::MAX));
        let value = Value {
            data: v.data.clone(),
            expires_at_ms: Some(at),
        };
        (Some(Some(value)), Reply::Integer(1))
    })
}

/// One round of the expiry sweeper: looks at up to `count` keys after
/// `after` and deletes those past their time (each guarded by the bytes it
/// saw, so a write in between wins). Returns where the next round starts
/// (`None`: from the first key again).
///
/// # Errors
/// The store's errors.
pub(crate) fn sweep(
    db: &mut dyn Db,
    after: Option<Bytes>,
    count: usize,
) -> Result<Option<Bytes>, ServerError> {
    let pairs = db.pairs_after(after.as_deref(), count)?;
    let now = now_ms();
    let next = if pairs.len() < count {
        None
    } else {
        pairs.last().map(|(k, _)| k.clone())
    };
    for (k, raw) in pairs {
        if !Value::decode(&k, &raw)?.live(now) {
            let mut batch = WriteBatch::new();
            batch.delete(k.clone());
            db.write(&Request::guarded(vec![Guard::equals(k, raw)], batch))?;
        }
    }
    Ok(next)
}
