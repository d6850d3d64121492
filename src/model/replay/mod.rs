//! Runs a `dmtrace` against a model: the first statement configures the
//! target, `@ms` prefixes advance virtual time, every other statement is a
//! kernel event, and `expect` lines are checked against the live model or, after
//! a crash, against the crash state.

use crate::era::invalidate::{invalidate, InvalidateOptions};
mod crash;
pub mod emit;
mod expect;
mod io;

use expect::*;
use io::*;

use crate::era::superblock as esb;
use crate::io::BlockDevice;
use crate::model::clone::{CloneConfig, CloneModel, Life as CloneLife};
use crate::model::era::{EraConfig, EraModel, Life as EraLife};
use crate::model::{ModelError, WriteReq};
use crate::sim::{DataVal, ExtentMap, MetaImage, Origin};
use crate::trace::{
    CacheMode, Config, CrashMode, Data, Event, Init, Loc, Predicate, Ranges, Stmt, Target, Trace,
    Value,
};

/// Default metadata device size: 8 MiB.
const DEFAULT_META_SECTORS: u64 = 16384;

/// The result of one `expect`.
#[derive(Debug, Clone)]
pub struct ExpectResult {
    /// Line of the trace.
    pub line: usize,
    /// The predicate as written.
    pub what: String,
    /// Which state it was checked on (`live`, `crash:durable`, …).
    pub state: String,
    /// Whether it holds.
    pub ok: bool,
    /// What was found.
    pub found: String,
}

/// What a replay produced.
#[derive(Debug)]
pub struct ReplayOutcome {
    /// Every expectation checked, in order.
    pub expects: Vec<ExpectResult>,
    /// `status` lines: trace line and the status text.
    pub statuses: Vec<(usize, String)>,
    /// The metadata image the trace leaves (what is durable at its end).
    pub image: MetaImage,
    /// Statements run.
    pub events: u64,
    /// Metadata commits.
    pub commits: u64,
    /// dm-clone: the regions hydrated in core just before the last crash.
    pub in_core_at_crash: Option<Vec<(u64, u64)>>,
    /// Invariants that failed in a crash state.
    pub violations: Vec<crate::verify::Violation>,
    /// The crash-state exploration.
    pub crash: CrashStats,
    /// With [`ReplayOptions::keep_commits`]: the durable image once formatted,
    /// then after every statement that committed, with the statement's line.
    pub commit_images: Vec<(usize, MetaImage)>,
    /// With [`ReplayOptions::emit_logs`]: the dm-log-writes logs of the
    /// devices and the initial image of the source (dm-clone) or origin
    /// (dm-era), by file name.
    pub logs: Vec<(String, emit::Emitted)>,
}

/// How a replay explores crash states.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplayOptions {
    /// Tiers, samples and seed of the crash-state enumeration at `crash` lines.
    pub crash: crate::crash::Options,
    /// Also a crash point after every statement (not only at `crash` lines),
    /// and the metadata crash points at every flush inside a statement.
    pub every_statement: bool,
    /// Everything `every_statement` explores, and a metadata crash point after
    /// every event on the metadata device inside a statement (each write's
    /// issue and completion, each flush's issue and completion):
    /// `--crash-points all`.
    pub every_event: bool,
    /// Keep the durable metadata image after formatting and after every
    /// statement that committed ([`ReplayOutcome::commit_images`]).
    pub keep_commits: bool,
    /// Record what dm-log-writes devices under the target's devices would log
    /// ([`ReplayOutcome::logs`]).
    pub emit_logs: bool,
}

impl ReplayOptions {
    /// True when crash points are explored after every statement (with
    /// [`every_statement`](Self::every_statement) or
    /// [`every_event`](Self::every_event)).
    pub fn statement_points(&self) -> bool {
        self.every_statement || self.every_event
    }
}

/// Figures of the crash-state exploration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CrashStats {
    /// Crash points enumerated.
    pub points: u64,
    /// Candidate states (before deduplication).
    pub states: u64,
    /// Distinct metadata views checked.
    pub views: u64,
    /// Sectors left unchecked for lack of budget.
    pub skipped_sectors: u64,
}

