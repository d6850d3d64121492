//! What dm-clone's and dm-era's superblocks have in common: block 0, the field order
//! up to the space-map root, and the kernel's validation order (PERSISTENT-DATA.md
//! §2.4, §9.3): self-location, magic, checksum, version.

use std::fmt;

use crate::io::{zeroed_block, Block, BlockDevice};
use crate::pdata::checksum::{verify_csum, BlockError, BlockKind};
use crate::pdata::{le32, le64};
use crate::report::{Finding, Part};

/// Location of the live superblock.
pub const SUPERBLOCK_LOCATION: u64 = 0;
/// Offset of `magic` (le64).
pub const MAGIC_OFFSET: usize = 32;
/// Offset of `version` (le32).
pub const VERSION_OFFSET: usize = 40;
/// Offset of `flags` (le32).
pub const FLAGS_OFFSET: usize = 4;
/// Offset of the 16-byte uuid.
pub const UUID_OFFSET: usize = 16;
/// The only metadata version either target accepts.
pub const METADATA_VERSION: u32 = 1;

/// Why a superblock is unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SuperblockError {
    /// The block could not be read.
    Io(String),
    /// All 4096 bytes are zero: the device was never formatted (the kernel would
    /// format it silently, §9.3).
    Unformatted,
    /// `blocknr` is not the block's location.
    BlocknrMismatch {
        /// Value found.
        found: u64,
    },
    /// Wrong magic number.
    BadMagic {
        /// Value found.
        found: u64,
        /// Value expected.
        expected: u64,
    },
    /// Checksum mismatch (or the checksum of another kind of block).
    Checksum(BlockError),
    /// Unsupported metadata version.
    Version(u32),
}

impl fmt::Display for SuperblockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SuperblockError::Io(e) => write!(f, "cannot read the superblock: {e}"),
            SuperblockError::Unformatted => {
                write!(
                    f,
                    "not formatted: the superblock is all zeroes, hence bad checksum in superblock"
                )
            }
            SuperblockError::BlocknrMismatch { found } => {
                write!(f, "superblock self-location field says block {found}")
            }
            SuperblockError::BadMagic { found, expected } => {
                use crate::clone::superblock::CLONE_MAGIC;
                use crate::era::superblock::ERA_MAGIC;
                match (*found, *expected) {
                    (ERA_MAGIC, CLONE_MAGIC) => write!(
                        f,
                        "this is dm-era metadata, not dm-clone (use the era_ tools)"
                    ),
                    (CLONE_MAGIC, ERA_MAGIC) => write!(
                        f,
                        "this is dm-clone metadata, not dm-era (use the clone_ tools)"
                    ),
                    _ => write!(f, "bad magic number {found:#x}, expected {expected:#x}"),
                }
            }
            SuperblockError::Checksum(e) => write!(f, "superblock {e}"),
            SuperblockError::Version(v) => {
                write!(
                    f,
                    "unsupported metadata version {v}, expected {METADATA_VERSION}"
                )
            }
        }
    }
}

impl SuperblockError {
    /// The finding for this error in the superblock at `loc` (the live one at block
    /// 0, a metadata snapshot's elsewhere).
    pub fn finding(&self, loc: u64) -> Finding {
        let part = if loc == SUPERBLOCK_LOCATION {
            Part::Superblock
        } else {
            Part::SnapshotSuperblock
        };
        Finding::error(self.code(), Some(loc), part, self.to_string())
    }

    /// Stable finding code.
    pub fn code(&self) -> &'static str {
        match self {
            SuperblockError::Io(_) => "sb-read",
            SuperblockError::Unformatted => "sb-unformatted",
            SuperblockError::BlocknrMismatch { .. } => "sb-blocknr",
            SuperblockError::BadMagic { .. } => "sb-magic",
            SuperblockError::Checksum(_) => "sb-checksum",
            SuperblockError::Version(_) => "sb-version",
        }
    }
}

/// Reads block `loc` and validates it as a superblock of `kind` with `magic`, in
/// the kernel's order. An all-zero block is [`SuperblockError::Unformatted`].
pub fn read_superblock(
    dev: &dyn BlockDevice,
    loc: u64,
    kind: BlockKind,
    magic: u64,
) -> Result<Box<Block>, SuperblockError> {
    let mut b = zeroed_block();
    dev.read(loc, &mut b)
        .map_err(|e| SuperblockError::Io(e.to_string()))?;
    if b.iter().all(|&x| x == 0) {
        return Err(SuperblockError::Unformatted);
    }
    let blocknr = le64(&b[..], 8);
    if blocknr != loc {
        return Err(SuperblockError::BlocknrMismatch { found: blocknr });
    }
    let found = le64(&b[..], MAGIC_OFFSET);
    if found != magic {
        return Err(SuperblockError::BadMagic {
            found,
            expected: magic,
        });
    }
    verify_csum(&b, kind).map_err(SuperblockError::Checksum)?;
    let v = le32(&b[..], VERSION_OFFSET);
    if v != METADATA_VERSION {
        return Err(SuperblockError::Version(v));
    }
    Ok(b)
}

/// Warnings for the byte ranges of a superblock that must be zero and are not.
pub fn padding_findings(raw: &Block, ranges: &[(usize, usize)]) -> Vec<Finding> {
    ranges
        .iter()
        .filter(|(b, e)| !is_zero(&raw[*b..*e]))
        .map(|(b, e)| {
            Finding::warning(
                "sb-padding",
                Some(SUPERBLOCK_LOCATION),
                Part::Superblock,
                format!("bytes {b}..{e} are not zero"),
            )
        })
        .collect()
}

/// True when `b[range]` is all zero.
pub fn is_zero(b: &[u8]) -> bool {
    b.iter().all(|&x| x == 0)
}

/// The finding for an image shorter than its space map says the metadata device is
/// (a copy cut short, a partial read): named as such, since otherwise every block
/// past the end would be blamed on the tree node that points at it. `None` when
/// the device is large enough (or the space map's count is itself implausible,
/// which the space-map check reports).
pub fn truncation(sm_nr_blocks: u64, dev: &dyn BlockDevice) -> Option<Finding> {
    use crate::io::BLOCK_SIZE;
    use crate::pdata::space_map::MAX_METADATA_BLOCKS;
    let have = dev.nr_blocks();
    (sm_nr_blocks > have && sm_nr_blocks <= MAX_METADATA_BLOCKS).then(|| {
        Finding::error(
            TRUNCATED,
            Some(SUPERBLOCK_LOCATION),
            Part::Superblock,
            format!(
                "the image is truncated: its space map says the metadata device has {sm_nr_blocks} blocks ({} bytes), the device or file has {have} ({} bytes)",
                sm_nr_blocks * BLOCK_SIZE as u64,
                have * BLOCK_SIZE as u64
            ),
        )
    })
}

/// The code of [`truncation`]'s finding.
pub const TRUNCATED: &str = "sb-truncated";
