//! Turns run outcomes into rows (median of the rounds, with their spread,
//! against the limits); `tables.rs` prints them, `output.rs` writes them
//! to files.

use serde::Serialize;

use crate::Workload;
use crate::limit::{self, Probe};
use crate::orchestrate::{Outcomes, Profile};
use crate::workload::{Measured, RunResult};

/// One row of the results: a contender's median figures for one workload.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// `limit`, or the workload's name.
    pub workload: String,
    /// `wal/<config>`, a peer's crate name, `naive`, or `limit/<probe>`.
    pub contender: String,
    /// `ours`, `peer`, `baseline` or `limit`.
    pub kind: &'static str,
    /// How the contender was configured.
    pub config: String,
    /// Writer threads.
    pub threads: u32,
    /// Operations of the median round.
    pub ops: Option<u64>,
    /// Seconds of the median round.
    pub seconds: Option<f64>,
    /// Operations per second (median over rounds).
    pub ops_per_s: Option<f64>,
    /// Payload megabytes (10^6 bytes) per second of the median round.
    pub mb_per_s: Option<f64>,
    /// Latency percentiles of the median round, in microseconds.
    pub p50_us: Option<f64>,
    /// 99th percentile.
    pub p99_us: Option<f64>,
    /// 99.9th percentile.
    pub p999_us: Option<f64>,
    /// ops/s over the best peer's in this workload.
    pub ratio_to_best_peer: Option<f64>,
    /// Throughput over the disk's limit for this workload (see docs).
    pub ratio_to_limit: Option<f64>,
    /// Rounds that produced figures.
    pub rounds: usize,
    /// Lowest and highest ops/s over the rounds.
    pub ops_per_s_min: Option<f64>,
    /// Highest.
    pub ops_per_s_max: Option<f64>,
    /// Records read back and checked (median round).
    pub verified_records: Option<u64>,
    /// Open-to-ready time of a replay, in milliseconds.
    pub open_ms: Option<f64>,
    /// How the page cache was emptied before a replay.
    pub cache: Option<String>,
    /// W4: records per second of the first replay after the drop, with
    /// the code cold too (median over rounds; see `replay::ColdReplay`).
    #[serde(default)]
    pub first_replay_ops_per_s: Option<f64>,
    /// W4: the most major page faults of a timed replay over the rounds.
    #[serde(default)]
    pub major_faults: Option<u64>,
    /// Transaction attempts refused for a conflict, over all attempts
    /// (K3, median round).
    pub conflict_rate: Option<f64>,
    /// fsyncs per operation (K1, R1: the leader's), median round.
    #[serde(default)]
    pub syncs_per_op: Option<f64>,
    /// The highest peak resident memory over the rounds, in MB (10^6
    /// bytes): each round is a process of its own, so this is the
    /// contender's own, from open to the last check.
    #[serde(default)]
    pub peak_rss_mb: Option<f64>,
    /// `ok`, `n/a: <why>` or `failed: <why>`.
    pub status: String,
    /// Why a figure is not to be trusted as it stands: a row above a limit
    /// that should bound it (the probe did not find the limit), or a
    /// probe that moved more than 2x between its runs.
    #[serde(default)]
    pub warning: Option<String>,
}

/// A row above the best run of its limit's probes by more than this is
/// flagged: the probe did not measure what bounds it.
const ABOVE_LIMIT_TOLERANCE: f64 = 1.05;
/// A probe whose highest run is more than this times its lowest is flagged.
const PROBE_MOVED_MAX: f64 = 2.0;

/// How a workload compares with the disk's limit.
struct LimitOf {
    /// The probes; the best of them is the limit.
    probes: &'static [&'static str],
    /// In operations (true) or bytes (false) per second.
    in_ops: bool,
    /// Whether the limit bounds the workload, so that a row above it means
    /// the probe is wrong. A group commit's ratio is records per durable
    /// write instead, and is meant to pass 1.
    bounds: bool,
}

/// The limit each workload is measured against.
fn limit_of(w: Workload) -> LimitOf {
    // One durable write at a time, by either way of making one.
    const ONE_DURABLE_WRITE: &[&str] = &[limit::SYNC_4K_WRITTEN, limit::DIRECT_4K_QD1];
    let (probes, in_ops, bounds): (&'static [&'static str], bool, bool) = match w {
        Workload::W1 | Workload::K1 | Workload::K3 | Workload::R1 => {
            (ONE_DURABLE_WRITE, true, true)
        }
        // Each commit parks its thread until a sync covers it.
        Workload::W2 | Workload::K1Many | Workload::K3Many => (&[limit::HANDOFF], true, true),
        Workload::W5 | Workload::R1Many => (ONE_DURABLE_WRITE, true, false),
        Workload::W3Big | Workload::W3Small | Workload::K2Load => (
            &[limit::SYNC_1M_BUFFERED, limit::SYNC_1M_DIRECT],
            false,
            true,
        ),
        Workload::W4Big | Workload::W4Small => {
            (&[limit::READ_BUFFERED, limit::READ_DIRECT], false, true)
        }
        // Point reads of a store whose data fits the page cache: no disk
        // figure bounds them.
        Workload::K2Get => (&[], true, false),
    };
    LimitOf {
        probes,
        in_ops,
        bounds,
    }
}

