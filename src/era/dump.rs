//! era_dump: the XML of thin-provisioning-tools 0.9.0's `era_dump`, byte for byte,
//! plus the committed current writeset that a crash leaves (ERA.md §12.1-12.2).
//!
//! The dump streams: writesets and the era array are read one array block at a time
//! (one block per writeset with `--logical`), so memory does not grow with the
//! number of origin blocks. The walk hands what it reads to an [`EraSink`]: the
//! XML, JSON or a summary (`dump_out.rs`).
//!
//! With `repair`, damage does not stop the dump; what cannot be read is dumped so
//! that a restore of the output over-reports rather than loses writes (unreadable
//! writeset bits as set, unreadable era-array entries as the current era), and each
//! such decision is returned in [`DumpNotes`].

use std::io::Write;

use crate::era::dump_out::{EraDumpHeader, EraSink, JsonSink, XmlSink};
use crate::era::summary::HumanSink;
use crate::era::superblock::{self, WritesetDisk};
use crate::era::writeset::read_tree;
use crate::format::DumpFormat;
use crate::io::BlockDevice;
use crate::pdata::array::{ArrayCursor, ArrayDesc};
use crate::pdata::bitset::BitsetCursor;
use crate::pdata::le32;
use crate::pdata::walk::Walker;
use crate::report::{DumpError, Finding, Part, Place};

/// How to dump.
#[derive(Debug, Clone, Copy, Default)]
pub struct DumpOptions {
    /// Fold the writesets into the era array (`--logical`).
    pub logical: bool,
    /// Dump the metadata snapshot instead of the live superblock.
    pub metadata_snapshot: bool,
    /// Keep going over damage, over-reporting what cannot be read.
    pub repair: bool,
}

/// What a repairing dump could not read and how it filled it in.
#[derive(Debug, Default, Clone)]
pub struct DumpNotes {
    /// One line per decision.
    pub skipped: Vec<String>,
}

/// A writeset being dumped: its bits come from a bitset, or are all taken as set
/// when the bitset is unreadable (repair).
struct WsBits<'d> {
    era: u64,
    /// Bits dumped.
    nr_bits: u64,
    /// Bits the bitset holds; those from here to `nr_bits` are dumped as set.
    have: u64,
    cursor: Option<BitsetCursor<'d>>,
    name: String,
    noted: bool,
    /// The current writeset (the superblock's), not an archived one.
    current: bool,
}

impl WsBits<'_> {
    fn word(&mut self, wi: u64, repair: bool, notes: &mut DumpNotes) -> Result<u64, DumpError> {
        let all = if wi * 64 + 64 <= self.nr_bits {
            u64::MAX
        } else {
            (1u64 << (self.nr_bits - wi * 64)) - 1
        };
        let Some(c) = self.cursor.as_mut() else {
            return Ok(all);
        };
        if wi * 64 >= self.have {
            return Ok(all);
        }
        let above = if self.have < wi * 64 + 64 {
            all & !((1u64 << (self.have - wi * 64)) - 1)
        } else {
            0
        };
        match c.word(wi) {
            Ok(w) => Ok((w & all) | above),
            Err(f) if repair => {
                if !self.noted {
                    self.noted = true;
                    notes.skipped.push(format!(
                        "{}: {}; its unreadable bits are dumped as set",
                        self.name,
                        f.detail()
                    ));
                }
                Ok(all)
            }
            Err(f) => Err(f.into()),
        }
    }
}

fn sb_error(loc: u64, e: crate::superblock::SuperblockError) -> DumpError {
    e.finding(loc).into()
}

/// Dumps the era metadata on `dev` to `out` as XML.
pub fn dump<W: Write>(
    dev: &dyn BlockDevice,
    out: W,
    opts: DumpOptions,
) -> Result<DumpNotes, DumpError> {
    walk(dev, &mut XmlSink::new(out), opts)
}

/// Dumps the era metadata on `dev` to `out` in the format asked for: the XML, the
/// same content as JSON, or a summary for people (which counts each block under its
/// logical era, so the writesets are always folded for it).
pub fn dump_as<W: Write>(
    dev: &dyn BlockDevice,
    out: W,
    opts: DumpOptions,
    format: DumpFormat,
) -> Result<DumpNotes, DumpError> {
    match format {
        DumpFormat::Xml => walk(dev, &mut XmlSink::new(out), opts),
        DumpFormat::Json => walk(dev, &mut JsonSink::new(out), opts),
        DumpFormat::Human => walk(
            dev,
            &mut HumanSink::new(out),
            DumpOptions {
                logical: true,
                ..opts
            },
        ),
    }
}

