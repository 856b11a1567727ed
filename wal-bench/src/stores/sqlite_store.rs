//! SQLite (bundled, through rusqlite) as a key-value store: a `WITHOUT ROWID`
//! table keyed by the key, WAL mode, `synchronous=FULL`, one connection
//! behind a mutex for writes.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension};

use super::{KvContender, KvReader, KvStore, Pair, copy_found};
use crate::contenders::{Entrant, err};

/// The SQLite peer.
pub static SQLITE: Sqlite = Sqlite;

/// The SQLite key-value contender.
#[derive(Debug)]
pub struct Sqlite;

const FILE_NAME: &str = "kv.sqlite";
const UPSERT: &str = "INSERT OR REPLACE INTO kv (k, v) VALUES (?1, ?2)";
const SELECT: &str = "SELECT v FROM kv WHERE k = ?1";

fn open(path: &Path) -> Result<Connection, String> {
    crate::contenders::connect_sqlite(
        path,
        "CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;",
    )
}

struct OpenSqlite {
    writer: Mutex<Connection>,
    path: std::path::PathBuf,
}

impl OpenSqlite {
    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl KvStore for OpenSqlite {
    /// One upsert in autocommit mode: its own transaction, synced on commit.
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), String> {
        let conn = self.lock();
        let mut upsert = conn.prepare_cached(UPSERT).map_err(err("prepare"))?;
        upsert
            .execute([key, value])
            .map(drop)
            .map_err(err("upsert"))
    }

    fn put_batch(&self, pairs: &[Pair]) -> Result<(), String> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(err("begin"))?;
        {
            let mut upsert = tx.prepare_cached(UPSERT).map_err(err("prepare"))?;
            for (k, v) in pairs {
                upsert
                    .execute([k.as_slice(), v.as_slice()])
                    .map_err(err("upsert"))?;
            }
        }
        tx.commit().map_err(err("commit"))
    }

    /// A connection of its own in a read transaction.
    fn reader(&self) -> Result<Box<dyn KvReader + '_>, String> {
        let conn = open(&self.path)?;
        conn.execute_batch("BEGIN").map_err(err("begin"))?;
        Ok(Box::new(Reader(conn)))
    }

    fn close(self: Box<Self>) -> Result<(), String> {
        let conn = self.writer.into_inner().unwrap_or_else(|p| p.into_inner());
        conn.close().map_err(|(_, e)| format!("close: {e}"))
    }
}

struct Reader(Connection);

impl KvReader for Reader {
    fn get(&mut self, key: &[u8], out: &mut Vec<u8>) -> Result<bool, String> {
        let mut select = self.0.prepare_cached(SELECT).map_err(err("prepare"))?;
        let found = select
            .query_row([key], |row| {
                copy_found(out, Some(row.get_ref(0)?.as_blob()?));
                Ok(())
            })
            .optional()
            .map_err(err("select"))?;
        Ok(found.is_some())
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        // Nothing was written; ending the read transaction cannot lose data.
        let _ = self.0.execute_batch("COMMIT");
    }
}

impl Entrant for Sqlite {
    fn name(&self) -> &'static str {
        "rusqlite"
    }

    fn config(&self) -> &'static str {
        "bundled SQLite, journal_mode=WAL, synchronous=FULL, a WITHOUT ROWID table keyed \
         by k; one writing connection behind a mutex; put: one upsert per transaction; \
         load: one transaction per 1000 keys; gets: a second connection in one read \
         transaction"
    }

    fn not_applicable(&self, workload: crate::Workload) -> Option<&'static str> {
        super::no_transactions(workload)
    }
}

impl KvContender for Sqlite {
    fn open(&self, dir: &Path) -> Result<Box<dyn KvStore>, String> {
        let path = dir.join(FILE_NAME);
        Ok(Box::new(OpenSqlite {
            writer: Mutex::new(open(&path)?),
            path,
        }))
    }
}