fn per_s(n: u64, seconds: f64) -> Option<f64> {
    (seconds > 0.0).then(|| n as f64 / seconds)
}

fn blank(workload: &str, contender: &str, kind: &'static str, config: &str) -> Row {
    Row {
        workload: workload.to_owned(),
        contender: contender.to_owned(),
        kind,
        config: config.to_owned(),
        threads: 1,
        ops: None,
        seconds: None,
        ops_per_s: None,
        mb_per_s: None,
        p50_us: None,
        p99_us: None,
        p999_us: None,
        ratio_to_best_peer: None,
        ratio_to_limit: None,
        rounds: 0,
        ops_per_s_min: None,
        ops_per_s_max: None,
        verified_records: None,
        open_ms: None,
        cache: None,
        first_replay_ops_per_s: None,
        major_faults: None,
        conflict_rate: None,
        syncs_per_op: None,
        peak_rss_mb: None,
        status: "ok".into(),
        warning: None,
    }
}

impl Row {
    /// Takes the figures of one measurement.
    fn set_figures(&mut self, m: &Measured) {
        self.ops = Some(m.ops);
        self.seconds = Some(m.seconds);
        self.ops_per_s = per_s(m.ops, m.seconds);
        self.mb_per_s = per_s(m.bytes, m.seconds).map(|b| b / 1e6);
        self.p50_us = m.p50_us;
        self.p99_us = m.p99_us;
        self.p999_us = m.p999_us;
        self.conflict_rate = m.conflicts.map(|c| c as f64 / (c + m.ops).max(1) as f64);
        self.syncs_per_op = m.syncs.map(|s| s as f64 / m.ops.max(1) as f64);
    }
}

/// One row per probe from every set of probes (one set before the first
/// round, one after each): the median run's figures, the lowest and
/// highest as the spread, flagged when they are more than 2x apart.
fn limit_rows(sets: &[Vec<Probe>]) -> Vec<Row> {
    let Some(first) = sets.first() else {
        return Vec::new();
    };
    let mut rows = Vec::new();
    for probe in first {
        let mut row = blank(
            "limit",
            &format!("limit/{}", probe.name),
            "limit",
            &probe.config,
        );
        let runs = sets
            .iter()
            .flatten()
            .filter(|p| p.name == probe.name)
            .map(|p| &p.outcome);
        let mut good: Vec<&Measured> = runs.clone().filter_map(|o| o.as_ref().ok()).collect();
        if let Some(Err(e)) = runs.clone().find(|o| o.is_err()) {
            row.status = format!("failed: {e}");
        }
        let rate = |m: &Measured| per_s(m.ops, m.seconds).unwrap_or(0.0);
        good.sort_by(|a, b| rate(a).total_cmp(&rate(b)));
        if let (Some(low), Some(high)) = (good.first(), good.last()) {
            row.set_figures(good[good.len() / 2]);
            row.rounds = good.len();
            row.ops_per_s_min = Some(rate(low));
            row.ops_per_s_max = Some(rate(high));
            if rate(high) > PROBE_MOVED_MAX * rate(low) {
                row.warning = Some(format!(
                    "moved {:.1}x during the run: every ratio to it is suspect",
                    rate(high) / rate(low).max(f64::MIN_POSITIVE)
                ));
            }
        }
        rows.push(row);
    }
    rows
}

