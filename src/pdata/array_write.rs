//! Writing dm-arrays (PERSISTENT-DATA.md §5): a streaming bulk builder, and the
//! copy-on-write `get`/`set`/`resize` of the kernel's `dm_array_*` for arrays whose
//! values hold no references (era array, bitset words).

use crate::io::BlockDevice;
use crate::pdata::array::{array_max_entries, ArrayHeader, ARRAY_HEADER_SIZE};
use crate::pdata::btree::build::{BTreeBuilder, BuiltTree};
use crate::pdata::btree::ops::{self, RefValues};
use crate::pdata::checksum::BlockKind;
use crate::pdata::tm::{TmError, TransactionManager};

/// A finished array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltArray {
    /// Root of the index tree.
    pub root: u64,
    /// Number of values.
    pub nr_entries: u64,
    /// Array blocks written.
    pub nr_blocks: u64,
}

/// Streams values into a new array: full array blocks, then the index tree.
#[derive(Debug)]
pub struct ArrayBuilder {
    value_size: u32,
    per_block: usize,
    cur: Vec<u8>,
    index: BTreeBuilder,
    nr_blocks: u64,
    nr_entries: u64,
}

impl ArrayBuilder {
    /// A builder for values of `value_size` bytes.
    pub fn new(value_size: u32) -> Self {
        let per_block = array_max_entries(value_size) as usize;
        ArrayBuilder {
            value_size,
            per_block,
            cur: Vec::with_capacity(per_block * value_size as usize),
            index: BTreeBuilder::new(8),
            nr_blocks: 0,
            nr_entries: 0,
        }
    }

    /// Values pushed so far.
    pub fn len(&self) -> u64 {
        self.nr_entries
    }

    /// True before the first push.
    pub fn is_empty(&self) -> bool {
        self.nr_entries == 0
    }

    /// Appends one value of `value_size` bytes.
    pub fn push<D: BlockDevice>(
        &mut self,
        tm: &mut TransactionManager<D>,
        value: &[u8],
    ) -> Result<(), TmError> {
        if value.len() != self.value_size as usize {
            return Err(TmError::Invariant(format!(
                "array value of {} bytes, expected {}",
                value.len(),
                self.value_size
            )));
        }
        self.cur.extend_from_slice(value);
        self.nr_entries += 1;
        if self.cur.len() == self.per_block * self.value_size as usize {
            self.flush_block(tm)?;
        }
        Ok(())
    }

    /// Appends `n` copies of `value`, as many at once as fit in the block being
    /// filled.
    pub fn push_n<D: BlockDevice>(
        &mut self,
        tm: &mut TransactionManager<D>,
        value: &[u8],
        mut n: u64,
    ) -> Result<(), TmError> {
        if n == 0 {
            return Ok(());
        }
        if value.len() != self.value_size as usize {
            return Err(TmError::Invariant(format!(
                "array value of {} bytes, expected {}",
                value.len(),
                self.value_size
            )));
        }
        let vs = value.len();
        let zero = value.iter().all(|&b| b == 0);
        while n > 0 {
            let room = self.per_block - self.cur.len() / vs;
            let k = n.min(room as u64) as usize;
            if zero {
                self.cur.resize(self.cur.len() + k * vs, 0);
            } else {
                for _ in 0..k {
                    self.cur.extend_from_slice(value);
                }
            }
            self.nr_entries += k as u64;
            n -= k as u64;
            if self.cur.len() == self.per_block * vs {
                self.flush_block(tm)?;
            }
        }
        Ok(())
    }

    fn flush_block<D: BlockDevice>(
        &mut self,
        tm: &mut TransactionManager<D>,
    ) -> Result<(), TmError> {
        // dm_array_empty + dm_array_resize: the index root comes first.
        self.index.reserve_root(tm)?;
        let loc = write_array_block(tm, self.value_size, &self.cur)?;
        self.cur.clear();
        self.index.push(tm, self.nr_blocks, &loc.to_le_bytes())?;
        self.nr_blocks += 1;
        Ok(())
    }

