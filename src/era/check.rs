//! era_check: ERA.md §11 and PERSISTENT-DATA.md §10, including what
//! thin-provisioning-tools' era_check leaves out (the current writeset, era
//! contiguity, the metadata snapshot and the space map).

use std::io::{self, Write};

use crate::era::superblock::{self, EraSuperblock, METADATA_BLOCK_SIZE_SECTORS, ZERO_RANGES};
use crate::era::writeset::{read_tree, ArchivedWriteset};
use crate::io::BlockDevice;
use crate::pdata::array::ArrayDesc;
use crate::pdata::le32;
use crate::pdata::refs::{Refs, Role, Visit};
use crate::pdata::space_map::{check_space_map, SmSummary};
use crate::pdata::walk::Walker;
use crate::report::{write_check_json, Finding, Part, Place, Report};
use crate::superblock::{padding_findings, SUPERBLOCK_LOCATION};

/// What to check.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Stop after the superblock.
    pub superblock_only: bool,
    /// The table's block size, if known.
    pub block_size: Option<u32>,
    /// Check the metadata snapshot (and the trees it references) instead of the
    /// live metadata, which a running target changes: the live superblock is only
    /// read to find the snapshot, and the space map is not checked.
    pub metadata_snapshot: bool,
}

/// The result of a check.
#[derive(Debug, Default)]
pub struct CheckOutcome {
    /// All findings.
    pub report: Report,
    /// The superblock checked, if it validated: the live one, or with
    /// `metadata_snapshot` the snapshot's.
    pub superblock: Option<EraSuperblock>,
    /// Where the snapshot superblock checked is (`metadata_snapshot` only).
    pub snapshot_location: Option<u64>,
    /// Archived eras found in the live tree.
    pub archived_eras: Vec<u64>,
    /// Space-map figures.
    pub space_map: SmSummary,
    /// Every block the walk reached, with its expected reference count and role.
    pub refs: Option<Refs>,
}

const SB: Part = Part::Superblock;

/// Checks the era metadata on `dev`.
pub fn check(dev: &dyn BlockDevice, opts: &CheckOptions) -> CheckOutcome {
    let mut out = CheckOutcome::default();
    let (sb, raw) = match superblock::read_at(dev, SUPERBLOCK_LOCATION) {
        Ok(x) => x,
        Err(e) => {
            out.report.push(e.finding(SUPERBLOCK_LOCATION));
            return out;
        }
    };
    out.superblock = Some(sb);
    let r = &mut out.report;
    if sb.flags > 1 {
        r.push(Finding::warning(
            "sb-flags",
            Some(0),
            SB,
            format!("flags {:#x}, expected 0 or 1", sb.flags),
        ));
    }
    r.extend(padding_findings(&raw, &ZERO_RANGES));
    if sb.metadata_block_size != METADATA_BLOCK_SIZE_SECTORS {
        r.push(Finding::warning(
            "era-metadata-block-size",
            Some(0),
            SB,
            format!(
                "metadata_block_size {}, the kernel writes 8",
                sb.metadata_block_size
            ),
        ));
    }
    if sb.data_block_size == 0 || sb.data_block_size % 8 != 0 {
        r.push(Finding::error(
            "era-block-size",
            Some(0),
            SB,
            format!(
                "data block size {} sectors is not a positive multiple of 8",
                sb.data_block_size
            ),
        ));
    }
    if let Some(bs) = opts.block_size.filter(|&bs| bs != sb.data_block_size) {
        r.push(Finding::error(
            "era-table-block-size",
            Some(0),
            SB,
            format!(
                "data block size {} sectors, the table says {bs}: the kernel refuses this table",
                sb.data_block_size
            ),
        ));
    }
    let meta_blocks = sb.sm_root.nr_blocks.min(dev.nr_blocks());
    if let Some(msg) = sb.nr_blocks_error(meta_blocks) {
        r.push(Finding::error("era-nr-blocks", Some(0), SB, msg));
        if sb.nr_blocks >= 1 << 31 {
            return out;
        }
    }
    if let Some(f) = crate::superblock::truncation(sb.sm_root.nr_blocks, dev) {
        r.push(f);
        return out;
    }
    if opts.metadata_snapshot {
        check_snapshot_only(dev, &sb, opts, &mut out);
        return out;
    }
    if opts.superblock_only {
        return out;
    }

    let mut w = Walker::new(dev, sb.sm_root.nr_blocks, true);
    w.allow_sharing = sb.metadata_snap != 0;
    w.reach(SUPERBLOCK_LOCATION, Role::Superblock, &SB.into(), None);
    out.archived_eras = check_trees(&mut w, &sb, 0, "", true);

    if sb.metadata_snap != 0 {
        let s = sb.metadata_snap;
        let structure = Part::SnapshotSuperblock;
        if w.reach(s, Role::Superblock, &structure.into(), Some(0)) == Some(Visit::First) {
            match superblock::read_at(dev, s) {
                Ok((snap, _)) => {
                    if let Some(msg) = snap.nr_blocks_error(meta_blocks) {
                        w.push(Finding::error("era-nr-blocks", Some(s), structure, msg));
                    }
                    if snap.nr_blocks < 1 << 31 {
                        check_trees(&mut w, &snap, s, "snapshot ", false);
                    }
                }
                Err(e) => w.push(e.finding(s)),
            }
        }
    }
    out.space_map = check_space_map(&mut w, &sb.sm_root, dev.nr_blocks());
    out.report.extend(w.report.findings().iter().cloned());
    out.refs = w.refs.take();
    out
}

