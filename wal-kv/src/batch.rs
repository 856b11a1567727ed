//! Atomic write batches and their encoding as one log record.
//!
//! Record layout: `version: u8 = 1 | count: u32 LE | ops`, each op
//! `kind: u8 (1 put, 2 delete) | key_len: u32 LE | key | [value_len: u32 LE | value]`.

use bytes::Bytes;

use crate::KvError;

const VERSION: u8 = 1;
const PUT: u8 = 1;
const DELETE: u8 = 2;

/// One operation of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Op {
    /// Sets `key` to `value`.
    Put {
        /// The key.
        key: Bytes,
        /// The value.
        value: Bytes,
    },
    /// Removes `key`.
    Delete {
        /// The key.
        key: Bytes,
    },
}

impl Op {
    /// The key the operation touches.
    pub fn key(&self) -> &Bytes {
        match self {
            Op::Put { key, .. } | Op::Delete { key } => key,
        }
    }
}

/// Operations applied together: after any crash, all of them or none.
///
/// ```
/// let mut batch = wal_kv::WriteBatch::new();
/// batch.put("from", "10").put("to", "20").delete("pending");
/// assert_eq!(batch.len(), 3);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    ops: Vec<Op>,
    bytes: usize,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> WriteBatch {
        WriteBatch::default()
    }

    /// Adds a put.
    pub fn put(&mut self, key: impl Into<Bytes>, value: impl Into<Bytes>) -> &mut Self {
        let (key, value) = (key.into(), value.into());
        self.bytes += 9 + key.len() + value.len();
        self.ops.push(Op::Put { key, value });
        self
    }

    /// Adds a delete.
    pub fn delete(&mut self, key: impl Into<Bytes>) -> &mut Self {
        let key = key.into();
        self.bytes += 5 + key.len();
        self.ops.push(Op::Delete { key });
        self
    }

    /// The bytes of its operations (keys, values and per-operation
    /// framing), about what the batch takes in a log record.
    pub fn payload_bytes(&self) -> usize {
        self.bytes
    }

    /// Operations in the batch.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when the batch has no operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The operations, in order (a later one on the same key wins).
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// The batch as the log record the store writes for it (its layout is
    /// in `docs/KV_FORMAT.md`), to ship it elsewhere, such as a replicated
    /// log, and apply it there with [`crate::Store::write`].
    ///
    /// ```
    /// let mut batch = wal_kv::WriteBatch::new();
    /// batch.put("k", "v").delete("gone");
    /// let record = bytes::Bytes::from(batch.to_record()?);
    /// assert_eq!(wal_kv::WriteBatch::from_record(&record)?, batch);
    /// # Ok::<(), wal_kv::KvError>(())
    /// ```
    ///
    /// # Errors
    /// [`KvError::EmptyBatch`]; a batch of more than 2^32 - 1 operations,
    /// or a key or value of 2^32 bytes or more.
    pub fn to_record(&self) -> Result<Vec<u8>, KvError> {
        let max = u32::MAX as usize;
        self.encode(max, max)
    }

    /// The batch a record made by [`WriteBatch::to_record`] holds; the bytes
    /// are checked as untrusted.
    ///
    /// # Errors
    /// [`KvError::Corrupt`] for bytes that are no such record.
    pub fn from_record(record: &Bytes) -> Result<WriteBatch, KvError> {
        WriteBatch::decode(record, 0)
    }

    /// Checks the limits, then encodes the batch as one log record.
    pub(crate) fn encode(&self, key_max: usize, value_max: usize) -> Result<Vec<u8>, KvError> {
        if self.ops.is_empty() {
            return Err(KvError::EmptyBatch);
        }
        let mut out = Vec::with_capacity(5 + self.bytes);
        out.push(VERSION);
        let count = u32::try_from(self.ops.len()).map_err(|_| KvError::BatchTooLarge {
            bytes: self.bytes,
            max: u32::MAX as usize,
        })?;
        out.extend_from_slice(&count.to_le_bytes());
        for op in &self.ops {
            let key = op.key();
            if key.len() > key_max {
                return Err(KvError::KeyTooLarge {
                    len: key.len(),
                    max: key_max,
                });
            }
            match op {
                Op::Put { value, .. } => {
                    if value.len() > value_max {
                        return Err(KvError::ValueTooLarge {
                            len: value.len(),
                            max: value_max,
                        });
                    }
                    out.push(PUT);
                    put_slice(&mut out, key);
                    put_slice(&mut out, value);
                }
                Op::Delete { .. } => {
                    out.push(DELETE);
                    put_slice(&mut out, key);
                }
            }
        }
        Ok(out)
    }

    /// Decodes a record written by [`WriteBatch::encode`]. The record passed
    /// the log's checksum, but is still read as untrusted bytes.
    pub(crate) fn decode(record: &Bytes, lsn: u64) -> Result<WriteBatch, KvError> {
        let bad = |detail: &str| KvError::corrupt("log", lsn, format!("batch record: {detail}"));
        let mut at = 0usize;
        let take = |at: &mut usize, n: usize| -> Result<Bytes, KvError> {
            let end = at.checked_add(n).filter(|&e| e <= record.len());
            let end = end.ok_or_else(|| bad("truncated"))?;
            let out = record.slice(*at..end);
            *at = end;
            Ok(out)
        };
        let u32_at = |at: &mut usize| -> Result<usize, KvError> {
            let b = take(at, 4)?;
            let v = u32::from_le_bytes(b.as_ref().try_into().map_err(|_| bad("length"))?);
            usize::try_from(v).map_err(|_| bad("length"))
        };
        let version = take(&mut at, 1)?;
        if version.as_ref() != [VERSION] {
            return Err(bad("unknown version"));
        }
        let count = u32_at(&mut at)?;
        if count == 0 {
            return Err(bad("no operation"));
        }
        let mut batch = WriteBatch::new();
        for _ in 0..count {
            let kind = take(&mut at, 1)?;
            let key_len = u32_at(&mut at)?;
            let key = take(&mut at, key_len)?;
            match kind.as_ref() {
                [PUT] => {
                    let value_len = u32_at(&mut at)?;
                    let value = take(&mut at, value_len)?;
                    batch.put(key, value);
                }
                [DELETE] => {
                    batch.delete(key);
                }
                _ => return Err(bad("unknown operation")),
            }
        }
        if at != record.len() {
            return Err(bad("trailing bytes"));
        }
        Ok(batch)
    }
}

