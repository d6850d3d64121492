//! The dm-clone target (`dm-clone-target.c`): bio mapping, hydration (user
//! triggered and background, with threshold and batch), the worker, every commit
//! trigger and the two-phase commit, over simulated metadata, destination and
//! source devices.
//!
//! Virtual time: the trace's clock in milliseconds. The waker runs every
//! `COMMIT_PERIOD` (1000 ms) from resume; a background hydration copy completes
//! `copy_us` microseconds after it was issued (default 100, `x-copy_us=` in
//! `config`), so background hydration proceeds at `threshold` regions per copy
//! latency. Internally time is kept in microseconds.
//! Everything else a statement starts (user writes, their copies, commits)
//! completes within the statement, unless the statement is `async` or the copy
//! was started by an explicit `hydrate.start`.

mod control;
mod map;
mod worker;

use std::collections::BTreeMap;

use crate::model::clone_meta::CloneMeta;
use crate::model::numbered::Numbered;
use crate::model::oracle::Oracle;
use crate::model::user::{check_range, UserIos};
use crate::model::{ModelError, WriteReq};
use crate::sim::{
    new_clock, Clock, DataVal, InFlight, Io, IoKind, MetaDev, MetaImage, Origin, SimDisk,
};
use crate::trace::{CloneMsg, CrashMode, Init, Variant, WaitFor};

/// Device numbers used in stamps.
pub const SOURCE: u8 = 0;
/// The destination device.
pub const DEST: u8 = 1;

/// `COMMIT_PERIOD` in microseconds.
const COMMIT_PERIOD: u64 = 1_000_000;
/// The most region pieces one user write may split into (see `write`).
pub const MAX_WRITE_PIECES: u64 = 1 << 22;

/// The table line and the simulated devices.
#[derive(Debug, Clone)]
pub struct CloneConfig {
    /// Target length in sectors.
    pub size: u64,
    /// Region size in sectors.
    pub region_size: u64,
    /// Metadata device size in 4 KiB blocks.
    pub meta_blocks: u64,
    /// Background hydration enabled (no `no_hydration`).
    pub hydration: bool,
    /// `hydration_threshold`.
    pub threshold: u64,
    /// `hydration_batch_size`.
    pub batch: u64,
    /// `discard_passdown` (no `no_discard_passdown`).
    pub discard_passdown: bool,
    /// Initial content of the destination.
    pub dest_init: Init,
    /// Initial content of the source.
    pub source_init: Init,
    /// A discard reads back zeroes.
    pub discard_zeroes: bool,
    /// Metadata device without a volatile cache.
    pub meta_writethrough: bool,
    /// Destination without a volatile cache.
    pub dest_writethrough: bool,
    /// Latency of a background copy in virtual microseconds.
    pub copy_us: u64,
}

impl CloneConfig {
    /// Validates what the constructor checks (`parse_region_size`,
    /// `validate_nr_regions`).
    pub fn validate(&self) -> Result<(), ModelError> {
        self.validate_as(Variant::Fixed)
    }

    /// The region count `clone_ctr` computes: `dm_sector_div_up(ti->len,
    /// region_size)`, which the `nr-regions-32bit` variant stores in a 32-bit
    /// `unsigned long` without the overflow check cd481c12269b added, so it is
    /// truncated and the later 2^31 check passes on the truncated value.
    pub fn nr_regions(&self, variant: Variant) -> u64 {
        let n = self.size.div_ceil(self.region_size);
        if variant == Variant::NrRegions32bit {
            return n as u32 as u64;
        }
        n
    }

    /// [`CloneConfig::validate`] as the kernel of `variant` does it.
    pub fn validate_as(&self, variant: Variant) -> Result<(), ModelError> {
        let rs = self.region_size;
        if !rs.is_power_of_two() || !(8..=(1 << 21)).contains(&rs) {
            return Err(ModelError::Trace(format!(
                "region size {rs} is not a power of two between 8 and 2097152 sectors"
            )));
        }
        if self.size == 0 {
            return Err(ModelError::Trace("size must be at least 1 sector".into()));
        }
        if self.nr_regions(variant) > 1 << 31 {
            return Err(ModelError::Trace(
                "too many regions; consider increasing the region size".into(),
            ));
        }
        if self.copy_us == 0 {
            return Err(ModelError::Trace("x-copy_us must be at least 1".into()));
        }
        Ok(())
    }
}

