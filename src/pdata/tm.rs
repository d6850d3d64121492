//! The transaction manager (PERSISTENT-DATA.md §7.7-§9): copy-on-write access to
//! metadata blocks, reference counting through the metadata space map, and the
//! kernel's two-phase commit. It mirrors Linux 6.1's `dm-transaction-manager.c`
//! and `dm-space-map-metadata.c` closely enough that the same sequence of
//! operations puts the same bytes in the same blocks:
//!
//! * [`TransactionManager::new_block`] allocates a zeroed block (count 1) and
//!   [`TransactionManager::shadow`] gives a writable copy of a committed block
//!   (`dm_tm_shadow_block`, §8.2): blocks allocated or shadowed in the open
//!   transaction (the *shadow set*) are modified in place unless shared, anything
//!   else is copied to a new block and the original loses one reference.
//!   `inc_children` tells the caller that the original was shared.
//! * Allocation (`sm_metadata_new_block_`) takes the first block free both now
//!   and at the last commit, searching from a cursor that only moves forward
//!   (wrapping once) and is not reset by a commit (Linux ≥ 5.14).
//! * A count changes at once in the space map's bitmap (see [`metadata_sm`]): the
//!   bitmap block is shadowed the first time it changes in a transaction, counts
//!   of 3 or more go through the ref-count B-tree, and changes made while the
//!   space map is changing itself are queued and applied afterwards, as the
//!   kernel's `uncommitted` block ops are. Space-map blocks are therefore
//!   allocated interleaved with the blocks that caused them.
//! * [`TransactionManager::pre_commit`] commits the space map (the index block is
//!   shadowed and rewritten when an entry changed), writes every dirty block and
//!   flushes; [`TransactionManager::commit`] writes the superblock and flushes
//!   again (§9.1). Blocks freed in the transaction are written too, as the
//!   kernel's buffer cache does, so stale blocks match byte for byte. Dirty blocks
//!   may also be written back early, oldest first, when more than
//!   [`TransactionManager::set_max_dirty`] are held; that keeps memory bounded
//!   for bulk builds and is harmless because no dirty block is reachable from the
//!   committed state.
//!
//! This is the base of both the restore tools (one transaction on a fresh device)
//! and the reference model of the kernel's commit paths, which runs many
//! transactions on one device: [`TransactionManager::open`] loads a committed
//! space map back from disk, and [`WriteOrder`] permutes the write-back order of a
//! commit the way dm-bufio is free to.

mod int_map;
mod metadata_sm;

pub use int_map::{IntHasher, IntMap, IntSet};

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::sync::Arc;

use crate::io::{zeroed_shared_block, Block, BlockDevice};
use crate::pdata::btree::NodeHeader;
use crate::pdata::checksum::{stamp, verify, BlockError, BlockKind};
use crate::pdata::le64;
use crate::pdata::space_map::writer::{SmError, SpaceMap};
use crate::pdata::space_map::{bitmap_entry, IndexEntry, SmRoot, ENTRIES_PER_BITMAP};
use crate::superblock::SUPERBLOCK_LOCATION;

/// Clean blocks kept in memory.
const CLEAN_CACHE_BLOCKS: usize = 4096;

/// Blocks held dirty in memory before the oldest are written back.
pub const DEFAULT_MAX_DIRTY: usize = 1024;

/// Why a transaction-manager operation failed.
#[derive(Debug)]
pub enum TmError {
    /// A read, write or flush of the device failed.
    Io {
        /// `"read"`, `"write"` or `"flush"`.
        op: &'static str,
        /// The block, for reads and writes.
        block: Option<u64>,
        /// The device's error.
        source: io::Error,
    },
    /// The space map refused (out of space, bad block number).
    Sm(SmError),
    /// A block read back failed validation.
    BadBlock {
        /// Where.
        block: u64,
        /// What it was read as.
        kind: BlockKind,
        /// What is wrong.
        error: BlockError,
    },
    /// A structure read back is not what it must be (damage on disk).
    Corrupt {
        /// The block.
        block: u64,
        /// What is wrong.
        msg: String,
    },
    /// A caller broke an invariant (a bug, not a property of the data).
    Invariant(String),
    /// An earlier write or flush failed; the transaction can only be abandoned.
    Failed,
}

