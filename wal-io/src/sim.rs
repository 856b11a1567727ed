//! The simulated backend: an in-memory disk, deterministic from a seed, that
//! loses unsynced data the ways real disks and file systems do.
//!
//! Every file keeps two states: what reads return (the page cache) and what
//! is durable (the platter). Writes, length changes and preallocation are
//! *changes* pending on a file until [`StorageFile::sync_data`] makes them
//! durable; creations, removals and renames are pending on the directory
//! until [`Storage::sync_dir`]. [`SimDisk::crash`] kills the "process" (every
//! handle opened before it fails with [`IoError::Crashed`] from then on),
//! decides which pending changes reach the disk by a [`CrashMode`], and leaves
//! the disk as a restarted machine would find it.
//!
//! Faults: [`SimDisk::inject`] makes the N-th operation of a kind fail with
//! `EIO` or `ENOSPC`, once or from then on, and [`SimDisk::op_count`] counts
//! operations so a test can fail every site once. A failed data sync behaves
//! as Linux does (see "Can Applications Recover from fsync Failures?",
//! ATC '20): the changes it covered stay visible to reads but will never
//! become durable, and a later sync succeeds without them.
//!
//! ```
//! use wal_io::sim::{CrashMode, SimDisk};
//! use wal_io::FileOptions;
//!
//! let disk = SimDisk::new(42);
//! let storage = disk.storage();
//! let file = storage.create("log", FileOptions::default())?;
//! storage.sync_dir()?;
//! file.write_at(0, &[b"durable"])?;
//! file.sync_data()?;
//! file.write_at(7, &[b" and not"])?;
//!
//! disk.crash(CrashMode::LoseAll);
//! let file = disk.storage().open("log", FileOptions::default())?;
//! assert_eq!(file.size()?, 7);
//! # Ok::<(), wal_io::IoError>(())
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::queue::{Completion, Pending};
use crate::{
    Backend, DirLock, FileOptions, FileRef, IoBuf, IoError, IoQueue, Op, Storage, StorageFile,
    check_direct, check_name,
};

/// Sector size of the simulated disk: the granularity of torn writes and
/// garbage sectors.
pub const SIM_SECTOR_BYTES: usize = 512;

/// Largest simulated file; larger writes or lengths fail with `EFBIG`, so a
/// hostile offset cannot make the simulator allocate without bound.
pub const SIM_FILE_BYTES_MAX: u64 = 1 << 30;

/// How a crash treats the changes not yet synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CrashMode {
    /// Every unsynced change is lost.
    LoseAll,
    /// Each file keeps a random prefix of its unsynced changes; the
    /// directory keeps a random prefix of its unsynced operations.
    KeepPrefix,
    /// Each file keeps a random subset of its unsynced changes (not only a
    /// prefix), applied in their original order.
    KeepSubset,
    /// Each file keeps a random prefix of its unsynced changes, and the next
    /// write after that prefix is torn at [`SIM_SECTOR_BYTES`] granularity:
    /// any subset of its sectors lands, so a later part may survive while an
    /// earlier part does not.
    TornWrite,
    /// Each file keeps a random prefix of its unsynced changes, one sector of
    /// the last kept write is filled with garbage.
    GarbageSector,
    /// One of the modes above, drawn per file.
    Any,
}

impl CrashMode {
    /// Every concrete mode (all but [`CrashMode::Any`]).
    pub const CONCRETE: [CrashMode; 5] = [
        CrashMode::LoseAll,
        CrashMode::KeepPrefix,
        CrashMode::KeepSubset,
        CrashMode::TornWrite,
        CrashMode::GarbageSector,
    ];
}

/// An injected error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FaultError {
    /// `EIO`: the device failed.
    Eio,
    /// `ENOSPC`: the device is full.
    Enospc,
}

impl FaultError {
    fn errno(self) -> rustix::io::Errno {
        match self {
            FaultError::Eio => rustix::io::Errno::IO,
            FaultError::Enospc => rustix::io::Errno::NOSPC,
        }
    }
}

