//! W4, the cold replay: cold data, warm code.
//!
//! A first replay, of a copy of the log with the page cache dropped,
//! loads the code the contender runs; the timed replay, of the log itself
//! with the cache dropped again, reads the log's bytes from the disk and
//! the code from memory, since dropping the cache never evicts pages a
//! process has mapped. See [`replay`].

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::contenders::Contender;
use crate::record::Tally;
use crate::workload::{Measured, RunResult, RunSpec, drop_page_cache, files_under};

/// W4's other figures: the replay that loads the code, and whether the
/// timed one ran without loading any.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ColdReplay {
    /// How the page cache was emptied before each replay.
    pub cache: String,
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

/// W4: replays what W3 wrote, from a cold page cache where permitted, with
/// the contender's code loaded (the module's note). Timed with its code
/// cold too, a replay paid for loading it from the disk, 8 MiB of the
/// executable per fault (the disk's readahead here), about 2 ms each, and
/// that charged every contender but the naive reader, whose code is the
/// standard library's the harness had run already. The first replay's
/// rate is kept beside (`ColdReplay`), and the timed one's major faults are
/// counted, to show the code stayed.
///
/// The first replay reads a copy, beside the log, because several peers
/// change the log when they open it (okaywal grows its segment, fjall trims
/// its journal and rewrites its version files, raft-engine rewrites its
/// lock file): the timed replay must read what W3 left. walrus-rust cannot
/// replay a copy apart; its one replay is timed, code cold.
pub fn replay(contender: &dyn Contender, spec: &RunSpec) -> Result<RunResult, String> {
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
        cold: Some(ColdReplay {
            cache,
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
    let mut files: Vec<FileState> = files_under(dir)
        .into_iter()
        .map(|(path, meta)| (path, meta.len(), meta.modified().ok()))
        .collect();
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::Workload;
    use crate::contenders::Purpose;
    use crate::record;

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

    /// W4 of a ten-record scribbled log: the result, the log file's length
    /// at each replay, and the directory the log's was made in.
    fn replay_scribbler(apart: bool) -> (RunResult, Vec<u64>, tempfile::TempDir) {
        let (parent, spec) = scribbled_log(10);
        let scribbler = Scribbler {
            seen: std::sync::Mutex::new(Vec::new()),
            apart,
        };
        let result = replay_dropping(&scribbler, &spec, &|_| "not dropped (test)".into()).unwrap();
        assert_eq!(result.measured.ops, 10);
        let seen = scribbler.seen.into_inner().unwrap();
        (result, seen, parent)
    }

    #[test]
    fn both_replays_read_the_log_as_w3_left_it_though_a_replay_changes_it() {
        let (result, seen, parent) = replay_scribbler(true);
        assert!(result.cold.unwrap().first_ops_per_s.is_some());
        // The first replay scribbled on a copy; the timed one found the log
        // untouched (and scribbled on it in turn).
        assert_eq!(seen, [640, 640]);
        let left: Vec<_> = std::fs::read_dir(parent.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, ["log-dir"], "the copy is gone");
    }

    #[test]
    fn a_contender_that_cannot_replay_a_copy_apart_is_replayed_once() {
        let (result, seen, _parent) = replay_scribbler(false);
        assert_eq!(result.cold.unwrap().first_ops_per_s, None);
        assert_eq!(seen, [640]);
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
}
