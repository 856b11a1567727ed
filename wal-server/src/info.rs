//! `INFO`: what an operator asks a running server, in Redis's
//! `field:value` sections (`# Server`, `# Clients`, `# Stats`,
//! `# Persistence`, `# Store`, and on a cluster node `# Raft`); `INFO
//! section` gives one of them.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::backend::Backend;

/// Counters the connections keep for `INFO`.
#[derive(Debug)]
pub struct Counters {
    started: Instant,
    port: u16,
    /// Connections open now.
    pub connected: AtomicU64,
    /// Connections accepted since the start.
    pub accepted: AtomicU64,
    /// Commands run since the start.
    pub commands: AtomicU64,
}

impl Counters {
    /// Counters for a server listening on `port`.
    pub fn new(port: u16) -> Counters {
        Counters {
            started: Instant::now(),
            port,
            connected: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            commands: AtomicU64::new(0),
        }
    }
}

/// The text of `INFO [section]`; empty for an unknown section, as Redis.
pub(crate) fn info(backend: &Backend, counters: &Counters, section: Option<&str>) -> String {
    let want = |name: &str| {
        section.is_none_or(|s| {
            s.eq_ignore_ascii_case(name)
                || s.eq_ignore_ascii_case("all")
                || s.eq_ignore_ascii_case("default")
        })
    };
    let mut out = String::new();
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    if want("server") {
        let _ = write!(
            out,
            "# Server\r\nredis_version:7.0.0\r\nwalkv_version:{}\r\nprocess_id:{}\r\n\
             tcp_port:{}\r\nuptime_in_seconds:{}\r\n\r\n",
            env!("CARGO_PKG_VERSION"),
            std::process::id(),
            counters.port,
            counters.started.elapsed().as_secs()
        );
    }
    if want("clients") {
        let _ = write!(
            out,
            "# Clients\r\nconnected_clients:{}\r\n\r\n",
            load(&counters.connected)
        );
    }
    if want("stats") {
        let _ = write!(
            out,
            "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\n\r\n",
            load(&counters.accepted),
            load(&counters.commands)
        );
    }
    let store = backend.store();
    if want("persistence") {
        let log = store.log().stats();
        let _ = write!(
            out,
            "# Persistence\r\nwal_appends:{}\r\nwal_bytes:{}\r\nwal_fsyncs:{}\r\n\
             wal_group_commits:{}\r\nwal_durable_lsn:{}\r\n\r\n",
            log.appends,
            log.append_bytes,
            log.syncs,
            log.batches,
            store.log().durable_lsn()
        );
    }
    if let Some(node) = backend.node()
        && want("raft")
    {
        out.push_str("# Raft\r\n");
        for line in crate::cluster::admin::status(node).lines() {
            if let Some((field, value)) = line.split_once(' ') {
                let _ = write!(out, "raft_{field}:{value}\r\n");
            }
        }
        out.push_str("\r\n");
    }
    if want("store") {
        let st = store.stats();
        let _ = write!(
            out,
            "# Store\r\nmemtable_bytes:{}\r\ntables:{}\r\ntable_bytes:{}\r\ncheckpoints:{}\r\n\
             compactions:{}\r\ncheckpoint_lsn:{}\r\n\r\n",
            st.memtable_bytes,
            st.tables,
            st.table_bytes,
            st.checkpoints,
            st.compactions,
            st.checkpoint_lsn
        );
    }
    out
}
