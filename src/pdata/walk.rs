//! Checked walks over the structures of a metadata device.
//!
//! A [`Walker`] reads blocks, validates each one it reaches (location, checksum,
//! type-specific limits, key order and key ranges), records every violation in its
//! [`Report`] and, when asked to, the expected reference count of every block
//! ([`Refs`]). Hostile input cannot make it loop or recurse without bound: a node
//! reached twice within one tree is an error and the depth is capped.

use std::collections::HashSet;

use crate::io::{zeroed_block, Block, BlockDevice};
use crate::pdata::btree::{calc_max_entries, NodeHeader, INTERNAL_NODE, LEAF_NODE};
use crate::pdata::checksum::{self, BlockKind};
use crate::pdata::le64;
use crate::pdata::refs::{Refs, Role, Visit};
use crate::report::{Finding, Place, Report};

/// Deepest B-tree accepted. A tree over 2^32 keys with the smallest legal fan-out
/// (84) is 6 levels deep; anything deeper is damage (or a cycle).
pub const MAX_DEPTH: usize = 12;

/// Called for every leaf entry with `(walker, key, value, leaf block)`.
pub type LeafFn<'f, 'd> = dyn FnMut(&mut Walker<'d>, u64, &[u8], u64) + 'f;

/// Describes a B-tree to walk.
#[derive(Debug, Clone)]
pub struct TreeDesc {
    /// The structure, as findings name it, e.g. `writeset tree`.
    pub structure: Place,
    /// Size of the leaf values.
    pub value_size: u32,
    /// The block holding the root pointer (a superblock, a leaf), named in findings.
    pub from: Option<u64>,
}

/// What a tree walk could not read.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TreeWalk {
    /// Key ranges `[begin, end)` (end `None` = unbounded) lost to damage.
    pub lost: Vec<(u64, Option<u64>)>,
    /// The root was already reached from another tree (a shared subtree, counted but
    /// not walked again).
    pub shared_root: bool,
}

impl TreeWalk {
    /// True when every leaf was read.
    pub fn complete(&self) -> bool {
        self.lost.is_empty()
    }
}

struct TreeState<'a> {
    desc: &'a TreeDesc,
    visited: HashSet<u64>,
    leaf_depth: Option<usize>,
    out: TreeWalk,
}

/// Reads and validates blocks, collecting findings and reference counts.
pub struct Walker<'d> {
    dev: &'d dyn BlockDevice,
    limit: u64,
    /// Expected reference counts, when counting.
    pub refs: Option<Refs>,
    /// Everything found so far.
    pub report: Report,
    /// Whether a block may be reached from two parents (only era metadata snapshots
    /// share blocks, PERSISTENT-DATA.md §8.4). When false a second reference is damage.
    pub allow_sharing: bool,
}

impl<'d> Walker<'d> {
    /// A walker over `dev` accepting block numbers below `limit` (the smaller of the
    /// device size and the space map's `nr_blocks`). With `count_refs` every reached
    /// block's expected reference count is kept.
    pub fn new(dev: &'d dyn BlockDevice, limit: u64, count_refs: bool) -> Self {
        Walker {
            dev,
            limit: limit.min(dev.nr_blocks()),
            refs: count_refs.then(Refs::new),
            report: Report::new(),
            allow_sharing: false,
        }
    }

