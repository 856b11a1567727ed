//! Requests as clients send them: an array of bulk strings
//! (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`), or an inline command line
//! (`GET k\r\n`, as a person types it into a socket). Anything else is a
//! protocol error, after which the server answers once and closes the
//! connection, as Redis does; the messages are Redis's.
//!
//! The bytes are hostile: every length is checked against [`Limits`]
//! before anything is reserved or waited for, so a bulk length of 2^40
//! fails at once instead of holding memory for a body that never comes.
//! The decoder keeps its place between calls, so a large request arriving
//! in pieces is scanned once.

use bytes::{Bytes, BytesMut};

/// The most a request may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Arguments of one request (Redis: 1024 * 1024).
    pub args_max: usize,
    /// Bytes of one argument (Redis's `proto-max-bulk-len` is 512 MiB; the
    /// store refuses values past its record limit long before that).
    pub bulk_bytes_max: usize,
    /// Bytes of an inline command line (Redis: 64 KiB).
    pub inline_bytes_max: usize,
    /// Bytes of one whole request, what a connection may hold in memory
    /// for it (Redis's `client-query-buffer-limit` is 1 GiB).
    pub request_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            args_max: 1024 * 1024,
            bulk_bytes_max: 64 << 20,
            inline_bytes_max: 64 << 10,
            request_bytes_max: 128 << 20,
        }
    }
}

/// Why a request cannot be read; the connection is then closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// An array count that is not a number, or over the limit.
    #[error("Protocol error: invalid multibulk length")]
    MultibulkLength,
    /// A bulk length that is not a number, negative, or over the limit.
    #[error("Protocol error: invalid bulk length")]
    BulkLength,
    /// An array element that is not a bulk string.
    #[error("Protocol error: expected '$', got '{0}'")]
    ExpectedBulk(char),
    /// A count line with no end in sight.
    #[error("Protocol error: too big mbulk count string")]
    CountLineTooLong,
    /// A bulk's data not followed by CRLF.
    #[error("Protocol error: bulk data not terminated by CRLF")]
    BulkTerminator,
    /// An inline line over the limit.
    #[error("Protocol error: too big inline request")]
    InlineTooLong,
    /// An inline line whose quotes do not close.
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    /// A request past [`Limits::request_bytes_max`].
    #[error("Protocol error: request over the limit of {0} bytes")]
    RequestTooLarge(usize),
}

/// The longest count line (`*` or `$`, a number, CRLF) read before giving up.
const COUNT_LINE_BYTES_MAX: usize = 32;

/// Decodes requests from a connection's bytes, one at a time.
#[derive(Debug, Default)]
pub struct Decoder {
    limits: Limits,
    /// The array being read: its expected length and where each bulk's
    /// data lies in the buffer.
    args_expected: usize,
    ranges: Vec<(usize, usize)>,
    /// Where reading resumes in the buffer.
    pos: usize,
}

impl Decoder {
    /// A decoder with `limits`.
    pub fn new(limits: Limits) -> Decoder {
        Decoder {
            limits,
            ..Decoder::default()
        }
    }

    /// The next whole request at the front of `buf`, taken out of it (its
    /// arguments share the buffer's memory); `None` until one is whole.
    /// Empty requests (`*0`, a blank line) are skipped.
    ///
    /// # Errors
    /// A [`ProtocolError`]; the connection should be answered with it
    /// and closed, since the stream cannot be resynchronised.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        loop {
            if buf.is_empty() {
                return Ok(None);
            }
            let whole = if buf[0] == b'*' {
                self.multibulk(buf)?
            } else {
                inline(buf, &self.limits)?
            };
            match whole {
                Progress::Incomplete => return Ok(None),
                Progress::Skip(n) => {
                    let _ = buf.split_to(n);
                    self.reset();
                }
                Progress::Args(n, args) => {
                    self.reset();
                    let _ = buf.split_to(n);
                    return Ok(Some(args));
                }
                Progress::Multibulk(n) => {
                    let frame = buf.split_to(n).freeze();
                    let args = self
                        .ranges
                        .iter()
                        .map(|&(s, e)| frame.slice(s..e))
                        .collect();
                    self.reset();
                    return Ok(Some(args));
                }
            }
        }
    }

    fn reset(&mut self) {
        self.args_expected = 0;
        self.ranges.clear();
        self.pos = 0;
    }

    /// Reads on from `self.pos` in an array request.
    fn multibulk(&mut self, buf: &[u8]) -> Result<Progress, ProtocolError> {
        if self.pos == 0 {
            let Some((count, next)) = count_line(buf, 0, ProtocolError::MultibulkLength)? else {
                return Ok(Progress::Incomplete);
            };
            if count <= 0 {
                return Ok(Progress::Skip(next)); // Redis ignores empty arrays
            }
            let count = usize::try_from(count).map_err(|_| ProtocolError::MultibulkLength)?;
            if count > self.limits.args_max {
                return Err(ProtocolError::MultibulkLength);
            }
            self.args_expected = count;
            // Never reserve for more arguments than the bytes at hand
            // could hold (each takes at least 6: `$0\r\n\r\n`).
            self.ranges.reserve(count.min(buf.len() / 6 + 1));
            self.pos = next;
        }
        while self.ranges.len() < self.args_expected {
            let Some(&tag) = buf.get(self.pos) else {
                return Ok(Progress::Incomplete);
            };
            if tag != b'$' {
                return Err(ProtocolError::ExpectedBulk(char::from(tag)));
            }
            let Some((len, start)) = count_line(buf, self.pos, ProtocolError::BulkLength)? else {
                return Ok(Progress::Incomplete);
            };
            let len = usize::try_from(len).map_err(|_| ProtocolError::BulkLength)?;
            if len > self.limits.bulk_bytes_max {
                return Err(ProtocolError::BulkLength);
            }
            let end = start + len;
            if end + 2 > self.limits.request_bytes_max {
                return Err(ProtocolError::RequestTooLarge(
                    self.limits.request_bytes_max,
                ));
            }
            if buf.len() < end + 2 {
                return Ok(Progress::Incomplete);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(ProtocolError::BulkTerminator);
            }
            self.ranges.push((start, end));
            self.pos = end + 2;
        }
        Ok(Progress::Multibulk(self.pos))
    }
}

