//! era_invalidate (ERA.md §10): the origin blocks whose logical era is at least N.
//!
//! The logical era of a block folds the era array, every archived writeset and — on
//! metadata not read through a snapshot — the committed current writeset a crash
//! leaves (ERA.md §3.5). Both thin-provisioning-tools versions ignore that writeset
//! and so miss blocks written just before a crash.
//!
//! A backup tool trusts this list, so damage never shrinks it: every block whose
//! era cannot be read for certain is listed, and the reason is returned in
//! [`Invalidation::over_reported`].

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::era::superblock::{self, EraSuperblock};
use crate::era::writeset::read_tree;
use crate::io::BlockDevice;
use crate::json::JsonOut;
use crate::pdata::array::ArrayDesc;
use crate::pdata::le32;
use crate::pdata::walk::Walker;
use crate::report::{write_findings_json, Finding, Part, Place};
use crate::xml::XmlOut;

/// What to list.
#[derive(Debug, Clone, Copy, Default)]
pub struct InvalidateOptions {
    /// List blocks written in this era or later.
    pub written_since: u32,
    /// Read the metadata snapshot instead of the live superblock.
    pub metadata_snapshot: bool,
}

/// Why nothing could be listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvalidateError {
    /// The superblock (live or snapshot) is unusable.
    Superblock(Finding),
    /// `--metadata-snapshot` was asked for but the metadata holds none.
    NoSnapshot,
}

impl std::fmt::Display for InvalidateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // Without the finding's "error:": the tool's own prefix says it.
            InvalidateError::Superblock(x) => write!(f, "{}", x.detail()),
            InvalidateError::NoSnapshot => write!(
                f,
                "the metadata holds no metadata snapshot (no current metadata snap; take one with: dmsetup message <era device> 0 take_metadata_snap)"
            ),
        }
    }
}

impl std::error::Error for InvalidateError {}

/// The blocks to invalidate.
#[derive(Debug)]
pub struct Invalidation {
    /// Origin blocks tracked.
    pub nr_blocks: u64,
    words: Vec<u64>,
    /// Every block is listed (`words` is then empty).
    all: bool,
    /// Why blocks were listed without proof that they were written (damage).
    pub over_reported: Vec<String>,
    /// The damage found on the way.
    pub findings: Vec<Finding>,
}

struct Marks {
    words: Vec<AtomicU64>,
    nr_blocks: u64,
}

impl Marks {
    fn new(nr_blocks: u64) -> Self {
        Marks {
            words: (0..nr_blocks.div_ceil(64))
                .map(|_| AtomicU64::new(0))
                .collect(),
            nr_blocks,
        }
    }

    /// ORs `word` into word `wi`, dropping bits past the last block.
    fn or_word(&self, wi: u64, mut word: u64) {
        let Some(slot) = self.words.get(wi as usize) else {
            return;
        };
        let end = (wi + 1) * 64;
        if end > self.nr_blocks {
            let keep = self.nr_blocks - wi * 64;
            word &= (1u64 << keep) - 1;
        }
        slot.fetch_or(word, Ordering::Relaxed);
    }

    fn set(&self, b: u64) {
        if b < self.nr_blocks {
            self.words[(b / 64) as usize].fetch_or(1 << (b % 64), Ordering::Relaxed);
        }
    }

    fn set_range(&self, b: u64, e: u64) {
        let e = e.min(self.nr_blocks);
        let mut i = b;
        while i < e {
            if i.is_multiple_of(64) && i + 64 <= e {
                self.or_word(i / 64, u64::MAX);
                i += 64;
            } else {
                self.set(i);
                i += 1;
            }
        }
    }
}

/// Lists the origin blocks of the era metadata on `dev` whose logical era is at least
/// `opts.written_since`, walking everything the answer may depend on and gathering
/// the damage found on the way.
pub fn invalidate(
    dev: &dyn BlockDevice,
    opts: InvalidateOptions,
) -> Result<Invalidation, InvalidateError> {
    Ok(match view(dev, opts)? {
        Viewed::Truncated(answer) => answer,
        Viewed::View(v) => collect(
            dev,
            &v.live,
            &v.view,
            v.view_loc,
            v.current,
            opts.written_since as u64,
        ),
    })
}

