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
    /// How the page cache was emptied before a replay (W4).
    pub cache: Option<String>,
    /// What else a replay (W4) measured.
    #[serde(default)]
    pub cold: Option<ColdReplay>,
    /// The child process's peak resident memory (`VmHWM`), set by the
    /// child once the run is over: every contender runs in a process of
    /// its own, so this is the contender's.
    #[serde(default)]
    pub peak_rss_bytes: Option<u64>,
}

/// W4's other figures: the replay that loads the code, and whether the
/// timed one ran without loading any.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ColdReplay {
    /// Records per second of the first replay after the page cache was
    /// dropped, while the contender's code was not loaded yet either (what
    /// W4 measured before 2026-12-06). None for a contender that cannot
    /// replay a copy apart ([`Contender::replays_a_copy_apart`]): its timed
    /// replay is its first.
    pub first_ops_per_s: Option<f64>,
    /// Major page faults of the process during the timed replay: pages
    /// read from the disk on first touch, the code's among them. None where
    /// `/proc/self/stat` does not tell.
    pub major_faults: Option<u64>,
}

/// Runs `spec` in this process.
pub fn run(spec: &RunSpec) -> Result<RunResult, String> {
    match spec.workload {
        Workload::W1 | Workload::W2 => commits(log_contender(spec)?, spec),
        Workload::W3Big | Workload::W3Small => ingest(log_contender(spec)?, spec),
        Workload::W4Big | Workload::W4Small => replay(log_contender(spec)?, spec),
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
                cache: None,
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
        cache: None,
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
        cache: None,
        cold: None,
    })
}

/// W4: replays what W3 wrote, from a cold page cache where permitted.
///
/// Cold data, warm code. A first replay, of a copy of the log with the
/// cache dropped, loads the code the contender runs; the timed replay, of
/// the log itself with the cache dropped again, reads the log's bytes from
/// the disk and the code from memory, since dropping the cache never
/// evicts pages a process has mapped. Timed on its own, the first replay
/// also paid for loading code from the disk, 8 MiB of the executable per
/// fault (the disk's readahead here), about 2 ms each, and that charged
/// every contender but the naive reader, whose code is the standard
/// library's the harness had run already. The first replay's rate is kept
/// beside (`ColdReplay`), and the timed one's major faults are counted, to
/// show the code stayed.
///
/// The first replay reads a copy, beside the log, because several peers
/// change the log when they open it (okaywal grows its segment, fjall trims
/// its journal and rewrites its version files, raft-engine rewrites its
/// lock file): the timed replay must read what W3 left. walrus-rust cannot
/// replay a copy apart; its one replay is timed, code cold.
fn replay(contender: &dyn Contender, spec: &RunSpec) -> Result<RunResult, String> {
    replay_dropping(contender, spec, &drop_page_cache)
}

/// [`replay`], emptying the cache with `drop_cache` (tests: not at all).
fn replay_dropping(
    contender: &dyn Contender,
    spec: &RunSpec,
    drop_cache: &dyn Fn(&Path) -> String,
) -> Result<RunResult, String> {
    let files = files_of(&spec.dir);
    let first = if contender.replays_a_copy_apart() {
        Some(first_replay_of_a_copy(contender, spec, drop_cache)?)
    } else {
        None
    };
    let changed = changed_files(&files, &files_of(&spec.dir));
    if !changed.is_empty() {
        return Err(format!(
            "the first replay, of a copy, changed the log ({})",
            changed.join(", ")
        ));
    }
    let cache = drop_cache(&spec.dir);
    let faults_before = major_faults();
    let (measured, ready) = timed_replay(contender, spec, &spec.dir)?;
    let major_faults = major_faults()
        .zip(faults_before)
        .map(|(after, before)| after.saturating_sub(before));
    Ok(RunResult {
        peak_rss_bytes: None,
        verified_records: measured.ops,
        measured,
        open_seconds: Some(ready),
        cache: Some(cache),
        cold: Some(ColdReplay {
            first_ops_per_s: first.map(|m| m.ops as f64 / m.seconds.max(f64::MIN_POSITIVE)),
            major_faults,
        }),
    })
}

