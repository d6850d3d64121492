//! `--mode conformance`: does the reference model commit what the kernel
//! committed? (REPLAY.md §2.7, mode 4.)
//!
//! The user log (a log-writes device on top of the target) becomes a dmtrace:
//! its writes, FUA writes, discards and flushes in log order, its marks as
//! `mark` lines, and the target messages the capture announced with marks named
//! `msg:<message>` (`msg:checkpoint`, `msg:take_metadata_snap`,
//! `msg:drop_metadata_snap`, `msg:enable_hydration`, `msg:disable_hydration`,
//! `msg:hydration_threshold_<n>`, `msg:hydration_batch_size_<n>`), and the
//! other control operations that commit: `msg:status` (a `dmsetup status`),
//! `msg:suspend`, `msg:resume`. The geometry
//! comes from the kernel's superblock; a log closed by `dmsetup remove` ends the
//! trace with `remove`.
//!
//! The kernel's committed images are the metadata device after each superblock
//! write of its log. The model replays the trace twice: as the kernel would run
//! it (its commits where its own triggers fire: flushes, messages, deferred
//! writes, suspend), and with a commit after every user I/O, so that commits
//! the kernel made on a timer in the middle of a phase have a counterpart. A
//! kernel image is reproduced logically when some model image holds the same
//! metadata (the same dump), and byte for byte when a model image of the first
//! replay is identical block by block. A kernel image no model state reproduces
//! is a violation; a byte difference is reported with its first block.
//!
//! The model runs as the fixed kernel unless told a variant: a kernel with a
//! known bug (6.1's dm-era marks only the first era block of a discard, HAZARDS
//! H-E7) is compared with the variant that has it. For dm-era, a violation
//! names the blocks whose logical era differs between the kernel's commit and
//! the model's state at the next mark (or at the end of a log closed by a
//! remove).

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};

use super::{LogViolation, MetaState, Summary, Target, VerifyError, Violation};
use crate::clone::superblock as csb;
use crate::era::invalidate::{invalidate, InvalidateOptions};
use crate::era::superblock as esb;
use crate::io::BLOCK_SIZE;
use crate::logwrites::{Log, LogSource, END_MARK};
use crate::model::bits::Bits;
use crate::model::replay::{replay_with, ReplayOptions};
use crate::sim::MetaImage;
use crate::trace::Variant;

/// The kernel's committed images: the device after each superblock write,
/// with the entry that wrote it; and the device at each mark, by label and
/// occurrence.
#[allow(clippy::type_complexity)]
fn kernel_commits<R: LogSource>(
    log: &Log<R>,
    st: &mut MetaState,
) -> std::io::Result<(
    Vec<(u64, MetaImage)>,
    Vec<Option<(u64, MetaImage)>>,
    HashMap<(String, usize), (u64, MetaImage)>,
)> {
    let mut out = Vec::new();
    let mut settled = Vec::new();
    let mut marks = HashMap::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    // The commit whose epoch is still open, and whether writes completed
    // after its superblock in that epoch.
    let mut open: Option<(usize, bool)> = None;
    for e in &log.entries {
        if let Some(l) = &e.label {
            let n = seen.entry(l.clone()).or_default();
            marks.insert((l.clone(), *n), (e.index, st.image()));
            *n += 1;
            continue;
        }
        if st.step(log, e)? {
            out.push((e.index, st.image()));
            settled.push(None);
            open = Some((out.len() - 1, false));
        } else if e.is_write() || e.is_discard() {
            if let Some((_, moved)) = &mut open {
                *moved = true;
            }
        }
        if e.is_flush() || e.is_fua() {
            if let Some((k, true)) = open.take() {
                settled[k] = Some((e.index, st.image()));
            }
        }
    }
    Ok((out, settled, marks))
}

/// The number of regions hydrated in a dm-clone image.
fn hydrated(img: &MetaImage) -> Option<u64> {
    crate::verify::image_hydrated(img)
        .ok()
        .map(|h| h.runs().iter().map(|(a, b)| b - a).sum())
}

/// The metadata's logical content: its dump, hashed.
fn logical(target: Target, img: &MetaImage) -> Option<u64> {
    let xml = dump(target, img).ok()?;
    let mut h = DefaultHasher::new();
    xml.hash(&mut h);
    Some(h.finish())
}

/// The XML dump of `img`, or why it does not dump.
fn dump(target: Target, img: &MetaImage) -> Result<Vec<u8>, String> {
    let mut xml = Vec::new();
    match target {
        Target::Clone => crate::clone::dump::dump(img, &mut xml, false)
            .map(drop)
            .map_err(|e| e.to_string()),
        Target::Era => {
            crate::era::dump::dump(img, &mut xml, crate::era::dump::DumpOptions::default())
                .map(drop)
                .map_err(|e| e.to_string())
        }
    }?;
    Ok(xml)
}

