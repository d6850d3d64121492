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

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};

use super::{LogViolation, MetaState, Summary, Target, VerifyError, Violation};
use crate::clone::superblock as csb;
use crate::era::superblock as esb;
use crate::io::BLOCK_SIZE;
use crate::logwrites::{Log, LogSource, END_MARK};
use crate::model::replay::{replay_with, ReplayOptions};
use crate::sim::MetaImage;

/// The kernel's committed images: the device after each superblock write,
/// with the entry that wrote it; and the device at each mark, by label and
/// occurrence.
#[allow(clippy::type_complexity)]
fn kernel_commits<R: LogSource>(
    log: &Log<R>,
    st: &mut MetaState,
) -> std::io::Result<(Vec<(u64, MetaImage)>, HashMap<(String, usize), MetaImage>)> {
    let s = log.sector_size as u64;
    let mut out = Vec::new();
    let mut marks = HashMap::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for e in &log.entries {
        if let Some(l) = &e.label {
            let n = seen.entry(l.clone()).or_default();
            marks.insert((l.clone(), *n), st.image());
            *n += 1;
        } else if e.is_discard() {
            st.discard(e, s);
        } else if e.is_write() {
            let data = log.payload(e)?;
            st.apply(e, &data, s);
            if e.sector * s < BLOCK_SIZE as u64 {
                out.push((e.index, st.image()));
            }
        }
    }
    Ok((out, marks))
}

/// The number of regions hydrated in a dm-clone image.
fn hydrated(img: &MetaImage) -> Option<u64> {
    crate::verify::image_hydrated(img)
        .ok()
        .map(|h| h.runs().iter().map(|(a, b)| b - a).sum())
}