impl fmt::Display for TmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TmError::Io {
                op,
                block: Some(b),
                source,
            } => write!(f, "{op} of metadata block {b} failed: {source}"),
            TmError::Io { op, source, .. } => write!(f, "{op} failed: {source}"),
            TmError::Sm(e) => write!(f, "{e}"),
            TmError::BadBlock { block, kind, error } => {
                write!(f, "block {block} ({kind}): {error}")
            }
            TmError::Corrupt { block, msg } => write!(f, "block {block}: {msg}"),
            TmError::Invariant(m) => write!(f, "internal error: {m}"),
            TmError::Failed => write!(f, "an earlier write to the device failed"),
        }
    }
}

impl std::error::Error for TmError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TmError::Io { source, .. } => Some(source),
            TmError::Sm(e) => Some(e),
            _ => None,
        }
    }
}

impl From<SmError> for TmError {
    fn from(e: SmError) -> Self {
        TmError::Sm(e)
    }
}

/// The order in which a commit writes its dirty blocks. Any order is correct
/// (§3); the reference model uses permutations to explore crash images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOrder {
    /// Ascending block number.
    Ascending,
    /// A permutation chosen by a seed.
    Shuffled(u64),
}

/// Counters of the I/O issued.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TmStats {
    /// Blocks written (superblocks included).
    pub blocks_written: u64,
    /// Flushes issued.
    pub flushes: u64,
    /// Commits completed.
    pub commits: u64,
}

/// Copy-on-write block access with reference counting and two-phase commit.
pub struct TransactionManager<D: BlockDevice> {
    dev: D,
    sm: SpaceMap,
    /// Location of the space map's index block (`ll->bitmap_root`).
    index: u64,
    /// Root of the ref-count tree (`ll->ref_count_root`).
    ref_root: u64,
    /// `smm->recursion_count`.
    recursion: u32,
    /// `smm->uncommitted`: count changes queued while recursing (true = inc).
    bops: VecDeque<(bool, u64)>,
    /// The bootstrap allocator of `dm_sm_metadata_create` is in use.
    bootstrap: bool,
    /// Blocks allocated or shadowed in this transaction, with their kind.
    shadows: IntMap<u64, BlockKind>,
    /// Modified blocks not yet written. Blocks are shared with the clean cache
    /// and the device where possible and copied on the first change
    /// (`Arc::make_mut`).
    dirty: IntMap<u64, Arc<Block>>,
    /// Dirty blocks, oldest first (may hold stale entries).
    fifo: VecDeque<u64>,
    /// Clean blocks as they are on the device, with the kind they were validated
    /// as (the buffer cache: every write to the device goes through here, so it
    /// never goes stale).
    clean: IntMap<u64, (BlockKind, Arc<Block>)>,
    /// The last written block of each bitmap, when known, as the base the next
    /// encoding of that bitmap patches (see `encode_bitmaps`).
    bitmap_cache: Vec<Option<Arc<Block>>>,
    max_dirty: usize,
    order: WriteOrder,
    failed: bool,
    /// The superblock may be written before the blocks it points at are durable
    /// (the bug a9d45396f595 fixed; reference models only).
    unordered_superblock: bool,
    stats: TmStats,
}

impl<D: BlockDevice> fmt::Debug for TransactionManager<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransactionManager")
            .field("nr_blocks", &self.sm.nr_blocks())
            .field("shadows", &self.shadows.len())
            .field("dirty", &self.dirty.len())
            .field("stats", &self.stats)
            .finish()
    }
}

impl<D: BlockDevice> TransactionManager<D> {
    /// A manager with no transaction state yet, over the space map `sm`.
    fn idle(dev: D, sm: SpaceMap) -> Self {
        TransactionManager {
            dev,
            sm,
            index: 0,
            ref_root: 0,
            recursion: 0,
            bops: VecDeque::new(),
            bootstrap: false,
            shadows: IntMap::default(),
            dirty: IntMap::default(),
            fifo: VecDeque::new(),
            clean: IntMap::default(),
            bitmap_cache: Vec::new(),
            max_dirty: DEFAULT_MAX_DIRTY,
            order: WriteOrder::Ascending,
            failed: false,
            unordered_superblock: false,
            stats: TmStats::default(),
        }
    }

