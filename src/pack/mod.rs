//! Metadata packs for bug reports and support: a compressed file holding the blocks
//! of a metadata image that matter, in the file format of thin-provisioning-tools'
//! `thin_metadata_pack` (version 3, see [`format`] and [`vm`]), so that its
//! `thin_metadata_unpack` and ours read each other's packs.
//!
//! What is packed ([`select`]): when the metadata checks clean, the blocks it uses
//! (the superblock, the target's trees, arrays and bitsets, the space map); when it
//! is damaged, every block that is not all zeroes, since the structures that would
//! name the blocks are what is broken; and so on request, to keep the old copies
//! the kernel leaves in free space (then the image unpacks byte for byte). thin-provisioning-tools packs instead every
//! block whose checksum is one of the thin, cache or era superblocks' or the
//! persistent-data blocks' (old copies in free space included), and so leaves out
//! the dm-clone superblock and every damaged block.
//!
//! Unpacking writes an image of the original size with the unpacked blocks in
//! place and every other block zero. It trusts nothing in the pack ([`read`]), and
//! a pack that fails to unpack leaves no output behind (the tools write a file
//! beside the output and rename it; a device is written only after the whole pack
//! has been read once).

pub mod error;
pub mod format;
pub mod read;
pub mod select;
pub mod vm;
pub mod write;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;

pub use error::{Damage, PackError, Where};
pub use select::Selection;

use crate::io::{zeroed_block, Block, BlockDevice, BLOCK_SIZE};
use crate::pdata::le64;
use crate::superblock::{MAGIC_OFFSET, SUPERBLOCK_LOCATION};
use crate::trace::Target;
use error::target_name;
use format::superblock_kind;
use read::PackReader;
use select::{select, target_magic};
use write::PackWriter;

/// What a pack holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackSummary {
    /// Blocks in the image.
    pub nr_blocks: u64,
    /// Blocks packed.
    pub packed: u64,
    /// Size of the pack file in bytes.
    pub bytes: u64,
    /// How the blocks were chosen.
    pub selection: Selection,
    /// Blocks that could not be read and are not in the pack.
    pub unreadable: Vec<u64>,
}

/// Packs the `target` metadata on `dev` into `out`: the blocks in use, or with
/// `everything` every block that is not all zeroes. Refuses metadata that is not
/// the target's; damaged metadata is packed whole (see [`Selection`]). A block that
/// cannot be read is left out and listed in the summary.
pub fn pack(
    dev: &dyn BlockDevice,
    target: Target,
    everything: bool,
    out: &mut dyn Write,
) -> Result<PackSummary, PackError> {
    let nr_blocks = dev.nr_blocks();
    let selection = select(dev, target, everything)?;
    // The walk may have named blocks the device does not have only when damaged,
    // and then every block is read instead.
    let mut w = PackWriter::new(out, nr_blocks).map_err(PackError::Write)?;
    let mut unreadable = Vec::new();
    let mut blk = zeroed_block();
    let mut put = |b: u64, nonzero_only: bool| -> Result<(), PackError> {
        match dev.read(b, &mut blk) {
            Err(_) => unreadable.push(b),
            Ok(()) if nonzero_only && blk.iter().all(|&x| x == 0) => {}
            Ok(()) => w.add(b, &blk).map_err(PackError::Write)?,
        }
        Ok(())
    };
    match &selection {
        Selection::Used(blocks) => {
            for &b in blocks {
                put(b, false)?;
            }
        }
        Selection::Everything | Selection::Damaged { .. } => {
            for b in 0..nr_blocks {
                put(b, true)?;
            }
        }
    }
    let (_, packed, bytes) = w.finish().map_err(PackError::Write)?;
    Ok(PackSummary {
        nr_blocks,
        packed,
        bytes,
        selection,
        unreadable,
    })
}

/// What the unpacked image holds at block 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block0 {
    /// The target's superblock (by its magic number; it may still be damaged).
    Superblock,
    /// Nothing: the pack has no block 0, so the image has no superblock.
    Missing,
    /// A block whose magic number is no known superblock's.
    Unknown {
        /// The magic number field.
        magic: u64,
    },
}

/// What was unpacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackSummary {
    /// Blocks in the image.
    pub nr_blocks: u64,
    /// Blocks the pack held.
    pub unpacked: u64,
    /// What block 0 is.
    pub block0: Block0,
}

