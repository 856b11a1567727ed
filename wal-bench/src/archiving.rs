//! The archiving benchmark (`wal-bench archive`, `cargo xtask bench
//! --archive`): how fast the archiver ships a log's sealed segments into a
//! local archive directory, beside a plain copy of the same files (the
//! disk's bandwidth for this job: read, write, fsync), and how long a
//! restore of the whole archive takes beside a cold replay (W4) of the same
//! log. Interleaved rounds; the median round's figures.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use serde::Serialize;

use crate::workload::drop_page_cache;

/// Flags of an archiving benchmark run.
#[derive(Debug, Clone, Args)]
pub struct ArchiveArgs {
    /// 1 GiB of log and 5 rounds (default: 256 MiB, 3 rounds).
    #[arg(long)]
    pub full: bool,
    /// Where the log, archives and restores are written (emptied before
    /// and after; default `<out>/archive-work`).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Where archive.json goes.
    #[arg(long, default_value_os_t = crate::default_out())]
    pub out: PathBuf,
}

/// The figures.
#[derive(Debug, Serialize)]
pub struct Figures {
    pub log_bytes: u64,
    pub archived_bytes: u64,
    pub rounds: usize,
    pub archiver_mb_per_s: f64,
    pub plain_copy_mb_per_s: f64,
    pub archiver_over_copy: f64,
    pub restore_seconds: f64,
    pub replay_seconds: f64,
    pub restore_over_replay: f64,
    pub cache: String,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn reset(dir: &Path) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))
}

