//! How large a metadata device dm-clone and dm-era need: the blocks the kernel's
//! structures take for a geometry, as the kernel lays them out, plus what the
//! kernel's copy-on-write commit needs on top (PERSISTENT-DATA.md §7-§9).
//!
//! Within a transaction every block that changes is shadowed to a new block, and
//! the block it replaces is not reused until the commit: the metadata space map
//! allocates only blocks that are free both in the committed and in the current
//! state (`sm_metadata_new_block`). So a transaction that changes every block of a
//! structure needs that structure twice. Both targets have such transactions:
//!
//! * dm-clone: a discard of the whole device (or hydration spread over it between
//!   two commits) sets bits in every block of the region bitset at once.
//! * dm-era: the digest of an archived writeset rewrites the era array 100 entries
//!   per worker step and commits only with the next write that marks a new block,
//!   or the next message; a writeset marking blocks all over the device rewrites
//!   every era array block in one transaction. A metadata snapshot keeps its own
//!   era array, writeset tree and archived writesets while the live ones move on.
//!
//! Every changed space-map bitmap is shadowed once per transaction, and the
//! space-map index block once per commit. The figures:
//!
//! ```text
//! clone: 1 superblock + 2 (space-map index, ref-count tree root) + 2 bm
//!        + 1 index copy + 2 X
//! era:   2 superblocks (live, snapshot) + 2 + 2 bm + 1
//!        + 3 A + 3 T + (2 N + 2) W
//! ```
//!
//! `X` is the region bitset, `A` the era array, `W` one writeset's bitset (each an
//! array whose index tree the kernel grows block by block,
//! [`grown_tree_nodes`]), `T` the writeset tree, `N` the archived writesets
//! waiting to be digested at any one time (at least 1: every checkpoint archives
//! one), and `bm` the space-map bitmaps of a device of the resulting size (16320
//! blocks each, a fixed point). The era figure holds the live and the snapshot's
//! copy of the array, trees and `N` writesets each, the current writeset, and a
//! transaction's copy of the array, the tree and the current writeset.

pub mod render;
pub mod units;

use std::fmt;

use crate::pdata::array::array_max_entries;
use crate::pdata::btree::calc_max_entries;
use crate::pdata::btree::grown::grown_tree_nodes;
use crate::pdata::space_map::{ENTRIES_PER_BITMAP, MAX_METADATA_BLOCKS};

/// The most regions dm-clone accepts (`validate_nr_regions`).
pub const CLONE_MAX_REGIONS: u64 = 1 << 31;
/// dm-era accepts fewer origin blocks than this (`valid_nr_blocks`).
pub const ERA_MAX_BLOCKS: u64 = 1 << 31;

/// dm-clone's smallest region, in sectors (`MIN_REGION_SIZE`).
pub const CLONE_MIN_REGION_SECTORS: u64 = 8;
/// dm-clone's largest region, in sectors (`MAX_REGION_SIZE`).
pub const CLONE_MAX_REGION_SECTORS: u64 = 1 << 21;
/// dm-era's block sizes are multiples of this many sectors (`MIN_BLOCK_SIZE`).
pub const ERA_BLOCK_SECTORS_MULTIPLE: u64 = 8;

/// A geometry the kernel would refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GeometryError {
    /// The device size is zero.
    EmptyDevice,
    /// A size is not a whole number of 512-byte sectors.
    NotSectors {
        /// Which size.
        what: &'static str,
        /// Its bytes.
        bytes: u64,
    },
    /// The clone region size is not a power of two in 8..=2^21 sectors.
    RegionSize(u64),
    /// The era block size is not a positive multiple of 8 sectors.
    BlockSize(u64),
    /// More regions or blocks than the target accepts.
    TooMany {
        /// "regions" or "blocks".
        what: &'static str,
        /// How many the geometry has.
        count: u64,
        /// The target's limit (exclusive for era, inclusive for clone).
        limit: u64,
    },
}

