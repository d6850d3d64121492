//! clone_restore: fresh dm-clone metadata from the XML of clone_dump (CLONE.md §5,
//! §11). The region bitset is streamed word by word from the sorted ranges, so
//! memory does not depend on the number of regions. The output must be as large
//! as `clone_metadata_size` says for the geometry, or nothing is written.

use std::io::Read;

use crate::clone::superblock::CloneSuperblock;
use crate::clone::xml::{CloneHeader, CloneXmlReader};
use crate::io::BlockDevice;
use crate::pdata::bitset_write::BitsetBuilder;
use crate::restore::{begin, check_size, with_xml, Progress, RestoreError, RestoreSummary};
use crate::sizing::clone_metadata_blocks;

/// Restores the clone metadata described by `input` onto `dev`. The XML is read
/// and scanned in a second thread while this one builds the metadata.
pub fn restore<R: Read + Send, D: BlockDevice>(
    input: R,
    dev: D,
    progress: Option<Progress<'_>>,
) -> Result<(CloneHeader, RestoreSummary), RestoreError> {
    with_xml(input, |x| {
        restore_from(CloneXmlReader::open(x)?, dev, progress)
    })
}

fn restore_from<D: BlockDevice>(
    mut xml: CloneXmlReader<'_>,
    dev: D,
    progress: Option<Progress<'_>>,
) -> Result<(CloneHeader, RestoreSummary), RestoreError> {
    let h = xml.header();
    // What the kernel needs to run the target (clone_metadata_size), which also
    // holds what is written here.
    check_size(&dev, &clone_metadata_blocks(h.nr_regions))?;
    let mut tm = begin(dev)?;
    let mut bits = BitsetBuilder::new(h.nr_regions);
    // `word` is word `wi` of the bitset, still being filled; the words before it
    // are written. Gaps and the whole words inside a range go at once.
    let mut word = 0u64;
    let mut wi = 0u64;
    let mut n = 0u64;
    while let Some((b, e)) = xml.next_range()? {
        n += 1;
        if n.is_multiple_of(4096) {
            if let Some(p) = progress {
                p(xml.bytes_read());
            }
        }
        // Ranges are sorted, so the first word of this one is `wi` or later.
        let (first, last) = (b / 64, (e - 1) / 64);
        if first > wi {
            bits.push_word(&mut tm, word)?;
            bits.push_words(&mut tm, 0, first - wi - 1)?;
            (wi, word) = (first, 0);
        }
        let lo = b % 64;
        // One past the last bit of the range in word `last`: 1..=64.
        let hi = e - last * 64;
        let below_hi = if hi == 64 { u64::MAX } else { (1u64 << hi) - 1 };
        if first == last {
            word |= below_hi & (u64::MAX << lo);
        } else {
            bits.push_word(&mut tm, word | u64::MAX << lo)?;
            bits.push_words(&mut tm, u64::MAX, last - first - 1)?;
            (wi, word) = (last, below_hi);
        }
    }
    if h.nr_regions > 0 {
        bits.push_word(&mut tm, word)?;
    }
    let bitset = bits.finish(&mut tm)?;
    let sm_root = tm.pre_commit()?;
    let sb = CloneSuperblock {
        flags: 0,
        sm_root,
        region_size: h.region_size,
        target_size: h.target_size,
        bitset_root: bitset.root,
    };
    tm.commit(&sb.encode())?;
    if let Some(p) = progress {
        p(xml.bytes_read());
    }
    Ok((
        h,
        RestoreSummary {
            blocks_used: sm_root.nr_allocated,
            nr_blocks: sm_root.nr_blocks,
            blocks_written: tm.stats().blocks_written,
        },
    ))
}
