//! `SCAN cursor [MATCH pattern] [COUNT n] [TYPE type]` and `KEYS pattern`.
//!
//! Redis's cursor is a position in its hash table; here keys are in order,
//! so a cursor stands for the last key returned. Client libraries parse
//! cursors as integers, so the server maps the numbers it hands out to
//! those keys. The map is the server's, not a connection's: a client with a
//! pool of connections goes on with a scan on whichever connection it
//! takes next, and one may send a call again after a timeout, so a cursor
//! is good on any connection and more than once. The server keeps the
//! newest [`CURSORS_MAX`] (and [`CURSOR_KEY_BYTES_MAX`] of their keys); an
//! unknown cursor, forgotten or from before a restart, is an error, not a
//! silent restart. `0` starts and ends a scan, as in Redis; every key
//! present for a whole scan is returned exactly once.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;

use crate::backend::Db;
use crate::strings::live_pairs;
use crate::value::now_ms;
use crate::{Reply, ServerError};

/// The most cursors a server keeps.
pub const CURSORS_MAX: usize = 65_536;
/// The most bytes of keys the cursors a server keeps may hold; past it the
/// oldest are forgotten first.
pub const CURSOR_KEY_BYTES_MAX: usize = 16 << 20;

/// A server's cursors, shared by its connections.
#[derive(Debug)]
pub struct Cursors(Mutex<Table>);

#[derive(Debug)]
struct Table {
    /// The last number handed out.
    next: u64,
    at: BTreeMap<u64, Bytes>,
    key_bytes: usize,
}

impl Default for Cursors {
    fn default() -> Cursors {
        // Numbered from the start time, so a cursor from before a restart
        // is unknown here rather than taken for one of this run's. Below
        // 2^53 for clients that parse numbers as doubles.
        let next = (now_ms() << 10) & ((1 << 53) - 1);
        Cursors(Mutex::new(Table {
            next,
            at: BTreeMap::new(),
            key_bytes: 0,
        }))
    }
}

impl Cursors {
    /// The key cursor `id` stands for, if it is known.
    fn resume(&self, id: u64) -> Option<Bytes> {
        let table = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        table.at.get(&id).cloned()
    }

    /// A new cursor standing for `key`.
    fn issue(&self, key: Bytes) -> u64 {
        let mut table = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        table.next += 1;
        let id = table.next;
        table.key_bytes += key.len();
        table.at.insert(id, key);
        // The newest stays, whatever its size.
        while table.at.len() > 1
            && (table.at.len() > CURSORS_MAX || table.key_bytes > CURSOR_KEY_BYTES_MAX)
        {
            if let Some((_, old)) = table.at.pop_first() {
                table.key_bytes -= old.len();
            }
        }
        id
    }
}

/// `SCAN`.
pub fn scan(db: &mut dyn Db, cursors: &Cursors, a: &[Bytes]) -> Result<Reply, ServerError> {
    let Some(start) = std::str::from_utf8(&a[0])
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    else {
        return Ok(Reply::error("ERR invalid cursor"));
    };
    let (mut pattern, mut count, mut strings) = (None, 10usize, true);
    let mut opts = a[1..].iter();
    while let Some(opt) = opts.next() {
        let value = opts.next();
        match (opt.to_ascii_uppercase().as_slice(), value) {
            (b"MATCH", Some(p)) => pattern = Some(p.clone()),
            (b"COUNT", Some(n)) => match std::str::from_utf8(n).ok().and_then(|s| s.parse().ok()) {
                Some(n) if n >= 1 => count = n,
                _ => return Ok(Reply::error("ERR value is not an integer or out of range")),
            },
            (b"TYPE", Some(t)) => strings = t.eq_ignore_ascii_case(b"string"),
            _ => return Ok(Reply::error("ERR syntax error")),
        }
    }
    let after = if start == 0 {
        None
    } else {
        match cursors.resume(start) {
            Some(key) => Some(key),
            None => return Ok(Reply::error("ERR invalid cursor")),
        }
    };
    let pairs = db.pairs_after(after.as_deref(), count)?;
    let next = if pairs.len() < count {
        0
    } else {
        cursors.issue(pairs[pairs.len() - 1].0.clone())
    };
    let found = live_pairs(pairs, now_ms())?
        .into_iter()
        .filter(|k| strings && pattern.as_ref().is_none_or(|p| glob(p, k)))
        .map(Reply::Bulk)
        .collect();
    Ok(Reply::Array(vec![
        Reply::Bulk(Bytes::from(next.to_string())),
        Reply::Array(found),
    ]))
}

