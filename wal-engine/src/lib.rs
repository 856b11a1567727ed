//! The write-ahead log: segments, LSNs, group commit, sync policies,
//! readers and tailing, truncation, recovery, and fail-stop on I/O errors.
//!
//! Records go in with [`Wal::append`] (or atomically as a batch with
//! [`Wal::append_batch`]) and get dense LSNs from 1. One owner thread writes
//! everything pending as one frame, syncs by the [`SyncPolicy`], publishes the
//! durable LSN and wakes exactly the waiters it covers; while it syncs, the
//! next batch fills. Callers wait for durability by blocking
//! ([`Wal::wait_durable`], [`Wal::commit`]), by awaiting a runtime-agnostic
//! future ([`Wal::durable`]) or by callback ([`Wal::on_durable`]). Records
//! come back through a [`Reader`] (which can also tail the log), or, at
//! startup, through [`Wal::open_replaying`], which lends each record to a
//! callback while recovery verifies it, reading the log once.
//!
//! # Durability contract
//!
//! - **C1 Durability**: a write acknowledged as durable (its LSN at or below
//!   [`Wal::durable_lsn`], or its commit returned under a waiting policy)
//!   survives a process crash and a power loss.
//! - **C2 Prefix**: after recovery the log is a prefix of what was appended,
//!   and it contains everything acknowledged. No holes, no reordering.
//! - **C3 Integrity**: recovery never yields a record whose bytes differ
//!   from what was appended: every frame's CRC32C binds its bytes, LSNs and
//!   the identity of its segment file, which is new whenever a file is
//!   created or recycled, so a recycled file's old frames never pass.
//! - **C4 Tail-only loss**: in the default recovery mode only the
//!   unacknowledged tail can be lost; a torn or zero-filled tail is cut
//!   automatically and reported in the [`RecoveryReport`].
//! - **C5 No silent truncation**: damage followed by records that prove it
//!   was acknowledged is corruption: the default mode refuses to open and
//!   names segment and offset ([`WalError::Corrupt`]); salvage is opt-in
//!   ([`RecoveryMode::PointInTime`], [`RecoveryMode::SkipCorrupted`]).
//! - **C6 Fail-stop**: a failed write or sync poisons the log: every waiter
//!   of that batch gets the error, every later call fails at once, and no
//!   sync is retried. Reopening recovers from what is on disk, not from
//!   pages the failed sync left in the page cache.
//!
//! ```
//! use wal_engine::{Options, Wal};
//!
//! let dir = tempfile::tempdir()?;
//! let (wal, report) = Wal::open(dir.path(), Options::default())?;
//! assert_eq!(report.next_lsn, 1);
//! let lsn = wal.commit(b"hello")?; // durable when it returns (SyncPolicy::Always)
//! let batch = wal.append_batch(&[b"a", b"b"])?; // atomic, not yet durable
//! wal.wait_durable(batch.end - 1)?;
//! let records: Vec<_> = wal.reader(lsn)?.collect::<Result<_, _>>()?;
//! assert_eq!(records.len(), 3);
//! drop(wal);
//!
//! let (wal, report) = Wal::open(dir.path(), Options::default())?;
//! assert_eq!(report.records, 3);
//! assert_eq!(wal.durable_lsn(), 3);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

mod clock;
mod error;
mod future;
mod hold;
mod log;
mod options;
mod reader;
mod recovery;
mod segment;
mod stats;
mod sync;
mod write_buf;

pub use clock::Clock;
pub use error::WalError;
pub use future::DurableFuture;
pub use hold::PurgeHold;
pub use log::{PendingCommit, Wal};
pub use options::{
    FRAME_FILL_BYTES_MAX, Options, OptionsBuilder, RecoveryMode, SYNC_DELAY_MAX, SyncPolicy,
    WRITES_IN_FLIGHT_MAX,
};
pub use reader::Reader;
pub use recovery::{Cut, RecoveryReport, ReplayFrom, Replayed, SegmentReport, inspect};
pub use segment::{
    CLEAN_CLOSE_NAME, SEGMENT_SUFFIX, SPARE_NAME, STAGED_NAME, parse_segment_name, segment_name,
};
pub use stats::{HISTOGRAM_BUCKETS, Histogram, Stats};
pub use wal_format::{Codec, Compression, Record};
