//! Crash states of the metadata device (REPLAY.md §2.5).
//!
//! At a crash point the device holds its durable content plus any subset of the
//! writes still in its cache or in flight, applied in completion order (issue
//! order for those in flight), each whole or, where the device's atomic unit is
//! smaller than a block, torn. [`MetaSpace`] captures that space from a simulated
//! device; [`MetaSpace::enumerate`] lists the states of the requested tiers,
//! deduplicated by image content; every state has an id
//! ([`Choice::id`]) from which [`MetaSpace::image`] rebuilds exactly that image,
//! an overlay over the durable content, never a materialised device.
//!
//! * T0: durable only; all completed writes landed; durable plus only the newest
//!   superblock write (the probe for a superblock written before its blocks).
//! * T1: each pending write dropped from, or kept alone over, the landed state.
//! * T2: every subset when at most 12 writes are pending, else every subset of at
//!   most 2 and `samples` seeded random ones.
//! * T3: each pending block write torn at the device's atomic unit (prefixes,
//!   suffixes, one unit missing) over the landed state.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::io::{Block, BLOCK_SIZE};
use crate::sim::{ExtentMap, MetaImage, MetaVal, SimDisk};

/// Which tiers to enumerate and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Highest tier (0..=3); lower tiers are included.
    pub tier: u8,
    /// Random subsets for T2 when more than 12 writes are pending.
    pub samples: usize,
    /// Seed of those samples.
    pub seed: u64,
    /// The device's atomic write unit in bytes (512 or 4096).
    pub atomic_unit: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            tier: 2,
            samples: 256,
            seed: 0,
            atomic_unit: 512,
        }
    }
}

/// A block write that a power cut may or may not have let reach the media.
#[derive(Debug, Clone)]
pub struct Pending {
    /// The block.
    pub block: u64,
    /// Its new content.
    pub data: Arc<Block>,
    /// Still in flight (not completed) at the crash.
    pub inflight: bool,
}

/// One crash state: which pending writes landed, and one possibly torn.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Choice {
    /// `landed[i]`: pending write `i` reached the media whole.
    pub landed: Vec<bool>,
    /// A write that reached the media in part: its index and, per atomic unit,
    /// whether the new content landed (bit `u`).
    pub torn: Option<(usize, u64)>,
}

impl Choice {
    /// The state's id at crash point `cp` (a trace line): `cp<line>.m<hex mask>`
    /// with `.t<write>-<hex units>` for a torn write. Only characters a dmtrace
    /// word allows, so `crash mode=state:<id>` can name it.
    pub fn id(&self, cp: usize) -> String {
        let mut mask = String::new();
        for chunk in self.landed.chunks(4).rev() {
            let mut nib = 0u8;
            for (i, &b) in chunk.iter().enumerate() {
                if b {
                    nib |= 1 << i;
                }
            }
            mask.push(char::from_digit(nib as u32, 16).expect("nibble"));
        }
        // Leading zeroes say nothing (an epoch of thousands of writes would
        // print thousands of them); `parse` reads any width.
        let mask = match mask.trim_start_matches('0') {
            "" => "0",
            m => m,
        };
        let mut id = format!("cp{cp}.m{mask}");
        if let Some((w, units)) = self.torn {
            id.push_str(&format!(".t{w}-{units:x}"));
        }
        id
    }

    /// Parses an id made by [`Choice::id`] for `n` pending writes; returns the
    /// crash point and the choice.
    pub fn parse(id: &str, n: usize) -> Result<(usize, Choice), String> {
        let bad = || format!("`{id}` is not a crash-state id (cp<line>.m<hex>[.t<w>-<hex>])");
        let mut parts = id.split('.');
        let cp = parts
            .next()
            .and_then(|p| p.strip_prefix("cp"))
            .and_then(|p| p.parse().ok())
            .ok_or_else(bad)?;
        let mask = parts
            .next()
            .and_then(|p| p.strip_prefix('m'))
            .ok_or_else(bad)?;
        let mut landed = vec![false; n];
        for (k, c) in mask.chars().rev().enumerate() {
            let nib = c.to_digit(16).ok_or_else(bad)?;
            for i in 0..4 {
                if nib >> i & 1 == 1 {
                    let w = k * 4 + i;
                    if w >= n {
                        return Err(format!("`{id}` names pending write {w}, there are {n}"));
                    }
                    landed[w] = true;
                }
            }
        }
        let torn = match parts.next() {
            None => None,
            Some(t) => {
                let (w, u) = t
                    .strip_prefix('t')
                    .and_then(|t| t.split_once('-'))
                    .ok_or_else(bad)?;
                let w: usize = w.parse().map_err(|_| bad())?;
                let u = u64::from_str_radix(u, 16).map_err(|_| bad())?;
                if w >= n {
                    return Err(format!("`{id}` tears pending write {w}, there are {n}"));
                }
                Some((w, u))
            }
        };
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok((cp, Choice { landed, torn }))
    }
}

