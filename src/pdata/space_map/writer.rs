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

use std::collections::BTreeMap;
use std::fmt;

use crate::io::Block;
use crate::pdata::le64;
use crate::pdata::space_map::{set_bitmap_entry, IndexEntry, ENTRIES_PER_BITMAP};
use crate::pdata::tm::IntMap;

/// Changed bitmap entries remembered for [`SpaceMap::take_touched`]; past this
/// many, the caller encodes the bitmaps whole.
const MAX_TOUCHED: usize = 1024;

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

/// The in-core metadata space map (the kernel's `ll_disk` of
/// `dm-space-map-common.c` plus the `old_ll` and `begin` of
/// `dm-space-map-metadata.c`): reference counts of every metadata block, the
/// index entries exactly as the kernel keeps them (`nr_free` and
/// `none_free_before` updated incrementally, as `sm_ll_inc`/`sm_ll_dec` do), and
/// the last committed counts of the blocks changed since.
///
/// Which blocks hold the bitmaps, the index and the ref-count tree, and shadowing
/// them when a count changes, is the transaction manager's business
/// ([`crate::pdata::tm`]), because it allocates blocks from this map (§7.8).
#[derive(Debug, Clone)]
pub struct SpaceMap {
    nr_blocks: u64,
    /// 0, 1, 2, or 3 = the count is in `big`.
    small: Vec<u8>,
    /// Counts of 3 or more (the overflow ref-count tree's content, §7.4).
    big: BTreeMap<u64, u32>,
    /// Committed count of every block changed since the last space-map commit
    /// (the kernel's `old_ll`, §7.9).
    orig: IntMap<u64, u32>,
    /// Blocks whose bitmap value changed since [`SpaceMap::take_touched`], in
    /// the order they changed (`None`: too many to list).
    touched: Option<Vec<u64>>,
    nr_allocated: u64,
    /// Allocation cursor (`smm->begin`): not reset by a commit (Linux ≥ 5.14).
    begin: u64,
    /// The index entries (`ll->mi_le`), one per bitmap.
    entries: Vec<IndexEntry>,
    /// `ll->bitmap_index_changed`.
    index_changed: bool,
    /// Allocation looks at the committed counts only, as before 4feaef830de7
    /// (HAZARDS.md H-PD1): a block in use in the open transaction can be
    /// handed out again. Only the reference model's variant sets it.
    committed_only: bool,
}

impl SpaceMap {
    /// An empty space map over `nr_blocks` blocks (capped by the caller at
    /// [`crate::pdata::space_map::MAX_METADATA_BLOCKS`]), without index entries
    /// (see [`SpaceMap::push_entry`]).
    pub fn new(nr_blocks: u64) -> Self {
        let n = usize::try_from(nr_blocks).expect("space map size fits in memory");
        SpaceMap {
            nr_blocks,
            small: vec![0; n],
            big: BTreeMap::new(),
            orig: IntMap::default(),
            touched: None,
            nr_allocated: 0,
            begin: 0,
            entries: Vec::new(),
            index_changed: false,
            committed_only: false,
        }
    }

