//! An in-memory metadata device.

use std::io;
use std::sync::RwLock;

use super::{out_of_range, Block, BlockDevice, BLOCK_SIZE};

/// A metadata device held in memory. Unwritten blocks read as zeroes.
#[derive(Debug)]
pub struct MemDevice {
    blocks: RwLock<Vec<Option<Box<Block>>>>,
}

impl MemDevice {
    /// A zero-filled device of `nr_blocks` blocks.
    pub fn new(nr_blocks: u64) -> Self {
        let n = usize::try_from(nr_blocks).expect("device size fits in memory");
        MemDevice {
            blocks: RwLock::new((0..n).map(|_| None).collect()),
        }
    }

    /// A device holding `bytes` (a whole image; a partial trailing block is dropped).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let dev = MemDevice::new((bytes.len() / BLOCK_SIZE) as u64);
        {
            let mut blocks = dev.blocks.write().expect("lock");
            for (i, chunk) in bytes.chunks_exact(BLOCK_SIZE).enumerate() {
                if chunk.iter().any(|&x| x != 0) {
                    let mut b = Box::new([0u8; BLOCK_SIZE]);
                    b.copy_from_slice(chunk);
                    blocks[i] = Some(b);
                }
            }
        }
        dev
    }

    /// The whole image as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let blocks = self.blocks.read().expect("lock");
        let mut out = vec![0u8; blocks.len() * BLOCK_SIZE];
        for (i, b) in blocks.iter().enumerate() {
            if let Some(b) = b {
                out[i * BLOCK_SIZE..(i + 1) * BLOCK_SIZE].copy_from_slice(&b[..]);
            }
        }
        out
    }
}

impl BlockDevice for MemDevice {
    fn nr_blocks(&self) -> u64 {
        self.blocks.read().expect("lock").len() as u64
    }

    fn read(&self, b: u64, buf: &mut Block) -> io::Result<()> {
        let blocks = self.blocks.read().expect("lock");
        let n = blocks.len() as u64;
        match blocks.get(usize::try_from(b).unwrap_or(usize::MAX)) {
            Some(Some(data)) => buf.copy_from_slice(&data[..]),
            Some(None) => buf.fill(0),
            None => return Err(out_of_range(b, n)),
        }
        Ok(())
    }

    fn write(&self, b: u64, buf: &Block) -> io::Result<()> {
        let mut blocks = self.blocks.write().expect("lock");
        let n = blocks.len() as u64;
        match blocks.get_mut(usize::try_from(b).unwrap_or(usize::MAX)) {
            Some(slot) => *slot = Some(Box::new(*buf)),
            None => return Err(out_of_range(b, n)),
        }
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
}
