//! The metadata space map's on-disk side, driven from the transaction manager as
//! Linux 6.1's `dm-space-map-metadata.c` and `dm-space-map-common.c` drive it:
//!
//! * the bootstrap of `dm_sm_metadata_create` (blocks handed out by a cursor from
//!   the superblock on, counts set afterwards, then a space-map commit);
//! * allocation (`sm_metadata_new_block_` → `sm_ll_find_common_free_block`);
//! * every count change goes to the "ll" at once (`sm_ll_inc`/`sm_ll_dec`): the
//!   bitmap block is shadowed the first time it changes in a transaction, and a
//!   count of 3 or more is inserted into, updated in or removed from the
//!   ref-count B-tree;
//! * recursion: a change requested while the space map is changing itself is
//!   queued (`add_bop`) and applied, in order, when the outermost change is done
//!   (`out` → `apply_bops`);
//! * the commit (`sm_metadata_commit` → `sm_ll_commit`): when an index entry
//!   changed, the index block is shadowed and rewritten from the in-core entries.
//!
//! Bitmap contents are not edited in place: the in-core counts are encoded into
//! every bitmap block of the transaction when dirty blocks are written, which
//! gives the bytes the kernel's in-place edits give.

use super::{TmError, TransactionManager};
use crate::io::{zeroed_shared_block, BlockDevice};
use crate::pdata::btree::ops::{self, RefValues};
use crate::pdata::checksum::BlockKind;
use crate::pdata::space_map::writer::{SmError, SpaceMap};
use crate::pdata::space_map::{ENTRIES_PER_BITMAP, MAX_METADATA_BLOCKS};
use crate::superblock::SUPERBLOCK_LOCATION;
use std::sync::Arc;

/// `dm_tm_create_with_sm` on a fresh device.
pub(super) fn format<D: BlockDevice>(dev: D) -> Result<TransactionManager<D>, TmError> {
    let nr_blocks = dev.nr_blocks().min(MAX_METADATA_BLOCKS);
    let nr_bitmaps = nr_blocks.div_ceil(ENTRIES_PER_BITMAP);
    if nr_blocks < 3 + nr_bitmaps {
        return Err(TmError::Sm(SmError::NoSpace { nr_blocks }));
    }
    let mut tm = TransactionManager::idle(dev, SpaceMap::new(nr_blocks));
    // dm_sm_metadata_create: the bootstrap allocator starts after the superblock.
    tm.bootstrap = true;
    tm.sm.set_cursor(SUPERBLOCK_LOCATION + 1);
    // sm_ll_new_metadata: the index block, then the empty ref-count tree.
    tm.index = tm.new_block(BlockKind::SmIndex)?;
    tm.ref_root = ops::empty(&mut tm, 4)?;
    // sm_ll_extend: one bitmap block per 16 320 blocks.
    for _ in 0..nr_bitmaps {
        let b = tm.new_block(BlockKind::SmBitmap)?;
        tm.sm.push_entry(b);
    }
    tm.bootstrap = false;
    // The blocks handed out so far (superblock included) get their count.
    for b in SUPERBLOCK_LOCATION..tm.sm.begin() {
        tm.bops.push_back((true, b));
    }
    tm.apply_bops()?;
    tm.sm_commit()?;
    Ok(tm)
}

impl<D: BlockDevice> TransactionManager<D> {
    /// The net effect of the queued changes on `b`.
    pub(super) fn adjustment(&self, b: u64) -> i64 {
        self.bops
            .iter()
            .filter(|(_, x)| *x == b)
            .map(|(up, _)| if *up { 1 } else { -1 })
            .sum()
    }

    /// `sm_metadata_count_is_more_than_one`: a bitmap value of 3 always counts as
    /// shared.
    pub(super) fn count_is_more_than_one(&self, b: u64) -> bool {
        if self.bootstrap {
            return false;
        }
        let adj = self.adjustment(b);
        if adj > 1 {
            return true;
        }
        let rc = self.sm.bitmap_value(b);
        rc == 3 || rc as i64 + adj > 1
    }

    /// `sm_metadata_new_block` (or the bootstrap's, which only moves the cursor).
    pub(super) fn sm_new_block(&mut self) -> Result<u64, TmError> {
        if self.bootstrap {
            let b = self.sm.begin();
            if b >= self.sm.nr_blocks() {
                return Err(TmError::Sm(SmError::NoSpace {
                    nr_blocks: self.sm.nr_blocks(),
                }));
            }
            self.sm.set_cursor(b + 1);
            return Ok(b);
        }
        let b = self.sm.find_alloc()?;
        self.sm_change(b, true)?;
        Ok(b)
    }

