//! B-tree node layout: PERSISTENT-DATA.md §4.1-4.2.
//!
//! ```text
//!  0  csum        u32   XOR 121107
//!  4  flags       u32   1 = internal, 2 = leaf
//!  8  blocknr     u64   self location
//! 16  nr_entries  u32
//! 20  max_entries u32
//! 24  value_size  u32
//! 28  padding     u32
//! 32  keys[max_entries] u64, then values[max_entries] of value_size bytes
//! ```

use crate::io::{Block, BLOCK_SIZE};
use crate::pdata::{le32, le64, put_le32, put_le64};

pub(crate) mod off {
    pub const FLAGS: usize = 4;
    pub const BLOCKNR: usize = 8;
    pub const NR_ENTRIES: usize = 16;
    pub const MAX_ENTRIES: usize = 20;
    pub const VALUE_SIZE: usize = 24;
    pub const END: usize = 32;
}

/// Size of the node header.
pub const NODE_HEADER_SIZE: usize = off::END;
/// `flags` of an internal node.
pub const INTERNAL_NODE: u32 = 1;
/// `flags` of a leaf.
pub const LEAF_NODE: u32 = 2;

/// The kernel's capacity for a fresh node with values of `value_size` bytes (§4.2).
pub const fn calc_max_entries(value_size: u32) -> u32 {
    let n = (BLOCK_SIZE as u32 - NODE_HEADER_SIZE as u32) / (8 + value_size);
    3 * (n / 3)
}

/// A decoded node header. Decoding never fails; [`NodeHeader::fits`] tells whether
/// the counts can be trusted to index the block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeHeader {
    /// `INTERNAL_NODE` or `LEAF_NODE` (anything else is damage).
    pub flags: u32,
    /// Self location.
    pub blocknr: u64,
    /// Number of valid entries.
    pub nr_entries: u32,
    /// Capacity.
    pub max_entries: u32,
    /// Bytes per value.
    pub value_size: u32,
}

impl NodeHeader {
    /// Reads the header fields.
    pub fn decode(b: &Block) -> Self {
        NodeHeader {
            flags: le32(b, off::FLAGS),
            blocknr: le64(b, off::BLOCKNR),
            nr_entries: le32(b, off::NR_ENTRIES),
            max_entries: le32(b, off::MAX_ENTRIES),
            value_size: le32(b, off::VALUE_SIZE),
        }
    }

    /// Writes the header fields (checksum and padding are left to the caller).
    pub fn encode(&self, b: &mut Block) {
        put_le32(b, off::FLAGS, self.flags);
        put_le64(b, off::BLOCKNR, self.blocknr);
        put_le32(b, off::NR_ENTRIES, self.nr_entries);
        put_le32(b, off::MAX_ENTRIES, self.max_entries);
        put_le32(b, off::VALUE_SIZE, self.value_size);
        put_le32(b, 28, 0);
    }

    /// True for a leaf.
    pub fn is_leaf(&self) -> bool {
        self.flags == LEAF_NODE
    }

    /// `32 + (8 + value_size) * max_entries <= 4096` and `nr_entries <= max_entries`
    /// (the kernel's own read check, §4.2): only then may keys and values be read.
    pub fn fits(&self) -> bool {
        // Both factors are u32s read from the block: the product can pass u64,
        // or come so near its end that adding the header would.
        let need = (8u64 + self.value_size as u64).checked_mul(self.max_entries as u64);
        need.is_some_and(|n| n <= (BLOCK_SIZE - NODE_HEADER_SIZE) as u64)
            && self.nr_entries <= self.max_entries
    }

    /// Key `i`. Only valid when [`fits`](Self::fits) holds and `i < max_entries`.
    pub fn key(&self, b: &Block, i: usize) -> u64 {
        le64(b, NODE_HEADER_SIZE + 8 * i)
    }

    /// Byte offset of value `i`.
    pub fn value_offset(&self, i: usize) -> usize {
        NODE_HEADER_SIZE + 8 * self.max_entries as usize + self.value_size as usize * i
    }

    /// Value `i` as a slice of `value_size` bytes.
    pub fn value<'b>(&self, b: &'b Block, i: usize) -> &'b [u8] {
        let o = self.value_offset(i);
        &b[o..o + self.value_size as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value size and entry count whose product lies within 32 of 2^64:
    /// adding the header overflowed (and, without overflow checks, wrapped to
    /// a node that "fits"). Found by the block_btree fuzz target.
    #[test]
    fn a_node_sized_near_u64_max_does_not_fit() {
        // (8 + 0xfffffff8) * 0xffffffff = 2^64 - 2^32; 2^64 - 16 = (2^32 - 4)(2^32 + 4).
        for (value_size, max_entries) in [(0xffff_fffc, 0xffff_fffc), (0xffff_fff8, u32::MAX)] {
            let h = NodeHeader {
                flags: LEAF_NODE,
                blocknr: 0,
                nr_entries: 1,
                max_entries,
                value_size,
            };
            assert!(!h.fits(), "{value_size:#x} x {max_entries:#x}");
        }
    }

    #[test]
    fn max_entries_match_the_spec_table() {
        assert_eq!(calc_max_entries(4), 336);
        assert_eq!(calc_max_entries(8), 252);
        assert_eq!(calc_max_entries(12), 201);
        assert_eq!(calc_max_entries(16), 168);
    }

    #[test]
    fn header_round_trips() {
        let h = NodeHeader {
            flags: LEAF_NODE,
            blocknr: 9,
            nr_entries: 3,
            max_entries: 201,
            value_size: 12,
        };
        let mut b = [0u8; 4096];
        h.encode(&mut b);
        assert_eq!(NodeHeader::decode(&b), h);
        assert!(h.fits());
        assert_eq!(h.value_offset(0), 32 + 8 * 201);
    }

    #[test]
    fn oversized_headers_do_not_fit() {
        let mut h = NodeHeader {
            flags: LEAF_NODE,
            blocknr: 0,
            nr_entries: 0,
            max_entries: 1000,
            value_size: 8,
        };
        assert!(!h.fits());
        h.max_entries = 252;
        h.nr_entries = 253;
        assert!(!h.fits());
        h.value_size = u32::MAX;
        h.nr_entries = 1;
        assert!(!h.fits());
        // Found by fuzzing: the size product overflowed u64.
        h.max_entries = u32::MAX;
        assert!(!h.fits());
    }
}
