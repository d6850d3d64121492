//! Writing dm-bitsets (PERSISTENT-DATA.md §6): a streaming builder of the word
//! array, and copy-on-write bit and word updates for the reference model.

use crate::io::BlockDevice;
use crate::pdata::array_write::{Array, ArrayBuilder, BuiltArray};
use crate::pdata::le64;
use crate::pdata::tm::{TmError, TransactionManager};

/// Streams the words of a bitset of `nr_bits` bits into a new array.
#[derive(Debug)]
pub struct BitsetBuilder {
    nr_bits: u64,
    words: u64,
    array: ArrayBuilder,
}

impl BitsetBuilder {
    /// A builder for `nr_bits` bits.
    pub fn new(nr_bits: u64) -> Self {
        BitsetBuilder {
            nr_bits,
            words: 0,
            array: ArrayBuilder::new(8),
        }
    }

    /// Index of the next word.
    pub fn next_word(&self) -> u64 {
        self.words
    }

    /// Appends the next word. Bits at or past `nr_bits` must be zero (§10 rule 13).
    pub fn push_word<D: BlockDevice>(
        &mut self,
        tm: &mut TransactionManager<D>,
        w: u64,
    ) -> Result<(), TmError> {
        let nr_words = self.nr_bits.div_ceil(64);
        if self.words >= nr_words {
            return Err(TmError::Invariant(format!(
                "word {} of a bitset of {} bits",
                self.words, self.nr_bits
            )));
        }
        let w = if self.words + 1 == nr_words && !self.nr_bits.is_multiple_of(64) {
            w & ((1u64 << (self.nr_bits % 64)) - 1)
        } else {
            w
        };
        self.words += 1;
        self.array.push(tm, &w.to_le_bytes())
    }

    /// Appends `n` copies of word `w` (a run of clear or set words at once). Bits at
    /// or past `nr_bits` are cleared, as by [`push_word`](Self::push_word).
    pub fn push_words<D: BlockDevice>(
        &mut self,
        tm: &mut TransactionManager<D>,
        w: u64,
        n: u64,
    ) -> Result<(), TmError> {
        let nr_words = self.nr_bits.div_ceil(64);
        if n > nr_words - self.words {
            return Err(TmError::Invariant(format!(
                "words {}..{} of a bitset of {} bits",
                self.words,
                self.words.saturating_add(n),
                self.nr_bits
            )));
        }
        if n == 0 {
            return Ok(());
        }
        // All but the last word, which may be the bitset's last and need its mask.
        self.array.push_n(tm, &w.to_le_bytes(), n - 1)?;
        self.words += n - 1;
        self.push_word(tm, w)
    }

    /// Pads with zero words and writes the index tree.
    pub fn finish<D: BlockDevice>(
        mut self,
        tm: &mut TransactionManager<D>,
    ) -> Result<BuiltArray, TmError> {
        self.push_words(tm, 0, self.nr_bits.div_ceil(64) - self.words)?;
        self.array.finish(tm)
    }
}

/// Number of blocks a bitset of `nr_bits` bits takes.
pub fn bitset_blocks(nr_bits: u64) -> u64 {
    crate::pdata::array_write::array_blocks(nr_bits.div_ceil(64), 8)
}

/// A bitset on disk: the word array and the number of bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bitset {
    /// The le64 word array.
    pub array: Array,
    /// Bits.
    pub nr_bits: u64,
}

impl Bitset {
    /// An empty bitset of `nr_bits` zero bits (`dm_bitset_empty` + `resize`).
    pub fn new<D: BlockDevice>(
        tm: &mut TransactionManager<D>,
        nr_bits: u64,
    ) -> Result<Self, TmError> {
        let mut array = Array::empty(tm, 8)?;
        array.resize(tm, nr_bits.div_ceil(64), &[0u8; 8])?;
        Ok(Bitset { array, nr_bits })
    }

    /// The bitset at `root` with `nr_bits` bits.
    pub fn open(root: u64, nr_bits: u64) -> Self {
        Bitset {
            array: Array {
                root,
                value_size: 8,
                nr_entries: nr_bits.div_ceil(64),
            },
            nr_bits,
        }
    }

    /// Root of the word array.
    pub fn root(&self) -> u64 {
        self.array.root
    }

    /// Word `wi`.
    pub fn word<D: BlockDevice>(
        &self,
        tm: &mut TransactionManager<D>,
        wi: u64,
    ) -> Result<u64, TmError> {
        Ok(le64(&self.array.get(tm, wi)?, 0))
    }

    /// Stores word `wi` (copy-on-write; the root may change).
    pub fn set_word<D: BlockDevice>(
        &mut self,
        tm: &mut TransactionManager<D>,
        wi: u64,
        w: u64,
    ) -> Result<(), TmError> {
        self.array.set(tm, wi, &w.to_le_bytes())
    }

    /// Bit `i`.
    pub fn test<D: BlockDevice>(
        &self,
        tm: &mut TransactionManager<D>,
        i: u64,
    ) -> Result<bool, TmError> {
        self.check(i)?;
        Ok(self.word(tm, i / 64)? >> (i % 64) & 1 == 1)
    }

    /// Sets or clears bit `i`.
    pub fn assign<D: BlockDevice>(
        &mut self,
        tm: &mut TransactionManager<D>,
        i: u64,
        value: bool,
    ) -> Result<(), TmError> {
        self.check(i)?;
        let w = self.word(tm, i / 64)?;
        let m = 1u64 << (i % 64);
        let nw = if value { w | m } else { w & !m };
        if nw != w {
            self.set_word(tm, i / 64, nw)?;
        }
        Ok(())
    }

    /// Resizes to `nr_bits` bits, new bits clear (bits of a shrunk last word are
    /// cleared too, so no bit past the end stays set).
    pub fn resize<D: BlockDevice>(
        &mut self,
        tm: &mut TransactionManager<D>,
        nr_bits: u64,
    ) -> Result<(), TmError> {
        self.array.resize(tm, nr_bits.div_ceil(64), &[0u8; 8])?;
        if !nr_bits.is_multiple_of(64) && nr_bits < self.nr_bits {
            let wi = nr_bits / 64;
            let w = self.word(tm, wi)?;
            let nw = w & ((1u64 << (nr_bits % 64)) - 1);
            if nw != w {
                self.set_word(tm, wi, nw)?;
            }
        }
        self.nr_bits = nr_bits;
        Ok(())
    }

    fn check(&self, i: u64) -> Result<(), TmError> {
        if i >= self.nr_bits {
            return Err(TmError::Invariant(format!(
                "bit {i} of a bitset of {} bits",
                self.nr_bits
            )));
        }
        Ok(())
    }
}
