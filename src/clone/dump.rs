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
    let mut run: Option<u64> = None;
    for wi in 0..nr_regions.div_ceil(64) {
        let word = match bits.word(wi) {
            Ok(word) => word,
            Err(f) if repair => {
                let (b, e) = (wi * 64, ((wi + 1) * 64).min(nr_regions));
                match notes.unreadable.last_mut() {
                    Some(last) if last.1 == b => last.1 = e,
                    _ => notes.unreadable.push((b, e)),
                }
                if notes.findings.last() != Some(&f) {
                    notes.findings.push(f);
                }
                if unreadable_hydrated {
                    u64::MAX
                } else {
                    0
                }
            }
            Err(f) => return Err(f.into()),
        };
        let base = wi * 64;
        // Fast paths for the common all-clear and all-set words.
        if word == 0 {
            if let Some(b) = run.take() {
                sink.hydrated(b, base)?;
            }
            continue;
        }
        if word == u64::MAX {
            run.get_or_insert(base);
            continue;
        }
        for j in 0..64 {
            let r = base + j;
            if word >> j & 1 == 1 {
                run.get_or_insert(r);
            } else if let Some(b) = run.take() {
                sink.hydrated(b, r)?;
            }
        }
    }
    if let Some(b) = run.take() {
        sink.hydrated(b, nr_regions)?;
    }
    sink.end(&notes)?;
    Ok(notes)
}