/// Builds every row: limits first, then each workload's contenders.
pub fn rows(
    workloads: &[Workload],
    names: &[String],
    outcomes: &Outcomes,
    limit_sets: &[Vec<Probe>],
    profile: &Profile,
) -> Vec<Row> {
    let mut rows = limit_rows(limit_sets);
    for &w in workloads {
        let start = rows.len();
        for c in crate::contenders::entrants(w, names) {
            let kind = if c.is_ours() {
                "ours"
            } else if c.is_baseline() {
                "baseline"
            } else {
                "peer"
            };
            let mut row = blank(w.name(), c.name(), kind, c.config());
            row.threads = if w.is_many_threads() {
                profile.threads
            } else {
                1
            };
            if let Some(reason) = c.not_applicable(w) {
                row.status = format!("n/a: {reason}");
                rows.push(row);
                continue;
            }
            let runs = outcomes.get(&(w, c.name().to_owned()));
            let mut good: Vec<&RunResult> = runs
                .into_iter()
                .flatten()
                .filter_map(|o| o.as_ref().ok())
                .collect();
            if let Some(Err(e)) = runs.into_iter().flatten().find(|o| o.is_err()) {
                row.status = format!("failed: {e}");
            }
            if good.is_empty() {
                if row.status == "ok" {
                    row.status = "failed: no run".into();
                }
                rows.push(row);
                continue;
            }
            let rate = |r: &RunResult| per_s(r.measured.ops, r.measured.seconds).unwrap_or(0.0);
            good.sort_by(|a, b| rate(a).total_cmp(&rate(b)));
            let median = good[good.len() / 2];
            row.set_figures(&median.measured);
            row.rounds = good.len();
            row.ops_per_s_min = good.first().map(|r| rate(r));
            row.ops_per_s_max = good.last().map(|r| rate(r));
            row.verified_records = Some(median.verified_records);
            row.open_ms = median.open_seconds.map(|s| s * 1e3);
            row.cache = median.cold.as_ref().map(|c| c.cache.clone());
            let mut firsts: Vec<f64> = good
                .iter()
                .filter_map(|r| r.cold.as_ref()?.first_ops_per_s)
                .collect();
            firsts.sort_by(f64::total_cmp);
            row.first_replay_ops_per_s = firsts.get(firsts.len() / 2).copied();
            row.major_faults = good
                .iter()
                .filter_map(|r| r.cold.as_ref()?.major_faults)
                .max();
            row.peak_rss_mb = good
                .iter()
                .filter_map(|r| r.peak_rss_bytes)
                .max()
                .map(|b| b as f64 / 1e6);
            rows.push(row);
        }
        // Ratios within the workload.
        let best_peer = rows[start..]
            .iter()
            .filter(|r| r.kind == "peer")
            .filter_map(|r| r.ops_per_s)
            .reduce(f64::max);
        let of = limit_of(w);
        let (limit, limit_high) = limit_figures(&rows[..start], &of);
        for row in &mut rows[start..] {
            if let (Some(x), Some(best)) = (row.ops_per_s, best_peer) {
                row.ratio_to_best_peer = Some(x / best);
            }
            let mine = if of.in_ops {
                row.ops_per_s
            } else {
                row.mb_per_s
            };
            if let (Some(x), Some(limit)) = (mine, limit) {
                row.ratio_to_limit = Some(x / limit);
                if of.bounds && x > ABOVE_LIMIT_TOLERANCE * limit_high.unwrap_or(limit) {
                    row.warning = Some(format!(
                        "{:.2}x its limit: the probe did not find what bounds this workload",
                        x / limit
                    ));
                }
            }
        }
    }
    rows
}

