//! The writeset tree (ERA.md §3.3): era → `writeset_disk` of an archived era.

use crate::era::superblock::WritesetDisk;
use crate::pdata::walk::{TreeDesc, TreeWalk, Walker};
use crate::report::Place;

/// One archived writeset as found in a tree leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchivedWriteset {
    /// The era (the tree key; eras are u32 stored in u64 keys).
    pub era: u64,
    /// Its bitset.
    pub ws: WritesetDisk,
    /// The leaf the entry was found in.
    pub leaf: u64,
}

/// Description of the writeset tree for walks.
pub fn tree_desc(structure: &Place, from: u64) -> TreeDesc {
    TreeDesc {
        structure: structure.clone(),
        value_size: WritesetDisk::SIZE as u32,
        from: Some(from),
    }
}

/// Walks the writeset tree at `root` and returns its entries in era order, with
/// the key ranges lost to damage. `sb` is the superblock holding the root.
pub fn read_tree(
    w: &mut Walker<'_>,
    root: u64,
    structure: &Place,
    sb: u64,
) -> (Vec<ArchivedWriteset>, TreeWalk) {
    let mut out = Vec::new();
    let walk = w.walk_btree(root, &tree_desc(structure, sb), &mut |_, key, v, leaf| {
        out.push(ArchivedWriteset {
            era: key,
            ws: WritesetDisk::decode(v),
            leaf,
        });
    });
    (out, walk)
}