/// Every block's content, hashed (zero blocks and unwritten ones alike).
fn bytes(img: &MetaImage) -> u64 {
    let mut h = DefaultHasher::new();
    for (b, blk) in img.blocks() {
        if blk.iter().any(|&x| x != 0) {
            b.hash(&mut h);
            blk.hash(&mut h);
        }
    }
    h.finish()
}

/// Where two images differ: the first block and its first differing byte, and
/// how many blocks differ.
fn first_difference(a: &MetaImage, b: &MetaImage) -> Option<(u64, usize, usize)> {
    let map = |img: &MetaImage| -> HashMap<u64, [u8; BLOCK_SIZE]> {
        img.blocks()
            .filter(|(_, blk)| blk.iter().any(|&x| x != 0))
            .map(|(n, blk)| (n, *blk))
            .collect()
    };
    let (ma, mb) = (map(a), map(b));
    let mut keys: Vec<u64> = ma.keys().chain(mb.keys()).copied().collect();
    keys.sort_unstable();
    keys.dedup();
    let zero = [0u8; BLOCK_SIZE];
    let differ: Vec<u64> = keys
        .into_iter()
        .filter(|k| ma.get(k) != mb.get(k))
        .collect();
    let &first = differ.first()?;
    let (x, y) = (
        ma.get(&first).unwrap_or(&zero),
        mb.get(&first).unwrap_or(&zero),
    );
    let byte = x
        .iter()
        .zip(y.iter())
        .position(|(p, q)| p != q)
        .unwrap_or(0);
    Some((first, byte, differ.len()))
}

/// The geometry of the kernel's last valid superblock, as a `config` line.
fn config(
    target: Target,
    commits: &[(u64, MetaImage)],
    nr_blocks: u64,
    hydration: bool,
) -> Option<String> {
    let meta_size = nr_blocks * (BLOCK_SIZE as u64 / 512);
    // Only a superblock whose sizes the kernel could have written: a forged
    // one would make the model's devices.
    commits.iter().rev().find_map(|(_, img)| match target {
        Target::Clone => csb::read(img)
            .ok()
            .filter(|(sb, _)| sb.regions_error(nr_blocks).is_none())
            .map(|(sb, _)| {
                format!(
                    "config size={} region={} meta_size={meta_size} hydration={}",
                    sb.target_size,
                    sb.region_size,
                    if hydration { "on" } else { "off" }
                )
            }),
        Target::Era => esb::read_at(img, 0)
            .ok()
            .filter(|(sb, _)| sb.nr_blocks_error(nr_blocks).is_none())
            .map(|(sb, _)| {
                format!(
                    "config size={} block={} meta_size={meta_size}",
                    sb.nr_blocks as u64 * sb.data_block_size as u64,
                    sb.data_block_size
                )
            }),
    })
}

/// A mark's label as a dmtrace word.
fn word(label: &str) -> String {
    let w: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_-:/.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if w.is_empty() {
        "_".into()
    } else {
        w
    }
}

/// The target message a `msg:` mark announces, as a dmtrace line.
fn message(target: Target, msg: &str) -> Option<String> {
    let num = |p: &str| msg.strip_prefix(p).and_then(|n| n.parse::<u64>().ok());
    match (target, msg) {
        (_, "status" | "suspend" | "resume") => Some(msg.into()),
        (Target::Era, "checkpoint") => Some("checkpoint".into()),
        (Target::Era, "take_metadata_snap") => Some("snap.take".into()),
        (Target::Era, "drop_metadata_snap") => Some("snap.drop".into()),
        (Target::Clone, "enable_hydration" | "disable_hydration") => Some(format!("msg {msg}")),
        (Target::Clone, _) => {
            if let Some(n) = num("hydration_threshold_") {
                Some(format!("msg hydration_threshold={n}"))
            } else {
                num("hydration_batch_size_").map(|n| format!("msg hydration_batch_size={n}"))
            }
        }
        _ => None,
    }
}

/// What the trace adds around the user log's events.
pub struct Extra<'a> {
    /// Lines before the mark of this label and occurrence.
    pub before_mark: &'a dyn Fn(&str, usize) -> Vec<String>,
    /// Lines after every user I/O and every mark.
    pub after_each: &'a [&'a str],
    /// Lines after the mark of this label and occurrence.
    pub after_mark: &'a dyn Fn(&str, usize) -> Vec<String>,
    /// Lines at the end (before `remove`).
    pub at_end: Vec<String>,
    /// Split writes and discards at these boundaries (dm-clone's region size:
    /// the kernel splits bios there), each piece an I/O of its own.
    pub split: Option<u64>,
    /// Move each FUA write after the other writes of its epoch (up to the next
    /// flush or mark): a FUA write is logged at its completion, before older
    /// writes that the next flush logs, so the log's order may not be the
    /// order of issue.
    pub defer_fua: bool,
}

