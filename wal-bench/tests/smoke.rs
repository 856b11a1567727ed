//! Runs the whole benchmark at a tiny size: every workload, every contender.
//! Checks the shape of `results.json` and that every contender read back
//! what it claims to have written (a contender that writes nothing cannot
//! look fast).

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::Value;

const FIELDS: [&str; 18] = [
    "workload",
    "contender",
    "config",
    "threads",
    "ops",
    "seconds",
    "ops_per_s",
    "mb_per_s",
    "p50_us",
    "p99_us",
    "p999_us",
    "ratio_to_best_peer",
    "ratio_to_limit",
    "status",
    "verified_records",
    "conflict_rate",
    "syncs_per_op",
    "peak_rss_mb",
];

/// Runs the benchmark with `args` at the smoke size into a temporary
/// directory; fails unless it succeeds. Returns the directory (kept alive
/// by the caller), the output directory and what it printed.
fn run_smoke(args: &[&str]) -> (tempfile::TempDir, std::path::PathBuf, String) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let output = Command::new(env!("CARGO_BIN_EXE_wal-bench"))
        .args(args)
        .args(["--smoke", "--out"])
        .arg(&out)
        .arg("--dir")
        .arg(tmp.path().join("work"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    (tmp, out, stdout)
}

#[test]
fn every_workload_and_contender_runs_and_reads_back_its_data() {
    let (_tmp, out, stdout) = run_smoke(&["--strict"]);

    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert!(doc["machine"]["kernel"].is_string());
    let rows = doc["rows"].as_array().unwrap();

    // Every probe of the disk's limit produced figures.
    let limits: Vec<&Value> = rows.iter().filter(|r| r["kind"] == "limit").collect();
    assert!(limits.len() >= 6, "{limits:?}");
    for r in &limits {
        let status = r["status"].as_str().unwrap();
        // io_uring may be refused on some kernels; everything else must run.
        if !r["contender"].as_str().unwrap().contains("qd") {
            assert_eq!(status, "ok", "{r}");
            // Probed before the first round and again after it.
            assert!(r["rounds"].as_u64().unwrap() >= 2, "{r}");
            assert!(r["ops_per_s_min"].as_f64().unwrap() <= r["ops_per_s_max"].as_f64().unwrap());
        }
    }
    for when in ["load_average_start", "load_average_end"] {
        let load = doc["machine"][when].as_str().unwrap();
        assert_eq!(load.split(' ').count(), 3, "{when}: {load}");
    }

    let workloads = [
        "w1", "w2", "w5", "w3-4k", "w3-128b", "w4-4k", "w4-128b", "k1", "k1-mt", "k2-load",
        "k2-get", "k3", "k3-mt", "r1", "r1-mt",
    ];
    let mut seen = BTreeSet::new();
    for r in rows.iter().filter(|r| r["kind"] != "limit") {
        for field in FIELDS {
            assert!(r.get(field).is_some(), "row lacks {field}: {r}");
        }
        let workload = r["workload"].as_str().unwrap();
        let contender = r["contender"].as_str().unwrap();
        assert!(workloads.contains(&workload), "{workload}");
        seen.insert(contender.to_owned());
        let status = r["status"].as_str().unwrap();
        if status.starts_with("n/a") {
            let no_txn = matches!(workload, "k3" | "k3-mt")
                && matches!(contender, "raft-engine" | "rusqlite");
            let defaults_commit = contender == "wal/defaults"
                && !workload.starts_with("w3")
                && !workload.starts_with("w4");
            assert!(
                workload == "w5" || no_txn || defaults_commit,
                "only W5, K3 without transactions and wal/defaults' commits may be n/a: {r}"
            );
            continue;
        }
        assert_eq!(status, "ok", "{r}");
        // Every contender's own process's peak memory, at least its
        // binary's (a few MB), at most this machine's.
        let rss = r["peak_rss_mb"].as_f64().unwrap_or(0.0);
        assert!((1.0..24_000.0).contains(&rss), "peak_rss_mb: {r}");
        let ops = r["ops"].as_u64().unwrap();
        assert!(ops > 0, "{r}");
        assert!(r["ops_per_s"].as_f64().unwrap() > 0.0, "{r}");
        let verified = r["verified_records"].as_u64().unwrap();
        match workload {
            // The ingest (load) is checked by the replay (gets) that follows it.
            "w3-4k" | "w3-128b" | "k2-load" => {
                let replay = match workload {
                    "k2-load" => "k2-get".to_owned(),
                    w => w.replace("w3", "w4"),
                };
                let read_back = rows
                    .iter()
                    .find(|x| x["workload"] == replay.as_str() && x["contender"] == contender)
                    .unwrap();
                assert_eq!(read_back["verified_records"].as_u64(), Some(ops), "{r}");
            }
            // Every counter read back after a reopen, their sum checked.
            "k3" | "k3-mt" => {
                assert_eq!(verified, 10_000, "{r}");
                let rate = r["conflict_rate"].as_f64().unwrap();
                assert!((0.0..1.0).contains(&rate), "{r}");
            }
            _ => assert_eq!(verified, ops, "{r}"),
        }
        if workload.starts_with("w4") {
            let cache = r["cache"].as_str().unwrap_or_default();
            assert!(
                cache.starts_with("dropped"),
                "a replay says how it emptied the cache: {r}"
            );
        }
        if matches!(
            workload,
            "w1" | "w2" | "w5" | "k1" | "k1-mt" | "k2-get" | "k3" | "k3-mt" | "r1" | "r1-mt"
        ) {
            assert!(r["p50_us"].as_f64().unwrap() > 0.0, "{r}");
            assert!(r["p99_us"].as_f64().unwrap() >= r["p50_us"].as_f64().unwrap());
        }
    }
    for name in [
        "wal/portable",
        "wal/uring",
        "wal/direct",
        "wal/defaults",
        "naive",
        "okaywal",
        "raft-engine",
        "walrus-rust",
        "fjall",
        "rusqlite",
        "wal/kv",
        "redb",
        "wal/raft-3",
    ] {
        assert!(seen.contains(name), "{name} missing");
    }
    // Each key-value contender ran every K workload.
    for name in ["wal/kv", "raft-engine", "fjall", "rusqlite", "redb"] {
        for w in ["k1", "k1-mt", "k2-load", "k2-get"] {
            assert!(
                rows.iter()
                    .any(|r| r["workload"] == w && r["contender"] == name && r["status"] == "ok"),
                "{name} {w}"
            );
        }
    }
    // The stores with transactions ran K3.
    for name in ["wal/kv", "fjall", "redb"] {
        for w in ["k3", "k3-mt"] {
            assert!(
                rows.iter()
                    .any(|r| r["workload"] == w && r["contender"] == name && r["status"] == "ok"),
                "{name} {w}"
            );
        }
    }
    // R1: the replicated store and its one-node baseline, with the
    // leader's fsyncs counted; no peer runs it.
    for w in ["r1", "r1-mt"] {
        let r1: Vec<&Value> = rows.iter().filter(|r| r["workload"] == w).collect();
        let names: BTreeSet<&str> = r1
            .iter()
            .map(|r| r["contender"].as_str().unwrap())
            .collect();
        assert_eq!(names, BTreeSet::from(["wal/kv", "wal/raft-3"]), "{w}");
        for r in r1 {
            assert_eq!(r["status"], "ok", "{r}");
            let syncs = r["syncs_per_op"].as_f64().unwrap();
            assert!(syncs > 0.0 && syncs <= 2.0, "{r}");
        }
    }
    // Ours ran W5; the others say why not.
    let w5_ok = rows
        .iter()
        .filter(|r| r["workload"] == "w5" && r["status"] == "ok")
        .count();
    assert_eq!(w5_ok, 3);

    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert!(csv.starts_with("workload,contender,"));
    assert_eq!(csv.lines().count(), rows.len() + 1);
    for plot in [
        "throughput-w1.svg",
        "throughput-w4-4k.svg",
        "latency-w2.svg",
        "throughput-k1-mt.svg",
    ] {
        let svg = std::fs::read_to_string(out.join(plot)).unwrap();
        let ours = if plot.contains("-k") {
            "wal/kv"
        } else {
            "wal/portable"
        };
        assert!(svg.contains("<svg") && svg.contains(ours), "{plot}");
    }
    assert!(stdout.contains("K2 gets"), "{stdout}");
    assert!(stdout.contains("W1 durable commits"), "{stdout}");
}

/// The sweeps (part of `--full`) at a tiny size: every contender at every
/// point of every sweep, its figures in `sweeps.json` and a plot per sweep.
#[test]
fn every_sweep_runs_every_contender_at_every_point() {
    let (_tmp, out, stdout) = run_smoke(&["--sweep"]);
    let points: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(out.join("sweeps.json")).unwrap()).unwrap();
    for (sweep, values, contenders) in [
        (
            "w2-threads",
            [1, 4],
            ["wal/uring", "wal/direct", "naive", "raft-engine"],
        ),
        (
            "w4-size",
            [1, 4],
            ["wal/uring", "naive", "rusqlite", "fjall"],
        ),
        (
            "k2-keys",
            [1000, 3000],
            ["wal/kv", "raft-engine", "fjall", "redb"],
        ),
    ] {
        for value in values {
            for c in contenders {
                let p = points
                    .iter()
                    .find(|p| p["sweep"] == sweep && p["value"] == value && p["contender"] == c)
                    .unwrap_or_else(|| panic!("{sweep} {value} {c} missing"));
                assert_eq!(p["status"], "ok", "{p}");
                assert!(p["ops_per_s"].as_f64().unwrap() > 0.0, "{p}");
            }
        }
        assert!(
            out.join(format!("sweep-{sweep}.svg")).exists(),
            "{sweep} plot"
        );
        assert!(stdout.contains(sweep.split('-').next().unwrap().to_uppercase().as_str()));
    }
}
