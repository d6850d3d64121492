//! The kernel's side of a capture: its committed images, their logical
//! content, and how they differ from the model's.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use super::super::{MetaState, Target};
use crate::era::invalidate::{invalidate, InvalidateOptions};
use crate::era::superblock as esb;
use crate::io::BLOCK_SIZE;
use crate::logwrites::{Log, LogSource, END_MARK};
use crate::sim::MetaImage;

use super::trace::word;

/// The kernel's committed images: the device after each superblock write,
/// with the entry that wrote it; and the device at each mark, by label and
/// occurrence.
#[allow(clippy::type_complexity)]
pub(super) fn kernel_commits<R: LogSource>(
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
pub(super) fn hydrated(img: &MetaImage) -> Option<u64> {
    crate::verify::image_hydrated(img)
        .ok()
        .map(|h| h.runs().iter().map(|(a, b)| b - a).sum())
}

/// The metadata's logical content: its dump, hashed.
pub(super) fn logical(target: Target, img: &MetaImage) -> Option<u64> {
    let xml = dump(target, img).ok()?;
    let mut h = DefaultHasher::new();
    xml.hash(&mut h);
    Some(h.finish())
}

/// The XML dump of `img`, or why it does not dump.
pub(super) fn dump(target: Target, img: &MetaImage) -> Result<Vec<u8>, String> {
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
pub(super) fn bytes(img: &MetaImage) -> u64 {
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
pub(super) fn first_difference(a: &MetaImage, b: &MetaImage) -> Option<(u64, usize, usize)> {
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

/// The first replay's state at the first mark the metadata log holds after
/// `entry` (what the model had committed by the line of that mark), or at the
/// end of a log closed by a remove; with where that is.
pub(super) fn model_at_next_mark<'a>(
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
pub(super) fn era_difference(kernel: &MetaImage, model: &MetaImage) -> Option<String> {
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