/// The user log as a dmtrace, with `extra` lines.
pub fn to_trace<R: LogSource>(
    target: Target,
    user: &Log<R>,
    config: &str,
    remove: bool,
    extra: &Extra<'_>,
) -> String {
    let per = user.sector_size as u64 / 512;
    let mut t = format!(
        "dmtrace 1 {}\n{config}\n",
        match target {
            Target::Clone => "clone",
            Target::Era => "era",
        }
    );
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut deferred: Vec<String> = Vec::new();
    let emit = |t: &mut String, line: &str| {
        let _ = writeln!(t, "{line}");
        for l in extra.after_each {
            let _ = writeln!(t, "{l}");
        }
    };
    // The pieces of an I/O at `sector`+`n` (in 512-byte sectors).
    let pieces = |sector: u64, n: u64| -> Vec<(u64, u64)> {
        match extra.split {
            Some(rs) if rs > 0 => {
                let mut v = Vec::new();
                let mut a = sector;
                while a < sector + n {
                    let b = ((a / rs + 1) * rs).min(sector + n);
                    v.push((a, b - a));
                    a = b;
                }
                v
            }
            _ => vec![(sector, n)],
        }
    };
    for e in &user.entries {
        let (start, n) = (
            e.sector.saturating_mul(per),
            e.nr_sectors.saturating_mul(per),
        );
        if e.is_mark() || e.is_flush() {
            for l in deferred.drain(..) {
                emit(&mut t, &l);
            }
        }
        if let Some(l) = &e.label {
            if l == END_MARK {
                continue;
            }
            // The message the mark announces and what the kernel had done by
            // the time the mark was sent (hydration runs until then: before
            // a message that stops it, after one that starts it).
            let msg = l.strip_prefix("msg:").and_then(|m| message(target, m));
            let starts = l == "msg:enable_hydration";
            if let (Some(m), true) = (&msg, starts) {
                let _ = writeln!(t, "{m}");
            }
            let k = seen.entry(l.clone()).or_default();
            for line in (extra.before_mark)(l, *k) {
                let _ = writeln!(t, "{line}");
            }
            *k += 1;
            if let (Some(m), false) = (&msg, starts) {
                let _ = writeln!(t, "{m}");
            }
            emit(&mut t, &format!("mark label={}", word(l)));
            for line in (extra.after_mark)(l, *k - 1) {
                let _ = writeln!(t, "{line}");
            }
        } else if e.is_discard() {
            // Whole: a discard carries no payload, so its length is not
            // bounded by the log's size.
            emit(&mut t, &format!("discard at={start}+{n}"));
        } else if e.is_write() {
            if e.is_flush() {
                emit(&mut t, "flush");
            }
            for (a, m) in pieces(start, n) {
                let mut line = format!("write at={a}+{m}");
                if e.is_fua() {
                    line.push_str(" fua");
                }
                if e.is_fua() && extra.defer_fua {
                    deferred.push(line);
                } else {
                    emit(&mut t, &line);
                }
            }
        } else {
            emit(&mut t, "flush");
        }
    }
    for l in deferred.drain(..) {
        emit(&mut t, &l);
    }
    for line in &extra.at_end {
        let _ = writeln!(t, "{line}");
    }
    if remove {
        t.push_str("remove\n");
    }
    t
}

/// The most checkpoints assumed between two marks of a dm-era capture that
/// announced none: far beyond a capture's (each is a message to the target),
/// far below what an era number read from a forged superblock can claim.
const MAX_UNANNOUNCED_CHECKPOINTS: u32 = 256;

/// The regions a user write or discard touched, in a device of `sb`'s
/// geometry.
fn touched_regions<R: LogSource>(user: &Log<R>, sb: &csb::CloneSuperblock) -> Bits {
    let per = user.sector_size as u64 / 512;
    let rs = sb.region_size.max(1);
    let nr = sb.target_size.div_ceil(rs);
    let mut touched = Bits::new(nr);
    for e in &user.entries {
        if e.nr_sectors > 0 && !e.is_mark() {
            let a = e.sector.saturating_mul(per) / rs;
            let b = e
                .sector
                .saturating_add(e.nr_sectors)
                .saturating_mul(per)
                .div_ceil(rs);
            touched.set_range(a, b);
        }
    }
    touched
}

