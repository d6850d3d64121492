//! The `dmtrace` v1 event-trace format (REPLAY.md §2.2): a line-oriented text
//! file that drives the reference models of [`crate::model`].
//!
//! ```text
//! dmtrace 1 clone variant=fixed
//! config size=64 region=8 hydration=off
//! write at=1+1 id=w1     # a comment
//! @1000 tick
//! expect hydrated regions=0
//! ```
//!
//! Parsing has two stages: [`parse`] turns text into generic statements (verb,
//! key/value arguments) with `nom`, then lowers each one into a typed [`Event`],
//! checking per verb and per target which keys are allowed (unknown keys are
//! errors unless prefixed `x-`) and which are required. Errors carry the line and
//! column. [`Trace`]'s `Display` prints a trace back in canonical form, and
//! `parse(&t.to_string()) == t` for every trace.

mod lower;
mod parse;
mod print;

#[cfg(test)]
mod tests;

use std::fmt;

pub use parse::parse;

/// The target a trace drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// dm-clone.
    Clone,
    /// dm-era.
    Era,
}

/// The model variant named by the header's `variant=` (REPLAY.md §2.4): the fixed
/// kernel, or one historical bug re-introduced at the decision point its fix
/// changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Variant {
    /// The kernel as fixed.
    #[default]
    Fixed,
    /// CB1: dm-clone commits metadata without flushing the destination first.
    CommitBeforeDestFlush,
    /// CB2: on a user flush, dm-clone commits, then passes the flush to dest.
    FlushAfterCommit,
    /// CB3: dm-clone commits the live bitmap instead of the committing dirty map.
    LiveBitmapCommit,
    /// CB4: a FUA full-region overwrite completes before its bit is committed.
    FuaOverwriteEarlyAck,
    /// CB5: a discard inside one region wraps the region range.
    PartialDiscardWrap,
    /// CB6: the superblock is written without the preceding metadata flush.
    SbBeforeMetaFlush,
    /// EB1: dm-era sets the in-core bit before the commit.
    IncoreBitBeforeCommit,
    /// EB2: dm-era ignores the committed current writeset on open.
    NoRecoverCurrentWriteset,
    /// EB3: dm-era copies the space-map root before the pre-commit.
    SmRootBeforePrecommit,
    /// EB4: dm-era commits in postsuspend before the worker stops.
    CommitBeforeWorkerStop,
    /// EB5: dm-era digests with a stale bitset cache.
    StaleDigestCache,
    /// H-C4: dm-clone shifts region numbers to sectors in 32 bits (a 32-bit
    /// host before 9fc06ff56845).
    RegionShift32bit,
    /// H-C3: dm-clone computes the region count in a 32-bit `unsigned long`
    /// (a 32-bit host before cd481c12269b).
    NrRegions32bit,
    /// H-PD1: the metadata space map allocates from the committed counts only
    /// (before 4feaef830de7), handing out a block in use in the open transaction.
    AllocIgnoresCurrentCounts,
    /// H-C5: a source that gives back the space of each region copied, before
    /// the commit that records the copy (a design hazard, not an upstream bug).
    ReclaimSourceBeforeCommit,
    /// H-E7: dm-era marks only the first era block of a discard (6.1's
    /// `era_map`; no upstream fix).
    DiscardFirstBlockOnly,
}

