//! The user log as a dmtrace, and the geometry it runs on.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::super::Target;
use crate::clone::superblock as csb;
use crate::era::superblock as esb;
use crate::io::BLOCK_SIZE;
use crate::logwrites::{Log, LogSource, END_MARK};
use crate::sim::MetaImage;

/// The geometry of the kernel's last valid superblock, as a `config` line.
pub(super) fn config(
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
pub(super) fn word(label: &str) -> String {
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
