//! `clone_map` and the paths it takes: remapping, discards, hydration of a
//! bio's region (copy or overwrite), device completions, `bio_endio`.

use super::*;

impl CloneModel {
    /// `clone_map`.
    pub(super) fn map(&mut self, b: usize) -> Result<(), ModelError> {
        let bio = self.bios[&b].clone();
        if bio.kind != BioKind::Flush
            && (bio.end.max(1) - 1) >> self.region_shift >= self.nr_regions
        {
            // Only the nr-regions-32bit variant gets here (its bitmaps are sized
            // for the truncated count): the kernel would index past them.
            return Err(ModelError::NotEnabled(format!(
                "sectors {}..{} lie beyond the {} regions the bitmaps were sized for: the kernel indexes past them",
                bio.start, bio.end, self.nr_regions
            )));
        }
        self.ios_in_flight += 1;
        match bio.kind {
            // REQ_PREFLUSH bios carry no data: commit if changed, pass down.
            BioKind::Flush => self.remap_and_issue(b),
            BioKind::Discard => self.process_discard_bio(b),
            BioKind::Write => {
                let region = bio.start >> self.region_shift;
                if self.meta()?.is_region_hydrated(region) {
                    self.remap_and_issue(b)
                } else {
                    self.hydrate_bio_region(b)
                }
            }
        }
    }

    /// `bio_triggers_commit`.
    pub(super) fn triggers_commit(&self, b: usize) -> bool {
        let bio = &self.bios[&b];
        (bio.kind == BioKind::Flush || bio.fua) && self.meta.as_ref().is_some_and(|m| m.changed())
    }

    /// `remap_and_issue` / `issue_bio`.
    pub(super) fn remap_and_issue(&mut self, b: usize) -> Result<(), ModelError> {
        if !self.triggers_commit(b) {
            return self.submit_dest(b);
        }
        if self.mode != Mode::Write {
            return self.end_bio(b, true);
        }
        self.deferred_flush_bios.push(b);
        self.worker_kicked = true;
        Ok(())
    }

    /// Sends bio `b` to the destination device.
    pub(super) fn submit_dest(&mut self, b: usize) -> Result<(), ModelError> {
        let bio = self.bios[&b].clone();
        let kind = match bio.kind {
            BioKind::Flush => IoKind::Flush,
            BioKind::Discard => IoKind::Discard,
            BioKind::Write => IoKind::Write,
        };
        let io = Io::new(kind, bio.start, bio.end, bio.data, bio.fua);
        let s = self.dest.issue(io)?;
        self.owners.push(s, Owner::Bio(b));
        Ok(())
    }

    /// `process_discard_bio`.
    pub(super) fn process_discard_bio(&mut self, b: usize) -> Result<(), ModelError> {
        let (rs, nr) = self.bio_region_range(b);
        if nr == 0 {
            return self.end_bio(b, false);
        }
        if self.variant == Variant::PartialDiscardWrap {
            // Before 4b5142905d4f: no range check, and the "already hydrated" test
            // adds the wrapped count (unsigned long arithmetic), so a discard inside
            // one region looks hydrated and is passed down with a wrapped length.
            let bit = self.meta()?.next_unhydrated(rs);
            if self.meta()?.hydration_done() || bit >= rs.wrapping_add(nr) {
                return self.complete_discard_bio(b, true);
            }
        }
        if rs >= self.nr_regions || rs.checked_add(nr).is_none_or(|e| e > self.nr_regions) {
            // WARN_ON(rs >= nr_regions || ...): the fixed kernel completes it.
            return self.end_bio(b, false);
        }
        if self.meta()?.is_range_hydrated(rs, nr) {
            return self.complete_discard_bio(b, true);
        }
        if self.mode != Mode::Write {
            return self.end_bio(b, false);
        }
        self.deferred_discards.push(b);
        self.worker_kicked = true;
        Ok(())
    }

