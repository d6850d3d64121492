//! dm-array (PERSISTENT-DATA.md §5): a B-tree (value size 8) from array-block index
//! to array block, each block holding `max_entries` packed values.
//!
//! ```text
//!  0  csum        u32  XOR 595846735
//!  4  max_entries u32  floor(4072 / value_size)
//!  8  nr_entries  u32
//! 12  value_size  u32
//! 16  blocknr     u64  self location
//! 24  values, packed
//! ```

use rayon::prelude::*;

use crate::io::{Block, BlockDevice, BLOCK_SIZE};
use crate::pdata::checksum::BlockKind;
use crate::pdata::le32;
use crate::pdata::le64;
use crate::pdata::put_le32;
use crate::pdata::refs::{Role, Visit};
use crate::pdata::walk::{block_finding, read_verified, TreeDesc, Walker};
use crate::report::{Finding, Place};

/// Size of the array block header.
pub const ARRAY_HEADER_SIZE: usize = 24;

/// Capacity of an array block for values of `value_size` bytes (§5.2).
pub const fn array_max_entries(value_size: u32) -> u32 {
    (BLOCK_SIZE as u32 - ARRAY_HEADER_SIZE as u32) / value_size
}

/// A decoded array block header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArrayHeader {
    /// Capacity.
    pub max_entries: u32,
    /// Valid entries.
    pub nr_entries: u32,
    /// Bytes per value.
    pub value_size: u32,
    /// Self location.
    pub blocknr: u64,
}

impl ArrayHeader {
    /// Reads the header fields.
    pub fn decode(b: &Block) -> Self {
        ArrayHeader {
            max_entries: le32(b, 4),
            nr_entries: le32(b, 8),
            value_size: le32(b, 12),
            blocknr: le64(b, 16),
        }
    }

    /// Writes the header fields (not the checksum).
    pub fn encode(&self, b: &mut Block) {
        put_le32(b, 4, self.max_entries);
        put_le32(b, 8, self.nr_entries);
        put_le32(b, 12, self.value_size);
        crate::pdata::put_le64(b, 16, self.blocknr);
    }
}

/// Describes an array to read: its values and its length, which the owner stores.
#[derive(Debug, Clone)]
pub struct ArrayDesc {
    /// The structure, as findings name it, e.g. `era array`.
    pub structure: Place,
    /// Bytes per value.
    pub value_size: u32,
    /// Number of entries the owner says the array has.
    pub nr_entries: u64,
    /// The block holding the root pointer, named in findings.
    pub from: Option<u64>,
}

impl ArrayDesc {
    /// Values per full array block.
    pub fn per_block(&self) -> u64 {
        array_max_entries(self.value_size) as u64
    }

    /// Number of array blocks the array must have.
    pub fn nr_blocks(&self) -> u64 {
        self.nr_entries.div_ceil(self.per_block())
    }

    /// Entries that array block `i` must hold.
    pub fn entries_in_block(&self, i: u64) -> u32 {
        let m = self.per_block();
        (self.nr_entries - i * m).min(m) as u32
    }

    fn index_desc(&self) -> TreeDesc {
        TreeDesc {
            structure: self.structure.sub(" index tree"),
            value_size: 8,
            from: self.from,
        }
    }
}

/// Validates array block `i` of `desc` read from `loc` (§10 rule 12).
/// `from` is the index-tree leaf that points at it, named in findings.
pub fn validate_array_block(
    dev: &dyn BlockDevice,
    loc: u64,
    desc: &ArrayDesc,
    i: u64,
    from: Option<u64>,
) -> Result<Box<Block>, Finding> {
    // Named only when there is something to say: a walk reads thousands of blocks.
    let structure = || desc.structure.sub(format_args!(" block {i}"));
    let b = read_verified(dev, loc, BlockKind::ArrayBlock)
        .map_err(|e| block_finding(loc, BlockKind::ArrayBlock, &structure(), &e, from))?;
    let h = ArrayHeader::decode(&b);
    let want = desc.entries_in_block(i);
    let msg = if h.value_size != desc.value_size {
        Some(format!(
            "value size {}, expected {}",
            h.value_size, desc.value_size
        ))
    } else if h.max_entries != array_max_entries(desc.value_size) {
        Some(format!(
            "max_entries {}, expected {}",
            h.max_entries,
            array_max_entries(desc.value_size)
        ))
    } else if h.nr_entries != want {
        Some(format!(
            "{} entries, expected {want} for an array of {} entries",
            h.nr_entries, desc.nr_entries
        ))
    } else {
        None
    };
    match msg {
        Some(m) => Err(Finding::error("array-block", Some(loc), structure(), m)),
        None => Ok(b),
    }
}

/// The values of a validated array block.
pub fn values<'b>(b: &'b Block, desc: &ArrayDesc) -> &'b [u8] {
    let h = ArrayHeader::decode(b);
    &b[ARRAY_HEADER_SIZE..ARRAY_HEADER_SIZE + (h.nr_entries * desc.value_size) as usize]
}

