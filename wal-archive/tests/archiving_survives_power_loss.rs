//! A store on the simulated disk writes while an archiver ships it; the
//! disk loses power at random points (every crash mode), over and over.
//! After each loss: every acknowledged batch is in the store; where the
//! archive and the local log both hold an LSN, they hold the same record
//! (the archive never has what the disk lost); from the oldest base backup
//! on, every LSN is local or archived; and the archive's latest moment
//! restores to what the batches up to it wrote. (The window between a
//! seal's write and its sync is checked on its own, in
//! `only_durable_segments_are_archived.rs`: rounds here run between
//! acknowledged writes.)

mod common;

use common::batches::{batch, contents, expected, last_of, options};
use wal_archive::{Archive, Archiver, Target, restore, segment_object};
use wal_engine::PurgeHold;
use wal_io::sim::{CrashMode, SimDisk};
use wal_kv::{Durability, Options, Store};

const SEEDS: u64 = 4;
const CYCLES: u64 = 6;

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

#[test]
fn archiving_survives_power_loss() {
    let mut restores = 0;
    for seed in 1..=SEEDS {
        let work = tempfile::tempdir().unwrap();
        let url = work.path().join("archive").to_str().unwrap().to_owned();
        let disk = SimDisk::new(seed);
        let mut rng = 0x2545_f491_4f6c_dd1d ^ seed;
        let mut acked = 0;
        for cycle in 0..CYCLES {
            let at = format!("seed {seed}, cycle {cycle}");
            let hold = PurgeHold::new();
            let store = Store::open_with(disk.storage(), options(&hold)).unwrap();
            let last = last_of(&store);
            assert!(
                last >= acked,
                "{at}: acknowledged {acked}, the store holds {last}"
            );
            assert_eq!(contents(&store), expected(last), "{at}: the store");
            check_archive_against_log(&store, &url, &at);
            let mut archiver =
                Archiver::on_storage(disk.storage(), Archive::open(&url).unwrap(), hold, 2)
                    .unwrap();
            let writes = 100 + xorshift(&mut rng) % 400;
            for s in last + 1..=last + writes {
                store.write(&batch(s), Durability::Sync).unwrap();
                acked = s;
                if xorshift(&mut rng).is_multiple_of(40) {
                    archiver.round().unwrap();
                }
            }
            archiver.round().unwrap();
            // Power goes: whatever was not synced, as the mode decides.
            let modes = CrashMode::CONCRETE;
            let mode = modes[usize::try_from(xorshift(&mut rng) % modes.len() as u64).unwrap()];
            disk.crash(mode);
            drop(store);

            let archive = Archive::open(&url).unwrap();
            if !archive.bases().unwrap().is_empty() {
                let to = work.path().join(format!("restored-{cycle}"));
                match restore(&archive, &to, Target::Latest) {
                    Ok(done) => {
                        let restored = Store::open(&to, Options::default()).unwrap();
                        assert_eq!(
                            contents(&restored),
                            expected(done.last_lsn),
                            "{at}: restored"
                        );
                        restored.close().unwrap();
                        restores += 1;
                    }
                    Err(wal_archive::ArchiveError::Target(_)) => {}
                    Err(e) => panic!("{at}: restore: {e}"),
                }
            }
        }
    }
    assert!(restores > 0, "no cycle restored anything");
}

/// Where the archive and the local log both hold an LSN, the same record;
/// from the oldest base backup on, every LSN local or archived.
fn check_archive_against_log(store: &Store, url: &str, at: &str) {
    let archive = Archive::open(url).unwrap();
    let wal = store.log();
    let (first, next) = (wal.first_lsn(), wal.appended_lsn() + 1);
    // (first LSN, next LSN) of each archived segment.
    let mut spans = Vec::new();
    for name in archive.segments().unwrap() {
        let bytes = archive.get(&segment_object(&name)).unwrap();
        let scan = wal_format::SegmentScanner::new(bytes).unwrap();
        let records: Vec<wal_format::Record> = scan.flat_map(IntoIterator::into_iter).collect();
        for r in records.iter().filter(|r| r.lsn >= first && r.lsn < next) {
            let local = wal.reader(r.lsn).unwrap().next().unwrap().unwrap();
            assert_eq!(local.lsn, r.lsn);
            assert_eq!(
                local.data, r.data,
                "{at}: LSN {} differs between archive and log",
                r.lsn
            );
        }
        let start = wal_engine::parse_segment_name(&name).unwrap();
        spans.push((start, records.last().map_or(start, |r| r.lsn + 1)));
    }
    if let Some(&oldest) = archive.bases().unwrap().first() {
        let mut want = oldest + 1;
        for &(start, end) in &spans {
            if start <= want && want < end {
                want = end;
            }
        }
        assert!(
            want >= first,
            "{at}: LSNs {want}..{first} are neither archived nor local (base {oldest})"
        );
    }
}
