//! The metadata space map (PERSISTENT-DATA.md §7): a reference count for every
//! metadata block, in 2-bit bitmap entries indexed by one index block, with counts of
//! 3 or more in an overflow B-tree.

mod check;
pub mod writer;

pub use check::{check_space_map, SmSummary};

use crate::io::Block;
use crate::pdata::{le32, le64, put_le32, put_le64};

/// Entries per bitmap block: (4096 - 16) * 4.
pub const ENTRIES_PER_BITMAP: u64 = 16320;
/// Index entries in the metadata space map's index block.
pub const MAX_METADATA_BITMAPS: u64 = 255;
/// Largest metadata device the space map can describe, in blocks (§7.6).
pub const MAX_METADATA_BLOCKS: u64 = MAX_METADATA_BITMAPS * ENTRIES_PER_BITMAP;
/// Offset of the 128-byte space-map root field in both superblocks.
pub const SM_ROOT_OFFSET: usize = 44;
/// Size of that field.
pub const SM_ROOT_SIZE: usize = 128;

/// `disk_sm_root` (§7.1): the first 32 bytes of the superblock's space-map field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SmRoot {
    /// Metadata blocks tracked.
    pub nr_blocks: u64,
    /// Blocks with a non-zero count.
    pub nr_allocated: u64,
    /// Location of the index block.
    pub bitmap_root: u64,
    /// Root of the overflow ref-count tree.
    pub ref_count_root: u64,
}

impl SmRoot {
    /// Decodes the root from a superblock.
    pub fn decode(sb: &Block) -> Self {
        let o = SM_ROOT_OFFSET;
        SmRoot {
            nr_blocks: le64(sb, o),
            nr_allocated: le64(sb, o + 8),
            bitmap_root: le64(sb, o + 16),
            ref_count_root: le64(sb, o + 24),
        }
    }

    /// Encodes the root into a superblock (the 96 bytes after it are zeroed).
    pub fn encode(&self, sb: &mut Block) {
        let o = SM_ROOT_OFFSET;
        put_le64(sb, o, self.nr_blocks);
        put_le64(sb, o + 8, self.nr_allocated);
        put_le64(sb, o + 16, self.bitmap_root);
        put_le64(sb, o + 24, self.ref_count_root);
        sb[o + 32..o + SM_ROOT_SIZE].fill(0);
    }

    /// Number of bitmaps needed for `nr_blocks`.
    pub fn nr_bitmaps(&self) -> u64 {
        self.nr_blocks.div_ceil(ENTRIES_PER_BITMAP)
    }
}

/// One index entry (§7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IndexEntry {
    /// Location of the bitmap block.
    pub blocknr: u64,
    /// Zero entries in the bitmap (all 16320 slots).
    pub nr_free: u32,
    /// Search hint: every entry below it is allocated.
    pub none_free_before: u32,
}

/// Offset of index entry `k` in the index block.
const fn index_entry_offset(k: usize) -> usize {
    16 + 16 * k
}

impl IndexEntry {
    /// Entry `k` of an index block.
    pub fn decode(b: &Block, k: usize) -> Self {
        let o = index_entry_offset(k);
        IndexEntry {
            blocknr: le64(b, o),
            nr_free: le32(b, o + 8),
            none_free_before: le32(b, o + 12),
        }
    }

    /// Stores entry `k` into an index block.
    pub fn encode(&self, b: &mut Block, k: usize) {
        let o = index_entry_offset(k);
        put_le64(b, o, self.blocknr);
        put_le32(b, o + 8, self.nr_free);
        put_le32(b, o + 12, self.none_free_before);
    }
}

/// The 2-bit value of entry `j` of a bitmap block: bit `2j` of the word stream is the
/// high bit and bit `2j+1` the low one (§7.3).
pub fn bitmap_entry(b: &Block, j: usize) -> u8 {
    let word = le64(b, 16 + 8 * (j / 32));
    let p = 2 * (j % 32);
    let hi = (word >> p) & 1;
    let lo = (word >> (p + 1)) & 1;
    (2 * hi + lo) as u8
}

/// Sets entry `j` of a bitmap block to `v` (0..=3).
pub fn set_bitmap_entry(b: &mut Block, j: usize, v: u8) {
    let o = 16 + 8 * (j / 32);
    let p = 2 * (j % 32);
    let mut word = le64(b, o);
    word &= !(3u64 << p);
    let hi = ((v >> 1) & 1) as u64;
    let lo = (v & 1) as u64;
    word |= (hi << p) | (lo << (p + 1));
    put_le64(b, o, word);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmap_entries_use_the_swapped_bit_order() {
        // §7.3: blocks 0..=10 with count 1 give word 0 = 0x00000000002AAAAA.
        let mut b = [0u8; 4096];
        for j in 0..11 {
            set_bitmap_entry(&mut b, j, 1);
        }
        assert_eq!(le64(&b, 16), 0x0000_0000_002A_AAAA);
        for v in 0..4u8 {
            set_bitmap_entry(&mut b, 40, v);
            assert_eq!(bitmap_entry(&b, 40), v);
        }
        assert_eq!(bitmap_entry(&b, 10), 1);
        assert_eq!(bitmap_entry(&b, 11), 0);
    }

    #[test]
    fn root_round_trips() {
        let r = SmRoot {
            nr_blocks: 2048,
            nr_allocated: 6,
            bitmap_root: 1,
            ref_count_root: 2,
        };
        let mut b = [0xffu8; 4096];
        r.encode(&mut b);
        assert_eq!(SmRoot::decode(&b), r);
        assert!(b[SM_ROOT_OFFSET + 32..SM_ROOT_OFFSET + 128]
            .iter()
            .all(|&x| x == 0));
        assert_eq!(MAX_METADATA_BLOCKS, 4_161_600);
    }
}