impl Variant {
    /// Every variant with its name in traces.
    pub const ALL: &'static [(Variant, &'static str)] = &[
        (Variant::Fixed, "fixed"),
        (Variant::CommitBeforeDestFlush, "commit-before-dest-flush"),
        (Variant::FlushAfterCommit, "flush-after-commit"),
        (Variant::LiveBitmapCommit, "live-bitmap-commit"),
        (Variant::FuaOverwriteEarlyAck, "fua-overwrite-early-ack"),
        (Variant::PartialDiscardWrap, "partial-discard-wrap"),
        (Variant::SbBeforeMetaFlush, "sb-before-meta-flush"),
        (Variant::IncoreBitBeforeCommit, "incore-bit-before-commit"),
        (
            Variant::NoRecoverCurrentWriteset,
            "no-recover-current-writeset",
        ),
        (Variant::SmRootBeforePrecommit, "sm-root-before-precommit"),
        (Variant::CommitBeforeWorkerStop, "commit-before-worker-stop"),
        (Variant::StaleDigestCache, "stale-digest-cache"),
        (Variant::RegionShift32bit, "region-shift-32bit"),
        (Variant::NrRegions32bit, "nr-regions-32bit"),
        (
            Variant::AllocIgnoresCurrentCounts,
            "alloc-ignores-current-counts",
        ),
        (
            Variant::ReclaimSourceBeforeCommit,
            "reclaim-source-before-commit",
        ),
        (Variant::DiscardFirstBlockOnly, "discard-first-block-only"),
    ];

    /// True when the variant changes the model of `target` (`fixed` and the
    /// persistent-data ones apply to both).
    pub fn applies_to(self, target: Target) -> bool {
        use Variant::*;
        match self {
            Fixed | SbBeforeMetaFlush | AllocIgnoresCurrentCounts => true,
            CommitBeforeDestFlush
            | FlushAfterCommit
            | LiveBitmapCommit
            | FuaOverwriteEarlyAck
            | PartialDiscardWrap
            | RegionShift32bit
            | NrRegions32bit
            | ReclaimSourceBeforeCommit => target == Target::Clone,
            IncoreBitBeforeCommit
            | NoRecoverCurrentWriteset
            | SmRootBeforePrecommit
            | CommitBeforeWorkerStop
            | StaleDigestCache
            | DiscardFirstBlockOnly => target == Target::Era,
        }
    }

    /// The names of the variants of `target`.
    pub fn names_for(target: Target) -> Vec<&'static str> {
        Self::ALL
            .iter()
            .filter(|(v, _)| v.applies_to(target))
            .map(|(_, n)| *n)
            .collect()
    }

    /// The variant called `name` in traces.
    pub fn from_name(name: &str) -> Option<Variant> {
        Self::ALL.iter().find(|(_, n)| *n == name).map(|(v, _)| *v)
    }

    /// Its name in traces.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(v, _)| *v == self)
            .map(|(_, n)| *n)
            .expect("every variant is listed")
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the header says the trace must end with (`expect=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `ok`: no invariant may fire.
    Ok,
    /// `violation:<ID>`: the named invariant (I1..I7, E1..E4, G1..G4) must fire.
    Violation(String),
    /// `refused`: the kernel must refuse the trace: its table, or an operation
    /// it has no metadata space for (an extension of REPLAY.md §2.2, for the
    /// fixed twin of a bug whose fix is a refusal).
    Refused,
}

/// The header line: `dmtrace 1 <clone|era> [key=value ...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The target.
    pub target: Target,
    /// `variant=`; absent means [`Variant::Fixed`].
    pub variant: Option<Variant>,
    /// `expect=`.
    pub expect: Option<Outcome>,
    /// `seed=` for the random tiers.
    pub seed: Option<u64>,
    /// `kernel=`, informational.
    pub kernel: Option<String>,
    /// Keys prefixed `x-`, kept in order.
    pub extra: Vec<(String, Value)>,
}

/// A parsed trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// The header.
    pub header: Header,
    /// The statements in file order (blank and comment-only lines dropped).
    pub stmts: Vec<Stmt>,
}

/// One statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stmt {
    /// 1-based line number in the source (0 for statements built in code).
    pub line: usize,
    /// The `@<ms>` prefix: the virtual time at which the statement happens.
    pub time: Option<u64>,
    /// What happens.
    pub event: Event,
}

/// A generic argument value (REPLAY.md §2.2 `value`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A number (decimal with `_`, or `0x` hex).
    Num(u64),
    /// `a..b` (half-open) or `a+n`, stored as start and end (end ≥ start).
    Range(u64, u64),
    /// Two or more comma-separated items.
    List(Vec<Value>),
    /// Anything else: `on`, `src`, `byte:0x5a`, `state:abc`.
    Word(String),
}

