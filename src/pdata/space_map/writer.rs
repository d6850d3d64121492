//! The in-core metadata space map of the writer (PERSISTENT-DATA.md §7): one
//! reference count per metadata block, the allocation policy of §7.9, and the
//! encoders for bitmap blocks and index entries.
//!
//! Counts are kept in one byte per block (0, 1, 2, or 3 = "look in `big`"), the
//! way the on-disk bitmaps keep them, so a device of the largest size (4 161 600
//! blocks) costs 4 MiB. The on-disk part (which blocks hold the index, the bitmaps
//! and the ref-count tree, and rewriting them at commit) is driven by the
//! transaction manager ([`crate::pdata::tm`]), because writing the space map
//! allocates blocks from the space map itself (§7.8).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use crate::io::Block;
use crate::pdata::space_map::{set_bitmap_entry, IndexEntry, ENTRIES_PER_BITMAP};

/// Why a space-map operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmError {
    /// No block is free in both the current and the last committed state.
    NoSpace {
        /// Blocks the space map tracks.
        nr_blocks: u64,
    },
    /// A block number at or past `nr_blocks`.
    OutOfRange {
        /// The block.
        block: u64,
        /// Blocks the space map tracks.
        nr_blocks: u64,
    },
    /// A decrement of a block whose count is already zero.
    Underflow {
        /// The block.
        block: u64,
    },
}

impl fmt::Display for SmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SmError::NoSpace { nr_blocks } => {
                write!(
                    f,
                    "out of metadata space: all {nr_blocks} blocks are in use"
                )
            }
            SmError::OutOfRange { block, nr_blocks } => write!(
                f,
                "block {block} is beyond the space map's {nr_blocks} blocks"
            ),
            SmError::Underflow { block } => {
                write!(f, "reference count of block {block} would drop below zero")
            }
        }
    }
}

impl std::error::Error for SmError {}

/// Reference counts of every metadata block, with the last committed counts of
/// the blocks changed since.
#[derive(Debug, Clone)]
pub struct SpaceMap {
    nr_blocks: u64,
    /// 0, 1, 2, or 3 = the count is in `big`.
    small: Vec<u8>,
    /// Counts of 3 or more (the overflow ref-count tree's content, §7.4).
    big: BTreeMap<u64, u32>,
    /// Committed count of every block changed in this transaction (old_ll, §7.9).
    orig: HashMap<u64, u32>,
    nr_allocated: u64,
    /// Allocation cursor (`begin`, §7.9).
    cursor: u64,
    /// Bitmaps with an entry changed since they were last encoded.
    dirty_bitmaps: BTreeSet<u64>,
    /// `big` changed since the ref-count tree was last written.
    big_dirty: bool,
}

impl SpaceMap {
    /// An empty space map over `nr_blocks` blocks (capped by the caller at
    /// [`crate::pdata::space_map::MAX_METADATA_BLOCKS`]). Every bitmap is dirty: none
    /// has been written yet.
    pub fn new(nr_blocks: u64) -> Self {
        let n = usize::try_from(nr_blocks).expect("space map size fits in memory");
        SpaceMap {
            nr_blocks,
            small: vec![0; n],
            big: BTreeMap::new(),
            orig: HashMap::new(),
            nr_allocated: 0,
            cursor: 0,
            dirty_bitmaps: (0..nr_blocks.div_ceil(ENTRIES_PER_BITMAP)).collect(),
            big_dirty: true,
        }
    }

    /// A space map holding `counts` (as read from disk), all of them committed.
    pub fn from_counts(nr_blocks: u64, counts: impl IntoIterator<Item = (u64, u32)>) -> Self {
        let mut sm = SpaceMap::new(nr_blocks);
        for (b, c) in counts {
            if b < nr_blocks && c > 0 {
                sm.store(b, c);
                sm.nr_allocated += 1;
            }
        }
        sm.dirty_bitmaps.clear();
        sm.big_dirty = false;
        sm
    }