/// A statement the model could not run (a malformed or impossible trace).
#[derive(Debug)]
pub struct ReplayError {
    /// Line of the trace.
    pub line: usize,
    /// Why.
    pub error: ModelError,
}

impl std::fmt::Display for ReplayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.line, self.error)
    }
}

impl std::error::Error for ReplayError {}

enum Model {
    Clone(Box<CloneModel>),
    Era(Box<EraModel>),
}

/// A crash state kept for the expectations that follow a crash.
struct CrashView {
    name: String,
    meta: MetaImage,
    /// dm-clone: the destination's content in this state, for `expect read`.
    dest: Option<ExtentMap<DataVal>>,
}

/// Replays `trace` with the default crash-state options.
pub fn replay(trace: &Trace) -> Result<ReplayOutcome, ReplayError> {
    replay_with(trace, ReplayOptions::default())
}

/// Where a replay has got to, reported after every statement.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Statements run (of [`Progress::statements`]).
    pub done: usize,
    /// Statements in the trace.
    pub statements: usize,
    /// The line of the statement just run.
    pub line: usize,
    /// The crash-state exploration so far.
    pub crash: CrashStats,
    /// Violations found so far.
    pub violations: usize,
}

/// Replays `trace`.
pub fn replay_with(trace: &Trace, opts: ReplayOptions) -> Result<ReplayOutcome, ReplayError> {
    replay_observed(trace, opts, &mut |_| {})
}