/// A rule that fails operations of one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Fault {
    /// The kind of operation.
    pub op: Op,
    /// Which one fails, counting from 1 over the disk's life (see [`SimDisk::op_count`]).
    pub nth: u64,
    /// The error it fails with.
    pub error: FaultError,
    /// Whether every later operation of that kind fails too.
    pub sticky: bool,
}

impl Fault {
    /// The `nth` operation of kind `op` fails once with `error`.
    pub fn once(op: Op, nth: u64, error: FaultError) -> Self {
        Fault {
            op,
            nth,
            error,
            sticky: false,
        }
    }

    /// The `nth` operation of kind `op` and every later one fail with `error`.
    pub fn from_then_on(op: Op, nth: u64, error: FaultError) -> Self {
        Fault {
            op,
            nth,
            error,
            sticky: true,
        }
    }
}

/// What one crash did to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FileCrash {
    /// The file's name after the crash (`None` if it disappeared).
    pub name: Option<String>,
    /// The mode applied to it.
    pub mode: CrashMode,
    /// Unsynced changes it had.
    pub pending: usize,
    /// How many of them reached the disk whole.
    pub kept: usize,
    /// The byte offset of a torn or garbage sector, if one was made.
    pub damaged_sector: Option<u64>,
}

/// What a crash did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CrashReport {
    /// Per file, in inode order.
    pub files: Vec<FileCrash>,
    /// Unsynced directory operations.
    pub dir_pending: usize,
    /// How many of them reached the disk.
    pub dir_kept: usize,
}

#[derive(Debug, Clone)]
enum Change {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

#[derive(Debug, Clone)]
enum DirOp {
    Link { name: String, inode: u64 },
    Unlink { name: String },
    Rename { from: String, to: String },
}

#[derive(Debug, Default)]
struct Inode {
    current: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<Change>,
    /// Live handles of the current process: an unlinked file stays readable
    /// through them, as on a real file system, and is freed after the last.
    handles: usize,
}

/// splitmix64: small, fast and good enough to pick crash outcomes.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..=n`.
    fn upto(&mut self, n: usize) -> usize {
        let n = n as u64;
        usize::try_from(self.next() % (n + 1)).unwrap_or(0)
    }

    fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }
}

#[derive(Debug)]
struct State {
    rng: Rng,
    generation: u64,
    next_inode: u64,
    inodes: BTreeMap<u64, Inode>,
    names: BTreeMap<String, u64>,
    durable_names: BTreeMap<String, u64>,
    dir_pending: Vec<DirOp>,
    locked: bool,
    counts: BTreeMap<Op, u64>,
    faults: Vec<Fault>,
    /// Queue completions handed back ahead of an operation pushed before them.
    reorders: u64,
}

fn apply(content: &mut Vec<u8>, change: &Change) {
    match change {
        Change::Write { offset, data } => {
            let start = usize::try_from(*offset).unwrap_or(usize::MAX);
            let end = start.saturating_add(data.len());
            if content.len() < end {
                content.resize(end, 0);
            }
            if let Some(dst) = content.get_mut(start..end) {
                dst.copy_from_slice(data);
            }
        }
        Change::SetLen(len) => content.resize(usize::try_from(*len).unwrap_or(usize::MAX), 0),
    }
}

/// Bytes of a page: a range sync writes back whole pages.
const PAGE_BYTES: u64 = 4096;

/// Splits `change` into its part inside `lo..hi` (a write's bytes there)
/// and what stays pending outside it (the rest of the write, in up to two
/// pieces; a length change stays whole).
fn split_change(change: Change, lo: u64, hi: u64) -> (Option<Change>, Vec<Change>) {
    let Change::Write { offset, data } = change else {
        return (None, vec![change]);
    };
    let end = offset + data.len() as u64;
    let (a, b) = (offset.max(lo), end.min(hi));
    if a >= b {
        return (None, vec![Change::Write { offset, data }]);
    }
    let at = |x: u64| usize::try_from(x - offset).unwrap_or(usize::MAX);
    let piece = |from: u64, to: u64| Change::Write {
        offset: from,
        data: data.get(at(from)..at(to)).unwrap_or_default().to_vec(),
    };
    let mut rest = Vec::new();
    if offset < a {
        rest.push(piece(offset, a));
    }
    if b < end {
        rest.push(piece(b, end));
    }
    (Some(piece(a, b)), rest)
}

