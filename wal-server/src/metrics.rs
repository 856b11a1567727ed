//! `GET /metrics`: the server's counters in Prometheus's text format
//! (version 0.0.4): connections and commands, the log's appends, bytes,
//! fsyncs and group commits (their ratio is the batch size), the store's
//! memtable and tables, and on a cluster node the Raft term, leader, log,
//! commit and applied indexes, and the latency of replicated writes.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::backend::Backend;
use crate::info::Counters;

/// A count that only grows.
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Upper bounds of the latency buckets, in microseconds: 100 us to 10 s.
const BUCKETS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// A latency histogram with fixed buckets, cumulative as Prometheus
/// expects when rendered.
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    buckets: [AtomicU64; BUCKETS_US.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    pub(crate) fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        if let Some(i) = BUCKETS_US.iter().position(|&b| us <= b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, n) in BUCKETS_US.iter().zip(&self.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let le = *bound as f64 / 1e6;
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

/// The text of `GET /metrics`.
pub(crate) fn render(backend: &Backend, counters: &Counters) -> String {
    let mut out = String::new();
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let m = &mut out;
    metric(
        m,
        "walkv_connected_clients",
        "gauge",
        "Client connections open.",
        load(&counters.connected),
    );
    metric(
        m,
        "walkv_connections_total",
        "counter",
        "Client connections accepted.",
        load(&counters.accepted),
    );
    metric(
        m,
        "walkv_commands_total",
        "counter",
        "Commands run.",
        load(&counters.commands),
    );
    let log = match backend.node() {
        Some(node) => node.log_stats(),
        None => backend.store().log().stats(),
    };
    metric(
        m,
        "walkv_wal_appends_total",
        "counter",
        "Records appended to the durable log (the Raft log on a cluster node).",
        log.appends,
    );
    metric(
        m,
        "walkv_wal_bytes_total",
        "counter",
        "Bytes appended to the durable log.",
        log.append_bytes,
    );
    metric(
        m,
        "walkv_wal_fsyncs_total",
        "counter",
        "fsyncs of the durable log.",
        log.syncs,
    );
    metric(
        m,
        "walkv_wal_group_commits_total",
        "counter",
        "Group commits (appends per group commit is the batch size).",
        log.batches,
    );
    let st = backend.store().stats();
    metric(
        m,
        "walkv_store_memtable_bytes",
        "gauge",
        "Bytes in the store's memtable.",
        st.memtable_bytes,
    );
    metric(
        m,
        "walkv_store_tables",
        "gauge",
        "Sorted tables of the store.",
        st.tables,
    );
    metric(
        m,
        "walkv_store_table_bytes",
        "gauge",
        "Bytes in the store's tables.",
        st.table_bytes,
    );
    metric(
        m,
        "walkv_store_checkpoints_total",
        "counter",
        "Memtable flushes to tables.",
        st.checkpoints,
    );
    metric(
        m,
        "walkv_store_compactions_total",
        "counter",
        "Table compactions.",
        st.compactions,
    );
    if let Some(node) = backend.node() {
        let r = node.raft_metrics();
        let index = |id: Option<&wal_raft::LogId>| id.map_or(0, |i| i.index);
        metric(
            m,
            "walkv_raft_term",
            "gauge",
            "The node's current term.",
            r.current_term,
        );
        metric(
            m,
            "walkv_raft_leader",
            "gauge",
            "The leader's id (0: none known).",
            r.current_leader.unwrap_or(0),
        );
        metric(
            m,
            "walkv_raft_is_leader",
            "gauge",
            "1 if this node leads.",
            u8::from(node.is_leader()),
        );
        metric(
            m,
            "walkv_raft_last_log_index",
            "gauge",
            "The last index in this node's log.",
            r.last_log_index.unwrap_or(0),
        );
        metric(
            m,
            "walkv_raft_commit_index",
            "gauge",
            "The last index known committed.",
            index(r.local_committed.as_ref()),
        );
        metric(
            m,
            "walkv_raft_applied_index",
            "gauge",
            "The last index applied to the store.",
            index(r.last_applied.as_ref()),
        );
        metric(
            m,
            "walkv_raft_snapshot_index",
            "gauge",
            "The last index in the newest snapshot.",
            index(r.snapshot.as_ref()),
        );
        metric(
            m,
            "walkv_raft_read_barriers_total",
            "counter",
            "Read indexes confirmed for linearizable reads.",
            node.metrics.reads.get(),
        );
        node.metrics.writes.render(
            m,
            "walkv_raft_write_seconds",
            "Replicated writes, from proposal to applied here.",
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_count_everything() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_secs(60));
        let mut out = String::new();
        h.render(&mut out, "x", "help");
        assert!(out.contains("x_bucket{le=\"0.0001\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.0005\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"10\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count 3\n"), "{out}");
    }
}
