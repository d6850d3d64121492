//! dm-clone's metadata layer (`dm-clone-metadata.c`): the in-core region map,
//! the two dirty maps and the two-phase commit onto the on-disk region bitset.

use crate::clone::superblock::{self as sb, CloneSuperblock};
use crate::io::BlockDevice;
use crate::model::bits::Bits;
use crate::model::ModelError;
use crate::pdata::bitset_write::Bitset;
use crate::pdata::space_map::SmRoot;
use crate::pdata::tm::TransactionManager;
use crate::sim::MetaDev;
use crate::trace::Variant;

/// `struct dirty_map`: the regions hydrated in one transaction and their words.
#[derive(Debug, Clone)]
struct DirtyMap {
    dirty_words: Bits,
    dirty_regions: Bits,
    changed: bool,
}

impl DirtyMap {
    fn new(nr_regions: u64) -> Self {
        DirtyMap {
            dirty_words: Bits::new(nr_regions.div_ceil(64)),
            dirty_regions: Bits::new(nr_regions),
            changed: false,
        }
    }
}

/// Where a commit stands between its explicit phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitPhase {
    /// No commit in progress.
    Idle,
    /// `commit.pre` done: the dirty maps are swapped.
    Pre,
    /// `commit.flush-dest` done.
    DestFlushed,
    /// `commit.meta` done: the bits and every dirty block are written and
    /// flushed; the superblock is next.
    Meta,
}

/// `struct dm_clone_metadata`.
pub struct CloneMeta {
    tm: TransactionManager<MetaDev>,
    bitset: Bitset,
    region_size: u64,
    target_size: u64,
    nr_regions: u64,
    region_map: Bits,
    dmap: [DirtyMap; 2],
    current: usize,
    committing: Option<usize>,
    hydration_done: bool,
    /// The space-map root of `commit.meta`, for `commit.super`.
    sm_root: Option<SmRoot>,
    variant: Variant,
}

impl std::fmt::Debug for CloneMeta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloneMeta")
            .field("nr_regions", &self.nr_regions)
            .field("hydrated", &self.region_map.count())
            .finish()
    }
}

impl CloneMeta {
    /// `metadata_close` of a table being destroyed: the block manager's
    /// dm-bufio client writes back the blocks it holds dirty, without a commit.
    pub fn destroy(mut self) -> Result<(), ModelError> {
        self.tm.write_back_dirty()?;
        Ok(())
    }

    /// `dm_clone_metadata_open`: formats an all-zero superblock
    /// (`__format_metadata`), otherwise opens the committed metadata
    /// (`__open_metadata`) and loads the bitset in core.
    pub fn open(
        dev: MetaDev,
        region_size: u64,
        target_size: u64,
        variant: Variant,
    ) -> Result<Self, ModelError> {
        // dm_clone_metadata_open: `nr_regions` is an `unsigned long` too.
        let nr_regions = if variant == Variant::NrRegions32bit {
            target_size.div_ceil(region_size) as u32 as u64
        } else {
            target_size.div_ceil(region_size)
        };
        let mut blk = crate::io::zeroed_block();
        dev.read(0, &mut blk).map_err(ModelError::io)?;
        let formatted = blk.iter().any(|&b| b != 0);
        let (tm, bitset) = if !formatted {
            // __format_metadata: bitset empty + resize, pre-commit, superblock.
            let mut tm = TransactionManager::format(dev)?;
            let bitset = Bitset::new(&mut tm, nr_regions)?;
            (tm, bitset)
        } else {
            let (s, _) = sb::read(&dev).map_err(|e| ModelError::Open(e.to_string()))?;
            if s.region_size != region_size || s.target_size != target_size {
                return Err(ModelError::Open(format!(
                    "region and/or target size don't match the ones in metadata ({} and {}, table {} and {})",
                    s.region_size, s.target_size, region_size, target_size
                )));
            }
            let tm = TransactionManager::open(dev, &s.sm_root)?;
            (tm, Bitset::open(s.bitset_root, nr_regions))
        };
        let mut m = CloneMeta {
            tm,
            bitset,
            region_size,
            target_size,
            nr_regions,
            region_map: Bits::new(nr_regions),
            dmap: [DirtyMap::new(nr_regions), DirtyMap::new(nr_regions)],
            current: 0,
            committing: None,
            hydration_done: false,
            sm_root: None,
            variant,
        };
        m.tm.set_unordered_superblock(variant == Variant::SbBeforeMetaFlush);
        m.tm.set_alloc_committed_only(variant == Variant::AllocIgnoresCurrentCounts);
        if !formatted {
            m.write_metadata()?;
            m.write_superblock()?;
        }
        // __load_bitset_in_core
        for w in 0..nr_regions.div_ceil(64) {
            let word = m.bitset.word(&mut m.tm, w)?;
            for i in 0..64 {
                let r = w * 64 + i;
                if r < nr_regions && word >> i & 1 == 1 {
                    m.region_map.set(r);
                }
            }
        }
        m.hydration_done = m.region_map.full();
        Ok(m)
    }