    /// Blocks tracked.
    pub fn nr_blocks(&self) -> u64 {
        self.nr_blocks
    }

    /// Blocks with a non-zero count.
    pub fn nr_allocated(&self) -> u64 {
        self.nr_allocated
    }

    /// Number of bitmap blocks.
    pub fn nr_bitmaps(&self) -> u64 {
        self.nr_blocks.div_ceil(ENTRIES_PER_BITMAP)
    }

    /// The reference count of `b` (0 past the end).
    pub fn count(&self, b: u64) -> u32 {
        match self.small.get(b as usize) {
            Some(3) => self.big.get(&b).copied().unwrap_or(3),
            Some(&v) => v as u32,
            None => 0,
        }
    }

    /// The count of `b` as of the last commit.
    pub fn committed_count(&self, b: u64) -> u32 {
        self.orig.get(&b).copied().unwrap_or_else(|| self.count(b))
    }

    fn store(&mut self, b: u64, c: u32) {
        let i = b as usize;
        if c >= 3 {
            self.small[i] = 3;
            self.big.insert(b, c);
            self.big_dirty = true;
        } else {
            if self.small[i] == 3 {
                self.big.remove(&b);
                self.big_dirty = true;
            }
            self.small[i] = c as u8;
        }
    }

    fn set(&mut self, b: u64, c: u32) -> Result<(), SmError> {
        if b >= self.nr_blocks {
            return Err(SmError::OutOfRange {
                block: b,
                nr_blocks: self.nr_blocks,
            });
        }
        let old = self.count(b);
        self.orig.entry(b).or_insert(old);
        match (old, c) {
            (0, c) if c > 0 => self.nr_allocated += 1,
            (o, 0) if o > 0 => self.nr_allocated -= 1,
            _ => {}
        }
        // Counts of 3 or more live in the tree; a change between two of them does
        // not touch the bitmap.
        if old.min(3) != c.min(3) {
            self.dirty_bitmaps.insert(b / ENTRIES_PER_BITMAP);
        }
        self.store(b, c);
        Ok(())
    }

    /// Adds one reference to `b`.
    pub fn inc(&mut self, b: u64) -> Result<(), SmError> {
        let c = self.count(b);
        self.set(b, c.saturating_add(1))
    }

    /// Drops one reference to `b`; returns the new count.
    pub fn dec(&mut self, b: u64) -> Result<u32, SmError> {
        let c = self.count(b);
        if c == 0 {
            return Err(SmError::Underflow { block: b });
        }
        self.set(b, c - 1)?;
        Ok(c - 1)
    }

    /// True when `b` may be handed out: free now and free at the last commit, so
    /// the committed state is never overwritten (§7.9).
    pub fn is_allocatable(&self, b: u64) -> bool {
        self.count(b) == 0 && self.committed_count(b) == 0
    }

    /// Allocates a block (count 1): the first allocatable block from the cursor,
    /// wrapping around once (the policy of Linux ≥ 5.14, §7.9).
    pub fn alloc(&mut self) -> Result<u64, SmError> {
        let n = self.nr_blocks;
        let start = self.cursor.min(n);
        let found = (start..n)
            .chain(0..start)
            .find(|&b| self.small[b as usize] == 0 && self.committed_count(b) == 0);
        match found {
            Some(b) => {
                self.set(b, 1)?;
                self.cursor = b + 1;
                Ok(b)
            }
            None => Err(SmError::NoSpace { nr_blocks: n }),
        }
    }

    /// Forgets the committed counts: the current state becomes the committed one.
    pub fn commit(&mut self) {
        self.orig.clear();
    }

    /// Moves the allocation cursor (the kernel starts after the bootstrap blocks).
    pub fn set_cursor(&mut self, b: u64) {
        self.cursor = b;
    }

    /// Bitmaps changed since they were last encoded.
    pub fn dirty_bitmaps(&self) -> Vec<u64> {
        self.dirty_bitmaps.iter().copied().collect()
    }