/// The metadata's logical content: its dump, hashed.
fn logical(target: Target, img: &MetaImage) -> Option<u64> {
    let mut xml = Vec::new();
    let ok = match target {
        Target::Clone => crate::clone::dump::dump(img, &mut xml, false).is_ok(),
        Target::Era => {
            crate::era::dump::dump(img, &mut xml, crate::era::dump::DumpOptions::default()).is_ok()
        }
    };
    ok.then(|| {
        let mut h = DefaultHasher::new();
        xml.hash(&mut h);
        h.finish()
    })
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

/// The first block where two images differ.
fn first_difference(a: &MetaImage, b: &MetaImage) -> Option<u64> {
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
    keys.into_iter().find(|k| ma.get(k) != mb.get(k))
}

/// The geometry of the kernel's last valid superblock, as a `config` line.
fn config(
    target: Target,
    commits: &[(u64, MetaImage)],
    nr_blocks: u64,
    hydration: bool,
) -> Option<String> {
    let meta_size = nr_blocks * (BLOCK_SIZE as u64 / 512);
    commits.iter().rev().find_map(|(_, img)| match target {
        Target::Clone => csb::read(img).ok().map(|(sb, _)| {
            format!(
                "config size={} region={} meta_size={meta_size} hydration={}",
                sb.target_size,
                sb.region_size,
                if hydration { "on" } else { "off" }
            )
        }),
        Target::Era => esb::read_at(img, 0).ok().map(|(sb, _)| {
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
    /// Lines at the end (before `remove`).
    pub at_end: Vec<String>,
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
    for e in &user.entries {
        let at = format!("at={}+{}", e.sector * per, e.nr_sectors * per);
        if let Some(l) = &e.label {
            if l == END_MARK {
                continue;
            }
            if let Some(m) = l.strip_prefix("msg:").and_then(|m| message(target, m)) {
                let _ = writeln!(t, "{m}");
            }
            let n = seen.entry(l.clone()).or_default();
            for line in (extra.before_mark)(l, *n) {
                let _ = writeln!(t, "{line}");
            }
            *n += 1;
            let _ = writeln!(t, "mark label={}", word(l));
        } else if e.is_discard() {
            let _ = writeln!(t, "discard {at}");
        } else if e.is_write() {
            let mut line = format!("write {at}");
            if e.is_fua() {
                line.push_str(" fua");
            }
            if e.is_flush() {
                line.push_str(" preflush");
            }
            let _ = writeln!(t, "{line}");
        } else {
            let _ = writeln!(t, "flush");
        }
        for line in extra.after_each {
            let _ = writeln!(t, "{line}");
        }
    }
    for line in &extra.at_end {
        let _ = writeln!(t, "{line}");
    }
    if remove {
        t.push_str("remove\n");
    }
    t
}

/// True when the kernel hydrated a region no user write or discard touched:
/// background hydration was on.
fn background_hydration<R: LogSource>(kernel: &[(u64, MetaImage)], user: &Log<R>) -> bool {
    let Some((sb, h)) = kernel.iter().rev().find_map(|(_, img)| {
        let sb = csb::read(img).ok()?.0;
        Some((sb, crate::verify::image_hydrated(img).ok()?))
    }) else {
        return false;
    };
    let per = user.sector_size as u64 / 512;
    let rs = sb.region_size.max(1);
    let mut touched = std::collections::HashSet::new();
    for e in &user.entries {
        if e.nr_sectors > 0 && !e.is_mark() {
            for r in e.sector * per / rs..((e.sector + e.nr_sectors) * per).div_ceil(rs) {
                touched.insert(r);
            }
        }
    }
    h.runs()
        .iter()
        .flat_map(|&(a, b)| a..b)
        .any(|r| !touched.contains(&r))
}

/// Verifies that the model reproduces every committed image of the kernel.
pub fn verify<R: LogSource>(
    target: Target,
    meta: &Log<R>,
    mut st: MetaState,
    user: &Log<R>,
    out: &mut dyn FnMut(LogViolation),
) -> Result<Summary, VerifyError> {
    let nr_blocks = st.nr_blocks;
    let (kernel, marks) =
        kernel_commits(meta, &mut st).map_err(|e| VerifyError::Input(e.to_string()))?;
    let hydration = target == Target::Clone && background_hydration(&kernel, user);
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
    let at_mark = |l: &str, n: usize, fine: bool| -> Vec<String> {
        if !hydration {
            return Vec::new();
        }
        let Some(h) = marks.get(&(l.to_string(), n)).and_then(hydrated) else {
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
    let mut models = Vec::new();
    for fine in [false, true] {
        let before = |l: &str, n: usize| at_mark(l, n, fine);
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
            after_each: after,
            at_end,
        };
        let text = to_trace(target, user, &cfg, remove, &extra);
        let trace = crate::trace::parse(&text).map_err(|e| {
            VerifyError::Input(format!("the user log makes a malformed trace: line {e}"))
        })?;
        let opts = ReplayOptions {
            keep_commits: true,
            ..Default::default()
        };
        let o = replay_with(&trace, opts).map_err(|e| {
            VerifyError::Input(format!(
                "the model cannot replay the user log: trace line {e}"
            ))
        })?;
        models.push(o.commit_images);
    }
    let mut by_bytes: HashMap<u64, usize> = HashMap::new();
    let mut by_logic: HashMap<u64, &MetaImage> = HashMap::new();
    for (i, (_, img)) in models[0].iter().enumerate() {
        by_bytes.entry(bytes(img)).or_insert(i);
        if let Some(l) = logical(target, img) {
            by_logic.entry(l).or_insert(img);
        }
    }
    let mut fine: HashMap<u64, ()> = HashMap::new();
    for (_, img) in &models[1] {
        if let Some(l) = logical(target, img) {
            fine.insert(l, ());
        }
    }
    let (mut same_logic, mut same_bytes) = (0, 0);
    for (k, (entry, img)) in kernel.iter().enumerate() {
        if by_bytes.contains_key(&bytes(img)) {
            same_bytes += 1;
            same_logic += 1;
            continue;
        }
        let Some(l) = logical(target, img) else {
            sum.warnings.push(format!(
                "kernel commit {k} (entry {entry}) does not dump: run --mode meta on this log"
            ));
            continue;
        };
        if let Some(m) = by_logic.get(&l) {
            same_logic += 1;
            let b = first_difference(img, m).unwrap_or(0);
            sum.warnings.push(format!(
                "kernel commit {k} (entry {entry}): the model commits the same metadata, laid out differently: first differing block {b}"
            ));
        } else if fine.contains_key(&l) {
            same_logic += 1;
        } else {
            sum.violations += 1;
            out(LogViolation(Violation {
                id: "conformance",
                cp: *entry as usize,
                state: String::new(),
                what: format!("kernel commit {k}: no state of the model holds the same metadata"),
            }));
        }
    }
    sum.compared = Some((kernel.len(), same_logic, same_bytes));
    Ok(sum)
}
