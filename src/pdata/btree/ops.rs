//! Copy-on-write B-tree operations through the transaction manager
//! (PERSISTENT-DATA.md §4.4-§4.8): lookup, insert, remove and delete on
//! single-level trees.
//!
//! Every node on the path is shadowed (§8.2) before it changes; when a shadowed
//! node was shared, each of its children (or values) gains a reference. Insert
//! and remove follow dm-btree.c and dm-btree-remove.c step by step, so blocks
//! are shadowed and allocated in the kernel's order and nodes hold the kernel's
//! bytes, stale ones included: insert splits a full root beneath itself and
//! makes room in a full child by moving entries into a sibling with at least
//! `SPACE_THRESHOLD` free entries, else by splitting one node into two (at
//! either end of the parent) or two into three; remove rebalances the child it
//! steps into with its sibling(s) every time (`rebalance2`/`rebalance3`: merge,
//! delete the centre, or redistribute).

use crate::io::BlockDevice;
use crate::pdata::btree::build::write_node;
use crate::pdata::btree::{calc_max_entries, NodeHeader, INTERNAL_NODE, LEAF_NODE};
use crate::pdata::checksum::BlockKind;
use crate::pdata::le64;
use crate::pdata::tm::{TmError, TransactionManager};
use crate::pdata::walk::MAX_DEPTH;
use std::sync::Arc;

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

/// The header of node `b`, checked: it fits its block, is a leaf or an
/// internal node, and an internal node has entries of 8-byte values.
fn checked_header(b: u64, blk: &Block) -> Result<NodeHeader, TmError> {
    let h = NodeHeader::decode(blk);
    if !h.fits() || (h.flags != LEAF_NODE && h.flags != INTERNAL_NODE) {
        return Err(corrupt(b, "bad header"));
    }
    if !h.is_leaf() && (h.value_size != 8 || h.nr_entries == 0) {
        return Err(corrupt(
            b,
            "internal node without entries or with values not of 8 bytes",
        ));
    }
    Ok(h)
}

fn load<D: BlockDevice>(tm: &mut TransactionManager<D>, b: u64) -> Result<Node, TmError> {
    let blk = tm.read(b, BlockKind::BtreeNode)?;
    let h = checked_header(b, &blk)?;
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
        // The node is checked as `load` checks it, and searched in place.
        let blk = tm.read(b, BlockKind::BtreeNode)?;
        let h = checked_header(b, &blk)?;
        // The index of the greatest key ≤ `key` (§4.4).
        let n = h.nr_entries as usize;
        let (keys, _) = blk[NODE_HEADER_SIZE..NODE_HEADER_SIZE + 8 * n].as_chunks::<8>();
        let i = match keys.binary_search_by(|k| u64::from_le_bytes(*k).cmp(&key)) {
            Ok(i) => i,
            Err(0) => return Ok(None),
            Err(i) => i - 1,
        };
        if h.is_leaf() {
            return Ok((h.key(&blk, i) == key).then(|| h.value(&blk, i).to_vec()));
        }
        b = le64(h.value(&blk, i), 0);
    }
    Err(corrupt(root, "tree too deep"))
}

/// The entry with the lowest key (`dm_btree_find_lowest_key`): the first
/// entry [`entries`] would give, found by descending from the left without
/// reading the rest of the tree.
pub fn lowest<D: BlockDevice>(
    tm: &mut TransactionManager<D>,
    root: u64,
) -> Result<Option<(u64, Vec<u8>)>, TmError> {
    first_entry(tm, root, 0)
}

