//! `walctl`: look inside a write-ahead log or a store, check it, salvage
//! it. It never writes to the directory it is pointed at; `salvage` writes
//! only into a new one.
//!
//! A directory holding a `MANIFEST` is a store (its log's segments sit
//! beside it, and each record is a write batch); one holding only
//! segments is a log, or a store that never checkpointed when its records
//! decode as batches (`--as` decides otherwise).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod dump;
mod error;
mod salvage;
mod scan;
mod show;
mod stat;
mod target;
mod verify;

use error::{CliError, EXIT_ERROR};
use target::{AsKind, Target};

#[derive(Debug, Parser)]
#[command(
    name = "walctl",
    version,
    about = "Inspect, verify and salvage a write-ahead log or a store, without writing to it",
    after_help = "Examples:\n  walctl stat /var/lib/walkv\n  walctl dump /var/lib/walkv --from 1000 --limit 20\n  walctl dump /var/lib/walkv --follow --json\n  walctl verify /var/lib/walkv; echo $?   # 0 clean, 1 repairable, 2 refused\n  walctl salvage /var/lib/walkv --to /tmp/rescued\n  walctl restore --archive /backup/walkv --to /tmp/then --time 2025-12-05T02:00:00Z\n\nExit codes: verify 0 clean, 1 damage that opening repairs, 2 damage that\nopening refuses or that loses data (a table block that does not read back);\n3 for a directory walctl cannot read (not a log, held by a process where that\nmatters, a newer format) or bad arguments."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Args)]
