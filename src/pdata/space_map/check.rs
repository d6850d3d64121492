//! Space-map checks (PERSISTENT-DATA.md §10 rules 14-19): the index and bitmaps are
//! valid, the overflow tree agrees with the bitmaps, and every on-disk reference count
//! equals the count expected from walking the metadata.

use std::collections::BTreeMap;

use super::{bitmap_entry, IndexEntry, SmRoot, ENTRIES_PER_BITMAP, MAX_METADATA_BLOCKS};
use crate::pdata::checksum::BlockKind;
use crate::pdata::le32;
use crate::pdata::refs::{Role, Visit};
use crate::pdata::walk::{TreeDesc, Walker};
use crate::report::{Finding, Part, Place};

/// How many individual count mismatches of one kind are listed before summarising.
const MAX_LISTED: usize = 20;

/// What the space map says, for summaries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SmSummary {
    /// Blocks tracked.
    pub nr_blocks: u64,
    /// Blocks with a non-zero on-disk count (as counted in the bitmaps).
    pub used: u64,
}

struct Mismatches {
    code: &'static str,
    what: &'static str,
    error: bool,
    blocks: Vec<(u64, u32, u32)>,
}

/// Checks the space map at `root` against the expected counts in `w.refs` (which
/// must already hold every reference from the target's structures). `dev_blocks` is
/// the size of the metadata device.
pub fn check_space_map(w: &mut Walker<'_>, root: &SmRoot, dev_blocks: u64) -> SmSummary {
    const S: Part = Part::SpaceMap;
    let index_place = Place::new(S, "space-map index block");
    let mut summary = SmSummary {
        nr_blocks: root.nr_blocks,
        used: 0,
    };
    if root.nr_blocks > dev_blocks.min(MAX_METADATA_BLOCKS) || root.nr_blocks == 0 {
        w.push(Finding::error(
            "sm-nr-blocks",
            Some(0),
            S,
            format!(
                "space map tracks {} blocks; the device has {dev_blocks} and the limit is {MAX_METADATA_BLOCKS}",
                root.nr_blocks
            ),
        ));
        if root.nr_blocks == 0 || root.nr_blocks > MAX_METADATA_BLOCKS {
            return summary;
        }
    }
    let nr_blocks = root.nr_blocks;
    let nr_bitmaps = root.nr_bitmaps() as usize;

    // The index block.
    let index = match w.reach(root.bitmap_root, Role::SmIndex, &index_place, Some(0)) {
        Some(Visit::First) => w.read(root.bitmap_root, BlockKind::SmIndex, &index_place, Some(0)),
        _ => None,
    };
    // On-disk counts, one byte per block (3 = look in the overflow tree); `None`
    // where the bitmap could not be read.
    let mut counts: Vec<Option<u8>> = vec![None; nr_blocks as usize];
    if let Some(index) = &index {
        for k in 0..nr_bitmaps {
            let e = IndexEntry::decode(index, k);
            let structure = Place::new(S, format!("space-map bitmap {k}"));
            let reached = w.reach(
                e.blocknr,
                Role::SmBitmap,
                &structure,
                Some(root.bitmap_root),
            );
            if reached != Some(Visit::First) {
                continue;
            }
            let Some(bm) = w.read(
                e.blocknr,
                BlockKind::SmBitmap,
                &structure,
                Some(root.bitmap_root),
            ) else {
                continue;
            };
            let base = k as u64 * ENTRIES_PER_BITMAP;
            let mut free = 0u32;
            let mut free_below_end = 0u32;
            let mut first_free: Option<u32> = None;
            let mut past_end = 0u64;
            for j in 0..ENTRIES_PER_BITMAP as usize {
                let v = bitmap_entry(&bm, j);
                let b = base + j as u64;
                if v == 0 {
                    free += 1;
                    free_below_end += (b < nr_blocks) as u32;
                    first_free.get_or_insert(j as u32);
                }
                if b < nr_blocks {
                    counts[b as usize] = Some(v);
                } else if v != 0 {
                    past_end += 1;
                }
            }
            if past_end > 0 {
                w.push(Finding::error(
                    "sm-bitmap-past-end",
                    Some(e.blocknr),
                    &structure,
                    format!("{past_end} entries for blocks at or past {nr_blocks} are not zero"),
                ));
            }
            // The kernel counts all 16320 slots; thin-provisioning-tools' writers
            // count only the slots below nr_blocks. Both are sound hints.
            if e.nr_free != free && e.nr_free != free_below_end {
                w.push(Finding::warning(
                    "sm-index-nr-free",
                    Some(root.bitmap_root),
                    &index_place,
                    format!(
                        "entry {k}: nr_free {}, the bitmap has {free} free entries",
                        e.nr_free
                    ),
                ));
            }
            let nfb_ok = e.none_free_before as u64 <= ENTRIES_PER_BITMAP
                && first_free.is_none_or(|f| e.none_free_before <= f);
            if !nfb_ok {
                w.push(Finding::warning(
                    "sm-index-none-free-before",
                    Some(root.bitmap_root),
                    &index_place,
                    format!(
                        "entry {k}: none_free_before {}, but entry {} is free",
                        e.none_free_before,
                        first_free.unwrap_or(0)
                    ),
                ));
            }
        }
    }

    // The overflow tree: keys are exactly the blocks whose bitmap entry is 3.
    let desc = TreeDesc {
        structure: Place::new(S, "space-map ref-count tree"),
        value_size: 4,
        from: Some(0),
    };
    let mut overflow: BTreeMap<u64, (u32, u64)> = BTreeMap::new();
    let walk = w.walk_btree(root.ref_count_root, &desc, &mut |_, key, v, leaf| {
        overflow.insert(key, (le32(v, 0), leaf));
    });
    let overflow_complete = walk.complete();
    for (&b, &(n, leaf)) in &overflow {
        let bitmap = counts.get(b as usize).copied().flatten();
        if n < 3 || (bitmap.is_some() && bitmap != Some(3)) || b >= nr_blocks {
            w.push(Finding::error(
                "sm-overflow-entry",
                Some(leaf),
                Place::new(S, "space-map ref-count tree"),
                format!(
                    "entry for block {b} with count {n}; the bitmap entry is {}",
                    bitmap.map_or("unreadable".to_string(), |v| v.to_string())
                ),
            ));
        }
    }

    // Compare on-disk counts with the expected ones.
    let refs = w.refs.take().unwrap_or_default();
    let mut under = Mismatches {
        code: "sm-under-count",
        what: "under-counted (the block could be reallocated while live)",
        error: true,
        blocks: vec![],
    };
    let mut over = Mismatches {
        code: "sm-over-count",
        what: "over-counted",
        error: true,
        blocks: vec![],
    };
    let mut leaks = Mismatches {
        code: "sm-leak",
        what: "leaked (counted but unreferenced)",
        error: false,
        blocks: vec![],
    };
    let mut allocated = 0u64;
    let mut missing_overflow = Vec::new();
    for (b, c) in counts.iter().enumerate() {
        let b = b as u64;
        let Some(v) = *c else { continue };
        if v != 0 {
            allocated += 1;
        }
        let disk = if v == 3 {
            match overflow.get(&b) {
                Some(&(n, _)) => n,
                None => {
                    if overflow_complete {
                        missing_overflow.push(b);
                    }
                    continue;
                }
            }
        } else {
            v as u32
        };
        let expected = refs.count(b);
        if disk < expected {
            under.blocks.push((b, disk, expected));
        } else if disk > expected && expected > 0 {
            over.blocks.push((b, disk, expected));
        } else if disk > 0 && expected == 0 {
            if disk >= 2 {
                over.blocks.push((b, disk, expected));
            } else {
                leaks.blocks.push((b, disk, expected));
            }
        }
    }
    w.refs = Some(refs);
    if let Some(&b) = missing_overflow.first() {
        w.push(Finding::error(
            "sm-overflow-missing",
            Some(b),
            S,
            format!(
                "{} blocks have bitmap entry 3 but no entry in the ref-count tree",
                missing_overflow.len()
            ),
        ));
    }
    for m in [under, over, leaks] {
        for &(b, disk, expected) in m.blocks.iter().take(MAX_LISTED) {
            let msg = format!("reference count {disk} on disk, {expected} references found");
            w.push(if m.error {
                Finding::error(m.code, Some(b), S, msg)
            } else {
                Finding::warning(m.code, Some(b), S, msg)
            });
        }
        if m.blocks.len() > MAX_LISTED || (!m.blocks.is_empty() && !m.error) {
            let msg = format!("{} blocks {} in total", m.blocks.len(), m.what);
            w.push(if m.error {
                Finding::error(m.code, None, S, msg)
            } else {
                Finding::warning(m.code, None, S, msg)
            });
        }
    }
    let all_read = counts.iter().all(|c| c.is_some());
    if all_read && allocated != root.nr_allocated {
        w.push(Finding::error(
            "sm-nr-allocated",
            Some(0),
            S,
            format!(
                "nr_allocated {} in the superblock, {allocated} blocks have a non-zero count",
                root.nr_allocated
            ),
        ));
    }
    summary.used = allocated;
    summary
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{BlockDevice, MemDevice, BLOCK_SIZE};
    use crate::pdata::checksum::stamp;
    use crate::pdata::space_map::set_bitmap_entry;

    #[test]
    fn bitmap_entries_past_the_end_are_damage_not_a_panic() {
        // Found by fuzzing: every entry of the bitmap in use, those past nr_blocks
        // too, made the free count below the end negative.
        let dev = MemDevice::new(16);
        let mut index = [0u8; BLOCK_SIZE];
        IndexEntry {
            blocknr: 2,
            nr_free: 0,
            none_free_before: 0,
        }
        .encode(&mut index, 0);
        stamp(&mut index, 1, BlockKind::SmIndex);
        dev.write(1, &index).unwrap();
        let mut bitmap = [0u8; BLOCK_SIZE];
        for j in 0..ENTRIES_PER_BITMAP as usize {
            set_bitmap_entry(&mut bitmap, j, 1);
        }
        stamp(&mut bitmap, 2, BlockKind::SmBitmap);
        dev.write(2, &bitmap).unwrap();
        let root = SmRoot {
            nr_blocks: 10,
            nr_allocated: 10,
            bitmap_root: 1,
            ref_count_root: 0,
        };
        let mut w = Walker::new(&dev, 10, true);
        let sum = check_space_map(&mut w, &root, 16);
        assert_eq!(sum.used, 10);
        let codes: Vec<&str> = w.report.findings().iter().map(|f| f.code).collect();
        assert!(codes.contains(&"sm-bitmap-past-end"), "{codes:?}");
        assert!(!codes.contains(&"sm-index-nr-free"), "{codes:?}");
    }
}
