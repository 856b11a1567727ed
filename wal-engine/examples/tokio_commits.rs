//! Durable commits from tokio tasks, without `spawn_blocking`: `append` only
//! encodes into the shared batch (a short lock, no I/O), and the future
//! returned by `Wal::durable` is woken by the log's owner thread when the
//! record's batch is synced.
//!
//! Run with `cargo run -p wal-engine --example tokio_commits`.

use std::sync::Arc;

use wal_engine::{Options, Wal};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let (wal, _report) = Wal::open(dir.path(), Options::default())?;
    let wal = Arc::new(wal);

    let tasks: Vec<_> = (0..200u32)
        .map(|i| {
            let wal = wal.clone();
            tokio::spawn(async move {
                let lsn = wal.append(format!("order {i} accepted").as_bytes())?;
                wal.durable(lsn).await?;
                Ok::<u64, wal_engine::WalError>(lsn)
            })
        })
        .collect();
    let mut durable = 0;
    for task in tasks {
        let lsn = task.await??;
        assert!(wal.durable_lsn() >= lsn);
        durable += 1;
    }
    let stats = wal.stats();
    println!(
        "{durable} commits durable in {} batches and {} syncs (backend: {})",
        stats.batches,
        stats.syncs,
        wal.backend()
    );
    Ok(())
}
