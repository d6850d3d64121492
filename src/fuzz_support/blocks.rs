//! The block-decoder targets. Each reads a sparse input ([`super::sparse_device`]):
//! the records are the blocks, re-stamped so that they pass their checksums, and
//! the header's parameters are the root pointer and the counts its owner would
//! give (a superblock, an index entry).

use crate::clone;
use crate::era;
use crate::io::BlockDevice;
use crate::pdata::array::{ArrayCursor, ArrayDesc};
use crate::pdata::bitset::BitsetCursor;
use crate::pdata::refs::Role;
use crate::pdata::space_map::{check_space_map, SmRoot};
use crate::pdata::walk::{TreeDesc, Walker};
use crate::report::{Part, Place};

use super::sparse_device;

/// Most words or array blocks read one by one through a cursor.
const CURSOR_READS: u64 = 4096;

/// Both superblock decoders, the geometry rules and the superblock-only checks.
/// Parameters: region size and target size for `clone_check`'s table options
/// (0: not given), the era block size (0: not given).
pub fn superblock(data: &[u8]) {
    let Some((dev, p)) = sparse_device(data) else {
        return;
    };
    if let Ok((sb, _)) = clone::superblock::read(&dev) {
        let _ = sb.nr_regions();
        let _ = sb.geometry_error();
    }
    let opts = clone::CheckOptions {
        superblock_only: true,
        region_size: (p[0] != 0).then_some(p[0]),
        target_size: (p[1] != 0).then_some(p[1]),
    };
    let _ = clone::check(&dev, &opts);
    if let Ok((sb, _)) = era::superblock::read_at(&dev, 0) {
        if sb.metadata_snap != 0 && sb.metadata_snap < dev.nr_blocks() {
            let _ = era::superblock::read_at(&dev, sb.metadata_snap);
        }
    }
    for metadata_snapshot in [false, true] {
        let opts = era::CheckOptions {
            superblock_only: true,
            block_size: (p[2] != 0).then_some(p[2] as u32),
            metadata_snapshot,
        };
        let _ = era::check(&dev, &opts);
    }
}

/// A B-tree walk from root `p[0]` with leaf values of `p[1]` bytes: every leaf
/// entry is handed out in strictly increasing key order, with a value of that size.
pub fn btree(data: &[u8]) {
    let Some((dev, p)) = sparse_device(data) else {
        return;
    };
    let value_size = p[1] as u32;
    let desc = TreeDesc {
        structure: Place::new(Part::WritesetTree, "fuzzed tree"),
        value_size,
        from: Some(0),
    };
    let mut runs = Vec::new();
    for count_refs in [true, false] {
        let mut w = Walker::new(&dev, dev.nr_blocks(), count_refs);
        let mut keys: Vec<u64> = Vec::new();
        w.walk_btree(p[0], &desc, &mut |_, key, value, _| {
            assert_eq!(value.len(), value_size as usize, "leaf value size");
            if let Some(&last) = keys.last() {
                assert!(key > last, "leaf key {key} after {last}");
            }
            keys.push(key);
        });
        runs.push(keys);
    }
    assert_eq!(runs[0], runs[1], "a walk must not depend on counting");
}

/// The array at root `p[0]` with values of 8 bytes (odd `p[1]`) or 4, of `p[2]`
/// entries (a `u32`, as the owners store it): checked, then read block by block.
/// Counts far beyond the device are kept: era_check reads the era array of any
/// `nr_blocks` below 2^31, reporting the blocks its device cannot hold.
pub fn array(data: &[u8]) {
    let Some((dev, p)) = sparse_device(data) else {
        return;
    };
    let desc = ArrayDesc {
        structure: Place::new(Part::EraArray, "fuzzed array"),
        value_size: if p[1] & 1 == 1 { 8 } else { 4 },
        nr_entries: p[2] & u32::MAX as u64,
        from: Some(0),
    };
    let per_block = desc.per_block();
    let mut w = Walker::new(&dev, dev.nr_blocks(), true);
    let lost = w.check_array(p[0], &desc, &|first, vals| {
        assert_eq!(first % per_block, 0, "values start at a block boundary");
        assert_eq!(vals.len() % desc.value_size as usize, 0);
        assert!(vals.len() as u64 / desc.value_size as u64 <= per_block);
        Vec::new()
    });
    for &(b, e) in &lost {
        assert!(b < e && e <= desc.nr_entries, "lost range {b}..{e}");
    }
    let mut w = Walker::new(&dev, dev.nr_blocks(), false);
    if let Some(blocks) = w.array_blocks(p[0], &desc) {
        assert_eq!(blocks.len() as u64, desc.nr_blocks());
        let mut c = ArrayCursor::new(&dev, desc.clone(), blocks);
        for i in 0..desc.nr_blocks().min(CURSOR_READS) {
            if let Ok(v) = c.block(i) {
                assert_eq!(
                    v.len() as u64,
                    desc.entries_in_block(i) as u64 * desc.value_size as u64
                );
            }
        }
    }
}

/// The bitset at root `p[0]` of `p[2]` bits (a `u32`): scanned, then read word by
/// word; no bit past the end is ever set.
pub fn bitset(data: &[u8]) {
    let Some((dev, p)) = sparse_device(data) else {
        return;
    };
    let nr_bits = p[2] & u32::MAX as u64;
    let mut w = Walker::new(&dev, dev.nr_blocks(), true);
    let last = nr_bits.div_ceil(64).saturating_sub(1);
    let place = Place::new(Part::Writeset, "fuzzed bitset");
    let r = w.scan_bitset(p[0], &place, nr_bits, Some(0), &|wi, word| {
        assert!(wi <= last, "word {wi} past the last {last}");
        if wi == last && !nr_bits.is_multiple_of(64) {
            assert_eq!(word >> (nr_bits % 64), 0, "bits past the end");
        }
    });
    assert!(r.set_bits <= nr_bits);
    let mut w = Walker::new(&dev, dev.nr_blocks(), false);
    let mut c = BitsetCursor::open(&mut w, p[0], &place, nr_bits, Some(0));
    for wi in 0..nr_bits.div_ceil(64).min(CURSOR_READS) {
        if let Ok(word) = c.word(wi) {
            let keep = nr_bits - wi * 64;
            if keep < 64 {
                assert_eq!(word >> keep, 0, "bits past the end");
            }
        }
    }
    for i in [0, nr_bits / 2, nr_bits.saturating_sub(1), nr_bits, u64::MAX] {
        let _ = c.get(i);
    }
}

/// The space map whose root holds `nr_blocks = p[0]`, `nr_allocated = p[1]`, the
/// index block `p[2]` and the overflow tree `p[3]`, checked against the counts of a
/// walk that reached only the superblock.
pub fn space_map(data: &[u8]) {
    let Some((dev, p)) = sparse_device(data) else {
        return;
    };
    let root = SmRoot {
        nr_blocks: p[0],
        nr_allocated: p[1],
        bitmap_root: p[2],
        ref_count_root: p[3],
    };
    let mut w = Walker::new(&dev, root.nr_blocks, true);
    let _ = w.reach(0, Role::Superblock, &Part::Superblock.into(), None);
    let sum = check_space_map(&mut w, &root, dev.nr_blocks());
    assert!(sum.used <= root.nr_blocks);
}
