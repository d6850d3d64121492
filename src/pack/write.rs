//! Writing a pack file: the header, then the blocks in chunks of
//! [`BLOCKS_PER_CHUNK`], each chunk one zlib stream. Chunks are encoded and
//! compressed in parallel, a batch of one per thread at a time, and written in
//! order, so the file does not depend on the number of threads.

use std::io::{self, Write};

use flate2::write::ZlibEncoder;
use flate2::Compression;
use rayon::prelude::{IntoParallelRefIterator, ParallelIterator};

use super::format::{encode_header, BLOCKS_PER_CHUNK};
use super::vm::encode_block;
use crate::io::{Block, BLOCK_SIZE};

/// The blocks of one chunk, as read.
#[derive(Default)]
struct Chunk {
    numbers: Vec<u64>,
    data: Vec<u8>,
}

impl Chunk {
    /// The chunk's entries, encoded and compressed.
    fn compress(&self) -> io::Result<Vec<u8>> {
        let mut entries = Vec::with_capacity(self.data.len() / 2);
        for (b, blk) in self.numbers.iter().zip(self.data.chunks_exact(BLOCK_SIZE)) {
            entries.extend_from_slice(&b.to_le_bytes());
            encode_block(blk.try_into().expect("a block"), &mut entries);
        }
        let mut z = ZlibEncoder::new(
            Vec::with_capacity(entries.len() / 4),
            Compression::default(),
        );
        z.write_all(&entries)?;
        z.finish()
    }
}

/// A pack being written to `W`.
pub struct PackWriter<W: Write> {
    out: W,
    /// Full chunks waiting to be compressed, and the one being filled (last).
    batch: Vec<Chunk>,
    batch_len: usize,
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
            batch: vec![Chunk::default()],
            batch_len: rayon::current_num_threads().max(1),
            blocks: 0,
            bytes: h.len() as u64,
        })
    }

    /// Adds block `b` of the image.
    pub fn add(&mut self, b: u64, block: &Block) -> io::Result<()> {
        let c = self.batch.last_mut().expect("a chunk being filled");
        c.numbers.push(b);
        c.data.extend_from_slice(block);
        self.blocks += 1;
        if c.numbers.len() == BLOCKS_PER_CHUNK {
            if self.batch.len() == self.batch_len {
                self.write_batch()?;
            } else {
                self.batch.push(Chunk::default());
            }
        }
        Ok(())
    }

    /// Compresses and writes the chunks held, and starts a new one.
    fn write_batch(&mut self) -> io::Result<()> {
        self.batch.retain(|c| !c.numbers.is_empty());
        let compressed: Vec<io::Result<Vec<u8>>> =
            self.batch.par_iter().map(Chunk::compress).collect();
        for data in compressed {
            let data = data?;
            self.out.write_all(&(data.len() as u64).to_le_bytes())?;
            self.out.write_all(&data)?;
            self.bytes += 8 + data.len() as u64;
        }
        self.batch.clear();
        self.batch.push(Chunk::default());
        Ok(())
    }

    /// Writes the last chunks; returns the output, the blocks packed and the size
    /// of the pack in bytes.
    pub fn finish(mut self) -> io::Result<(W, u64, u64)> {
        self.write_batch()?;
        self.out.flush()?;
        Ok((self.out, self.blocks, self.bytes))
    }
}
