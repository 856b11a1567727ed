//! openraft's log storage on one `wal-engine` log.
//!
//! Each entry is one record; an `append` of many entries is one batch of
//! records, and its flush callback fires from the log's durability
//! notification, so concurrent appends share one group commit and no
//! thread waits per append. The newest entries are also kept in memory
//! (`tail`): those not yet durable, which the log's readers cannot see, and
//! then as many as fit [`CACHE_BYTES_MAX`], since replication reads the
//! newest entries again right after they were appended and a reader over
//! the log's files costs far more than a clone. `truncate_after` is the log's `truncate_back`, `purge` its
//! `truncate_front` after the purge point is in the metadata file; both are
//! crash-safe in the log. The committed log id rides as a record of its own
//! in front of the next append's entries (durable with that group commit:
//! saving it costs no write and no fsync of its own).

use std::collections::VecDeque;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::{LogState, RaftLogReader};
use wal_engine::Wal;
use wal_io::Storage;

use crate::codec::{self, Meta, Record};
use crate::{Entry, LogId, RaftStoreError, TypeConfig, Vote, meta};

/// The Raft log of one node. See the crate docs.
#[derive(Debug)]
pub struct LogStore {
    shared: Arc<Shared>,
}

/// Reads entries and the vote, beside the [`LogStore`] that writes them.
#[derive(Debug, Clone)]
pub struct LogReader {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    wal: Wal,
    storage: Arc<dyn Storage>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The Raft index of the first live entry (when there is one).
    first_index: u64,
    /// Each live entry's LSN and log id, by index from `first_index`.
    ids: VecDeque<(u64, LogId)>,
    /// The newest live entries, oldest first, with their encoded sizes:
    /// the last `tail.len()` of `ids`. Holds every entry not yet durable.
    tail: VecDeque<(Entry, usize)>,
    /// The sum of the sizes in `tail`.
    tail_bytes: usize,
    /// How many bytes of durable entries `tail` may keep.
    cache_bytes_max: usize,
    meta: Meta,
    committed: Option<LogId>,
    /// `committed` is newer than the last committed record written.
    committed_unwritten: bool,
}

impl State {
    fn last_log_id(&self) -> Option<LogId> {
        self.ids.back().map(|&(_, id)| id).or(self.meta.purged)
    }

    /// The index the next entry must have.
    fn next_index(&self) -> Option<u64> {
        match (self.ids.back(), self.meta.purged) {
            (Some((_, id)), _) => Some(id.index + 1),
            (None, Some(p)) => Some(p.index + 1),
            (None, None) => None, // the first entry may have any index
        }
    }

    /// Takes entry `id` at `lsn` as the next live one (in index order).
    fn push(&mut self, lsn: u64, id: LogId) -> Result<(), RaftStoreError> {
        if let Some(next) = self.next_index()
            && id.index != next
        {
            return Err(RaftStoreError::corrupt(
                format!("raft log at LSN {lsn}"),
                format!("entry {} where {next} was due", id.index),
            ));
        }
        if self.ids.is_empty() {
            self.first_index = id.index;
        }
        self.ids.push_back((lsn, id));
        Ok(())
    }

    /// Drops from `tail` the oldest entries over its budget that the log's
    /// readers can read.
    fn settle(&mut self, durable_lsn: u64) {
        while self.tail_bytes > self.cache_bytes_max
            && let Some((first, bytes)) = self.tail.front()
        {
            let at = self.ids.len() - self.tail.len();
            debug_assert_eq!(self.ids[at].1, first.log_id, "tail and ids agree");
            if self.ids[at].0 > durable_lsn {
                break;
            }
            self.tail_bytes -= bytes;
            self.tail.pop_front();
        }
    }

    /// Keeps the newest `len` entries of `tail`.
    fn keep_newest(&mut self, len: usize) {
        while self.tail.len() > len {
            if let Some((_, bytes)) = self.tail.pop_front() {
                self.tail_bytes -= bytes;
            }
        }
    }

    /// Keeps the oldest `len` entries of `tail`.
    fn keep_oldest(&mut self, len: usize) {
        while self.tail.len() > len {
            if let Some((_, bytes)) = self.tail.pop_back() {
                self.tail_bytes -= bytes;
            }
        }
    }
}