/// The check of `--metadata-snapshot`: the snapshot superblock and its trees.
fn check_snapshot_only(
    dev: &dyn BlockDevice,
    live: &EraSuperblock,
    opts: &CheckOptions,
    out: &mut CheckOutcome,
) {
    let s = live.metadata_snap;
    if s == 0 {
        out.report.push(Finding::error(
            "era-no-snapshot",
            None,
            SB,
            "the metadata holds no metadata snapshot (no current metadata snap; take one with: dmsetup message <era device> 0 take_metadata_snap)",
        ));
        out.superblock = None;
        return;
    }
    let snap = match superblock::read_at(dev, s) {
        Ok((snap, _)) => snap,
        Err(e) => {
            out.report.push(e.finding(s));
            return;
        }
    };
    out.superblock = Some(snap);
    out.snapshot_location = Some(s);
    if opts.superblock_only {
        return;
    }
    let meta_blocks = live.sm_root.nr_blocks.min(dev.nr_blocks());
    if let Some(msg) = snap.nr_blocks_error(meta_blocks) {
        out.report.push(Finding::error(
            "era-nr-blocks",
            Some(s),
            Part::SnapshotSuperblock,
            msg,
        ));
        if snap.nr_blocks >= 1 << 31 {
            return;
        }
    }
    let mut w = Walker::new(dev, live.sm_root.nr_blocks, false);
    w.allow_sharing = true;
    out.archived_eras = check_trees(&mut w, &snap, s, "snapshot ", false);
    out.report.extend(w.report.findings().iter().cloned());
}

/// Checks the writeset tree, the current writeset (live superblock only) and the era
/// array referenced by `sb`. Returns the archived eras.
fn check_trees(
    w: &mut Walker<'_>,
    sb: &EraSuperblock,
    loc: u64,
    prefix: &str,
    live: bool,
) -> Vec<u64> {
    let tree_name = Place::new(Part::WritesetTree, format!("{prefix}writeset tree"));
    let (entries, _) = read_tree(w, sb.writeset_tree_root, &tree_name, loc);
    // Whether the superblock records a current writeset. A snapshot's copy does (it
    // was taken while era N+1 ran, ERA.md §9) but its bitset is the live one, still
    // changing, and is only checked from the live superblock.
    let current = sb.current_writeset.root != 0;
    let cur_era = sb.current_era as u64;
    for e in &entries {
        check_writeset(w, e, sb, &tree_name, current);
    }
    let eras: Vec<u64> = entries.iter().map(|e| e.era).collect();

    // Era contiguity (rule 9): [lo, hi] with no gap, hi = current_era (- 1 while a
    // current writeset exists).
    if let (Some(&lo), Some(&hi)) = (eras.first(), eras.last()) {
        if hi - lo + 1 != eras.len() as u64 {
            let gap = eras
                .windows(2)
                .find(|p| p[1] != p[0] + 1)
                .map_or(lo, |p| p[0] + 1);
            w.push(Finding::error(
                "era-contiguity",
                Some(sb.writeset_tree_root),
                &tree_name,
                format!("archived eras {lo}..={hi} have a gap: era {gap} is missing"),
            ));
        }
        let want = if current {
            cur_era.saturating_sub(1)
        } else {
            cur_era
        };
        if hi != want && hi <= cur_era {
            w.push(Finding::error(
                "era-contiguity",
                Some(sb.writeset_tree_root),
                &tree_name,
                format!(
                    "newest archived era is {hi}, expected {want} (current era {cur_era}, {} current writeset)",
                    if current { "with a" } else { "no" }
                ),
            ));
        }
    }

    if current && live {
        let ws = sb.current_writeset;
        let name = Place::new(
            Part::CurrentWriteset,
            format!("current writeset (era {cur_era})"),
        );
        if eras.contains(&cur_era) {
            w.push(Finding::error(
                "era-current-duplicate",
                Some(0),
                &name,
                format!("era {cur_era} is both the current writeset and archived in the tree"),
            ));
        }
        if ws.nr_bits != sb.nr_blocks {
            w.push(Finding::warning(
                "era-writeset-nr-bits",
                Some(0),
                &name,
                format!(
                    "nr_bits {}, the superblock tracks {} blocks",
                    ws.nr_bits, sb.nr_blocks
                ),
            ));
        }
        w.check_bitset(ws.root, &name, ws.nr_bits as u64, Some(loc));
    }

    // The era array (rule 6), with the digestion order (rule 12) as a warning.
    let lowest = eras.first().copied();
    let desc = ArrayDesc {
        structure: Place::new(Part::EraArray, format!("{prefix}era array")),
        value_size: 4,
        nr_entries: sb.nr_blocks as u64,
        from: Some(loc),
    };
    let structure = desc.structure.clone();
    w.check_array(sb.era_array_root, &desc, &|first, vals| {
        let mut out = Vec::new();
        let mut above = None;
        let mut undigested = None;
        for (j, v) in vals.chunks_exact(4).enumerate() {
            let era = le32(v, 0) as u64;
            if era > cur_era && above.is_none() {
                above = Some((first + j as u64, era));
            }
            if lowest.is_some_and(|lo| era > lo) && era <= cur_era && undigested.is_none() {
                undigested = Some((first + j as u64, era));
            }
        }
        if let Some((b, era)) = above {
            out.push(Finding::error(
                "era-array-value",
                None,
                &structure,
                format!("origin block {b} has era {era}, above the current era {cur_era}"),
            ));
        }
        if let Some((b, era)) = undigested {
            out.push(Finding::warning(
                "era-digest-order",
                None,
                &structure,
                format!(
                    "origin block {b} has era {era}, above the lowest archived era {} that is not yet digested",
                    lowest.unwrap_or(0)
                ),
            ));
        }
        out
    });
    eras
}

