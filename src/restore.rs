//! What the restore tools share: the error type, the size check, and the safe
//! start of a restore (PERSISTENT-DATA.md §9): an existing superblock is zeroed
//! and flushed before anything else is written, so a restore that stops half-way
//! leaves a device no tool accepts instead of a superblock pointing at
//! half-written blocks. The end is the transaction manager's commit: every other
//! block, flush, superblock, flush.

use std::fmt;
use std::io::Read;

use crate::io::{zeroed_block, BlockDevice, BLOCK_SIZE};
use crate::pdata::space_map::writer::SmError;
use crate::pdata::space_map::{ENTRIES_PER_BITMAP, MAX_METADATA_BLOCKS};
use crate::pdata::tm::{TmError, TransactionManager};
use crate::superblock::SUPERBLOCK_LOCATION;
use crate::xml_reader::{XmlError, XmlIn};

/// Why a restore failed.
#[derive(Debug)]
pub enum RestoreError {
    /// The XML is malformed or describes impossible metadata.
    Xml(XmlError),
    /// The output device is too small.
    TooSmall {
        /// Blocks the metadata needs (the device size that suffices).
        needed_blocks: u64,
        /// Blocks the device has.
        have_blocks: u64,
    },
    /// Writing failed.
    Write(TmError),
}

impl fmt::Display for RestoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestoreError::Xml(e) => write!(f, "{e}"),
            RestoreError::TooSmall {
                needed_blocks,
                have_blocks,
            } => write!(
                f,
                "Output file too small: it has {have_blocks} blocks of 4096 bytes ({} bytes), the metadata needs at least {needed_blocks} blocks ({} bytes)",
                have_blocks * BLOCK_SIZE as u64,
                needed_blocks * BLOCK_SIZE as u64
            ),
            RestoreError::Write(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for RestoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // Display already includes the inner error's text.
        None
    }
}

impl From<XmlError> for RestoreError {
    fn from(e: XmlError) -> Self {
        RestoreError::Xml(e)
    }
}

impl From<TmError> for RestoreError {
    fn from(e: TmError) -> Self {
        RestoreError::Write(e)
    }
}

/// What a restore wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RestoreSummary {
    /// Metadata blocks in use afterwards.
    pub blocks_used: u64,
    /// Blocks the space map tracks.
    pub nr_blocks: u64,
    /// Blocks written (the superblock included).
    pub blocks_written: u64,
}

/// Progress callback: bytes of input consumed so far.
pub type Progress<'a> = &'a dyn Fn(u64);

/// Runs `f` on the XML of `input`, which a second thread reads and scans
/// meanwhile ([`XmlIn::parallel`]); the thread ends with `f`.
pub fn with_xml<R: Read + Send, T>(
    input: R,
    f: impl FnOnce(XmlIn<'_>) -> Result<T, RestoreError>,
) -> Result<T, RestoreError> {
    std::thread::scope(|s| f(XmlIn::parallel(s, input)))
}

/// The smallest device (in blocks) that holds `data_blocks` blocks of target
/// metadata plus the superblock and a space map covering the whole device.
pub fn needed_blocks(data_blocks: u64) -> u64 {
    // superblock + index + ref-count leaf + bitmaps + data; the bitmaps depend on
    // the device size itself, so iterate to the fixed point.
    let mut n = 4 + data_blocks;
    loop {
        let tracked = n.min(MAX_METADATA_BLOCKS);
        let want = 3 + tracked.div_ceil(ENTRIES_PER_BITMAP) + data_blocks;
        if want <= n {
            return n;
        }
        n = want;
    }
}

/// Refuses a device smaller than `needed` blocks of target data (in addition to
/// the superblock and the space map).
pub fn check_size(dev: &dyn BlockDevice, data_blocks: u64) -> Result<(), RestoreError> {
    let have = dev.nr_blocks();
    let tracked = have.min(MAX_METADATA_BLOCKS);
    let fits = tracked >= 3 + tracked.div_ceil(ENTRIES_PER_BITMAP) + data_blocks;
    if !fits {
        return Err(RestoreError::TooSmall {
            needed_blocks: needed_blocks(data_blocks),
            have_blocks: have,
        });
    }
    Ok(())
}

/// Starts a restore on `dev`: zeroes block 0 and flushes (so no old superblock
/// survives a failed restore), then formats a fresh space map in memory.
pub fn begin<D: BlockDevice>(dev: D) -> Result<TransactionManager<D>, RestoreError> {
    let mut tm = TransactionManager::format(dev)?;
    tm.write_raw_and_flush(SUPERBLOCK_LOCATION, &zeroed_block())?;
    Ok(tm)
}

/// True when `e` is the space map running out of blocks.
pub fn is_no_space(e: &TmError) -> bool {
    matches!(e, TmError::Sm(SmError::NoSpace { .. }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needed_blocks_counts_the_bitmaps() {
        assert_eq!(needed_blocks(10), 14);
        let n = needed_blocks(16320);
        assert_eq!(n, 3 + 2 + 16320);
        assert!(check_size(&crate::io::MemDevice::new(n), 16320).is_ok());
        assert!(check_size(&crate::io::MemDevice::new(n - 1), 16320).is_err());
    }
}