    /// Metadata blocks in use (the status line's used count).
    pub fn used_blocks(&self) -> u64 {
        self.tm.space_map().nr_allocated()
    }

    /// Number of regions.
    pub fn nr_regions(&self) -> u64 {
        self.nr_regions
    }

    /// `dm_clone_is_region_hydrated`.
    pub fn is_region_hydrated(&self, r: u64) -> bool {
        self.hydration_done || self.region_map.get(r)
    }

    /// `dm_clone_is_range_hydrated`.
    pub fn is_range_hydrated(&self, start: u64, n: u64) -> bool {
        self.hydration_done || self.region_map.next_clear(start) >= start.saturating_add(n)
    }

    /// `dm_clone_find_next_unhydrated_region`.
    pub fn next_unhydrated(&self, start: u64) -> u64 {
        self.region_map.next_clear(start)
    }

    /// `dm_clone_is_hydration_done`.
    pub fn hydration_done(&self) -> bool {
        self.hydration_done
    }

    /// The in-core region map.
    pub fn region_map(&self) -> &Bits {
        &self.region_map
    }

    /// `dm_clone_set_region_hydrated`.
    pub fn set_region_hydrated(&mut self, r: u64) -> Result<(), ModelError> {
        if r >= self.nr_regions {
            return Err(ModelError::internal(format!(
                "region {r} out of range ({} regions)",
                self.nr_regions
            )));
        }
        let d = &mut self.dmap[self.current];
        d.dirty_words.set(r / 64);
        d.dirty_regions.set(r);
        self.region_map.set(r);
        d.changed = true;
        Ok(())
    }

    /// `dm_clone_cond_set_range`: marks the unhydrated regions of
    /// `start..start+n` hydrated; false for an invalid range (the kernel's
    /// `-ERANGE`).
    pub fn cond_set_range(&mut self, start: u64, n: u64) -> bool {
        let Some(end) = start.checked_add(n) else {
            return false;
        };
        if start >= self.nr_regions || end > self.nr_regions {
            return false;
        }
        let d = &mut self.dmap[self.current];
        for r in start..end {
            if !self.region_map.get(r) {
                d.dirty_words.set(r / 64);
                d.dirty_regions.set(r);
                self.region_map.set(r);
                d.changed = true;
            }
        }
        true
    }

    /// `dm_clone_changed_this_transaction`.
    pub fn changed(&self) -> bool {
        self.dmap[0].changed || self.dmap[1].changed
    }

    /// Where an explicit commit stands.
    pub fn phase(&self) -> bool {
        self.committing.is_some()
    }

    /// `dm_clone_metadata_pre_commit`: swaps the dirty maps; the old one is the
    /// committing one. Refused (the kernel's WARN_ON) when a commit is already in
    /// progress.
    pub fn pre_commit(&mut self) -> Result<(), ModelError> {
        let next = 1 - self.current;
        if self.dmap[next].changed || self.committing.is_some() {
            return Err(ModelError::NotEnabled(
                "commit.pre while a commit is in progress (the kernel's WARN_ON(next_dmap->changed || committing_dmap))".into(),
            ));
        }
        self.committing = Some(self.current);
        self.current = next;
        Ok(())
    }