/// How many bytes of the newest durable entries stay in memory for the
/// readers by default (entries not yet durable stay whatever their size);
/// see [`LogStore::set_cache_bytes_max`].
pub const CACHE_BYTES_MAX: usize = 16 << 20;

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LogStore {
    /// Opens (creating) the Raft log on `storage`: its metadata, then every
    /// record of the log, rebuilding the index of live entries.
    ///
    /// # Errors
    /// The log's recovery errors; a corrupt record or metadata file; a log
    /// whose entries do not follow each other.
    pub fn open(
        storage: Arc<dyn Storage>,
        options: wal_engine::Options,
    ) -> Result<LogStore, RaftStoreError> {
        let mut meta = meta::read(&*storage)?;
        // A leader that restarts must win an election before it leads
        // again. Its last entries may have reached the followers and not
        // its own disk; leading on in the same term (openraft's
        // `enable_leader_restore`, on by default) would hand out their log
        // ids again for other entries, and a follower that holds the old
        // entry under the same id keeps it: two nodes would apply
        // different entries at one index. The vote stays committed on
        // disk; only the view openraft starts from is demoted, as openraft
        // itself does with restore off, and the next vote saved heals it.
        if let Some(vote) = meta.vote.as_mut() {
            vote.committed = false;
        }
        let (wal, _report) = Wal::open_with(Arc::clone(&storage), options)?;
        let mut state = State {
            meta,
            cache_bytes_max: CACHE_BYTES_MAX,
            ..State::default()
        };
        let first = wal.first_lsn();
        if wal.appended_lsn() >= first {
            for record in wal.reader(first)? {
                let record = record?;
                match codec::decode(&record.data, record.lsn)? {
                    Record::Committed(id) => state.committed = Some(id),
                    // Entries the purge point covers may linger in a
                    // segment the front truncation kept.
                    Record::Entry(e)
                        if state.meta.purged.is_some_and(|p| e.log_id.index <= p.index) => {}
                    Record::Entry(e) => state.push(record.lsn, e.log_id)?,
                }
            }
        }
        Ok(LogStore {
            shared: Arc::new(Shared {
                wal,
                storage,
                state: Mutex::new(state),
            }),
        })
    }

    /// Sets how many bytes of the newest durable entries stay in memory
    /// (by default [`CACHE_BYTES_MAX`]); older ones are read from the
    /// log's files. Entries not yet durable stay in memory whatever this
    /// says: the log's readers cannot see them yet.
    pub fn set_cache_bytes_max(&self, bytes: usize) {
        let mut st = lock(&self.shared.state);
        st.cache_bytes_max = bytes;
        let durable = self.shared.wal.durable_lsn();
        st.settle(durable);
    }

    /// The log underneath (its stats: syncs, bytes).
    pub fn wal(&self) -> &Wal {
        &self.shared.wal
    }
}

impl Shared {
    /// The live entries with indexes in `range`, in order: those the log
    /// holds durably from its files, the newer ones from memory. Under the
    /// state lock, so no truncation runs in between.
    fn entries(&self, range: impl RangeBounds<u64>) -> Result<Vec<Entry>, RaftStoreError> {
        let mut st = lock(&self.state);
        st.settle(self.wal.durable_lsn());
        let Some(&(_, last)) = st.ids.back() else {
            return Ok(Vec::new());
        };
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        }
        .max(st.first_index);
        let end = match range.end_bound() {
            Bound::Included(&e) => e.saturating_add(1),
            Bound::Excluded(&e) => e,
            Bound::Unbounded => u64::MAX,
        }
        .min(last.index + 1);
        if start >= end {
            return Ok(Vec::new());
        }
        let offset = |index: u64| usize::try_from(index - st.first_index).unwrap_or(usize::MAX);
        let tail_from = st.first_index + (st.ids.len() - st.tail.len()) as u64;
        let mut out = Vec::with_capacity(usize::try_from(end - start).unwrap_or(0));
        if start < tail_from {
            let stop = end.min(tail_from);
            let (first_lsn, _) = st.ids[offset(start)];
            let mut reader = self.wal.reader(first_lsn)?;
            while (out.len() as u64) < stop - start {
                let record = reader.next().ok_or_else(|| {
                    RaftStoreError::corrupt(
                        "raft log",
                        format!("ends before entry {}", start + out.len() as u64),
                    )
                })??;
                if let Record::Entry(e) = codec::decode(&record.data, record.lsn)? {
                    let want = st.ids[offset(start) + out.len()];
                    if (record.lsn, e.log_id) != want {
                        return Err(RaftStoreError::corrupt(
                            format!("raft log at LSN {}", record.lsn),
                            format!("entry {} where {} was due", e.log_id, want.1),
                        ));
                    }
                    out.push(e);
                }
            }
        }
        let from = usize::try_from(start.max(tail_from) - tail_from).unwrap_or(usize::MAX);
        let upto = usize::try_from(end.saturating_sub(tail_from)).unwrap_or(usize::MAX);
        out.extend(
            st.tail
                .range(from.min(st.tail.len())..upto.min(st.tail.len()))
                .map(|(e, _)| e.clone()),
        );
        Ok(out)
    }
}

fn io_err(e: impl Into<RaftStoreError>) -> io::Error {
    io::Error::from(e.into())
}

