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
use std::sync::mpsc;

use crate::clone::dump_out::{CloneSink, HumanSink, JsonSink, XmlSink};
use crate::clone::superblock::{self, CloneSuperblock};
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

/// The damage a repairing dump meets, found without writing anything: the notes
/// [`dump`] with `repair` returns, for a caller (`clone_repair`) that must know them
/// before it writes. The ranges are found but go nowhere.
pub fn survey(dev: &dyn BlockDevice) -> Result<CloneDumpNotes, DumpError> {
    let (sb, mut bits, mut notes) = open(dev, true)?;
    ranges(
        &mut bits,
        sb.nr_regions(),
        true,
        false,
        &mut notes,
        |_, _| Ok(()),
    )?;
    Ok(notes)
}

/// Reads the superblock and opens the region bitset: damage to its index tree
/// stops a dump that does not `repair`, and is noted by one that does.
fn open(
    dev: &dyn BlockDevice,
    repair: bool,
) -> Result<(CloneSuperblock, BitsetCursor<'_>, CloneDumpNotes), DumpError> {
    let mut notes = CloneDumpNotes::default();
    let (sb, _) = superblock::read(dev).map_err(|e| e.finding(0))?;
    if let Some(f) = crate::superblock::truncation(sb.sm_root.nr_blocks, dev) {
        if !repair {
            return Err(f.into());
        }
        // Repair salvages what the image holds; what lies past its end is lost.
        notes.findings.push(f);
    }
    if let Some(msg) = sb.geometry_error() {
        return Err(Finding::error("clone-geometry", Some(0), Part::Superblock, msg).into());
    }
    let nr_regions = sb.nr_regions();
    let mut w = Walker::new(dev, sb.sm_root.nr_blocks, false);
    let bits = BitsetCursor::open(
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
    Ok((sb, bits, notes))
}

/// Reads the hydration state and hands it to `sink`, range by range.
fn walk<S: CloneSink>(
    dev: &dyn BlockDevice,
    sink: &mut S,
    repair: bool,
    unreadable_hydrated: bool,
) -> Result<CloneDumpNotes, DumpError> {
    let (sb, mut bits, mut notes) = open(dev, repair)?;
    let nr_regions = sb.nr_regions();
    sink.begin(&sb)?;
    // The bitset is read and turned into ranges in a second thread, which hands
    // them over in batches while this one writes them: reading and writing
    // overlap, and memory stays a few batches whatever the number of regions.
    let (notes, written) = std::thread::scope(|scope| {
        let (tx, rx) = mpsc::sync_channel::<Vec<(u64, u64)>>(4);
        let reader = scope.spawn(move || {
            let mut batch = Vec::with_capacity(BATCH);
            let read = ranges(
                &mut bits,
                nr_regions,
                repair,
                unreadable_hydrated,
                &mut notes,
                |b, e| {
                    batch.push((b, e));
                    if batch.len() == BATCH {
                        let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                        return tx.send(full).map_err(|_| Stopped.into());
                    }
                    Ok(())
                },
            );
            // What was read before damage stopped the dump is written too.
            let _ = tx.send(batch);
            read.map(|()| notes)
        });
        let written: std::io::Result<()> = rx
            .iter()
            .try_for_each(|batch| batch.into_iter().try_for_each(|(b, e)| sink.hydrated(b, e)));
        // A writer that failed stops the reader at its next batch.
        drop(rx);
        let read = reader
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        (read, written)
    });
    written?;
    let notes = notes?;
    sink.end(&notes)?;
    Ok(notes)
}

/// Ranges handed from the reading thread to the writing one at a time.
const BATCH: usize = 1 << 14;

/// The reading thread stops: the writing one has given up.
#[derive(Debug)]
struct Stopped;

impl From<Stopped> for DumpError {
    fn from(_: Stopped) -> Self {
        DumpError::Io(std::io::Error::other("the dump's writer stopped"))
    }
}

/// Reads the words of the bitset in order, a block at a time, and hands each
/// maximal range of hydrated regions to `emit`. With `repair`, an unreadable block
/// is noted and its regions taken as `unreadable_hydrated` says; without, damage
/// stops the walk.
fn ranges(
    bits: &mut BitsetCursor<'_>,
    nr_regions: u64,
    repair: bool,
    unreadable_hydrated: bool,
    notes: &mut CloneDumpNotes,
    emit: impl FnMut(u64, u64) -> Result<(), DumpError>,
) -> Result<(), DumpError> {
    let mut runs = Runs { run: None, emit };
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
        (runs.emit)(b, nr_regions)?;
    }
    Ok(())
}

/// Turns words of bits into maximal runs of set bits for a sink.
struct Runs<F> {
    /// First region of the run of set bits being read.
    run: Option<u64>,
    emit: F,
}

impl<F: FnMut(u64, u64) -> Result<(), DumpError>> Runs<F> {
    /// The words of regions `base ..`, in order.
    fn words(&mut self, mut base: u64, words: &[u64]) -> Result<(), DumpError> {
        for &w in words {
            // The bits where the state changes from the region before: each is
            // the start of a run or its end, in turn. Whole words that change
            // nothing (clear outside a run, set inside one) have none.
            let before = u64::from(self.run.is_some());
            let mut edges = w ^ ((w << 1) | before);
            while edges != 0 {
                let at = base + u64::from(edges.trailing_zeros());
                edges &= edges - 1;
                match self.run.take() {
                    Some(b) => (self.emit)(b, at)?,
                    None => self.run = Some(at),
                }
            }
            base += 64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The runs of `words`, bit by bit.
    fn naive(words: &[u64]) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut run = None;
        for i in 0..words.len() as u64 * 64 {
            let set = words[(i / 64) as usize] >> (i % 64) & 1 == 1;
            match (set, run) {
                (true, None) => run = Some(i),
                (false, Some(b)) => {
                    out.push((b, i));
                    run = None;
                }
                _ => {}
            }
        }
        if let Some(b) = run {
            out.push((b, words.len() as u64 * 64));
        }
        out
    }

    #[test]
    fn runs_of_words_are_those_of_their_bits() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..200 {
            let words: Vec<u64> = (0..40)
                .map(|_| match next() % 6 {
                    0 => 0,
                    1 => u64::MAX,
                    2 => next() & next(),
                    3 => 1 << (next() % 64),
                    4 => !(1u64 << (next() % 64)),
                    _ => next(),
                })
                .collect();
            let mut got = Vec::new();
            let mut runs = Runs {
                run: None,
                emit: |b, e| {
                    got.push((b, e));
                    Ok(())
                },
            };
            // Handed over in pieces, as blocks are.
            let (a, b) = words.split_at(17);
            runs.words(0, a).unwrap();
            runs.words(17 * 64, b).unwrap();
            if let Some(b) = runs.run.take() {
                (runs.emit)(b, words.len() as u64 * 64).unwrap();
            }
            assert_eq!(got, naive(&words), "{words:x?}");
        }
    }
}
