//! How one block is stored in a pack: a small program for a byte-code machine whose
//! output is the block's 4096 bytes (the instruction set of thin-provisioning-tools'
//! `thin_metadata_pack`, format version 3).
//!
//! The machine has one 64-bit register, `base`, zero at the start of every block.
//! An instruction is one byte, the tag in the high nibble and an argument `n` in the
//! low one; little-endian operands follow some of them. "Emit" appends `base` to the
//! output as 8 little-endian bytes.
//!
//! | tag | name | effect |
//! |---|---|---|
//! | 0 | set | operand of `n` bytes (1, 2, 4 or 8) becomes `base`; emit |
//! | 1 | add | `base += n`; emit |
//! | 2 | add-wide | `base += operand` (`n` bytes wide); emit |
//! | 3 | sub | `base -= n`; emit |
//! | 4 | sub-wide | `base -= operand` (`n` bytes wide); emit |
//! | 5 | repeat | emit `n` times |
//! | 6 | repeat-wide | emit `n << 8 \| next byte` times |
//! | 7 | count | run the next instruction `n` times |
//! | 8 | count-wide | run the next instruction `n << 8 \| next byte` times |
//! | 9 | bytes | copy the next `n` bytes to the output |
//! | 10 | bytes-wide | a length of `n` bytes (1, 2, 4 or 8) follows, then that many bytes to copy |
//! | 11 | split-words | `k = n << 8 \| next byte`; two sub-programs follow, emitting `k` words each (high and low parts); emit `high << 24 \| low & 0xffffff` for each pair |
//!
//! Arithmetic wraps. The program ends once 4096 bytes are out; an instruction that
//! would go past 4096 is an error. `count` applies to set, add and sub (it repeats
//! the emission); in front of repeat, bytes or split-words only a count of 1 is
//! valid, and a second count replaces the first. The sub-programs of split-words
//! share `base` with the block's program and may not hold another split-words.
//!
//! The encoder below looks at the block as 512 little-endian words and writes each
//! arithmetic progression of at least [`MIN_RUN`] words (runs of zeroes, sequential
//! keys and block numbers, repeated values) as a set and a counted add, sub or
//! repeat, and everything else as bytes. It never writes split-words, which only
//! the reader needs (packs from thin-provisioning-tools use it for B-tree leaves).

use std::fmt;

use crate::io::{Block, BLOCK_SIZE};

const SET: u8 = 0;
const ADD: u8 = 1;
const ADD_WIDE: u8 = 2;
const SUB: u8 = 3;
const SUB_WIDE: u8 = 4;
const REPEAT: u8 = 5;
const REPEAT_WIDE: u8 = 6;
const COUNT: u8 = 7;
const COUNT_WIDE: u8 = 8;
const BYTES: u8 = 9;
const BYTES_WIDE: u8 = 10;
const SPLIT_WORDS: u8 = 11;

/// Shortest arithmetic progression of words the encoder writes as one. Shorter
/// runs cut the bytes deflate sees but break the repeats it would find across
/// blocks: on a generated dm-era image of 2^24 blocks, 3 gave a pack 16% larger
/// than 8 (and 8 one 1% smaller than no runs at all); zero blocks still shrink to
/// a few bytes before compression, which makes sparse metadata fast to pack.
pub const MIN_RUN: usize = 8;
/// Largest count a count or repeat instruction holds (12 bits).
const MAX_COUNT: usize = 0xfff;
/// Bits of a split-words low part.
const LOW_BITS: u32 = 24;

const WORDS: usize = BLOCK_SIZE / 8;

/// Why a program does not decode to a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmError {
    /// The data ended before the block was complete.
    Truncated {
        /// Bytes of the block emitted so far.
        emitted: usize,
    },
    /// A tag no instruction has.
    BadTag(u8),
    /// An operand width other than 1, 2, 4 or 8 bytes.
    BadWidth(u8),
    /// The instruction would emit past the end of its output.
    Overrun {
        /// Bytes the output may hold.
        limit: usize,
    },
    /// A count other than 1 in front of an instruction that cannot repeat.
    BadCount {
        /// The instruction's tag.
        tag: u8,
        /// The count.
        count: usize,
    },
    /// A split-words inside a split-words.
    NestedSplit,
}

impl fmt::Display for VmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VmError::Truncated { emitted } => write!(
                f,
                "the data ends after {emitted} of the block's {BLOCK_SIZE} bytes"
            ),
            VmError::BadTag(t) => write!(f, "unknown instruction tag {t}"),
            VmError::BadWidth(w) => write!(f, "operand width {w} (not 1, 2, 4 or 8)"),
            VmError::Overrun { limit } => {
                write!(f, "the instruction emits past the end of its {limit} bytes")
            }
            VmError::BadCount { tag, count } => {
                write!(
                    f,
                    "count {count} in front of instruction tag {tag}, which cannot repeat"
                )
            }
            VmError::NestedSplit => write!(f, "a split-words instruction inside another"),
        }
    }
}