impl LogReader {
    /// The Raft log's counters (syncs, bytes, records), as its writer
    /// keeps them: with the log store moved into openraft, the reader is
    /// how a node's fsyncs per commit are measured.
    pub fn log_stats(&self) -> wal_engine::Stats {
        self.shared.wal.stats()
    }
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        self.shared.entries(range).map_err(io_err)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(lock(&self.shared.state).meta.vote)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let st = lock(&self.shared.state);
        Ok(LogState {
            last_purged_log_id: st.meta.purged,
            last_log_id: st.last_log_id(),
        })
    }

    async fn get_log_reader(&mut self) -> LogReader {
        LogReader {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Durable before it returns, and after every entry appended before it
    /// (Raft's writes are ordered, the vote's included).
    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let shared = &*self.shared;
        shared.wal.sync().map_err(io_err)?;
        let mut st = lock(&shared.state);
        let meta = Meta {
            vote: Some(*vote),
            ..st.meta.clone()
        };
        meta::write(&*shared.storage, &meta).map_err(io_err)?;
        st.meta = meta;
        Ok(())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        let mut st = lock(&self.shared.state);
        if committed.is_some() && st.committed != committed {
            st.committed_unwritten = true;
        }
        st.committed = committed;
        Ok(())
    }

    /// The last committed log id saved, if the log still holds it (a crash
    /// may have taken the newest entries, and the record with them).
    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        let st = lock(&self.shared.state);
        let last = st.last_log_id();
        Ok(st
            .committed
            .filter(|c| last.is_some_and(|l| c.index <= l.index)))
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let shared = &*self.shared;
        let mut st = lock(&shared.state);
        let entries: Vec<Entry> = entries.into_iter().collect();
        let Some(last) = entries.last().map(|e| e.log_id) else {
            drop(st);
            callback.io_completed(Ok(()));
            return Ok(());
        };
        let mut records = Vec::with_capacity(entries.len() + 1);
        let mut next = st.next_index();
        for e in &entries {
            if next.is_some_and(|n| n != e.log_id.index) {
                return Err(io_err(RaftStoreError::Misuse(format!(
                    "append of entry {} where {} is next",
                    e.log_id,
                    next.unwrap_or_default()
                ))));
            }
            next = Some(e.log_id.index + 1);
            records.push(codec::encode_entry(e).map_err(io_err)?);
        }
        // The committed id saved since the last append goes first, in the
        // same batch: no write or fsync of its own.
        let committed = st
            .committed
            .filter(|_| st.committed_unwritten)
            .map(|id| codec::encode_committed(&id));
        let mut refs: Vec<&[u8]> = Vec::with_capacity(records.len() + 1);
        refs.extend(committed.as_deref());
        refs.extend(records.iter().map(Vec::as_slice));
        let lsns = shared.wal.append_batch(&refs).map_err(io_err)?;
        st.committed_unwritten = false;
        let entry_lsns = lsns.start + u64::from(committed.is_some())..lsns.end;
        let sizes: Vec<usize> = records.iter().map(Vec::len).collect();
        for ((lsn, e), bytes) in entry_lsns.zip(entries).zip(sizes) {
            st.push(lsn, e.log_id).map_err(io_err)?;
            st.tail.push_back((e, bytes));
            st.tail_bytes += bytes;
        }
        debug_assert_eq!(st.last_log_id(), Some(last));
        drop(st);
        // Fired by the log's group commit; no thread waits here.
        shared.wal.on_durable(lsns.end - 1, move |result| {
            callback.io_completed(result.map_err(io_err));
        });
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let shared = &*self.shared;
        let mut st = lock(&shared.state);
        let Some(&(_, last)) = st.ids.back() else {
            return Ok(());
        };
        let keep = last_log_id.map(|l| l.index + 1).unwrap_or(0);
        if keep > last.index {
            return Ok(());
        }
        let cut = keep.max(st.first_index);
        let kept = usize::try_from(cut - st.first_index).unwrap_or(usize::MAX);
        let (lsn, _) = st.ids[kept];
        // Everything from the first cut entry's record on goes.
        shared.wal.truncate_back(lsn - 1).map_err(io_err)?;
        let gone = st.ids.len() - kept;
        st.ids.truncate(kept);
        let tail_left = st.tail.len().saturating_sub(gone);
        st.keep_oldest(tail_left);
        if st.committed.is_some_and(|c| c.index >= cut) {
            st.committed = None;
        }
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let shared = &*self.shared;
        let mut st = lock(&shared.state);
        if st.meta.purged.is_some_and(|p| p.index >= log_id.index) {
            return Ok(());
        }
        // The purge point is durable before any entry goes: a crash in
        // between leaves entries the open skips, never a gap it cannot
        // explain.
        let meta = Meta {
            purged: Some(log_id),
            ..st.meta.clone()
        };
        meta::write(&*shared.storage, &meta).map_err(io_err)?;
        st.meta = meta;
        let gone = usize::try_from((log_id.index + 1).saturating_sub(st.first_index))
            .unwrap_or(usize::MAX)
            .min(st.ids.len());
        st.ids.drain(..gone);
        let kept_tail = st.tail.len().min(st.ids.len());
        st.keep_newest(kept_tail);
        st.first_index = st.ids.front().map_or(log_id.index + 1, |&(_, id)| id.index);
        let front = st
            .ids
            .front()
            .map_or(shared.wal.appended_lsn() + 1, |&(lsn, _)| lsn);
        drop(st);
        shared.wal.truncate_front(front).map_err(io_err)?;
        Ok(())
    }
}
