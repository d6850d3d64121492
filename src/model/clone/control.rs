//! Messages, status, suspend/resume/remove, power cuts, and the explicit
//! commit and hydration phases of traces.

use super::*;

impl CloneModel {
    /// `clone_message`.
    pub fn message(&mut self, msg: CloneMsg) -> Result<(), ModelError> {
        self.meta()?;
        match msg {
            CloneMsg::EnableHydration => {
                if !self.hydration_enabled {
                    self.hydration_enabled = true;
                    self.worker_kicked = true;
                }
            }
            CloneMsg::DisableHydration => self.hydration_enabled = false,
            CloneMsg::HydrationThreshold(n) => self.threshold = n.min(u32::MAX as u64),
            CloneMsg::HydrationBatchSize(n) => self.batch = n.min(u32::MAX as u64),
        }
        self.settle()
    }

    /// `wait hydrated=N|all`: lets time pass until enough regions are hydrated
    /// in core.
    pub fn wait(&mut self, w: WaitFor) -> Result<(), ModelError> {
        self.running()?;
        let want = match w {
            WaitFor::All => self.nr_regions,
            WaitFor::Count(n) => n.min(self.nr_regions),
        };
        let limit = self.now + 1_000_000 * 3600 * 24 * 365;
        while self.nr_hydrated() < want {
            if !self.hydration_enabled {
                return Err(ModelError::NotEnabled(format!(
                    "wait for {want} hydrated regions with hydration disabled ({} hydrated)",
                    self.nr_hydrated()
                )));
            }
            let next = self
                .copies
                .values()
                .filter(|c| !c.manual)
                .filter_map(|c| c.due)
                .min()
                .or(self.next_waker)
                .unwrap_or(self.now + 1);
            if next > limit {
                return Err(ModelError::internal("hydration makes no progress".into()));
            }
            self.advance_us(next.max(self.now))?;
        }
        Ok(())
    }

    /// `clone_status`: commits unless `noflush` (without resetting the periodic
    /// commit timer); returns the status line.
    pub fn status(&mut self, noflush: bool) -> Result<String, ModelError> {
        self.meta()?;
        if !noflush && self.life == Life::Running && !self.explicit_commit {
            match self.commit_metadata() {
                Ok(_) => {}
                Err(ModelError::Meta(e)) => self.metadata_failed(e)?,
                Err(e) => return Err(e),
            }
            self.settle()?;
        }
        let used = self.meta()?.used_blocks();
        let mut features = Vec::new();
        if !self.hydration_enabled {
            features.push("no_hydration");
        }
        if !self.cfg.discard_passdown {
            features.push("no_discard_passdown");
        }
        let mut f = features.len().to_string();
        for x in features {
            f.push(' ');
            f.push_str(x);
        }
        Ok(format!(
            "8 {used}/{} {} {}/{} {} {f} 4 hydration_threshold {} hydration_batch_size {} {}",
            self.cfg.meta_blocks,
            self.cfg.region_size,
            self.nr_hydrated(),
            self.nr_regions,
            self.hydrations_in_flight,
            self.threshold,
            self.batch,
            match self.mode {
                Mode::Write => "rw",
                Mode::ReadOnly => "ro",
            }
        ))
    }

    /// `dmsetup suspend`: dm core waits for in-flight user I/O, then
    /// `clone_postsuspend` (stop the waker and background hydration, wait for
    /// hydrations, flush the worker, commit).
    pub fn suspend(&mut self) -> Result<(), ModelError> {
        match self.life {
            Life::Running => {}
            Life::Suspended => return Ok(()),
            _ => {
                return Err(ModelError::NotEnabled(
                    "suspend of a target that is not loaded".into(),
                ))
            }
        }
        if self.explicit_commit {
            return Err(ModelError::NotEnabled(
                "suspend during an explicit commit".into(),
            ));
        }
        // dm core waits for the user I/O in flight (async I/O completes now).
        for u in self.users.iter_mut() {
            u.is_async = false;
        }
        self.settle()?;
        // clone_postsuspend: no more waker, no new background hydration, wait
        // for the hydrations in flight, flush the worker, commit.
        self.next_waker = None;
        self.hydration_suspended = true;
        for c in self.copies.values_mut() {
            c.manual = false;
            c.due = None;
        }
        self.settle()?;
        if self.worker_kicked {
            self.do_worker()?;
            self.settle()?;
        }
        match self.commit_metadata() {
            Ok(_) => {}
            Err(ModelError::Meta(e)) => self.metadata_failed(e)?,
            Err(e) => return Err(e),
        }
        self.life = Life::Suspended;
        Ok(())
    }

