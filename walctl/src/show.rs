//! Bytes as an operator reads them: printable text as is, the rest
//! escaped, long values cut.

use wal_kv::{Op, WriteBatch};

/// Bytes of a key or value shown before `...`.
const SHOWN_BYTES_MAX: usize = 64;

/// `bytes` as a quoted string: printable ASCII as is, the rest as `\xNN`.
pub fn bytes(b: &[u8]) -> String {
    format!(
        "\"{}\"{}",
        escape(b),
        if b.len() > SHOWN_BYTES_MAX { "..." } else { "" }
    )
}

/// `bytes` escaped, unquoted (cut at [`SHOWN_BYTES_MAX`] bytes).
pub fn escape(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len().min(SHOWN_BYTES_MAX) + 8);
    for &c in b.iter().take(SHOWN_BYTES_MAX) {
        match c {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(c)),
            _ => out.push_str(&format!("\\x{c:02x}")),
        }
    }
    out
}

/// A batch's operations: `put KEY (N B)`, `del KEY`.
pub fn batch(b: &WriteBatch) -> Vec<String> {
    b.ops()
        .iter()
        .map(|op| match op {
            Op::Put { key, value } => format!("put {} ({} B)", bytes(key), value.len()),
            Op::Delete { key } => format!("del {}", bytes(key)),
            other => format!("{other:?}"),
        })
        .collect()
}

/// Microseconds since the Unix epoch as RFC 3339 in UTC, to the
/// microsecond: `2025-12-05T02:00:00.000000Z`.
pub fn time(us: u64) -> String {
    let secs = us / 1_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        us % 1_000_000
    )
}

/// The calendar date `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(super::time(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            super::time(1_764_900_000_000_000),
            "2025-12-05T02:00:00.000000Z"
        );
        // A leap day, and the microseconds.
        assert_eq!(
            super::time(951_782_400_000_001),
            "2000-02-29T00:00:00.000001Z"
        );
        assert_eq!(
            super::time(4_102_444_799_999_999),
            "2099-12-31T23:59:59.999999Z"
        );
    }

    #[test]
    fn unprintable_bytes_are_escaped_and_long_ones_cut() {
        assert_eq!(super::bytes(b"key:1"), "\"key:1\"");
        assert_eq!(super::bytes(b"\xffraft/\"x\""), "\"\\xffraft/\\\"x\\\"\"");
        let long = super::bytes(&[b'a'; 100]);
        assert!(long.ends_with("\"..."));
        assert_eq!(long.len(), 64 + 2 + 3);
    }
}
