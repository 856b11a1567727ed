//! The benchmark binary of the write-ahead log.
//!
//! **Status: not yet implemented.** It will measure the disk's physical limit,
//! then run the workloads (durable commits with 1 and 64 writers, bulk ingest,
//! replay, key-value puts and gets) for this project's configurations and for
//! peer crates side by side, and write a table, CSV, JSON and SVG plots under
//! `target/wal-bench/`. `cargo xtask bench` is its front door.
#![forbid(unsafe_code)]

fn main() {
    eprintln!(
        "wal-bench: the workload benchmark is not implemented yet; \
         `cargo xtask bench` runs the format micro-benchmarks meanwhile"
    );
    std::process::exit(2);
}
