//! Levelled compaction: which tables to merge next, and the merge itself.
//!
//! Level 0 holds what checkpoints write, newest first, with overlapping key
//! ranges. Every deeper level is one sorted run: tables in key order with
//! disjoint key ranges, each level allowed [`Options::level_size_ratio`]
//! times the bytes of the one above. For any key, every version in a level
//! is newer than every version in a deeper one, so a read stops at the first
//! level that knows the key, and merging part of a level into the next keeps
//! that order. A step merges either all of level 0 into level 1, or one
//! table of an oversized level with the tables of the next level it
//! overlaps, so each step rewrites a bounded part of the store rather than
//! all of it.

use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;
use wal_io::Storage;

use crate::KvError;
use crate::Options;
use crate::manifest::LEVELS_MAX;
use crate::memtable::Entry;
use crate::table::{BlockCache, Table, TableBuilder, TableIter};

/// The live tables, per level (see the module docs for their order).
pub(crate) type Levels = Vec<Vec<Arc<Table>>>;

/// A stream of entries in table order (key ascending, then LSN descending),
/// or, for reverse reads, key descending.
pub(crate) type Source = Box<dyn Iterator<Item = Result<Entry, KvError>> + Send>;

/// One compaction step.
#[derive(Debug)]
pub(crate) struct Job {
    /// Input tables by level, each list in its level's order.
    pub inputs: Vec<(usize, Vec<Arc<Table>>)>,
    /// The level the output goes to.
    pub to: usize,
    /// Nothing older than the inputs holds their keys, so a tombstone that
    /// no reader needs can go.
    pub bottom: bool,
}

impl Job {
    /// A table that overlaps nothing in the next level moves down without
    /// being rewritten.
    pub fn is_move(&self) -> bool {
        matches!(self.inputs.as_slice(), [(from, tables)] if *from + 1 == self.to && tables.len() == 1)
    }

    pub fn input_ids(&self) -> Vec<u64> {
        self.inputs
            .iter()
            .flat_map(|(_, tables)| tables.iter().map(|t| t.id))
            .collect()
    }

    /// The inputs as merge sources: each level-0 table alone, each deeper
    /// level as one run. Blocks read bypass the block cache.
    pub fn sources(&self) -> Vec<Source> {
        let mut sources: Vec<Source> = Vec::new();
        for (level, tables) in &self.inputs {
            if *level == 0 {
                for t in tables {
                    sources.push(Box::new(t.iter(
                        Bound::Unbounded,
                        Bound::Unbounded,
                        false,
                        false,
                    )));
                }
            } else {
                sources.push(Box::new(LevelIter::new(
                    tables,
                    Bound::Unbounded,
                    Bound::Unbounded,
                    false,
                    false,
                )));
            }
        }
        sources
    }
}

/// The bytes level `level` (1 or deeper) may hold before it is compacted.
fn level_target_bytes(options: &Options, level: usize) -> u64 {
    let mut target = options.level1_bytes_target;
    for _ in 1..level {
        target = target.saturating_mul(u64::from(options.level_size_ratio));
    }
    target
}

/// The smallest first key and largest last key of `tables`.
fn span<'a>(tables: impl IntoIterator<Item = &'a Arc<Table>>) -> Option<(Bytes, Bytes)> {
    let mut span: Option<(Bytes, Bytes)> = None;
    for t in tables {
        if let Some((first, last)) = t.key_range() {
            span = Some(match span {
                None => (first.clone(), last.clone()),
                Some((lo, hi)) => (lo.min(first.clone()), hi.max(last.clone())),
            });
        }
    }
    span
}

fn overlapping(level: &[Arc<Table>], lo: &[u8], hi: &[u8]) -> Vec<Arc<Table>> {
    level
        .iter()
        .filter(|t| t.overlaps(lo, hi))
        .cloned()
        .collect()
}