    /// `dmsetup resume`: `clone_resume` (background hydration allowed, the waker
    /// runs now and every second).
    pub fn resume(&mut self) -> Result<(), ModelError> {
        match self.life {
            Life::Suspended => {}
            Life::Running => return Ok(()),
            _ => {
                return Err(ModelError::NotEnabled(
                    "resume of a target that is not loaded".into(),
                ))
            }
        }
        self.life = Life::Running;
        self.hydration_suspended = false;
        self.worker_kicked = true;
        self.next_waker = Some(self.now + COMMIT_PERIOD);
        self.settle()
    }

    /// `dmsetup remove`: suspend, then the destructor (no commit of its own).
    pub fn remove(&mut self) -> Result<(), ModelError> {
        self.suspend()?;
        self.meta = None;
        self.life = Life::Removed;
        Ok(())
    }

    /// A power cut: the devices keep `mode`'s state; everything in core is lost.
    pub fn crash(&mut self, mode: &CrashMode) -> Result<(), ModelError> {
        if let CrashMode::State(id) = mode {
            return Err(ModelError::Trace(format!(
                "crash mode=state:{id}: the replay rebuilds crash states, the model does not"
            )));
        }
        crate::sim::power_cut(
            &self.meta_dev,
            &mut self.dest,
            *mode == CrashMode::AllLanded,
        );
        self.oracle.crash();
        self.reset_in_core();
        self.life = Life::Crashed;
        Ok(())
    }

    pub(super) fn reset_in_core(&mut self) {
        self.meta = None;
        self.hydrations.clear();
        self.hydrations_in_flight = 0;
        self.ios_in_flight = 0;
        self.copies.clear();
        self.owners.clear();
        self.bios.clear();
        self.deferred_bios.clear();
        self.deferred_discards.clear();
        self.deferred_flush_bios.clear();
        self.deferred_flush_completions.clear();
        self.explicit_taken = (Vec::new(), Vec::new());
        self.worker_kicked = false;
        self.explicit_commit = false;
        self.explicit_dest_flushed = false;
        self.next_waker = None;
        for u in self.users.iter_mut() {
            if !u.done {
                u.done = true;
                u.error = true;
            }
        }
    }

    /// Reloads the table on the devices as they are (after a crash or a remove):
    /// constructor and resume.
    pub fn recover(&mut self) -> Result<(), ModelError> {
        if !matches!(self.life, Life::Crashed | Life::Removed) {
            return Err(ModelError::NotEnabled(
                "recover of a target that is loaded".into(),
            ));
        }
        self.construct()?;
        self.resume()
    }

    /// `reload`: `dmsetup reload` + `resume`: the new table's `clone_ctr`
    /// opens the metadata while the old table is suspended, the new table
    /// resumes, then the old one is destroyed (`clone_dtr` →
    /// `dm_clone_metadata_close`), its block manager writing back what it still
    /// holds dirty (nothing after postsuspend's commit).
    pub fn reload(&mut self) -> Result<(), ModelError> {
        if self.life == Life::Running {
            self.suspend()?;
        }
        if self.life != Life::Suspended {
            return Err(ModelError::NotEnabled(
                "reload of a target that is not loaded".into(),
            ));
        }
        let old = self.meta.take();
        self.construct()?;
        self.resume()?;
        if let Some(old) = old {
            old.destroy()?;
        }
        Ok(())
    }

    /// `commit.pre`.
    pub fn commit_pre(&mut self) -> Result<(), ModelError> {
        self.running()?;
        if self.explicit_commit {
            return Err(ModelError::NotEnabled(
                "commit.pre while a commit is in progress".into(),
            ));
        }
        self.meta_mut()?.pre_commit()?;
        self.explicit_commit = true;
        self.explicit_dest_flushed = false;
        // `process_deferred_flush_bios` took the deferred lists before it
        // called `commit_metadata`.
        self.explicit_taken = (
            std::mem::take(&mut self.deferred_flush_bios),
            std::mem::take(&mut self.deferred_flush_completions),
        );
        Ok(())
    }

    /// `commit.flush-dest`.
    pub fn commit_flush_dest(&mut self) -> Result<(), ModelError> {
        if !self.explicit_commit || self.meta()?.meta_written() {
            return Err(ModelError::NotEnabled(
                "commit.flush-dest outside commit.pre .. commit.meta".into(),
            ));
        }
        self.flush_dest()?;
        self.explicit_dest_flushed = true;
        Ok(())
    }

    /// `commit.meta`.
    pub fn commit_meta(&mut self) -> Result<(), ModelError> {
        if !self.explicit_commit || self.meta()?.meta_written() {
            return Err(ModelError::NotEnabled(
                "commit.meta without commit.pre".into(),
            ));
        }
        self.meta_mut()?.commit_meta()
    }