fn check_writeset(
    w: &mut Walker<'_>,
    e: &ArchivedWriteset,
    sb: &EraSuperblock,
    tree: &Place,
    current: bool,
) {
    let cur_era = sb.current_era as u64;
    let name = Place::new(Part::Writeset, format!("{tree} writeset of era {}", e.era));
    if e.era > cur_era || (current && e.era == cur_era) {
        w.push(Finding::error(
            "era-writeset-era",
            Some(e.leaf),
            tree,
            format!(
                "archived era {} is not below{} the current era {cur_era}",
                e.era,
                if current { "" } else { " or equal to" }
            ),
        ));
    }
    if e.ws.root == 0 {
        w.push(Finding::error(
            "era-writeset-root",
            Some(e.leaf),
            tree,
            format!("era {} has no bitset (root 0)", e.era),
        ));
        return;
    }
    if e.ws.nr_bits != sb.nr_blocks {
        w.push(Finding::warning(
            "era-writeset-nr-bits",
            Some(e.leaf),
            &name,
            format!(
                "nr_bits {}, the superblock tracks {} blocks",
                e.ws.nr_bits, sb.nr_blocks
            ),
        ));
    }
    w.check_bitset(e.ws.root, &name, e.ws.nr_bits as u64, Some(e.leaf));
}

impl CheckOutcome {
    /// The outcome as era_check's JSON document (era_check(8)): the verdict and
    /// findings, and `"metadata"` when the superblock checked validated: `view`
    /// (`live` or `metadata-snapshot`), the geometry, the current era, the archived
    /// eras as half-open ranges, whether a current writeset is committed, where the
    /// live superblock's metadata snapshot is, and the metadata blocks `used` and
    /// `total` counted in the space map (`null` when the space map was not checked:
    /// superblock only, or a snapshot view).
    pub fn write_json<W: Write>(
        &self,
        out: W,
        opts: &CheckOptions,
        ignore_non_fatal: bool,
    ) -> io::Result<()> {
        write_check_json(out, "era_check", &self.report, ignore_non_fatal, |j| {
            let Some(sb) = &self.superblock else {
                return j.null();
            };
            j.begin_object(false)?;
            let snapshot = self.snapshot_location.is_some();
            j.field_str(
                "view",
                if snapshot {
                    "metadata-snapshot"
                } else {
                    "live"
                },
            )?;
            j.key("snapshot_location")?;
            j.opt_num(self.snapshot_location)?;
            j.field_num("block_size", sb.data_block_size as u64)?;
            j.field_num("nr_blocks", sb.nr_blocks as u64)?;
            j.field_num("current_era", sb.current_era as u64)?;
            let full = !opts.superblock_only;
            j.key("archived_eras")?;
            if full {
                j.begin_array(true)?;
                let eras = &self.archived_eras;
                let mut i = 0;
                while i < eras.len() {
                    let mut k = i;
                    while k + 1 < eras.len() && eras[k].checked_add(1) == Some(eras[k + 1]) {
                        k += 1;
                    }
                    j.range(eras[i], eras[k].saturating_add(1))?;
                    i = k + 1;
                }
                j.end()?;
            } else {
                j.null()?;
            }
            j.field_bool(
                "current_writeset",
                !snapshot && sb.current_writeset.root != 0,
            )?;
            j.key("metadata_snapshot")?;
            j.opt_num((!snapshot && sb.metadata_snap != 0).then_some(sb.metadata_snap))?;
            j.key("metadata_blocks")?;
            if full && !snapshot && self.space_map.nr_blocks != 0 {
                j.begin_object(true)?;
                j.field_num("used", self.space_map.used)?;
                j.field_num("total", self.space_map.nr_blocks)?;
                j.end()?;
            } else {
                j.null()?;
            }
            j.end()
        })
    }
}