/// Clone metadata mode (`enum clone_metadata_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `CM_WRITE`.
    Write,
    /// `CM_READ_ONLY` (after a failed metadata operation).
    ReadOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BioKind {
    Write,
    Discard,
    Flush,
}

/// One bio as the target sees it (after dm core's splitting).
#[derive(Debug, Clone)]
struct Bio {
    user: usize,
    kind: BioKind,
    start: u64,
    end: u64,
    fua: bool,
    data: DataVal,
}

/// `struct dm_clone_region_hydration`.
#[derive(Debug, Clone, Default)]
struct Hydration {
    overwrite: Option<usize>,
    deferred: Vec<usize>,
}

/// A kcopyd job: the copy of `nr` regions from `head`.
#[derive(Debug, Clone)]
struct CopyJob {
    head: u64,
    nr: u64,
    /// Completes only on `hydrate.done`.
    manual: bool,
    /// Virtual time at which a background copy completes.
    due: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
enum Owner {
    Bio(usize),
    Copy(usize),
}

/// Lifecycle of the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Life {
    /// Loaded and resumed.
    Running,
    /// Suspended (postsuspend done).
    Suspended,
    /// Removed with `dmsetup remove`.
    Removed,
    /// Power lost; the devices hold the crash state.
    Crashed,
}

/// The dm-clone model.
pub struct CloneModel {
    cfg: CloneConfig,
    variant: Variant,
    clock: Clock,
    meta_dev: MetaDev,
    /// `None` while crashed or removed.
    meta: Option<CloneMeta>,
    /// Destination device.
    pub dest: SimDisk<DataVal>,
    /// Source device.
    pub source: SimDisk<DataVal>,
    nr_regions: u64,
    region_shift: u32,
    mode: Mode,
    life: Life,
    now: u64,
    last_commit: u64,
    next_waker: Option<u64>,
    hydration_enabled: bool,
    hydration_suspended: bool,
    threshold: u64,
    batch: u64,
    hydration_offset: u64,
    hydrations: BTreeMap<u64, Hydration>,
    hydrations_in_flight: u64,
    ios_in_flight: u64,
    copies: BTreeMap<usize, CopyJob>,
    next_copy: usize,
    owners: InFlight<Owner>,
    /// Bios not yet completed, by number.
    bios: Numbered<Bio>,
    users: UserIos,
    deferred_bios: Vec<usize>,
    deferred_discards: Vec<usize>,
    deferred_flush_bios: Vec<usize>,
    deferred_flush_completions: Vec<usize>,
    worker_kicked: bool,
    /// An explicit commit (`commit.pre` …) is in progress.
    explicit_commit: bool,
    /// `commit.flush-dest` done in the explicit commit.
    explicit_dest_flushed: bool,
    /// The deferred PREFLUSH bios and FUA completions the explicit commit's
    /// worker took when it started (`process_deferred_flush_bios` takes the
    /// lists before `commit_metadata`): those deferred later wait for the
    /// next commit.
    explicit_taken: (Vec<usize>, Vec<usize>),
    commits: u64,
    /// The user I/O, for the ideal-disk oracle.
    pub oracle: Oracle,
}

impl std::fmt::Debug for CloneModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloneModel")
            .field("life", &self.life)
            .field("now", &self.now)
            .field("commits", &self.commits)
            .finish()
    }
}

fn init_val(init: Init, dev: u8) -> Origin {
    match init {
        Init::Stamp => Origin::Init(dev),
        Init::Zero => Origin::Zero,
    }
}

