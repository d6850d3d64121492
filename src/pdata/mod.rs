//! The persistent-data library shared by dm-clone and dm-era (PERSISTENT-DATA.md):
//! checksums, B-trees, dm-array, dm-bitset and the metadata space map.
//!
//! Reading is split in two layers: `decode` functions that turn a block into a
//! header struct without judging it, and checked walkers ([`walk`]) that validate
//! every block they reach, record what they find as [`crate::report::Finding`]s and
//! keep the expected reference count of every block ([`refs`]).

pub mod array;
pub mod array_write;
pub mod bitset;
pub mod bitset_write;
pub mod btree;
pub mod checksum;
pub mod refs;
pub mod space_map;
pub mod tm;
pub mod walk;

use byteorder::{ByteOrder, LittleEndian};

/// Little-endian `u32` at `off`.
#[inline]
pub fn le32(b: &[u8], off: usize) -> u32 {
    LittleEndian::read_u32(&b[off..off + 4])
}

/// Little-endian `u64` at `off`.
#[inline]
pub fn le64(b: &[u8], off: usize) -> u64 {
    LittleEndian::read_u64(&b[off..off + 8])
}

/// Stores a little-endian `u32` at `off`.
#[inline]
pub fn put_le32(b: &mut [u8], off: usize, v: u32) {
    LittleEndian::write_u32(&mut b[off..off + 4], v)
}

/// Stores a little-endian `u64` at `off`.
#[inline]
pub fn put_le64(b: &mut [u8], off: usize, v: u64) {
    LittleEndian::write_u64(&mut b[off..off + 8], v)
}