impl fmt::Display for GeometryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GeometryError::EmptyDevice => write!(f, "the device size must not be zero"),
            GeometryError::NotSectors { what, bytes } => {
                write!(f, "the {what} ({bytes} bytes) is not a whole number of 512-byte sectors")
            }
            GeometryError::RegionSize(s) => write!(
                f,
                "the region size ({s} sectors) must be a power of two from {CLONE_MIN_REGION_SECTORS} to {CLONE_MAX_REGION_SECTORS} sectors (dm-clone's limits)"
            ),
            GeometryError::BlockSize(s) => write!(
                f,
                "the block size ({s} sectors) must be a positive multiple of {ERA_BLOCK_SECTORS_MULTIPLE} sectors (dm-era's rule)"
            ),
            GeometryError::TooMany { what, count, limit } => write!(
                f,
                "the device has {count} {what}, more than the target accepts ({limit}); use a larger {}",
                if *what == "regions" { "region size" } else { "block size" }
            ),
        }
    }
}

impl std::error::Error for GeometryError {}

fn sectors(what: &'static str, bytes: u64) -> Result<u64, GeometryError> {
    if bytes.is_multiple_of(512) {
        Ok(bytes / 512)
    } else {
        Err(GeometryError::NotSectors { what, bytes })
    }
}

/// The regions of a dm-clone target of `device_bytes` with `region_bytes` regions,
/// as the kernel counts them (the last region may be partial).
pub fn clone_nr_regions(device_bytes: u64, region_bytes: u64) -> Result<u64, GeometryError> {
    let len = sectors("device size", device_bytes)?;
    let rs = sectors("region size", region_bytes)?;
    if !rs.is_power_of_two() || !(CLONE_MIN_REGION_SECTORS..=CLONE_MAX_REGION_SECTORS).contains(&rs)
    {
        return Err(GeometryError::RegionSize(rs));
    }
    if len == 0 {
        return Err(GeometryError::EmptyDevice);
    }
    check_clone_regions(len.div_ceil(rs))
}

/// The origin blocks of a dm-era target of `device_bytes` with `block_bytes`
/// blocks, as the kernel counts them (the last block may be partial).
pub fn era_nr_blocks(device_bytes: u64, block_bytes: u64) -> Result<u64, GeometryError> {
    let len = sectors("device size", device_bytes)?;
    let bs = sectors("block size", block_bytes)?;
    if bs == 0 || !bs.is_multiple_of(ERA_BLOCK_SECTORS_MULTIPLE) {
        return Err(GeometryError::BlockSize(bs));
    }
    if len == 0 {
        return Err(GeometryError::EmptyDevice);
    }
    check_era_blocks(len.div_ceil(bs))
}

/// Refuses a number of dm-era origin blocks the kernel does not accept.
pub fn check_era_blocks(n: u64) -> Result<u64, GeometryError> {
    if n >= ERA_MAX_BLOCKS {
        return Err(GeometryError::TooMany {
            what: "blocks",
            count: n,
            limit: ERA_MAX_BLOCKS - 1,
        });
    }
    Ok(n)
}

/// Refuses a number of dm-clone regions the kernel does not accept.
pub fn check_clone_regions(n: u64) -> Result<u64, GeometryError> {
    if n > CLONE_MAX_REGIONS {
        return Err(GeometryError::TooMany {
            what: "regions",
            count: n,
            limit: CLONE_MAX_REGIONS,
        });
    }
    Ok(n)
}

/// What a figure is for: the geometry it was computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizedFor {
    /// A dm-clone target of this many regions.
    Clone {
        /// Regions of the target.
        nr_regions: u64,
    },
    /// A dm-era target of this many origin blocks.
    Era {
        /// Origin blocks of the target.
        nr_blocks: u64,
        /// Archived writesets allowed for.
        writesets: u64,
    },
}

impl SizedFor {
    /// The `*_metadata_size` command line that prints the same figure.
    pub fn command(&self) -> String {
        match self {
            SizedFor::Clone { nr_regions } => {
                format!("clone_metadata_size --nr-regions {nr_regions}")
            }
            SizedFor::Era {
                nr_blocks,
                writesets,
            } => format!("era_metadata_size --nr-blocks {nr_blocks} --writesets {writesets}"),
        }
    }
}

/// One part of a figure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    /// What the blocks hold.
    pub what: &'static str,
    /// Metadata blocks.
    pub blocks: u64,
}

/// The metadata a geometry needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sizing {
    /// What it was computed for.
    pub sized_for: SizedFor,
    /// The worst case in 4096-byte blocks, the commit headroom included.
    pub blocks: u64,
    /// The parts of `blocks`.
    pub terms: Vec<Term>,
}

