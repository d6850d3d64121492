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
use crate::pdata::array_write::ArrayBuilder;
use crate::pdata::bitset_write::BitsetBuilder;
use crate::pdata::btree::build::BTreeBuilder;
use crate::pdata::tm::{TmError, TransactionManager};
use crate::restore::{begin, fits, is_no_space, with_xml, Progress, RestoreError, RestoreSummary};
use crate::sizing::era_metadata_blocks;

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

/// Restores the era metadata described by `input` onto `dev`.
///
/// The output must be as large as `era_metadata_size` says for the geometry and
/// the number of writesets restored (the archived writesets the kernel will have
/// to digest). A device too small even for one writeset is refused before anything
/// is written; otherwise the count is known only at the end of the input, so a
/// device large enough for fewer writesets is refused then, with its superblock
/// already invalidated (as any restore that fails half-way leaves it). Either way
/// the rest of the input is still read (and checked) to say how large the output
/// must be.
///
/// The XML is read and scanned in a second thread while this one builds the
/// metadata.
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
    let nr_blocks = h.nr_blocks as u64;
    let have_blocks = dev.nr_blocks();
    // Writesets as long as the device, as the kernel makes them; a longer one
    // (nr_bits above nr_blocks, which the input may give) is sized as its length.
    let mut sized_blocks = nr_blocks;
    let too_small = |sized_blocks: u64, writesets: u64| RestoreError::TooSmall {
        sizing: era_metadata_blocks(sized_blocks, writesets),
        have_blocks,
    };
    // None: too small from the start, only read on to count the writesets.
    let mut tm = if fits(&dev, &era_metadata_blocks(nr_blocks, 1)) {
        Some(begin(dev)?)
    } else {
        None
    };

    // Set once the device is full (or from the start without a device).
    let mut full = tm.is_none();
    let mut writesets = 0u64;
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
                writesets += 1;
                sized_blocks = sized_blocks.max(nr_bits as u64);
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
                if let (Some((_, _, w)), Some(tm), false) = (ws.as_mut(), tm.as_mut(), full) {
                    let r = w.set(tm, begin, end);
                    step(&mut full, r)?;
                }
            }
            EraItem::WritesetEnd => {
                if let (Some((era, nr_bits, mut w)), Some(tm), false) =
                    (ws.take(), tm.as_mut(), full)
                {
                    let r = w
                        .advance(tm, (nr_bits as u64).div_ceil(64))
                        .and_then(|_| w.bits.finish(tm));
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
                if let (Some((a, next)), Some(tm), false) = (array.as_mut(), tm.as_mut(), full) {
                    let r = a
                        .push_n(tm, &[0; 4], block - *next)
                        .and_then(|_| a.push(tm, &era.to_le_bytes()));
                    *next = block + 1;
                    step(&mut full, r)?;
                }
            }
            EraItem::EraArrayEnd => {}
            EraItem::End => break,
        }
    }
    let needs_current = xml.last_era().is_some_and(|e| e + 1 == h.current_era);
    // The kernel archives a current writeset at the next resume: one more to digest.
    let writesets = writesets + u64::from(needs_current);
    let tm = match tm.as_mut() {
        Some(tm) if !full && fits(tm.dev(), &era_metadata_blocks(sized_blocks, writesets)) => tm,
        _ => return Err(too_small(sized_blocks, writesets)),
    };
    let mut finish = |tm: &mut TransactionManager<D>| -> Result<(u64, u64, u64), TmError> {
        let (mut a, next) = array.take().unwrap_or((ArrayBuilder::new(4), 0));
        a.push_n(tm, &[0; 4], nr_blocks - next)?;
        let era_array = a.finish(tm)?;
        let mut tree = BTreeBuilder::new(WritesetDisk::SIZE as u32);
        for (era, w) in &archived {
            let mut v = [0u8; WritesetDisk::SIZE];
            w.encode(&mut v);
            tree.push(tm, *era as u64, &v)?;
        }
        let tree = tree.finish(tm)?.root;
        let current = if needs_current {
            BitsetBuilder::new(nr_blocks).finish(tm)?.root
        } else {
            0
        };
        Ok((era_array.root, tree, current))
    };
    let (era_array_root, writeset_tree_root, current_root) = match finish(tm) {
        Err(e) if is_no_space(&e) => return Err(too_small(sized_blocks, writesets)),
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