    /// `commit.super`; then the FUA completions and PREFLUSH bios deferred
    /// before `commit.pre` go on (those deferred since wait for the next
    /// commit, which the worker makes when it runs next).
    pub fn commit_super(&mut self) -> Result<(), ModelError> {
        if !self.explicit_commit || !self.meta()?.meta_written() {
            return Err(ModelError::NotEnabled(
                "commit.super without commit.meta".into(),
            ));
        }
        self.meta_mut()?.commit_super()?;
        self.commits += 1;
        self.explicit_commit = false;
        self.last_commit = self.now;
        let (bios, completions) = std::mem::take(&mut self.explicit_taken);
        for b in completions {
            self.end_bio(b, false)?;
        }
        for b in bios {
            if self.bios.get(&b).is_some_and(|x| x.kind == BioKind::Flush)
                && self.explicit_dest_flushed
            {
                self.end_bio(b, false)?;
            } else {
                self.submit_dest(b)?;
            }
        }
        self.settle()
    }

    /// `commit`: the four phases in order.
    pub fn commit(&mut self) -> Result<(), ModelError> {
        self.commit_pre()?;
        self.commit_flush_dest()?;
        self.commit_meta()?;
        self.commit_super()
    }

    /// `hydrate.start region=a..b`: background hydration of exactly these regions
    /// (`__start_next_hydration` + batching); the copies complete on
    /// `hydrate.done`.
    pub fn hydrate_start(&mut self, start: u64, end: u64) -> Result<(), ModelError> {
        self.running()?;
        if start >= end || end > self.nr_regions {
            return Err(ModelError::Trace(format!(
                "regions {start}..{end} are not inside the target (0..{})",
                self.nr_regions
            )));
        }
        for r in start..end {
            if self.meta()?.is_region_hydrated(r) || self.hydrations.contains_key(&r) {
                return Err(ModelError::NotEnabled(format!(
                    "hydrate.start of region {r}, which is hydrated or hydrating"
                )));
            }
        }
        for r in start..end {
            self.hydrations.insert(r, Hydration::default());
        }
        // One kcopyd job per batch of at most hydration_batch_size regions.
        let max = self.batch.max(1);
        let mut r = start;
        while r < end {
            let n = (end - r).min(max);
            self.hydration_copy(r, n, true, None)?;
            r += n;
        }
        Ok(())
    }

    /// `hydrate.done region=r`: the kcopyd callback of the copy holding `r`.
    pub fn hydrate_done(&mut self, region: u64) -> Result<(), ModelError> {
        let seq = self
            .owners
            .iter()
            .find(|(_, o)| {
                matches!(o, Owner::Copy(j) if self.copies.get(j).is_some_and(|c| c.head <= region && region < c.head + c.nr))
            })
            .map(|(s, _)| s)
            .ok_or_else(|| {
                ModelError::NotEnabled(format!("hydrate.done of region {region} without a copy in flight"))
            })?;
        self.complete_dest(seq)?;
        self.settle()
    }

    /// The worker, once (`worker`).
    pub fn run_worker(&mut self) -> Result<(), ModelError> {
        self.running()?;
        self.do_worker()?;
        self.settle()
    }

    /// What a read of sector `s` through the target returns now.
    pub fn read_sector(&self, s: u64, hydrated: bool) -> DataVal {
        if hydrated {
            self.dest.read(s).unwrap_or(DataVal {
                origin: init_val(self.cfg.dest_init, DEST),
                sector: s,
            })
        } else {
            self.source.read(s).unwrap_or(DataVal {
                origin: init_val(self.cfg.source_init, SOURCE),
                sector: s,
            })
        }
    }

    /// The destination's initial content at sector `s`.
    pub fn dest_base(&self, s: u64) -> DataVal {
        DataVal {
            origin: init_val(self.cfg.dest_init, DEST),
            sector: s,
        }
    }

    /// The source's initial content at sector `s`.
    pub fn source_base(&self, s: u64) -> DataVal {
        DataVal {
            origin: init_val(self.cfg.source_init, SOURCE),
            sector: s,
        }
    }

    /// Region size in sectors.
    pub fn region_size(&self) -> u64 {
        self.cfg.region_size
    }

    /// Target length in sectors.
    pub fn size(&self) -> u64 {
        self.cfg.size
    }

    /// Region of sector `s`.
    pub fn region_of(&self, s: u64) -> u64 {
        s >> self.region_shift
    }

    /// `region_to_sector`: `(sector_t)region_nr << region_shift`. The
    /// `region-shift-32bit` variant shifts in a 32-bit `unsigned long` first, as
    /// a 32-bit host did before 9fc06ff56845 ("dm clone: Add missing casts to
    /// prevent overflows and data corruption"), so the sector wraps at 2^32.
    pub(super) fn region_to_sector(&self, r: u64) -> u64 {
        let s = r << self.region_shift;
        if self.variant == Variant::RegionShift32bit {
            return s as u32 as u64;
        }
        s
    }

    /// True when region `r` is hydrated in core.
    pub fn is_hydrated_in_core(&self, r: u64) -> Option<bool> {
        self.meta.as_ref().map(|m| m.is_region_hydrated(r))
    }

    /// The clock shared by the devices.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }
}