/// Array block locations of an array with the index leaf that holds each, in index
/// order; `None` where the index tree lost them.
pub type BlockList = Vec<Option<(u64, u64)>>;

impl Walker<'_> {
    /// Walks the index tree of an array and returns where each array block lives.
    /// Index keys must be exactly `0 .. nr_blocks` (§10 rule 12). `None` when the
    /// root is shared with an array walked before (nothing to read again).
    pub fn array_blocks(&mut self, root: u64, desc: &ArrayDesc) -> Option<BlockList> {
        let index = self.array_index(root, desc)?;
        // One slot per array block: 8 bytes per 4 KiB block of values.
        let mut out: BlockList = vec![None; desc.nr_blocks() as usize];
        for (key, loc, leaf) in index {
            out[key as usize] = Some((loc, leaf));
        }
        Some(out)
    }

    /// The index entries of an array below its block count, by key, the last
    /// one of a key kept: `(array block, location, index leaf)`. Its size is
    /// what the index tree holds, whatever the owner claims.
    fn array_index(&mut self, root: u64, desc: &ArrayDesc) -> Option<Vec<(u64, u64, u64)>> {
        let n = desc.nr_blocks();
        let mut index: Vec<(u64, u64, u64)> = Vec::new();
        let idx = desc.index_desc();
        let structure = idx.structure.clone();
        let mut extra: Vec<(u64, u64)> = Vec::new();
        let walk = self.walk_btree(root, &idx, &mut |_w, key, value, leaf| {
            if key < n {
                index.push((key, le64(value, 0), leaf));
            } else {
                extra.push((key, leaf));
            }
        });
        if let Some(&(key, leaf)) = extra.first() {
            self.push(Finding::error(
                "array-index-keys",
                Some(leaf),
                &structure,
                format!(
                    "{} index entries from key {key} on, but the array has only {n} blocks",
                    extra.len()
                ),
            ));
        }
        // A stable sort keeps a repeated key's entries in walk order: the
        // last one is kept, as a later entry overwrites an earlier one.
        index.sort_by_key(|e| e.0);
        let mut kept: Vec<(u64, u64, u64)> = Vec::with_capacity(index.len());
        for e in index {
            match kept.last_mut() {
                Some(last) if last.0 == e.0 => *last = e,
                _ => kept.push(e),
            }
        }
        (!walk.shared_root).then_some(kept)
    }

    /// Checks a whole array: index tree, then every array block (in parallel), calling
    /// `content(index_of_first_entry, values)` for each valid block to check values.
    /// Returns the entry ranges `[begin, end)` that could not be read.
    pub fn check_array(
        &mut self,
        root: u64,
        desc: &ArrayDesc,
        content: &(dyn Fn(u64, &[u8]) -> Vec<Finding> + Sync),
    ) -> Vec<(u64, u64)> {
        let Some(index) = self.array_index(root, desc) else {
            return Vec::new();
        };
        let m = desc.per_block();
        // Runs of array blocks that cannot be read.
        let mut lost: Vec<(u64, u64)> = Vec::new();
        let mut todo = Vec::new();
        let role = Role::ArrayBlock(desc.value_size);
        // Runs of missing index entries, one finding each: a damaged owner can
        // claim millions of array blocks.
        let mut missing: Vec<(u64, u64)> = Vec::new();
        let mut next = 0;
        for &(i, loc, leaf) in &index {
            if i > next {
                missing.push((next, i));
            }
            next = i + 1;
            let structure = desc.structure.sub(format_args!(" block {i}"));
            match self.reach(loc, role, &structure, Some(leaf)) {
                Some(Visit::First) => todo.push((i, loc, leaf)),
                Some(_) => {}
                None => lost.push((i, i + 1)),
            }
        }
        if next < desc.nr_blocks() {
            missing.push((next, desc.nr_blocks()));
        }
        lost.extend_from_slice(&missing);
        for (b, e) in missing {
            let what = if e - b == 1 {
                format!("no index entry for array block {b}")
            } else {
                format!("no index entries for array blocks {b}..{e}")
            };
            self.push(Finding::error(
                "array-index-keys",
                None,
                desc.structure.sub(" index tree"),
                what,
            ));
        }
        let dev = self.dev();
        let results: Vec<(u64, Result<Vec<Finding>, Finding>)> = todo
            .par_iter()
            .map(|&(i, loc, leaf)| {
                let r = validate_array_block(dev, loc, desc, i, Some(leaf))
                    .map(|b| content(i * m, values(&b, desc)));
                (i, r)
            })
            .collect();
        for (i, r) in results {
            match r {
                Ok(fs) => self.report.extend(fs),
                Err(f) => {
                    self.push(f);
                    lost.push((i, i + 1));
                }
            }
        }
        // Sorted by run, not by block: a damaged owner can claim millions.
        lost.sort_unstable();
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        for (i, j) in lost {
            let (b, e) = (i * m, (j * m).min(desc.nr_entries));
            match ranges.last_mut() {
                Some(last) if last.1 == b => last.1 = e,
                _ => ranges.push((b, e)),
            }
        }
        ranges
    }
}

