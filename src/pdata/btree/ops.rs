//! Copy-on-write B-tree operations through the transaction manager
//! (PERSISTENT-DATA.md §4.4-§4.8): lookup, insert, remove and delete on
//! single-level trees.
//!
//! Every node on the path is shadowed (§8.2) before it changes; when a shadowed
//! node was shared, each of its children (or values) gains a reference. Insert
//! splits full nodes on the way down (`split_beneath` at the root, one-into-two
//! elsewhere); remove rebalances the child it is about to enter with a sibling
//! (merge or redistribute), so every non-root node keeps at least
//! `floor(max_entries / 3)` entries. Block placement differs from the kernel's
//! (it also redistributes into siblings and splits two into three); the logical
//! content, the reference counts and the fill rules are the same.

use crate::io::BlockDevice;
use crate::pdata::btree::build::write_node;
use crate::pdata::btree::{calc_max_entries, NodeHeader, INTERNAL_NODE, LEAF_NODE};
use crate::pdata::checksum::BlockKind;
use crate::pdata::le64;
use crate::pdata::tm::{TmError, TransactionManager};
use crate::pdata::walk::MAX_DEPTH;

/// What the leaf values of a tree refer to, for reference counting (§4.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefValues {
    /// Plain values (the ref-count tree, bitset words).
    Plain,
    /// A le64 block number of an array block without references in its values
    /// (array index trees of the era array and of bitsets).
    Blocks,
    /// A `writeset_disk` (le32 nr_bits, le64 bitset root): the value holds a
    /// reference to the bitset (the era writeset tree).
    BitsetRoots,
}

impl RefValues {
    /// Adds the references `v` holds.
    pub fn inc<D: BlockDevice>(
        &self,
        tm: &mut TransactionManager<D>,
        v: &[u8],
    ) -> Result<(), TmError> {
        match self {
            RefValues::Plain => Ok(()),
            RefValues::Blocks => {
                value_len(v, 8)?;
                tm.inc(le64(v, 0))
            }
            RefValues::BitsetRoots => {
                value_len(v, 12)?;
                match le64(v, 4) {
                    0 => Ok(()),
                    r => tm.inc(r),
                }
            }
        }
    }

    /// Drops the references `v` holds (deleting what nothing else references).
    pub fn dec<D: BlockDevice>(
        &self,
        tm: &mut TransactionManager<D>,
        v: &[u8],
    ) -> Result<(), TmError> {
        match self {
            RefValues::Plain => Ok(()),
            RefValues::Blocks => {
                value_len(v, 8)?;
                tm.dec(le64(v, 0)).map(|_| ())
            }
            RefValues::BitsetRoots => {
                value_len(v, 12)?;
                match le64(v, 4) {
                    0 => Ok(()),
                    r => delete(tm, r, 8, &RefValues::Blocks),
                }
            }
        }
    }
}

/// A node decoded for modification.
#[derive(Debug, Clone)]
struct Node {
    leaf: bool,
    max: usize,
    vs: usize,
    keys: Vec<u64>,
    vals: Vec<u8>,
}

impl Node {
    fn len(&self) -> usize {
        self.keys.len()
    }

    fn val(&self, i: usize) -> &[u8] {
        &self.vals[i * self.vs..(i + 1) * self.vs]
    }

    fn child(&self, i: usize) -> u64 {
        le64(self.val(i), 0)
    }

    fn set_val(&mut self, i: usize, v: &[u8]) {
        self.vals[i * self.vs..(i + 1) * self.vs].copy_from_slice(v);
    }

    fn insert_at(&mut self, i: usize, k: u64, v: &[u8]) {
        self.keys.insert(i, k);
        let o = i * self.vs;
        self.vals.splice(o..o, v.iter().copied());
    }

    fn remove_at(&mut self, i: usize) {
        self.keys.remove(i);
        let o = i * self.vs;
        self.vals.drain(o..o + self.vs);
    }

    /// Splits off entries `[at..]` into a new node of the same shape.
    fn split_off(&mut self, at: usize) -> Node {
        Node {
            leaf: self.leaf,
            max: self.max,
            vs: self.vs,
            keys: self.keys.split_off(at),
            vals: self.vals.split_off(at * self.vs),
        }
    }

