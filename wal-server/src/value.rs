//! How the server stores a string in the store (`docs/SERVER_FORMAT.md`):
//! a tag byte, then, for a key with a time to live, when it expires
//! (milliseconds since the Unix epoch, little-endian u64), then the
//! string's bytes.
//!
//! ```text
//! value: tag u8 = 0 | bytes                    (no expiry)
//!        tag u8 = 1 | expires_at_ms u64 | bytes
//! ```
//!
//! A key past its expiry is absent to every command; the server's
//! sweeper deletes it (guarded by the value it saw, so a new write wins).

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};

use crate::ServerError;

const PLAIN: u8 = 0;
const EXPIRING: u8 = 1;

/// A string and when it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    /// The string.
    pub data: Bytes,
    /// Milliseconds since the Unix epoch at which it expires, if it does.
    pub expires_at_ms: Option<u64>,
}

impl Value {
    /// A string that does not expire.
    pub fn plain(data: Bytes) -> Value {
        Value {
            data,
            expires_at_ms: None,
        }
    }

    /// The bytes the store keeps.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(9 + self.data.len());
        match self.expires_at_ms {
            None => out.put_u8(PLAIN),
            Some(at) => {
                out.put_u8(EXPIRING);
                out.put_u64_le(at);
            }
        }
        out.extend_from_slice(&self.data);
        out.freeze()
    }

    /// The value `stored` holds.
    ///
    /// # Errors
    /// [`ServerError::CorruptValue`] for bytes no encoder wrote.
    pub fn decode(key: &[u8], stored: &Bytes) -> Result<Value, ServerError> {
        let corrupt = || ServerError::CorruptValue {
            key: String::from_utf8_lossy(key).into_owned(),
        };
        match stored.first() {
            Some(&PLAIN) => Ok(Value::plain(stored.slice(1..))),
            Some(&EXPIRING) if stored.len() >= 9 => {
                let mut at = [0u8; 8];
                at.copy_from_slice(&stored[1..9]);
                Ok(Value {
                    data: stored.slice(9..),
                    expires_at_ms: Some(u64::from_le_bytes(at)),
                })
            }
            _ => Err(corrupt()),
        }
    }

    /// Whether it is still there at `now_ms`.
    pub fn live(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_none_or(|at| now_ms < at)
    }
}

/// Milliseconds since the Unix epoch (0 for a clock before it).
pub fn now_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_damage_is_refused() {
        for v in [
            Value::plain(Bytes::from_static(b"abc")),
            Value::plain(Bytes::new()),
            Value {
                data: Bytes::from_static(b"x"),
                expires_at_ms: Some(1_700_000_000_123),
            },
        ] {
            assert_eq!(Value::decode(b"k", &v.encode()).unwrap(), v);
        }
        let doc = include_str!("../../docs/SERVER_FORMAT.md");
        let section = doc
            .split("<!-- expiring-value-bytes:begin -->")
            .nth(1)
            .and_then(|rest| rest.split("<!-- expiring-value-bytes:end -->").next())
            .expect("markers");
        let documented: Vec<u8> = section
            .lines()
            .filter_map(|line| line.split_once(':').map(|(_, hex)| hex))
            .flat_map(|hex| {
                hex.split_whitespace()
                    .map(|b| u8::from_str_radix(b, 16).unwrap())
            })
            .collect();
        let encoded = Value {
            data: Bytes::from_static(b"v"),
            expires_at_ms: Some(0x0102),
        }
        .encode();
        assert_eq!(documented, &encoded[..], "docs/SERVER_FORMAT.md");
        for bad in [&b""[..], b"\x02abc", b"\x01short"] {
            assert!(Value::decode(b"k", &Bytes::copy_from_slice(bad)).is_err());
        }
        let v = Value {
            data: Bytes::new(),
            expires_at_ms: Some(100),
        };
        assert!(v.live(99));
        assert!(!v.live(100));
    }
}
