//! dm-era's metadata (`struct era_metadata` in `dm-era-target.c`): the two
//! writesets (in-core bits and on-disk bitset), the writeset tree, the era array,
//! the metadata snapshot, the digest coroutine and the commit.

use crate::era::superblock::{self as esb, EraSuperblock, WritesetDisk};
use crate::io::BlockDevice;
use crate::model::bits::Bits;
use crate::model::ModelError;
use crate::pdata::array_write::Array;
use crate::pdata::bitset_write::Bitset;
use crate::pdata::btree::ops::{self, RefValues};
use crate::pdata::checksum::BlockKind;
use crate::pdata::space_map::SmRoot;
use crate::pdata::tm::TransactionManager;
use crate::sim::MetaDev;
use crate::trace::Variant;

/// `INSERTS_PER_STEP`.
pub const INSERTS_PER_STEP: u64 = 100;

/// `struct writeset`: in-core bits and the on-disk bitset (`root` 0 = none).
#[derive(Debug, Clone, Default)]
struct Writeset {
    bits: Bits,
    nr_bits: u32,
    root: u64,
}

/// The digest coroutine's state (`struct digest`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DigestStep {
    Lookup,
    Transcribe,
    Remove,
}

#[derive(Debug, Clone)]
struct Digest {
    step: Option<DigestStep>,
    era: u32,
    nr_bits: u64,
    current_bit: u64,
    ws_root: u64,
    /// The bitset cache (`struct dm_disk_bitset`'s current word): index, value.
    cache: Option<(u64, u64)>,
}

/// `struct era_metadata`.
pub struct EraMeta {
    tm: TransactionManager<MetaDev>,
    block_size: u32,
    /// `md->nr_blocks`.
    pub nr_blocks: u64,
    /// `md->current_era`.
    pub current_era: u32,
    ws: [Writeset; 2],
    current: usize,
    writeset_tree_root: u64,
    era_array: Array,
    /// Block of the metadata snapshot's superblock (0 = none).
    pub metadata_snap: u64,
    archived_writesets: bool,
    digest: Digest,
    last_sm_root: SmRoot,
    sm_root: Option<SmRoot>,
    variant: Variant,
}

impl std::fmt::Debug for EraMeta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EraMeta")
            .field("nr_blocks", &self.nr_blocks)
            .field("current_era", &self.current_era)
            .finish()
    }
}

const WS_SIZE: u32 = WritesetDisk::SIZE as u32;

impl EraMeta {
    /// `metadata_close` of a table being destroyed: the block manager's
    /// dm-bufio client writes back the blocks it holds dirty, without a commit.
    pub fn destroy(mut self) -> Result<(), ModelError> {
        self.tm.write_back_dirty()?;
        Ok(())
    }

