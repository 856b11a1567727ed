//! fjall: an LSM tree with a journal. A record is a value under a key of
//! (writer, sequence), so a scan returns each writer's records in order.

use std::path::Path;
use std::time::Instant;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::{Contender, Entrant, Log, Purpose, err};

/// The fjall peer.
pub static FJALL: Fjall = Fjall;

/// The fjall peer's contender.
#[derive(Debug)]
pub struct Fjall;

const KEYSPACE: &str = "log";

fn key(writer: u32, seq: u64) -> [u8; 12] {
    let mut key = [0; 12];
    key[..4].copy_from_slice(&writer.to_be_bytes());
    key[4..].copy_from_slice(&seq.to_be_bytes());
    key
}

fn open(dir: &Path) -> Result<(Database, Keyspace), String> {
    let db = Database::builder(dir).open().map_err(err("open"))?;
    let keyspace = db
        .keyspace(KEYSPACE, KeyspaceCreateOptions::default)
        .map_err(err("keyspace"))?;
    Ok((db, keyspace))
}

struct OpenFjall {
    db: Database,
    keyspace: Keyspace,
}

impl Log for OpenFjall {
    fn commit(&self, writer: u32, seq: u64, rec: &[u8]) -> Result<(), String> {
        self.append(writer, seq, rec)?;
        self.sync()
    }

    fn append(&self, writer: u32, seq: u64, rec: &[u8]) -> Result<(), String> {
        self.keyspace
            .insert(key(writer, seq), rec)
            .map_err(err("insert"))
    }

    fn sync(&self) -> Result<(), String> {
        self.db
            .persist(PersistMode::SyncData)
            .map_err(err("persist"))
    }

    fn close(self: Box<Self>) -> Result<(), String> {
        self.sync()
    }
}

impl Entrant for Fjall {
    fn name(&self) -> &'static str {
        "fjall"
    }

    fn config(&self) -> &'static str {
        "defaults (LZ4); key (writer, seq) big-endian, the record as value; commit: \
         insert then Database::persist(SyncData); ingest: inserts, one persist"
    }
}

impl Contender for Fjall {
    fn open(&self, dir: &Path, _writers: u32, _purpose: Purpose) -> Result<Box<dyn Log>, String> {
        let (db, keyspace) = open(dir)?;
        Ok(Box::new(OpenFjall { db, keyspace }))
    }

    fn replay(
        &self,
        dir: &Path,
        _writers: u32,
        each: &mut dyn FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<f64, String> {
        let start = Instant::now();
        let (_db, keyspace) = open(dir)?;
        let ready = start.elapsed().as_secs_f64();
        for guard in keyspace.iter() {
            each(&guard.value().map_err(err("read"))?)?;
        }
        Ok(ready)
    }
}