    /// Writes the partial last block and the index tree.
    pub fn finish<D: BlockDevice>(
        mut self,
        tm: &mut TransactionManager<D>,
    ) -> Result<BuiltArray, TmError> {
        if !self.cur.is_empty() {
            self.flush_block(tm)?;
        }
        let BuiltTree { root, .. } = self.index.finish(tm)?;
        Ok(BuiltArray {
            root,
            nr_entries: self.nr_entries,
            nr_blocks: self.nr_blocks,
        })
    }
}

/// Writes one array block holding `values` (packed) as a new block.
fn write_array_block<D: BlockDevice>(
    tm: &mut TransactionManager<D>,
    value_size: u32,
    values: &[u8],
) -> Result<u64, TmError> {
    let loc = tm.new_block(BlockKind::ArrayBlock)?;
    let b = tm.get_mut(loc)?;
    ArrayHeader {
        max_entries: array_max_entries(value_size),
        nr_entries: (values.len() / value_size as usize) as u32,
        value_size,
        blocknr: loc,
    }
    .encode(b);
    b[ARRAY_HEADER_SIZE..ARRAY_HEADER_SIZE + values.len()].copy_from_slice(values);
    Ok(loc)
}

/// The array-block number an index-tree value holds.
fn block_value(v: &[u8]) -> Result<u64, TmError> {
    if v.len() != 8 {
        return Err(TmError::Corrupt {
            block: 0,
            msg: format!("array index value of {} bytes", v.len()),
        });
    }
    Ok(crate::pdata::le64(v, 0))
}

/// Number of blocks (array blocks plus index-tree nodes) an array of `n` values
/// of `value_size` bytes takes.
pub fn array_blocks(n: u64, value_size: u32) -> u64 {
    let ab = n.div_ceil(array_max_entries(value_size) as u64);
    ab + crate::pdata::btree::build::tree_nodes(ab, 8)
}

/// A dm-array on disk whose values hold no references: its index-tree root, value
/// size and length (which the owner stores, §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Array {
    /// Root of the index tree.
    pub root: u64,
    /// Bytes per value.
    pub value_size: u32,
    /// Number of values.
    pub nr_entries: u64,
}

impl Array {
    /// An empty array (one empty index leaf, §5.3 `empty`, `dm_array_empty`).
    pub fn empty<D: BlockDevice>(
        tm: &mut TransactionManager<D>,
        value_size: u32,
    ) -> Result<Self, TmError> {
        let root = ops::empty(tm, 8)?;
        Ok(Array {
            root,
            value_size,
            nr_entries: 0,
        })
    }

    fn per_block(&self) -> u64 {
        array_max_entries(self.value_size) as u64
    }

    fn out_of_range(&self, i: u64) -> TmError {
        TmError::Invariant(format!(
            "array index {i} out of range (length {})",
            self.nr_entries
        ))
    }

    /// Value `i`.
    pub fn get<D: BlockDevice>(
        &self,
        tm: &mut TransactionManager<D>,
        i: u64,
    ) -> Result<Vec<u8>, TmError> {
        if i >= self.nr_entries {
            return Err(self.out_of_range(i));
        }
        let m = self.per_block();
        let v = ops::lookup(tm, self.root, i / m)?.ok_or_else(|| self.out_of_range(i))?;
        let loc = block_value(&v)?;
        let b = tm.read(loc, BlockKind::ArrayBlock)?;
        let o = ARRAY_HEADER_SIZE + (i % m) as usize * self.value_size as usize;
        Ok(b[o..o + self.value_size as usize].to_vec())
    }

