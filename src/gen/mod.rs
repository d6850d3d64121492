//! The bounded exhaustive trace generator (REPLAY.md §2.5, after ACE): every
//! sequence of up to N user operations over a tiny target, each ending in a
//! power cut whose crash states are enumerated and checked; and delta-debugging
//! minimisation of a trace that violates an invariant.
//!
//! dm-clone: two regions of 8 sectors; operations: a partial write, a
//! full-region overwrite, each with or without FUA, a whole-region and a
//! partial-region discard, a flush (completed, or still in flight at the crash),
//! a one-second tick (periodic commit), a background hydration, and a background
//! hydration that completes between the commit's destination flush and its
//! metadata write.
//!
//! dm-era: three blocks; operations: a write (marked, committed and submitted by
//! the worker), a discard, a checkpoint, a status, a run of the digest, a
//! suspend/resume, and a write that races a second write to the same block
//! between the worker's mark and its commit.
//!
//! Besides the power cut at the end of every trace, the callers usually explore
//! a crash point after every statement ([`ReplayOptions::every_statement`]).

use std::time::Instant;

use rayon::prelude::*;

use crate::model::replay::{replay_with, ReplayOptions};
use crate::trace::{Config, CrashMode, Event, Header, Loc, Stmt, Target, Trace, Variant};

/// One generated operation: the statements it expands to.
type Op = Vec<Event>;

fn write(loc: Loc, fua: bool, id: Option<&str>, is_async: bool) -> Event {
    Event::Write {
        loc,
        fua,
        preflush: false,
        data: None,
        id: id.map(str::to_string),
        is_async,
    }
}

/// The operations of the dm-clone alphabet; `k` makes ids unique per position.
fn clone_ops(k: usize) -> Vec<Op> {
    let mut ops: Vec<Op> = Vec::new();
    for r in 0..2u64 {
        let part = Loc::Sectors(r * 8 + 1, r * 8 + 2);
        let whole = Loc::Regions(r, r + 1);
        ops.push(vec![write(part, false, None, false)]);
        ops.push(vec![write(part, true, None, false)]);
        ops.push(vec![write(whole, false, None, false)]);
        ops.push(vec![write(whole, true, None, false)]);
        ops.push(vec![Event::Discard {
            loc: whole,
            id: None,
            is_async: false,
        }]);
        ops.push(vec![Event::Discard {
            loc: Loc::Sectors(r * 8 + 1, r * 8 + 3),
            id: None,
            is_async: false,
        }]);
        ops.push(vec![
            Event::HydrateStart {
                start: r,
                end: r + 1,
            },
            Event::HydrateDone { region: r },
        ]);
        ops.push(vec![
            Event::HydrateStart {
                start: r,
                end: r + 1,
            },
            Event::CommitPre,
            Event::CommitFlushDest,
            Event::HydrateDone { region: r },
            Event::CommitMeta,
            Event::CommitSuper,
        ]);
    }
    ops.push(vec![Event::Flush {
        id: None,
        is_async: false,
    }]);
    ops.push(vec![Event::Flush {
        id: Some(format!("f{k}")),
        is_async: true,
    }]);
    ops.push(vec![Event::Tick { ms: Some(1000) }]);
    ops
}

/// The operations of the dm-era alphabet.
fn era_ops(k: usize) -> Vec<Op> {
    let mut ops: Vec<Op> = Vec::new();
    for b in 0..3u64 {
        let blk = Loc::Blocks(b, b + 1);
        ops.push(vec![
            write(blk, false, None, false),
            Event::WorkerMark,
            Event::WorkerCommit,
            Event::WorkerSubmit,
        ]);
        ops.push(vec![
            Event::Discard {
                loc: blk,
                id: None,
                is_async: false,
            },
            Event::WorkerMark,
            Event::WorkerCommit,
            Event::WorkerSubmit,
        ]);
        ops.push(vec![
            write(blk, false, Some(&format!("a{k}")), true),
            Event::WorkerMark,
            Event::CommitMeta,
            write(blk, false, Some(&format!("b{k}")), false),
            Event::CommitSuper,
            Event::WorkerSubmit,
        ]);
    }
    // A discard over two blocks: one bio (DM core does not split it at era
    // blocks), every block of it must be recorded (HAZARDS.md H-E7).
    ops.push(vec![
        Event::Discard {
            loc: Loc::Blocks(0, 2),
            id: None,
            is_async: false,
        },
        Event::WorkerMark,
        Event::WorkerCommit,
        Event::WorkerSubmit,
    ]);
    ops.push(vec![Event::Checkpoint]);
    ops.push(vec![Event::Status { noflush: false }]);
    ops.push(vec![Event::DigestStep { n: Some(1000) }]);
    ops.push(vec![Event::Suspend, Event::Resume]);
    ops
}

fn config(target: Target) -> Config {
    let mut c = Config {
        meta_size: Some(1024),
        ..Default::default()
    };
    match target {
        Target::Clone => {
            c.size = Some(16);
            c.region = Some(8);
            c.hydration = Some(false);
        }
        Target::Era => {
            c.size = Some(24);
            c.block = Some(8);
        }
    }
    c
}

fn trace_of(target: Target, variant: Variant, ops: &[Op]) -> Trace {
    let mut stmts = vec![Stmt {
        line: 2,
        time: None,
        event: Event::Config(config(target)),
    }];
    for op in ops {
        for e in op {
            stmts.push(Stmt {
                line: stmts.len() + 2,
                time: None,
                event: e.clone(),
            });
        }
    }
    stmts.push(Stmt {
        line: stmts.len() + 2,
        time: None,
        event: Event::Crash {
            mode: CrashMode::Enumerate,
        },
    });
    Trace {
        header: Header {
            target,
            variant: Some(variant),
            expect: None,
            seed: None,
            kernel: None,
            extra: Vec::new(),
        },
        stmts,
    }
}