/// Replays a copy of the log, made beside it, from a cold cache, and
/// removes the copy. The log itself is not touched.
fn first_replay_of_a_copy(
    contender: &dyn Contender,
    spec: &RunSpec,
    drop_cache: &dyn Fn(&Path) -> String,
) -> Result<Measured, String> {
    let mut name = spec.dir.file_name().unwrap_or_default().to_os_string();
    name.push(".first");
    let copy = spec.dir.with_file_name(name);
    // A copy a killed run left.
    let _ = std::fs::remove_dir_all(&copy);
    let replayed = copy_dir(&spec.dir, &copy)
        .map_err(|e| format!("copy the log to {}: {e}", copy.display()))
        .and_then(|()| {
            drop_cache(&copy);
            timed_replay(contender, spec, &copy)
        });
    let removed = std::fs::remove_dir_all(&copy);
    let (measured, _) = replayed?;
    removed.map_err(|e| format!("remove the copy {}: {e}", copy.display()))?;
    Ok(measured)
}

/// Copies the directory `from`, and everything under it, to `to`.
fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            copy_file(&entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Copies a file's data, leaving holes (and, on ext4, allocated but never
/// written extents) as holes: walrus-rust sizes its files to 1000 MiB, and
/// a plain copy would write every zero.
#[cfg(target_os = "linux")]
fn copy_file(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;

    use rustix::fs::SeekFrom;

    let src = std::fs::File::open(from)?;
    let len = src.metadata()?.len();
    let dst = std::fs::File::create(to)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < len {
        let data = match rustix::fs::seek(&src, SeekFrom::Data(at)) {
            Ok(data) => data,
            // Nothing but a hole to the end.
            Err(rustix::io::Errno::NXIO) => break,
            Err(e) => return Err(e.into()),
        };
        let hole = rustix::fs::seek(&src, SeekFrom::Hole(data))?.min(len);
        let mut pos = data;
        while pos < hole {
            let want = usize::try_from(hole - pos)
                .unwrap_or(usize::MAX)
                .min(buf.len());
            let n = src.read_at(&mut buf[..want], pos)?;
            if n == 0 {
                break;
            }
            dst.write_all_at(&buf[..n], pos)?;
            pos += n as u64;
        }
        at = hole;
    }
    dst.set_len(len)
}

/// Copies a file (elsewhere, zeros and all).
#[cfg(not(target_os = "linux"))]
fn copy_file(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::copy(from, to).map(|_| ())
}

/// One replay of the log `spec` describes, in `dir`, every record
/// checked; with the seconds from open to ready.
fn timed_replay(
    contender: &dyn Contender,
    spec: &RunSpec,
    dir: &Path,
) -> Result<(Measured, f64), String> {
    let mut tally = Tally::new(spec.record_bytes);
    let start = Instant::now();
    let ready = contender.replay(dir, 1, &mut |rec| tally.record(rec))?;
    let elapsed = start.elapsed();
    if tally.records() != spec.records {
        return Err(format!(
            "replay returned {} records, {} were ingested",
            tally.records(),
            spec.records
        ));
    }
    let measured = Measured {
        ops: tally.records(),
        bytes: tally.bytes(),
        seconds: elapsed.as_secs_f64(),
        ..Measured::default()
    };
    Ok((measured, ready))
}

/// Every file under `dir` with its length and modification time, sorted.
fn files_of(dir: &Path) -> Vec<FileState> {
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
                files.push((entry.path(), meta.len(), meta.modified().ok()));
            }
        }
    }
    files.sort();
    files
}

type FileState = (PathBuf, u64, Option<std::time::SystemTime>);

/// The files of `after` not in `before` as they were, by name within the
/// log's directory, and those gone.
fn changed_files(before: &[FileState], after: &[FileState]) -> Vec<String> {
    let name = |f: &FileState| {
        f.0.file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    };
    let mut changed: Vec<String> = after
        .iter()
        .filter(|f| !before.contains(f))
        .map(|f| match before.iter().find(|b| b.0 == f.0) {
            Some(b) if b.1 != f.1 => format!("{} {} -> {} bytes", name(f), b.1, f.1),
            Some(_) => format!("{} rewritten", name(f)),
            None => format!("{} new", name(f)),
        })
        .collect();
    changed.extend(
        before
            .iter()
            .filter(|b| !after.iter().any(|f| f.0 == b.0))
            .map(|b| format!("{} gone", name(b))),
    );
    changed
}

