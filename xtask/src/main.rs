//! Project automation, run as `cargo xtask <command>`. Holds no product logic:
//! every command runs cargo (or a tool) with the right arguments.
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

const HELP: &str = "\
cargo xtask <command> [options]

Commands:
  ci                 Everything CI checks, in order: cargo fmt --check, cargo clippy
                     (all targets, warnings are errors), the whole test suite (unit,
                     integration, doc tests) and the loom models.
  bench [--full] [--rocksdb] [ARGS...]
                     The main benchmark (wal-bench, release build): the disk's limit,
                     then every workload for our configurations, the peers and a naive
                     baseline in interleaved rounds. Quick profile by default (a few
                     minutes); --full for the long one. Other arguments go to
                     wal-bench (`--workloads w1,w2`, `--contenders wal/uring,fjall`,
                     `--dir PATH` for the disk under test; see `-- --help`).
                     --rocksdb adds RocksDB to K1/K2 (builds its C++ sources, which
                     takes 10+ minutes the first time, and needs libclang).
                     Results: target/wal-bench/ (results.json, results.csv, SVG plots).
  bench --server [--full]
                     The network servers instead: redis-benchmark SET/GET at 1 and 64
                     clients against walkv (one node; three nodes) and redis-server
                     (appendfsync always), and durable puts against a three-node etcd.
                     Installs nothing: apt-get install redis-tools redis-server
                     etcd-server. Results: target/wal-bench/server.json.
  bench --archive [--full]
                     Archiving instead: the archiver's MB/s into a local archive beside a
                     plain copy of the same segments, and a restore beside a cold replay of
                     the same log (256 MiB; --full 1 GiB). Results: target/wal-bench/archive.json.
  bench --micro [--full]
                     The criterion micro-benchmarks instead (format codec, raw I/O,
                     engine commit paths).
  fuzz [TARGET] [--seconds N]
                     Runs a cargo-fuzz target (default: all, 60 s each). Installs
                     cargo-fuzz if missing. Targets: decode_frame, scan_segment.
  torture [--crashes N] [--kills N] [--seed S]
                     The long crash suites, in release mode: simulated power loss
                     (default 1,000,000 crashes; CI runs 10,000) and kill -9 of a
                     writing child process (default 2,000 cycles per backend; CI
                     runs 200); then the store's, a tenth as many crashes and a
                     quarter as many kills, and the bank of transactions crashed as
                     many times as the kills; then a Raft cluster's nodes crashed a
                     tenth as many times as the kills (CI runs 12). --seed reruns one
                     seed of the simulations.
  loom               Runs the loom models of the group-commit hand-off.
  help               This text.
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        print!("{HELP}");
        return ExitCode::SUCCESS;
    };
    let result = match command.as_str() {
        "ci" => ci(rest),
        "bench" => bench(rest),
        "fuzz" => fuzz(rest),
        "torture" => torture(rest),
        "loom" => loom(rest),
        "help" | "--help" | "-h" => {
            print!("{HELP}");
            Ok(())
        }
        other => Err(format!("unknown command `{other}`\n\n{HELP}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn workspace_root() -> PathBuf {
    // xtask lives one level below the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
    cmd.current_dir(workspace_root());
    cmd
}

fn run(step: &str, mut cmd: Command) -> Result<(), String> {
    eprintln!("xtask: {step}");
    let status = cmd
        .status()
        .map_err(|e| format!("{step}: could not start: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{step}: failed ({status})"))
    }
}

/// Test counts summed over every `test result:` line cargo prints.
#[derive(Debug, Default)]
struct Totals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl Totals {
    /// Adds the counts of a libtest summary line such as
    /// `test result: ok. 5 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; ...`.
    fn add_line(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result:") else {
            return;
        };
        for part in rest.split([';', '.']) {
            let mut words = part.split_whitespace();
            let (Some(n), Some(what)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }
}

/// Runs a test command, echoing its output and adding up its test counts.
fn run_tests(step: &str, mut cmd: Command, totals: &mut Totals) -> Result<(), String> {
    eprintln!("xtask: {step}");
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{step}: could not start: {e}"))?;
    if let Some(stdout) = child.stdout.take() {
        let mut out = std::io::stdout().lock();
        for line in BufReader::new(stdout).lines() {
            let line = line.map_err(|e| format!("{step}: reading output: {e}"))?;
            totals.add_line(&line);
            // A closed stdout (say, piped into `head`) must not stop the tests.
            let _ = writeln!(out, "{line}");
        }
    }
    let status = child.wait().map_err(|e| format!("{step}: waiting: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{step}: failed ({status})"))
    }
}

fn reject_extra(command: &str, rest: &[String]) -> Result<(), String> {
    match rest.first() {
        None => Ok(()),
        Some(arg) => Err(format!("`{command}` takes no argument `{arg}`")),
    }
}

fn ci(rest: &[String]) -> Result<(), String> {
    reject_extra("ci", rest)?;
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--check"]);
    run("cargo fmt --check", fmt)?;
    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    run("cargo clippy", clippy)?;
    let mut totals = Totals::default();
    let mut test = cargo();
    test.args(["test", "--workspace", "--all-targets"]);
    let result = run_tests("cargo test (unit, integration)", test, &mut totals).and_then(|()| {
        let mut doc = cargo();
        doc.args(["test", "--workspace", "--doc"]);
        run_tests("cargo test --doc", doc, &mut totals)
    });
    let result = result.and_then(|()| run_loom(&mut totals));
    // One closing line over every suite, so a run that executed no test is
    // visible as such.
    println!(
        "tests: {} passed, {} failed, {} skipped",
        totals.passed, totals.failed, totals.ignored
    );
    if result.is_ok() && totals.passed == 0 {
        return Err("no test ran".to_owned());
    }
    result
}

/// The criterion micro-benchmarks: (package, bench target).
const MICRO_BENCHES: [(&str, &str); 3] = [
    ("wal-format", "codec"),
    ("wal-io", "raw"),
    ("wal-engine", "commit"),
];

fn bench(rest: &[String]) -> Result<(), String> {
    if rest.iter().any(|a| a == "--server") {
        return bench_server(rest);
    }
    if rest.iter().any(|a| a == "--archive") {
        let mut cmd = cargo();
        cmd.args([
            "run",
            "--release",
            "--package",
            "wal-bench",
            "--",
            "archive",
        ]);
        cmd.args(
            rest.iter()
                .filter(|a| a.as_str() != "--archive" && a.as_str() != "--"),
        );
        return run("wal-bench archive", cmd);
    }
    let micro = rest.iter().any(|a| a == "--micro");
    if !micro {
        let mut cmd = cargo();
        cmd.args(["run", "--release", "--package", "wal-bench"]);
        if rest.iter().any(|a| a == "--rocksdb") {
            cmd.args(["--features", "rocksdb"]);
        }
        cmd.arg("--");
        cmd.args(
            rest.iter()
                .filter(|a| a.as_str() != "--" && a.as_str() != "--rocksdb"),
        );
        return run("wal-bench", cmd);
    }
    let mut full = false;
    for arg in rest {
        match arg.as_str() {
            "--full" => full = true,
            "--micro" => {}
            other => return Err(format!("`bench --micro` does not know `{other}`")),
        }
    }
    for (package, target) in MICRO_BENCHES {
        let mut cmd = cargo();
        cmd.args(["bench", "--package", package, "--bench", target, "--"]);
        if !full {
            cmd.arg("--quick");
        }
        run(&format!("{package} micro-benchmarks"), cmd)?;
    }
    Ok(())
}

/// `bench --server`: a release `walkv`, then `wal-bench server` on it.
fn bench_server(rest: &[String]) -> Result<(), String> {
    let mut build = cargo();
    build.args([
        "build",
        "--release",
        "--package",
        "wal-server",
        "--bin",
        "walkv",
    ]);
    run("walkv (release)", build)?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from);
    let mut cmd = cargo();
    cmd.args(["run", "--release", "--package", "wal-bench", "--", "server"]);
    cmd.arg("--walkv").arg(target.join("release").join("walkv"));
    cmd.args(
        rest.iter()
            .filter(|a| a.as_str() != "--server" && a.as_str() != "--"),
    );
    run("wal-bench server", cmd)
}