    /// `metadata_open`: formats an all-zero superblock (`format_metadata`) or
    /// opens the committed metadata (`open_metadata`, which loads the committed
    /// current writeset unless the variant is `no-recover-current-writeset`).
    pub fn open(
        dev: MetaDev,
        block_size: u32,
        start_era: u32,
        variant: Variant,
    ) -> Result<Self, ModelError> {
        let mut blk = crate::io::zeroed_block();
        dev.read(0, &mut blk).map_err(ModelError::io)?;
        let formatted = blk[..512].iter().any(|&b| b != 0);
        if !formatted {
            // create_fresh_metadata + write_superblock
            let mut tm = TransactionManager::format(dev)?;
            tm.set_unordered_superblock(variant == Variant::SbBeforeMetaFlush);
            tm.set_alloc_committed_only(variant == Variant::AllocIgnoresCurrentCounts);
            // dm_btree_empty, then dm_array_empty.
            let tree = ops::empty(&mut tm, WS_SIZE)?;
            let era_array = Array::empty(&mut tm, 4)?;
            let mut m = EraMeta {
                tm,
                block_size,
                nr_blocks: 0,
                current_era: start_era,
                ws: [Writeset::default(), Writeset::default()],
                current: 0,
                writeset_tree_root: tree,
                era_array,
                metadata_snap: 0,
                archived_writesets: false,
                digest: Digest::idle(),
                last_sm_root: SmRoot::default(),
                sm_root: None,
                variant,
            };
            // write_superblock: save_sm_root, then dm_tm_commit without a
            // pre-commit (the space map is not committed at format).
            m.sm_root = Some(m.tm.sm_root());
            m.write_superblock_with(|tm, sb| tm.commit_without_sm_shared(sb))?;
            return Ok(m);
        }
        let (s, _) = esb::read_at(&dev, 0).map_err(|e| ModelError::Open(e.to_string()))?;
        if s.data_block_size != block_size {
            return Err(ModelError::Open(format!(
                "changing the data block size (from {} to {block_size}) is not supported",
                s.data_block_size
            )));
        }
        let mut tm = TransactionManager::open(dev, &s.sm_root)?;
        tm.set_unordered_superblock(variant == Variant::SbBeforeMetaFlush);
        tm.set_alloc_committed_only(variant == Variant::AllocIgnoresCurrentCounts);
        let mut ws = [Writeset::default(), Writeset::default()];
        if variant != Variant::NoRecoverCurrentWriteset {
            // de89afc1e40f: the committed current writeset is kept.
            ws[0].root = s.current_writeset.root;
            ws[0].nr_bits = s.current_writeset.nr_bits;
        }
        Ok(EraMeta {
            tm,
            block_size,
            nr_blocks: s.nr_blocks as u64,
            current_era: s.current_era,
            ws,
            current: 0,
            writeset_tree_root: s.writeset_tree_root,
            era_array: Array {
                root: s.era_array_root,
                value_size: 4,
                nr_entries: s.nr_blocks as u64,
            },
            metadata_snap: s.metadata_snap,
            archived_writesets: true,
            digest: Digest::idle(),
            last_sm_root: s.sm_root,
            sm_root: None,
            variant,
        })
    }

    /// Metadata blocks in use.
    pub fn used_blocks(&self) -> u64 {
        self.tm.space_map().nr_allocated()
    }

    /// `metadata_resize`: new in-core writesets (zeroed) and the era array
    /// resized, new entries 0.
    pub fn resize(&mut self, new_size: u64) -> Result<(), ModelError> {
        if new_size >= 1 << 31 {
            return Err(ModelError::Trace(format!(
                "invalid number of origin blocks {new_size}"
            )));
        }
        for w in &mut self.ws {
            w.bits = Bits::new(new_size);
        }
        self.era_array.resize(&mut self.tm, new_size, &[0u8; 4])?;
        self.nr_blocks = new_size;
        Ok(())
    }

    /// `metadata_current_marked`: the in-core bit.
    pub fn current_marked(&self, block: u64) -> bool {
        self.ws[self.current].bits.get(block)
    }

    /// `writeset_test_and_set`: sets the on-disk bit unless the in-core bit is
    /// set; true when a commit is needed. The `incore-bit-before-commit` variant
    /// also sets the in-core bit now.
    pub fn test_and_set(&mut self, block: u64) -> Result<bool, ModelError> {
        let c = self.current;
        if self.ws[c].bits.get(block) {
            return Ok(false);
        }
        if self.ws[c].root == 0 {
            return Err(ModelError::internal(
                "mark without a current writeset".into(),
            ));
        }
        let mut bs = Bitset::open(self.ws[c].root, self.ws[c].nr_bits as u64);
        bs.assign(&mut self.tm, block, true)?;
        self.ws[c].root = bs.root();
        if self.variant == Variant::IncoreBitBeforeCommit {
            self.ws[c].bits.set(block);
        }
        Ok(true)
    }

    /// The in-core half of the worker's submit: `set_bit(block, ws->bits)`.
    pub fn set_incore(&mut self, block: u64) {
        let c = self.current;
        self.ws[c].bits.set(block);
    }

