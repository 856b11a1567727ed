//! `walkv`: the key-value server. With no arguments it serves a store in
//! `./walkv-data` on `127.0.0.1:6380`; `walkv --help` lists the flags, and
//! `--config FILE` reads the same settings from a TOML file (flags win).
//! With `--node-id` and `--http` it runs as a node of a cluster, which
//! `walkv admin` forms and changes.
#![forbid(unsafe_code)]

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;
use wal_server::{ArchiveConfig, ClusterConfig, Config, Server, SyncMode};

/// A durable key-value server speaking the Redis protocol.
#[derive(Debug, Parser)]
#[command(
    name = "walkv",
    version,
    after_help = "Examples:\n  walkv\n  walkv --dir /var/lib/walkv --bind 0.0.0.0 --port 6379\n  walkv --config /etc/walkv.toml\n  redis-cli -p 6380 SET greeting hello\n\nA three-node cluster on one machine:\n  walkv --dir n1 --port 6381 --node-id 1 --http 127.0.0.1:7001 &\n  walkv --dir n2 --port 6382 --node-id 2 --http 127.0.0.1:7002 &\n  walkv --dir n3 --port 6383 --node-id 3 --http 127.0.0.1:7003 &\n  walkv admin --node 127.0.0.1:7001 init 1=127.0.0.1:7001,127.0.0.1:6381 \\\n      2=127.0.0.1:7002,127.0.0.1:6382 3=127.0.0.1:7003,127.0.0.1:6383\n  walkv admin --node 127.0.0.1:7001 status\n\nA configuration file holds the same settings:\n  dir = \"/var/lib/walkv\"\n  bind = \"0.0.0.0\"\n  port = 6379\n  sync = \"everysec\"\n  node_id = 1\n  http = \"127.0.0.1:7001\""
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// A TOML file with any of the settings below, named with `_` for `-`
    /// (`dir`, `bind`, `port`, `sync`, `node_id`, `request_timeout_ms`...);
    /// flags given here win over it.
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
    /// Serve HTTP here: /health and /metrics, and on a cluster node its
    /// peers and the admin API.
    #[arg(long)]
    http: Option<SocketAddr>,
    /// Run as node ID of a cluster (needs --http); the data directory is
    /// then this node's and no other's.
    #[arg(long)]
    node_id: Option<u64>,
    /// On a cluster node: Raft entries between snapshots [default: 100000].
    #[arg(long)]
    snapshot_every: Option<u64>,
    /// Archive the store continuously into this directory (a single-node
    /// store): its sealed segments and base backups; the log then purges
    /// nothing the archive has not taken. Restore with `walctl restore`.
    #[arg(long)]
    archive: Option<String>,
    /// With --archive: base backups kept [default: 2].
    #[arg(long)]
    archive_keep: Option<usize>,
    /// On a cluster node: the HOST:PORT peers reach its --http at, when
    /// that is not the bound address (needed when --http binds 0.0.0.0).
    #[arg(long)]
    advertise_http: Option<String>,
    /// On a cluster node: the HOST:PORT clients reach it at, named in
    /// redirects (needed when --bind is 0.0.0.0).
    #[arg(long)]
    advertise_client: Option<String>,
    /// On a cluster node: how long a client's read or write waits for a
    /// majority, in milliseconds; then a read is refused (CLUSTERDOWN,
    /// nothing read) and a write answered as of unknown outcome
    /// [default: 5000].
    #[arg(long)]
    request_timeout_ms: Option<u64>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Forms and changes a cluster through one of its nodes' HTTP
    /// address (a change sent to a follower is passed to the leader).
    Admin {
        /// A node's HTTP address (its --http).
        #[arg(long)]
        node: String,
        #[command(subcommand)]
        call: AdminCall,
    },
}