/// Reads the era metadata and hands it to `sink`, a writeset word or an era-array
/// block at a time.
fn walk<S: EraSink>(
    dev: &dyn BlockDevice,
    sink: &mut S,
    opts: DumpOptions,
) -> Result<DumpNotes, DumpError> {
    let mut notes = DumpNotes::default();
    let (live, _) = superblock::read_at(dev, 0).map_err(|e| sb_error(0, e))?;
    if let Some(f) = crate::superblock::truncation(live.sm_root.nr_blocks, dev) {
        if !opts.repair {
            return Err(f.into());
        }
        // Repair salvages what the image holds; what lies past its end is lost.
        notes.skipped.push(f.message);
    }
    let (sb, sb_loc) = if opts.metadata_snapshot {
        let s = live.metadata_snap;
        if s == 0 {
            return Err(Finding::error(
                "era-snapshot",
                Some(0),
                Part::Superblock,
                "the metadata holds no metadata snapshot (no current metadata snap; take one with: dmsetup message <era device> 0 take_metadata_snap)",
            )
            .into());
        }
        if s >= live.sm_root.nr_blocks.min(dev.nr_blocks()) {
            return Err(Finding::error(
                "era-snapshot",
                Some(0),
                Part::Superblock,
                format!("metadata snapshot at block {s}, beyond the metadata device"),
            )
            .into());
        }
        (
            superblock::read_at(dev, s).map_err(|e| sb_error(s, e))?.0,
            s,
        )
    } else {
        (live, 0)
    };
    // Repair lists every block the superblock claims: the claim must be possible.
    if let Some(msg) = sb.nr_blocks_error(live.sm_root.nr_blocks.min(dev.nr_blocks())) {
        let part = if sb_loc == 0 {
            Part::Superblock
        } else {
            Part::SnapshotSuperblock
        };
        return Err(Finding::error("era-nr-blocks", Some(sb_loc), part, msg).into());
    }
    let repair = opts.repair;
    let cur_era = sb.current_era as u64;
    let mut w = Walker::new(dev, live.sm_root.nr_blocks, false);

    // Writesets: archived ones from the tree; then, on the live superblock only, the
    // committed current writeset. A snapshot's copy of the current writeset points at
    // the live, still changing one and is ignored (ERA.md §9).
    let (entries, walk) = read_tree(
        &mut w,
        sb.writeset_tree_root,
        &Part::WritesetTree.into(),
        sb_loc,
    );
    // The lowest era every block is raised to, when writesets were lost (repair).
    let mut floor = 0u64;
    if let Some(f) = w.report.first_error() {
        if !repair {
            return Err(f.clone().into());
        }
        for (lo, hi) in &walk.lost {
            let top = hi.map_or(cur_era, |h| h.saturating_sub(1).min(cur_era));
            floor = floor.max(top);
            notes.skipped.push(format!(
                "writeset tree: eras {lo}..{} unreadable ({}); every block's era is raised to at least {top}",
                hi.map_or(String::new(), |h| h.to_string()),
                f.detail()
            ));
        }
    }
    let mut list: Vec<(u64, WritesetDisk, u64)> =
        entries.iter().map(|e| (e.era, e.ws, e.leaf)).collect();
    // A current writeset whose era is also archived is folded into the era array in
    // repair mode (as the current era), and refused otherwise.
    let mut fold_current = None;
    if !opts.metadata_snapshot && sb.current_writeset.root != 0 {
        if list.iter().any(|e| e.0 == cur_era) {
            let f = Finding::error(
                "era-current-duplicate",
                Some(0),
                Part::CurrentWriteset,
                format!("era {cur_era} is both the current writeset and archived in the tree"),
            );
            if !repair {
                return Err(f.into());
            }
            notes.skipped.push(format!(
                "{f}; its blocks are dumped with era {cur_era} in the era array"
            ));
            fold_current = Some((cur_era, sb.current_writeset, 0));
        } else {
            list.push((cur_era, sb.current_writeset, 0));
        }
    }
    // Repairing, the output must be restorable: writesets contiguous up to the
    // current era. Otherwise (eras lost or out of order) every writeset is folded
    // into the era array, which keeps each block's logical era.
    let mut logical = opts.logical;
    if repair && !logical {
        let contiguous = walk.lost.is_empty()
            && list.windows(2).all(|p| p[1].0 == p[0].0 + 1)
            && list.last().is_none_or(|l| l.0 == cur_era);
        if !contiguous {
            logical = true;
            notes.skipped.push(format!(
                "archived eras {:?} are not contiguous up to the current era {cur_era}; all writesets are folded into the era array",
                list.iter().map(|e| e.0).collect::<Vec<_>>()
            ));
        }
    }
    // Entries of the era array that repair has to fill in (unreadable, or above the
    // current era) would sit above the archived writesets' eras, which digestion never
    // leaves behind: fold the writesets into the array then too. Checked up front
    // because the writesets are written before the array.
    if repair && !logical {
        let desc = era_array_desc(&sb, sb_loc);
        let above = std::sync::atomic::AtomicBool::new(false);
        let lost = w.check_array(sb.era_array_root, &desc, &|_, vals| {
            if vals.chunks_exact(4).any(|v| le32(v, 0) as u64 > cur_era) {
                above.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            Vec::new()
        });
        if !lost.is_empty() || above.into_inner() {
            logical = true;
            notes
                .skipped
                .push("the era array is damaged; all writesets are folded into it".to_string());
        }
    }
    // An era above the current one is damage: in repair it counts as the current era.
    if repair {
        for e in list.iter_mut().filter(|e| e.0 > cur_era) {
            notes.skipped.push(format!("archived era {} is above the current era {cur_era}; its blocks count as era {cur_era}", e.0));
            e.0 = cur_era;
            logical = true;
        }
    }
    let mut wss = Vec::with_capacity(list.len());
    for (era, ws, from) in list {
        wss.push(open_writeset(
            &mut w, era, ws, from, &sb, repair, &mut notes,
        )?);
    }
    let mut folded = Vec::new();
    if let Some((era, ws, from)) = fold_current {
        folded.push(open_writeset(
            &mut w, era, ws, from, &sb, repair, &mut notes,
        )?);
    }

    sink.begin(&EraDumpHeader {
        block_size: sb.data_block_size,
        nr_blocks: sb.nr_blocks as u64,
        current_era: cur_era,
        view: opts.metadata_snapshot.then_some(sb_loc),
        metadata_snap: (live.metadata_snap != 0).then_some(live.metadata_snap),
        archived: entries.iter().map(|e| e.era).collect(),
        current_writeset: !opts.metadata_snapshot && sb.current_writeset.root != 0,
        logical,
        metadata_used: live.sm_root.nr_allocated,
        metadata_blocks: live.sm_root.nr_blocks,
    })?;
    if logical {
        folded.append(&mut wss);
    } else {
        for ws in &mut wss {
            dump_writeset(sink, ws, repair, &mut notes)?;
        }
    }

    let desc = era_array_desc(&sb, sb_loc);
    let before = w.report.findings().len();
    let blocks = w.array_blocks(sb.era_array_root, &desc).unwrap_or_default();
    if let Some(f) = w.report.findings()[before..]
        .iter()
        .find(|f| f.severity == crate::report::Severity::Error)
    {
        if !repair {
            return Err(f.clone().into());
        }
        notes.skipped.push(format!(
            "era array index: {}; entries of unreadable array blocks are dumped as era {cur_era}",
            f.detail()
        ));
    }
    let mut array = ArrayCursor::new(dev, desc, blocks);
    sink.era_array_begin()?;
    let per = array.desc().per_block();
    let mut above_noted = false;
    // Runs of unreadable era-array entries, with the first damage seen in each.
    let mut lost: Vec<(u64, u64, Finding)> = Vec::new();
    for bi in 0..array.desc().nr_blocks() {
        let first = bi * per;
        let n = array.desc().entries_in_block(bi) as usize;
        let mut eras: Vec<u64> = match array.block(bi) {
            Ok(vals) => (0..n).map(|j| le32(vals, 4 * j) as u64).collect(),
            Err(f) if repair => {
                let end = first + n as u64;
                match lost.last_mut() {
                    Some((_, e, _)) if *e == first => *e = end,
                    _ => lost.push((first, end, f)),
                }
                vec![cur_era; n]
            }
            Err(f) => return Err(f.into()),
        };
        if let Some(j) = eras.iter().position(|&e| e > cur_era) {
            let f = Finding::error(
                "era-array-value",
                None,
                Part::EraArray,
                format!(
                    "origin block {} has era {}, above the current era {cur_era}",
                    first + j as u64,
                    eras[j]
                ),
            );
            if !repair {
                return Err(f.into());
            }
            if !above_noted {
                above_noted = true;
                notes
                    .skipped
                    .push(format!("{f}; such eras are dumped as {cur_era}"));
            }
            eras.iter_mut()
                .filter(|e| **e > cur_era)
                .for_each(|e| *e = cur_era);
        }
        for e in eras.iter_mut() {
            *e = (*e).max(floor);
        }
        for ws in folded.iter_mut() {
            fold_writeset(&mut eras, first, ws, repair, &mut notes)?;
        }
        sink.eras(first, &eras)?;
    }
    for (b, e, f) in lost {
        notes.skipped.push(format!(
            "era array entries of blocks {b}..{e} unreadable ({}); dumped as era {cur_era}",
            f.detail()
        ));
    }
    sink.era_array_end()?;
    sink.end(&notes)?;
    Ok(notes)
}

/// The era array of the superblock at `loc`.
fn era_array_desc(sb: &crate::era::superblock::EraSuperblock, loc: u64) -> ArrayDesc {
    ArrayDesc {
        structure: Part::EraArray.into(),
        value_size: 4,
        nr_entries: sb.nr_blocks as u64,
        from: Some(loc),
    }
}

/// Opens the bitset of a writeset; in repair mode an unreadable one becomes "all set"
/// over every block the superblock tracks (a lost bitset's `nr_bits` is no more
/// trustworthy than its root), and one of another size than the superblock's
/// `nr_blocks` is dumped with `nr_blocks` bits, those past its own bits as set, so
/// that the restored metadata checks clean and loses nothing.
fn open_writeset<'d>(
    w: &mut Walker<'d>,
    era: u64,
    ws: WritesetDisk,
    from: u64,
    sb: &crate::era::superblock::EraSuperblock,
    repair: bool,
    notes: &mut DumpNotes,
) -> Result<WsBits<'d>, DumpError> {
    let nr_blocks = sb.nr_blocks as u64;
    // The current writeset hangs off the superblock (block 0), archived ones off a
    // writeset-tree leaf.
    let part = if from == 0 {
        Part::CurrentWriteset
    } else {
        Part::Writeset
    };
    let name = Place::new(part, format!("writeset of era {era}"));
    let before = w.report.findings().len();
    let cursor = (ws.root != 0)
        .then(|| BitsetCursor::open(w, ws.root, &name, ws.nr_bits as u64, Some(from)));
    let failed = ws.root == 0
        || w.report.findings()[before..]
            .iter()
            .any(|f| f.severity == crate::report::Severity::Error);
    if failed {
        let why = w.report.findings()[before..]
            .first()
            .map_or("no bitset (root 0)".to_string(), |f| f.to_string());
        if !repair {
            return Err(Finding::error("era-writeset", Some(from), &name, why).into());
        }
        notes.skipped.push(format!(
            "{name}: {why}; all its {nr_blocks} bits (the superblock's nr_blocks) are dumped as set"
        ));
        return Ok(WsBits {
            era,
            nr_bits: nr_blocks,
            have: 0,
            cursor: None,
            name: name.name,
            noted: true,
            current: part == Part::CurrentWriteset,
        });
    }
    let have = ws.nr_bits as u64;
    if repair && have != nr_blocks {
        notes.skipped.push(format!(
            "{name}: nr_bits {have}, the superblock tracks {nr_blocks} blocks; dumped with {nr_blocks} bits{}",
            if have < nr_blocks {
                format!(", blocks {have}..{nr_blocks} as set")
            } else {
                String::new()
            }
        ));
    }
    Ok(WsBits {
        era,
        nr_bits: if repair { nr_blocks } else { have },
        have,
        cursor,
        name: name.name,
        noted: false,
        current: part == Part::CurrentWriteset,
    })
}

