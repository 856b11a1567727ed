//! The tables as text: the machine, the limits, then one table per
//! workload with its notes; `report.rs` makes the rows.

use std::fmt::Write as _;

use crate::Workload;
use crate::limit;
use crate::machine::Facts;
use crate::report::Row;

/// The headline of a workload.
pub fn title(w: Workload) -> &'static str {
    match w {
        Workload::W1 => "W1 durable commits, 1 thread, 128 B records",
        Workload::W2 => "W2 durable commits, many threads, 128 B records",
        Workload::W5 => "W5 durable commits, 1 thread, many in flight, 128 B records",
        Workload::W3Big => "W3 bulk ingest, 4 KiB records, one sync at the end",
        Workload::W3Small => "W3 bulk ingest, 128 B records, one sync at the end",
        Workload::W4Big => "W4 replay of the W3 4 KiB log, cold cache",
        Workload::W4Small => "W4 replay of the W3 128 B log, cold cache",
        Workload::K1 => "K1 durable puts, 1 thread, 16 B keys, 100 B values",
        Workload::K1Many => "K1 durable puts, many threads, 16 B keys, 100 B values",
        Workload::K2Load => "K2 load: keys in durable batches of 1000",
        Workload::K2Get => "K2 gets: every loaded key once, random order, 1 thread, after a reopen",
        Workload::K3 => "K3 durable transactions, 1 thread, read 2 keys and write both",
        Workload::K3Many => "K3 durable transactions, many threads, read 2 keys and write both",
        Workload::R1 => "R1 durable puts through a 3-node replicated store, 1 client (wal/kv: K1)",
        Workload::R1Many => {
            "R1 durable puts through a 3-node replicated store, many clients (wal/kv: K1)"
        }
    }
}

/// Under a W4 table: the first replay's rates (code cold too, W4's figure
/// before 2026-12-06), and any major faults in the timed replays, which
/// should have found the code loaded.
fn cold_replay_notes(out: &mut String, rows: &[Row], workload: &str) {
    let rows: Vec<&Row> = rows
        .iter()
        .filter(|r| r.workload == workload && r.status == "ok")
        .collect();
    if rows.is_empty() {
        return;
    }
    let firsts: Vec<String> = rows
        .iter()
        .map(|r| match r.first_replay_ops_per_s {
            Some(rate) => format!("{} {}", r.contender, fmt_rate(Some(rate))),
            None => format!("{} (none: its one replay is the timed one)", r.contender),
        })
        .collect();
    let _ = writeln!(out, "  first replay, code cold too: {}", firsts.join(", "));
    let counted: Vec<(&str, u64)> = rows
        .iter()
        .filter_map(|r| Some((r.contender.as_str(), r.major_faults?)))
        .collect();
    let faulted: Vec<String> = counted
        .iter()
        .filter(|&&(_, n)| n > 0)
        .map(|(c, n)| format!("{c} {n}"))
        .collect();
    let faults = match (counted.is_empty(), faulted.is_empty()) {
        (true, _) => "not counted".to_owned(),
        (false, true) => "none".to_owned(),
        (false, false) => faulted.join(", "),
    };
    let _ = writeln!(out, "  major page faults in the timed replays: {faults}");
}

pub(crate) fn fmt_opt(x: Option<f64>, digits: usize) -> String {
    x.map_or_else(|| "-".into(), |v| format!("{v:.digits$}"))
}

pub(crate) fn fmt_rate(x: Option<f64>) -> String {
    match x {
        None => "-".into(),
        Some(v) if v >= 1e6 => format!("{:.2}M", v / 1e6),
        Some(v) if v >= 1e4 => format!("{:.1}k", v / 1e3),
        Some(v) => format!("{v:.0}"),
    }
}