/// The process's major page faults so far (`/proc/self/stat`, field 12).
fn major_faults() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces: count after its ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(9)?.parse().ok()
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
    let mut files = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&path) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(file) = std::fs::File::open(&path)
                && rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).is_ok()
            {
                files += 1;
            }
        }
    }
    format!("dropped per file (fadvise DONTNEED, {files} files)")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log that changes itself whenever it is replayed, as several peers
    /// do on open, and says how long its file was each time.
    struct Scribbler {
        seen: std::sync::Mutex<Vec<u64>>,
        /// What [`Contender::replays_a_copy_apart`] says.
        apart: bool,
    }

    impl crate::contenders::Entrant for Scribbler {
        fn name(&self) -> &'static str {
            "scribbler"
        }

        fn config(&self) -> &'static str {
            "test"
        }
    }

    impl Contender for Scribbler {
        fn replays_a_copy_apart(&self) -> bool {
            self.apart
        }

        fn open(
            &self,
            _: &Path,
            _: u32,
            _: Purpose,
        ) -> Result<Box<dyn crate::contenders::Log>, String> {
            Err("replay only".into())
        }

        fn replay(
            &self,
            dir: &Path,
            _writers: u32,
            each: &mut dyn FnMut(&[u8]) -> Result<(), String>,
        ) -> Result<f64, String> {
            let path = dir.join("log");
            let len = std::fs::metadata(&path).map_err(|e| e.to_string())?.len();
            self.seen.lock().unwrap().push(len);
            let mut rec = vec![0; 64];
            for seq in 1..=len / 64 {
                record::fill(&mut rec, 0, seq);
                each(&rec)?;
            }
            let mut grown = std::fs::read(&path).map_err(|e| e.to_string())?;
            grown.extend_from_slice(b"scribbled on open");
            std::fs::write(&path, grown).map_err(|e| e.to_string())?;
            Ok(0.0)
        }
    }

    fn scribbled_log(records: u64) -> (tempfile::TempDir, RunSpec) {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("log-dir");
        std::fs::create_dir(&dir).unwrap();
        let len = usize::try_from(64 * records).unwrap();
        std::fs::write(dir.join("log"), vec![0u8; len]).unwrap();
        let spec = RunSpec {
            workload: Workload::W4Small,
            contender: "scribbler".into(),
            dir,
            seconds: 0.0,
            threads: 1,
            records,
            record_bytes: 64,
            depth: 1,
        };
        (parent, spec)
    }

    #[test]
    fn both_replays_read_the_log_as_w3_left_it_though_a_replay_changes_it() {
        let (parent, spec) = scribbled_log(10);
        let scribbler = Scribbler {
            seen: std::sync::Mutex::new(Vec::new()),
            apart: true,
        };
        let result = replay_dropping(&scribbler, &spec, &|_| "not dropped (test)".into()).unwrap();
        assert_eq!(result.measured.ops, 10);
        assert!(result.cold.unwrap().first_ops_per_s.is_some());
        // The first replay scribbled on a copy; the timed one found the log
        // untouched (and scribbled on it in turn).
        assert_eq!(*scribbler.seen.lock().unwrap(), [640, 640]);
        let left: Vec<_> = std::fs::read_dir(parent.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, ["log-dir"], "the copy is gone");
    }

    #[test]
    fn a_contender_that_cannot_replay_a_copy_apart_is_replayed_once() {
        let (_parent, spec) = scribbled_log(10);
        let scribbler = Scribbler {
            seen: std::sync::Mutex::new(Vec::new()),
            apart: false,
        };
        let result = replay_dropping(&scribbler, &spec, &|_| "not dropped (test)".into()).unwrap();
        assert_eq!(result.measured.ops, 10);
        assert_eq!(result.cold.unwrap().first_ops_per_s, None);
        assert_eq!(*scribbler.seen.lock().unwrap(), [640]);
    }

    #[test]
    fn a_copy_keeps_data_and_holes() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("sparse"), dir.path().join("copy"));
        let file = std::fs::File::create(&from).unwrap();
        file.set_len(64 << 20).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&file, b"middle", 32 << 20).unwrap();
        drop(file);
        copy_file(&from, &to).unwrap();
        assert_eq!(std::fs::read(&from).unwrap(), std::fs::read(&to).unwrap());
        // Where the file system reports holes, the copy keeps them: far
        // fewer blocks than its 64 MiB.
        let blocks =
            |p: &Path| std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(p).unwrap());
        if blocks(&from) < 1024 {
            assert!(blocks(&to) < 1024, "{} blocks", blocks(&to));
        }
    }

    #[test]
    fn changed_files_names_what_grew_was_rewritten_came_and_went() {
        let at = |secs| Some(std::time::UNIX_EPOCH + Duration::from_secs(secs));
        let f = |name: &str, len, t| (PathBuf::from("/log").join(name), len, t);
        let before = [f("a", 1, at(1)), f("b", 2, at(1)), f("c", 3, at(1))];
        let after = [f("a", 5, at(2)), f("b", 2, at(2)), f("d", 4, at(2))];
        assert_eq!(
            changed_files(&before, &after),
            ["a 1 -> 5 bytes", "b rewritten", "d new", "c gone"]
        );
        assert!(changed_files(&before, &before).is_empty());
    }

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
