//! The server benchmark (`wal-bench server`, `cargo xtask bench --server`):
//! `redis-benchmark` SET and GET at 1 and 64 clients against `walkv` (one
//! node; three nodes) and `redis-server` in its durable mode, and durable
//! puts at 1 and 64 clients against a three-node `etcd` beside `walkv`'s
//! three nodes, in interleaved rounds. Installs nothing: a server that is
//! not installed gets a row saying so.

mod load;
mod services;

use std::path::{Path, PathBuf};

use clap::Args;
use serde::Serialize;

use load::Figures;
use services::Service;

/// Flags of a server benchmark run.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// The `walkv` binary to measure (a release build).
    #[arg(long)]
    pub walkv: PathBuf,
    /// The long profile: 5 rounds, three times the requests.
    #[arg(long)]
    pub full: bool,
    /// A tiny profile that only checks that everything runs.
    #[arg(long, conflicts_with = "full")]
    pub smoke: bool,
    /// Where the servers keep their data (emptied before and after).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Contenders to run (comma-separated: walkv/1, walkv/3, redis,
    /// etcd/3; default: all).
    #[arg(long, value_delimiter = ',')]
    pub contenders: Vec<String>,
    /// Where server.json goes.
    #[arg(long, default_value_os_t = crate::default_out())]
    pub out: PathBuf,
}

/// One measured case: a load at a client count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    /// `redis-benchmark -t set|get`.
    Bench(&'static str, u32),
    /// Our put generator.
    Puts(u32),
}

impl Case {
    fn title(self) -> String {
        match self {
            Case::Bench(t, c) => format!(
                "redis-benchmark -t {t} -c {c} -P 1 -d 100{}",
                if t == "set" { " (durable writes)" } else { "" }
            ),
            Case::Puts(c) => format!("durable puts, {c} clients, 16 B keys, 100 B values"),
        }
    }

    /// The contender the others are compared with.
    fn baseline(self) -> &'static str {
        match self {
            Case::Bench(..) => "redis",
            Case::Puts(_) => "etcd/3",
        }
    }
}

/// Sizes of a profile.
struct Profile {
    rounds: usize,
    scale: u64,
    put_seconds: f64,
}

/// One row: a contender's median figures for one case.
#[derive(Debug, Clone, Serialize)]
pub struct ServerRow {
    pub case: String,
    pub clients: u32,
    pub contender: String,
    pub config: String,
    pub rounds: usize,
    /// Operations of the median round.
    pub ops: Option<u64>,
    pub ops_per_s: Option<f64>,
    pub ops_per_s_min: Option<f64>,
    pub ops_per_s_max: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// ops/s over the baseline's (Redis for redis-benchmark, etcd for puts).
    pub ratio_to_baseline: Option<f64>,
    /// `ok`, `n/a: <why>` or `failed: <why>`.
    pub status: String,
}

