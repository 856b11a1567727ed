//! openraft's own storage test suite (45 cases) against the log store and
//! the state machine together, on the simulated disk and on the real file
//! system.

use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::type_config::TypeConfigExt;
use wal_io::sim::SimDisk;
use wal_raft::{LogStore, StateMachine, TypeConfig};

/// Small segments and memtables: the simulated disk keeps every byte in memory.
fn log_options() -> wal_engine::Options {
    let mut o = wal_engine::Options::default();
    o.queue_bytes_max = 16 << 10;
    o.record_bytes_max = 8 << 10;
    o.segment_bytes = 64 << 10;
    o
}

fn kv_options() -> wal_kv::Options {
    let mut o = wal_kv::Options::default();
    o.log = log_options();
    o.memtable_bytes_max = 64 << 10;
    o
}

fn storage_error(e: impl std::error::Error + 'static) -> StorageError<TypeConfig> {
    StorageError::write(TypeConfig::err_from_error(&e))
}

struct Sim;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, SimDisk> for Sim {
    async fn build(&self) -> Result<(SimDisk, LogStore, StateMachine), StorageError<TypeConfig>> {
        let log_disk = SimDisk::new(1);
        let sm_disk = SimDisk::new(2);
        let log = LogStore::open(log_disk.storage(), log_options()).map_err(storage_error)?;
        let sm = StateMachine::open(sm_disk.storage(), kv_options()).map_err(storage_error)?;
        Ok((log_disk, log, sm))
    }
}

struct Files;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Files {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().map_err(storage_error)?;
        let open = |sub: &str| {
            let path = dir.path().join(sub);
            std::fs::create_dir(&path).map_err(storage_error)?;
            wal_io::open_dir(&path, wal_io::BackendChoice::Auto).map_err(storage_error)
        };
        let log = LogStore::open(open("log")?, log_options()).map_err(storage_error)?;
        let sm = StateMachine::open(open("sm")?, kv_options()).map_err(storage_error)?;
        Ok((dir, log, sm))
    }
}

#[test]
fn the_suite_passes_on_the_simulated_disk() {
    TypeConfig::run(async {
        Suite::test_all(Sim).await.unwrap();
    });
}

#[test]
fn the_suite_passes_on_the_file_system() {
    TypeConfig::run(async {
        Suite::test_all(Files).await.unwrap();
    });
}