    /// Marks every bitmap as encoded.
    pub fn clear_dirty_bitmaps(&mut self) {
        self.dirty_bitmaps.clear();
    }

    /// True when the overflow counts changed since the ref-count tree was written.
    pub fn big_dirty(&self) -> bool {
        self.big_dirty
    }

    /// Marks the ref-count tree as written.
    pub fn clear_big_dirty(&mut self) {
        self.big_dirty = false;
    }

    /// The overflow entries (block, count ≥ 3) in block order.
    pub fn overflow_entries(&self) -> Vec<(u64, u32)> {
        self.big.iter().map(|(&b, &c)| (b, c)).collect()
    }

    /// Encodes bitmap `k` into `blk` (header fields are left to the caller's
    /// stamp) and returns its index entry with `blocknr = loc`. `nr_free` counts all
    /// 16 320 slots, as the kernel does; `none_free_before` is the first free slot.
    pub fn encode_bitmap(&self, k: u64, loc: u64, blk: &mut Block) -> IndexEntry {
        blk[16..].fill(0);
        let base = k * ENTRIES_PER_BITMAP;
        let end = (base + ENTRIES_PER_BITMAP).min(self.nr_blocks);
        let mut nr_free = ENTRIES_PER_BITMAP as u32;
        let mut first_free: Option<u32> = None;
        for b in base..end {
            let v = self.small[b as usize];
            if v != 0 {
                set_bitmap_entry(blk, (b - base) as usize, v);
                nr_free -= 1;
            } else if first_free.is_none() {
                first_free = Some((b - base) as u32);
            }
        }
        IndexEntry {
            blocknr: loc,
            nr_free,
            none_free_before: first_free.unwrap_or((end - base) as u32),
        }
    }

    /// Every block with a non-zero count, with its count.
    pub fn counts(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.small
            .iter()
            .enumerate()
            .filter(|(_, &v)| v != 0)
            .map(|(b, _)| (b as u64, self.count(b as u64)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdata::space_map::bitmap_entry;

    #[test]
    fn never_reuses_a_block_freed_in_the_transaction() {
        let mut sm = SpaceMap::new(4);
        assert_eq!(sm.alloc().unwrap(), 0);
        assert_eq!(sm.alloc().unwrap(), 1);
        sm.commit();
        sm.dec(0).unwrap();
        assert_eq!(sm.alloc().unwrap(), 2);
        assert_eq!(sm.alloc().unwrap(), 3);
        assert_eq!(sm.alloc(), Err(SmError::NoSpace { nr_blocks: 4 }));
        sm.commit();
        assert_eq!(sm.alloc().unwrap(), 0);
    }

    #[test]
    fn blocks_allocated_and_freed_in_one_transaction_are_reusable() {
        let mut sm = SpaceMap::new(2);
        let b = sm.alloc().unwrap();
        sm.dec(b).unwrap();
        sm.set_cursor(0);
        assert_eq!(sm.alloc().unwrap(), b);
    }

    #[test]
    fn large_counts_go_to_the_overflow_map() {
        let mut sm = SpaceMap::new(100);
        for _ in 0..5 {
            sm.inc(7).unwrap();
        }
        assert_eq!(sm.count(7), 5);
        assert_eq!(sm.overflow_entries(), vec![(7, 5)]);
        sm.dec(7).unwrap();
        sm.dec(7).unwrap();
        sm.dec(7).unwrap();
        assert_eq!(sm.count(7), 2);
        assert!(sm.overflow_entries().is_empty());
        assert_eq!(sm.nr_allocated(), 1);
        let mut blk = [0u8; 4096];
        let e = sm.encode_bitmap(0, 9, &mut blk);
        assert_eq!(bitmap_entry(&blk, 7), 2);
        assert_eq!(e.nr_free, 16319);
        assert_eq!(e.none_free_before, 0);
    }
}
