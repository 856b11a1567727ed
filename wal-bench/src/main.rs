//! The benchmark of the write-ahead log: the disk's physical limit first, then
//! every workload for this project's configurations, the peer crates and a
//! naive baseline side by side, in interleaved rounds. Tables go to stdout;
//! `results.json`, `results.csv` and SVG plots to the output directory
//! (`target/wal-bench/` by default). `cargo xtask bench` is its front door;
//! `docs/BENCHMARK.md` says what each workload and contender does.
//!
//! Every run of a workload is a child process of this binary (`wal-bench
//! child <spec>`): peers with process-global state (walrus-rust) get a fresh
//! process each time, a hung or crashing peer costs only its own row, and
//! no run inherits another's threads or memory.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};

mod archiving;
mod contenders;
mod handoff;
mod kvload;
mod limit;
mod machine;
mod orchestrate;
mod output;
mod record;
mod replay;
mod report;
mod server;
mod stores;
mod sweep;
mod tables;
mod txnload;
mod workload;

/// The workloads, by the names the tables, files and flags use.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ValueEnum,
)]
pub enum Workload {
    /// Durable commits of 128 B records from one thread.
    #[serde(rename = "w1")]
    #[value(name = "w1")]
    W1,
    /// Durable commits of 128 B records from many threads (group commit).
    #[serde(rename = "w2")]
    #[value(name = "w2")]
    W2,
    /// Bulk ingest of 4 KiB records, one sync at the end.
    #[serde(rename = "w3-4k")]
    #[value(name = "w3-4k")]
    W3Big,
    /// Bulk ingest of 128 B records, one sync at the end.
    #[serde(rename = "w3-128b")]
    #[value(name = "w3-128b")]
    W3Small,
    /// Replay of the W3 4 KiB log from a cold cache.
    #[serde(rename = "w4-4k")]
    #[value(name = "w4-4k")]
    W4Big,
    /// Replay of the W3 128 B log from a cold cache.
    #[serde(rename = "w4-128b")]
    #[value(name = "w4-128b")]
    W4Small,
    /// Durable commits of 128 B from one thread with many in flight.
    #[serde(rename = "w5")]
    #[value(name = "w5")]
    W5,
    /// Durable puts of 16 B keys and 100 B values from one thread.
    #[serde(rename = "k1")]
    #[value(name = "k1")]
    K1,
    /// Durable puts of 16 B keys and 100 B values from many threads.
    #[serde(rename = "k1-mt")]
    #[value(name = "k1-mt")]
    K1Many,
    /// Loading keys in durable batches of 1000.
    #[serde(rename = "k2-load")]
    #[value(name = "k2-load")]
    K2Load,
    /// Point reads of every loaded key in random order, after a reopen.
    #[serde(rename = "k2-get")]
    #[value(name = "k2-get")]
    K2Get,
    /// Transactions reading 2 keys and writing both, 1 thread.
    #[serde(rename = "k3")]
    #[value(name = "k3")]
    K3,
    /// Transactions reading 2 keys and writing both, many threads.
    #[serde(rename = "k3-mt")]
    #[value(name = "k3-mt")]
    K3Many,
    /// K1's puts through a three-node replicated store, 1 client.
    #[serde(rename = "r1")]
    #[value(name = "r1")]
    R1,
    /// K1's puts through a three-node replicated store, many clients.
    #[serde(rename = "r1-mt")]
    #[value(name = "r1-mt")]
    R1Many,
}

impl Workload {
    /// Every workload, in the order the tables show them.
    pub const ALL: [Workload; 15] = [
        Workload::W1,
        Workload::W2,
        Workload::W5,
        Workload::W3Big,
        Workload::W3Small,
        Workload::W4Big,
        Workload::W4Small,
        Workload::K1,
        Workload::K1Many,
        Workload::K2Load,
        Workload::K2Get,
        Workload::K3,
        Workload::K3Many,
        Workload::R1,
        Workload::R1Many,
    ];

