//! One run of one workload by one contender, inside a child process: the
//! measurement, then an untimed read-back that proves the data is there.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::Workload;
use crate::contenders::{Contender, Purpose};
use crate::record::{self, Tally};
use crate::stores::KvContender;

/// What one run measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Measured {
    /// Operations completed: commits, records ingested, records replayed.
    pub ops: u64,
    /// Payload bytes of those operations.
    pub bytes: u64,
    /// Wall time of the measured part.
    pub seconds: f64,
    /// Latency percentiles of single operations, where each was timed.
    pub p50_us: Option<f64>,
    /// 99th percentile.
    pub p99_us: Option<f64>,
    /// 99.9th percentile.
    pub p999_us: Option<f64>,
    /// Transaction attempts refused for a conflict (K3).
    #[serde(default)]
    pub conflicts: Option<u64>,
    /// fsyncs the store (for a replicated one, its leader) did during the
    /// measured part, where it counts them (K1, R1).
    #[serde(default)]
    pub syncs: Option<u64>,
}

/// The longest latency the histograms tell apart.
const LATENCY_NANOS_MAX: u64 = 60_000_000_000;

/// Counts operations and their latencies.
#[derive(Debug)]
pub struct Recorder {
    hist: Histogram<u64>,
    ops: u64,
    bytes: u64,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    /// An empty recorder: latencies in nanoseconds, 3 significant digits, up
    /// to a minute (longer ones count as a minute).
    pub fn new() -> Recorder {
        Recorder {
            hist: Histogram::new_with_max(LATENCY_NANOS_MAX, 3)
                .expect("1 ns to a minute at 3 significant digits is a valid range"),
            ops: 0,
            bytes: 0,
        }
    }

    /// One operation of `bytes` that took `latency`.
    pub fn op(&mut self, latency: Duration, bytes: u64) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.hist.saturating_record(nanos.max(1));
        self.ops += 1;
        self.bytes += bytes;
    }

    /// Adds another recorder's operations.
    pub fn merge(&mut self, other: &Recorder) {
        self.hist
            .add(&other.hist)
            .expect("histograms of one precision merge");
        self.ops += other.ops;
        self.bytes += other.bytes;
    }

    /// The figures, for operations that took `elapsed` in all.
    pub fn finish(&self, elapsed: Duration) -> Measured {
        let micros =
            |q: f64| (self.ops > 0).then(|| self.hist.value_at_quantile(q) as f64 / 1000.0);
        Measured {
            ops: self.ops,
            bytes: self.bytes,
            seconds: elapsed.as_secs_f64(),
            p50_us: micros(0.50),
            p99_us: micros(0.99),
            p999_us: micros(0.999),
            conflicts: None,
            syncs: None,
        }
    }
}

/// The parameters of one child run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSpec {
    /// What to run.
    pub workload: Workload,
    /// Who runs it.
    pub contender: String,
    /// The contender's directory (created, empty for a writing workload).
    pub dir: PathBuf,
    /// Duration of the timed workloads (W1, W2, W5).
    pub seconds: f64,
    /// Writer threads (W1, K1: 1; W2, K1-mt: many).
    pub threads: u32,
    /// Records to ingest (W3) or expected on replay (W4); keys to load and
    /// read (K2).
    pub records: u64,
    /// Bytes per record.
    pub record_bytes: usize,
    /// Commits in flight (W5).
    pub depth: usize,
}

/// What a child run reports to the parent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    /// The measurement.
    pub measured: Measured,
    /// Records read back and checked after the measurement (or during it,
    /// for a replay).
    pub verified_records: u64,
    /// Seconds from the start of open until the log was ready (W4).
    pub open_seconds: Option<f64>,
    /// How a replay (W4) was made cold, and what else it measured.
    #[serde(default)]
    pub cold: Option<crate::replay::ColdReplay>,
    /// The child process's peak resident memory (`VmHWM`), set by the
    /// child once the run is over: every contender runs in a process of
    /// its own, so this is the contender's.
    #[serde(default)]
    pub peak_rss_bytes: Option<u64>,
}

/// Runs `spec` in this process.
pub fn run(spec: &RunSpec) -> Result<RunResult, String> {
    match spec.workload {
        Workload::W1 | Workload::W2 => commits(log_contender(spec)?, spec),
        Workload::W3Big | Workload::W3Small => ingest(log_contender(spec)?, spec),
        Workload::W4Big | Workload::W4Small => crate::replay::replay(log_contender(spec)?, spec),
        Workload::W5 => {
            let contender = log_contender(spec)?;
            let measured =
                contender.inflight(&spec.dir, spec.depth, spec.seconds, spec.record_bytes)?;
            let verified = verify(contender, spec, 1, measured.ops)?;
            Ok(RunResult {
                peak_rss_bytes: None,
                measured,
                verified_records: verified,
                open_seconds: None,
                cold: None,
            })
        }
        Workload::K1 | Workload::K1Many | Workload::R1 | Workload::R1Many => {
            crate::kvload::puts(kv_contender(spec)?, spec)
        }
        Workload::K2Load => crate::kvload::load(kv_contender(spec)?, spec),
        Workload::K2Get => crate::kvload::gets(kv_contender(spec)?, spec),
        Workload::K3 | Workload::K3Many => crate::txnload::transactions(kv_contender(spec)?, spec),
    }
}

