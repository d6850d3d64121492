//! dm-era superblock (ERA.md §2).
//!
//! ```text
//!   0  csum                      u32   XOR 146538381
//!   4  flags                     u32   0 (kernel) / 1 (userspace clean_shutdown)
//!   8  blocknr                   u64   self location (a snapshot copy: its own)
//!  16  uuid                      [16]
//!  32  magic                     u64   2126579579
//!  40  version                   u32   1
//!  44  metadata_space_map_root   [128]
//! 172  data_block_size           u32   sectors
//! 176  metadata_block_size       u32   8
//! 180  nr_blocks                 u32
//! 184  current_era               u32
//! 188  current_writeset.nr_bits  u32
//! 192  current_writeset.root     u64   0 = none
//! 200  writeset_tree_root        u64
//! 208  era_array_root            u64
//! 216  metadata_snap             u64   0 = none
//! 224  zeros to the end of the block
//! ```

use crate::io::{Block, BlockDevice};
use crate::pdata::array::array_max_entries;
use crate::pdata::checksum::{stamp, BlockKind};
use crate::pdata::space_map::SmRoot;
use crate::pdata::{le32, le64, put_le32, put_le64};
use crate::superblock::{
    read_superblock, SuperblockError, FLAGS_OFFSET, MAGIC_OFFSET, METADATA_VERSION, VERSION_OFFSET,
};

/// dm-era's superblock magic.
pub const ERA_MAGIC: u64 = 2_126_579_579;
/// The `metadata_block_size` the kernel writes (sectors).
pub const METADATA_BLOCK_SIZE_SECTORS: u32 = 8;

mod off {
    pub const DATA_BLOCK_SIZE: usize = 172;
    pub const METADATA_BLOCK_SIZE: usize = 176;
    pub const NR_BLOCKS: usize = 180;
    pub const CURRENT_ERA: usize = 184;
    pub const CURRENT_WRITESET: usize = 188;
    pub const WRITESET_TREE_ROOT: usize = 200;
    pub const ERA_ARRAY_ROOT: usize = 208;
    pub const METADATA_SNAP: usize = 216;
    pub const END: usize = 224;
}

/// `writeset_disk` (ERA.md §3.1): 12 packed bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WritesetDisk {
    /// Bits in the bitset.
    pub nr_bits: u32,
    /// Bitset root; 0 = none.
    pub root: u64,
}

impl WritesetDisk {
    /// Size on disk.
    pub const SIZE: usize = 12;

    /// Decodes from 12 bytes (unaligned).
    pub fn decode(v: &[u8]) -> Self {
        WritesetDisk {
            nr_bits: le32(v, 0),
            root: le64(v, 4),
        }
    }

    /// Encodes into 12 bytes.
    pub fn encode(&self, v: &mut [u8]) {
        put_le32(v, 0, self.nr_bits);
        put_le64(v, 4, self.root);
    }
}

/// A decoded dm-era superblock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EraSuperblock {
    /// `flags`.
    pub flags: u32,
    /// The space-map root.
    pub sm_root: SmRoot,
    /// Origin block size in sectors.
    pub data_block_size: u32,
    /// Always 8 from the kernel.
    pub metadata_block_size: u32,
    /// Origin blocks tracked (length of the era array).
    pub nr_blocks: u32,
    /// The era in progress.
    pub current_era: u32,
    /// The current writeset (root 0 = none).
    pub current_writeset: WritesetDisk,
    /// Root of the writeset tree.
    pub writeset_tree_root: u64,
    /// Root of the era array.
    pub era_array_root: u64,
    /// Location of the metadata snapshot, 0 = none.
    pub metadata_snap: u64,
}

impl EraSuperblock {
    /// Decodes the fields (no validation).
    pub fn decode(b: &Block) -> Self {
        EraSuperblock {
            flags: le32(b, FLAGS_OFFSET),
            sm_root: SmRoot::decode(b),
            data_block_size: le32(b, off::DATA_BLOCK_SIZE),
            metadata_block_size: le32(b, off::METADATA_BLOCK_SIZE),
            nr_blocks: le32(b, off::NR_BLOCKS),
            current_era: le32(b, off::CURRENT_ERA),
            current_writeset: WritesetDisk::decode(
                &b[off::CURRENT_WRITESET..off::CURRENT_WRITESET + 12],
            ),
            writeset_tree_root: le64(b, off::WRITESET_TREE_ROOT),
            era_array_root: le64(b, off::ERA_ARRAY_ROOT),
            metadata_snap: le64(b, off::METADATA_SNAP),
        }
    }