impl Sizing {
    /// True when the kernel can address that many blocks (its metadata space map
    /// tracks at most [`MAX_METADATA_BLOCKS`]; a larger device is used only up to
    /// that).
    pub fn addressable(&self) -> bool {
        self.blocks <= MAX_METADATA_BLOCKS
    }

    /// The least device size to accept, in blocks: the figure, or all the kernel
    /// can address when the figure is beyond it.
    pub fn required_blocks(&self) -> u64 {
        self.blocks.min(MAX_METADATA_BLOCKS)
    }
}

/// Blocks of an array of `n` values of `value_size` bytes as `dm_array_resize`
/// makes it: full array blocks and the index tree grown one block at a time.
pub fn kernel_array_blocks(n: u64, value_size: u32) -> u64 {
    let ab = n.div_ceil(array_max_entries(value_size) as u64);
    ab + grown_tree_nodes(ab, 8)
}

/// Blocks of a bitset of `nr_bits` bits as `dm_bitset_resize` makes it.
pub fn kernel_bitset_blocks(nr_bits: u64) -> u64 {
    kernel_array_blocks(nr_bits.div_ceil(64), 8)
}

/// Nodes of a tree holding at most `n` entries after any inserts and removals: one
/// leaf while they fit in one; else each node at least a third full (dm-btree's
/// removal merges nodes below that).
fn tree_nodes_bound(n: u64, value_size: u32) -> u64 {
    let leaf_max = calc_max_entries(value_size) as u64;
    if n <= leaf_max {
        return 1;
    }
    let mut total = 0;
    let mut count = n;
    let mut per = leaf_max / 3;
    loop {
        let nodes = count.div_ceil(per).max(1);
        total += nodes;
        if nodes == 1 {
            return total;
        }
        count = nodes;
        per = calc_max_entries(8) as u64 / 3;
    }
}

/// Adds the space map to `terms` (whose blocks do not count it yet): its index
/// block and ref-count tree root, its bitmaps and their transaction copies, and
/// the index block's copy at commit; the bitmaps cover the device itself, so the
/// total is the least fixed point.
fn with_space_map(sized_for: SizedFor, mut terms: Vec<Term>) -> Sizing {
    let base: u64 = terms.iter().map(|t| t.blocks).sum::<u64>() + 3;
    let mut total = base + 2;
    let bitmaps = loop {
        let bm = total.min(MAX_METADATA_BLOCKS).div_ceil(ENTRIES_PER_BITMAP);
        let next = base + 2 * bm;
        if next <= total {
            break bm;
        }
        total = next;
    };
    terms.push(Term {
        what: "space map: index block and ref-count tree root",
        blocks: 2,
    });
    terms.push(Term {
        what: "space map: bitmaps",
        blocks: bitmaps,
    });
    terms.push(Term {
        what: "commit: copies of the bitmaps and of the index block",
        blocks: bitmaps + 1,
    });
    Sizing {
        sized_for,
        blocks: terms.iter().map(|t| t.blocks).sum(),
        terms,
    }
}

/// The metadata a dm-clone target of `nr_regions` regions needs.
pub fn clone_metadata_blocks(nr_regions: u64) -> Sizing {
    let bitset = kernel_bitset_blocks(nr_regions);
    with_space_map(
        SizedFor::Clone { nr_regions },
        vec![
            Term {
                what: "superblock",
                blocks: 1,
            },
            Term {
                what: "region bitset",
                blocks: bitset,
            },
            Term {
                what: "commit: a copy of the region bitset",
                blocks: bitset,
            },
        ],
    )
}