/// True when the kernel hydrated a region no user write or discard touched:
/// background hydration was on.
fn background_hydration<R: LogSource>(kernel: &[(u64, MetaImage)], user: &Log<R>) -> bool {
    last_hydrated(kernel).is_some_and(|(sb, h)| !h.is_subset(&touched_regions(user, &sb)))
}

/// The superblock and hydrated set of the last kernel commit that has them
/// (a superblock whose hydrated set reads is one whose geometry is sound).
fn last_hydrated(kernel: &[(u64, MetaImage)]) -> Option<(csb::CloneSuperblock, Bits)> {
    kernel.iter().rev().find_map(|(_, img)| {
        let sb = csb::read(img).ok()?.0;
        Some((sb, crate::verify::image_hydrated(img).ok()?))
    })
}

/// Verifies that the model (of `variant`) reproduces every committed image of
/// the kernel.
pub fn verify<R: LogSource>(
    target: Target,
    meta: &Log<R>,
    mut st: MetaState,
    user: &Log<R>,
    variant: Variant,
    out: &mut dyn FnMut(LogViolation),
) -> Result<Summary, VerifyError> {
    let nr_blocks = st.nr_blocks;
    super::check_meta_log(meta, nr_blocks, "metadata log")?;
    let (kernel, settled, marks) =
        kernel_commits(meta, &mut st).map_err(|e| VerifyError::Input(e.to_string()))?;
    // Background hydration on from the start: regions no user I/O touched are
    // hydrated, and no message enabled it later.
    let enabled_later = user
        .entries
        .iter()
        .any(|e| e.label.as_deref() == Some("msg:enable_hydration"));
    let hydration =
        target == Target::Clone && !enabled_later && background_hydration(&kernel, user);
    let cfg = config(target, &kernel, nr_blocks, hydration).ok_or_else(|| {
        VerifyError::Input("the metadata log holds no valid superblock: nothing to compare".into())
    })?;
    let mut sum = Summary::default();
    sum.entries
        .push(("metadata log".into(), meta.entries.len()));
    sum.entries.push(("user log".into(), user.entries.len()));
    sum.warnings.extend(meta.notes.iter().cloned());
    sum.warnings.extend(user.notes.iter().cloned());
    sum.commits = kernel.len();
    let remove = meta.closed && user.closed;
    // Background hydration has no events in the user log: the model lets it
    // run until as many regions are hydrated as the kernel had committed at
    // each mark (and, in the fine pass, through every count it committed).
    let counts: Vec<u64> = {
        let mut c: Vec<u64> = kernel.iter().filter_map(|(_, i)| hydrated(i)).collect();
        c.sort_unstable();
        c.dedup();
        c
    };
    let hydrating = hydration || enabled_later;
    let at_mark = |l: &str, n: usize, fine: bool| -> Vec<String> {
        if !hydrating {
            return Vec::new();
        }
        let Some(h) = marks
            .get(&(l.to_string(), n))
            .and_then(|(_, i)| hydrated(i))
        else {
            return Vec::new();
        };
        let mut lines = Vec::new();
        if fine {
            for &c in counts.iter().filter(|&&c| c < h) {
                lines.push(format!("wait hydrated={c}"));
                lines.push("commit".into());
            }
        }
        lines.push(format!("wait hydrated={h}"));
        lines
    };
    let final_h = kernel.last().and_then(|(_, i)| hydrated(i)).unwrap_or(0);
    let rs = kernel
        .iter()
        .find_map(|(_, img)| csb::read(img).ok().map(|(sb, _)| sb.region_size));
    let mut models = Vec::new();
    let mut texts = Vec::new();
    // Passes: as the kernel runs the trace; the same with a status (which
    // commits) at every mark, as captures that record the target's status at
    // each mark do; a commit (dm-era: a status) after every I/O; the same with
    // FUA writes moved after their epoch's other writes. The first two are
    // compared byte for byte.
    // The user log's marks in order, each with the next one.
    let mut order: Vec<(String, usize)> = Vec::new();
    {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for l in user.entries.iter().filter_map(|e| e.label.as_deref()) {
            let n = seen.entry(l).or_default();
            order.push((l.to_string(), *n));
            *n += 1;
        }
    }
    let h_at = |key: &(String, usize)| marks.get(key).and_then(|(_, i)| hydrated(i));
    // Hydration that ran early in a window, before its user I/O: the counts
    // the kernel committed between this mark and the next, right after it.
    let early = |l: &str, n: usize| -> Vec<String> {
        let Some(i) = order.iter().position(|(x, k)| x == l && *k == n) else {
            return Vec::new();
        };
        let (Some(lo), Some(hi)) = (
            h_at(&order[i]),
            order.get(i + 1).and_then(&h_at).or(Some(final_h)),
        ) else {
            return Vec::new();
        };
        let mut v = Vec::new();
        for &c in counts.iter().filter(|&&c| c > lo && c < hi) {
            v.push(format!("wait hydrated={c}"));
            v.push("commit".into());
        }
        v
    };
    // dm-era checkpoints a capture did not announce with a `msg:checkpoint`
    // mark: the kernel's era grew between two marks by more than the marks
    // explain.
    let era_at = |key: &(String, usize)| {
        marks
            .get(key)
            .and_then(|(_, i)| esb::read_at(i, 0).ok())
            .map(|(sb, _)| sb.current_era)
    };
    let unannounced = |l: &str, n: usize| -> Vec<String> {
        if target != Target::Era {
            return Vec::new();
        }
        let Some(i) = order.iter().position(|(x, k)| x == l && *k == n) else {
            return Vec::new();
        };
        let (Some(now), Some(before)) = (
            era_at(&order[i]),
            i.checked_sub(1).and_then(|j| era_at(&order[j])),
        ) else {
            return Vec::new();
        };
        let explained = u32::from(matches!(
            l,
            "msg:checkpoint" | "msg:resume" | "msg:take_metadata_snap"
        ));
        // A forged superblock can claim any era: past this many the model
        // is not asked to catch up, and the commits that follow differ.
        let extra = now.saturating_sub(before).saturating_sub(explained);
        vec!["checkpoint".to_string(); extra.min(MAX_UNANNOUNCED_CHECKPOINTS) as usize]
    };
    let passes = [
        (false, false, false, false),
        (false, false, true, false),
        (true, false, false, false),
        (true, true, false, false),
        (true, false, false, true),
    ];
    for (fine, defer_fua, status, early_waits) in passes {
        if early_waits && !hydrating {
            continue;
        }
        let after_mark = |l: &str, n: usize| {
            if early_waits && l != "msg:disable_hydration" {
                early(l, n)
            } else {
                Vec::new()
            }
        };
        let before = |l: &str, n: usize| {
            let mut v = unannounced(l, n);
            v.extend(at_mark(l, n, fine));
            if status && l != "activated" {
                v.push("status".into());
            }
            v
        };
        let after: &[&str] = match (fine, target) {
            (false, _) => &[],
            (true, Target::Clone) => &["commit"],
            // A status is an rpc: the worker runs and commits.
            (true, Target::Era) => &["status"],
        };
        let mut at_end = Vec::new();
        if hydration {
            if fine {
                for &c in &counts {
                    at_end.push(format!("wait hydrated={c}"));
                    at_end.push("commit".into());
                }
            }
            at_end.push(format!("wait hydrated={final_h}"));
        }
        let extra = Extra {
            before_mark: &before,
            after_mark: &after_mark,
            after_each: after,
            at_end,
            split: if fine && target == Target::Clone {
                rs
            } else {
                None
            },
            defer_fua,
        };
        let text = to_trace(target, user, &cfg, remove, &extra);
        // The first pass must run; an extra pass the model refuses (a wait
        // while hydration is off) only explains less.
        let (images, internal) = match run_model(&text, variant) {
            Ok(x) => x,
            Err(e) if !models.is_empty() => {
                sum.warnings
                    .push(format!("an extra replay pass was skipped: {e}"));
                (Vec::new(), Vec::new())
            }
            Err(e) => return Err(e),
        };
        let mut all = images.clone();
        all.extend(internal.into_iter().map(|img| (0, img)));
        models.push(all);
        texts.push((text, images));
    }
    // A capture cut by a power failure: the user log lacks the writes no flush
    // covered before the cut, so the kernel's commits after the last mark both
    // logs hold cannot be explained from it.
    let mut kernel = kernel;
    if !remove {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        let mut last = None;
        for e in &user.entries {
            if let Some(l) = &e.label {
                let n = seen.entry(l.as_str()).or_default();
                if let Some((i, _)) = marks.get(&(l.clone(), *n)) {
                    last = Some((*i, l.clone()));
                }
                *n += 1;
            }
        }
        let cut = last.as_ref().map_or(0, |(i, _)| *i);
        let after = kernel.iter().filter(|(i, _)| *i > cut).count();
        if after > 0 {
            sum.warnings.push(format!(
                "the capture ended in a power cut: {after} kernel commits after the last mark both logs hold ({}) are not compared",
                last.map_or("none".to_string(), |(_, l)| format!("`{l}`"))
            ));
            kernel.retain(|(i, _)| *i <= cut);
        }
    }
    // Logical fingerprints, each computed once: the kernel's commits, and
    // those of the fine passes (their commits in trace order, with the line
    // that committed; the model's other commits at line 0).
    let kernel_fp: Vec<Option<u64>> = kernel.iter().map(|(_, i)| logical(target, i)).collect();
    let fine_fp: Vec<Vec<(usize, Option<u64>)>> = models[2..]
        .iter()
        .map(|m| {
            m.iter()
                .map(|(l, img)| (*l, logical(target, img)))
                .collect()
        })
        .collect();
    let fine: HashSet<u64> = fine_fp.iter().flatten().filter_map(|&(_, l)| l).collect();
    // The kernel's commits placed in the model: the fine pass with only those
    // of its added commits kept where the kernel committed the same metadata.
    for ((fine_text, _), fp) in texts[2..].iter().zip(&fine_fp) {
        let placed = placed_trace(target, fine_text, fp, &kernel_fp);
        let Ok((images, internal)) = run_model(&placed, variant) else {
            continue;
        };
        models[0].extend(images);
        models[0].extend(internal.into_iter().map(|img| (0, img)));
    }
    let mut by_bytes: HashSet<u64> = HashSet::new();
    let mut by_logic: HashMap<u64, &MetaImage> = HashMap::new();
    for (_, img) in models[..2].iter().flatten() {
        by_bytes.insert(bytes(img));
        if let Some(l) = logical(target, img) {
            by_logic.entry(l).or_insert(img);
        }
    }
    let (mut same_logic, mut same_bytes, mut between_count) = (0, 0, 0);
    // dm-clone with background hydration: the hydrated sets the model
    // committed, pass by pass, in order.
    let touched = hydrating
        .then(|| last_hydrated(&kernel))
        .flatten()
        .map_or_else(|| Bits::new(0), |(sb, _)| touched_regions(user, &sb));
    let sets: Vec<Vec<Bits>> = if hydrating {
        texts
            .iter()
            .map(|(_, imgs)| {
                imgs.iter()
                    .filter_map(|(_, img)| crate::verify::image_hydrated(img).ok())
                    .collect()
            })
            .collect()
    } else {
        Vec::new()
    };
    for (k, (entry, img)) in kernel.iter().enumerate() {
        if by_bytes.contains(&bytes(img)) {
            same_bytes += 1;
            same_logic += 1;
            continue;
        }
        // A commit whose superblock completed before blocks it references
        // (meta mode's G1) is compared as its epoch's flush leaves it.
        let late = || {
            let (f, i) = settled[k].as_ref()?;
            Some((f, i, logical(target, i)?))
        };
        let (entry, img, l) = match (kernel_fp[k], late()) {
            (Some(l), _) => (entry, img, l),
            (None, Some((f, i, l))) => {
                sum.warnings.push(format!(
                    "kernel commit {k} (entry {entry}) does not dump: its superblock completed before blocks it references (--mode meta reports G1); compared as the flush at entry {f} leaves it"
                ));
                if by_bytes.contains(&bytes(i)) {
                    same_bytes += 1;
                    same_logic += 1;
                    continue;
                }
                (f, i, l)
            }
            (None, None) => {
                // The model commits only metadata that dumps.
                sum.violations += 1;
                let why = dump(target, img).err().unwrap_or_default();
                out(LogViolation(Violation {
                    id: "conformance",
                    cp: *entry as usize,
                    state: String::new(),
                    what: format!(
                        "kernel commit {k}: its metadata does not dump ({why}), and no state of the model holds such metadata; --mode meta on this log says what is wrong"
                    ),
                }));
                continue;
            }
        };
        if let Some(m) = by_logic.get(&l) {
            same_logic += 1;
            let (b, at, n) = first_difference(img, m).unwrap_or((0, 0, 0));
            sum.warnings.push(format!(
                "kernel commit {k} (entry {entry}): the model commits the same metadata, laid out differently: {n} blocks differ, the first is block {b} at byte {at}"
            ));
        } else if fine.contains(&l) {
            same_logic += 1;
        } else if hydrating
            && crate::verify::image_hydrated(img).is_ok_and(|k| between(&k, &sets, &touched))
        {
            between_count += 1;
            sum.warnings.push(format!(
                "kernel commit {k} (entry {entry}): its hydrated set lies between two states of the model (background hydration's copies complete at other moments in the model)"
            ));
        } else {
            sum.violations += 1;
            let mut what =
                format!("kernel commit {k}: no state of the model holds the same metadata");
            if target == Target::Era {
                if let Some(d) = model_at_next_mark(*entry, &marks, &texts[0], remove)
                    .and_then(|(at, m)| era_difference(img, m).map(|d| format!("; {at}: {d}")))
                {
                    what.push_str(&d);
                }
            }
            out(LogViolation(Violation {
                id: "conformance",
                cp: *entry as usize,
                state: String::new(),
                what,
            }));
        }
    }
    sum.compared = Some((kernel.len(), same_logic, same_bytes));
    if between_count > 0 {
        sum.warnings.push(format!(
            "{between_count} kernel commits were compared only as lying between two model states"
        ));
    }
    Ok(sum)
}

