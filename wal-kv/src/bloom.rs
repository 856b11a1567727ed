//! The Bloom filters of the store: one in each table file (its layout is in
//! [`crate::table`]) and one in memory beside each memtable. Every key's bits
//! fall in one 64-byte line, so asking a filter costs one memory access.

/// Filter bits per key a table's filter is sized for.
pub(crate) const BITS_PER_KEY: usize = 10;
/// Bits set per key: near the optimum for 10 bits per key (about 1% false
/// positives in one line).
pub(crate) const HASHES: u32 = 7;
/// A key's filter bits all fall in one line of this many bytes (a cache
/// line), so a probe costs one memory access, not one per hash.
pub(crate) const LINE_BYTES: usize = 64;
const LINE_BITS: u32 = 512;
const _: () = assert!(LINE_BITS as usize == 8 * LINE_BYTES);

/// A key's two filter hashes: computed once per get, asked of every filter.
/// The first is also the key's hash in a table block's index.
pub(crate) fn hashes(key: &[u8]) -> (u32, u32) {
    let h2 = crc32c::crc32c_append(0x9e37_79b9, key);
    (key_hash(key), h2)
}

/// The first of a key's [`hashes`].
pub(crate) fn key_hash(key: &[u8]) -> u32 {
    crc32c::crc32c(key)
}

/// The filter bits of a key with hashes (`h1`, `h2`) in a filter of `lines`
/// lines: `h1` picks the line, `h2` and a step derived from it the bits.
pub(crate) fn bits(h1: u32, h2: u32, hashes: u32, lines: usize) -> impl Iterator<Item = usize> {
    let base = (h1 as usize % lines.max(1)) * LINE_BYTES * 8;
    let step = h2.rotate_right(17) | 1;
    (0..hashes).map(move |i| base + (h2.wrapping_add(i.wrapping_mul(step)) % LINE_BITS) as usize)
}

/// Whether every bit of a key is set in `filter` (whole lines, `hashes` bits
/// per key): false means the key was never added.
pub(crate) fn may_contain(filter: &[u8], hashes: u32, (h1, h2): (u32, u32)) -> bool {
    debug_assert!(whole_lines(filter), "a filter is whole lines");
    let lines = filter.len() / LINE_BYTES;
    bits(h1, h2, hashes, lines).all(|bit| {
        filter
            .get(bit / 8)
            .is_some_and(|b| b & (1 << (bit % 8)) != 0)
    })
}

/// Sets a key's bits in `filter` (whole lines).
pub(crate) fn add(filter: &mut [u8], hashes: u32, (h1, h2): (u32, u32)) {
    // A bit past the end would be dropped here and then read as clear: a
    // false negative. Whole lines keep every bit inside.
    debug_assert!(whole_lines(filter), "a filter is whole lines");
    let lines = filter.len() / LINE_BYTES;
    for bit in bits(h1, h2, hashes, lines) {
        if let Some(b) = filter.get_mut(bit / 8) {
            *b |= 1 << (bit % 8);
        }
    }
}

/// Whether `filter` is one or more whole lines.
fn whole_lines(filter: &[u8]) -> bool {
    !filter.is_empty() && filter.len().is_multiple_of(LINE_BYTES)
}

/// The lines a filter of `keys` keys needs at [`BITS_PER_KEY`]; at least one.
pub(crate) fn lines_for(keys: usize) -> usize {
    keys.saturating_mul(BITS_PER_KEY)
        .div_ceil(LINE_BYTES * 8)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_keys_are_always_found_and_others_rarely() {
        let keys = 10_000;
        let mut filter = vec![0u8; lines_for(keys) * LINE_BYTES];
        for i in 0..keys {
            add(&mut filter, HASHES, hashes(format!("in{i}").as_bytes()));
        }
        for i in 0..keys {
            assert!(may_contain(
                &filter,
                HASHES,
                hashes(format!("in{i}").as_bytes())
            ));
        }
        let false_positives = (0..keys)
            .filter(|i| may_contain(&filter, HASHES, hashes(format!("out{i}").as_bytes())))
            .count();
        // About 1% expected at 10 bits per key; 3% leaves room for chance.
        assert!(
            false_positives < keys * 3 / 100,
            "{false_positives} false positives"
        );
    }

    #[test]
    fn an_empty_filter_holds_nothing() {
        let filter = vec![0u8; LINE_BYTES];
        assert!(!may_contain(&filter, HASHES, hashes(b"k")));
        assert_eq!(lines_for(0), 1);
        assert_eq!(lines_for(52), 2);
    }
}
