//! Verifying real kernels from dm-log-writes logs (REPLAY.md §2.7).
//!
//! * [`meta`]: the metadata log alone. At every FLUSH and FUA entry the durable
//!   prefix is checked (I1 / E1), the crash states of the epoch ending there are
//!   enumerated and checked, and the single-device rules hold between durable
//!   views (G1–G4, I4, E3, E4).
//! * [`crash`]: every log of a capture cut by a power failure, replayed whole
//!   (a legal crash state: a log holds only what flushes made durable), checked
//!   with I1–I3 (dm-clone) or E1–E2 (dm-era).
//! * [`conformance`]: the user-level log becomes a dmtrace; the reference model
//!   replays it with its commits where the kernel's metadata log has them, and
//!   every committed image is compared with the kernel's.

pub mod conformance;
pub mod crash;
pub mod data;
pub mod meta;

use std::fmt;
use std::sync::Arc;

use crate::io::{Block, BLOCK_SIZE};
use crate::logwrites::{Entry, Log, LogError, LogSource};
use crate::sim::{ExtentMap, MetaImage, MetaVal};

pub use super::Violation;

/// Which target's metadata a log holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// dm-clone.
    Clone,
    /// dm-era.
    Era,
}

impl Target {
    /// The metadata invariant's id.
    pub fn meta_id(self) -> &'static str {
        match self {
            Target::Clone => "I1",
            Target::Era => "E1",
        }
    }
}

/// A violation found in a log, printed with the entry it was found at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogViolation(pub Violation);

impl fmt::Display for LogViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = &self.0;
        write!(f, "{} at entry {}", v.id, v.cp)?;
        if !v.state.is_empty() {
            write!(f, ", crash state {}", v.state)?;
        }
        write!(f, ": {}", v.what)
    }
}

/// What a verification went through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Entries read, per log.
    pub entries: Vec<(String, usize)>,
    /// Durable points checked (FLUSH and FUA entries of the metadata log).
    pub flush_points: usize,
    /// Superblock writes (commits) in the metadata log.
    pub commits: usize,
    /// Crash states checked.
    pub states: usize,
    /// Violations found.
    pub violations: usize,
    /// Committed images compared (conformance): logically equal, byte-identical.
    pub compared: Option<(usize, usize, usize)>,
    /// Warnings (a log not closed, a lagging count, ambiguity).
    pub warnings: Vec<String>,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let logs: Vec<String> = self
            .entries
            .iter()
            .map(|(n, c)| format!("{n} {c}"))
            .collect();
        write!(
            f,
            "entries: {}; flush points checked: {}; commits: {}; crash states explored: {}",
            logs.join(", "),
            self.flush_points,
            self.commits,
            self.states
        )?;
        if let Some((n, logical, bytes)) = self.compared {
            write!(
                f,
                "; committed images compared: {n}, logically equal: {logical}, byte-identical: {bytes}"
            )?;
        }
        write!(f, "; violations: {}", self.violations)
    }
}

/// Why a verification could not run.
#[derive(Debug)]
pub enum VerifyError {
    /// A log is unreadable.
    Log {
        /// Which log.
        name: String,
        /// Why.
        err: LogError,
    },
    /// Something else: a base image, a source image, an inconsistent capture.
    Input(String),
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyError::Log { name, err } => write!(f, "{name}: {err}"),
            VerifyError::Input(s) => write!(f, "{s}"),
        }
    }
}

impl std::error::Error for VerifyError {}

/// Wraps a log error with the log's name.
pub fn log_err(name: &str) -> impl Fn(LogError) -> VerifyError + '_ {
    move |err| VerifyError::Log {
        name: name.to_string(),
        err,
    }
}

/// The metadata device as a log rebuilds it, entry by entry, in 4 KiB blocks.
#[derive(Debug, Clone)]
pub struct MetaState {
    /// Current content of every block written or in the base.
    pub blocks: ExtentMap<MetaVal>,
    /// Size of the device in blocks.
    pub nr_blocks: u64,
}

impl MetaState {
    /// A device of `nr_blocks` holding `base`.
    pub fn new(nr_blocks: u64, base: ExtentMap<MetaVal>) -> Self {
        MetaState {
            blocks: base,
            nr_blocks,
        }
    }

    /// The content of `b` (zeroes if never written).
    pub fn block(&self, b: u64) -> Arc<Block> {
        match self.blocks.get(b) {
            Some((_, v)) => v.0,
            None => Arc::new([0u8; BLOCK_SIZE]),
        }
    }

