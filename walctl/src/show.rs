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

/// Parses RFC 3339 (`2025-12-05T02:00:00Z`, `...00.5+01:00`) into
/// microseconds since the Unix epoch.
///
/// # Errors
/// What is wrong with the text.
pub fn parse_time(text: &str) -> Result<u64, String> {
    let bad =
        |why: &str| format!("{text:?} is not an RFC 3339 time ({why}), e.g. 2025-12-05T02:00:00Z");
    let b = text.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(bad("layout"));
    }
    let num = |r: std::ops::Range<usize>| -> Result<u64, String> {
        text.get(r)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("digits"))
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || day == 0
        || day > 31
        || hour > 23
        || minute > 59
        || second > 60
        || year < 1970
    {
        return Err(bad("out of range"));
    }
    let mut rest = &text[19..];
    let mut micros = 0u64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 9 {
            return Err(bad("fraction"));
        }
        let padded = format!("{:0<6}", &frac[..digits.min(6)]);
        micros = padded.parse().map_err(|_| bad("fraction"))?;
        rest = &frac[digits..];
    }
    let offset_secs: i64 = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && &o[3..4] == ":" => {
            let h: i64 = o[1..3].parse().map_err(|_| bad("offset"))?;
            let m: i64 = o[4..6].parse().map_err(|_| bad("offset"))?;
            let s = h * 3600 + m * 60;
            if o.starts_with('-') { -s } else { s }
        }
        _ => return Err(bad("zone: Z or +HH:MM")),
    };
    let days = days_from_civil(year, month, day);
    let local = i64::try_from(days * 86_400 + hour * 3600 + minute * 60 + second)
        .map_err(|_| bad("range"))?;
    let utc = u64::try_from(local - offset_secs).map_err(|_| bad("before 1970"))?;
    Ok(utc * 1_000_000 + micros)
}

/// Days from 1970-01-01 to a calendar date on or after it (Hinnant).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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
    fn rfc3339_times_parse_back() {
        for us in [
            0,
            1_764_900_000_000_000,
            951_782_400_000_001,
            4_102_444_799_999_999,
        ] {
            assert_eq!(super::parse_time(&super::time(us)), Ok(us));
        }
        assert_eq!(
            super::parse_time("2025-12-05T03:00:00+01:00"),
            Ok(1_764_900_000_000_000)
        );
        assert_eq!(
            super::parse_time("2025-12-05T02:00:00.5Z"),
            Ok(1_764_900_000_500_000)
        );
        for bad in [
            "2025-12-05",
            "2025-13-05T00:00:00Z",
            "2025-12-05T00:00:00",
            "yesterday",
        ] {
            assert!(super::parse_time(bad).is_err(), "{bad}");
        }
    }

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
