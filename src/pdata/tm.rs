//! The transaction manager (PERSISTENT-DATA.md §7.7-§9): copy-on-write access to
//! metadata blocks, reference counting through the in-core space map, and the
//! kernel's two-phase commit.
//!
//! * [`TransactionManager::new_block`] allocates a zeroed block (count 1) and
//!   [`TransactionManager::shadow`] gives a writable copy of a committed block
//!   (§8.2): blocks allocated or shadowed in the open transaction (the *shadow set*)
//!   are modified in place, anything else is copied to a new block and the original
//!   loses one reference. `inc_children` tells the caller that the original was
//!   shared, so the copy's children need one more reference each.
//! * The allocator never hands out a block that is live in the last committed
//!   state (§7.9), so the committed state stays intact until the new superblock is
//!   durable.
//! * [`TransactionManager::pre_commit`] writes the space map (§7.10), then every
//!   dirty block, then flushes; [`TransactionManager::commit`] writes the
//!   superblock and flushes again (§9.1). Dirty blocks may also be written back
//!   early, oldest first, when more than [`TransactionManager::set_max_dirty`] are
//!   held, like the kernel's buffer cache under memory pressure; that keeps memory
//!   bounded for bulk builds and is harmless because no dirty block is reachable
//!   from the committed state.
//!
//! This is the base of both the restore tools (one transaction on a fresh device)
//! and the reference model of the kernel's commit paths, which runs many
//! transactions on one device: [`TransactionManager::open`] loads a committed
//! space map back from disk, and [`WriteOrder`] permutes the write-back order of a
//! commit the way dm-bufio is free to.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;

use crate::io::{zeroed_block, Block, BlockDevice};
use crate::pdata::btree::build::BTreeBuilder;
use crate::pdata::btree::NodeHeader;
use crate::pdata::checksum::{stamp, verify, BlockError, BlockKind};
use crate::pdata::le64;
use crate::pdata::space_map::writer::{SmError, SpaceMap};
use crate::pdata::space_map::{
    bitmap_entry, IndexEntry, SmRoot, ENTRIES_PER_BITMAP, MAX_METADATA_BLOCKS,
};
use crate::superblock::SUPERBLOCK_LOCATION;

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

