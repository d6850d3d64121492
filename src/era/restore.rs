//! era_restore: fresh dm-era metadata from era XML (ERA.md §4, §12.4).
//!
//! Everything streams: each writeset's bits go word by word into its bitset, and
//! the era array value by value into the array, so memory does not depend on the
//! number of origin blocks or on the size of the XML.
//!
//! Writesets are all archived in the writeset tree, the last one under
//! `current_era`, and the superblock has no current writeset (`root = 0`,
//! `nr_bits = nr_blocks`): the "cleanly suspended" shape that upstream's
//! era_restore writes too. The XML cannot tell an archived writeset of the current
//! era from a committed current one (era_dump prints both the same way), so both
//! choices dump back to the same bytes; this one is also what kernels before 2021
//! understand (they ignore a current writeset on load, HAZARDS.md H-E1), and the
//! next resume starts era `current_era + 1` either way. `flags` is 0, as the
//! kernel writes it.
//!
//! thin-provisioning-tools 0.9.0's era_dump leaves a committed current writeset
//! out, so its dump of a running or crashed target ends at era `current_era - 1`.
//! Such input gets an empty current writeset for `current_era`: without one the
//! eras would not reach the current era (ERA.md §11 rule 9); with it, 0.9.0's
//! era_dump of the result gives back its input byte for byte, the kernel archives
//! it at the next resume, and the blocks written in that era, which the input does
//! not record, are reported as unwritten exactly as the input does.

use std::io::Read;

use crate::era::superblock::{EraSuperblock, WritesetDisk, METADATA_BLOCK_SIZE_SECTORS};
use crate::era::xml::{EraHeader, EraItem, EraXmlReader};
use crate::io::BlockDevice;
use crate::pdata::array_write::{array_blocks, ArrayBuilder};
use crate::pdata::bitset_write::{bitset_blocks, BitsetBuilder};
use crate::pdata::btree::build::{tree_nodes, BTreeBuilder};
use crate::pdata::tm::{TmError, TransactionManager};
use crate::restore::{
    begin, check_size, is_no_space, needed_blocks, with_xml, Progress, RestoreError, RestoreSummary,
};

/// What was restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EraRestored {
    /// The header of the XML.
    pub header: EraHeader,
    /// Number of writesets.
    pub writesets: u64,
}

struct Ws {
    bits: BitsetBuilder,
    word: u64,
    wi: u64,
}

impl Ws {
    fn set<D: BlockDevice>(
        &mut self,
        tm: &mut TransactionManager<D>,
        mut r: u64,
        e: u64,
    ) -> Result<(), TmError> {
        while r < e {
            let w = r / 64;
            self.advance(tm, w)?;
            let lo = r % 64;
            let hi = (e - w * 64).min(64);
            self.word |= if hi - lo == 64 {
                u64::MAX
            } else {
                ((1u64 << (hi - lo)) - 1) << lo
            };
            r = w * 64 + hi;
        }
        Ok(())
    }

    fn advance<D: BlockDevice>(
        &mut self,
        tm: &mut TransactionManager<D>,
        w: u64,
    ) -> Result<(), TmError> {
        while self.wi < w {
            self.bits.push_word(tm, self.word)?;
            self.word = 0;
            self.wi += 1;
        }
        Ok(())
    }
}

/// Restores the era metadata described by `input` onto `dev`. The XML is read
/// and scanned in a second thread while this one builds the metadata.
pub fn restore<R: Read + Send, D: BlockDevice>(
    input: R,
    dev: D,
    progress: Option<Progress<'_>>,
) -> Result<(EraRestored, RestoreSummary), RestoreError> {
    with_xml(input, |x| {
        restore_from(EraXmlReader::open(x)?, dev, progress)
    })
}