fn log_contender(spec: &RunSpec) -> Result<&'static dyn Contender, String> {
    let contender = crate::contenders::by_name(&spec.contender)
        .ok_or_else(|| format!("no log contender named {}", spec.contender))?;
    match contender.not_applicable(spec.workload) {
        Some(reason) => Err(format!("not applicable: {reason}")),
        None => Ok(contender),
    }
}

fn kv_contender(spec: &RunSpec) -> Result<&'static dyn KvContender, String> {
    let store = crate::stores::by_name(&spec.contender)
        .ok_or_else(|| format!("no key-value contender named {}", spec.contender))?;
    match store.not_applicable(spec.workload) {
        Some(reason) => Err(format!("not applicable: {reason}")),
        None => Ok(store),
    }
}

/// W1, W2: `threads` writers commit durably, one record at a time.
fn commits(contender: &dyn Contender, spec: &RunSpec) -> Result<RunResult, String> {
    let log = contender.open(&spec.dir, spec.threads, Purpose::Commits)?;
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(spec.seconds);
    let outcomes: Vec<Result<Recorder, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..spec.threads)
            .map(|writer| {
                let log = &*log;
                scope.spawn(move || {
                    let mut recorder = Recorder::new();
                    let mut buf = vec![0; spec.record_bytes];
                    let mut seq = 0;
                    while Instant::now() < deadline {
                        seq += 1;
                        record::fill(&mut buf, writer, seq);
                        let t0 = Instant::now();
                        log.commit(writer, seq, &buf)?;
                        recorder.op(t0.elapsed(), buf.len() as u64);
                    }
                    Ok(recorder)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("writer panicked".into())))
            .collect()
    });
    let elapsed = start.elapsed();
    let mut all = Recorder::new();
    for outcome in outcomes {
        all.merge(&outcome?);
    }
    log.close()?;
    let measured = all.finish(elapsed);
    let verified = verify(contender, spec, spec.threads, measured.ops)?;
    Ok(RunResult {
        peak_rss_bytes: None,
        measured,
        verified_records: verified,
        open_seconds: None,
        cold: None,
    })
}

/// W3: one writer appends `records` without syncing each, then one sync.
fn ingest(contender: &dyn Contender, spec: &RunSpec) -> Result<RunResult, String> {
    let log = contender.open(&spec.dir, 1, Purpose::Ingest)?;
    let start = Instant::now();
    log.ingest(spec.records, spec.record_bytes)?;
    let elapsed = start.elapsed();
    log.close()?;
    let measured = Measured {
        ops: spec.records,
        bytes: spec.records * spec.record_bytes as u64,
        seconds: elapsed.as_secs_f64(),
        ..Measured::default()
    };
    // The replay that follows (W4) reads it back and checks every record.
    Ok(RunResult {
        peak_rss_bytes: None,
        measured,
        verified_records: 0,
        open_seconds: None,
        cold: None,
    })
}

/// Reads everything back and checks it: every writer's records in order,
/// intact, and as many as were acknowledged.
fn verify(
    contender: &dyn Contender,
    spec: &RunSpec,
    writers: u32,
    expected: u64,
) -> Result<u64, String> {
    let mut tally = Tally::new(spec.record_bytes);
    contender.replay(&spec.dir, writers, &mut |rec| tally.record(rec))?;
    if tally.records() != expected {
        return Err(format!(
            "read back {} records after {expected} acknowledged commits",
            tally.records()
        ));
    }
    Ok(tally.records())
}

/// Empties the page cache of `dir`'s files so a replay reads the disk: all
/// of it through `/proc/sys/vm/drop_caches` where writable (root), otherwise
/// file by file with `POSIX_FADV_DONTNEED`. Returns which was done.
pub fn drop_page_cache(dir: &Path) -> String {
    rustix::fs::sync();
    if std::fs::write("/proc/sys/vm/drop_caches", "1").is_ok() {
        return "dropped (drop_caches)".into();
    }
    let files = files_under(dir)
        .iter()
        .filter(|(path, _)| {
            std::fs::File::open(path).is_ok_and(|file| {
                rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).is_ok()
            })
        })
        .count();
    format!("dropped per file (fadvise DONTNEED, {files} files)")
}

/// Every file under `dir`, in its subdirectories too, with its metadata;
/// what cannot be read is left out.
pub fn files_under(dir: &Path) -> Vec<(PathBuf, std::fs::Metadata)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&path) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                files.push((entry.path(), meta));
            }
        }
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorder_reports_percentiles_in_microseconds() {
        let mut recorder = Recorder::new();
        for micros in 1..=1000u64 {
            recorder.op(Duration::from_micros(micros), 128);
        }
        let m = recorder.finish(Duration::from_secs(1));
        assert_eq!((m.ops, m.bytes), (1000, 128_000));
        let p50 = m.p50_us.unwrap();
        let p99 = m.p99_us.unwrap();
        assert!((499.0..=501.0).contains(&p50), "p50 {p50}");
        assert!((989.0..=991.0).contains(&p99), "p99 {p99}");
    }
}