/// Content hashes of shared blocks, by allocation, for
/// [`MetaSpace::fingerprint`]. Only blocks that outlive the cache may go
/// through it (a freed block's address can be reused by another).
#[derive(Debug)]
pub struct BlockHashes {
    by_ptr: HashMap<usize, u64>,
    zero: u64,
}

impl Default for BlockHashes {
    fn default() -> Self {
        BlockHashes {
            by_ptr: HashMap::new(),
            zero: block_hash(&[0u8; BLOCK_SIZE]),
        }
    }
}

impl BlockHashes {
    fn of(&mut self, b: &Arc<Block>) -> u64 {
        *self
            .by_ptr
            .entry(Arc::as_ptr(b) as usize)
            .or_insert_with(|| block_hash(b))
    }

    /// The share of block `b` with content hash `h` in an image's
    /// fingerprint: none for a zeroed block (as for one never written).
    fn term(&self, b: u64, h: u64) -> u128 {
        if h == self.zero {
            return 0;
        }
        let mut s = b ^ h.rotate_left(17);
        let lo = splitmix(&mut s);
        let hi = splitmix(&mut s);
        (hi as u128) << 64 | lo as u128
    }

    /// The change to a fingerprint when block `b`'s content hash goes from
    /// `old` to `new`.
    fn change(&self, b: u64, old: u64, new: u64) -> u128 {
        self.term(b, old) ^ self.term(b, new)
    }
}

/// Where a crash point lies relative to its statement; the suffix of the ids
/// of its states.
///
/// A state's id is `cp<line>.m<mask>[.t<w>-<units>]` ([`Choice::id`]) followed
/// by the point's suffix: none after the statement or at a `crash` line,
/// `-flush<k>` just before the statement's k-th flush of a non-empty metadata
/// cache, `-ev<k>` just after the k-th event on the metadata device since the
/// statement began (write issued, write completed, flush issued, flush
/// completed, counted in that order). Line, point and mask together name one
/// state of one replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Within {
    /// After the statement (or at a `crash` line).
    End,
    /// Just before the k-th flush (from 1) of a non-empty cache.
    Flush(usize),
    /// Just after the k-th device event (from 1).
    Event(usize),
}

impl Within {
    /// The id suffix.
    pub fn suffix(&self) -> String {
        match self {
            Within::End => String::new(),
            Within::Flush(k) => format!("-flush{k}"),
            Within::Event(k) => format!("-ev{k}"),
        }
    }

    /// Splits a state id into its [`Choice`] part and its point.
    pub fn split(id: &str) -> Result<(&str, Within), String> {
        // A torn write's `.t<w>-<units>` has a dash too: the point's suffix is
        // the part after the last dash, when it names one (hex digits never
        // spell `flush` or `ev`).
        let (base, tail) = match id.rsplit_once('-') {
            Some((b, t)) if t.starts_with("flush") || t.starts_with("ev") => (b, t),
            _ => return Ok((id, Within::End)),
        };
        let bad = || format!("`{id}`: `-{tail}` is not a crash point (-flush<k> or -ev<k>)");
        let k = |n: &str| -> Result<usize, String> {
            match n.parse::<usize>() {
                Ok(k) if k > 0 && !n.starts_with('0') => Ok(k),
                _ => Err(bad()),
            }
        };
        let w = match (tail.strip_prefix("flush"), tail.strip_prefix("ev")) {
            (Some(n), _) => Within::Flush(k(n)?),
            (_, Some(n)) => Within::Event(k(n)?),
            _ => return Err(bad()),
        };
        Ok((base, w))
    }
}

impl std::fmt::Display for Within {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Within::End => write!(f, "after the statement"),
            Within::Flush(k) => write!(f, "before its flush {k} of the metadata device"),
            Within::Event(k) => write!(f, "after its event {k} on the metadata device"),
        }
    }
}

/// The crash-state space of a metadata device at one crash point.
#[derive(Debug, Clone)]
pub struct MetaSpace {
    nr_blocks: u64,
    base: ExtentMap<MetaVal>,
    /// Pending writes in the order a device would apply them.
    pub pending: Vec<Pending>,
}

fn block_hash(b: &Block) -> u64 {
    let mut h = DefaultHasher::new();
    b.hash(&mut h);
    h.finish()
}

