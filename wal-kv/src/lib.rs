//! A durable, versioned key-value store on the write-ahead log.
//!
//! Every batch is one record of the log (`wal-engine`): written there first,
//! then applied to an in-memory table, so a batch is all or nothing after any
//! crash. Each batch's LSN is its version; a [`Snapshot`] reads as of one LSN
//! while writers go on. When the memtable reaches
//! [`Options::memtable_bytes_max`] (or on [`Store::checkpoint`]) it is written
//! to an immutable sorted table (blocks with an index, CRC32C checksums,
//! optional LZ4/Snappy, a Bloom filter), the manifest naming the live tables
//! and the checkpoint LSN is replaced atomically, and the log is cut in front
//! of that LSN. A background worker does this, and compacts the tables in
//! levels: checkpoints fill level 0, which is merged into level 1 once it
//! holds more than [`Options::compaction_trigger`] tables; each deeper level is
//! one sorted run [`Options::level_size_ratio`] times the size of the one
//! above, fed a table at a time. Merges drop versions no reader can see. Opening reads the manifest, the tables, then replays the
//! log after the checkpoint LSN. All file I/O goes through `wal-io`, so the
//! simulated disk can crash the store at any point.
//!
//! Reads see a [`Durability::Sync`] batch only once it is durable, and a
//! [`Durability::Buffered`] one at once: a crash can take back a buffered
//! batch another reader saw (never half of one, and never a `Sync` one).
//!
//! [`Store::transaction`] begins an optimistic transaction: it reads at its
//! snapshot plus its own writes, and its commit is one batch, refused with
//! [`KvError::Conflict`] if a commit after its snapshot wrote a key it
//! writes ([`Isolation::Snapshot`]) or also one it read or scanned
//! ([`Isolation::Serializable`]). [`Store::transact`] runs one again on
//! conflict; [`Store::read_transaction`] is a snapshot.
//!
//! ```
//! use std::ops::Bound;
//! use wal_kv::{Durability, Options, Store, WriteBatch};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(dir.path(), Options::default())?;
//! store.put("user:1", "ada")?;
//! let mut batch = WriteBatch::new();
//! batch.put("user:2", "grace").delete("user:1");
//! store.write(&batch, Durability::Sync)?;
//! let users = store.scan(Bound::Included(b"user:"), Bound::Excluded(b"user;"))?;
//! assert_eq!(users.len(), 1);
//! drop(store);
//! let store = Store::open(dir.path(), Options::default())?; // recovers from the log
//! assert_eq!(store.get(b"user:2")?.as_deref(), Some(&b"grace"[..]));
//! # Ok::<(), wal_kv::KvError>(())
//! ```
#![forbid(unsafe_code)]

mod arena;
mod batch;
mod bloom;
mod compaction;
mod error;
pub mod inspect;
mod locks;
mod manifest;
mod memtable;
mod options;
mod store;
mod table;
mod txn;
mod visibility;

pub use batch::{Op, WriteBatch};
pub use error::{ConflictKind, KvError};
pub use options::{Durability, Isolation, Options};
pub use store::{Commit, Iter, LevelStats, Snapshot, Stats, Store};
pub use table::TableCompression;
pub use txn::{TransactOptions, Transaction, TxnIter};

/// The bytes of an example in `docs/KV_FORMAT.md`, between the markers
/// `<!-- {name}-bytes:begin -->` and `...:end -->`, as lines of
/// `offset: byte byte ...` (each offset checked against the bytes before it).
#[cfg(test)]
pub(crate) fn documented_bytes(name: &str) -> Vec<u8> {
    let doc = include_str!("../../docs/KV_FORMAT.md");
    let begin = format!("<!-- {name}-bytes:begin -->");
    let end = format!("<!-- {name}-bytes:end -->");
    let start = doc.find(&begin).expect("begin marker") + begin.len();
    let stop = doc.find(&end).expect("end marker");
    let mut bytes = Vec::new();
    for line in doc[start..stop].lines() {
        let Some((offset, hex)) = line.trim().split_once(':') else {
            continue;
        };
        let Ok(offset) = usize::from_str_radix(offset.trim(), 16) else {
            continue;
        };
        assert_eq!(offset, bytes.len(), "offset of line `{line}`");
        for byte in hex.split_whitespace() {
            bytes.push(u8::from_str_radix(byte, 16).expect("a hex byte"));
        }
    }
    bytes
}

/// A hex dump in the format [`documented_bytes`] reads.
#[cfg(test)]
pub(crate) fn dump(bytes: &[u8]) -> String {
    bytes
        .chunks(16)
        .enumerate()
        .map(|(i, line)| {
            let hex: Vec<String> = line.iter().map(|b| format!("{b:02x}")).collect();
            format!("{:04x}: {}\n", i * 16, hex.join(" "))
        })
        .collect()
}
