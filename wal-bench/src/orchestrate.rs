//! The parent process: probes the disk, plans the interleaved rounds, runs
//! each as a child process, and hands the outcomes to the report.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::contenders;
use crate::limit::Probe;
use crate::workload::{RunResult, RunSpec};
use crate::{RESULT_MARKER, Workload, limit, machine, report};

/// Flags of a benchmark run.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The long profile: 7 rounds of 5 s, 1 GiB ingests.
    #[arg(long, conflicts_with = "smoke")]
    pub full: bool,
    /// A tiny profile that only checks that everything runs (used by tests).
    #[arg(long)]
    pub smoke: bool,
    /// Only the sweeps (W2 by threads, W4 by log size, K2 by keys), which
    /// `--full` runs after its tables; sizes as `--full`'s, or tiny with
    /// `--smoke`.
    #[arg(long)]
    pub sweep: bool,
    /// Workloads to run (comma-separated; default: all).
    #[arg(long, value_delimiter = ',')]
    pub workloads: Vec<Workload>,
    /// Contenders to run (comma-separated names, see `list`; default: all).
    #[arg(long, value_delimiter = ',')]
    pub contenders: Vec<String>,
    /// Rounds per workload (overrides the profile).
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Seconds per timed run (overrides the profile).
    #[arg(long)]
    pub seconds: Option<f64>,
    /// Skip the disk limit probes.
    #[arg(long)]
    pub no_limit: bool,
    /// Directory the logs are written in: the disk under test
    /// (default: `<out>/work`). Emptied before and after.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Where results.json, results.csv and the plots go.
    #[arg(long, default_value_os_t = crate::default_out())]
    pub out: PathBuf,
    /// Fail (exit 1) when any run fails.
    #[arg(long)]
    pub strict: bool,
    /// Seconds a single run may take before it is killed.
    #[arg(long, default_value_t = 600.0)]
    pub timeout: f64,
}

/// Sizes and durations of a profile.
#[derive(Debug, Clone)]
pub struct Profile {
    /// The profile's name.
    pub name: &'static str,
    /// Rounds of each workload.
    pub rounds: usize,
    /// Rounds of the K2 load and gets, each long enough to be steady.
    pub kv_rounds: usize,
    /// Seconds of each timed run (W1, W2, W5).
    pub seconds: f64,
    /// Writer threads of W2.
    pub threads: u32,
    /// Commits in flight in W5.
    pub depth: usize,
    /// Records of the 4 KiB ingest.
    pub big_records: u64,
    /// Records of the 128 B ingest.
    pub small_records: u64,
    /// Seconds per limit probe.
    pub limit_seconds: f64,
    /// Size of the files the limit probes write and read.
    pub limit_bytes: u64,
    /// Keys loaded and read back in K2.
    pub kv_keys: u64,
}

impl Profile {
    /// The named profile with no overrides (for tests).
    #[cfg(test)]
    pub fn pick_named(name: &str) -> Profile {
        let mut args = RunArgs {
            full: name == "full",
            smoke: name == "smoke",
            sweep: false,
            workloads: Vec::new(),
            contenders: Vec::new(),
            rounds: None,
            seconds: None,
            no_limit: false,
            dir: None,
            out: PathBuf::new(),
            strict: false,
            timeout: 600.0,
        };
        args.full &= !args.smoke;
        Profile::pick(&args)
    }

    fn pick(args: &RunArgs) -> Profile {
        let mut profile = if args.full {
            Profile {
                name: "full",
                rounds: 7,
                kv_rounds: 3,
                seconds: 5.0,
                threads: 64,
                depth: 64,
                big_records: 1 << 18,
                small_records: 1 << 22,
                limit_seconds: 5.0,
                limit_bytes: 1 << 30,
                kv_keys: 1_000_000,
            }
        } else if args.smoke {
            Profile {
                name: "smoke",
                rounds: 1,
                kv_rounds: 1,
                seconds: 0.2,
                threads: 4,
                depth: 8,
                big_records: 64,
                small_records: 1000,
                limit_seconds: 0.1,
                limit_bytes: 4 << 20,
                kv_keys: 3000,
            }
        } else {
            Profile {
                name: "quick",
                rounds: 3,
                // As many rounds as the rest: one round of K2 moved from
                // 1.93x to 0.89x of the best peer between two runs.
                kv_rounds: 3,
                seconds: 1.0,
                threads: 64,
                depth: 64,
                big_records: 1 << 14,
                small_records: 1 << 18,
                limit_seconds: 1.0,
                limit_bytes: 64 << 20,
                kv_keys: 1_000_000,
            }
        };
        if let Some(rounds) = args.rounds {
            profile.rounds = rounds.max(1);
            profile.kv_rounds = rounds.max(1);
        }
        if let Some(seconds) = args.seconds {
            profile.seconds = seconds;
        }
        profile
    }

