//! `walkv`: the key-value server. With no arguments it serves a store in
//! `./walkv-data` on `127.0.0.1:6380`; `walkv --help` lists the flags.
#![forbid(unsafe_code)]

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use wal_server::{Config, Server, SyncMode};

/// A durable key-value server speaking the Redis protocol.
#[derive(Debug, Parser)]
#[command(
    name = "walkv",
    version,
    after_help = "Examples:\n  walkv\n  walkv --dir /var/lib/walkv --bind 0.0.0.0 --port 6379\n  redis-cli -p 6380 SET greeting hello"
)]
struct Cli {
    /// The data directory (created if missing).
    #[arg(long, default_value = "walkv-data")]
    dir: PathBuf,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// The port to listen on.
    #[arg(long, default_value_t = 6380)]
    port: u16,
    /// When a write is durable: before it is answered (always), within
    /// about a second (everysec), or when the log fills a batch (no).
    #[arg(long, value_enum, default_value_t = Sync::Always)]
    sync: Sync,
}

/// `--sync`, named as Redis's `appendfsync`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Sync {
    Always,
    Everysec,
    No,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("walkv: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut config = Config::new(&cli.dir, SocketAddr::new(cli.bind, cli.port));
    config.sync = match cli.sync {
        Sync::Always => SyncMode::Always,
        Sync::Everysec => SyncMode::EverySec,
        Sync::No => SyncMode::No,
    };
    let outcome = runtime.block_on(async {
        let server = Server::bind(config).await?;
        if let Ok(addr) = server.local_addr() {
            eprintln!("walkv: serving {} on {addr}", cli.dir.display());
        }
        server.run(shutdown_signal()).await
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("walkv: {e}");
            ExitCode::FAILURE
        }
    }
}

/// SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers, serve until killed.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