fn apply_dir(names: &mut BTreeMap<String, u64>, op: &DirOp) {
    match op {
        DirOp::Link { name, inode } => {
            names.insert(name.clone(), *inode);
        }
        DirOp::Unlink { name } => {
            names.remove(name);
        }
        DirOp::Rename { from, to } => {
            if let Some(inode) = names.remove(from) {
                names.insert(to.clone(), inode);
            }
        }
    }
}

impl State {
    /// Counts an operation and fails it if a fault rule says so.
    fn tick(&mut self, op: Op, path: &str) -> Result<(), IoError> {
        let count = self.counts.entry(op).or_insert(0);
        *count += 1;
        let n = *count;
        let hit = self
            .faults
            .iter()
            .find(|f| f.op == op && (f.nth == n || (f.sticky && n > f.nth)));
        match hit {
            Some(fault) => Err(IoError::os(
                op,
                sim_path(path),
                std::io::Error::from_raw_os_error(fault.error.errno().raw_os_error()),
            )),
            None => Ok(()),
        }
    }

    /// Frees inodes that no name (current, durable or pending) and no handle
    /// refers to any more, so a long run without crashes does not grow.
    fn collect(&mut self) {
        let mut referenced: std::collections::BTreeSet<u64> =
            self.names.values().copied().collect();
        referenced.extend(self.durable_names.values().copied());
        referenced.extend(self.dir_pending.iter().filter_map(|op| match op {
            DirOp::Link { inode, .. } => Some(*inode),
            _ => None,
        }));
        self.inodes
            .retain(|ino, inode| inode.handles > 0 || referenced.contains(ino));
    }

    fn crash(&mut self, mode: CrashMode) -> CrashReport {
        let dir_pending = self.dir_pending.len();
        let dir_kept = if mode == CrashMode::LoseAll {
            0
        } else {
            self.rng.upto(dir_pending)
        };
        let mut names = self.durable_names.clone();
        for op in self.dir_pending.iter().take(dir_kept) {
            apply_dir(&mut names, op);
        }
        self.dir_pending.clear();
        let mut files = Vec::new();
        let live: std::collections::BTreeSet<u64> = names.values().copied().collect();
        for (&ino, inode) in &mut self.inodes {
            let mode = match mode {
                CrashMode::Any => CrashMode::CONCRETE[self.rng.upto(CrashMode::CONCRETE.len() - 1)],
                m => m,
            };
            let report = crash_file(&mut self.rng, inode, mode);
            files.push(FileCrash {
                name: names
                    .iter()
                    .find(|(_, i)| **i == ino)
                    .map(|(n, _)| n.clone()),
                ..report
            });
        }
        self.inodes.retain(|ino, _| live.contains(ino));
        for inode in self.inodes.values_mut() {
            inode.handles = 0;
        }
        self.names = names.clone();
        self.durable_names = names;
        self.locked = false;
        self.generation += 1;
        CrashReport {
            files,
            dir_pending,
            dir_kept,
        }
    }
}