/// The next step the shape of `levels` calls for, if any. `cursors` holds
/// per level the last key compacted out of it, so steps take a level's
/// tables in turn rather than always the same one.
pub(crate) fn pick(
    levels: &Levels,
    options: &Options,
    cursors: &mut [Option<Bytes>],
) -> Option<Job> {
    let empty = Vec::new();
    let level = |i: usize| levels.get(i).unwrap_or(&empty);
    let (from, upper) = if level(0).len() > options.compaction_trigger {
        (0, level(0).clone())
    } else {
        // The level most over its target; the last level has no next one.
        let (score, from) = (1..LEVELS_MAX - 1)
            .map(|i| {
                let bytes: u64 = level(i).iter().map(|t| t.size).sum();
                (bytes as f64 / level_target_bytes(options, i) as f64, i)
            })
            .max_by(|a, b| a.0.total_cmp(&b.0))?;
        if score <= 1.0 {
            return None;
        }
        let tables = level(from);
        let cursor = cursors.get(from).cloned().flatten();
        let after = cursor.map_or(0, |c| {
            tables.partition_point(|t| t.key_range().is_some_and(|(first, _)| *first <= c))
        });
        let table = tables.get(after).or_else(|| tables.first())?;
        (from, vec![Arc::clone(table)])
    };
    let (lo, hi) = span(&upper)?;
    if let Some(cursor) = cursors.get_mut(from) {
        *cursor = Some(hi.clone());
    }
    let to = from + 1;
    let lower = overlapping(level(to), &lo, &hi);
    let bottom = !levels
        .iter()
        .skip(to + 1)
        .flatten()
        .any(|t| t.overlaps(&lo, &hi));
    let mut inputs = vec![(from, upper)];
    if !lower.is_empty() {
        inputs.push((to, lower));
    }
    Some(Job { inputs, to, bottom })
}

/// Every table into one sorted run at the deepest level in use (level 1 at
/// least): what [`crate::Store::compact`] asks for.
pub(crate) fn full(levels: &Levels) -> Option<Job> {
    let inputs: Vec<(usize, Vec<Arc<Table>>)> = levels
        .iter()
        .enumerate()
        .filter(|(_, tables)| !tables.is_empty())
        .map(|(i, tables)| (i, tables.clone()))
        .collect();
    let deepest = inputs.last()?.0;
    Some(Job {
        inputs,
        to: deepest.max(1),
        bottom: true,
    })
}

/// `levels` after `job`: its inputs gone, `outputs` in level `job.to`.
///
/// # Errors
/// The result breaks the levels' invariant (a bug): the caller stops the
/// store rather than record such a manifest.
pub(crate) fn install(
    levels: &Levels,
    job: &Job,
    outputs: Vec<Arc<Table>>,
) -> Result<Levels, String> {
    let gone = job.input_ids();
    let mut next: Levels = levels
        .iter()
        .map(|l| {
            l.iter()
                .filter(|t| !gone.contains(&t.id))
                .cloned()
                .collect()
        })
        .collect();
    if next.len() <= job.to {
        next.resize_with(job.to + 1, Vec::new);
    }
    let target = &mut next[job.to];
    target.extend(outputs);
    target.sort_by(|a, b| a.key_range().map(|r| r.0).cmp(&b.key_range().map(|r| r.0)));
    while next.len() > 1 && next.last().is_some_and(Vec::is_empty) {
        next.pop();
    }
    check(&next).map_err(|e| format!("compaction would break the levels' order: {e}"))?;
    Ok(next)
}

/// The shape every level below 0 must have: tables with keys, in key
/// order, with disjoint ranges.
pub(crate) fn check(levels: &Levels) -> Result<(), String> {
    if levels.len() > LEVELS_MAX {
        return Err(format!("{} levels, at most {LEVELS_MAX}", levels.len()));
    }
    for (i, level) in levels.iter().enumerate().skip(1) {
        let mut previous: Option<&Bytes> = None;
        for t in level {
            let Some((first, last)) = t.key_range() else {
                return Err(format!("level {i}: table {} has no keys", t.id));
            };
            if previous.is_some_and(|p| p >= first) {
                return Err(format!("level {i}: table {} overlaps the one before", t.id));
            }
            previous = Some(last);
        }
    }
    Ok(())
}

/// Writes compaction or checkpoint output: tables cut once they pass
/// `split_bytes`, never between two versions of one key (a level's tables
/// must have disjoint key ranges).
pub(crate) struct Outputs<'a> {
    storage: &'a dyn Storage,
    options: &'a Options,
    cache: &'a Arc<BlockCache>,
    split_bytes: u64,
    next_id: u64,
    builder: Option<(u64, TableBuilder)>,
    done: Vec<Arc<Table>>,
}

impl<'a> Outputs<'a> {
    pub fn new(
        storage: &'a dyn Storage,
        options: &'a Options,
        cache: &'a Arc<BlockCache>,
        first_id: u64,
        split_bytes: u64,
    ) -> Outputs<'a> {
        Outputs {
            storage,
            options,
            cache,
            split_bytes,
            next_id: first_id,
            builder: None,
            done: Vec::new(),
        }
    }

    pub fn add(&mut self, e: &Entry) -> Result<(), KvError> {
        if let Some((_, b)) = &self.builder
            && b.data_bytes() >= self.split_bytes
            && b.last_key() != Some(&e.key)
        {
            self.finish_table()?;
        }
        let (_, builder) = match &mut self.builder {
            Some(b) => b,
            None => {
                let id = self.next_id;
                self.next_id += 1;
                let b = TableBuilder::create(
                    self.storage,
                    id,
                    self.options.compression,
                    self.options.block_bytes,
                )?;
                self.builder.insert((id, b))
            }
        };
        builder.add(e)
    }

    fn finish_table(&mut self) -> Result<(), KvError> {
        if let Some((id, b)) = self.builder.take() {
            self.done
                .push(Arc::new(b.finish(id, Arc::clone(self.cache))?));
        }
        Ok(())
    }

    /// The tables written (each synced), and the next unused table id.
    pub fn finish(mut self) -> Result<(Vec<Arc<Table>>, u64), KvError> {
        self.finish_table()?;
        Ok((self.done, self.next_id))
    }
}