/// Where the space map itself lives on disk.
#[derive(Debug, Clone, Default)]
struct SmLayout {
    index: u64,
    bitmaps: Vec<u64>,
    entries: Vec<IndexEntry>,
    ref_root: u64,
    ref_nodes: Vec<u64>,
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
    layout: SmLayout,
    /// Blocks allocated or shadowed in this transaction, with their kind.
    shadows: HashMap<u64, BlockKind>,
    /// Modified blocks not yet written.
    dirty: HashMap<u64, Box<Block>>,
    /// Dirty blocks, oldest first (may hold stale entries).
    fifo: VecDeque<u64>,
    max_dirty: usize,
    order: WriteOrder,
    failed: bool,
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
            layout: SmLayout::default(),
            shadows: HashMap::new(),
            dirty: HashMap::new(),
            fifo: VecDeque::new(),
            max_dirty: DEFAULT_MAX_DIRTY,
            order: WriteOrder::Ascending,
            failed: false,
            stats: TmStats::default(),
        }
    }

    /// Starts fresh metadata on `dev` (§7.7): the space map tracks
    /// `min(device blocks, 4 161 600)` blocks; block 0 is reserved for the
    /// superblock, then the index (1), an empty ref-count tree (2) and the bitmaps
    /// (3, …) are allocated, as the kernel's bootstrap does. Nothing is written
    /// before the first commit (apart from early write-back).
    pub fn format(dev: D) -> Result<Self, TmError> {
        let nr_blocks = dev.nr_blocks().min(MAX_METADATA_BLOCKS);
        let nr_bitmaps = nr_blocks.div_ceil(ENTRIES_PER_BITMAP) as usize;
        if nr_blocks < 3 + nr_bitmaps as u64 {
            return Err(TmError::Sm(SmError::NoSpace { nr_blocks }));
        }
        let mut tm = Self::idle(dev, SpaceMap::new(nr_blocks));
        let sb = tm.sm.alloc()?;
        debug_assert_eq!(sb, SUPERBLOCK_LOCATION);
        tm.layout.index = tm.new_block(BlockKind::SmIndex)?;
        tm.build_ref_tree()?;
        for _ in 0..nr_bitmaps {
            let b = tm.new_block(BlockKind::SmBitmap)?;
            tm.layout.bitmaps.push(b);
        }
        tm.layout.entries = vec![IndexEntry::default(); nr_bitmaps];
        Ok(tm)
    }

    /// Opens committed metadata whose space-map root is `root` (taken from a valid
    /// superblock): reads the index, the bitmaps and the ref-count tree back into
    /// memory. The structures are validated as they are read.
    pub fn open(dev: D, root: &SmRoot) -> Result<Self, TmError> {
        let nr_blocks = root.nr_blocks;
        if nr_blocks == 0 || nr_blocks > dev.nr_blocks().min(MAX_METADATA_BLOCKS) {
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
            tm.layout.bitmaps.push(e.blocknr);
            tm.layout.entries.push(e);
        }
        let mut big: HashMap<u64, u32> = HashMap::new();
        let mut nodes = Vec::new();
        tm.read_ref_tree(root.ref_count_root, 0, &mut big, &mut nodes)?;
        for b in three {
            let c = big.get(&b).copied().ok_or_else(|| {
                TmError::Invariant(format!("block {b} has count 3 but no overflow entry"))
            })?;
            counts.push((b, c));
        }
        tm.sm = SpaceMap::from_counts(nr_blocks, counts);
        tm.layout.index = root.bitmap_root;
        tm.layout.ref_root = root.ref_count_root;
        tm.layout.ref_nodes = nodes;
        Ok(tm)
    }

    fn read_ref_tree(
        &mut self,
        b: u64,
        depth: usize,
        out: &mut HashMap<u64, u32>,
        nodes: &mut Vec<u64>,
    ) -> Result<(), TmError> {
        if depth > crate::pdata::walk::MAX_DEPTH {
            return Err(TmError::Invariant("ref-count tree too deep".into()));
        }
        let blk = self.read(b, BlockKind::BtreeNode)?;
        nodes.push(b);
        let h = NodeHeader::decode(&blk);
        if !h.fits() {
            return Err(TmError::Invariant(format!("bad ref-count node {b}")));
        }
        for i in 0..h.nr_entries as usize {
            let v = h.value(&blk, i);
            if h.is_leaf() {
                out.insert(h.key(&blk, i), crate::pdata::le32(v, 0));
            } else {
                self.read_ref_tree(le64(v, 0), depth + 1, out, nodes)?;
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

    /// Reference count of `b`.
    pub fn count(&self, b: u64) -> u32 {
        self.sm.count(b)
    }

    /// Adds a reference to `b`.
    pub fn inc(&mut self, b: u64) -> Result<(), TmError> {
        Ok(self.sm.inc(b)?)
    }

    /// Drops a reference to `b`; a block whose count reaches 0 is forgotten (it is
    /// never written). Returns the new count.
    pub fn dec(&mut self, b: u64) -> Result<u32, TmError> {
        let c = self.sm.dec(b)?;
        if c == 0 {
            self.dirty.remove(&b);
            self.shadows.remove(&b);
        }
        Ok(c)
    }

    fn check_ok(&self) -> Result<(), TmError> {
        if self.failed {
            Err(TmError::Failed)
        } else {
            Ok(())
        }
    }

    /// Reads block `b`, validated as `kind` (location and checksum) unless it is
    /// dirty in memory.
    pub fn read(&mut self, b: u64, kind: BlockKind) -> Result<Box<Block>, TmError> {
        if let Some(d) = self.dirty.get(&b) {
            return Ok(d.clone());
        }
        let mut blk = zeroed_block();
        self.dev.read(b, &mut blk).map_err(|source| TmError::Io {
            op: "read",
            block: Some(b),
            source,
        })?;
        if self.shadows.contains_key(&b) {
            // Written back early by us; stamped on the way out.
            return Ok(blk);
        }
        verify(&blk, b, kind).map_err(|error| TmError::BadBlock {
            block: b,
            kind,
            error,
        })?;
        Ok(blk)
    }

    /// Allocates a zeroed block of `kind` (count 1) in the shadow set.
    pub fn new_block(&mut self, kind: BlockKind) -> Result<u64, TmError> {
        self.check_ok()?;
        let b = self.sm.alloc()?;
        self.shadows.insert(b, kind);
        self.dirty.insert(b, zeroed_block());
        self.fifo.push_back(b);
        self.evict()?;
        Ok(b)
    }

    /// A writable version of `orig` (§8.2): `orig` itself when it is in the shadow
    /// set and not shared, otherwise a copy in a new block (and `orig` loses a
    /// reference). The flag is true when `orig` was shared: the caller must then add
    /// a reference to every child of the copy.
    pub fn shadow(&mut self, orig: u64, kind: BlockKind) -> Result<(u64, bool), TmError> {
        self.check_ok()?;
        let inc_children = self.sm.count(orig) > 1;
        if self.shadows.contains_key(&orig) && !inc_children {
            return Ok((orig, false));
        }
        let data = self.read(orig, kind)?;
        let new = self.sm.alloc()?;
        self.dec(orig)?;
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
            let mut blk = zeroed_block();
            self.dev.read(b, &mut blk).map_err(|source| TmError::Io {
                op: "read",
                block: Some(b),
                source,
            })?;
            self.dirty.insert(b, blk);
            self.fifo.push_back(b);
            self.evict_except(b)?;
        }
        Ok(self.dirty.get_mut(&b).expect("just made dirty"))
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

    fn write_back(&mut self, b: u64, mut blk: Box<Block>) -> Result<(), TmError> {
        let kind = *self
            .shadows
            .get(&b)
            .ok_or_else(|| TmError::Invariant(format!("dirty block {b} has no kind")))?;
        stamp(&mut blk, b, kind);
        self.stats.blocks_written += 1;
        self.dev.write(b, &blk).map_err(|source| {
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

    /// Rebuilds the ref-count tree from the overflow counts; the old tree's nodes
    /// are released.
    fn build_ref_tree(&mut self) -> Result<(), TmError> {
        let entries = self.sm.overflow_entries();
        let mut bld = BTreeBuilder::new(4);
        for (b, c) in entries {
            bld.push(self, b, &c.to_le_bytes())?;
        }
        let built = bld.finish(self)?;
        let old = std::mem::replace(&mut self.layout.ref_nodes, built.nodes);
        self.layout.ref_root = built.root;
        for b in old {
            self.dec(b)?;
        }
        self.sm.clear_big_dirty();
        Ok(())
    }

    /// Writes the space map (§7.10): the ref-count tree if overflow counts changed,
    /// every changed bitmap and the index, each moved to a new block unless already
    /// new in this transaction. Moving them changes counts, which may touch more
    /// bitmaps; the loop runs until every changed bitmap has a block of this
    /// transaction, and only then are the contents encoded, from the final counts.
    fn commit_space_map(&mut self) -> Result<SmRoot, TmError> {
        if self.sm.big_dirty() {
            self.build_ref_tree()?;
        }
        if !self.sm.dirty_bitmaps().is_empty() {
            loop {
                let mut moved = false;
                if !self.shadows.contains_key(&self.layout.index) {
                    let old = self.layout.index;
                    self.layout.index = self.new_block(BlockKind::SmIndex)?;
                    self.dec(old)?;
                    moved = true;
                }
                for k in self.sm.dirty_bitmaps() {
                    let old = self.layout.bitmaps[k as usize];
                    if !self.shadows.contains_key(&old) {
                        self.layout.bitmaps[k as usize] = self.new_block(BlockKind::SmBitmap)?;
                        self.dec(old)?;
                        moved = true;
                    }
                }
                if !moved {
                    break;
                }
            }
            for k in self.sm.dirty_bitmaps() {
                let loc = self.layout.bitmaps[k as usize];
                let mut blk = zeroed_block();
                self.layout.entries[k as usize] = self.sm.encode_bitmap(k, loc, &mut blk);
                *self.get_mut(loc)? = *blk;
            }
            let mut idx = zeroed_block();
            for (k, e) in self.layout.entries.iter().enumerate() {
                e.encode(&mut idx, k);
            }
            let loc = self.layout.index;
            *self.get_mut(loc)? = *idx;
            self.sm.clear_dirty_bitmaps();
        }
        Ok(SmRoot {
            nr_blocks: self.sm.nr_blocks(),
            nr_allocated: self.sm.nr_allocated(),
            bitmap_root: self.layout.index,
            ref_count_root: self.layout.ref_root,
        })
    }

    /// First phase of a commit (§9.1 step 2): writes the space map, then every
    /// dirty block, then flushes. Returns the space-map root for the superblock.
    /// Nothing may be modified between this and [`commit`](Self::commit).
    pub fn pre_commit(&mut self) -> Result<SmRoot, TmError> {
        self.check_ok()?;
        let root = self.commit_space_map()?;
        self.sm.commit();
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
        self.flush()?;
        Ok(root)
    }

    /// Second phase (§9.1 step 5): writes the superblock `sb` (encoded and stamped
    /// by the caller) to block 0, flushes, and starts a new transaction.
    pub fn commit(&mut self, sb: &Block) -> Result<(), TmError> {
        self.check_ok()?;
        if !self.dirty.is_empty() {
            return Err(TmError::Invariant(
                "blocks were modified after pre_commit".into(),
            ));
        }
        self.stats.blocks_written += 1;
        self.dev.write(SUPERBLOCK_LOCATION, sb).map_err(|source| {
            self.failed = true;
            TmError::Io {
                op: "write",
                block: Some(SUPERBLOCK_LOCATION),
                source,
            }
        })?;
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