#[derive(Debug, clap::Subcommand)]
enum AdminCall {
    /// Makes the cluster: with no members, this node alone; otherwise the
    /// members given as ID=PEER_ADDR,CLIENT_ADDR.
    Init { members: Vec<String> },
    /// Adds a node as a learner and waits until it has caught up.
    AddLearner {
        id: u64,
        /// Its HTTP address.
        peer: String,
        /// Its Redis-protocol address.
        client: String,
    },
    /// Makes exactly these nodes the voters (the others stay learners
    /// only if they were learners).
    ChangeMembership {
        #[arg(required = true)]
        voters: Vec<u64>,
    },
    /// Removes a node from the cluster.
    RemoveNode { id: u64 },
    /// Asks the leader to hand leadership to this node.
    TransferLeader { id: u64 },
    /// The node's Raft state and the membership.
    Status,
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
    http: Option<SocketAddr>,
    node_id: Option<u64>,
    snapshot_every: Option<u64>,
    advertise_http: Option<String>,
    advertise_client: Option<String>,
    archive: Option<String>,
    archive_keep: Option<usize>,
    request_timeout_ms: Option<u64>,
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
    config.http = cli.http.or(file.http);
    if let Some(url) = cli.archive.clone().or(file.archive) {
        let mut archive = ArchiveConfig::new(url);
        if let Some(keep) = cli.archive_keep.or(file.archive_keep) {
            if keep == 0 {
                return Err("--archive-keep must be at least 1".into());
            }
            archive.keep_bases = keep;
        }
        config.archive = Some(archive);
    } else if cli.archive_keep.is_some() {
        return Err("--archive-keep needs --archive".into());
    }
    let request_timeout_ms = cli.request_timeout_ms.or(file.request_timeout_ms);
    if let Some(id) = cli.node_id.or(file.node_id) {
        let Some(http) = config.http else {
            return Err("a cluster node (--node-id) needs --http, where its peers reach it".into());
        };
        let mut cluster = ClusterConfig::new(id, http);
        if let Some(n) = cli.snapshot_every.or(file.snapshot_every) {
            if n == 0 {
                return Err("--snapshot-every must be at least 1".into());
            }
            cluster.snapshot_every = n;
            cluster.logs_kept = cluster.logs_kept.min(n);
        }
        cluster.advertise_http = cli.advertise_http.clone().or(file.advertise_http);
        cluster.advertise_client = cli.advertise_client.clone().or(file.advertise_client);
        if let Some(ms) = request_timeout_ms {
            if ms == 0 {
                return Err("--request-timeout-ms must be at least 1".into());
            }
            cluster.request_timeout = Duration::from_millis(ms);
        }
        config.cluster = Some(cluster);
    } else if cli.advertise_http.is_some()
        || cli.advertise_client.is_some()
        || file.advertise_http.is_some()
        || file.advertise_client.is_some()
    {
        return Err(
            "--advertise-http and --advertise-client are for a cluster node (--node-id)".into(),
        );
    } else if request_timeout_ms.is_some() {
        return Err("--request-timeout-ms is for a cluster node (--node-id)".into());
    }
    Ok(config)
}