/// A set of regions, era blocks or sectors: numbers and half-open ranges.
/// `none` in a trace is the empty set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ranges(pub Vec<(u64, u64)>);

impl Ranges {
    /// True when `x` is in one of the ranges.
    pub fn contains(&self, x: u64) -> bool {
        self.0.iter().any(|&(a, b)| a <= x && x < b)
    }

    /// Every member, in the order written.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.0.iter().flat_map(|&(a, b)| a..b)
    }
}

/// Where a user I/O goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loc {
    /// `at=a+n` / `at=a..b`: 512-byte sectors of the virtual device,
    /// `start..end`.
    Sectors(u64, u64),
    /// `region=r` or `region=r..r2` (clone): whole regions.
    Regions(u64, u64),
    /// `block=b` or `block=b..b2` (era): whole era blocks.
    Blocks(u64, u64),
}

/// The payload of a user write (`data=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Data {
    /// `stamp` (the default): every sector gets the write's own stamp.
    Stamp,
    /// `zero`.
    Zero,
    /// `byte:0xNN`.
    Byte(u8),
}

/// Initial content of a data device (`dest_init=`, `source_init=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Init {
    /// Each sector holds a stamp naming the device and sector.
    Stamp,
    /// Zeroes.
    Zero,
}

/// Cache mode of a simulated device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheMode {
    /// A volatile write cache: completion is not durability.
    Volatile,
    /// Every completed write is durable.
    Writethrough,
}

/// The `config` statement: the table line and the simulated devices. Every field
/// is optional in the trace; the model applies its defaults.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    /// `size=`: target length in sectors.
    pub size: Option<u64>,
    /// `logical_block=512|4096`.
    pub logical_block: Option<u64>,
    /// `meta_block=` in sectors (8).
    pub meta_block: Option<u64>,
    /// `meta_size=`: metadata device size in sectors.
    pub meta_size: Option<u64>,
    /// `dest_init=` (clone destination, era: unused).
    pub dest_init: Option<Init>,
    /// `source_init=` (clone source or era origin).
    pub source_init: Option<Init>,
    /// `discard_zeroes` flag.
    pub discard_zeroes: bool,
    /// `cache=` for every device.
    pub cache: Option<CacheMode>,
    /// `meta_cache=`.
    pub meta_cache: Option<CacheMode>,
    /// `dest_cache=`.
    pub dest_cache: Option<CacheMode>,
    /// Clone `region=` in sectors.
    pub region: Option<u64>,
    /// Clone `hydration=on|off`.
    pub hydration: Option<bool>,
    /// Clone `threshold=`.
    pub threshold: Option<u64>,
    /// Clone `batch=`.
    pub batch: Option<u64>,
    /// Clone `discard_passdown=on|off`.
    pub discard_passdown: Option<bool>,
    /// Era `block=` in sectors.
    pub block: Option<u64>,
    /// Era `start_era=`.
    pub start_era: Option<u64>,
    /// Keys prefixed `x-`, kept in order.
    pub extra: Vec<(String, Value)>,
}

/// How `crash` picks the state it leaves.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CrashMode {
    /// Enumerate every crash state (the default).
    #[default]
    Enumerate,
    /// Only what was made durable survives.
    Durable,
    /// Every completed write survives, in completion order.
    AllLanded,
    /// The crash state with this id (`state:<id>`).
    State(String),
}

/// A clone `msg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloneMsg {
    /// `enable_hydration`.
    EnableHydration,
    /// `disable_hydration`.
    DisableHydration,
    /// `hydration_threshold=N`.
    HydrationThreshold(u64),
    /// `hydration_batch_size=N`.
    HydrationBatchSize(u64),
}

/// How far `wait` lets hydration run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitFor {
    /// `hydrated=N`: until N regions are hydrated in core.
    Count(u64),
    /// `hydrated=all`.
    All,
}

