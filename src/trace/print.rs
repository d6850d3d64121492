//! Canonical text of traces: `at=a+n`, one-element region and block sets as `r`,
//! flags as bare words, absent options left out. [`super::parse`] reads it back
//! to an equal value, once [`Trace::renumber`] has given each statement the line
//! it is printed on.

use std::fmt::{self, Display, Formatter};

use super::{
    CacheMode, CloneMsg, Config, CrashMode, Data, Event, Header, Init, Loc, Outcome, Predicate,
    Ranges, Stmt, Target, Trace, Value, WaitFor,
};

impl Trace {
    /// Sets each statement's `line` to the line it has in `self.to_string()`:
    /// the header is line 1, statement `k` (from 0) line `k + 2`.
    pub fn renumber(&mut self) {
        for (k, s) in self.stmts.iter_mut().enumerate() {
            s.line = k + 2;
        }
    }
}

impl Display for Trace {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.header)?;
        for s in &self.stmts {
            writeln!(f, "{s}")?;
        }
        Ok(())
    }
}

impl Display for Target {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Target::Clone => "clone",
            Target::Era => "era",
        })
    }
}

impl Display for Outcome {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Ok => f.write_str("ok"),
            Outcome::Violation(id) => write!(f, "violation:{id}"),
            Outcome::Refused => f.write_str("refused"),
        }
    }
}

impl Display for Header {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "dmtrace 1 {}", self.target)?;
        opt(f, "variant", &self.variant)?;
        opt(f, "expect", &self.expect)?;
        opt(f, "seed", &self.seed)?;
        opt(f, "kernel", &self.kernel)?;
        extra(f, &self.extra)
    }
}

impl Display for Value {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Value::Num(n) => write!(f, "{n}"),
            Value::Range(a, b) => write!(f, "{a}..{b}"),
            Value::List(items) => {
                for (k, v) in items.iter().enumerate() {
                    if k > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{v}")?;
                }
                Ok(())
            }
            Value::Word(w) => f.write_str(w),
        }
    }
}

/// A set: `none`, or its ranges (`r` for one element, else `a..b`) joined by `,`.
impl Display for Ranges {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        for (k, &(a, b)) in self.0.iter().enumerate() {
            if k > 0 {
                f.write_str(",")?;
            }
            span(f, a, b)?;
        }
        Ok(())
    }
}

/// `a` when the span holds `a` only, else `a..b`.
fn span(f: &mut Formatter<'_>, a: u64, b: u64) -> fmt::Result {
    if a.checked_add(1) == Some(b) {
        write!(f, "{a}")
    } else {
        write!(f, "{a}..{b}")
    }
}

/// As an argument: `at=a+n`, `region=r`, `block=a..b`.
impl Display for Loc {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match *self {
            Loc::Sectors(a, b) if b >= a => write!(f, "at={a}+{}", b - a),
            Loc::Sectors(a, b) => write!(f, "at={a}..{b}"),
            Loc::Regions(a, b) => {
                f.write_str("region=")?;
                span(f, a, b)
            }
            Loc::Blocks(a, b) => {
                f.write_str("block=")?;
                span(f, a, b)
            }
        }
    }
}

impl Display for Data {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Data::Stamp => f.write_str("stamp"),
            Data::Zero => f.write_str("zero"),
            Data::Byte(b) => write!(f, "byte:0x{b:02x}"),
        }
    }
}

impl Display for Init {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Init::Stamp => "stamp",
            Init::Zero => "zero",
        })
    }
}

impl Display for CacheMode {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CacheMode::Volatile => "volatile",
            CacheMode::Writethrough => "writethrough",
        })
    }
}

/// ` key=value` when present.
fn opt<T: Display>(f: &mut Formatter<'_>, key: &str, v: &Option<T>) -> fmt::Result {
    match v {
        Some(v) => write!(f, " {key}={v}"),
        None => Ok(()),
    }
}

/// ` key` when set.
fn flag(f: &mut Formatter<'_>, key: &str, set: bool) -> fmt::Result {
    if set {
        write!(f, " {key}")
    } else {
        Ok(())
    }
}

fn on_off(f: &mut Formatter<'_>, key: &str, v: Option<bool>) -> fmt::Result {
    opt(f, key, &v.map(|on| if on { "on" } else { "off" }))
}

fn extra(f: &mut Formatter<'_>, extra: &[(String, Value)]) -> fmt::Result {
    extra.iter().try_for_each(|(k, v)| write!(f, " {k}={v}"))
}

/// Words joined by `,`.
fn words(f: &mut Formatter<'_>, key: &str, w: &[String]) -> fmt::Result {
    write!(f, " {key}={}", w.join(","))
}