    /// Starts fresh metadata on `dev` (§7.7, `dm_tm_create_with_sm` →
    /// `dm_sm_metadata_create`): the space map tracks `min(device blocks,
    /// 4 161 600)` blocks; block 0 is reserved for the superblock, then the index
    /// (1), an empty ref-count tree (2) and the bitmaps (3, …) come from the
    /// bootstrap allocator, their counts are set, and the space map is committed
    /// (the index written in place). The transaction stays open: nothing is
    /// written before the first commit (apart from early write-back).
    pub fn format(dev: D) -> Result<Self, TmError> {
        metadata_sm::format(dev)
    }

    /// Opens committed metadata whose space-map root is `root` (taken from a valid
    /// superblock): reads the index, the bitmaps and the ref-count tree back into
    /// memory. The structures are validated as they are read.
    pub fn open(dev: D, root: &SmRoot) -> Result<Self, TmError> {
        let nr_blocks = root.nr_blocks;
        if nr_blocks == 0
            || nr_blocks
                > dev
                    .nr_blocks()
                    .min(crate::pdata::space_map::MAX_METADATA_BLOCKS)
        {
            return Err(TmError::Invariant(format!(
                "space map of {nr_blocks} blocks on a device of {}",
                dev.nr_blocks()
            )));
        }
        let mut tm = Self::idle(dev, SpaceMap::new(0));
        let index = tm.read(root.bitmap_root, BlockKind::SmIndex)?;
        let nr_bitmaps = nr_blocks.div_ceil(ENTRIES_PER_BITMAP);
        let mut counts: Vec<(u64, u32)> = Vec::new();
        let mut three: Vec<u64> = Vec::new();
        let mut entries = Vec::new();
        for k in 0..nr_bitmaps {
            let e = IndexEntry::decode(&index, k as usize);
            let bm = tm.read(e.blocknr, BlockKind::SmBitmap)?;
            let base = k * ENTRIES_PER_BITMAP;
            for j in 0..ENTRIES_PER_BITMAP.min(nr_blocks - base) {
                match bitmap_entry(&bm, j as usize) {
                    0 => {}
                    3 => three.push(base + j),
                    v => counts.push((base + j, v as u32)),
                }
            }
            entries.push(e);
        }
        let mut big: HashMap<u64, u32> = HashMap::new();
        tm.read_ref_tree(root.ref_count_root, 0, &mut big)?;
        for b in three {
            let c = big.get(&b).copied().ok_or_else(|| {
                TmError::Invariant(format!("block {b} has count 3 but no overflow entry"))
            })?;
            counts.push((b, c));
        }
        // dm_sm_metadata_open: begin = 0, old_ll = ll.
        tm.sm = SpaceMap::from_counts(nr_blocks, counts, entries);
        tm.index = root.bitmap_root;
        tm.ref_root = root.ref_count_root;
        Ok(tm)
    }

    fn read_ref_tree(
        &mut self,
        b: u64,
        depth: usize,
        out: &mut HashMap<u64, u32>,
    ) -> Result<(), TmError> {
        if depth > crate::pdata::walk::MAX_DEPTH {
            return Err(TmError::Invariant("ref-count tree too deep".into()));
        }
        let blk = self.read(b, BlockKind::BtreeNode)?;
        let h = NodeHeader::decode(&blk);
        if !h.fits() {
            return Err(TmError::Invariant(format!("bad ref-count node {b}")));
        }
        for i in 0..h.nr_entries as usize {
            let v = h.value(&blk, i);
            if h.is_leaf() {
                out.insert(h.key(&blk, i), crate::pdata::le32(v, 0));
            } else {
                self.read_ref_tree(le64(v, 0), depth + 1, out)?;
            }
        }
        Ok(())
    }

    /// The device.
    pub fn dev(&self) -> &D {
        &self.dev
    }

    /// Gives the device back.
    pub fn into_dev(self) -> D {
        self.dev
    }

    /// The in-core space map.
    pub fn space_map(&self) -> &SpaceMap {
        &self.sm
    }

    /// I/O counters.
    pub fn stats(&self) -> TmStats {
        self.stats
    }

    /// Holds at most `n` dirty blocks in memory (at least 16).
    pub fn set_max_dirty(&mut self, n: usize) {
        self.max_dirty = n.max(16);
    }

    /// Sets the order in which commits write dirty blocks.
    pub fn set_write_order(&mut self, order: WriteOrder) {
        self.order = order;
    }

    /// True when `b` was allocated or shadowed in this transaction.
    pub fn is_shadow(&self, b: u64) -> bool {
        self.shadows.contains_key(&b)
    }

