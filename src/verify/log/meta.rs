//! `--mode meta`: the metadata log alone (REPLAY.md §2.7, mode 1).
//!
//! A dm-log-writes log holds a write once a flush covering it completed (a FUA
//! write at its completion), so the prefix of the log up to a FLUSH or FUA entry
//! is what the device held durably at that point; the writes logged since the
//! previous such point (the epoch) were in the device's cache before it, and a
//! power cut there could have let any subset of them, or a torn one, reach the
//! media. At every such point:
//!
//! * every crash state of the epoch (tiers T0–T3 of [`crate::crash`]) passes the
//!   project's checker (I1 / E1); for dm-clone no region hydrated in the
//!   previous durable view is missing from it (I4);
//! * G1: no block the new superblock references was written in its own epoch;
//! * G2: no block reachable from the durable superblock (or its metadata
//!   snapshot) is written over;
//! * G3: superblock writes are single aligned block writes whose bytes from 512
//!   on never change;
//! * E3 / E4 (dm-era) between consecutive durable views.
//!
//! G4 (the log is well formed) is the reader's: its notes become warnings.

use super::{LogViolation, MetaState, Summary, Target};
use crate::crash::{Choice, MetaSpace, Options, Pending};
use crate::io::{BlockDevice, BLOCK_SIZE};
use crate::logwrites::{Entry, Log, LogSource};
use crate::pdata::refs::Role;
use crate::sim::{ExtentMap, MetaImage, MetaVal};
use crate::verify::ordering::{reachable, role_name};
use crate::verify::{image_hydrated, Monotone, Violation};
use std::collections::HashMap;

/// The first error the project's checker finds in `img`.
pub fn meta_error(target: Target, img: &dyn BlockDevice) -> Option<String> {
    let report = match target {
        Target::Clone => {
            crate::clone::check::check(img, &crate::clone::check::CheckOptions::default()).report
        }
        Target::Era => {
            crate::era::check::check(img, &crate::era::check::CheckOptions::default()).report
        }
    };
    report.first_error().map(|f| f.to_string())
}

/// True when block 0 of `img` holds anything (the device has been formatted).
fn formatted(img: &MetaImage) -> bool {
    let mut b = [0u8; BLOCK_SIZE];
    img.read(0, &mut b).is_ok() && b.iter().any(|&x| x != 0)
}

/// The verifier's state between entries.
struct Walk<'a> {
    target: Target,
    opts: Options,
    st: MetaState,
    /// The content at the last durable point.
    durable: ExtentMap<MetaVal>,
    /// Block writes since then, in log order, with the entry of each.
    epoch: Vec<(Pending, u64)>,
    /// Blocks reachable from the durable superblock.
    live: HashMap<u64, Role>,
    mono: Monotone,
    sum: Summary,
    out: &'a mut dyn FnMut(LogViolation),
}

