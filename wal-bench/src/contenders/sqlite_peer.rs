//! SQLite (bundled, through rusqlite) in WAL mode with `synchronous=FULL`:
//! a commit returns once the WAL is synced. One connection behind a mutex:
//! SQLite has one writer at a time anyway, and a mutex wait is cheaper than
//! its busy-retry loop.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use rusqlite::Connection;

use super::{Contender, Entrant, Log, Purpose, err};

/// The SQLite peer.
pub static SQLITE: Sqlite = Sqlite;

/// The SQLite peer's contender.
#[derive(Debug)]
pub struct Sqlite;

const FILE_NAME: &str = "bench.sqlite";
const INSERT: &str = "INSERT INTO log (data) VALUES (?1)";

/// Opens the database at `path` in WAL mode with `synchronous=FULL` (a
/// commit returns once the WAL is synced), then runs `schema`.
pub(crate) fn connect(path: &Path, schema: &str) -> Result<Connection, String> {
    let conn = Connection::open(path).map_err(err("open"))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))
        .map_err(err("journal_mode"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!("journal_mode is {mode}, not wal"));
    }
    conn.execute_batch("PRAGMA synchronous=FULL;")
        .map_err(err("synchronous"))?;
    conn.execute_batch(schema).map_err(err("schema"))?;
    Ok(conn)
}

fn open(dir: &Path) -> Result<Connection, String> {
    connect(
        &dir.join(FILE_NAME),
        "CREATE TABLE IF NOT EXISTS log (id INTEGER PRIMARY KEY, data BLOB NOT NULL);",
    )
}

struct Db {
    conn: Connection,
    /// An explicit transaction is open (appends without a sync).
    in_tx: bool,
}

struct OpenSqlite(Mutex<Db>);

impl OpenSqlite {
    fn lock(&self) -> MutexGuard<'_, Db> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Log for OpenSqlite {
    /// One INSERT in autocommit mode: its own transaction, synced on commit.
    fn commit(&self, _writer: u32, _seq: u64, rec: &[u8]) -> Result<(), String> {
        let mut db = self.lock();
        if db.in_tx {
            db.in_tx = false;
            db.conn.execute_batch("COMMIT").map_err(err("commit"))?;
        }
        let mut insert = db.conn.prepare_cached(INSERT).map_err(err("prepare"))?;
        insert.execute([rec]).map(drop).map_err(err("insert"))
    }

    fn append(&self, _writer: u32, _seq: u64, rec: &[u8]) -> Result<(), String> {
        let mut db = self.lock();
        if !db.in_tx {
            db.conn.execute_batch("BEGIN").map_err(err("begin"))?;
            db.in_tx = true;
        }
        let mut insert = db.conn.prepare_cached(INSERT).map_err(err("prepare"))?;
        insert.execute([rec]).map(drop).map_err(err("insert"))
    }

    fn sync(&self) -> Result<(), String> {
        let mut db = self.lock();
        if db.in_tx {
            db.in_tx = false;
            db.conn.execute_batch("COMMIT").map_err(err("commit"))?;
        }
        Ok(())
    }

    fn close(self: Box<Self>) -> Result<(), String> {
        self.sync()
    }
}

impl Entrant for Sqlite {
    fn name(&self) -> &'static str {
        "rusqlite"
    }

    fn config(&self) -> &'static str {
        "bundled SQLite, journal_mode=WAL, synchronous=FULL; one connection behind a \
         mutex; commit: one INSERT per transaction; ingest: one transaction"
    }
}

impl Contender for Sqlite {
    fn open(&self, dir: &Path, _writers: u32, _purpose: Purpose) -> Result<Box<dyn Log>, String> {
        Ok(Box::new(OpenSqlite(Mutex::new(Db {
            conn: open(dir)?,
            in_tx: false,
        }))))
    }

    fn replay(
        &self,
        dir: &Path,
        _writers: u32,
        each: &mut dyn FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<f64, String> {
        let start = Instant::now();
        let conn = open(dir)?;
        let ready = start.elapsed().as_secs_f64();
        let mut select = conn
            .prepare("SELECT data FROM log ORDER BY id")
            .map_err(err("prepare"))?;
        let mut rows = select.query([]).map_err(err("query"))?;
        while let Some(row) = rows.next().map_err(err("row"))? {
            let data = row.get_ref(0).map_err(err("column"))?;
            each(data.as_blob().map_err(err("blob"))?)?;
        }
        Ok(ready)
    }
}
