//! The dm-era target (`dm-era-target.c`): `era_map`'s deferral of writes to
//! blocks not marked in core, the worker (`do_work`: digest kick-off, one digest
//! step, deferred bios — mark on disk, commit, then set in-core bits and submit —
//! and the rpc calls), checkpoints, metadata snapshots, preresume and postsuspend,
//! over a simulated metadata device and origin.
//!
//! The worker runs whenever it is woken, within the statement that woke it, as
//! the kernel's runs as soon as it is queued. A trace that drives the worker
//! itself (`worker`, `worker.mark`, `worker.commit`, `worker.submit`,
//! `digest.step`, `commit.meta`, `commit.super`) switches the model to manual
//! mode: deferred bios and digest steps then wait for those statements (rpc
//! calls, which the kernel runs in the worker too, still run at once).

mod control;
mod worker;

use crate::model::era_meta::EraMeta;
use crate::model::numbered::Numbered;
use crate::model::oracle::Oracle;
use crate::model::user::{check_range, UserIos};
use crate::model::{ModelError, WriteReq};
use crate::pdata::tm::IntMap;
use crate::sim::{new_clock, Clock, DataVal, Io, IoKind, MetaDev, MetaImage, Origin, SimDisk};
use crate::trace::{CrashMode, Init, Variant};

/// Device number of the origin in stamps.
pub const ORIGIN: u8 = 0;

/// Largest bio a synchronous user write reaches the target with: 1 MiB, the
/// `BIO_MAX_VECS` (256) pages of 4 KiB an O_DIRECT write packs into one bio
/// (`bio_iov_iter_get_pages`). The kernel lab's writer (`dmce-io write`)
/// issues its writes as O_DIRECT `pwrite`s of at most that size, each after
/// the previous one completed. (era-millions: the 4096-sector write's bitset
/// shadows show two 256-block bios, each split into its first block, then the
/// rest — see `map_pieces`.)
pub const USER_BIO_SECTORS: u64 = 2048;

/// The era blocks a write or a discard sent to the origin modified (for E2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Modified {
    /// The first era block.
    pub first: u64,
    /// One past the last era block.
    pub end: u64,
    /// The era the user had observed when the bio was mapped.
    pub era: u32,
    /// A discard (else a write).
    pub discard: bool,
}

/// The table line and the simulated devices.
#[derive(Debug, Clone)]
pub struct EraConfig {
    /// Target length in sectors.
    pub size: u64,
    /// Era block size in sectors.
    pub block_size: u64,
    /// Metadata device size in 4 KiB blocks.
    pub meta_blocks: u64,
    /// The era of a freshly formatted target after its first resume (1 as the
    /// kernel does).
    pub start_era: u32,
    /// Initial content of the origin.
    pub origin_init: Init,
    /// A discard reads back zeroes.
    pub discard_zeroes: bool,
    /// Metadata device without a volatile cache.
    pub meta_writethrough: bool,
    /// Origin without a volatile cache.
    pub origin_writethrough: bool,
    /// Drive the worker only through explicit statements.
    pub manual_worker: bool,
}

impl EraConfig {
    /// What `era_ctr` checks.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.block_size == 0
            || !self.block_size.is_multiple_of(8)
            || self.block_size > u32::MAX as u64
        {
            return Err(ModelError::Trace(format!(
                "era block size {} is not a positive multiple of 8 sectors",
                self.block_size
            )));
        }
        if self.size == 0 {
            return Err(ModelError::Trace("size must be at least 1 sector".into()));
        }
        if self.size.div_ceil(self.block_size) >= 1 << 31 {
            return Err(ModelError::Trace("too many era blocks".into()));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BioKind {
    Write,
    Discard,
    Flush,
}

#[derive(Debug, Clone)]
struct Bio {
    user: usize,
    kind: BioKind,
    start: u64,
    end: u64,
    fua: bool,
    data: DataVal,
    /// The era the user had observed when the bio was mapped.
    era_at_map: u32,
}

/// An explicit worker iteration between `worker.mark` and `worker.submit`.
#[derive(Debug, Clone)]
struct Marking {
    bios: Vec<usize>,
    commit_needed: bool,
    committed: bool,
}

/// Lifecycle of the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Life {
    /// Loaded and resumed.
    Running,
    /// Suspended.
    Suspended,
    /// Removed.
    Removed,
    /// Power lost.
    Crashed,
}

/// An rpc call (`in_worker0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rpc {
    Rollover,
    Archive,
    TakeSnap,
    DropSnap,
    Stats,
}

