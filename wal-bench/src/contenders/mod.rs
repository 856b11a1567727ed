//! The contenders: this project's log in each configuration, the peers, and
//! a naive baseline, all behind one small trait so every workload treats them
//! alike.

use std::path::Path;

use crate::Workload;

mod fjall_peer;
mod naive;
mod okaywal_peer;
mod raft_engine_peer;
mod sqlite_peer;
mod wal;
mod walrus_peer;

pub use walrus_peer::DATA_DIR_VAR as WALRUS_DATA_DIR;
// The key-value contenders open these peers the same way.
pub(crate) use raft_engine_peer::open as open_raft_engine;
pub(crate) use sqlite_peer::connect as connect_sqlite;

/// What a log is opened for: the durability of each append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Every append is acknowledged only once durable (W1, W2, W5).
    Commits,
    /// Appends are buffered; one sync at the end makes them durable (W3).
    Ingest,
}

/// An open log of one contender.
pub trait Log: Send + Sync {
    /// Appends record `seq` of writer `writer`; returns once it is durable.
    fn commit(&self, writer: u32, seq: u64, rec: &[u8]) -> Result<(), String>;

    /// Appends `count` records of `len` bytes of writer 0 with no sync per
    /// record, then makes all of them durable. The default appends one
    /// record at a time through [`Log::append`] and ends with [`Log::sync`].
    fn ingest(&self, count: u64, len: usize) -> Result<(), String> {
        let mut buf = vec![0; len];
        for seq in 1..=count {
            crate::record::fill(&mut buf, 0, seq);
            self.append(0, seq, &buf)?;
        }
        self.sync()
    }

    /// Appends without waiting for durability.
    fn append(&self, writer: u32, seq: u64, rec: &[u8]) -> Result<(), String>;

    /// Makes every earlier append durable.
    fn sync(&self) -> Result<(), String>;

    /// Closes the log cleanly.
    fn close(self: Box<Self>) -> Result<(), String>;
}

/// What the orchestrator and the report know of every contender, log or
/// key-value store.
pub trait Entrant: Sync {
    /// The row name: `wal/<config>` for ours, the crate name for peers.
    fn name(&self) -> &'static str;

    /// How it is configured, for the table and the docs.
    fn config(&self) -> &'static str;

    /// True for this project's own configurations.
    fn is_ours(&self) -> bool {
        false
    }

    /// True for the naive baseline (neither ours nor a peer).
    fn is_baseline(&self) -> bool {
        false
    }

    /// Why this contender cannot run `workload`, if it cannot.
    fn not_applicable(&self, workload: Workload) -> Option<&'static str> {
        match workload {
            Workload::W5 => Some("no per-commit future: commits block their thread"),
            _ => None,
        }
    }
}

/// A log contender: how to open its log and read it back.
pub trait Contender: Entrant {
    /// Opens (creating) the log in `dir` for `writers` concurrent writers.
    fn open(&self, dir: &Path, writers: u32, purpose: Purpose) -> Result<Box<dyn Log>, String>;

    /// Opens the log in `dir` and hands every record to `each`, in order per
    /// writer. Returns the seconds from the start of the call until the log
    /// was ready to read (open-to-ready).
    fn replay(
        &self,
        dir: &Path,
        writers: u32,
        each: &mut dyn FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<f64, String>;

    /// Whether this process can replay a copy of the log, in another
    /// directory, and then the log itself as a fresh reader would (W4's
    /// first replay reads a copy to load the code).
    fn replays_a_copy_apart(&self) -> bool {
        true
    }

    /// W5: one thread keeps `depth` durable commits in flight for `seconds`.
    /// Only contenders with a per-commit future implement it.
    fn inflight(
        &self,
        _dir: &Path,
        _depth: usize,
        _seconds: f64,
        _len: usize,
    ) -> Result<crate::workload::Measured, String> {
        Err("not applicable".into())
    }
}

/// Every contender, ours first.
pub fn all() -> Vec<&'static dyn Contender> {
    vec![
        &wal::PORTABLE,
        &wal::URING,
        &wal::DIRECT,
        &wal::DEFAULTS,
        &naive::NAIVE,
        &okaywal_peer::OKAYWAL,
        &raft_engine_peer::RAFT_ENGINE,
        &walrus_peer::WALRUS,
        &fjall_peer::FJALL,
        &sqlite_peer::SQLITE,
    ]
}

/// The log contender named `name`.
pub fn by_name(name: &str) -> Option<&'static dyn Contender> {
    all().into_iter().find(|c| c.name() == name)
}

/// Everyone who runs `workload`: the logs for W1-W5, the key-value stores
/// for K1 and K2; only those named in `names`, unless it is empty.
pub fn entrants(workload: Workload, names: &[String]) -> Vec<&'static dyn Entrant> {
    let all: Vec<&'static dyn Entrant> = if workload.is_kv() {
        crate::stores::entrants(workload)
            .into_iter()
            .map(|s| s as &dyn Entrant)
            .collect()
    } else {
        all().into_iter().map(|c| c as &dyn Entrant).collect()
    };
    all.into_iter()
        .filter(|e| names.is_empty() || names.iter().any(|n| n == e.name()))
        .collect()
}

/// Checks that every name in `names` is a log or a store contender.
pub fn check_names(names: &[String]) -> Result<(), String> {
    let mut known: Vec<&str> = all().iter().map(|c| c.name()).collect();
    known.extend(
        crate::stores::all()
            .iter()
            .chain(&crate::stores::replicated())
            .map(|s| s.name()),
    );
    known.sort_unstable();
    known.dedup();
    match names.iter().find(|n| !known.contains(&n.as_str())) {
        Some(n) => Err(format!(
            "no contender named `{n}` (known: {})",
            known.join(", ")
        )),
        None => Ok(()),
    }
}

/// Turns any displayable error into the `String` errors this crate passes.
pub(crate) fn err<E: std::fmt::Display>(context: &'static str) -> impl Fn(E) -> String {
    move |e| format!("{context}: {e}")
}