    /// The device being walked.
    pub fn dev(&self) -> &'d dyn BlockDevice {
        self.dev
    }

    /// Highest block number + 1 that a pointer may hold.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Records a finding.
    pub fn push(&mut self, f: Finding) {
        self.report.push(f);
    }

    /// Checks that `loc` may be referenced (§10.3): non-zero and below the limit.
    pub fn check_pointer(&mut self, loc: u64, structure: &Place, from: Option<u64>) -> bool {
        let what = if loc == 0 {
            "points at block 0 (the superblock)".to_string()
        } else if loc >= self.limit {
            format!(
                "points at block {loc}, beyond the last metadata block {}",
                self.limit.saturating_sub(1)
            )
        } else {
            return true;
        };
        self.push(Finding::error(
            "pd-pointer-range",
            from.or(Some(loc)),
            structure,
            format!("reference {what}"),
        ));
        false
    }

    /// Records a reference to `loc` in `role`. Returns whether to walk the block
    /// (`First`), or `None` when the pointer is invalid or the block already plays
    /// another role (both reported).
    pub fn reach(
        &mut self,
        loc: u64,
        role: Role,
        structure: &Place,
        from: Option<u64>,
    ) -> Option<Visit> {
        // Block 0 is a valid target only as the live superblock itself.
        let valid = if role == Role::Superblock && loc == 0 {
            loc < self.limit
        } else {
            self.check_pointer(loc, structure, from)
        };
        if !valid {
            return None;
        }
        let Some(refs) = self.refs.as_mut() else {
            return Some(Visit::First);
        };
        match refs.inc(loc, role) {
            Visit::Conflict(prev) => {
                self.push(Finding::error(
                    "pd-block-role",
                    Some(loc),
                    structure,
                    format!(
                        "block is also reached as {prev:?}; one block cannot be both{}",
                        referenced_from(from)
                    ),
                ));
                None
            }
            Visit::Again if !self.allow_sharing => {
                self.push(Finding::error(
                    "pd-shared",
                    from.or(Some(loc)),
                    structure,
                    format!("reference to block {loc}, which is already referenced elsewhere; nothing in this metadata may be shared"),
                ));
                None
            }
            v => Some(v),
        }
    }

    /// Reads `loc` and verifies location and checksum as `kind` (§2.4). `from` is
    /// the block that points at it, named in findings.
    pub fn read(
        &mut self,
        loc: u64,
        kind: BlockKind,
        structure: &Place,
        from: Option<u64>,
    ) -> Option<Box<Block>> {
        match read_verified(self.dev, loc, kind) {
            Ok(b) => Some(b),
            Err(e) => {
                self.push(block_finding(loc, kind, structure, &e, from));
                None
            }
        }
    }

    /// Walks a B-tree from `root`, calling `leaf` for every entry in key order with
    /// `(walker, key, value, leaf block)`. Damaged subtrees are reported and skipped;
    /// the key ranges they covered are returned.
    pub fn walk_btree(
        &mut self,
        root: u64,
        desc: &TreeDesc,
        leaf: &mut LeafFn<'_, 'd>,
    ) -> TreeWalk {
        let mut st = TreeState {
            desc,
            visited: HashSet::new(),
            leaf_depth: None,
            out: TreeWalk::default(),
        };
        self.node(&mut st, root, 0, 0, None, desc.from, leaf);
        st.out
    }

    #[allow(clippy::too_many_arguments)]
    fn node(
        &mut self,
        st: &mut TreeState<'_>,
        loc: u64,
        depth: usize,
        lo: u64,
        hi: Option<u64>,
        parent: Option<u64>,
        leaf: &mut LeafFn<'_, 'd>,
    ) {
        let range = match hi {
            Some(h) => format!("keys {lo}..{h}"),
            None => format!("keys {lo}.."),
        };
        let structure = st.desc.structure.sub(format_args!(" node ({range})"));
        let lose = |st: &mut TreeState<'_>| st.out.lost.push((lo, hi));
        let via = referenced_from(parent);
        if depth > MAX_DEPTH {
            self.push(Finding::error(
                "btree-depth",
                parent,
                &structure,
                format!("tree deeper than {MAX_DEPTH} levels (a cycle?)"),
            ));
            return lose(st);
        }
        if !self.check_pointer(loc, &structure, parent) {
            return lose(st);
        }
        if !st.visited.insert(loc) {
            self.push(Finding::error(
                "btree-node-twice",
                parent,
                &structure,
                format!("child pointer to block {loc}, a node already reached in this tree (cycle or shared child)"),
            ));
            return lose(st);
        }
        match self.reach(loc, Role::TreeNode(st.desc.value_size), &structure, parent) {
            None => return lose(st),
            Some(Visit::Again) => {
                // Shared with a tree walked earlier: counted once more, not walked.
                st.out.shared_root |= depth == 0;
                return;
            }
            Some(_) => {}
        }
        let Some(b) = self.read(loc, BlockKind::BtreeNode, &structure, parent) else {
            return lose(st);
        };
        let h = NodeHeader::decode(&b);
        if let Some(msg) = header_error(&h, st.desc.value_size) {
            self.push(Finding::error(
                "btree-header",
                Some(loc),
                &structure,
                msg + &via,
            ));
            return lose(st);
        }
        let expect_max = calc_max_entries(h.value_size);
        if h.max_entries != expect_max || !h.max_entries.is_multiple_of(3) {
            self.push(Finding::warning(
                "btree-max-entries",
                Some(loc),
                &structure,
                format!(
                    "max_entries {} (the kernel uses {expect_max})",
                    h.max_entries
                ),
            ));
        }
        if depth > 0 && h.nr_entries < h.max_entries / 3 {
            self.push(Finding::warning(
                "btree-underfull",
                Some(loc),
                &structure,
                format!(
                    "{} entries, fewer than a third of {}",
                    h.nr_entries, h.max_entries
                ),
            ));
        }
        let n = h.nr_entries as usize;
        for i in 0..n {
            let k = h.key(&b, i);
            if i > 0 && k <= h.key(&b, i - 1) {
                self.push(Finding::error(
                    "btree-key-order",
                    Some(loc),
                    &structure,
                    format!(
                        "key {} at entry {i} does not follow key {}",
                        k,
                        h.key(&b, i - 1)
                    ),
                ));
                return lose(st);
            }
            if k < lo || hi.is_some_and(|h| k >= h) {
                self.push(Finding::error(
                    "btree-key-range",
                    Some(loc),
                    &structure,
                    format!("key {k} at entry {i} is outside the range its parent gives{via}"),
                ));
                return lose(st);
            }
        }
        if h.is_leaf() {
            match st.leaf_depth {
                None => st.leaf_depth = Some(depth),
                Some(d) if d != depth => {
                    self.push(Finding::error(
                        "btree-leaf-depth",
                        Some(loc),
                        &structure,
                        format!("leaf at depth {depth}, other leaves at depth {d}"),
                    ));
                    return lose(st);
                }
                Some(_) => {}
            }
            for i in 0..n {
                leaf(self, h.key(&b, i), h.value(&b, i), loc);
            }
        } else {
            for i in 0..n {
                let child = le64(h.value(&b, i), 0);
                let clo = h.key(&b, i);
                let chi = if i + 1 < n {
                    Some(h.key(&b, i + 1))
                } else {
                    hi
                };
                self.node(st, child, depth + 1, clo, chi, Some(loc), leaf);
            }
        }
    }
}