/// The same list as [`invalidate`], read no further than the answer needs: with
/// `written_since` 0 every tracked block is listed whatever its era, so only the
/// superblock (and the snapshot's, with `metadata_snapshot`) is read and validated,
/// and no findings are gathered from the rest. The refusals (an unusable superblock,
/// a missing snapshot) are those of [`invalidate`].
pub fn invalidate_list(
    dev: &dyn BlockDevice,
    opts: InvalidateOptions,
) -> Result<Invalidation, InvalidateError> {
    if opts.written_since != 0 {
        return invalidate(dev, opts);
    }
    Ok(match view(dev, opts)? {
        Viewed::Truncated(answer) => answer,
        Viewed::View(v) => Invalidation {
            nr_blocks: v.view.nr_blocks as u64,
            words: Vec::new(),
            all: true,
            over_reported: Vec::new(),
            findings: Vec::new(),
        },
    })
}

/// The superblocks an invalidation reads.
struct View {
    live: EraSuperblock,
    /// The superblock whose metadata is listed: the live one or the snapshot's.
    view: EraSuperblock,
    view_loc: u64,
    /// The committed current writeset, on live metadata only.
    current: Option<crate::era::superblock::WritesetDisk>,
}

/// What reading the superblocks found: where to list from, or (a truncated image)
/// the answer itself.
enum Viewed {
    View(View),
    Truncated(Invalidation),
}

fn view(dev: &dyn BlockDevice, opts: InvalidateOptions) -> Result<Viewed, InvalidateError> {
    let sb_err = |loc: u64, e: crate::superblock::SuperblockError| {
        InvalidateError::Superblock(e.finding(loc))
    };
    let (live, _) = superblock::read_at(dev, 0).map_err(|e| sb_err(0, e))?;
    if let Some(f) = crate::superblock::truncation(live.sm_root.nr_blocks, dev) {
        // Nothing past the end can be read: every block is listed (as many as
        // the untruncated device can track).
        if let Some(msg) = live.nr_blocks_error(live.sm_root.nr_blocks) {
            return Err(InvalidateError::Superblock(Finding::error(
                "era-nr-blocks",
                Some(0),
                Part::Superblock,
                msg,
            )));
        }
        return Ok(Viewed::Truncated(Invalidation {
            nr_blocks: live.nr_blocks as u64,
            words: Vec::new(),
            all: true,
            over_reported: vec![format!(
                "the image is truncated: all {} blocks are listed",
                live.nr_blocks
            )],
            findings: vec![f],
        }));
    }
    let (view, view_loc, current) = if opts.metadata_snapshot {
        if live.metadata_snap == 0 {
            return Err(InvalidateError::NoSnapshot);
        }
        let s = live.metadata_snap;
        if s >= live.sm_root.nr_blocks.min(dev.nr_blocks()) {
            return Err(InvalidateError::Superblock(Finding::error(
                "era-snapshot",
                Some(0),
                Part::Superblock,
                format!("metadata snapshot at block {s}, beyond the metadata device"),
            )));
        }
        let (snap, _) = superblock::read_at(dev, s).map_err(|e| sb_err(s, e))?;
        // The snapshot's current writeset is the live, still changing one: ignored.
        (snap, s, None)
    } else {
        let cur = (live.current_writeset.root != 0).then_some(live.current_writeset);
        (live, 0, cur)
    };
    // Blocks are marked in a bitmap of nr_blocks bits, and damage lists them all.
    if let Some(msg) = view.nr_blocks_error(live.sm_root.nr_blocks.min(dev.nr_blocks())) {
        return Err(InvalidateError::Superblock(Finding::error(
            "era-nr-blocks",
            Some(view_loc),
            if view_loc == 0 {
                Part::Superblock
            } else {
                Part::SnapshotSuperblock
            },
            msg,
        )));
    }
    Ok(Viewed::View(View {
        live,
        view,
        view_loc,
        current,
    }))
}

