//! Power cuts during a replay: the crash-state spaces at `crash` lines, after
//! statements and at metadata flushes, and the invariants checked on them.

use super::*;

use std::collections::{HashMap, HashSet};

use crate::pdata::refs::Role;
use crate::sim::MetaVal;

/// The metadata images checked at the crash points inside one statement.
#[derive(Default)]
struct Seen {
    images: HashSet<u128>,
    /// Valid while the statement's recorded points (whose blocks it hashed)
    /// are alive.
    hashes: crate::crash::BlockHashes,
}

impl Runner {
    pub(super) fn crash(&mut self, line: usize, mode: &CrashMode) -> Result<(), ModelError> {
        let model = self.model.as_ref().expect("checked");
        if let Model::Clone(m) = model {
            self.out.in_core_at_crash = m.in_core_hydrated();
        }
        let meta_dev = match model {
            Model::Clone(m) => m.meta_dev().clone(),
            Model::Era(m) => m.meta_dev().clone(),
        };
        let dest = match model {
            Model::Clone(m) => Some((m.dest.durable().clone(), m.dest.landed().clone())),
            Model::Era(_) => None,
        };
        let space = crate::crash::MetaSpace::capture(&meta_dev.lock());

        let states: Vec<(String, crate::crash::Choice)> = match mode {
            CrashMode::Enumerate => {
                let (choices, total) = space.enumerate(&self.opts.crash);
                self.out.crash.points += 1;
                self.out.crash.states += total as u64;
                choices.into_iter().map(|c| (c.id(line), c)).collect()
            }
            CrashMode::State(id) => {
                let (base, within) = crate::crash::Within::split(id).map_err(ModelError::Trace)?;
                if within != crate::crash::Within::End {
                    return Err(ModelError::Trace(format!(
                        "state {id} lies inside a statement ({within}); `crash mode=state:` rebuilds the states of a crash line and of the point after a statement, not those inside one (the data devices are known only between statements)"
                    )));
                }
                let (cp, c) = crate::crash::Choice::parse(base, space.pending.len())
                    .map_err(ModelError::Trace)?;
                // The point after a statement is the state the devices are
                // in until the next statement changes them.
                if cp != line && Some(cp) != self.point_line {
                    let here = match self.point_line {
                        Some(p) => format!("line {line} or the point after line {p}"),
                        None => format!("line {line}"),
                    };
                    return Err(ModelError::Trace(format!(
                        "state {id} belongs to the crash point of line {cp}, not {here}: put the `crash mode=state:` line right after line {cp}"
                    )));
                }
                self.out.crash.points += 1;
                self.out.crash.states += 1;
                vec![(id.clone(), c)]
            }
            CrashMode::Durable | CrashMode::AllLanded => Vec::new(),
        };
        let (dd, dl) = match dest {
            Some((d, l)) => (Some(d), Some(l)),
            None => (None, None),
        };
        self.views = match mode {
            CrashMode::Durable => vec![CrashView {
                name: "crash:durable".into(),
                meta: meta_dev.durable_image(),
                dest: dd,
            }],
            CrashMode::AllLanded => vec![CrashView {
                name: "crash:all-landed".into(),
                meta: meta_dev.landed_image(),
                dest: dl,
            }],
            _ => self.check_states(line, &space, &states, dd, true),
        };
        let model = self.model.as_mut().expect("checked");
        let durable_mode = match mode {
            CrashMode::AllLanded => CrashMode::AllLanded,
            _ => CrashMode::Durable,
        };
        match model {
            Model::Clone(m) => m.crash(&durable_mode)?,
            Model::Era(m) => m.crash(&durable_mode)?,
        }
        // The device keeps the chosen state (`state:<id>`): its blocks land.
        if let (CrashMode::State(_), Some(v)) = (mode, self.views.first()) {
            for (b, blk) in v.meta.blocks() {
                meta_dev.write(b, blk).map_err(ModelError::io)?;
            }
            meta_dev.flush().map_err(ModelError::io)?;
        }
        // What the device recorded before the power cut, and the writes that
        // put the chosen state on it, are no crash points of a later statement.
        if self.opts.statement_points() {
            meta_dev.take_flush_points();
            if self.opts.every_event {
                meta_dev.record_event_points(true);
            }
        }
        Ok(())
    }

