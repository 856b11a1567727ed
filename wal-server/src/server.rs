//! The network side: a tokio listener, one task per connection, requests
//! decoded and answered in order (pipelined requests get their replies in
//! one write), graceful shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::backend::{Backend, Local, SyncMode};
use crate::cluster::{ClusterConfig, Node, NodeAddr};
use crate::command::{Session, execute};
use crate::http_api;
use crate::info::Counters;
use crate::scan::Cursors;
use crate::strings;
use crate::{Decoder, Limits, Reply, ServerError};

/// Where the server keeps its data and listens.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The data directory (created if missing).
    pub dir: PathBuf,
    /// The address to listen on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// The most a request may be.
    pub limits: Limits,
    /// The store's options.
    pub store: wal_kv::Options,
    /// When a write is durable (a single-node store's; a cluster node's
    /// writes are durable on a majority before they are answered).
    pub sync: SyncMode,
    /// Where to serve HTTP (`/health`, `/metrics`; on a cluster node also
    /// the peers and the admin API); required for a cluster node.
    pub http: Option<SocketAddr>,
    /// Run as a node of a cluster rather than as a single-node store.
    pub cluster: Option<ClusterConfig>,
    /// A single-node store on this storage instead of `dir` (an embedding
    /// application's own, or a fault-injecting simulated disk in tests).
    pub storage: Option<Arc<dyn wal_io::Storage>>,
    /// Continuous archiving of a single-node store: its sealed segments and
    /// base backups go to this archive, and the log purges nothing the
    /// archive has not taken.
    pub archive: Option<ArchiveConfig>,
}

/// Where and how a single-node store is archived.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ArchiveConfig {
    /// The archive: a directory, or a `file://` URL.
    pub url: String,
    /// Base backups kept (with the segments they need). Default 2.
    pub keep_bases: usize,
    /// Time between archiving rounds. Default 1 s.
    pub every: std::time::Duration,
}

impl ArchiveConfig {
    /// Archiving into `url` with the defaults.
    pub fn new(url: impl Into<String>) -> ArchiveConfig {
        ArchiveConfig {
            url: url.into(),
            keep_bases: 2,
            every: std::time::Duration::from_secs(1),
        }
    }
}

impl Config {
    /// `walkv`'s defaults: `./walkv-data`, `127.0.0.1:6380`.
    pub fn new(dir: impl Into<PathBuf>, listen: SocketAddr) -> Config {
        Config {
            dir: dir.into(),
            listen,
            limits: Limits::default(),
            store: wal_kv::Options::default(),
            sync: SyncMode::Always,
            http: None,
            cluster: None,
            storage: None,
            archive: None,
        }
    }
}

/// A bound, not yet serving, server.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    http: Option<TcpListener>,
    backend: Arc<Backend>,
    limits: Limits,
    /// The archiver, when archiving: stopped (after a last round) once the
    /// store is closed.
    archiver: Option<wal_archive::Running>,
}