impl CloneModel {
    /// `clone_ctr` on a zeroed metadata device, then the first resume, at virtual
    /// time `now`.
    pub fn new(cfg: CloneConfig, variant: Variant, now_ms: u64) -> Result<Self, ModelError> {
        let now = now_ms.saturating_mul(1000);
        cfg.validate_as(variant)?;
        let clock = new_clock();
        let meta_dev = MetaDev::new(cfg.meta_blocks, cfg.meta_writethrough, clock.clone());
        let dest = SimDisk::new(cfg.size, cfg.dest_writethrough, clock.clone());
        let source = SimDisk::new(cfg.size, true, clock.clone());
        let nr_regions = cfg.nr_regions(variant);
        let mut m = CloneModel {
            variant,
            clock,
            meta_dev,
            meta: None,
            dest,
            source,
            nr_regions,
            region_shift: cfg.region_size.trailing_zeros(),
            mode: Mode::Write,
            life: Life::Suspended,
            now,
            last_commit: now,
            next_waker: None,
            hydration_enabled: cfg.hydration,
            hydration_suspended: true,
            threshold: cfg.threshold,
            batch: cfg.batch,
            hydration_offset: 0,
            hydrations: BTreeMap::new(),
            hydrations_in_flight: 0,
            ios_in_flight: 0,
            copies: BTreeMap::new(),
            next_copy: 0,
            owners: InFlight::default(),
            bios: Numbered::default(),
            users: UserIos::default(),
            deferred_bios: Vec::new(),
            deferred_discards: Vec::new(),
            deferred_flush_bios: Vec::new(),
            deferred_flush_completions: Vec::new(),
            worker_kicked: false,
            explicit_commit: false,
            explicit_dest_flushed: false,
            explicit_taken: (Vec::new(), Vec::new()),
            commits: 0,
            oracle: Oracle::default(),
            cfg,
        };
        m.construct()?;
        m.resume()?;
        Ok(m)
    }

    /// The constructor's metadata open (`dm_clone_metadata_open`).
    fn construct(&mut self) -> Result<(), ModelError> {
        let meta = CloneMeta::open(
            self.meta_dev.clone(),
            self.cfg.region_size,
            self.cfg.size,
            self.variant,
        )?;
        self.meta = Some(meta);
        self.mode = Mode::Write;
        self.last_commit = self.now;
        self.hydration_offset = 0;
        self.life = Life::Suspended;
        self.hydration_suspended = true;
        Ok(())
    }

    fn meta(&self) -> Result<&CloneMeta, ModelError> {
        self.meta
            .as_ref()
            .ok_or_else(|| ModelError::NotEnabled("the target is not loaded".into()))
    }

    fn meta_mut(&mut self) -> Result<&mut CloneMeta, ModelError> {
        self.meta
            .as_mut()
            .ok_or_else(|| ModelError::NotEnabled("the target is not loaded".into()))
    }

    fn running(&self) -> Result<(), ModelError> {
        match self.life {
            Life::Running => Ok(()),
            l => Err(ModelError::NotEnabled(format!(
                "I/O to a target that is {}",
                match l {
                    Life::Suspended => "suspended",
                    Life::Removed => "removed",
                    _ => "down after a power cut (recover first)",
                }
            ))),
        }
    }

    /// Virtual time now, in ms.
    pub fn now(&self) -> u64 {
        self.now / 1000
    }

    /// The lifecycle state.
    pub fn life(&self) -> Life {
        self.life
    }

    /// Metadata commits so far.
    pub fn commits(&self) -> u64 {
        self.commits
    }

    /// Number of regions.
    pub fn nr_regions(&self) -> u64 {
        self.nr_regions
    }

    /// The metadata device.
    pub fn meta_dev(&self) -> &MetaDev {
        &self.meta_dev
    }

    /// What survives a power cut now on the metadata device.
    pub fn meta_image(&self) -> MetaImage {
        self.meta_dev.durable_image()
    }

    /// Regions hydrated in core (`dm_clone_is_region_hydrated`), or `None` when the
    /// target is not loaded.
    pub fn in_core_hydrated(&self) -> Option<Vec<(u64, u64)>> {
        let m = self.meta.as_ref()?;
        if m.hydration_done() {
            return Some(vec![(0, self.nr_regions)]);
        }
        Some(m.region_map().runs())
    }

    /// Number of regions hydrated in core.
    pub fn nr_hydrated(&self) -> u64 {
        self.meta.as_ref().map_or(0, |m| {
            if m.hydration_done() {
                self.nr_regions
            } else {
                m.region_map().count()
            }
        })
    }

    fn new_user(&mut self, name: Option<String>, is_async: bool) -> Result<usize, ModelError> {
        self.users.add(name, is_async)
    }

    /// The name of user I/O number `n` (stamps name their writer by number).
    pub fn user_name(&self, n: u32) -> Option<&str> {
        self.users.name(n)
    }

    fn new_bio(&mut self, b: Bio) -> usize {
        self.users[b.user].pending += 1;
        self.bios.push(b)
    }

