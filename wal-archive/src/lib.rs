//! Continuous archiving and point-in-time restore for a `wal-engine` log or
//! a `wal-kv` store, through the `object_store` crate (a local directory).
//!
//! [`ArchivedStore`] opens a store with archiving configured; underneath,
//! the [`Archiver`] ships every sealed segment, and for a store a base
//! backup (its manifest and tables) each time its checkpoint moves; it
//! releases the log's [`PurgeHold`](wal_engine::PurgeHold) only over what
//! the archive holds, verified, so the log never purges an unarchived
//! segment. [`restore`] rebuilds a directory at any archived LSN or commit
//! time.
//!
//! ```
//! use wal_archive::{Archive, Archiver, Target, restore};
//!
//! let work = tempfile::tempdir()?;
//! let (dir, to) = (work.path().join("log"), work.path().join("restored"));
//! std::fs::create_dir(&dir)?;
//! let hold = wal_engine::PurgeHold::new();
//! let mut options = wal_engine::Options::default();
//! options.segment_bytes = 64 << 10;
//! options.queue_bytes_max = 8 << 10;
//! options.record_bytes_max = 4 << 10;
//! options.purge_hold = Some(hold.clone());
//! let (wal, _) = wal_engine::Wal::open(&dir, options)?;
//! for i in 0..2000u32 {
//!     wal.commit(format!("record {i:05}").repeat(4).as_bytes())?;
//! }
//! let archive_dir = work.path().join("archive");
//! let mut archiver = Archiver::new(&dir, Archive::open(archive_dir.to_str().unwrap())?, hold, 2)?;
//! let round = archiver.round()?;
//! assert!(round.segments > 0);
//! // Back to LSN 100, from the archive alone.
//! let archive = Archive::open(archive_dir.to_str().unwrap())?;
//! let done = restore(&archive, &to, Target::Lsn { lsn: 100, inclusive: true })?;
//! assert_eq!(done.last_lsn, 100);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

mod archive;
mod archiver;
mod error;
mod restore;
mod store;

pub use archive::{Archive, base_object, segment_object};
pub use archiver::{Archiver, Round, Running};
pub use error::ArchiveError;
pub use restore::{Restored, Target, restore};
pub use store::ArchivedStore;