/// Runs the benchmark and prints its table.
///
/// # Errors
/// Any failure of the log, the archive or the files.
pub fn run(args: &ArchiveArgs) -> Result<(), String> {
    let (bytes, rounds) = if args.full {
        (1u64 << 30, 5)
    } else {
        (256u64 << 20, 3)
    };
    let work = args
        .dir
        .clone()
        .unwrap_or_else(|| args.out.join("archive-work"));
    reset(&work)?;
    let src = work.join("log");
    reset(&src)?;
    eprintln!("writing a log of {} MiB of 4 KiB records...", bytes >> 20);
    let mut options = wal_engine::Options::default();
    options.sync = wal_engine::SyncPolicy::Never;
    let (wal, _) = wal_engine::Wal::open(&src, options).map_err(|e| e.to_string())?;
    let record = vec![0x5au8; 4096];
    for _ in 0..bytes / 4096 {
        wal.append(&record).map_err(|e| e.to_string())?;
    }
    wal.close().map_err(|e| e.to_string())?;
    let sealed = sealed_segments(&src)?;
    let archived_bytes: u64 = sealed.iter().map(|(_, len)| len).sum();

    let (mut archiver, mut copy, mut restore, mut replay) = (vec![], vec![], vec![], vec![]);
    let mut cache = String::new();
    for r in 0..rounds {
        eprintln!("round {}: archive, copy, restore, replay", r + 1);
        let archive_dir = work.join("archive");
        let copy_dir = work.join("copy");
        // Alternate which goes first.
        for first in [r % 2 == 0, r % 2 != 0] {
            if first {
                reset(&archive_dir)?;
                let archive = wal_archive::Archive::open(archive_dir.to_str().unwrap_or_default())
                    .map_err(|e| e.to_string())?;
                let mut a =
                    wal_archive::Archiver::new(&src, archive, wal_engine::PurgeHold::new(), 2)
                        .map_err(|e| e.to_string())?;
                drop_page_cache(&src);
                let t = Instant::now();
                a.round().map_err(|e| e.to_string())?;
                archiver.push(archived_bytes as f64 / 1e6 / t.elapsed().as_secs_f64());
            } else {
                reset(&copy_dir)?;
                drop_page_cache(&src);
                let t = Instant::now();
                for (name, _) in &sealed {
                    plain_copy(&src.join(name), &copy_dir.join(name))?;
                }
                std::fs::File::open(&copy_dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| e.to_string())?;
                copy.push(archived_bytes as f64 / 1e6 / t.elapsed().as_secs_f64());
            }
        }
        // Restore of everything archived, then a cold replay of the log.
        let to = work.join("restored");
        let _ = std::fs::remove_dir_all(&to);
        let archive = wal_archive::Archive::open(archive_dir.to_str().unwrap_or_default())
            .map_err(|e| e.to_string())?;
        cache = drop_page_cache(&archive_dir);
        let t = Instant::now();
        wal_archive::restore(&archive, &to, wal_archive::Target::Latest)
            .map_err(|e| e.to_string())?;
        restore.push(t.elapsed().as_secs_f64());
        drop_page_cache(&src);
        let t = Instant::now();
        let mut records = 0u64;
        let (wal, _) = wal_engine::Wal::open_replaying(
            &src,
            wal_engine::Options::default(),
            wal_engine::ReplayFrom::Start,
            |_r| {
                records += 1;
                std::ops::ControlFlow::Continue(())
            },
        )
        .map_err(|e| e.to_string())?;
        replay.push(t.elapsed().as_secs_f64());
        wal.close().map_err(|e| e.to_string())?;
        if records != bytes / 4096 {
            return Err(format!(
                "replay read {records} records, not {}",
                bytes / 4096
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    let f = Figures {
        log_bytes: bytes,
        archived_bytes,
        rounds,
        archiver_mb_per_s: median(archiver),
        plain_copy_mb_per_s: median(copy),
        archiver_over_copy: 0.0,
        restore_seconds: median(restore),
        replay_seconds: median(replay),
        restore_over_replay: 0.0,
        cache,
    };
    let f = Figures {
        archiver_over_copy: f.archiver_mb_per_s / f.plain_copy_mb_per_s,
        restore_over_replay: f.restore_seconds / f.replay_seconds,
        ..f
    };
    println!(
        "\narchiving {} MiB of sealed segments ({} MiB of log), median of {} rounds",
        f.archived_bytes >> 20,
        f.log_bytes >> 20,
        f.rounds
    );
    println!(
        "  archiver (upload, read back, compare)  {:>8.0} MB/s",
        f.archiver_mb_per_s
    );
    println!(
        "  plain copy + fsync of the same files   {:>8.0} MB/s   archiver / copy {:.2}",
        f.plain_copy_mb_per_s, f.archiver_over_copy
    );
    println!(
        "  restore (latest), cold                 {:>8.2} s",
        f.restore_seconds
    );
    println!(
        "  replay of the log (W4), cold           {:>8.2} s      restore / replay {:.2}",
        f.replay_seconds, f.restore_over_replay
    );
    println!("  page cache before each: {}", f.cache);
    std::fs::create_dir_all(&args.out).map_err(|e| e.to_string())?;
    let json = serde_json::to_string_pretty(&f).map_err(|e| e.to_string())?;
    std::fs::write(args.out.join("archive.json"), json).map_err(|e| e.to_string())
}

/// The sealed segments of the log in `dir` (what the archiver ships) and
/// their sizes.
fn sealed_segments(dir: &Path) -> Result<Vec<(String, u64)>, String> {
    let mut out = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| wal_engine::parse_segment_name(n).is_some())
        .collect();
    names.sort();
    for name in names {
        let data = std::fs::read(dir.join(&name)).map_err(|e| e.to_string())?;
        let mut scan =
            wal_format::SegmentScanner::new(bytes::Bytes::from(data)).map_err(|e| e.to_string())?;
        scan.by_ref().for_each(drop);
        if !matches!(scan.finish().end, wal_format::SegmentEnd::Sealed { .. }) {
            break;
        }
        let len = std::fs::metadata(dir.join(&name))
            .map_err(|e| e.to_string())?
            .len();
        out.push((name, len));
    }
    Ok(out)
}

fn plain_copy(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::copy(from, to).map_err(|e| format!("copy {}: {e}", from.display()))?;
    std::fs::File::open(to)
        .and_then(|f| f.sync_all())
        .map_err(|e| e.to_string())
}
