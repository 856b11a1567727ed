//! The log: appenders, the I/O owner thread, watermarks and waiters.

use std::collections::{BTreeMap, VecDeque};
use std::ops::{ControlFlow, Range};
use std::path::Path;
use std::task::Waker;
use std::time::{Duration, Instant};

use wal_format::{
    CleanClose, FRAME_ALIGN, FRAME_HEADER_LEN, FrameBuf, FrameBuilder, FrameEncoder,
    RECORD_PREFIX_LEN, Record, TERMINATOR_LEN, encode_seal,
};
use wal_io::{BackendChoice, Completion, DirLock, IoBuf, IoError, IoQueue, Storage};

use crate::recovery::{RecoveryReport, Replay, ReplayFrom, recover};
use crate::segment::{self, Active, Ids, SegMeta, SpareFile};
use crate::stats::{Stats, StatsCollector};
use crate::sync::thread::{self, JoinHandle, Thread};
use crate::sync::{
    Arc, AtomicU64, Condvar, Mutex, MutexGuard, Ordering, RwLock, RwLockReadGuard,
    RwLockWriteGuard, StdArc, lock,
};
use crate::write_buf::WriteBuf;
use crate::{Options, Reader, SyncPolicy, WalError};

/// Placeholder identity of a frame under construction: the writer binds the
/// real one when it knows which segment the frame lands in.
const UNBOUND_SEGMENT_ID: u64 = 1;

/// Room kept at the end of every segment for its seal frame.
const SEAL_SPACE_BYTES: u64 = FRAME_HEADER_LEN as u64;

/// Something waiting for an LSN to become durable.
enum Wake {
    Thread(Thread),
    Task(Waker),
    Callback(Box<dyn FnOnce(Result<(), WalError>) + Send>),
}

impl Wake {
    fn fire(self, result: &Result<(), WalError>) {
        match self {
            Wake::Thread(t) => t.unpark(),
            Wake::Task(w) => w.wake(),
            Wake::Callback(f) => f(result.clone()),
        }
    }
}

/// What appenders and the owner share under one short lock.
struct State {
    /// The frame being filled, laid out in `buf` (the next write).
    buf: WriteBuf,
    frame: Option<FrameBuilder>,
    next_lsn: u64,
    written: u64,
    durable: u64,
    /// The highest LSN a caller asked to make durable.
    sync_upto: u64,
    pending_since: Option<Instant>,
    last_sync: Instant,
    /// The failure that stopped the log (a plain `Arc`: it is data, shared
    /// with every error returned, not synchronisation).
    poisoned: Option<StdArc<IoError>>,
    closing: bool,
    /// Counted here, under the lock appenders hold anyway.
    appends: u64,
    append_bytes: u64,
    waiters: BTreeMap<u64, Vec<Wake>>,
}

/// What only the thread doing I/O touches.
struct Io {
    /// The frame being written: swapped with the state's buffer at each round.
    batch: WriteBuf,
    active: Active,
    ids: Ids,
    encoder: FrameEncoder,
    seal: Vec<u8>,
    /// The spare for the rotation after this segment has been asked for.
    spare_requested: bool,
    /// The pipelined O_DIRECT writer's queue ([`Options::direct_io`]).
    pipe: Option<Pipe>,
}

/// The next segment is prepared once the active one is this fraction full:
/// early enough that zero-filling it (tens of milliseconds per 64 MiB) ends
/// before the rotation, late enough that a log opened only to be read, or
/// one that stays small, never writes a spare at all.
const SPARE_AT_FRACTION: u64 = 4;

pub(crate) struct Shared {
    pub(crate) storage: StdArc<dyn Storage>,
    pub(crate) options: Options,
    log_id: u64,
    state: Mutex<State>,
    /// The owner waits here for work.
    work: Condvar,
    /// Appenders wait here for queue space.
    space: Condvar,
    /// Lock order: `io` before `state`.
    io: Mutex<Io>,
    pub(crate) segments: RwLock<Vec<Arc<SegMeta>>>,
    durable: AtomicU64,
    written: AtomicU64,
    appended: AtomicU64,
    stats: StatsCollector,
    /// The next segment, prepared ahead by the preparer thread.
    spare: Mutex<Spare>,
    spare_cv: Condvar,
    _lock: DirLock,
}

/// The hand-over between the preparer thread and rotation.
#[derive(Default)]
struct Spare {
    ready: Option<SpareFile>,
    wanted: bool,
    /// The preparer is filling the spare file: nothing else may take its name.
    filling: bool,
    closing: bool,
}

/// The outcome of waiting for `lsn`, if the state already decides it.
///
/// Fail-stop: once poisoned, every wait fails, even for an LSN made durable
/// before. A waiter whose LSN was in flight gets the I/O error itself, as the
/// failed write or sync was its own.
fn decided(st: &State, lsn: u64) -> Option<Result<(), WalError>> {
    if let Some(e) = &st.poisoned {
        return Some(Err(if lsn > st.durable {
            WalError::Io(e.clone())
        } else {
            WalError::Poisoned(e.clone())
        }));
    }
    (st.durable >= lsn).then_some(Ok(()))
}

impl Shared {
    pub(crate) fn durable_lsn(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    pub(crate) fn segments_read(&self) -> RwLockReadGuard<'_, Vec<Arc<SegMeta>>> {
        self.segments
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn segments_write(&self) -> RwLockWriteGuard<'_, Vec<Arc<SegMeta>>> {
        self.segments
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn check_usable(st: &State) -> Result<(), WalError> {
        if let Some(e) = &st.poisoned {
            return Err(WalError::Poisoned(e.clone()));
        }
        if st.closing {
            return Err(WalError::Closed);
        }
        Ok(())
    }

    /// Registers `wake` for `lsn` unless it is already durable or the log
    /// is unusable; returns the immediate result in that case.
    fn register(&self, lsn: u64, wake: impl FnOnce() -> Wake) -> Option<Result<(), WalError>> {
        let mut st = lock(&self.state);
        if let Some(result) = decided(&st, lsn) {
            return Some(result);
        }
        if lsn >= st.next_lsn {
            return Some(Err(WalError::BeyondEnd {
                lsn,
                next: st.next_lsn,
            }));
        }
        st.waiters.entry(lsn).or_default().push(wake());
        if st.sync_upto < lsn {
            st.sync_upto = lsn;
            self.work.notify_one();
        }
        None
    }

    /// The outcome of waiting for `lsn`, if it is already decided.
    fn settled(&self, lsn: u64) -> Option<Result<(), WalError>> {
        decided(&lock(&self.state), lsn)
    }

    /// Waits until `lsn` is durable, asking the owner to sync if its policy
    /// would not.
    pub(crate) fn wait_durable(&self, lsn: u64) -> Result<(), WalError> {
        loop {
            if let Some(result) = self.register(lsn, || Wake::Thread(thread::current())) {
                return result;
            }
            if self.try_lead(lsn) {
                continue;
            }
            // Leading may have blocked on the state lock; look once more
            // before sleeping. (On std an unpark before park is never lost;
            // loom's model of a blocked lock can swallow it, and this keeps
            // the models honest about what the code relies on.)
            if let Some(result) = self.settled(lsn) {
                return result;
            }
            thread::park();
        }
    }

    pub(crate) fn poll_durable(&self, lsn: u64, waker: &Waker) -> Option<Result<(), WalError>> {
        self.register(lsn, || Wake::Task(waker.clone()))
    }

    /// Like [`Shared::poll_durable`], but asks for no sync and accepts LSNs
    /// not yet appended: for tailing.
    pub(crate) fn poll_passive(&self, lsn: u64, waker: &Waker) -> Option<Result<(), WalError>> {
        let mut st = lock(&self.state);
        if st.durable >= lsn {
            return Some(Ok(()));
        }
        if let Some(e) = &st.poisoned {
            return Some(Err(WalError::Poisoned(e.clone())));
        }
        if st.closing {
            return Some(Err(WalError::Closed));
        }
        st.waiters
            .entry(lsn)
            .or_default()
            .push(Wake::Task(waker.clone()));
        None
    }

    /// Waits, without asking for a sync, until `lsn` is durable or `timeout` passes.
    pub(crate) fn wait_passive(
        &self,
        lsn: u64,
        timeout: Option<Duration>,
    ) -> Result<bool, WalError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            {
                let mut st = lock(&self.state);
                if st.durable >= lsn {
                    return Ok(true);
                }
                if let Some(e) = &st.poisoned {
                    return Err(WalError::Poisoned(e.clone()));
                }
                if st.closing {
                    return Err(WalError::Closed);
                }
                st.waiters
                    .entry(lsn)
                    .or_default()
                    .push(Wake::Thread(thread::current()));
            }
            match deadline {
                None => thread::park(),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Ok(false);
                    }
                    thread::park_timeout(d - now);
                }
            }
        }
    }

    fn poison(&self, st: &mut State, error: IoError) -> (Vec<Wake>, Result<(), WalError>) {
        let error = StdArc::new(error);
        tracing::error!(%error, "write-ahead log poisoned");
        st.poisoned = Some(error.clone());
        let woken = std::mem::take(&mut st.waiters)
            .into_values()
            .flatten()
            .collect();
        (woken, Err(WalError::Io(error)))
    }
}