    /// Reference count of `b`, with the queued changes (`sm_metadata_get_count`).
    pub fn count(&self, b: u64) -> u32 {
        let c = self.sm.count(b) as i64 + self.adjustment(b);
        c.max(0) as u32
    }

    /// Adds a reference to `b` (`dm_tm_inc`).
    pub fn inc(&mut self, b: u64) -> Result<(), TmError> {
        self.sm_change(b, true)
    }

    /// Drops a reference to `b` (`dm_tm_dec`); returns the new count. A block
    /// whose count reaches 0 stays dirty if it was: the kernel writes it anyway.
    pub fn dec(&mut self, b: u64) -> Result<u32, TmError> {
        self.sm_change(b, false)?;
        Ok(self.count(b))
    }

    /// The space-map root as it stands, without committing the space map (what
    /// `dm_sm_copy_root` gives before `dm_tm_pre_commit`, e.g. in dm-era's
    /// `write_superblock` at format time).
    pub fn sm_root(&self) -> SmRoot {
        SmRoot {
            nr_blocks: self.sm.nr_blocks(),
            nr_allocated: self.sm.nr_allocated(),
            bitmap_root: self.index,
            ref_count_root: self.ref_root,
        }
    }

    fn check_ok(&self) -> Result<(), TmError> {
        if self.failed {
            Err(TmError::Failed)
        } else {
            Ok(())
        }
    }

    /// Reads block `b`, validated as `kind` (location and checksum) unless it is
    /// dirty in memory. The block is shared, not copied.
    pub fn read(&mut self, b: u64, kind: BlockKind) -> Result<Arc<Block>, TmError> {
        if let Some(d) = self.dirty.get(&b) {
            return Ok(d.clone());
        }
        if let Some((k, c)) = self.clean.get(&b) {
            if *k == kind || self.shadows.contains_key(&b) {
                return Ok(c.clone());
            }
        }
        let blk = self.dev.read_shared(b).map_err(|source| TmError::Io {
            op: "read",
            block: Some(b),
            source,
        })?;
        if !self.shadows.contains_key(&b) {
            // (A shadow written back early was stamped on the way out.)
            verify(&blk, b, kind).map_err(|error| TmError::BadBlock {
                block: b,
                kind,
                error,
            })?;
        }
        self.remember(b, kind, blk.clone());
        Ok(blk)
    }

    /// Keeps a clean copy of `b` (bounded: the cache is dropped when full).
    fn remember(&mut self, b: u64, kind: BlockKind, blk: Arc<Block>) {
        if self.clean.len() >= CLEAN_CACHE_BLOCKS {
            self.clean.clear();
        }
        self.clean.insert(b, (kind, blk));
    }

    /// Allocates a zeroed block of `kind` (count 1) in the shadow set
    /// (`dm_tm_new_block`).
    pub fn new_block(&mut self, kind: BlockKind) -> Result<u64, TmError> {
        self.check_ok()?;
        let b = self.sm_new_block()?;
        self.shadows.insert(b, kind);
        self.dirty.insert(b, zeroed_shared_block());
        self.fifo.push_back(b);
        self.evict()?;
        Ok(b)
    }

    /// A writable version of `orig` (`dm_tm_shadow_block`, §8.2): `orig` itself
    /// when it is in the shadow set and not shared, otherwise a copy in a new block
    /// (allocated first, then `orig` loses a reference). The flag is true when
    /// `orig` was shared: the caller must then add a reference to every child of
    /// the copy.
    pub fn shadow(&mut self, orig: u64, kind: BlockKind) -> Result<(u64, bool), TmError> {
        self.check_ok()?;
        let inc_children = self.count_is_more_than_one(orig);
        if self.shadows.contains_key(&orig) && !inc_children {
            return Ok((orig, false));
        }
        let new = self.sm_new_block()?;
        self.sm_change(orig, false)?;
        let data = self.read(orig, kind)?;
        self.shadows.insert(new, kind);
        self.dirty.insert(new, data);
        self.fifo.push_back(new);
        self.evict()?;
        Ok((new, inc_children))
    }

