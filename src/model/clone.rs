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

use std::collections::{BTreeMap, HashMap};

use crate::model::clone_meta::CloneMeta;
use crate::model::{ModelError, WriteReq};
use crate::sim::{new_clock, Clock, DataVal, Io, IoKind, MetaDev, MetaImage, Origin, SimDisk};
use crate::trace::{CloneMsg, CrashMode, Init, Variant, WaitFor};

/// Device numbers used in stamps.
pub const SOURCE: u8 = 0;
/// The destination device.
pub const DEST: u8 = 1;

/// `COMMIT_PERIOD` in microseconds.
const COMMIT_PERIOD: u64 = 1_000_000;

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
        let rs = self.region_size;
        if !rs.is_power_of_two() || !(8..=(1 << 21)).contains(&rs) {
            return Err(ModelError::Trace(format!(
                "region size {rs} is not a power of two between 8 and 2097152 sectors"
            )));
        }
        if self.size == 0 {
            return Err(ModelError::Trace("size must be at least 1 sector".into()));
        }
        if self.size.div_ceil(rs) > 1 << 31 {
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

/// A user I/O: one trace statement, split into bios.
#[derive(Debug, Clone)]
struct UserIo {
    name: String,
    is_async: bool,
    /// Bios not yet completed.
    pending: usize,
    /// Data bios held back until the leading flush of a PREFLUSH write completes.
    held: Vec<usize>,
    done: bool,
    error: bool,
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
    owners: HashMap<u64, Owner>,
    /// Bios not yet completed, by number.
    bios: HashMap<usize, Bio>,
    next_bio: usize,
    users: Vec<UserIo>,
    by_name: HashMap<String, usize>,
    deferred_bios: Vec<usize>,
    deferred_discards: Vec<usize>,
    deferred_flush_bios: Vec<usize>,
    deferred_flush_completions: Vec<usize>,
    worker_kicked: bool,
    /// An explicit commit (`commit.pre` …) is in progress.
    explicit_commit: bool,
    /// `commit.flush-dest` done in the explicit commit.
    explicit_dest_flushed: bool,
    commits: u64,
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
        cfg.validate()?;
        let clock = new_clock();
        let meta_dev = MetaDev::new(cfg.meta_blocks, cfg.meta_writethrough, clock.clone());
        let dest = SimDisk::new(cfg.size, cfg.dest_writethrough, clock.clone());
        let source = SimDisk::new(cfg.size, true, clock.clone());
        let nr_regions = cfg.size.div_ceil(cfg.region_size);
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
            owners: HashMap::new(),
            bios: HashMap::new(),
            next_bio: 0,
            users: Vec::new(),
            by_name: HashMap::new(),
            deferred_bios: Vec::new(),
            deferred_discards: Vec::new(),
            deferred_flush_bios: Vec::new(),
            deferred_flush_completions: Vec::new(),
            worker_kicked: false,
            explicit_commit: false,
            explicit_dest_flushed: false,
            commits: 0,
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
        let u = self.users.len();
        let name = name.unwrap_or_else(|| format!("io{}", u + 1));
        if self.by_name.contains_key(&name) {
            return Err(ModelError::Trace(format!("id `{name}` is used twice")));
        }
        self.by_name.insert(name.clone(), u);
        self.users.push(UserIo {
            name,
            is_async,
            pending: 0,
            held: Vec::new(),
            done: false,
            error: false,
        });
        Ok(u)
    }

    /// The name of user I/O number `n` (stamps name their writer by number).
    pub fn user_name(&self, n: u32) -> Option<&str> {
        self.users.get(n as usize).map(|u| u.name.as_str())
    }

    fn new_bio(&mut self, b: Bio) -> usize {
        self.users[b.user].pending += 1;
        let n = self.next_bio;
        self.next_bio += 1;
        self.bios.insert(n, b);
        n
    }

    fn check_range(&self, start: u64, end: u64) -> Result<(), ModelError> {
        if start >= end || end > self.cfg.size {
            return Err(ModelError::Trace(format!(
                "sectors {start}..{end} are not inside the target (0..{})",
                self.cfg.size
            )));
        }
        Ok(())
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
        let u = self.new_user(name, is_async)?;
        let origin = data.unwrap_or(Origin::User(u as u32));
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
        let u = *self
            .by_name
            .get(name)
            .ok_or_else(|| ModelError::Trace(format!("no I/O with id `{name}`")))?;
        if self.users[u].done {
            return Err(ModelError::NotEnabled(format!(
                "`{name}` has already completed"
            )));
        }
        let mine: Vec<u64> = self
            .owners
            .iter()
            .filter(|(_, o)| matches!(o, Owner::Bio(b) if self.bios[b].user == u))
            .map(|(&s, _)| s)
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

    /// True when the user I/O `name` completed.
    pub fn is_done(&self, name: &str) -> Option<bool> {
        self.by_name.get(name).map(|&u| self.users[u].done)
    }

    // ---- clone_map and the paths it takes ------------------------------------

    /// `clone_map`.
    fn map(&mut self, b: usize) -> Result<(), ModelError> {
        self.ios_in_flight += 1;
        let bio = self.bios[&b].clone();
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
    fn triggers_commit(&self, b: usize) -> bool {
        let bio = &self.bios[&b];
        (bio.kind == BioKind::Flush || bio.fua) && self.meta.as_ref().is_some_and(|m| m.changed())
    }

    /// `remap_and_issue` / `issue_bio`.
    fn remap_and_issue(&mut self, b: usize) -> Result<(), ModelError> {
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
    fn submit_dest(&mut self, b: usize) -> Result<(), ModelError> {
        let bio = self.bios[&b].clone();
        let io = match bio.kind {
            BioKind::Flush => Io {
                kind: IoKind::Flush,
                start: 0,
                end: 0,
                val: None,
                fua: false,
            },
            BioKind::Discard => Io {
                kind: IoKind::Discard,
                start: bio.start,
                end: bio.end,
                val: Some(bio.data),
                fua: false,
            },
            BioKind::Write => Io {
                kind: IoKind::Write,
                start: bio.start,
                end: bio.end,
                val: Some(bio.data),
                fua: bio.fua,
            },
        };
        let s = self.dest.issue(io)?;
        self.owners.insert(s, Owner::Bio(b));
        Ok(())
    }

    /// `process_discard_bio`.
    fn process_discard_bio(&mut self, b: usize) -> Result<(), ModelError> {
        let (rs, nr) = self.bio_region_range(b);
        if nr == 0 {
            return self.end_bio(b, false);
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
    fn bio_region_range(&self, b: usize) -> (u64, u64) {
        let bio = &self.bios[&b];
        let rs = bio.start.div_ceil(self.cfg.region_size);
        let end = bio.end >> self.region_shift;
        if self.variant == Variant::PartialDiscardWrap {
            return (rs, end.wrapping_sub(rs));
        }
        (rs, end.saturating_sub(rs))
    }

    /// `complete_discard_bio`: passed down trimmed to whole regions.
    fn complete_discard_bio(&mut self, b: usize, success: bool) -> Result<(), ModelError> {
        if self.cfg.discard_passdown && success {
            let (rs, nr) = self.bio_region_range(b);
            let start = rs << self.region_shift;
            let len = nr.wrapping_shl(self.region_shift);
            let end = start.wrapping_add(len).min(self.cfg.size);
            let bio = self.bios.get_mut(&b).expect("bio in flight");
            bio.start = start;
            bio.end = end.max(start);
            bio.data.sector = start;
            return self.submit_dest(b);
        }
        self.end_bio(b, false)
    }

    /// `hydrate_bio_region`.
    fn hydrate_bio_region(&mut self, b: usize) -> Result<(), ModelError> {
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
    fn hydration_copy(
        &mut self,
        head: u64,
        nr: u64,
        manual: bool,
        due: Option<u64>,
    ) -> Result<(), ModelError> {
        let start = head << self.region_shift;
        let end = ((head + nr) << self.region_shift).min(self.cfg.size);
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
        self.owners.insert(s, Owner::Copy(j));
        Ok(())
    }

    /// A destination I/O completed.
    fn complete_dest(&mut self, seq: u64) -> Result<(), ModelError> {
        self.dest.complete(seq)?;
        match self.owners.remove(&seq) {
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
    fn kcopyd_callback(&mut self, j: usize) -> Result<(), ModelError> {
        let job = self
            .copies
            .remove(&j)
            .ok_or_else(|| ModelError::internal(format!("copy {j} completed twice")))?;
        for r in job.head..job.head + job.nr {
            self.hydration_complete(r)?;
        }
        if self.hydration_enabled && self.ios_in_flight == 0 {
            self.worker_kicked = true;
        }
        Ok(())
    }

    /// `hydration_complete`.
    fn hydration_complete(&mut self, region: u64) -> Result<(), ModelError> {
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
    fn complete_overwrite_bio(&mut self, b: usize) -> Result<(), ModelError> {
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
    fn end_bio(&mut self, b: usize, error: bool) -> Result<(), ModelError> {
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
        }
        Ok(())
    }

    // ---- the worker ----------------------------------------------------------

    /// `do_worker`: deferred bios, deferred discards, deferred flush bios (the
    /// commit), then background hydration.
    fn do_worker(&mut self) -> Result<(), ModelError> {
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
    fn process_deferred_discards(&mut self) -> Result<(), ModelError> {
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

    fn commit_due(&self) -> bool {
        // need_commit_due_to_time (REPLAY.md: ≥ 1000 ms since the last commit).
        self.now >= self.last_commit + COMMIT_PERIOD
    }

    /// `process_deferred_flush_bios`.
    fn process_deferred_flush_bios(&mut self) -> Result<(), ModelError> {
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
    fn metadata_failed(&mut self, e: crate::pdata::tm::TmError) -> Result<(), ModelError> {
        match e {
            crate::pdata::tm::TmError::Sm(_) => {
                self.mode = Mode::ReadOnly;
                Ok(())
            }
            e => Err(ModelError::Meta(e)),
        }
    }

    /// `commit_metadata`: returns whether the destination was flushed.
    fn commit_metadata(&mut self) -> Result<bool, ModelError> {
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
    fn flush_dest(&mut self) -> Result<(), ModelError> {
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
    fn do_hydration(&mut self) -> Result<(), ModelError> {
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
    fn start_next_hydration(
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
    fn batch_hydration(
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

    // ---- settling and virtual time -----------------------------------------

    /// Runs everything the kernel would do without further input: completes the
    /// device I/O that is not held (async user I/O, explicit or background
    /// copies), and runs the worker while it has work.
    fn settle(&mut self) -> Result<(), ModelError> {
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
                .map(|(&s, _)| s)
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
        let to = to_ms.saturating_mul(1000);
        if to < self.now {
            return Err(ModelError::Trace(format!(
                "time goes back from {} to {to_ms} ms",
                self.now / 1000
            )));
        }
        self.advance_us(to)
    }

    fn advance_us(&mut self, to: u64) -> Result<(), ModelError> {
        loop {
            let copy_due = self
                .copies
                .values()
                .filter(|c| !c.manual)
                .filter_map(|c| c.due)
                .min();
            let waker = self.next_waker;
            let next = [copy_due, waker].into_iter().flatten().min();
            match next {
                Some(t) if t <= to => {
                    self.now = self.now.max(t);
                    if waker == Some(t) {
                        // do_waker: wake the worker, requeue.
                        self.worker_kicked = true;
                        self.next_waker = Some(t + COMMIT_PERIOD);
                    }
                    self.settle()?;
                }
                _ => break,
            }
        }
        self.now = to;
        self.settle()
    }

    // ---- messages, status, suspend/resume ----------------------------------

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
        // Everything in flight completes (suspend waits for it).
        for u in &mut self.users {
            u.is_async = false;
        }
        for c in self.copies.values_mut() {
            c.manual = false;
            c.due = None;
        }
        self.settle()?;
        self.next_waker = None;
        self.hydration_suspended = true;
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
        match mode {
            CrashMode::Durable | CrashMode::Enumerate => {
                self.meta_dev.lock().crash_durable();
                self.dest.crash_durable();
            }
            CrashMode::AllLanded => {
                self.meta_dev.lock().crash_all_landed();
                self.dest.crash_all_landed();
            }
            CrashMode::State(id) => {
                return Err(ModelError::Trace(format!(
                    "crash mode=state:{id}: crash-state ids are not supported by this model"
                )))
            }
        }
        self.reset_in_core();
        self.life = Life::Crashed;
        Ok(())
    }

    fn reset_in_core(&mut self) {
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
        self.worker_kicked = false;
        self.explicit_commit = false;
        self.explicit_dest_flushed = false;
        self.next_waker = None;
        for u in &mut self.users {
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

    // ---- explicit commit phases --------------------------------------------

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

    /// `commit.super`; then the deferred FUA completions and PREFLUSH bios go on.
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
        let completions = std::mem::take(&mut self.deferred_flush_completions);
        for b in completions {
            self.end_bio(b, false)?;
        }
        let bios = std::mem::take(&mut self.deferred_flush_bios);
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
            .map(|(&s, _)| s)
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

    /// True when region `r` is hydrated in core.
    pub fn is_hydrated_in_core(&self, r: u64) -> Option<bool> {
        self.meta.as_ref().map(|m| m.is_region_hydrated(r))
    }

    /// The clock shared by the devices.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }
}