/// Sequential reader over an array, one validated block in memory at a time.
pub struct ArrayCursor<'d> {
    dev: &'d dyn BlockDevice,
    desc: ArrayDesc,
    blocks: BlockList,
    cur: Option<(u64, Box<Block>)>,
}

impl<'d> ArrayCursor<'d> {
    /// A cursor over an array whose blocks `array_blocks` found.
    pub fn new(dev: &'d dyn BlockDevice, desc: ArrayDesc, blocks: BlockList) -> Self {
        ArrayCursor {
            dev,
            desc,
            blocks,
            cur: None,
        }
    }

    /// The array's description.
    pub fn desc(&self) -> &ArrayDesc {
        &self.desc
    }

    /// The values of array block `i`.
    pub fn block(&mut self, i: u64) -> Result<&[u8], Finding> {
        if self.cur.as_ref().map(|c| c.0) != Some(i) {
            let (loc, leaf) = self
                .blocks
                .get(i as usize)
                .copied()
                .flatten()
                .ok_or_else(|| {
                    Finding::error(
                        "array-index-keys",
                        None,
                        self.desc.structure.sub(" index tree"),
                        format!("no index entry for array block {i}"),
                    )
                })?;
            let b = validate_array_block(self.dev, loc, &self.desc, i, Some(leaf))?;
            self.cur = Some((i, b));
        }
        let (_, b) = self.cur.as_ref().expect("just loaded");
        Ok(values(b, &self.desc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::MemDevice;
    use crate::pdata::checksum::stamp;
    use crate::report::Part;

    #[test]
    fn capacities_match_the_spec_table() {
        assert_eq!(array_max_entries(4), 1018);
        assert_eq!(array_max_entries(8), 509);
        let d = ArrayDesc {
            structure: Part::EraArray.into(),
            value_size: 4,
            nr_entries: 2 * 1018 + 5,
            from: None,
        };
        assert_eq!(d.nr_blocks(), 3);
        assert_eq!(d.entries_in_block(0), 1018);
        assert_eq!(d.entries_in_block(2), 5);
    }

    fn block(loc: u64, vs: u32, nr: u32) -> Block {
        let mut b = [0u8; BLOCK_SIZE];
        ArrayHeader {
            max_entries: array_max_entries(vs),
            nr_entries: nr,
            value_size: vs,
            blocknr: loc,
        }
        .encode(&mut b);
        b[ARRAY_HEADER_SIZE] = 7;
        stamp(&mut b, loc, BlockKind::ArrayBlock);
        b
    }

    #[test]
    fn array_blocks_are_validated_against_their_owner() {
        let dev = MemDevice::new(8);
        let d = ArrayDesc {
            structure: Part::EraArray.into(),
            value_size: 4,
            nr_entries: 10,
            from: Some(0),
        };
        dev.write(3, &block(3, 4, 10)).unwrap();
        let b = validate_array_block(&dev, 3, &d, 0, None).unwrap();
        assert_eq!(values(&b, &d).len(), 40);
        assert_eq!(values(&b, &d)[0], 7);
        // Wrong length for the owner, wrong value size, wrong location.
        dev.write(4, &block(4, 4, 11)).unwrap();
        assert_eq!(
            validate_array_block(&dev, 4, &d, 0, None).unwrap_err().code,
            "array-block"
        );
        dev.write(5, &block(5, 8, 10)).unwrap();
        assert_eq!(
            validate_array_block(&dev, 5, &d, 0, None).unwrap_err().code,
            "array-block"
        );
        dev.write(6, &block(5, 4, 10)).unwrap();
        let e = validate_array_block(&dev, 6, &d, 0, Some(2)).unwrap_err();
        assert_eq!(e.code, "pd-blocknr");
        assert!(
            e.message.contains("referenced from block 2"),
            "{}",
            e.message
        );
    }

    #[test]
    fn missing_index_entries_are_reported_as_runs() {
        // An owner claiming 4 * 10^9 entries over an empty index: one finding for
        // the whole run, not one per array block (fuzzing found millions of them).
        let dev = MemDevice::new(8);
        let d = ArrayDesc {
            structure: Part::EraArray.into(),
            value_size: 4,
            nr_entries: 4_000_000_000,
            from: Some(0),
        };
        let mut w = Walker::new(&dev, 8, true);
        let lost = w.check_array(0, &d, &|_, _| Vec::new());
        assert_eq!(lost, vec![(0, 4_000_000_000)]);
        let runs: Vec<&Finding> = w
            .report
            .findings()
            .iter()
            .filter(|f| f.code == "array-index-keys")
            .collect();
        assert_eq!(runs.len(), 1, "{runs:?}");
        let n = d.nr_blocks();
        assert_eq!(
            runs[0].message,
            format!("no index entries for array blocks 0..{n}")
        );
    }
}
