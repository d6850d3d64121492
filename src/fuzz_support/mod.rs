//! Entry points for coverage-guided fuzzing (`fuzz/`) and for the corpus replay
//! that `cargo test` runs on stable: both call [`run`] with the same target name,
//! so a corpus file exercises the same code in both.
//!
//! Each target takes arbitrary bytes and must return: with findings, errors or
//! nothing, never a panic, a hang or unbounded memory. Where the library promises
//! more than that, the target checks it and panics when the promise is broken (the
//! fuzzer's crash): a restore that succeeds writes metadata that checks clean and
//! dumps to XML restoring byte for byte the same image; a repair that succeeds
//! writes metadata that checks clean; metadata that checks clean dumps; a printed
//! trace parses back to the same trace.
//!
//! Two input formats carry metadata devices:
//!
//! * raw ([`raw_device`]): the first blocks of an image, then an optional `u32`
//!   giving the device's size in blocks (the rest reads as zeroes). Mutations reach
//!   the checksums, so most are rejected there.
//! * sparse ([`sparse_device`]): a 36-byte header (device size `u32`, four `u64`
//!   parameters the block targets read as root pointers and counts) and records of
//!   `loc: u32, kind: u8, 4096 bytes`. Each record is re-stamped ([`restamp`]) with
//!   the checksum of its kind at its location before it is read, so mutations reach
//!   the structure decoders behind the checksum.

mod blocks;
mod image;
pub mod seeds;
mod text;
mod xml;

use crate::io::{Block, BlockDevice, MemDevice, BLOCK_SIZE};
use crate::pdata::checksum::{expected_csum, kind_of, stamp, BlockKind};
use crate::pdata::{le32, le64, put_le32, put_le64};

/// Largest device a fuzz input may describe, in blocks (256 MiB, held sparsely).
pub const MAX_FUZZ_BLOCKS: u64 = 1 << 16;

/// Size of the sparse format's header.
pub const SPARSE_HEADER: usize = 36;

/// Size of one sparse record: location, kind, block.
pub const SPARSE_RECORD: usize = 5 + BLOCK_SIZE;

/// In a record's kind byte: fix the checksum only and keep the stored `blocknr`.
pub const KEEP_BLOCKNR: u8 = 0x80;

/// A fuzz target: its name (the file in `fuzz/fuzz_targets/` and the corpus
/// directory) and its body.
pub struct FuzzTarget {
    /// Name, as `cargo fuzz run NAME` takes it.
    pub name: &'static str,
    /// What it exercises.
    pub about: &'static str,
    /// The body.
    pub run: fn(&[u8]),
}

/// Every target.
pub const TARGETS: &[FuzzTarget] = &[
    FuzzTarget {
        name: "block_superblock",
        about: "dm-clone and dm-era superblock decoders and their checks",
        run: blocks::superblock,
    },
    FuzzTarget {
        name: "block_btree",
        about: "B-tree nodes: header, key order and ranges, depth, cycles",
        run: blocks::btree,
    },
    FuzzTarget {
        name: "block_array",
        about: "dm-array: index tree and array blocks, checked and read by cursor",
        run: blocks::array,
    },
    FuzzTarget {
        name: "block_bitset",
        about: "dm-bitset: words scanned and read bit by bit",
        run: blocks::bitset,
    },
    FuzzTarget {
        name: "block_space_map",
        about: "space-map index, bitmap and overflow-tree blocks",
        run: blocks::space_map,
    },
    FuzzTarget {
        name: "image_raw",
        about: "checkers, dumpers, era_invalidate and repairs on raw-mutated images",
        run: image::raw,
    },
    FuzzTarget {
        name: "image_stamped",
        about: "the same on images whose blocks are re-stamped after mutation",
        run: image::stamped,
    },
    FuzzTarget {
        name: "clone_xml",
        about: "clone_restore's XML reader and restore into memory",
        run: xml::clone,
    },
    FuzzTarget {
        name: "era_xml",
        about: "era_restore's XML reader and restore into memory",
        run: xml::era,
    },
    FuzzTarget {
        name: "dmtrace",
        about: "the dmtrace parser and canonical printer",
        run: text::dmtrace,
    },
    FuzzTarget {
        name: "replay",
        about: "the reference models and crash-state checks on parsed traces",
        run: text::replay,
    },
    FuzzTarget {
        name: "logwrites",
        about: "the dm-log-writes reader and the metadata-log verifier",
        run: text::logwrites,
    },
];

/// Runs target `name` on `data`; false when there is no such target.
pub fn run(name: &str, data: &[u8]) -> bool {
    match TARGETS.iter().find(|t| t.name == name) {
        Some(t) => {
            (t.run)(data);
            true
        }
        None => false,
    }
}

/// The kind a record's kind byte names (`1..=6`, in [`BlockKind::ALL`] order).
pub fn kind_from_byte(k: u8) -> Option<BlockKind> {
    match (k & !KEEP_BLOCKNR) as usize {
        0 => None,
        i => BlockKind::ALL.get(i - 1).copied(),
    }
}

/// The kind byte of `kind` (0 for none).
pub fn kind_byte(kind: Option<BlockKind>) -> u8 {
    kind.and_then(|k| BlockKind::ALL.iter().position(|&x| x == k))
        .map_or(0, |i| i as u8 + 1)
}