/// The metadata a dm-era target of `nr_blocks` origin blocks needs when up to
/// `writesets` archived writesets wait to be digested at once (taken as at least 1).
pub fn era_metadata_blocks(nr_blocks: u64, writesets: u64) -> Sizing {
    let n = writesets.max(1);
    let array = kernel_array_blocks(nr_blocks, 4);
    let writeset = kernel_bitset_blocks(nr_blocks);
    let tree = tree_nodes_bound(n, 12);
    with_space_map(
        SizedFor::Era {
            nr_blocks,
            writesets: n,
        },
        vec![
            Term {
                what: "superblocks: live and metadata snapshot",
                blocks: 2,
            },
            Term {
                what: "era arrays: live and metadata snapshot",
                blocks: 2 * array,
            },
            Term {
                what: "writeset trees: live and metadata snapshot",
                blocks: 2 * tree,
            },
            Term {
                what: "writesets: current, archived, held by the snapshot",
                blocks: (2 * n + 1).saturating_mul(writeset),
            },
            Term {
                what: "commit: copies of the era array, the writeset tree, the current writeset",
                blocks: array + tree + writeset,
            },
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's own fresh images: the used count of the fixtures made by the
    /// real kernel is the figure's live part (see tests/kernel_fixtures.rs for the
    /// images; these are the counts their status lines give).
    #[test]
    fn live_parts_match_kernel_status_counts() {
        // clone-millions: 8388608 regions, status "265/2048" (1 bitmap).
        assert_eq!(3 + 1 + kernel_bitset_blocks(8_388_608), 265);
        // era-fresh: 1024 blocks, status "10/2048": superblock, space-map index,
        // ref-count root and bitmap, era array (2 blocks and an index leaf), the
        // writeset tree (one leaf) and the current writeset (a block and a leaf).
        assert_eq!(
            4 + kernel_array_blocks(1024, 4) + 1 + kernel_bitset_blocks(1024),
            10
        );
        // era-millions: 2097152 blocks at era 3, status "2274/4096": the era array,
        // the tree, the current writeset and the two archived ones (eras 1 and 2)
        // the digest had not yet removed.
        assert_eq!(
            4 + kernel_array_blocks(2_097_152, 4) + 1 + 3 * kernel_bitset_blocks(2_097_152),
            2274
        );
        // The image that run left (after the remove archived era 3): "2208/4096"
        // in era_check, archived eras 2 and 3, no current writeset.
        assert_eq!(
            4 + kernel_array_blocks(2_097_152, 4) + 1 + 2 * kernel_bitset_blocks(2_097_152),
            2208
        );
    }

    #[test]
    fn the_space_map_is_a_fixed_point() {
        for n in [0u64, 1, 1000, 1 << 20, 1 << 28, CLONE_MAX_REGIONS] {
            let s = clone_metadata_blocks(n);
            let bm = s
                .blocks
                .min(MAX_METADATA_BLOCKS)
                .div_ceil(ENTRIES_PER_BITMAP);
            let rest: u64 = s
                .terms
                .iter()
                .filter(|t| !t.what.contains("bitmap"))
                .map(|t| t.blocks)
                .sum();
            assert_eq!(s.blocks, rest + 2 * bm + 1, "{n}");
            assert!(s.addressable());
        }
        // One block less would need one bitmap less: never consistent.
        let s = clone_metadata_blocks(1 << 28);
        assert!(s.blocks > ENTRIES_PER_BITMAP);
    }

    #[test]
    fn figures_for_known_geometries() {
        // 1 TiB of 4 KiB regions: 2^22 words, 8241 bitset blocks + 35 index nodes.
        assert_eq!(kernel_bitset_blocks(1 << 28), 8276);
        let c = clone_metadata_blocks(1 << 28);
        assert_eq!(c.blocks, 4 + 2 * 2 + 2 * 8276);
        let e = era_metadata_blocks(1 << 20, 1);
        let a = kernel_array_blocks(1 << 20, 4);
        let w = kernel_bitset_blocks(1 << 20);
        assert_eq!(e.blocks, 5 + 2 + 3 * a + 3 + 4 * w);
        assert_eq!(
            e.sized_for,
            SizedFor::Era {
                nr_blocks: 1 << 20,
                writesets: 1
            }
        );
        assert_eq!(era_metadata_blocks(1 << 20, 0), e);
        // The largest era device cannot be sized within what the kernel addresses.
        assert!(!era_metadata_blocks(ERA_MAX_BLOCKS - 1, 1).addressable());
        assert_eq!(
            era_metadata_blocks(ERA_MAX_BLOCKS - 1, 1).required_blocks(),
            MAX_METADATA_BLOCKS
        );
    }

    #[test]
    fn the_writeset_tree_bound_covers_a_grown_tree() {
        for n in [1u64, 201, 202, 1000, 50_000] {
            assert!(tree_nodes_bound(n, 12) >= grown_tree_nodes(n, 12), "{n}");
        }
    }
}
