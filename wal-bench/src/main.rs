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

mod contenders;
mod limit;
mod machine;
mod orchestrate;
mod record;
mod report;
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
}

impl Workload {
    /// Every workload, in the order the tables show them.
    pub const ALL: [Workload; 7] = [
        Workload::W1,
        Workload::W2,
        Workload::W5,
        Workload::W3Big,
        Workload::W3Small,
        Workload::W4Big,
        Workload::W4Small,
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
        }
    }

    /// Bytes per record.
    pub fn record_bytes(self) -> usize {
        match self {
            Workload::W3Big | Workload::W4Big => 4096,
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
    };
    if let Err(e) = outcome {
        eprintln!("wal-bench: {e}");
        std::process::exit(1);
    }
}

fn list() {
    println!("contenders:");
    for c in contenders::all() {
        println!("  {:<14} {}", c.name(), c.config());
    }
    println!("workloads:");
    for w in Workload::ALL {
        println!("  {:<8} {}", w.name(), report::title(w));
    }
}

/// The marker before the one line of JSON a child prints for its parent.
pub const RESULT_MARKER: &str = "wal-bench-result ";

fn child(spec: &str) -> Result<(), String> {
    let spec: workload::RunSpec =
        serde_json::from_str(spec).map_err(|e| format!("bad run spec: {e}"))?;
    let result = workload::run(&spec)?;
    let line = serde_json::to_string(&result).map_err(|e| format!("encode result: {e}"))?;
    println!("{RESULT_MARKER}{line}");
    Ok(())
}

/// Where results go unless `--out` says otherwise.
pub fn default_out() -> PathBuf {
    PathBuf::from("target/wal-bench")
}