impl UnpackSummary {
    /// A warning for an image without the target's superblock, if it has none.
    pub fn warning(&self, target: Target) -> Option<String> {
        let name = target_name(target);
        match self.block0 {
            Block0::Superblock => None,
            Block0::Missing => Some(format!(
                "the pack holds no block 0, so the image has no superblock{}",
                if target == Target::Clone {
                    " (thin_metadata_pack leaves the dm-clone superblock out of its packs)"
                } else {
                    ""
                }
            )),
            Block0::Unknown { magic } => Some(format!(
                "block 0 is not a {name} superblock (magic number {magic:#x})"
            )),
        }
    }
}

/// Refuses a pack whose block 0 is another kind of metadata's superblock.
fn judge_block0(target: Target, block0: Option<&Block>) -> Result<Block0, PackError> {
    let Some(b) = block0 else {
        return Ok(Block0::Missing);
    };
    let magic = le64(b, MAGIC_OFFSET);
    if magic == target_magic(target) {
        return Ok(Block0::Superblock);
    }
    match superblock_kind(magic) {
        Some(k) => Err(PackError::NotTarget {
            target,
            why: format!(
                "the pack holds {} metadata, not {} (use {})",
                k.name,
                target_name(target),
                k.unpack_tool
            ),
        }),
        None => Ok(Block0::Unknown { magic }),
    }
}

/// Unpacks the pack read from `r` into `file`, a new, empty file: it is sized to
/// the image and every packed block written in place. On error the file holds a
/// partial image and should be removed.
pub fn unpack_to_file(
    r: &mut dyn Read,
    target: Target,
    file: &File,
) -> Result<UnpackSummary, PackError> {
    let reader = PackReader::open(r)?;
    let nr_blocks = reader.nr_blocks();
    file.set_len(nr_blocks * BLOCK_SIZE as u64)
        .map_err(PackError::Write)?;
    let mut block0 = None;
    let unpacked = reader.read_blocks(&mut |b, blk| {
        if b == SUPERBLOCK_LOCATION {
            block0 = Some(Box::new(*blk));
        }
        file.write_all_at(blk, b * BLOCK_SIZE as u64)
    })?;
    let block0 = judge_block0(target, block0.as_deref())?;
    Ok(UnpackSummary {
        nr_blocks,
        unpacked,
        block0,
    })
}

/// Unpacks onto a device. The pack (`open` gives it from its start) is read twice:
/// first whole, so that a damaged pack or another target's is refused before
/// anything is written; then block 0 is zeroed and flushed, every other block of
/// the image written (zero where the pack has none), flushed, and block 0 written
/// and flushed last, so that an unpack that stops half-way leaves no superblock.
pub fn unpack_to_device(
    open: &mut dyn FnMut() -> io::Result<Box<dyn Read>>,
    target: Target,
    dev: &dyn BlockDevice,
) -> Result<UnpackSummary, PackError> {
    let reopen = |open: &mut dyn FnMut() -> io::Result<Box<dyn Read>>| {
        open().map_err(|source| PackError::ReadPack { at: 0, source })
    };
    let mut r = reopen(open)?;
    let reader = PackReader::open(&mut *r)?;
    let nr_blocks = reader.nr_blocks();
    if nr_blocks > dev.nr_blocks() {
        return Err(PackError::Write(io::Error::other(format!(
            "the device has {} blocks, the image {nr_blocks}",
            dev.nr_blocks()
        ))));
    }
    let mut present = HashSet::new();
    let mut block0 = None;
    let unpacked = reader.read_blocks(&mut |b, blk| {
        present.insert(b);
        if b == SUPERBLOCK_LOCATION {
            block0 = Some(Box::new(*blk));
        }
        Ok(())
    })?;
    let judged = judge_block0(target, block0.as_deref())?;

    let zero = zeroed_block();
    let werr = PackError::Write;
    dev.write(SUPERBLOCK_LOCATION, &zero).map_err(werr)?;
    dev.flush().map_err(werr)?;
    let mut r = reopen(open)?;
    PackReader::open(&mut *r)?.read_blocks(&mut |b, blk| {
        if b == SUPERBLOCK_LOCATION {
            return Ok(());
        }
        dev.write(b, blk)
    })?;
    for b in 1..nr_blocks {
        if !present.contains(&b) {
            dev.write(b, &zero).map_err(werr)?;
        }
    }
    dev.flush().map_err(werr)?;
    if let Some(b0) = &block0 {
        dev.write(SUPERBLOCK_LOCATION, b0).map_err(werr)?;
        dev.flush().map_err(werr)?;
    }
    Ok(UnpackSummary {
        nr_blocks,
        unpacked,
        block0: judged,
    })
}