    /// Shadows array block `bi` (§5.4) and returns its writable location.
    fn shadow_block<D: BlockDevice>(
        &mut self,
        tm: &mut TransactionManager<D>,
        bi: u64,
    ) -> Result<u64, TmError> {
        let v = ops::lookup(tm, self.root, bi)?.ok_or_else(|| TmError::Corrupt {
            block: self.root,
            msg: format!("array block {bi} is missing from the index"),
        })?;
        let loc = block_value(&v)?;
        let (new, _inc_children) = tm.shadow(loc, BlockKind::ArrayBlock)?;
        if new != loc {
            // The shadow dropped the old block's reference, but the index tree
            // still points at it: take one back before the overwrite releases it
            // (as the kernel's shadow_ablock does). If the index leaf is shared, its
            // copy adds a reference first, and the old block keeps the snapshot's.
            tm.inc(loc)?;
            self.root = ops::insert(tm, self.root, 8, bi, &new.to_le_bytes(), &RefValues::Blocks)?;
        }
        Ok(new)
    }

    /// Sets value `i` (copy-on-write).
    pub fn set<D: BlockDevice>(
        &mut self,
        tm: &mut TransactionManager<D>,
        i: u64,
        value: &[u8],
    ) -> Result<(), TmError> {
        if i >= self.nr_entries || value.len() != self.value_size as usize {
            return Err(self.out_of_range(i));
        }
        let m = self.per_block();
        let loc = self.shadow_block(tm, i / m)?;
        let b = tm.get_mut(loc)?;
        let o = ARRAY_HEADER_SIZE + (i % m) as usize * self.value_size as usize;
        b[o..o + value.len()].copy_from_slice(value);
        Ok(())
    }

    /// Resizes to `n` values, new ones set to `fill` (§5.3 `resize`).
    pub fn resize<D: BlockDevice>(
        &mut self,
        tm: &mut TransactionManager<D>,
        n: u64,
        fill: &[u8],
    ) -> Result<(), TmError> {
        let m = self.per_block();
        let vs = self.value_size as usize;
        let old_blocks = self.nr_entries.div_ceil(m);
        let new_blocks = n.div_ceil(m);
        if n < self.nr_entries {
            for bi in (new_blocks..old_blocks).rev() {
                self.root = ops::remove(tm, self.root, 8, bi, &RefValues::Blocks)?;
            }
            if !n.is_multiple_of(m) {
                let loc = self.shadow_block(tm, new_blocks - 1)?;
                let b = tm.get_mut(loc)?;
                let keep = (n % m) as usize;
                b[ARRAY_HEADER_SIZE + keep * vs..].fill(0);
                crate::pdata::put_le32(b, 8, keep as u32);
            }
        } else if n > self.nr_entries {
            // Top up the old tail block, then append new blocks.
            if !self.nr_entries.is_multiple_of(m) {
                let loc = self.shadow_block(tm, old_blocks - 1)?;
                let b = tm.get_mut(loc)?;
                let have = (self.nr_entries % m) as usize;
                let want = (n.min(old_blocks * m) - (old_blocks - 1) * m) as usize;
                for j in have..want {
                    b[ARRAY_HEADER_SIZE + j * vs..ARRAY_HEADER_SIZE + (j + 1) * vs]
                        .copy_from_slice(fill);
                }
                crate::pdata::put_le32(b, 8, want as u32);
            }
            for bi in old_blocks..new_blocks {
                let cnt = (n - bi * m).min(m) as usize;
                let vals: Vec<u8> = fill.iter().copied().cycle().take(cnt * vs).collect();
                let loc = write_array_block(tm, self.value_size, &vals)?;
                self.root =
                    ops::insert(tm, self.root, 8, bi, &loc.to_le_bytes(), &RefValues::Blocks)?;
            }
        }
        self.nr_entries = n;
        Ok(())
    }

    /// Deletes the array (§5.3 `del`): every block whose count drops to zero is
    /// freed.
    pub fn delete<D: BlockDevice>(self, tm: &mut TransactionManager<D>) -> Result<(), TmError> {
        ops::delete(tm, self.root, 8, &RefValues::Blocks)
    }
}