/// SplitMix64, for the seeded samples.
fn splitmix(s: &mut u64) -> u64 {
    *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *s;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl MetaSpace {
    /// The space of `disk` as it is now.
    pub fn capture(disk: &SimDisk<MetaVal>) -> Self {
        let mut s = Self::from_maps(disk.nr_units(), disk.durable(), disk.volatile());
        s.pending.extend(disk.inflight().filter_map(|(_, io)| {
            io.val.as_ref().map(|v| Pending {
                block: io.start,
                data: v.0.clone(),
                inflight: true,
            })
        }));
        s
    }

    /// The space of a device of `nr_blocks` holding `base` durably, with
    /// `pending` writes in the order the device would apply them.
    pub fn new(nr_blocks: u64, base: ExtentMap<MetaVal>, pending: Vec<Pending>) -> Self {
        MetaSpace {
            nr_blocks,
            base,
            pending,
        }
    }

    /// The space of a device of `nr_blocks` at a recorded flush point.
    pub fn at_flush(nr_blocks: u64, p: &crate::sim::FlushPoint) -> Self {
        Self::from_maps(nr_blocks, &p.durable, &p.volatile)
    }

    /// The space of a device of `nr_blocks` at a recorded event point: the
    /// cached writes in completion order, then those in flight in issue order.
    pub fn at_event(nr_blocks: u64, p: &crate::sim::EventPoint) -> Self {
        let mut s = Self::from_maps(nr_blocks, &p.durable, &p.volatile);
        s.pending
            .extend(p.inflight.iter().map(|(block, v)| Pending {
                block: *block,
                data: v.0.clone(),
                inflight: true,
            }));
        s
    }

    fn from_maps(
        nr_blocks: u64,
        durable: &ExtentMap<MetaVal>,
        volatile: &ExtentMap<MetaVal>,
    ) -> Self {
        // The cache holds the newest completed write of each block, in
        // completion order.
        let mut cached: Vec<(u64, u64, Arc<Block>)> = volatile
            .iter()
            .flat_map(|(s, e, seq, v)| (s..e).map(move |b| (seq, b, v.0.clone())))
            .collect();
        cached.sort_by_key(|&(seq, b, _)| (seq, b));
        let pending: Vec<Pending> = cached
            .into_iter()
            .map(|(_, block, data)| Pending {
                block,
                data,
                inflight: false,
            })
            .collect();
        MetaSpace {
            nr_blocks,
            base: durable.clone(),
            pending,
        }
    }

    /// The content of `block` in the base (zeroes if never written).
    fn base_block(&self, block: u64) -> Block {
        match self.base.get(block) {
            Some((_, v)) => *v.0,
            None => [0u8; BLOCK_SIZE],
        }
    }

    /// The blocks a choice changes, with their content.
    fn overlay(&self, c: &Choice, unit: usize) -> BTreeMap<u64, Arc<Block>> {
        let mut over: BTreeMap<u64, Arc<Block>> = BTreeMap::new();
        for (i, p) in self.pending.iter().enumerate() {
            match c.torn {
                Some((w, units)) if w == i => {
                    let mut mixed = match over.get(&p.block) {
                        Some(b) => **b,
                        None => self.base_block(p.block),
                    };
                    for u in 0..BLOCK_SIZE / unit {
                        if units >> u & 1 == 1 {
                            mixed[u * unit..(u + 1) * unit]
                                .copy_from_slice(&p.data[u * unit..(u + 1) * unit]);
                        }
                    }
                    over.insert(p.block, Arc::new(mixed));
                }
                _ if c.landed.get(i).copied().unwrap_or(false) => {
                    over.insert(p.block, p.data.clone());
                }
                _ => {}
            }
        }
        over
    }

    /// The image of state `c` (torn units of `unit` bytes).
    pub fn image(&self, c: &Choice, unit: usize) -> MetaImage {
        let mut map = self.base.clone();
        for (b, data) in self.overlay(c, unit) {
            map.insert(b, b + 1, u64::MAX, MetaVal(data));
        }
        MetaImage::new(self.nr_blocks, map)
    }

    /// The fingerprint of the base content (see [`fingerprint`](Self::fingerprint)).
    pub fn base_fingerprint(&self, hashes: &mut BlockHashes) -> u128 {
        let mut k = 0;
        for (s, e, _, v) in self.base.iter() {
            let h = hashes.of(&v.0);
            for b in s..e {
                k ^= hashes.term(b, h);
            }
        }
        k
    }

    /// A fingerprint of the whole image of state `c`, comparable between
    /// spaces of the same device (unlike the deduplication inside
    /// [`enumerate`](Self::enumerate), which is relative to the base):
    /// the xor of a 128-bit hash of each non-zero block and its number.
    /// `base` is [`base_fingerprint`](Self::base_fingerprint); `hashes` must
    /// not outlive this space's blocks.
    pub fn fingerprint(
        &self,
        c: &Choice,
        unit: usize,
        base: u128,
        hashes: &mut BlockHashes,
    ) -> u128 {
        // A torn block is made for this image alone: hashed, never cached.
        let torn = c.torn.map(|(w, _)| self.pending[w].block);
        let mut k = base;
        for (b, data) in self.overlay(c, unit) {
            let old = self.base_hash(b, hashes);
            let new = if torn == Some(b) {
                block_hash(&data)
            } else {
                hashes.of(&data)
            };
            k ^= hashes.change(b, old, new);
        }
        k
    }

    /// The content hash of block `b` in the base (a zeroed block's when the
    /// base never held it).
    fn base_hash(&self, b: u64, hashes: &mut BlockHashes) -> u64 {
        match self.base.get(b) {
            Some((_, v)) => hashes.of(&v.0),
            None => hashes.zero,
        }
    }
}

mod enumerate;
#[cfg(test)]
mod tests;