/// Applies a crash to one file: its durable content plus whatever part of
/// its pending changes the mode lets through becomes its only content.
fn crash_file(rng: &mut Rng, inode: &mut Inode, mode: CrashMode) -> FileCrash {
    let pending = std::mem::take(&mut inode.pending);
    let mut content = std::mem::take(&mut inode.durable);
    let mut kept = 0;
    let mut damaged_sector = None;
    match mode {
        CrashMode::LoseAll | CrashMode::Any => {}
        CrashMode::KeepPrefix => {
            kept = rng.upto(pending.len());
            pending
                .iter()
                .take(kept)
                .for_each(|c| apply(&mut content, c));
        }
        CrashMode::KeepSubset => {
            for change in &pending {
                if rng.coin() {
                    apply(&mut content, change);
                    kept += 1;
                }
            }
        }
        CrashMode::TornWrite => {
            kept = rng.upto(pending.len());
            pending
                .iter()
                .take(kept)
                .for_each(|c| apply(&mut content, c));
            if let Some(Change::Write { offset, data }) = pending.get(kept) {
                damaged_sector = Some(tear(rng, &mut content, *offset, data));
            }
        }
        CrashMode::GarbageSector => {
            kept = rng.upto(pending.len());
            pending
                .iter()
                .take(kept)
                .for_each(|c| apply(&mut content, c));
            let last_write = pending.iter().take(kept).rev().find_map(|c| match c {
                Change::Write { offset, data } if !data.is_empty() => Some((*offset, data.len())),
                _ => None,
            });
            if let Some((offset, len)) = last_write {
                damaged_sector = Some(garble(rng, &mut content, offset, len));
            }
        }
    }
    inode.current = content.clone();
    inode.durable = content;
    FileCrash {
        name: None,
        mode,
        pending: pending.len(),
        kept,
        damaged_sector,
    }
}

/// The sectors (absolute, `SIM_SECTOR_BYTES` aligned) a range touches.
fn sectors(offset: u64, len: usize) -> impl Iterator<Item = (u64, u64)> {
    let sector = SIM_SECTOR_BYTES as u64;
    let end = offset + len as u64;
    let first = offset / sector;
    let last = end.div_ceil(sector);
    (first..last).map(move |s| ((s * sector).max(offset), ((s + 1) * sector).min(end)))
}

/// Lands a random subset of the write's sectors; returns the first sector
/// that did not land (or the write's start if all did).
fn tear(rng: &mut Rng, content: &mut Vec<u8>, offset: u64, data: &[u8]) -> u64 {
    let mut first_lost = None;
    for (start, end) in sectors(offset, data.len()) {
        if rng.coin() {
            let from = usize::try_from(start - offset).unwrap_or(0);
            let to = usize::try_from(end - offset).unwrap_or(0);
            if let Some(piece) = data.get(from..to) {
                apply(
                    content,
                    &Change::Write {
                        offset: start,
                        data: piece.to_vec(),
                    },
                );
            }
        } else if first_lost.is_none() {
            first_lost = Some(start);
        }
    }
    first_lost.unwrap_or(offset)
}

/// Fills one sector of the range with garbage; returns its offset.
fn garble(rng: &mut Rng, content: &mut [u8], offset: u64, len: usize) -> u64 {
    let all: Vec<(u64, u64)> = sectors(offset, len).collect();
    let (start, end) = all
        .get(rng.upto(all.len().saturating_sub(1)))
        .copied()
        .unwrap_or((offset, offset));
    let from = usize::try_from(start).unwrap_or(usize::MAX);
    let to = usize::try_from(end).unwrap_or(usize::MAX);
    if let Some(bytes) = content.get_mut(from..to) {
        for b in bytes {
            *b = rng.next().to_le_bytes()[0];
        }
    }
    start
}

fn sim_path(name: &str) -> PathBuf {
    PathBuf::from(format!("sim:/{name}"))
}

/// An in-memory disk with one directory. Cheap to clone: clones share the disk.
#[derive(Debug, Clone)]
pub struct SimDisk {
    state: Arc<Mutex<State>>,
}