impl Server {
    /// Binds the listeners, then opens the store (or the cluster node,
    /// which advertises the bound addresses to its peers).
    ///
    /// # Errors
    /// The store's open errors (another process holding the directory
    /// among them); a directory of the other mode or of another node; an
    /// address in use or not available; a cluster node without an HTTP
    /// address.
    pub async fn bind(config: Config) -> Result<Server, ServerError> {
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(ServerError::io(format!("listen on {}", config.listen)))?;
        let http = match config.http {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(ServerError::io(format!("listen for HTTP on {addr}")))?,
            ),
            None => None,
        };
        if config.archive.is_some() && (config.cluster.is_some() || config.storage.is_some()) {
            return Err(ServerError::Misconfigured(
                "archiving is for a single-node store in a directory (a cluster node's log is \
                 its Raft log)"
                    .into(),
            ));
        }
        let (backend, archiver) = match &config.cluster {
            None => {
                let (dir, mut store, sync) =
                    (config.dir.clone(), config.store.clone(), config.sync);
                let hold = config
                    .archive
                    .as_ref()
                    .map(|_| wal_engine::PurgeHold::new());
                store.log.purge_hold.clone_from(&hold);
                let storage = config.storage.clone();
                let local = tokio::task::spawn_blocking(move || match storage {
                    Some(storage) => Local::open_on(storage, store, sync),
                    None => Local::open(&dir, store, sync),
                })
                .await
                .map_err(|e| ServerError::io("open the store")(std::io::Error::other(e)))??;
                let archiver = match (&config.archive, hold) {
                    (Some(archive), Some(hold)) => {
                        Some(start_archiver(&config.dir, archive, hold).await?)
                    }
                    _ => None,
                };
                (Backend::Local(local), archiver)
            }
            Some(cluster) => {
                let Some(http) = &http else {
                    return Err(ServerError::Misconfigured(
                        "a cluster node needs an HTTP address for its peers".into(),
                    ));
                };
                let addr = |l: &TcpListener| {
                    l.local_addr()
                        .map_err(ServerError::io("read the listening address"))
                };
                let me = NodeAddr::advertised(cluster, addr(http)?, addr(&listener)?)?;
                (
                    Backend::Cluster(Box::new(
                        Node::open(&config.dir, cluster, me, config.store.clone()).await?,
                    )),
                    None,
                )
            }
        };
        Ok(Server {
            listener,
            http,
            backend: Arc::new(backend),
            limits: config.limits,
            archiver,
        })
    }

    /// The address it listens on for clients.
    ///
    /// # Errors
    /// The socket's error.
    pub fn local_addr(&self) -> Result<SocketAddr, ServerError> {
        self.listener
            .local_addr()
            .map_err(ServerError::io("read the listening address"))
    }

    /// The address it serves HTTP on, if it does.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown` completes, then stops accepting, lets each
    /// connection finish the request it is running (every acknowledged
    /// write is durable), and closes the store cleanly.
    ///
    /// # Errors
    /// The store's close errors.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let port = self.listener.local_addr().map_or(0, |a| a.port());
        let counters = Arc::new(Counters::new(port));
        let cursors = Arc::new(Cursors::default());
        let ids = AtomicU64::new(1);
        let mut connections = JoinSet::new();
        let sweeper = tokio::spawn(sweep(Arc::clone(&self.backend), stop_rx.clone()));
        let http = self.http.map(|listener| {
            let shared = http_api::Shared {
                backend: Arc::clone(&self.backend),
                counters: Arc::clone(&counters),
            };
            tokio::spawn(http_api::serve(listener, shared, stop_rx.clone()))
        });
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => {
                    let Ok((stream, _peer)) = accepted else { continue };
                    let _ = stream.set_nodelay(true);
                    let id = ids.fetch_add(1, Ordering::Relaxed);
                    let db = (Arc::clone(&self.backend), Arc::clone(&counters));
                    let session = Session::new(id, Arc::clone(&cursors));
                    connections.spawn(serve(stream, db, session, self.limits, stop_rx.clone()));
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        drop(self.listener);
        tracing::info!(
            connections = connections.len(),
            "stopping: no new connections, finishing the requests in flight"
        );
        let _ = stop_tx.send(true);
        while connections.join_next().await.is_some() {}
        let _ = sweeper.await;
        if let Some(http) = http {
            let _ = http.await;
        }
        let backend = Arc::try_unwrap(self.backend).map_err(|_| {
            ServerError::io("close the store")(std::io::Error::other("still in use"))
        })?;
        // The archiver's last round runs even if the close failed: what
        // the log sealed is still to be shipped.
        let closed = backend.close().await;
        if let Some(archiver) = self.archiver {
            // A last round ships what the close sealed.
            match tokio::task::spawn_blocking(move || archiver.stop()).await {
                Ok(Ok(round)) => tracing::info!(
                    archived_through = round.archived_through,
                    "archiver stopped"
                ),
                Ok(Err(e)) => tracing::warn!(error = %e, "the archiver's last round failed"),
                Err(e) => tracing::warn!(error = %e, "the archiver did not stop cleanly"),
            }
        }
        closed?;
        tracing::info!("stopped cleanly");
        Ok(())
    }
}

/// Starts archiving the store in `dir` (its log holds `hold`).
async fn start_archiver(
    dir: &std::path::Path,
    config: &ArchiveConfig,
    hold: wal_engine::PurgeHold,
) -> Result<wal_archive::Running, ServerError> {
    let (dir, config) = (dir.to_owned(), config.clone());
    tokio::task::spawn_blocking(move || {
        let archive = wal_archive::Archive::open(&config.url)
            .map_err(|e| ServerError::Misconfigured(format!("archive {}: {e}", config.url)))?;
        let archiver = wal_archive::Archiver::new(&dir, archive, hold, config.keep_bases)
            .map_err(|e| ServerError::Misconfigured(format!("archive {}: {e}", config.url)))?;
        tracing::info!(archive = %config.url, keep_bases = config.keep_bases, "archiving");
        Ok(archiver.spawn(config.every))
    })
    .await
    .map_err(|e| ServerError::io("start the archiver")(std::io::Error::other(e)))?
}

