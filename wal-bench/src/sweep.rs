//! Sweeps: how cost grows with work. One parameter of one workload moves
//! over a range (W2's threads, the size of the log W4 replays, the keys K2
//! loads and reads) and each contender runs once per point, interleaved by
//! point. Part of the `--full` profile (or alone with `--sweep`); each
//! sweep prints a table and draws `sweep-<name>.svg`, a curve per
//! contender, and every point goes to `sweeps.json`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::Workload;
use crate::orchestrate::{Profile, run_child};
use crate::workload::{RunResult, RunSpec};

/// One sweep: a workload, the parameter that moves, the points and who runs.
struct Sweep {
    name: &'static str,
    title: &'static str,
    /// The workload run (and timed) at each point.
    timed: Workload,
    /// The workload that writes what `timed` reads, run first in the same
    /// directory (W3 for W4, the K2 load for the gets).
    writes_first: Option<Workload>,
    /// What the points are: `threads`, `log MiB` or `keys`.
    parameter: &'static str,
    points: Vec<u64>,
    contenders: &'static [&'static str],
}

/// One contender at one point.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// The sweep's name.
    pub sweep: &'static str,
    /// The contender.
    pub contender: String,
    /// What moved, and to what.
    pub parameter: &'static str,
    /// Its value at this point.
    pub value: u64,
    /// Operations per second of the timed workload.
    pub ops_per_s: Option<f64>,
    /// Open-to-ready in milliseconds (replays, reopened stores).
    pub open_ms: Option<f64>,
    /// The 99th percentile latency, where each operation was timed.
    pub p99_us: Option<f64>,
    /// The process's peak resident memory, MB.
    pub peak_rss_mb: Option<f64>,
    /// `ok` or `failed: <why>`.
    pub status: String,
}

const MIB: u64 = 1 << 20;

fn sweeps(smoke: bool) -> Vec<Sweep> {
    let (threads, log_mib, keys) = if smoke {
        (vec![1, 4], vec![1, 4], vec![1000, 3000])
    } else {
        (
            vec![1, 4, 16, 64, 256],
            vec![64, 1024, 4096],
            vec![1_000_000, 10_000_000],
        )
    };
    vec![
        Sweep {
            name: "w2-threads",
            title: "W2 durable commits of 128 B records by thread count",
            timed: Workload::W2,
            writes_first: None,
            parameter: "threads",
            points: threads,
            contenders: &["wal/uring", "wal/direct", "naive", "raft-engine"],
        },
        Sweep {
            name: "w4-size",
            title: "W4 cold replay of 4 KiB records by log size",
            timed: Workload::W4Big,
            writes_first: Some(Workload::W3Big),
            parameter: "log MiB",
            points: log_mib,
            contenders: &["wal/uring", "naive", "rusqlite", "fjall"],
        },
        Sweep {
            name: "k2-keys",
            title: "K2 random gets after a reopen by keys loaded",
            timed: Workload::K2Get,
            writes_first: Some(Workload::K2Load),
            parameter: "keys",
            points: keys,
            contenders: &["wal/kv", "raft-engine", "fjall", "redb"],
        },
    ]
}

fn spec(
    profile: &Profile,
    sweep: &Sweep,
    w: Workload,
    who: &str,
    value: u64,
    dir: &Path,
) -> RunSpec {
    let mut spec = profile.spec(w, who, dir.to_path_buf());
    match sweep.parameter {
        "threads" => spec.threads = u32::try_from(value).unwrap_or(u32::MAX),
        "log MiB" => spec.records = value * MIB / w.record_bytes() as u64,
        _ => spec.records = value,
    }
    spec
}

/// Runs every sweep (contenders limited to `names` when given) in `work`;
/// writes the tables to stdout and `sweeps.json` and the plots to `out`.
pub fn run(
    profile: &Profile,
    names: &[String],
    work: &Path,
    out: &Path,
    timeout: f64,
) -> Result<(), String> {
    let mut points = Vec::new();
    for sweep in sweeps(profile.name == "smoke") {
        let who: Vec<&str> = sweep
            .contenders
            .iter()
            .copied()
            .filter(|c| names.is_empty() || names.iter().any(|n| n == c))
            .collect();
        for &value in &sweep.points {
            for &c in &who {
                eprintln!("sweep {} {} = {value}: {c}", sweep.name, sweep.parameter);
                let dir = work.join(format!(
                    "sweep-{}-{value}-{}",
                    sweep.name,
                    c.replace('/', "-")
                ));
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir)
                    .map_err(|e| format!("create {}: {e}", dir.display()))?;
                let mut outcome = Ok(());
                if let Some(first) = sweep.writes_first {
                    outcome =
                        run_child(&spec(profile, &sweep, first, c, value, &dir), timeout).map(drop);
                }
                let result = outcome.and_then(|()| {
                    run_child(&spec(profile, &sweep, sweep.timed, c, value, &dir), timeout)
                });
                let _ = std::fs::remove_dir_all(&dir);
                points.push(point(&sweep, c, value, result));
            }
        }
    }
    print!("{}", tables(&points));
    let json = serde_json::to_string_pretty(&points).map_err(|e| format!("encode: {e}"))?;
    std::fs::create_dir_all(out).map_err(|e| format!("create {}: {e}", out.display()))?;
    std::fs::write(out.join("sweeps.json"), json).map_err(|e| format!("write sweeps.json: {e}"))?;
    plots(out, &points)
}