/// A segmented, group-committed write-ahead log. See the crate docs for the
/// durability contract it keeps.
pub struct Wal {
    shared: Arc<Shared>,
    owner: Mutex<Option<JoinHandle<()>>>,
    preparer: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("backend", &self.shared.storage.backend())
            .field("durable_lsn", &self.durable_lsn())
            .finish()
    }
}

impl Wal {
    /// Opens (creating if empty) the log in directory `dir`, which must
    /// exist, with the `io_uring`-capable backend where the kernel allows it.
    ///
    /// # Errors
    /// [`WalError::InvalidOptions`], an I/O error (the directory lock is held
    /// by another process: [`IoError::Locked`]), or [`WalError::Corrupt`] when
    /// recovery finds damage the recovery mode may not repair.
    pub fn open(
        dir: impl AsRef<Path>,
        options: Options,
    ) -> Result<(Wal, RecoveryReport), WalError> {
        let storage = wal_io::open_dir(dir, BackendChoice::Auto)?;
        Wal::open_with(storage, options)
    }

    /// Opens the log on any [`Storage`], such as a simulated disk.
    ///
    /// ```
    /// use wal_engine::{Options, Wal};
    /// use wal_io::sim::{CrashMode, SimDisk};
    ///
    /// let disk = SimDisk::new(7);
    /// let (wal, _) = Wal::open_with(disk.storage(), Options::default())?;
    /// wal.commit(b"kept")?;
    /// wal.append(b"maybe lost")?;
    /// disk.crash(CrashMode::LoseAll); // power loss: unsynced data is gone
    /// drop(wal);
    ///
    /// let (_wal, report) = Wal::open_with(disk.storage(), Options::default())?;
    /// assert!(report.records >= 1);
    /// # Ok::<(), wal_engine::WalError>(())
    /// ```
    ///
    /// # Errors
    /// As [`Wal::open`].
    pub fn open_with(
        storage: StdArc<dyn Storage>,
        options: Options,
    ) -> Result<(Wal, RecoveryReport), WalError> {
        Wal::open_inner(storage, options, None)
    }

    /// Opens the log in directory `dir` as [`Wal::open`] does, and hands
    /// every record from `from` on to `each`, in LSN order, while recovery
    /// reads it: a replay at startup reads the log once instead of twice
    /// (once to recover, once more with a [`Reader`]).
    ///
    /// `each` gets exactly the records a [`Reader`] from `from` would yield
    /// right after the open, up to the last recovered one, unless it returns
    /// [`ControlFlow::Break`], after which it gets no more (the log still
    /// opens). It may see records before recovery refuses to open the log
    /// (a [`WalError::Corrupt`] in a later segment, say): on an error, throw
    /// away what it built. At most a few whole segments are in memory at a
    /// time.
    ///
    /// ```
    /// use std::ops::ControlFlow;
    /// use wal_engine::{Options, ReplayFrom, Wal};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let (wal, _) = Wal::open(dir.path(), Options::default())?;
    /// for word in ["a", "b", "c"] {
    ///     wal.commit(word.as_bytes())?;
    /// }
    /// drop(wal);
    ///
    /// let mut state = Vec::new();
    /// let from = ReplayFrom::Lsn(2); // or ReplayFrom::Start for all there is
    /// let (wal, report) = Wal::open_replaying(dir.path(), Options::default(), from, |record| {
    ///     state.push((record.lsn, record.data));
    ///     ControlFlow::Continue(())
    /// })?;
    /// assert_eq!(state, [(2, "b".into()), (3, "c".into())]);
    /// assert_eq!((report.next_lsn, wal.durable_lsn()), (4, 3));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Wal::open`], and [`WalError::Purged`] if `from` is an LSN below
    /// the log's first (use [`ReplayFrom::Start`] for all there is).
    pub fn open_replaying(
        dir: impl AsRef<Path>,
        options: Options,
        from: ReplayFrom,
        each: impl FnMut(Record) -> ControlFlow<()>,
    ) -> Result<(Wal, RecoveryReport), WalError> {
        let storage = wal_io::open_dir(dir, BackendChoice::Auto)?;
        Wal::open_with_replaying(storage, options, from, each)
    }

    /// [`Wal::open_replaying`] on any [`Storage`], such as a simulated disk.
    ///
    /// ```
    /// use std::ops::ControlFlow;
    /// use wal_engine::{Options, ReplayFrom, Wal};
    /// use wal_io::sim::SimDisk;
    ///
    /// let disk = SimDisk::new(7);
    /// let (wal, _) = Wal::open_with(disk.storage(), Options::default())?;
    /// wal.append_batch(&[b"debit", b"credit"])?;
    /// wal.sync()?;
    /// drop(wal);
    ///
    /// let mut seen = 0;
    /// let (_wal, _) = Wal::open_with_replaying(disk.storage(), Options::default(), ReplayFrom::Start, |_| {
    ///     seen += 1;
    ///     ControlFlow::Break(()) // enough: the log still opens
    /// })?;
    /// assert_eq!(seen, 1);
    /// # Ok::<(), wal_engine::WalError>(())
    /// ```
    ///
    /// # Errors
    /// As [`Wal::open_replaying`].
    pub fn open_with_replaying(
        storage: StdArc<dyn Storage>,
        options: Options,
        from: ReplayFrom,
        mut each: impl FnMut(Record) -> ControlFlow<()>,
    ) -> Result<(Wal, RecoveryReport), WalError> {
        Wal::open_inner(storage, options, Some(Replay::new(from, &mut each)))
    }