/// The first replay's state at the first mark the metadata log holds after
/// `entry` (what the model had committed by the line of that mark), or at the
/// end of a log closed by a remove; with where that is.
fn model_at_next_mark<'a>(
    entry: u64,
    marks: &HashMap<(String, usize), (u64, MetaImage)>,
    first: &'a (String, Vec<(usize, MetaImage)>),
    remove: bool,
) -> Option<(String, &'a MetaImage)> {
    let (text, images) = first;
    let next = marks
        .iter()
        .filter(|(_, (i, _))| *i > entry)
        .min_by_key(|(_, (i, _))| *i)
        .map(|(key, _)| key);
    let end = || {
        remove
            .then(|| images.last().map(|(_, m)| ("at the end".to_string(), m)))
            .flatten()
    };
    let Some((label, n)) = next else {
        return end();
    };
    if label == END_MARK {
        return end();
    }
    let want = format!("mark label={}", word(label));
    let line = text
        .lines()
        .enumerate()
        .filter(|(_, l)| *l == want)
        .nth(*n)
        .map(|(i, _)| i + 1)?;
    let img = images.iter().rev().find(|(l, _)| *l < line)?;
    Some((format!("at the next mark `{label}`"), &img.1))
}

/// Eras below the current one that [`era_difference`] tells apart at most.
const ERAS_SEARCHED: u32 = 256;