/// Replays `trace`, calling `observe` after every statement (and the crash
/// points explored after it).
pub fn replay_observed(
    trace: &Trace,
    opts: ReplayOptions,
    observe: &mut dyn FnMut(&Progress),
) -> Result<ReplayOutcome, ReplayError> {
    let mut r = Runner {
        target: trace.header.target,
        variant: trace.header.variant.unwrap_or_default(),
        model: None,
        views: Vec::new(),
        out: ReplayOutcome {
            expects: Vec::new(),
            statuses: Vec::new(),
            image: MetaImage::new(0, Default::default()),
            events: 0,
            commits: 0,
            in_core_at_crash: None,
            violations: Vec::new(),
            crash: CrashStats::default(),
            commit_images: Vec::new(),
            logs: Vec::new(),
        },
        opts,
        monotone: crate::verify::Monotone::default(),
        top: None,
        point_line: None,
        flushes: Vec::new(),
        manual_worker: trace.stmts.iter().any(|s| {
            matches!(
                s.event,
                Event::WorkerMark
                    | Event::WorkerCommit
                    | Event::WorkerSubmit
                    | Event::DigestStep { .. }
                    | Event::Worker
            ) || (trace.header.target == Target::Era
                && matches!(s.event, Event::CommitMeta | Event::CommitSuper))
        }),
    };
    let mut commits = None;
    for (done, s) in trace.stmts.iter().enumerate() {
        // I7: what a user flush finds in core when it is issued, it makes
        // durable by the time it completes.
        let flushing = match (&s.event, r.model.as_ref()) {
            (Event::Flush { .. }, Some(Model::Clone(m)))
                if r.opts.statement_points() && m.life() == CloneLife::Running =>
            {
                m.in_core_hydrated()
            }
            _ => None,
        };
        // A `@t` that moves the clock runs the target on: the state is no
        // longer that of the point after the last statement.
        if s.time.is_some_and(|t| r.model.is_some() && t > r.now()) {
            r.point_line = None;
        }
        r.step(s).map_err(|error| ReplayError {
            line: s.line,
            error,
        })?;
        r.out.events += 1;
        match s.event {
            Event::Expect(_) | Event::Mark { .. } => {}
            Event::Crash { .. } => r.point_line = None,
            _ => r.point_line = Some(s.line),
        }
        if let Some(Model::Clone(m)) = r.model.as_ref() {
            if let (Some(in_core), Some(user)) = (flushing, m.last_user()) {
                r.flushes.push(PendingFlush {
                    user,
                    in_core,
                    line: s.line,
                });
            }
            r.flushes.retain(|f| {
                match m.user_outcome(f.user) {
                    // Completed: I7 on the durable metadata now.
                    Some((true, false)) => {
                        if let Some(v) =
                            crate::verify::clone_flushed(&m.meta_image(), &f.in_core, f.line)
                        {
                            r.out.violations.push(v);
                        }
                        false
                    }
                    // Failed, or lost with a power cut: nothing was promised.
                    Some((true, true)) | None => false,
                    Some((false, _)) => m.life() != CloneLife::Crashed,
                }
            });
        }
        if r.opts.emit_logs && matches!(s.event, Event::Config(_)) {
            r.start_logs();
        }
        if r.opts.keep_commits {
            let now = match r.model.as_ref() {
                Some(Model::Clone(m)) => Some((m.commits(), m.meta_image())),
                Some(Model::Era(m)) => Some((m.commits(), m.meta_image())),
                None => None,
            };
            if let Some((n, img)) = now {
                if commits != Some(n) {
                    commits = Some(n);
                    r.out.commit_images.push((s.line, img));
                }
            }
        }
        if r.opts.statement_points() && !matches!(s.event, Event::Crash { .. } | Event::Expect(_)) {
            r.explore_point(s.line);
            if let (Event::Suspend, Some(Model::Clone(m))) = (&s.event, r.model.as_ref()) {
                if let Some(v) = crate::verify::clone_suspended(m, &m.meta_image(), s.line) {
                    r.out.violations.push(v);
                }
            }
        }
        observe(&Progress {
            done: done + 1,
            statements: trace.stmts.len(),
            line: s.line,
            crash: r.out.crash,
            violations: r.out.violations.len(),
        });
    }
    let model = r.model.ok_or(ReplayError {
        line: 0,
        error: ModelError::Trace("the trace has no config statement".into()),
    })?;
    let (image, commits) = match &model {
        Model::Clone(m) => (m.meta_image(), m.commits()),
        Model::Era(m) => (m.meta_image(), m.commits()),
    };
    r.out.image = image;
    r.out.commits = commits;
    if r.opts.emit_logs {
        let removed = trace
            .stmts
            .iter()
            .rev()
            .find(|s| !matches!(s.event, Event::Expect(_) | Event::Mark { .. }))
            .is_some_and(|s| matches!(s.event, Event::Remove));
        let mut model = model;
        let top = r.top.take().unwrap_or_default();
        r.out.logs = match &mut model {
            Model::Clone(m) => emit::clone_logs(m, top, removed),
            Model::Era(m) => emit::era_logs(m, top, removed),
        }
        .map_err(|e| ReplayError {
            line: 0,
            error: ModelError::Trace(format!("writing the logs: {e}")),
        })?;
    }
    Ok(r.out)
}

struct Runner {
    target: Target,
    variant: crate::trace::Variant,
    model: Option<Model>,
    views: Vec<CrashView>,
    out: ReplayOutcome,
    opts: ReplayOptions,
    manual_worker: bool,
    /// What the last durable view held (I4, E3, E4).
    monotone: crate::verify::Monotone,
    /// With `emit_logs`: what a log-writes device on top of the target logs.
    top: Option<crate::sim::LogRec<DataVal>>,
    /// The line of the statement whose crash point (`--crash-points
    /// statements`) is the state the devices are in now: the last statement
    /// run, when only expectations and marks have followed it. A `crash
    /// mode=state:` line rebuilds the states of that point as well as its own.
    point_line: Option<usize>,
    /// I7: the user flushes issued and not yet completed.
    flushes: Vec<PendingFlush>,
}

/// A user flush not yet completed, for I7.
struct PendingFlush {
    /// The user I/O.
    user: usize,
    /// The regions hydrated in core when it was issued.
    in_core: Vec<(u64, u64)>,
    /// Its line.
    line: usize,
}

fn extra_u64(c: &Config, key: &str) -> Result<Option<u64>, ModelError> {
    match c.extra.iter().find(|(k, _)| k == key) {
        None => Ok(None),
        Some((_, Value::Num(n))) => Ok(Some(*n)),
        Some((_, v)) => Err(ModelError::Trace(format!(
            "{key} must be a number, not {v:?}"
        ))),
    }
}