/// Runs the benchmark and prints its tables.
///
/// # Errors
/// `redis-benchmark` is missing, or a directory cannot be made.
pub fn run(args: &ServerArgs) -> Result<(), String> {
    if !services::installed("redis-benchmark") {
        return Err(
            "redis-benchmark is not installed (Debian: apt-get install redis-tools)".into(),
        );
    }
    let profile = match (args.full, args.smoke) {
        (true, _) => Profile {
            rounds: 5,
            scale: 3,
            put_seconds: 10.0,
        },
        (_, true) => Profile {
            rounds: 1,
            scale: 0,
            put_seconds: 0.5,
        },
        _ => Profile {
            rounds: 3,
            scale: 1,
            put_seconds: 3.0,
        },
    };
    let work = args.dir.clone().unwrap_or_else(|| args.out.join("server"));
    const NAMES: [&str; 4] = ["walkv/1", "walkv/3", "redis", "etcd/3"];
    if let Some(bad) = args
        .contenders
        .iter()
        .find(|c| !NAMES.contains(&c.as_str()))
    {
        return Err(format!(
            "no contender `{bad}`; there are {}",
            NAMES.join(", ")
        ));
    }
    let wanted =
        |name: &str| args.contenders.is_empty() || args.contenders.iter().any(|c| c == name);
    let (services, missing) = start_all(&args.walkv, &work, &wanted);
    let cases = [
        Case::Bench("set", 1),
        Case::Bench("set", 64),
        Case::Bench("get", 1),
        Case::Bench("get", 64),
        Case::Puts(1),
        Case::Puts(64),
    ];
    let mut results: Vec<(Case, &'static str, Result<Figures, String>)> = Vec::new();
    for round in 0..profile.rounds {
        for case in cases {
            let mut who: Vec<&Service> = services
                .iter()
                .filter(|s| match case {
                    Case::Bench(..) => s.protocol == services::Protocol::Resp,
                    Case::Puts(_) => s.name.ends_with("/3"),
                })
                .collect();
            // Alternate who goes first, so that neither always runs on a
            // disk the other just left busy.
            let first = round % who.len().max(1);
            who.rotate_left(first);
            for s in who {
                eprintln!("round {}: {} {}", round + 1, s.name, case.title());
                let figures = match case {
                    Case::Bench(test, clients) => {
                        let requests = requests(test, clients, profile.scale);
                        load::redis_benchmark(&s.addr, test, clients, requests)
                    }
                    Case::Puts(clients) => load::puts(s, clients, profile.put_seconds),
                };
                if let Err(e) = &figures {
                    eprintln!("  {}: {e}", s.name);
                }
                results.push((case, s.name, figures));
            }
        }
    }
    let mut rows = Vec::new();
    for case in cases {
        rows.extend(rows_for(case, &services, &missing, &results));
    }
    drop(services);
    let _ = std::fs::remove_dir_all(&work);
    println!("{}", tables(&cases, &rows));
    write_json(&args.out, &rows)
}

/// Requests per redis-benchmark run: a few seconds for each server.
fn requests(test: &str, clients: u32, scale: u64) -> u64 {
    let base = match (test, clients) {
        ("set", 1) => 3_000,
        ("set", _) => 30_000,
        (_, 1) => 20_000,
        _ => 100_000,
    };
    (base * scale).max(200)
}

/// Starts every wanted server that is installed; the others, with why.
fn start_all(
    walkv: &Path,
    work: &Path,
    wanted: &dyn Fn(&str) -> bool,
) -> (Vec<Service>, Vec<(&'static str, String)>) {
    type Start<'a> = Box<dyn Fn() -> Result<Service, String> + 'a>;
    let not_installed = |package: &str| -> Result<Service, String> {
        Err(format!(
            "n/a: not installed (Debian: apt-get install {package})"
        ))
    };
    let starts: [(&'static str, Start<'_>); 4] = [
        (
            "walkv/1",
            Box::new(|| services::walkv_single(walkv, &work.join("walkv1"))),
        ),
        (
            "walkv/3",
            Box::new(|| services::walkv_cluster(walkv, &work.join("walkv3"))),
        ),
        (
            "redis",
            Box::new(|| match services::installed("redis-server") {
                true => services::redis_always(&work.join("redis")),
                false => not_installed("redis-server"),
            }),
        ),
        (
            "etcd/3",
            Box::new(|| match services::installed("etcd") {
                true => services::etcd_cluster(&work.join("etcd")),
                false => not_installed("etcd-server"),
            }),
        ),
    ];
    let mut services = Vec::new();
    let mut missing = Vec::new();
    for (name, start) in starts.iter().filter(|(n, _)| wanted(n)) {
        match start() {
            Ok(s) => services.push(s),
            Err(e) => {
                eprintln!("{name}: {e}");
                missing.push((*name, e));
            }
        }
    }
    (services, missing)
}

fn median_by_rate(mut runs: Vec<Figures>) -> Option<Figures> {
    runs.sort_by(|a, b| a.ops_per_s.total_cmp(&b.ops_per_s));
    runs.get(runs.len() / 2).copied()
}

fn rows_for(
    case: Case,
    services: &[Service],
    missing: &[(&'static str, String)],
    results: &[(Case, &'static str, Result<Figures, String>)],
) -> Vec<ServerRow> {
    let (name, clients) = match case {
        Case::Bench(t, c) => (t.to_owned(), c),
        Case::Puts(c) => ("puts".to_owned(), c),
    };
    let ours = |s: &str| -> Vec<&Result<Figures, String>> {
        results
            .iter()
            .filter(|(c, n, _)| *c == case && *n == s)
            .map(|(_, _, r)| r)
            .collect()
    };
    let median_of =
        |s: &str| median_by_rate(ours(s).into_iter().filter_map(|r| r.clone().ok()).collect());
    let baseline = median_of(case.baseline());
    let mut rows = Vec::new();
    let names: Vec<(&str, &str)> = services
        .iter()
        .map(|s| (s.name, s.config))
        .chain(missing.iter().map(|(n, _)| (*n, "")))
        .filter(|(n, _)| match case {
            Case::Bench(..) => *n != "etcd/3",
            Case::Puts(_) => n.ends_with("/3"),
        })
        .collect();
    for (contender, config) in names {
        let runs: Vec<Figures> = ours(contender)
            .into_iter()
            .filter_map(|r| r.clone().ok())
            .collect();
        let failure = ours(contender).into_iter().find_map(|r| r.clone().err());
        let median = median_of(contender);
        let status = if let Some((_, why)) = missing.iter().find(|(n, _)| *n == contender) {
            if why.starts_with("n/a") {
                why.clone()
            } else {
                format!("failed: {why}")
            }
        } else if let Some(e) = failure {
            format!("failed: {e}")
        } else {
            "ok".into()
        };
        rows.push(ServerRow {
            case: name.clone(),
            clients,
            contender: contender.to_owned(),
            config: config.to_owned(),
            rounds: runs.len(),
            ops: median.map(|m| m.ops),
            ops_per_s: median.map(|m| m.ops_per_s),
            ops_per_s_min: runs.iter().map(|r| r.ops_per_s).reduce(f64::min),
            ops_per_s_max: runs.iter().map(|r| r.ops_per_s).reduce(f64::max),
            p50_ms: median.map(|m| m.p50_ms),
            p99_ms: median.map(|m| m.p99_ms),
            ratio_to_baseline: median.zip(baseline).map(|(m, b)| m.ops_per_s / b.ops_per_s),
            status,
        });
    }
    rows
}

fn tables(cases: &[Case], rows: &[ServerRow]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for case in cases {
        let (name, clients) = match case {
            Case::Bench(t, c) => (*t, *c),
            Case::Puts(c) => ("puts", *c),
        };
        let _ = writeln!(out, "\n{}", case.title());
        let _ = writeln!(
            out,
            "{:<9} {:>10} {:>21} {:>8} {:>8} {:>9}  status",
            "contender",
            "ops/s",
            "min-max",
            "p50 ms",
            "p99 ms",
            format!("x {}", case.baseline())
        );
        for r in rows
            .iter()
            .filter(|r| r.case == name && r.clients == clients)
        {
            let f = |v: Option<f64>, p: usize| v.map_or("-".into(), |v| format!("{v:.p$}"));
            let spread = match (r.ops_per_s_min, r.ops_per_s_max) {
                (Some(a), Some(b)) => format!("{a:.0}-{b:.0}"),
                _ => "-".into(),
            };
            let _ = writeln!(
                out,
                "{:<9} {:>10} {:>21} {:>8} {:>8} {:>9}  {}",
                r.contender,
                f(r.ops_per_s, 0),
                spread,
                f(r.p50_ms, 3),
                f(r.p99_ms, 3),
                f(r.ratio_to_baseline, 2),
                r.status
            );
        }
    }
    out
}

fn write_json(out: &Path, rows: &[ServerRow]) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let path = out.join("server.json");
    let text = serde_json::to_string_pretty(rows).map_err(|e| e.to_string())?;
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
