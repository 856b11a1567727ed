//! `walkv`: the key-value server. With no arguments it serves a store in
//! `./walkv-data` on `127.0.0.1:6380`; `walkv --help` lists the flags, and
//! `--config FILE` reads the same settings from a TOML file (flags win).
#![forbid(unsafe_code)]

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use serde::Deserialize;
use wal_server::{Config, Server, SyncMode};

/// A durable key-value server speaking the Redis protocol.
#[derive(Debug, Parser)]
#[command(
    name = "walkv",
    version,
    after_help = "Examples:\n  walkv\n  walkv --dir /var/lib/walkv --bind 0.0.0.0 --port 6379\n  walkv --config /etc/walkv.toml\n  redis-cli -p 6380 SET greeting hello\n\nA configuration file holds the same settings:\n  dir = \"/var/lib/walkv\"\n  bind = \"0.0.0.0\"\n  port = 6379\n  sync = \"everysec\""
)]
struct Cli {
    /// A TOML file with any of `dir`, `bind`, `port`, `sync`; flags given
    /// here win over it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The data directory, created if missing [default: walkv-data].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The address to listen on [default: 127.0.0.1].
    #[arg(long)]
    bind: Option<IpAddr>,
    /// The port to listen on [default: 6380].
    #[arg(long)]
    port: Option<u16>,
    /// When a write is durable: before it is answered (always), within
    /// about a second (everysec), or when the log fills a batch (no)
    /// [default: always].
    #[arg(long, value_enum)]
    sync: Option<Sync>,
}

/// `--sync`, named as Redis's `appendfsync`.
#[derive(Debug, Clone, Copy, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Sync {
    Always,
    Everysec,
    No,
}

/// The configuration file: every field optional, none unknown.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    dir: Option<PathBuf>,
    bind: Option<IpAddr>,
    port: Option<u16>,
    sync: Option<Sync>,
}

/// The settings: flags, then the file, then the defaults.
fn settings(cli: &Cli) -> Result<Config, String> {
    let file = match &cli.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            toml::from_str::<File>(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => File::default(),
    };
    let dir = cli
        .dir
        .clone()
        .or(file.dir)
        .unwrap_or_else(|| PathBuf::from("walkv-data"));
    let bind = cli.bind.or(file.bind).unwrap_or([127, 0, 0, 1].into());
    let port = cli.port.or(file.port).unwrap_or(6380);
    let mut config = Config::new(dir, SocketAddr::new(bind, port));
    config.sync = match cli.sync.or(file.sync).unwrap_or(Sync::Always) {
        Sync::Always => SyncMode::Always,
        Sync::Everysec => SyncMode::EverySec,
        Sync::No => SyncMode::No,
    };
    Ok(config)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match settings(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("walkv: {e}");
            return ExitCode::from(2);
        }
    };
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
    let dir = config.dir.clone();
    let outcome = runtime.block_on(async {
        let server = Server::bind(config).await?;
        if let Ok(addr) = server.local_addr() {
            eprintln!("walkv: serving {} on {addr}", dir.display());
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