fn torture(rest: &[String]) -> Result<(), String> {
    let mut crashes = "1000000".to_owned();
    let mut kills = "2000".to_owned();
    let mut seed = None;
    let mut args = rest.iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> Result<String, String> {
            let v = args.next().ok_or(format!("{name} needs a number"))?;
            v.parse::<u64>()
                .map_err(|_| format!("{name}: `{v}` is not a whole number"))?;
            Ok(v.clone())
        };
        match arg.as_str() {
            "--crashes" => crashes = value("--crashes")?,
            "--kills" => kills = value("--kills")?,
            "--seed" => seed = Some(value("--seed")?),
            other => return Err(format!("`torture` does not know `{other}`")),
        }
    }
    let sim_seed = seed.as_ref().map(|s| ("WAL_TORTURE_SEED", s.as_str()));
    let kv_seed = seed.as_ref().map(|s| ("WAL_KV_SEED", s.as_str()));
    release_test(
        "wal-engine",
        "crash_recovery",
        [("WAL_TORTURE_CRASHES", crashes.as_str())]
            .into_iter()
            .chain(sim_seed),
        &format!("{crashes} simulated power losses"),
    )?;
    release_test(
        "wal-engine",
        "kill_recovery",
        [("WAL_KILL_CYCLES", kills.as_str())],
        &format!("{kills} kill -9 cycles per backend"),
    )?;
    // The store: its crash cycles replay tables and logs, so a tenth as many
    // simulated crashes and a quarter as many kills keep the run a similar length.
    let kv_crashes = (crashes.parse::<u64>().unwrap_or(0) / 10)
        .max(1)
        .to_string();
    let kv_kills = (kills.parse::<u64>().unwrap_or(0) / 4).max(1).to_string();
    release_test(
        "wal-kv",
        "crash_recovery",
        [("WAL_KV_CRASHES", kv_crashes.as_str())]
            .into_iter()
            .chain(kv_seed),
        &format!("{kv_crashes} simulated power losses of the store"),
    )?;
    release_test(
        "wal-kv",
        "kill_recovery",
        [("WAL_KV_KILL_CYCLES", kv_kills.as_str())],
        &format!("{kv_kills} kill -9 cycles of the store per backend"),
    )?;
    // Each of its reopens checks every transfer acknowledged so far, so its
    // time grows with the square of its crashes: as many as the kills.
    release_test(
        "wal-kv",
        "bank_survives_crashes",
        [("WAL_KV_BANK_CRASHES", kills.as_str())],
        &format!("{kills} crashes of the bank of serializable transfers"),
    )?;
    // A Raft cluster's crash events take about half a second each.
    let raft_crashes = (kills.parse::<u64>().unwrap_or(0) / 10).max(1).to_string();
    let raft_seed = seed.as_ref().map(|s| ("WAL_RAFT_SEED", s.as_str()));
    release_test(
        "wal-raft",
        "crashes_lose_no_acknowledged_write",
        [("WAL_RAFT_CRASHES", raft_crashes.as_str())]
            .into_iter()
            .chain(raft_seed),
        &format!("{raft_crashes} crash events of a three-node Raft cluster"),
    )
}