    fn open_inner(
        storage: StdArc<dyn Storage>,
        options: Options,
        replay: Option<Replay<'_>>,
    ) -> Result<(Wal, RecoveryReport), WalError> {
        options.validate()?;
        let dir_lock = storage.lock()?;
        // Taken (and removed, durably) before anything is written: a record
        // left in place would describe an end that later writes moved.
        let clean_close = segment::take_clean_close(&*storage)?;
        let recovered = recover(&*storage, options.recovery, clean_close, replay)?;
        let spare = segment::reclaim_spare(&*storage, &options)?;
        let mut ids = Ids::new(options.identity_seed, recovered.next_lsn);
        let log_id = recovered.log_id.unwrap_or_else(|| ids.next());
        let mut segments = recovered.segments;
        let next_lsn = recovered.next_lsn;
        // What recovery read may live only in the page cache: the process
        // before may have been killed with records written and never
        // synced. They become durable here, before the log calls them so
        // (PostgreSQL syncs its data directory after a crash for the same
        // reason). A file with nothing dirty syncs at little cost. (Pages a
        // failed sync left clean are another matter: docs/ARCHITECTURE.md.)
        for seg in &segments {
            seg.file.sync_data()?;
        }
        storage.sync_dir()?;
        let active = match (segments.last(), recovered.tail) {
            (Some(last), Some(tail)) => {
                // Remove whatever follows the valid prefix (a torn tail, frames
                // of unacknowledged writes) before appending after it: stale
                // frames of this segment must never follow new ones. Zeros
                // after it are left as they are: a prepared segment's written
                // blocks stay written, which keeps syncs cheap.
                let file = &last.file;
                let valid_end = tail.valid_end;
                let size = file.size()?;
                let mut changed = false;
                if !tail.clean && size > valid_end {
                    file.set_len(valid_end)?;
                    changed = true;
                }
                if options.preallocate && file.size()? < options.segment_bytes {
                    file.allocate(0, options.segment_bytes)?;
                    changed = true;
                }
                if changed {
                    file.sync_data()?;
                }
                Active::resume(&*storage, &options, last.clone(), valid_end)?
            }
            _ => {
                let active = segment::create(&*storage, &options, log_id, ids.next(), next_lsn)?;
                segments.push(active.meta.clone());
                active
            }
        };
        let durable = next_lsn - 1;
        let pipe = if options.direct_io {
            // One more slot than writes, for the sync a policy may add.
            Some(Pipe::new(
                storage.queue(options.writes_in_flight_max + 1)?,
                durable,
            ))
        } else {
            None
        };
        let shared = Arc::new(Shared {
            log_id,
            state: Mutex::new(State {
                buf: WriteBuf::with_capacity(options.queue_bytes_max.min(1 << 20)),
                frame: None,
                next_lsn,
                written: durable,
                durable,
                sync_upto: durable,
                pending_since: None,
                last_sync: Instant::now(),
                poisoned: None,
                closing: false,
                appends: 0,
                append_bytes: 0,
                waiters: BTreeMap::new(),
            }),
            work: Condvar::new(),
            space: Condvar::new(),
            io: Mutex::new(Io {
                batch: WriteBuf::with_capacity(options.queue_bytes_max.min(1 << 20)),
                active,
                ids,
                encoder: FrameEncoder::new(options.compression),
                seal: Vec::with_capacity(FRAME_HEADER_LEN),
                spare_requested: false,
                pipe,
            }),
            segments: RwLock::new(segments),
            durable: AtomicU64::new(durable),
            written: AtomicU64::new(durable),
            appended: AtomicU64::new(durable),
            stats: StatsCollector::default(),
            spare: Mutex::new(Spare {
                ready: spare,
                ..Spare::default()
            }),
            spare_cv: Condvar::new(),
            storage,
            options,
            _lock: dir_lock,
        });
        let owner_shared = shared.clone();
        let owner = thread::spawn_named("wal-owner", move || run_owner(&owner_shared)).map_err(
            |source| {
                WalError::io(IoError::Os {
                    op: wal_io::Op::Queue,
                    path: "wal-owner thread".into(),
                    source,
                })
            },
        )?;
        let preparer = if shared.options.prepare_segments {
            let preparer_shared = shared.clone();
            Some(
                thread::spawn_named("wal-preparer", move || run_preparer(&preparer_shared))
                    .map_err(|source| {
                        WalError::io(IoError::Os {
                            op: wal_io::Op::Queue,
                            path: "wal-preparer thread".into(),
                            source,
                        })
                    })?,
            )
        } else {
            None
        };
        let report = recovered.report;
        tracing::info!(
            backend = %shared.storage.backend(),
            first_lsn = report.first_lsn,
            next_lsn = report.next_lsn,
            cuts = report.cuts.len(),
            "write-ahead log opened"
        );
        Ok((
            Wal {
                shared,
                owner: Mutex::new(Some(owner)),
                preparer: Mutex::new(preparer),
            },
            report,
        ))
    }

    /// Appends one record; returns its LSN. Does not wait for the write.
    ///
    /// # Errors
    /// [`WalError::RecordTooLarge`], [`WalError::Poisoned`], [`WalError::Closed`].
    pub fn append(&self, record: &[u8]) -> Result<u64, WalError> {
        self.append_batch(&[record]).map(|r| r.start)
    }