/// Fixes the checksum of block `b` at `loc` for the kind its kind byte names: the
/// self-location too, unless [`KEEP_BLOCKNR`] is set. A block of no kind is left.
pub fn restamp(b: &mut Block, loc: u64, kind: u8) {
    let Some(k) = kind_from_byte(kind) else {
        return;
    };
    if kind & KEEP_BLOCKNR != 0 {
        let c = expected_csum(b, k);
        put_le32(b, 0, c);
    } else {
        stamp(b, loc, k);
    }
}

/// A device from the raw format: whole blocks, then optionally the device size.
pub fn raw_device(data: &[u8]) -> MemDevice {
    let whole = data.len() / BLOCK_SIZE;
    let tail = &data[whole * BLOCK_SIZE..];
    let size = if tail.len() >= 4 {
        le32(tail, 0) as u64
    } else {
        whole as u64
    };
    let dev = MemDevice::new(size.clamp(1, MAX_FUZZ_BLOCKS));
    for (i, chunk) in data.chunks_exact(BLOCK_SIZE).enumerate() {
        if (i as u64) >= dev.nr_blocks() {
            break;
        }
        let b: &Block = chunk.try_into().expect("a whole block");
        dev.write(i as u64, b).expect("within the device");
    }
    dev
}

/// Encodes a raw-format input: the first `nr_used` blocks of `img`, then the
/// device's size.
pub fn raw_input(img: &[u8], nr_used: usize) -> Vec<u8> {
    let mut v = img[..nr_used * BLOCK_SIZE].to_vec();
    v.extend_from_slice(&((img.len() / BLOCK_SIZE) as u32).to_le_bytes());
    v
}

/// A device from the sparse format, and the header's four parameters; `None` when
/// the input is shorter than the header.
pub fn sparse_device(data: &[u8]) -> Option<(MemDevice, [u64; 4])> {
    if data.len() < SPARSE_HEADER {
        return None;
    }
    let size = (le32(data, 0) as u64).clamp(1, MAX_FUZZ_BLOCKS);
    let params = [0, 1, 2, 3].map(|i| le64(data, 4 + 8 * i));
    let dev = MemDevice::new(size);
    for rec in data[SPARSE_HEADER..].chunks(SPARSE_RECORD) {
        if rec.len() < 5 {
            break;
        }
        let loc = le32(rec, 0) as u64;
        if loc >= size {
            continue;
        }
        let mut b = [0u8; BLOCK_SIZE];
        b[..rec.len() - 5].copy_from_slice(&rec[5..]);
        restamp(&mut b, loc, rec[4]);
        dev.write(loc, &b).expect("within the device");
    }
    Some((dev, params))
}

/// Encodes a sparse-format input: device size, parameters, and one record per
/// block given, its kind taken from its checksum.
pub fn sparse_input(nr_blocks: u64, params: [u64; 4], blocks: &[(u64, &Block)]) -> Vec<u8> {
    let mut v = vec![0u8; SPARSE_HEADER];
    put_le32(&mut v, 0, nr_blocks.min(u32::MAX as u64) as u32);
    for (i, p) in params.iter().enumerate() {
        put_le64(&mut v, 4 + 8 * i, *p);
    }
    for (loc, b) in blocks {
        v.extend_from_slice(&(*loc as u32).to_le_bytes());
        v.push(kind_byte(kind_of(b)));
        v.extend_from_slice(&b[..]);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdata::checksum::verify;

    #[test]
    fn restamp_fixes_the_checksum_of_the_named_kind() {
        for (i, kind) in BlockKind::ALL.iter().enumerate() {
            let mut b = [7u8; BLOCK_SIZE];
            restamp(&mut b, 9, i as u8 + 1);
            assert_eq!(verify(&b, 9, *kind), Ok(()));
            let mut c = [7u8; BLOCK_SIZE];
            restamp(&mut c, 9, (i as u8 + 1) | KEEP_BLOCKNR);
            assert_eq!(kind_of(&c), Some(*kind));
            assert!(verify(&c, 9, *kind).is_err(), "blocknr kept");
        }
        let mut b = [7u8; BLOCK_SIZE];
        restamp(&mut b, 9, 0);
        restamp(&mut b, 9, 42);
        assert_eq!(b, [7u8; BLOCK_SIZE]);
    }

    #[test]
    fn sparse_and_raw_inputs_round_trip() {
        let mut blk = [0u8; BLOCK_SIZE];
        blk[100] = 1;
        stamp(&mut blk, 3, BlockKind::BtreeNode);
        let input = sparse_input(20, [1, 2, 3, 4], &[(3, &blk)]);
        let (dev, params) = sparse_device(&input).unwrap();
        assert_eq!(params, [1, 2, 3, 4]);
        assert_eq!(dev.nr_blocks(), 20);
        let mut got = [0u8; BLOCK_SIZE];
        dev.read(3, &mut got).unwrap();
        assert_eq!(got, blk);
        // A record past the device is dropped; a short one is zero-padded.
        let mut input = sparse_input(4, [0; 4], &[(9, &blk)]);
        input.extend_from_slice(&[2, 0, 0, 0, 0, 5]);
        let (dev, _) = sparse_device(&input).unwrap();
        dev.read(2, &mut got).unwrap();
        assert_eq!(got[0], 5);
        assert!(got[1..].iter().all(|&x| x == 0));

        let mut img = vec![0u8; 8 * BLOCK_SIZE];
        img[BLOCK_SIZE + 5] = 9;
        let dev = raw_device(&raw_input(&img, 2));
        assert_eq!(dev.to_bytes(), img);
        assert_eq!(raw_device(&[1, 2]).nr_blocks(), 1);
        assert_eq!(raw_device(&[0xff; 4]).nr_blocks(), MAX_FUZZ_BLOCKS);
    }
}