/// Runs of differing blocks [`era_difference`] names at most.
const RUNS_NAMED: usize = 8;

/// Each block's logical era (what `era_invalidate --written-since` answers
/// from) in `img`, for eras `lo..=top`; blocks older than `lo` are absent.
fn logical_eras(img: &MetaImage, lo: u32, top: u32) -> Option<HashMap<u64, u32>> {
    let mut eras = HashMap::new();
    for e in (lo..=top).rev() {
        let i = invalidate(
            img,
            InvalidateOptions {
                written_since: e,
                metadata_snapshot: false,
            },
        )
        .ok()?;
        for b in i.runs().flat_map(|(a, b)| a..b) {
            eras.entry(b).or_insert(e);
        }
    }
    Some(eras)
}

/// Where two dm-era images differ: the runs of blocks whose logical era is
/// not the same in the kernel's and the model's, with both eras.
fn era_difference(kernel: &MetaImage, model: &MetaImage) -> Option<String> {
    let era = |img: &MetaImage| esb::read_at(img, 0).ok().map(|(sb, _)| sb.current_era);
    let top = era(kernel)?.max(era(model)?);
    let lo = top.saturating_sub(ERAS_SEARCHED).max(1);
    let (k, m) = (
        logical_eras(kernel, lo, top)?,
        logical_eras(model, lo, top)?,
    );
    let mut blocks: Vec<u64> = k.keys().chain(m.keys()).copied().collect();
    blocks.sort_unstable();
    blocks.dedup();
    // Runs of consecutive blocks with the same pair of eras.
    let mut runs: Vec<(u64, u64, Option<u32>, Option<u32>)> = Vec::new();
    for b in blocks {
        let (x, y) = (k.get(&b).copied(), m.get(&b).copied());
        if x == y {
            continue;
        }
        match runs.last_mut() {
            Some((_, e, px, py)) if *e + 1 == b && *px == x && *py == y => *e = b,
            _ => runs.push((b, b, x, y)),
        }
    }
    if runs.is_empty() {
        return None;
    }
    let name = |e: Option<u32>| match e {
        Some(e) => format!("era {e}"),
        None if lo == 1 => "never written".to_string(),
        None => format!("before era {lo}"),
    };
    let mut parts: Vec<String> = runs
        .iter()
        .take(RUNS_NAMED)
        .map(|&(a, b, x, y)| {
            let blocks = if a == b {
                format!("block {a}")
            } else {
                format!("blocks {a}..={b}")
            };
            format!(
                "{blocks}: {} in the kernel, {} in the model",
                name(x),
                name(y)
            )
        })
        .collect();
    if runs.len() > RUNS_NAMED {
        parts.push(format!("{} more runs", runs.len() - RUNS_NAMED));
    }
    Some(parts.join("; "))
}