    /// Checks the invariants on `states` of `space` at crash point `line`;
    /// returns the views when `keep` (for the expectations after a crash).
    pub(super) fn check_states(
        &mut self,
        line: usize,
        space: &crate::crash::MetaSpace,
        states: &[(String, crate::crash::Choice)],
        dest: Option<ExtentMap<DataVal>>,
        keep: bool,
    ) -> Vec<CrashView> {
        let unit = self.opts.crash.atomic_unit;
        let mut views = Vec::new();
        let mut violations = Vec::new();
        let durable = space.image(
            &crate::crash::Choice {
                landed: vec![false; space.pending.len()],
                torn: None,
            },
            unit,
        );
        match self.model.as_ref().expect("checked") {
            Model::Clone(m) => {
                let mut chk = crate::verify::CloneChecker::new(m);
                for (id, c) in states {
                    let img = space.image(c, unit);
                    violations.extend(chk.check(&img, line, id));
                    if let Some(h) = &chk.hydrated {
                        violations.extend(self.monotone.clone_state(h, line, id));
                    }
                    if keep {
                        views.push(CrashView {
                            name: id.clone(),
                            meta: img,
                            dest: dest.clone(),
                        });
                    }
                }
                self.out.crash.skipped_sectors += chk.skipped;
                self.monotone.clone_durable(&durable);
                violations.extend(self.monotone.superblock(&durable, line));
            }
            Model::Era(m) => {
                let mut chk = crate::verify::EraChecker::new(m);
                for (id, c) in states {
                    let img = space.image(c, unit);
                    violations.extend(chk.check(&img, line, id));
                    if keep {
                        views.push(CrashView {
                            name: id.clone(),
                            meta: img,
                            dest: None,
                        });
                    }
                }
                violations.extend(self.monotone.era_durable(&durable, line));
                violations.extend(self.monotone.superblock(&durable, line));
            }
        }
        self.out.crash.views += states.len() as u64;
        self.out.violations.extend(violations);
        views
    }