impl std::error::Error for VmError {}

/// A program being read: the data and the position in it.
struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

/// Where a program's output goes, and how much of it there may be.
struct Output<'a> {
    buf: &'a mut Vec<u8>,
    limit: usize,
}

impl Output<'_> {
    fn emit(&mut self, bytes: &[u8]) -> Result<(), VmError> {
        if self.buf.len() + bytes.len() > self.limit {
            return Err(VmError::Overrun { limit: self.limit });
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }
}

struct Machine<'a> {
    input: Input<'a>,
    base: u64,
    /// Bytes of the block emitted so far, for the truncation message.
    emitted: usize,
    /// Where the instruction being run starts in the data.
    at: usize,
}

impl Machine<'_> {
    fn byte(&mut self) -> Result<u8, VmError> {
        let b = *self
            .input
            .data
            .get(self.input.pos)
            .ok_or(VmError::Truncated {
                emitted: self.emitted,
            })?;
        self.input.pos += 1;
        Ok(b)
    }

    fn bytes(&mut self, n: usize) -> Result<&[u8], VmError> {
        let start = self.input.pos;
        let end = start
            .checked_add(n)
            .filter(|&e| e <= self.input.data.len())
            .ok_or(VmError::Truncated {
                emitted: self.emitted,
            })?;
        self.input.pos = end;
        Ok(&self.input.data[start..end])
    }

    /// A little-endian operand `width` bytes wide.
    fn operand(&mut self, width: u8) -> Result<u64, VmError> {
        if !matches!(width, 1 | 2 | 4 | 8) {
            return Err(VmError::BadWidth(width));
        }
        let mut v = [0u8; 8];
        v[..width as usize].copy_from_slice(self.bytes(width as usize)?);
        Ok(u64::from_le_bytes(v))
    }

    /// Runs instructions until `out` is full.
    fn run(&mut self, out: &mut Output<'_>, nested: bool) -> Result<(), VmError> {
        while out.buf.len() < out.limit {
            self.step(out, nested)?;
            if !nested {
                self.emitted = out.buf.len();
            }
        }
        Ok(())
    }

    /// Runs one instruction, with the counts in front of it.
    fn step(&mut self, out: &mut Output<'_>, nested: bool) -> Result<(), VmError> {
        self.at = self.input.pos;
        let mut count = 1usize;
        let (tag, n) = loop {
            let i = self.byte()?;
            let (tag, n) = (i >> 4, i & 0xf);
            match tag {
                COUNT => count = n as usize,
                COUNT_WIDE => count = (n as usize) << 8 | self.byte()? as usize,
                _ => break (tag, n),
            }
        };
        let once = |count: usize| {
            if count == 1 {
                Ok(())
            } else {
                Err(VmError::BadCount { tag, count })
            }
        };
        match tag {
            SET => {
                self.base = self.operand(n)?;
                self.emit_base(out, count)?;
            }
            ADD | ADD_WIDE | SUB | SUB_WIDE => {
                let delta = if tag == ADD || tag == SUB {
                    n as u64
                } else {
                    self.operand(n)?
                };
                for _ in 0..count {
                    self.base = if tag <= ADD_WIDE {
                        self.base.wrapping_add(delta)
                    } else {
                        self.base.wrapping_sub(delta)
                    };
                    out.emit(&self.base.to_le_bytes())?;
                }
            }
            REPEAT | REPEAT_WIDE => {
                once(count)?;
                let times = if tag == REPEAT {
                    n as usize
                } else {
                    (n as usize) << 8 | self.byte()? as usize
                };
                self.emit_base(out, times)?;
            }
            BYTES | BYTES_WIDE => {
                once(count)?;
                let len = if tag == BYTES {
                    n as u64
                } else {
                    self.operand(n)?
                };
                // Checked against the room left before the bytes are taken.
                let room = (out.limit - out.buf.len()) as u64;
                if len > room {
                    return Err(VmError::Overrun { limit: out.limit });
                }
                let bytes = self.bytes(len as usize)?;
                out.emit(bytes)?;
            }
            SPLIT_WORDS => {
                once(count)?;
                if nested {
                    return Err(VmError::NestedSplit);
                }
                let k = (n as usize) << 8 | self.byte()? as usize;
                if k * 8 > out.limit - out.buf.len() {
                    return Err(VmError::Overrun { limit: out.limit });
                }
                let mut high = Vec::with_capacity(k * 8);
                self.run(
                    &mut Output {
                        buf: &mut high,
                        limit: k * 8,
                    },
                    true,
                )?;
                let mut low = Vec::with_capacity(k * 8);
                self.run(
                    &mut Output {
                        buf: &mut low,
                        limit: k * 8,
                    },
                    true,
                )?;
                let mask = (1u64 << LOW_BITS) - 1;
                for (h, l) in high.chunks_exact(8).zip(low.chunks_exact(8)) {
                    let h = u64::from_le_bytes(h.try_into().expect("8-byte chunk"));
                    let l = u64::from_le_bytes(l.try_into().expect("8-byte chunk"));
                    out.emit(&((h << LOW_BITS) | (l & mask)).to_le_bytes())?;
                }
            }
            t => return Err(VmError::BadTag(t)),
        }
        Ok(())
    }

    fn emit_base(&mut self, out: &mut Output<'_>, times: usize) -> Result<(), VmError> {
        let room = (out.limit - out.buf.len()) / 8;
        if times > room {
            return Err(VmError::Overrun { limit: out.limit });
        }
        for _ in 0..times {
            out.emit(&self.base.to_le_bytes())?;
        }
        Ok(())
    }
}

