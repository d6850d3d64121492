//! The pack file's layout (thin-provisioning-tools' `thin_metadata_pack`, version 3).
//!
//! ```text
//! header, 32 bytes, little-endian u64s:
//!    0  magic       0xa537a0aa6309ef77
//!    8  version     3
//!   16  block_size  4096
//!   24  nr_blocks   blocks in the image (its size / 4096)
//! then chunks, up to the end of the file:
//!    0  len         u64, bytes of compressed data that follow
//!    8  data        one zlib stream (RFC 1950)
//! a chunk's data, decompressed, is a run of entries:
//!    0  block       u64, where the block goes in the image
//!    8  program     the block's 4096 bytes as a program (see vm.rs)
//! ```
//!
//! Blocks that no entry names are zero in the image. Entries may come in any order
//! (thin-provisioning-tools shuffles them across threads); ours are in block order,
//! [`BLOCKS_PER_CHUNK`] to a chunk, so that a pack of the same image is the same
//! file.

use super::error::{Damage, PackError, Where};
use crate::clone::superblock::CLONE_MAGIC;
use crate::era::superblock::ERA_MAGIC;
use crate::io::BLOCK_SIZE;
use crate::superblock::MAGIC_OFFSET;
use crate::trace::Target;
use crate::xml_reader::looks_like_xml;

/// The pack format's magic number.
pub const MAGIC: u64 = 0xa537_a0aa_6309_ef77;
/// The only format version.
pub const VERSION: u64 = 3;
/// Size of the header.
pub const HEADER_SIZE: usize = 32;
/// Blocks per chunk in the packs we write (thin-provisioning-tools writes as many).
pub const BLOCKS_PER_CHUNK: usize = 1024;
/// Largest decompressed chunk the reader accepts: far above what 1024 blocks need
/// (about 4.2 MB), and a bound on what a hostile chunk can make us allocate.
pub const MAX_CHUNK_DATA: usize = 64 << 20;

/// Most blocks an image may have: its size in bytes must be a file offset.
pub const MAX_IMAGE_BLOCKS: u64 = i64::MAX as u64 / BLOCK_SIZE as u64;

/// The header for an image of `nr_blocks` blocks.
pub fn encode_header(nr_blocks: u64) -> [u8; HEADER_SIZE] {
    let mut h = [0u8; HEADER_SIZE];
    for (i, v) in [MAGIC, VERSION, BLOCK_SIZE as u64, nr_blocks]
        .into_iter()
        .enumerate()
    {
        h[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
    }
    h
}

/// True when `head`, the first bytes of a file, is the start of a pack.
pub fn is_pack(head: &[u8]) -> bool {
    head.starts_with(&MAGIC.to_le_bytes())
}

/// Bytes the reader takes from the start of a file to judge it: the header, and
/// when that is not a pack's, up to where a superblock keeps its magic.
pub const HEAD_SIZE: usize = 40;

/// Validates the first bytes of a file (`head`: the header, and up to
/// [`HEAD_SIZE`] bytes when the magic is wrong); returns the image's size in
/// blocks.
pub fn decode_header(head: &[u8]) -> Result<u64, PackError> {
    let field = |i: usize| {
        head.get(i * 8..i * 8 + 8)
            .map_or(0, |f| u64::from_le_bytes(f.try_into().expect("8 bytes")))
    };
    let corrupt = |damage| PackError::Corrupt {
        at: Where::Header,
        damage,
    };
    if head.len() < 8 || field(0) != MAGIC {
        return Err(corrupt(Damage::NotAPack {
            magic: field(0),
            looks_like: looks_like(head),
        }));
    }
    if head.len() < HEADER_SIZE {
        return Err(corrupt(Damage::Truncated {
            needed: HEADER_SIZE as u64,
            found: head.len() as u64,
        }));
    }
    if field(1) != VERSION {
        return Err(corrupt(Damage::Version(field(1))));
    }
    if field(2) != BLOCK_SIZE as u64 {
        return Err(corrupt(Damage::BlockSize(field(2))));
    }
    if field(3) == 0 {
        return Err(corrupt(Damage::NoBlocks));
    }
    if field(3) > MAX_IMAGE_BLOCKS {
        return Err(corrupt(Damage::TooManyBlocks(field(3))));
    }
    Ok(field(3))
}

/// What a file that is not a pack seems to be, from its first bytes.
fn looks_like(head: &[u8]) -> Option<&'static str> {
    if head.is_empty() {
        return Some("an empty file");
    }
    if looks_like_xml(head) {
        return Some("XML");
    }
    if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Some("zstd-compressed data (decompress it first)");
    }
    if head.starts_with(&[0x1f, 0x8b]) {
        return Some("gzip-compressed data (decompress it first)");
    }
    let magic = head
        .get(MAGIC_OFFSET..MAGIC_OFFSET + 8)
        .map(|m| u64::from_le_bytes(m.try_into().expect("8 bytes")))?;
    superblock_kind(magic).map(|k| k.image_hint)
}

/// Kinds of device-mapper metadata, by the magic number their superblocks keep at
/// byte 32.
pub struct SuperblockKind {
    /// The metadata's name.
    pub name: &'static str,
    /// The target whose tools this is, if ours.
    pub target: Option<Target>,
    /// What to say of an image given where a pack belongs.
    pub image_hint: &'static str,
    /// The unpack tool for a pack of it.
    pub unpack_tool: &'static str,
}

/// The kind of metadata whose superblock has `magic`.
pub fn superblock_kind(magic: u64) -> Option<&'static SuperblockKind> {
    const KINDS: [(u64, SuperblockKind); 4] = [
        (
            CLONE_MAGIC,
            SuperblockKind {
                name: "dm-clone",
                target: Some(Target::Clone),
                image_hint: "dm-clone metadata, not a pack of it (clone_metadata_pack makes one)",
                unpack_tool: "clone_metadata_unpack",
            },
        ),
        (
            ERA_MAGIC,
            SuperblockKind {
                name: "dm-era",
                target: Some(Target::Era),
                image_hint: "dm-era metadata, not a pack of it (era_metadata_pack makes one)",
                unpack_tool: "era_metadata_unpack",
            },
        ),
        (
            THIN_MAGIC,
            SuperblockKind {
                name: "thin-provisioning",
                target: None,
                image_hint: "thin-provisioning metadata, not a pack of it",
                unpack_tool: "thin_metadata_unpack",
            },
        ),
        (
            CACHE_MAGIC,
            SuperblockKind {
                name: "dm-cache",
                target: None,
                image_hint: "dm-cache metadata, not a pack of it",
                unpack_tool: "thin_metadata_unpack",
            },
        ),
    ];
    KINDS.iter().find(|(m, _)| *m == magic).map(|(_, k)| k)
}

/// dm-thin's superblock magic (`THIN_SUPERBLOCK_MAGIC`).
const THIN_MAGIC: u64 = 27_022_010;
/// dm-cache's superblock magic (`CACHE_SUPERBLOCK_MAGIC`, octal 06142003).
const CACHE_MAGIC: u64 = 0o6142003;