    /// The contents of `b` for modification; `b` must be in the shadow set.
    pub fn get_mut(&mut self, b: u64) -> Result<&mut Block, TmError> {
        self.check_ok()?;
        if !self.shadows.contains_key(&b) {
            return Err(TmError::Invariant(format!(
                "block {b} is not writable in this transaction (shadow it first)"
            )));
        }
        if !self.dirty.contains_key(&b) {
            let blk = self.dev.read_shared(b).map_err(|source| TmError::Io {
                op: "read",
                block: Some(b),
                source,
            })?;
            self.dirty.insert(b, blk);
            self.fifo.push_back(b);
            self.evict_except(b)?;
        }
        Ok(Arc::make_mut(
            self.dirty.get_mut(&b).expect("just made dirty"),
        ))
    }

    /// Replaces the contents of `b`, which must be in the shadow set, by `data`
    /// (kept as it is, not copied): what [`get_mut`](Self::get_mut) and an
    /// overwrite of the whole block do, for callers that built the block apart.
    pub fn put(&mut self, b: u64, data: Arc<Block>) -> Result<(), TmError> {
        self.check_ok()?;
        if !self.shadows.contains_key(&b) {
            return Err(TmError::Invariant(format!(
                "block {b} is not writable in this transaction (shadow it first)"
            )));
        }
        if self.dirty.insert(b, data).is_none() {
            self.fifo.push_back(b);
            self.evict_except(b)?;
        }
        Ok(())
    }

    fn evict(&mut self) -> Result<(), TmError> {
        self.evict_except(u64::MAX)
    }

    /// Writes back the oldest dirty blocks while more than `max_dirty` are held.
    fn evict_except(&mut self, keep: u64) -> Result<(), TmError> {
        while self.dirty.len() > self.max_dirty {
            let Some(b) = self.fifo.pop_front() else {
                break;
            };
            if b == keep {
                self.fifo.push_back(b);
                continue;
            }
            if let Some(blk) = self.dirty.remove(&b) {
                self.write_back(b, blk)?;
            }
        }
        Ok(())
    }

    fn write_back(&mut self, b: u64, mut blk: Arc<Block>) -> Result<(), TmError> {
        let kind = *self
            .shadows
            .get(&b)
            .ok_or_else(|| TmError::Invariant(format!("dirty block {b} has no kind")))?;
        stamp(Arc::make_mut(&mut blk), b, kind);
        self.stats.blocks_written += 1;
        self.clean.remove(&b);
        let r = self.dev.write_shared(b, &blk);
        if r.is_ok() {
            self.remember(b, kind, blk);
        }
        r.map_err(|source| {
            self.failed = true;
            TmError::Io {
                op: "write",
                block: Some(b),
                source,
            }
        })
    }

    fn flush(&mut self) -> Result<(), TmError> {
        self.stats.flushes += 1;
        self.dev.flush().map_err(|source| {
            self.failed = true;
            TmError::Io {
                op: "flush",
                block: None,
                source,
            }
        })
    }

    /// First phase of a commit (`dm_tm_pre_commit`, §9.1 step 2): commits the
    /// space map, then writes every dirty block and flushes. Returns the
    /// space-map root for the superblock. Nothing may be modified between this and
    /// [`commit`](Self::commit).
    pub fn pre_commit(&mut self) -> Result<SmRoot, TmError> {
        self.check_ok()?;
        self.sm_commit()?;
        let root = self.sm_root();
        self.write_dirty()?;
        // dm_tm_pre_commit → dm_bm_flush: the blocks are durable before the
        // superblock is written. Before a9d45396f595 ("dm transaction manager:
        // fix corruption due to non-atomic transaction commit") the superblock
        // could go out without that ordering.
        if !self.unordered_superblock {
            self.flush()?;
        }
        Ok(root)
    }

    /// Lets the superblock be written before the blocks it points at are
    /// durable: the kernel bug a9d45396f595 fixed, for the reference models'
    /// `sb-before-meta-flush` variant. Never set by the tools.
    pub fn set_unordered_superblock(&mut self, on: bool) {
        self.unordered_superblock = on;
    }

    /// Encodes the bitmaps changed in this transaction and writes every dirty
    /// block (`dm_bm_flush` without the flush).
    /// Allocation from the committed counts only (HAZARDS.md H-PD1), for the
    /// reference model's `alloc-ignores-current-counts` variant.
    pub fn set_alloc_committed_only(&mut self, on: bool) {
        self.sm.set_alloc_committed_only(on);
    }