/// The dm-era model.
pub struct EraModel {
    cfg: EraConfig,
    variant: Variant,
    clock: Clock,
    meta_dev: MetaDev,
    md: Option<EraMeta>,
    /// The origin device.
    pub origin: SimDisk<DataVal>,
    /// `era->nr_blocks` (0 after the constructor).
    nr_blocks: u64,
    life: Life,
    worker_stopped: bool,
    now: u64,
    /// Bios not yet completed, by number.
    bios: Numbered<Bio>,
    users: UserIos,
    owners: IntMap<u64, usize>,
    deferred: Vec<usize>,
    worker_kicked: bool,
    /// An explicit worker iteration between `worker.mark` and `worker.submit`:
    /// the marked bios and whether a commit is needed.
    marking: Option<Marking>,
    commits: u64,
    /// The user I/O, for the ideal-disk oracle.
    pub oracle: Oracle,
    /// Writes and discards sent to the origin: the era blocks they modified
    /// (first, one past the last) and the era seen when mapped.
    submitted: Vec<Modified>,
}

impl std::fmt::Debug for EraModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EraModel")
            .field("life", &self.life)
            .field("now", &self.now)
            .finish()
    }
}

impl EraModel {
    /// `era_ctr` on a zeroed metadata device, then the first resume.
    pub fn new(cfg: EraConfig, variant: Variant, now: u64) -> Result<Self, ModelError> {
        cfg.validate()?;
        let clock = new_clock();
        let meta_dev = MetaDev::new(cfg.meta_blocks, cfg.meta_writethrough, clock.clone());
        let origin = SimDisk::new(cfg.size, cfg.origin_writethrough, clock.clone());
        let mut m = EraModel {
            variant,
            clock,
            meta_dev,
            md: None,
            origin,
            nr_blocks: 0,
            life: Life::Suspended,
            worker_stopped: true,
            now,
            bios: Numbered::default(),
            users: UserIos::default(),
            owners: IntMap::default(),
            deferred: Vec::new(),
            worker_kicked: false,
            marking: None,
            commits: 0,
            oracle: Oracle::default(),
            submitted: Vec::new(),
            cfg,
        };
        m.construct()?;
        m.resume()?;
        Ok(m)
    }

    fn construct(&mut self) -> Result<(), ModelError> {
        let md = EraMeta::open(
            self.meta_dev.clone(),
            self.cfg.block_size as u32,
            self.cfg.start_era.wrapping_sub(1),
            self.variant,
        )?;
        self.md = Some(md);
        self.nr_blocks = 0;
        self.life = Life::Suspended;
        self.worker_stopped = true;
        Ok(())
    }

    fn md(&mut self) -> Result<&mut EraMeta, ModelError> {
        self.md
            .as_mut()
            .ok_or_else(|| ModelError::NotEnabled("the target is not loaded".into()))
    }

    fn running(&self) -> Result<(), ModelError> {
        if self.life == Life::Running {
            Ok(())
        } else {
            Err(ModelError::NotEnabled(format!(
                "I/O to a target that is {:?} (resume or recover first)",
                self.life
            )))
        }
    }

    /// The lifecycle state.
    pub fn life(&self) -> Life {
        self.life
    }

    /// Metadata commits so far.
    pub fn commits(&self) -> u64 {
        self.commits
    }

    /// The metadata device.
    pub fn meta_dev(&self) -> &MetaDev {
        &self.meta_dev
    }

    /// What survives a power cut now on the metadata device.
    pub fn meta_image(&self) -> MetaImage {
        self.meta_dev.durable_image()
    }

    /// The current era, while loaded.
    pub fn current_era(&self) -> Option<u32> {
        self.md.as_ref().map(|m| m.current_era)
    }

    /// Era block size in sectors.
    pub fn block_size(&self) -> u64 {
        self.cfg.block_size
    }

    /// Virtual time.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// The name of user I/O number `n`.
    pub fn user_name(&self, n: u32) -> Option<&str> {
        self.users.name(n)
    }

    /// The clock shared by the devices.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Advances virtual time (dm-era has no timers).
    pub fn advance(&mut self, to: u64) -> Result<(), ModelError> {
        if to < self.now {
            return Err(ModelError::Trace(format!(
                "time goes back from {} to {to} ms",
                self.now
            )));
        }
        self.now = to;
        Ok(())
    }

