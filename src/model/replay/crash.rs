//! Power cuts during a replay: the crash-state spaces at `crash` lines, after
//! statements and at metadata flushes, and the invariants checked on them.

use super::*;

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
                let (cp, c) = crate::crash::Choice::parse(id, space.pending.len())
                    .map_err(ModelError::Trace)?;
                if cp != line {
                    return Err(ModelError::Trace(format!(
                        "state {id} belongs to the crash on line {cp}, not line {line}"
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
    /// crash states are enumerated and checked (`--crash-points statements`).
    pub(super) fn explore_point(&mut self, line: usize) {
        let model = self.model.as_ref().expect("checked");
        let running = match model {
            Model::Clone(m) => m.life() == CloneLife::Running,
            Model::Era(m) => m.life() == EraLife::Running,
        };
        if !running {
            return;
        }
        let meta_dev = match model {
            Model::Clone(m) => m.meta_dev().clone(),
            Model::Era(m) => m.meta_dev().clone(),
        };
        // The flushes inside the statement: metadata crash states there (the
        // data devices and the oracle are known only at statement boundaries,
        // so these points check the metadata invariants I1/E1).
        let nr = meta_dev.lock().nr_units();
        let target = match model {
            Model::Clone(_) => crate::verify::log::Target::Clone,
            Model::Era(_) => crate::verify::log::Target::Era,
        };
        for (k, p) in meta_dev.take_flush_points().iter().enumerate() {
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
                self.out.violations.push(crate::verify::Violation {
                    id,
                    cp: line,
                    state: format!("flush{}", k + 1),
                    what,
                });
            }
            let space = crate::crash::MetaSpace::at_flush(nr, p);
            let (choices, total) = space.enumerate(&self.opts.crash);
            self.out.crash.points += 1;
            self.out.crash.states += total as u64;
            let unit = self.opts.crash.atomic_unit;
            for c in choices {
                let img = space.image(&c, unit);
                let id = format!("{}-flush{}", c.id(line), k + 1);
                self.out.crash.views += 1;
                if let Some(v) = self.meta_invariant(&img, line, &id) {
                    self.out.violations.push(v);
                }
            }
        }
        let space = crate::crash::MetaSpace::capture(&meta_dev.lock());
        let (choices, total) = space.enumerate(&self.opts.crash);
        self.out.crash.points += 1;
        self.out.crash.states += total as u64;
        let states: Vec<(String, crate::crash::Choice)> =
            choices.into_iter().map(|c| (c.id(line), c)).collect();
        self.check_states(line, &space, &states, None, false);
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
