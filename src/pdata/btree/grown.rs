//! The shape of a B-tree the kernel grows by inserting keys in ascending order
//! (PERSISTENT-DATA.md §4.6), as `dm_array_resize` grows an array's index tree
//! one array block at a time: how many nodes it ends with.
//!
//! Only the right edge of such a tree changes. A full root is split beneath into
//! two halves; any other full node on the insert path (checked top-down, before
//! descending) first gives entries to its left sibling when that sibling has at
//! least 8 free entries (`rebalance_left`, `redistribute2`), and is otherwise split
//! into two halves (`split_one_into_two`: it is the last child, so never two into
//! three), which adds one entry to its parent. So each level needs only three
//! numbers: its node count and the entries of its last two nodes. Leaves end up
//! holding 248 of 252 entries, not the full nodes [`super::build::tree_nodes`]
//! counts for the trees our own restore writes.
//!
//! The counts are checked against the kernel-exact insert of [`super::ops`] in the
//! tests below, and against images the kernel made in `tests/kernel_fixtures.rs`.

use super::node::calc_max_entries;

/// Free entries a left sibling needs before the kernel moves entries into it
/// (`SPACE_THRESHOLD` of dm-btree.c).
const SPACE_THRESHOLD: u64 = 8;

#[derive(Debug, Clone, Copy)]
struct Level {
    nodes: u64,
    /// Entries of the second-to-last node (meaningful when `nodes >= 2`).
    left: u64,
    /// Entries of the last node.
    right: u64,
}

/// Nodes of the tree that `n` ascending inserts of `value_size`-byte values give,
/// starting from an empty tree (one empty leaf).
pub fn grown_tree_nodes(n: u64, value_size: u32) -> u64 {
    let leaf_max = calc_max_entries(value_size) as u64;
    let internal_max = calc_max_entries(8) as u64;
    // levels[0] holds the leaves, the last level the root.
    let mut levels = vec![Level {
        nodes: 1,
        left: 0,
        right: 0,
    }];
    for _ in 0..n {
        let mut k = levels.len();
        while k > 0 {
            k -= 1;
            let max = if k == 0 { leaf_max } else { internal_max };
            if levels[k].right < max {
                continue;
            }
            let full = levels[k].right;
            if k + 1 == levels.len() {
                // btree_split_beneath: the root keeps two children, halves below.
                levels[k] = Level {
                    nodes: 2,
                    left: full / 2,
                    right: full - full / 2,
                };
                levels.push(Level {
                    nodes: 1,
                    left: 0,
                    right: 2,
                });
            } else if levels[k].nodes >= 2 && max - levels[k].left >= SPACE_THRESHOLD {
                // rebalance_left: redistribute2 over the last two nodes.
                let total = levels[k].left + full;
                levels[k].left = total / 2;
                levels[k].right = total - total / 2;
            } else {
                // split_one_into_two; the parent gains the new node.
                levels[k].nodes += 1;
                levels[k].left = full / 2;
                levels[k].right = full - full / 2;
                levels[k + 1].right += 1;
            }
        }
        levels[0].right += 1;
    }
    levels.iter().map(|l| l.nodes).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::MemDevice;
    use crate::pdata::btree::ops::{self, RefValues};
    use crate::pdata::checksum::BlockKind;
    use crate::pdata::le64;
    use crate::pdata::tm::TransactionManager;

    fn count_nodes(tm: &mut TransactionManager<MemDevice>, b: u64) -> u64 {
        let blk = tm.read(b, BlockKind::BtreeNode).unwrap();
        let h = crate::pdata::btree::NodeHeader::decode(&blk);
        if h.is_leaf() {
            return 1;
        }
        let children: Vec<u64> = (0..h.nr_entries as usize)
            .map(|i| le64(&blk[h.value_offset(i)..], 0))
            .collect();
        1 + children
            .into_iter()
            .map(|c| count_nodes(tm, c))
            .sum::<u64>()
    }

    /// The count agrees with the kernel-exact insert for every size around the
    /// points where leaves split, rebalance and a new level appears.
    #[test]
    fn grown_counts_match_the_kernel_insert() {
        for value_size in [8u32, 12] {
            let max = calc_max_entries(value_size) as u64;
            let mut sizes: Vec<u64> = (0..=3 * max).step_by(7).collect();
            sizes.extend([max - 1, max, max + 1, 2 * max, 2 * max + 1, 5000, 64_000]);
            let top = *sizes.iter().max().unwrap_or(&0);
            let mut tm = TransactionManager::format(MemDevice::new(4096)).unwrap();
            let mut root = ops::empty(&mut tm, value_size).unwrap();
            let value = vec![0u8; value_size as usize];
            for i in 0..=top {
                if sizes.contains(&i) {
                    assert_eq!(
                        count_nodes(&mut tm, root),
                        grown_tree_nodes(i, value_size),
                        "{i} entries of {value_size} bytes"
                    );
                }
                root =
                    ops::insert(&mut tm, root, value_size, i, &value, &RefValues::Plain).unwrap();
            }
        }
    }
}
