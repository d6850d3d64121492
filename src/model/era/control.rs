//! Messages and the target's life (checkpoint, snapshots, status, suspend,
//! resume, reload, remove, a power cut, recovery) and the explicit worker
//! phases of traces (`worker`, `worker.mark`, `commit.meta`, `commit.super`,
//! `worker.commit`, `worker.submit`, `digest.step`).

use super::*;

impl EraModel {
    /// `checkpoint`.
    pub fn checkpoint(&mut self) -> Result<(), ModelError> {
        self.running()?;
        self.rpc(Rpc::Rollover)
    }

    /// `take_metadata_snap`.
    pub fn snap_take(&mut self) -> Result<(), ModelError> {
        self.running()?;
        self.rpc(Rpc::TakeSnap)
    }

    /// `drop_metadata_snap`.
    pub fn snap_drop(&mut self) -> Result<(), ModelError> {
        self.running()?;
        self.rpc(Rpc::DropSnap)
    }

    /// `era_status`: an rpc like any other, so it commits; returns the line.
    pub fn status(&mut self) -> Result<String, ModelError> {
        if self.life == Life::Running {
            self.rpc(Rpc::Stats)?;
        }
        let total = self.cfg.meta_blocks;
        let md = self.md()?;
        let snap = match md.metadata_snap {
            0 => "-".to_string(),
            s => s.to_string(),
        };
        Ok(format!(
            "8 {}/{} {} {snap}",
            md.used_blocks(),
            total,
            md.current_era
        ))
    }