/// Counts a connection as open while it lives.
struct Open<'a>(&'a Counters);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.connected.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Replies held for a connection before they are written out even though
/// more pipelined requests wait.
const OUTPUT_FLUSH_BYTES: usize = 8 << 20;

/// One connection: read, decode every whole request, answer them in one
/// write, until the client leaves, sends a bad request (answered, then
/// closed), says `QUIT`, or the server stops.
async fn serve(
    mut stream: TcpStream,
    (db, counters): (Arc<Backend>, Arc<Counters>),
    mut session: Session,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    counters.accepted.fetch_add(1, Ordering::Relaxed);
    counters.connected.fetch_add(1, Ordering::Relaxed);
    let _open = Open(&counters);
    let mut decoder = Decoder::new(limits);
    let mut input = BytesMut::with_capacity(16 << 10);
    let mut output = BytesMut::with_capacity(16 << 10);
    loop {
        let mut close = false;
        loop {
            match decoder.decode(&mut input) {
                Ok(Some(args)) => {
                    // A cluster's commands block on the Raft (a write
                    // waits for a majority), and a local write may wait
                    // for a checkpoint when memory is full: off the
                    // runtime's other tasks. Otherwise a local command runs
                    // here: its write's sync is awaited below, and handing
                    // the thread off costs more than the rest of a command.
                    let mut reply = if db.commands_block() {
                        tokio::task::block_in_place(|| execute(&db, &counters, &mut session, &args))
                    } else {
                        execute(&db, &counters, &mut session, &args)
                    };
                    // The write this answer speaks for must be durable
                    // before it is sent, and before the next command runs
                    // (which may read it); waiting here holds no thread.
                    if let Some(commit) = session.pending.take()
                        && let Err(e) = commit.await
                    {
                        reply = Err(e.into());
                    }
                    match reply {
                        Ok(reply) => {
                            reply.encode(session.protocol, &mut output);
                            // Many pipelined reads of large values: send
                            // what is ready rather than hold it all.
                            if output.len() >= OUTPUT_FLUSH_BYTES {
                                if stream.write_all(&output).await.is_err() {
                                    return;
                                }
                                output.clear();
                            }
                        }
                        Err(e) => {
                            Reply::error(e.reply_text()).encode(session.protocol, &mut output);
                            // A store that failed stops this connection;
                            // a request over a limit does not.
                            close = !e.is_client_error();
                            if close {
                                tracing::error!(
                                    connection = session.id,
                                    "{e}; closing the connection"
                                );
                            }
                        }
                    }
                    if session.closing || close {
                        close = true;
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    Reply::error(format!("ERR {e}")).encode(session.protocol, &mut output);
                    close = true;
                    break;
                }
            }
        }
        if !output.is_empty() {
            if stream.write_all(&output).await.is_err() {
                return;
            }
            output.clear();
        }
        if close || *stop.borrow() {
            return;
        }
        tokio::select! {
            read = stream.read_buf(&mut input) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
            _ = stop.changed() => return,
        }
    }
}

/// Keys swept per round of the expiry sweeper, and the pause between
/// rounds: a full pass over a million keys takes under a minute.
const SWEEP_KEYS: usize = 2000;
const SWEEP_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// Deletes expired keys in the background until the server stops (reads
/// already treat them as absent; this frees their space). A failing round
/// is tried again at the next one.
async fn sweep(backend: Arc<Backend>, mut stop: watch::Receiver<bool>) {
    let mut after = None;
    loop {
        tokio::select! {
            () = tokio::time::sleep(SWEEP_PAUSE) => {}
            _ = stop.changed() => return,
        }
        // On a cluster only the leader sweeps (its deletes are guarded
        // by the value it read, so a stale read deletes nothing live).
        if backend.node().is_some_and(|n| !n.is_leader()) {
            continue;
        }
        let from = after.take();
        after = tokio::task::block_in_place(|| {
            strings::sweep(&mut backend.db(true, None), from, SWEEP_KEYS)
        })
        .unwrap_or_default();
    }
}