    /// Index of the greatest key ≤ `key` (§4.4).
    fn lower_bound(&self, key: u64) -> Option<usize> {
        match self.keys.binary_search(&key) {
            Ok(i) => Some(i),
            Err(0) => None,
            Err(i) => Some(i - 1),
        }
    }

    fn header(&self) -> NodeHeader {
        NodeHeader {
            flags: if self.leaf { LEAF_NODE } else { INTERNAL_NODE },
            blocknr: 0,
            nr_entries: self.len() as u32,
            max_entries: self.max as u32,
            value_size: self.vs as u32,
        }
    }
}

fn corrupt(b: u64, what: &str) -> TmError {
    TmError::Corrupt {
        block: b,
        msg: format!("B-tree node: {what}"),
    }
}

/// `v` must hold at least `n` bytes (a value of the wrong size is damage).
fn value_len(v: &[u8], n: usize) -> Result<(), TmError> {
    if v.len() < n {
        return Err(TmError::Corrupt {
            block: 0,
            msg: format!("a B-tree value of {} bytes where {n} are needed", v.len()),
        });
    }
    Ok(())
}

fn load<D: BlockDevice>(tm: &mut TransactionManager<D>, b: u64) -> Result<Node, TmError> {
    let blk = tm.read(b, BlockKind::BtreeNode)?;
    let h = NodeHeader::decode(&blk);
    if !h.fits() || (h.flags != LEAF_NODE && h.flags != INTERNAL_NODE) {
        return Err(corrupt(b, "bad header"));
    }
    if !h.is_leaf() && (h.value_size != 8 || h.nr_entries == 0) {
        return Err(corrupt(
            b,
            "internal node without entries or with values not of 8 bytes",
        ));
    }
    let n = h.nr_entries as usize;
    let vo = h.value_offset(0);
    Ok(Node {
        leaf: h.is_leaf(),
        max: h.max_entries as usize,
        vs: h.value_size as usize,
        keys: (0..n).map(|i| h.key(&blk, i)).collect(),
        vals: blk[vo..vo + n * h.value_size as usize].to_vec(),
    })
}

fn store<D: BlockDevice>(tm: &mut TransactionManager<D>, b: u64, n: &Node) -> Result<(), TmError> {
    let blk = tm.get_mut(b)?;
    blk.fill(0);
    write_node(blk, n.header(), b, &n.keys, &n.vals);
    Ok(())
}

/// Adds a reference to every child (internal) or value (leaf) of `n`: it became
/// a new parent of them when a shared node was copied (§8.2 step 4).
fn inc_children<D: BlockDevice>(
    tm: &mut TransactionManager<D>,
    n: &Node,
    rv: &RefValues,
) -> Result<(), TmError> {
    for i in 0..n.len() {
        if n.leaf {
            rv.inc(tm, n.val(i))?;
        } else {
            tm.inc(n.child(i))?;
        }
    }
    Ok(())
}

/// Shadows `b` and returns its writable location and contents.
fn shadow<D: BlockDevice>(
    tm: &mut TransactionManager<D>,
    b: u64,
    rv: &RefValues,
) -> Result<(u64, Node), TmError> {
    let (nb, inc) = tm.shadow(b, BlockKind::BtreeNode)?;
    let n = load(tm, nb)?;
    if inc {
        inc_children(tm, &n, rv)?;
    }
    Ok((nb, n))
}

/// A new, empty tree (`dm_btree_empty`): one leaf with no entries, capacity for
/// `value_size`-byte values. Returns its root.
pub fn empty<D: BlockDevice>(
    tm: &mut TransactionManager<D>,
    value_size: u32,
) -> Result<u64, TmError> {
    let root = tm.new_block(BlockKind::BtreeNode)?;
    let n = Node {
        leaf: true,
        max: calc_max_entries(value_size) as usize,
        vs: value_size as usize,
        keys: Vec::new(),
        vals: Vec::new(),
    };
    store(tm, root, &n)?;
    Ok(root)
}

/// Looks `key` up (§4.5).
pub fn lookup<D: BlockDevice>(
    tm: &mut TransactionManager<D>,
    root: u64,
    key: u64,
) -> Result<Option<Vec<u8>>, TmError> {
    let mut b = root;
    for _ in 0..=MAX_DEPTH {
        let n = load(tm, b)?;
        let Some(i) = n.lower_bound(key) else {
            return Ok(None);
        };
        if n.leaf {
            return Ok((n.keys[i] == key).then(|| n.val(i).to_vec()));
        }
        b = n.child(i);
    }
    Err(corrupt(root, "tree too deep"))
}