/// Runs one integration test target of `package` in release mode with `env`.
fn release_test<'a>(
    package: &str,
    test: &str,
    env: impl IntoIterator<Item = (&'a str, &'a str)>,
    what: &str,
) -> Result<(), String> {
    let mut cmd = cargo();
    cmd.args(["test", "--release", "--package", package, "--test", test]);
    cmd.args(["--", "--nocapture"]);
    cmd.envs(env);
    run(what, cmd)
}

const FUZZ_TARGETS: [&str; 2] = ["decode_frame", "scan_segment"];

fn fuzz(rest: &[String]) -> Result<(), String> {
    let mut seconds = 60u64;
    let mut targets = Vec::new();
    let mut args = rest.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => {
                let value = args.next().ok_or("--seconds needs a number")?;
                seconds = value
                    .parse()
                    .map_err(|_| format!("--seconds: `{value}` is not a whole number"))?;
            }
            t if FUZZ_TARGETS.contains(&t) => targets.push(t),
            other => {
                return Err(format!(
                    "unknown fuzz target or option `{other}` (targets: {})",
                    FUZZ_TARGETS.join(", ")
                ));
            }
        }
    }
    if targets.is_empty() {
        targets.extend(FUZZ_TARGETS);
    }
    let installed = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        let mut install = cargo();
        install.args(["install", "--locked", "cargo-fuzz"]);
        run("cargo install cargo-fuzz", install)?;
    }
    for target in targets {
        let mut cmd = cargo();
        // libFuzzer needs nightly-only sanitizer flags; RUSTC_BOOTSTRAP lets the
        // stable toolchain accept them without installing a second toolchain.
        cmd.env("RUSTC_BOOTSTRAP", "1").args([
            "fuzz",
            "run",
            target,
            "--",
            &format!("-max_total_time={seconds}"),
        ]);
        run(&format!("fuzz {target} for {seconds} s"), cmd)?;
    }
    Ok(())
}

fn loom(rest: &[String]) -> Result<(), String> {
    reject_extra("loom", rest)?;
    let mut totals = Totals::default();
    run_loom(&mut totals)
}

/// The loom models: the engine's real synchronisation, built with
/// `--cfg loom` into a target directory of its own (so the normal build's
/// cache stays valid), in release mode because models run many executions.
fn run_loom(totals: &mut Totals) -> Result<(), String> {
    let mut cmd = cargo();
    let flags = std::env::var("RUSTFLAGS").unwrap_or_default();
    cmd.env("RUSTFLAGS", format!("{flags} --cfg loom").trim())
        .env(
            "CARGO_TARGET_DIR",
            workspace_root().join("target").join("loom"),
        )
        .args([
            "test",
            "--release",
            "--package",
            "wal-engine",
            "--test",
            "loom",
        ]);
    run_tests("loom models (wal-engine group commit)", cmd, totals)
}

#[cfg(test)]
mod tests {
    use super::Totals;

    #[test]
    fn test_counts_add_up_over_summary_lines() {
        let mut t = Totals::default();
        t.add_line("test result: ok. 5 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.10s");
        t.add_line("running 5 tests");
        t.add_line("test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 2.00s");
        assert_eq!((t.passed, t.failed, t.ignored), (8, 2, 1));
    }
}