impl Display for Config {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str("config")?;
        opt(f, "size", &self.size)?;
        opt(f, "logical_block", &self.logical_block)?;
        opt(f, "meta_block", &self.meta_block)?;
        opt(f, "meta_size", &self.meta_size)?;
        opt(f, "dest_init", &self.dest_init)?;
        opt(f, "source_init", &self.source_init)?;
        flag(f, "discard_zeroes", self.discard_zeroes)?;
        opt(f, "cache", &self.cache)?;
        opt(f, "meta_cache", &self.meta_cache)?;
        opt(f, "dest_cache", &self.dest_cache)?;
        opt(f, "region", &self.region)?;
        on_off(f, "hydration", self.hydration)?;
        opt(f, "threshold", &self.threshold)?;
        opt(f, "batch", &self.batch)?;
        on_off(f, "discard_passdown", self.discard_passdown)?;
        opt(f, "block", &self.block)?;
        opt(f, "start_era", &self.start_era)?;
        extra(f, &self.extra)
    }
}

impl Display for Predicate {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Predicate::Hydrated(r) => write!(f, "hydrated regions={r}"),
            Predicate::NotHydrated(r) => write!(f, "not-hydrated regions={r}"),
            Predicate::Read { loc, data } => {
                write!(f, "read {loc}")?;
                words(f, "data", data)
            }
            Predicate::Era(n) => write!(f, "era={n}"),
            Predicate::WrittenSince {
                era,
                exact,
                includes,
            } => {
                write!(f, "written-since era={era}")?;
                opt(f, "exact", exact)?;
                opt(f, "includes", includes)
            }
            Predicate::MetaCheckOk => f.write_str("meta-check ok"),
            Predicate::Violation(id) => write!(f, "violation id={id}"),
        }
    }
}

impl Display for Event {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Event::Config(c) => write!(f, "{c}"),
            Event::Write {
                loc,
                fua,
                preflush,
                data,
                id,
                is_async,
            } => {
                write!(f, "write {loc}")?;
                flag(f, "fua", *fua)?;
                flag(f, "preflush", *preflush)?;
                opt(f, "data", data)?;
                opt(f, "id", id)?;
                flag(f, "async", *is_async)
            }
            Event::Discard { loc, id, is_async } => {
                write!(f, "discard {loc}")?;
                opt(f, "id", id)?;
                flag(f, "async", *is_async)
            }
            Event::Flush { id, is_async } => {
                f.write_str("flush")?;
                opt(f, "id", id)?;
                flag(f, "async", *is_async)
            }
            Event::Read { loc, expect } => {
                write!(f, "read {loc}")?;
                match expect {
                    Some(w) => words(f, "expect", w),
                    None => Ok(()),
                }
            }
            Event::Complete { id } => write!(f, "complete id={id}"),
            Event::Tick { ms } => {
                f.write_str("tick")?;
                opt(f, "ms", ms)
            }
            Event::Status { noflush } => {
                f.write_str("status")?;
                flag(f, "noflush", *noflush)
            }
            Event::Crash { mode } => match mode {
                CrashMode::Enumerate => f.write_str("crash"),
                CrashMode::Durable => f.write_str("crash mode=durable"),
                CrashMode::AllLanded => f.write_str("crash mode=all-landed"),
                CrashMode::State(id) => write!(f, "crash mode=state:{id}"),
            },
            Event::Mark { label } => write!(f, "mark label={label}"),
            Event::Expect(p) => write!(f, "expect {p}"),
            Event::Msg(m) => match m {
                CloneMsg::EnableHydration => f.write_str("msg enable_hydration"),
                CloneMsg::DisableHydration => f.write_str("msg disable_hydration"),
                CloneMsg::HydrationThreshold(n) => write!(f, "msg hydration_threshold={n}"),
                CloneMsg::HydrationBatchSize(n) => write!(f, "msg hydration_batch_size={n}"),
            },
            Event::Wait(WaitFor::Count(n)) => write!(f, "wait hydrated={n}"),
            Event::Wait(WaitFor::All) => f.write_str("wait hydrated=all"),
            Event::HydrateStart { start, end } => {
                f.write_str("hydrate.start region=")?;
                span(f, *start, *end)
            }
            Event::HydrateDone { region } => write!(f, "hydrate.done region={region}"),
            Event::DigestStep { n } => {
                f.write_str("digest.step")?;
                opt(f, "n", n)
            }
            Event::Worker => f.write_str("worker"),
            Event::Suspend => f.write_str("suspend"),
            Event::Resume => f.write_str("resume"),
            Event::Remove => f.write_str("remove"),
            Event::Recover => f.write_str("recover"),
            Event::Reload => f.write_str("reload"),
            Event::Commit => f.write_str("commit"),
            Event::CommitPre => f.write_str("commit.pre"),
            Event::CommitFlushDest => f.write_str("commit.flush-dest"),
            Event::CommitMeta => f.write_str("commit.meta"),
            Event::CommitSuper => f.write_str("commit.super"),
            Event::Checkpoint => f.write_str("checkpoint"),
            Event::SnapTake => f.write_str("snap.take"),
            Event::SnapDrop => f.write_str("snap.drop"),
            Event::WorkerMark => f.write_str("worker.mark"),
            Event::WorkerCommit => f.write_str("worker.commit"),
            Event::WorkerSubmit => f.write_str("worker.submit"),
        }
    }
}

impl Display for Stmt {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if let Some(t) = self.time {
            write!(f, "@{t} ")?;
        }
        write!(f, "{}", self.event)
    }
}
