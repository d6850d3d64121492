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

use std::collections::{HashMap, HashSet};

use super::{LogViolation, MetaState, Summary, Target, VerifyError, Violation};
use crate::clone::superblock as csb;
use crate::era::superblock as esb;
use crate::logwrites::{Log, LogSource};
use crate::model::bits::Bits;
use crate::model::replay::{replay_with, ReplayOptions};
use crate::sim::MetaImage;
use crate::trace::Variant;

mod hydration;
mod kernel;
mod trace;

use hydration::{between, user_regions};
use kernel::{
    bytes, dump, era_difference, first_difference, hydrated, kernel_commits, logical,
    model_at_next_mark,
};
use trace::config;
pub use trace::{to_trace, Extra};

/// The most checkpoints assumed between two marks of a dm-era capture that
/// announced none: far beyond a capture's (each is a message to the target),
/// far below what an era number read from a forged superblock can claim.
const MAX_UNANNOUNCED_CHECKPOINTS: u32 = 256;

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
    // dm-clone: the regions user I/O touched (the rest are background
    // hydration's), read once.
    let user_regions = (target == Target::Clone)
        .then(|| user_regions(&kernel, user))
        .flatten();
    let hydration = !enabled_later && user_regions.as_ref().is_some_and(|(_, bg)| *bg);
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
    let touched = user_regions.map_or_else(|| Bits::new(0), |(t, _)| t);
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
        // The settled image is dumped only for a commit that does not dump.
        let found = match kernel_fp[k] {
            Some(l) => Ok((entry, img, l)),
            None => Err(late()),
        };
        let (entry, img, l) = match found {
            Ok(it) => it,
            Err(Some((f, i, l))) => {
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
            Err(None) => {
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