fn collect(
    dev: &dyn BlockDevice,
    live: &EraSuperblock,
    view: &EraSuperblock,
    view_loc: u64,
    current: Option<crate::era::superblock::WritesetDisk>,
    since: u64,
) -> Invalidation {
    let nr_blocks = view.nr_blocks as u64;
    let marks = Marks::new(nr_blocks);
    let mut over = Vec::new();
    let mut w = Walker::new(dev, live.sm_root.nr_blocks, false);

    let (entries, walk) = read_tree(
        &mut w,
        view.writeset_tree_root,
        &Part::WritesetTree.into(),
        view_loc,
    );
    for (lo, hi) in &walk.lost {
        if hi.is_none_or(|h| h > since) {
            marks.set_range(0, nr_blocks);
            over.push(format!(
                "writeset tree damaged: the writesets of eras {lo}..{} are unreadable, so every block is listed",
                hi.map_or("".to_string(), |h| h.to_string())
            ));
        }
    }
    let mut writesets: Vec<(u64, crate::era::superblock::WritesetDisk, u64, Part)> = entries
        .iter()
        .map(|e| (e.era, e.ws, e.leaf, Part::Writeset))
        .collect();
    if let Some(ws) = current {
        writesets.push((view.current_era as u64, ws, view_loc, Part::CurrentWriteset));
    }
    for (era, ws, from, part) in writesets.into_iter().filter(|e| e.0 >= since) {
        let name = Place::new(part, format!("writeset of era {era}"));
        if ws.root == 0 {
            // The entry is damaged: its nr_bits is no more to be trusted than its
            // root, so every block the superblock tracks is listed.
            marks.set_range(0, nr_blocks);
            over.push(format!(
                "{name} has no bitset (root 0, nr_bits {}): all {nr_blocks} blocks are listed",
                ws.nr_bits
            ));
            continue;
        }
        let r = w.scan_bitset(
            ws.root,
            &name,
            ws.nr_bits as u64,
            Some(from),
            &|wi, word| marks.or_word(wi, word),
        );
        for (b, e) in r.lost {
            marks.set_range(b, e);
            over.push(format!("{name} damaged: blocks {b}..{e} are listed"));
        }
    }
    let desc = ArrayDesc {
        structure: Part::EraArray.into(),
        value_size: 4,
        nr_entries: nr_blocks,
        from: Some(view_loc),
    };
    let lost = w.check_array(view.era_array_root, &desc, &|first, vals| {
        for (j, v) in vals.chunks_exact(4).enumerate() {
            if le32(v, 0) as u64 >= since {
                marks.set(first + j as u64);
            }
        }
        Vec::new()
    });
    for (b, e) in lost {
        marks.set_range(b, e);
        over.push(format!("era array damaged: blocks {b}..{e} are listed"));
    }
    Invalidation {
        nr_blocks,
        words: marks.words.into_iter().map(|a| a.into_inner()).collect(),
        all: false,
        over_reported: over,
        findings: w.report.findings().to_vec(),
    }
}

impl Invalidation {
    /// True when block `b` is listed.
    pub fn contains(&self, b: u64) -> bool {
        b < self.nr_blocks && (self.all || self.words[(b / 64) as usize] >> (b % 64) & 1 == 1)
    }

    /// Number of blocks listed.
    pub fn count(&self) -> u64 {
        if self.all {
            return self.nr_blocks;
        }
        self.words.iter().map(|w| w.count_ones() as u64).sum()
    }

    /// The listed blocks as maximal half-open runs, ascending.
    pub fn runs(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        // Every block: one run (none of no blocks).
        let mut whole = (self.all && self.nr_blocks > 0).then_some((0, self.nr_blocks));
        let mut wi = 0usize;
        let mut bit = 0u64;
        let n = self.nr_blocks;
        std::iter::from_fn(move || {
            if self.all {
                return whole.take();
            }
            // Find the next set bit.
            let start = loop {
                if wi >= self.words.len() {
                    return None;
                }
                let w = self.words[wi] >> bit;
                if w == 0 {
                    wi += 1;
                    bit = 0;
                    continue;
                }
                bit += w.trailing_zeros() as u64;
                break wi as u64 * 64 + bit;
            };
            // Find the next clear bit after it.
            loop {
                let w = if bit >= 64 { 0 } else { !self.words[wi] >> bit };
                if w == 0 {
                    wi += 1;
                    bit = 0;
                    if wi >= self.words.len() {
                        return Some((start, n));
                    }
                    continue;
                }
                bit += w.trailing_zeros() as u64;
                let end = (wi as u64 * 64 + bit).min(n);
                return Some((start, end));
            }
        })
    }