    /// The name used in files and flags.
    pub fn name(self) -> &'static str {
        match self {
            Workload::W1 => "w1",
            Workload::W2 => "w2",
            Workload::W3Big => "w3-4k",
            Workload::W3Small => "w3-128b",
            Workload::W4Big => "w4-4k",
            Workload::W4Small => "w4-128b",
            Workload::W5 => "w5",
            Workload::K1 => "k1",
            Workload::K1Many => "k1-mt",
            Workload::K2Load => "k2-load",
            Workload::K2Get => "k2-get",
            Workload::K3 => "k3",
            Workload::K3Many => "k3-mt",
            Workload::R1 => "r1",
            Workload::R1Many => "r1-mt",
        }
    }

    /// True for the replicated workloads (R1), run by the replicated store
    /// and, as their one-node baseline, by this project's store.
    pub fn is_replicated(self) -> bool {
        matches!(self, Workload::R1 | Workload::R1Many)
    }

    /// True for the key-value workloads (K1-K3, R1), run by the stores.
    pub fn is_kv(self) -> bool {
        matches!(
            self,
            Workload::K1
                | Workload::K1Many
                | Workload::K2Load
                | Workload::K2Get
                | Workload::K3
                | Workload::K3Many
                | Workload::R1
                | Workload::R1Many
        )
    }

    /// True for a workload that reads what its partner wrote and so runs
    /// right after it, in the same directory.
    pub fn reads_partner(self) -> bool {
        matches!(self, Workload::W4Big | Workload::W4Small | Workload::K2Get)
    }

    /// Writer threads: many for W2, K1-mt, K3-mt and R1-mt, one otherwise.
    pub fn is_many_threads(self) -> bool {
        matches!(
            self,
            Workload::W2 | Workload::K1Many | Workload::K3Many | Workload::R1Many
        )
    }

    /// Bytes per record; for K1 and K2, of a key and its value.
    pub fn record_bytes(self) -> usize {
        match self {
            Workload::W3Big | Workload::W4Big => 4096,
            w if w.is_kv() => stores::KEY_BYTES + stores::VALUE_BYTES,
            _ => 128,
        }
    }

    /// The replay that reads what an ingest wrote, and the ingest a replay reads.
    pub fn partner(self) -> Option<Workload> {
        match self {
            Workload::W3Big => Some(Workload::W4Big),
            Workload::W3Small => Some(Workload::W4Small),
            Workload::W4Big => Some(Workload::W3Big),
            Workload::W4Small => Some(Workload::W3Small),
            Workload::K2Load => Some(Workload::K2Get),
            Workload::K2Get => Some(Workload::K2Load),
            _ => None,
        }
    }
}

/// Command line.
#[derive(Debug, Parser)]
#[command(name = "wal-bench", about = "The write-ahead log's benchmark", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: orchestrate::RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the benchmark (the default).
    Run(orchestrate::RunArgs),
    /// Lists the contenders and workloads.
    List,
    /// The network servers: walkv (one node, three nodes) against
    /// redis-server (appendfsync always) with redis-benchmark, and against
    /// a three-node etcd with durable puts.
    Server(server::ServerArgs),
    /// Archiving: the archiver's throughput into a local archive beside a
    /// plain copy, and a restore beside a cold replay of the same log.
    Archive(archiving::ArchiveArgs),
    /// Runs one workload for one contender and prints its result (internal).
    #[command(hide = true)]
    Child {
        /// The run, as JSON.
        spec: String,
    },
}

fn main() {
    let cli = Cli::parse();
    let outcome = match cli.command {
        None => orchestrate::run(&cli.run),
        Some(Command::Run(args)) => orchestrate::run(&args),
        Some(Command::List) => {
            list();
            Ok(())
        }
        Some(Command::Child { spec }) => child(&spec),
        Some(Command::Server(args)) => server::run(&args),
        Some(Command::Archive(args)) => archiving::run(&args),
    };
    if let Err(e) = outcome {
        eprintln!("wal-bench: {e}");
        std::process::exit(1);
    }
}

fn list() {
    println!("log contenders (W1-W5):");
    for c in contenders::all() {
        println!("  {:<14} {}", c.name(), c.config());
    }
    println!("key-value contenders (K1-K3; R1: wal/kv and the replicated ones):");
    for s in stores::all().into_iter().chain(stores::replicated()) {
        println!("  {:<14} {}", s.name(), s.config());
    }
    println!("workloads:");
    for w in Workload::ALL {
        println!("  {:<8} {}", w.name(), tables::title(w));
    }
}

/// The marker before the one line of JSON a child prints for its parent.
pub const RESULT_MARKER: &str = "wal-bench-result ";

fn child(spec: &str) -> Result<(), String> {
    let spec: workload::RunSpec =
        serde_json::from_str(spec).map_err(|e| format!("bad run spec: {e}"))?;
    let mut result = workload::run(&spec)?;
    result.peak_rss_bytes = peak_rss_bytes();
    let line = serde_json::to_string(&result).map_err(|e| format!("encode result: {e}"))?;
    println!("{RESULT_MARKER}{line}");
    Ok(())
}

/// This process's peak resident set size so far (Linux `VmHWM`).
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Where results go unless `--out` says otherwise.
pub fn default_out() -> PathBuf {
    PathBuf::from("target/wal-bench")
}