/// The tables, as text: limits, then one per workload, the winner marked.
pub fn tables(facts: &Facts, workloads: &[Workload], rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n{}\n", facts.render());
    let limits: Vec<&Row> = rows.iter().filter(|r| r.kind == "limit").collect();
    if !limits.is_empty() {
        let _ = writeln!(out, "Disk limit");
        let _ = writeln!(
            out,
            "  {:<28} {:>9} {:>17} {:>4} {:>9} {:>8} {:>8} {:>8}  what",
            "probe", "ops/s", "spread", "runs", "MB/s", "p50 us", "p99 us", "p999 us"
        );
        for r in limits {
            let _ = writeln!(
                out,
                "  {:<28} {:>9} {:>17} {:>4} {:>9} {:>8} {:>8} {:>8}  {}",
                r.contender,
                fmt_rate(r.ops_per_s),
                format!(
                    "{}-{}",
                    fmt_rate(r.ops_per_s_min),
                    fmt_rate(r.ops_per_s_max)
                ),
                r.rounds,
                fmt_opt(r.mb_per_s, 1),
                fmt_opt(r.p50_us, 0),
                fmt_opt(r.p99_us, 0),
                fmt_opt(r.p999_us, 0),
                if r.status == "ok" {
                    &r.config
                } else {
                    &r.status
                }
            );
        }
        let _ = writeln!(out);
    }
    for &w in workloads {
        let _ = writeln!(out, "{}", title(w));
        let _ = writeln!(
            out,
            "  {:<2}{:<14} {:>4} {:>9} {:>17} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>8} {:>7}",
            "",
            "contender",
            "thr",
            "ops/s",
            "spread",
            "MB/s",
            "p50 us",
            "p99 us",
            "p999 us",
            "x peer",
            "x limit",
            "open ms",
            "RSS MB"
        );
        let in_w: Vec<&Row> = rows.iter().filter(|r| r.workload == w.name()).collect();
        let best = in_w
            .iter()
            .filter_map(|r| r.ops_per_s)
            .fold(f64::MIN, f64::max);
        for r in in_w {
            if r.status != "ok" && r.ops_per_s.is_none() {
                let _ = writeln!(out, "  {:<2}{:<14} {}", "", r.contender, r.status);
                continue;
            }
            let mark = if r.ops_per_s == Some(best) { "* " } else { "" };
            let spread = format!(
                "{}-{}",
                fmt_rate(r.ops_per_s_min),
                fmt_rate(r.ops_per_s_max)
            );
            let _ = writeln!(
                out,
                "  {:<2}{:<14} {:>4} {:>9} {:>17} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>8} {:>7}{}",
                mark,
                r.contender,
                r.threads,
                fmt_rate(r.ops_per_s),
                spread,
                fmt_opt(r.mb_per_s, 1),
                fmt_opt(r.p50_us, 0),
                fmt_opt(r.p99_us, 0),
                fmt_opt(r.p999_us, 0),
                fmt_opt(r.ratio_to_best_peer, 2),
                fmt_opt(r.ratio_to_limit, 2),
                fmt_opt(r.open_ms, 1),
                fmt_opt(r.peak_rss_mb, 0),
                match (r.status.as_str(), r.conflict_rate, r.syncs_per_op) {
                    ("ok", Some(rate), _) => format!("  conflicts {:.2}%", rate * 100.0),
                    ("ok", None, Some(syncs)) => format!("  fsyncs/op {syncs:.2}"),
                    ("ok", None, None) => String::new(),
                    (status, _, _) => format!("  ({status})"),
                }
            );
            if let Some(warning) = &r.warning {
                let _ = writeln!(out, "  {:<2}{:<14} ! {warning}", "", r.contender);
            }
        }
        let mut caches: Vec<&str> = rows
            .iter()
            .filter(|r| r.workload == w.name())
            .filter_map(|r| r.cache.as_deref())
            .collect();
        caches.sort_unstable();
        caches.dedup();
        if !caches.is_empty() {
            let _ = writeln!(
                out,
                "  page cache before each replay: {}",
                caches.join("; ")
            );
        }
        if matches!(w, Workload::W4Big | Workload::W4Small) {
            cold_replay_notes(&mut out, rows, w.name());
        }
        let _ = writeln!(out);
    }
    let warnings: Vec<String> = rows
        .iter()
        .filter_map(|r| {
            let w = r.warning.as_ref()?;
            Some(if r.kind == "limit" {
                format!("  {}: {w}", r.contender)
            } else {
                format!("  {} {}: {w}", r.workload, r.contender)
            })
        })
        .collect();
    if !warnings.is_empty() {
        let _ = writeln!(
            out,
            "Warnings ({}): figures to read with care\n{}\n",
            warnings.len(),
            warnings.join("\n")
        );
    }
    let _ = writeln!(
        out,
        "* marks the highest ops/s. x peer: over the best peer (ours and the naive baseline \
         are not peers). x limit: W1/K1/K3/R1 over the better of limit/{} and limit/{} ops/s \
         (one durable write at a time; flagged if a row passes the probes' best run by 5%); W2 and the K1/K3 \
         many-thread rows over limit/{} (threads parked and woken with no I/O, the CPU's \
         limit for blocking commits); W5 and R1 many-client over the durable write, which \
         group commit passes by design (records per durable write); W3 and the K2 load (keys and values) over the better 1 MiB durable write \
         MB/s; W4 over the better cold read MB/s; K2 gets have none. The limits are probed \
         before, between and after the rounds; a probe's spread is over those runs, flagged \
         if it moved more than 2x. Figures are medians over rounds; spread is the \
         lowest-highest round. RSS MB: the contender's process's peak resident memory, the \
         highest over the rounds.",
        limit::SYNC_4K_WRITTEN,
        limit::DIRECT_4K_QD1,
        limit::HANDOFF
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrate::{Outcomes, Profile};
    use crate::report::rows;
    use crate::report::tests::result;

    /// The first replay's rates and the major faults print under the W4
    /// tables, and only there.
    #[test]
    fn the_first_replay_and_the_faults_print_under_w4_only() {
        let name = "naive".to_owned();
        let mut outcomes = Outcomes::new();
        outcomes.insert((Workload::W1, name.clone()), vec![result(9_000)]);
        let mut replayed = result(1_000_000).unwrap();
        replayed.cold = Some(crate::replay::ColdReplay {
            cache: "emptied (test)".into(),
            first_ops_per_s: Some(900_000.0),
            major_faults: Some(0),
        });
        outcomes.insert((Workload::W4Small, name.clone()), vec![Ok(replayed)]);
        let workloads = [Workload::W1, Workload::W4Small];
        let profile = Profile::pick_named("smoke");
        let rows = rows(&workloads, &[name], &outcomes, &[], &profile);
        let dir = std::env::temp_dir();
        let text = tables(&crate::machine::facts(&dir, &profile), &workloads, &rows);
        assert_eq!(
            text.matches("first replay, code cold too").count(),
            1,
            "{text}"
        );
        let w4 = &text[text.find(title(Workload::W4Small)).unwrap()..];
        assert!(
            w4.contains("first replay, code cold too: naive 900.0k"),
            "{w4}"
        );
        assert!(
            w4.contains("major page faults in the timed replays: none"),
            "{w4}"
        );
    }
}
