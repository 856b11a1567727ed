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

#[cfg(test)]
mod tests {
    #[test]
    fn unprintable_bytes_are_escaped_and_long_ones_cut() {
        assert_eq!(super::bytes(b"key:1"), "\"key:1\"");
        assert_eq!(super::bytes(b"\xffraft/\"x\""), "\"\\xffraft/\\\"x\\\"\"");
        let long = super::bytes(&[b'a'; 100]);
        assert!(long.ends_with("\"..."));
        assert_eq!(long.len(), 64 + 2 + 3);
    }
}