    /// `sm_metadata_inc_blocks`/`dec_blocks`: queued while recursing, otherwise
    /// applied with the queue drained afterwards (`in`/`out`).
    pub(super) fn sm_change(&mut self, b: u64, up: bool) -> Result<(), TmError> {
        if self.recursion > 0 || self.bootstrap {
            self.bops.push_back((up, b));
            return Ok(());
        }
        self.recursion = 1;
        let r = self.ll_change(b, up);
        let r2 = self.apply_bops();
        self.recursion = 0;
        r.and(r2)
    }

    /// `apply_bops`: the queued changes in order; changes they cause are queued
    /// behind them.
    pub(super) fn apply_bops(&mut self) -> Result<(), TmError> {
        let outer = self.recursion;
        self.recursion = outer.max(1);
        let mut r = Ok(());
        // Each change can queue a few more (a bitmap shadowed, a ref-count
        // tree node); a space map whose allocations are unsound (the
        // alloc-ignores-current-counts variant) can queue them forever.
        let mut budget = 64 + 16 * self.sm.nr_blocks();
        while let Some(&(up, b)) = self.bops.front() {
            if budget == 0 {
                self.bops.clear();
                r = Err(TmError::Invariant(
                    "the space map's own changes do not settle: an allocation handed out a block in use".into(),
                ));
                break;
            }
            budget -= 1;
            r = self.ll_change(b, up);
            if r.is_err() {
                break;
            }
            self.bops.pop_front();
        }
        self.recursion = outer;
        r
    }