/// What is wrong with a node header, if anything (§10 rules 5-7).
fn header_error(h: &NodeHeader, leaf_value_size: u32) -> Option<String> {
    if h.flags != INTERNAL_NODE && h.flags != LEAF_NODE {
        return Some(format!(
            "flags {:#x}, expected 1 (internal) or 2 (leaf)",
            h.flags
        ));
    }
    if !h.fits() {
        return Some(format!(
            "nr_entries {} / max_entries {} with value size {} do not fit in a block",
            h.nr_entries, h.max_entries, h.value_size
        ));
    }
    if h.flags == INTERNAL_NODE {
        if h.value_size != 8 {
            return Some(format!(
                "internal node with value size {}, expected 8",
                h.value_size
            ));
        }
        if h.nr_entries == 0 {
            return Some("internal node with no entries".into());
        }
    } else if h.value_size != leaf_value_size {
        return Some(format!(
            "leaf value size {}, expected {leaf_value_size}",
            h.value_size
        ));
    }
    None
}

/// Reads block `loc` and verifies location and checksum as `kind`.
pub fn read_verified(
    dev: &dyn BlockDevice,
    loc: u64,
    kind: BlockKind,
) -> Result<Box<Block>, checksum::BlockError> {
    let mut b = zeroed_block();
    dev.read(loc, &mut b)
        .map_err(|e| checksum::BlockError::Io(e.to_string()))?;
    checksum::verify(&b, loc, kind)?;
    Ok(b)
}