    /// `bio_region_range`: the whole regions inside the bio. The fixed kernel
    /// (4b5142905d4f) returns no regions for a discard inside one region; the
    /// `partial-discard-wrap` variant computes `end - rs` unsigned, which wraps.
    pub(super) fn bio_region_range(&self, b: usize) -> (u64, u64) {
        let bio = &self.bios[&b];
        let rs = bio.start.div_ceil(self.cfg.region_size);
        let end = bio.end >> self.region_shift;
        if self.variant == Variant::PartialDiscardWrap {
            return (rs, end.wrapping_sub(rs));
        }
        (rs, end.saturating_sub(rs))
    }

    /// `complete_discard_bio`: passed down trimmed to whole regions.
    pub(super) fn complete_discard_bio(
        &mut self,
        b: usize,
        success: bool,
    ) -> Result<(), ModelError> {
        if self.cfg.discard_passdown && success {
            let (rs, nr) = self.bio_region_range(b);
            let start = self.region_to_sector(rs);
            // trim_bio: bi_size = to_bytes(len), a 32-bit byte count.
            let len = nr.wrapping_shl(self.region_shift);
            let len = ((len << 9) as u32 as u64) >> 9;
            let end = start.saturating_add(len).min(self.cfg.size);
            let bio = self.bios.get_mut(&b).expect("bio in flight");
            bio.start = start;
            bio.end = end.max(start);
            bio.data.sector = start;
            return self.submit_dest(b);
        }
        self.end_bio(b, false)
    }

    /// `hydrate_bio_region`.
    pub(super) fn hydrate_bio_region(&mut self, b: usize) -> Result<(), ModelError> {
        let region = self.bios[&b].start >> self.region_shift;
        if let Some(hd) = self.hydrations.get_mut(&region) {
            hd.deferred.push(b);
            return Ok(());
        }
        if self.meta()?.is_region_hydrated(region) {
            return self.remap_and_issue(b);
        }
        if self.mode != Mode::Write {
            return self.end_bio(b, true);
        }
        let manual = self.users[self.bios[&b].user].is_async;
        let bio = &self.bios[&b];
        if bio.end - bio.start == self.cfg.region_size {
            // hydration_overwrite: no copy, the bio itself hydrates the region.
            self.hydrations.insert(
                region,
                Hydration {
                    overwrite: Some(b),
                    deferred: Vec::new(),
                },
            );
            self.hydrations_in_flight += 1;
            self.submit_dest(b)
        } else {
            self.hydrations.insert(
                region,
                Hydration {
                    overwrite: None,
                    deferred: vec![b],
                },
            );
            self.hydration_copy(region, 1, manual, None)
        }
    }

    /// `hydration_copy`: a kcopyd copy of `nr` regions from `head` (the last
    /// region of the target may be short).
    pub(super) fn hydration_copy(
        &mut self,
        head: u64,
        nr: u64,
        manual: bool,
        due: Option<u64>,
    ) -> Result<(), ModelError> {
        // The last region of the target may be short (its tail_size).
        let len =
            ((head + nr) << self.region_shift).min(self.cfg.size) - (head << self.region_shift);
        let start = self.region_to_sector(head);
        let end = start + len;
        self.hydrations_in_flight += nr;
        let origin = init_val(self.cfg.source_init, SOURCE);
        // kcopyd reads the source, then writes the destination.
        let io = Io {
            kind: IoKind::Write,
            start,
            end,
            val: Some(self.source.read(start).unwrap_or(DataVal {
                origin,
                sector: start,
            })),
            fua: false,
        };
        let s = self.dest.issue(io)?;
        let j = self.next_copy;
        self.next_copy += 1;
        self.copies.insert(
            j,
            CopyJob {
                head,
                nr,
                manual,
                due,
            },
        );
        self.owners.push(s, Owner::Copy(j));
        Ok(())
    }

    /// A destination I/O completed.
    pub(super) fn complete_dest(&mut self, seq: u64) -> Result<(), ModelError> {
        self.dest.complete(seq)?;
        match self.owners.remove(seq) {
            Some(Owner::Bio(b)) => {
                if let Some((&r, _)) = self
                    .hydrations
                    .iter()
                    .find(|(_, hd)| hd.overwrite == Some(b))
                {
                    // overwrite_endio
                    self.hydration_complete(r)
                } else {
                    self.end_bio(b, false)
                }
            }
            Some(Owner::Copy(j)) => self.kcopyd_callback(j),
            None => Ok(()),
        }
    }