fn point(sweep: &Sweep, contender: &str, value: u64, result: Result<RunResult, String>) -> Point {
    let mut p = Point {
        sweep: sweep.name,
        contender: contender.to_owned(),
        parameter: sweep.parameter,
        value,
        ops_per_s: None,
        open_ms: None,
        p99_us: None,
        peak_rss_mb: None,
        status: "ok".into(),
    };
    match result {
        Ok(r) => {
            let m = &r.measured;
            p.ops_per_s = (m.seconds > 0.0).then(|| m.ops as f64 / m.seconds);
            p.open_ms = r.open_seconds.map(|s| s * 1e3);
            p.p99_us = m.p99_us;
            p.peak_rss_mb = r.peak_rss_bytes.map(|b| b as f64 / 1e6);
        }
        Err(e) => p.status = format!("failed: {e}"),
    }
    p
}

fn fmt(x: Option<f64>, unit: &str) -> String {
    match x {
        None => "-".into(),
        Some(v) if v >= 1e6 => format!("{:.2}M{unit}", v / 1e6),
        Some(v) if v >= 1e4 => format!("{:.1}k{unit}", v / 1e3),
        Some(v) => format!("{v:.0}{unit}"),
    }
}

/// One table per sweep: a row per contender, a column per point, each
/// cell ops/s and, where measured, open time or peak memory.
fn tables(points: &[Point]) -> String {
    let mut out = String::new();
    for sweep in sweeps(false).iter().map(|s| (s.name, s.title)) {
        let mine: Vec<&Point> = points.iter().filter(|p| p.sweep == sweep.0).collect();
        let Some(first) = mine.first() else { continue };
        let mut values: Vec<u64> = mine.iter().map(|p| p.value).collect();
        values.sort_unstable();
        values.dedup();
        let _ = writeln!(out, "Sweep: {} (ops/s; open ms, peak RSS MB)", sweep.1);
        let _ = write!(out, "  {:<14}", "contender");
        for v in &values {
            let _ = write!(out, " {:>26}", format!("{} {}", first.parameter, v));
        }
        let _ = writeln!(out);
        let mut who: Vec<&str> = Vec::new();
        for p in &mine {
            if !who.contains(&p.contender.as_str()) {
                who.push(&p.contender);
            }
        }
        for c in who {
            let _ = write!(out, "  {c:<14}");
            for v in &values {
                let cell = mine
                    .iter()
                    .find(|p| p.contender == c && p.value == *v)
                    .map_or_else(String::new, |p| {
                        if p.status == "ok" {
                            let mut s = fmt(p.ops_per_s, "");
                            if let Some(ms) = p.open_ms {
                                let _ = write!(s, " {ms:.0}ms");
                            }
                            let _ = write!(s, " {}MB", fmt(p.peak_rss_mb, ""));
                            s
                        } else {
                            "failed".into()
                        }
                    });
                let _ = write!(out, " {cell:>26}");
            }
            let _ = writeln!(out);
        }
        for p in mine.iter().filter(|p| p.status != "ok") {
            let _ = writeln!(out, "  ! {} at {}: {}", p.contender, p.value, p.status);
        }
        let _ = writeln!(out);
    }
    out
}

/// A curve per contender per sweep: ops/s against the parameter, both on
/// log scales (the points grow geometrically).
fn plots(out: &Path, points: &[Point]) -> Result<(), String> {
    use plotters::prelude::*;
    let plot_err = |e: &dyn std::fmt::Display| format!("plot: {e}");
    for sweep in sweeps(false) {
        let mine: Vec<&Point> = points
            .iter()
            .filter(|p| p.sweep == sweep.name && p.ops_per_s.is_some())
            .collect();
        if mine.is_empty() {
            continue;
        }
        let rate = |p: &&Point| p.ops_per_s.unwrap_or(1.0).max(1.0);
        let (xmin, xmax) = mine.iter().fold((u64::MAX, 0), |(lo, hi), p| {
            (lo.min(p.value), hi.max(p.value))
        });
        let ymax = mine.iter().map(rate).fold(1.0, f64::max);
        let ymin = mine.iter().map(rate).fold(f64::MAX, f64::min);
        let path: PathBuf = out.join(format!("sweep-{}.svg", sweep.name));
        let root = SVGBackend::new(&path, (900, 500)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(sweep.title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(70)
            .build_cartesian_2d(
                (xmin.max(1) as f64 * 0.8..xmax.max(1) as f64 * 1.25).log_scale(),
                (ymin * 0.5..ymax * 2.0).log_scale(),
            )
            .map_err(|e| plot_err(&e))?;
        chart
            .configure_mesh()
            .x_desc(sweep.parameter)
            .y_desc("ops/s")
            .draw()
            .map_err(|e| plot_err(&e))?;
        let mut who: Vec<&str> = mine.iter().map(|p| p.contender.as_str()).collect();
        who.sort_unstable();
        who.dedup();
        for (i, c) in who.iter().enumerate() {
            let colour = Palette99::pick(i).to_rgba();
            let line: Vec<(f64, f64)> = mine
                .iter()
                .filter(|p| p.contender == *c)
                .map(|p| (p.value as f64, rate(p)))
                .collect();
            chart
                .draw_series(LineSeries::new(line.clone(), colour.stroke_width(2)))
                .map_err(|e| plot_err(&e))?
                .label(*c)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
            chart
                .draw_series(
                    line.into_iter()
                        .map(|xy| Circle::new(xy, 3, colour.filled())),
                )
                .map_err(|e| plot_err(&e))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| plot_err(&e))?;
        root.present().map_err(|e| plot_err(&e))?;
    }
    Ok(())
}
