//! The enumeration of a space's crash states, tier by tier.
//!
//! Candidates are deduplicated by content as they are made, each by the
//! difference its image makes to the base (the xor, over the blocks it
//! changes, of a block's old and new share in [`MetaSpace::fingerprint`]).
//! For the T0, T1 and T3 candidates and T2's pairs that difference follows in
//! constant time from the all-landed state and from which landed write lies
//! beneath each write, so an epoch of n pending writes costs O(n) hashes and
//! memory for T1, not one n-long state per candidate; only the states kept
//! hold their `landed` vector. A write that leaves its block as it was (a
//! discard of a block never written, say) adds no state.

use std::collections::{HashMap, HashSet};

use super::{block_hash, splitmix, BlockHashes, Choice, MetaSpace, Options};
use crate::io::BLOCK_SIZE;

/// What the deduplication needs of each pending write.
struct Deltas {
    hashes: BlockHashes,
    /// Content hash of each pending write.
    new: Vec<u64>,
    /// Content hash of its block in the base.
    old: Vec<u64>,
    /// The last landed (completed) write of a block, by block.
    top: HashMap<u64, usize>,
    /// The landed write to the same block issued before each write.
    below: Vec<Option<usize>>,
    /// The difference of the all-landed state.
    all: u128,
}

impl Deltas {
    fn new(space: &MetaSpace) -> Self {
        let mut hashes = BlockHashes::default();
        let p = &space.pending;
        let new: Vec<u64> = p.iter().map(|w| hashes.of(&w.data)).collect();
        let old: Vec<u64> = p
            .iter()
            .map(|w| space.base_hash(w.block, &mut hashes))
            .collect();
        let mut top: HashMap<u64, usize> = HashMap::new();
        let mut below = Vec::with_capacity(p.len());
        for (i, w) in p.iter().enumerate() {
            below.push(top.get(&w.block).copied());
            if !w.inflight {
                top.insert(w.block, i);
            }
        }
        let mut d = Deltas {
            hashes,
            new,
            old,
            top,
            below,
            all: 0,
        };
        d.all = d.top.values().fold(0, |k, &i| k ^ d.keep(space, i));
        d
    }

    /// Write `i` alone over the base.
    fn keep(&self, space: &MetaSpace, i: usize) -> u128 {
        self.hashes
            .change(space.pending[i].block, self.old[i], self.new[i])
    }

    /// The content hash beneath write `i` when every completed write lands.
    fn under(&self, i: usize) -> u64 {
        self.below[i].map_or(self.old[i], |j| self.new[j])
    }

    /// Whether a completed write issued after `i` covers its block.
    fn covered(&self, space: &MetaSpace, i: usize) -> bool {
        self.top
            .get(&space.pending[i].block)
            .is_some_and(|&t| t > i)
    }

    /// The all-landed state without write `i`.
    fn drop(&self, space: &MetaSpace, i: usize) -> u128 {
        if space.pending[i].inflight || self.covered(space, i) {
            return self.all;
        }
        let b = space.pending[i].block;
        self.all ^ self.hashes.change(b, self.new[i], self.under(i))
    }

    /// Writes `i` and `j` (`i < j`) alone over the base.
    fn pair(&self, space: &MetaSpace, i: usize, j: usize) -> u128 {
        if space.pending[i].block == space.pending[j].block {
            self.keep(space, j)
        } else {
            self.keep(space, i) ^ self.keep(space, j)
        }
    }

    /// The all-landed state without write `i`, which lands torn: the units
    /// of `mask` new over what lay beneath it.
    fn torn(&mut self, space: &MetaSpace, i: usize, mask: u64, unit: usize) -> u128 {
        if self.covered(space, i) {
            return self.all;
        }
        let w = &space.pending[i];
        let under = self.under(i);
        let mixed = if under == self.new[i] {
            under
        } else {
            let mut b = match self.below[i] {
                Some(j) => *space.pending[j].data,
                None => space.base_block(w.block),
            };
            for u in 0..BLOCK_SIZE / unit {
                if mask >> u & 1 == 1 {
                    b[u * unit..(u + 1) * unit].copy_from_slice(&w.data[u * unit..(u + 1) * unit]);
                }
            }
            block_hash(&b)
        };
        // What the all-landed state holds at the block: this write when it
        // completed, else what lies beneath it.
        let landed = if w.inflight { under } else { self.new[i] };
        self.all ^ self.hashes.change(w.block, landed, mixed)
    }
}