    fn check_range(&self, start: u64, end: u64) -> Result<(), ModelError> {
        check_range(start, end, self.cfg.size)
    }

    /// A user write of `start..end` (dm core splits it at region boundaries,
    /// `max_io_len`; a PREFLUSH is sent as an empty flush first).
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
        // All of a write's region pieces are in flight at once; their number
        // is what the simulation's memory grows with (some 330 bytes each).
        let nr_pieces = ((end - 1) >> self.region_shift) - (start >> self.region_shift) + 1;
        if nr_pieces > MAX_WRITE_PIECES {
            return Err(ModelError::Trace(format!(
                "the write covers {nr_pieces} regions, one bio each; the model simulates at most {MAX_WRITE_PIECES} in one write: split it in the trace"
            )));
        }
        let u = self.new_user(name, is_async)?;
        let origin = data.unwrap_or(Origin::User(u as u32));
        if preflush {
            self.oracle.flush(u);
        }
        self.oracle.write(u, start, end, origin, fua);
        let mut s = start;
        let mut pieces = Vec::new();
        while s < end {
            let e = ((s >> self.region_shift) + 1)
                .checked_shl(self.region_shift)
                .unwrap_or(u64::MAX)
                .min(end);
            pieces.push(self.new_bio(Bio {
                user: u,
                kind: BioKind::Write,
                start: s,
                end: e,
                fua,
                data: DataVal { origin, sector: s },
            }));
            s = e;
        }
        if preflush {
            self.users[u].held = pieces;
            let f = self.new_bio(Bio {
                user: u,
                kind: BioKind::Flush,
                start: 0,
                end: 0,
                fua: false,
                data: DataVal { origin, sector: 0 },
            });
            self.map(f)?;
        } else {
            for b in pieces {
                self.map(b)?;
            }
        }
        self.settle()
    }

    /// A user discard (one bio: dm core does not split discards by
    /// `max_io_len`).
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
        self.oracle.discard(u, start, end);
        let b = self.new_bio(Bio {
            user: u,
            kind: BioKind::Discard,
            start,
            end,
            fua: false,
            data: DataVal {
                origin: self.discarded(),
                sector: start,
            },
        });
        self.map(b)?;
        self.settle()
    }

    fn discarded(&self) -> Origin {
        if self.cfg.discard_zeroes {
            Origin::Zero
        } else {
            Origin::Discarded
        }
    }

    /// An empty PREFLUSH to the target.
    pub fn flush(&mut self, name: Option<String>, is_async: bool) -> Result<(), ModelError> {
        self.running()?;
        let u = self.new_user(name, is_async)?;
        self.oracle.flush(u);
        let b = self.new_bio(Bio {
            user: u,
            kind: BioKind::Flush,
            start: 0,
            end: 0,
            fua: false,
            data: DataVal {
                origin: Origin::Zero,
                sector: 0,
            },
        });
        self.map(b)?;
        self.settle()
    }

    /// Completes the device I/O of an `async` user I/O.
    pub fn complete(&mut self, name: &str) -> Result<(), ModelError> {
        let u = self.users.find(name)?;
        if self.users[u].done {
            return Err(ModelError::NotEnabled(format!(
                "`{name}` has already completed"
            )));
        }
        let mine: Vec<u64> = self
            .owners
            .iter()
            .filter(|(_, o)| matches!(o, Owner::Bio(b) if self.bios[b].user == u))
            .map(|(s, _)| s)
            .collect();
        if mine.is_empty() {
            return Err(ModelError::NotEnabled(format!(
                "`{name}` has no I/O on a device to complete (it waits for a hydration or a commit)"
            )));
        }
        let mut mine = mine;
        mine.sort_unstable();
        for s in mine {
            self.complete_dest(s)?;
        }
        self.users[u].is_async = false;
        self.settle()
    }

    /// The number of the newest user I/O.
    pub fn last_user(&self) -> Option<usize> {
        self.users.last()
    }

    /// Whether user I/O `u` completed, and with an error.
    pub fn user_outcome(&self, u: usize) -> Option<(bool, bool)> {
        self.users.outcome(u)
    }

    /// True when the user I/O `name` completed.
    pub fn is_done(&self, name: &str) -> Option<bool> {
        self.users.is_done(name)
    }
}