    /// An image of the current content.
    pub fn image(&self) -> MetaImage {
        MetaImage::new(self.nr_blocks, self.blocks.clone())
    }

    /// Applies write entry `e` (payload `data`, sector size `s`) and returns the
    /// blocks it changed with their new content.
    pub fn apply(&mut self, e: &Entry, data: &[u8], s: u64) -> Vec<(u64, Arc<Block>)> {
        let bs = BLOCK_SIZE as u64;
        let start = e.sector * s;
        let end = start + data.len() as u64;
        let mut out = Vec::new();
        let mut b = start / bs;
        while b * bs < end {
            let lo = start.max(b * bs);
            let hi = end.min((b + 1) * bs);
            let mut blk = if lo == b * bs && hi == (b + 1) * bs {
                [0u8; BLOCK_SIZE]
            } else {
                *self.block(b)
            };
            blk[(lo - b * bs) as usize..(hi - b * bs) as usize]
                .copy_from_slice(&data[(lo - start) as usize..(hi - start) as usize]);
            let blk = Arc::new(blk);
            self.blocks.insert(b, b + 1, e.index, MetaVal(blk.clone()));
            out.push((b, blk));
            b += 1;
        }
        out
    }

    /// Applies entry `e` of `log` (writes and discards; marks and flushes
    /// change no block); true when it wrote the superblock (block 0).
    pub fn step<R: LogSource>(&mut self, log: &Log<R>, e: &Entry) -> std::io::Result<bool> {
        let s = log.sector_size as u64;
        if e.is_discard() {
            self.discard(e, s);
        } else if e.is_write() {
            let data = log.payload(e)?;
            self.apply(e, &data, s);
            return Ok(e.sector * s < BLOCK_SIZE as u64);
        }
        Ok(false)
    }

    /// Applies a discard: the blocks read back as zeroes (partly covered
    /// blocks are zeroed in the covered part). Returns the blocks it changed,
    /// with their new content: only written blocks that held something other
    /// than zeroes there, so a discard of a whole device costs what the device
    /// holds, not what it measures.
    pub fn discard(&mut self, e: &Entry, s: u64) -> Vec<(u64, Arc<Block>)> {
        let bs = BLOCK_SIZE as u64;
        let start = e.sector.saturating_mul(s);
        let end = e.sector.saturating_add(e.nr_sectors).saturating_mul(s);
        let zero = Arc::new([0u8; BLOCK_SIZE]);
        let mut out = Vec::new();
        let written: Vec<(u64, u64, Arc<Block>)> = self
            .blocks
            .extents(start / bs, end.div_ceil(bs))
            .map(|(a, b, _, v)| (a, b, v.0))
            .collect();
        for (a, z, old) in written {
            for b in a..z {
                let (lo, hi) = (start.max(b * bs), end.min((b + 1) * bs));
                let range = (lo - b * bs) as usize..(hi - b * bs) as usize;
                if old[range.clone()].iter().all(|&x| x == 0) {
                    continue;
                }
                let blk = if range.len() == BLOCK_SIZE {
                    zero.clone()
                } else {
                    let mut blk = *old;
                    blk[range].fill(0);
                    Arc::new(blk)
                };
                self.blocks.insert(b, b + 1, e.index, MetaVal(blk.clone()));
                out.push((b, blk));
            }
        }
        out
    }
}

/// The metadata device's size in blocks for a log: the largest of the base's
/// and what the log's writes and superblocks (the space map's `nr_blocks`)
/// imply.
pub fn meta_nr_blocks<R: LogSource>(log: &Log<R>, base_blocks: Option<u64>) -> u64 {
    let s = log.sector_size as u64;
    let bs = BLOCK_SIZE as u64;
    let mut n = base_blocks.unwrap_or(0);
    for e in &log.entries {
        if e.nr_sectors == 0 || e.is_mark() {
            continue;
        }
        n = n.max(
            (e.sector.saturating_add(e.nr_sectors))
                .saturating_mul(s)
                .div_ceil(bs),
        );
        if e.sector == 0 && e.is_write() && e.nr_sectors * s >= bs {
            if let Ok(p) = log.payload(e) {
                let mut b = [0u8; BLOCK_SIZE];
                b.copy_from_slice(&p[..BLOCK_SIZE]);
                let sm = crate::pdata::space_map::SmRoot::decode(&b);
                // A sane space map only: a damaged superblock must not make the
                // device absurdly large.
                if sm.nr_blocks <= 1 << 32 {
                    n = n.max(sm.nr_blocks);
                }
            }
        }
    }
    n.max(1)
}