    fn new_user(&mut self, name: Option<String>, is_async: bool) -> Result<usize, ModelError> {
        self.users.add(name, is_async)
    }

    fn new_bio(
        &mut self,
        user: usize,
        kind: BioKind,
        start: u64,
        end: u64,
        fua: bool,
        origin: Origin,
    ) -> usize {
        self.users[user].pending += 1;
        let era_at_map = self.md.as_ref().map_or(0, |m| m.current_era);
        self.bios.push(Bio {
            user,
            kind,
            start,
            end,
            fua,
            data: DataVal {
                origin,
                sector: start,
            },
            era_at_map,
        })
    }

    fn check_range(&self, start: u64, end: u64) -> Result<(), ModelError> {
        check_range(start, end, self.cfg.size)
    }

    /// A user write (split at era-block boundaries, `max_io_len`).
    pub fn write(&mut self, w: WriteReq) -> Result<(), ModelError> {
        let WriteReq {
            start,
            end,
            fua,
            preflush,
            data,
            id: name,
            is_async,
        } = w;
        self.running()?;
        self.check_range(start, end)?;
        let u = self.new_user(name, is_async)?;
        let origin = data.unwrap_or(Origin::User(u as u32));
        if preflush {
            self.oracle.flush(u);
        }
        self.oracle.write(u, start, end, origin, fua);
        let bs = self.cfg.block_size;
        // The user write reaches the target as bios of at most
        // USER_BIO_SECTORS, one after the other; each is split at era-block
        // boundaries.
        let mut chunks = Vec::new();
        let mut c = start;
        while c < end {
            let ce = (c + USER_BIO_SECTORS).min(end);
            let mut pieces = Vec::new();
            let mut s = c;
            while s < ce {
                let e = ((s / bs + 1) * bs).min(ce);
                pieces.push(self.new_bio(u, BioKind::Write, s, e, fua, origin));
                s = e;
            }
            chunks.push(pieces);
            c = ce;
        }
        if preflush {
            self.users[u].held = chunks.into_iter().flatten().collect();
            let f = self.new_bio(u, BioKind::Flush, 0, 0, false, origin);
            self.map(f)?;
        } else {
            for pieces in chunks {
                self.map_pieces(pieces)?;
                self.settle()?;
            }
        }
        self.settle()
    }

    /// dm core maps the pieces of a bio one after the other in the submitter
    /// (`dm_split_and_process_bio` → `era_map`). The first piece `era_map`
    /// defers wakes the worker (`defer_bio` → `wake_worker`), which preempts the
    /// submitter at the next piece's allocation (`alloc_tio` →
    /// `bio_alloc_clone(GFP_NOIO)` → `mempool_alloc` → `might_sleep`) and runs
    /// one `do_work` iteration with that piece alone; while that iteration
    /// waits for its `metadata_commit`'s I/O the submitter maps the remaining
    /// pieces, and the next iteration (`process_deferred_bios`) takes all of
    /// them. (Kernel images: era-eras' bitset shadows hold bit 8, then bits
    /// 9-11 of a 4-block write together; bit 15, then 16-17.)
    fn map_pieces(&mut self, pieces: Vec<usize>) -> Result<(), ModelError> {
        let mut ran = false;
        for b in pieces {
            self.map(b)?;
            if !ran
                && self.worker_kicked
                && !self.worker_stopped
                && !self.cfg.manual_worker
                && self.marking.is_none()
            {
                self.do_work(&[])?;
                ran = true;
            }
        }
        Ok(())
    }

    /// A user discard: one bio, not split at era-block boundaries (dm core
    /// splits discards only at target boundaries), so it may span many era
    /// blocks (HAZARDS H-E7).
    pub fn discard(
        &mut self,
        start: u64,
        end: u64,
        name: Option<String>,
        is_async: bool,
    ) -> Result<(), ModelError> {
        self.running()?;
        self.check_range(start, end)?;
        let u = self.new_user(name, is_async)?;
        let o = if self.cfg.discard_zeroes {
            Origin::Zero
        } else {
            Origin::Discarded
        };
        self.oracle.discard(u, start, end);
        let b = self.new_bio(u, BioKind::Discard, start, end, false, o);
        self.map(b)?;
        self.settle()
    }

    /// An empty PREFLUSH.
    pub fn flush(&mut self, name: Option<String>, is_async: bool) -> Result<(), ModelError> {
        self.running()?;
        let u = self.new_user(name, is_async)?;
        self.oracle.flush(u);
        let b = self.new_bio(u, BioKind::Flush, 0, 0, false, Origin::Zero);
        self.map(b)?;
        self.settle()
    }