    /// First half of `dm_clone_metadata_commit`: `__flush_dmap`'s bit updates,
    /// the bitset flush and `dm_tm_pre_commit` (dirty blocks, then FLUSH).
    pub fn commit_meta(&mut self) -> Result<(), ModelError> {
        let c = self
            .committing
            .ok_or_else(|| ModelError::NotEnabled("commit.meta without commit.pre".into()))?;
        let nr_words = self.nr_regions.div_ceil(64);
        let mut word = self.dmap[c].dirty_words.next_set(0);
        while word < nr_words {
            // __update_metadata_word: every dirty region of the word is set.
            let lo = word * 64;
            let hi = (lo + 64).min(self.nr_regions);
            let mut bits = 0u64;
            for r in lo..hi {
                let dirty = if self.variant == Variant::LiveBitmapCommit {
                    // Before e6a505f3f9fa/8fdbfe8d1690 the commit wrote the live
                    // bitmap: regions hydrated after the dest flush go in too.
                    self.region_map.get(r)
                } else {
                    self.dmap[c].dirty_regions.get(r)
                };
                if dirty {
                    bits |= 1 << (r - lo);
                    self.dmap[c].dirty_regions.clear(r);
                }
            }
            if self.variant == Variant::LiveBitmapCommit {
                for r in lo..hi {
                    self.dmap[1 - c].dirty_regions.clear(r);
                }
                self.dmap[1 - c].dirty_words.clear(word);
            }
            if bits != 0 {
                // dm_bitset_set_bit marks the cached word dirty even when the
                // bit is already set; the flush rewrites (and shadows) it.
                let old = self.bitset.word(&mut self.tm, word)?;
                self.bitset.set_word(&mut self.tm, word, old | bits)?;
            }
            self.dmap[c].dirty_words.clear(word);
            word = self.next_dirty_word(c, word + 1);
        }
        self.write_metadata()
    }

    fn next_dirty_word(&self, c: usize, from: u64) -> u64 {
        let a = self.dmap[c].dirty_words.next_set(from);
        if self.variant == Variant::LiveBitmapCommit {
            a.min(self.dmap[1 - c].dirty_words.next_set(from))
        } else {
            a
        }
    }

    /// `dm_tm_pre_commit` (the bitset needs no flush: its words are written as
    /// they change).
    fn write_metadata(&mut self) -> Result<(), ModelError> {
        self.sm_root = Some(self.tm.pre_commit()?);
        Ok(())
    }

    /// Second half: the superblock (`superblock_write_lock_zero`,
    /// `__prepare_superblock`, `dm_tm_commit`), then the dirty map is clean.
    pub fn commit_super(&mut self) -> Result<(), ModelError> {
        let c = self
            .committing
            .ok_or_else(|| ModelError::NotEnabled("commit.super without commit.pre".into()))?;
        self.write_superblock()?;
        if self.variant == Variant::LiveBitmapCommit {
            self.dmap[1 - c].changed = false;
        }
        self.dmap[c].changed = false;
        self.committing = None;
        // __metadata_commit: "FIXME: Find a more efficient way to check if the
        // hydration is done."
        if self.region_map.full() {
            self.hydration_done = true;
        }
        Ok(())
    }

    fn write_superblock(&mut self) -> Result<(), ModelError> {
        let sm_root = self
            .sm_root
            .take()
            .ok_or_else(|| ModelError::NotEnabled("commit.super without commit.meta".into()))?;
        let s = CloneSuperblock {
            flags: 0,
            sm_root,
            region_size: self.region_size,
            target_size: self.target_size,
            bitset_root: self.bitset.root(),
        };
        self.tm.commit(&s.encode())?;
        Ok(())
    }

    /// True between `commit.meta` and `commit.super`.
    pub fn meta_written(&self) -> bool {
        self.sm_root.is_some()
    }
}