/// Every key/value pair in key order.
pub fn entries<D: BlockDevice>(
    tm: &mut TransactionManager<D>,
    root: u64,
) -> Result<Vec<(u64, Vec<u8>)>, TmError> {
    let mut out = Vec::new();
    collect(tm, root, 0, &mut out)?;
    Ok(out)
}

fn collect<D: BlockDevice>(
    tm: &mut TransactionManager<D>,
    b: u64,
    depth: usize,
    out: &mut Vec<(u64, Vec<u8>)>,
) -> Result<(), TmError> {
    if depth > MAX_DEPTH {
        return Err(corrupt(b, "tree too deep"));
    }
    let n = load(tm, b)?;
    for i in 0..n.len() {
        if n.leaf {
            out.push((n.keys[i], n.val(i).to_vec()));
        } else {
            collect(tm, n.child(i), depth + 1, out)?;
        }
    }
    Ok(())
}

/// Inserts or overwrites `key` (§4.6) in the tree at `root` whose leaves hold
/// `value_size`-byte values; returns the new root. A new value brings its own
/// reference; an overwritten, different value is released through `rv`.
pub fn insert<D: BlockDevice>(
    tm: &mut TransactionManager<D>,
    root: u64,
    value_size: u32,
    key: u64,
    value: &[u8],
    rv: &RefValues,
) -> Result<u64, TmError> {
    if value.len() != value_size as usize {
        return Err(TmError::Invariant("value size mismatch".into()));
    }
    let (root, mut n) = shadow(tm, root, rv)?;
    if n.len() >= n.max && !(n.leaf && n.keys.binary_search(&key).is_ok()) {
        // split_beneath: the root keeps its block and becomes internal.
        let half = n.len() / 2;
        let right = n.split_off(half);
        let l = tm.new_block(BlockKind::BtreeNode)?;
        store(tm, l, &n)?;
        let r = tm.new_block(BlockKind::BtreeNode)?;
        store(tm, r, &right)?;
        let mut vals = l.to_le_bytes().to_vec();
        vals.extend_from_slice(&r.to_le_bytes());
        n = Node {
            leaf: false,
            max: calc_max_entries(8) as usize,
            vs: 8,
            keys: vec![n.keys[0], right.keys[0]],
            vals,
        };
        store(tm, root, &n)?;
    }
    let mut cur = root;
    for _ in 0..=MAX_DEPTH {
        if n.leaf {
            match n.keys.binary_search(&key) {
                Ok(i) => {
                    if n.val(i) != value {
                        let old = n.val(i).to_vec();
                        rv.dec(tm, &old)?;
                        n.set_val(i, value);
                    }
                }
                Err(i) => n.insert_at(i, key, value),
            }
            store(tm, cur, &n)?;
            return Ok(root);
        }
        let i = match n.lower_bound(key) {
            Some(i) => i,
            None => {
                n.keys[0] = key;
                0
            }
        };
        let old_child = n.child(i);
        let (child, mut c) = shadow(tm, old_child, rv)?;
        n.set_val(i, &child.to_le_bytes());
        let mut next = (child, c.clone());
        if c.len() >= c.max && !(c.leaf && c.keys.binary_search(&key).is_ok()) {
            // split_one_into_two; the parent has room (it was split on the way in).
            let right = c.split_off(c.len() / 2);
            let r = tm.new_block(BlockKind::BtreeNode)?;
            store(tm, r, &right)?;
            store(tm, child, &c)?;
            n.insert_at(i + 1, right.keys[0], &r.to_le_bytes());
            next = if key >= right.keys[0] {
                (r, right)
            } else {
                (child, c)
            };
        }
        store(tm, cur, &n)?;
        (cur, n) = next;
    }
    Err(corrupt(root, "tree too deep"))
}