/// The largest metadata device the targets accept: 16 GiB of 4 KiB blocks
/// (`DM_CLONE_METADATA_MAX_SECTORS`, dm-era's space map limit).
pub const MAX_META_BLOCKS: u64 = 1 << 22;

/// Checks that every entry of a metadata log lies on a device of `nr_blocks`
/// blocks, and that the device is no larger than a metadata device can be.
pub fn check_meta_log<R: LogSource>(
    log: &Log<R>,
    nr_blocks: u64,
    name: &str,
) -> Result<(), VerifyError> {
    if nr_blocks > MAX_META_BLOCKS {
        return Err(VerifyError::Input(format!(
            "{name}: the log writes {nr_blocks} metadata blocks, past the largest metadata device ({MAX_META_BLOCKS} blocks of 4 KiB)"
        )));
    }
    log.check_bounds(nr_blocks * BLOCK_SIZE as u64)
        .map_err(log_err(name))
}

/// Reads a base image (a metadata device's content before logging began).
pub fn read_base(path: &std::path::Path) -> Result<(u64, ExtentMap<MetaVal>), VerifyError> {
    use std::io::Read;
    let err = |e: std::io::Error| VerifyError::Input(format!("{}: {e}", path.display()));
    let mut f = std::fs::File::open(path).map_err(err)?;
    let mut map = ExtentMap::new();
    let mut b = 0u64;
    loop {
        let mut blk = [0u8; BLOCK_SIZE];
        let mut got = 0;
        while got < BLOCK_SIZE {
            let n = f.read(&mut blk[got..]).map_err(err)?;
            if n == 0 {
                break;
            }
            got += n;
        }
        if got == 0 {
            break;
        }
        if blk.iter().any(|&x| x != 0) {
            map.insert(b, b + 1, 0, MetaVal(Arc::new(blk)));
        }
        b += 1;
        if got < BLOCK_SIZE {
            break;
        }
    }
    Ok((b, map))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logwrites::DISCARD;

    fn discard(index: u64, sector: u64, nr_sectors: u64) -> Entry {
        Entry {
            index,
            pos: 0,
            sector,
            nr_sectors,
            flags: DISCARD,
            label: None,
        }
    }

    fn block(fill: u8) -> Arc<Block> {
        Arc::new([fill; BLOCK_SIZE])
    }

    #[test]
    fn a_discard_changes_only_written_blocks_that_hold_something() {
        let mut st = MetaState::new(1 << 40, ExtentMap::new());
        for b in [3, 4, 9] {
            st.blocks.insert(b, b + 1, 1, MetaVal(block(0xaa)));
        }
        st.blocks.insert(5, 6, 1, MetaVal(block(0)));
        // Blocks 0..2^40 (512-byte sectors): only blocks 3, 4 and 9 change,
        // however large the device.
        let changed = st.discard(&discard(7, 0, 8 << 40), 512);
        let at: Vec<u64> = changed.iter().map(|(b, _)| *b).collect();
        assert_eq!(at, [3, 4, 9]);
        assert!(changed.iter().all(|(_, d)| d.iter().all(|&x| x == 0)));
        assert!((0..12).all(|b| st.block(b).iter().all(|&x| x == 0)));
        // A discard of zeroes changes nothing.
        assert!(st.discard(&discard(8, 0, 80), 512).is_empty());
    }

    #[test]
    fn a_discard_zeroes_only_the_covered_part_of_a_block() {
        let mut st = MetaState::new(16, ExtentMap::new());
        st.blocks.insert(2, 3, 1, MetaVal(block(0xaa)));
        // Sectors 17..18 of 512 bytes: bytes 512..1024 of block 2.
        let changed = st.discard(&discard(2, 17, 1), 512);
        assert_eq!(changed.len(), 1);
        let b = st.block(2);
        assert!(b[..512].iter().all(|&x| x == 0xaa));
        assert!(b[512..1024].iter().all(|&x| x == 0));
        assert!(b[1024..].iter().all(|&x| x == 0xaa));
        // The same part again: already zeroes.
        assert!(st.discard(&discard(3, 17, 1), 512).is_empty());
    }
}