/// Runs the program at the start of `data` into `block`; returns the number of
/// bytes of `data` it took. An error comes with the offset in `data` of the
/// instruction that failed.
pub fn decode_block(data: &[u8], block: &mut Block) -> Result<usize, (usize, VmError)> {
    let mut buf = Vec::with_capacity(BLOCK_SIZE);
    let mut m = Machine {
        input: Input { data, pos: 0 },
        base: 0,
        emitted: 0,
        at: 0,
    };
    let mut out = Output {
        buf: &mut buf,
        limit: BLOCK_SIZE,
    };
    m.run(&mut out, false).map_err(|e| (m.at, e))?;
    block.copy_from_slice(&buf);
    Ok(m.input.pos)
}

/// Appends to `out` a program that emits `block`.
pub fn encode_block(block: &Block, out: &mut Vec<u8>) {
    let mut words = [0u64; WORDS];
    for (w, c) in words.iter_mut().zip(block.chunks_exact(8)) {
        *w = u64::from_le_bytes(c.try_into().expect("8-byte chunk"));
    }
    let mut base = 0u64;
    let mut literal_from = 0;
    let mut i = 0;
    while i < WORDS {
        let n = progression_len(&words[i..]);
        if n < MIN_RUN {
            i += 1;
            continue;
        }
        put_bytes(out, &block[literal_from * 8..i * 8]);
        let step = if n > 1 {
            words[i + 1].wrapping_sub(words[i])
        } else {
            0
        };
        put_run(out, &mut base, words[i], step, n);
        i += n;
        literal_from = i;
    }
    put_bytes(out, &block[literal_from * 8..]);
}

/// Length of the arithmetic progression `w` starts with (at least 1).
fn progression_len(w: &[u64]) -> usize {
    if w.len() < 2 {
        return w.len();
    }
    let step = w[1].wrapping_sub(w[0]);
    1 + w
        .windows(2)
        .take_while(|p| p[1].wrapping_sub(p[0]) == step)
        .count()
}

/// `n` words `first, first + step, ...`; leaves `base` at the last.
fn put_run(out: &mut Vec<u8>, base: &mut u64, first: u64, step: u64, n: usize) {
    // Continue from the register when it already sits one step before the run.
    let mut left = n;
    if base.wrapping_add(step) != first {
        put_wide(out, SET, first);
        left -= 1;
    }
    *base = first.wrapping_add(step.wrapping_mul(n as u64 - 1));
    if left == 0 {
        return;
    }
    if step == 0 {
        put_counted(out, REPEAT, REPEAT_WIDE, left);
        return;
    }
    if left > 1 {
        put_counted(out, COUNT, COUNT_WIDE, left);
    }
    // A step above 2^63 is a small step down.
    let (short, wide, delta) = if step <= u64::MAX / 2 {
        (ADD, ADD_WIDE, step)
    } else {
        (SUB, SUB_WIDE, step.wrapping_neg())
    };
    if delta < 16 {
        out.push(short << 4 | delta as u8);
    } else {
        put_wide(out, wide, delta);
    }
}

/// An instruction whose argument is a count of up to 12 bits.
fn put_counted(out: &mut Vec<u8>, short: u8, wide: u8, count: usize) {
    debug_assert!(count <= MAX_COUNT);
    if count < 16 {
        out.push(short << 4 | count as u8);
    } else {
        out.push(wide << 4 | (count >> 8) as u8);
        out.push(count as u8);
    }
}

/// An instruction with an operand in the fewest of 1, 2, 4 or 8 bytes.
fn put_wide(out: &mut Vec<u8>, tag: u8, v: u64) {
    let width: u8 = match v {
        0..=0xff => 1,
        0x100..=0xffff => 2,
        0x1_0000..=0xffff_ffff => 4,
        _ => 8,
    };
    out.push(tag << 4 | width);
    out.extend_from_slice(&v.to_le_bytes()[..width as usize]);
}

/// Bytes copied as they are.
fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    match bytes.len() {
        0 => {}
        n @ 1..16 => out.push(BYTES << 4 | n as u8),
        n => put_wide(out, BYTES_WIDE, n as u64),
    }
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests;