impl SimDisk {
    /// An empty disk whose crash outcomes are drawn from `seed`.
    pub fn new(seed: u64) -> Self {
        SimDisk {
            state: Arc::new(Mutex::new(State {
                rng: Rng(seed),
                generation: 0,
                next_inode: 1,
                inodes: BTreeMap::new(),
                names: BTreeMap::new(),
                durable_names: BTreeMap::new(),
                dir_pending: Vec::new(),
                locked: false,
                counts: BTreeMap::new(),
                faults: Vec::new(),
                reorders: 0,
            })),
        }
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves a consistent state (every
        // mutation is completed before the guard drops), so poisoning is ignored.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A view of the disk for one "process": handles opened through it stop
    /// working at the next crash.
    pub fn storage(&self) -> Arc<dyn Storage> {
        let generation = self.lock_state().generation;
        Arc::new(SimStorage {
            disk: self.clone(),
            generation,
        })
    }

    /// Crashes: every existing handle dies, the directory lock is released,
    /// and unsynced changes survive as `mode` decides.
    pub fn crash(&self, mode: CrashMode) -> CrashReport {
        self.lock_state().crash(mode)
    }

    /// Adds a fault rule.
    pub fn inject(&self, fault: Fault) {
        self.lock_state().faults.push(fault);
    }

    /// Removes every fault rule.
    pub fn clear_faults(&self) {
        self.lock_state().faults.clear();
    }

    /// Operations of kind `op` attempted so far (failed ones included).
    pub fn op_count(&self, op: Op) -> u64 {
        self.lock_state().counts.get(&op).copied().unwrap_or(0)
    }

    /// How many times a queue of this disk completed an operation ahead of
    /// one pushed before it (see the module docs): a test that means to
    /// exercise out-of-order completion checks that it happened.
    pub fn queue_reorders(&self) -> u64 {
        self.lock_state().reorders
    }

    /// The durable content of the file `name` (as a crash with
    /// [`CrashMode::LoseAll`] would leave it), if its name is durable.
    pub fn durable_content(&self, name: &str) -> Option<Vec<u8>> {
        let state = self.lock_state();
        let inode = state.durable_names.get(name)?;
        state.inodes.get(inode).map(|i| i.durable.clone())
    }
}

#[derive(Debug)]
struct SimStorage {
    disk: SimDisk,
    generation: u64,
}

impl SimStorage {
    /// Locks the disk state, failing if this handle's process crashed.
    fn state(&self, op: Op, name: &str) -> Result<MutexGuard<'_, State>, IoError> {
        let state = self.disk.lock_state();
        if state.generation != self.generation {
            return Err(IoError::Crashed {
                op,
                path: sim_path(name),
            });
        }
        Ok(state)
    }

    fn open_file(
        &self,
        op: Op,
        name: &str,
        options: FileOptions,
        create: bool,
    ) -> Result<FileRef, IoError> {
        check_name(name)?;
        let mut state = self.state(op, name)?;
        state.tick(op, name)?;
        let inode = match (state.names.get(name).copied(), create) {
            (Some(_), true) => return Err(errno(op, name, rustix::io::Errno::EXIST)),
            (None, false) => return Err(errno(op, name, rustix::io::Errno::NOENT)),
            (Some(inode), false) => inode,
            (None, true) => {
                let inode = state.next_inode;
                state.next_inode += 1;
                state.inodes.insert(inode, Inode::default());
                state.names.insert(name.to_owned(), inode);
                state.dir_pending.push(DirOp::Link {
                    name: name.to_owned(),
                    inode,
                });
                inode
            }
        };
        if let Some(i) = state.inodes.get_mut(&inode) {
            i.handles += 1;
        }
        Ok(Arc::new(SimFile {
            disk: self.disk.clone(),
            generation: self.generation,
            inode,
            name: name.to_owned(),
            options,
            closed: AtomicBool::new(false),
        }))
    }
}

fn errno(op: Op, name: &str, e: rustix::io::Errno) -> IoError {
    IoError::os(
        op,
        sim_path(name),
        std::io::Error::from_raw_os_error(e.raw_os_error()),
    )
}

struct SimLockGuard {
    disk: SimDisk,
    generation: u64,
}

impl Drop for SimLockGuard {
    fn drop(&mut self) {
        let mut state = self.disk.lock_state();
        // After a crash the lock is already gone, and may belong to a new process.
        if state.generation == self.generation {
            state.locked = false;
        }
    }
}

impl Storage for SimStorage {
    fn backend(&self) -> Backend {
        Backend::Sim
    }

