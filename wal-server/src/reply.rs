//! Replies, encoded for the protocol a connection speaks: RESP2 by
//! default, RESP3 after `HELLO 3`. RESP3's types fall back to RESP2's as
//! Redis does it: null as a null bulk, a map as a flat array of keys and
//! values, a set as an array, a double as a bulk string, a boolean as 1
//! or 0.

use bytes::{Bytes, BytesMut};

/// The protocol version of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// RESP2, every connection's start.
    #[default]
    Resp2,
    /// RESP3, after `HELLO 3`.
    Resp3,
}

/// One reply.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Reply {
    /// `+OK`: a status line (CR and LF are replaced by spaces).
    Simple(String),
    /// `-ERR ...`: an error line; the text starts with its code (`ERR`,
    /// `WRONGTYPE`, ...), CR and LF are replaced by spaces.
    Error(String),
    /// `:42`.
    Integer(i64),
    /// `$5 hello`: binary-safe bytes.
    Bulk(Bytes),
    /// No value: `$-1` in RESP2, `_` in RESP3.
    Null,
    /// No array: `*-1` in RESP2, `_` in RESP3.
    NullArray,
    /// `*n` and its elements.
    Array(Vec<Reply>),
    /// `%n` pairs in RESP3; a flat array in RESP2.
    Map(Vec<(Reply, Reply)>),
    /// `~n` in RESP3; an array in RESP2.
    Set(Vec<Reply>),
    /// `,1.5` in RESP3; a bulk string in RESP2.
    Double(f64),
    /// `#t`/`#f` in RESP3; `:1`/`:0` in RESP2.
    Boolean(bool),
}

impl Reply {
    /// `+OK`.
    pub fn ok() -> Reply {
        Reply::Simple("OK".into())
    }

    /// An error reply; `text` starts with its code (`ERR ...`).
    pub fn error(text: impl Into<String>) -> Reply {
        Reply::Error(text.into())
    }

    /// A bulk reply of `bytes`.
    pub fn bulk(bytes: impl Into<Bytes>) -> Reply {
        Reply::Bulk(bytes.into())
    }

    /// Appends the reply's bytes for `protocol` to `out`.
    pub fn encode(&self, protocol: Protocol, out: &mut BytesMut) {
        let resp3 = protocol == Protocol::Resp3;
        match self {
            Reply::Simple(s) => line(out, b'+', s),
            Reply::Error(s) => line(out, b'-', s),
            Reply::Integer(n) => header(out, b':', *n),
            Reply::Bulk(b) => {
                header(out, b'$', b.len() as i64);
                out.extend_from_slice(b);
                out.extend_from_slice(b"\r\n");
            }
            Reply::Null if resp3 => out.extend_from_slice(b"_\r\n"),
            Reply::Null => out.extend_from_slice(b"$-1\r\n"),
            Reply::NullArray if resp3 => out.extend_from_slice(b"_\r\n"),
            Reply::NullArray => out.extend_from_slice(b"*-1\r\n"),
            Reply::Array(items) => {
                header(out, b'*', items.len() as i64);
                for item in items {
                    item.encode(protocol, out);
                }
            }
            Reply::Set(items) => {
                header(out, if resp3 { b'~' } else { b'*' }, items.len() as i64);
                for item in items {
                    item.encode(protocol, out);
                }
            }
            Reply::Map(pairs) => {
                if resp3 {
                    header(out, b'%', pairs.len() as i64);
                } else {
                    header(out, b'*', 2 * pairs.len() as i64);
                }
                for (k, v) in pairs {
                    k.encode(protocol, out);
                    v.encode(protocol, out);
                }
            }
            Reply::Double(d) => {
                let text = format_double(*d);
                if resp3 {
                    line(out, b',', &text);
                } else {
                    Reply::Bulk(Bytes::from(text)).encode(protocol, out);
                }
            }
            Reply::Boolean(b) if resp3 => {
                out.extend_from_slice(if *b { b"#t\r\n" } else { b"#f\r\n" })
            }
            Reply::Boolean(b) => header(out, b':', i64::from(*b)),
        }
    }
}

fn header(out: &mut BytesMut, tag: u8, n: i64) {
    out.extend_from_slice(&[tag]);
    out.extend_from_slice(n.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// A status or error line: a CR or LF inside would end it early and let
/// the rest read as another reply, so they become spaces.
fn line(out: &mut BytesMut, tag: u8, text: &str) {
    out.extend_from_slice(&[tag]);
    out.extend(
        text.bytes()
            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    out.extend_from_slice(b"\r\n");
}

/// Redis's spelling of doubles: `inf`, `-inf`, `nan`, else the shortest
/// decimal that reads back the same.
fn format_double(d: f64) -> String {
    if d.is_nan() {
        "nan".into()
    } else if d.is_infinite() {
        if d > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        format!("{d}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(reply: &Reply, protocol: Protocol) -> String {
        let mut out = BytesMut::new();
        reply.encode(protocol, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn each_reply_encodes_as_redis_writes_it_in_both_protocols() {
        let map = Reply::Map(vec![(Reply::bulk("k"), Reply::Integer(1))]);
        let cases: Vec<(Reply, &str, &str)> = vec![
            (Reply::ok(), "+OK\r\n", "+OK\r\n"),
            (
                Reply::error("ERR unknown command 'x'"),
                "-ERR unknown command 'x'\r\n",
                "-ERR unknown command 'x'\r\n",
            ),
            (Reply::Integer(-7), ":-7\r\n", ":-7\r\n"),
            (Reply::bulk("hi"), "$2\r\nhi\r\n", "$2\r\nhi\r\n"),
            (Reply::bulk(""), "$0\r\n\r\n", "$0\r\n\r\n"),
            (Reply::Null, "$-1\r\n", "_\r\n"),
            (Reply::NullArray, "*-1\r\n", "_\r\n"),
            (
                Reply::Array(vec![Reply::Integer(1), Reply::Null]),
                "*2\r\n:1\r\n$-1\r\n",
                "*2\r\n:1\r\n_\r\n",
            ),
            (map, "*2\r\n$1\r\nk\r\n:1\r\n", "%1\r\n$1\r\nk\r\n:1\r\n"),
            (
                Reply::Set(vec![Reply::Integer(2)]),
                "*1\r\n:2\r\n",
                "~1\r\n:2\r\n",
            ),
            (Reply::Double(1.5), "$3\r\n1.5\r\n", ",1.5\r\n"),
            (
                Reply::Double(f64::NEG_INFINITY),
                "$4\r\n-inf\r\n",
                ",-inf\r\n",
            ),
            (Reply::Boolean(true), ":1\r\n", "#t\r\n"),
            (Reply::Boolean(false), ":0\r\n", "#f\r\n"),
        ];
        for (reply, resp2, resp3) in cases {
            assert_eq!(bytes(&reply, Protocol::Resp2), resp2, "{reply:?}");
            assert_eq!(bytes(&reply, Protocol::Resp3), resp3, "{reply:?}");
        }
    }

    #[test]
    fn a_line_break_cannot_end_a_status_or_error_early() {
        let reply = Reply::error("ERR bad\r\n+OK");
        assert_eq!(bytes(&reply, Protocol::Resp2), "-ERR bad  +OK\r\n");
        let reply = Reply::Simple("a\nb".into());
        assert_eq!(bytes(&reply, Protocol::Resp3), "+a b\r\n");
    }
}
