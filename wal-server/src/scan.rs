//! `SCAN cursor [MATCH pattern] [COUNT n] [TYPE type]` and `KEYS pattern`.
//!
//! Redis's cursor is a position in its hash table; here keys are in order,
//! so a cursor stands for the last key returned. Client libraries parse
//! cursors as integers, so the connection maps the numbers it hands out to
//! those keys (the newest [`CURSORS_MAX`]; an unknown one is an error, not
//! a silent restart). `0` starts and ends a scan, as in Redis; every key
//! present for a whole scan is returned exactly once.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::backend::Db;
use crate::strings::live_pairs;
use crate::value::now_ms;
use crate::{Reply, ServerError};

/// The most cursors a connection keeps.
pub const CURSORS_MAX: usize = 1024;

/// A connection's cursors.
#[derive(Debug, Default)]
pub struct Cursors {
    next: u64,
    at: BTreeMap<u64, Bytes>,
}

/// `SCAN`.
pub fn scan(db: &mut dyn Db, cursors: &mut Cursors, a: &[Bytes]) -> Result<Reply, ServerError> {
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
        match cursors.at.remove(&start) {
            Some(key) => Some(key),
            None => return Ok(Reply::error("ERR invalid cursor")),
        }
    };
    let pairs = db.pairs_after(after.as_deref(), count)?;
    let next = if pairs.len() < count {
        0
    } else {
        cursors.next += 1;
        let id = cursors.next;
        cursors.at.insert(id, pairs[pairs.len() - 1].0.clone());
        while cursors.at.len() > CURSORS_MAX {
            cursors.at.pop_first();
        }
        id
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
    use super::glob;

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
