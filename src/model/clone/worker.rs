//! The worker (`do_worker`): deferred bios and discards, the deferred flush
//! bios with their commit (`commit_metadata`), and background hydration
//! (`do_hydration` with threshold and batching).

use super::*;

impl CloneModel {
    /// `do_worker`: deferred bios, deferred discards, deferred flush bios (the
    /// commit), then background hydration.
    pub(super) fn do_worker(&mut self) -> Result<(), ModelError> {
        self.worker_kicked = false;
        let bios = std::mem::take(&mut self.deferred_bios);
        for b in bios {
            self.submit_dest(b)?;
        }
        self.process_deferred_discards()?;
        if self.explicit_commit {
            // The worker blocks on commit_lock until the explicit commit ends.
            self.worker_kicked = true;
            return Ok(());
        }
        self.process_deferred_flush_bios()?;
        self.do_hydration()
    }

    /// `process_deferred_discards`.
    pub(super) fn process_deferred_discards(&mut self) -> Result<(), ModelError> {
        let discards = std::mem::take(&mut self.deferred_discards);
        if discards.is_empty() {
            return Ok(());
        }
        let mut ok = self.mode == Mode::Write;
        if ok {
            for &b in &discards {
                let (rs, nr) = self.bio_region_range(b);
                if !self.meta_mut()?.cond_set_range(rs, nr) {
                    ok = false;
                    break;
                }
            }
        }
        for b in discards {
            self.complete_discard_bio(b, ok)?;
        }
        Ok(())
    }

    pub(super) fn commit_due(&self) -> bool {
        // need_commit_due_to_time (REPLAY.md: ≥ 1000 ms since the last commit).
        self.now >= self.last_commit + COMMIT_PERIOD
    }