fn sectors_to_blocks(meta_size: Option<u64>) -> Result<u64, ModelError> {
    let s = meta_size.unwrap_or(DEFAULT_META_SECTORS);
    if s < 8 * 16 {
        return Err(ModelError::Trace(format!(
            "meta_size={s} sectors is too small for metadata (at least 128)"
        )));
    }
    Ok(s / 8)
}

fn writethrough(c: &Config, dev: Option<CacheMode>) -> bool {
    dev.or(c.cache) == Some(CacheMode::Writethrough)
}

impl Runner {
    fn step(&mut self, s: &Stmt) -> Result<(), ModelError> {
        if let Event::Config(c) = &s.event {
            if self.model.is_some() {
                return Err(ModelError::Trace(
                    "config after the target was created".into(),
                ));
            }
            return self.configure(c, s.time.unwrap_or(0));
        }
        if self.model.is_none() {
            return Err(ModelError::Trace(
                "the first statement must be `config`".into(),
            ));
        }
        if let Some(t) = s.time {
            self.advance(t)?;
        }
        match (&s.event, self.target) {
            (Event::Expect(p), _) => {
                self.expect(s.line, p);
                Ok(())
            }
            (Event::Mark { label }, _) => {
                if self.opts.emit_logs {
                    self.mark_logs(label);
                }
                Ok(())
            }
            (Event::Tick { ms }, _) => {
                let now = self.now();
                self.advance(now.saturating_add(ms.unwrap_or(1000)))
            }
            (Event::Crash { mode }, _) => self.crash(s.line, mode),
            (Event::Recover, _) => {
                self.views.clear();
                match self.model.as_mut().expect("checked") {
                    Model::Clone(m) => m.recover(),
                    Model::Era(m) => m.recover(),
                }
            }
            (ev, Target::Clone) => {
                self.implicit_recover(ev)?;
                self.clone_event(s.line, ev)?;
                self.top_record(ev);
                Ok(())
            }
            (ev, Target::Era) => {
                self.implicit_recover(ev)?;
                self.era_event(s.line, ev)?;
                self.top_record(ev);
                Ok(())
            }
        }
    }

    /// `recover` is implicit before the next I/O after a crash.
    fn implicit_recover(&mut self, ev: &Event) -> Result<(), ModelError> {
        let io = matches!(
            ev,
            Event::Write { .. } | Event::Discard { .. } | Event::Flush { .. }
        );
        let crashed = match self.model.as_ref().expect("checked") {
            Model::Clone(m) => m.life() == CloneLife::Crashed,
            Model::Era(m) => m.life() == EraLife::Crashed,
        };
        if io && crashed {
            self.views.clear();
            match self.model.as_mut().expect("checked") {
                Model::Clone(m) => m.recover()?,
                Model::Era(m) => m.recover()?,
            }
        }
        Ok(())
    }

    fn now(&self) -> u64 {
        match self.model.as_ref().expect("checked") {
            Model::Clone(m) => m.now(),
            Model::Era(m) => m.now(),
        }
    }

    fn advance(&mut self, t: u64) -> Result<(), ModelError> {
        match self.model.as_mut().expect("checked") {
            Model::Clone(m) => m.advance(t),
            Model::Era(m) => m.advance(t),
        }
    }