fn put_slice(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).expect("lengths are checked against u32 limits");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// docs/KV_FORMAT.md shows these bytes: the document and the encoder agree.
    #[test]
    fn the_documented_example_is_what_the_encoder_writes() {
        let mut b = WriteBatch::new();
        b.put("ab", "xyz").delete("q");
        let bytes = b.encode(1 << 10, 1 << 10).unwrap();
        assert_eq!(
            crate::documented_bytes("batch"),
            bytes,
            "docs/KV_FORMAT.md should show:\n{}",
            crate::dump(&bytes)
        );
        assert_eq!(WriteBatch::decode(&Bytes::from(bytes), 1).unwrap(), b);
    }

    #[test]
    fn limits_are_checked() {
        let mut b = WriteBatch::new();
        assert!(matches!(b.encode(8, 8), Err(KvError::EmptyBatch)));
        b.put("123456789", "v");
        assert!(matches!(
            b.encode(8, 8),
            Err(KvError::KeyTooLarge { len: 9, max: 8 })
        ));
        let mut b = WriteBatch::new();
        b.put("k", "123456789");
        assert!(matches!(b.encode(8, 8), Err(KvError::ValueTooLarge { .. })));
    }

    proptest! {
        #[test]
        fn round_trip(ops in proptest::collection::vec(
            (any::<bool>(), proptest::collection::vec(any::<u8>(), 0..16),
             proptest::collection::vec(any::<u8>(), 0..32)), 1..20)) {
            let mut b = WriteBatch::new();
            for (put, k, v) in ops {
                if put { b.put(k, v); } else { b.delete(k); }
            }
            let rec = Bytes::from(b.encode(64, 64).unwrap());
            prop_assert_eq!(WriteBatch::decode(&rec, 1).unwrap(), b);
        }

        #[test]
        fn hostile_records_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = WriteBatch::decode(&Bytes::from(bytes), 1);
        }
    }
}