/// Turns a block validation failure into a finding.
pub fn block_finding(
    loc: u64,
    kind: BlockKind,
    structure: &Place,
    e: &checksum::BlockError,
    from: Option<u64>,
) -> Finding {
    let code = match e {
        checksum::BlockError::Io(_) => "pd-read",
        checksum::BlockError::BlocknrMismatch { .. } => "pd-blocknr",
        checksum::BlockError::ChecksumMismatch { .. } => "pd-checksum",
        checksum::BlockError::WrongKind { .. } => "pd-block-type",
    };
    Finding::error(
        code,
        Some(loc),
        structure,
        format!("bad {kind}: {e}{}", referenced_from(from)),
    )
}

/// ` (referenced from block N)`, or nothing.
pub fn referenced_from(from: Option<u64>) -> String {
    from.map_or(String::new(), |f| format!(" (referenced from block {f})"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::MemDevice;
    use crate::pdata::checksum::stamp;
    use crate::pdata::put_le64;

    /// An internal node at `loc` whose single child is `child`.
    fn internal(loc: u64, child: u64) -> Block {
        let mut b = [0u8; 4096];
        NodeHeader {
            flags: INTERNAL_NODE,
            blocknr: loc,
            nr_entries: 1,
            max_entries: 252,
            value_size: 8,
        }
        .encode(&mut b);
        put_le64(&mut b, 32 + 8 * 252, child);
        stamp(&mut b, loc, BlockKind::BtreeNode);
        b
    }

    fn desc() -> TreeDesc {
        TreeDesc {
            structure: Place::new(crate::report::Part::WritesetTree, "test tree"),
            value_size: 8,
            from: Some(0),
        }
    }

    #[test]
    fn a_node_pointing_at_itself_is_an_error_not_a_loop() {
        let dev = MemDevice::new(4);
        dev.write(1, &internal(1, 1)).unwrap();
        let mut w = Walker::new(&dev, 4, false);
        let walk = w.walk_btree(1, &desc(), &mut |_, _, _, _| panic!("no leaf"));
        assert!(!walk.complete());
        assert_eq!(w.report.first_error().unwrap().code, "btree-node-twice");
    }

    #[test]
    fn absurd_depth_is_an_error() {
        let n = MAX_DEPTH as u64 + 3;
        let dev = MemDevice::new(n + 2);
        for loc in 1..=n {
            dev.write(loc, &internal(loc, loc + 1)).unwrap();
        }
        let mut w = Walker::new(&dev, n + 2, true);
        let walk = w.walk_btree(1, &desc(), &mut |_, _, _, _| panic!("no leaf"));
        assert!(!walk.complete());
        assert!(w.report.findings().iter().any(|f| f.code == "btree-depth"));
    }

    #[test]
    fn pointers_out_of_range_and_to_the_superblock_are_errors() {
        let dev = MemDevice::new(4);
        dev.write(1, &internal(1, 9)).unwrap();
        dev.write(2, &internal(2, 0)).unwrap();
        for root in [1, 2] {
            let mut w = Walker::new(&dev, 4, true);
            w.walk_btree(root, &desc(), &mut |_, _, _, _| {});
            let f = w.report.first_error().unwrap();
            assert_eq!(f.code, "pd-pointer-range");
            assert_eq!(f.block, Some(root), "names the node holding the pointer");
        }
    }

    #[test]
    fn a_block_reached_twice_in_unshared_metadata_is_an_error() {
        let dev = MemDevice::new(4);
        dev.write(1, &internal(1, 3)).unwrap();
        dev.write(2, &internal(2, 3)).unwrap();
        let mut w = Walker::new(&dev, 4, true);
        w.walk_btree(1, &desc(), &mut |_, _, _, _| {});
        w.walk_btree(2, &desc(), &mut |_, _, _, _| {});
        assert!(w
            .report
            .findings()
            .iter()
            .any(|f| f.code == "pd-shared" && f.block == Some(2)));
        // With sharing allowed (a metadata snapshot) it is counted instead.
        let mut w = Walker::new(&dev, 4, true);
        w.allow_sharing = true;
        w.walk_btree(1, &desc(), &mut |_, _, _, _| {});
        w.walk_btree(2, &desc(), &mut |_, _, _, _| {});
        assert!(!w.report.findings().iter().any(|f| f.code == "pd-shared"));
        assert_eq!(w.refs.as_ref().unwrap().count(3), 2);
    }
}
