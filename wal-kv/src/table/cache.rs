//! The block cache: decoded blocks shared by a store's tables, bounded in
//! bytes, evicted by S3-FIFO (Yang et al., SOSP 2023).
//!
//! Why not a hash map keyed by (table, block): a point read on a store
//! larger than the CPU caches pays a memory miss for every line it touches,
//! and a map lookup touches its bucket and its entry before the block. Here
//! each table keeps one slot per block, found by the block's number, which
//! the read already has: a hit is one line (the slot) and then the block.
//! The queues that decide what to evict are touched only when a block is
//! read from its file, under one lock. K2's gets ran 10% faster with the
//! cache warm (DECISIONS.md).
//!
//! S3-FIFO: a block read goes into a small queue (a tenth of the bytes);
//! one that was hit while there moves to the main queue when it reaches
//! the front, the rest are evicted and remembered as ghosts. A ghost read
//! again goes straight to the main queue. The main queue gives a block with
//! hits another turn (a hit counter, at most 3, spent one per turn). So a
//! scan, whose blocks are read once, passes through the small queue and
//! does not evict the blocks that reads keep coming back to.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

use super::Block;
use crate::locks::{lock, read, write};

/// The small queue's share of the cache's bytes, as a divisor.
const SMALL_SHARE_DIVISOR: u64 = 10;
/// Hits a block's counter keeps: how many extra turns the main queue gives.
const HITS_MAX: u8 = 3;

/// Decoded blocks shared by every table of a store, weighed in bytes, and a
/// count of the blocks read from files.
pub(crate) struct BlockCache {
    capacity_bytes: u64,
    queues: Mutex<Queues>,
    /// Blocks read from table files (cache misses and uncached reads).
    pub reads: AtomicU64,
}

/// A new block cache of about `bytes`; 0 keeps nothing.
pub(crate) fn block_cache(bytes: u64) -> Arc<BlockCache> {
    Arc::new(BlockCache {
        capacity_bytes: bytes,
        queues: Mutex::new(Queues::default()),
        reads: AtomicU64::new(0),
    })
}

/// One table's cache slots, one per block.
#[derive(Default)]
pub(crate) struct Slots(Box<[Slot]>);

#[derive(Default)]
struct Slot {
    /// The block while cached. Written only under the cache's queue lock,
    /// and `Some` exactly while one queue entry names it.
    block: RwLock<Option<Arc<Block>>>,
    /// Hits since the block was cached or last given a turn, at most
    /// [`HITS_MAX`]. Counted without a lock: a lost count costs a turn.
    hits: AtomicU8,
    /// Evicted from the small queue recently (see [`Queues::ghosts`]).
    /// Written under the queue lock.
    ghost: AtomicBool,
}

// The memory a table's slots take whether or not anything is cached, as
// `Options::block_cache_bytes` documents it.
const _: () = assert!(size_of::<Slot>() <= 32);

impl Slots {
    /// Slots for a table of `blocks` blocks, none cached.
    pub(crate) fn new(blocks: usize) -> Arc<Slots> {
        Arc::new(Slots((0..blocks).map(|_| Slot::default()).collect()))
    }

    /// `f` of block `i` if it is cached (a hit, counted), else `None`.
    /// The block stays cached while `f` runs.
    pub(crate) fn with_cached<R>(&self, i: usize, f: impl FnOnce(&Block) -> R) -> Option<R> {
        let slot = self.0.get(i)?;
        let out = f(read(&slot.block).as_deref()?);
        slot.hit();
        Some(out)
    }

    /// Block `i` if it is cached (a hit, counted).
    pub(crate) fn cached(&self, i: usize) -> Option<Arc<Block>> {
        let slot = self.0.get(i)?;
        let block = read(&slot.block).clone()?;
        slot.hit();
        Some(block)
    }
}

impl Slot {
    fn hit(&self) {
        // Only a count below the cap is written: a block many readers hit
        // does not have its line written by each of them.
        let hits = self.hits.load(Ordering::Relaxed);
        if hits < HITS_MAX {
            self.hits.store(hits + 1, Ordering::Relaxed);
        }
    }
}

/// What is cached, in eviction order, and what was recently evicted.
#[derive(Default)]
struct Queues {
    small: VecDeque<Resident>,
    small_bytes: u64,
    main: VecDeque<Resident>,
    main_bytes: u64,
    /// Blocks evicted from the small queue without a hit, oldest first, at
    /// most as many as are cached: one read again soon was evicted too
    /// early, and goes to the main queue.
    ghosts: VecDeque<(Weak<Slots>, u32)>,
}

/// A cached block: its table's slots, its number, its weight.
struct Resident {
    slots: Weak<Slots>,
    block: u32,
    weight: u64,
}

