//! Block checksums and self-location (PERSISTENT-DATA.md §2).
//!
//! Every metadata block stores at offset 0 the kernel's `crc32c(~0, block[4..])`
//! (no final inversion) XORed with a per-structure constant, so that a block of one
//! type never validates as another.

use std::fmt;

use super::{le32, le64, put_le32, put_le64};
use crate::io::Block;

/// The kinds of checksummed metadata block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BlockKind {
    /// dm-clone superblock (CLONE.md §2).
    CloneSuperblock,
    /// dm-era superblock (ERA.md §2).
    EraSuperblock,
    /// B-tree node (§4).
    BtreeNode,
    /// dm-array block (§5).
    ArrayBlock,
    /// Metadata space-map index block (§7.2).
    SmIndex,
    /// Space-map bitmap block (§7.3).
    SmBitmap,
}

impl BlockKind {
    /// All kinds, for type-confusion diagnosis.
    pub const ALL: [BlockKind; 6] = [
        BlockKind::CloneSuperblock,
        BlockKind::EraSuperblock,
        BlockKind::BtreeNode,
        BlockKind::ArrayBlock,
        BlockKind::SmIndex,
        BlockKind::SmBitmap,
    ];

    /// The XOR constant of §2.2.
    pub const fn xor(self) -> u32 {
        match self {
            BlockKind::CloneSuperblock => 257_649_492,
            BlockKind::EraSuperblock => 146_538_381,
            BlockKind::BtreeNode => 121_107,
            BlockKind::ArrayBlock => 595_846_735,
            BlockKind::SmIndex => 160_478,
            BlockKind::SmBitmap => 240_779,
        }
    }

    /// Offset of the block's self-location (`blocknr`) field.
    pub const fn blocknr_offset(self) -> usize {
        match self {
            BlockKind::ArrayBlock => 16,
            _ => 8,
        }
    }
}

impl fmt::Display for BlockKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BlockKind::CloneSuperblock => "clone superblock",
            BlockKind::EraSuperblock => "era superblock",
            BlockKind::BtreeNode => "B-tree node",
            BlockKind::ArrayBlock => "array block",
            BlockKind::SmIndex => "space-map index block",
            BlockKind::SmBitmap => "space-map bitmap block",
        })
    }
}

/// The kernel's `crc32c(0xFFFFFFFF, block[4..4096])` (no final inversion).
pub fn raw_crc(b: &Block) -> u32 {
    crc32c::crc32c(&b[4..]) ^ 0xFFFF_FFFF
}

/// The checksum a block of `kind` must carry.
pub fn expected_csum(b: &Block, kind: BlockKind) -> u32 {
    raw_crc(b) ^ kind.xor()
}

/// Why a block failed the generic checks of §2.4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockError {
    /// The block could not be read.
    Io(String),
    /// The `blocknr` field does not name the block's location.
    BlocknrMismatch {
        /// The value found in the field.
        found: u64,
    },
    /// The checksum matches no kind at all.
    ChecksumMismatch {
        /// Stored checksum.
        found: u32,
        /// Checksum the expected kind requires.
        expected: u32,
    },
    /// The checksum is valid, but for another kind of block.
    WrongKind {
        /// The kind whose constant the checksum matches.
        found: BlockKind,
    },
}

impl fmt::Display for BlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockError::Io(e) => write!(f, "read error: {e}"),
            BlockError::BlocknrMismatch { found } => {
                write!(f, "self-location field says block {found}")
            }
            BlockError::ChecksumMismatch { found, expected } => {
                write!(
                    f,
                    "stored checksum {found:#010x}, computed {expected:#010x}"
                )
            }
            BlockError::WrongKind { found } => {
                write!(f, "checksum is that of a {found}")
            }
        }
    }
}

/// Verifies self-location then checksum, in the kernel's order (§2.4), for a block
/// expected to be of `kind` at location `loc`. Superblock magic is checked by the
/// superblock decoders between the two, as the kernel does.
pub fn verify(b: &Block, loc: u64, kind: BlockKind) -> Result<(), BlockError> {
    verify_location(b, loc, kind)?;
    verify_csum(b, kind)
}

/// Checks the self-location field only.
pub fn verify_location(b: &Block, loc: u64, kind: BlockKind) -> Result<(), BlockError> {
    let found = le64(b, kind.blocknr_offset());
    if found != loc {
        // A block of another kind keeps its blocknr elsewhere: say so when the
        // checksum proves what it really is.
        if let Some(other) = kind_of(b).filter(|&k| k != kind) {
            return Err(BlockError::WrongKind { found: other });
        }
        return Err(BlockError::BlocknrMismatch { found });
    }
    Ok(())
}

/// Checks the checksum only.
pub fn verify_csum(b: &Block, kind: BlockKind) -> Result<(), BlockError> {
    let found = le32(b, 0);
    let raw = raw_crc(b);
    let expected = raw ^ kind.xor();
    if found == expected {
        return Ok(());
    }
    match BlockKind::ALL.iter().find(|k| raw ^ k.xor() == found) {
        Some(&other) => Err(BlockError::WrongKind { found: other }),
        None => Err(BlockError::ChecksumMismatch { found, expected }),
    }
}

/// The kind whose checksum constant the block carries, if any.
pub fn kind_of(b: &Block) -> Option<BlockKind> {
    let found = le32(b, 0);
    let raw = raw_crc(b);
    BlockKind::ALL
        .iter()
        .copied()
        .find(|k| raw ^ k.xor() == found)
}

/// Stamps self-location and checksum, as the kernel's `prepare_for_write` does.
pub fn stamp(b: &mut Block, loc: u64, kind: BlockKind) {
    put_le64(b, kind.blocknr_offset(), loc);
    let c = expected_csum(b, kind);
    put_le32(b, 0, c);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_check_value_matches_the_crate() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn stamped_block_verifies_only_as_its_kind() {
        for kind in BlockKind::ALL {
            let mut b = [0u8; 4096];
            b[100] = 7;
            stamp(&mut b, 42, kind);
            assert_eq!(verify(&b, 42, kind), Ok(()));
            assert_eq!(kind_of(&b), Some(kind));
            for other in BlockKind::ALL.iter().filter(|&&k| k != kind) {
                assert_eq!(
                    verify_csum(&b, *other),
                    Err(BlockError::WrongKind { found: kind })
                );
            }
            assert!(matches!(
                verify(&b, 43, kind),
                Err(BlockError::BlocknrMismatch { found: 42 })
            ));
            b[200] ^= 1;
            assert!(matches!(
                verify(&b, 42, kind),
                Err(BlockError::ChecksumMismatch { .. })
            ));
        }
    }

    #[test]
    fn spec_worked_example_constants() {
        // PERSISTENT-DATA.md §2.3: raw 0x3B5D833D with the era constant gives 0x33E67CB0.
        assert_eq!(0x3B5D_833Du32 ^ BlockKind::EraSuperblock.xor(), 0x33E6_7CB0);
    }
}
