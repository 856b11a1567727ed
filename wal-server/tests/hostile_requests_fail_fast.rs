//! Malformed, oversized and truncated requests: an error at once (the
//! connection is then closed) or a wait for more bytes, never a panic, and
//! never memory reserved for what a length merely claims.

use bytes::BytesMut;
use wal_server::{Decoder, Limits, ProtocolError};

fn decode(input: &[u8]) -> Result<Option<Vec<bytes::Bytes>>, ProtocolError> {
    Decoder::new(Limits::default()).decode(&mut BytesMut::from(input))
}

#[test]
fn a_bulk_length_of_two_to_the_forty_fails_before_its_body() {
    assert_eq!(
        decode(b"*1\r\n$1099511627776\r\nab"),
        Err(ProtocolError::BulkLength)
    );
    // An array count past the limit, and one past any integer.
    assert_eq!(
        decode(b"*1099511627776\r\n"),
        Err(ProtocolError::MultibulkLength)
    );
    assert_eq!(
        decode(b"*99999999999999999999999\r\n"),
        Err(ProtocolError::MultibulkLength)
    );
    // A count line that never ends.
    assert_eq!(
        decode(&[b"*".as_slice(), &[b'9'; 40]].concat()),
        Err(ProtocolError::CountLineTooLong)
    );
}

#[test]
fn limits_are_the_decoders_own() {
    let mut limits = Limits::default();
    limits.bulk_bytes_max = 4;
    limits.args_max = 2;
    limits.inline_bytes_max = 8;
    limits.request_bytes_max = 23;
    let mut d = Decoder::new(limits);
    let mut ok = BytesMut::from(&b"*2\r\n$4\r\nabcd\r\n$0\r\n\r\n"[..]);
    assert_eq!(d.decode(&mut ok).unwrap().unwrap(), ["abcd", ""]);
    let mut d = Decoder::new(limits);
    assert_eq!(
        d.decode(&mut BytesMut::from(&b"*1\r\n$5\r\nabcde\r\n"[..])),
        Err(ProtocolError::BulkLength)
    );
    let mut d = Decoder::new(limits);
    assert_eq!(
        d.decode(&mut BytesMut::from(&b"*3\r\n"[..])),
        Err(ProtocolError::MultibulkLength)
    );
    let mut d = Decoder::new(limits);
    assert_eq!(
        d.decode(&mut BytesMut::from(&b"PING 123456789\r\n"[..])),
        Err(ProtocolError::InlineTooLong)
    );
    // Arguments each within their limit, the request past its own.
    let mut d = Decoder::new(limits);
    assert_eq!(
        d.decode(&mut BytesMut::from(&b"*2\r\n$4\r\nabcd\r\n$4\r\n"[..])),
        Err(ProtocolError::RequestTooLarge(23))
    );
    // No line end within the limit: refused before the rest arrives.
    let mut d = Decoder::new(limits);
    assert_eq!(
        d.decode(&mut BytesMut::from(&b"garbage without end"[..])),
        Err(ProtocolError::InlineTooLong)
    );
}

#[test]
fn malformed_requests_get_redis_errors() {
    let cases: [(&[u8], ProtocolError); 11] = [
        (b"*1\r$3\r\nabc\r\n", ProtocolError::MultibulkLength),
        (b"*1\r\n$3\rxabc\r\n", ProtocolError::BulkLength),
        (b"*1\r\n:5\r\n", ProtocolError::ExpectedBulk(':')),
        (b"*x\r\n", ProtocolError::MultibulkLength),
        (b"*+1\r\n", ProtocolError::MultibulkLength),
        (b"*1\r\n$-1\r\n", ProtocolError::BulkLength),
        (b"*1\r\n$\r\n", ProtocolError::BulkLength),
        (b"*1\r\n$2x\r\n", ProtocolError::BulkLength),
        (b"*1\r\n$2\r\nabc\r\n", ProtocolError::BulkTerminator),
        (b"SET \"a b\r\n", ProtocolError::UnbalancedQuotes),
        (b"SET 'a'b\r\n", ProtocolError::UnbalancedQuotes),
    ];
    for (input, want) in cases {
        assert_eq!(
            decode(input),
            Err(want.clone()),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
    assert_eq!(
        ProtocolError::ExpectedBulk(':').to_string(),
        "Protocol error: expected '$', got ':'"
    );
    assert_eq!(
        ProtocolError::MultibulkLength.to_string(),
        "Protocol error: invalid multibulk length"
    );
}

#[test]
fn a_truncated_request_waits_and_empty_ones_are_skipped() {
    let whole = b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n";
    for cut in 0..whole.len() {
        assert_eq!(decode(&whole[..cut]), Ok(None), "cut at {cut}");
    }
    let mut d = Decoder::new(Limits::default());
    let mut buf = BytesMut::from(&b"*0\r\n*-1\r\n\r\n   \r\nPING\r\n"[..]);
    assert_eq!(d.decode(&mut buf).unwrap().unwrap(), ["PING"]);
    assert!(buf.is_empty());
}

#[test]
fn inline_requests_split_as_redis_splits_them() {
    let cases: [(&[u8], &[&[u8]]); 6] = [
        (b"set k v\r\n", &[b"set", b"k", b"v"]),
        (b"  get   k  \n", &[b"get", b"k"]),
        (b"echo \"a\\tb\\x41\\\"\"\r\n", &[b"echo", b"a\tbA\""]),
        (b"echo 'it\\'s'\r\n", &[b"echo", b"it's"]),
        (b"echo \"\\xzz\"\r\n", &[b"echo", b"xzz"]),
        (b"echo \"\"\r\n", &[b"echo", b""]),
    ];
    for (input, want) in cases {
        let got = decode(input).unwrap().unwrap();
        let got: Vec<&[u8]> = got.iter().map(|b| &b[..]).collect();
        assert_eq!(got, want, "{:?}", String::from_utf8_lossy(input));
    }
}