    fn configure(&mut self, c: &Config, now: u64) -> Result<(), ModelError> {
        if c.meta_block.is_some_and(|b| b != 8) {
            return Err(ModelError::Trace(
                "meta_block must be 8 sectors (4 KiB metadata blocks)".into(),
            ));
        }
        let size = c
            .size
            .ok_or_else(|| ModelError::Trace("config needs size=".into()))?;
        let meta_blocks = sectors_to_blocks(c.meta_size)?;
        // The metadata device's atomic write unit (its logical block size).
        self.opts.crash.atomic_unit = c.logical_block.unwrap_or(512) as usize;
        let record = self.opts.statement_points();
        self.model = Some(match self.target {
            Target::Clone => {
                let cfg = CloneConfig {
                    size,
                    region_size: c.region.unwrap_or(8),
                    meta_blocks,
                    hydration: c.hydration.unwrap_or(true),
                    threshold: c.threshold.unwrap_or(1),
                    batch: c.batch.unwrap_or(1),
                    discard_passdown: c.discard_passdown.unwrap_or(true),
                    dest_init: c.dest_init.unwrap_or(Init::Stamp),
                    source_init: c.source_init.unwrap_or(Init::Stamp),
                    discard_zeroes: c.discard_zeroes,
                    meta_writethrough: writethrough(c, c.meta_cache),
                    dest_writethrough: writethrough(c, c.dest_cache),
                    copy_us: extra_u64(c, "x-copy_us")?.unwrap_or(100),
                };
                Model::Clone(Box::new(CloneModel::new(cfg, self.variant, now)?))
            }
            Target::Era => {
                let start_era = c.start_era.unwrap_or(1);
                if start_era == 0 || start_era > u32::MAX as u64 {
                    return Err(ModelError::Trace(format!(
                        "start_era={start_era} is out of range"
                    )));
                }
                let cfg = EraConfig {
                    size,
                    block_size: c
                        .block
                        .ok_or_else(|| ModelError::Trace("config needs block=".into()))?,
                    meta_blocks,
                    start_era: start_era as u32,
                    origin_init: c.source_init.unwrap_or(Init::Stamp),
                    discard_zeroes: c.discard_zeroes,
                    meta_writethrough: writethrough(c, c.meta_cache),
                    origin_writethrough: writethrough(c, c.dest_cache),
                    manual_worker: self.manual_worker,
                };
                Model::Era(Box::new(EraModel::new(cfg, self.variant, now)?))
            }
        });
        if record {
            let dev = match self.model.as_ref().expect("just made") {
                Model::Clone(m) => m.meta_dev(),
                Model::Era(m) => m.meta_dev(),
            };
            dev.record_flush_points(true);
            if self.opts.every_event {
                dev.record_event_points(true);
            }
        }
        Ok(())
    }

    fn clone_event(&mut self, line: usize, ev: &Event) -> Result<(), ModelError> {
        let Some(Model::Clone(m)) = self.model.as_mut() else {
            unreachable!("clone trace")
        };
        match ev {
            Event::Write { .. } | Event::Discard { .. } | Event::Flush { .. } => {
                user_io(m.as_mut(), ev)
            }
            Event::Read { loc, expect } => {
                let (s, e) = clone_sectors(m, loc)?;
                if let Some(want) = expect {
                    let found = clone_read(m, s, e);
                    let ok = &found == want;
                    self.out.expects.push(ExpectResult {
                        line,
                        what: format!("read at={s}+{}", e - s),
                        state: "live".into(),
                        ok,
                        found: found.join(","),
                    });
                }
                Ok(())
            }
            Event::Complete { id } => m.complete(id),
            Event::Worker => m.run_worker(),
            Event::Suspend => m.suspend(),
            Event::Resume => m.resume(),
            Event::Reload => m.reload(),
            Event::Status { noflush } => {
                let st = m.status(*noflush)?;
                self.out.statuses.push((line, st));
                Ok(())
            }
            Event::Remove => m.remove(),
            Event::Msg(msg) => m.message(*msg),
            Event::Wait(w) => m.wait(*w),
            Event::HydrateStart { start, end } => m.hydrate_start(*start, *end),
            Event::HydrateDone { region } => m.hydrate_done(*region),
            Event::Commit => m.commit(),
            Event::CommitPre => m.commit_pre(),
            Event::CommitFlushDest => m.commit_flush_dest(),
            Event::CommitMeta => m.commit_meta(),
            Event::CommitSuper => m.commit_super(),
            other => Err(ModelError::Trace(format!(
                "`{}` is not a dm-clone event",
                verb_of(other)
            ))),
        }
    }