/// Removes `key` (§4.7) and releases its value through `rv`; returns the new root,
/// or `None` when the key is absent (nothing is changed then).
pub fn remove_if_present<D: BlockDevice>(
    tm: &mut TransactionManager<D>,
    root: u64,
    key: u64,
    rv: &RefValues,
) -> Result<Option<u64>, TmError> {
    if lookup(tm, root, key)?.is_none() {
        return Ok(None);
    }
    let (root, mut n) = shadow(tm, root, rv)?;
    let mut cur = root;
    for _ in 0..=MAX_DEPTH {
        if n.leaf {
            let i = n
                .keys
                .binary_search(&key)
                .map_err(|_| corrupt(cur, "key vanished"))?;
            let old = n.val(i).to_vec();
            n.remove_at(i);
            store(tm, cur, &n)?;
            rv.dec(tm, &old)?;
            return Ok(Some(root));
        }
        if n.len() == 1 {
            // Only the root can have one entry: pull the child up (§4.7).
            let child = n.child(0);
            let c = load(tm, child)?;
            if tm.count(child) > 1 {
                inc_children(tm, &c, rv)?;
            }
            tm.dec(child)?;
            n = c;
            store(tm, cur, &n)?;
            continue;
        }
        let i = n
            .lower_bound(key)
            .ok_or_else(|| corrupt(cur, "key vanished"))?;
        if n.len() < 2 {
            return Err(corrupt(cur, "internal node below the root with one entry"));
        }
        let (child, c) = shadow(tm, n.child(i), rv)?;
        n.set_val(i, &child.to_le_bytes());
        let threshold = c.max / 3;
        if c.len() > threshold {
            store(tm, cur, &n)?;
            (cur, n) = (child, c);
            continue;
        }
        // Rebalance with a sibling so the child can lose an entry.
        let (li, ri) = if i + 1 < n.len() {
            (i, i + 1)
        } else {
            (i - 1, i)
        };
        let (lb, mut l, rb, mut r) = if li == i {
            let (rb, r) = shadow(tm, n.child(ri), rv)?;
            (child, c, rb, r)
        } else {
            let (lb, l) = shadow(tm, n.child(li), rv)?;
            (lb, l, child, c)
        };
        n.set_val(li, &lb.to_le_bytes());
        n.set_val(ri, &rb.to_le_bytes());
        let total = l.len() + r.len();
        if total < 2 * (threshold + 1) && total <= l.max {
            l.keys.append(&mut r.keys);
            l.vals.append(&mut r.vals);
            n.remove_at(ri);
            store(tm, lb, &l)?;
            // r's children now belong to l: only r's block is released.
            tm.dec(rb)?;
            store(tm, cur, &n)?;
            (cur, n) = (lb, l);
        } else {
            let mut all_k = std::mem::take(&mut l.keys);
            all_k.append(&mut r.keys);
            let mut all_v = std::mem::take(&mut l.vals);
            all_v.append(&mut r.vals);
            let left = total / 2;
            r.keys = all_k.split_off(left);
            r.vals = all_v.split_off(left * l.vs);
            l.keys = all_k;
            l.vals = all_v;
            n.keys[ri] = r.keys[0];
            store(tm, lb, &l)?;
            store(tm, rb, &r)?;
            store(tm, cur, &n)?;
            (cur, n) = if key >= r.keys[0] { (rb, r) } else { (lb, l) };
        }
    }
    Err(corrupt(root, "tree too deep"))
}

/// Removes `key`, which must be present; returns the new root.
pub fn remove<D: BlockDevice>(
    tm: &mut TransactionManager<D>,
    root: u64,
    _value_size: u32,
    key: u64,
    rv: &RefValues,
) -> Result<u64, TmError> {
    remove_if_present(tm, root, key, rv)?
        .ok_or_else(|| TmError::Invariant(format!("key {key} is not in the tree")))
}

/// Deletes a whole tree (§4.8): a shared node only loses a reference; an unshared
/// one releases its children or values, then itself.
pub fn delete<D: BlockDevice>(
    tm: &mut TransactionManager<D>,
    root: u64,
    _value_size: u32,
    rv: &RefValues,
) -> Result<(), TmError> {
    del(tm, root, 0, rv)
}

fn del<D: BlockDevice>(
    tm: &mut TransactionManager<D>,
    b: u64,
    depth: usize,
    rv: &RefValues,
) -> Result<(), TmError> {
    if depth > MAX_DEPTH {
        return Err(corrupt(b, "tree too deep"));
    }
    if tm.count(b) > 1 {
        tm.dec(b)?;
        return Ok(());
    }
    let n = load(tm, b)?;
    for i in 0..n.len() {
        if n.leaf {
            rv.dec(tm, n.val(i))?;
        } else {
            del(tm, n.child(i), depth + 1, rv)?;
        }
    }
    tm.dec(b)?;
    Ok(())
}
