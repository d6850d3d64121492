//! dm-clone superblock (CLONE.md §2).
//!
//! ```text
//!   0  csum                     u32   XOR 257649492
//!   4  flags                    u32   0
//!   8  blocknr                  u64   0
//!  16  uuid                     [16]  zeros
//!  32  magic                    u64   0x8AF27F64
//!  40  version                  u32   1
//!  44  metadata_space_map_root  [128] disk_sm_root + 96 zero bytes
//! 172  region_size              u64   sectors
//! 180  target_size              u64   sectors
//! 188  bitset_root              u64
//! 196  zeros to the end of the block
//! ```

use crate::io::{Block, BlockDevice};
use crate::pdata::checksum::{stamp, BlockKind};
use crate::pdata::space_map::SmRoot;
use crate::pdata::{le32, le64, put_le32, put_le64};
use crate::superblock::{
    read_superblock, SuperblockError, FLAGS_OFFSET, MAGIC_OFFSET, METADATA_VERSION,
    SUPERBLOCK_LOCATION, VERSION_OFFSET,
};

/// dm-clone's superblock magic.
pub const CLONE_MAGIC: u64 = 0x8AF2_7F64;
/// Smallest region size in sectors.
pub const MIN_REGION_SIZE: u64 = 1 << 3;
/// Largest region size in sectors.
pub const MAX_REGION_SIZE: u64 = 1 << 21;
/// Largest number of regions the kernel accepts.
pub const MAX_REGIONS: u64 = 1 << 31;

mod off {
    pub const REGION_SIZE: usize = 172;
    pub const TARGET_SIZE: usize = 180;
    pub const BITSET_ROOT: usize = 188;
    pub const END: usize = 196;
}

/// A decoded dm-clone superblock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloneSuperblock {
    /// `flags` (the kernel writes 0).
    pub flags: u32,
    /// The space-map root.
    pub sm_root: SmRoot,
    /// Region size in sectors.
    pub region_size: u64,
    /// Target length in sectors.
    pub target_size: u64,
    /// Root of the region bitset.
    pub bitset_root: u64,
}

impl CloneSuperblock {
    /// Decodes the fields (no validation).
    pub fn decode(b: &Block) -> Self {
        CloneSuperblock {
            flags: le32(b, FLAGS_OFFSET),
            sm_root: SmRoot::decode(b),
            region_size: le64(b, off::REGION_SIZE),
            target_size: le64(b, off::TARGET_SIZE),
            bitset_root: le64(b, off::BITSET_ROOT),
        }
    }

    /// Encodes into a zeroed block, stamping location and checksum as the kernel
    /// does (it rebuilds the superblock from zero on every commit).
    pub fn encode(&self) -> Block {
        let mut b = [0u8; 4096];
        put_le32(&mut b, FLAGS_OFFSET, self.flags);
        put_le64(&mut b, MAGIC_OFFSET, CLONE_MAGIC);
        put_le32(&mut b, VERSION_OFFSET, METADATA_VERSION);
        self.sm_root.encode(&mut b);
        put_le64(&mut b, off::REGION_SIZE, self.region_size);
        put_le64(&mut b, off::TARGET_SIZE, self.target_size);
        put_le64(&mut b, off::BITSET_ROOT, self.bitset_root);
        stamp(&mut b, SUPERBLOCK_LOCATION, BlockKind::CloneSuperblock);
        b
    }

    /// `ceil(target_size / region_size)` (CLONE.md §3); 0 for a zero region size.
    pub fn nr_regions(&self) -> u64 {
        if self.region_size == 0 {
            0
        } else {
            self.target_size.div_ceil(self.region_size)
        }
    }

    /// What is wrong with the geometry, if anything (CLONE.md §10 rule 4).
    pub fn geometry_error(&self) -> Option<String> {
        let rs = self.region_size;
        if !rs.is_power_of_two() || !(MIN_REGION_SIZE..=MAX_REGION_SIZE).contains(&rs) {
            return Some(format!(
                "region size {rs} sectors is not a power of two between {MIN_REGION_SIZE} and {MAX_REGION_SIZE}"
            ));
        }
        if self.target_size == 0 {
            return Some("target size is 0".into());
        }
        if self.nr_regions() > MAX_REGIONS {
            return Some(format!(
                "{} regions, more than the kernel's limit of {MAX_REGIONS}",
                self.nr_regions()
            ));
        }
        None
    }

    /// Why this superblock's regions cannot be those of metadata on a device
    /// of `meta_blocks` blocks: its geometry breaks the kernel's rules
    /// ([`geometry_error`](Self::geometry_error)), or its hydration bitset
    /// needs more array blocks than the device has. Everything that sizes a
    /// bitmap by `nr_regions` from untrusted metadata is bounded by this.
    pub fn regions_error(&self, meta_blocks: u64) -> Option<String> {
        if let Some(e) = self.geometry_error() {
            return Some(e);
        }
        let n = self.nr_regions();
        let need = n
            .div_ceil(64)
            .div_ceil(u64::from(crate::pdata::array::array_max_entries(8)));
        (need > meta_blocks).then(|| {
            format!(
                "{n} regions need {need} bitset blocks, more than the {meta_blocks} blocks of the metadata device"
            )
        })
    }
}

/// Byte ranges of the superblock that must be zero (CLONE.md §10 rule 3).
pub const ZERO_RANGES: [(usize, usize); 3] = [(16, 32), (76, 172), (off::END, 4096)];

/// Reads and validates the live superblock (blocknr, magic, checksum, version).
pub fn read(dev: &dyn BlockDevice) -> Result<(CloneSuperblock, Box<Block>), SuperblockError> {
    let b = read_superblock(
        dev,
        SUPERBLOCK_LOCATION,
        BlockKind::CloneSuperblock,
        CLONE_MAGIC,
    )?;
    Ok((CloneSuperblock::decode(&b), b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdata::checksum::verify;

    #[test]
    fn encodes_the_spec_example() {
        // CLONE.md §2.1: checksum 0xC5C9F481 for this superblock.
        let sb = CloneSuperblock {
            flags: 0,
            sm_root: SmRoot {
                nr_blocks: 2048,
                nr_allocated: 6,
                bitmap_root: 1,
                ref_count_root: 2,
            },
            region_size: 64,
            target_size: 20480,
            bitset_root: 4,
        };
        let b = sb.encode();
        assert_eq!(&b[0..4], &[0x81, 0xf4, 0xc9, 0xc5]);
        assert_eq!(verify(&b, 0, BlockKind::CloneSuperblock), Ok(()));
        assert_eq!(CloneSuperblock::decode(&b), sb);
        assert_eq!(sb.nr_regions(), 320);
        assert_eq!(sb.geometry_error(), None);
    }

    #[test]
    fn geometry_rules() {
        let mut sb = CloneSuperblock {
            flags: 0,
            sm_root: SmRoot::default(),
            region_size: 48,
            target_size: 100,
            bitset_root: 4,
        };
        assert!(sb.geometry_error().is_some());
        sb.region_size = 8;
        assert_eq!(sb.nr_regions(), 13);
        assert!(sb.geometry_error().is_none());
        sb.target_size = 0;
        assert!(sb.geometry_error().is_some());
        sb.target_size = 8 * (MAX_REGIONS + 1);
        assert!(sb.geometry_error().is_some());
    }
}