    fn era_event(&mut self, line: usize, ev: &Event) -> Result<(), ModelError> {
        let Some(Model::Era(m)) = self.model.as_mut() else {
            unreachable!("era trace")
        };
        let bs = m.block_size();
        match ev {
            Event::Write { .. } | Event::Discard { .. } | Event::Flush { .. } => {
                user_io(m.as_mut(), ev)
            }
            Event::Read { loc, expect } => {
                let (s, e) = era_sectors(loc, bs)?;
                if let Some(want) = expect {
                    let found: Vec<String> = (s..e)
                        .map(|x| stamp_name(m.read_sector(x), |n| m.user_name(n)))
                        .collect();
                    let ok = &found == want;
                    self.out.expects.push(ExpectResult {
                        line,
                        what: format!("read at={s}+{}", e - s),
                        state: "live".into(),
                        ok,
                        found: found.join(","),
                    });
                }
                Ok(())
            }
            Event::Complete { id } => m.complete(id),
            Event::Worker => m.worker(),
            Event::Suspend => m.suspend(),
            Event::Resume => m.resume(),
            Event::Reload => m.reload(),
            Event::Status { .. } => {
                let st = m.status()?;
                self.out.statuses.push((line, st));
                Ok(())
            }
            Event::Remove => m.remove(),
            Event::Checkpoint => m.checkpoint(),
            Event::SnapTake => m.snap_take(),
            Event::SnapDrop => m.snap_drop(),
            Event::WorkerMark => m.worker_mark(),
            Event::WorkerCommit => m.worker_commit(),
            Event::WorkerSubmit => m.worker_submit(),
            Event::DigestStep { n } => m.digest_step(n.unwrap_or(1)),
            Event::CommitMeta => m.commit_meta(),
            Event::CommitSuper => m.commit_super(),
            other => Err(ModelError::Trace(format!(
                "`{}` is not a dm-era event",
                verb_of(other)
            ))),
        }
    }

    /// Checks `p` on the live model, or on every crash state after a crash.
    fn expect(&mut self, line: usize, p: &Predicate) {
        let what = p.to_string();
        let mut push = |state: &str, r: Result<(bool, String), String>| {
            let (ok, found) = r.unwrap_or_else(|e| (false, e));
            self.out.expects.push(ExpectResult {
                line,
                what: what.clone(),
                state: state.to_string(),
                ok,
                found,
            });
        };
        if !self.views.is_empty() {
            // An expectation after a crash must hold in every crash state.
            let mut first_fail: Option<(String, String)> = None;
            let mut found = String::new();
            for v in &self.views {
                let r = match (p, self.model.as_ref(), &v.dest) {
                    (Predicate::Read { loc, data }, Some(Model::Clone(m)), Some(dest)) => {
                        crash_read(m, &v.meta, dest, loc, data)
                    }
                    _ => check_on_image(self.target, &v.meta, p),
                };
                let (ok, f) = r.unwrap_or_else(|e| (false, e));
                if !ok && first_fail.is_none() {
                    first_fail = Some((v.name.clone(), f));
                } else if found.is_empty() {
                    found = f;
                }
            }
            let n = self.views.len();
            match first_fail {
                Some((state, f)) => push(&state, Ok((false, f))),
                None if n == 1 => push(&self.views[0].name.clone(), Ok((true, found))),
                None => push(&format!("all {n} crash states"), Ok((true, found))),
            }
            return;
        }
        let model = self.model.as_ref().expect("checked");
        let r = match model {
            Model::Clone(m) => match m.life() {
                CloneLife::Running | CloneLife::Suspended => check_clone_live(m, p),
                _ => check_on_image(self.target, &m.meta_image(), p),
            },
            Model::Era(m) => match p {
                Predicate::Era(e) if m.current_era().is_some() => {
                    let cur = m.current_era().expect("loaded") as u64;
                    Ok((cur == *e, format!("era {cur}")))
                }
                _ => check_on_image(self.target, &m.meta_image(), p),
            },
        };
        let loaded = match model {
            Model::Clone(m) => matches!(m.life(), CloneLife::Running | CloneLife::Suspended),
            Model::Era(m) => matches!(m.life(), EraLife::Running | EraLife::Suspended),
        };
        push(if loaded { "live" } else { "image" }, r);
    }
}
