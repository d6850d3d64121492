//! `--mode crash`: a capture cut by a power failure (REPLAY.md §2.7).
//!
//! Each log holds only what a flush made durable on its device, so every log
//! replayed whole is a state the power cut could have left, whatever the order
//! between devices. On it:
//!
//! * dm-clone: I1 (the metadata checks clean); I2 (every sector of a region the
//!   metadata calls hydrated was written on the destination by the log, with the
//!   source's content, a value the user wrote there or a discard; a sector the
//!   destination log never wrote is a lost hydration); I3 with the
//!   user log (every acknowledged user write is in a hydrated region and on the
//!   destination).
//! * dm-era: E1; E2 (after the kernel's recovery, every block the origin log
//!   wrote or discarded, each era block of a discard included, is listed by
//!   `era_invalidate --written-since` the era it was written in). The era of a write is the one in force at the flush before it in the
//!   origin log: the era at activation plus the `msg:checkpoint` marks logged
//!   by then. Captures mark every log after each checkpoint message returns and
//!   flush their writes before sending one (tests/kernel/README.md).

use std::collections::{BTreeMap, HashSet};

use super::data::{DataLog, Image, Val, SECTOR};
use super::meta::meta_error;
use super::{LogViolation, MetaState, Summary, Target, VerifyError, Violation};
use crate::clone::superblock as csb;
use crate::era::invalidate::{invalidate, InvalidateOptions};
use crate::era::superblock as esb;
use crate::logwrites::{Log, LogSource};
use crate::sim::MetaImage;
use crate::verify::image_hydrated;

/// The metadata device after its whole log, the image at every mark (by
/// label, the last one of each label wins) and, for dm-era, the era of the
/// first valid superblock written.
pub fn replay_meta<R: LogSource>(
    log: &Log<R>,
    st: &mut MetaState,
) -> std::io::Result<(BTreeMap<String, MetaImage>, Option<u32>)> {
    let mut at_marks = BTreeMap::new();
    let mut first_era = None;
    for e in &log.entries {
        if let Some(l) = &e.label {
            at_marks.insert(l.clone(), st.image());
        } else if st.step(log, e)? && first_era.is_none() {
            first_era = esb::read_at(&st.image(), 0)
                .ok()
                .map(|(sb, _)| sb.current_era);
        }
    }
    Ok((at_marks, first_era))
}

fn v(id: &'static str, entry: u64, what: String) -> LogViolation {
    LogViolation(Violation {
        id,
        cp: entry as usize,
        state: "whole logs".into(),
        what,
    })
}

/// The inputs of a crash verification.
pub struct CrashInputs<'a, R: LogSource> {
    /// The metadata log and the device it rebuilds (base included).
    pub meta: (&'a Log<R>, MetaState),
    /// The data device's log (dest or origin).
    pub data: &'a Log<R>,
    /// The source's (or origin's) content before logging.
    pub image: &'a Image,
    /// The user-level log, if captured.
    pub user: Option<&'a Log<R>>,
}

/// Verifies a power-cut capture; every violation goes to `out`.
pub fn verify<R: LogSource>(
    target: Target,
    inp: CrashInputs<'_, R>,
    out: &mut dyn FnMut(LogViolation),
) -> Result<Summary, VerifyError> {
    let io = |e: std::io::Error| VerifyError::Input(e.to_string());
    let (meta_log, mut st) = inp.meta;
    super::check_meta_log(meta_log, st.nr_blocks, "metadata log")?;
    let (marks, first_era) = replay_meta(meta_log, &mut st).map_err(io)?;
    let img = st.image();
    let last = meta_log.entries.last().map_or(0, |e| e.index);
    let s = meta_log.sector_size as u64;
    let mut sum = Summary {
        states: 1,
        commits: meta_log
            .entries
            .iter()
            .filter(|e| e.is_write() && e.sector * s < crate::io::BLOCK_SIZE as u64)
            .count(),
        ..Default::default()
    };
    sum.entries
        .push(("metadata log".into(), meta_log.entries.len()));
    sum.entries
        .push(("data log".into(), inp.data.entries.len()));
    if let Some(u) = inp.user {
        sum.entries.push(("user log".into(), u.entries.len()));
    }
    for l in [Some(meta_log), Some(inp.data), inp.user]
        .into_iter()
        .flatten()
    {
        sum.warnings.extend(l.notes.iter().cloned());
        if l.closed {
            sum.warnings.push(
                "a log was closed by `dmsetup remove`: this capture did not end in a power cut"
                    .into(),
            );
        }
    }
    let mut found = Vec::new();
    if let Some(err) = meta_error(target, &img) {
        found.push(v(
            target.meta_id(),
            last,
            format!("metadata invalid: {err}"),
        ));
    } else {
        let data = DataLog::replay(inp.data, false).map_err(io)?;
        let user = match inp.user {
            Some(u) => Some(DataLog::replay(u, true).map_err(io)?),
            None => None,
        };
        match target {
            Target::Clone => clone(&img, last, &data, inp.image, user.as_ref(), &mut found)?,
            Target::Era => era(&img, first_era, last, inp.data, &marks, &mut found)?,
        }
    }
    sum.violations = found.len();
    for f in found {
        out(f);
    }
    Ok(sum)
}

/// Regions reported at most, so a wholesale loss stays readable.
const MAX_REGIONS: usize = 64;