    /// `dmsetup suspend`: in-flight I/O completes, then `era_postsuspend`
    /// (archive in the worker, stop the worker, commit; the
    /// `commit-before-worker-stop` variant skips the last commit, as before
    /// 9ae6e8b1c9bb).
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
        if self.marking.is_some() {
            return Err(ModelError::NotEnabled(
                "suspend during an explicit worker iteration".into(),
            ));
        }
        for u in self.users.iter_mut() {
            u.is_async = false;
        }
        if self.cfg.manual_worker && !self.deferred.is_empty() {
            self.do_work(&[])?;
            self.mark()?;
            self.commit_marked()?;
            self.submit_marked()?;
        }
        self.settle()?;
        self.do_work(&[Rpc::Archive])?;
        // stop_worker: flush_workqueue runs a queued iteration to its end.
        self.worker_stopped = true;
        if self.worker_kicked {
            self.worker_kicked = false;
            self.md()?.kick_off_digest();
            self.md()?.digest_step()?;
        }
        if self.variant != Variant::CommitBeforeWorkerStop {
            self.metadata_commit()?;
        }
        self.settle()?;
        self.life = Life::Suspended;
        Ok(())
    }

    /// `dmsetup resume`: `era_preresume` (resize to the target's blocks with a
    /// commit when the size changed, start the worker, roll over).
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
        let new_size = self.cfg.size.div_ceil(self.cfg.block_size);
        if self.nr_blocks != new_size {
            self.md()?.resize(new_size)?;
            self.metadata_commit()?;
            self.nr_blocks = new_size;
        }
        self.worker_stopped = false;
        self.life = Life::Running;
        self.rpc(Rpc::Rollover)
    }

    /// `dmsetup remove`.
    pub fn remove(&mut self) -> Result<(), ModelError> {
        self.suspend()?;
        self.md = None;
        self.life = Life::Removed;
        Ok(())
    }

    /// A power cut.
    pub fn crash(&mut self, mode: &CrashMode) -> Result<(), ModelError> {
        if let CrashMode::State(id) = mode {
            return Err(ModelError::Trace(format!(
                "crash mode=state:{id}: the replay rebuilds crash states, the model does not"
            )));
        }
        crate::sim::power_cut(
            &self.meta_dev,
            &mut self.origin,
            *mode == CrashMode::AllLanded,
        );
        self.oracle.crash();
        self.md = None;
        self.owners.clear();
        self.bios.clear();
        self.deferred.clear();
        self.marking = None;
        self.worker_kicked = false;
        for u in self.users.iter_mut() {
            u.done = true;
        }
        self.life = Life::Crashed;
        Ok(())
    }

    /// `reload`: `dmsetup reload` + `resume` (`do_resume`): the new table's
    /// `era_ctr` opens the metadata while the old table is suspended, the new
    /// one's `era_preresume` runs, and only then is the old table destroyed
    /// (`dm_table_destroy` → `era_dtr` → `metadata_close`), its block manager
    /// writing back the blocks it still holds dirty. After the fixed postsuspend
    /// it holds none; with `commit-before-worker-stop` it holds what the worker
    /// changed after the commit (EB4).
    pub fn reload(&mut self) -> Result<(), ModelError> {
        if self.life == Life::Running {
            self.suspend()?;
        }
        if self.life != Life::Suspended {
            return Err(ModelError::NotEnabled(
                "reload of a target that is not loaded".into(),
            ));
        }
        let old = self.md.take();
        self.construct()?;
        self.resume()?;
        if let Some(old) = old {
            old.destroy()?;
        }
        Ok(())
    }

    /// Reloads the table on the devices as they are: open, then preresume.
    pub fn recover(&mut self) -> Result<(), ModelError> {
        if !matches!(self.life, Life::Crashed | Life::Removed) {
            return Err(ModelError::NotEnabled(
                "recover of a target that is loaded".into(),
            ));
        }
        self.construct()?;
        self.resume()
    }

    /// `worker`: one full iteration.
    pub fn worker(&mut self) -> Result<(), ModelError> {
        self.running()?;
        if self.marking.is_some() {
            return Err(ModelError::NotEnabled(
                "worker while marked bios wait for worker.submit".into(),
            ));
        }
        self.md()?.kick_off_digest();
        self.md()?.digest_step()?;
        self.mark()?;
        self.commit_marked()?;
        self.submit_marked()?;
        self.settle()
    }

    /// `worker.mark`.
    pub fn worker_mark(&mut self) -> Result<(), ModelError> {
        self.running()?;
        self.mark()
    }

    /// `commit.meta`.
    pub fn commit_meta(&mut self) -> Result<(), ModelError> {
        self.running()?;
        if self.md()?.meta_written() {
            return Err(ModelError::NotEnabled("commit.meta twice".into()));
        }
        self.md()?.commit_meta()
    }

    /// `commit.super`.
    pub fn commit_super(&mut self) -> Result<(), ModelError> {
        self.running()?;
        self.md()?.commit_super()?;
        self.commits += 1;
        if let Some(m) = self.marking.as_mut() {
            m.committed = true;
        }
        Ok(())
    }

    /// `worker.commit`.
    pub fn worker_commit(&mut self) -> Result<(), ModelError> {
        self.commit_meta()?;
        self.commit_super()
    }

    /// `worker.submit`.
    pub fn worker_submit(&mut self) -> Result<(), ModelError> {
        self.running()?;
        if self.marking.is_none() {
            return Err(ModelError::NotEnabled(
                "worker.submit without worker.mark".into(),
            ));
        }
        self.submit_marked()?;
        self.settle()
    }

    /// `digest.step [n=]`.
    pub fn digest_step(&mut self, n: u64) -> Result<(), ModelError> {
        self.running()?;
        let md = self.md()?;
        md.kick_off_digest();
        for _ in 0..n.max(1) {
            md.digest_step()?;
        }
        Ok(())
    }

    /// Every write and discard sent to the origin so far: the era blocks it
    /// modified (every block the bio overlaps, whatever the variant marks) and
    /// the era the user had observed when it was mapped (for E2).
    pub fn submitted(&self) -> &[Modified] {
        &self.submitted
    }

    /// The variant.
    pub fn variant(&self) -> Variant {
        self.variant
    }

    /// The configuration.
    pub fn config(&self) -> &EraConfig {
        &self.cfg
    }

    /// The origin's content at sector `s` now.
    pub fn read_sector(&self, s: u64) -> DataVal {
        self.origin.read(s).unwrap_or(DataVal {
            origin: match self.cfg.origin_init {
                Init::Stamp => Origin::Init(ORIGIN),
                Init::Zero => Origin::Zero,
            },
            sector: s,
        })
    }
}
