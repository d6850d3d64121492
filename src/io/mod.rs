//! Block I/O: every access to a metadata device goes through [`BlockDevice`], in
//! 4096-byte metadata blocks (PERSISTENT-DATA.md §1, §3).
//!
//! Two backends live here: [`FileDevice`] (a regular file or a block device) and
//! [`MemDevice`] (an in-memory image shared by tests and tools that build an image
//! before writing it out).

mod fault;
mod file;
mod mem;

pub use fault::{FaultDevice, FaultMode};
pub use file::{is_block_device, FileDevice};
pub use mem::MemDevice;

use std::io;
use std::sync::Arc;

/// Size of one metadata block in bytes (PERSISTENT-DATA.md §1).
pub const BLOCK_SIZE: usize = 4096;

/// One metadata block.
pub type Block = [u8; BLOCK_SIZE];

/// Allocates a zero-filled block on the heap.
pub fn zeroed_block() -> Box<Block> {
    Box::new([0u8; BLOCK_SIZE])
}

/// A zero-filled block that can be shared without copying.
pub fn zeroed_shared_block() -> Arc<Block> {
    Arc::new([0u8; BLOCK_SIZE])
}

/// A device addressed in metadata blocks.
///
/// `flush` is the REQ_PREFLUSH point of PERSISTENT-DATA.md §3: writes that completed
/// before it are durable once it returns.
pub trait BlockDevice: Send + Sync {
    /// Number of whole 4096-byte blocks on the device.
    fn nr_blocks(&self) -> u64;
    /// Reads block `b` into `buf`. Reading past the end is an error.
    fn read(&self, b: u64, buf: &mut Block) -> io::Result<()>;
    /// Writes `buf` to block `b`.
    fn write(&self, b: u64, buf: &Block) -> io::Result<()>;
    /// Makes every completed write durable.
    fn flush(&self) -> io::Result<()>;

    /// Reads block `b` as a shared block. Devices that keep blocks in memory
    /// hand out their own copy; the default reads into a new block.
    fn read_shared(&self, b: u64) -> io::Result<Arc<Block>> {
        let mut blk = zeroed_shared_block();
        self.read(b, Arc::make_mut(&mut blk))?;
        Ok(blk)
    }

    /// Writes `buf` to block `b`, like [`write`](Self::write). Devices that keep
    /// blocks in memory may keep `buf` itself instead of copying it (the caller
    /// must not change it afterwards other than through `Arc::make_mut`).
    fn write_shared(&self, b: u64, buf: &Arc<Block>) -> io::Result<()> {
        self.write(b, buf)
    }
}

impl<D: BlockDevice + ?Sized> BlockDevice for &D {
    fn nr_blocks(&self) -> u64 {
        (**self).nr_blocks()
    }
    fn read(&self, b: u64, buf: &mut Block) -> io::Result<()> {
        (**self).read(b, buf)
    }
    fn write(&self, b: u64, buf: &Block) -> io::Result<()> {
        (**self).write(b, buf)
    }
    fn flush(&self) -> io::Result<()> {
        (**self).flush()
    }
    fn read_shared(&self, b: u64) -> io::Result<Arc<Block>> {
        (**self).read_shared(b)
    }
    fn write_shared(&self, b: u64, buf: &Arc<Block>) -> io::Result<()> {
        (**self).write_shared(b, buf)
    }
}

/// Error for an access beyond the end of a device.
pub(crate) fn out_of_range(b: u64, nr_blocks: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("block {b} is beyond the end of the device ({nr_blocks} blocks)"),
    )
}
