//! Bulk B-tree builder (PERSISTENT-DATA.md §4): key/value pairs in strictly
//! increasing key order become full leaves, then levels of internal nodes up to
//! one root. Memory holds two nodes per level, so a tree of any size streams.
//!
//! Every non-root node holds at least `floor(max_entries / 3)` entries (§4.3, §10
//! rule 11): when the last node of a level would fall short, it shares the entries
//! of its full left neighbour evenly. Nodes are written through the transaction
//! manager as new blocks (count 1 each).

use crate::io::BlockDevice;
use crate::pdata::btree::{calc_max_entries, NodeHeader, INTERNAL_NODE, LEAF_NODE};
use crate::pdata::checksum::BlockKind;
use crate::pdata::tm::{TmError, TransactionManager};

/// Entries of one node not yet written.
#[derive(Debug, Default, Clone)]
struct Node {
    keys: Vec<u64>,
    values: Vec<u8>,
}

impl Node {
    fn len(&self) -> usize {
        self.keys.len()
    }
}

#[derive(Debug)]
struct Level {
    leaf: bool,
    value_size: usize,
    max: usize,
    /// The full node before `cur`, held back so the last two can be balanced.
    prev: Option<Node>,
    cur: Node,
    /// Nodes of this level written so far.
    written: u64,
}

impl Level {
    fn new(leaf: bool, value_size: usize) -> Self {
        let vs = if leaf { value_size } else { 8 };
        Level {
            leaf,
            value_size: vs,
            max: calc_max_entries(vs as u32) as usize,
            prev: None,
            cur: Node::default(),
            written: 0,
        }
    }
}

/// The result of a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltTree {
    /// Root block.
    pub root: u64,
    /// Every node written, in the order written.
    pub nodes: Vec<u64>,
    /// Number of key/value pairs.
    pub nr_entries: u64,
}

/// Streams sorted key/value pairs into a new B-tree.
#[derive(Debug)]
pub struct BTreeBuilder {
    value_size: usize,
    levels: Vec<Level>,
    last_key: Option<u64>,
    nodes: Vec<u64>,
    nr_entries: u64,
    /// A block allocated up front for the root.
    root_loc: Option<u64>,
}

/// Why a push was refused (an internal invariant of the caller, not disk damage).
pub fn key_order_error(key: u64, last: u64) -> TmError {
    TmError::Invariant(format!(
        "B-tree keys must be pushed in strictly increasing order: {key} after {last}"
    ))
}

impl BTreeBuilder {
    /// A builder for leaves holding values of `value_size` bytes.
    pub fn new(value_size: u32) -> Self {
        BTreeBuilder {
            value_size: value_size as usize,
            levels: vec![Level::new(true, value_size as usize)],
            last_key: None,
            nodes: Vec::new(),
            nr_entries: 0,
            root_loc: None,
        }
    }

    /// Allocates the root's block now, before any other node: the root then sits
    /// where the kernel puts it when a tree starts as `dm_btree_empty` and grows
    /// by inserts in one transaction (its root keeps its first block).
    pub fn reserve_root<D: BlockDevice>(
        &mut self,
        tm: &mut TransactionManager<D>,
    ) -> Result<(), TmError> {
        if self.root_loc.is_none() {
            self.root_loc = Some(tm.new_block(BlockKind::BtreeNode)?);
        }
        Ok(())
    }

    /// Adds a pair; keys must be strictly increasing and `value` exactly
    /// `value_size` bytes.
    pub fn push<D: BlockDevice>(
        &mut self,
        tm: &mut TransactionManager<D>,
        key: u64,
        value: &[u8],
    ) -> Result<(), TmError> {
        if let Some(last) = self.last_key {
            if key <= last {
                return Err(key_order_error(key, last));
            }
        }
        if value.len() != self.value_size {
            return Err(TmError::Invariant(format!(
                "value of {} bytes for a tree of {}-byte values",
                value.len(),
                self.value_size
            )));
        }
        self.last_key = Some(key);
        self.nr_entries += 1;
        self.push_at(tm, 0, key, value)
    }

    fn push_at<D: BlockDevice>(
        &mut self,
        tm: &mut TransactionManager<D>,
        level: usize,
        key: u64,
        value: &[u8],
    ) -> Result<(), TmError> {
        let lv = &mut self.levels[level];
        if lv.cur.len() == lv.max {
            let full = std::mem::take(&mut lv.cur);
            if let Some(prev) = lv.prev.replace(full) {
                self.emit(tm, level, prev)?;
            }
        }
        let lv = &mut self.levels[level];
        lv.cur.keys.push(key);
        lv.cur.values.extend_from_slice(value);
        Ok(())
    }

