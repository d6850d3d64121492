//! era_dump: the XML of thin-provisioning-tools 0.9.0's `era_dump`, byte for byte,
//! plus the committed current writeset that a crash leaves (ERA.md §12.1-12.2).
//!
//! The dump streams: writesets and the era array are read one array block at a time
//! (one block per writeset with `--logical`), so memory does not grow with the
//! number of origin blocks.

use std::io::Write;

use crate::clone::dump::DumpError;
use crate::era::superblock::{self, EraSuperblock, WritesetDisk};
use crate::era::writeset::read_tree;
use crate::io::BlockDevice;
use crate::pdata::array::{ArrayCursor, ArrayDesc};
use crate::pdata::bitset::BitsetCursor;
use crate::pdata::le32;
use crate::pdata::walk::Walker;
use crate::report::Finding;
use crate::xml::XmlOut;

/// How to dump.
#[derive(Debug, Clone, Copy, Default)]
pub struct DumpOptions {
    /// Fold the writesets into the era array (`--logical`).
    pub logical: bool,
}

/// A writeset to dump: archived ones from the tree, then the current one.
#[derive(Debug, Clone, Copy)]
struct Ws {
    era: u64,
    ws: WritesetDisk,
    /// The block holding the pointer to the bitset (a tree leaf or the superblock).
    from: u64,
}

fn sb_error(e: crate::superblock::SuperblockError) -> DumpError {
    Finding::error(e.code(), Some(0), "superblock", e.to_string()).into()
}

/// Dumps the era metadata on `dev` to `out`.
pub fn dump<W: Write>(dev: &dyn BlockDevice, out: W, opts: DumpOptions) -> Result<(), DumpError> {
    let (sb, _) = superblock::read_at(dev, 0).map_err(sb_error)?;
    let mut w = Walker::new(dev, sb.sm_root.nr_blocks, false);
    let wss = writesets(&mut w, &sb)?;
    let mut x = XmlOut::new(out);
    x.s("<superblock uuid=\"\" block_size=\"")?;
    x.n(sb.data_block_size as u64)?;
    x.s("\" nr_blocks=\"")?;
    x.n(sb.nr_blocks as u64)?;
    x.s("\" current_era=\"")?;
    x.n(sb.current_era as u64)?;
    x.s("\">\n")?;
    let mut cursors = Vec::with_capacity(wss.len());
    for ws in &wss {
        let name = format!("writeset of era {}", ws.era);
        let c = BitsetCursor::open(
            &mut w,
            ws.ws.root,
            &name,
            ws.ws.nr_bits as u64,
            Some(ws.from),
        );
        if let Some(f) = w.report.first_error() {
            return Err(f.clone().into());
        }
        if !opts.logical {
            dump_writeset(&mut x, ws, c)?;
        } else {
            cursors.push((ws.era, c));
        }
    }
    let desc = ArrayDesc {
        structure: "era array".into(),
        value_size: 4,
        nr_entries: sb.nr_blocks as u64,
        from: Some(0),
    };
    let blocks = w.array_blocks(sb.era_array_root, &desc).unwrap_or_default();
    if let Some(f) = w.report.first_error() {
        return Err(f.clone().into());
    }
    let mut array = ArrayCursor::new(dev, desc, blocks);
    x.s("  <era_array>\n")?;
    let per = array.desc().per_block();
    let cur_era = sb.current_era as u64;
    for bi in 0..array.desc().nr_blocks() {
        let first = bi * per;
        let vals = array.block(bi)?;
        let n = vals.len() / 4;
        // Copy out so the cursor's borrow ends before the writesets are consulted.
        let mut eras: Vec<u64> = (0..n).map(|j| le32(vals, 4 * j) as u64).collect();
        if let Some(j) = eras.iter().position(|&e| e > cur_era) {
            return Err(Finding::error(
                "era-array-value",
                None,
                "era array",
                format!(
                    "origin block {} has era {}, above the current era {cur_era}",
                    first + j as u64,
                    eras[j]
                ),
            )
            .into());
        }
        for (era, c) in cursors.iter_mut() {
            fold_writeset(&mut eras, first, *era, c)?;
        }
        for (j, e) in eras.iter().enumerate() {
            x.s("    <era block=\"")?;
            x.n(first + j as u64)?;
            x.s("\" era=\"")?;
            x.n(*e)?;
            x.s("\"/>\n")?;
        }
    }
    x.s("  </era_array>\n</superblock>\n")?;
    x.finish()?.flush()?;
    Ok(())
}

/// The writesets to dump, in era order: the archived ones, then the committed
/// current writeset (root ≠ 0, as a crash leaves it) as era `current_era`.
fn writesets(w: &mut Walker<'_>, sb: &EraSuperblock) -> Result<Vec<Ws>, DumpError> {
    let (entries, _) = read_tree(w, sb.writeset_tree_root, "writeset tree", 0);
    if let Some(f) = w.report.first_error() {
        return Err(f.clone().into());
    }
    let mut out: Vec<Ws> = entries
        .iter()
        .map(|e| Ws {
            era: e.era,
            ws: e.ws,
            from: e.leaf,
        })
        .collect();
    if let Some(e) = entries.iter().find(|e| e.ws.root == 0) {
        return Err(Finding::error(
            "era-writeset-root",
            Some(e.leaf),
            "writeset tree",
            format!("era {} has no bitset (root 0)", e.era),
        )
        .into());
    }
    if sb.current_writeset.root != 0 {
        let era = sb.current_era as u64;
        if out.iter().any(|e| e.era == era) {
            return Err(Finding::error(
                "era-current-duplicate",
                Some(0),
                "current writeset",
                format!("era {era} is both the current writeset and archived in the tree"),
            )
            .into());
        }
        out.push(Ws {
            era,
            ws: sb.current_writeset,
            from: 0,
        });
    }
    Ok(out)
}

fn dump_writeset<W: Write>(
    x: &mut XmlOut<W>,
    ws: &Ws,
    mut c: BitsetCursor<'_>,
) -> Result<(), DumpError> {
    x.s("  <writeset era=\"")?;
    x.n(ws.era)?;
    x.s("\" nr_bits=\"")?;
    x.n(ws.ws.nr_bits as u64)?;
    x.s("\">\n")?;
    let nr = ws.ws.nr_bits as u64;
    for wi in 0..nr.div_ceil(64) {
        let word = c.word(wi)?;
        for j in 0..64.min(nr - wi * 64) {
            x.s("    <bit block=\"")?;
            x.n(wi * 64 + j)?;
            x.s(if word >> j & 1 == 1 {
                "\" value=\"true\"/>\n"
            } else {
                "\" value=\"false\"/>\n"
            })?;
        }
    }
    x.s("  </writeset>\n")?;
    Ok(())
}

/// Raises `eras[j]` (origin block `first + j`) to `era` where writeset `c` has the
/// block set: the logical era is the maximum (ERA.md §3.5).
fn fold_writeset(
    eras: &mut [u64],
    first: u64,
    era: u64,
    c: &mut BitsetCursor<'_>,
) -> Result<(), Finding> {
    let end = (first + eras.len() as u64).min(c.nr_bits());
    let mut b = first;
    while b < end {
        let wi = b / 64;
        let word = c.word(wi)?;
        let stop = ((wi + 1) * 64).min(end);
        if word != 0 {
            for i in b..stop {
                if word >> (i % 64) & 1 == 1 {
                    let slot = &mut eras[(i - first) as usize];
                    *slot = (*slot).max(era);
                }
            }
        }
        b = stop;
    }
    Ok(())
}