    /// Completes the origin I/O of an `async` user I/O.
    pub fn complete(&mut self, name: &str) -> Result<(), ModelError> {
        let u = self.users.find(name)?;
        if self.users[u].done {
            return Err(ModelError::NotEnabled(format!(
                "`{name}` has already completed"
            )));
        }
        let mut mine: Vec<u64> = self
            .owners
            .iter()
            .filter(|(_, &b)| self.bios[&b].user == u)
            .map(|(&s, _)| s)
            .collect();
        if mine.is_empty() {
            return Err(ModelError::NotEnabled(format!(
                "`{name}` has no I/O on the origin to complete (it is deferred until its block is marked)"
            )));
        }
        mine.sort_unstable();
        for s in mine {
            self.complete_origin(s)?;
        }
        self.users[u].is_async = false;
        self.settle()
    }

    /// True when the user I/O `name` completed.
    pub fn is_done(&self, name: &str) -> Option<bool> {
        self.users.is_done(name)
    }

    /// The era blocks a data bio modifies: `[first, end)`.
    fn modified(&self, bio: &Bio) -> (u64, u64) {
        let bs = self.cfg.block_size;
        let first = bio.start / bs;
        (
            first,
            bio.end.max(bio.start + 1).div_ceil(bs).max(first + 1),
        )
    }

    /// The era blocks `era_map` and the worker mark for a data bio: `[first,
    /// end)`.
    ///
    /// Fixed: every block the bio modifies (HAZARDS H-E7). The kernel marks
    /// `get_block(era, bio)`, the bio's first block, only: right for writes,
    /// which `max_io_len` splits at era-block boundaries, wrong for a discard,
    /// which dm core does not split there, so the content of its other blocks
    /// changes without being recorded. Upstream has no fix (observed on
    /// 6.1.192). The `discard-first-block-only` variant marks the first block
    /// alone, as `era_map` and `process_deferred_bios` do.
    fn marked_blocks(&self, bio: &Bio) -> (u64, u64) {
        let (first, end) = self.modified(bio);
        if self.variant == Variant::DiscardFirstBlockOnly {
            (first, first + 1)
        } else {
            (first, end)
        }
    }

    /// `era_map`.
    fn map(&mut self, b: usize) -> Result<(), ModelError> {
        let bio = self.bios[&b].clone();
        // REQ_PREFLUSH bios carry no data; writes (discards included) with a
        // block to mark that is not marked in core wait for the worker.
        if bio.kind != BioKind::Flush {
            let (first, end) = self.marked_blocks(&bio);
            let md = self.md()?;
            if (first..end).any(|blk| !md.current_marked(blk)) {
                self.deferred.push(b);
                self.worker_kicked = true;
                return Ok(());
            }
        }
        self.submit(b)
    }

    fn submit(&mut self, b: usize) -> Result<(), ModelError> {
        let bio = self.bios[&b].clone();
        if bio.kind != BioKind::Flush {
            let (first, end) = self.modified(&bio);
            self.submitted.push(Modified {
                first,
                end,
                era: bio.era_at_map,
                discard: bio.kind == BioKind::Discard,
            });
        }
        let kind = match bio.kind {
            BioKind::Flush => IoKind::Flush,
            BioKind::Discard => IoKind::Discard,
            BioKind::Write => IoKind::Write,
        };
        let io = Io::new(kind, bio.start, bio.end, bio.data, bio.fua);
        let s = self.origin.issue(io)?;
        self.owners.insert(s, b);
        Ok(())
    }

    fn complete_origin(&mut self, seq: u64) -> Result<(), ModelError> {
        self.origin.complete(seq)?;
        if let Some(b) = self.owners.remove(&seq) {
            self.end_bio(b)?;
        }
        Ok(())
    }

    fn end_bio(&mut self, b: usize) -> Result<(), ModelError> {
        let bio = self
            .bios
            .remove(&b)
            .ok_or_else(|| ModelError::internal(format!("bio {b} completed twice")))?;
        let u = bio.user;
        self.users[u].pending -= 1;
        if bio.kind == BioKind::Flush && !self.users[u].held.is_empty() {
            let held = std::mem::take(&mut self.users[u].held);
            for h in held {
                self.map(h)?;
            }
            return Ok(());
        }
        if self.users[u].pending == 0 {
            self.users[u].done = true;
            self.oracle.complete(u);
        }
        Ok(())
    }
}