    /// `process_deferred_flush_bios`.
    pub(super) fn process_deferred_flush_bios(&mut self) -> Result<(), ModelError> {
        let changed = self.meta()?.changed();
        if self.deferred_flush_bios.is_empty()
            && self.deferred_flush_completions.is_empty()
            && !(changed && self.commit_due())
        {
            return Ok(());
        }
        let bios = std::mem::take(&mut self.deferred_flush_bios);
        let completions = std::mem::take(&mut self.deferred_flush_completions);
        let dest_flushed = match self.commit_metadata() {
            Ok(f) => f,
            Err(ModelError::Meta(e)) => {
                self.metadata_failed(e)?;
                for b in bios.into_iter().chain(completions) {
                    self.end_bio(b, true)?;
                }
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        self.last_commit = self.now;
        for b in completions {
            self.end_bio(b, false)?;
        }
        for b in bios {
            if self.bios.get(&b).is_some_and(|x| x.kind == BioKind::Flush) && dest_flushed {
                // The commit just flushed the destination.
                self.end_bio(b, false)?;
            } else {
                self.submit_dest(b)?;
            }
        }
        Ok(())
    }

    /// `__metadata_operation_failed`: read-only mode.
    pub(super) fn metadata_failed(
        &mut self,
        e: crate::pdata::tm::TmError,
    ) -> Result<(), ModelError> {
        match e {
            crate::pdata::tm::TmError::Sm(_) => {
                self.mode = Mode::ReadOnly;
                Ok(())
            }
            e => Err(ModelError::Meta(e)),
        }
    }

    /// `commit_metadata`: returns whether the destination was flushed.
    pub(super) fn commit_metadata(&mut self) -> Result<bool, ModelError> {
        if !self.meta()?.changed() {
            return Ok(false);
        }
        if self.mode != Mode::Write {
            return Err(ModelError::Meta(crate::pdata::tm::TmError::Failed));
        }
        self.meta_mut()?.pre_commit()?;
        // 8b3fd1f53af3: flush the destination before committing the metadata
        // (the commit-before-dest-flush and flush-after-commit variants don't).
        let flushed = !matches!(
            self.variant,
            Variant::CommitBeforeDestFlush | Variant::FlushAfterCommit
        );
        if flushed {
            self.flush_dest()?;
        }
        let meta = self.meta_mut()?;
        meta.commit_meta()?;
        meta.commit_super()?;
        self.commits += 1;
        Ok(flushed)
    }

    /// `blkdev_issue_flush(dest)`.
    pub(super) fn flush_dest(&mut self) -> Result<(), ModelError> {
        let s = self.dest.issue(Io {
            kind: IoKind::Flush,
            start: 0,
            end: 0,
            val: None,
            fua: false,
        })?;
        self.dest.complete(s)?;
        Ok(())
    }

    /// `do_hydration`.
    pub(super) fn do_hydration(&mut self) -> Result<(), ModelError> {
        if self.mode != Mode::Write || self.meta()?.hydration_done() {
            return Ok(());
        }
        // The guard reference against suspension.
        self.hydrations_in_flight += 1;
        let mut offset = self.hydration_offset;
        let mut batch: Option<(u64, u64)> = None;
        let due = Some(self.now + self.cfg.copy_us);
        while !self.hydration_suspended
            && self.ios_in_flight == 0
            && self.hydration_enabled
            && offset < self.nr_regions
        {
            let volume = self.hydrations_in_flight + batch.map_or(0, |b| b.1);
            if volume > self.threshold {
                break;
            }
            offset = self.start_next_hydration(offset, &mut batch, due)?;
        }
        if let Some((head, nr)) = batch {
            self.hydration_copy(head, nr, false, due)?;
        }
        if offset >= self.nr_regions {
            offset = 0;
        }
        self.hydration_offset = offset;
        self.hydrations_in_flight -= 1;
        Ok(())
    }

    /// `__start_next_hydration` with `__batch_hydration`.
    pub(super) fn start_next_hydration(
        &mut self,
        mut offset: u64,
        batch: &mut Option<(u64, u64)>,
        due: Option<u64>,
    ) -> Result<u64, ModelError> {
        loop {
            offset = self.meta()?.next_unhydrated(offset);
            if offset >= self.nr_regions {
                return Ok(offset);
            }
            if !self.meta()?.is_region_hydrated(offset) && !self.hydrations.contains_key(&offset) {
                self.hydrations.insert(offset, Hydration::default());
                self.batch_hydration(offset, batch, due)?;
                return Ok(offset + 1);
            }
            offset += 1;
            if offset >= self.nr_regions {
                return Ok(offset);
            }
        }
    }

    /// `__batch_hydration`.
    pub(super) fn batch_hydration(
        &mut self,
        region: u64,
        batch: &mut Option<(u64, u64)>,
        due: Option<u64>,
    ) -> Result<(), ModelError> {
        let max = self.batch;
        let mut pending = Some(region);
        if let Some((head, nr)) = *batch {
            if nr < max && head + nr == region {
                *batch = Some((head, nr + 1));
                pending = None;
            }
            let (head, nr) = batch.expect("set");
            if nr >= max || pending.is_some() {
                self.hydration_copy(head, nr, false, due)?;
                *batch = None;
            }
        }
        let Some(r) = pending else {
            return Ok(());
        };
        if max <= 1 {
            return self.hydration_copy(r, 1, false, due);
        }
        *batch = Some((r, 1));
        Ok(())
    }

    /// Runs everything the kernel would do without further input: completes the
    /// device I/O that is not held (async user I/O, explicit or background
    /// copies), and runs the worker while it has work.
    pub(super) fn settle(&mut self) -> Result<(), ModelError> {
        for _ in 0..1_000_000u32 {
            let mut ready: Vec<u64> = self
                .owners
                .iter()
                .filter(|(_, o)| match o {
                    Owner::Bio(b) => !self.users[self.bios[b].user].is_async,
                    Owner::Copy(j) => self
                        .copies
                        .get(j)
                        .is_some_and(|c| !c.manual && c.due.is_none_or(|d| d <= self.now)),
                })
                .map(|(s, _)| s)
                .collect();
            if ready.is_empty() {
                if self.worker_kicked && self.life == Life::Running {
                    self.do_worker()?;
                    if self.worker_kicked && self.explicit_commit {
                        return Ok(());
                    }
                    continue;
                }
                return Ok(());
            }
            ready.sort_unstable();
            for s in ready {
                self.complete_dest(s)?;
            }
        }
        Err(ModelError::internal("the model does not settle".into()))
    }

    /// Advances virtual time to `to_ms`: the waker fires every 1000 ms from
    /// resume and background copies complete when due.
    pub fn advance(&mut self, to_ms: u64) -> Result<(), ModelError> {
        // The clock counts microseconds; a time it cannot count twice over
        // (the waker adds a period to it) is refused.
        let to = to_ms
            .checked_mul(1000)
            .filter(|&t| t <= u64::MAX / 2)
            .ok_or_else(|| {
                ModelError::Trace(format!(
                    "time {to_ms} ms is beyond what the model counts ({} ms)",
                    u64::MAX / 2 / 1000
                ))
            })?;
        if to < self.now {
            return Err(ModelError::Trace(format!(
                "time goes back from {} to {to_ms} ms",
                self.now / 1000
            )));
        }
        self.advance_us(to)
    }

    pub(super) fn advance_us(&mut self, to: u64) -> Result<(), ModelError> {
        loop {
            let waker = self.next_waker;
            let next = [self.copy_due(), waker].into_iter().flatten().min();
            match next {
                Some(t) if t <= to => {
                    self.now = self.now.max(t);
                    let before = (waker == Some(t)).then(|| self.activity());
                    if waker == Some(t) {
                        // do_waker: wake the worker, requeue.
                        self.worker_kicked = true;
                        self.next_waker = Some(t + COMMIT_PERIOD);
                    }
                    self.settle()?;
                    if before.is_some_and(|b| b == self.activity()) {
                        self.skip_idle_wakes(to);
                    }
                }
                _ => break,
            }
        }
        self.now = to;
        self.settle()
    }

    /// When the next copy completes, if one is in flight.
    fn copy_due(&self) -> Option<u64> {
        self.copies
            .values()
            .filter(|c| !c.manual)
            .filter_map(|c| c.due)
            .min()
    }

    /// What a run of the worker can change: I/O issued, commits, copies and
    /// deferred work. Equal before and after a wake, the wake did nothing.
    fn activity(&self) -> impl PartialEq {
        let meta = self.meta_dev().lock().stats();
        (
            (meta, self.dest.stats(), self.source.stats(), self.commits),
            (self.copies.len(), self.hydrations.len()),
            (self.hydrations_in_flight, self.hydration_offset),
            (self.owners.iter().count(), self.deferred_bios.len()),
            (
                self.deferred_discards.len(),
                self.deferred_flush_bios.len(),
                self.deferred_flush_completions.len(),
            ),
        )
    }

    /// After a wake that did nothing with nothing left uncommitted, every
    /// wake until the next copy completes (or `to`) does nothing either: each
    /// finds no bio, no completion and nothing changed this transaction
    /// (`process_deferred_flush_bios`), and hydration made no progress. Moves
    /// the waker to the last of those wakes, so that a long idle stretch of
    /// time (`tick ms=…`) costs one step, not one per second.
    fn skip_idle_wakes(&mut self, to: u64) {
        // A worker that does not run (the target suspended, removed or
        // crashed) commits nothing however long it waits.
        let changed = self.life == Life::Running && self.meta.as_ref().is_some_and(|m| m.changed());
        let Some(w) = self.next_waker else {
            return;
        };
        let limit = self.copy_due().map_or(to, |d| d.min(to));
        if !changed && w < limit {
            self.next_waker = Some(w + (limit - w) / COMMIT_PERIOD * COMMIT_PERIOD);
        }
    }
}