/// Whether a kernel commit's hydrated set lies between two consecutive
/// states of one pass of the model, apart and together: its regions no user
/// I/O touched (background hydration's) between two states' such regions,
/// and its regions user I/O touched between two states' such regions. The
/// kernel's copies run at their own pace beside the user's I/O, so the two
/// parts need not be bracketed at the same moment of the model.
fn between(k: &Bits, passes: &[Vec<Bits>], touched: &Bits) -> bool {
    // `a ⊆ b` over the regions user I/O touched (`user`) or did not.
    let subset = |a: &Bits, b: &Bits, user: bool| a.is_subset_where(b, touched, user);
    let within = |user: bool| {
        passes.iter().any(|p| {
            p.windows(2)
                .any(|w| subset(&w[0], k, user) && subset(k, &w[1], user))
        })
    };
    within(false) && within(true)
}

/// Replays a trace made from the user log; the committed images with the line
/// that committed, and every commit the model made (those while the target was
/// created included).
#[allow(clippy::type_complexity)]
fn run_model(
    text: &str,
    variant: Variant,
) -> Result<(Vec<(usize, MetaImage)>, Vec<MetaImage>), VerifyError> {
    let mut trace = crate::trace::parse(text).map_err(|e| {
        VerifyError::Input(format!("the user log makes a malformed trace: line {e}"))
    })?;
    trace.header.variant = Some(variant);
    let opts = ReplayOptions {
        keep_commits: true,
        ..Default::default()
    };
    crate::sim::record_commits();
    let o = replay_with(&trace, opts);
    let internal = crate::sim::take_commits();
    let o = o.map_err(|e| {
        VerifyError::Input(format!(
            "the model cannot replay the user log: trace line {e}"
        ))
    })?;
    Ok((o.commit_images, internal))
}