    /// The spec of one run (the directory filled in by the caller).
    pub(crate) fn spec(&self, workload: Workload, contender: &str, dir: PathBuf) -> RunSpec {
        RunSpec {
            workload,
            contender: contender.to_owned(),
            dir,
            seconds: self.seconds,
            threads: if workload.is_many_threads() {
                self.threads
            } else {
                1
            },
            records: match workload {
                Workload::W3Big | Workload::W4Big => self.big_records,
                Workload::W3Small | Workload::W4Small => self.small_records,
                Workload::K2Load | Workload::K2Get => self.kv_keys,
                _ => 0,
            },
            record_bytes: workload.record_bytes(),
            depth: self.depth,
        }
    }
}

/// The outcomes of every run of one (workload, contender).
pub type Outcomes = BTreeMap<(Workload, String), Vec<Result<RunResult, String>>>;

/// Runs the benchmark.
pub fn run(args: &RunArgs) -> Result<(), String> {
    let profile = Profile::pick(args);
    contenders::check_names(&args.contenders)?;
    let names = &args.contenders;
    let workloads: Vec<Workload> = if args.workloads.is_empty() {
        Workload::ALL.to_vec()
    } else {
        Workload::ALL
            .into_iter()
            .filter(|w| args.workloads.contains(w))
            .collect()
    };
    let work = args.dir.clone().unwrap_or_else(|| args.out.join("work"));
    reset_dir(&work)?;
    if args.sweep {
        let result = crate::sweep::run(&profile, names, &work, &args.out, args.timeout);
        let _ = std::fs::remove_dir_all(&work);
        return result;
    }
    let mut facts = machine::facts(&work, &profile);

    // The limits are probed before the first round, between rounds and
    // after the last: a disk that drifts during the run shows as a spread,
    // and a probe that moved more than 2x is flagged in the report.
    let mut limit_sets: Vec<Vec<Probe>> = Vec::new();
    let probe_limits = |sets: &mut Vec<Vec<Probe>>| -> Result<(), String> {
        if args.no_limit {
            return Ok(());
        }
        let dir = work.join("limit");
        reset_dir(&dir)?;
        sets.push(limit::probe_all(
            &dir,
            profile.limit_seconds,
            profile.limit_bytes,
            profile.threads,
        ));
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    };
    if !args.no_limit {
        eprintln!(
            "probing the disk's limits ({} s each; again between rounds)...",
            profile.limit_seconds
        );
    }
    probe_limits(&mut limit_sets)?;

    // A replay needs the log its ingest wrote: selecting either runs both,
    // and the table shows what was asked for.
    let mut runnable: Vec<Workload> = workloads.clone();
    for w in &workloads {
        if let Some(partner) = w.partner()
            && !runnable.contains(&partner)
        {
            runnable.push(partner);
        }
    }
    runnable.sort_by_key(|w| Workload::ALL.iter().position(|x| x == w));

    let mut plan = Vec::new();
    for round in 0..profile.rounds {
        for &w in &runnable {
            if w.reads_partner() {
                continue; // runs right after the run that wrote its data
            }
            if w == Workload::K2Load && round >= profile.kv_rounds {
                continue;
            }
            for c in contenders::entrants(w, names) {
                if c.not_applicable(w).is_none() {
                    plan.push((round, w, c));
                }
            }
        }
    }
    let runs_total: usize = plan
        .iter()
        .map(|(_, w, _)| if w.partner().is_some() { 2 } else { 1 })
        .sum();
    let bar = progress(runs_total as u64);
    let started = Instant::now();
    let mut outcomes = Outcomes::new();
    let mut last_round = 0;
    for (round, workload, contender) in plan {
        if round != last_round {
            last_round = round;
            bar.set_message(format!("round {round}: probing the disk's limits"));
            probe_limits(&mut limit_sets)?;
        }
        let dir = work.join(format!(
            "r{round}-{}-{}",
            workload.name(),
            contender.name().replace('/', "-")
        ));
        reset_dir(&dir)?;
        bar.set_message(format!(
            "round {} {} {}",
            round + 1,
            workload.name(),
            contender.name()
        ));
        let spec = profile.spec(workload, contender.name(), dir.clone());
        let outcome = run_child(&spec, args.timeout);
        bar.inc(1);
        let ingested = outcome.is_ok();
        outcomes
            .entry((workload, contender.name().to_owned()))
            .or_default()
            .push(outcome);
        if let Some(replay) = workload.partner() {
            let outcome = if ingested {
                bar.set_message(format!(
                    "round {} {} {}",
                    round + 1,
                    replay.name(),
                    contender.name()
                ));
                run_child(
                    &profile.spec(replay, contender.name(), dir.clone()),
                    args.timeout,
                )
            } else {
                Err("its ingest failed".to_owned())
            };
            bar.inc(1);
            outcomes
                .entry((replay, contender.name().to_owned()))
                .or_default()
                .push(outcome);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    if runs_total > 0 {
        bar.set_message("probing the disk's limits after the last round");
        probe_limits(&mut limit_sets)?;
    }
    bar.finish_and_clear();
    let _ = std::fs::remove_dir_all(&work);
    facts.load_average_end = machine::load_average();

    let rows = report::rows(&workloads, names, &outcomes, &limit_sets, &profile);
    print!("{}", crate::tables::tables(&facts, &workloads, &rows));
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("create {}: {e}", args.out.display()))?;
    crate::output::write_files(&args.out, &facts, &rows)?;
    eprintln!(
        "wal-bench: {} runs in {:.0} s; results in {}",
        runs_total,
        started.elapsed().as_secs_f64(),
        args.out.display()
    );
    if args.full {
        reset_dir(&work)?;
        let swept = crate::sweep::run(&profile, names, &work, &args.out, args.timeout);
        let _ = std::fs::remove_dir_all(&work);
        swept?;
    }
    let failed: Vec<String> = rows
        .iter()
        .filter(|r| r.status.starts_with("failed"))
        .map(|r| format!("{} {}: {}", r.workload, r.contender, r.status))
        .collect();
    if args.strict && !failed.is_empty() {
        return Err(format!(
            "{} rows failed:\n  {}",
            failed.len(),
            failed.join("\n  ")
        ));
    }
    Ok(())
}

fn reset_dir(dir: &Path) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))
}

fn progress(len: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Runs one spec in a child process of this binary, killed after `timeout`.
pub(crate) fn run_child(spec: &RunSpec, timeout: f64) -> Result<RunResult, String> {
    let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
    let json = serde_json::to_string(spec).map_err(|e| format!("encode spec: {e}"))?;
    let mut child = Command::new(exe)
        .arg("child")
        .arg(json)
        .env(contenders::WALRUS_DATA_DIR, &spec.dir)
        .env("WALRUS_QUIET", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn: {e}"))?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let mut bytes = Vec::new();
                let _ = pipe.read_to_end(&mut bytes);
                text = String::from_utf8_lossy(&bytes).into_owned();
            }
            text
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + Duration::from_secs_f64(timeout);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!("killed after {timeout} s"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => break Err(format!("wait: {e}")),
        }
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    let status = status?;
    let result = stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(RESULT_MARKER));
    match result {
        Some(json) if status.success() => {
            serde_json::from_str(json).map_err(|e| format!("bad result from child: {e}"))
        }
        _ => {
            let last = stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no message")
                .trim_start_matches("wal-bench: ");
            Err(format!("{status}: {last}"))
        }
    }
}