impl Walk<'_> {
    fn report(&mut self, v: Violation) {
        self.sum.violations += 1;
        (self.out)(LogViolation(v));
    }

    fn violation(&mut self, id: &'static str, entry: u64, state: &str, what: String) {
        self.report(Violation {
            id,
            cp: entry as usize,
            state: state.to_string(),
            what,
        });
    }

    /// G2 and G3 on a write entry, then applies it.
    fn write(&mut self, e: &Entry, data: &[u8], s: u64) {
        let bs = BLOCK_SIZE as u64;
        let (start, len) = (e.sector * s, data.len() as u64);
        if start < bs && (start != 0 || len != bs) && !data.is_empty() {
            self.sum.commits += 1;
            self.violation(
                "G3",
                e.index,
                "",
                format!(
                    "the superblock is written by a write of {len} bytes at byte {start}, not one aligned 4096-byte block"
                ),
            );
        } else if start == 0 {
            self.sum.commits += 1;
        }
        let changed = self.st.apply(e, data, s);
        for (b, blk) in changed {
            if b != 0 {
                if let Some(&r) = self.live.get(&b) {
                    self.violation(
                        "G2",
                        e.index,
                        "",
                        format!(
                            "block {b}, {} reachable from the durable superblock, is written over",
                            role_name(r)
                        ),
                    );
                    // Once per block and epoch.
                    self.live.remove(&b);
                }
            }
            self.epoch.push((
                Pending {
                    block: b,
                    data: blk,
                    inflight: false,
                },
                e.index,
            ));
        }
    }

    /// The crash states of the epoch ending at entry `at`, then the rules
    /// between durable views; the current content becomes durable.
    fn durable_point(&mut self, at: u64, final_tail: bool) {
        let nr = self.st.nr_blocks;
        let now = self.st.image();
        let pending: Vec<Pending> = self.epoch.iter().map(|(p, _)| p.clone()).collect();
        if !formatted(&now) && self.durable.get(0).is_none() {
            self.advance(&now);
            return;
        }
        if !final_tail {
            self.sum.flush_points += 1;
        }
        let space = MetaSpace::new(nr, self.durable.clone(), pending);
        let (choices, _) = space.enumerate(&self.opts);
        let unit = self.opts.atomic_unit;
        // The first failing state of each invariant is printed; the others
        // are counted.
        let mut first: Vec<(Violation, usize)> = Vec::new();
        let mut note = |v: Violation| match first.iter_mut().find(|(f, _)| f.id == v.id) {
            Some((_, n)) => *n += 1,
            None => first.push((v, 0)),
        };
        for c in &choices {
            let img = space.image(c, unit);
            if !formatted(&img) {
                continue; // nothing committed yet in this state
            }
            self.sum.states += 1;
            let id = state_id(c, at);
            if let Some(err) = meta_error(self.target, &img) {
                note(Violation {
                    id: self.target.meta_id(),
                    cp: at as usize,
                    state: id,
                    what: format!("metadata invalid: {err}"),
                });
                continue;
            }
            if self.target == Target::Clone {
                if let Ok(h) = image_hydrated(&img) {
                    if let Some(v) = self.mono.clone_state(&h, at as usize, &id) {
                        note(v);
                    }
                }
            }
        }
        for (mut v, more) in first {
            if more > 0 {
                v.what
                    .push_str(&format!(" (and {more} more crash states of this epoch)"));
            }
            self.report(v);
        }
        if final_tail {
            return;
        }
        // G1: a superblock written in this epoch references only blocks
        // durable before it. The blocks the new durable view reaches are also
        // what G2 protects until the next durable point.
        let reach = reachable(self.target, &now);
        let sb_entry = self
            .epoch
            .iter()
            .rev()
            .find(|(p, _)| p.block == 0)
            .map(|&(_, i)| i);
        if let (Some(sb_entry), Some(reach)) = (sb_entry, &reach) {
            let early = self
                .epoch
                .iter()
                .find(|(p, _)| p.block != 0 && reach.contains_key(&p.block));
            if let Some((p, i)) = early {
                let what = format!(
                    "the superblock (entry {sb_entry}) and block {}, {} it references (entry {i}), are written in the same epoch: a power cut can make the superblock durable without it",
                    p.block,
                    role_name(reach[&p.block])
                );
                self.violation("G1", at, "", what);
            }
        }
        if let Some(v) = self.mono.superblock(&now, at as usize) {
            self.report(v);
        }
        match self.target {
            Target::Clone => self.mono.clone_durable(&now),
            Target::Era => {
                for v in self.mono.era_durable(&now, at as usize) {
                    self.report(v);
                }
            }
        }
        self.advance_with(reach);
    }

    /// The current content becomes the durable view; `live` what its
    /// superblock reaches (computed when the caller has it).
    fn advance_with(&mut self, live: Option<HashMap<u64, Role>>) {
        self.live = live.unwrap_or_default();
        self.durable = self.st.blocks.clone();
        self.epoch.clear();
    }

    fn advance(&mut self, now: &MetaImage) {
        let live = reachable(self.target, now);
        self.advance_with(live);
    }
}

/// A crash state's id at entry `at`: `e<entry>.m<mask>[.t<w>-<units>]`.
pub fn state_id(c: &Choice, at: u64) -> String {
    let id = c.id(0);
    format!("e{at}{}", &id["cp0".len()..])
}

/// Verifies the metadata log `log` of a `target` device of `nr_blocks` blocks
/// that held `base` when logging began; every violation goes to `out`.
pub fn verify<R: LogSource>(
    target: Target,
    log: &Log<R>,
    nr_blocks: u64,
    base: ExtentMap<MetaVal>,
    opts: Options,
    out: &mut dyn FnMut(LogViolation),
) -> Result<Summary, super::VerifyError> {
    super::check_meta_log(log, nr_blocks, "metadata log")?;
    let io = |e: std::io::Error| super::VerifyError::Input(format!("metadata log: {e}"));
    let s = log.sector_size as u64;
    let mut w = Walk {
        target,
        opts,
        st: MetaState::new(nr_blocks, base.clone()),
        durable: base,
        epoch: Vec::new(),
        live: HashMap::new(),
        mono: Monotone::default(),
        sum: Summary::default(),
        out,
    };
    w.live = reachable(target, &w.st.image()).unwrap_or_default();
    for e in &log.entries {
        if e.is_mark() {
            continue;
        }
        if e.is_discard() {
            let changed = w.st.discard(e, s);
            w.epoch.extend(changed.into_iter().map(|(b, data)| {
                (
                    Pending {
                        block: b,
                        data,
                        inflight: false,
                    },
                    e.index,
                )
            }));
            continue;
        }
        let data = log.payload(e).map_err(io)?;
        if e.is_flush() {
            // The flush covers what was logged before it; a payload it carries
            // is written after the flush, into the next epoch.
            w.durable_point(e.index, false);
            if !data.is_empty() {
                w.write(e, &data, s);
            }
            continue;
        }
        w.write(e, &data, s);
        if e.is_fua() {
            w.durable_point(e.index, false);
        }
    }
    if !w.epoch.is_empty() {
        let last = log.entries.last().map_or(0, |e| e.index);
        w.durable_point(last, true);
    }
    let mut sum = w.sum;
    sum.entries.push(("metadata log".into(), log.entries.len()));
    sum.warnings.extend(log.notes.iter().cloned());
    if sum.commits == 0 {
        sum.warnings
            .push("the metadata log holds no superblock write: nothing was committed".into());
    }
    Ok(sum)
}