    /// Writes `node` as a node of `level` and passes its first key and location up.
    fn emit<D: BlockDevice>(
        &mut self,
        tm: &mut TransactionManager<D>,
        level: usize,
        node: Node,
    ) -> Result<(), TmError> {
        let loc = self.write_node(tm, level, &node)?;
        self.levels[level].written += 1;
        if self.levels.len() == level + 1 {
            self.levels.push(Level::new(false, self.value_size));
        }
        let first = node.keys.first().copied().unwrap_or(0);
        self.push_at(tm, level + 1, first, &loc.to_le_bytes())
    }

    fn write_node<D: BlockDevice>(
        &mut self,
        tm: &mut TransactionManager<D>,
        level: usize,
        node: &Node,
    ) -> Result<u64, TmError> {
        self.write_node_at(tm, level, node, None)
    }

    fn write_node_at<D: BlockDevice>(
        &mut self,
        tm: &mut TransactionManager<D>,
        level: usize,
        node: &Node,
        at: Option<u64>,
    ) -> Result<u64, TmError> {
        let lv = &self.levels[level];
        let h = NodeHeader {
            flags: if lv.leaf { LEAF_NODE } else { INTERNAL_NODE },
            blocknr: 0,
            nr_entries: node.len() as u32,
            max_entries: lv.max as u32,
            value_size: lv.value_size as u32,
        };
        let loc = match at {
            Some(loc) => loc,
            None => tm.new_block(BlockKind::BtreeNode)?,
        };
        let b = tm.get_mut(loc)?;
        write_node(b, h, loc, &node.keys, &node.values);
        self.nodes.push(loc);
        Ok(loc)
    }

    /// Writes what is left and returns the root.
    pub fn finish<D: BlockDevice>(
        mut self,
        tm: &mut TransactionManager<D>,
    ) -> Result<BuiltTree, TmError> {
        let mut level = 0;
        loop {
            let lv = &mut self.levels[level];
            let cur = std::mem::take(&mut lv.cur);
            let prev = lv.prev.take();
            let (min, leaf_vs) = (lv.max / 3, lv.value_size);
            match prev {
                None if lv.written == 0 => {
                    // The only node of the top level: the root.
                    let at = self.root_loc.take();
                    let root = self.write_node_at(tm, level, &cur, at)?;
                    return Ok(BuiltTree {
                        root,
                        nodes: self.nodes,
                        nr_entries: self.nr_entries,
                    });
                }
                None => self.emit(tm, level, cur)?,
                Some(mut prev) => {
                    let mut cur = cur;
                    if cur.len() < min {
                        // Share the full neighbour's entries evenly (§4.3 fill).
                        let total = prev.len() + cur.len();
                        let left = total / 2;
                        let mut keys = std::mem::take(&mut prev.keys);
                        keys.append(&mut cur.keys);
                        let mut values = std::mem::take(&mut prev.values);
                        values.append(&mut cur.values);
                        cur.keys = keys.split_off(left);
                        cur.values = values.split_off(left * leaf_vs);
                        prev.keys = keys;
                        prev.values = values;
                    }
                    self.emit(tm, level, prev)?;
                    self.emit(tm, level, cur)?;
                }
            }
            level += 1;
        }
    }
}

/// Fills a node block: header, keys, values; unused slots stay as they are (zero
/// in a new block). Checksum and location are stamped at write-back.
pub fn write_node(b: &mut crate::io::Block, h: NodeHeader, loc: u64, keys: &[u64], values: &[u8]) {
    let h = NodeHeader { blocknr: loc, ..h };
    h.encode(b);
    for (i, k) in keys.iter().enumerate() {
        let o = crate::pdata::btree::NODE_HEADER_SIZE + 8 * i;
        b[o..o + 8].copy_from_slice(&k.to_le_bytes());
    }
    let vo = h.value_offset(0);
    b[vo..vo + values.len()].copy_from_slice(values);
}

/// Number of nodes the builder writes for `n` entries of `value_size`-byte values.
pub fn tree_nodes(n: u64, value_size: u32) -> u64 {
    let mut total = 0;
    let mut count = n;
    let mut max = calc_max_entries(value_size) as u64;
    loop {
        let nodes = count.div_ceil(max).max(1);
        total += nodes;
        if nodes == 1 {
            return total;
        }
        count = nodes;
        max = calc_max_entries(8) as u64;
    }
}