    /// Writes the `<blocks>` XML of thin-provisioning-tools 1.3.3: a single block as
    /// `<block block="b"/>`, a longer run as `<range begin="b" end="e"/>` (end
    /// exclusive), ending with a newline.
    pub fn write_xml<W: Write>(&self, out: W) -> std::io::Result<W> {
        let mut x = XmlOut::new(out);
        x.s("<blocks>\n")?;
        for (b, e) in self.runs() {
            if e - b == 1 {
                x.s("  <block block=\"")?;
                x.n(b)?;
                x.s("\"/>\n")?;
            } else {
                x.s("  <range begin=\"")?;
                x.n(b)?;
                x.s("\" end=\"")?;
                x.n(e)?;
                x.s("\"/>\n")?;
            }
        }
        x.s("</blocks>\n")?;
        x.finish()
    }

    /// Writes the list as a JSON document (era_invalidate(8)): what was asked
    /// (`view`, `written_since`), `nr_blocks`, `count` of blocks listed, `blocks` as
    /// half-open ranges, why blocks were listed without proof (`over_reported`) and
    /// the damage found (`findings`).
    pub fn write_json<W: Write>(&self, out: W, opts: InvalidateOptions) -> std::io::Result<W> {
        let mut j = JsonOut::new(out);
        j.begin_object(false)?;
        j.field_str("format", "era_invalidate")?;
        j.field_num("version", 1)?;
        j.field_str(
            "view",
            if opts.metadata_snapshot {
                "metadata-snapshot"
            } else {
                "live"
            },
        )?;
        j.field_num("written_since", opts.written_since as u64)?;
        j.field_num("nr_blocks", self.nr_blocks)?;
        j.field_num("count", self.count())?;
        j.key("blocks")?;
        j.begin_array(false)?;
        for (b, e) in self.runs() {
            j.range(b, e)?;
        }
        j.end()?;
        j.key("over_reported")?;
        j.begin_array(false)?;
        for r in &self.over_reported {
            j.str(r)?;
        }
        j.end()?;
        write_findings_json(&mut j, "findings", &self.findings)?;
        j.end()?;
        j.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv(nr: u64, set: &[u64]) -> Invalidation {
        let m = Marks::new(nr);
        for &b in set {
            m.set(b);
        }
        Invalidation {
            nr_blocks: nr,
            words: m.words.into_iter().map(|a| a.into_inner()).collect(),
            all: false,
            over_reported: vec![],
            findings: vec![],
        }
    }

    #[test]
    fn runs_are_maximal_across_words() {
        let set: Vec<u64> = (60..70).chain([0, 2, 127, 128, 129, 199]).collect();
        let i = inv(200, &set);
        let runs: Vec<_> = i.runs().collect();
        assert_eq!(runs, vec![(0, 1), (2, 3), (60, 70), (127, 130), (199, 200)]);
        let x = String::from_utf8(i.write_xml(Vec::new()).unwrap()).unwrap();
        assert!(x.starts_with("<blocks>\n  <block block=\"0\"/>\n"));
        assert!(x.contains("  <range begin=\"127\" end=\"130\"/>\n"));
        assert!(x.ends_with("</blocks>\n"));
        assert_eq!(i.count(), 10 + 6);
        let j = i
            .write_json(Vec::new(), InvalidateOptions::default())
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&j).unwrap();
        assert_eq!(v["count"], 16);
        assert_eq!(v["blocks"][3]["begin"], 127);
        assert_eq!(v["blocks"][3]["end"], 130);
        assert_eq!(v["blocks"].as_array().unwrap().len(), 5);
    }

    #[test]
    fn full_and_empty() {
        let all: Vec<u64> = (0..130).collect();
        assert_eq!(inv(130, &all).runs().collect::<Vec<_>>(), vec![(0, 130)]);
        let all: Vec<u64> = (0..128).collect();
        assert_eq!(inv(128, &all).runs().collect::<Vec<_>>(), vec![(0, 128)]);
        assert_eq!(inv(0, &[]).runs().count(), 0);
        let x = String::from_utf8(inv(10, &[]).write_xml(Vec::new()).unwrap()).unwrap();
        assert_eq!(x, "<blocks>\n</blocks>\n");
        let m = Marks::new(200);
        m.set_range(3, 150);
        let i = Invalidation {
            nr_blocks: 200,
            words: m.words.into_iter().map(|a| a.into_inner()).collect(),
            all: false,
            over_reported: vec![],
            findings: vec![],
        };
        assert_eq!(i.runs().collect::<Vec<_>>(), vec![(3, 150)]);
    }
}