/// How far a request got.
enum Progress {
    Incomplete,
    /// An empty request of this many bytes, to drop.
    Skip(usize),
    /// An inline request of this many bytes.
    Args(usize, Vec<Bytes>),
    /// An array request of this many bytes, its ranges in the decoder.
    Multibulk(usize),
}

/// Reads `<tag><integer>\r\n` at `at`: the integer and where the line
/// ends, `None` if the line is not whole yet.
fn count_line(
    buf: &[u8],
    at: usize,
    bad: ProtocolError,
) -> Result<Option<(i64, usize)>, ProtocolError> {
    let window = &buf[at + 1..buf.len().min(at + COUNT_LINE_BYTES_MAX)];
    let Some(cr) = window.iter().position(|&b| b == b'\r') else {
        if buf.len() >= at + COUNT_LINE_BYTES_MAX {
            return Err(ProtocolError::CountLineTooLong);
        }
        return Ok(None);
    };
    let Some(&lf) = window.get(cr + 1) else {
        return Ok(None);
    };
    if lf != b'\n' {
        return Err(bad);
    }
    let digits = &window[..cr];
    let n = std::str::from_utf8(digits)
        .ok()
        .filter(|s| !s.is_empty() && !s.starts_with('+'))
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or(bad)?;
    Ok(Some((n, at + 1 + cr + 2)))
}

/// An inline request: one line, split into arguments as Redis's
/// `sdssplitargs` does (spaces between, double quotes with `\n`, `\r`,
/// `\t`, `\b`, `\a`, `\\`, `\"` and `\xHH` escapes, single quotes with
/// `\'`; a closing quote must be followed by a space or the end).
fn inline(buf: &[u8], limits: &Limits) -> Result<Progress, ProtocolError> {
    let Some(lf) = buf.iter().position(|&b| b == b'\n') else {
        if buf.len() > limits.inline_bytes_max {
            return Err(ProtocolError::InlineTooLong);
        }
        return Ok(Progress::Incomplete);
    };
    if lf > limits.inline_bytes_max {
        return Err(ProtocolError::InlineTooLong);
    }
    let line = buf[..lf].strip_suffix(b"\r").unwrap_or(&buf[..lf]);
    let args = split_args(line)?;
    if args.is_empty() {
        return Ok(Progress::Skip(lf + 1));
    }
    if args.len() > limits.args_max {
        return Err(ProtocolError::MultibulkLength);
    }
    Ok(Progress::Args(lf + 1, args))
}

fn split_args(line: &[u8]) -> Result<Vec<Bytes>, ProtocolError> {
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while line.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        if i >= line.len() {
            return Ok(args);
        }
        let mut arg = Vec::new();
        match line[i] {
            b'"' => i = double_quoted(line, i + 1, &mut arg)?,
            b'\'' => i = single_quoted(line, i + 1, &mut arg)?,
            _ => {
                while let Some(&b) = line.get(i).filter(|b| !b.is_ascii_whitespace()) {
                    arg.push(b);
                    i += 1;
                }
            }
        }
        args.push(Bytes::from(arg));
    }
}

/// After a closing quote: the end, or a space.
fn after_quote(line: &[u8], i: usize) -> Result<usize, ProtocolError> {
    match line.get(i) {
        None => Ok(i),
        Some(b) if b.is_ascii_whitespace() => Ok(i),
        Some(_) => Err(ProtocolError::UnbalancedQuotes),
    }
}

fn double_quoted(line: &[u8], mut i: usize, arg: &mut Vec<u8>) -> Result<usize, ProtocolError> {
    loop {
        match line.get(i) {
            None => return Err(ProtocolError::UnbalancedQuotes),
            Some(b'"') => return after_quote(line, i + 1),
            Some(b'\\') if line.get(i + 1) == Some(&b'x') => {
                let hex = line.get(i + 2..i + 4).and_then(|h| {
                    std::str::from_utf8(h)
                        .ok()
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                });
                match hex {
                    Some(b) => {
                        arg.push(b);
                        i += 4;
                    }
                    None => {
                        arg.push(b'x');
                        i += 2;
                    }
                }
            }
            Some(b'\\') if i + 1 < line.len() => {
                arg.push(match line[i + 1] {
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'b' => 8,
                    b'a' => 7,
                    other => other,
                });
                i += 2;
            }
            Some(&b) => {
                arg.push(b);
                i += 1;
            }
        }
    }
}

fn single_quoted(line: &[u8], mut i: usize, arg: &mut Vec<u8>) -> Result<usize, ProtocolError> {
    loop {
        match line.get(i) {
            None => return Err(ProtocolError::UnbalancedQuotes),
            Some(b'\'') => return after_quote(line, i + 1),
            Some(b'\\') if line.get(i + 1) == Some(&b'\'') => {
                arg.push(b'\'');
                i += 2;
            }
            Some(&b) => {
                arg.push(b);
                i += 1;
            }
        }
    }
}

/// A request as a client library encodes it: an array of bulk strings.
pub fn encode_request(args: &[&[u8]], out: &mut BytesMut) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}
