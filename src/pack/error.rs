//! What can go wrong packing and unpacking, and where in the pack file.

use std::fmt;
use std::io;

use super::vm::VmError;
use crate::trace::Target;

/// A place in a pack file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Where {
    /// The 32-byte header.
    Header,
    /// The length field or compressed data of a chunk.
    Chunk {
        /// Chunk number, from 0.
        index: u64,
        /// Byte offset of the chunk's length field in the file.
        at: u64,
    },
    /// One block's entry inside a chunk's data.
    Entry {
        /// Chunk number, from 0.
        chunk: u64,
        /// Byte offset of the chunk's length field in the file.
        at: u64,
        /// Entry number in the chunk, from 0.
        entry: u64,
        /// The block number the entry names, once read.
        block: Option<u64>,
        /// Offset of the failing part in the chunk's decompressed data.
        offset: usize,
    },
}

impl fmt::Display for Where {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Where::Header => write!(f, "header"),
            Where::Chunk { index, at } => write!(f, "chunk {index} (at byte {at})"),
            Where::Entry {
                chunk,
                at,
                entry,
                block,
                offset,
            } => {
                write!(f, "chunk {chunk} (at byte {at}), entry {entry}")?;
                if let Some(b) = block {
                    write!(f, " (block {b})")?;
                }
                write!(f, ", byte {offset} of the chunk's data")
            }
        }
    }
}

/// How a pack file is damaged, or why it is not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    /// The magic number is not the pack format's.
    NotAPack {
        /// The first 8 bytes, little-endian.
        magic: u64,
        /// What the file looks like instead, if recognisable.
        looks_like: Option<&'static str>,
    },
    /// A format version other than 3.
    Version(u64),
    /// A block size other than 4096.
    BlockSize(u64),
    /// The header says the image has no blocks.
    NoBlocks,
    /// The header gives an image too large for a file.
    TooManyBlocks(u64),
    /// The file ends inside a field.
    Truncated {
        /// Bytes the field needs.
        needed: u64,
        /// Bytes there are.
        found: u64,
    },
    /// The compressed data does not decompress.
    Zlib(String),
    /// The compressed data ends before its end marker.
    ZlibTruncated,
    /// A chunk decompresses to more than the reader accepts.
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// Bytes after the end of a chunk's compressed data.
    Trailing(u64),
    /// A block's program does not produce a block.
    Program(VmError),
    /// A block number past the end of the image.
    OutOfRange {
        /// The block.
        block: u64,
        /// Blocks in the image.
        nr_blocks: u64,
    },
    /// The same block twice.
    Duplicate(u64),
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Damage::NotAPack { magic, looks_like } => {
                write!(f, "not a metadata pack (magic {magic:#018x})")?;
                if let Some(l) = looks_like {
                    write!(f, "; it looks like {l}")?;
                }
                Ok(())
            }
            Damage::Version(v) => write!(f, "pack format version {v}; only version 3 is known"),
            Damage::BlockSize(b) => write!(f, "block size {b}; only 4096 is known"),
            Damage::NoBlocks => write!(f, "the image has no blocks"),
            Damage::TooManyBlocks(n) => {
                write!(f, "an image of {n} blocks is larger than any file can be")
            }
            Damage::Truncated { needed, found } => write!(
                f,
                "the file ends early: {found} of {needed} bytes (truncated?)"
            ),
            Damage::Zlib(e) => write!(f, "compressed data is corrupt: {e}"),
            Damage::ZlibTruncated => {
                write!(f, "compressed data ends before its end marker (truncated?)")
            }
            Damage::TooLarge { limit } => {
                write!(f, "decompresses to more than {limit} bytes")
            }
            Damage::Trailing(n) => write!(f, "{n} bytes after the end of the compressed data"),
            Damage::Program(e) => write!(f, "{e}"),
            Damage::OutOfRange { block, nr_blocks } => write!(
                f,
                "block {block} is past the end of the image ({nr_blocks} blocks)"
            ),
            Damage::Duplicate(b) => write!(f, "block {b} appears a second time"),
        }
    }
}

/// Why packing or unpacking failed.
#[derive(Debug)]
pub enum PackError {
    /// A metadata block could not be read.
    ReadBlock {
        /// The block.
        block: u64,
        /// The failure.
        source: io::Error,
    },
    /// The metadata (or the pack's block 0) is not the target's.
    NotTarget {
        /// The target of the tool.
        target: Target,
        /// What it is instead.
        why: String,
    },
    /// The pack file could not be read.
    ReadPack {
        /// Byte offset of the failed read.
        at: u64,
        /// The failure.
        source: io::Error,
    },
    /// The pack file is damaged or not a pack.
    Corrupt {
        /// Where.
        at: Where,
        /// What.
        damage: Damage,
    },
    /// Writing the output failed.
    Write(io::Error),
}

impl fmt::Display for PackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PackError::ReadBlock { block, source } => {
                write!(f, "cannot read block {block}: {source}")
            }
            PackError::NotTarget { why, .. } => write!(f, "{why}"),
            PackError::ReadPack { at, source } => write!(f, "read error at byte {at}: {source}"),
            PackError::Corrupt { at, damage } => write!(f, "{at}: {damage}"),
            PackError::Write(e) => write!(f, "cannot write the output: {e}"),
        }
    }
}

impl std::error::Error for PackError {}

/// The name tools and messages use for a target's metadata.
pub fn target_name(t: Target) -> &'static str {
    match t {
        Target::Clone => "dm-clone",
        Target::Era => "dm-era",
    }
}
