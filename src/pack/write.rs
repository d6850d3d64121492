//! Writing a pack file: the header, then the blocks in chunks of
//! [`BLOCKS_PER_CHUNK`], each chunk one zlib stream.

use std::io::{self, Write};

use flate2::write::ZlibEncoder;
use flate2::Compression;

use super::format::{encode_header, BLOCKS_PER_CHUNK};
use super::vm::encode_block;
use crate::io::Block;

/// A pack being written to `W`.
pub struct PackWriter<W: Write> {
    out: W,
    /// The current chunk's entries, uncompressed.
    entries: Vec<u8>,
    in_chunk: usize,
    blocks: u64,
    bytes: u64,
}

impl<W: Write> PackWriter<W> {
    /// Writes the header of an image of `nr_blocks` blocks.
    pub fn new(mut out: W, nr_blocks: u64) -> io::Result<Self> {
        let h = encode_header(nr_blocks);
        out.write_all(&h)?;
        Ok(PackWriter {
            out,
            entries: Vec::with_capacity(1 << 20),
            in_chunk: 0,
            blocks: 0,
            bytes: h.len() as u64,
        })
    }

    /// Adds block `b` of the image.
    pub fn add(&mut self, b: u64, block: &Block) -> io::Result<()> {
        self.entries.extend_from_slice(&b.to_le_bytes());
        encode_block(block, &mut self.entries);
        self.in_chunk += 1;
        self.blocks += 1;
        if self.in_chunk == BLOCKS_PER_CHUNK {
            self.end_chunk()?;
        }
        Ok(())
    }

    fn end_chunk(&mut self) -> io::Result<()> {
        if self.in_chunk == 0 {
            return Ok(());
        }
        let mut z = ZlibEncoder::new(
            Vec::with_capacity(self.entries.len() / 2),
            Compression::default(),
        );
        z.write_all(&self.entries)?;
        let data = z.finish()?;
        self.out.write_all(&(data.len() as u64).to_le_bytes())?;
        self.out.write_all(&data)?;
        self.bytes += 8 + data.len() as u64;
        self.entries.clear();
        self.in_chunk = 0;
        Ok(())
    }

    /// Writes the last chunk; returns the output, the blocks packed and the size of
    /// the pack in bytes.
    pub fn finish(mut self) -> io::Result<(W, u64, u64)> {
        self.end_chunk()?;
        self.out.flush()?;
        Ok((self.out, self.blocks, self.bytes))
    }
}
