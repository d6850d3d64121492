//! Reading a pack file. Nothing in it is trusted: every length is checked against
//! what the file holds, every compressed stream must reach its end marker with its
//! checksum, every program must produce exactly one block, and every block number
//! must lie inside the image and appear once. Errors say where (see [`Where`]).

use std::collections::HashSet;
use std::io::{self, Read};

use flate2::{Decompress, FlushDecompress, Status};

use super::error::{Damage, PackError, Where};
use super::format::{decode_header, HEADER_SIZE, HEAD_SIZE, MAGIC, MAX_CHUNK_DATA};
use super::vm::decode_block;
use crate::io::{zeroed_block, Block};

/// A pack file being read, with the offset reached.
pub struct PackReader<'r> {
    r: &'r mut dyn Read,
    pos: u64,
    nr_blocks: u64,
}

impl<'r> PackReader<'r> {
    /// Reads and validates the header.
    pub fn open(r: &'r mut dyn Read) -> Result<Self, PackError> {
        let mut me = PackReader {
            r,
            pos: 0,
            nr_blocks: 0,
        };
        let mut head = [0u8; HEAD_SIZE];
        let mut n = me.fill(&mut head[..HEADER_SIZE])?;
        let pack_magic = n >= 8 && head[..8] == MAGIC.to_le_bytes();
        if n == HEADER_SIZE && !pack_magic {
            // Not a pack: read on to where a superblock's magic would be, to say
            // what it is instead.
            n += me.fill(&mut head[HEADER_SIZE..])?;
        }
        me.nr_blocks = decode_header(&head[..n])?;
        Ok(me)
    }

    /// Blocks in the image (from the header).
    pub fn nr_blocks(&self) -> u64 {
        self.nr_blocks
    }

    /// Reads every chunk to the end of the file, handing each block to `visit`
    /// (in the pack's order). Returns the number of blocks. An error from `visit`
    /// is [`PackError::Write`].
    pub fn read_blocks(
        mut self,
        visit: &mut dyn FnMut(u64, &Block) -> io::Result<()>,
    ) -> Result<u64, PackError> {
        let mut seen = HashSet::new();
        let mut block = zeroed_block();
        let mut index = 0u64;
        loop {
            let at = self.pos;
            let chunk = Where::Chunk { index, at };
            let mut len = [0u8; 8];
            match self.fill(&mut len)? {
                0 => return Ok(seen.len() as u64),
                8 => {}
                n => return Err(truncated(chunk, 8, n as u64)),
            }
            let len = u64::from_le_bytes(len);
            let mut compressed = Vec::new();
            let got = (&mut *self.r)
                .take(len)
                .read_to_end(&mut compressed)
                .map_err(|source| PackError::ReadPack {
                    at: self.pos,
                    source,
                })?;
            self.pos += got as u64;
            if (got as u64) < len {
                return Err(truncated(chunk, len, got as u64));
            }
            let data =
                inflate(&compressed).map_err(|damage| PackError::Corrupt { at: chunk, damage })?;
            let mut off = 0usize;
            let mut entry = 0u64;
            while off < data.len() {
                let mut place = Where::Entry {
                    chunk: index,
                    at,
                    entry,
                    block: None,
                    offset: off,
                };
                let Some(nr) = data.get(off..off + 8) else {
                    return Err(truncated(place, 8, (data.len() - off) as u64));
                };
                let b = u64::from_le_bytes(nr.try_into().expect("8 bytes"));
                if let Where::Entry { block, .. } = &mut place {
                    *block = Some(b);
                }
                let bad = |damage| PackError::Corrupt { at: place, damage };
                if b >= self.nr_blocks {
                    return Err(bad(Damage::OutOfRange {
                        block: b,
                        nr_blocks: self.nr_blocks,
                    }));
                }
                if !seen.insert(b) {
                    return Err(bad(Damage::Duplicate(b)));
                }
                let prog = off + 8;
                let used = decode_block(&data[prog..], &mut block).map_err(|(at, e)| {
                    let mut place = place;
                    if let Where::Entry { offset, .. } = &mut place {
                        *offset = prog + at;
                    }
                    PackError::Corrupt {
                        at: place,
                        damage: Damage::Program(e),
                    }
                })?;
                visit(b, &block).map_err(PackError::Write)?;
                off = prog + used;
                entry += 1;
            }
            index += 1;
        }
    }

    /// Reads until `buf` is full or the file ends; returns the bytes read.
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, PackError> {
        let mut n = 0;
        while n < buf.len() {
            match self.r.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(PackError::ReadPack {
                        at: self.pos + n as u64,
                        source,
                    })
                }
            }
        }
        self.pos += n as u64;
        Ok(n)
    }
}

fn truncated(at: Where, needed: u64, found: u64) -> PackError {
    PackError::Corrupt {
        at,
        damage: Damage::Truncated { needed, found },
    }
}

/// Decompresses one zlib stream that must fill `input` exactly.
fn inflate(input: &[u8]) -> Result<Vec<u8>, Damage> {
    let mut z = Decompress::new(true);
    let mut out: Vec<u8> = Vec::with_capacity((input.len() * 4).clamp(4096, MAX_CHUNK_DATA));
    loop {
        if out.len() == out.capacity() {
            if out.len() >= MAX_CHUNK_DATA {
                return Err(Damage::TooLarge {
                    limit: MAX_CHUNK_DATA,
                });
            }
            out.reserve_exact(out.capacity().min(MAX_CHUNK_DATA - out.len()));
        }
        let (in_before, out_before) = (z.total_in(), out.len());
        let rest = &input[in_before as usize..];
        let status = z
            .decompress_vec(rest, &mut out, FlushDecompress::None)
            .map_err(|e| Damage::Zlib(e.to_string()))?;
        match status {
            Status::StreamEnd if out.len() > MAX_CHUNK_DATA => {
                return Err(Damage::TooLarge {
                    limit: MAX_CHUNK_DATA,
                })
            }
            Status::StreamEnd => break,
            Status::Ok | Status::BufError => {
                let stuck = z.total_in() == in_before && out.len() == out_before;
                if stuck && out.len() < out.capacity() {
                    // Room to write and nothing consumed: the input is used up.
                    return Err(Damage::ZlibTruncated);
                }
            }
        }
    }
    let left = input.len() as u64 - z.total_in();
    if left > 0 {
        return Err(Damage::Trailing(left));
    }
    Ok(out)
}