    fn create(&self, name: &str, options: FileOptions) -> Result<FileRef, IoError> {
        self.open_file(Op::Create, name, options, true)
    }

    fn open(&self, name: &str, options: FileOptions) -> Result<FileRef, IoError> {
        self.open_file(Op::Open, name, options, false)
    }

    fn remove(&self, name: &str) -> Result<(), IoError> {
        check_name(name)?;
        let mut state = self.state(Op::Remove, name)?;
        state.tick(Op::Remove, name)?;
        if state.names.remove(name).is_none() {
            return Err(errno(Op::Remove, name, rustix::io::Errno::NOENT));
        }
        state.dir_pending.push(DirOp::Unlink {
            name: name.to_owned(),
        });
        state.collect();
        Ok(())
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), IoError> {
        check_name(from)?;
        check_name(to)?;
        let mut state = self.state(Op::Rename, from)?;
        state.tick(Op::Rename, from)?;
        let Some(inode) = state.names.remove(from) else {
            return Err(errno(Op::Rename, from, rustix::io::Errno::NOENT));
        };
        state.names.insert(to.to_owned(), inode);
        state.dir_pending.push(DirOp::Rename {
            from: from.to_owned(),
            to: to.to_owned(),
        });
        Ok(())
    }

    fn list(&self) -> Result<Vec<String>, IoError> {
        let mut state = self.state(Op::List, "")?;
        state.tick(Op::List, "")?;
        Ok(state.names.keys().cloned().collect())
    }

    fn sync_dir(&self) -> Result<(), IoError> {
        let mut state = self.state(Op::SyncDir, "")?;
        state.tick(Op::SyncDir, "")?;
        state.durable_names = state.names.clone();
        state.dir_pending.clear();
        state.collect();
        Ok(())
    }

    fn lock(&self) -> Result<DirLock, IoError> {
        let name = crate::portable::LOCK_FILE_NAME;
        let mut state = self.state(Op::Lock, name)?;
        state.tick(Op::Lock, name)?;
        if state.locked {
            return Err(IoError::Locked {
                dir: sim_path(""),
                lock_file: sim_path(name),
                holder: None,
            });
        }
        state.locked = true;
        Ok(DirLock::new(SimLockGuard {
            disk: self.disk.clone(),
            generation: self.generation,
        }))
    }

    fn queue(&self, _depth: u32) -> Result<Box<dyn IoQueue>, IoError> {
        // Queued operations fail with `Crashed` once the process that made
        // the queue has crashed, like every other operation of its handles.
        drop(self.state(Op::Queue, "")?);
        Ok(Box::new(SimQueue {
            disk: self.disk.clone(),
            pushed: Vec::new(),
            flight: VecDeque::new(),
        }))
    }
}

/// The simulated queue: operations wait in `flight` until [`IoQueue::wait`]
/// runs them, in an order drawn from the disk's seed.
struct SimQueue {
    disk: SimDisk,
    /// Pushed and not yet submitted.
    pushed: Vec<Pending>,
    /// Submitted and not yet run, in the order they were pushed.
    flight: VecDeque<Pending>,
}

impl std::fmt::Debug for SimQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimQueue")
            .field("pushed", &self.pushed.len())
            .field("flight", &self.flight.len())
            .finish_non_exhaustive()
    }
}

impl SimQueue {
    /// Picks the next operation to run and whether to keep going after it
    /// once `min` is met. Only writes ahead of the first sync in flight may
    /// overtake one another; a sync runs alone, after all of them.
    fn draw(&self) -> (usize, bool) {
        let runnable = match self.flight.iter().position(Pending::is_sync) {
            Some(0) => 1,
            Some(sync) => sync,
            None => self.flight.len().max(1),
        };
        let mut state = self.disk.lock_state();
        let pick = state.rng.upto(runnable - 1);
        if pick > 0 {
            state.reorders += 1;
        }
        (pick, state.rng.coin())
    }
}