fn dump_writeset<S: EraSink>(
    sink: &mut S,
    ws: &mut WsBits<'_>,
    repair: bool,
    notes: &mut DumpNotes,
) -> Result<(), DumpError> {
    sink.writeset_begin(ws.era, ws.nr_bits, ws.current)?;
    let nr = ws.nr_bits;
    for wi in 0..nr.div_ceil(64) {
        let word = ws.word(wi, repair, notes)?;
        sink.writeset_word(wi, word, 64.min(nr - wi * 64))?;
    }
    sink.writeset_end()?;
    Ok(())
}

/// Raises `eras[j]` (origin block `first + j`) to the writeset's era where it has the
/// block set: the logical era is the maximum (ERA.md §3.5). thin-provisioning-tools
/// 0.9.0 keeps the lowest era instead when several writesets hold a block.
fn fold_writeset(
    eras: &mut [u64],
    first: u64,
    ws: &mut WsBits<'_>,
    repair: bool,
    notes: &mut DumpNotes,
) -> Result<(), DumpError> {
    let end = (first + eras.len() as u64).min(ws.nr_bits);
    let mut b = first;
    while b < end {
        let wi = b / 64;
        let word = ws.word(wi, repair, notes)?;
        let stop = ((wi + 1) * 64).min(end);
        if word != 0 {
            for i in b..stop {
                if word >> (i % 64) & 1 == 1 {
                    let slot = &mut eras[(i - first) as usize];
                    *slot = (*slot).max(ws.era);
                }
            }
        }
        b = stop;
    }
    Ok(())
}