    /// Why `nr_blocks` cannot be that of metadata on a device of `meta_blocks`
    /// blocks (the smaller of the space map's `nr_blocks` and the device's size):
    /// it is not below 2^31 (the kernel's `valid_nr_blocks`), or its era array
    /// needs more array blocks than the device has (the kernel allocates every
    /// array block, none shared). Everything that reads the era array, or lists
    /// blocks in repair, is bounded by this.
    pub fn nr_blocks_error(&self, meta_blocks: u64) -> Option<String> {
        let n = self.nr_blocks as u64;
        if n >= 1 << 31 {
            return Some(format!("nr_blocks {n} is not below 2^31"));
        }
        let need = n.div_ceil(array_max_entries(4) as u64);
        (need > meta_blocks).then(|| {
            format!(
                "nr_blocks {n} needs {need} era array blocks, more than the {meta_blocks} blocks of the metadata device"
            )
        })
    }

    /// Encodes into a zeroed block at location `loc`, with checksum.
    pub fn encode(&self, loc: u64) -> Block {
        let mut b = [0u8; 4096];
        self.encode_into(loc, &mut b);
        b
    }

    /// Encodes into `b`, which must be zeroed, at location `loc`, with checksum
    /// (as [`encode`](Self::encode), in place).
    pub fn encode_into(&self, loc: u64, b: &mut Block) {
        put_le32(b, FLAGS_OFFSET, self.flags);
        put_le64(b, MAGIC_OFFSET, ERA_MAGIC);
        put_le32(b, VERSION_OFFSET, METADATA_VERSION);
        self.sm_root.encode(b);
        put_le32(b, off::DATA_BLOCK_SIZE, self.data_block_size);
        put_le32(b, off::METADATA_BLOCK_SIZE, self.metadata_block_size);
        put_le32(b, off::NR_BLOCKS, self.nr_blocks);
        put_le32(b, off::CURRENT_ERA, self.current_era);
        self.current_writeset
            .encode(&mut b[off::CURRENT_WRITESET..off::CURRENT_WRITESET + 12]);
        put_le64(b, off::WRITESET_TREE_ROOT, self.writeset_tree_root);
        put_le64(b, off::ERA_ARRAY_ROOT, self.era_array_root);
        put_le64(b, off::METADATA_SNAP, self.metadata_snap);
        stamp(b, loc, BlockKind::EraSuperblock);
    }
}

/// Byte ranges of the superblock that must be zero (ERA.md §11 rule 3).
pub const ZERO_RANGES: [(usize, usize); 3] = [(16, 32), (76, 172), (off::END, 4096)];

/// Reads and validates the era superblock at `loc` (0 for the live one, or the
/// metadata snapshot's location).
pub fn read_at(
    dev: &dyn BlockDevice,
    loc: u64,
) -> Result<(EraSuperblock, Box<Block>), SuperblockError> {
    let b = read_superblock(dev, loc, BlockKind::EraSuperblock, ERA_MAGIC)?;
    Ok((EraSuperblock::decode(&b), b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_spec_example() {
        // ERA.md §2.1: checksum bytes b0 7c e6 33.
        let sb = EraSuperblock {
            flags: 1,
            sm_root: SmRoot {
                nr_blocks: 1024,
                nr_allocated: 11,
                bitmap_root: 10,
                ref_count_root: 9,
            },
            data_block_size: 128,
            metadata_block_size: 8,
            nr_blocks: 16,
            current_era: 4,
            current_writeset: WritesetDisk {
                nr_bits: 16,
                root: 0,
            },
            writeset_tree_root: 5,
            era_array_root: 7,
            metadata_snap: 0,
        };
        let b = sb.encode(0);
        assert_eq!(&b[0..4], &[0xb0, 0x7c, 0xe6, 0x33]);
        assert_eq!(EraSuperblock::decode(&b), sb);
    }

    #[test]
    fn nr_blocks_must_fit_below_2_31_and_on_the_device() {
        let mut sb = EraSuperblock {
            nr_blocks: 1018 * 10,
            ..Default::default()
        };
        assert_eq!(sb.nr_blocks_error(10), None);
        assert!(sb
            .nr_blocks_error(9)
            .unwrap()
            .contains("needs 10 era array blocks"));
        sb.nr_blocks = 1 << 31;
        assert!(sb.nr_blocks_error(u64::MAX).unwrap().contains("2^31"));
        sb.nr_blocks = 0;
        assert_eq!(sb.nr_blocks_error(0), None);
    }

    #[test]
    fn writeset_disk_is_unaligned_and_packed() {
        let w = WritesetDisk {
            nr_bits: 77,
            root: 0x0102_0304_0506_0708,
        };
        let mut v = [0u8; 13];
        w.encode(&mut v[1..13]);
        assert_eq!(WritesetDisk::decode(&v[1..13]), w);
        assert_eq!(v[1], 77);
        assert_eq!(v[5], 0x08);
    }
}
