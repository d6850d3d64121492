//! clone_dump: the committed hydration state as XML (CLONE.md §11, in the style of
//! the era dump):
//!
//! ```text
//! <superblock uuid="" region_size="64" target_size="131072" nr_regions="2048">
//!   <hydrated begin="0" end="1"/>
//! </superblock>
//! ```
//!
//! Ranges are half-open, sorted and maximal. The bitset is read one array block at a
//! time, so memory does not grow with the number of regions. The walk hands the
//! ranges to a [`CloneSink`]: the XML above, JSON or a summary (`dump_out.rs`).

use std::io::Write;

use crate::clone::dump_out::{CloneSink, HumanSink, JsonSink, XmlSink};
use crate::clone::superblock;
use crate::format::DumpFormat;
use crate::io::BlockDevice;
use crate::pdata::bitset::BitsetCursor;
use crate::pdata::walk::Walker;
use crate::report::{DumpError, Finding, Part};

/// Region ranges a repairing dump could not read (dumped as not hydrated).
#[derive(Debug, Default, Clone)]
pub struct CloneDumpNotes {
    /// Half-open region ranges whose bits were unreadable.
    pub unreadable: Vec<(u64, u64)>,
    /// The damage behind them.
    pub findings: Vec<Finding>,
}

/// Dumps the clone metadata on `dev` to `out`. With `repair`, unreadable parts of the
/// bitset are left out of the dump (their regions appear unhydrated) and returned in
/// the notes; without it, damage stops the dump.
pub fn dump<W: Write>(
    dev: &dyn BlockDevice,
    out: W,
    repair: bool,
) -> Result<CloneDumpNotes, DumpError> {
    dump_with(dev, out, repair, false)
}

/// As [`dump`]; with `repair`, regions whose bits cannot be read are dumped as
/// hydrated when `unreadable_hydrated` is set (an operator's policy for repair).
pub fn dump_with<W: Write>(
    dev: &dyn BlockDevice,
    out: W,
    repair: bool,
    unreadable_hydrated: bool,
) -> Result<CloneDumpNotes, DumpError> {
    walk(dev, &mut XmlSink::new(out), repair, unreadable_hydrated)
}

/// As [`dump`], in the format asked for: the XML, the same content as JSON, or a
/// summary for people.
pub fn dump_as<W: Write>(
    dev: &dyn BlockDevice,
    out: W,
    repair: bool,
    format: DumpFormat,
) -> Result<CloneDumpNotes, DumpError> {
    match format {
        DumpFormat::Xml => walk(dev, &mut XmlSink::new(out), repair, false),
        DumpFormat::Json => walk(dev, &mut JsonSink::new(out), repair, false),
        DumpFormat::Human => walk(dev, &mut HumanSink::new(out), repair, false),
    }
}

/// Reads the hydration state and hands it to `sink`, range by range.
fn walk<S: CloneSink>(
    dev: &dyn BlockDevice,
    sink: &mut S,
    repair: bool,
    unreadable_hydrated: bool,
) -> Result<CloneDumpNotes, DumpError> {
    let mut notes = CloneDumpNotes::default();
    let (sb, _) = superblock::read(dev).map_err(|e| e.finding(0))?;
    if let Some(msg) = sb.geometry_error() {
        return Err(Finding::error("clone-geometry", Some(0), Part::Superblock, msg).into());
    }
    let nr_regions = sb.nr_regions();
    let mut w = Walker::new(dev, sb.sm_root.nr_blocks, false);
    let mut bits = BitsetCursor::open(
        &mut w,
        sb.bitset_root,
        &Part::RegionBitset.into(),
        nr_regions,
        Some(0),
    );
    if let Some(f) = w.report.first_error() {
        if !repair {
            return Err(f.clone().into());
        }
        notes.findings.extend(w.report.findings().iter().cloned());
    }
    sink.begin(&sb)?;
    let mut runs = Runs { run: None, sink };
    let nr_words = nr_regions.div_ceil(64);
    let per_block = bits.words_per_block();
    let mut words = Vec::with_capacity(per_block as usize);
    for bi in 0..bits.nr_array_blocks() {
        let first = bi * per_block;
        match bits.block_words(bi, &mut words) {
            Ok(()) => {}
            Err(f) if repair => {
                let n = per_block.min(nr_words - first);
                let (b, e) = (first * 64, ((first + n) * 64).min(nr_regions));
                match notes.unreadable.last_mut() {
                    Some(last) if last.1 == b => last.1 = e,
                    _ => notes.unreadable.push((b, e)),
                }
                if notes.findings.last() != Some(&f) {
                    notes.findings.push(f);
                }
                let fill = if unreadable_hydrated { u64::MAX } else { 0 };
                words.clear();
                words.resize(n as usize, fill);
                // The last word's bits past the end are never hydrated.
                if e % 64 != 0 && first + n == nr_words {
                    if let Some(w) = words.last_mut() {
                        *w &= (1u64 << (e % 64)) - 1;
                    }
                }
            }
            Err(f) => return Err(f.into()),
        }
        runs.words(first * 64, &words)?;
    }
    if let Some(b) = runs.run.take() {
        runs.sink.hydrated(b, nr_regions)?;
    }
    let sink = runs.sink;
    sink.end(&notes)?;
    Ok(notes)
}

/// Turns words of bits into maximal runs of set bits for a sink.
struct Runs<'s, S: CloneSink> {
    /// First region of the run of set bits being read.
    run: Option<u64>,
    sink: &'s mut S,
}

impl<S: CloneSink> Runs<'_, S> {
    /// The words of regions `base ..`, in order.
    fn words(&mut self, mut base: u64, words: &[u64]) -> std::io::Result<()> {
        for &w in words {
            // Whole words of equal bits pass with one comparison each.
            if w == 0 {
                if let Some(b) = self.run.take() {
                    self.sink.hydrated(b, base)?;
                }
            } else if w == u64::MAX {
                self.run.get_or_insert(base);
            } else {
                self.mixed(base, w)?;
            }
            base += 64;
        }
        Ok(())
    }

    /// A word of set and clear bits: from one edge of a run to the next by counting
    /// equal bits, not one bit at a time.
    fn mixed(&mut self, base: u64, w: u64) -> std::io::Result<()> {
        let mut p = 0u32;
        loop {
            if let Some(b) = self.run {
                // Bits shifted in from above are clear, so this stops within the word.
                p += (w >> p).trailing_ones();
                if p >= 64 {
                    return Ok(());
                }
                self.run = None;
                self.sink.hydrated(b, base + p as u64)?;
            }
            let rest = w >> p;
            if rest == 0 {
                return Ok(());
            }
            p += rest.trailing_zeros();
            self.run = Some(base + p as u64);
        }
    }
}