/// `walkv admin`: one call, its answer on stdout; exit 1 if refused.
fn admin(runtime: &tokio::runtime::Runtime, node: &str, call: &AdminCall) -> ExitCode {
    use wal_server::admin_call;
    let (path, body) = match call {
        AdminCall::Init { members } => {
            let mut lines = String::new();
            for m in members {
                let parsed = m
                    .split_once('=')
                    .and_then(|(id, addrs)| Some((id, addrs.split_once(',')?)));
                let Some((id, (peer, client))) = parsed else {
                    eprintln!("walkv: a member is ID=PEER_ADDR,CLIENT_ADDR, not {m:?}");
                    return ExitCode::from(2);
                };
                lines.push_str(&format!("{id} {peer} {client}\n"));
            }
            ("/admin/init", Some(lines))
        }
        AdminCall::AddLearner { id, peer, client } => {
            ("/admin/add-learner", Some(format!("{id} {peer} {client}")))
        }
        AdminCall::ChangeMembership { voters } => {
            let ids: Vec<String> = voters.iter().map(u64::to_string).collect();
            ("/admin/change-membership", Some(ids.join(" ")))
        }
        AdminCall::RemoveNode { id } => ("/admin/remove-node", Some(id.to_string())),
        AdminCall::TransferLeader { id } => ("/admin/transfer-leader", Some(id.to_string())),
        AdminCall::Status => ("/admin/status", None),
    };
    match runtime.block_on(admin_call(node, path, body)) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("walkv: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Admin { node, call }) = &cli.command {
        return match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => admin(&rt, node, call),
            Err(e) => {
                eprintln!("walkv: cannot start the runtime: {e}");
                ExitCode::FAILURE
            }
        };
    }
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
    init_logs();
    let dir = config.dir.clone();
    let node = config.cluster.as_ref().map(|c| c.id);
    let outcome = runtime.block_on(async {
        let server = Server::bind(config).await?;
        if let Ok(addr) = server.local_addr() {
            let http = server.http_addr().map(|a| a.to_string());
            tracing::info!(dir = %dir.display(), clients = %addr, http, node, "serving");
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

/// The variable that picks what is logged, as `target=level` pairs.
const LOG_VARIABLE: &str = "WALKV_LOG";
/// What is logged without it: walkv's events, and openraft's warnings.
const LOG_DEFAULT: &str = "info,openraft=warn";

/// Logs go to stderr, filtered by `WALKV_LOG` (a filter that does not
/// parse is reported, and the default used).
fn init_logs() {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let (targets, bad) = match std::env::var(LOG_VARIABLE) {
        Ok(text) => match text.parse::<Targets>() {
            Ok(t) => (t, None),
            Err(e) => (LOG_DEFAULT.parse().unwrap_or_default(), Some((text, e))),
        },
        Err(_) => (LOG_DEFAULT.parse().unwrap_or_default(), None),
    };
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false);
    tracing_subscriber::registry()
        .with(fmt)
        .with(targets)
        .init();
    if let Some((text, e)) = bad {
        tracing::warn!("{LOG_VARIABLE}={text:?} is not a filter ({e}); using {LOG_DEFAULT:?}");
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn settings_of(args: &[&str]) -> Result<Config, String> {
        let cli = Cli::try_parse_from(std::iter::once("walkv").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        settings(&cli)
    }

    #[test]
    fn the_request_timeout_is_a_cluster_nodes_from_its_flag_or_its_file() {
        let node = ["--node-id", "1", "--http", "127.0.0.1:7001"];
        let timeout = |extra: &[&str]| {
            let args: Vec<&str> = node.iter().chain(extra).copied().collect();
            settings_of(&args).map(|c| c.cluster.expect("a cluster node").request_timeout)
        };
        assert_eq!(timeout(&[]), Ok(Duration::from_secs(5)), "etcd's default");
        assert_eq!(
            timeout(&["--request-timeout-ms", "250"]),
            Ok(Duration::from_millis(250))
        );
        let err = timeout(&["--request-timeout-ms", "0"]).unwrap_err();
        assert!(err.contains("at least 1"), "{err}");
        let err = settings_of(&["--request-timeout-ms", "250"]).unwrap_err();
        assert!(err.contains("cluster node"), "{err}");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let file = dir.path().join("walkv.toml");
        std::fs::write(&file, "request_timeout_ms = 1500\n").expect("written");
        let file = file.to_str().expect("a UTF-8 path");
        assert_eq!(
            timeout(&["--config", file]),
            Ok(Duration::from_millis(1500)),
            "from the file"
        );
        assert_eq!(
            timeout(&["--config", file, "--request-timeout-ms", "40"]),
            Ok(Duration::from_millis(40)),
            "the flag wins"
        );
        // A cluster setting in the file of a single-node store is refused
        // as the flag is, not ignored.
        let err = settings_of(&["--config", file]).unwrap_err();
        assert!(err.contains("cluster node"), "{err}");
        let other = dir.path().join("advertise.toml");
        std::fs::write(&other, "advertise_http = \"h:1\"\n").expect("written");
        let err = settings_of(&["--config", other.to_str().expect("UTF-8")]).unwrap_err();
        assert!(err.contains("cluster node"), "{err}");
    }
}