    /// A crash point after statement `line` that does not stop the model: its
    /// crash states are enumerated and checked (`--crash-points statements`),
    /// with the metadata crash points inside the statement: at every flush of
    /// the metadata device and, with `--crash-points all`, after every event
    /// on it.
    ///
    /// The ids of the states carry the point's suffix ([`crate::crash::Within`]).
    /// An event point whose device state equals the point before it, or the
    /// state after the statement, is not explored, and an image already
    /// checked at an earlier point of the statement is not checked again.
    pub(super) fn explore_point(&mut self, line: usize) {
        let model = self.model.as_ref().expect("checked");
        let running = match model {
            Model::Clone(m) => m.life() == CloneLife::Running,
            Model::Era(m) => m.life() == EraLife::Running,
        };
        let meta_dev = match model {
            Model::Clone(m) => m.meta_dev().clone(),
            Model::Era(m) => m.meta_dev().clone(),
        };
        // The points inside the statement: metadata crash states there (the
        // data devices and the oracle are known only at statement boundaries,
        // so these points check the metadata invariants I1/E1 and the ordering
        // rules G1/G2). They are crash points whatever the statement leaves
        // the target in (a suspend's or a remove's commit included).
        let flushes = meta_dev.take_flush_points();
        let mut events = meta_dev.take_event_points();
        if running && events.last().is_some_and(|p| meta_dev.is_current(p)) {
            // The statement's own crash point below explores that state.
            events.pop();
        }
        let nr = meta_dev.lock().nr_units();
        let target = match model {
            Model::Clone(_) => crate::verify::log::Target::Clone,
            Model::Era(_) => crate::verify::log::Target::Era,
        };
        // G1/G2 findings of this statement: later points of the same flush
        // epoch see them again.
        let mut reported: HashSet<(&'static str, String)> = HashSet::new();
        // With event points: the metadata images checked in this statement (an
        // event point's states are mostly those of the point before it, and
        // the state before a flush is the one after the last write before it).
        let mut seen = (!events.is_empty()).then(Seen::default);
        for (k, p) in flushes.iter().enumerate() {
            // G1 and G2: the order of the writes this flush covers.
            let written: Vec<u64> = p.volatile.iter().flat_map(|(a, b, _, _)| a..b).collect();
            let mut landed = p.durable.clone();
            for (a, b, seq, v) in p.volatile.iter() {
                landed.insert(a, b, seq, v.clone());
            }
            let durable = MetaImage::new(nr, p.durable.clone());
            let landed = MetaImage::new(nr, landed);
            for (id, what) in crate::verify::ordering::at_flush(target, &durable, &written, &landed)
            {
                reported.insert((id, what.clone()));
                self.out.violations.push(crate::verify::Violation {
                    id,
                    cp: line,
                    state: format!("flush{}", k + 1),
                    what,
                });
            }
            let space = crate::crash::MetaSpace::at_flush(nr, p);
            let suffix = crate::crash::Within::Flush(k + 1).suffix();
            self.check_meta_space(line, &space, &suffix, "", seen.as_mut(), false);
        }
        // What the durable superblock reaches, kept while the durable content
        // stays the same (it changes only when a flush or FUA write completes).
        let mut live: Option<(ExtentMap<MetaVal>, HashMap<u64, Role>)> = None;
        for p in &events {
            let k = p.ordinal;
            let mut written: Vec<u64> = p.volatile.iter().flat_map(|(a, b, _, _)| a..b).collect();
            written.extend(p.inflight.iter().map(|&(b, _)| b));
            let mut landed = p.durable.clone();
            for (a, b, seq, v) in p.volatile.iter() {
                landed.insert(a, b, seq, v.clone());
            }
            for (b, v) in &p.inflight {
                landed.insert(*b, b + 1, u64::MAX, v.clone());
            }
            let landed = MetaImage::new(nr, landed);
            if !live
                .as_ref()
                .is_some_and(|(d, _)| d.same_writes(&p.durable))
            {
                let durable = MetaImage::new(nr, p.durable.clone());
                let reach = crate::verify::ordering::reachable(target, &durable);
                live = Some((p.durable.clone(), reach.unwrap_or_default()));
            }
            let (_, reach) = live.as_ref().expect("just set");
            for (id, what) in crate::verify::ordering::at_point(target, reach, &written, &landed) {
                if reported.insert((id, what.clone())) {
                    self.out.violations.push(crate::verify::Violation {
                        id,
                        cp: line,
                        state: format!("ev{k}"),
                        what: format!("{what} (after event {k}: {})", p.event),
                    });
                }
            }
            let space = crate::crash::MetaSpace::at_event(nr, p);
            let note = format!(" (after event {k}: {})", p.event);
            let suffix = crate::crash::Within::Event(k).suffix();
            self.check_meta_space(line, &space, &suffix, &note, seen.as_mut(), true);
        }
        if !running {
            return;
        }
        let space = crate::crash::MetaSpace::capture(&meta_dev.lock());
        let (choices, total) = space.enumerate(&self.opts.crash);
        self.out.crash.points += 1;
        self.out.crash.states += total as u64;
        let states: Vec<(String, crate::crash::Choice)> =
            choices.into_iter().map(|c| (c.id(line), c)).collect();
        self.check_states(line, &space, &states, None, false);
    }

    /// One metadata crash point inside statement `line`: the states of `space`
    /// checked for I1/E1, their ids suffixed with `suffix`, `note` appended to
    /// what a violation found. With `seen`, the images checked are recorded
    /// there and, when `skip_seen`, an image checked at an earlier point of the
    /// statement is not checked again.
    fn check_meta_space(
        &mut self,
        line: usize,
        space: &crate::crash::MetaSpace,
        suffix: &str,
        note: &str,
        mut seen: Option<&mut Seen>,
        skip_seen: bool,
    ) {
        let (choices, total) = space.enumerate(&self.opts.crash);
        self.out.crash.points += 1;
        self.out.crash.states += total as u64;
        let unit = self.opts.crash.atomic_unit;
        let base = seen.as_mut().map(|s| space.base_fingerprint(&mut s.hashes));
        for c in choices {
            if let (Some(s), Some(base)) = (seen.as_mut(), base) {
                let key = space.fingerprint(&c, unit, base, &mut s.hashes);
                if !s.images.insert(key) && skip_seen {
                    continue;
                }
            }
            let img = space.image(&c, unit);
            let id = format!("{}{suffix}", c.id(line));
            self.out.crash.views += 1;
            if let Some(mut v) = self.meta_invariant(&img, line, &id) {
                v.what.push_str(note);
                self.out.violations.push(v);
            }
        }
    }

    /// I1 or E1 alone: the metadata of a crash state checks clean.
    pub(super) fn meta_invariant(
        &self,
        img: &MetaImage,
        line: usize,
        state: &str,
    ) -> Option<crate::verify::Violation> {
        let (id, first) = match self.model.as_ref().expect("checked") {
            Model::Clone(m) => (
                "I1",
                crate::clone::check::check(
                    img,
                    &crate::clone::check::CheckOptions {
                        region_size: Some(m.region_size()),
                        target_size: Some(m.size()),
                        ..Default::default()
                    },
                )
                .report
                .first_error()
                .map(|f| f.to_string()),
            ),
            Model::Era(m) => (
                "E1",
                crate::era::check::check(
                    img,
                    &crate::era::check::CheckOptions {
                        block_size: Some(m.block_size() as u32),
                        ..Default::default()
                    },
                )
                .report
                .first_error()
                .map(|f| f.to_string()),
            ),
        };
        first.map(|f| crate::verify::Violation {
            id,
            cp: line,
            state: state.to_string(),
            what: format!("metadata invalid: {f}"),
        })
    }
}