fn first_entry<D: BlockDevice>(
    tm: &mut TransactionManager<D>,
    b: u64,
    depth: usize,
) -> Result<Option<(u64, Vec<u8>)>, TmError> {
    if depth > MAX_DEPTH {
        return Err(corrupt(b, "tree too deep"));
    }
    let blk = tm.read(b, BlockKind::BtreeNode)?;
    let h = checked_header(b, &blk)?;
    for i in 0..h.nr_entries as usize {
        if h.is_leaf() {
            return Ok(Some((h.key(&blk, i), h.value(&blk, i).to_vec())));
        }
        // An empty leaf below (damage) is passed over, as `entries` would.
        if let Some(e) = first_entry(tm, le64(h.value(&blk, i), 0), depth + 1)? {
            return Ok(Some(e));
        }
    }
    Ok(None)
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

// ---- In-place node operations (dm-btree.c, dm-btree-remove.c) -------------
//
// Insert and remove work on a node's whole block as the kernel does on
// `struct btree_node`: entries move with memmove/memcpy and only the header's
// `nr_entries` says how many are live, so the bytes past it keep whatever was
// there before. Those stale bytes are part of the image, so every move below
// is the kernel's, in the kernel's order.

/// `SPACE_THRESHOLD` of `rebalance_or_split`.
const SPACE_THRESHOLD: usize = 8;

/// A node's block, modified in place.
struct Raw {
    loc: u64,
    /// Shared with the transaction manager until the first change, which
    /// copies it unless nothing else holds it (the shadow's one copy).
    b: Arc<Block>,
}

impl Raw {
    /// The block for modification.
    fn m(&mut self) -> &mut Block {
        Arc::make_mut(&mut self.b)
    }
    fn nr(&self) -> usize {
        le32(&self.b[..], NR_OFF) as usize
    }
    fn set_nr(&mut self, n: usize) {
        put_le32(&mut self.m()[..], NR_OFF, n as u32);
    }
    fn max(&self) -> usize {
        le32(&self.b[..], MAX_OFF) as usize
    }
    fn vs(&self) -> usize {
        le32(&self.b[..], VS_OFF) as usize
    }
    fn flags(&self) -> u32 {
        le32(&self.b[..], FLAGS_OFF)
    }
    fn is_leaf(&self) -> bool {
        self.flags() & LEAF_NODE != 0
    }
    fn key(&self, i: usize) -> u64 {
        le64(&self.b[..], NODE_HEADER_SIZE + 8 * i)
    }
    fn set_key(&mut self, i: usize, k: u64) {
        if self.key(i) != k {
            put_le64(&mut self.m()[..], NODE_HEADER_SIZE + 8 * i, k);
        }
    }
    fn voff(&self, i: usize) -> usize {
        NODE_HEADER_SIZE + 8 * self.max() + self.vs() * i
    }
    fn val(&self, i: usize) -> &[u8] {
        let o = self.voff(i);
        &self.b[o..o + self.vs()]
    }
    fn set_val(&mut self, i: usize, v: &[u8]) {
        let o = self.voff(i);
        if self.b[o..o + v.len()] != *v {
            self.m()[o..o + v.len()].copy_from_slice(v);
        }
    }
    fn child(&self, i: usize) -> u64 {
        le64(&self.b[..], self.voff(i))
    }
    /// A header like `from`'s with no entries (a new sibling).
    fn init_like(&mut self, from: &Raw) {
        let (flags, max, vs) = (from.flags(), from.max() as u32, from.vs() as u32);
        let b = self.m();
        put_le32(&mut b[..], FLAGS_OFF, flags);
        put_le32(&mut b[..], NR_OFF, 0);
        put_le32(&mut b[..], MAX_OFF, max);
        put_le32(&mut b[..], VS_OFF, vs);
    }
    /// `lower_bound` (`bsearch(.., want_hi = 0)`): the index of the greatest
    /// key ≤ `key`, or -1.
    fn lower_bound(&self, key: u64) -> isize {
        let (mut lo, mut hi) = (-1isize, self.nr() as isize);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            let k = self.key(mid as usize);
            if k == key {
                return mid;
            }
            if k < key {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo
    }
    /// `memmove` of `count` entries from `src` to `dest` within the node.
    fn move_within(&mut self, dest: usize, src: usize, count: usize) {
        let o = NODE_HEADER_SIZE;
        let (vs, v0) = (self.vs(), self.voff(0));
        let b = self.m();
        b.copy_within(o + 8 * src..o + 8 * (src + count), o + 8 * dest);
        b.copy_within(v0 + vs * src..v0 + vs * (src + count), v0 + vs * dest);
    }
    /// `insert_at`: `array_insert` of the key and of the value, nr + 1.
    fn insert_at(&mut self, index: usize, key: u64, value: &[u8]) -> Result<(), TmError> {
        let nr = self.nr();
        if index > nr || index >= self.max() || nr >= self.max() {
            return Err(corrupt(
                self.loc,
                "too many entries in btree node for insert",
            ));
        }
        if index < nr {
            self.move_within(index + 1, index, nr - index);
        }
        self.set_key(index, key);
        self.set_val(index, value);
        self.set_nr(nr + 1);
        Ok(())
    }
    /// `delete_at` (dm-btree-remove.c).
    fn delete_at(&mut self, index: usize) {
        let nr = self.nr();
        let to_copy = nr - (index + 1);
        if to_copy > 0 {
            self.move_within(index, index + 1, to_copy);
        }
        self.set_nr(nr - 1);
    }
}

use crate::pdata::btree::node::off::{
    BLOCKNR as BLOCKNR_OFF, FLAGS as FLAGS_OFF, MAX_ENTRIES as MAX_OFF, NR_ENTRIES as NR_OFF,
    VALUE_SIZE as VS_OFF,
};
use crate::pdata::btree::NODE_HEADER_SIZE;
use crate::pdata::{le32, put_le32, put_le64};

type Block = crate::io::Block;

/// `copy_entries` (dm-btree.c): `count` entries of `src` from `soff` to `dest`
/// at `doff` (value size of `dest`).
fn copy_entries(dest: &mut Raw, doff: usize, src: &Raw, soff: usize, count: usize) {
    let o = NODE_HEADER_SIZE;
    dest.m()[o + 8 * doff..o + 8 * (doff + count)]
        .copy_from_slice(&src.b[o + 8 * soff..o + 8 * (soff + count)]);
    let vs = dest.vs();
    let (d0, s0) = (dest.voff(doff), src.voff(soff));
    dest.m()[d0..d0 + vs * count].copy_from_slice(&src.b[s0..s0 + vs * count]);
}

/// `shift_down` (dm-btree.c): erases the first `count` entries.
fn shift_down(n: &mut Raw, count: usize) {
    let nr = n.nr();
    n.move_within(0, count, nr - count);
}

/// `shift_up` (dm-btree.c): moves the entries up `count` places.
fn shift_up(n: &mut Raw, count: usize) {
    let nr = n.nr();
    n.move_within(count, 0, nr);
}

/// `redistribute2` (dm-btree.c).
fn redistribute2(left: &mut Raw, right: &mut Raw) {
    let (nl, nr) = (left.nr(), right.nr());
    let total = nl + nr;
    let tl = total / 2;
    let tr = total - tl;
    if nl < tl {
        let delta = tl - nl;
        copy_entries(left, nl, right, 0, delta);
        shift_down(right, delta);
    } else if nl > tl {
        let delta = nl - tl;
        if nr > 0 {
            shift_up(right, delta);
        }
        copy_entries(right, 0, left, tl, delta);
    }
    left.set_nr(tl);
    right.set_nr(tr);
}

/// `redistribute3` (dm-btree.c): the centre is new and empty.
fn redistribute3(left: &mut Raw, center: &mut Raw, right: &mut Raw) {
    let (nl, nr) = (left.nr(), right.nr());
    let total = nl + nr;
    let tl = total / 3;
    let tc = (total - tl) / 2;
    let tr = total - tl - tc;
    if nl < tl {
        let left_short = tl - nl;
        copy_entries(left, nl, right, 0, left_short);
        copy_entries(center, 0, right, left_short, tc);
        shift_down(right, nr - tr);
    } else if nl < tl + tc {
        let left_to_center = nl - tl;
        copy_entries(center, 0, left, tl, left_to_center);
        copy_entries(center, left_to_center, right, 0, tc - left_to_center);
        shift_down(right, nr - tr);
    } else {
        let right_short = tr - nr;
        shift_up(right, right_short);
        copy_entries(right, 0, left, nl - right_short, right_short);
        copy_entries(center, 0, left, tl, nl - tl);
    }
    left.set_nr(tl);
    center.set_nr(tc);
    right.set_nr(tr);
}

/// Reads node `b` (no validation beyond the header: it is ours or was read
/// validated before).
fn rload<D: BlockDevice>(tm: &mut TransactionManager<D>, b: u64) -> Result<Raw, TmError> {
    let blk = tm.read(b, BlockKind::BtreeNode)?;
    let h = NodeHeader::decode(&blk);
    if !h.fits() || (h.flags != LEAF_NODE && h.flags != INTERNAL_NODE) {
        return Err(corrupt(b, "bad header"));
    }
    Ok(Raw { loc: b, b: blk })
}

/// Writes the node back (the validator's `prepare_for_write` sets `blocknr`).
fn rstore<D: BlockDevice>(tm: &mut TransactionManager<D>, n: &mut Raw) -> Result<(), TmError> {
    if le64(&n.b[..], BLOCKNR_OFF) != n.loc {
        let loc = n.loc;
        put_le64(&mut n.m()[..], BLOCKNR_OFF, loc);
    }
    tm.put(n.loc, n.b.clone())
}

/// `new_block`: a zeroed node block.
fn rnew<D: BlockDevice>(tm: &mut TransactionManager<D>) -> Result<Raw, TmError> {
    let loc = tm.new_block(BlockKind::BtreeNode)?;
    Ok(Raw {
        loc,
        b: crate::io::zeroed_shared_block(),
    })
}

/// `bn_shadow` / `shadow_child` / `init_child`: shadows `b`; when it was
/// shared, `inc_children` (internal: every child; leaf: the value type's inc).
fn rshadow<D: BlockDevice>(
    tm: &mut TransactionManager<D>,
    b: u64,
    rv: &RefValues,
) -> Result<Raw, TmError> {
    let (nb, inc) = tm.shadow(b, BlockKind::BtreeNode)?;
    let n = rload(tm, nb)?;
    if inc {
        for i in 0..n.nr() {
            if n.is_leaf() {
                rv.inc(tm, n.val(i))?;
            } else {
                tm.inc(n.child(i))?;
            }
        }
    }
    Ok(n)
}

/// `shadow_child` / `init_child`: shadows child `index` of `parent` and points
/// the parent at the shadow.
fn shadow_child<D: BlockDevice>(
    tm: &mut TransactionManager<D>,
    parent: &mut Raw,
    index: usize,
    rv: &RefValues,
) -> Result<Raw, TmError> {
    let c = rshadow(tm, parent.child(index), rv)?;
    parent.set_val(index, &c.loc.to_le_bytes());
    Ok(c)
}

/// `has_space_for_insert`.
fn has_space_for_insert(n: &Raw, key: u64) -> bool {
    if n.nr() == n.max() {
        if n.is_leaf() {
            let i = n.lower_bound(key);
            return i >= 0 && n.key(i as usize) == key;
        }
        return false;
    }
    true
}

/// `btree_split_beneath`: the root keeps its block and becomes internal over
/// two new children.
fn split_beneath<D: BlockDevice>(
    tm: &mut TransactionManager<D>,
    pn: &mut Raw,
) -> Result<(), TmError> {
    let nr = pn.nr();
    let mut ln = rnew(tm)?;
    let nl = nr / 2;
    ln.init_like(pn);
    ln.set_nr(nl);
    copy_entries(&mut ln, 0, pn, 0, nl);
    let mut rn = rnew(tm)?;
    let nrr = nr - nl;
    rn.init_like(pn);
    rn.set_nr(nrr);
    copy_entries(&mut rn, 0, pn, nl, nrr);
    put_le32(&mut pn.m()[..], FLAGS_OFF, INTERNAL_NODE);
    pn.set_nr(2);
    put_le32(&mut pn.m()[..], MAX_OFF, calc_max_entries(8));
    put_le32(&mut pn.m()[..], VS_OFF, 8);
    pn.set_key(0, ln.key(0));
    pn.set_val(0, &ln.loc.to_le_bytes());
    pn.set_key(1, rn.key(0));
    pn.set_val(1, &rn.loc.to_le_bytes());
    rstore(tm, &mut ln)?;
    rstore(tm, &mut rn)
}

/// `rebalance_or_split`: makes room in the full `cur` (child `pi` of
/// `parent`); returns the node the key now belongs in, the others written.
fn rebalance_or_split<D: BlockDevice>(
    tm: &mut TransactionManager<D>,
    parent: &mut Raw,
    mut cur: Raw,
    pi: usize,
    key: u64,
    rv: &RefValues,
) -> Result<Raw, TmError> {
    let nr_parent = parent.nr();
    let (mut left_shared, mut right_shared) = (false, false);
    if pi > 0 {
        let lb = parent.child(pi - 1);
        left_shared = tm.count(lb) > 1;
        if !left_shared {
            let l = rload(tm, lb)?;
            if l.max() - l.nr() >= SPACE_THRESHOLD {
                // rebalance_left
                let mut sib = shadow_child(tm, parent, pi - 1, rv)?;
                redistribute2(&mut sib, &mut cur);
                parent.set_key(pi, cur.key(0));
                return Ok(if key < cur.key(0) {
                    rstore(tm, &mut cur)?;
                    sib
                } else {
                    rstore(tm, &mut sib)?;
                    cur
                });
            }
        }
    }
    if pi + 1 < nr_parent {
        let rb = parent.child(pi + 1);
        right_shared = tm.count(rb) > 1;
        if !right_shared {
            let r = rload(tm, rb)?;
            if r.max() - r.nr() >= SPACE_THRESHOLD {
                // rebalance_right
                let mut sib = shadow_child(tm, parent, pi + 1, rv)?;
                redistribute2(&mut cur, &mut sib);
                parent.set_key(pi + 1, sib.key(0));
                return Ok(if key < sib.key(0) {
                    rstore(tm, &mut sib)?;
                    cur
                } else {
                    rstore(tm, &mut cur)?;
                    sib
                });
            }
        }
    }
    // Split one into two for monotonic inserts at either end, else two into
    // three.
    if left_shared || right_shared || nr_parent <= 2 || pi == 0 || pi + 1 == nr_parent {
        // split_one_into_two
        let mut right = rnew(tm)?;
        right.init_like(&cur);
        redistribute2(&mut cur, &mut right);
        parent.insert_at(pi + 1, right.key(0), &right.loc.to_le_bytes())?;
        Ok(if key < right.key(0) {
            rstore(tm, &mut right)?;
            cur
        } else {
            rstore(tm, &mut cur)?;
            right
        })
    } else {
        // split_two_into_three (pi is neither the first nor the last child)
        let middle_index = pi;
        let mut right = cur;
        let mut left = shadow_child(tm, parent, pi - 1, rv)?;
        let mut middle = rnew(tm)?;
        middle.init_like(&left);
        redistribute3(&mut left, &mut middle, &mut right);
        parent.set_key(middle_index, right.key(0));
        parent.insert_at(middle_index, middle.key(0), &middle.loc.to_le_bytes())?;
        let (mk, rk) = (middle.key(0), right.key(0));
        let mut nodes = [left, middle, right];
        let keep = if key < mk {
            0
        } else if key < rk {
            1
        } else {
            2
        };
        for (j, n) in nodes.iter_mut().enumerate() {
            if j != keep {
                rstore(tm, n)?;
            }
        }
        let [l, m, r] = nodes;
        Ok([l, m, r].into_iter().nth(keep).expect("three nodes"))
    }
}

/// Inserts or overwrites `key` (§4.6, `dm_btree_insert` on one level) in the
/// tree at `root` whose leaves hold `value_size`-byte values; returns the new
/// root. A new value brings its own reference; an overwritten, different value
/// is released through `rv`.
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
    // btree_insert_raw
    let mut parent: Option<Raw> = None;
    let mut b = root;
    let mut i: isize = -1;
    let mut new_root = None;
    for _ in 0..=MAX_DEPTH {
        let mut n = rshadow(tm, b, rv)?;
        new_root.get_or_insert(n.loc);
        if let Some(p) = parent.as_mut() {
            if i >= 0 {
                p.set_val(i as usize, &n.loc.to_le_bytes());
            }
        }
        if !has_space_for_insert(&n, key) {
            match parent.as_mut() {
                None => split_beneath(tm, &mut n)?,
                Some(p) => n = rebalance_or_split(tm, p, n, i as usize, key, rv)?,
            }
        }
        i = n.lower_bound(key);
        if n.is_leaf() {
            if let Some(mut p) = parent.take() {
                rstore(tm, &mut p)?;
            }
            // insert: a new entry after lower_bound, or an overwrite.
            let idx = if i < 0 || n.key(i as usize) != key {
                (i + 1) as usize
            } else {
                i as usize
            };
            if idx >= n.nr() || n.key(idx) != key {
                n.insert_at(idx, key, value)?;
            } else {
                if n.val(idx) != value {
                    let old = n.val(idx).to_vec();
                    rv.dec(tm, &old)?;
                }
                n.set_val(idx, value);
            }
            rstore(tm, &mut n)?;
            return Ok(new_root.expect("root shadowed"));
        }
        if i < 0 {
            // change the bounds on the lowest key
            n.set_key(0, key);
            i = 0;
        }
        b = n.child(i as usize);
        if let Some(mut p) = parent.take() {
            rstore(tm, &mut p)?;
        }
        // The child is read below: the node must be written first.
        rstore(tm, &mut n)?;
        parent = Some(n);
    }
    Err(corrupt(root, "tree too deep"))
}

/// `merge_threshold` (dm-btree-remove.c).
fn merge_threshold(n: &Raw) -> usize {
    n.max() / 3
}

/// `node_shift` (dm-btree-remove.c).
fn node_shift(n: &mut Raw, shift: isize) -> Result<(), TmError> {
    let nr = n.nr();
    if shift < 0 {
        let s = (-shift) as usize;
        if s > nr {
            return Err(corrupt(n.loc, "node shift out of bounds"));
        }
        n.move_within(0, s, nr - s);
    } else {
        let s = shift as usize;
        if nr + s > n.max() {
            return Err(corrupt(n.loc, "node shift out of bounds"));
        }
        n.move_within(s, 0, nr);
    }
    Ok(())
}

/// `node_copy` (dm-btree-remove.c): `shift` < 0 appends right's first entries
/// to left; > 0 copies left's last entries to the start of right.
fn node_copy(left: &mut Raw, right: &mut Raw, shift: isize) -> Result<(), TmError> {
    let nl = left.nr();
    if left.vs() != right.vs() {
        return Err(corrupt(left.loc, "mismatched value size"));
    }
    if shift < 0 {
        let s = (-shift) as usize;
        if nl + s > left.max() {
            return Err(corrupt(left.loc, "bad shift"));
        }
        copy_entries(left, nl, right, 0, s);
    } else {
        let s = shift as usize;
        if s > right.max() || s > nl {
            return Err(corrupt(right.loc, "bad shift"));
        }
        copy_entries(right, 0, left, nl - s, s);
    }
    Ok(())
}

/// `shift` (dm-btree-remove.c): moves `count` entries from left to right
/// (negative: from right to left).
fn shift(left: &mut Raw, right: &mut Raw, count: isize) -> Result<(), TmError> {
    let (nl, nr, max) = (left.nr() as isize, right.nr() as isize, left.max() as isize);
    if max != right.max() as isize {
        return Err(corrupt(left.loc, "node max_entries mismatch"));
    }
    if nl - count > max || nl - count < 0 || nr + count > max || nr + count < 0 {
        return Err(corrupt(left.loc, "node shift out of bounds"));
    }
    if count == 0 {
        return Ok(());
    }
    if count > 0 {
        node_shift(right, count)?;
        node_copy(left, right, count)?;
    } else {
        node_copy(left, right, count)?;
        node_shift(right, count)?;
    }
    left.set_nr((nl - count) as usize);
    right.set_nr((nr + count) as usize);
    Ok(())
}

/// `__rebalance2`: merge the two children, or even them out.
fn rebalance2_nodes<D: BlockDevice>(
    tm: &mut TransactionManager<D>,
    parent: &mut Raw,
    l: &mut Raw,
    r: &mut Raw,
    r_index: usize,
) -> Result<(), TmError> {
    let (nl, nr) = (l.nr(), r.nr());
    let threshold = 2 * (merge_threshold(l) + 1);
    if nl + nr < threshold {
        node_copy(l, r, -(nr as isize))?;
        l.set_nr(nl + nr);
        parent.delete_at(r_index);
        // Only the right block goes: its children are the left's now.
        tm.dec(r.loc)?;
    } else {
        let target_left = (nl + nr) / 2;
        shift(l, r, nl as isize - target_left as isize)?;
        parent.set_key(r_index, r.key(0));
    }
    Ok(())
}

/// `rebalance2`: children `li` and `li + 1` of `parent`.
fn rebalance2<D: BlockDevice>(
    tm: &mut TransactionManager<D>,
    parent: &mut Raw,
    li: usize,
    rv: &RefValues,
) -> Result<(), TmError> {
    let mut l = shadow_child(tm, parent, li, rv)?;
    let mut r = shadow_child(tm, parent, li + 1, rv)?;
    rebalance2_nodes(tm, parent, &mut l, &mut r, li + 1)?;
    // exit_child: both blocks are written, the released one too.
    rstore(tm, &mut l)?;
    rstore(tm, &mut r)
}

/// `delete_center_node`.
#[allow(clippy::too_many_arguments)]
fn delete_center_node<D: BlockDevice>(
    tm: &mut TransactionManager<D>,
    parent: &mut Raw,
    l: &mut Raw,
    c: &mut Raw,
    r: &mut Raw,
    c_index: usize,
    r_index: usize,
) -> Result<(), TmError> {
    let (nl, nc, nr) = (l.nr(), c.nr(), r.nr());
    let max = l.max();
    let s = (max - nl).min(nc);
    node_copy(l, c, -(s as isize))?;
    l.set_nr(nl + s);
    if s != nc {
        let s2 = nc - s;
        if nr + s2 > max {
            return Err(corrupt(r.loc, "node shift out of bounds"));
        }
        node_shift(r, s2 as isize)?;
        node_copy(c, r, s2 as isize)?;
        r.set_nr(nr + s2);
    }
    parent.set_key(r_index, r.key(0));
    parent.delete_at(c_index);
    tm.dec(c.loc)?;
    rebalance2_nodes(tm, parent, l, r, r_index - 1)
}

/// `redistribute3` (dm-btree-remove.c).
#[allow(clippy::too_many_arguments)]
fn redistribute3_remove(
    parent: &mut Raw,
    l: &mut Raw,
    c: &mut Raw,
    r: &mut Raw,
    c_index: usize,
    r_index: usize,
) -> Result<(), TmError> {
    let (mut nl, nc, mut nr) = (l.nr() as isize, c.nr() as isize, r.nr() as isize);
    let total = nl + nc + nr;
    let target_right = total / 3;
    let remainder = isize::from(target_right * 3 != total);
    let target_left = target_right + remainder;
    if nl < nr {
        let mut s = nl - target_left;
        if s < 0 && nc < -s {
            // not enough in the central node
            shift(l, c, -nc)?;
            s += nc;
            shift(l, r, s)?;
            nr += s;
        } else {
            shift(l, c, s)?;
        }
        shift(c, r, target_right - nr)?;
    } else {
        let mut s = target_right - nr;
        if s > 0 && nc < s {
            shift(c, r, nc)?;
            s -= nc;
            shift(l, r, s)?;
            nl -= s;
        } else {
            shift(c, r, s)?;
        }
        shift(l, c, nl - target_left)?;
    }
    parent.set_key(c_index, c.key(0));
    parent.set_key(r_index, r.key(0));
    Ok(())
}

/// `rebalance3`: children `li`, `li + 1` and `li + 2` of `parent`.
fn rebalance3<D: BlockDevice>(
    tm: &mut TransactionManager<D>,
    parent: &mut Raw,
    li: usize,
    rv: &RefValues,
) -> Result<(), TmError> {
    let mut l = shadow_child(tm, parent, li, rv)?;
    let mut c = shadow_child(tm, parent, li + 1, rv)?;
    let mut r = shadow_child(tm, parent, li + 2, rv)?;
    if l.max() != c.max() || c.max() != r.max() {
        return Err(corrupt(
            parent.loc,
            "bad btree metadata, max_entries differ",
        ));
    }
    let threshold = merge_threshold(&l) * 4 + 1;
    if l.nr() + c.nr() + r.nr() < threshold {
        delete_center_node(tm, parent, &mut l, &mut c, &mut r, li + 1, li + 2)?;
    } else {
        redistribute3_remove(parent, &mut l, &mut c, &mut r, li + 1, li + 2)?;
    }
    rstore(tm, &mut l)?;
    rstore(tm, &mut c)?;
    rstore(tm, &mut r)
}

/// `rebalance_children`: before stepping into the child that holds `key`,
/// the kernel always rebalances it with its sibling(s); a root with one entry
/// takes its child's whole block instead.
fn rebalance_children<D: BlockDevice>(
    tm: &mut TransactionManager<D>,
    n: &mut Raw,
    key: u64,
    rv: &RefValues,
) -> Result<(), TmError> {
    if n.nr() == 1 {
        let b = n.child(0);
        n.b = tm.read(b, BlockKind::BtreeNode)?;
        // As the kernel: the child loses its reference, its children gain none
        // (they are only ever unshared here in practice).
        tm.dec(b)?;
        return Ok(());
    }
    let i = n.lower_bound(key);
    if i < 0 {
        return Err(corrupt(n.loc, "key vanished"));
    }
    let i = i as usize;
    let has_left = i > 0;
    let has_right = i + 1 < n.nr();
    if !has_left {
        rebalance2(tm, n, i, rv)
    } else if !has_right {
        rebalance2(tm, n, i - 1, rv)
    } else {
        rebalance3(tm, n, i - 1, rv)
    }
}

/// Removes `key` (§4.7, `dm_btree_remove` on one level) and releases its value
/// through `rv`; returns the new root, or `None` when the key is absent
/// (nothing is changed then).
pub fn remove_if_present<D: BlockDevice>(
    tm: &mut TransactionManager<D>,
    root: u64,
    key: u64,
    rv: &RefValues,
) -> Result<Option<u64>, TmError> {
    if lookup(tm, root, key)?.is_none() {
        return Ok(None);
    }
    // remove_raw
    let mut parent: Option<Raw> = None;
    let mut b = root;
    let mut i = 0usize;
    let mut new_root = None;
    for _ in 0..=MAX_DEPTH {
        let mut n = rshadow(tm, b, rv)?;
        new_root.get_or_insert(n.loc);
        if let Some(mut p) = parent.take() {
            p.set_val(i, &n.loc.to_le_bytes());
            rstore(tm, &mut p)?;
        }
        if !n.is_leaf() {
            rebalance_children(tm, &mut n, key, rv)?;
        }
        if n.is_leaf() {
            // do_leaf, then the value's dec and delete_at.
            let j = n.lower_bound(key);
            if j < 0 || n.key(j as usize) != key {
                return Err(corrupt(n.loc, "key vanished"));
            }
            let j = j as usize;
            let old = n.val(j).to_vec();
            rv.dec(tm, &old)?;
            n.delete_at(j);
            rstore(tm, &mut n)?;
            return Ok(new_root);
        }
        let j = n.lower_bound(key);
        if j < 0 {
            return Err(corrupt(n.loc, "key vanished"));
        }
        i = j as usize;
        b = n.child(i);
        rstore(tm, &mut n)?;
        parent = Some(n);
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