/// `KEYS pattern`, over the live keys.
pub fn keys(live: Vec<Bytes>, pattern: &[u8]) -> Reply {
    Reply::Array(
        live.into_iter()
            .filter(|k| glob(pattern, k))
            .map(Reply::Bulk)
            .collect(),
    )
}

/// Redis's glob: `*`, `?`, `[abc]`, `[^a-z]`, `\x` escapes.
pub fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where to resume after the last `*`: its pattern position and the text
    // position it has absorbed up to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        let step = match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
                continue;
            }
            Some(b'?') => Some(1),
            Some(b'[') => class(&pattern[p..], text[t]),
            Some(b'\\') if p + 1 < pattern.len() => (pattern[p + 1] == text[t]).then_some(2),
            Some(&c) => (c == text[t]).then_some(1),
            None => None,
        };
        match (step, star) {
            (Some(n), _) => {
                p += n;
                t += 1;
            }
            (None, Some((sp, st))) => {
                p = sp + 1;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            (None, None) => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// A `[...]` class at the start of `pattern` against `c`: the class's
/// length if it matches.
fn class(pattern: &[u8], c: u8) -> Option<usize> {
    let mut i = 1;
    let negate = pattern.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    while i < pattern.len() && pattern[i] != b']' {
        if pattern[i] == b'\\' && i + 1 < pattern.len() {
            matched |= pattern[i + 1] == c;
            i += 2;
        } else if i + 2 < pattern.len() && pattern[i + 1] == b'-' && pattern[i + 2] != b']' {
            let (lo, hi) = (
                pattern[i].min(pattern[i + 2]),
                pattern[i].max(pattern[i + 2]),
            );
            matched |= (lo..=hi).contains(&c);
            i += 3;
        } else {
            matched |= pattern[i] == c;
            i += 1;
        }
    }
    // An unclosed class matches as Redis's does: up to the pattern's end.
    let len = (i + 1).min(pattern.len());
    (matched != negate).then_some(len)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::{CURSOR_KEY_BYTES_MAX, CURSORS_MAX, Cursors, glob};

    #[test]
    fn the_server_keeps_the_newest_cursors_within_their_count_and_bytes() {
        let cursors = Cursors::default();
        let first = cursors.issue(Bytes::from_static(b"first"));
        let mut last = first;
        for i in 0..CURSORS_MAX {
            last = cursors.issue(Bytes::from(i.to_string()));
        }
        assert_eq!(cursors.resume(first), None, "the oldest is forgotten");
        assert_eq!(cursors.resume(first + 1).as_deref(), Some(b"0".as_slice()));
        // Two keys of just over half the bytes: the second pushes out
        // every other cursor, the first included.
        let big = || Bytes::from(vec![b'k'; CURSOR_KEY_BYTES_MAX / 2 + 1]);
        let (a, b) = (cursors.issue(big()), cursors.issue(big()));
        assert!(cursors.resume(last).is_none(), "forgotten for the bytes");
        assert!(
            cursors.resume(a).is_none(),
            "two halves and more are too many"
        );
        assert!(cursors.resume(b).is_some(), "the newest stays");
        let huge = cursors.issue(Bytes::from(vec![b'k'; CURSOR_KEY_BYTES_MAX + 1]));
        assert!(
            cursors.resume(huge).is_some(),
            "the newest stays whatever its size"
        );
        assert!(cursors.resume(huge).is_some(), "and is good more than once");
    }

    #[test]
    fn globs_match_as_redis_matches() {
        let cases: [(&str, &str, bool); 14] = [
            ("*", "anything", true),
            ("*", "", true),
            ("user:*", "user:42", true),
            ("user:*", "users:42", false),
            ("h?llo", "hello", true),
            ("h?llo", "hllo", false),
            ("h[ae]llo", "hallo", true),
            ("h[ae]llo", "hillo", false),
            ("h[^e]llo", "hallo", true),
            ("h[^e]llo", "hello", false),
            ("h[a-b]llo", "hbllo", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("\\*x", "*x", true),
        ];
        for (pattern, text, want) in cases {
            assert_eq!(
                glob(pattern.as_bytes(), text.as_bytes()),
                want,
                "{pattern} {text}"
            );
        }
    }
}