struct Dir {
    /// The log's or store's directory.
    dir: PathBuf,
    /// Take the directory as a log or as a store rather than deciding.
    #[arg(long = "as", value_enum, default_value_t = AsKind::Auto)]
    as_kind: AsKind,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Segments, LSN range, records, bytes and compression; for a store,
    /// its checkpoint and tables per level.
    Stat {
        #[command(flatten)]
        dir: Dir,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// One line per record: LSN, segment and frame offset, length, codec;
    /// for a store, the batch's puts and deletes.
    Dump {
        #[command(flatten)]
        dir: Dir,
        /// The first LSN shown.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// The last LSN shown.
        #[arg(long)]
        to: Option<u64>,
        /// Records shown, at most.
        #[arg(long)]
        limit: Option<u64>,
        /// Keep showing records as a live log writes them (they reach the
        /// file before the writer syncs them: a power loss may still take
        /// the newest back). A truncation that takes back records already
        /// shown is said before the records that follow again
        /// (`{"cut_back_from": N}` with --json, a line starting with `#`
        /// without), and so is a purge of records not yet shown
        /// (`{"purged_from": N, "purged_to": M}`).
        #[arg(long)]
        follow: bool,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Reads everything and says what opening would do in each recovery
    /// mode; for a store, checks every table. Exit 0 clean, 1 damage
    /// opening repairs, 2 damage opening refuses or data that does not read
    /// back.
    Verify {
        #[command(flatten)]
        dir: Dir,
        /// One JSON object.
        #[arg(long)]
        json: bool,
        /// Verify a directory a process holds (what it writes meanwhile may
        /// show as a torn tail).
        #[arg(long)]
        live: bool,
    },
    /// Rebuilds a store (or log) from an archive, as it was at a moment:
    /// the newest base backup before it, then the archived segments up to
    /// it.
    Restore {
        /// The archive (a directory, or a file:// URL).
        #[arg(long)]
        archive: String,
        /// The new directory (absent or empty).
        #[arg(long)]
        to: PathBuf,
        /// Up to this LSN.
        #[arg(long, conflicts_with_all = ["time", "latest"])]
        lsn: Option<u64>,
        /// Up to this commit time (RFC 3339, e.g. 2025-12-05T02:00:00Z).
        #[arg(long, conflicts_with_all = ["lsn", "latest"])]
        time: Option<String>,
        /// Everything the archive holds (the default).
        #[arg(long)]
        latest: bool,
        /// Keep the record at the LSN, and commits at exactly the time
        /// (the default).
        #[arg(long, conflicts_with = "exclusive")]
        inclusive: bool,
        /// Leave out the record at the LSN, or commits at exactly the time.
        #[arg(long)]
        exclusive: bool,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Copies what can be recovered into a new directory, and says what
    /// was lost.
    Salvage {
        #[command(flatten)]
        dir: Dir,
        /// The new directory (absent or empty).
        #[arg(long)]
        to: PathBuf,
        /// Keep everything readable past damage (gaps in LSNs), not only
        /// the prefix before the first damage.
        #[arg(long)]
        skip_corrupted: bool,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
}

fn json<T: serde::Serialize>(v: &T) -> Result<String, CliError> {
    serde_json::to_string_pretty(v).map_err(|e| CliError::Io {
        what: "encode JSON".into(),
        source: e.into(),
    })
}

/// What `restore` did.
#[derive(serde::Serialize)]
struct RestoreReport {
    to: String,
    base_checkpoint_lsn: Option<u64>,
    segments: usize,
    last_lsn: u64,
}

fn run(cli: Cli) -> Result<u8, CliError> {
    match cli.command {
        Command::Stat { dir, json: j } => {
            let target = Target::open(&dir.dir, dir.as_kind)?;
            let s = stat::stat(&target)?;
            print!(
                "{}",
                if j {
                    json(&s)? + "\n"
                } else {
                    stat::render(&s)
                }
            );
            Ok(0)
        }
        Command::Dump {
            dir,
            from,
            to,
            limit,
            follow,
            json,
        } => {
            let target = Target::open(&dir.dir, dir.as_kind)?;
            let range = dump::Range {
                from,
                to: to.unwrap_or(u64::MAX),
                limit: limit.unwrap_or(u64::MAX),
                json,
            };
            dump::dump(&target, range, follow, std::io::stdout().lock())?;
            Ok(0)
        }
        Command::Verify { dir, json: j, live } => {
            let target = Target::open(&dir.dir, dir.as_kind)?;
            if !live {
                target.require_idle("; pass --live to verify it anyway")?;
            }
            let v = verify::verify(&target)?;
            print!(
                "{}",
                if j {
                    json(&v)? + "\n"
                } else {
                    verify::render(&v)
                }
            );
            Ok(v.verdict)
        }
        Command::Restore {
            archive,
            to,
            lsn,
            time,
            latest: _,
            inclusive: _,
            exclusive,
            json: j,
        } => {
            let inclusive = !exclusive;
            let target = match (lsn, time) {
                (Some(lsn), _) => wal_archive::Target::Lsn { lsn, inclusive },
                (_, Some(t)) => wal_archive::Target::Time {
                    us: show::parse_time(&t).map_err(CliError::Usage)?,
                    inclusive,
                },
                _ => wal_archive::Target::Latest,
            };
            let archive = wal_archive::Archive::open(&archive)?;
            let done = wal_archive::restore(&archive, &to, target)?;
            let report = RestoreReport {
                to: to.display().to_string(),
                base_checkpoint_lsn: done.base,
                segments: done.segments,
                last_lsn: done.last_lsn,
            };
            if j {
                println!("{}", json(&report)?);
            } else {
                println!(
                    "restored into {}: up to LSN {}, from {} and {} archived segments",
                    report.to,
                    report.last_lsn,
                    report
                        .base_checkpoint_lsn
                        .map_or("no base backup (a log)".to_owned(), |b| format!(
                            "the base backup at LSN {b}"
                        )),
                    report.segments
                );
            }
            Ok(0)
        }
        Command::Salvage {
            dir,
            to,
            skip_corrupted,
            json: j,
        } => {
            let target = Target::open(&dir.dir, dir.as_kind)?;
            let mode = if skip_corrupted {
                wal_engine::RecoveryMode::SkipCorrupted
            } else {
                wal_engine::RecoveryMode::PointInTime
            };
            let s = salvage::salvage(&target, &to, mode)?;
            print!(
                "{}",
                if j {
                    json(&s)? + "\n"
                } else {
                    salvage::render(&s)
                }
            );
            Ok(0)
        }
    }
}

fn main() -> ExitCode {
    // Usage errors exit 3, as other errors do: clap's 2 would read as
    // verify's "refused".
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_ERROR } else { 0 });
        }
    };
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("walctl: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}