fn clone(
    img: &MetaImage,
    last: u64,
    dest: &DataLog,
    source: &Image,
    user: Option<&DataLog>,
    found: &mut Vec<LogViolation>,
) -> Result<(), VerifyError> {
    let (sb, _) = csb::read(img).map_err(|e| VerifyError::Input(e.to_string()))?;
    let h = image_hydrated(img).map_err(VerifyError::Input)?;
    let rs = sb.region_size;
    let size = sb.target_size;
    if source.sectors() < size {
        return Err(VerifyError::Input(format!(
            "the source image has {} sectors; the metadata's target has {size}",
            source.sectors()
        )));
    }
    let user_discarded = |s: u64| user.is_some_and(|u| u.ever_discarded(s));
    let mut lost = 0usize;
    let mut hydrated_regions = 0u64;
    for (a, b) in h.runs() {
        for r in a..b {
            hydrated_regions += 1;
            for s in r * rs..((r + 1) * rs).min(size) {
                let what = match dest.last(s) {
                    Some(Val::Discarded) => None,
                    None if user_discarded(s) => None,
                    None => Some(
                        "the destination log never wrote it: dest holds its initial content: lost hydration"
                            .to_string(),
                    ),
                    // Written: the source's content, a user write (the user
                    // log holds only flushed ones), or discarded data. Telling
                    // stale data from an unlogged write needs the order
                    // between devices.
                    Some(Val::Data(_)) => None,
                };
                if let Some(w) = what {
                    if lost < MAX_REGIONS {
                        found.push(v(
                            "I2",
                            last,
                            format!("region {r} is hydrated; sector {s}: {w}"),
                        ));
                    }
                    lost += 1;
                    break;
                }
            }
        }
    }
    if lost > MAX_REGIONS {
        found.push(v(
            "I2",
            last,
            format!(
                "{} more hydrated regions of {hydrated_regions} fail the same way",
                lost - MAX_REGIONS
            ),
        ));
    }
    let Some(u) = user else { return Ok(()) };
    for (s, x) in u.acked() {
        if s >= size {
            continue;
        }
        let r = s / rs;
        let what = if !h.get(r) {
            Some(format!(
                "region {r} is not hydrated: reads go to the source"
            ))
        } else {
            match dest.last(s) {
                Some(Val::Data(y)) if y == x || u.wrote(s, y) => None,
                Some(Val::Discarded) => None,
                None => Some("the destination log never wrote the sector".to_string()),
                Some(Val::Data(y)) if y == source.hash(s)? => {
                    Some("the destination holds the source's content".to_string())
                }
                // Another value: a later write the user log did not see (not
                // flushed before the cut); only the order between devices
                // could tell.
                Some(Val::Data(_)) => None,
            }
        };
        if let Some(w) = what {
            found.push(v(
                "I3",
                last,
                format!("the acknowledged user write at sector {s} is lost: {w}"),
            ));
            break;
        }
    }
    Ok(())
}

fn era(
    img: &MetaImage,
    first_era: Option<u32>,
    last: u64,
    origin: &Log<impl LogSource>,
    marks: &BTreeMap<String, MetaImage>,
    found: &mut Vec<LogViolation>,
) -> Result<(), VerifyError> {
    let (sb, _) = esb::read_at(img, 0).map_err(|e| VerifyError::Input(e.to_string()))?;
    // The era the user saw first: the committed one at the `activated` mark,
    // else the first committed one (an earlier era only widens the question).
    let start = marks
        .get("activated")
        .and_then(|m| esb::read_at(m, 0).ok())
        .map(|(s, _)| s.current_era)
        .or(first_era);
    let Some(e0) = start else {
        return Err(VerifyError::Input(
            "the metadata log commits no valid superblock before the origin's writes".into(),
        ));
    };
    let rec = match crate::verify::era_recover(
        img,
        sb.data_block_size,
        sb.nr_blocks as u64,
        sb.current_era,
        crate::trace::Variant::Fixed,
    ) {
        Ok(r) => r,
        // No room for the rollover: the kernel would not resume the target
        // until the metadata grows, and loses nothing; the image as it is
        // (its current writeset included) answers (as in `EraChecker`).
        Err(e) if e.is_no_space() => img.clone(),
        Err(e) => {
            return Err(VerifyError::Input(format!(
                "the kernel's recovery of the metadata fails: {e}"
            )))
        }
    };
    let bs = sb.data_block_size as u64 * SECTOR;
    let s = origin.sector_size as u64;
    let (mut era_now, mut era_at_flush) = (e0, e0);
    let mut need: BTreeMap<u32, HashSet<u64>> = BTreeMap::new();
    for e in &origin.entries {
        if e.label.as_deref() == Some("msg:checkpoint") {
            era_now += 1;
        }
        if e.is_flush() {
            era_at_flush = era_now;
        }
        // Every era block a write or a discard changed, not only its first
        // (HAZARDS H-E7: a discard reaches dm-era whole).
        if e.is_write() || e.is_discard() {
            let (a, b) = (e.sector * s, (e.sector + e.nr_sectors) * s);
            for blk in a / bs..b.div_ceil(bs) {
                need.entry(era_at_flush).or_default().insert(blk);
            }
        }
    }
    for (era, blocks) in need {
        let inv = invalidate(
            &rec,
            InvalidateOptions {
                written_since: era,
                metadata_snapshot: false,
            },
        )
        .map_err(|e| VerifyError::Input(format!("recovered metadata: {e}")))?;
        let mut missing: Vec<u64> = blocks.into_iter().filter(|&b| !inv.contains(b)).collect();
        missing.sort_unstable();
        if let Some(&b) = missing.first() {
            found.push(v(
                "E2",
                last,
                format!(
                    "block {b} (and {} more) was written or discarded on the origin in era {era}, but after recovery era_invalidate --written-since {era} does not list it",
                    missing.len() - 1
                ),
            ));
        }
    }
    Ok(())
}