impl IoQueue for SimQueue {
    fn push_write(
        &mut self,
        token: u64,
        file: &FileRef,
        offset: u64,
        buf: IoBuf,
        durable: bool,
    ) -> Result<(), IoError> {
        self.pushed
            .push(Pending::write(token, file, offset, buf, durable)?);
        Ok(())
    }

    fn push_sync(&mut self, token: u64, file: &FileRef) -> Result<(), IoError> {
        self.pushed.push(Pending::sync(token, file));
        Ok(())
    }

    fn submit(&mut self) -> Result<(), IoError> {
        self.flight.extend(self.pushed.drain(..));
        Ok(())
    }

    fn wait(&mut self, min: usize, out: &mut Vec<Completion>) -> Result<(), IoError> {
        self.submit()?;
        let mut completed = 0;
        while !self.flight.is_empty() {
            let (pick, more) = self.draw();
            if completed >= min && !more {
                break;
            }
            let Some(op) = self.flight.remove(pick) else {
                break;
            };
            // Runs outside the disk's lock: the operation takes it itself.
            // Like `io_uring` (whose queued operations are not linked), a
            // failure does not stop the others: a later write may still
            // land after a failed one, which recovery must judge.
            out.push(op.run());
            completed += 1;
        }
        Ok(())
    }

    fn in_flight(&self) -> usize {
        self.pushed.len() + self.flight.len()
    }
}

impl Drop for SimQueue {
    fn drop(&mut self) {
        // Dropping a queue waits for what is in flight: it all runs, in order.
        self.submit().ok();
        while let Some(op) = self.flight.pop_front() {
            drop(op.run());
        }
    }
}

#[derive(Debug)]
struct SimFile {
    disk: SimDisk,
    generation: u64,
    inode: u64,
    name: String,
    options: FileOptions,
    closed: AtomicBool,
}

impl SimFile {
    /// Locks the disk for an operation on this file: checks the handle is
    /// open and alive, counts the operation and applies fault rules.
    fn begin(&self, op: Op) -> Result<MutexGuard<'_, State>, IoError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(IoError::Closed {
                op,
                path: sim_path(&self.name),
            });
        }
        let mut state = self.disk.lock_state();
        if state.generation != self.generation {
            return Err(IoError::Crashed {
                op,
                path: sim_path(&self.name),
            });
        }
        state.tick(op, &self.name)?;
        Ok(state)
    }

    fn check_size(&self, op: Op, end: u64) -> Result<(), IoError> {
        if end > SIM_FILE_BYTES_MAX {
            return Err(errno(op, &self.name, rustix::io::Errno::FBIG));
        }
        Ok(())
    }

    fn change(&self, state: &mut State, change: Change) {
        if let Some(inode) = state.inodes.get_mut(&self.inode) {
            apply(&mut inode.current, &change);
            inode.pending.push(change);
        }
    }
}

impl StorageFile for SimFile {
    fn name(&self) -> &str {
        &self.name
    }

    fn options(&self) -> FileOptions {
        self.options
    }