    /// `metadata_era_archive`.
    pub fn archive(&mut self) -> Result<(), ModelError> {
        let c = self.current;
        let mut v = [0u8; WritesetDisk::SIZE];
        WritesetDisk {
            nr_bits: self.ws[c].nr_bits,
            root: self.ws[c].root,
        }
        .encode(&mut v);
        self.writeset_tree_root = ops::insert(
            &mut self.tm,
            self.writeset_tree_root,
            WS_SIZE,
            self.current_era as u64,
            &v,
            &RefValues::BitsetRoots,
        )?;
        self.ws[c].root = 0;
        self.archived_writesets = true;
        Ok(())
    }

    /// `metadata_new_era`: a fresh writeset (`writeset_init`), era + 1.
    pub fn new_era(&mut self) -> Result<(), ModelError> {
        let n = 1 - self.current;
        self.ws[n].bits = Bits::new(self.nr_blocks);
        self.ws[n].nr_bits = self.nr_blocks as u32;
        let bs = Bitset::new(&mut self.tm, self.nr_blocks)?;
        self.ws[n].root = bs.root();
        self.current = n;
        self.current_era = self.current_era.wrapping_add(1);
        Ok(())
    }

    /// `metadata_era_rollover`.
    pub fn rollover(&mut self) -> Result<(), ModelError> {
        if self.ws[self.current].root != 0 {
            self.archive()?;
        }
        self.new_era()
    }

    /// `metadata_take_snap` (after its rollover and commit): a shadow copy of the
    /// superblock, with the tree and array roots gaining a reference.
    pub fn take_snap(&mut self) -> Result<(), ModelError> {
        if self.metadata_snap != 0 {
            return Err(ModelError::NotEnabled(
                "a metadata snapshot already exists".into(),
            ));
        }
        self.rollover()?;
        self.commit()?;
        self.tm.inc(0)?;
        let (copy, _) = self.tm.shadow(0, BlockKind::EraSuperblock)?;
        self.tm.inc(self.writeset_tree_root)?;
        self.tm.inc(self.era_array.root)?;
        self.metadata_snap = copy;
        Ok(())
    }

    /// `metadata_drop_snap`.
    pub fn drop_snap(&mut self) -> Result<(), ModelError> {
        if self.metadata_snap == 0 {
            return Err(ModelError::NotEnabled(
                "no metadata snapshot to drop".into(),
            ));
        }
        let loc = self.metadata_snap;
        let blk = self.tm.read(loc, BlockKind::EraSuperblock)?;
        let s = EraSuperblock::decode(&blk);
        self.metadata_snap = 0;
        ops::delete(
            &mut self.tm,
            s.writeset_tree_root,
            WS_SIZE,
            &RefValues::BitsetRoots,
        )?;
        Array {
            root: s.era_array_root,
            value_size: 4,
            nr_entries: s.nr_blocks as u64,
        }
        .delete(&mut self.tm)?;
        self.tm.dec(loc)?;
        Ok(())
    }

    /// First half of `metadata_commit`: bitset flush and `dm_tm_pre_commit`, then
    /// `save_sm_root` (the `sm-root-before-precommit` variant keeps the root from
    /// before the pre-commit, as before the fix).
    pub fn commit_meta(&mut self) -> Result<(), ModelError> {
        let root = self.tm.pre_commit()?;
        self.sm_root = Some(if self.variant == Variant::SmRootBeforePrecommit {
            self.last_sm_root
        } else {
            root
        });
        self.last_sm_root = root;
        Ok(())
    }

    /// Second half: `prepare_superblock` and `dm_tm_commit`.
    pub fn commit_super(&mut self) -> Result<(), ModelError> {
        self.write_superblock_with(|tm, sb| tm.commit_shared(sb))
    }