/// An `expect` predicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Predicate {
    /// `hydrated regions=<list>`.
    Hydrated(Ranges),
    /// `not-hydrated regions=<list>`.
    NotHydrated(Ranges),
    /// `read at=a+n data=<stamp list>`.
    Read {
        /// The sectors read.
        loc: Loc,
        /// One stamp word per sector.
        data: Vec<String>,
    },
    /// `era=<n>`.
    Era(u64),
    /// `written-since era=<e> exact=<list>` or `includes=<list>`.
    WrittenSince {
        /// The threshold era.
        era: u64,
        /// `exact=`: the answer must be exactly these blocks.
        exact: Option<Ranges>,
        /// `includes=`: the answer must contain these blocks.
        includes: Option<Ranges>,
    },
    /// `meta-check ok`.
    MetaCheckOk,
    /// `violation id=<ID>`.
    Violation(String),
}

/// A typed statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `config ...`.
    Config(Config),
    /// `write at=.. [fua] [preflush] [data=] [id=] [async]`.
    Write {
        /// Where.
        loc: Loc,
        /// `fua`.
        fua: bool,
        /// `preflush`.
        preflush: bool,
        /// `data=`.
        data: Option<Data>,
        /// `id=`.
        id: Option<String>,
        /// `async`: completes only at `complete id=`.
        is_async: bool,
    },
    /// `discard at=.. [id=] [async]`.
    Discard {
        /// Where.
        loc: Loc,
        /// `id=`.
        id: Option<String>,
        /// `async`.
        is_async: bool,
    },
    /// `flush [id=] [async]`.
    Flush {
        /// `id=`.
        id: Option<String>,
        /// `async`.
        is_async: bool,
    },
    /// `read at=.. [expect=<stamp list>]`.
    Read {
        /// Where.
        loc: Loc,
        /// `expect=`.
        expect: Option<Vec<String>>,
    },
    /// `complete id=`.
    Complete {
        /// Which I/O.
        id: String,
    },
    /// `tick [ms=]`.
    Tick {
        /// Milliseconds to advance.
        ms: Option<u64>,
    },
    /// `worker`.
    Worker,
    /// `suspend`.
    Suspend,
    /// `resume`.
    Resume,
    /// `status [noflush]`.
    Status {
        /// `noflush`.
        noflush: bool,
    },
    /// `remove`.
    Remove,
    /// `crash [mode=]`.
    Crash {
        /// Which state.
        mode: CrashMode,
    },
    /// `recover`.
    Recover,
    /// `reload`: `dmsetup reload` of the same table, then `resume`: the new
    /// table's constructor opens the metadata while the old table is suspended,
    /// the new one's preresume runs, then the old table is destroyed and its
    /// block manager writes back what it still holds (an addition to REPLAY.md
    /// §2.2's common verbs).
    Reload,
    /// `mark label=`.
    Mark {
        /// The label.
        label: String,
    },
    /// `expect <predicate> ...`.
    Expect(Predicate),
    /// Clone `msg ...`.
    Msg(CloneMsg),
    /// Clone `wait hydrated=N|all`.
    Wait(WaitFor),
    /// Clone `hydrate.start region=r[..r2]`.
    HydrateStart {
        /// First region.
        start: u64,
        /// One past the last region.
        end: u64,
    },
    /// Clone `hydrate.done region=r`.
    HydrateDone {
        /// The region.
        region: u64,
    },
    /// Clone `commit` (all four phases).
    Commit,
    /// Clone `commit.pre`.
    CommitPre,
    /// Clone `commit.flush-dest`.
    CommitFlushDest,
    /// `commit.meta` (clone and era).
    CommitMeta,
    /// `commit.super` (clone and era).
    CommitSuper,
    /// Era `checkpoint`.
    Checkpoint,
    /// Era `snap.take`.
    SnapTake,
    /// Era `snap.drop`.
    SnapDrop,
    /// Era `worker.mark`.
    WorkerMark,
    /// Era `worker.commit`.
    WorkerCommit,
    /// Era `worker.submit`.
    WorkerSubmit,
    /// Era `digest.step [n=]`.
    DigestStep {
        /// Bits to digest (default: one kernel step).
        n: Option<u64>,
    },
}

/// A malformed trace: where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub col: usize,
    /// What was expected or found.
    pub msg: String,
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.col, self.msg)
    }
}

impl std::error::Error for TraceError {}