    fn write_at(&self, offset: u64, bufs: &[&[u8]]) -> Result<(), IoError> {
        let path = sim_path(&self.name);
        let mut at = offset;
        for b in bufs {
            if self.options.direct {
                check_direct(Op::Write, &path, at, b.len(), b.as_ptr() as usize)?;
            }
            at += b.len() as u64;
        }
        self.check_size(Op::Write, at)?;
        let mut state = self.begin(Op::Write)?;
        self.change(
            &mut state,
            Change::Write {
                offset,
                data: bufs.concat(),
            },
        );
        Ok(())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        if self.options.direct {
            check_direct(
                Op::Read,
                &sim_path(&self.name),
                offset,
                buf.len(),
                buf.as_ptr() as usize,
            )?;
        }
        let state = self.begin(Op::Read)?;
        let current = state
            .inodes
            .get(&self.inode)
            .map(|i| i.current.as_slice())
            .unwrap_or_default();
        let past_end = || IoError::ReadPastEnd {
            path: sim_path(&self.name),
            offset,
            len: buf.len(),
            file_len: current.len() as u64,
        };
        let start = usize::try_from(offset).map_err(|_| past_end())?;
        let end = start.checked_add(buf.len()).ok_or_else(past_end)?;
        let src = current.get(start..end).ok_or_else(past_end)?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn sync_data(&self) -> Result<(), IoError> {
        let mut state = match self.begin(Op::SyncData) {
            Ok(state) => state,
            Err(e) => {
                // Linux marks the pages of a failed writeback clean: what the
                // sync covered stays readable but never becomes durable.
                if matches!(e, IoError::Os { .. }) {
                    let mut state = self.disk.lock_state();
                    if let Some(inode) = state.inodes.get_mut(&self.inode) {
                        inode.pending.clear();
                    }
                }
                return Err(e);
            }
        };
        if let Some(inode) = state.inodes.get_mut(&self.inode) {
            for change in std::mem::take(&mut inode.pending) {
                apply(&mut inode.durable, &change);
            }
        }
        Ok(())
    }

    fn sync_range(&self, offset: u64, len: u64) -> Result<(), IoError> {
        // The pages of the range, as the kernel writes them back for a
        // `RWF_DSYNC` write: every pending change's part inside them.
        let lo = offset - offset % PAGE_BYTES;
        let hi = offset.saturating_add(len).next_multiple_of(PAGE_BYTES);
        let (mut state, failed) = match self.begin(Op::SyncData) {
            Ok(state) => (state, None),
            Err(e @ IoError::Os { .. }) => (self.disk.lock_state(), Some(e)),
            // A closed or crashed handle changes nothing.
            Err(e) => return Err(e),
        };
        if let Some(inode) = state.inodes.get_mut(&self.inode) {
            let mut outside = Vec::new();
            for change in std::mem::take(&mut inode.pending) {
                let (inside, rest) = split_change(change, lo, hi);
                if let (Some(inside), None) = (inside, &failed) {
                    apply(&mut inode.durable, &inside);
                }
                // Linux marks the pages of a failed writeback clean: the
                // range's changes never become durable, and are dropped.
                outside.extend(rest);
            }
            inode.pending = outside;
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn drop_cache(&self) -> Result<(), IoError> {
        let mut state = self.begin(Op::DropCache)?;
        // What reads return becomes what the device holds, with the pending
        // (dirty) changes on top: changes a failed sync dropped from
        // `pending` vanish, as pages of a failed writeback do when evicted.
        if let Some(inode) = state.inodes.get_mut(&self.inode) {
            let mut seen = inode.durable.clone();
            for change in &inode.pending {
                apply(&mut seen, change);
            }
            inode.current = seen;
        }
        Ok(())
    }

    fn allocate(&self, offset: u64, len: u64) -> Result<(), IoError> {
        let end = offset.saturating_add(len);
        self.check_size(Op::Allocate, end)?;
        let mut state = self.begin(Op::Allocate)?;
        let current_len = state
            .inodes
            .get(&self.inode)
            .map_or(0, |i| i.current.len() as u64);
        if end > current_len {
            self.change(&mut state, Change::SetLen(end));
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), IoError> {
        self.check_size(Op::SetLen, len)?;
        let mut state = self.begin(Op::SetLen)?;
        self.change(&mut state, Change::SetLen(len));
        Ok(())
    }

    fn size(&self) -> Result<u64, IoError> {
        let state = self.begin(Op::Len)?;
        Ok(state
            .inodes
            .get(&self.inode)
            .map_or(0, |i| i.current.len() as u64))
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }
}

impl Drop for SimFile {
    fn drop(&mut self) {
        let mut state = self.disk.lock_state();
        // A handle of a crashed process was already forgotten by the crash.
        if state.generation == self.generation {
            if let Some(inode) = state.inodes.get_mut(&self.inode) {
                inode.handles = inode.handles.saturating_sub(1);
            }
            state.collect();
        }
    }
}