    /// `hydration_kcopyd_callback`.
    pub(super) fn kcopyd_callback(&mut self, j: usize) -> Result<(), ModelError> {
        let job = self
            .copies
            .remove(&j)
            .ok_or_else(|| ModelError::internal(format!("copy {j} completed twice")))?;
        for r in job.head..job.head + job.nr {
            self.hydration_complete(r)?;
        }
        if self.variant == Variant::ReclaimSourceBeforeCommit {
            self.reclaim_source(job.head, job.nr)?;
        }
        if self.hydration_enabled && self.ios_in_flight == 0 {
            self.worker_kicked = true;
        }
        Ok(())
    }

    /// The `reclaim-source-before-commit` variant (HAZARDS.md H-C5, a design
    /// hazard with no upstream counterpart: dm-clone opens the source
    /// read-only): a source that gives back the space of the regions just
    /// copied, as soon as the copy completed, before any commit records them.
    /// The fixed model never sends the source anything.
    fn reclaim_source(&mut self, head: u64, nr: u64) -> Result<(), ModelError> {
        let start = head << self.region_shift;
        let end = ((head + nr) << self.region_shift).min(self.cfg.size);
        let io = Io {
            kind: IoKind::Discard,
            start,
            end,
            val: Some(DataVal {
                origin: Origin::Discarded,
                sector: start,
            }),
            fua: false,
        };
        let s = self.source.issue(io)?;
        self.source.complete(s)?;
        Ok(())
    }

    /// `hydration_complete`.
    pub(super) fn hydration_complete(&mut self, region: u64) -> Result<(), ModelError> {
        let hd = self.hydrations.remove(&region).unwrap_or_default();
        let ok = self.mode == Mode::Write;
        if ok {
            self.meta_mut()?.set_region_hydrated(region)?;
            if let Some(b) = hd.overwrite {
                self.complete_overwrite_bio(b)?;
            }
            // issue_deferred_bios: handed to the worker.
            for b in hd.deferred {
                if self.triggers_commit(b) {
                    self.deferred_flush_bios.push(b);
                } else {
                    self.deferred_bios.push(b);
                }
                self.worker_kicked = true;
            }
        } else {
            for b in hd.overwrite.into_iter().chain(hd.deferred) {
                self.end_bio(b, true)?;
            }
        }
        self.hydrations_in_flight = self.hydrations_in_flight.saturating_sub(1);
        Ok(())
    }

    /// `complete_overwrite_bio`: a FUA overwrite completes only after the commit
    /// that records its region (the `fua-overwrite-early-ack` variant acks it at
    /// once, as dm-thin did before 4ae280b4ee34).
    pub(super) fn complete_overwrite_bio(&mut self, b: usize) -> Result<(), ModelError> {
        if !self.bios[&b].fua || self.variant == Variant::FuaOverwriteEarlyAck {
            return self.end_bio(b, false);
        }
        if self.mode != Mode::Write {
            return self.end_bio(b, true);
        }
        self.deferred_flush_completions.push(b);
        self.worker_kicked = true;
        Ok(())
    }

    /// `bio_endio` + `clone_endio`; the user I/O completes with its last bio.
    pub(super) fn end_bio(&mut self, b: usize, error: bool) -> Result<(), ModelError> {
        self.ios_in_flight = self.ios_in_flight.saturating_sub(1);
        let bio = self
            .bios
            .remove(&b)
            .ok_or_else(|| ModelError::internal(format!("bio {b} completed twice")))?;
        let user = &mut self.users[bio.user];
        user.pending -= 1;
        user.error |= error;
        if bio.kind == BioKind::Flush && !user.held.is_empty() {
            // dm core resubmits the data of a PREFLUSH write after the flush.
            let held = std::mem::take(&mut user.held);
            for h in held {
                self.map(h)?;
            }
            return Ok(());
        }
        if user.pending == 0 {
            user.done = true;
            if !user.error {
                self.oracle.complete(bio.user);
            }
        }
        Ok(())
    }
}
