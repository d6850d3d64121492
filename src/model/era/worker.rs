//! The worker (`do_work`): the digest steps, the deferred bios marked, committed
//! and submitted, the rpc calls, and `settle`, which runs it while it is kicked.

use super::*;

impl EraModel {
    /// `do_work`, with the rpc calls `rpcs`.
    pub(super) fn do_work(&mut self, rpcs: &[Rpc]) -> Result<(), ModelError> {
        self.worker_kicked = false;
        // kick_off_digest + process_old_eras
        self.md()?.kick_off_digest();
        self.md()?.digest_step()?;
        if self.md()?.digesting() && !self.cfg.manual_worker {
            self.worker_kicked = true;
        }
        if !self.cfg.manual_worker || !rpcs.is_empty() {
            self.mark()?;
            self.commit_marked()?;
            self.submit_marked()?;
        }
        self.process_rpc_calls(rpcs)
    }

    /// `process_deferred_bios` up to the commit: the on-disk bits.
    pub(super) fn mark(&mut self) -> Result<(), ModelError> {
        if self.marking.is_some() {
            return Err(ModelError::NotEnabled(
                "worker.mark while marked bios wait for worker.submit".into(),
            ));
        }
        let bios = std::mem::take(&mut self.deferred);
        let mut commit_needed = false;
        for &b in &bios {
            let (first, end) = self.marked_blocks(&self.bios[&b]);
            for block in first..end {
                if self.md()?.test_and_set(block)? {
                    commit_needed = true;
                }
            }
        }
        self.marking = Some(Marking {
            bios,
            commit_needed,
            committed: false,
        });
        Ok(())
    }

    /// The commit of `process_deferred_bios`, when one is needed.
    pub(super) fn commit_marked(&mut self) -> Result<(), ModelError> {
        if self.marking.as_ref().is_some_and(|m| m.commit_needed) {
            self.metadata_commit()?;
            if let Some(m) = self.marking.as_mut() {
                m.committed = true;
            }
        }
        Ok(())
    }

    /// The end of `process_deferred_bios`: in-core bits (fixed: only after the
    /// commit), then the bios go to the origin.
    pub(super) fn submit_marked(&mut self) -> Result<(), ModelError> {
        let Some(m) = self.marking.take() else {
            return Ok(());
        };
        if m.commit_needed && !m.committed {
            self.marking = Some(m);
            return Err(ModelError::NotEnabled(
                "worker.submit before the commit of the marked blocks".into(),
            ));
        }
        let commit_needed = m.commit_needed;
        for b in m.bios {
            if commit_needed {
                let (first, end) = self.marked_blocks(&self.bios[&b]);
                for block in first..end {
                    self.md()?.set_incore(block);
                }
            }
            self.submit(b)?;
        }
        Ok(())
    }

    pub(super) fn metadata_commit(&mut self) -> Result<(), ModelError> {
        self.md()?.commit()?;
        self.commits += 1;
        Ok(())
    }

    /// `process_rpc_calls`: every call, then one commit.
    fn process_rpc_calls(&mut self, rpcs: &[Rpc]) -> Result<(), ModelError> {
        if rpcs.is_empty() {
            return Ok(());
        }
        for &r in rpcs {
            let md = self.md()?;
            match r {
                Rpc::Rollover => md.rollover()?,
                Rpc::Archive => md.archive()?,
                Rpc::TakeSnap => {
                    md.take_snap()?;
                    self.commits += 1;
                }
                Rpc::DropSnap => md.drop_snap()?,
                Rpc::Stats => {}
            }
        }
        self.metadata_commit()
    }

    /// `perform_rpc`: the worker runs the call, then whatever it was woken for.
    pub(super) fn rpc(&mut self, r: Rpc) -> Result<(), ModelError> {
        if self.marking.is_some() {
            return Err(ModelError::NotEnabled(
                "a message while an explicit worker iteration is in progress".into(),
            ));
        }
        self.do_work(&[r])?;
        self.settle()
    }

    /// Runs the worker while it is woken (not in manual mode), completes the
    /// origin I/O that is not held.
    pub(super) fn settle(&mut self) -> Result<(), ModelError> {
        for _ in 0..100_000_000u64 {
            let mut ready: Vec<u64> = self
                .owners
                .iter()
                .filter(|(_, &b)| !self.users[self.bios[&b].user].is_async)
                .map(|(&s, _)| s)
                .collect();
            if !ready.is_empty() {
                ready.sort_unstable();
                for s in ready {
                    self.complete_origin(s)?;
                }
                continue;
            }
            if self.worker_kicked
                && !self.worker_stopped
                && !self.cfg.manual_worker
                && self.marking.is_none()
            {
                self.do_work(&[])?;
                continue;
            }
            return Ok(());
        }
        Err(ModelError::internal("the model does not settle".into()))
    }
}