    /// A space map holding `counts` (as read from disk) with the index entries
    /// `entries` (as on disk), all of them committed (`dm_sm_metadata_open`).
    pub fn from_counts(
        nr_blocks: u64,
        counts: impl IntoIterator<Item = (u64, u32)>,
        entries: Vec<IndexEntry>,
    ) -> Self {
        let mut sm = SpaceMap::new(nr_blocks);
        for (b, c) in counts {
            if b < nr_blocks && c > 0 {
                sm.store(b, c);
                sm.nr_allocated += 1;
            }
        }
        sm.entries = entries;
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

    /// The index entries.
    pub fn entries(&self) -> &[IndexEntry] {
        &self.entries
    }

    /// Appends the index entry of a new bitmap at `loc` (`sm_ll_extend`: every
    /// slot free, `none_free_before` 0).
    pub fn push_entry(&mut self, loc: u64) {
        self.entries.push(IndexEntry {
            blocknr: loc,
            nr_free: ENTRIES_PER_BITMAP as u32,
            none_free_before: 0,
        });
        self.index_changed = true;
    }

    /// Moves bitmap `k` to `loc` (its block was shadowed).
    pub fn set_bitmap_location(&mut self, k: usize, loc: u64) {
        self.entries[k].blocknr = loc;
        self.index_changed = true;
    }

    /// True when an index entry changed since the index block was last written.
    pub fn index_changed(&self) -> bool {
        self.index_changed
    }

    /// Marks the index as written (`sm_ll_commit`).
    pub fn clear_index_changed(&mut self) {
        self.index_changed = false;
    }

    /// The reference count of `b` (0 past the end).
    pub fn count(&self, b: u64) -> u32 {
        match self.small.get(b as usize) {
            Some(3) => self.big.get(&b).copied().unwrap_or(3),
            Some(&v) => v as u32,
            None => 0,
        }
    }

    /// The 2-bit bitmap value of `b` (3 = the count is in the overflow tree).
    pub fn bitmap_value(&self, b: u64) -> u8 {
        self.small.get(b as usize).copied().unwrap_or(0)
    }

    /// The count of `b` as of the last commit.
    pub fn committed_count(&self, b: u64) -> u32 {
        self.orig.get(&b).copied().unwrap_or_else(|| self.count(b))
    }

    fn store(&mut self, b: u64, c: u32) {
        let i = b as usize;
        if self.small[i] != c.min(3) as u8 {
            if let Some(t) = &mut self.touched {
                if t.len() < MAX_TOUCHED {
                    t.push(b);
                } else {
                    self.touched = None;
                }
            }
        }
        if c >= 3 {
            self.small[i] = 3;
            self.big.insert(b, c);
        } else {
            if self.small[i] == 3 {
                self.big.remove(&b);
            }
            self.small[i] = c as u8;
        }
    }

    fn check(&self, b: u64) -> Result<(), SmError> {
        if b >= self.nr_blocks {
            return Err(SmError::OutOfRange {
                block: b,
                nr_blocks: self.nr_blocks,
            });
        }
        Ok(())
    }

    /// Changes the count of `b` by one (`sm_ll_inc_bitmap`/`sm_ll_dec_bitmap`):
    /// the count, `nr_allocated` and the bitmap's index entry, exactly as the
    /// kernel updates them. Returns the old count. The caller shadows the bitmap
    /// first and keeps the overflow tree in step.
    pub fn bump(&mut self, b: u64, up: bool) -> Result<u32, SmError> {
        self.check(b)?;
        let old = self.count(b);
        if !up && old == 0 {
            return Err(SmError::Underflow { block: b });
        }
        self.orig.entry(b).or_insert(old);
        let new = if up { old.saturating_add(1) } else { old - 1 };
        let k = (b / ENTRIES_PER_BITMAP) as usize;
        let bit = (b % ENTRIES_PER_BITMAP) as u32;
        if let Some(e) = self.entries.get_mut(k) {
            if old == 0 {
                e.nr_free = e.nr_free.wrapping_sub(1);
                if e.none_free_before == bit {
                    e.none_free_before = bit + 1;
                }
            } else if new == 0 {
                e.nr_free += 1;
                e.none_free_before = e.none_free_before.min(bit);
            }
        }
        if old == 0 {
            self.nr_allocated += 1;
        } else if new == 0 {
            self.nr_allocated -= 1;
        }
        self.index_changed = true;
        self.store(b, new);
        Ok(old)
    }

    /// The first block in `[begin, end)` free both now and at the last commit
    /// (`sm_ll_find_common_free_block`).
    pub fn find_common_free(&self, begin: u64, end: u64) -> Option<u64> {
        let end = end.min(self.nr_blocks);
        (begin..end).find(|&b| {
            (self.committed_only || self.small[b as usize] == 0) && self.committed_count(b) == 0
        })
    }

    /// Makes allocation consider the committed counts only (the kernel before
    /// 4feaef830de7, "dm space map common: fix to ensure new block isn't
    /// already in use", which made `sm_ll_find_common_free_block` check both).
    pub fn set_alloc_committed_only(&mut self, on: bool) {
        self.committed_only = on;
    }

    /// Picks the block to allocate (`sm_metadata_new_block_`): the first common
    /// free block from `begin` to the end, else from 0 to `begin`; `begin` moves
    /// past it. The count is not changed.
    pub fn find_alloc(&mut self) -> Result<u64, SmError> {
        let found = self
            .find_common_free(self.begin, self.nr_blocks)
            .or_else(|| self.find_common_free(0, self.begin));
        match found {
            Some(b) => {
                self.begin = b + 1;
                Ok(b)
            }
            None => Err(SmError::NoSpace {
                nr_blocks: self.nr_blocks,
            }),
        }
    }

    /// The allocation cursor.
    pub fn begin(&self) -> u64 {
        self.begin
    }

    /// Moves the allocation cursor.
    pub fn set_cursor(&mut self, b: u64) {
        self.begin = b;
    }

    /// Forgets the committed counts: the current state becomes the committed one
    /// (`memcpy(&smm->old_ll, &smm->ll)` in `sm_metadata_commit`).
    pub fn commit(&mut self) {
        self.orig.clear();
    }

    /// The overflow entries (block, count ≥ 3) in block order.
    pub fn overflow_entries(&self) -> Vec<(u64, u32)> {
        self.big.iter().map(|(&b, &c)| (b, c)).collect()
    }

    /// The blocks whose bitmap value changed since the last call (possibly
    /// more than once each), or `None` when that is not known (the first call,
    /// or too many changes): then every bitmap must be encoded whole.
    pub fn take_touched(&mut self) -> Option<Vec<u64>> {
        self.touched.replace(Vec::new())
    }

    /// Brings the words of bitmap `k` in `blk`, an encoding of it as it was
    /// when [`take_touched`](Self::take_touched) returned `touched`, up to
    /// date: the entries of `touched` that fall in it are rewritten (what
    /// `sm_ll_inc`/`sm_ll_dec` do to the shadowed bitmap in place).
    pub fn patch_bitmap(&self, k: u64, blk: &mut Block, touched: &[u64]) {
        let base = k * ENTRIES_PER_BITMAP;
        for &b in touched {
            if b >= base && b - base < ENTRIES_PER_BITMAP {
                set_bitmap_entry(blk, (b - base) as usize, self.bitmap_value(b));
            }
        }
    }

    /// Encodes the bitmap words of bitmap `k` into `blk` (header fields are left
    /// to the caller's stamp).
    pub fn encode_bitmap(&self, k: u64, blk: &mut Block) {
        blk[16..].fill(0);
        let base = k * ENTRIES_PER_BITMAP;
        let end = (base + ENTRIES_PER_BITMAP).min(self.nr_blocks);
        let counts = &self.small[base as usize..end as usize];
        // 32 entries per little-endian word, entry j at bits 2j (high bit of the
        // value) and 2j + 1 (low bit): see `set_bitmap_entry`. Eight counts make
        // a quarter of a word.
        for (q, bytes) in counts.chunks(8).enumerate() {
            let x = match <[u8; 8]>::try_from(bytes) {
                Ok(b8) => u64::from_le_bytes(b8),
                Err(_) => {
                    let mut b8 = [0u8; 8];
                    b8[..bytes.len()].copy_from_slice(bytes);
                    u64::from_le_bytes(b8)
                }
            };
            if x != 0 {
                let o = 16 + 8 * (q / 4);
                let word = le64(blk, o) | pack8(x) << (16 * (q % 4));
                blk[o..o + 8].copy_from_slice(&word.to_le_bytes());
            }
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

/// Packs eight counts (0..=3, one per byte of `x`, little-endian) into the 16
/// bits of their bitmap entries: count `i` at bits `2i` (its high bit) and
/// `2i + 1` (its low bit).
fn pack8(x: u64) -> u64 {
    const LOW: u64 = 0x0101_0101_0101_0101;
    // Swap the two bits of every count: high bit first.
    let mut y = ((x & LOW) << 1) | ((x >> 1) & LOW);
    y = (y | (y >> 6)) & 0x000F_000F_000F_000F;
    y = (y | (y >> 12)) & 0x0000_00FF_0000_00FF;
    (y | (y >> 24)) & 0xFFFF
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdata::space_map::bitmap_entry;

    fn alloc(sm: &mut SpaceMap) -> Result<u64, SmError> {
        let b = sm.find_alloc()?;
        sm.bump(b, true)?;
        Ok(b)
    }

    #[test]
    fn never_reuses_a_block_freed_in_the_transaction() {
        let mut sm = SpaceMap::new(4);
        sm.push_entry(9);
        assert_eq!(alloc(&mut sm).unwrap(), 0);
        assert_eq!(alloc(&mut sm).unwrap(), 1);
        sm.commit();
        sm.bump(0, false).unwrap();
        assert_eq!(alloc(&mut sm).unwrap(), 2);
        assert_eq!(alloc(&mut sm).unwrap(), 3);
        assert_eq!(alloc(&mut sm), Err(SmError::NoSpace { nr_blocks: 4 }));
        sm.commit();
        assert_eq!(alloc(&mut sm).unwrap(), 0);
    }

    #[test]
    fn index_entries_are_updated_like_the_kernels() {
        let mut sm = SpaceMap::new(100);
        sm.push_entry(9);
        for _ in 0..3 {
            alloc(&mut sm).unwrap();
        }
        sm.bump(1, false).unwrap();
        assert_eq!(sm.entries()[0].none_free_before, 1);
        sm.set_cursor(0);
        assert_eq!(alloc(&mut sm).unwrap(), 1);
        // Incremental: the hint moves one past the block, not to the first free.
        assert_eq!(sm.entries()[0].none_free_before, 2);
        assert_eq!(sm.entries()[0].nr_free, 16320 - 3);
    }

    #[test]
    fn encoded_bitmaps_match_entry_by_entry_encoding() {
        let n = ENTRIES_PER_BITMAP + 1000;
        let mut sm = SpaceMap::new(n);
        sm.push_entry(9);
        sm.push_entry(10);
        let mut x = 7u64;
        for b in 0..n {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            for _ in 0..(x >> 62) {
                sm.bump(b, true).unwrap();
            }
        }
        for k in 0..2 {
            let mut got = [0xAAu8; 4096];
            sm.encode_bitmap(k, &mut got);
            let mut want = [0xAAu8; 4096];
            want[16..].fill(0);
            let base = k * ENTRIES_PER_BITMAP;
            for b in base..(base + ENTRIES_PER_BITMAP).min(n) {
                let v = sm.bitmap_value(b);
                crate::pdata::space_map::set_bitmap_entry(&mut want, (b - base) as usize, v);
            }
            assert_eq!(got[..], want[..]);
        }
    }

    #[test]
    fn patched_bitmaps_match_whole_encodings() {
        let n = ENTRIES_PER_BITMAP + 500;
        let mut sm = SpaceMap::new(n);
        sm.push_entry(9);
        sm.push_entry(10);
        assert_eq!(
            sm.take_touched(),
            None,
            "nothing is known before the first call"
        );
        let mut base: Vec<[u8; 4096]> = (0..2)
            .map(|k| {
                let mut b = [0u8; 4096];
                sm.encode_bitmap(k, &mut b);
                b
            })
            .collect();
        let mut x = 11u64;
        for round in 0..40 {
            for _ in 0..(round * 7 % 50) {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                let b = (x >> 33) % n;
                let up = sm.count(b) == 0 || !(x >> 20).is_multiple_of(3);
                sm.bump(b, up).unwrap();
            }
            let t = sm.take_touched().expect("few changes are listed");
            for k in 0..2u64 {
                sm.patch_bitmap(k, &mut base[k as usize], &t);
                let mut whole = [0u8; 4096];
                sm.encode_bitmap(k, &mut whole);
                assert_eq!(base[k as usize][..], whole[..], "round {round} bitmap {k}");
            }
        }
        let mut sm = SpaceMap::new(n);
        sm.take_touched();
        for b in 0..MAX_TOUCHED as u64 {
            sm.bump(b, true).unwrap();
        }
        assert_eq!(sm.take_touched().map(|t| t.len()), Some(MAX_TOUCHED));
        for b in 0..MAX_TOUCHED as u64 + 1 {
            sm.bump(b, true).unwrap();
        }
        assert_eq!(sm.take_touched(), None, "too many changes to list");
    }

    #[test]
    fn large_counts_go_to_the_overflow_map() {
        let mut sm = SpaceMap::new(100);
        sm.push_entry(9);
        for _ in 0..5 {
            sm.bump(7, true).unwrap();
        }
        assert_eq!(sm.count(7), 5);
        assert_eq!(sm.overflow_entries(), vec![(7, 5)]);
        for _ in 0..3 {
            sm.bump(7, false).unwrap();
        }
        assert_eq!(sm.count(7), 2);
        assert!(sm.overflow_entries().is_empty());
        assert_eq!(sm.nr_allocated(), 1);
        let mut blk = [0u8; 4096];
        sm.encode_bitmap(0, &mut blk);
        assert_eq!(bitmap_entry(&blk, 7), 2);
        assert_eq!(sm.entries()[0].nr_free, 16319);
    }
}
