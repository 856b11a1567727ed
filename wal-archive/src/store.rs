//! A store that archives itself: opened with a purge hold in its log's
//! options and an archiver beside it, closed with a last round.

use std::path::Path;
use std::time::Duration;

use wal_engine::PurgeHold;
use wal_kv::{Options, Store};

use crate::archive::Archive;
use crate::archiver::{Archiver, Round, Running};
use crate::error::ArchiveError;

/// A store with continuous archiving.
#[derive(Debug)]
pub struct ArchivedStore {
    store: Store,
    archiver: Running,
}

impl ArchivedStore {
    /// Opens (creating) the store in `dir` with `options`, archiving into
    /// `archive` every `every`, keeping `keep_bases` base backups. The
    /// log's purges then wait for the archive (`options.log.purge_hold` is
    /// set here).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let work = tempfile::tempdir()?;
    /// let archive = wal_archive::Archive::open(work.path().join("archive").to_str().unwrap())?;
    /// let store = wal_archive::ArchivedStore::open(
    ///     &work.path().join("store"),
    ///     wal_kv::Options::default(),
    ///     archive,
    ///     2,
    ///     Duration::from_secs(1),
    /// )?;
    /// store.store().put("k", "v")?;
    /// let last_round = store.close()?;
    /// # let _ = last_round;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// The store's open errors; the archive's.
    pub fn open(
        dir: &Path,
        mut options: Options,
        archive: Archive,
        keep_bases: usize,
        every: Duration,
    ) -> Result<ArchivedStore, ArchiveError> {
        let hold = PurgeHold::new();
        options.log.purge_hold = Some(hold.clone());
        std::fs::create_dir_all(dir)
            .map_err(ArchiveError::io(format!("create {}", dir.display())))?;
        let store = Store::open(dir, options)?;
        let archiver = Archiver::new(dir, archive, hold, keep_bases)?.spawn(every);
        Ok(ArchivedStore { store, archiver })
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Closes the store, then stops the archiver after a last round.
    ///
    /// # Errors
    /// The store's close errors; the last round's.
    pub fn close(self) -> Result<Round, ArchiveError> {
        self.store.close()?;
        self.archiver.stop()
    }
}