    /// Appends records atomically: after any crash either all of them are in
    /// the log or none is. Returns their LSNs. Waits only while the queue is
    /// full.
    ///
    /// ```
    /// # let (wal, _) = wal_engine::Wal::open_with(wal_io::sim::SimDisk::new(1).storage(), Default::default())?;
    /// let lsns = wal.append_batch(&[b"debit", b"credit"])?;
    /// assert_eq!(lsns, 1..3);
    /// wal.wait_durable(lsns.end - 1)?;
    /// # Ok::<(), wal_engine::WalError>(())
    /// ```
    ///
    /// # Errors
    /// [`WalError::EmptyBatch`], [`WalError::RecordTooLarge`],
    /// [`WalError::BatchTooLarge`], [`WalError::Poisoned`], [`WalError::Closed`].
    pub fn append_batch(&self, records: &[&[u8]]) -> Result<Range<u64>, WalError> {
        let options = &self.shared.options;
        if records.is_empty() {
            return Err(WalError::EmptyBatch);
        }
        let mut encoded = FRAME_HEADER_LEN + FRAME_ALIGN;
        for r in records {
            if r.len() > options.record_bytes_max {
                return Err(WalError::RecordTooLarge {
                    len: r.len(),
                    max: options.record_bytes_max,
                });
            }
            encoded += RECORD_PREFIX_LEN + r.len();
        }
        if encoded > options.queue_bytes_max {
            return Err(WalError::BatchTooLarge {
                len: encoded,
                max: options.queue_bytes_max,
            });
        }
        let mut st = lock(&self.shared.state);
        loop {
            Shared::check_usable(&st)?;
            if st.frame.is_none() || st.buf.len() + encoded <= options.queue_bytes_max {
                break;
            }
            // Backpressure: the queue is full until the owner takes it.
            self.shared.work.notify_one();
            st = self
                .shared
                .space
                .wait(st)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        let first = st.next_lsn;
        let state = &mut *st;
        let new_frame = state.frame.is_none();
        let before = state.buf.len();
        let builder = match &mut state.frame {
            Some(b) => b,
            None => {
                let b = FrameBuilder::begin(&mut state.buf, UNBOUND_SEGMENT_ID, first)
                    .map_err(internal)?;
                state.pending_since = Some(Instant::now());
                state.frame.insert(b)
            }
        };
        for r in records {
            builder.push(&mut state.buf, r).map_err(internal)?;
        }
        let count = records.len() as u64;
        state.next_lsn += count;
        state.appends += count;
        state.append_bytes += (state.buf.len() - before) as u64;
        self.shared
            .appended
            .store(state.next_lsn - 1, Ordering::Release);
        // Wake the owner only when this append gives it something new to
        // decide: a batch to take, or a size threshold crossed. Waking it on
        // every append costs a system call each and makes it spin.
        let threshold = match options.sync {
            SyncPolicy::Group {
                max_batch_bytes, ..
            } => Some(max_batch_bytes),
            SyncPolicy::Never => Some(options.queue_bytes_max / 2),
            SyncPolicy::Always | SyncPolicy::Interval(_) => None,
        };
        let crossed = threshold.is_some_and(|t| before < t && state.buf.len() >= t);
        drop(st);
        if new_frame || crossed {
            self.shared.work.notify_one();
        }
        Ok(first..first + count)
    }

    /// Appends a record and, under [`SyncPolicy::Always`] or
    /// [`SyncPolicy::Group`], waits until it is durable; under the other
    /// policies returns once it is appended. Returns its LSN.
    ///
    /// # Errors
    /// As [`Wal::append`] and [`Wal::wait_durable`].
    pub fn commit(&self, record: &[u8]) -> Result<u64, WalError> {
        let lsn = self.append(record)?;
        if self.shared.options.sync.commit_waits() {
            self.shared.wait_durable(lsn)?;
        }
        Ok(lsn)
    }

    /// Appends a record and waits until it is durable, whatever the policy:
    /// one commit can ask for more durability than the log's policy gives.
    ///
    /// # Errors
    /// As [`Wal::append`] and [`Wal::wait_durable`].
    pub fn commit_durable(&self, record: &[u8]) -> Result<u64, WalError> {
        let lsn = self.append(record)?;
        self.shared.wait_durable(lsn)?;
        Ok(lsn)
    }

    /// Blocks until every record up to `lsn` is durable, asking for a sync if
    /// the policy would not make one.
    ///
    /// # Errors
    /// [`WalError::BeyondEnd`] for an LSN not yet assigned; [`WalError::Io`]
    /// if the write or sync failed; [`WalError::Poisoned`].
    pub fn wait_durable(&self, lsn: u64) -> Result<(), WalError> {
        self.shared.wait_durable(lsn)
    }

    /// A future that resolves when `lsn` is durable. It needs no particular
    /// runtime (the owner thread wakes it), so it can be awaited on tokio
    /// without `spawn_blocking`.
    ///
    /// ```
    /// # let (wal, _) = wal_engine::Wal::open_with(wal_io::sim::SimDisk::new(1).storage(), Default::default())?;
    /// let lsn = wal.append(b"event")?;
    /// let durable = wal.durable(lsn);
    /// // `durable.await` in async code; any executor can poll it.
    /// # drop(durable);
    /// # Ok::<(), wal_engine::WalError>(())
    /// ```
    pub fn durable(&self, lsn: u64) -> crate::DurableFuture {
        crate::DurableFuture::new(self.shared.clone(), lsn)
    }

    /// Calls `callback` once `lsn` is durable (or with the error if the log
    /// fails first). The callback runs on the owner thread, or on this one if
    /// the LSN is already durable: keep it short.
    ///
    /// ```
    /// # let (wal, _) = wal_engine::Wal::open_with(wal_io::sim::SimDisk::new(1).storage(), Default::default())?;
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let lsn = wal.append(b"event")?;
    /// wal.on_durable(lsn, move |result| tx.send(result.is_ok()).unwrap());
    /// assert!(rx.recv().unwrap());
    /// # Ok::<(), wal_engine::WalError>(())
    /// ```
    pub fn on_durable(
        &self,
        lsn: u64,
        callback: impl FnOnce(Result<(), WalError>) + Send + 'static,
    ) {
        let mut callback = Some(callback);
        let result = self.shared.register(lsn, || {
            let f = callback.take();
            Wake::Callback(Box::new(move |r| {
                if let Some(f) = f {
                    f(r);
                }
            }))
        });
        if let (Some(result), Some(f)) = (result, callback) {
            f(result);
        }
    }

    /// Makes everything appended so far durable.
    ///
    /// # Errors
    /// As [`Wal::wait_durable`].
    pub fn sync(&self) -> Result<(), WalError> {
        self.shared.wait_durable(self.appended_lsn())
    }

    /// The last LSN assigned (0 if none ever was).
    pub fn appended_lsn(&self) -> u64 {
        self.shared.appended.load(Ordering::Acquire)
    }

    /// The last LSN written to the file system (not necessarily durable).
    pub fn written_lsn(&self) -> u64 {
        self.shared.written.load(Ordering::Acquire)
    }

    /// The last LSN known durable: it survives a crash or power loss.
    pub fn durable_lsn(&self) -> u64 {
        self.shared.durable_lsn()
    }

    /// The first LSN still in the log.
    pub fn first_lsn(&self) -> u64 {
        self.shared
            .segments_read()
            .first()
            .map_or(1, |s| s.first_lsn)
    }

    /// The backend the log's storage runs on.
    pub fn backend(&self) -> wal_io::Backend {
        self.shared.storage.backend()
    }

    /// A reader of durable records from `lsn` on.
    ///
    /// ```
    /// # let (wal, _) = wal_engine::Wal::open_with(wal_io::sim::SimDisk::new(1).storage(), Default::default())?;
    /// for i in 0..5u8 {
    ///     wal.commit(&[i])?;
    /// }
    /// let tail: Vec<u64> = wal.reader(3)?.map(|r| r.map(|r| r.lsn)).collect::<Result<_, _>>()?;
    /// assert_eq!(tail, [3, 4, 5]);
    /// # Ok::<(), wal_engine::WalError>(())
    /// ```
    ///
    /// # Errors
    /// [`WalError::Purged`] if `lsn` was truncated away.
    pub fn reader(&self, lsn: u64) -> Result<Reader, WalError> {
        let first = self.first_lsn();
        if lsn < first {
            return Err(WalError::Purged { lsn, first });
        }
        Ok(Reader::new(self.shared.clone(), lsn))
    }

    /// A snapshot of the counters and histograms.
    pub fn stats(&self) -> Stats {
        let mut stats = self.shared.stats.snapshot();
        let st = lock(&self.shared.state);
        stats.appends = st.appends;
        stats.append_bytes = st.append_bytes;
        stats
    }

    /// Removes whole segments whose records all come before `lsn` (after a
    /// checkpoint covering them). Records of a segment that also holds `lsn`
    /// or later stay readable; a reader inside a removed segment gets
    /// [`WalError::Purged`]. Returns how many segments went. Crash-safe:
    /// segments go oldest first, so a crash leaves a contiguous log.
    ///
    /// ```
    /// # let (wal, _) = wal_engine::Wal::open_with(wal_io::sim::SimDisk::new(1).storage(), Default::default())?;
    /// # wal.commit(b"x")?;
    /// // After a checkpoint that covers everything before LSN 1000:
    /// let removed = wal.truncate_front(1000)?;
    /// assert_eq!(removed, 0); // one segment, still in use: nothing to remove
    /// # Ok::<(), wal_engine::WalError>(())
    /// ```
    ///
    /// With [`Options::recycle_segments`] one purged file becomes the next
    /// segment instead of being deleted.
    ///
    /// # Errors
    /// [`WalError::Poisoned`] or [`WalError::Closed`] if the log is no
    /// longer usable. An I/O error removing or renaming a file, or syncing
    /// the directory, leaves the directory in an uncertain state: it poisons
    /// the log, and a reopen sorts it out.
    pub fn truncate_front(&self, lsn: u64) -> Result<usize, WalError> {
        let _io = lock(&self.shared.io);
        Shared::check_usable(&lock(&self.shared.state))?;
        self.truncate_front_locked(lsn).or_else(|e| {
            let mut st = lock(&self.shared.state);
            let (woken, result) = self.shared.poison(&mut st, e);
            drop(st);
            woken.into_iter().for_each(|w| w.fire(&result));
            result.map(|()| 0)
        })
    }

    fn truncate_front_locked(&self, lsn: u64) -> Result<usize, IoError> {
        let shared = &*self.shared;
        let mut segs = shared.segments_write();
        let mut removed = 0;
        while segs.len() >= 2 && segs.get(1).is_some_and(|s| s.first_lsn <= lsn) {
            if let Some(oldest) = segs.first() {
                // The file goes first: if that fails, the list still names it.
                let mut spare = lock(&shared.spare);
                let free = spare.ready.is_none() && !spare.filling;
                let recycled = if shared.options.recycle_segments && free {
                    segment::recycle(&*shared.storage, &shared.options, oldest)?
                } else {
                    None
                };
                match recycled {
                    Some(file) => spare.ready = Some(file),
                    None => shared.storage.remove(&oldest.name)?,
                }
                // A reader inside it stops handing out its records: they are
                // purged, and a recycled file will hold others once a
                // rotation (which needs the I/O lock held here) stamps it.
                oldest.set_end_lsn(oldest.first_lsn);
            }
            segs.remove(0);
            removed += 1;
        }
        drop(segs);
        if removed > 0 {
            shared.storage.sync_dir()?;
        }
        Ok(removed)
    }

    /// Removes every record after `lsn`, so that the next append gets
    /// `lsn + 1` (for Raft log conflicts). Everything appended is made durable
    /// first. Crash-safe: after a crash the log is a prefix of the log before
    /// the call that holds every record up to `lsn`; if it still holds later
    /// ones, the truncation did not happen and may be repeated.
    ///
    /// ```
    /// # let (wal, _) = wal_engine::Wal::open_with(wal_io::sim::SimDisk::new(1).storage(), Default::default())?;
    /// for term in [1u8, 1, 1, 2] {
    ///     wal.append(&[term])?;
    /// }
    /// // A new leader's log diverges after LSN 2:
    /// wal.truncate_back(2)?;
    /// assert_eq!(wal.append(&[3])?, 3);
    /// # Ok::<(), wal_engine::WalError>(())
    /// ```
    ///
    /// # Errors
    /// [`WalError::Purged`] if `lsn + 1` is before the first LSN; I/O errors
    /// (which poison the log).
    pub fn truncate_back(&self, lsn: u64) -> Result<(), WalError> {
        loop {
            self.sync()?;
            let mut io = lock(&self.shared.io);
            let mut st = lock(&self.shared.state);
            Shared::check_usable(&st)?;
            if st.frame.is_some() || st.durable + 1 != st.next_lsn {
                // New appends arrived after the sync: make them durable too.
                continue;
            }
            if lsn + 1 >= st.next_lsn {
                return Ok(());
            }
            let first = self
                .shared
                .segments_read()
                .first()
                .map_or(1, |s| s.first_lsn);
            if lsn + 1 < first {
                return Err(WalError::Purged {
                    lsn: lsn + 1,
                    first,
                });
            }
            let result = self.truncate_back_locked(&mut io, lsn);
            return match result {
                Ok(()) => {
                    st.next_lsn = lsn + 1;
                    st.written = lsn;
                    st.durable = lsn;
                    st.sync_upto = st.sync_upto.min(lsn);
                    self.shared.durable.store(lsn, Ordering::Release);
                    self.shared.written.store(lsn, Ordering::Release);
                    self.shared.appended.store(lsn, Ordering::Release);
                    Ok(())
                }
                Err(e) => {
                    let (woken, result) = self.shared.poison(&mut st, e);
                    drop(st);
                    woken.into_iter().for_each(|w| w.fire(&result));
                    result
                }
            };
        }
    }

    fn truncate_back_locked(&self, io: &mut Io, lsn: u64) -> Result<(), IoError> {
        let storage = &*self.shared.storage;
        let mut segs = self.shared.segments_write();
        // Newest first, so a crash leaves a prefix of the log.
        while segs.last().is_some_and(|s| s.first_lsn > lsn) {
            if let Some(old) = segs.pop() {
                // A reader still holding it must not hand out its records,
                // whose LSNs will be given to new ones.
                old.set_end_lsn(old.first_lsn);
                storage.remove(&old.name)?;
            }
        }
        storage.sync_dir()?;
        // A new segment starting at lsn + 1 cuts the one before it there,
        // logically: recovery reads a segment only up to the next one's first
        // LSN. Its creation (synced header and directory) is the commit point.
        let active = segment::create(
            storage,
            &self.shared.options,
            self.shared.log_id,
            io.ids.next(),
            lsn + 1,
        )?;
        if let Some(prev) = segs.last() {
            prev.set_end_lsn(lsn + 1);
        }
        segs.push(active.meta.clone());
        io.active = active;
        if let Some(pipe) = io.pipe.as_mut() {
            pipe.synced_all(lsn);
        }
        Ok(())
    }

    /// Writes and syncs everything appended, stops the owner thread and
    /// releases the directory lock (once every reader is dropped too).
    ///
    /// # Errors
    /// The error that poisoned the log, if one did.
    pub fn close(self) -> Result<(), WalError> {
        self.shutdown()
    }

    fn shutdown(&self) -> Result<(), WalError> {
        {
            let mut st = lock(&self.shared.state);
            st.closing = true;
        }
        self.shared.work.notify_all();
        self.shared.space.notify_all();
        let owner = lock(&self.owner).take();
        let first_shutdown = owner.is_some();
        if let Some(owner) = owner {
            // The owner never panics on I/O errors; a panic is a bug to surface.
            owner
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
        }
        lock(&self.shared.spare).closing = true;
        self.shared.spare_cv.notify_all();
        if let Some(preparer) = lock(&self.preparer).take() {
            preparer
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
        }
        if first_shutdown {
            self.mark_clean_close();
        }
        let mut st = lock(&self.shared.state);
        let woken: Vec<Wake> = std::mem::take(&mut st.waiters)
            .into_values()
            .flatten()
            .collect();
        let result = match &st.poisoned {
            Some(e) => Err(WalError::Poisoned(e.clone())),
            None => Ok(()),
        };
        drop(st);
        let closed = Err(WalError::Closed);
        woken.into_iter().for_each(|w| w.fire(&closed));
        result
    }
}

impl Wal {
    /// Leaves the clean-close record (docs/FORMAT.md) if everything appended
    /// is durable and the log is not poisoned: the next open then verifies
    /// the last segment only up to where its frames end. Nothing is written
    /// after it: every call fails once the log is closing. A failure costs
    /// only that speed-up, so it is logged, not returned.
    fn mark_clean_close(&self) {
        let shared = &*self.shared;
        let io = lock(&shared.io);
        let st = lock(&shared.state);
        if st.poisoned.is_some() || st.frame.is_some() || st.durable + 1 != st.next_lsn {
            return;
        }
        let meta = &io.active.meta;
        let mark = CleanClose::new(
            shared.log_id,
            meta.first_lsn,
            meta.id,
            io.active.offset,
            st.next_lsn,
        );
        drop(st);
        let written = mark.map_err(|e| e.to_string()).and_then(|m| {
            segment::write_clean_close(&*shared.storage, &m).map_err(|e| e.to_string())
        });
        if let Err(error) = written {
            tracing::warn!(%error, "could not leave the clean-close record");
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

fn internal(e: wal_format::EncodeError) -> WalError {
    // Lengths are checked before anything is pushed; reaching this is a bug.
    WalError::InvalidOptions {
        field: "internal",
        reason: format!("frame encoding failed after validation: {e}"),
    }
}

/// What the owner decided to do in one round.
struct Round {
    frame: Option<FrameBuilder>,
    sync: bool,
    durable: u64,
}

/// What the state asks of whoever does I/O next.
enum Decision {
    /// Write the pending frame (if `write`), sync (if `sync`).
    Round { write: bool, sync: bool },
    /// Nothing yet; wake up after this long, or when notified.
    Wait(Option<Duration>),
    /// Closing, and everything is written and synced; or poisoned.
    Stop,
}

fn decide(st: &State, options: &Options, now: Instant) -> Decision {
    if st.poisoned.is_some() {
        return Decision::Stop;
    }
    let first_pending = st.frame.as_ref().map(FrameBuilder::first_lsn);
    let requested = first_pending.is_some_and(|f| st.sync_upto >= f);
    let write = first_pending.is_some()
        && (st.closing
            || requested
            || match options.sync {
                SyncPolicy::Always | SyncPolicy::Interval(_) => true,
                SyncPolicy::Group {
                    max_delay,
                    max_batch_bytes,
                } => {
                    st.buf.len() >= max_batch_bytes
                        || st.pending_since.is_some_and(|t| now >= t + max_delay)
                }
                SyncPolicy::Never => st.buf.len() >= options.queue_bytes_max / 2,
            });
    let unsynced = st.written > st.durable || write;
    let sync = unsynced
        && (st.closing
            || st.sync_upto > st.durable
            || match options.sync {
                SyncPolicy::Always | SyncPolicy::Group { .. } => true,
                SyncPolicy::Interval(d) => now >= st.last_sync + d,
                SyncPolicy::Never => false,
            });
    if write || sync {
        return Decision::Round { write, sync };
    }
    if st.closing {
        return Decision::Stop;
    }
    Decision::Wait(match options.sync {
        SyncPolicy::Group { max_delay, .. } => st
            .pending_since
            .map(|t| (t + max_delay).saturating_duration_since(now)),
        SyncPolicy::Interval(d) if st.written > st.durable => {
            Some((st.last_sync + d).saturating_duration_since(now))
        }
        _ => None,
    })
}

/// Takes the next round if there is one: the pending frame moves out of the
/// shared state into `io.batch`, so appenders fill a fresh one meanwhile.
fn take_round(shared: &Shared, io: &mut Io) -> Option<Round> {
    let mut st = lock(&shared.state);
    let Decision::Round { write, sync } = decide(&st, &shared.options, Instant::now()) else {
        return None;
    };
    let frame = if write { st.frame.take() } else { None };
    if frame.is_some() {
        std::mem::swap(&mut st.buf, &mut io.batch);
        st.pending_since = None;
        shared.space.notify_all();
    }
    Some(Round {
        frame,
        sync,
        durable: st.durable,
    })
}

/// Does a round and publishes its outcome: watermarks, waiters, or poison.
fn run_round(shared: &Shared, mut io: MutexGuard<'_, Io>, round: Round) {
    let io = &mut *io;
    let outcome = do_round(shared, io, round);
    io.batch.clear();
    publish(shared, outcome);
}

impl Shared {
    /// Does the next round on the calling thread if no one else is doing
    /// I/O: a committer that finds the writer idle writes its own batch
    /// instead of waking the owner thread and waiting to be woken back.
    /// Returns whether it did a round.
    fn try_lead(&self, lsn: u64) -> bool {
        let Ok(mut io) = self.io.try_lock() else {
            return false;
        };
        if io.active.direct.is_some() {
            return drive(self, io, Some(lsn));
        }
        match take_round(self, &mut io) {
            Some(round) => {
                run_round(self, io, round);
                true
            }
            None => false,
        }
    }
}

/// The owner thread: waits for work, then does rounds, until the log closes
/// (after writing and syncing everything) or is poisoned.
fn run_owner(shared: &Shared) {
    loop {
        {
            let mut st = lock(&shared.state);
            loop {
                match decide(&st, &shared.options, Instant::now()) {
                    Decision::Round { .. } => break,
                    Decision::Stop => return,
                    Decision::Wait(timeout) => {
                        st = match timeout {
                            Some(t) => shared
                                .work
                                .wait_timeout(st, t)
                                .map_or_else(|p| p.into_inner().0, |(g, _)| g),
                            None => shared
                                .work
                                .wait(st)
                                .unwrap_or_else(std::sync::PoisonError::into_inner),
                        };
                    }
                }
            }
        }
        // Lock order: io, then state (inside take_round). A leader may have
        // taken the round meanwhile; then there is nothing left to do.
        let mut io = lock(&shared.io);
        if io.active.direct.is_some() {
            drive(shared, io, None);
        } else if let Some(round) = take_round(shared, &mut io) {
            run_round(shared, io, round);
        }
    }
}

/// One round of I/O: rotate if the frame does not fit, write it, sync.
/// Returns the new written and durable watermarks.
fn do_round(
    shared: &Shared,
    io: &mut Io,
    round: Round,
) -> Result<(Option<u64>, Option<u64>), IoError> {
    let options = &shared.options;
    let mut written = None;
    let mut durable = None;
    if let Some(frame) = round.frame {
        let span = tracing::debug_span!(
            "wal.batch",
            first_lsn = frame.first_lsn(),
            records = frame.record_count(),
            bytes = io.batch.len()
        );
        let _enter = span.enter();
        let first_lsn = frame.first_lsn();
        if !has_room(&io.active, io.batch.len(), options.segment_bytes) {
            rotate(shared, io, first_lsn, round.durable)?;
            durable = Some(first_lsn - 1);
        }
        let summary = finish_write(io, frame, round.durable)?;
        let offset = io.active.write_at();
        io.active
            .meta
            .file
            .write_at(offset, &[io.batch.as_slice()])?;
        io.active.meta.index_frame(first_lsn, offset);
        io.active.offset = offset + summary.encoded_len as u64;
        if !io.spare_requested && io.active.offset >= options.segment_bytes / SPARE_AT_FRACTION {
            io.spare_requested = true;
            request_spare(shared);
        }
        shared.stats.batch(
            u64::from(summary.record_count),
            summary.encoded_len as u64,
            0,
        );
        written = Some(summary.next_lsn() - 1);
    }
    if round.sync {
        let start = Instant::now();
        io.active.meta.file.sync_data()?;
        shared.stats.synced(start.elapsed());
        durable = Some(written.unwrap_or_else(|| shared.written.load(Ordering::Acquire)));
    }
    Ok((written, durable))
}

/// Encodes the round's frame for the active segment into `io.batch`, as
/// the bytes of one write: the frame, then its terminator (docs/FORMAT.md:
/// in a recycled segment it marks the end of the frames when stale bytes
/// follow; it fits in the room kept for the seal, and the next write
/// overwrites it), then in a padded segment zeros to the block boundary.
fn finish_write(
    io: &mut Io,
    mut frame: FrameBuilder,
    durable: u64,
) -> Result<wal_format::FrameSummary, IoError> {
    frame
        .set_segment_id(io.active.meta.id)
        .map_err(encode_err)?;
    let summary = io
        .encoder
        .finish(frame, &mut io.batch, durable)
        .map_err(encode_err)?;
    let len = io.active.write_len(io.batch.len() + TERMINATOR_LEN);
    io.batch.resize(len, 0);
    Ok(summary)
}

/// Whether a frame of `encoded` bytes (before compression, which only
/// shrinks it) fits the active segment with its terminator and padding,
/// leaving room for the seal after it.
fn has_room(active: &Active, encoded: usize, segment_bytes: u64) -> bool {
    // The 8-byte alignment of a frame adds at most FRAME_ALIGN.
    let frame_max = encoded + FRAME_ALIGN;
    let end = if active.meta.padded {
        // The terminator and padding are the write's; the seal gets a block.
        active.write_at() + active.write_len(frame_max + TERMINATOR_LEN) as u64
    } else {
        // The terminator fits in the room kept for the seal.
        active.offset + frame_max as u64
    };
    end + SEAL_SPACE_BYTES <= segment_bytes
}

/// Seals the active segment (durably: everything in it becomes durable) and
/// starts the next one at `next_lsn`.
fn rotate(shared: &Shared, io: &mut Io, next_lsn: u64, durable: u64) -> Result<(), IoError> {
    io.seal.clear();
    let seal =
        encode_seal(&mut io.seal, io.active.meta.id, next_lsn, durable).map_err(encode_err)?;
    let old = &io.active.meta;
    let at = io.active.write_at();
    old.file.write_at(at, &[io.seal.as_slice()])?;
    io.active.offset = at + seal.encoded_len as u64;
    let start = Instant::now();
    old.file.sync_data()?;
    shared.stats.synced(start.elapsed());
    let id = io.ids.next();
    // The spare's name stays taken until the rename: the preparer, which
    // would remove and refill that name, waits on this lock to see the slot
    // empty, and must not see it empty while the spare still goes by it.
    let mut slot = lock(&shared.spare);
    let spare = slot.ready.take();
    shared.stats.rotated(spare.as_ref().map(|s| s.recycled));
    let next = match spare {
        Some(file) => {
            let next = segment::from_spare(
                &*shared.storage,
                &shared.options,
                file,
                shared.log_id,
                id,
                next_lsn,
            );
            drop(slot);
            next?
        }
        None => {
            drop(slot);
            segment::create(
                &*shared.storage,
                &shared.options,
                shared.log_id,
                id,
                next_lsn,
            )?
        }
    };
    io.spare_requested = false;
    shared.segments_write().push(next.meta.clone());
    tracing::debug!(segment = %next.meta.name, "rotated to a new segment");
    io.active = next;
    Ok(())
}

/// Asks the preparer for a spare segment (when preparation is on).
fn request_spare(shared: &Shared) {
    if shared.options.prepare_segments {
        lock(&shared.spare).wanted = true;
        shared.spare_cv.notify_one();
    }
}

/// The preparer thread: keeps one spare segment ready. Its
/// failures cost only speed (rotation then creates the segment itself), so
/// they are logged, not fatal; the next rotation asks again.
fn run_preparer(shared: &Shared) {
    loop {
        {
            let mut spare = lock(&shared.spare);
            while !(spare.closing || (spare.wanted && spare.ready.is_none())) {
                spare = shared
                    .spare_cv
                    .wait(spare)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            if spare.closing {
                return;
            }
            spare.wanted = false;
            spare.filling = true;
        }
        let prepared = segment::prepare_spare(&*shared.storage, &shared.options);
        let mut spare = lock(&shared.spare);
        spare.filling = false;
        match prepared {
            Ok(file) => {
                spare.ready = Some(SpareFile {
                    file,
                    recycled: false,
                });
            }
            Err(error) => tracing::warn!(%error, "could not prepare the next segment ahead"),
        }
    }
}

fn encode_err(e: wal_format::EncodeError) -> IoError {
    IoError::Unsupported {
        op: wal_io::Op::Write,
        path: "frame".into(),
        reason: e.to_string(),
    }
}

/// The pipelined writer of [`Options::direct_io`]: O_DIRECT writes of whole
/// blocks through a queue, several in flight, each durable on completion
/// (`RWF_DSYNC`) when the policy syncs. Whoever holds the `io` lock drives
/// it, and lets go only with nothing in flight, so everything else that
/// takes the lock (rotation, truncation, close) finds the queue idle.
struct Pipe {
    queue: Box<dyn IoQueue>,
    /// Writes and syncs in flight, in the order they were queued.
    flights: VecDeque<Flight>,
    /// Aligned buffers handed back by completed writes, for reuse.
    free: Vec<IoBuf>,
    next_token: u64,
    /// The last LSN of the last write queued.
    queued: u64,
    /// A write without `RWF_DSYNC` was queued after the last sync: a later
    /// durable write would not cover it, so a sync must follow instead.
    unsynced: bool,
    /// The same, for the completed prefix of `flights`.
    prefix_unsynced: bool,
    /// The first failure: nothing is queued after it, nothing after it
    /// counts, and it poisons the log once the queue is idle.
    failed: Option<IoError>,
    completions: Vec<Completion>,
}

#[derive(Debug)]
struct Flight {
    token: u64,
    done: bool,
    started: Instant,
    kind: FlightKind,
}

#[derive(Debug)]
enum FlightKind {
    Write { last_lsn: u64, durable: bool },
    Sync { upto: u64 },
}

/// Capacity of a new batch buffer when no completed write has handed one
/// back: most batches fit, and a buffer a larger batch grew is reused at its
/// grown size.
const PIPE_BUF_BYTES_MIN: usize = 64 << 10;

impl Pipe {
    fn new(queue: Box<dyn IoQueue>, durable: u64) -> Self {
        Pipe {
            queue,
            flights: VecDeque::new(),
            free: Vec::new(),
            next_token: 0,
            queued: durable,
            unsynced: false,
            prefix_unsynced: false,
            failed: None,
            completions: Vec::new(),
        }
    }

    /// Everything up to `lsn` is durable by other means (a rotation's seal
    /// and sync, a truncation), and nothing is in flight.
    fn synced_all(&mut self, lsn: u64) {
        debug_assert!(self.flights.is_empty());
        self.queued = lsn;
        self.unsynced = false;
        self.prefix_unsynced = false;
    }

    fn writes_in_flight(&self) -> usize {
        self.flights
            .iter()
            .filter(|f| matches!(f.kind, FlightKind::Write { .. }))
            .count()
    }

    /// An empty buffer for the next batch, reused where one is free.
    fn buffer(&mut self) -> WriteBuf {
        match self.free.pop() {
            Some(b) => WriteBuf::from_io_buf(b),
            None => WriteBuf::with_capacity(PIPE_BUF_BYTES_MIN),
        }
    }

    fn push(&mut self, kind: FlightKind) -> u64 {
        let token = self.next_token;
        self.next_token += 1;
        self.flights.push_back(Flight {
            token,
            done: false,
            started: Instant::now(),
            kind,
        });
        token
    }

    /// Waits for at least one completion (submitting what is queued) and
    /// marks what completed. Returns the new written and durable watermarks
    /// of the completed prefix, if they moved.
    fn reap(&mut self, stats: &StatsCollector) -> (Option<u64>, Option<u64>) {
        self.completions.clear();
        if let Err(e) = self.queue.wait(1, &mut self.completions) {
            // Waiting itself failed: what is in flight is unknown.
            self.failed.get_or_insert(e);
            self.wait_all();
            return (None, None);
        }
        for c in self.completions.drain(..) {
            if let Some(buf) = c.buf {
                self.free.push(buf);
            }
            if let Some(f) = self.flights.iter_mut().find(|f| f.token == c.token) {
                f.done = true;
                if let Err(e) = c.result {
                    self.failed.get_or_insert(e);
                }
            }
        }
        if self.failed.is_some() {
            return (None, None);
        }
        let (mut written, mut durable) = (None, None);
        while self.flights.front().is_some_and(|f| f.done) {
            let Some(f) = self.flights.pop_front() else {
                break;
            };
            match f.kind {
                FlightKind::Write {
                    last_lsn,
                    durable: dsync,
                } => {
                    written = Some(last_lsn);
                    if dsync && !self.prefix_unsynced {
                        durable = Some(last_lsn);
                        stats.synced(f.started.elapsed());
                    } else if !dsync {
                        self.prefix_unsynced = true;
                    }
                }
                FlightKind::Sync { upto } => {
                    durable = Some(upto);
                    self.prefix_unsynced = false;
                    stats.synced(f.started.elapsed());
                }
            }
        }
        (written, durable)
    }

    /// After a failure: waits for everything in flight, counting nothing.
    fn wait_all(&mut self) {
        while !self.flights.is_empty() {
            self.completions.clear();
            if self.queue.wait(usize::MAX, &mut self.completions).is_err()
                || self.queue.in_flight() == 0
            {
                break;
            }
            for c in self.completions.drain(..) {
                self.flights.retain(|f| f.token != c.token);
            }
        }
        self.flights.clear();
    }
}

/// Publishes the outcome of I/O: watermarks and the waiters they cover, or
/// the poison. Wakes in LSN order, outside the locks.
fn publish(shared: &Shared, outcome: Result<(Option<u64>, Option<u64>), IoError>) {
    let mut st = lock(&shared.state);
    let (woken, result) = match outcome {
        Ok((written, durable)) => {
            if let Some(w) = written {
                st.written = st.written.max(w);
                shared.written.store(st.written, Ordering::Release);
            }
            if let Some(d) = durable {
                st.durable = st.durable.max(d);
                st.last_sync = Instant::now();
                shared.durable.store(st.durable, Ordering::Release);
            }
            let after = st.durable + 1;
            let later = st.waiters.split_off(&after);
            let woken: Vec<Wake> = std::mem::replace(&mut st.waiters, later)
                .into_values()
                .flatten()
                .collect();
            (woken, Ok(()))
        }
        Err(e) => shared.poison(&mut st, e),
    };
    // More may have arrived during the I/O; the owner decides about it.
    if st.frame.is_some() {
        shared.work.notify_one();
    }
    drop(st);
    woken.into_iter().for_each(|w| w.fire(&result));
    shared.space.notify_all();
}

/// Drives the pipelined writer: queues rounds while there is room, reaps
/// completions and publishes the completed prefix. The owner (`lead` is
/// `None`) keeps going until nothing is in flight and nothing is due; a
/// committer leading (`lead` is its LSN) queues once, then waits for what
/// it queued. Returns whether it queued anything. Leaves nothing in flight.
fn drive(shared: &Shared, mut guard: MutexGuard<'_, Io>, lead: Option<u64>) -> bool {
    let io = &mut *guard;
    let depth = shared.options.writes_in_flight_max as usize;
    let mut queued_any = false;
    let mut fill = true;
    loop {
        while fill
            && io.pipe.as_ref().is_some_and(|p| {
                p.failed.is_none() && p.writes_in_flight() < depth && p.flights.len() <= depth
            })
        {
            let Some(round) = take_round(shared, io) else {
                break;
            };
            let queued = queue_round(shared, io, round);
            // The frame is in the write's buffer now (or the round failed):
            // the next round swaps an empty buffer in.
            io.batch.clear();
            match queued {
                Ok(true) => queued_any = true,
                Ok(false) => break,
                Err(e) => {
                    if let Some(p) = io.pipe.as_mut() {
                        p.failed.get_or_insert(e);
                    }
                    break;
                }
            }
        }
        if lead.is_some() {
            fill = false;
        }
        let Some(pipe) = io.pipe.as_mut() else {
            return queued_any;
        };
        if let Err(e) = pipe.queue.submit() {
            pipe.failed.get_or_insert(e);
        }
        if pipe.failed.is_some() {
            pipe.wait_all();
            let e = pipe.failed.take();
            if let Some(e) = e {
                publish(shared, Err(e));
            }
            return queued_any;
        }
        if pipe.flights.is_empty() {
            return queued_any;
        }
        let moved = pipe.reap(&shared.stats);
        if pipe.failed.is_none() && (moved.0.is_some() || moved.1.is_some()) {
            publish(shared, Ok(moved));
        }
    }
}

/// Queues one round on the pipe: its frame as an O_DIRECT write, and a
/// sync where the policy asks for one the write does not give. Rotates
/// first (with nothing in flight) when the frame does not fit. Returns
/// false when the round needed nothing queued.
fn queue_round(shared: &Shared, io: &mut Io, round: Round) -> Result<bool, IoError> {
    let Some(frame) = round.frame else {
        // A sync alone, when a write queued since the last sync was not
        // durable by itself. Otherwise every write queued is durable when
        // it completes, and waiting for the completions is all there is to do.
        let pipe = io.pipe.as_mut().ok_or_else(no_pipe)?;
        if !round.sync || !pipe.unsynced {
            return Ok(false);
        }
        let file = io.active.direct.as_ref().ok_or_else(no_pipe)?;
        let upto = pipe.queued;
        let token = pipe.push(FlightKind::Sync { upto });
        pipe.queue.push_sync(token, file)?;
        pipe.unsynced = false;
        return Ok(true);
    };
    let first_lsn = frame.first_lsn();
    let span = tracing::debug_span!(
        "wal.batch",
        first_lsn,
        records = frame.record_count(),
        bytes = io.batch.len()
    );
    let _enter = span.enter();
    if !has_room(&io.active, io.batch.len(), shared.options.segment_bytes) {
        // Rotation seals and syncs the segment with buffered I/O: everything
        // queued must be done first.
        drain(shared, io)?;
        rotate(shared, io, first_lsn, round.durable)?;
        let sealed = first_lsn - 1;
        if let Some(pipe) = io.pipe.as_mut() {
            pipe.synced_all(sealed);
        }
        publish(shared, Ok((Some(sealed), Some(sealed))));
    }
    let summary = finish_write(io, frame, round.durable)?;
    let last_lsn = summary.next_lsn() - 1;
    let pipe = io.pipe.as_mut().ok_or_else(no_pipe)?;
    let file = io.active.direct.as_ref().ok_or_else(no_pipe)?;
    // Every write starts a block of its own: two writes in flight must never
    // share one (whichever lands last would undo the other), and a write
    // must never rewrite a block holding acknowledged frames, which a torn
    // or damaged write of that block would take with it.
    let at = io.active.write_at();
    // The batch's own buffer is the write: appenders fill a free one next.
    let buf = std::mem::replace(&mut io.batch, pipe.buffer()).into_io_buf();
    // With a write not yet synced in front, RWF_DSYNC on this one would not
    // cover that one: write plainly and sync after both.
    let dsync = round.sync && !pipe.unsynced;
    let token = pipe.push(FlightKind::Write {
        last_lsn,
        durable: dsync,
    });
    pipe.queue.push_write(token, file, at, buf, dsync)?;
    pipe.queued = last_lsn;
    if !dsync {
        pipe.unsynced = true;
        if round.sync {
            let token = pipe.push(FlightKind::Sync { upto: last_lsn });
            pipe.queue.push_sync(token, file)?;
            pipe.unsynced = false;
        }
    }
    io.active.meta.index_frame(first_lsn, at);
    io.active.offset = at + summary.encoded_len as u64;
    if !io.spare_requested && io.active.offset >= shared.options.segment_bytes / SPARE_AT_FRACTION {
        io.spare_requested = true;
        request_spare(shared);
    }
    shared.stats.batch(
        u64::from(summary.record_count),
        summary.encoded_len as u64,
        pipe_writes(io),
    );
    Ok(true)
}

/// Waits for everything in flight and publishes it.
fn drain(shared: &Shared, io: &mut Io) -> Result<(), IoError> {
    let Some(pipe) = io.pipe.as_mut() else {
        return Ok(());
    };
    pipe.queue.submit()?;
    while !pipe.flights.is_empty() {
        let moved = pipe.reap(&shared.stats);
        if let Some(e) = pipe.failed.take() {
            return Err(e);
        }
        if moved.0.is_some() || moved.1.is_some() {
            publish(shared, Ok(moved));
        }
    }
    Ok(())
}

fn pipe_writes(io: &Io) -> usize {
    io.pipe.as_ref().map_or(0, Pipe::writes_in_flight)
}

fn no_pipe() -> IoError {
    IoError::Unsupported {
        op: wal_io::Op::Queue,
        path: "direct-io writer".into(),
        reason: "the pipelined writer runs only on a padded segment with direct_io on".into(),
    }
}