    fn write_superblock_with(
        &mut self,
        commit: impl FnOnce(
            &mut TransactionManager<MetaDev>,
            std::sync::Arc<crate::io::Block>,
        ) -> Result<(), crate::pdata::tm::TmError>,
    ) -> Result<(), ModelError> {
        let sm_root = self
            .sm_root
            .take()
            .ok_or_else(|| ModelError::NotEnabled("commit.super without commit.meta".into()))?;
        let c = &self.ws[self.current];
        let s = EraSuperblock {
            flags: 0,
            sm_root,
            data_block_size: self.block_size,
            metadata_block_size: 8,
            nr_blocks: self.nr_blocks as u32,
            current_era: self.current_era,
            current_writeset: WritesetDisk {
                nr_bits: c.nr_bits,
                root: c.root,
            },
            writeset_tree_root: self.writeset_tree_root,
            era_array_root: self.era_array.root,
            metadata_snap: self.metadata_snap,
        };
        let mut blk = crate::io::zeroed_shared_block();
        s.encode_into(0, std::sync::Arc::make_mut(&mut blk));
        commit(&mut self.tm, blk)?;
        Ok(())
    }

    /// True between `commit.meta` and `commit.super`.
    pub fn meta_written(&self) -> bool {
        self.sm_root.is_some()
    }

    /// `metadata_commit`.
    pub fn commit(&mut self) -> Result<(), ModelError> {
        self.commit_meta()?;
        self.commit_super()
    }

    /// `kick_off_digest`.
    pub fn kick_off_digest(&mut self) {
        if self.archived_writesets {
            self.archived_writesets = false;
            if self.digest.step.is_none() {
                self.digest = Digest {
                    step: Some(DigestStep::Lookup),
                    ..Digest::idle()
                };
            }
        }
    }

    /// True while the digest has steps to run.
    pub fn digesting(&self) -> bool {
        self.digest.step.is_some()
    }

    /// `process_old_eras`: one step of the digest coroutine.
    pub fn digest_step(&mut self) -> Result<(), ModelError> {
        match self.digest.step {
            None => Ok(()),
            Some(DigestStep::Lookup) => {
                // metadata_digest_lookup_writeset
                let lowest = ops::lowest(&mut self.tm, self.writeset_tree_root)?;
                let Some((key, v)) = lowest else {
                    self.digest.step = None;
                    return Ok(());
                };
                let w = WritesetDisk::decode(&v);
                self.digest.era = key as u32;
                self.digest.ws_root = w.root;
                self.digest.nr_bits = (w.nr_bits as u64).min(self.nr_blocks);
                self.digest.current_bit = 0;
                if self.variant != Variant::StaleDigestCache {
                    // "Reinitialize bitset cache before digesting a new writeset".
                    self.digest.cache = None;
                }
                self.digest.step = Some(DigestStep::Transcribe);
                Ok(())
            }
            Some(DigestStep::Transcribe) => {
                // metadata_digest_transcribe_writeset
                let d = self.digest.clone();
                let e = (d.current_bit + INSERTS_PER_STEP).min(d.nr_bits);
                let bs = Bitset::open(d.ws_root, d.nr_bits);
                for b in d.current_bit..e {
                    let wi = b / 64;
                    let word = match self.digest.cache {
                        Some((i, w)) if i == wi => w,
                        _ => {
                            let w = bs.word(&mut self.tm, wi)?;
                            self.digest.cache = Some((wi, w));
                            w
                        }
                    };
                    if word >> (b % 64) & 1 == 1 {
                        self.era_array.set(&mut self.tm, b, &d.era.to_le_bytes())?;
                    }
                }
                if e == d.nr_bits {
                    self.digest.step = Some(DigestStep::Remove);
                } else {
                    self.digest.current_bit = e;
                }
                Ok(())
            }
            Some(DigestStep::Remove) => {
                // metadata_digest_remove_writeset
                self.writeset_tree_root = ops::remove(
                    &mut self.tm,
                    self.writeset_tree_root,
                    WS_SIZE,
                    self.digest.era as u64,
                    &RefValues::BitsetRoots,
                )?;
                self.digest.step = Some(DigestStep::Lookup);
                Ok(())
            }
        }
    }
}

impl Digest {
    fn idle() -> Self {
        Digest {
            step: None,
            era: 0,
            nr_bits: 0,
            current_bit: 0,
            ws_root: 0,
            cache: None,
        }
    }
}