/// The limit a workload is read against, from the limit rows: the best of
/// its probes' medians, and the best run any of them had. The ratio is over
/// the first; a row is flagged only past the second, since a row at the
/// limit passes a median about half the time.
fn limit_figures(limit_rows: &[Row], of: &LimitOf) -> (Option<f64>, Option<f64>) {
    let probes = || {
        limit_rows.iter().filter(|r| {
            of.probes
                .iter()
                .any(|p| r.contender == format!("limit/{p}"))
        })
    };
    let median = probes()
        .filter_map(|r| if of.in_ops { r.ops_per_s } else { r.mb_per_s })
        .reduce(f64::max);
    let high = probes()
        .filter_map(|r| {
            let high = r.ops_per_s_max?;
            if of.in_ops {
                Some(high)
            } else {
                Some(r.mb_per_s? * high / r.ops_per_s?)
            }
        })
        .reduce(f64::max);
    (median, high)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::Path;

    use super::*;
    use crate::orchestrate::Profile;

    fn probe(name: &'static str, ops: u64) -> Probe {
        Probe {
            name,
            config: String::new(),
            outcome: Ok(Measured {
                ops,
                bytes: ops * 4096,
                seconds: 1.0,
                ..Measured::default()
            }),
        }
    }

    /// A run of `ops` operations of 128 B in one second.
    pub(crate) fn result(ops: u64) -> Result<RunResult, String> {
        Ok(RunResult {
            measured: Measured {
                ops,
                bytes: ops * 128,
                seconds: 1.0,
                ..Measured::default()
            },
            verified_records: ops,
            open_seconds: None,
            cold: None,
            peak_rss_bytes: None,
        })
    }

    #[test]
    fn a_probe_is_the_median_of_its_runs_and_flagged_when_it_moved_2x() {
        let sets = vec![
            vec![
                probe(limit::SYNC_4K_WRITTEN, 9000),
                probe(limit::DIRECT_4K_QD1, 10_000),
            ],
            vec![
                probe(limit::SYNC_4K_WRITTEN, 300),
                probe(limit::DIRECT_4K_QD1, 10_500),
            ],
            vec![
                probe(limit::SYNC_4K_WRITTEN, 8000),
                probe(limit::DIRECT_4K_QD1, 9_800),
            ],
        ];
        let rows = limit_rows(&sets);
        assert_eq!(rows.len(), 2);
        let sync = &rows[0];
        assert_eq!((sync.ops_per_s, sync.rounds), (Some(8000.0), 3));
        assert_eq!(
            (sync.ops_per_s_min, sync.ops_per_s_max),
            (Some(300.0), Some(9000.0))
        );
        assert!(sync.warning.as_deref().is_some_and(|w| w.contains("moved")));
        assert_eq!(rows[1].ops_per_s, Some(10_000.0));
        assert_eq!(rows[1].warning, None, "a steady probe is not flagged");
    }

    /// A row between a probe's median and its best run is read against the
    /// median but not flagged: at the limit, it passes a median half the time.
    #[test]
    fn a_row_within_the_probes_spread_is_not_flagged() {
        let sets: Vec<Vec<Probe>> = [9000, 10_000, 11_000]
            .into_iter()
            .map(|ops| vec![probe(limit::SYNC_4K_WRITTEN, ops)])
            .collect();
        let name = "naive".to_owned();
        let mut outcomes = Outcomes::new();
        outcomes.insert((Workload::W1, name.clone()), vec![result(11_300)]);
        let profile = Profile::pick_named("smoke");
        let within = rows(
            &[Workload::W1],
            std::slice::from_ref(&name),
            &outcomes,
            &sets,
            &profile,
        );
        let w1 = within.iter().find(|r| r.workload == "w1").unwrap();
        assert_eq!(w1.ratio_to_limit, Some(1.13));
        assert_eq!(w1.warning, None);
        let mut outcomes = Outcomes::new();
        outcomes.insert((Workload::W1, name.clone()), vec![result(11_600)]);
        let past = rows(&[Workload::W1], &[name], &outcomes, &sets, &profile);
        let w1 = past.iter().find(|r| r.workload == "w1").unwrap();
        assert!(
            w1.warning
                .as_deref()
                .is_some_and(|w| w.contains("1.16x its limit"))
        );
    }

    #[test]
    fn a_row_above_a_limit_that_bounds_it_is_flagged_and_group_commit_is_not() {
        let sets = vec![vec![
            probe(limit::SYNC_4K_WRITTEN, 9000),
            probe(limit::DIRECT_4K_QD1, 10_000),
            probe(limit::HANDOFF, 80_000),
        ]];
        let name = "naive".to_owned();
        let mut outcomes = Outcomes::new();
        outcomes.insert((Workload::W1, name.clone()), vec![result(11_000)]);
        outcomes.insert((Workload::W2, name.clone()), vec![result(100_000)]);
        let ours = "wal/uring".to_owned();
        outcomes.insert((Workload::W5, ours.clone()), vec![result(100_000)]);
        let profile = Profile::pick_named("smoke");
        let rows = rows(
            &[Workload::W1, Workload::W2, Workload::W5],
            &[name, ours],
            &outcomes,
            &sets,
            &profile,
        );
        let row = |w: &str| {
            rows.iter()
                .find(|r| r.workload == w && r.ops_per_s.is_some())
                .unwrap()
        };
        let w1 = row("w1");
        assert_eq!(
            w1.ratio_to_limit,
            Some(1.1),
            "over the better of the two probes"
        );
        let flagged = |r: &Row, ratio: &str| {
            r.warning
                .as_deref()
                .is_some_and(|w| w.contains(&format!("{ratio}x its limit")))
        };
        assert!(flagged(w1, "1.10"));
        // Many threads' commits are over the hand-off limit, which bounds
        // them: passing it means the probe is wrong.
        let w2 = row("w2");
        assert_eq!(w2.ratio_to_limit, Some(1.25));
        assert!(flagged(w2, "1.25"));
        let w5 = row("w5");
        assert_eq!(w5.ratio_to_limit, Some(10.0));
        assert_eq!(w5.warning, None, "group commit passes the limit by design");
        let text = crate::tables::tables(
            &crate::machine::facts(Path::new("."), &profile),
            &[Workload::W1],
            &rows,
        );
        assert!(text.contains("Warnings (2)"), "{text}");
    }
}