/// The fine trace `text` (a commit, or for dm-era a status, after every I/O)
/// with only the added commits kept that the kernel's commits match, in order:
/// for each kernel commit (its fingerprint in `kernel`), the first later point
/// of the fine replay (`fine`: the line that committed and the fingerprint)
/// whose metadata is the same.
fn placed_trace(
    target: Target,
    text: &str,
    fine: &[(usize, Option<u64>)],
    kernel: &[Option<u64>],
) -> String {
    let added = match target {
        Target::Clone => "commit",
        Target::Era => "status",
    };
    let fp: Vec<&(usize, Option<u64>)> = fine.iter().filter(|(line, _)| *line > 0).collect();
    let mut keep = HashSet::new();
    let mut from = 0;
    for k in kernel.iter().flatten() {
        if let Some(i) = (from..fp.len()).find(|&i| fp[i].1 == Some(*k)) {
            keep.insert(fp[i].0);
            from = i + 1;
        }
    }
    let mut out = String::new();
    for (n, line) in text.lines().enumerate() {
        if line == added && !keep.contains(&(n + 1)) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(runs: &[(u64, u64)]) -> Bits {
        let mut b = Bits::new(4096);
        for &(x, y) in runs {
            for r in x..y {
                b.set(r);
            }
        }
        b
    }

    /// A capture under load: the kernel's copies ran ahead of a user write
    /// that needed a copy of its own (region 3750), so its commit holds
    /// region 1125, written whole, and copies the model made only after
    /// both writes.
    #[test]
    fn background_copies_and_user_writes_are_bracketed_apart() {
        let touched = bits(&[(12, 13), (1125, 1126), (3750, 3751)]);
        let pass = vec![
            bits(&[]),
            bits(&[(12, 13)]),
            bits(&[(0, 32)]),
            bits(&[(0, 32), (1125, 1126), (3750, 3751)]),
            bits(&[(0, 564), (1125, 1126), (3750, 3751)]),
            bits(&[(0, 4096)]),
        ];
        let passes = [pass];
        let kernel = bits(&[(0, 544), (1125, 1126)]);
        assert!(between(&kernel, &passes, &touched));
        // Judged together, no two states bracket it.
        assert!(!between(&kernel, &passes, &Bits::new(0)));
        // A user-written region the model hydrates only with the other one.
        let late = bits(&[(0, 544), (3750, 3751)]);
        let strict = [vec![
            bits(&[(0, 32)]),
            bits(&[(0, 32), (1125, 1126)]),
            bits(&[(0, 600), (1125, 1126), (3750, 3751)]),
        ]];
        assert!(!between(&late, &strict, &touched));
        // Background copies out of order: region 700 without those before it.
        let gap = bits(&[(0, 32), (700, 701), (1125, 1126)]);
        assert!(!between(&gap, &passes, &touched));
        // Every region no model state holds.
        assert!(!between(&bits(&[(0, 4096)]), &[vec![bits(&[])]], &touched));
    }
}