/// The states kept so far, each first of its content.
struct Kept {
    seen: HashSet<u128>,
    states: Vec<Choice>,
    total: usize,
}

impl Kept {
    fn offer(&mut self, diff: u128, make: impl FnOnce() -> Choice) {
        self.total += 1;
        if self.seen.insert(diff) {
            self.states.push(make());
        }
    }
}

impl MetaSpace {
    /// The states of the tiers `opts` asks for, without duplicates (by content),
    /// and the number of candidate states before deduplication.
    pub fn enumerate(&self, opts: &Options) -> (Vec<Choice>, usize) {
        let n = self.pending.len();
        let unit = opts.atomic_unit.clamp(512, BLOCK_SIZE);
        let landed_all: Vec<bool> = self.pending.iter().map(|p| !p.inflight).collect();
        let whole = |landed: Vec<bool>| Choice { landed, torn: None };
        let only = |ix: &[usize]| {
            let mut m = vec![false; n];
            for &i in ix {
                m[i] = true;
            }
            whole(m)
        };
        let mut d = Deltas::new(self);
        let mut k = Kept {
            seen: HashSet::new(),
            states: Vec::new(),
            total: 0,
        };
        // T0
        k.offer(0, || only(&[]));
        k.offer(d.all, || whole(landed_all.clone()));
        if let Some(sb) = self.pending.iter().rposition(|p| p.block == 0) {
            k.offer(d.keep(self, sb), || only(&[sb]));
        }
        if opts.tier >= 1 {
            for i in 0..n {
                k.offer(d.keep(self, i), || only(&[i]));
                k.offer(d.drop(self, i), || {
                    let mut m = landed_all.clone();
                    m[i] = false;
                    whole(m)
                });
            }
        }
        if opts.tier >= 2 {
            if n <= 12 {
                for bits in 0u32..(1 << n) {
                    let c = whole((0..n).map(|i| bits >> i & 1 == 1).collect());
                    let diff = self.fingerprint(&c, unit, 0, &mut d.hashes);
                    k.offer(diff, || c);
                }
            } else {
                // A pair with a write that leaves its block as in the base
                // is the other write alone, or the base: kept already.
                let moving: Vec<usize> = (0..n).filter(|&i| d.new[i] != d.old[i]).collect();
                k.total += n * (n - 1) / 2 - moving.len() * moving.len().saturating_sub(1) / 2;
                for (x, &i) in moving.iter().enumerate() {
                    for &j in &moving[x + 1..] {
                        k.offer(d.pair(self, i, j), || only(&[i, j]));
                    }
                }
                let mut s = opts.seed;
                for _ in 0..opts.samples {
                    let c = whole((0..n).map(|_| splitmix(&mut s) & 1 == 1).collect());
                    let diff = self.fingerprint(&c, unit, 0, &mut d.hashes);
                    k.offer(diff, || c);
                }
            }
        }
        if opts.tier >= 3 && unit < BLOCK_SIZE {
            let units = BLOCK_SIZE / unit;
            let full = (1u64 << units) - 1;
            let mut masks: Vec<u64> = Vec::new();
            for u in 1..units {
                masks.push((1 << u) - 1); // the first u units landed
                masks.push(full & !((1 << u) - 1)); // the last units landed
            }
            for u in 0..units {
                masks.push(full & !(1 << u)); // one unit missing
            }
            for i in 0..n {
                for &m in &masks {
                    let diff = d.torn(self, i, m, unit);
                    k.offer(diff, || {
                        let mut landed = landed_all.clone();
                        landed[i] = false;
                        Choice {
                            landed,
                            torn: Some((i, m)),
                        }
                    });
                }
            }
        }
        (k.states, k.total)
    }
}
