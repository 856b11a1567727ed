//! The files of a run: `results.json`, `results.csv`, and SVG plots of
//! throughput per workload and of W1 and W2 latencies.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::machine::Facts;
use crate::report::Row;
use crate::tables::{fmt_opt, fmt_rate};

/// Writes `results.json`, `results.csv` and the plots into `out`.
pub fn write_files(out: &Path, facts: &Facts, rows: &[Row]) -> Result<(), String> {
    let io = |what: &'static str| move |e: std::io::Error| format!("write {what}: {e}");
    #[derive(Serialize)]
    struct Document<'a> {
        machine: &'a Facts,
        rows: &'a [Row],
    }
    let json = serde_json::to_string_pretty(&Document {
        machine: facts,
        rows,
    })
    .map_err(|e| format!("encode json: {e}"))?;
    std::fs::write(out.join("results.json"), json).map_err(io("results.json"))?;
    std::fs::write(out.join("results.csv"), csv(rows)).map_err(io("results.csv"))?;
    plots(out, rows)
}

fn csv(rows: &[Row]) -> String {
    let mut out = String::from(
        "workload,contender,kind,config,threads,ops,seconds,ops_per_s,mb_per_s,p50_us,p99_us,\
         p999_us,ratio_to_best_peer,ratio_to_limit,rounds,ops_per_s_min,ops_per_s_max,\
         verified_records,open_ms,cache,first_replay_ops_per_s,major_faults,conflict_rate,\
         syncs_per_op,peak_rss_mb,status,warning\n",
    );
    let num = |x: Option<f64>| x.map_or_else(String::new, |v| format!("{v}"));
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    for r in rows {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            r.workload,
            r.contender,
            r.kind,
            quote(&r.config),
            r.threads,
            r.ops.map_or_else(String::new, |v| v.to_string()),
            num(r.seconds),
            num(r.ops_per_s),
            num(r.mb_per_s),
            num(r.p50_us),
            num(r.p99_us),
            num(r.p999_us),
            num(r.ratio_to_best_peer),
            num(r.ratio_to_limit),
            r.rounds,
            num(r.ops_per_s_min),
            num(r.ops_per_s_max),
            r.verified_records
                .map_or_else(String::new, |v| v.to_string()),
            num(r.open_ms),
            quote(r.cache.as_deref().unwrap_or_default()),
            num(r.first_replay_ops_per_s),
            r.major_faults.map_or_else(String::new, |v| v.to_string()),
            num(r.conflict_rate),
            num(r.syncs_per_op),
            num(r.peak_rss_mb),
            quote(&r.status),
            quote(r.warning.as_deref().unwrap_or_default())
        );
    }
    out
}

/// SVG plots: throughput per contender for each workload, and latency
/// percentiles for W1 and W2.
fn plots(out: &Path, rows: &[Row]) -> Result<(), String> {
    use plotters::prelude::*;

    let workloads: Vec<String> = {
        let mut w: Vec<String> = rows
            .iter()
            .filter(|r| r.kind != "limit")
            .map(|r| r.workload.clone())
            .collect();
        w.dedup();
        w
    };
    let colour = |kind: &str| match kind {
        "ours" => RGBColor(0x1f, 0x77, 0xb4),
        "baseline" => RGBColor(0x99, 0x99, 0x99),
        _ => RGBColor(0xff, 0x7f, 0x0e),
    };
    let plot_err = |e: &dyn std::fmt::Display| format!("plot: {e}");
    for w in &workloads {
        let bars: Vec<&Row> = rows
            .iter()
            .filter(|r| &r.workload == w && r.ops_per_s.is_some())
            .collect();
        if bars.is_empty() {
            continue;
        }
        let max = bars
            .iter()
            .filter_map(|r| r.ops_per_s)
            .fold(0.0, f64::max)
            .max(1.0);
        let path = out.join(format!("throughput-{w}.svg"));
        let height = 80 + 34 * u32::try_from(bars.len()).unwrap_or(32);
        let root = SVGBackend::new(&path, (900, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_err(&e))?;
        let n = bars.len() as f64;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("{w}: operations per second (median)"),
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(30)
            .build_cartesian_2d(0f64..max * 1.25, 0f64..n)
            .map_err(|e| plot_err(&e))?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .disable_y_axis()
            .x_labels(6)
            .x_label_formatter(&|v| fmt_rate(Some(*v)))
            .draw()
            .map_err(|e| plot_err(&e))?;
        for (i, r) in bars.iter().enumerate() {
            let y = n - 1.0 - i as f64;
            let v = r.ops_per_s.unwrap_or(0.0);
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(0.0, y + 0.15), (v, y + 0.85)],
                    colour(r.kind).filled(),
                )))
                .map_err(|e| plot_err(&e))?;
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("{}  {}", r.contender, fmt_rate(Some(v))),
                    (v + max * 0.01, y + 0.65),
                    ("sans-serif", 13).into_font(),
                )))
                .map_err(|e| plot_err(&e))?;
        }
        root.present().map_err(|e| plot_err(&e))?;
    }
    for w in ["w1", "w2"] {
        let bars: Vec<&Row> = rows
            .iter()
            .filter(|r| r.workload == w && r.p50_us.is_some())
            .collect();
        if bars.is_empty() {
            continue;
        }
        let max = bars.iter().filter_map(|r| r.p999_us).fold(1.0, f64::max);
        let path = out.join(format!("latency-{w}.svg"));
        let height = 80 + 60 * u32::try_from(bars.len()).unwrap_or(32);
        let root = SVGBackend::new(&path, (900, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_err(&e))?;
        let n = bars.len() as f64;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("{w}: commit latency p50 / p99 / p99.9 (us, log scale)"),
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(30)
            .build_cartesian_2d((1f64..max * 4.0).log_scale(), 0f64..n)
            .map_err(|e| plot_err(&e))?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .disable_y_axis()
            .draw()
            .map_err(|e| plot_err(&e))?;
        let shades = [
            RGBColor(0x2c, 0xa0, 0x2c),
            RGBColor(0xff, 0x7f, 0x0e),
            RGBColor(0xd6, 0x27, 0x28),
        ];
        for (i, r) in bars.iter().enumerate() {
            let y = n - 1.0 - i as f64;
            let values = [r.p50_us, r.p99_us, r.p999_us];
            for (k, v) in values.iter().enumerate() {
                let v = v.unwrap_or(1.0).max(1.0);
                let top = y + 0.1 + 0.25 * k as f64;
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(1.0, top), (v, top + 0.22)],
                        shades[k].filled(),
                    )))
                    .map_err(|e| plot_err(&e))?;
            }
            chart
                .draw_series(std::iter::once(Text::new(
                    format!(
                        "{}  {} / {} / {}",
                        r.contender,
                        fmt_opt(r.p50_us, 0),
                        fmt_opt(r.p99_us, 0),
                        fmt_opt(r.p999_us, 0)
                    ),
                    (r.p999_us.unwrap_or(1.0).max(1.0) * 1.1, y + 0.5),
                    ("sans-serif", 13).into_font(),
                )))
                .map_err(|e| plot_err(&e))?;
        }
        root.present().map_err(|e| plot_err(&e))?;
    }
    Ok(())
}
