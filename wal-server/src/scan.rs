//! `SCAN cursor [MATCH pattern] [COUNT n] [TYPE type]` and `KEYS pattern`.
//!
//! Redis's cursor is a position in its hash table; here keys are in order,
//! so a cursor stands for the last key returned. Client libraries parse
//! cursors as integers, so the server maps the numbers it hands out to
//! those keys. The map is the server's, not a connection's: a client with a
//! pool of connections goes on with a scan on whichever connection it
//! takes next, and one may send a call again after a timeout, so a cursor
//! is good on any connection and more than once. A scan keeps its last
//! two cursors (the one resumed, for a call sent again, and the new one),
//! so a fast scanner does not push out other clients' cursors; the server
//! keeps the newest [`CURSORS_MAX`] (and [`CURSOR_KEY_BYTES_MAX`] of their
//! keys, copied so they keep no table block alive). Cursors are a node's:
//! numbered from a random start, so one from before a restart or from
//! another node is unknown here, an error rather than a silent resumption
//! elsewhere. `0` starts and ends a scan, as in Redis; every key present
//! for a whole scan is returned exactly once.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
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
    at: BTreeMap<u64, Cursor>,
    key_bytes: usize,
}

/// Where a scan stands: after `key`, reached from cursor `from`.
#[derive(Debug)]
struct Cursor {
    key: Bytes,
    from: Option<u64>,
}

impl Default for Cursors {
    fn default() -> Cursors {
        // A random start (the standard library seeds its hashers
        // randomly), so a cursor of another run or another node is almost
        // surely unknown here. Below 2^52, with 2^52 more to count up to,
        // for clients that parse numbers as doubles (2^53).
        let next = RandomState::new().hash_one(now_ms()) >> 12;
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
        table.at.get(&id).map(|c| c.key.clone())
    }

    /// A new cursor standing for `key`, reached from cursor `from` (none
    /// for a scan's first page), whose own predecessor goes: a scan keeps
    /// its last two cursors.
    fn issue(&self, key: &[u8], from: Option<u64>) -> u64 {
        let mut table = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let table = &mut *table;
        if let Some(before) = from.and_then(|f| table.at.get(&f)).and_then(|c| c.from)
            && let Some(gone) = table.at.remove(&before)
        {
            table.key_bytes -= gone.key.len();
        }
        table.next += 1;
        let id = table.next;
        table.key_bytes += key.len();
        // A copy: the key read is a slice of a table block or a memtable
        // chunk, which a cursor would otherwise keep in memory.
        let key = Bytes::copy_from_slice(key);
        table.at.insert(id, Cursor { key, from });
        // The newest stays, whatever its size.
        while table.at.len() > 1
            && (table.at.len() > CURSORS_MAX || table.key_bytes > CURSOR_KEY_BYTES_MAX)
        {
            if let Some((_, old)) = table.at.pop_first() {
                table.key_bytes -= old.key.len();
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
        cursors.issue(&pairs[pairs.len() - 1].0, (start != 0).then_some(start))
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
        let first = cursors.issue(b"first", None);
        let mut last = first;
        // Scans of one page each: none of them ends another's.
        for i in 0..CURSORS_MAX {
            last = cursors.issue(i.to_string().as_bytes(), None);
        }
        assert!(cursors.resume(first).is_none(), "the oldest is forgotten");
        assert_eq!(cursors.resume(first + 1).as_deref(), Some(b"0".as_slice()));
        // Two keys of just over half the bytes: the second pushes out
        // every other cursor, the first included.
        let big = vec![b'k'; CURSOR_KEY_BYTES_MAX / 2 + 1];
        let (a, b) = (cursors.issue(&big, None), cursors.issue(&big, None));
        assert!(cursors.resume(last).is_none(), "forgotten for the bytes");
        assert!(
            cursors.resume(a).is_none(),
            "two halves and more are too many"
        );
        assert!(cursors.resume(b).is_some(), "the newest stays");
        let huge = cursors.issue(&vec![b'k'; CURSOR_KEY_BYTES_MAX + 1], None);
        assert!(
            cursors.resume(huge).is_some(),
            "the newest stays whatever its size"
        );
        assert!(cursors.resume(huge).is_some(), "and is good more than once");
    }

    #[test]
    fn a_long_scan_keeps_two_cursors_and_pushes_out_no_other() {
        let cursors = Cursors::default();
        let other = cursors.issue(b"another client's", None);
        let mut at = cursors.issue(b"0", None);
        for page in 1..=2 * CURSORS_MAX {
            let before = at;
            at = cursors.issue(page.to_string().as_bytes(), Some(at));
            // The one resumed stays, for a call sent again.
            assert!(cursors.resume(before).is_some());
        }
        assert_eq!(cursors.0.lock().unwrap().at.len(), 3, "two of the scan's");
        assert_eq!(
            cursors.resume(other).as_deref(),
            Some(b"another client's".as_slice())
        );
    }

    #[test]
    fn a_cursor_keeps_a_copy_of_its_key_not_the_block_it_came_from() {
        let cursors = Cursors::default();
        let block = Bytes::from(vec![b'k'; 16 << 10]);
        let id = cursors.issue(&block.slice(100..120), None);
        assert!(block.is_unique(), "the block is not kept by the cursor");
        assert_eq!(cursors.resume(id).as_deref(), Some(&block[100..120]));
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
