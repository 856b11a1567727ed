//! Facts about the machine a run measured, printed above the tables and
//! stored with the results: figures mean nothing without them.

use std::path::Path;

use serde::Serialize;

use crate::orchestrate::Profile;

/// What the benchmark ran on.
#[derive(Debug, Clone, Serialize)]
pub struct Facts {
    /// UTC date of the run (YYYY-MM-DD).
    pub date: String,
    /// CPU model name.
    pub cpu: String,
    /// Logical cores available to the process.
    pub cores: usize,
    /// Kernel release.
    pub kernel: String,
    /// File system of the benchmark directory.
    pub file_system: String,
    /// Whether io_uring is usable, or why not.
    pub io_uring: String,
    /// The profile's name and sizes.
    pub profile: String,
    /// `/proc/loadavg`'s 1, 5 and 15 minute load averages when the run
    /// began, and when it ended: a busy machine explains a slow run.
    pub load_average_start: String,
    /// The same at the end (empty until the run has ended).
    pub load_average_end: String,
}

impl Facts {
    /// The facts as a few lines of text.
    pub fn render(&self) -> String {
        format!(
            "date {} | cpu {} ({} cores) | kernel {} | fs {} | io_uring {}\nprofile {}\n\
             load average (1, 5, 15 min): {} at the start, {} at the end",
            self.date,
            self.cpu,
            self.cores,
            self.kernel,
            self.file_system,
            self.io_uring,
            self.profile,
            self.load_average_start,
            self.load_average_end
        )
    }
}

/// Reads the facts; `dir` is the directory the logs are written in.
pub fn facts(dir: &Path, profile: &Profile) -> Facts {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    let io_uring = match wal_io::open_dir(dir, wal_io::BackendChoice::Uring) {
        Ok(storage) if storage.backend() == wal_io::Backend::Uring => "available".to_owned(),
        Ok(storage) => format!(
            "unavailable ({})",
            storage.fallback_reason().unwrap_or("refused")
        ),
        Err(e) => format!("unavailable ({e})"),
    };
    Facts {
        date: utc_date(),
        cpu,
        cores: std::thread::available_parallelism().map_or(1, usize::from),
        kernel,
        file_system: file_system(dir),
        io_uring,
        profile: format!(
            "{}: {} rounds, {} s per timed run, W2 and K1 {} threads, W5 {} in flight, \
             ingest {} x 4 KiB and {} x 128 B, K2 {} keys in {} round(s)",
            profile.name,
            profile.rounds,
            profile.seconds,
            profile.threads,
            profile.depth,
            profile.big_records,
            profile.small_records,
            profile.kv_keys,
            profile.kv_rounds
        ),
        load_average_start: load_average(),
        load_average_end: String::new(),
    }
}

/// The 1, 5 and 15 minute load averages, as `/proc/loadavg` gives them.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

fn file_system(dir: &Path) -> String {
    let Ok(stat) = rustix::fs::statfs(dir) else {
        return "unknown".into();
    };
    // Magic numbers from statfs(2).
    #[allow(clippy::cast_sign_loss)]
    let name = match stat.f_type as u64 {
        0xEF53 => "ext4",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        0x0102_1994 => "tmpfs",
        0x794C_7630 => "overlayfs",
        0x2FC1_2FC1 => "zfs",
        0xF2F5_2010 => "f2fs",
        _ => "",
    };
    if name.is_empty() {
        format!("unknown (magic {:#x})", stat.f_type)
    } else {
        name.to_owned()
    }
}

/// Today's UTC date from the system clock (days-from-civil, inverted).
fn utc_date() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn date_has_the_iso_shape() {
        let date = super::utc_date();
        assert_eq!(date.len(), 10, "{date}");
        assert!(date.starts_with("20"), "{date}");
    }
}
