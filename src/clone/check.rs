//! clone_check: every rule of CLONE.md §10 and PERSISTENT-DATA.md §10.

use std::io::{self, Write};

use crate::clone::superblock::{self, CloneSuperblock, ZERO_RANGES};
use crate::io::BlockDevice;
use crate::pdata::refs::{Refs, Role};
use crate::pdata::space_map::{check_space_map, SmSummary};
use crate::pdata::walk::Walker;
use crate::report::{write_check_json, Finding, Part, Report};
use crate::superblock::{padding_findings, SUPERBLOCK_LOCATION};

/// What to check.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Stop after the superblock.
    pub superblock_only: bool,
    /// Region size of the table the metadata belongs to, if known.
    pub region_size: Option<u64>,
    /// Target length of that table, if known.
    pub target_size: Option<u64>,
}

/// The result of a check: findings, and what the metadata holds when readable.
#[derive(Debug, Default)]
pub struct CheckOutcome {
    /// All findings.
    pub report: Report,
    /// The superblock, if it validated.
    pub superblock: Option<CloneSuperblock>,
    /// Hydrated regions counted in the readable part of the bitset.
    pub hydrated: u64,
    /// Space-map figures.
    pub space_map: SmSummary,
    /// Every block the walk reached, with its expected reference count and role.
    pub refs: Option<Refs>,
}

const SB: Part = Part::Superblock;

/// Checks the clone metadata on `dev`.
pub fn check(dev: &dyn BlockDevice, opts: &CheckOptions) -> CheckOutcome {
    let mut out = CheckOutcome::default();
    let (sb, raw) = match superblock::read(dev) {
        Ok(x) => x,
        Err(e) => {
            out.report.push(e.finding(SUPERBLOCK_LOCATION));
            return out;
        }
    };
    out.superblock = Some(sb);
    if sb.flags != 0 {
        out.report.push(Finding::warning(
            "sb-flags",
            Some(0),
            SB,
            format!("flags {:#x}, the kernel writes 0", sb.flags),
        ));
    }
    out.report.extend(padding_findings(&raw, &ZERO_RANGES));
    if let Some(msg) = sb.geometry_error() {
        out.report
            .push(Finding::error("clone-geometry", Some(0), SB, msg));
        return out;
    }
    if let Some(rs) = opts.region_size.filter(|&rs| rs != sb.region_size) {
        out.report.push(Finding::error(
            "clone-table-region-size",
            Some(0),
            SB,
            format!(
                "region size {} sectors, the table says {rs}: the kernel refuses this table",
                sb.region_size
            ),
        ));
    }
    if let Some(ts) = opts.target_size.filter(|&ts| ts != sb.target_size) {
        out.report.push(Finding::error(
            "clone-table-target-size",
            Some(0),
            SB,
            format!(
                "target size {} sectors, the table says {ts}: the kernel refuses this table",
                sb.target_size
            ),
        ));
    }
    if let Some(f) = crate::superblock::truncation(sb.sm_root.nr_blocks, dev) {
        out.report.push(f);
        return out;
    }
    if opts.superblock_only {
        return out;
    }

    let mut w = Walker::new(dev, sb.sm_root.nr_blocks, true);
    w.reach(SUPERBLOCK_LOCATION, Role::Superblock, &SB.into(), None);
    let bits = w.check_bitset(
        sb.bitset_root,
        &Part::RegionBitset.into(),
        sb.nr_regions(),
        Some(0),
    );
    out.hydrated = bits.set_bits;
    out.space_map = check_space_map(&mut w, &sb.sm_root, dev.nr_blocks());
    out.report.extend(w.report.findings().iter().cloned());
    out.refs = w.refs.take();
    out
}

impl CheckOutcome {
    /// The outcome as clone_check's JSON document (clone_check(8)): the verdict and
    /// findings, and `"metadata"`: the geometry when the superblock validated, with
    /// `hydrated` (regions counted in the readable part of the bitset) and
    /// `metadata_blocks` (`used`, `total`, from the space map's bitmaps) unless only
    /// the superblock was checked (then `null`).
    pub fn write_json<W: Write>(
        &self,
        out: W,
        opts: &CheckOptions,
        ignore_non_fatal: bool,
    ) -> io::Result<()> {
        write_check_json(out, "clone_check", &self.report, ignore_non_fatal, |j| {
            let Some(sb) = &self.superblock else {
                return j.null();
            };
            j.begin_object(false)?;
            j.field_num("region_size", sb.region_size)?;
            j.field_num("target_size", sb.target_size)?;
            j.field_num("nr_regions", sb.nr_regions())?;
            let full = !opts.superblock_only && sb.geometry_error().is_none();
            j.key("hydrated")?;
            j.opt_num(full.then_some(self.hydrated))?;
            j.key("metadata_blocks")?;
            if full {
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
