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
use crate::pdata::space_map::MAX_METADATA_BLOCKS;
use crate::pdata::tm::{TmError, TransactionManager};
use crate::sizing::Sizing;
use crate::superblock::SUPERBLOCK_LOCATION;
use crate::xml_reader::{XmlError, XmlIn};

/// Why a restore failed.
#[derive(Debug)]
pub enum RestoreError {
    /// The XML is malformed or describes impossible metadata.
    Xml(XmlError),
    /// The output device is smaller than the kernel needs to run the target
    /// (the figure of `clone_metadata_size` / `era_metadata_size`).
    TooSmall {
        /// What the geometry needs.
        sizing: Sizing,
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
                sizing,
                have_blocks,
            } => {
                let need = sizing.required_blocks();
                write!(
                    f,
                    "Output file too small: it has {have_blocks} blocks of 4096 bytes ({} bytes); the kernel needs at least {need} blocks ({} bytes) to run this target and commit on it (`{}`)",
                    have_blocks * BLOCK_SIZE as u64,
                    need * BLOCK_SIZE as u64,
                    sizing.sized_for.command()
                )?;
                if !sizing.addressable() {
                    write!(
                        f,
                        "; its worst case is {} blocks, more than the {MAX_METADATA_BLOCKS} the kernel addresses",
                        sizing.blocks
                    )?;
                }
                Ok(())
            }
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

/// Refuses a device smaller than `sizing` requires (the blocks past what the
/// kernel addresses do not count).
pub fn check_size(dev: &dyn BlockDevice, sizing: &Sizing) -> Result<(), RestoreError> {
    if fits(dev, sizing) {
        Ok(())
    } else {
        Err(RestoreError::TooSmall {
            sizing: sizing.clone(),
            have_blocks: dev.nr_blocks(),
        })
    }
}

/// True when `dev` is as large as `sizing` requires.
pub fn fits(dev: &dyn BlockDevice, sizing: &Sizing) -> bool {
    dev.nr_blocks().min(MAX_METADATA_BLOCKS) >= sizing.required_blocks()
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
    use crate::io::MemDevice;
    use crate::sizing::clone_metadata_blocks;

    #[test]
    fn the_size_check_takes_the_sizing_figure() {
        let s = clone_metadata_blocks(1 << 20);
        assert!(check_size(&MemDevice::new(s.blocks), &s).is_ok());
        let e = check_size(&MemDevice::new(s.blocks - 1), &s).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains(&format!("at least {} blocks", s.blocks))
                && text.contains("clone_metadata_size --nr-regions 1048576"),
            "{text}"
        );
    }
}