    /// `__sm_ll_inc`/`__sm_ll_dec` for one block: shadow the bitmap, change the
    /// count, keep the ref-count tree in step.
    fn ll_change(&mut self, b: u64, up: bool) -> Result<(), TmError> {
        if b >= self.sm.nr_blocks() {
            return Err(TmError::Sm(SmError::OutOfRange {
                block: b,
                nr_blocks: self.sm.nr_blocks(),
            }));
        }
        self.shadow_bitmap((b / ENTRIES_PER_BITMAP) as usize)?;
        let old = self.sm.bump(b, up)?;
        let plain = RefValues::Plain;
        match (up, old) {
            // sm_ll_inc_bitmap case 2: the bitmap says 3, the tree holds 3.
            (true, 2) => {
                self.ref_root =
                    ops::insert(self, self.ref_root, 4, b, &3u32.to_le_bytes(), &plain)?;
            }
            // The count lives in the tree only (sm_ll_inc_overflow /
            // sm_ll_dec_overflow).
            (true, o) if o >= 3 => {
                let v = (o + 1).to_le_bytes();
                self.ref_root = ops::insert(self, self.ref_root, 4, b, &v, &plain)?;
            }
            (false, 3) => {
                self.ref_root = ops::remove(self, self.ref_root, 4, b, &plain)?;
            }
            (false, o) if o > 3 => {
                let v = (o - 1).to_le_bytes();
                self.ref_root = ops::insert(self, self.ref_root, 4, b, &v, &plain)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// `shadow_bitmap`: bitmap `k` gets a block of this transaction (a bitmap is
    /// never shared, so one already in the shadow set is changed in place).
    fn shadow_bitmap(&mut self, k: usize) -> Result<(), TmError> {
        let loc = self
            .sm
            .entries()
            .get(k)
            .ok_or_else(|| TmError::Invariant(format!("no index entry for bitmap {k}")))?
            .blocknr;
        if self.shadows.contains_key(&loc) && !self.count_is_more_than_one(loc) {
            return Ok(());
        }
        let new = self.sm_new_block()?;
        self.sm_change(loc, false)?;
        self.shadows.insert(new, BlockKind::SmBitmap);
        self.sm.set_bitmap_location(k, new);
        Ok(())
    }

    /// `sm_metadata_commit`: when an index entry changed, the index block is
    /// shadowed (which may change entries again) and rewritten; then the current
    /// counts become the committed ones. The cursor stays where it is.
    pub(super) fn sm_commit(&mut self) -> Result<(), TmError> {
        if self.sm.index_changed() {
            let (loc, _) = self.shadow(self.index, BlockKind::SmIndex)?;
            self.index = loc;
            let mut blk = zeroed_shared_block();
            let data = Arc::make_mut(&mut blk);
            for (k, e) in self.sm.entries().iter().enumerate() {
                e.encode(data, k);
            }
            if !self.dirty.contains_key(&loc) {
                self.fifo.push_back(loc);
            }
            self.dirty.insert(loc, blk);
            self.sm.clear_index_changed();
        }
        self.sm.commit();
        Ok(())
    }

    /// Encodes every bitmap whose block belongs to this transaction from the
    /// in-core counts; returns them (bitmap number, block). A bitmap whose last
    /// written block is known is that block with the entries changed since
    /// rewritten, which gives the same words as encoding it whole.
    pub(super) fn encode_bitmaps(&mut self) -> Vec<(usize, u64)> {
        let touched = self.sm.take_touched();
        let n = self.sm.entries().len();
        self.bitmap_cache.resize(n, None);
        let mut encoded = Vec::new();
        for k in 0..n {
            let base = self.bitmap_cache[k].take();
            let loc = self.sm.entries()[k].blocknr;
            if self.shadows.get(&loc) != Some(&BlockKind::SmBitmap) {
                // Unchanged in this transaction: its base stays valid unless an
                // entry of it changed all the same.
                let kb = k as u64;
                let changed = touched
                    .as_ref()
                    .is_none_or(|t| t.iter().any(|&b| b / ENTRIES_PER_BITMAP == kb));
                if !changed {
                    self.bitmap_cache[k] = base;
                }
                continue;
            }
            let blk = match (base, &touched) {
                (Some(mut blk), Some(t)) => {
                    self.sm.patch_bitmap(k as u64, Arc::make_mut(&mut blk), t);
                    blk
                }
                _ => {
                    let mut blk = zeroed_shared_block();
                    self.sm.encode_bitmap(k as u64, Arc::make_mut(&mut blk));
                    blk
                }
            };
            #[cfg(debug_assertions)]
            {
                let mut whole = crate::io::zeroed_block();
                self.sm.encode_bitmap(k as u64, &mut whole);
                debug_assert!(
                    whole[16..] == blk[16..],
                    "bitmap {k}: the patched encoding differs from the whole one"
                );
            }
            self.dirty.insert(loc, blk);
            encoded.push((k, loc));
        }
        encoded
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::MemDevice;

    #[test]
    fn overflow_counts_survive_commits_through_the_ref_count_tree() {
        let dev = MemDevice::new(64);
        let mut tm = TransactionManager::format(&dev).unwrap();
        let b = tm.new_block(BlockKind::BtreeNode).unwrap();
        for _ in 0..4 {
            tm.inc(b).unwrap();
        }
        assert_eq!(tm.count(b), 5);
        let root = tm.pre_commit().unwrap();
        tm.commit(&[0u8; 4096]).unwrap();
        let mut tm = TransactionManager::open(&dev, &root).unwrap();
        assert_eq!(tm.count(b), 5);
        for _ in 0..3 {
            tm.dec(b).unwrap();
        }
        assert_eq!(tm.count(b), 2);
        let root = tm.pre_commit().unwrap();
        tm.commit(&[0u8; 4096]).unwrap();
        let tm = TransactionManager::open(&dev, &root).unwrap();
        assert_eq!(tm.count(b), 2);
        assert!(tm.space_map().overflow_entries().is_empty());
        assert_eq!(root.nr_allocated, tm.space_map().counts().count() as u64);
    }

    #[test]
    fn the_first_change_of_a_transaction_moves_the_bitmap() {
        let dev = MemDevice::new(64);
        let mut tm = TransactionManager::format(&dev).unwrap();
        let root = tm.pre_commit().unwrap();
        tm.commit(&[0u8; 4096]).unwrap();
        assert_eq!((root.bitmap_root, root.ref_count_root), (1, 2));
        // Block 4 is allocated, then the bitmap (at 3) is shadowed to 5; the
        // commit moves the index (at 1) to 6.
        let b = tm.new_block(BlockKind::BtreeNode).unwrap();
        assert_eq!(b, 4);
        let root = tm.pre_commit().unwrap();
        assert_eq!(root.bitmap_root, 6);
        assert_eq!(tm.space_map().entries()[0].blocknr, 5);
        assert_eq!(tm.count(3), 0);
        assert_eq!(tm.count(1), 0);
    }
}