/// Writes entries (key ascending, LSN descending), keeping per key every
/// version newer than `keep_from` and the newest at or below it, which a
/// reader at `keep_from` or later may still need. `bottom`: nothing older
/// exists below these entries, so that newest version is dropped too when
/// it is a tombstone.
pub(crate) fn write_pruned(
    out: &mut Outputs<'_>,
    entries: impl Iterator<Item = Result<Entry, KvError>>,
    keep_from: u64,
    bottom: bool,
) -> Result<(), KvError> {
    let mut current: Option<Bytes> = None;
    let mut settled = false; // the newest version <= keep_from was seen
    for e in entries {
        let e = e?;
        if current.as_ref() != Some(&e.key) {
            current = Some(e.key.clone());
            settled = false;
        }
        if e.lsn > keep_from {
            out.add(&e)?;
        } else if !settled {
            settled = true;
            if !(bottom && e.value.is_none()) {
                out.add(&e)?;
            }
        }
    }
    Ok(())
}

/// Merges sources, each in the same order and holding distinct versions,
/// into one stream in that order: table order, or key descending when
/// `rev` (the versions of one key then come together, in no set order).
pub(crate) struct Merge {
    iters: Vec<std::iter::Peekable<Source>>,
    rev: bool,
}

impl Merge {
    pub fn new(sources: Vec<Source>, rev: bool) -> Merge {
        Merge {
            iters: sources.into_iter().map(Iterator::peekable).collect(),
            rev,
        }
    }
}

impl Iterator for Merge {
    type Item = Result<Entry, KvError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut pick: Option<(usize, Bytes, u64)> = None;
        for (i, it) in self.iters.iter_mut().enumerate() {
            let (key, lsn) = match it.peek() {
                None => continue,
                Some(Err(_)) => return it.next(),
                Some(Ok(e)) => (e.key.clone(), e.lsn),
            };
            let better = pick.as_ref().is_none_or(|(_, best_key, best_lsn)| {
                if self.rev {
                    key > *best_key
                } else {
                    (&key, std::cmp::Reverse(lsn)) < (best_key, std::cmp::Reverse(*best_lsn))
                }
            });
            if better {
                pick = Some((i, key, lsn));
            }
        }
        let (i, _, _) = pick?;
        self.iters.get_mut(i)?.next()
    }
}

/// Reads one sorted run (a level below 0) within bounds, one table at a
/// time, in either direction.
pub(crate) struct LevelIter {
    tables: std::vec::IntoIter<Arc<Table>>,
    current: Option<TableIter>,
    lo: Bound<Bytes>,
    hi: Bound<Bytes>,
    cached: bool,
    rev: bool,
}

impl LevelIter {
    pub fn new(
        level: &[Arc<Table>],
        lo: Bound<Bytes>,
        hi: Bound<Bytes>,
        cached: bool,
        rev: bool,
    ) -> LevelIter {
        let mut tables: Vec<Arc<Table>> = level
            .iter()
            .filter(|t| {
                t.key_range().is_some_and(|(first, last)| {
                    let above_lo = match &lo {
                        Bound::Included(k) | Bound::Excluded(k) => last >= k,
                        Bound::Unbounded => true,
                    };
                    let below_hi = match &hi {
                        Bound::Included(k) | Bound::Excluded(k) => first <= k,
                        Bound::Unbounded => true,
                    };
                    above_lo && below_hi
                })
            })
            .cloned()
            .collect();
        if rev {
            tables.reverse();
        }
        LevelIter {
            tables: tables.into_iter(),
            current: None,
            lo,
            hi,
            cached,
            rev,
        }
    }
}

impl Iterator for LevelIter {
    type Item = Result<Entry, KvError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.current.as_mut().and_then(Iterator::next) {
                return Some(item);
            }
            let t = self.tables.next()?;
            self.current = Some(t.iter(self.lo.clone(), self.hi.clone(), self.cached, self.rev));
        }
    }
}
