//! Where a memtable keeps small keys and values: copied into shared chunks.
//!
//! Why: a memtable that kept the batch's own `Bytes` paid, for every small
//! key and value, an allocation to share it (`Bytes` made from a `Vec`
//! allocates its reference count on the first clone), and later a free in
//! the worker that drops the checkpointed memtable. A profile of the K2
//! load put a fifth of the writer's samples in `malloc` and
//! its consolidation, and the worker's in `free`. Copying into 64 KiB
//! chunks costs a `memcpy` and one reference count per chunk. It also frees
//! what small bytes came from: a replayed batch's bytes are slices of the
//! recovery's read buffers, which a memtable would otherwise keep alive
//! (keys and values over [`COPIED_BYTES_MAX`] still do).

use bytes::{Bytes, BytesMut};

/// Bytes per chunk.
const CHUNK_BYTES: usize = 64 << 10;
/// Keys and values longer than this keep their own allocation (a clone of
/// the caller's `Bytes`): copying them would cost more than sharing them,
/// and would leave chunks mostly empty.
pub(crate) const COPIED_BYTES_MAX: usize = 1 << 10;

#[derive(Debug, Default)]
pub(crate) struct Arena {
    /// The chunk being filled: everything before its length was handed out.
    chunk: BytesMut,
}

impl Arena {
    /// `bytes`, copied into a chunk when short, or shared when long.
    pub(crate) fn keep(&mut self, bytes: &Bytes) -> Bytes {
        if bytes.len() > COPIED_BYTES_MAX {
            return bytes.clone();
        }
        if bytes.is_empty() {
            return Bytes::new();
        }
        if self.chunk.capacity() < bytes.len() {
            self.chunk = BytesMut::with_capacity(CHUNK_BYTES);
        }
        self.chunk.extend_from_slice(bytes);
        // Hands out what was just written; the chunk keeps its remaining
        // capacity for the next copy.
        self.chunk.split().freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_bytes_are_copied_into_one_chunk_and_long_ones_shared() {
        let mut arena = Arena::default();
        let a = Bytes::from(vec![1u8; 100]);
        let b = Bytes::from(vec![2u8; 200]);
        let (ka, kb) = (arena.keep(&a), arena.keep(&b));
        assert_eq!((ka.as_ref(), kb.as_ref()), (a.as_ref(), b.as_ref()));
        assert_ne!(ka.as_ptr(), a.as_ptr(), "copied");
        // Back to back in one chunk.
        assert_eq!(ka.as_ptr().wrapping_add(100), kb.as_ptr());
        let long = Bytes::from(vec![3u8; COPIED_BYTES_MAX + 1]);
        assert_eq!(arena.keep(&long).as_ptr(), long.as_ptr(), "shared");
    }

    #[test]
    fn what_was_kept_stays_as_it_was_across_chunks() {
        let mut arena = Arena::default();
        let items: Vec<Bytes> = (0..2000u32)
            .map(|i| Bytes::from(format!("{i}:").repeat(1 + i as usize % 97)))
            .collect();
        let kept: Vec<Bytes> = items.iter().map(|b| arena.keep(b)).collect();
        assert_eq!(kept, items);
        assert!(arena.keep(&Bytes::new()).is_empty());
    }

    #[test]
    fn a_full_chunk_is_followed_by_a_new_one() {
        let mut arena = Arena::default();
        let item = Bytes::from(vec![7u8; COPIED_BYTES_MAX]);
        let kept: Vec<Bytes> = (0..3 * CHUNK_BYTES / COPIED_BYTES_MAX)
            .map(|_| arena.keep(&item))
            .collect();
        assert!(kept.iter().all(|k| k == &item));
        let distinct = |a: &Bytes, b: &Bytes| a.as_ptr().wrapping_add(a.len()) != b.as_ptr();
        let chunks = 1 + kept.windows(2).filter(|w| distinct(&w[0], &w[1])).count();
        assert_eq!(chunks, 3);
    }
}