impl BlockCache {
    /// Caches `block`, block `i` of the table whose slots are `slots`,
    /// evicting others to stay within the capacity. A block heavier than
    /// the whole cache, or already cached, is not added.
    pub(crate) fn insert(&self, slots: &Arc<Slots>, i: usize, block: &Arc<Block>) {
        let weight = block.weight();
        let (Some(slot), Ok(number)) = (slots.0.get(i), u32::try_from(i)) else {
            return;
        };
        if weight > self.capacity_bytes {
            return;
        }
        let mut q = lock(&self.queues);
        {
            let mut cached = write(&slot.block);
            if cached.is_some() {
                return; // another reader read it meanwhile
            }
            *cached = Some(Arc::clone(block));
        }
        slot.hits.store(0, Ordering::Relaxed);
        let resident = Resident {
            slots: Arc::downgrade(slots),
            block: number,
            weight,
        };
        if slot.ghost.swap(false, Ordering::Relaxed) {
            q.main_bytes += weight;
            q.main.push_back(resident);
        } else {
            q.small_bytes += weight;
            q.small.push_back(resident);
        }
        while q.small_bytes + q.main_bytes > self.capacity_bytes && q.evict_one(self.capacity_bytes)
        {
        }
    }

    /// Drops every block of the table whose slots are `slots` (the table
    /// is going away), and their weight.
    pub(crate) fn forget(&self, slots: &Arc<Slots>) {
        let mut q = lock(&self.queues);
        let ours = |r: &Resident| std::ptr::eq(r.slots.as_ptr(), Arc::as_ptr(slots));
        let (small, main) = (
            q.small
                .iter()
                .filter(|r| ours(r))
                .map(|r| r.weight)
                .sum::<u64>(),
            q.main
                .iter()
                .filter(|r| ours(r))
                .map(|r| r.weight)
                .sum::<u64>(),
        );
        q.small.retain(|r| !ours(r));
        q.main.retain(|r| !ours(r));
        q.small_bytes -= small;
        q.main_bytes -= main;
        q.ghosts
            .retain(|(s, _)| !std::ptr::eq(s.as_ptr(), Arc::as_ptr(slots)));
        for slot in &slots.0 {
            *write(&slot.block) = None;
        }
    }

    /// The weight of the cached blocks, in bytes.
    #[cfg(test)]
    pub(crate) fn cached_bytes(&self) -> u64 {
        let q = lock(&self.queues);
        let weigh = |v: &VecDeque<Resident>| v.iter().map(|r| r.weight).sum::<u64>();
        assert_eq!(q.small_bytes, weigh(&q.small), "small queue's count");
        assert_eq!(q.main_bytes, weigh(&q.main), "main queue's count");
        q.small_bytes + q.main_bytes
    }
}

impl Queues {
    /// Evicts one block, or moves one along; false when nothing is cached.
    fn evict_one(&mut self, capacity_bytes: u64) -> bool {
        if self.small_bytes > capacity_bytes / SMALL_SHARE_DIVISOR || self.main.is_empty() {
            let Some(r) = self.small.pop_front() else {
                return false;
            };
            self.small_bytes -= r.weight;
            let Some(slots) = r.slots.upgrade() else {
                return true; // its table is gone; the weight goes with it
            };
            let Some(slot) = slots.0.get(r.block as usize) else {
                return true;
            };
            if slot.hits.swap(0, Ordering::Relaxed) > 0 {
                self.main_bytes += r.weight;
                self.main.push_back(r);
            } else {
                *write(&slot.block) = None;
                slot.ghost.store(true, Ordering::Relaxed);
                self.ghosts.push_back((r.slots, r.block));
                self.trim_ghosts();
            }
            return true;
        }
        // Each block gets at most HITS_MAX more turns than it had hits when
        // it came round, so this ends unless hits keep coming in faster
        // than the queue turns; the bound ends it then too.
        let mut turns = HITS_MAX as usize * self.main.len() + 1;
        while let Some(r) = self.main.pop_front() {
            self.main_bytes -= r.weight;
            let Some(slots) = r.slots.upgrade() else {
                return true;
            };
            let Some(slot) = slots.0.get(r.block as usize) else {
                return true;
            };
            let hits = slot.hits.load(Ordering::Relaxed);
            if hits > 0 && turns > 0 {
                turns -= 1;
                slot.hits.store(hits - 1, Ordering::Relaxed);
                self.main_bytes += r.weight;
                self.main.push_back(r);
                continue;
            }
            *write(&slot.block) = None;
            return true;
        }
        false
    }

    /// Forgets the oldest ghosts past as many as there are cached blocks.
    /// (A block evicted twice is two ghosts, and the older one's expiry
    /// clears the mark early: the mark is a hint, never a correctness
    /// matter.)
    fn trim_ghosts(&mut self) {
        while self.ghosts.len() > self.small.len() + self.main.len() {
            if let Some((slots, i)) = self.ghosts.pop_front()
                && let Some(slots) = slots.upgrade()
                && let Some(slot) = slots.0.get(i as usize)
            {
                slot.ghost.store(false, Ordering::Relaxed);
            }
        }
    }
}
