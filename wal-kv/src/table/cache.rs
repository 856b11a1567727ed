//! The block cache: decoded blocks shared by a store's tables, bounded in
//! bytes, evicted by S3-FIFO (Yang et al., SOSP 2023).
//!
//! Why not a hash map keyed by (table, block): a point read on a store
//! larger than the CPU caches pays a memory miss for every line it touches,
//! and a map lookup touches its bucket and its entry before the block. Here
//! each table keeps one slot per block, found by the block's number, which
//! the read already has: a hit is one line (the slot) and then the block.
//! The queues that decide what to evict sit behind one lock, taken when a
//! block read from its file is added and when a table with cached blocks
//! goes away; never by a hit. (DECISIONS.md has the measurements.)
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
use std::sync::{Arc, Mutex, RwLock, TryLockError};

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
    /// The block stays cached while `f` runs: eviction passes over a block
    /// being read rather than wait for it.
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
        // Only a count below the cap is written: past it a hit adds no
        // store of its own to the line the read lock already wrote.
        let hits = self.hits.load(Ordering::Relaxed);
        if hits < HITS_MAX {
            self.hits.store(hits + 1, Ordering::Relaxed);
        }
    }

    /// Empties the slot unless a reader holds the block; false if one does.
    fn try_clear(&self) -> bool {
        match self.block.try_write() {
            Ok(mut block) => *block = None,
            Err(TryLockError::Poisoned(e)) => *e.into_inner() = None,
            Err(TryLockError::WouldBlock) => return false,
        }
        true
    }
}

/// What is cached, in eviction order, and what was recently evicted.
#[derive(Default)]
struct Queues {
    small: VecDeque<Resident>,
    small_bytes: u64,
    main: VecDeque<Resident>,
    main_bytes: u64,
    /// Blocks evicted from the small queue without a hit, oldest first,
    /// trimmed after every insert to as many as are cached: one read again
    /// soon was evicted too early, and goes to the main queue.
    ghosts: VecDeque<(Arc<Slots>, u32)>,
}

/// A cached block: its table's slots, its number, its weight. Entries and
/// ghosts hold their table's slots; a table going away removes them
/// ([`BlockCache::forget`]), so the slots go with the table.
struct Resident {
    slots: Arc<Slots>,
    block: u32,
    weight: u64,
}

impl Resident {
    fn slot(&self) -> &Slot {
        &self.slots.0[self.block as usize]
    }
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
            // Before the block is seen: a hit on it then counts.
            slot.hits.store(0, Ordering::Relaxed);
            *cached = Some(Arc::clone(block));
        }
        let resident = Resident {
            slots: Arc::clone(slots),
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
        q.trim_ghosts();
    }

    /// Takes the blocks of the table whose slots are `slots` out of the
    /// queues, with their weight: the table is going away.
    pub(crate) fn forget(&self, slots: &Arc<Slots>) {
        // Only the queues hold the slots besides the table, and nothing
        // adds to them for a table being dropped: one holder, no entries.
        if Arc::strong_count(slots) == 1 {
            return;
        }
        let mut q = lock(&self.queues);
        let q = &mut *q;
        let ours = |s: &Arc<Slots>| Arc::ptr_eq(s, slots);
        for (queue, bytes) in [
            (&mut q.small, &mut q.small_bytes),
            (&mut q.main, &mut q.main_bytes),
        ] {
            queue.retain(|r| {
                if ours(&r.slots) {
                    *bytes -= r.weight;
                }
                !ours(&r.slots)
            });
        }
        q.ghosts.retain(|(s, _)| !ours(s));
        // The slots keep their blocks until the table drops them, right
        // after this: nothing reads a table being dropped.
    }

    /// The weight of the cached blocks, in bytes, after checking the
    /// queues against the slots of `tables` (every table with blocks
    /// cached): each cached block is named by exactly one entry, the
    /// weights add up, and the ghosts are no more than the entries.
    #[cfg(test)]
    pub(crate) fn audit(&self, tables: &[&Slots]) -> u64 {
        let q = lock(&self.queues);
        let weigh = |v: &VecDeque<Resident>| v.iter().map(|r| r.weight).sum::<u64>();
        assert_eq!(q.small_bytes, weigh(&q.small), "small queue's count");
        assert_eq!(q.main_bytes, weigh(&q.main), "main queue's count");
        let mut listed = std::collections::HashSet::new();
        for r in q.small.iter().chain(&q.main) {
            assert!(
                listed.insert((Arc::as_ptr(&r.slots), r.block)),
                "block {} listed twice",
                r.block
            );
            assert!(
                read(&r.slot().block).is_some(),
                "a listed block's slot is empty"
            );
        }
        for slots in tables {
            let cached = slots.0.iter().filter(|s| read(&s.block).is_some()).count();
            let named = listed
                .iter()
                .filter(|(s, _)| std::ptr::eq(*s, *slots))
                .count();
            assert_eq!(cached, named, "cached blocks no entry names");
        }
        assert!(q.ghosts.len() <= listed.len(), "ghosts past the entries");
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
            // A block with a hit, or one being read right now, moves on.
            if r.slot().hits.swap(0, Ordering::Relaxed) > 0 || !r.slot().try_clear() {
                self.main_bytes += r.weight;
                self.main.push_back(r);
            } else {
                r.slot().ghost.store(true, Ordering::Relaxed);
                self.ghosts.push_back((r.slots, r.block));
            }
            return true;
        }
        // Each block gets at most HITS_MAX more turns than it had hits when
        // it came round, and a block being read one more; hits coming in
        // faster than the queue turns would keep it going, so the turns
        // are bounded too, and then the front block goes, waiting for its
        // reader if it has one.
        let mut turns = (usize::from(HITS_MAX) + 1) * self.main.len() + 1;
        while let Some(r) = self.main.pop_front() {
            self.main_bytes -= r.weight;
            let slot = r.slot();
            if turns > 0 {
                turns -= 1;
                let hits = slot.hits.load(Ordering::Relaxed);
                let again = if hits > 0 {
                    slot.hits.store(hits - 1, Ordering::Relaxed);
                    true
                } else {
                    !slot.try_clear()
                };
                if again {
                    self.main_bytes += r.weight;
                    self.main.push_back(r);
                    continue;
                }
            } else {
                *write(&slot.block) = None;
            }
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
                && let Some(slot) = slots.0.get(i as usize)
            {
                slot.ghost.store(false, Ordering::Relaxed);
            }
        }
    }
}