fn restore_from<D: BlockDevice>(
    mut xml: EraXmlReader<'_>,
    dev: D,
    progress: Option<Progress<'_>>,
) -> Result<(EraRestored, RestoreSummary), RestoreError> {
    let h = xml.header();
    let array_size = array_blocks(h.nr_blocks as u64, 4);
    check_size(&dev, array_size + 1)?;
    let mut tm = begin(dev)?;

    // Once the device is full, the rest of the input is still read (and checked)
    // to say how large the output must be.
    let mut full = false;
    let mut sizes: Vec<u64> = Vec::new();
    let mut archived: Vec<(u32, WritesetDisk)> = Vec::new();
    let mut ws: Option<(u32, u32, Ws)> = None;
    let mut array: Option<(ArrayBuilder, u64)> = None;
    let mut n = 0u64;
    let step = |full: &mut bool, r: Result<(), TmError>| -> Result<(), RestoreError> {
        match r {
            Err(e) if is_no_space(&e) => {
                *full = true;
                Ok(())
            }
            r => Ok(r?),
        }
    };
    loop {
        n += 1;
        if n.is_multiple_of(65536) {
            if let Some(p) = progress {
                p(xml.bytes_read());
            }
        }
        let item = xml.next_step()?;
        match item {
            EraItem::WritesetBegin { era, nr_bits } => {
                sizes.push(nr_bits as u64);
                ws = Some((
                    era,
                    nr_bits,
                    Ws {
                        bits: BitsetBuilder::new(nr_bits as u64),
                        word: 0,
                        wi: 0,
                    },
                ));
            }
            EraItem::Bits { begin, end } => {
                if let Some((_, _, w)) = ws.as_mut().filter(|_| !full) {
                    let r = w.set(&mut tm, begin, end);
                    step(&mut full, r)?;
                }
            }
            EraItem::WritesetEnd => {
                if let Some((era, nr_bits, mut w)) = ws.take().filter(|_| !full) {
                    let r = w
                        .advance(&mut tm, (nr_bits as u64).div_ceil(64))
                        .and_then(|_| w.bits.finish(&mut tm));
                    match r {
                        Ok(b) => archived.push((
                            era,
                            WritesetDisk {
                                nr_bits,
                                root: b.root,
                            },
                        )),
                        Err(e) => step(&mut full, Err(e))?,
                    }
                }
            }
            EraItem::EraArrayBegin => array = Some((ArrayBuilder::new(4), 0)),
            EraItem::Era { block, era } => {
                if let Some((a, next)) = array.as_mut().filter(|_| !full) {
                    let r = a
                        .push_n(&mut tm, &[0; 4], block - *next)
                        .and_then(|_| a.push(&mut tm, &era.to_le_bytes()));
                    *next = block + 1;
                    step(&mut full, r)?;
                }
            }
            EraItem::EraArrayEnd => {}
            EraItem::End => break,
        }
    }
    if full {
        let data: u64 = array_size
            + sizes.iter().map(|&b| bitset_blocks(b)).sum::<u64>()
            + tree_nodes(sizes.len() as u64, WritesetDisk::SIZE as u32);
        return Err(RestoreError::TooSmall {
            needed_blocks: needed_blocks(data),
            have_blocks: tm.dev().nr_blocks(),
        });
    }
    let needs_current = xml.last_era().is_some_and(|e| e + 1 == h.current_era);
    let mut finish = |tm: &mut TransactionManager<D>| -> Result<(u64, u64, u64), TmError> {
        let (mut a, next) = array.take().unwrap_or((ArrayBuilder::new(4), 0));
        a.push_n(tm, &[0; 4], h.nr_blocks as u64 - next)?;
        let era_array = a.finish(tm)?;
        let mut tree = BTreeBuilder::new(WritesetDisk::SIZE as u32);
        for (era, w) in &archived {
            let mut v = [0u8; WritesetDisk::SIZE];
            w.encode(&mut v);
            tree.push(tm, *era as u64, &v)?;
        }
        let tree = tree.finish(tm)?.root;
        let current = if needs_current {
            BitsetBuilder::new(h.nr_blocks as u64).finish(tm)?.root
        } else {
            0
        };
        Ok((era_array.root, tree, current))
    };
    let (era_array_root, writeset_tree_root, current_root) = match finish(&mut tm) {
        Err(e) if is_no_space(&e) => {
            let data: u64 = array_size
                + sizes.iter().map(|&b| bitset_blocks(b)).sum::<u64>()
                + tree_nodes(sizes.len() as u64, WritesetDisk::SIZE as u32)
                + if needs_current {
                    bitset_blocks(h.nr_blocks as u64)
                } else {
                    0
                };
            return Err(RestoreError::TooSmall {
                needed_blocks: needed_blocks(data),
                have_blocks: tm.dev().nr_blocks(),
            });
        }
        r => r?,
    };
    let sm_root = tm.pre_commit()?;
    let sb = EraSuperblock {
        flags: 0,
        sm_root,
        data_block_size: h.block_size,
        metadata_block_size: METADATA_BLOCK_SIZE_SECTORS,
        nr_blocks: h.nr_blocks,
        current_era: h.current_era,
        current_writeset: WritesetDisk {
            nr_bits: h.nr_blocks,
            root: current_root,
        },
        writeset_tree_root,
        era_array_root,
        metadata_snap: 0,
    };
    tm.commit(&sb.encode(0))?;
    if let Some(p) = progress {
        p(xml.bytes_read());
    }
    Ok((
        EraRestored {
            header: h,
            writesets: archived.len() as u64,
        },
        RestoreSummary {
            blocks_used: sm_root.nr_allocated,
            nr_blocks: sm_root.nr_blocks,
            blocks_written: tm.stats().blocks_written,
        },
    ))
}