/// Every trace of 1..=`max_ops` operations, shortest first.
pub fn traces(target: Target, variant: Variant, max_ops: usize) -> Vec<Trace> {
    let alphabet = |k| match target {
        Target::Clone => clone_ops(k),
        Target::Era => era_ops(k),
    };
    let n = alphabet(0).len();
    let mut out = Vec::new();
    for len in 1..=max_ops {
        let total = n.pow(len as u32);
        for mut code in 0..total {
            let mut ops = Vec::with_capacity(len);
            for k in 0..len {
                ops.push(alphabet(k).swap_remove(code % n));
                code /= n;
            }
            out.push(trace_of(target, variant, &ops));
        }
    }
    out
}

/// What a generator run found.
#[derive(Debug, Clone, Default)]
pub struct GenReport {
    /// Traces run.
    pub traces: u64,
    /// Traces the model refused (an event the kernel could not produce).
    pub refused: u64,
    /// Candidate crash states.
    pub states: u64,
    /// Distinct metadata views checked.
    pub views: u64,
    /// Traces with a violation.
    pub violating: u64,
    /// The first violating trace (in generation order), with its violations.
    pub first: Option<(usize, Trace, Vec<String>)>,
    /// Invariant ids that fired.
    pub ids: Vec<&'static str>,
    /// Wall time in seconds.
    pub seconds: f64,
}

/// Runs every generated trace on `variant`.
pub fn run(target: Target, variant: Variant, max_ops: usize, opts: ReplayOptions) -> GenReport {
    run_observed(target, variant, max_ops, opts, &|_, _| {})
}

/// What one generated trace's replay leaves for the report (the outcome
/// itself, with its metadata image, is dropped as soon as it is read).
struct Ran {
    states: u64,
    views: u64,
    violations: Vec<crate::verify::Violation>,
}

/// [`run`], calling `progress(done, total)` as traces complete (from the
/// worker threads, in no particular order).
pub fn run_observed(
    target: Target,
    variant: Variant,
    max_ops: usize,
    opts: ReplayOptions,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> GenReport {
    use std::sync::atomic::{AtomicU64, Ordering};
    let start = Instant::now();
    let all = traces(target, variant, max_ops);
    let total = all.len() as u64;
    let done = AtomicU64::new(0);
    let results: Vec<Option<Ran>> = all
        .par_iter()
        .map(|t| {
            let ran = replay_with(t, opts).ok().map(|o| Ran {
                states: o.crash.states,
                views: o.crash.views,
                violations: o.violations,
            });
            progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
            ran
        })
        .collect();
    let mut r = GenReport {
        traces: total,
        ..Default::default()
    };
    for (i, (t, o)) in all.iter().zip(results).enumerate() {
        let Some(o) = o else {
            r.refused += 1;
            continue;
        };
        r.states += o.states;
        r.views += o.views;
        if !o.violations.is_empty() {
            r.violating += 1;
            for v in &o.violations {
                if !r.ids.contains(&v.id) {
                    r.ids.push(v.id);
                }
            }
            if r.first.is_none() {
                r.first = Some((
                    i,
                    t.clone(),
                    o.violations.iter().map(|v| v.to_string()).collect(),
                ));
            }
        }
    }
    r.seconds = start.elapsed().as_secs_f64();
    r
}

/// Delta debugging: the smallest trace (by statements, `config` kept) found by
/// removing statements while the replay still violates `id`.
pub fn minimize(trace: &Trace, id: &str, opts: ReplayOptions) -> Trace {
    let fires = |t: &Trace| {
        replay_with(t, opts)
            .map(|o| o.violations.iter().any(|v| v.id == id))
            .unwrap_or(false)
    };
    let mut cur = trace.clone();
    let mut chunk = cur.stmts.len().div_ceil(2).max(1);
    loop {
        let mut removed = false;
        let mut i = 1; // keep `config`
        while i < cur.stmts.len() {
            let mut cand = cur.clone();
            let end = (i + chunk).min(cand.stmts.len());
            cand.stmts.drain(i..end);
            if fires(&cand) {
                cur = cand;
                removed = true;
            } else {
                i += chunk;
            }
        }
        if !removed {
            if chunk == 1 {
                break;
            }
            chunk = chunk.div_ceil(2);
        }
    }
    cur.renumber();
    cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alphabets_expand_to_valid_traces() {
        for target in [Target::Clone, Target::Era] {
            let ts = traces(target, Variant::Fixed, 1);
            assert!(ts.len() >= 10);
            for t in &ts {
                // Every generated trace prints and parses back.
                let mut t2 = t.clone();
                t2.renumber();
                assert_eq!(crate::trace::parse(&t2.to_string()).unwrap(), t2);
            }
        }
    }

    #[test]
    fn one_operation_finds_the_flush_ordering_bug_and_fixed_is_clean() {
        let opts = ReplayOptions::default();
        let fixed = run(Target::Clone, Variant::Fixed, 1, opts);
        assert_eq!(fixed.violating, 0, "{:?}", fixed.first);
        let bug = run(Target::Clone, Variant::FlushAfterCommit, 1, opts);
        assert!(bug.violating > 0);
        let (_, t, _) = bug.first.unwrap();
        let min = minimize(&t, bug.ids[0], opts);
        assert!(min.stmts.len() <= t.stmts.len());
    }
}
