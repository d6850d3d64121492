//! dm-bitset (PERSISTENT-DATA.md §6): a dm-array of little-endian `u64` words; bit
//! `i` is bit `i % 64` of word `i / 64`.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::io::BlockDevice;
use crate::pdata::array::{ArrayCursor, ArrayDesc};
use crate::pdata::le64;
use crate::pdata::walk::Walker;
use crate::report::{Finding, Place};

/// The array that stores a bitset of `nr_bits` bits.
/// `from` is the block holding the root pointer.
pub fn bitset_desc(structure: impl Into<Place>, nr_bits: u64, from: Option<u64>) -> ArrayDesc {
    ArrayDesc {
        structure: structure.into(),
        value_size: 8,
        nr_entries: nr_bits.div_ceil(64),
        from,
    }
}

/// Result of checking a bitset.
#[derive(Debug, Default, Clone)]
pub struct BitsetCheck {
    /// Number of set bits below `nr_bits` in the readable words.
    pub set_bits: u64,
    /// Bit ranges `[begin, end)` that could not be read.
    pub lost: Vec<(u64, u64)>,
}

impl Walker<'_> {
    /// Checks a bitset of `nr_bits` bits at `root` (§10 rule 13): a valid array of
    /// `ceil(nr_bits/64)` words; set bits past `nr_bits` are a warning.
    pub fn check_bitset(
        &mut self,
        root: u64,
        structure: &Place,
        nr_bits: u64,
        from: Option<u64>,
    ) -> BitsetCheck {
        self.scan_bitset(root, structure, nr_bits, from, &|_, _| {})
    }

    /// Checks a bitset as [`check_bitset`](Self::check_bitset) does and hands every
    /// readable word (bits past `nr_bits` cleared) to `on_word(word_index, word)`, in
    /// no particular order (array blocks are read in parallel).
    pub fn scan_bitset(
        &mut self,
        root: u64,
        structure: &Place,
        nr_bits: u64,
        from: Option<u64>,
        on_word: &(dyn Fn(u64, u64) + Sync),
    ) -> BitsetCheck {
        let desc = bitset_desc(structure, nr_bits, from);
        let set = AtomicU64::new(0);
        let last_word = nr_bits.div_ceil(64).saturating_sub(1);
        let lost = self.check_array(root, &desc, &|first, vals| {
            let mut n = 0u64;
            let mut out = Vec::new();
            for (j, w) in vals.chunks_exact(8).enumerate() {
                let mut word = le64(w, 0);
                let wi = first + j as u64;
                if wi == last_word && !nr_bits.is_multiple_of(64) {
                    let mask = (1u64 << (nr_bits % 64)) - 1;
                    if word & !mask != 0 {
                        out.push(Finding::warning(
                            "bitset-tail-bits",
                            None,
                            structure,
                            format!("bits set past the last bit {}", nr_bits - 1),
                        ));
                    }
                    word &= mask;
                }
                n += word.count_ones() as u64;
                on_word(wi, word);
            }
            set.fetch_add(n, Ordering::Relaxed);
            out
        });
        BitsetCheck {
            set_bits: set.into_inner(),
            lost: lost
                .into_iter()
                .map(|(b, e)| (b * 64, (e * 64).min(nr_bits)))
                .collect(),
        }
    }
}

/// Sequential reader of a bitset's words, one array block in memory at a time.
pub struct BitsetCursor<'d> {
    array: ArrayCursor<'d>,
    nr_bits: u64,
    per_block: u64,
}

impl<'d> BitsetCursor<'d> {
    /// Opens the bitset at `root`: walks its index tree with `w` (damage goes to `w`'s
    /// report) and then reads words on demand.
    pub fn open(
        w: &mut Walker<'d>,
        root: u64,
        structure: &Place,
        nr_bits: u64,
        from: Option<u64>,
    ) -> Self {
        let desc = bitset_desc(structure, nr_bits, from);
        let blocks = w.array_blocks(root, &desc).unwrap_or_default();
        Self::from_parts(w.dev(), desc, blocks, nr_bits)
    }

    fn from_parts(
        dev: &'d dyn BlockDevice,
        desc: ArrayDesc,
        blocks: crate::pdata::array::BlockList,
        nr_bits: u64,
    ) -> Self {
        let per_block = desc.per_block();
        BitsetCursor {
            array: ArrayCursor::new(dev, desc, blocks),
            nr_bits,
            per_block,
        }
    }

    /// Number of bits.
    pub fn nr_bits(&self) -> u64 {
        self.nr_bits
    }

    /// Word `wi` with the bits past `nr_bits` cleared.
    pub fn word(&mut self, wi: u64) -> Result<u64, Finding> {
        let vals = self.array.block(wi / self.per_block)?;
        let j = (wi % self.per_block) as usize;
        let mut w = le64(vals, j * 8);
        let end = (wi + 1) * 64;
        if end > self.nr_bits {
            let keep = self.nr_bits.saturating_sub(wi * 64);
            w &= if keep >= 64 { !0 } else { (1u64 << keep) - 1 };
        }
        Ok(w)
    }

    /// Words per array block: array block `bi` holds words `bi * words_per_block()`
    /// onwards.
    pub fn words_per_block(&self) -> u64 {
        self.per_block
    }

    /// Number of array blocks.
    pub fn nr_array_blocks(&self) -> u64 {
        self.array.desc().nr_blocks()
    }

    /// The words of array block `bi` into `out` (replacing what it held), the bits
    /// past `nr_bits` cleared: one block read and decoded at once, for walks that go
    /// through every word.
    pub fn block_words(&mut self, bi: u64, out: &mut Vec<u64>) -> Result<(), Finding> {
        let vals = self.array.block(bi)?;
        out.clear();
        out.extend(vals.chunks_exact(8).map(|w| le64(w, 0)));
        let first = bi * self.per_block;
        let end = (first + out.len() as u64) * 64;
        if end > self.nr_bits {
            // Only the last block holds bits past the end: clear them word by word.
            for (j, w) in out.iter_mut().enumerate() {
                let keep = self.nr_bits.saturating_sub((first + j as u64) * 64);
                if keep < 64 {
                    *w &= (1u64 << keep) - 1;
                }
            }
        }
        Ok(())
    }

    /// Bit `i` (false past `nr_bits`).
    pub fn get(&mut self, i: u64) -> Result<bool, Finding> {
        if i >= self.nr_bits {
            return Ok(false);
        }
        Ok(self.word(i / 64)? >> (i % 64) & 1 == 1)
    }
}