    /// Writes back every dirty block without a flush or a commit, as the
    /// kernel's block manager does when its dm-bufio client is destroyed
    /// (`dm_bufio_client_destroy` writes the dirty buffers it holds).
    pub fn write_back_dirty(&mut self) -> Result<(), TmError> {
        let mut blocks: Vec<u64> = self.dirty.keys().copied().collect();
        blocks.sort_unstable();
        for b in blocks {
            if let Some(blk) = self.dirty.remove(&b) {
                self.write_back(b, blk)?;
            }
        }
        self.fifo.clear();
        Ok(())
    }

    fn write_dirty(&mut self) -> Result<(), TmError> {
        let encoded = self.encode_bitmaps();
        let mut blocks: Vec<u64> = self.dirty.keys().copied().collect();
        blocks.sort_unstable();
        if let WriteOrder::Shuffled(seed) = self.order {
            shuffle(&mut blocks, seed ^ self.stats.commits);
        }
        for b in blocks {
            if let Some(blk) = self.dirty.remove(&b) {
                self.write_back(b, blk)?;
            }
        }
        self.fifo.clear();
        // The bitmaps as written are the bases of their next encoding.
        for (k, loc) in encoded {
            self.bitmap_cache[k] = self.clean.get(&loc).map(|(_, blk)| blk.clone());
        }
        Ok(())
    }

    fn write_superblock(&mut self, sb: &Arc<Block>) -> Result<(), TmError> {
        self.stats.blocks_written += 1;
        self.clean.remove(&SUPERBLOCK_LOCATION);
        self.dev
            .write_shared(SUPERBLOCK_LOCATION, sb)
            .map_err(|source| {
                self.failed = true;
                TmError::Io {
                    op: "write",
                    block: Some(SUPERBLOCK_LOCATION),
                    source,
                }
            })
    }

    /// Second phase (`dm_tm_commit`, §9.1 step 5): writes the superblock `sb`
    /// (encoded and stamped by the caller) to block 0, flushes, and starts a new
    /// transaction.
    pub fn commit(&mut self, sb: &Block) -> Result<(), TmError> {
        self.commit_shared(Arc::new(*sb))
    }

    /// [`commit`](Self::commit) of a superblock the device may keep as it is.
    pub fn commit_shared(&mut self, sb: Arc<Block>) -> Result<(), TmError> {
        self.check_ok()?;
        if !self.dirty.is_empty() {
            return Err(TmError::Invariant(
                "blocks were modified after pre_commit".into(),
            ));
        }
        self.write_superblock(&sb)?;
        self.flush()?;
        self.shadows.clear();
        self.stats.commits += 1;
        Ok(())
    }

    /// `dm_tm_commit` without `dm_tm_pre_commit` (dm-era's `write_superblock` at
    /// format time): every dirty block and the superblock `sb` are written, then
    /// one flush. The space map is not committed: its index block is not
    /// rewritten and the committed counts used by the allocator stay those of the
    /// last space-map commit, as in the kernel. Take the root for `sb` from
    /// [`sm_root`](Self::sm_root).
    pub fn commit_without_sm(&mut self, sb: &Block) -> Result<(), TmError> {
        self.commit_without_sm_shared(Arc::new(*sb))
    }

    /// [`commit_without_sm`](Self::commit_without_sm) of a superblock the
    /// device may keep as it is.
    pub fn commit_without_sm_shared(&mut self, sb: Arc<Block>) -> Result<(), TmError> {
        self.check_ok()?;
        self.write_dirty()?;
        self.write_superblock(&sb)?;
        self.flush()?;
        self.shadows.clear();
        self.stats.commits += 1;
        Ok(())
    }

    /// Writes block `b` with `data` directly, outside any transaction, and flushes
    /// (used to invalidate an old superblock before anything else is written).
    pub fn write_raw_and_flush(&mut self, b: u64, data: &Block) -> Result<(), TmError> {
        self.check_ok()?;
        self.stats.blocks_written += 1;
        self.clean.remove(&b);
        self.dev.write(b, data).map_err(|source| {
            self.failed = true;
            TmError::Io {
                op: "write",
                block: Some(b),
                source,
            }
        })?;
        self.flush()
    }
}

/// Fisher-Yates with SplitMix64.
fn shuffle(v: &mut [u64], seed: u64) {
    let mut s = seed;
    let mut next = || {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    for i in (1..v.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}
